"""Progress of the long steps (nexus.progress): real Trainer runs on a tiny model, real generation."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from transformers import Trainer, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from nexus.capabilities import Example, cot
from nexus.config import CapabilityParams
from nexus.train_progress import TrainingBar, TrainingProgress, attach_training_progress
from tests.tiny import random_token_dataset, tiny_llama

STEP_LINE = re.compile(r"^train cot: step (\d+)/40 \(\d+%\), loss \d+\.\d{3}, \d+ tok/s, "
                       r"\d:\d\d:\d\d elapsed, ETA \d:\d\d:\d\d$")


def trainer(out: Path, max_steps: int, disable_tqdm: bool) -> Trainer:
    args = TrainingArguments(output_dir=str(out), max_steps=max_steps, per_device_train_batch_size=2,
                             learning_rate=1e-3, use_cpu=True, report_to="none", save_strategy="no",
                             logging_steps=1, disable_tqdm=disable_tqdm, seed=0,
                             include_num_input_tokens_seen=True)
    return Trainer(model=tiny_llama(), args=args, train_dataset=random_token_dataset(rows=8))


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> tuple[object, object]:
    from nexus.loading import load_model, load_tokenizer

    return load_model(tiny_model_dir), load_tokenizer(tiny_model_dir)


def sums(count: int) -> list[Example]:
    return [cot.format_gsm8k({"question": f"What is {i} + 1?", "answer": f"{i} plus 1.\n#### {i + 1}"})
            for i in range(count)]


def messages(caplog: pytest.LogCaptureFixture, start: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(start)]


def test_a_training_run_logs_step_lines_with_loss_rate_and_eta_and_no_raw_dicts(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    run = trainer(tmp_path, max_steps=40, disable_tqdm=True)
    attach_training_progress(run, "cot")
    kinds = [type(c) for c in run.callback_handler.callbacks]
    assert TrainingProgress in kinds and PrinterCallback not in kinds and ProgressCallback not in kinds
    with caplog.at_level(logging.INFO, logger="nexus"):
        run.train()
    lines = messages(caplog, "train cot:")
    assert lines and all(STEP_LINE.match(line) for line in lines), lines
    steps = [int(STEP_LINE.match(line)[1]) for line in lines]
    assert steps == [1, *range(2, 41, 2)]  # the first, every 40 // 20 = 2 steps, the last once
    assert lines[-1].startswith("train cot: step 40/40 (100%)") and lines[-1].endswith("ETA 0:00:00")
    printed = capsys.readouterr()
    assert "{'loss'" not in printed.out + printed.err and "'grad_norm'" not in printed.out + printed.err


def test_on_a_terminal_the_bar_carries_loss_and_rate_instead_of_dicts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = trainer(tmp_path, max_steps=4, disable_tqdm=False)
    attach_training_progress(run, "cot")
    bars = [c for c in run.callback_handler.callbacks if isinstance(c, ProgressCallback)]
    assert len(bars) == 1 and isinstance(bars[0], TrainingBar)
    run.train()
    printed = capsys.readouterr()
    assert "4/4" in printed.err and "loss=" in printed.err and "tok/s=" in printed.err
    assert "{'loss'" not in printed.out + printed.err


def test_eval_scoring_reports_items_done_of_the_total(tiny: tuple, caplog: pytest.LogCaptureFixture) -> None:
    from nexus.evaluate import score_examples

    with caplog.at_level(logging.INFO, logger="nexus"):
        scores, texts = score_examples(*tiny, "cot", sums(20), CapabilityParams(max_new_tokens=3), "base")
    assert len(texts) == 20 and set(scores) >= {"accuracy"}
    lines = messages(caplog, "eval cot base:")
    done = [line.split(": ", 1)[1].split(" ", 1)[0] for line in lines]
    assert done == ["8/20", "16/20", "20/20"], lines  # batches of 8: after each, every 20 // 10 items
    assert re.search(r"20/20 done \(100%\), \d:\d\d:\d\d elapsed, ETA 0:00:00$", lines[-1])


def test_pair_building_reports_answers_done_of_the_examples_used(tiny: tuple,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    from nexus.methods.rows import pairs_from_examples

    with caplog.at_level(logging.INFO, logger="nexus"):
        pairs = pairs_from_examples(*tiny, "cot", sums(12), limit=10, max_new_tokens=3)
    assert len(pairs) == 10  # a random model answers none right: every example gives a pair
    lines = messages(caplog, "cot pairs: base-model answers:")
    assert [line.rsplit(": ", 1)[1].split(" ")[0] for line in lines] == ["8/10", "10/10"], lines
