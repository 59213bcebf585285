"""TrainingController against a real transformers.Trainer and real signals sent to this process.

Each test trains a tiny random Llama (hidden 32, 1 layer) for a few steps on CPU. Signals are real:
``os.kill(os.getpid(), ...)`` from a callback at a chosen step, or from a ``threading.Timer``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from nexus.checkpoints import SCHEDULE_FILE
from nexus.config import ControllerParams
from nexus.controller import (
    EXIT_CODE_SIGTERM,
    WAIT_SLICE_SECONDS,
    ThermalGuardUnavailable,
    TrainingController,
)
from nexus.signals import FINISHED, STARTUP, StageSignals, install_stage_signals
from tests.tiny import random_token_dataset, tiny_llama

torch.set_num_threads(2)

SCHEDULE = {"max_steps": 6, "learning_rate": 1e-3, "batch_size": 2, "seed": 0, "method": "sft"}
# No cooldown, no thermal guard unless a test asks: the controller's defaults are for real runs.
QUIET = ControllerParams(cooldown_every_steps=0, max_gpu_temp_c=0, thermal_poll_seconds=0)
SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)


# ---------------------------------------------------------------------------------------- helpers
class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def lines(self) -> list[str]:
        return [r.getMessage() for r in self.records]

    def first(self, text: str) -> logging.LogRecord:
        return next(r for r in self.records if r.getMessage() == text)


class SignalAt(TrainerCallback):
    """Sends ``sig`` to this process at the end of ``step``; optionally starts timers then too."""

    def __init__(self, step: int, sig: int, timers: tuple[tuple[float, int], ...] = ()) -> None:
        self.step, self.sig, self.timers = step, sig, timers
        self.started: list[threading.Timer] = []

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step != self.step:
            return
        for delay, sig in self.timers:
            timer = threading.Timer(delay, os.kill, (os.getpid(), sig))
            timer.start()
            self.started.append(timer)
        if self.sig:
            os.kill(os.getpid(), self.sig)


def make_trainer(
    out: Path,
    controller: TrainingController,
    *extra: TrainerCallback,
    max_steps: int = 6,
    save_steps: int = 1000,
) -> Trainer:
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=max_steps,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        use_cpu=True,
        report_to="none",
        save_strategy="steps",
        save_steps=save_steps,
        logging_steps=1,
        disable_tqdm=True,
        seed=0,
    )
    callbacks = [*extra, controller]  # senders first: they signal before the controller's on_step_end
    return Trainer(model=tiny_llama(), args=args, train_dataset=random_token_dataset(), callbacks=callbacks)


@pytest.fixture
def logs() -> Iterator[tuple[logging.Logger, ListHandler]]:
    logger = logging.getLogger(f"test.controller.{time.monotonic_ns()}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handler = ListHandler()
    logger.addHandler(handler)
    yield logger, handler
    logger.removeHandler(handler)


pytestmark = pytest.mark.usefixtures("keep_signal_handlers")


def run(trainer: Trainer, controller: TrainingController) -> float:
    """Train under the controller's handlers; timers fire before the handlers are restored."""
    start = time.monotonic()
    with controller:
        trainer.train()
        elapsed = time.monotonic() - start
        for callback in trainer.callback_handler.callbacks:
            for timer in getattr(callback, "started", []):
                timer.join(timeout=10)  # a late SIGUSR1 under the default handler would end pytest
    return elapsed


def marker(folder: Path) -> dict[str, Any]:
    return json.loads((folder / SCHEDULE_FILE).read_text())


# ---------------------------------------------------------------------------------------- signals
def test_sigusr2_saves_a_complete_checkpoint_and_training_goes_on(tmp_path: Path, logs: Any) -> None:
    logger, handler = logs
    controller = TrainingController(QUIET, SCHEDULE, logger=logger)
    trainer = make_trainer(tmp_path, controller, SignalAt(3, signal.SIGUSR2))
    run(trainer, controller)

    assert trainer.state.global_step == 6
    assert not controller.stopped_by_signal
    written = marker(tmp_path / "checkpoint-3")
    assert (written["step"], written["schedule"]) == (3, SCHEDULE)
    on_disk = sorted(p.name for p in (tmp_path / "checkpoint-3").iterdir() if p.name != SCHEDULE_FILE)
    assert sorted(written["files"]) == on_disk  # every file the Trainer wrote, with size and hash
    assert {"trainer_state.json", "model.safetensors", "optimizer.pt", "scheduler.pt"} <= set(on_disk)
    weights = written["files"]["model.safetensors"]
    assert weights["size"] == (tmp_path / "checkpoint-3" / "model.safetensors").stat().st_size
    assert len(weights["sha256"]) == 64
    assert "Checkpoint requested by SIGUSR2 at step 3" in handler.lines
    assert f"Checkpoint saved: {tmp_path / 'checkpoint-3'}" in handler.lines
    pid = os.getpid()
    assert handler.lines[0] == (
        f"PID {pid}: kill -USR1 {pid} pauses/resumes, -USR2 checkpoints, -TERM checkpoints and stops"
    )
    assert not [f for f in os.listdir(tmp_path / "checkpoint-3") if f.endswith(".tmp")]


def test_sigterm_saves_and_stops_at_that_step(tmp_path: Path, logs: Any) -> None:
    logger, handler = logs
    controller = TrainingController(QUIET, SCHEDULE, logger=logger)
    trainer = make_trainer(tmp_path, controller, SignalAt(4, signal.SIGTERM))
    run(trainer, controller)

    assert controller.stopped_by_signal
    assert EXIT_CODE_SIGTERM == 143
    assert trainer.state.global_step == 4
    assert marker(tmp_path / "checkpoint-4")["step"] == 4
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-4"]
    assert "Stop requested by SIGTERM at step 4: saving a checkpoint and stopping" in handler.lines


def test_sigusr1_pauses_until_the_second_sigusr1(tmp_path: Path, logs: Any) -> None:
    logger, handler = logs
    controller = TrainingController(QUIET, SCHEDULE, logger=logger)
    sender = SignalAt(2, signal.SIGUSR1, timers=((1.0, signal.SIGUSR1),))
    trainer = make_trainer(tmp_path, controller, sender)
    run(trainer, controller)

    paused = handler.first("Paused at step 2 (SIGUSR1 to resume)")
    resumed = handler.first("Resumed at step 2")
    assert resumed.created - paused.created >= 0.9
    assert trainer.state.global_step == 6
    assert not controller.stopped_by_signal
    assert not list(tmp_path.glob("checkpoint-2"))  # a pause alone saves nothing


def test_sigusr2_while_paused_saves_and_stays_paused(tmp_path: Path, logs: Any) -> None:
    logger, handler = logs
    controller = TrainingController(QUIET, SCHEDULE, logger=logger)
    timers = ((0.4, signal.SIGUSR2), (0.9, signal.SIGUSR1))
    trainer = make_trainer(tmp_path, controller, SignalAt(2, signal.SIGUSR1, timers=timers), max_steps=3)
    run(trainer, controller)

    assert marker(tmp_path / "checkpoint-2")["step"] == 2
    lines = [line for line in handler.lines if "step 2" in line or "checkpoint-2" in line]
    assert lines == [
        "Paused at step 2 (SIGUSR1 to resume)",
        "Checkpoint requested by SIGUSR2 at step 2",
        f"Checkpoint saved: {tmp_path / 'checkpoint-2'}",
        "Resumed at step 2",
    ]
    assert trainer.state.global_step == 3


def test_sigterm_while_paused_ends_the_pause_and_stops(tmp_path: Path, logs: Any) -> None:
    logger, handler = logs
    controller = TrainingController(QUIET, SCHEDULE, logger=logger)
    trainer = make_trainer(tmp_path, controller, SignalAt(2, signal.SIGUSR1, timers=((0.5, signal.SIGTERM),)))
    elapsed = run(trainer, controller)

    assert controller.stopped_by_signal
    assert trainer.state.global_step == 2
    assert marker(tmp_path / "checkpoint-2")["step"] == 2
    assert "Paused at step 2 (SIGUSR1 to resume)" in handler.lines
    assert "Stop requested by SIGTERM at step 2: saving a checkpoint and stopping" in handler.lines
    assert elapsed < 20


def test_sigterm_after_the_last_step_still_reports_a_stop(logs: Any) -> None:
    logger, handler = logs
    controller = TrainingController(QUIET, SCHEDULE, logger=logger).install_signal_handlers()
    os.kill(os.getpid(), signal.SIGTERM)
    controller.restore_signal_handlers()
    assert controller.stopped_by_signal
    assert handler.lines == ["SIGTERM arrived after the last step: stopping"]


DDP_SCRIPT = """
import json, logging, os, signal, sys, threading, time
import torch
from datasets import Dataset
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainerCallback, TrainingArguments
from nexus.config import ControllerParams
from nexus.controller import TrainingController

out, rank = sys.argv[1], int(os.environ["RANK"])
logging.basicConfig(level=logging.INFO, format="[rank" + str(rank) + "] %(message)s", stream=sys.stdout)


class Sensor:
    # Rank 1's GPU runs hot for 1.5 s after step 3 (rank 0's never): both ranks must wait it out.
    hot_until = 0.0

    def __call__(self):
        return 90.0 if time.monotonic() < self.hot_until else 50.0


sensor = Sensor()
step_ends = {}


class OneRankSignals(TrainerCallback):
    # Every signal goes to ONE rank only; the controller must act on all ranks at the same step.
    def on_step_begin(self, args, state, control, **kwargs):
        step_ends.setdefault(state.global_step, time.monotonic())  # when the step after it begins

    def on_step_end(self, args, state, control, **kwargs):
        me = os.getpid()
        if state.global_step == 3 and rank == 1:
            sensor.hot_until = time.monotonic() + 1.5
        if state.global_step == 1 and rank == 1:
            threading.Timer(0.6, os.kill, (me, signal.SIGUSR1)).start()
            os.kill(me, signal.SIGUSR1)
        if state.global_step == 2 and rank == 0:
            os.kill(me, signal.SIGUSR2)
        if state.global_step == 4 and rank == 1:
            os.kill(me, signal.SIGTERM)


torch.manual_seed(0)
config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                     num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
ids = torch.randint(0, 64, (24, 12), generator=torch.Generator().manual_seed(1)).tolist()
args = TrainingArguments(output_dir=out, max_steps=6, per_device_train_batch_size=2, use_cpu=True,
                         report_to="none", save_strategy="steps", save_steps=1000, logging_steps=1,
                         disable_tqdm=True, seed=0)
params = ControllerParams(cooldown_every_steps=0, max_gpu_temp_c=80, thermal_poll_seconds=0)
controller = TrainingController(params, {"max_steps": 6}, logger=logging.getLogger("nexus.test"),
                                read_temperature=sensor)
trainer = Trainer(model=LlamaForCausalLM(config), args=args, callbacks=[OneRankSignals(), controller],
                  train_dataset=Dataset.from_dict({"input_ids": ids, "labels": ids}))
with controller:
    trainer.train()
world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
with open(os.path.join(out, "result-%d.json" % rank), "w") as fh:
    result = {"step": trainer.state.global_step, "stopped": controller.stopped_by_signal, "world": world,
              "held_after_step_3": step_ends[3] - step_ends[2] > 1.2}
    json.dump(result, fh)
"""


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_signals_to_one_ddp_rank_act_on_all_ranks(tmp_path: Path) -> None:
    """torchrun, 2 CPU ranks over gloo: pause, checkpoint, thermal wait and stop agree across ranks
    (no hang)."""
    script = tmp_path / "ddp_train.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT))
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(
        [*cmd, str(script), str(out)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = [json.loads((out / f"result-{r}.json").read_text()) for r in (0, 1)]
    assert results == [{"step": 4, "stopped": True, "world": 2, "held_after_step_3": True}] * 2
    assert marker(out / "checkpoint-2")["step"] == 2
    assert marker(out / "checkpoint-4")["step"] == 4
    for line in (
        "[rank0] Paused at step 1 (SIGUSR1 to resume)",
        "[rank0] Resumed at step 1",
        "[rank0] Checkpoint requested by SIGUSR2 at step 2",
        "[rank1] GPU at 90 C (limit 80 C): paused at step 3 until it cools",  # rank 0 waits silently
        "[rank0] Stop requested by SIGTERM at step 4: saving a checkpoint and stopping",
    ):
        assert line in proc.stdout.splitlines()
    assert "[rank1] Paused" not in proc.stdout  # status lines come from rank 0 only


# ---------------------------------------------------------------------------------------- cooldown
def test_cooldown_every_two_steps(tmp_path: Path, logs: Any) -> None:
    logger, handler = logs
    params = ControllerParams(cooldown_every_steps=2, cooldown_seconds=0.3, max_gpu_temp_c=0)
    controller = TrainingController(params, SCHEDULE, logger=logger)
    trainer = make_trainer(tmp_path, controller, max_steps=5)
    start = time.monotonic()
    run(trainer, controller)

    assert [line for line in handler.lines if line.startswith("Cooldown")] == [
        "Cooldown at step 2: 0.3 s",
        "Cooldown at step 4: 0.3 s",
    ]
    assert time.monotonic() - start >= 0.6
    assert trainer.state.global_step == 5


def test_sigterm_ends_a_cooldown(tmp_path: Path, logs: Any) -> None:
    logger, handler = logs
    params = ControllerParams(cooldown_every_steps=2, cooldown_seconds=60, max_gpu_temp_c=0)
    controller = TrainingController(params, SCHEDULE, logger=logger)
    trainer = make_trainer(tmp_path, controller, SignalAt(2, 0, timers=((0.4, signal.SIGTERM),)))
    elapsed = run(trainer, controller)

    assert "Cooldown at step 2: 60 s" in handler.lines
    assert controller.stopped_by_signal
    assert trainer.state.global_step == 2
    assert marker(tmp_path / "checkpoint-2")["step"] == 2
    assert elapsed < 30


# ---------------------------------------------------------------------------------------- thermal
def test_thermal_guard_waits_until_the_gpu_cools(tmp_path: Path, logs: Any) -> None:
    logger, handler = logs
    readings = iter([60.0, 90.0, 90.0, 70.0])
    calls: list[float] = []

    def read_temperature() -> float:
        calls.append(time.monotonic())
        return next(readings, 70.0)

    # Poll at every boundary so the hot reading lands on step 1; while hot, polls are WAIT_SLICE apart.
    params = ControllerParams(cooldown_every_steps=0, max_gpu_temp_c=83, thermal_poll_seconds=0)
    controller = TrainingController(params, SCHEDULE, logger=logger, read_temperature=read_temperature)
    trainer = make_trainer(tmp_path, controller, max_steps=3)
    run(trainer, controller)

    assert "Thermal guard on: GPU at 60 C, pausing above 83 C (checked every 0 s)" in handler.lines
    hot = [line for line in handler.lines if line.startswith("GPU ")]
    assert hot == [
        "GPU at 90 C (limit 83 C): paused at step 1 until it cools",
        "GPU cooled to 70 C: resumed at step 1",
    ]
    assert calls[3] - calls[1] >= 2 * WAIT_SLICE_SECONDS * 0.9  # waited while hot
    assert len(calls) == 1 + 3 + 1  # train begin, step 1 (three polls), step 2; none at the last step
    assert trainer.state.global_step == 3


def test_thermal_guard_without_nvml_logs_once_and_stops_polling(
    tmp_path: Path, logs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:  # pragma: no cover - only on a machine with a GPU driver
        pynvml.nvmlShutdown()
        pytest.skip("NVML is present here: this test covers machines without it")
    inits: list[int] = []
    real_init = pynvml.nvmlInit

    def counting_init() -> None:
        inits.append(1)
        real_init()

    monkeypatch.setattr(pynvml, "nvmlInit", counting_init)
    logger, handler = logs
    params = ControllerParams(cooldown_every_steps=0, max_gpu_temp_c=83, thermal_poll_seconds=0)
    controller = TrainingController(params, SCHEDULE, logger=logger)
    trainer = make_trainer(tmp_path, controller, max_steps=3)
    run(trainer, controller)

    off = [line for line in handler.lines if line.startswith("Thermal guard off")]
    assert off == ["Thermal guard off: no NVML (NVML Shared Library Not Found)"]
    assert len(inits) == 1
    assert trainer.state.global_step == 3


def test_a_failing_temperature_reader_turns_the_guard_off_once(logs: Any) -> None:
    logger, handler = logs
    params = ControllerParams(max_gpu_temp_c=83, thermal_poll_seconds=0)

    def unavailable() -> float:
        raise ThermalGuardUnavailable("no NVML (test)")

    controller = TrainingController(params, SCHEDULE, logger=logger, read_temperature=unavailable)
    controller._read_thermal(force=True)
    controller._read_thermal(force=True)
    assert handler.lines == ["Thermal guard off: no NVML (test)"]


# ---------------------------------------------------------------------------------------- API
def test_signal_handlers_are_restored() -> None:
    before = {sig: signal.getsignal(sig) for sig in SIGNALS}
    controller = TrainingController(QUIET, SCHEDULE)
    with controller:
        assert controller.signal_handlers_installed
        assert all(signal.getsignal(sig) != before[sig] for sig in SIGNALS)
        controller.install_signal_handlers()  # idempotent: keeps the original previous handlers
    assert {sig: signal.getsignal(sig) for sig in SIGNALS} == before
    assert not controller.signal_handlers_installed


def test_install_outside_the_main_thread_says_what_to_do() -> None:
    errors: list[BaseException] = []

    def install() -> None:
        try:
            TrainingController(QUIET, SCHEDULE).install_signal_handlers()
        except RuntimeError as err:
            errors.append(err)

    thread = threading.Thread(target=install)
    thread.start()
    thread.join()
    assert errors and "main thread" in str(errors[0])


def test_schedule_must_be_json() -> None:
    with pytest.raises(ValueError, match=r"schedule\['data'\].*not JSON-serializable"):
        TrainingController(QUIET, {"data": Path("x")})


def test_without_installed_handlers_train_begin_warns(tmp_path: Path, logs: Any) -> None:
    logger, handler = logs
    controller = TrainingController(QUIET, SCHEDULE, logger=logger)
    trainer = make_trainer(tmp_path, controller, max_steps=1)
    trainer.train()
    expected = "Signal control off: call TrainingController.install_signal_handlers() before trainer.train()"
    assert handler.lines[0].startswith(expected)


# ---------------------------------------------------------------------------------------- stage signals
def test_sigterm_during_start_up_exits_143_at_once(logs: Any) -> None:
    logger, handler = logs
    signals = StageSignals(logger).install()
    with pytest.raises(SystemExit) as info:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler raises in this thread at the next bytecode
    signals.restore()
    assert info.value.code == EXIT_CODE_SIGTERM
    assert handler.lines == ["SIGTERM during start-up: stopping before training (nothing to checkpoint)"]


def test_a_pause_asked_during_start_up_takes_effect_at_the_first_step(tmp_path: Path, logs: Any) -> None:
    logger, handler = logs
    signals = StageSignals(logger).install()  # as the stage does, before anything loads
    os.kill(os.getpid(), signal.SIGUSR1)
    controller = TrainingController(QUIET, SCHEDULE, logger=logger, signals=signals)
    trainer = make_trainer(tmp_path, controller, SignalAt(1, 0, timers=((0.5, signal.SIGUSR1),)), max_steps=2)
    run(trainer, controller)
    assert signals.phase == FINISHED and not signals.installed
    assert "Paused at step 1 (SIGUSR1 to resume)" in handler.lines
    assert "Resumed at step 1" in handler.lines
    assert trainer.state.global_step == 2


def test_signals_after_the_last_step_are_logged_as_ignored(tmp_path: Path, logs: Any) -> None:
    logger, handler = logs
    signals = StageSignals(logger).install()
    controller = TrainingController(QUIET, SCHEDULE, logger=logger, signals=signals)
    trainer = make_trainer(tmp_path, controller, max_steps=1)

    class LateSignals(TrainerCallback):  # after the controller's last boundary, before train() returns
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            os.kill(os.getpid(), signal.SIGUSR1)
            os.kill(os.getpid(), signal.SIGUSR2)

    trainer.add_callback(LateSignals())
    trainer.train()
    controller.finish_training()  # idempotent: on_train_end already ran it
    for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM):  # the final save: nothing ends the process
        os.kill(os.getpid(), sig)
    time.sleep(0.1)
    signals.restore()
    assert not controller.stopped_by_signal
    assert [line for line in handler.lines if "already finished" in line] == [
        "SIGUSR1 after the last step: training already finished; pause ignored",
        "SIGUSR2 after the last step: training already finished; checkpoint ignored",
        "SIGUSR1: training already finished; pause ignored",
        "SIGUSR2: training already finished; checkpoint ignored",
        "SIGTERM: training already finished; the final save completes first",
    ]


def test_the_trainers_own_rotation_is_switched_off(tmp_path: Path, logs: Any) -> None:
    logger, handler = logs
    controller = TrainingController(QUIET, SCHEDULE, logger=logger)
    trainer = make_trainer(tmp_path, controller, max_steps=3, save_steps=1)
    trainer.args.save_total_limit = 1
    run(trainer, controller)
    assert trainer.args.save_total_limit is None
    assert any(line.startswith("TrainingArguments.save_total_limit=1 ignored") for line in handler.lines)
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    assert all(marker(tmp_path / f"checkpoint-{n}")["files"] for n in (2, 3))


def test_the_stage_installs_its_handlers_once_per_run() -> None:
    first = install_stage_signals()  # stages/train.py, before torch loads
    os.kill(os.getpid(), signal.SIGUSR1)
    assert install_stage_signals() is first  # nexus train: the same handlers, the start-up pause kept
    assert first.take().toggles == 1
    first.finish_training()
    second = install_stage_signals()  # another stage run in this process starts afresh
    assert second is not first and second.phase == STARTUP and second.installed
    second.restore()
    assert not second.installed and install_stage_signals() is not second
