"""The ``encoders`` stage: convert the encoders the selected capabilities name, and say who uses what.

``params.yaml``'s ``capabilities:`` entries name their encoders (``vision_encoder``,
``audio_encoder``: folders that ``configs/encoders.yaml`` lists as ``out``); only those are converted
(:func:`nexus.encoders.convert.convert_all`), and a folder whose stamp matches the config is left
as it is, so selecting ``cot`` alone needs no encoder wheel and converts nothing.

For the DAG, the stage writes ``models/encoders/uses/<capability>.json`` for every capability under
``capabilities:``: its encoder folders with the stamp of each (``{}`` for a text capability).
``train@<cap>`` and ``eval@<cap>`` depend on their own file, so converting omni's encoders reruns
omni, not cot. ``models/encoders`` is a ``persist`` output: DVC never deletes a converted folder
before the stage runs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from nexus.atomic import write_json_atomic
from nexus.config import PARAMS_FILE
from nexus.encoders.convert import DEFAULT_ROOT, STAMP, convert_all
from nexus.encoders.spec import SPEC_FILE, EncoderSpecError, load_spec

log = logging.getLogger(__name__)

ENCODER_KEYS = ("vision_encoder", "audio_encoder")
USES_DIR = "uses"


def wanted_encoders(params_file: str | Path) -> dict[str, dict[str, str]]:
    """``{capability: {key: folder}}`` for every entry under ``capabilities:`` (text ones: ``{}``)."""
    from nexus.config import capability_params
    from nexus.methods import load_params

    params = load_params(params_file)
    out = {}
    for name in params.capabilities:
        cap = capability_params(params, name)
        out[name] = {key: getattr(cap, key) for key in ENCODER_KEYS if getattr(cap, key)}
    return out


def run_stage(params_file: str | Path = PARAMS_FILE, config: str | Path = SPEC_FILE,
              root: Path = DEFAULT_ROOT) -> list[dict[str, Any]]:
    """Convert what the selected capabilities need and write their ``uses/<capability>.json``.

    Raises:
        EncoderSpecError: a capability names a folder the config does not make.
    """
    spec = load_spec(config)
    by_folder = {str(e.out): e for e in spec.offline()}
    wanted = wanted_encoders(params_file)
    needed = sorted({folder for uses in wanted.values() for folder in uses.values()})
    unknown = [f for f in needed if f not in by_folder]
    if unknown:
        who = next(f"capabilities.{c}.{k}" for c, uses in wanted.items() for k, f in uses.items() if f == unknown[0])
        raise EncoderSpecError(f"{params_file}: {who} is {unknown[0]}, which {config} does not make; made there: "
                               f"{', '.join(by_folder) or 'nothing'}")
    results = convert_all(spec, root, only=[by_folder[f].key for f in needed], skip_current=True) if needed else []
    for name, uses in wanted.items():
        index = {key: {"path": folder, "stamp": _stamp(Path(folder))} for key, folder in uses.items()}
        write_json_atomic(index, root / USES_DIR / f"{name}.json")
    return results


def _stamp(folder: Path) -> Any:
    try:
        return json.loads((folder / STAMP).read_text(encoding="utf-8"))["inputs"]
    except (OSError, ValueError, KeyError):
        return None


def summary_lines(results: list[dict[str, Any]], seconds: float) -> list[str]:
    """What the stage prints: one line per encoder, then the totals."""
    lines = [f"{r['entry']}: {r['name']} -> {r['out']} "
             + ("(up to date)" if not r["converted"] else f"({r['megabytes']:.0f} MB, {r['seconds']:.1f} s)")
             for r in results]
    if not results:
        return ["encoders: none needed by the entries under capabilities: in params.yaml"]
    return [*lines, f"encoders: {sum(r['converted'] for r in results)} converted, "
                    f"{sum(not r['converted'] for r in results)} up to date ({seconds:.1f} s)"]
