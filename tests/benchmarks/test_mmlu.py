"""MMLU on the embedded SmolLM2 (``pytest -B mmlu`` or ``pytest -G``; deselected by default)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from nexus.benchmarks import mmlu, run_benchmarks

LIMIT = 4  # questions per subject


@pytest.mark.benchmark("mmlu")
def test_mmlu_on_smollm2(smollm2_dir: Path, tmp_path: Path) -> None:
    result = run_benchmarks(smollm2_dir, ["mmlu"], limit=LIMIT, out_dir=tmp_path / "reports",
                            results_dir=tmp_path / "results")["mmlu"]

    subjects = mmlu.subjects()
    assert result["n"] == LIMIT * len(subjects)
    assert list(result["subjects"]) == subjects and all(s["n"] == LIMIT for s in result["subjects"].values())
    examples = result["examples"]
    for e in examples:
        assert e["gold"] in mmlu.LETTERS and e["prediction"] in mmlu.LETTERS
        # the prediction is the argmax of the letters' log-likelihoods
        assert e["prediction"] == max(e["logprobs"], key=e["logprobs"].get)
        assert e["correct"] == (e["prediction"] == e["gold"])
        assert sum(math.exp(v) for v in e["logprobs"].values()) <= 1.0 + 1e-6

    metrics = result["metrics"]
    assert 0.0 <= metrics["accuracy"] <= 1.0 and 0.0 <= metrics["accuracy_macro"] <= 1.0
    hits = sum(e["prediction"] == e["gold"] for e in examples)
    assert metrics["accuracy"] == round(hits / len(examples), 4)
    per_subject = [sum(e["correct"] for e in examples if e["subject"] == s) / LIMIT for s in subjects]
    assert metrics["accuracy_macro"] == round(sum(per_subject) / len(subjects), 4)
    # The instruct model has learnt the format: nearly all next-token mass is on the four letters.
    assert sum(sum(math.exp(v) for v in e["logprobs"].values()) for e in examples) / len(examples) > 0.5

    saved = json.loads((tmp_path / "reports" / "mmlu.json").read_text(encoding="utf-8"))
    assert saved["metrics"] == metrics and saved["subjects"] == result["subjects"]


@pytest.mark.benchmark("mmlu")
def test_mmlu_batched_scores_match_one_prompt_alone(smollm2_dir: Path) -> None:
    """Padding in a batch does not change a question's letter log-probabilities."""
    import torch

    from nexus.loading import load_model, load_tokenizer

    model, tokenizer = load_model(smollm2_dir).eval(), load_tokenizer(smollm2_dir)
    batched = mmlu.run(model, tokenizer, limit=2, batch_size=6,
                       subject_names=["global_facts", "machine_learning", "abstract_algebra"])
    dev = mmlu.read_rows(mmlu.subjects_dir() / "dev" / "machine_learning_dev.csv")
    row = mmlu.read_rows(mmlu.subjects_dir() / "test" / "machine_learning_test.csv", 1)[0]
    ids = tokenizer(mmlu.build_prompt("machine_learning", dev, row), return_tensors="pt").input_ids
    with torch.inference_mode():
        logprobs = torch.log_softmax(model(ids).logits[0, -1].float(), -1)
    alone = logprobs[mmlu.letter_token_ids(tokenizer)].tolist()
    example = next(e for e in batched["examples"] if e["subject"] == "machine_learning" and e["index"] == 0)
    for letter, value in zip(mmlu.LETTERS, alone, strict=True):
        assert example["logprobs"][letter] == pytest.approx(value, abs=2e-3)
