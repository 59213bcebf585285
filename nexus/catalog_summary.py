"""The organizer's console summary: files and examples per capability, refused files and records.

Counts mean what the later stages count: ``examples`` are a capability's own usable records (what
``prepare`` splits and ``train`` reports as kept), method data (preference pairs, KTO rows, text,
safety prompts) is shown apart, by the methods that read it. Works on the :class:`nexus.organize.Catalog`
that ``organize`` returns (its ``files``, ``models``, ``notes`` and ``out_dir``); torch-free.
"""

from __future__ import annotations

from typing import Any

from nexus import methods, walk
from nexus.registry import CAPABILITIES

METHOD_KINDS: dict[str, str] = methods.method_record_kinds()


def _capability_rows(by_cap: dict[str, list[Any]]) -> list[str]:
    """Per capability: its own example files and usable records (what prepare and train count as
    examples), and the method data apart, by the methods that read it."""
    if not by_cap:
        return []
    width = max(len(n) for n in by_cap)
    rows = [f"  {'capability':<{width}}  files  examples  method data (records, by the methods reading them)"]
    for name, files in by_cap.items():
        own = [f for f in files if f.kind not in METHOD_KINDS]
        extra: dict[str, int] = {}
        for f in (f for f in files if f.kind in METHOD_KINDS):
            extra[METHOD_KINDS[f.kind]] = extra.get(METHOD_KINDS[f.kind], 0) + _usable(f)
        method_data = "; ".join(f"{used_by}: {n}" for used_by, n in extra.items()) or "none"
        flag = "" if CAPABILITIES[name].implemented else "  (not trainable yet)"
        rows.append(f"  {name:<{width}}  {len(own):>5}  {sum(map(_usable, own)):>8}  {method_data}{flag}")
    return rows


def _usable(entry: Any) -> int:
    return (entry.records if entry.usable is None else entry.usable) or 0


def format_summary(catalog: Any) -> str:
    """A human-readable summary: files per capability, unplaced files with reasons, models, notes."""
    placed = len(catalog.files) - len(catalog.unplaced)
    lines = [f"organized {len(catalog.files)} data files into {catalog.out_dir}: "
             f"{placed} placed, {len(catalog.unplaced)} unplaced"]
    lines.extend(_capability_rows(catalog.by_capability()))
    flawed = [f for f in catalog.files if f.status == "placed" and f.invalid]
    if flawed:
        lines.append("placed, some records left out (no formatter takes them; the catalog lists the first few):")
        lines.extend(f"  {walk.one_line(f.path)}: {f.invalid} of {f.records} not usable ({f.problems[0]}"
                     f"{'; ...' if f.invalid > 1 else ''})" for f in flawed)
    if catalog.unplaced:
        lines.append("unplaced (not used by any capability):")
        lines.extend(f"  {walk.one_line(f.path)}: {f.why}" for f in catalog.unplaced)
    if catalog.models:
        lines.append("models:")
        for m in catalog.models:
            mods = ", ".join(m["modalities"]) or "no modality"
            lines.append(f"  {m['path']}: {m['role'] or 'unknown role'} ({mods})")
    if catalog.notes:
        lines.append("notes:")
        lines.extend(f"  {note}" for note in catalog.notes)
    return "\n".join(lines)
