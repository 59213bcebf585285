"""thinking: extended reasoning inside ``<think>...</think>`` before the answer, with a thinking budget.

Trains the model to answer as reasoning models do: the assistant turn is
``<think>\\n{reasoning}\\n</think>\\n\\n{answer}``. The evaluator scores think-format compliance and
final-answer accuracy on a held-out split. At generation time a thinking budget (params
``capabilities.thinking.thinking_budget``, 0 = off) caps the thinking as the s1 paper's budget
forcing does: the turn is prefilled with ``<think>``, at most ``thinking_budget`` tokens of thinking
are generated, the end-of-thinking delimiter is forced if the model has not closed the block, and
the answer is generated with the tokens left of ``max_new_tokens``.

Accepted formats (detected by the organizer, see :mod:`nexus.formats`):

- ``gsm8k``: ``{"question": "Natalia sold clips to 48 ...", "answer": "Natalia sold 48/2 = <<48/2=24>>24
  clips in May. ... #### 72"}``: the worked solution is the thinking, "The final answer is
  \\boxed{72}." the answer (short traces that fit a small model's context on a CPU).
- ``s1k``: ``{"question": "Find the remainder when ...", "solution": "109", "cot_type": "math",
  "deepseek_thinking_trajectory": "Okay, so I need ...", "deepseek_attempt": "... \\boxed{109}",
  "gemini_thinking_trajectory": "...", "gemini_attempt": "...", ...}`` (simplescaling/s1K-1.1;
  s1K 1.0 has ``thinking_trajectories``, a list of strings, and ``attempt``). The DeepSeek trace is
  preferred, then the 1.0 trace, then Gemini's.
- ``openthoughts``: ``{"system": "...", "conversations": [{"from": "user", "value": "..."},
  {"from": "assistant", "value": "<|begin_of_thought|>...<|end_of_thought|>
  <|begin_of_solution|>... \\boxed{72}<|end_of_solution|>"}]}`` (open-thoughts/OpenThoughts-114k;
  the system prompt, which asks for the marker format, is dropped).
- ``openthoughts_metadata``: ``{"problem": "...", "deepseek_reasoning": "...",
  "deepseek_solution": "... \\boxed{72}", ...}`` (OpenThoughts-114k ``metadata`` config).
- ``reasoning_messages``: ``{"messages": [{"role": "user", "content": "What is 2 + 3?"},
  {"role": "assistant", "reasoning_content": "2 plus 3 is 5.", "content": "5"}]}`` (the reasoning
  in ``reasoning_content``/``reasoning``/``thinking``, in content parts of type ``reasoning``/
  ``thinking``, or in a ``<think>`` block of the content; ShareGPT ``from``/``value`` turns too).
- ``messages_tools``: LLaMA-Factory ``reason_tool_use_demo_50.jsonl``, ``{"messages": [{"role":
  "system", ...}, {"role": "user", "content": [{"type": "text", "value": "What are the schools
  near ...?"}]}, {"role": "assistant", "content": [{"type": "reasoning", "value": "Okay, the user
  ..."}, {"type": "text", "value": "I'm sorry, but ..."}]}], "tools": "[...]"}``: conversations
  without tool calls or results are kept, with their ``tools`` (the reasoning refers to them);
  those with calls are skipped (the tools capability trains them).

The last assistant turn is the completion; earlier turns form the prompt without their reasoning
(as reasoning models' chat templates drop it). The reference is the canonical ``\\boxed{}`` answer
when there is one, else the answer text.
"""

from __future__ import annotations

import re
from typing import Any

from nexus.capabilities import Example, SkipRecord
from nexus.capabilities._records import formatter, split_gsm8k
from nexus.capabilities.answers import boxed_answer_matches, canonical_answer, last_boxed
from nexus.conversations import (
    ConversationError,
    first_exchange,
    has_tool_use,
    record_tools,
    record_turns,
    text_of,
)
from nexus.generation.batch import generate_examples
from nexus.generation.budget import THINK_CLOSE, THINK_OPEN, generate_with_budget

METRIC = "think_format"
REWARD_KEYS = ("think_format", "accuracy")  # grpo / ppo reward: the mean of these shares

_SHORT_ANSWER = 40  # a solution this short (one line) is taken as the final answer itself
_THOUGHT = re.compile(r"<\|begin_of_thought\|>(.*?)<\|end_of_thought\|>(.*)", re.DOTALL)
_SOLUTION = re.compile(r"<\|begin_of_solution\|>(.*?)(?:<\|end_of_solution\|>|$)", re.DOTALL)
_THINK_TAG = re.compile(r"^\s*<(think|thinking)>(.*?)</\1>(.*)$", re.DOTALL)
_THINK_BLOCK = re.compile(r"\s*<think>(.*?)</think>(.*)", re.DOTALL)
_S1K_PREFIXES = ("deepseek_", "", "gemini_")


# --- formatters --------------------------------------------------------------------------------


def final_answer_reference(answer: str) -> str:
    """The reference for an answer text: its canonical ``\\boxed{}`` answer, else the stripped text."""
    boxed = canonical_answer(last_boxed(answer))
    return boxed if boxed is not None else answer.strip()


def _example(prompt: list[dict[str, str]], reasoning: str, answer: str, reference: str,
             tools: list[dict[str, Any]] | None = None) -> Example:
    if not reasoning.strip():
        raise SkipRecord("empty reasoning")
    if not answer.strip():
        raise SkipRecord("no answer after the reasoning")
    if any(tag in text for tag in (THINK_OPEN, THINK_CLOSE) for text in (reasoning, answer)):
        raise SkipRecord("a stray <think> or </think> inside the reasoning or the answer")
    content = f"{THINK_OPEN}\n{reasoning.strip()}\n{THINK_CLOSE}\n\n{answer.strip()}"
    example: Example = {"prompt": prompt, "completion": [{"role": "assistant", "content": content}],
                        "reference": reference}
    if tools:
        example["tools"] = tools
    return example


def _s1k_pair(record: dict[str, Any]) -> tuple[str, str]:
    """The (thinking trajectory, attempt) of an s1K record, DeepSeek first, then 1.0, then Gemini."""
    prefixes = list(_S1K_PREFIXES) + sorted(
        k.split("thinking_trajector")[0] for k in record if "thinking_trajector" in k
    )
    for prefix in prefixes:
        trace = record.get(f"{prefix}thinking_trajectory", record.get(f"{prefix}thinking_trajectories"))
        attempt = record.get(f"{prefix}attempt")
        if isinstance(trace, list):
            trace = "\n\n".join(str(t) for t in trace if t)
        if isinstance(trace, str) and trace.strip() and isinstance(attempt, str) and attempt.strip():
            return trace, attempt
    raise SkipRecord("no non-empty <prefix>thinking_trajectory with its <prefix>attempt")


def format_s1k(record: dict[str, Any]) -> Example:
    """s1K ``question`` + thinking trajectory + attempt -> think block + attempt.

    The reference comes from the ground-truth ``solution`` (its ``\\boxed{}``, or the whole of a
    short one such as an AIME number), else from the attempt.
    """
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise SkipRecord("no question text")
    trace, attempt = _s1k_pair(record)
    solution = record.get("solution")
    reference = _solution_answer(solution) if isinstance(solution, str) else None
    return _example([{"role": "user", "content": question.strip()}], trace, attempt,
                    reference or final_answer_reference(attempt))


def _solution_answer(solution: str) -> str | None:
    """The canonical final answer of a ground-truth solution: its ``\\boxed{}``, or all of a short one."""
    boxed = canonical_answer(last_boxed(solution))
    if boxed is not None:
        return boxed
    text = solution.strip()
    return canonical_answer(text) if len(text) <= _SHORT_ANSWER and "\n" not in text else None


@formatter
def format_openthoughts(record: dict[str, Any]) -> Example:
    """OpenThoughts ``conversations`` (thought + solution markers) -> think block + solution."""
    user, reply = first_exchange(record_turns(record))
    thought = _THOUGHT.search(reply)
    solution = _SOLUTION.search(thought.group(2)) if thought else None
    if not thought or not solution:
        raise SkipRecord("assistant reply lacks begin/end_of_thought or begin_of_solution markers")
    answer = solution.group(1)
    return _example([{"role": "user", "content": user.strip()}], thought.group(1), answer,
                    final_answer_reference(answer))


def format_openthoughts_metadata(record: dict[str, Any]) -> Example:
    """OpenThoughts metadata ``problem`` + ``deepseek_reasoning`` + ``deepseek_solution``."""
    problem, reasoning, solution = (record.get(k) for k in ("problem", "deepseek_reasoning",
                                                             "deepseek_solution"))
    if not all(isinstance(v, str) for v in (problem, reasoning, solution)):
        raise SkipRecord("no problem, deepseek_reasoning or deepseek_solution text")
    return _example([{"role": "user", "content": problem.strip()}], reasoning, solution,
                    final_answer_reference(solution))


def _split_reasoning(text: str, reasoning: str) -> tuple[str, str]:
    """(reasoning, answer) of the final assistant turn: a reasoning field/part, else a think block."""
    if reasoning:
        return reasoning, text
    tagged = _THINK_TAG.match(text)
    if tagged:
        return tagged.group(2), tagged.group(3)
    thought = _THOUGHT.search(text)
    solution = _SOLUTION.search(thought.group(2)) if thought else None
    if thought and solution:
        return thought.group(1), solution.group(1)
    raise SkipRecord("the last assistant turn carries no reasoning (a reasoning_content/reasoning/"
                     "thinking field, a reasoning part or a <think> block)")


def _tools(record: dict[str, Any]) -> list[dict[str, Any]] | None:
    try:
        return record_tools(record) or None
    except ConversationError:
        return None


@formatter
def format_reasoning_messages(record: dict[str, Any]) -> Example:
    """A conversation whose last assistant turn carries reasoning -> prompt turns + think block.

    Serves ``reasoning_messages`` and LLaMA-Factory's ``messages_tools`` reasoning files: a
    conversation with tool calls or results is skipped (the tools capability trains those).
    Text parts of a turn are joined by newlines.
    """
    turns = record_turns(record)
    if has_tool_use(turns):
        raise SkipRecord("the conversation has tool calls or tool results (the tools capability "
                         "trains those)")
    last = max((i for i, t in enumerate(turns) if t.role == "assistant"), default=None)
    if last is None:
        raise SkipRecord("no assistant turn in the conversation")
    prompt = [{"role": t.role, "content": text_of(t.content, "\n")} for t in turns[:last]]
    if not any(m["role"] == "user" for m in prompt):
        raise SkipRecord("no user turn before the last assistant turn")
    reasoning, answer = _split_reasoning(text_of(turns[last].content, "\n"), turns[last].reasoning)
    return _example(prompt, reasoning, answer, final_answer_reference(answer), _tools(record))


def format_gsm8k(record: dict[str, Any]) -> Example:
    """GSM8K ``question``/``answer``: the worked solution becomes the thinking, the number the answer."""
    question, steps, final = split_gsm8k(record)
    return _example([{"role": "user", "content": question}], steps,
                    f"The final answer is \\boxed{{{final}}}.", final_answer_reference(f"\\boxed{{{final}}}"))


FORMATTERS = {
    "gsm8k": format_gsm8k,
    "s1k": format_s1k,
    "openthoughts": format_openthoughts,
    "openthoughts_metadata": format_openthoughts_metadata,
    "reasoning_messages": format_reasoning_messages,
    "messages_tools": format_reasoning_messages,
}


# --- scoring -------------------------------------------------------------------------------------


def split_thinking(generated: str) -> tuple[str, str] | None:
    """(thinking, answer) when ``generated`` is exactly one leading think block and an answer, else None."""
    block = _THINK_BLOCK.fullmatch(generated)
    if not block or generated.count(THINK_OPEN) != 1 or generated.count(THINK_CLOSE) != 1:
        return None
    return block.group(1), block.group(2)


def score(generated: str, example: Example) -> dict[str, float]:
    """``think_format``: exactly one leading ``<think>...</think>`` block, then a non-empty answer;
    ``accuracy``: the answer after the last ``</think>`` matches the reference (0 without one)."""
    parts = split_thinking(generated)
    _, closed, answer = generated.rpartition(THINK_CLOSE)
    return {
        METRIC: float(parts is not None and bool(parts[1].strip())),
        "accuracy": float(bool(closed) and boxed_answer_matches(answer, example["reference"])),
    }


# --- generation with a thinking budget -------------------------------------------------------------


def generate(model: Any, tokenizer: Any, examples: list[Example], max_new_tokens: int,
             thinking_budget: int = 0) -> list[str]:
    """Greedy completions; budget-forced ones when ``thinking_budget > 0``
    (:func:`nexus.generation.budget.generate_with_budget`).

    With ``thinking_budget == 0`` this is the shared greedy generation
    (:func:`nexus.generation.batch.generate_examples`): nothing is prefilled, so the model has to
    open and close the think block by itself, which is what ``think_format`` measures.
    """
    if thinking_budget <= 0:
        return generate_examples(model, tokenizer, examples, max_new_tokens)
    return [o.text for o in generate_with_budget(model, tokenizer, examples, max_new_tokens,
                                                 thinking_budget)]
