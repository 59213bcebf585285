"""Kill drill: SIGKILL a real train stage at random moments, rerun it, and check what survived.

In a throw-away copy of this project (``tests/project.py``) the ``cot`` train stage
(``python stages/train.py``) is first run once without interruption (the reference), then run
again and killed with SIGKILL ``--kills`` times, each kill followed by a rerun, until a rerun
completes. The moments are drawn at random (``--seed``) from five kinds:

- ``start-up``: while the stage imports, reads data and loads the model;
- ``training``: after a random number of steps;
- ``checkpoint``: 0-15 ms after a new ``checkpoint-N`` folder appears (the Trainer is writing it);
- ``rotation``: right after the checkpoint is marked (older checkpoints are being removed);
- ``final-save``: 0-20 ms after the stage starts writing its output (the last kills).

Printed per kill: the aimed moment, the last step logged before the kill, the step the rerun
resumed from, the steps lost, the checkpoint folders found (complete, incomplete: no marker, and
corrupt: a marker but failing verification, or chosen for resume but unloadable) and the temp
folders a kill left. At the end: whether the final adapter weights equal the uninterrupted run's
(``torch.equal`` on every tensor of ``adapter_model.safetensors``), and whether the run card's
losses and the dvclive loss curve (one row per step, no repeats) equal the reference's. Run on
demand (the slow test ``tests/e2e/test_kill_drill.py`` runs a short one)::

    python benchmarks/kill_drill.py                          # tiny random Llama, 10 kills
    python benchmarks/kill_drill.py --kills 12 --steps 60 --save-every 4 --seed 1
    python benchmarks/kill_drill.py --embedded --steps 20    # the embedded SmolLM2 (slower)
    python benchmarks/kill_drill.py --json reports/kill_drill.json

Exit code 0 when the drill's "done when" holds: zero corrupt checkpoints, at most one save
interval lost per kill, identical final weights.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/project.py: the throw-away project copy

from nexus.checkpoints import (  # noqa: E402
    SCHEDULE_FILE,
    checkpoint_problem,
    list_checkpoints,
)
from tests.project import copy_project, edit_params, env, run, tiny_params  # noqa: E402

CAP = "cot"
KINDS = ("start-up", "training", "checkpoint", "rotation")
# nexus.train_progress's line: every step below 40 steps, every N//20 above (then "step at kill" is
# the last step reported, a lower bound by at most that interval).
STEP_LINE = re.compile(r"train \S+: step (\d+)/\d+ ")
TEMP_NAME = re.compile(r"^(\.checkpoint-\d+\.removing\.tmp|tmp-checkpoint-\d+|\.cot\.[A-Za-z0-9_]+\.tmp)$")


class Stage:
    """One run of the train stage, its output lines read as they come."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        cmd = [sys.executable, "stages/train.py", "--capability", CAP, "--out", f"models/capabilities/{CAP}"]
        self.proc = subprocess.Popen(cmd, cwd=repo, env={**env(), "PYTHONUNBUFFERED": "1"}, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: list[str] = []
        self.events: queue.Queue[str] = queue.Queue()
        self.steps = 0  # steps this run trained, as of its last progress line
        self.resumed: int | None = None
        self.skipped = False  # resumed at max_steps: nothing trained
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            if match := STEP_LINE.search(line):
                self.steps = int(match.group(1)) - (self.resumed or 0)
                self.events.put("step")
            elif match := re.search(r"resuming from \S*checkpoint-(\d+)", line):
                self.resumed = int(match.group(1))
                self.skipped = "nothing left to train" in line
            elif re.search(r"Checkpoint saved: ", line):
                self.events.put("marked")
            elif re.search(r"training finished at step \d+; saving", line):
                self.events.put("saving")
        self.events.put("exit")

    def wait(self, wanted: str, count: int = 1, timeout: float = 600) -> bool:
        """Wait for the ``count``-th ``wanted`` event; False when the process ended first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=0.5)
            except queue.Empty:
                continue
            if event == "exit":
                self.events.put("exit")
                return False
            if event == wanted:
                count -= 1
                if count <= 0:
                    return True
        raise TimeoutError(f"no {wanted!r} event in {timeout:.0f} s:\n{''.join(self.lines[-20:])}")

    def kill(self) -> bool:
        """SIGKILL now; False when the process had already ended."""
        if self.proc.poll() is not None:
            return False
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=60)
        return True


def _new_checkpoint(ckpt_dir: Path, before: set[str], timeout: float, stage: Stage) -> bool:
    """Poll every millisecond until a ``checkpoint-N`` folder not in ``before`` appears."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and stage.proc.poll() is None:
        if ckpt_dir.is_dir() and {p.name for p in ckpt_dir.glob("checkpoint-*")} - before:
            return True
        time.sleep(0.001)
    return False


def aim_and_kill(stage: Stage, kind: str, rng: random.Random, ckpt_dir: Path, save_every: int) -> bool:
    """Wait for a moment of ``kind`` (randomized) and SIGKILL the stage; False if it ended first."""
    if kind == "start-up":
        time.sleep(rng.uniform(0.2, 4.0))  # imports and model load take several seconds
    elif kind == "training":
        if not stage.wait("step", rng.randint(1, 2 * save_every)):
            return False
        time.sleep(rng.uniform(0, 0.3))
    elif kind == "checkpoint":
        if not stage.wait("step"):  # after start-up, which removes unverifiable folders
            return False
        before = {p.name for p in ckpt_dir.glob("checkpoint-*")}
        if not _new_checkpoint(ckpt_dir, before, 600, stage):
            return False
        time.sleep(rng.uniform(0, 0.015))
    elif kind == "rotation":
        if not stage.wait("marked", rng.randint(2, 3)):  # by then there are older folders to remove
            return False
        time.sleep(rng.uniform(0, 0.003))
    elif kind == "final-save":
        if not stage.wait("saving"):
            return False
        time.sleep(rng.uniform(0, 0.02))
    return stage.kill()


def loadable(folder: Path) -> str | None:
    """An independent check of a checkpoint (not Nexus's verifier): every tensor file loads and the
    trainer state names the folder's step. None when it would resume."""
    import torch
    from safetensors.torch import load_file

    try:
        for path in folder.glob("*.safetensors"):
            load_file(str(path))
        for path in [*folder.glob("*.pt"), *folder.glob("*.pth")]:
            torch.load(path, map_location="cpu", weights_only=False)  # this drill's own files (numpy RNG state)
        state = json.loads((folder / "trainer_state.json").read_text())
    except Exception as err:  # noqa: BLE001 - any failure means the resume would fail
        return f"{type(err).__name__}: {err}"
    if f"checkpoint-{state.get('global_step')}" != folder.name:
        return f"trainer_state.json is at step {state.get('global_step')}"
    return None


def inspect(repo: Path) -> dict[str, Any]:
    """What a kill left: checkpoint folders by state, the step a rerun resumes from, temp folders."""
    ckpt_dir, found = repo / "checkpoints" / CAP, {"complete": 0, "incomplete": 0, "corrupt": 0}
    usable = 0
    for step, folder in list_checkpoints(ckpt_dir):
        problem = checkpoint_problem(folder)
        if problem is None:
            found["complete"] += 1
            if not usable:
                usable = step
                found["corrupt"] += loadable(folder) is not None  # chosen, yet it would not load
        elif (folder / SCHEDULE_FILE).exists():
            found["corrupt"] += 1  # marked complete, yet unreadable, or a file is missing or changed
        else:
            found["incomplete"] += 1
    temps = [p for d in (ckpt_dir, repo / "models" / "capabilities") if d.is_dir() for p in d.iterdir()
             if TEMP_NAME.match(p.name)]
    done = (repo / "models" / "capabilities" / CAP / "run_card.json").is_file() and not list_checkpoints(ckpt_dir)
    return {**found, "usable": usable, "temps": len(temps), "output_complete": done}


def prepare(work: Path, args: argparse.Namespace) -> Path:
    """The project copy: tiny model (or the embedded default), a short schedule, organized data."""
    repo = copy_project(work / "project")
    if args.embedded:
        run(repo, "dvc", "repro", "base_model", timeout=1800)
        edit_params(repo, capabilities__cot__max_steps=args.steps, capabilities__cot__sample_size=64,
                    capabilities__cot__eval_size=2)
    else:
        from tests.tiny import build_tiny_llama

        tiny_params(repo, build_tiny_llama(work / "tiny-llama"), steps=args.steps)
    edit_params(repo, controller__checkpoint_every_steps=args.save_every, controller__cooldown_every_steps=0)
    run(repo, "dvc", "repro", "organize", "detect")
    return repo


def reference(repo: Path, work: Path) -> Path:
    """Run the stage once without a kill; keep its adapter, run card and loss curve, then clean up."""
    run(repo, sys.executable, "stages/train.py", "--capability", CAP, "--out", f"models/capabilities/{CAP}",
        timeout=3600)
    ref = work / "reference"
    ref.mkdir()
    shutil.copy2(repo / "models" / "capabilities" / CAP / "adapter_model.safetensors", ref)
    shutil.copy2(repo / "models" / "capabilities" / CAP / "run_card.json", ref)
    shutil.copy2(repo / "reports" / "train" / CAP / "plots" / "metrics" / "loss.tsv", ref)
    for path in (repo / "models" / "capabilities" / CAP, repo / "reports" / "train" / CAP):
        shutil.rmtree(path)
    return ref


def plan(kills: int, rng: random.Random) -> list[str]:
    """The kinds of moment to aim at: every kind once where there is room, final saves last."""
    finals = 1 if kills < 6 else 2
    kinds = [KINDS[i % len(KINDS)] for i in range(max(kills - finals, 0))]
    rng.shuffle(kinds)
    return kinds + ["final-save"] * min(finals, kills)


def drill(repo: Path, kills: list[str], rng: random.Random, save_every: int) -> list[dict[str, Any]]:
    """Kill and rerun until a rerun completes; one row per kill."""
    rows: list[dict[str, Any]] = []
    known = 0  # the step the next run resumes from
    for kind in [*kills, None]:
        stage = Stage(repo)
        if kind is None:
            rc = stage.proc.wait(timeout=3600)
            stage.wait("exit", timeout=60)
            if rows:
                rows[-1].update(resumed_from=stage.resumed or 0, rerun_skipped=stage.skipped and not stage.steps)
            if rc != 0:
                raise RuntimeError(f"the last run exited {rc}:\n{''.join(stage.lines[-30:])}")
            return rows
        if not aim_and_kill(stage, kind, rng, repo / "checkpoints" / CAP, save_every):
            raise RuntimeError(f"the run ended before the {kind} kill; use more --steps:\n{''.join(stage.lines[-20:])}")
        time.sleep(0.2)  # the reader thread has the last lines
        if rows:
            rows[-1].update(resumed_from=stage.resumed if stage.resumed is not None else known,
                            rerun_skipped=stage.skipped and not stage.steps)
        at_kill = max(known, (stage.resumed if stage.resumed is not None else known) + stage.steps)
        found = inspect(repo)
        rows.append({"kill": len(rows) + 1, "aimed_at": kind, "step_at_kill": at_kill, **found})
        known = found["usable"]
    return rows


def compare(repo: Path, ref: Path) -> dict[str, Any]:
    """The final run against the uninterrupted one: weights, run card losses, loss curve."""
    import torch
    from safetensors.torch import load_file

    out = repo / "models" / "capabilities" / CAP
    mine, theirs = load_file(str(out / "adapter_model.safetensors")), load_file(str(ref / "adapter_model.safetensors"))
    equal = mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    card, ref_card = json.loads((out / "run_card.json").read_text()), json.loads((ref / "run_card.json").read_text())
    curve = (repo / "reports" / "train" / CAP / "plots" / "metrics" / "loss.tsv").read_text().splitlines()
    steps = [int(line.split("\t")[0]) for line in curve[1:]]
    return {
        "weights_equal": equal, "tensors": len(mine), "steps": card["steps"],
        "losses_equal": all(card[k] == ref_card[k] for k in ("steps", "train_loss", "final_loss")),
        "train_loss": card["train_loss"], "reference_train_loss": ref_card["train_loss"],
        "curve_steps": len(steps), "curve_repeats": len(steps) - len(set(steps)),
        "curve_equal": curve == (ref / "loss.tsv").read_text().splitlines(),
        "temps_left": inspect(repo)["temps"],
    }


def report(rows: list[dict[str, Any]], final: dict[str, Any], save_every: int) -> dict[str, Any]:
    """Print the table and the verdict; return the figures."""
    print(f"{'kill':>4}  {'aimed at':<10}  {'step at kill':>12}  {'resumed from':>12}  {'steps lost':>10}  "
          f"{'complete':>8}  {'incomplete':>10}  {'corrupt':>7}  {'temp dirs':>9}")
    for row in rows:
        row["steps_lost"] = row["step_at_kill"] - row["resumed_from"]
        print(f"{row['kill']:>4}  {row['aimed_at']:<10}  {row['step_at_kill']:>12}  {row['resumed_from']:>12}  "
              f"{row['steps_lost']:>10}  {row['complete']:>8}  {row['incomplete']:>10}  {row['corrupt']:>7}  "
              f"{row['temps']:>9}")
    summary = {
        "kills": len(rows), "save_every": save_every,
        "corrupt_checkpoints": sum(r["corrupt"] for r in rows),
        "max_steps_lost": max((r["steps_lost"] for r in rows), default=0),
        "total_steps_lost": sum(r["steps_lost"] for r in rows),
        "reruns_at_max_steps_without_a_step": sum(r["rerun_skipped"] for r in rows),
        **final,
    }
    summary["ok"] = (summary["corrupt_checkpoints"] == 0 and summary["max_steps_lost"] <= save_every
                     and final["weights_equal"])
    print(f"kills: {summary['kills']}; corrupt checkpoints: {summary['corrupt_checkpoints']}; steps lost per kill: "
          f"max {summary['max_steps_lost']} (save interval {save_every}), total {summary['total_steps_lost']}; "
          f"reruns from a checkpoint at max_steps (no step trained): {summary['reruns_at_max_steps_without_a_step']}")
    print(f"final run: {final['steps']} steps; adapter weights equal to the uninterrupted run's: "
          f"{'yes' if final['weights_equal'] else 'NO'} ({final['tensors']} tensors, torch.equal); "
          f"run card losses equal: {'yes' if final['losses_equal'] else 'NO'} (train_loss {final['train_loss']}); "
          f"loss curve: {final['curve_steps']} rows, {final['curve_repeats']} repeated steps, equal to the "
          f"reference: {'yes' if final['curve_equal'] else 'NO'}; temp folders left: {final['temps_left']}")
    print("done when (zero corrupt, <= one save interval lost per kill, identical weights):",
          "met" if summary["ok"] else "NOT met")
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=10, help="SIGKILLs before the last, completing run (default 10)")
    parser.add_argument("--steps", type=int, default=60, help="max_steps of the run (default 60)")
    parser.add_argument("--save-every", type=int, default=4, help="controller.checkpoint_every_steps (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments (default 0)")
    parser.add_argument("--embedded", action="store_true", help="the embedded SmolLM2 instead of a tiny random Llama")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (printed)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="nexus-kill-drill-"))
    try:
        repo = prepare(work, args)
        ref = reference(repo, work)
        rows = drill(repo, plan(args.kills, rng), rng, args.save_every)
        summary = report(rows, compare(repo, ref), args.save_every)
    finally:
        if args.keep:
            print(f"work folder: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "kills": rows}, indent=2) + "\n")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
