"""MMLU: 5-shot multiple choice, scored by the log-likelihood of the answer letter.

The prompt follows lm-evaluation-harness's ``mmlu`` task (Hendrycks et al.'s format)::

    The following are multiple choice questions (with answers) about abstract algebra.

    <dev question 1>
    A. ...
    B. ...
    C. ...
    D. ...
    Answer: B

    ... (the subject's 5 dev questions) ...

    <test question>
    A. ...
    ...
    Answer:

One forward pass per question; the prediction is the letter among `` A``/`` B``/`` C``/`` D`` with
the highest next-token log-probability (lm-eval's ``acc``: the continuations are single tokens, so
this equals its summed log-likelihood). ``limit`` is the number of test questions per subject (the
first ones of each file). ``accuracy`` is the micro average over all questions (lm-eval's ``mmlu``
group), ``accuracy_macro`` the mean of the per-subject accuracies.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from pathlib import Path
from typing import Any

from nexus.benchmarks.common import DEFAULT_CONTEXT, BenchmarkError, data_dir, encode, require_file
from nexus.generation.batch import left_pad, length_sorted_batches
from nexus.generation.limits import context_length, padding_id

log = logging.getLogger(__name__)

NAME = "mmlu"
DEFAULT_LIMIT = 20  # test questions per subject
DEFAULT_FEWSHOT = 5
LETTERS = ("A", "B", "C", "D")


def subjects_dir(data: str | os.PathLike[str] | None = None) -> Path:
    """``<data>/mmlu/data`` (holding ``dev/``, ``val/`` and ``test/``)."""
    return data_dir(data) / "mmlu" / "data"


def subjects(data: str | os.PathLike[str] | None = None) -> list[str]:
    """The subjects with a test file, sorted (``abstract_algebra``, ...)."""
    folder = subjects_dir(data) / "test"
    names = sorted(p.name.removesuffix("_test.csv") for p in folder.glob("*_test.csv"))
    if not names:
        raise BenchmarkError(f"no MMLU test files (*_test.csv) in {folder}: restore data/benchmarks/mmlu "
                             "from git (docs/benchmarks.md)")
    return names


def read_rows(path: str | os.PathLike[str], limit: int | None = None) -> list[dict[str, str]]:
    """Rows of a headerless MMLU CSV as ``{"question", "A", "B", "C", "D", "answer"}`` (first ``limit``)."""
    rows: list[dict[str, str]] = []
    with Path(path).open(newline="", encoding="utf-8") as f:
        for line_no, fields in enumerate(csv.reader(f), 1):
            if len(fields) != 6 or fields[5].strip() not in LETTERS:
                raise BenchmarkError(f"{path}:{line_no}: expected question,A,B,C,D,answer(A-D); "
                                     f"got {fields!r:.120}")
            rows.append(dict(zip(("question", *LETTERS, "answer"), fields, strict=True)))
            rows[-1]["answer"] = rows[-1]["answer"].strip()
            if limit and len(rows) >= limit:
                break
    return rows


def format_question(row: dict[str, str]) -> str:
    """A question with its four lettered choices, ending in ``Answer:``."""
    choices = "".join(f"\n{letter}. {row[letter]}" for letter in LETTERS)
    return f"{row['question'].strip()}{choices}\nAnswer:"


def header(subject: str) -> str:
    """The instruction line that opens every prompt of ``subject``."""
    topic = subject.replace("_", " ")
    return f"The following are multiple choice questions (with answers) about {topic}.\n\n"


def build_prompt(subject: str, shots: list[dict[str, str]], row: dict[str, str]) -> str:
    """The k-shot prompt for ``row``: header, solved dev questions, then the open question."""
    solved = "".join(f"{format_question(s)} {s['answer']}\n\n" for s in shots)
    return header(subject) + solved + format_question(row)


def letter_token_ids(tokenizer: Any) -> list[int]:
    """Token ids of `` A``, `` B``, `` C``, `` D``; each must be a single token."""
    ids = []
    for letter in LETTERS:
        tokens = tokenizer(f" {letter}", add_special_tokens=False).input_ids
        if len(tokens) != 1:
            raise BenchmarkError(f"the tokenizer splits ' {letter}' into {len(tokens)} tokens; this MMLU "
                                 "scorer needs single-token answer letters (use --backend lm-eval for such "
                                 "a model)")
        ids.append(tokens[0])
    return ids


def run(model: Any, tokenizer: Any, limit: int | None = None, *, data: str | os.PathLike[str] | None = None,
        num_fewshot: int = DEFAULT_FEWSHOT, batch_size: int = 8,
        subject_names: list[str] | None = None) -> dict[str, Any]:
    """Score a loaded causal LM on the first ``limit`` test questions of every subject (all when 0).

    Returns ``{"metrics", "n", "subjects", "config", "examples"}``; each example holds the
    subject, gold letter, predicted letter and the four letters' log-probabilities.
    """
    import torch

    limit = DEFAULT_LIMIT if limit is None else limit
    folder = subjects_dir(data)
    items: list[tuple[str, int, dict[str, str]]] = []
    prompts: list[str] = []
    for subject in subject_names or subjects(data):
        dev = require_file(folder / "dev" / f"{subject}_dev.csv", f"MMLU {subject} dev file")
        shots = read_rows(dev, num_fewshot) if num_fewshot else []
        if len(shots) < num_fewshot:
            raise BenchmarkError(f"{subject}: {len(shots)} dev questions, fewer than "
                                 f"num_fewshot={num_fewshot}")
        test = require_file(folder / "test" / f"{subject}_test.csv", f"MMLU {subject} test file")
        for index, row in enumerate(read_rows(test, limit or None)):
            items.append((subject, index, row))
            prompts.append(build_prompt(subject, shots, row))

    letter_ids = letter_token_ids(tokenizer)
    budget = context_length(model, DEFAULT_CONTEXT) - 1
    encoded = [encode(tokenizer, p, budget) for p in prompts]
    pad_id = padding_id(tokenizer)
    logprobs: list[list[float]] = [[] for _ in items]
    start = time.monotonic()
    for done, batch in enumerate(length_sorted_batches([len(e) for e in encoded], batch_size), 1):
        inputs = left_pad([encoded[i] for i in batch], pad_id, model.device)
        with torch.inference_mode():
            logits = model(**inputs, logits_to_keep=1).logits[:, -1, :].float()
        scores = torch.log_softmax(logits, dim=-1)[:, letter_ids].tolist()
        for i, row_scores in zip(batch, scores, strict=True):
            logprobs[i] = row_scores
        if done % 5 == 0 or done * batch_size >= len(items):
            log.info("mmlu: %d/%d questions (%.0f s)", min(done * batch_size, len(items)), len(items),
                     time.monotonic() - start)
    return score(items, logprobs, config={"num_fewshot": num_fewshot, "limit_per_subject": limit})


def score(items: list[tuple[str, int, dict[str, str]]], logprobs: list[list[float]],
          config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Accuracy per subject, micro and macro, from the four letters' log-probabilities per question."""
    examples: list[dict[str, Any]] = []
    per_subject: dict[str, list[bool]] = {}
    for (subject, index, row), scores in zip(items, logprobs, strict=True):
        prediction = LETTERS[max(range(len(LETTERS)), key=lambda k: scores[k])]
        correct = prediction == row["answer"]
        per_subject.setdefault(subject, []).append(correct)
        examples.append({"subject": subject, "index": index, "question": row["question"],
                         "gold": row["answer"], "prediction": prediction, "correct": correct,
                         "logprobs": {k: round(s, 4) for k, s in zip(LETTERS, scores, strict=True)}})
    subject_scores = {s: {"n": len(c), "accuracy": round(sum(c) / len(c), 4)} for s, c in per_subject.items()}
    n = len(examples)
    metrics = {
        "accuracy": round(sum(e["correct"] for e in examples) / n, 4) if n else 0.0,
        "accuracy_macro": round(sum(sum(c) / len(c) for c in per_subject.values()) / len(per_subject), 4)
        if per_subject else 0.0,
    }
    return {"metrics": metrics, "n": n, "subjects": subject_scores, "config": config or {},
            "examples": examples}
