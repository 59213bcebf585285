"""Write outputs whole or not at all: a temporary sibling, then a rename."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_dir(out: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``out`` when the block succeeds.

    On an exception the temporary folder is removed and ``out`` is left as it was.
    """
    final = Path(out)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


def write_text_atomic(text: str, out: str | os.PathLike[str]) -> None:
    """Write ``text`` to ``out`` through a temporary file in the same folder and a rename."""
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(data: Any, out: str | os.PathLike[str]) -> None:
    """Write ``data`` as indented JSON to ``out`` atomically."""
    write_text_atomic(json.dumps(data, indent=2, ensure_ascii=False) + "\n", out)
