"""The training controller: the one Trainer callback every train stage uses.

What it does, all at step boundaries (``on_step_end``), never inside a step:

- ``kill -USR1 PID`` toggles a pause: the accelerator cache is emptied, the process stays alive with
  its state, and a second SIGUSR1 resumes.
- ``kill -USR2 PID`` asks for a checkpoint now; training goes on.
- ``kill -TERM PID`` (``docker stop``) saves a checkpoint and stops;
  :attr:`TrainingController.stopped_by_signal` then tells the caller to exit with code 143.
- Every ``cooldown_every_steps`` steps it sleeps ``cooldown_seconds``.
- Above ``max_gpu_temp_c`` (read through NVML) it waits until the GPU has cooled.
- Each checkpoint it sees saved gets ``nexus_schedule.json`` (every file with its size and hash,
  and the schedule); once the folder verifies, older ones are rotated out by step
  (:func:`nexus.checkpoints.rotate_checkpoints`; the Trainer's mtime rotation is switched off).

The handlers (:class:`nexus.signals.StageSignals`) only count signals; all work happens at the
next step boundary. A stage installs them before the model loads (``signals=``). Under
``torch.distributed`` the ranks agree on every request (one tiny all-reduce per step), so a signal
sent to any one rank pauses, checkpoints or stops all of them at the same step.

Typical use::

    controller = TrainingController(params.controller, schedule, logger=log)
    trainer = SFTTrainer(..., callbacks=[controller])
    with controller:  # install_signal_handlers() ... restore_signal_handlers()
        trainer.train(resume_from_checkpoint=find_resume_checkpoint(out, schedule))
    if controller.stopped_by_signal:
        sys.exit(143)
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from nexus import ranks
from nexus.checkpoints import (
    CHECKPOINT_PREFIX,
    KEEP_CHECKPOINTS,
    IncompleteCheckpointError,
    normalize_schedule,
    rotate_checkpoints,
    write_schedule_marker,
)
from nexus.config import ControllerParams
from nexus.signals import EXIT_CODE_SIGTERM, FINISHED, TRAINING, StageSignals

__all__ = [
    "EXIT_CODE_SIGTERM",
    "NvmlTemperatureReader",
    "ThermalGuardUnavailable",
    "TrainingController",
]

WAIT_SLICE_SECONDS = 0.2

_log = logging.getLogger(__name__)


class ThermalGuardUnavailable(RuntimeError):
    """The GPU temperature cannot be read here (no NVML, no GPU); the thermal guard switches off."""


class NvmlTemperatureReader:
    """Reads the temperature of the GPU this process trains on, through NVML (nvidia-ml-py).

    The first call initializes NVML and picks the device: the current CUDA device, matched to NVML
    by PCI bus id (so ``CUDA_VISIBLE_DEVICES`` is respected), else NVML index 0.
    """

    def __init__(self) -> None:
        self._handle: Any = None
        self._pynvml: Any = None

    def _open(self) -> None:
        try:
            import pynvml
        except ImportError as err:
            raise ThermalGuardUnavailable(f"no NVML (nvidia-ml-py is not installed: {err})") from err
        try:
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
        except pynvml.NVMLError as err:
            raise ThermalGuardUnavailable(f"no NVML ({err})") from err
        if count < 1:
            raise ThermalGuardUnavailable("no NVML (NVML sees no GPU)")
        self._pynvml = pynvml
        self._handle = self._device_handle(pynvml)

    @staticmethod
    def _device_handle(pynvml: Any) -> Any:
        try:
            import torch

            if torch.cuda.is_available():
                props = torch.cuda.get_device_properties(torch.cuda.current_device())
                bus_id = f"{props.pci_domain_id:08X}:{props.pci_bus_id:02X}:{props.pci_device_id:02X}.0"
                return pynvml.nvmlDeviceGetHandleByPciBusId(bus_id)
        except Exception as err:  # noqa: BLE001 - any failure here falls back to NVML index 0
            _log.debug("Could not match the CUDA device to NVML by PCI bus id (%s); using GPU 0", err)
        try:
            return pynvml.nvmlDeviceGetHandleByIndex(0)
        except pynvml.NVMLError as err:
            raise ThermalGuardUnavailable(f"no NVML ({err})") from err

    def __call__(self) -> float | None:
        """Return the GPU temperature in degrees C, or None when this one reading failed.

        Raises:
            ThermalGuardUnavailable: NVML or a GPU is missing; the guard should stop polling.
        """
        if self._handle is None:
            self._open()
        try:
            nvml = self._pynvml
            return float(nvml.nvmlDeviceGetTemperature(self._handle, nvml.NVML_TEMPERATURE_GPU))
        except self._pynvml.NVMLError as err:
            _log.debug("GPU temperature reading failed (%s)", err)
            return None


@dataclass
class _Requests:
    """Signal requests agreed on at one boundary (across ranks when distributed)."""

    toggles: int = 0
    save: bool = False
    stop: bool = False
    cooling: bool = False
    hot: bool = False


def _free_accelerator_memory() -> None:
    """Drop Python garbage and return cached accelerator memory to the driver."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # a no-op when CUDA was never initialized
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        torch.mps.empty_cache()


class TrainingController(TrainerCallback):
    """Pause/resume, checkpoint-on-signal, cooldown and thermal guard for a ``transformers.Trainer``.

    Args:
        params: the ``controller:`` section of params.yaml.
        schedule: the params that shape this run's optimization (max_steps, epochs, learning_rate,
            batch_size, grad_accum, sample_size, seed, method, data fingerprint, ...), JSON values
            only. Written into each checkpoint; resuming with a different one is refused.
        logger: where status lines go (default: the ``nexus.controller`` logger).
        read_temperature: returns the GPU temperature in C (None for an unreadable sample), or
            raises :class:`ThermalGuardUnavailable`. Defaults to :class:`NvmlTemperatureReader`.
        signals: the stage's handlers, installed since start-up (default: the controller's own,
            installed by :meth:`install_signal_handlers`).
        keep_checkpoints: how many verified checkpoints rotation keeps (the newest included).

    Raises:
        ValueError: ``schedule`` holds a value that is not JSON-serializable, or ``params`` has a
            negative cooldown or poll interval.
    """

    def __init__(
        self,
        params: ControllerParams,
        schedule: dict[str, Any],
        logger: logging.Logger | None = None,
        read_temperature: Callable[[], float | None] | None = None,
        signals: StageSignals | None = None,
        keep_checkpoints: int = KEEP_CHECKPOINTS,
    ) -> None:
        if params.cooldown_every_steps < 0 or params.cooldown_seconds < 0:
            raise ValueError(
                "controller.cooldown_every_steps and controller.cooldown_seconds must be >= 0 "
                "(set cooldown_every_steps: 0 to turn cooldown off)"
            )
        if params.thermal_poll_seconds < 0:
            raise ValueError("controller.thermal_poll_seconds must be >= 0")
        self.params = params
        self.schedule = normalize_schedule(schedule)
        self.log = logger or _log
        self._read_temperature = read_temperature or NvmlTemperatureReader()
        self.signals = signals or StageSignals(self.log, phase=TRAINING)
        self.keep_checkpoints = max(1, keep_checkpoints)
        self.stopped_by_signal = False
        self._stop_pending = False
        # Hold state.
        self._paused = False
        self._pause_logged = False
        self._cooldown_until = 0.0
        self._hold_after_save = False
        self._last_step_after_save = False
        # Thermal guard state.
        self._thermal_off = params.max_gpu_temp_c <= 0
        self._thermal_off_logged = False
        self._last_temp_read = float("-inf")
        self._temperature: float | None = None
        self._hot_logged = False

    # ------------------------------------------------------------------ signals
    @property
    def signal_handlers_installed(self) -> bool:
        """Whether the handlers are in effect (:meth:`install_signal_handlers`, or the stage's)."""
        return self.signals.installed

    def install_signal_handlers(self) -> TrainingController:
        """Install SIGUSR1 (pause toggle), SIGUSR2 (checkpoint) and SIGTERM (checkpoint and stop).

        The handlers only count the signal; the work is done at the next step boundary. The
        previous handlers are kept for :meth:`restore_signal_handlers`. Calling it twice, or when
        the stage's handlers are already installed, is harmless.

        Returns:
            The controller itself, for chaining.

        Raises:
            RuntimeError: called outside the main thread (Python delivers signals only there);
                call it from the thread that runs ``trainer.train()``'s script entry point.
        """
        self.signals.install()
        return self

    def restore_signal_handlers(self) -> None:
        """Put back the handlers that were in place before :meth:`install_signal_handlers`.

        A SIGTERM that arrived after the last step boundary (so it was never acted on) still sets
        :attr:`stopped_by_signal`, so the caller exits with 143 as the sender expects.
        """
        self.finish_training()
        self.signals.restore()

    def __enter__(self) -> TrainingController:
        return self.install_signal_handlers()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.restore_signal_handlers()

    def finish_training(self) -> None:
        """Training is over: late SIGUSR1/SIGUSR2 are logged as ignored, a late SIGTERM stops (idempotent)."""
        if self.signals.phase == FINISHED:
            return
        if self.signals.finish_training() and not self.stopped_by_signal:
            self.log.info("SIGTERM arrived after the last step: stopping")
            self.stopped_by_signal = True

    # ------------------------------------------------------------------ callback events
    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        """Log how to signal this process and probe the thermal guard."""
        if self.stopped_by_signal:  # a new train() after a serviced stop starts clean
            self.stopped_by_signal = False
            self._stop_pending = False
        self.signals.begin_training()
        pid = os.getpid()
        dist = ranks.group()
        where = f" (rank {dist.get_rank()} of {dist.get_world_size()}; any rank will do)" if dist else ""
        if self.signals.installed:
            self.log.info(
                "PID %d%s: kill -USR1 %d pauses/resumes, -USR2 checkpoints, -TERM checkpoints and stops",
                pid,
                where,
                pid,
            )
        else:
            self.log.warning(
                "Signal control off: call TrainingController.install_signal_handlers() before "
                "trainer.train() (kill -USR1 would end this process)"
            )
        if args.save_total_limit is not None:
            self.log.warning(
                "TrainingArguments.save_total_limit=%s ignored: the Trainer would rotate by mtime before "
                "a checkpoint is verified; the controller keeps the newest %d verified ones",
                args.save_total_limit,
                self.keep_checkpoints,
            )
            args.save_total_limit = None
        if getattr(args, "enable_jit_checkpoint", False):
            self.log.warning(
                "TrainingArguments.enable_jit_checkpoint replaces the controller's SIGTERM handler; "
                "set it to False so that SIGTERM checkpoints at a step boundary"
            )
        self._read_thermal(force=True)
        if self._temperature is not None:
            self.log.info(
                "Thermal guard on: GPU at %g C, pausing above %g C (checked every %g s)",
                self._temperature,
                self.params.max_gpu_temp_c,
                self.params.thermal_poll_seconds,
            )
        return control

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        """Act on signals, cooldown and temperature at the step boundary."""
        step = state.global_step
        last_step = control.should_training_stop or (state.max_steps > 0 and step >= state.max_steps)
        every = self.params.cooldown_every_steps
        if every > 0 and self.params.cooldown_seconds > 0 and step % every == 0 and not last_step:
            self._cooldown_until = time.monotonic() + self.params.cooldown_seconds
            self._log_main("Cooldown at step %d: %g s", step, self.params.cooldown_seconds)
        self._hold(step, control, can_save=True, last_step=last_step)
        return control

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        """Mark the checkpoint just written as complete, then finish a hold deferred by the save."""
        dist = ranks.group()
        if dist is not None:
            dist.barrier()  # every rank has written its part of the checkpoint
        folder = os.path.join(args.output_dir, f"{CHECKPOINT_PREFIX}{state.global_step}")
        if args.should_save:
            if not os.path.isdir(folder):
                self.log.warning("Checkpoint folder %s not found: not marked complete", folder)
            else:
                try:
                    write_schedule_marker(folder, self.schedule, state.global_step)
                except IncompleteCheckpointError as err:
                    self.log.warning("%s", err)
                else:
                    self.log.info("Checkpoint saved: %s", folder)
                    rotate_checkpoints(args.output_dir, folder, keep=self.keep_checkpoints)
        if self._hold_after_save:
            self._hold_after_save = False
            self._hold(state.global_step, control, can_save=False, last_step=self._last_step_after_save)
        return control

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        """Signals from here on are too late to serve: see :meth:`finish_training`."""
        self.finish_training()
        return control

    # ------------------------------------------------------------------ the hold loop
    def _hold(self, step: int, control: TrainerControl, can_save: bool, last_step: bool) -> None:
        """Serve signals, then wait while paused, cooling down or too hot.

        When a checkpoint is due at this boundary (``can_save`` and ``control.should_save``), the
        waiting is deferred to :meth:`on_save`, so the checkpoint is written before the pause.
        """
        while True:
            if not last_step:  # no thermal wait once the work is done
                self._read_thermal(force=False)
            req = self._agree()
            if req.stop:
                self._stop(step, control, can_save)
                return
            if req.save:
                if can_save:
                    control.should_save = True
                    self._log_main("Checkpoint requested by SIGUSR2 at step %d", step)
                else:
                    msg = "Checkpoint requested by SIGUSR2 at step %d: %s%d was just saved and is current"
                    self._log_main(msg, step, CHECKPOINT_PREFIX, step)
            if req.toggles % 2 and last_step:  # the final save follows, then the process ends
                self._log_main("SIGUSR1 at the last step (%d): training already finished; pause ignored", step)
            elif req.toggles % 2:
                self._paused = not self._paused
            if can_save and control.should_save:
                self._hold_after_save = True  # save first; on_save resumes the hold
                self._last_step_after_save = last_step
                return
            if self._paused:
                if not self._pause_logged:
                    self._pause_logged = True
                    self._log_main("Paused at step %d (SIGUSR1 to resume)", step)
                    _free_accelerator_memory()
                time.sleep(WAIT_SLICE_SECONDS)
                continue
            if self._pause_logged:
                self._pause_logged = False
                self._log_main("Resumed at step %d", step)
            if req.cooling:
                time.sleep(min(WAIT_SLICE_SECONDS, max(self._cooldown_until - time.monotonic(), 0.01)))
                continue
            if req.hot and not last_step:
                hot = self._temperature is not None and self._temperature > self.params.max_gpu_temp_c
                if hot and not self._hot_logged:
                    self._hot_logged = True
                    self.log.warning(
                        "GPU at %g C (limit %g C): paused at step %d until it cools",
                        self._temperature,
                        self.params.max_gpu_temp_c,
                        step,
                    )
                time.sleep(WAIT_SLICE_SECONDS)
                continue
            if self._hot_logged:
                self._hot_logged = False
                self.log.info("GPU cooled to %g C: resumed at step %d", self._temperature or 0, step)
            return

    def _stop(self, step: int, control: TrainerControl, can_save: bool) -> None:
        self._stop_pending = False
        self.stopped_by_signal = True
        self._paused = self._pause_logged = False
        self._cooldown_until = 0.0
        control.should_training_stop = True
        if can_save:
            control.should_save = True
            self._log_main("Stop requested by SIGTERM at step %d: saving a checkpoint and stopping", step)
        else:
            self._log_main(
                "Stop requested by SIGTERM at step %d: %s%d is saved, stopping", step, CHECKPOINT_PREFIX, step
            )

    def _agree(self) -> _Requests:
        """Collect the signals since the last call; under torch.distributed, agree across ranks."""
        pending = self.signals.take()
        toggles, saves = pending.toggles, pending.saves
        if pending.terms:
            self._stop_pending = True
        cooling = time.monotonic() < self._cooldown_until
        hot = self._temperature is not None and self._temperature > self.params.max_gpu_temp_c
        values = [toggles, saves, int(self._stop_pending), int(cooling), int(hot)]
        dist = ranks.group()
        if dist is not None:  # MAX: a signal to any one rank counts for all; all ranks wait for the slowest
            values = self._all_reduce_max(dist, values)
        toggles, saves, stop, cooling, hot = values
        return _Requests(toggles=toggles, save=saves > 0, stop=stop > 0, cooling=cooling > 0, hot=hot > 0)

    @staticmethod
    def _all_reduce_max(dist: Any, values: list[int]) -> list[int]:
        import torch

        device = torch.device("cpu")
        if "nccl" in str(dist.get_backend()):
            device = torch.device("cuda", torch.cuda.current_device())
        tensor = torch.tensor(values, dtype=torch.int64, device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return [int(v) for v in tensor.tolist()]

    # ------------------------------------------------------------------ thermal guard
    def _read_thermal(self, force: bool) -> None:
        """Update the last temperature reading, at most once per ``thermal_poll_seconds``."""
        if self._thermal_off:
            if not self._thermal_off_logged and self.params.max_gpu_temp_c <= 0:
                self._thermal_off_logged = True
                limit = self.params.max_gpu_temp_c
                self.log.info("Thermal guard off: controller.max_gpu_temp_c is %g", limit)
            return
        now = time.monotonic()
        if not force and now - self._last_temp_read < self.params.thermal_poll_seconds:
            return
        self._last_temp_read = now
        try:
            value = self._read_temperature()
        except ThermalGuardUnavailable as err:
            self._disable_thermal(str(err))
            return
        except Exception as err:  # noqa: BLE001 - a broken sensor must not end a long run
            self._disable_thermal(f"reading the GPU temperature failed ({err!r})")
            return
        self._temperature = None if value is None else float(value)

    def _disable_thermal(self, reason: str) -> None:
        self._thermal_off = True
        self._temperature = None
        if not self._thermal_off_logged:
            self._thermal_off_logged = True
            self.log.info("Thermal guard off: %s", reason)

    # ------------------------------------------------------------------ helpers
    def _log_main(self, msg: str, *args: Any) -> None:
        """Log a status line once per job: on rank 0 only when distributed."""
        dist = ranks.group()
        if dist is None or dist.get_rank() == 0:
            self.log.info(msg, *args)
