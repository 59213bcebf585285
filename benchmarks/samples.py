"""Sample rows the on-demand benchmark scripts train on: real GSM8K records from data/samples,
formatted by the cot capability (imported by the scripts beside this file)."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GSM8K = ROOT / "data" / "samples" / "gsm8k" / "train_first500.jsonl"


def cot_examples(n: int) -> list[dict]:
    """The first ``n`` GSM8K sample records as cot examples (prompt, completion, reference)."""
    from nexus.capabilities import cot

    rows = []
    with GSM8K.open(encoding="utf-8") as f:
        for line in f:
            rows.append(cot.format_gsm8k(json.loads(line)))
            if len(rows) == n:
                break
    return rows
