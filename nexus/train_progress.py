"""Training progress: one ``step n/N, loss, tok/s, elapsed, ETA`` line every few steps through the
``nexus`` logger, or transformers' own bar on a terminal (see :mod:`nexus.progress` for the shared
clock and rate). Imports transformers: the trainer's module only, never the planning path.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from nexus.progress import REPORTS_PER_RUN, Rate, clock, eta

log = logging.getLogger("nexus.progress")


class TrainingProgress(TrainerCallback):
    """One log line every ``max(1, N // 20)`` steps, and at the first and the last: step n/N, loss,
    tokens/s and ETA (both over this run's steps, so a resumed run's rate is its own)."""

    def __init__(self, label: str, logger: logging.Logger = log) -> None:
        self.label, self.logger = label, logger
        self.rate: Rate | None = None
        self.loss: float | None = None
        self.next_step = self.reported = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.rate = Rate(state)
        self.next_step, self.reported = state.global_step + 1, state.global_step

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> None:
        logs = logs or {}
        if "loss" in logs:
            self.loss = float(logs["loss"])
        step, total = state.global_step, state.max_steps
        due = step >= self.next_step or step == total
        if self.rate is None or not due or step <= self.reported:  # the end-of-run log repeats the last step
            return
        every = max(1, total // REPORTS_PER_RUN)
        self.next_step, self.reported = (step // every + 1) * every, step
        self.logger.info("train %s: %s", self.label, self.line(state, logs))

    def line(self, state: Any, logs: dict[str, Any]) -> str:
        """``step n/N (p%), loss x, r tok/s, elapsed, ETA`` (loss and rate left out while unknown)."""
        assert self.rate is not None
        step, total = state.global_step, state.max_steps
        elapsed = time.perf_counter() - self.rate.start
        parts = [f"step {step}/{total} ({100 * step // max(total, 1)}%)"]
        if self.loss is not None:
            parts.append(f"loss {self.loss:.3f}")
        if tokens := self.rate.tokens(state, logs):
            parts.append(f"{tokens / max(elapsed, 1e-9):.0f} tok/s")
        parts += [f"{clock(elapsed)} elapsed", f"ETA {eta(elapsed, step - self.rate.step0, total - step)}"]
        return ", ".join(parts)


class TrainingBar(ProgressCallback):
    """transformers' training bar (step n/N, elapsed, ETA), the loss and tokens/s as its postfix
    instead of a logged dict written under it."""

    def __init__(self) -> None:
        super().__init__()
        self.rate: Rate | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        super().on_train_begin(args, state, control, **kwargs)
        self.rate = Rate(state)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> None:
        logs = logs or {}
        if self.training_bar is None or self.rate is None or "loss" not in logs:
            return
        postfix = {"loss": f"{float(logs['loss']):.3f}"}
        if tokens := self.rate.tokens(state, logs):
            postfix["tok/s"] = f"{tokens / max(time.perf_counter() - self.rate.start, 1e-9):.0f}"
        self.training_bar.set_postfix(postfix, refresh=False)


def attach_training_progress(trainer: Any, label: str) -> None:
    """Replace the Trainer's printer (a dict per log) or bar by :class:`TrainingBar` when
    ``args.disable_tqdm`` is off (a terminal), else by :class:`TrainingProgress` lines."""
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(TrainingProgress(label) if trainer.args.disable_tqdm else TrainingBar())
