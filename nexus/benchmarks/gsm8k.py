"""GSM8K: k-shot greedy generation, exact match of the final number.

The prompt and the scoring follow lm-evaluation-harness's ``gsm8k`` task (v3): each shot is
``Question: <q>\\nAnswer: <worked solution> #### N`` separated by a blank line, the test question
ends with ``Answer:``, generation is greedy and stops at ``Question:``. The shots are the first
``num_fewshot`` records of ``data/samples/gsm8k/train_first500.jsonl`` (the head of GSM8K's train
split); the questions are the first ``limit`` records of ``data/benchmarks/gsm8k/test.jsonl``.

Two scores: ``accuracy`` (lm-eval's strict-match: the number after the first ``####`` the model
writes) and ``accuracy_flexible`` (the last number in the output). Numbers are compared after
removing commas and ``$`` and a trailing ``.``/``.0`` (``1,000.0`` equals ``1000``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from nexus.benchmarks.common import DEFAULT_CONTEXT, REPO_ROOT, data_dir, encode, require_file
from nexus.generation.batch import generate_rows
from nexus.generation.limits import context_length

log = logging.getLogger(__name__)

NAME = "gsm8k"
DEFAULT_LIMIT = 50
DEFAULT_FEWSHOT = 5
MAX_NEW_TOKENS = 256  # lm-eval's default max_gen_toks
STOP_STRINGS = ("Question:", "</s>", "<|im_end|>")  # lm-eval's gsm8k `until`
SHOTS_FILE = REPO_ROOT / "data" / "samples" / "gsm8k" / "train_first500.jsonl"

_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
_NUMBER = re.compile(r"-?\$?[0-9][0-9,]*(?:\.[0-9]+)?")
_PLAIN_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]*)?|-?\.[0-9]+")


def load_records(path: str | os.PathLike[str], limit: int | None = None) -> list[dict[str, str]]:
    """The first ``limit`` (all when None or 0) ``{"question", "answer"}`` records of a GSM8K jsonl file."""
    records: list[dict[str, str]] = []
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                records.append(json.loads(line))
                if limit and len(records) >= limit:
                    break
    return records


def questions_file(data: str | os.PathLike[str] | None = None) -> Path:
    """``<data>/gsm8k/test.jsonl`` (the full 1,319-question test split)."""
    return require_file(data_dir(data) / "gsm8k" / "test.jsonl", "GSM8K test.jsonl")


def normalize_number(text: str) -> str:
    """Canonical form of a number string: no commas or ``$``, no trailing ``.``/``.0``.

    ``"$1,000.00"`` -> ``"1000"``, ``"-3.50"`` -> ``"-3.5"``; a string that is not a number is
    returned stripped of those characters.
    """
    cleaned = text.strip().replace(",", "").replace("$", "").rstrip(".").strip()
    if not _PLAIN_NUMBER.fullmatch(cleaned):
        return cleaned
    whole, _, fraction = cleaned.partition(".")
    fraction = fraction.rstrip("0")
    whole = whole.lstrip("-").lstrip("0") or "0"
    sign = "-" if cleaned.startswith("-") and (whole != "0" or fraction) else ""
    return f"{sign}{whole}.{fraction}" if fraction else f"{sign}{whole}"


def gold_answer(answer: str) -> str:
    """The normalized number after the last ``####`` of a GSM8K reference solution."""
    if "####" not in answer:
        raise ValueError(f"not a GSM8K answer (no '####'): {answer[-80:]!r}")
    return normalize_number(answer.rsplit("####", 1)[1])


def extract_strict(output: str) -> str | None:
    """The number after the first ``#### `` in a generation (lm-eval's strict-match), normalized."""
    match = _STRICT.search(output)
    return normalize_number(match.group(1)) if match else None


def extract_flexible(output: str) -> str | None:
    """The last number in a generation (lm-eval's flexible-extract), normalized."""
    matches = _NUMBER.findall(output)
    return normalize_number(matches[-1]) if matches else None


def cut_at_stop(text: str, stops: tuple[str, ...] = STOP_STRINGS) -> str:
    """``text`` up to the first stop string (generation may run a few tokens past it)."""
    cut = len(text)
    for stop in stops:
        index = text.find(stop)
        if index != -1:
            cut = min(cut, index)
    return text[:cut]


def format_shot(record: dict[str, str]) -> str:
    """One solved example: ``Question: ...\\nAnswer: <solution with #### N>``."""
    return f"Question: {record['question']}\nAnswer: {record['answer']}"


def build_prompt(question: str, shots: list[dict[str, str]]) -> str:
    """The k-shot prompt for ``question``: solved shots, a blank line between, then ``Answer:``."""
    parts = [format_shot(s) for s in shots] + [f"Question: {question}\nAnswer:"]
    return "\n\n".join(parts)


def run(model: Any, tokenizer: Any, limit: int | None = None, *, data: str | os.PathLike[str] | None = None,
        num_fewshot: int = DEFAULT_FEWSHOT, batch_size: int = 8, max_new_tokens: int = MAX_NEW_TOKENS,
        shots_file: str | os.PathLike[str] = SHOTS_FILE) -> dict[str, Any]:
    """Score a loaded causal LM on the first ``limit`` GSM8K test questions (all when 0).

    Returns ``{"metrics", "n", "config", "examples"}``; each example holds the question, gold
    number, raw output and both predictions.
    """
    limit = DEFAULT_LIMIT if limit is None else limit
    records = load_records(questions_file(data), limit or None)
    shots_path = require_file(Path(shots_file), "GSM8K few-shot file")
    shots = load_records(shots_path, num_fewshot) if num_fewshot else []
    if len(shots) < num_fewshot:
        raise ValueError(f"{shots_file} has {len(shots)} records, fewer than num_fewshot={num_fewshot}")
    budget = max(context_length(model, DEFAULT_CONTEXT) - max_new_tokens, 1)
    prompts = [encode(tokenizer, build_prompt(r["question"], shots), budget) for r in records]
    start = time.monotonic()

    def progress(done: int) -> None:
        log.info("gsm8k: %d/%d questions (%.0f s)", done, len(records), time.monotonic() - start)

    new = generate_rows(model, tokenizer, prompts, max_new_tokens, batch_size=batch_size,
                        stop_strings=STOP_STRINGS, length_sorted=True, cut=False, progress=progress)
    outputs = [cut_at_stop(text) for text in tokenizer.batch_decode(new, skip_special_tokens=True)]
    return score(records, outputs, config={"num_fewshot": num_fewshot, "max_new_tokens": max_new_tokens,
                                           "shots_file": _relative(Path(shots_file)), "limit": limit})


def score(records: list[dict[str, str]], outputs: list[str],
          config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Exact-match scores of ``outputs`` (one generation per record) against the records' answers."""
    examples: list[dict[str, Any]] = []
    for index, (record, output) in enumerate(zip(records, outputs, strict=True)):
        gold = gold_answer(record["answer"])
        strict, flexible = extract_strict(output), extract_flexible(output)
        examples.append({"index": index, "question": record["question"], "gold": gold, "output": output,
                         "prediction": strict, "prediction_flexible": flexible,
                         "correct": strict == gold, "correct_flexible": flexible == gold})
    n = len(examples)
    metrics = {
        "accuracy": round(sum(e["correct"] for e in examples) / n, 4) if n else 0.0,
        "accuracy_flexible": round(sum(e["correct_flexible"] for e in examples) / n, 4) if n else 0.0,
    }
    return {"metrics": metrics, "n": n, "config": config or {}, "examples": examples}


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
