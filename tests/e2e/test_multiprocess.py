"""`make train CAPS=cot NPROC=2` as a user runs it: two DDP ranks on this CPU (gloo) through make, dvc,
the real stage script and accelerate; signals to one rank or to the stage's parent act on both at the
same step; the SIGTERM checkpoint is written once; the rerun of the stage resumes it on the same world
size. (The rest of `make train` after the train stage is the one-process pipeline test_make_train runs.)"""

import json
import os
import re
import signal
import sys
import time

import yaml

from tests.project import Background, copy_project, edit_params, git, run, tiny_params

STEPS = 40
STEP_LINE = re.compile(r"train cot: step \d+/\d+ ")
MAKE = ["make", "train", "CAPS=cot", "NPROC=2", f"VENV={sys.prefix}", "SKIP_INSTALL=1"]


def test_make_train_nproc_2_acts_on_both_ranks_and_resumes(tmp_path, tiny_model_dir):
    repo = copy_project(tmp_path / "project")
    tiny_params(repo, tiny_model_dir, steps=STEPS)
    edit_params(repo, controller__checkpoint_every_steps=1000)  # only signals make checkpoints
    git(repo, "commit", "-qam", "tiny model")

    first = Background(repo, MAKE)
    parent = int(first.wait_for(r"launch: PID (\d+) starts the ranks")[1])
    ranks = first.wait_for(r"cot: 2 processes \(ddp\), PIDs (\d+) \(rank 0\), (\d+) \(rank 1\)")
    rank1 = int(ranks[2])
    first.wait_for(STEP_LINE.pattern)

    os.kill(rank1, signal.SIGUSR1)  # a pause sent to rank 1 alone holds both
    paused_at = int(first.wait_for(r"Paused at step (\d+) \(SIGUSR1 to resume\)")[1])
    logged = first.count(STEP_LINE)
    time.sleep(2.0)
    assert first.count(STEP_LINE) == logged  # no step while paused
    os.kill(parent, signal.SIGUSR1)  # through the parent: handed to both ranks, counted once (MAX)
    assert int(first.wait_for(r"Resumed at step (\d+)")[1]) == paused_at

    os.kill(parent, signal.SIGUSR2)
    asked = int(first.wait_for(r"Checkpoint requested by SIGUSR2 at step (\d+)")[1])
    first.wait_for(rf"Checkpoint saved: checkpoints/cot/checkpoint-{asked}")
    os.kill(rank1, signal.SIGTERM)  # one rank's SIGTERM: both checkpoint at the same step and stop
    assert first.proc.wait(timeout=120) != 0
    stopped_at = int(first.wait_for(r"Stop requested by SIGTERM at step (\d+): saving a checkpoint")[1])
    first.wait_for(r"launch: stopped on SIGTERM: the checkpoint is written")
    assert asked < stopped_at < STEPS
    checkpoint = repo / "checkpoints" / "cot" / f"checkpoint-{stopped_at}"
    assert json.loads((checkpoint / "nexus_schedule.json").read_text())["step"] == stopped_at
    assert (checkpoint / "rng_state_0.pth").is_file() and (checkpoint / "rng_state_1.pth").is_file()
    assert not list(checkpoint.parent.glob(".*tmp*"))  # one writer: no half-written copies beside it
    assert "launch.processes: 1 -> 2" in "".join(first.lines)
    assert yaml.safe_load((repo / "params.yaml").read_text())["launch"]["processes"] == 2

    run(repo, "dvc", "repro", "train@cot")  # the same world size (params.yaml): continues from the checkpoint
    log = (repo / "logs" / "train_cot.log").read_text()
    assert f"resuming from checkpoints/cot/checkpoint-{stopped_at}" in log
    card = json.loads((repo / "models" / "capabilities" / "cot" / "run_card.json").read_text())
    assert card["steps"] == STEPS
    assert card["processes"] == {"world_size": 2, "strategy": "ddp", "per_process_batch": 1,
                                 "grad_accum_per_process": 1}  # batch_size 2 x grad_accum 1, split over 2
    assert not [line for line in log.splitlines() if " INFO " in line and "[rank 1]" in line]  # rank 0 reports


def test_fsdp_on_a_cpu_is_refused_in_one_line_before_any_rank_starts(tmp_path, tiny_model_dir):
    repo = copy_project(tmp_path / "project")
    tiny_params(repo, tiny_model_dir)
    edit_params(repo, launch__processes=2, launch__strategy="fsdp")
    result = run(repo, sys.executable, "stages/train.py", "--capability", "cot", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: launch.strategy: fsdp shards the model across GPUs and this machine has none (accelerate would "
        "quietly run plain DDP on the CPU); set launch.strategy: ddp here")
    assert not (repo / "checkpoints").exists() and not (repo / "models" / "capabilities").exists()
