"""Multi-process launch: the launch: section, the global-batch split, the accelerate command and
configs (parsed by accelerate and DeepSpeed themselves), and the parent's signal relay, driven with
real signals through a real process tree."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nexus import launch, ranks
from nexus.config import LaunchParams, ParamsError, load_launch
from nexus.launch_params import STRATEGIES
from tests.project import ROOT


# ------------------------------------------------------------------------------------ launch section
def test_launch_section_defaults_to_one_process():
    assert load_launch(ROOT / "params.yaml") == LaunchParams()
    assert LaunchParams().world_size == 1
    assert not launch.needs_launch(LaunchParams())


@pytest.mark.parametrize(("section", "message"), [
    ({"processes": 0}, "launch.processes: must be 1 or more, got 0"),
    ({"nodes": 2, "node_rank": 2, "master_port": 29500}, "launch.node_rank: must be in 0..1"),
    ({"nodes": 2}, "launch.master_port: several nodes need a fixed port"),
    ({"strategy": "zero9"}, "launch.strategy: 'zero9' is not one of ddp, fsdp, zero2, zero3"),
    ({"procs": 2}, "launch.procs: unknown key"),
])
def test_bad_launch_settings_name_their_key(tmp_path, section, message):
    path = tmp_path / "params.yaml"
    path.write_text(json.dumps({"launch": section}))
    with pytest.raises(ParamsError, match=message):
        load_launch(path)


# ------------------------------------------------------------------------------------ global batch
@pytest.mark.parametrize(("batch", "accum", "world", "split"), [
    (2, 4, 1, (2, 4)), (2, 4, 2, (2, 2)), (2, 4, 4, (2, 1)), (2, 4, 8, (1, 1)), (2, 1, 2, (1, 1)),
    (4, 3, 3, (4, 1)), (6, 1, 4, None), (2, 1, 3, None),
])
def test_the_global_batch_is_split_not_multiplied(batch, accum, world, split):
    if split is None:
        with pytest.raises(ranks.BatchSplitError, match=rf"capabilities.cot: the global batch .* = {batch * accum} "
                                                         rf"does not split across {world} processes"):
            ranks.split_global_batch(batch, accum, world, where="capabilities.cot")
        return
    per_process, steps = ranks.split_global_batch(batch, accum, world)
    assert (per_process, steps) == split
    assert per_process * steps * world == batch * accum


# ------------------------------------------------------------------------------------ command, configs
def test_accelerate_command_passes_the_world_and_shares_the_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.chdir(ROOT)
    cmd = launch.accelerate_command(LaunchParams(processes=2), "nexus.cli", ["train", "--capability", "cot"],
                                    gpus=0, python="py", cpus=16)
    assert cmd[:4] == ["py", "-m", "accelerate.commands.launch", "--config_file"]
    assert cmd[4] == "configs/accelerate/ddp.yaml"
    words = " ".join(cmd)
    assert "--num_processes 2 --num_machines 1 --machine_rank 0 --main_process_port 0" in words
    assert "--num_cpu_threads_per_process 8" in words and "--main_process_ip" not in words
    assert cmd[-5:] == ["--module", "nexus.cli", "train", "--capability", "cot"]
    two_nodes = LaunchParams(processes=4, nodes=2, node_rank=1, master_addr="10.0.0.1", master_port=29500,
                             strategy="zero3")
    words = " ".join(launch.accelerate_command(two_nodes, "nexus.cli", [], gpus=4))
    assert "--config_file configs/accelerate/zero3.yaml --num_processes 8 --num_machines 2 --machine_rank 1" in words
    assert "--main_process_ip 10.0.0.1" in words and "--num_cpu_threads_per_process" not in words


def test_sharding_strategies_are_refused_without_gpus():
    for strategy in launch.GPU_STRATEGIES:
        with pytest.raises(launch.LaunchError, match=f"launch.strategy: {strategy} shards the model across GPUs"):
            launch.check_launch(LaunchParams(processes=2, strategy=strategy), gpus=0)
    launch.check_launch(LaunchParams(processes=2, strategy="ddp"), gpus=0)
    with pytest.raises(launch.LaunchError, match=r"launch.processes: 4 processes per node but 2 GPU\(s\)"):
        launch.check_launch(LaunchParams(processes=4), gpus=2)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_has_an_accelerate_config_that_accelerate_reads(strategy):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(launch.config_file(strategy, ROOT)))
    expected = {"ddp": "MULTI_GPU", "fsdp": "FSDP", "zero2": "DEEPSPEED", "zero3": "DEEPSPEED"}[strategy]
    assert config.distributed_type.value == expected
    if strategy == "fsdp":
        assert config.fsdp_config["fsdp_version"] == 2
        assert config.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"  # the final save is a plain folder
    if expected == "DEEPSPEED":
        assert (ROOT / config.deepspeed_config["deepspeed_config_file"]).is_file()


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_configs_pass_deepspeeds_own_parser(tmp_path, stage):
    """The Trainer fills the "auto" values from the run (as it does at launch), then DeepSpeed's
    config class validates the result (pydantic: a bad key or stage raises)."""
    pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (`make install` builds it)")
    import torch
    from deepspeed.runtime.config import DeepSpeedConfig
    from transformers import LlamaConfig, TrainingArguments
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=1, gradient_accumulation_steps=2,
                             report_to="none", use_cpu=True)
    filled = HfTrainerDeepSpeedConfig(str(ROOT / f"configs/deepspeed/zero{stage}.json"))
    filled.trainer_config_process(args)
    model = torch.nn.Linear(2, 2)
    model.config = LlamaConfig(hidden_size=576)  # SmolLM2-135M's width: the bucket sizes follow it
    filled.trainer_config_finalize(args, model, num_training_steps=100)
    config = DeepSpeedConfig(filled.config)
    assert config.zero_optimization_stage == stage
    assert config.train_batch_size == 2 and config.gradient_accumulation_steps == 2
    broken = {**filled.config, "zero_optimization": {**filled.config["zero_optimization"], "stage": 7}}
    with pytest.raises(Exception, match="stage"):
        DeepSpeedConfig(broken)


# ------------------------------------------------------------------------------------ the relay
# A stand-in launcher with the shape torchrun gives the tree: parent -> launcher -> 2 ranks. The
# launcher catches SIGTERM as torchrun does (and passes it on); each rank installs handlers for the
# three signals, as the stage script does, and writes down what it received.
LAUNCHER = """
import signal, subprocess, sys, time
out = sys.argv[1]
ranks = [subprocess.Popen([sys.executable, __file__.replace("launcher", "rank"), out, str(r)]) for r in (0, 1)]
def stop(signum, frame):
    for proc in ranks:
        proc.send_signal(signal.SIGTERM)
signal.signal(signal.SIGTERM, stop)
while any(proc.poll() is None for proc in ranks):  # one rank failing stops the others, as torchrun does
    if any(proc.poll() not in (None, 0) for proc in ranks):
        stop(signal.SIGTERM, None)
        break
    time.sleep(0.05)
codes = [proc.wait() for proc in ranks]
sys.exit(0 if codes == [0, 0] else 1)
"""
RANK = """
import json, os, signal, sys, time
out, rank = sys.argv[1], sys.argv[2]
got = []
def note(signum, frame):
    got.append(signal.Signals(signum).name)
    with open(os.path.join(out, f"rank{rank}.json"), "w") as fh:
        json.dump(got, fh)
for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM):
    signal.signal(sig, note)
open(os.path.join(out, f"ready{rank}"), "w").close()
while "SIGTERM" not in got:
    time.sleep(0.05)
if rank == "0" and os.environ.get("NEXUS_STOP_NOTE"):
    open(os.environ["NEXUS_STOP_NOTE"], "w").close()
sys.exit(143)
"""
PARENT = """
import sys
from nexus.launch import run_ranks
sys.exit(run_ranks([sys.executable, sys.argv[1], sys.argv[2]]))
"""


def _tree(tmp_path: Path) -> subprocess.Popen:
    for name, code in (("launcher.py", LAUNCHER), ("rank.py", RANK), ("parent.py", PARENT)):
        (tmp_path / name).write_text(textwrap.dedent(code))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(tmp_path / "parent.py"), str(tmp_path / "launcher.py"), str(tmp_path)],
                            env=env, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _received(tmp_path: Path, rank: int) -> list[str]:
    path = tmp_path / f"rank{rank}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # not written yet, or being written
        return []


def test_the_parent_hands_every_signal_to_both_ranks_and_exits_143_on_sigterm(tmp_path):
    parent = _tree(tmp_path)
    _wait_for(tmp_path / "ready0")
    _wait_for(tmp_path / "ready1")
    assert len(launch.rank_pids(parent.pid)) == 2  # the ranks only: the launcher ignores SIGUSR1
    for signum, names in ((signal.SIGUSR1, ["SIGUSR1"]), (signal.SIGUSR2, ["SIGUSR1", "SIGUSR2"])):
        os.kill(parent.pid, signum)
        deadline = time.monotonic() + 10
        while not (_received(tmp_path, 0) == _received(tmp_path, 1) == names) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _received(tmp_path, 0) == _received(tmp_path, 1) == names
    assert parent.poll() is None  # the launcher survived SIGUSR1 and SIGUSR2 (ignored, not fatal)
    os.kill(parent.pid, signal.SIGTERM)
    _, err = parent.communicate(timeout=30)
    assert parent.returncode == 143, err
    assert _received(tmp_path, 0)[-1] == _received(tmp_path, 1)[-1] == "SIGTERM"
    assert "SIGTERM handed to the ranks" in err and "stopped on SIGTERM" in err


def test_a_sigterm_to_one_rank_alone_still_makes_the_parent_exit_143(tmp_path):
    """The launcher stops the other rank in turn; rank 0 leaves the stop note (as the trainer does
    after its SIGTERM checkpoint)."""
    parent = _tree(tmp_path)
    _wait_for(tmp_path / "ready0")
    _wait_for(tmp_path / "ready1")
    os.kill(max(launch.rank_pids(parent.pid)), signal.SIGTERM)  # one rank; the launcher stops the other
    _, err = parent.communicate(timeout=30)
    assert parent.returncode == 143, err


def test_a_lora_saved_merged_is_refused_under_sharding_strategies():
    """A chained LoRA is saved merged into its start model: that needs the whole model in one process."""
    import dataclasses
    from types import SimpleNamespace

    from nexus.methods import load_params
    from nexus.text_training import TextKind

    params = load_params(ROOT / "params.yaml")
    chained = dataclasses.replace(params.capabilities["cot"], init_from="models/capabilities/reasoning")
    run = SimpleNamespace(capability="cot", cap=chained)
    for strategy, refused in (("ddp", False), ("zero2", False), ("fsdp", True), ("zero3", True)):
        spread = dataclasses.replace(params, launch=LaunchParams(processes=2, strategy=strategy))
        problem = TextKind().check(run, spread)
        assert (problem is not None) == refused, strategy
        if refused:
            assert problem.startswith("capabilities.cot: a chained or long-context LoRA is saved merged")
    assert TextKind().check(SimpleNamespace(capability="cot", cap=params.capabilities["cot"]), dataclasses.replace(
        params, launch=LaunchParams(processes=2, strategy="zero3"))) is None  # a plain LoRA saves as an adapter


def test_quick_mode_takes_one_example_per_process_where_its_batch_cannot_split(monkeypatch):
    """QUICK=1 NPROC=2: quick's global batch is 1; a smoke run takes one example per process instead of
    refusing. A full run's unsplittable batch is still refused."""
    import dataclasses

    from nexus.methods import load_params
    from nexus.trainer import batch_split

    cot = load_params(ROOT / "params.yaml").capabilities["cot"]
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert batch_split(dataclasses.replace(cot, quick=True).effective(), "cot") == (1, 1)
    assert batch_split(dataclasses.replace(cot, batch_size=2, grad_accum=4), "cot") == (2, 2)
    with pytest.raises(ranks.BatchSplitError, match="capabilities.cot: the global batch"):
        batch_split(dataclasses.replace(cot, batch_size=1, grad_accum=1), "cot")
