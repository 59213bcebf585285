"""Turn a capability's organized files into formatted train and held-out examples.

Train and eval stages both call :func:`load_examples`, so they always agree on the split: the
held-out records are chosen by a seeded shuffle before any training sample is drawn.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from nexus import capabilities
from nexus.readers import iter_records


class NoDataError(ValueError):
    """A capability has no usable records."""


@dataclass
class ExampleSet:
    """Formatted examples of one capability, split into train and held-out eval."""

    train: list[capabilities.Example]
    eval: list[capabilities.Example]
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    fingerprint: str = ""
    files: list[str] = field(default_factory=list)


def _drop_duplicates(examples: list[capabilities.Example], dropped: Counter[str]) -> list:
    """Exact duplicates (same prompt, completion and tools) kept once, the rest counted as dropped."""
    seen: set[str] = set()
    unique = []
    for example in examples:
        key = json.dumps(example, sort_keys=True, ensure_ascii=False)
        if key in seen:
            dropped["exact duplicate of an earlier record"] += 1
            continue
        seen.add(key)
        unique.append(example)
    return unique


def manifest_path(organized_dir: str | Path, capability: str) -> Path:
    """Where the organizer lists the files of ``capability``."""
    return Path(organized_dir) / capability / "manifest.json"


def load_examples(
    capability: str,
    organized_dir: str | Path,
    eval_size: int,
    sample_size: int,
    seed: int,
) -> ExampleSet:
    """Read, format and split the records the organizer routed to ``capability``.

    Args:
        capability: registry name.
        organized_dir: the organizer's output folder (holds ``<capability>/manifest.json``).
        eval_size: held-out examples (taken first, from a seeded shuffle).
        sample_size: training examples kept after the split (0 = all).
        seed: shuffle seed (``base.seed``).

    Raises:
        NoDataError: no manifest, or no record survives formatting.
    """
    manifest = manifest_path(organized_dir, capability)
    if not manifest.is_file():
        raise NoDataError(
            f"{manifest}: no data for capability '{capability}'; drop files in a format it accepts "
            f"into data/raw/ and rerun the organize stage (see {Path(organized_dir) / 'catalog.json'})"
        )
    module = capabilities.load(capability)
    entries = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    examples: list[capabilities.Example] = []
    dropped: Counter[str] = Counter()
    digest = hashlib.sha256()
    for entry in entries:
        digest.update(f"{entry['path']}:{entry.get('sha256', '')}".encode())
        formatter = module.FORMATTERS.get(entry["format"])
        if formatter is None:
            dropped[f"format '{entry['format']}' has no {capability} formatter"] += entry.get("records", 0)
            continue
        for record in iter_records(entry["path"]):
            try:
                examples.append(formatter(record))
            except capabilities.SkipRecord as reason:
                dropped[str(reason)] += 1
    if not examples:
        raise NoDataError(
            f"{manifest}: no usable record for '{capability}' (dropped: {dict(dropped) or 'none'})"
        )
    examples = _drop_duplicates(examples, dropped)  # a twin in both splits would leak the answer
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    held = [examples[i] for i in order[:eval_size]]
    train = [examples[i] for i in order[eval_size:]]
    if sample_size:
        train = train[:sample_size]
    digest.update(f"eval={eval_size};sample={sample_size};seed={seed}".encode())
    return ExampleSet(
        train=train,
        eval=held,
        kept=len(examples),
        dropped=dropped,
        fingerprint=digest.hexdigest()[:16],
        files=[e["path"] for e in entries],
    )
