"""Real signals to a real train stage: pause/resume, checkpoint-now, checkpoint-and-stop, resume."""

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

from tests.project import copy_project, edit_params, env, run, tiny_params

STEPS = 40


class StageProcess:
    """`python stages/train.py` in the background, its output lines collected as they come."""

    def __init__(self, repo):
        self.proc = subprocess.Popen(
            [sys.executable, "stages/train.py", "--capability", "cot", "--out", "models/capabilities/cot"],
            cwd=repo, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self._queue.put(line)

    def _drain(self):
        while not self._queue.empty():
            self.lines.append(self._queue.get())

    def wait_for(self, pattern: str, timeout: float = 120) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._drain()
            for line in self.lines:
                if match := re.search(pattern, line):
                    return match
            if self.proc.poll() is not None and self._queue.empty():
                break
            time.sleep(0.05)
        self._drain()
        raise AssertionError(f"no line matching {pattern!r}:\n{''.join(self.lines[-40:])}")

    def steps_logged(self) -> int:
        self._drain()
        return sum(1 for line in self.lines if line.startswith("{'loss'"))


def test_signals_drive_a_real_training_run(tmp_path, tiny_model_dir):
    repo = copy_project(tmp_path / "project")
    tiny_params(repo, tiny_model_dir, steps=STEPS)
    edit_params(repo, controller__checkpoint_every_steps=1000)  # only signals make checkpoints
    run(repo, "dvc", "repro", "organize", "detect")

    stage = StageProcess(repo)
    pid = stage.proc.pid
    stage.wait_for(rf"PID {pid}: kill -USR1 {pid}")
    stage.wait_for(r"^\{'loss'")

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
