"""cot: step-by-step chain-of-thought answers to word problems.

Trains the model to reason in short steps and end with one line "The final answer is N.", and scores
final-answer accuracy on a held-out split (greedy generation).

Accepted formats (detected by the organizer, see :mod:`nexus.formats`):

- ``gsm8k``: ``{"question": "Natalia sold clips to 48 ...", "answer": "Natalia sold 48/2 =
  <<48/2=24>>24 clips in May. ... #### 72"}`` (openai/grade-school-math)
- ``openthoughts``: ``{"system": "...", "conversations": [{"from": "user", "value": "..."},
  {"from": "assistant", "value": "<|begin_of_thought|>...<|end_of_thought|>
  <|begin_of_solution|>... \\boxed{72}<|end_of_solution|>"}]}`` (open-thoughts/OpenThoughts-114k)
"""

from __future__ import annotations

import re
from typing import Any

from nexus.capabilities import Example, SkipRecord
from nexus.capabilities._records import formatter, split_gsm8k
from nexus.capabilities.answers import extract_answer, gsm8k_answer_matches
from nexus.conversations import first_exchange, record_turns

METRIC = "accuracy"
REWARD_KEYS = ("accuracy", "answer_format")  # grpo / ppo reward: the mean of these shares
INSTRUCTION = "Solve the problem step by step, then give the final answer on its own line."
_THOUGHT = re.compile(r"<\|begin_of_thought\|>(.*?)<\|end_of_thought\|>", re.DOTALL)
_SOLUTION = re.compile(r"<\|begin_of_solution\|>(.*?)<\|end_of_solution\|>", re.DOTALL)


def _example(question: str, steps: str, answer: str) -> Example:
    return {
        "prompt": [{"role": "user", "content": f"{question.strip()}\n\n{INSTRUCTION}"}],
        "completion": [
            {"role": "assistant", "content": f"{steps.strip()}\nThe final answer is {answer}."}
        ],
        "reference": answer,
    }


def format_gsm8k(record: dict[str, Any]) -> Example:
    """GSM8K ``question``/``answer`` (with ``#### N``) -> reasoning steps + final answer."""
    return _example(*split_gsm8k(record))


@formatter
def format_openthoughts(record: dict[str, Any]) -> Example:
    """OpenThoughts ``conversations`` (thought + solution markers) -> reasoning + final answer."""
    user, reply = first_exchange(record_turns(record))
    thought = _THOUGHT.search(reply)
    solution = _SOLUTION.search(reply)
    if not thought or not solution:
        raise SkipRecord("assistant reply lacks begin/end_of_thought or begin/end_of_solution markers")
    answer = extract_answer(solution.group(1))
    if answer is None:
        raise SkipRecord("solution has no final answer")
    return _example(user, f"{thought.group(1).strip()}\n\n{solution.group(1).strip()}", answer)


FORMATTERS = {"gsm8k": format_gsm8k, "openthoughts": format_openthoughts}


_FINAL_LINE = re.compile(r"final answer is\s*\S", re.IGNORECASE)


def score(generated: str, example: Example) -> dict[str, float]:
    """``accuracy``: the final answer equals the reference; ``answer_format``: a final-answer line exists."""
    return {
        METRIC: float(gsm8k_answer_matches(generated, example["reference"])),
        "answer_format": float(bool(_FINAL_LINE.search(generated))),
    }
