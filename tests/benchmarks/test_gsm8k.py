"""GSM8K on the embedded SmolLM2 (``pytest -B gsm8k`` or ``pytest -G``; deselected by default)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from nexus.benchmarks import gsm8k, run_benchmarks

LIMIT = 8


@pytest.mark.benchmark("gsm8k")
def test_gsm8k_on_smollm2(smollm2_dir: Path, tmp_path: Path) -> None:
    result = run_benchmarks(smollm2_dir, "gsm8k", limit=LIMIT, out_dir=tmp_path / "reports",
                            results_dir=tmp_path / "results")["gsm8k"]

    assert result["n"] == LIMIT and len(result["examples"]) == LIMIT
    assert result["config"] == {"num_fewshot": 5, "max_new_tokens": 256, "limit": LIMIT,
                                "shots_file": "data/samples/gsm8k/train_first500.jsonl"}
    records = gsm8k.load_records(gsm8k.questions_file(), LIMIT)
    for example, record in zip(result["examples"], records, strict=True):
        assert example["question"] == record["question"]
        assert example["gold"] == gsm8k.gold_answer(record["answer"])
        assert "Question:" not in example["output"]  # cut at the stop string
        assert example["prediction"] == gsm8k.extract_strict(example["output"])
        assert example["correct"] == (example["prediction"] == example["gold"])
        assert example["correct_flexible"] == (example["prediction_flexible"] == example["gold"])

    metrics = result["metrics"]
    assert 0.0 <= metrics["accuracy"] <= 1.0 and 0.0 <= metrics["accuracy_flexible"] <= 1.0
    examples = result["examples"]
    assert metrics["accuracy"] == round(sum(e["correct"] for e in examples) / LIMIT, 4)
    assert metrics["accuracy_flexible"] == round(sum(e["correct_flexible"] for e in examples) / LIMIT, 4)
    # The few-shot format works: the instruct model answers with numbers, mostly in the '#### N' form.
    assert sum(e["prediction_flexible"] is not None for e in result["examples"]) >= LIMIT // 2
    assert any(e["prediction"] is not None for e in result["examples"])

    saved = json.loads((tmp_path / "reports" / "gsm8k.json").read_text(encoding="utf-8"))
    assert saved["metrics"] == metrics and saved["examples"] == result["examples"]
    with (tmp_path / "results" / "benchmarks.csv").open(newline="", encoding="utf-8") as f:
        (row,) = list(csv.DictReader(f))
    assert row["benchmark"] == "gsm8k" and row["n"] == str(LIMIT)
    assert float(row["accuracy"]) == metrics["accuracy"]
