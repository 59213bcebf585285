"""Write outputs whole or not at all: a temporary sibling, then a rename."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def umask() -> int:
    """The process's file-creation mask (read without changing it for longer than the call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def as_created(path: Path, directory: bool) -> Path:
    """Give a ``mkdtemp`` / ``mkstemp`` path (owner-only, 0700 / 0600) the mode a plain
    ``mkdir`` / ``open`` would have given it, so outputs renamed into place are not owner-only."""
    os.chmod(path, (0o777 if directory else 0o666) & ~umask())
    return path


def normal_modes(folder: str | os.PathLike[str]) -> int:
    """Give every file and folder under ``folder`` the mode ``open`` / ``mkdir`` give under the
    process's umask (0644 / 0755 under 022): safetensors writes weights through an owner-only
    temporary file (0600), which a shared machine, a container user or a web server cannot read.

    Returns:
        How many paths were changed.
    """
    changed = 0
    for path in Path(folder).rglob("*"):
        if path.is_symlink():
            continue
        before = path.stat().st_mode & 0o777
        if as_created(path, path.is_dir()).stat().st_mode & 0o777 != before:
            changed += 1
    return changed


@contextmanager
def atomic_dir(out: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``out`` when the block succeeds.

    On an exception the temporary folder is removed and ``out`` is left as it was. Before the
    rename every path in it gets the umask modes (:func:`normal_modes`).
    """
    final = Path(out)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = as_created(Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)), True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    normal_modes(tmp)  # what the block wrote through owner-only temp files (safetensors) included
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


def leftover_temps(out: str | os.PathLike[str]) -> list[Path]:
    """The temporary siblings (``.<name>.<random>.tmp``) that :func:`atomic_dir` and
    :func:`write_text_atomic` leave beside ``out`` when the process is killed before the rename."""
    final = Path(out)
    if not final.parent.is_dir():
        return []
    pattern = re.compile(rf"^\.{re.escape(final.name)}\.[A-Za-z0-9_]+\.tmp$")
    return sorted(p for p in final.parent.iterdir() if not p.is_symlink() and pattern.match(p.name))


def write_text_atomic(text: str, out: str | os.PathLike[str], sync: bool = False) -> None:
    """Write ``text`` to ``out`` through a temporary file in the same folder and a rename; with
    ``sync`` the bytes reach the disk (fsync) before the rename."""
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    try:
        as_created(Path(tmp), False)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(data: Any, out: str | os.PathLike[str]) -> None:
    """Write ``data`` as indented JSON to ``out`` atomically."""
    write_text_atomic(json.dumps(data, indent=2, ensure_ascii=False) + "\n", out)
