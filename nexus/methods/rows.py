"""The rows a method trains on, prepared before its trainer is built.

Methods that train on the capability's own examples need nothing more. The others name the record
kind they read from the manifest (:attr:`Method.record_kind`, rows from :mod:`nexus.methods.data`)
and may complete those rows once the start model is loaded (:attr:`Method.prepare`, given a
:class:`RowRequest`): preference methods without a preference file build pairs from the
capability's own examples (:func:`pairs_from_examples`), and the safety methods generate the base
model's answers to labelled prompts (:func:`refusal_rows`). Generation uses the model as loaded,
before training (a fresh LoRA adapter does not change its outputs).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nexus import capabilities
from nexus.chat import prepare
from nexus.config import CapabilityParams
from nexus.generation.batch import generate_examples
from nexus.methods.base import Method, MethodRows, RowRequest
from nexus.methods.data import KIND_OF_NEED, MethodDataError, load_rows, missing_data_message
from nexus.methods.safety import SAMPLING_TEMPERATURE, split_prompts
from nexus.progress import ItemsDone

log = logging.getLogger(__name__)

PAIR_TOKENS = 128  # at most this many new tokens (and max_new_tokens) per generated reply
ROW_KIND = {kind: need for need, kind in KIND_OF_NEED.items()}  # manifest record kind -> data.py row kind
BUILT_FROM_EXAMPLES = ("built from the capability's own examples: the reference answer as chosen, the "
                       "base model's own wrong answer as rejected")


def needed_examples(cap: CapabilityParams) -> int:
    """How many rows the run can use: steps x batch x accumulation (all rows when epoch-based)."""
    if cap.max_steps > 0:
        return cap.max_steps * cap.batch_size * cap.grad_accum
    return 10**9


def check_method_data(method: Method, capability: str, organized_dir: str | Path) -> MethodRows:
    """Read file-backed method data up front; fail before any model loads when it is missing.

    Raises:
        MethodDataError: the method reads a record kind the capability's manifest does not list.
    """
    if method.record_kind is None:
        return MethodRows()
    need = ROW_KIND[method.record_kind]
    dropped: dict[str, int] = {}
    counts: dict[str, int] = {}
    rows, files = load_rows(need, organized_dir, capability, dropped, counts)
    if dropped:
        log.info("%s rows dropped: %s", need, dropped)
    for path in (p for p, n in counts.items() if not n):
        reasons = "; ".join(k.split(": ", 1)[1] for k in dropped if k.startswith(f"{path}: ")) or "no records"
        log.warning("%s: no usable %s row, not used (%s)", path, need, reasons)
    if rows or method.rows_from_examples:
        source = "files: " + ", ".join(f"{p} ({counts[p]} rows)" for p in files) if files else ""
        return MethodRows(rows, source, files)
    raise MethodDataError(missing_data_message(method.name, need, capability, organized_dir))


def pairs_from_examples(model: Any, tokenizer: Any, capability: str, examples: list[dict[str, Any]],
                        limit: int, max_new_tokens: int = PAIR_TOKENS) -> list[dict[str, Any]]:
    """Preference pairs from the capability's own data: the reference answer is chosen, the base
    model's own wrong answer rejected (examples it already answers right give no pair)."""
    module = capabilities.load(capability)
    subset = examples[:limit]
    answers = generate_examples(model, tokenizer, subset, max_new_tokens, temperature=SAMPLING_TEMPERATURE,
                                progress=ItemsDone(f"{capability} pairs: base-model answers", len(subset)))
    pairs = []
    for example, answer in zip(subset, answers, strict=True):
        if module.score(answer, example)[module.METRIC] >= 1.0:
            continue  # an empty answer is a wrong answer too
        ready = prepare(example, tokenizer)
        pairs.append({"prompt": ready["prompt"], "chosen": ready["completion"],
                      "rejected": [{"role": "assistant", "content": answer}]})
    return pairs


def refusal_rows(request: RowRequest, build: Callable[..., list[dict[str, Any]]]) -> MethodRows:
    """Rows from labelled prompts (``safety`` and ``anti-refusal``): ``eval_size`` prompts per label
    held out, ``build(model, tokenizer, prompts, limit, max_new_tokens)`` on the others."""
    found = request.found
    held, train = split_prompts(found.rows, request.cap.eval_size, request.seed)
    # generate for more prompts than the run needs: replies that refuse (or are empty) are dropped
    rows = build(request.model, request.tokenizer, train, min(len(train), max(4 * request.limit, 8)),
                 request.max_new_tokens)
    return MethodRows(rows, f"{found.source}; refusals written by Nexus, helpful answers from the "
                            f"base model", found.files, held)


def refusal_prompts(capability: str, cap: CapabilityParams, seed: int,
                    organized_dir: str | Path) -> list[dict[str, Any]]:
    """The labelled prompts :func:`refusal_rows` held out of training (same seeded split), for eval."""
    rows, _ = load_rows(ROW_KIND["prompt_only"], organized_dir, capability)
    return split_prompts(rows, cap.eval_size, seed)[0]


def prepare_rows(method: Method, found: MethodRows, capability: str, cap: CapabilityParams, model: Any,
                 tokenizer: Any, examples: list[dict[str, Any]], seed: int) -> MethodRows:
    """Complete ``found`` (from :func:`check_method_data`) with the method's own preparation.

    Raises:
        MethodDataError: no usable row could be built.
    """
    if method.prepare is not None:
        found = method.prepare(RowRequest(found, capability, cap, model, tokenizer, examples, seed,
                                          needed_examples(cap), min(PAIR_TOKENS, cap.max_new_tokens)))
    if method.record_kind is not None and not found.rows:
        raise MethodDataError(f"method '{method.name}' for capability '{capability}': no training row "
                              f"could be built ({found.source or 'no data'}); add data for it to "
                              f"data/raw/{capability}/")
    if method.record_kind is None and not found.rows:
        log.info("%s: method %s trains on the capability's own examples (no method data needed)",
                 capability, method.name)
    else:
        log.info("%s: %d training rows for method %s (%s)", capability, len(found.rows), method.name,
                 found.source)
    return found
