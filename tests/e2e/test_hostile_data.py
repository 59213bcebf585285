"""Issue 9's "done when": hostile files in data/raw next to good ones, and `make train` still trains.

The malformed corpus (tests/malformed.py: FIFO, symlinks out and looping, unreadable, binary,
UTF-16, NaN, deep nesting, `../` media paths, string labels, ...) goes into ``data/raw/hostile``
and real GSM8K records (data/samples/gsm8k/SOURCE.md) into ``data/raw/gsm8k``. ``make train
CAPS=cot QUICK=1`` (tiny model) must complete without a traceback or a hang, train on the good
files, and leave a catalog naming every bad file with its reason.
"""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from tests.malformed import restore_permissions, write_corpus
from tests.project import ROOT, copy_project, git, run, tiny_params

GOOD = ROOT / "data" / "samples" / "gsm8k" / "train_first500.jsonl"


@pytest.mark.slow
def test_make_train_with_hostile_files_in_data_raw(tmp_path, tiny_model_dir):
    repo = copy_project(tmp_path / "project")
    tiny_params(repo, tiny_model_dir, steps=2)
    git(repo, "commit", "-qam", "tiny model")
    raw = repo / "data" / "raw"
    entries = write_corpus(raw / "hostile")
    (raw / "gsm8k").mkdir()
    shutil.copy(GOOD, raw / "gsm8k" / "train_first500.jsonl")
    try:
        result = run(repo, "make", "train", "CAPS=cot", "QUICK=1", f"VENV={sys.prefix}", "SKIP_INSTALL=1",
                     timeout=900)
    finally:
        restore_permissions(raw / "hostile")
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert "cot accuracy: base " in result.stdout

    catalog = json.loads((repo / "data" / "organized" / "catalog.json").read_text())
    by_path = {f["path"]: f for f in catalog["files"]}
    for entry in entries:
        found = by_path[f"data/raw/hostile/{entry.name}"]
        assert found["status"] == entry.status, (entry.name, found["why"])
        if entry.status == "unplaced":
            assert found["why"], entry.name
    card = json.loads((repo / "models" / "capabilities" / "cot" / "run_card.json").read_text())
    sources = set(card["data_files"])
    assert "data/raw/gsm8k/train_first500.jsonl" in sources
    bad = {f"data/raw/hostile/{e.name}" for e in entries if e.status == "unplaced"}
    assert not sources & bad, sources & bad
