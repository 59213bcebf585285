"""The kill drill (benchmarks/kill_drill.py), short: SIGKILLs at start-up, during training, while a
checkpoint is written, during rotation and during the final save, each followed by a rerun."""

import json
import subprocess
import sys

import pytest

from tests.project import ROOT, env

pytestmark = pytest.mark.slow


def test_kills_at_random_moments_lose_at_most_one_save_interval_and_change_nothing(tmp_path):
    out = tmp_path / "drill.json"
    cmd = [sys.executable, "benchmarks/kill_drill.py", "--kills", "5", "--steps", "20", "--save-every", "2",
           "--seed", "3", "--json", str(out)]
    result = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=1800, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    figures = json.loads(out.read_text())
    summary, kills = figures["summary"], figures["kills"]
    assert summary["kills"] == len(kills) == 5
    assert {k["aimed_at"] for k in kills} == {"start-up", "training", "checkpoint", "rotation", "final-save"}
    assert summary["corrupt_checkpoints"] == 0
    assert all(k["step_at_kill"] - k["resumed_from"] <= 2 for k in kills)
    assert summary["weights_equal"] and summary["tensors"] > 0
    # Resume accounting: no extra step, losses and the loss curve continuous with the interrupted runs.
    assert summary["steps"] == 20 and summary["losses_equal"]
    assert summary["reruns_at_max_steps_without_a_step"] >= 1  # after the final-save kill
    assert summary["curve_steps"] == 20 and summary["curve_repeats"] == 0 and summary["curve_equal"]
    assert summary["temps_left"] == 0
    assert "done when (zero corrupt, <= one save interval lost per kill, identical weights): met" in result.stdout
