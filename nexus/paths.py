"""Where a capability's outputs go. Stage commands pass paths explicitly (dvc.yaml is the source
of truth); direct use falls back to ``NEXUS_OUTPUT_DIR`` / ``NEXUS_CHECKPOINT_DIR`` or the defaults."""

from __future__ import annotations

import os
from pathlib import Path

ORGANIZED_DIR = Path("data/organized")
PREPARED_DIR = Path("data/prepared")
MODALITY_FILE = Path("data/modality.json")
LOGS_DIR = Path("logs")
RESULTS_DIR = Path("results")
REPORTS_DIR = Path("reports")
OMNI_OUTPUT = "models/capabilities/omni"
"""omni's composite, the start of a media capability on a text base (as params.yaml writes it)."""


def output_dir(capability: str, explicit: str | os.PathLike[str] | None = None) -> Path:
    """Model output folder: ``explicit``, else ``$NEXUS_OUTPUT_DIR/<cap>``, else ``models/capabilities/<cap>``."""
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("NEXUS_OUTPUT_DIR", "models/capabilities")) / capability


def checkpoint_dir(capability: str) -> Path:
    """Checkpoint folder: ``$NEXUS_CHECKPOINT_DIR/<cap>``, else ``checkpoints/<cap>``."""
    return Path(os.environ.get("NEXUS_CHECKPOINT_DIR", "checkpoints")) / capability


def prepared_dir(capability: str) -> Path:
    """Folder of a prepare stage: the formatted train and held-out examples, stats and settings."""
    return PREPARED_DIR / capability


def train_report_dir(capability: str) -> Path:
    """dvclive folder of a train stage (metrics.json + plots/)."""
    return REPORTS_DIR / "train" / capability


def eval_report_dir(capability: str) -> Path:
    """Folder of an eval stage (metrics.json + predictions.jsonl)."""
    return REPORTS_DIR / "eval" / capability
