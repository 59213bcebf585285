"""Thinking-budget forcing (s1, Muennighoff et al. 2025): cap the thinking, force the close, answer.

The assistant turn is prefilled with ``<think>\\n``; at most ``thinking_budget`` tokens of thinking
are generated, stopping early at ``</think>``; if the block is still open, :data:`FORCED_CLOSE` is
appended; the answer is then generated with the tokens left of ``max_new_tokens``. Greedy, batched
with left padding (:func:`nexus.generation.batch.generate_rows`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nexus.chat import render_prompt
from nexus.generation.batch import DEFAULT_BATCH_SIZE, generate_rows

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
FORCED_CLOSE = f"\n{THINK_CLOSE}\n\n"
"""Appended when the thinking budget runs out (s1's end-of-thinking delimiter)."""


@dataclass(frozen=True)
class BudgetedOutput:
    """One generation under a thinking budget.

    Attributes:
        text: the whole assistant turn: ``<think>\\n``, the thinking, the closing delimiter, the answer.
        thinking_tokens: tokens the model generated inside the think block.
        forced: True when the closing delimiter was forced (budget spent, or the turn ended inside
            the block), False when the model closed the block itself.
        answer_tokens: tokens generated after the think block.
    """

    text: str
    thinking_tokens: int
    forced: bool
    answer_tokens: int


def generate_with_budget(model: Any, tokenizer: Any, examples: Sequence[dict[str, Any]], max_new_tokens: int,
                         thinking_budget: int, batch_size: int = DEFAULT_BATCH_SIZE) -> list[BudgetedOutput]:
    """s1-style budget forcing, batched with left padding.

    The assistant turn is prefilled with ``<think>\\n``; at most ``thinking_budget`` tokens are
    generated, stopping early at ``</think>``; if the block is still open, :data:`FORCED_CLOSE` is
    appended; the answer is then generated with ``max_new_tokens`` minus the thinking tokens.

    Raises:
        ValueError: ``thinking_budget`` leaves no tokens for the answer.
    """
    if thinking_budget >= max_new_tokens:
        raise ValueError(
            f"thinking_budget ({thinking_budget}) must be below max_new_tokens ({max_new_tokens}) to "
            f"leave tokens for the answer; lower capabilities.thinking.thinking_budget or raise "
            f"capabilities.thinking.max_new_tokens in params.yaml"
        )
    model.eval()
    outputs: list[BudgetedOutput] = []
    for start in range(0, len(examples), batch_size):
        batch = examples[start:start + batch_size]
        outputs.extend(_budget_batch(model, tokenizer, batch, max_new_tokens, thinking_budget))
    return outputs


def prefilled_prompt(example: dict[str, Any], tokenizer: Any) -> str:
    """The generation prompt with the assistant turn opened by ``<think>\\n``.

    A template that already opens the block (thinking-mode templates) is not given a second one.
    """
    text = render_prompt(example, tokenizer)
    return text if text.rstrip().endswith(THINK_OPEN) else f"{text}{THINK_OPEN}\n"


def _budget_batch(model: Any, tokenizer: Any, examples: Sequence[dict[str, Any]], max_new_tokens: int,
                  thinking_budget: int) -> list[BudgetedOutput]:
    """Budget forcing for one batch: think (stop at ``</think>``), force the close, then answer."""
    prompts = [tokenizer(prefilled_prompt(e, tokenizer), add_special_tokens=False)["input_ids"]
               for e in examples]
    thoughts = generate_rows(model, tokenizer, prompts, thinking_budget, batch_size=len(prompts),
                             stop_strings=[THINK_CLOSE])
    closed = [THINK_CLOSE in tokenizer.decode(t, skip_special_tokens=True) for t in thoughts]
    close_ids = tokenizer(FORCED_CLOSE, add_special_tokens=False)["input_ids"]
    continued = [p + t + ([] if c else close_ids) for p, t, c in zip(prompts, thoughts, closed, strict=True)]
    remaining = [max_new_tokens - len(t) for t in thoughts]
    answers = generate_rows(model, tokenizer, continued, max(remaining), batch_size=len(continued))
    outputs = []
    for thought, is_closed, left, answer in zip(thoughts, closed, remaining, answers, strict=True):
        answer = answer[:left]
        ids = thought + ([] if is_closed else close_ids) + answer
        text = f"{THINK_OPEN}\n" + tokenizer.decode(ids, skip_special_tokens=True)
        outputs.append(BudgetedOutput(text, len(thought), not is_closed, len(answer)))
    return outputs
