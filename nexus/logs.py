"""Logging set-up for stages: one file per stage under logs/, plus stderr."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from nexus.paths import LOGS_DIR

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Upstream messages that say nothing a Nexus user can act on, each silenced where it is raised
# (its logger or its exact message), never by category or library wholesale:
# - bitsandbytes' CPU backend, on a CPU with avx512_bf16, tries the optional `kernels` package for a
#   faster 4-bit kernel and logs a warning when it is absent; its own kernel is used instead.
# - transformers 5.2x deprecates `is_gradient_checkpointing`, which PEFT's model loading still calls.
# - DeepSpeed (installed for launch.strategy zero2/zero3) is imported by accelerate whenever a Trainer
#   unwraps its model, and on a machine without a GPU says it falls back to its CPU accelerator.
NOISY_LOGGERS = {"bitsandbytes.backends.cpu.ops": "Failed to load CPU gemm_4bit_forward from kernels-community",
                 "DeepSpeed": "Setting accelerator to CPU"}
NOISY_WARNINGS = ((FutureWarning, r"`is_gradient_checkpointing` is deprecated"),)


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def quiet_known_upstream_noise() -> None:
    """Silence the upstream messages listed in :data:`NOISY_LOGGERS` and :data:`NOISY_WARNINGS`,
    and off a terminal the libraries' progress bars (Nexus logs step and item lines instead); call
    it before the libraries are imported; calling it twice is harmless."""
    import warnings

    for name, prefix in NOISY_LOGGERS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessage) and f.prefix == prefix for f in logger.filters):
            logger.addFilter(_DropMessage(prefix))
    for category, message in NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    if not sys.stderr.isatty():  # a log file, not a terminal: progress bars would write \r-redrawn lines
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # datasets' map/filter bars
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' loading/saving bars


def setup(stage_log: str, level: int = logging.INFO, rank: int = 0) -> Path:
    """Send ``nexus`` (and transformers/TRL warnings) to ``logs/<stage_log>.log`` and stderr.

    A multi-process stage's ranks share the file: rank 0 logs at ``level``, the others only their
    warnings and errors, each line marked ``[rank N]``.
    """
    LOGS_DIR.mkdir(parents=True, exist_ok=True)
    path = LOGS_DIR / f"{stage_log}.log"
    root = logging.getLogger()
    root.setLevel(logging.WARNING)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    formatter = logging.Formatter(FORMAT.replace("%(message)s", f"[rank {rank}] %(message)s") if rank else FORMAT)
    for handler in (logging.FileHandler(path, encoding="utf-8"), logging.StreamHandler(sys.stderr)):
        handler.setFormatter(formatter)
        root.addHandler(handler)
    logging.getLogger("nexus").setLevel(level if rank == 0 else max(level, logging.WARNING))
    return path


def exit_now(code: int) -> None:
    """Flush the logs and the standard streams, then end the process with ``code`` at once.

    For a train stage whose work is done (its output written, or its SIGTERM checkpoint marked):
    the interpreter's ~2 s teardown of torch and transformers is skipped, in which a kill would fail
    the stage (and make DVC retrain it all) or, on a rank, outlive the launcher's patience.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
