"""Turn a capability's organized files into formatted train and held-out examples.

Train and eval stages both call :func:`load_examples`, so they always agree on the split.

Two modes, chosen per call from the size of the capability's files:

- **in memory** (every file, and their total, at most ``stream_threshold_mb``): every formatted
  example is held in a list, exact duplicates are dropped, and a seeded shuffle picks the held-out
  records before any training sample is drawn. Memory grows with the data.
- **streaming** (a file, or the total, above ``stream_threshold_mb``; ``organize.stream_threshold_mb``
  in params.yaml, 1024 by default): one pass over the records that keeps only a bounded sample.
  Each formatted example gets a key, a keyed BLAKE2b hash (128 bits, keyed by the seed) of its
  canonical JSON; the ``eval_size`` examples with the smallest keys are the held-out split and the
  next ``sample_size`` smallest (:data:`STREAM_SAMPLE_DEFAULT` when ``sample_size`` is 0) are the
  training sample, in key order. Only those ``eval_size + sample_size`` examples are ever held (a
  bounded max-heap), so memory does not grow with the file. The split depends only on the examples
  and the seed (not on file order, nor on ``sample_size`` for the held-out part), so the train and
  eval stages agree and the two splits never overlap; equal examples have equal keys, so exact
  duplicates collapse. Only duplicates of an example held at the time are seen, so in streaming
  mode the duplicate count in ``dropped`` (and ``kept``, formatted records minus those duplicates)
  is exact when the sample holds every example and a lower bound (an upper bound for ``kept``)
  otherwise. The streaming split differs from the in-memory split of the same data (a
  hash order, not ``random.shuffle``): the mode is part of :attr:`ExampleSet.fingerprint`.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import json
import logging
import os
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nexus import capabilities
from nexus.readers import iter_records
from nexus.record_checks import format_record, record_problem

log = logging.getLogger(__name__)

MB = 1 << 20  # stream_threshold_mb counts MiB
STREAM_THRESHOLD_MB = 1024  # the default of organize.stream_threshold_mb
STREAM_SAMPLE_DEFAULT = 10_000  # training examples kept in streaming mode when sample_size is 0
_DUPLICATE = "exact duplicate of an earlier record"


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
        key = canonical_json(example)
        if key in seen:
            dropped[_DUPLICATE] += 1
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
    stream_threshold_mb: float = STREAM_THRESHOLD_MB,
) -> ExampleSet:
    """Read, format and split the records the organizer routed to ``capability``.

    Files up to ``stream_threshold_mb`` are read into memory and split by a seeded shuffle; when
    one file, or all of them together, is larger, the records are streamed and only a bounded,
    hash-chosen sample is kept (see the module docstring; the two modes give different splits).

    Args:
        capability: registry name.
        organized_dir: the organizer's output folder (holds ``<capability>/manifest.json``).
        eval_size: held-out examples (taken first, from a seeded shuffle; in streaming mode the
            ``eval_size`` smallest hash keys).
        sample_size: training examples kept after the split (0 = all; in streaming mode 0 means
            :data:`STREAM_SAMPLE_DEFAULT`, logged).
        seed: shuffle seed (``base.seed``); in streaming mode the hash key.
        stream_threshold_mb: size in MiB above which the files are streamed
            (``organize.stream_threshold_mb``); 0 streams any non-empty data.

    Raises:
        NoDataError: no manifest, or no record survives formatting.
        ValueError: ``stream_threshold_mb`` is negative.
    """
    if stream_threshold_mb < 0:
        raise ValueError(
            f"stream_threshold_mb must be 0 or more, got {stream_threshold_mb}; "
            f"fix organize.stream_threshold_mb in params.yaml"
        )
    manifest = manifest_path(organized_dir, capability)
    if not manifest.is_file():
        raise NoDataError(
            f"{manifest}: no data for capability '{capability}'; drop files in a format it accepts "
            f"into data/raw/ and rerun the organize stage (see {Path(organized_dir) / 'catalog.json'})"
        )
    module = capabilities.load(capability)
    entries = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    why = stream_reason([e["path"] for e in entries], stream_threshold_mb)
    if why is not None:
        return _load_streaming(capability, manifest, module, entries, eval_size, sample_size, seed, why)
    dropped: Counter[str] = Counter()
    digest = hashlib.sha256()
    examples = list(_formatted(module, entries, capability, dropped, digest))
    if not examples:
        raise NoDataError(
            f"{manifest}: no usable record for '{capability}' (dropped: {dict(dropped) or 'none'})"
        )
    examples = _drop_duplicates(examples, dropped)  # a twin in both splits would leak the answer
    held, train = split_held_out(module, examples, eval_size, seed)
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


def split_held_out(module: Any, examples: list[capabilities.Example], eval_size: int,
                   seed: int) -> tuple[list[capabilities.Example], list[capabilities.Example]]:
    """``(held, train)``: a seeded shuffle, the first ``eval_size`` examples held out.

    A capability module may fix some examples' side with ``held_out(example) -> bool | None``
    (e.g. every recording of one speaker held out, so the eval measures an unseen voice): True is
    always held out (on top of ``eval_size``), False always trained on, None follows the shuffle.
    """
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    side = getattr(module, "held_out", lambda example: None)
    fixed = {i: side(examples[i]) for i in order}
    free = [i for i in order if fixed[i] is None]
    held = [i for i in order if fixed[i] is True] + free[:eval_size]
    chosen = set(held)
    return [examples[i] for i in sorted(held, key=order.index)], [examples[i] for i in order if i not in chosen]


def _size(path: str | os.PathLike[str]) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0  # a missing file is reported by the reader, with what to do


def stream_reason(paths: list[str], threshold_mb: float) -> str | None:
    """Why these files must be streamed, or None when they may be read into memory.

    Args:
        paths: the data files of one capability.
        threshold_mb: size in MiB above which a file, or the files together, are streamed.

    Returns:
        A one-line reason naming the largest file (or the total) and the threshold, or None.
    """
    sizes = {p: _size(p) for p in paths}
    limit = threshold_mb * MB
    if not sizes:
        return None
    largest = max(sizes, key=lambda p: sizes[p])
    if sizes[largest] > limit:
        return (f"{largest} is {sizes[largest] / MB:.1f} MB, above stream_threshold_mb="
                f"{threshold_mb:g}")
    total = sum(sizes.values())
    if total > limit:
        return (f"its {len(sizes)} files total {total / MB:.1f} MB, above stream_threshold_mb="
                f"{threshold_mb:g}")
    return None


def _formatted(module: Any, entries: list[dict[str, Any]], capability: str,
               dropped: Counter[str], digest: Any) -> Iterator[capabilities.Example]:
    """Every record of the manifest's files through the capability's formatter, in file order;
    a record it refuses (or :func:`nexus.record_checks.record_problem` refuses) is counted in
    ``dropped`` under its reason."""
    for entry in entries:
        digest.update(f"{entry['path']}:{entry.get('sha256', '')}".encode())
        formatter = module.FORMATTERS.get(entry["format"])
        if formatter is None:
            dropped[f"format '{entry['format']}' has no {capability} formatter"] += entry.get("records", 0)
            continue
        source = Path(entry["path"])
        kind, folder = entry.get("kind"), source.parent
        for record in iter_records(source):
            reason = record_problem(record, kind, source)
            example, reason = (None, reason) if reason else format_record(formatter, record)
            if reason:
                dropped[reason] += 1  # the reason the organizer reported for it (nexus.record_checks)
            else:
                yield with_media_paths(example, folder)


MEDIA_KEYS = ("images", "audios", "videos")
"""Example keys listing media; a record's paths are relative to its file's folder."""


def with_media_paths(example: capabilities.Example, folder: Path) -> capabilities.Example:
    """``example`` with each media path of :data:`MEDIA_KEYS` joined to ``folder`` (the record
    file's folder, as the organizer checked it), so a path is relative to the project root like the
    file's own; URLs (``data:``, ``http(s)://``) stay as they are."""
    if not any(example.get(key) for key in MEDIA_KEYS):
        return example
    joined = {key: [ref if "://" in ref or ref.startswith("data:") else str(folder / ref) for ref in example[key]]
              for key in MEDIA_KEYS if example.get(key)}
    return {**example, **joined}


# json.dumps(..., sort_keys=True, ensure_ascii=False) without building an encoder per call.
_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False)


def canonical_json(example: capabilities.Example) -> str:
    """An example's canonical JSON (sorted keys): equal examples, equal text."""
    return _CANONICAL.encode(example)


@functools.lru_cache(maxsize=8)
def _keyed_blake2b(seed: int) -> Any:
    """A 128-bit BLAKE2b keyed by ``seed``, with nothing hashed yet (copied for each key)."""
    return hashlib.blake2b(digest_size=16, key=str(seed).encode())


def stream_key(example: capabilities.Example, seed: int) -> int:
    """The streaming-mode sort key of an example: a keyed 128-bit BLAKE2b of its canonical JSON.

    Equal examples get equal keys, whatever file or position they come from.
    """
    digest = _keyed_blake2b(seed).copy()
    digest.update(canonical_json(example).encode())
    return int.from_bytes(digest.digest(), "big")


def _load_streaming(capability: str, manifest: Path, module: Any, entries: list[dict[str, Any]],
                    eval_size: int, sample_size: int, seed: int, why: str) -> ExampleSet:
    """One pass keeping the ``eval_size + sample_size`` examples with the smallest keys."""
    train_size = sample_size or STREAM_SAMPLE_DEFAULT
    bound = eval_size + train_size
    log.info("%s: streaming mode (%s): keeping %d held-out + %d training examples chosen by a "
             "seeded hash%s", capability, why, eval_size, train_size,
             "" if sample_size else f" (sample_size 0 means {STREAM_SAMPLE_DEFAULT} when streaming)")
    dropped: Counter[str] = Counter()
    digest = hashlib.sha256()
    heap: list[tuple[int, int, capabilities.Example]] = []  # (-key, tiebreak, example): a max-heap
    held_keys: set[int] = set()
    formatted = duplicates = 0
    for example in _formatted(module, entries, capability, dropped, digest):
        formatted += 1
        key = stream_key(example, seed)
        if key in held_keys:
            duplicates += 1  # an equal example is already in the sample
            continue
        if len(heap) < bound:
            heapq.heappush(heap, (-key, formatted, example))
            held_keys.add(key)
        elif key < -heap[0][0]:
            evicted = heapq.heapreplace(heap, (-key, formatted, example))
            held_keys.discard(-evicted[0])
            held_keys.add(key)
    if not formatted:
        raise NoDataError(
            f"{manifest}: no usable record for '{capability}' (dropped: {dict(dropped) or 'none'})"
        )
    if duplicates:
        dropped[_DUPLICATE] += duplicates
    chosen = [example for _, _, example in sorted(heap, key=lambda item: -item[0])]
    digest.update(f"eval={eval_size};sample={sample_size};seed={seed};stream={train_size}".encode())
    return ExampleSet(
        train=chosen[eval_size:],
        eval=chosen[:eval_size],
        kept=formatted - duplicates,
        dropped=dropped,
        fingerprint=digest.hexdigest()[:16],
        files=[e["path"] for e in entries],
    )


def capability_examples(capability: str, params: Any, organized_dir: str | Path) -> ExampleSet:
    """:func:`load_examples` with a capability's params.yaml settings: every stage that reads a
    capability's examples (train, eval, report, preview) calls this, so all agree on the split."""
    from nexus.config import capability_params

    cap = capability_params(params, capability)
    return load_examples(capability, organized_dir, cap.eval_size, cap.sample_size, params.base.seed,
                         stream_threshold_mb=params.organize.stream_threshold_mb)
