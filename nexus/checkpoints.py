"""Checkpoint completeness and resume: which ``checkpoint-N`` folder a run may continue from.

A checkpoint folder counts as complete only once :class:`nexus.controller.TrainingController` has
written ``nexus_schedule.json`` into it, after the Trainer finished writing everything else. The
marker records the run's *schedule* (the params that shape the optimizer and LR schedule: steps,
epochs, learning rate, batch size, data fingerprint, ...) so that resuming with changed params is
refused instead of silently reusing the old schedule.

No torch import here: this module is pure standard library.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "SCHEDULE_FILE",
    "ScheduleChangedError",
    "clear_checkpoints",
    "find_resume_checkpoint",
    "list_checkpoints",
    "normalize_schedule",
    "read_schedule_marker",
    "write_schedule_marker",
]

SCHEDULE_FILE = "nexus_schedule.json"
CHECKPOINT_PREFIX = "checkpoint-"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")

log = logging.getLogger(__name__)


class ScheduleChangedError(ValueError):
    """The newest complete checkpoint was trained with a different schedule than the one asked for."""


def normalize_schedule(schedule: dict[str, Any]) -> dict[str, Any]:
    """Return ``schedule`` as it reads back from JSON (tuples become lists, keys become strings).

    Args:
        schedule: the run's schedule mapping.

    Returns:
        A JSON round-tripped copy, the form in which it is stored and compared.

    Raises:
        ValueError: a value is not JSON-serializable; the message names the key.
    """
    if not isinstance(schedule, dict):
        raise ValueError(f"schedule must be a dict of JSON values, got {type(schedule).__name__}")
    for key, value in schedule.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"schedule[{key!r}] = {value!r} is not JSON-serializable ({err}); "
                "pass plain numbers, strings, lists or dicts (e.g. str() a Path)"
            ) from err
    return json.loads(json.dumps(schedule, sort_keys=True))


def write_schedule_marker(
    checkpoint_dir: str | os.PathLike[str], schedule: dict[str, Any], step: int
) -> Path:
    """Atomically write ``nexus_schedule.json`` into a checkpoint folder, marking it complete.

    Args:
        checkpoint_dir: the ``checkpoint-N`` folder the Trainer just wrote.
        schedule: the run's schedule mapping (JSON values).
        step: the global step the checkpoint holds.

    Returns:
        The path of the marker file.

    Raises:
        FileNotFoundError: ``checkpoint_dir`` does not exist.
    """
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder}: checkpoint folder not found; the marker is written right after the Trainer saves it"
        )
    record = {"step": int(step), "schedule": normalize_schedule(schedule)}
    payload = json.dumps(record, indent=2, sort_keys=True)
    target = folder / SCHEDULE_FILE
    fd, tmp = tempfile.mkstemp(prefix=f".{SCHEDULE_FILE}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(payload + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read_schedule_marker(checkpoint_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Read a checkpoint's marker.

    Args:
        checkpoint_dir: a ``checkpoint-N`` folder.

    Returns:
        ``{"step": int, "schedule": dict}``, or None when the marker is absent or unreadable
        (the checkpoint is then incomplete).
    """
    marker = Path(checkpoint_dir) / SCHEDULE_FILE
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        log.warning("Unreadable %s (%s): treating %s as incomplete", marker, err, checkpoint_dir)
        return None
    if not isinstance(data, dict) or not isinstance(data.get("schedule"), dict):
        log.warning("Malformed %s: treating %s as incomplete", marker, checkpoint_dir)
        return None
    return data


def list_checkpoints(output_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """All ``checkpoint-N`` folders in ``output_dir``, newest (highest N) first.

    Args:
        output_dir: the Trainer's ``output_dir``.

    Returns:
        ``(N, path)`` pairs sorted by N descending; empty when the folder does not exist.
    """
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _CHECKPOINT_RE.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found, key=lambda item: item[0], reverse=True)


_MISSING = "<unset>"


def _describe_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    changes = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key, _MISSING), new.get(key, _MISSING)
        if before != after:
            changes.append(f"{key} {before!r}→{after!r}")
    return changes


def find_resume_checkpoint(output_dir: str | os.PathLike[str], schedule: dict[str, Any]) -> Path | None:
    """The newest complete checkpoint to resume from, checked against the current schedule.

    Folders without ``nexus_schedule.json`` (the run died while saving them) are skipped with a
    warning.

    Args:
        output_dir: the Trainer's ``output_dir``, holding ``checkpoint-N`` folders.
        schedule: the schedule of the run about to start (the same dict given to the controller).

    Returns:
        The newest complete checkpoint folder, or None when there is none (start from scratch).

    Raises:
        ScheduleChangedError: the newest complete checkpoint recorded a different schedule; the
            message names each changed key with its old→new values and says how to proceed.
    """
    current = normalize_schedule(schedule)
    for step, folder in list_checkpoints(output_dir):
        marker = read_schedule_marker(folder)
        if marker is None:
            log.warning(
                "Skipping incomplete checkpoint %s (no %s: the run stopped while saving it)",
                folder,
                SCHEDULE_FILE,
            )
            continue
        changes = _describe_changes(marker["schedule"], current)
        if changes:
            raise ScheduleChangedError(
                f"Cannot resume from {folder}: the schedule changed since it was saved "
                f"({', '.join(changes)}); restore those params, or delete {Path(output_dir)} to start over"
            )
        log.info("Resuming from %s (step %d)", folder, marker.get("step", step))
        return folder
    return None


def clear_checkpoints(output_dir: str | os.PathLike[str]) -> int:
    """Remove every ``checkpoint-N`` folder in ``output_dir`` (after a completed run).

    Other files (the final model, logs) are left alone.

    Args:
        output_dir: the Trainer's ``output_dir``.

    Returns:
        How many checkpoint folders were removed.
    """
    removed = 0
    for _, folder in list_checkpoints(output_dir):
        shutil.rmtree(folder)
        removed += 1
    if removed:
        log.info("Removed %d checkpoint folder(s) from %s", removed, output_dir)
    return removed
