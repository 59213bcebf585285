"""Real signals to a real train stage: pause/resume, checkpoint-now, checkpoint-and-stop, resume; and
signals at the edges: during start-up (before the model loads) and during the final save."""

import json
import os
import re
import signal
import sys
import time

from tests.project import Background, copy_project, edit_params, run, tiny_params

STEPS = 40


class StageProcess(Background):
    """`python stages/train.py` in the background (see :class:`tests.project.Background`)."""

    def __init__(self, repo, triggers: tuple[tuple[str, int], ...] = ()):
        super().__init__(repo, [sys.executable, "stages/train.py", "--capability", "cot", "--out",
                                "models/capabilities/cot"], triggers)

    def steps_logged(self) -> int:
        return self.count(STEP_LINE)


STEP_LINE = re.compile(r"train cot: step \d+/\d+ ")  # one per step below 40 steps (nexus.train_progress)


def test_signals_drive_a_real_training_run(tmp_path, tiny_model_dir):
    repo = copy_project(tmp_path / "project")
    tiny_params(repo, tiny_model_dir, steps=STEPS)
    edit_params(repo, controller__checkpoint_every_steps=1000)  # only signals make checkpoints
    run(repo, "dvc", "repro", "organize", "detect")

    stage = StageProcess(repo)
    pid = stage.proc.pid
    stage.wait_for(rf"PID {pid}: kill -USR1 {pid}")
    stage.wait_for(STEP_LINE.pattern)

    os.kill(pid, signal.SIGUSR1)
    paused_at = int(stage.wait_for(r"Paused at step (\d+) \(SIGUSR1 to resume\)").group(1))
    logged = stage.steps_logged()
    time.sleep(2.0)
    assert stage.proc.poll() is None, "paused process must stay alive"
    assert stage.steps_logged() == logged, "no step may run while paused"
    os.kill(pid, signal.SIGUSR1)
    assert int(stage.wait_for(r"Resumed at step (\d+)").group(1)) == paused_at

    os.kill(pid, signal.SIGUSR2)
    saved = int(stage.wait_for(r"Checkpoint saved: \S*checkpoint-(\d+)").group(1))
    checkpoints = repo / "checkpoints" / "cot"
    assert (checkpoints / f"checkpoint-{saved}" / "nexus_schedule.json").is_file()
    assert stage.proc.poll() is None, "SIGUSR2 must not stop training"

    os.kill(pid, signal.SIGTERM)
    assert stage.proc.wait(timeout=120) == 143
    stage.wait_for(r"stopped by SIGTERM at step (\d+)")
    stopped = max(int(p.name.split("-")[1]) for p in checkpoints.glob("checkpoint-*"))
    assert saved <= stopped < STEPS
    assert (checkpoints / f"checkpoint-{stopped}" / "nexus_schedule.json").is_file()
    assert not (repo / "models" / "capabilities" / "cot").exists(), "an interrupted stage must not leave an output"

    edit_params(repo, capabilities__cot__max_steps=STEPS + 10)
    refused = run(repo, sys.executable, "stages/train.py", "--capability", "cot", "--out", "models/capabilities/cot",
                  check=False)
    assert refused.returncode == 1
    assert re.search(rf"max_steps {STEPS}\s*(->|→)\s*{STEPS + 10}", refused.stderr), refused.stderr
    assert "error:" in refused.stderr and "delete checkpoints/cot" in refused.stderr

    edit_params(repo, capabilities__cot__max_steps=STEPS)
    resumed = run(repo, sys.executable, "stages/train.py", "--capability", "cot", "--out", "models/capabilities/cot")
    assert f"checkpoint-{stopped}" in resumed.stderr and "resuming from" in resumed.stderr
    card = json.loads((repo / "models" / "capabilities" / "cot" / "run_card.json").read_text())
    assert card["steps"] == STEPS
    assert not list(checkpoints.glob("checkpoint-*")), "checkpoints are cleared after a complete run"


def test_signals_during_start_up_and_the_final_save_never_kill_the_stage(tmp_path, tiny_model_dir):
    steps = 4
    repo = copy_project(tmp_path / "project")
    tiny_params(repo, tiny_model_dir, steps=steps)
    run(repo, "dvc", "repro", "organize", "detect")
    checkpoints, out = repo / "checkpoints" / "cot", repo / "models" / "capabilities" / "cot"
    starting = r"cot: starting \(PID \d+\): loading the tokenizer"  # logged before the model loads

    # SIGTERM during start-up: exit 143 at once, nothing written.
    stage = StageProcess(repo, triggers=((starting, signal.SIGTERM),))
    assert stage.proc.wait(timeout=120) == 143
    stage.wait_for(r"SIGTERM during start-up: stopping before training \(nothing to checkpoint\)")
    assert stage.steps_logged() == 0
    assert not list(checkpoints.glob("checkpoint-*")) and not out.exists()

    # SIGUSR1 during start-up: paused at the first step boundary, until the second SIGUSR1.
    last, saving = rf"Checkpoint saved: \S*checkpoint-{steps}$", rf"training finished at step {steps}; saving"
    triggers = ((starting, signal.SIGUSR1), (last, signal.SIGUSR1), (saving, signal.SIGUSR1), (saving, signal.SIGTERM))
    stage = StageProcess(repo, triggers=triggers)
    stage.wait_for(r"Paused at step 1 \(SIGUSR1 to resume\)")
    logged = stage.steps_logged()  # step 1's loss line comes after the boundary: 0 or 1
    time.sleep(1.0)
    assert stage.proc.poll() is None and stage.steps_logged() == logged <= 1, "no step may run while paused"
    os.kill(stage.proc.pid, signal.SIGUSR1)
    stage.wait_for(r"Resumed at step 1")
    # Sent by the reader thread the moment the line comes: SIGUSR1 at the last step boundary, then
    # SIGUSR1 and SIGTERM during the final save. The save goes on and the stage ends normally.
    assert stage.proc.wait(timeout=120) == 0, "".join(stage.lines[-30:])
    stage.wait_for(rf"SIGUSR1 at the last step \({steps}\): training already finished; pause ignored")
    stage.wait_for(r"SIGUSR1: training already finished; pause ignored")
    stage.wait_for(r"SIGTERM: training already finished; the final save completes first")
    card = json.loads((out / "run_card.json").read_text())
    assert card["steps"] == steps and stage.steps_logged() == steps
    assert not list(checkpoints.glob("checkpoint-*"))
