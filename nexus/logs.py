"""Logging set-up for stages: one file per stage under logs/, plus stderr."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from nexus.paths import LOGS_DIR

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup(stage_log: str, level: int = logging.INFO) -> Path:
    """Send ``nexus`` (and transformers/TRL warnings) to ``logs/<stage_log>.log`` and stderr."""
    LOGS_DIR.mkdir(parents=True, exist_ok=True)
    path = LOGS_DIR / f"{stage_log}.log"
    root = logging.getLogger()
    root.setLevel(logging.WARNING)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    formatter = logging.Formatter(FORMAT)
    for handler in (logging.FileHandler(path, encoding="utf-8"), logging.StreamHandler(sys.stderr)):
        handler.setFormatter(formatter)
        root.addHandler(handler)
    logging.getLogger("nexus").setLevel(level)
    return path
