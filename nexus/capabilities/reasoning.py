"""reasoning: math problems solved in worked steps, with the final answer in ``\\boxed{}``.

Trains the model to write a worked solution that ends in ``\\boxed{answer}`` (the convention of
NuminaMath, MATH and most math reasoning evaluations; :mod:`nexus.capabilities.cot` teaches "The
final answer is N." instead), and scores final-answer accuracy on a held-out split (greedy
generation). Answers are compared after normalization: numbers with commas, ``$`` or ``%``,
decimals and fractions (``0.5 == 1/2 == \\frac{1}{2} == \\dfrac12``), and presentation-only LaTeX
(``\\left( \\right)``, ``\\text{}``, spacing); see :func:`nexus.capabilities.answers.canonical_answer`.

Accepted formats (detected by the organizer, see :mod:`nexus.formats`):

- ``gsm8k``: ``{"question": "Natalia sold clips to 48 ...", "answer": "Natalia sold 48/2 =
  <<48/2=24>>24 clips in May. ... #### 72"}`` (openai/grade-school-math); the ``#### 72`` line
  becomes ``\\boxed{72}``.
- ``numina_math``: ``{"source": "synthetic_math", "problem": "What is $\\frac{1}{2} +
  \\frac{1}{4}$?", "solution": "... = \\frac{3}{4}$. The answer is $\\boxed{\\frac{3}{4}}$.",
  "messages": [...]}`` (AI-MO/NuminaMath-CoT); records whose solution has no ``\\boxed{}`` are
  skipped.

Prompts: the problem as asked, and for about half of the problems (:data:`INSTRUCTION_SHARE`) the
problem followed by :data:`INSTRUCTION`; which half is fixed by a hash of the problem's text
(:func:`carries_instruction`), so a record always formats the same way (the split, the dedupe and
the data fingerprint depend on it). Trained on both, the model writes its worked solution and
``\\boxed{}`` answer when asked plainly (``nexus chat``, ``nexus serve``, any HF loader), and still
when the instruction is added; GRPO and PPO still find the format their reward checks named in
half their prompts.
The held-out prompts follow the same rule (fixed per problem, written in
``data/prepared/reasoning/eval.jsonl``): eval scores both forms, about half each.
"""

from __future__ import annotations

import hashlib
from typing import Any

from nexus.capabilities import Example, SkipRecord
from nexus.capabilities._records import split_gsm8k
from nexus.capabilities.answers import boxed_answer_matches, canonical_answer, last_boxed

METRIC = "accuracy"
REWARD_KEYS = ("accuracy", "boxed")  # grpo / ppo reward: the mean of these shares
INSTRUCTION = "Solve the problem step by step, and put the final answer in \\boxed{}."
INSTRUCTION_SHARE = 0.5  # share of prompts that end with INSTRUCTION (the others: the problem alone)


def carries_instruction(problem: str) -> bool:
    """Whether the prompt of ``problem`` ends with :data:`INSTRUCTION`: a fixed hash of its text."""
    digest = hashlib.sha256(f"reasoning\0{problem.strip()}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < INSTRUCTION_SHARE * 2**64


def _example(problem: str, solution: str, reference: str) -> Example:
    text = problem.strip()
    return {
        "prompt": [{"role": "user", "content": f"{text}\n\n{INSTRUCTION}" if carries_instruction(text) else text}],
        "completion": [{"role": "assistant", "content": solution.strip()}],
        "reference": reference,
    }


def format_gsm8k(record: dict[str, Any]) -> Example:
    """GSM8K ``question``/``answer`` (with ``#### N``) -> worked steps ending in ``\\boxed{N}``."""
    question, steps, final = split_gsm8k(record)
    reference = canonical_answer(final)
    if reference is None:
        raise SkipRecord("empty final answer after '####'")
    return _example(question, f"{steps}\n\\boxed{{{final}}}", reference)


def format_numina(record: dict[str, Any]) -> Example:
    """NuminaMath ``problem``/``solution`` -> the solution as is; reference = its last ``\\boxed{}``."""
    problem, solution = record.get("problem"), record.get("solution")
    if not isinstance(problem, str) or not isinstance(solution, str) or not problem.strip():
        raise SkipRecord("no problem or solution text")
    reference = canonical_answer(last_boxed(solution))
    if reference is None:
        raise SkipRecord("solution has no \\boxed{} final answer")
    return _example(problem, solution, reference)


FORMATTERS = {"gsm8k": format_gsm8k, "numina_math": format_numina}


def score(generated: str, example: Example) -> dict[str, float]:
    """``accuracy``: the final answer (last ``\\boxed{}``, else the extracted one) equals the
    reference after normalization; ``boxed``: the output has a ``\\boxed{}`` answer."""
    return {
        METRIC: float(boxed_answer_matches(generated, example["reference"])),
        "boxed": float(last_boxed(generated) is not None),
    }
