"""Organize stage: catalog the data files and route them to capabilities.

    python stages/organize.py --out data/organized [--params params.yaml] [--move]

Reads ``organize.sources``, ``organize.head_records`` and ``organize.model_dirs`` from params.yaml,
writes ``<out>/catalog.json`` and ``<out>/<capability>/manifest.json`` (see nexus.organize) and
prints a summary. Exits 1 with one ``error: ...`` line on bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from any cwd

from nexus.config import load_params  # noqa: E402
from nexus.organize import organize, print_summary  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, organize, print the summary; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder, e.g. data/organized")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--move", action="store_true",
                        help="move placed files from data/raw into <out>/<capability>/ (the seed's "
                             "behaviour; off by default: user files are never touched)")
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params).organize
        catalog = organize(
            [Path(s) for s in params.sources],
            Path(args.out),
            head_records=params.head_records,
            model_dirs=[Path(d) for d in params.model_dirs],
            move=args.move,
        )
    except (ValueError, OSError) as err:
        print(f"error: {err}".replace("\n", " "), file=sys.stderr)
        return 1
    print_summary(catalog)
    return 0


if __name__ == "__main__":
    sys.exit(main())
