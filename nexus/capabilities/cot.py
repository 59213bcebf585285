"""cot: step-by-step chain-of-thought answers to word problems.

Trains the model to reason in short steps and end with one line "The final answer is N.", and scores
final-answer accuracy on a held-out split (greedy generation).

Accepted formats (detected by the organizer, see :mod:`nexus.formats`):

- ``gsm8k``: ``{"question": "Natalia sold clips to 48 ...", "answer": "Natalia sold 48/2 =
  <<48/2=24>>24 clips in May. ... #### 72"}`` (openai/grade-school-math)
- ``openthoughts``: ``{"system": "...", "conversations": [{"from": "user", "value": "..."},
  {"from": "assistant", "value": "<|begin_of_thought|>...<|end_of_thought|>
  <|begin_of_solution|>... \\boxed{72}<|end_of_solution|>"}]}`` (open-thoughts/OpenThoughts-114k)

Prompts: the question as asked, and for about half of the questions (:data:`INSTRUCTION_SHARE`)
the question followed by :data:`INSTRUCTION`. Which half is fixed by a hash of the question's text
(:func:`carries_instruction`), not by chance, so a record always formats the same way (the split,
the dedupe and the data fingerprint depend on it). Trained on both forms, the model answers in the
trained format when asked plainly (as ``nexus chat``, ``nexus serve`` or any HF loader would ask)
and still follows the instruction when a user adds it; GRPO and PPO still find the format spelled
out in half their prompts. The held-out split follows the same rule: its prompts are fixed per
question and written in ``data/prepared/cot/eval.jsonl``, so eval scores both forms, about half
each, base and trained on the same prompts.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from nexus.capabilities import Example, SkipRecord
from nexus.capabilities._records import formatter, split_gsm8k
from nexus.capabilities.answers import extract_answer, gsm8k_answer_matches
from nexus.conversations import first_exchange, record_turns

METRIC = "accuracy"
REWARD_KEYS = ("accuracy", "answer_format")  # grpo / ppo reward: the mean of these shares
INSTRUCTION = "Solve the problem step by step, then give the final answer on its own line."
INSTRUCTION_SHARE = 0.5  # share of prompts that end with INSTRUCTION (the others: the question alone)
_THOUGHT = re.compile(r"<\|begin_of_thought\|>(.*?)<\|end_of_thought\|>", re.DOTALL)
_SOLUTION = re.compile(r"<\|begin_of_solution\|>(.*?)<\|end_of_solution\|>", re.DOTALL)


def carries_instruction(question: str) -> bool:
    """Whether the prompt of ``question`` ends with :data:`INSTRUCTION`: a fixed hash of its text."""
    digest = hashlib.sha256(f"cot\0{question.strip()}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < INSTRUCTION_SHARE * 2**64


def _example(question: str, steps: str, answer: str) -> Example:
    text = question.strip()
    return {
        "prompt": [{"role": "user", "content": f"{text}\n\n{INSTRUCTION}" if carries_instruction(text) else text}],
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
