"""Outputs written whole or not at all, with the modes a plain mkdir / open gives them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from nexus.atomic import atomic_dir, umask, write_json_atomic, write_text_atomic


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_outputs_get_the_umask_modes_not_owner_only(tmp_path: Path) -> None:
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "weights.bin").write_bytes(b"x")
    write_text_atomic("hello\n", tmp_path / "note.txt")
    assert mode(tmp_path / "out") == 0o777 & ~umask()
    assert mode(tmp_path / "note.txt") == 0o666 & ~umask()
    old = os.umask(0o077)
    try:
        write_json_atomic({"a": 1}, tmp_path / "private.json")
    finally:
        os.umask(old)
    assert mode(tmp_path / "private.json") == 0o600  # a stricter umask is honoured


def test_a_failed_block_leaves_the_previous_output_and_no_temp(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "kept.txt").write_text("previous")
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("killed mid-write")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (out / "kept.txt").read_text() == "previous"
