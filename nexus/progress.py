"""Progress of the long steps, through the ``nexus`` logger (console and ``logs/<stage>.log``).

- Training (:mod:`nexus.train_progress`, which imports transformers; this module does not):
  :func:`~nexus.train_progress.attach_training_progress` replaces the Trainer's own log printer (a raw dict per
  logging step) with :class:`TrainingProgress`, one line every few steps, such as
  ``train cot: step 12/80 (15%), loss 1.234, 134 tok/s, 0:01:10 elapsed, ETA 0:06:30``. On a
  terminal (``disable_tqdm`` off) transformers' own bar stays, with the loss and tokens/s as its
  postfix (:class:`TrainingBar`) instead of a dict under it.
- Generation: :class:`ItemsDone` is the ``progress(done)`` callback that
  :func:`nexus.generation.batch.generate_rows` and ``generate_examples`` take.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

log = logging.getLogger(__name__)

REPORTS_PER_RUN = 20  # training lines per run (plus the first and the last step)
REPORTS_PER_LIST = 10  # items-done lines per generated list (plus the first batch and the last)


def clock(seconds: float) -> str:
    """``seconds`` as ``H:MM:SS``."""
    return str(timedelta(seconds=int(max(seconds, 0))))


def eta(elapsed: float, done: int, left: int) -> str:
    return clock(elapsed / done * left) if done > 0 else "?"


class Rate:
    """Tokens seen during this run (not before a resume): the Trainer's count, else TRL's ``num_tokens``."""

    def __init__(self, state: Any) -> None:
        self.start = time.perf_counter()
        self.step0 = state.global_step
        self.tokens0 = state.num_input_tokens_seen or 0
        self.logged0: float | None = None

    def tokens(self, state: Any, logs: dict[str, Any]) -> float:
        if state.num_input_tokens_seen:
            return state.num_input_tokens_seen - self.tokens0
        if "num_tokens" not in logs:
            return 0.0
        if self.logged0 is None:  # TRL's count is cumulative; on resume it starts above 0
            self.logged0 = 0.0 if self.step0 == 0 else float(logs["num_tokens"])
        return float(logs["num_tokens"]) - self.logged0


class ItemsDone:
    """A ``progress(done)`` callback: ``label: done/total (p%), elapsed, ETA`` after the first batch,
    every ``total // 10`` items and at the last."""

    def __init__(self, label: str, total: int, logger: logging.Logger = log) -> None:
        self.label, self.total, self.logger = label, total, logger
        self.every = max(1, total // REPORTS_PER_LIST)
        self.start = time.perf_counter()
        self.next_done = 1

    def __call__(self, done: int) -> None:
        if done < self.next_done and done < self.total:
            return
        self.next_done = (done // self.every + 1) * self.every
        elapsed = time.perf_counter() - self.start
        self.logger.info("%s: %d/%d done (%d%%), %s elapsed, ETA %s", self.label, done, self.total,
                         100 * done // max(self.total, 1), clock(elapsed),
                         eta(elapsed, done, self.total - done))
