"""The malformed-input corpus (tests/malformed.py) dropped into data/raw next to real data.

`nexus organize` (a real process, with a deadline so a hang fails the test instead of stalling the
suite) must judge every file alone: no traceback, every bad file unplaced with a reason naming it,
the real file placed. And a failed run, under DVC too, must leave the previous output in place.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nexus.walk import one_line
from tests.malformed import CORPUS, restore_permissions, write_corpus
from tests.project import copy_project, git, run

ROOT = Path(__file__).resolve().parents[2]
# Real data: the first 500 GSM8K training records (data/samples/gsm8k/SOURCE.md: source, license).
GOOD = ROOT / "data" / "samples" / "gsm8k" / "train_first500.jsonl"
NEXUS = Path(sys.executable).parent / "nexus"
DEADLINE_S = 120  # organize takes about a second here; only a hang gets near this


def _organize(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(NEXUS), "organize", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=DEADLINE_S)


@pytest.fixture
def project(tmp_path):
    """A folder with params.yaml scanning data/raw: the corpus under data/raw/hostile, the real
    GSM8K sample under data/raw/gsm8k."""
    raw = tmp_path / "data" / "raw"
    entries = write_corpus(raw / "hostile")
    (raw / "gsm8k").mkdir()
    shutil.copy(GOOD, raw / "gsm8k" / "train_first500.jsonl")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"organize": {"sources": ["data/raw"]}}),
                                          encoding="utf-8")
    yield tmp_path, entries
    restore_permissions(raw / "hostile")


def test_every_malformed_file_is_judged_alone(project):
    cwd, entries = project
    assert len(entries) >= len(CORPUS) - 3  # at most the platform-dependent ones left out
    result = _organize(cwd, "--out", "data/organized")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output

    catalog = json.loads((cwd / "data" / "organized" / "catalog.json").read_text(encoding="utf-8"))
    by_path = {f["path"]: f for f in catalog["files"]}
    good = by_path.pop("data/raw/gsm8k/train_first500.jsonl")
    assert (good["status"], good["format"], good["records"], good["usable"]) == ("placed", "gsm8k", 500, 500)
    summary = result.stdout.splitlines()
    for entry in entries:
        path = f"data/raw/hostile/{entry.name}"
        found = by_path.pop(path)
        assert found["status"] == entry.status, (entry.name, entry.what, found["why"])
        said = found["why"] if entry.status == "unplaced" else " ".join(found["problems"])
        missing = [word for word in entry.expect if word not in said]
        assert not missing, (entry.name, entry.what, said)
        if entry.status == "unplaced":  # on the console too, one line naming the file
            assert f"  {one_line(path)}: {found['why']}" in summary, entry.name
    assert by_path == {}  # nothing else was listed (locked_dir's file was not entered)

    cot = json.loads((cwd / "data" / "organized" / "cot" / "manifest.json").read_text(encoding="utf-8"))
    placed_qa = {f"data/raw/hostile/{e.name}" for e in entries if e.status == "placed" and e.name.endswith(".jsonl")}
    assert {f["path"] for f in cot["files"]} == {"data/raw/gsm8k/train_first500.jsonl", *placed_qa}
    assert all(f["usable"] == f["records"] and f["invalid"] == 0 for f in cot["files"])
    streaming = json.loads((cwd / "data" / "organized" / "streaming" / "manifest.json").read_text(encoding="utf-8"))
    shared = next(f for f in streaming["files"] if f["path"].endswith("conversations_string.json"))
    assert (shared["records"], shared["usable"], shared["invalid"]) == (6, 5, 1)
    assert not any(n.startswith(".") for n in os.listdir(cwd / "data"))  # no temp folder left


def test_a_failed_run_leaves_the_previous_output(project):
    cwd, _ = project
    assert _organize(cwd, "--out", "data/organized").returncode == 0
    out = cwd / "data" / "organized"
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    params = cwd / "params.yaml"
    params.write_text(yaml.safe_dump({"organize": {"sources": ["data/raw"], "head_records": 0}}),
                      encoding="utf-8")
    failed = _organize(cwd, "--out", "data/organized")
    assert failed.returncode == 1 and failed.stderr.startswith("error: head_records must be at least 1")
    assert "Traceback" not in failed.stderr
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(n for n in os.listdir(cwd / "data")) == ["organized", "raw"]


@pytest.mark.slow
def test_dvc_repro_organize_survives_a_fifo_and_keeps_its_output_on_failure(tmp_path):
    """The real `dvc repro organize` in a copy of the project: a FIFO and the corpus in data/raw
    neither hang DVC's hashing nor the organizer; a failing rerun keeps data/organized."""
    repo = copy_project(tmp_path / "project")
    hostile = repo / "data" / "raw" / "hostile"
    try:
        entries = write_corpus(hostile)
        first = run(repo, "dvc", "repro", "organize", timeout=DEADLINE_S * 2)
        assert "Traceback" not in first.stdout + first.stderr
        out = repo / "data" / "organized"
        catalog = json.loads((out / "catalog.json").read_text(encoding="utf-8"))
        why = {f["path"]: f["why"] for f in catalog["files"]}
        assert "FIFO" in why["data/raw/hostile/pipe.jsonl"]
        assert len([p for p in why if p.startswith("data/raw/hostile/")]) == len(entries)
        before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

        again = run(repo, "dvc", "repro", "organize", timeout=DEADLINE_S * 2)
        assert "Running stage 'organize'" in again.stdout  # always_changed: it rescans data/raw

        params = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
        params["organize"]["head_records"] = 0
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
        git(repo, "commit", "-qam", "a broken setting")
        failed = run(repo, "dvc", "repro", "organize", check=False, timeout=DEADLINE_S * 2)
        assert failed.returncode != 0 and "head_records must be at least 1" in failed.stdout + failed.stderr
        assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    finally:
        restore_permissions(hostile)
