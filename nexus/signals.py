"""The train stage's signal handlers, from the first line of the stage to its exit.

``kill -USR1`` (pause toggle), ``kill -USR2`` (checkpoint now) and ``kill -TERM`` (checkpoint and
stop) are safe at any moment of a train stage, because :class:`StageSignals` is installed before
torch, the tokenizer or the model loads and stays installed until the process exits. What a
signal does depends on the phase the run is in:

================  ======================================  ==========================================
phase             SIGUSR1 / SIGUSR2                       SIGTERM
================  ======================================  ==========================================
``startup``       counted: served at the first step       exit 143 at once (``SystemExit``): nothing
                  boundary (pause / checkpoint there)     was trained, so there is nothing to save
``training``      counted: :class:`nexus.controller.TrainingController` serves it at the next step
                  boundary (checkpoint, then exit 143 for SIGTERM)
``finished``      logged as ignored ("training already    logged: the final save finishes (seconds)
                  finished; pause ignored")               and the stage ends normally
================  ======================================  ==========================================

The handlers do no real work: they bump a counter, log a line or, for SIGTERM during start-up,
raise ``SystemExit(143)`` (``finally`` blocks and atomic writers still clean up). Pure standard
library: importing this module loads neither torch nor transformers, so a stage installs it first.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

__all__ = [
    "EXIT_CODE_SIGTERM",
    "FINISHED",
    "STARTUP",
    "TRAINING",
    "Pending",
    "StageSignals",
    "install_stage_signals",
]

EXIT_CODE_SIGTERM = 143  # 128 + SIGTERM: what a stage stopped by SIGTERM exits with
STARTUP, TRAINING, FINISHED = "startup", "training", "finished"

_log = logging.getLogger(__name__)

_Handler = Callable[[int, FrameType | None], Any] | int | None


@dataclass(frozen=True)
class Pending:
    """Signals counted since the last :meth:`StageSignals.take`."""

    toggles: int = 0
    saves: int = 0
    terms: int = 0


class StageSignals:
    """SIGUSR1/SIGUSR2/SIGTERM handlers that count, log or stop according to the run's phase.

    Args:
        logger: where the handlers' lines go (default: the ``nexus.signals`` logger).
        phase: the phase to start in: ``startup`` for a stage (SIGTERM exits at once),
            ``training`` for a controller installed right before ``trainer.train()``.
    """

    def __init__(self, logger: logging.Logger | None = None, phase: str = STARTUP) -> None:
        if phase not in (STARTUP, TRAINING, FINISHED):
            raise ValueError(f"phase must be one of {STARTUP}, {TRAINING}, {FINISHED}; got {phase!r}")
        self.log = logger or _log
        self.phase = phase
        # Bumped by the handlers (main thread only), compared with the *_seen values by take().
        self._usr1 = self._usr2 = self._term = 0
        self._usr1_seen = self._usr2_seen = self._term_seen = 0
        self._previous: dict[int, _Handler] = {}

    @property
    def installed(self) -> bool:
        """Whether :meth:`install` is in effect (and no one has replaced the handlers since)."""
        return bool(self._previous) and signal.getsignal(signal.SIGTERM) == self._on_sigterm

    def install(self) -> StageSignals:
        """Install the three handlers, keeping the previous ones for :meth:`restore` (idempotent).

        Returns:
            The instance itself, for chaining.

        Raises:
            RuntimeError: called outside the main thread (Python delivers signals only there).
        """
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError(
                "install_signal_handlers() must run in the main thread (Python delivers signals only "
                "there); call it from the script's main thread before trainer.train()"
            )
        if self.installed:
            return self
        self._previous.clear()
        handlers = {
            getattr(signal, "SIGUSR1", None): self._on_sigusr1,
            getattr(signal, "SIGUSR2", None): self._on_sigusr2,
            signal.SIGTERM: self._on_sigterm,
        }
        for signum, handler in handlers.items():
            if signum is not None:
                self._previous[signum] = signal.signal(signum, handler)
        return self

    def restore(self) -> None:
        """Put back the handlers that were in place before :meth:`install`."""
        for signum, previous in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)
        self._previous.clear()

    # ------------------------------------------------------------------ phases
    def begin_training(self) -> None:
        """Enter the ``training`` phase (the first ``on_train_begin``).

        Raises:
            SystemExit: with 143, when a SIGTERM of the start-up phase was not acted on yet
                (its handler's exception was swallowed, e.g. inside a ``__del__``).
        """
        if self.phase == STARTUP and self._term > self._term_seen:
            self._exit_at_startup()
        self.phase = TRAINING

    def take(self) -> Pending:
        """The signals counted since the last call (each is handed out once)."""
        pending = Pending(self._usr1 - self._usr1_seen, self._usr2 - self._usr2_seen, self._term - self._term_seen)
        self._usr1_seen, self._usr2_seen, self._term_seen = self._usr1, self._usr2, self._term
        return pending

    def finish_training(self) -> bool:
        """Enter the ``finished`` phase; log the requests that came too late to be served.

        Returns:
            Whether a SIGTERM arrived after the last step boundary: the checkpoint of the last
            step is saved, so the caller exits 143 as the sender expects.
        """
        pending = self.take()
        self.phase = FINISHED
        if pending.toggles:
            self.log.info("SIGUSR1 after the last step: training already finished; pause ignored")
        if pending.saves:
            self.log.info("SIGUSR2 after the last step: training already finished; checkpoint ignored")
        return pending.terms > 0

    # ------------------------------------------------------------------ handlers
    def _on_sigusr1(self, signum: int, frame: FrameType | None) -> None:
        if self.phase == FINISHED:
            self.log.info("SIGUSR1: training already finished; pause ignored")
            return
        self._usr1 += 1

    def _on_sigusr2(self, signum: int, frame: FrameType | None) -> None:
        if self.phase == FINISHED:
            self.log.info("SIGUSR2: training already finished; checkpoint ignored")
            return
        self._usr2 += 1

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self._term += 1
        if self.phase == STARTUP:
            self._exit_at_startup()
        elif self.phase == FINISHED:
            self._term_seen = self._term
            self.log.info("SIGTERM: training already finished; the final save completes first")

    def _exit_at_startup(self) -> None:
        self._term_seen = self._term
        self.log.info("SIGTERM during start-up: stopping before training (nothing to checkpoint)")
        raise SystemExit(EXIT_CODE_SIGTERM)


_STAGE: StageSignals | None = None


def install_stage_signals(logger: logging.Logger | None = None) -> StageSignals:
    """The process's stage handlers, installed on the first call and kept until the process exits.

    A stage script calls it first thing (before torch loads); later calls (``nexus train``)
    return the same, already installed instance, counts included. A new instance replaces it once
    its run finished or its handlers were replaced (another stage run in the same process).
    """
    global _STAGE
    if _STAGE is None or _STAGE.phase == FINISHED or not _STAGE.installed:
        _STAGE = StageSignals(logger)
    return _STAGE.install()
