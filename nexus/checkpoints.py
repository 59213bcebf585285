"""Checkpoint completeness and resume: which ``checkpoint-N`` folder a run may continue from.

A checkpoint folder counts as complete only when :class:`nexus.controller.TrainingController` has
written ``nexus_schedule.json`` into it (after the Trainer finished writing everything else) *and*
every file that marker lists is still there as it was written. The marker records:

- the run's *schedule* (the params that shape the optimizer and LR schedule: steps, epochs,
  learning rate, batch size, data fingerprint, ...), so that resuming with changed params is
  refused instead of silently reusing the old schedule;
- every file of the folder (adapter or model weights, ``optimizer.pt``, ``scheduler.pt``,
  ``trainer_state.json``, ``rng_state*.pth``, tokenizer and config files: whatever the Trainer
  wrote) with its size and, for weights and every file up to :data:`HASH_LIMIT_BYTES`, its
  sha256.

What verification catches, honestly: a missing file, a truncated or extended file, and changed
bytes in any hashed file (all weights; for a LoRA run every file, optimizer included). A
same-size corruption of a large unhashed file (the ``optimizer.pt`` of a full fine-tune over
64 MiB) passes: those are checked by size only, to keep a save from re-reading gigabytes. The
folder chosen for a resume is hashed in full; rotation checks the kept fallback by size only.

Rotation is Nexus's, not the Trainer's (``save_total_limit`` stays ``None``): after a marker is
written and its folder verified, :func:`rotate_checkpoints` removes the older folders except the
newest verified fallback, ordered by step number, never by mtime. A folder is removed by first
renaming it to ``.checkpoint-N.removing.tmp`` (so it is either whole or not a checkpoint any
more), then deleting it; :func:`remove_orphans` clears what a kill leaves of such folders, of the
Trainer's ``tmp-checkpoint-N`` folders and of :func:`nexus.atomic.atomic_dir`'s
``.<name>.*.tmp`` folders beside the final output.

No torch import here: the standard library and nexus.atomic only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from nexus.atomic import leftover_temps, write_text_atomic

__all__ = [
    "HASH_LIMIT_BYTES",
    "KEEP_CHECKPOINTS",
    "SCHEDULE_FILE",
    "IncompleteCheckpointError",
    "ScheduleChangedError",
    "checkpoint_manifest",
    "checkpoint_problem",
    "checkpoint_progress",
    "clear_checkpoints",
    "discard_checkpoint",
    "find_resume_checkpoint",
    "list_checkpoints",
    "normalize_schedule",
    "read_schedule_marker",
    "remove_orphans",
    "rotate_checkpoints",
    "tidy_checkpoints",
    "write_schedule_marker",
]

SCHEDULE_FILE = "nexus_schedule.json"
CHECKPOINT_PREFIX = "checkpoint-"
KEEP_CHECKPOINTS = 2  # the newest verified checkpoint and one verified fallback
HASH_LIMIT_BYTES = 64 * 2**20  # files up to this size are hashed; larger ones only if weights
WEIGHT_SUFFIXES = (".safetensors", ".bin")
TRAINER_STATE = "trainer_state.json"
WEIGHT_FILES = (  # one of these (or a sharded index) is what Trainer._load_from_checkpoint loads
    "adapter_model.safetensors", "adapter_model.bin", "model.safetensors", "pytorch_model.bin",
    "model.safetensors.index.json", "pytorch_model.bin.index.json",
)
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
_REMOVING_RE = re.compile(r"^\.checkpoint-\d+\.removing\.tmp$")  # discard_checkpoint's rename
_TRAINER_TMP_RE = re.compile(r"^tmp-checkpoint-\d+$")  # the Trainer's staging folder (older releases)

log = logging.getLogger(__name__)


class ScheduleChangedError(ValueError):
    """The newest complete checkpoint was trained with a different schedule than the one asked for."""


class IncompleteCheckpointError(ValueError):
    """A checkpoint folder lacks what a resume needs (trainer state or weights): it is not marked."""


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


def _hashed(name: str, size: int) -> bool:
    return size <= HASH_LIMIT_BYTES or name.endswith(WEIGHT_SUFFIXES)


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def checkpoint_manifest(checkpoint_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Every file of a checkpoint folder (subfolders included) with its size and, where hashed, sha256.

    The marker itself and marker temporaries are left out.

    Args:
        checkpoint_dir: a ``checkpoint-N`` folder.

    Returns:
        ``{relative posix path: {"size": bytes, "sha256": hex}}``; ``sha256`` is absent for a large
        file that is not weights (see :data:`HASH_LIMIT_BYTES`).
    """
    folder = Path(checkpoint_dir)
    files: dict[str, dict[str, Any]] = {}
    marker_temps = set(leftover_temps(folder / SCHEDULE_FILE))  # a marker write killed mid-way
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.is_symlink() or path.name == SCHEDULE_FILE or path in marker_temps:
            continue
        size = path.stat().st_size
        entry: dict[str, Any] = {"size": size}
        if _hashed(path.name, size):
            entry["sha256"] = _sha256(path)
        files[path.relative_to(folder).as_posix()] = entry
    return files


def _missing_for_resume(names: set[str]) -> list[str]:
    missing = [] if TRAINER_STATE in names else [TRAINER_STATE]
    if not any(name in names for name in WEIGHT_FILES):
        missing.append(f"weights (one of {', '.join(WEIGHT_FILES[:4])})")
    return missing


def write_schedule_marker(
    checkpoint_dir: str | os.PathLike[str], schedule: dict[str, Any], step: int
) -> Path:
    """Atomically write ``nexus_schedule.json`` into a checkpoint folder, marking it complete.

    The marker lists :func:`checkpoint_manifest` of the folder as it is now, so call it only once
    the Trainer has written every file.

    Args:
        checkpoint_dir: the ``checkpoint-N`` folder the Trainer just wrote.
        schedule: the run's schedule mapping (JSON values).
        step: the global step the checkpoint holds.

    Returns:
        The path of the marker file.

    Raises:
        FileNotFoundError: ``checkpoint_dir`` does not exist.
        IncompleteCheckpointError: the folder holds no trainer state or no weights.
    """
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder}: checkpoint folder not found; the marker is written right after the Trainer saves it"
        )
    files = checkpoint_manifest(folder)
    missing = _missing_for_resume({Path(name).name for name in files})
    if missing:
        raise IncompleteCheckpointError(f"{folder}: no {' and no '.join(missing)}; not marked complete")
    record = {"step": int(step), "schedule": normalize_schedule(schedule), "files": files}
    write_text_atomic(json.dumps(record, indent=2, sort_keys=True) + "\n", folder / SCHEDULE_FILE, sync=True)
    return folder / SCHEDULE_FILE


def read_schedule_marker(checkpoint_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Read a checkpoint's marker.

    Args:
        checkpoint_dir: a ``checkpoint-N`` folder.

    Returns:
        ``{"step": int, "schedule": dict, "files": dict}``, or None when the marker is absent or
        unreadable (the checkpoint is then incomplete).
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


def _file_problem(folder: Path, name: str, entry: Any, hashes: bool) -> str | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("size"), int):
        return f"{SCHEDULE_FILE} has a malformed entry for {name}"
    path = folder / name
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return f"{name} is missing"
    if size != entry["size"]:
        return f"{name} is {size} bytes, {entry['size']} when the checkpoint was marked"
    if hashes and "sha256" in entry and _sha256(path) != entry["sha256"]:
        return f"{name} does not match its sha256 in {SCHEDULE_FILE}"
    return None


def checkpoint_problem(
    checkpoint_dir: str | os.PathLike[str], hashes: bool = True, marker: dict[str, Any] | None = None
) -> str | None:
    """Why a checkpoint folder cannot be resumed from, or None when it verifies complete.

    Args:
        checkpoint_dir: a ``checkpoint-N`` folder.
        hashes: also compare the sha256 of every hashed file (False: sizes only, the fast path).
        marker: the folder's marker when already read (default: read it).

    Returns:
        A short reason ("no nexus_schedule.json ...", "adapter_model.safetensors is missing", ...)
        or None.
    """
    folder = Path(checkpoint_dir)
    marker = marker if marker is not None else read_schedule_marker(folder)
    if marker is None:
        return f"no valid {SCHEDULE_FILE}: the run stopped while saving it"
    files = marker.get("files")
    if not isinstance(files, dict) or not files:
        return f"{SCHEDULE_FILE} lists no files (written by an older Nexus); it cannot be verified"
    missing = _missing_for_resume({Path(name).name for name in files})
    if missing:
        return f"{SCHEDULE_FILE} lists no {' and no '.join(missing)}"
    for name, entry in files.items():
        problem = _file_problem(folder, name, entry, hashes)
        if problem:
            return problem
    return None


def checkpoint_progress(checkpoint_dir: str | os.PathLike[str]) -> tuple[int, int]:
    """``(global_step, max_steps)`` from a checkpoint's ``trainer_state.json``.

    Raises:
        ValueError: the file is missing or unreadable; the message names it.
    """
    path = Path(checkpoint_dir) / TRAINER_STATE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        return int(state["global_step"]), int(state["max_steps"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: unreadable trainer state ({err})") from err


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
    """The newest verified checkpoint to resume from, checked against the current schedule.

    Folders that do not verify (no marker: the run died while saving; or a listed file missing,
    resized or with another sha256) are skipped with a warning naming the reason, and the next
    older one is tried.

    Args:
        output_dir: the Trainer's ``output_dir``, holding ``checkpoint-N`` folders.
        schedule: the schedule of the run about to start (the same dict given to the controller).

    Returns:
        The newest verified checkpoint folder, or None when there is none (start from scratch).

    Raises:
        ScheduleChangedError: the newest verified checkpoint recorded a different schedule; the
            message names each changed key with its old→new values and says how to proceed.
    """
    current = normalize_schedule(schedule)
    for step, folder in list_checkpoints(output_dir):
        marker = read_schedule_marker(folder)
        problem = checkpoint_problem(folder, marker=marker)
        if problem:
            log.warning("Skipping incomplete checkpoint %s (%s)", folder, problem)
            continue
        assert marker is not None  # checkpoint_problem found it
        changes = _describe_changes(marker["schedule"], current)
        if changes:
            raise ScheduleChangedError(
                f"Cannot resume from {folder}: the schedule changed since it was saved "
                f"({', '.join(changes)}); restore those params, or delete {Path(output_dir)} to start over"
            )
        log.info("Resuming from %s (step %d)", folder, marker.get("step", step))
        return folder
    return None


def discard_checkpoint(checkpoint_dir: str | os.PathLike[str]) -> None:
    """Remove a checkpoint folder so that a kill midway never leaves a partial ``checkpoint-N``.

    The folder is renamed to ``.checkpoint-N.removing.tmp`` first (one atomic step), then deleted;
    :func:`remove_orphans` finishes a deletion a kill interrupted.
    """
    folder = Path(checkpoint_dir)
    trash = folder.with_name(f".{folder.name}.removing.tmp")
    if trash.exists():
        shutil.rmtree(trash)
    try:
        os.replace(folder, trash)
    except FileNotFoundError:  # already gone (another process removed it)
        return
    shutil.rmtree(trash)


def rotate_checkpoints(
    output_dir: str | os.PathLike[str], newest: str | os.PathLike[str], keep: int = KEEP_CHECKPOINTS
) -> list[Path]:
    """After ``newest`` was marked, remove the checkpoints older than it, keeping ``keep`` in all.

    Nothing is removed unless ``newest`` verifies complete (sizes and hashes). The kept fallbacks
    are the newest older folders that pass the size check; older folders that fail it go too.
    Order is by step number, never by mtime; folders newer than ``newest`` are left alone.

    Args:
        output_dir: the Trainer's ``output_dir``.
        newest: the checkpoint folder just marked.
        keep: how many checkpoints to keep, ``newest`` included (at least 1).

    Returns:
        The folders removed.
    """
    newest = Path(newest)
    problem = checkpoint_problem(newest)
    if problem:
        log.warning("Keeping every older checkpoint: %s does not verify (%s)", newest, problem)
        return []
    match = _CHECKPOINT_RE.match(newest.name)
    newest_step = int(match.group(1)) if match else -1
    kept, removed = 1, []
    for step, folder in list_checkpoints(output_dir):
        if step >= newest_step:
            continue
        if kept < keep and checkpoint_problem(folder, hashes=False) is None:
            kept += 1
            continue
        discard_checkpoint(folder)
        removed.append(folder)
    if removed:
        log.info("Removed older checkpoint(s): %s", ", ".join(f.name for f in removed))
    return removed


def remove_orphans(
    checkpoints_dir: str | os.PathLike[str], output: str | os.PathLike[str] | None = None
) -> list[Path]:
    """Remove what a killed run left behind, matching only Nexus's and the Trainer's temp names.

    In ``checkpoints_dir``: ``.checkpoint-N.removing.tmp`` (an interrupted rotation),
    ``tmp-checkpoint-N`` (the Trainer's staging folder) and ``.nexus_schedule.json.*.tmp`` inside
    ``checkpoint-N`` folders. Beside ``output``: the ``.<name>.*.tmp`` folders of
    :func:`nexus.atomic.atomic_dir` (a kill during the final save).

    Args:
        checkpoints_dir: the Trainer's ``output_dir``.
        output: the stage's final output folder (e.g. ``models/capabilities/cot``).

    Returns:
        The paths removed (each is logged).
    """
    found: list[Path] = []
    root = Path(checkpoints_dir)
    if root.is_dir():
        for child in root.iterdir():
            if child.is_dir() and (_REMOVING_RE.match(child.name) or _TRAINER_TMP_RE.match(child.name)):
                found.append(child)
        for _, folder in list_checkpoints(root):
            found += [f for f in leftover_temps(folder / SCHEDULE_FILE) if f.is_file()]
    if output is not None:
        found += [c for c in leftover_temps(output) if c.is_dir()]
    for path in found:
        log.warning("Removing %s, left by a run that was killed", path)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return found


def tidy_checkpoints(
    checkpoints_dir: str | os.PathLike[str], resume: str | os.PathLike[str] | None,
    output: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """At train start: :func:`remove_orphans`, then the folders newer than ``resume``.

    Those failed verification (:func:`find_resume_checkpoint` chose ``resume`` over them) and the
    Trainer would write into them again at their step; with ``resume`` None every folder goes.

    Returns:
        The paths removed.
    """
    removed = remove_orphans(checkpoints_dir, output)
    match = _CHECKPOINT_RE.match(Path(resume).name) if resume is not None else None
    after = int(match.group(1)) if match else -1
    for step, folder in list_checkpoints(checkpoints_dir):
        if step > after:
            log.warning("Removing %s: it does not verify, and training passes step %d again", folder, step)
            discard_checkpoint(folder)
            removed.append(folder)
    return removed


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
        discard_checkpoint(folder)
        removed += 1
    if removed:
        log.info("Removed %d checkpoint folder(s) from %s", removed, output_dir)
    return removed

