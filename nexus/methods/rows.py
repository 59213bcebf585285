"""The rows a method trains on, prepared before its trainer is built.

Methods that train on the capability's own examples need nothing more. The others read their data
kind from the manifest (:mod:`nexus.methods.data`); preference methods without a preference file
build pairs from the capability's own examples, and the safety methods generate the base model's
answers to labelled prompts (:mod:`nexus.methods.safety`). Generation uses the model as loaded,
before training (a fresh LoRA adapter does not change its outputs).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nexus import capabilities
from nexus.config import CapabilityParams
from nexus.methods import Method
from nexus.methods.data import MethodDataError, load_rows, missing_data_message

log = logging.getLogger(__name__)

PAIR_TOKENS = 128  # at most this many new tokens (and max_new_tokens) per generated reply


@dataclass
class MethodRows:
    """A method's rows and where they came from (shown in the log and the run card)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    source: str = "the capability's own examples"
    files: list[str] = field(default_factory=list)
    held_out: list[dict[str, Any]] = field(default_factory=list)  # safety prompts kept for evaluation


def needed_examples(cap: CapabilityParams) -> int:
    """How many rows the run can use: steps x batch x accumulation (all rows when epoch-based)."""
    if cap.max_steps > 0:
        return cap.max_steps * cap.batch_size * cap.grad_accum
    return 10**9


def check_method_data(method: Method, capability: str, organized_dir: str | Path) -> MethodRows:
    """Read file-backed method data up front; fail before any model loads when it is missing.

    Raises:
        MethodDataError: the method needs a data kind the capability's manifest does not list.
    """
    if method.needs == "examples":
        return MethodRows()
    dropped: dict[str, int] = {}
    rows, files = load_rows(method.needs, organized_dir, capability, dropped)
    if dropped:
        log.info("%s rows dropped: %s", method.needs, dropped)
    if rows or method.needs in ("preference", "unpaired_preference"):
        return MethodRows(rows, f"files: {', '.join(files)}" if files else "", files)
    raise MethodDataError(missing_data_message(method.name, method.needs, capability, organized_dir))


def pairs_from_examples(model: Any, tokenizer: Any, capability: str, examples: list[dict[str, Any]],
                        limit: int, max_new_tokens: int = PAIR_TOKENS) -> list[dict[str, Any]]:
    """Preference pairs from the capability's own data: the reference answer is chosen, the base
    model's own wrong answer rejected (examples it already answers right give no pair)."""
    from nexus.chat import prepare
    from nexus.evaluate import generate
    from nexus.methods import safety

    module = capabilities.load(capability)
    subset = examples[:limit]
    answers = generate(model, tokenizer, subset, max_new_tokens, temperature=safety.SAMPLING_TEMPERATURE)
    pairs = []
    for example, answer in zip(subset, answers, strict=True):
        if module.score(answer, example)[module.METRIC] >= 1.0:
            continue  # an empty answer is a wrong answer too
        ready = prepare(example, tokenizer)
        pairs.append({"prompt": ready["prompt"], "chosen": ready["completion"],
                      "rejected": [{"role": "assistant", "content": answer}]})
    return pairs


def prepare_rows(method: Method, found: MethodRows, capability: str, cap: CapabilityParams, model: Any,
                 tokenizer: Any, examples: list[dict[str, Any]], seed: int) -> MethodRows:
    """Complete ``found`` (from :func:`check_method_data`) with generated rows where needed.

    Raises:
        MethodDataError: no usable row could be built.
    """
    from nexus.methods import safety

    limit = needed_examples(cap)
    tokens = min(PAIR_TOKENS, cap.max_new_tokens)
    if method.needs in ("preference", "unpaired_preference") and not found.rows:
        pairs = pairs_from_examples(model, tokenizer, capability, examples, min(limit, len(examples)), tokens)
        if method.needs == "unpaired_preference":
            pairs = [row for p in pairs for row in (
                {"prompt": p["prompt"], "completion": p["chosen"], "label": True},
                {"prompt": p["prompt"], "completion": p["rejected"], "label": False})]
        found = MethodRows(pairs, "built from the capability's own examples: the reference answer as "
                                  "chosen, the base model's own wrong answer as rejected")
    elif method.needs == "safety_prompts":
        held, train = safety.split_prompts(found.rows, cap.eval_size, seed)
        build = safety.safety_examples if method.name == "safety" else safety.anti_refusal_pairs
        # generate for more prompts than the run needs: replies that refuse (or are empty) are dropped
        rows = build(model, tokenizer, train, min(len(train), max(4 * limit, 8)), tokens)
        found = MethodRows(rows, f"{found.source}; refusals written by Nexus, helpful answers from the "
                                 f"base model", found.files, held)
    if method.needs != "examples" and not found.rows:
        raise MethodDataError(f"method '{method.name}' for capability '{capability}': no training row "
                              f"could be built ({found.source or 'no data'}); add data for it to "
                              f"data/raw/{capability}/")
    log.info("%s: %d rows for method %s (%s)", capability, len(found.rows), method.name, found.source)
    return found
