"""A run's dvclive logger on the Trainer's step axis, continuous across a resume.

dvclive's callback counts its own log calls; :class:`LiveAtGlobalStep` sets the step to the
Trainer's global step first, and :func:`live_logger` cuts a resumed run's history back to its
checkpoint (:func:`trim_metric_history`), so the steps the run trains again are not there twice.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from nexus.atomic import write_text_atomic
from nexus.checkpoints import checkpoint_progress

log = logging.getLogger(__name__)


class LiveAtGlobalStep(TrainerCallback):
    """Sets dvclive's step to the Trainer's global step before each log (put it before
    ``DVCLiveCallback``, which only counts log calls): a resumed run's curve continues on the same
    axis instead of appending the replayed steps after the old ones."""

    def __init__(self, live: Any) -> None:
        self.live = live

    def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.live.step = state.global_step


def trim_metric_history(plots_dir: str | Path, last_step: int) -> int:
    """Drop the rows after ``last_step`` (and rows cut by a kill) from every dvclive ``*.tsv``
    under ``plots_dir``, so that the steps a resumed run replays are not there twice.

    Returns:
        How many rows were dropped.
    """
    dropped = 0
    root = Path(plots_dir)
    for path in sorted(root.rglob("*.tsv")) if root.is_dir() else []:
        rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8")), delimiter="\t"))
        if not rows or "step" not in rows[0]:
            continue
        col = rows[0].index("step")
        kept = [rows[0]] + [r for r in rows[1:] if len(r) == len(rows[0]) and r[col].isdigit()
                            and int(r[col]) <= last_step]
        if len(kept) != len(rows):
            dropped += len(rows) - len(kept)
            out = io.StringIO()
            csv.writer(out, delimiter="\t", lineterminator=os.linesep).writerows(kept)
            write_text_atomic(out.getvalue(), path)
    return dropped


def live_logger(report: str | Path, resume: Path | None) -> Any:
    """The run's ``dvclive.Live`` in ``report``; on resume its history is first cut back to the
    checkpoint's step (:func:`trim_metric_history`). Attach it with :class:`LiveAtGlobalStep`."""
    from dvclive import Live

    if resume is not None:
        step = checkpoint_progress(resume)[0]
        if dropped := trim_metric_history(Path(report) / "plots" / "metrics", step):
            log.info("dvclive: dropped %d rows after step %d (the steps this run trains again)", dropped, step)
    return Live(dir=str(report), dvcyaml=None, save_dvc_exp=False, resume=resume is not None)
