"""The embedded SmolLM2-135M-Instruct through the whole pipeline (slow: run with -F)."""

import json
import sys

import pytest

from tests.project import copy_project, run

pytestmark = [pytest.mark.slow, pytest.mark.real_model]


def test_make_train_cot_quick_on_the_embedded_default(tmp_path):
    repo = copy_project(tmp_path / "project")
    result = run(repo, "make", "train", "CAPS=cot", "QUICK=1", f"VENV={sys.prefix}", "SKIP_INSTALL=1",
                 timeout=1800)
    assert "Running stage 'base_model'" in result.stdout
    assert "cot accuracy: base " in result.stdout
    card = json.loads((repo / "models" / "capabilities" / "cot" / "run_card.json").read_text())
    assert card["steps"] == 10 and card["quick"] is True
    noop = run(repo, "dvc", "repro", "train@cot", "eval@cot")  # what make train ran, and all upstream
    ran = [line for line in noop.stdout.splitlines() if line.startswith("Running stage")]
    assert ran == ["Running stage 'organize':"], noop.stdout  # the rescan, always run, found nothing new
    assert "unchanged since the last run" in noop.stdout
