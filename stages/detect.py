"""Detect stage: which modalities the base model has, read from its config or GGUF header.

    python stages/detect.py --model PATH --out data/modality.json [--params params.yaml]

Without ``--model``, ``base.model`` from params.yaml is used. Writes the report (text, vision,
audio_in, audio_out, video, model_type, architectures, role, source, why) atomically and prints a
one-line summary. Exits 1 with one ``error: ...`` line on bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from any cwd

from nexus.config import load_params  # noqa: E402
from nexus.modality import MODALITIES, write_report  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, detect and write the report; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder with config.json, or a .gguf file "
                                        "(default: base.model from params)")
    parser.add_argument("--out", required=True, help="report file, e.g. data/modality.json")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    args = parser.parse_args(argv)
    try:
        model = args.model or load_params(args.params).base.model
        report = write_report(model, args.out)
    except (ValueError, OSError) as err:
        print(f"error: {err}".replace("\n", " "), file=sys.stderr)
        return 1
    have = ", ".join(m for m in MODALITIES if report[m]) or "none"
    print(f"{report['path']}: {report['model_type'] or 'unknown type'} ({report['role'] or 'unknown role'}); "
          f"modalities: {have} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
