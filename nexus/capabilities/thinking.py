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

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nexus.capabilities import Example, SkipRecord
from nexus.capabilities._answers import answer_matches, canonical_answer, last_boxed
from nexus.capabilities._records import sharegpt_question_and_reply, split_gsm8k
from nexus.chat import render_prompt

METRIC = "think_format"
REWARD_KEYS = ("think_format", "accuracy")  # grpo / ppo reward: the mean of these shares
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
FORCED_CLOSE = f"\n{THINK_CLOSE}\n\n"
"""Appended when the thinking budget runs out (s1's end-of-thinking delimiter)."""

_SHORT_ANSWER = 40  # a solution this short (one line) is taken as the final answer itself
_THOUGHT = re.compile(r"<\|begin_of_thought\|>(.*?)<\|end_of_thought\|>(.*)", re.DOTALL)
_SOLUTION = re.compile(r"<\|begin_of_solution\|>(.*?)(?:<\|end_of_solution\|>|$)", re.DOTALL)
_THINK_TAG = re.compile(r"^\s*<(think|thinking)>(.*?)</\1>(.*)$", re.DOTALL)
_THINK_BLOCK = re.compile(r"\s*<think>(.*?)</think>(.*)", re.DOTALL)
_ROLES = {"system": "system", "user": "user", "human": "user", "assistant": "assistant",
          "gpt": "assistant", "bot": "assistant", "model": "assistant"}
_TOOL_ROLES = ("tool", "function", "observation", "ipython", "function_call", "tool_call", "tool_calls")
_TOOL_PART_TYPES = ("tool_call", "tool_use", "function_call")
_REASONING_PART_TYPES = ("reasoning", "thinking")
_REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")
_TEXT_KEYS = ("value", "text", "content", "thinking", "reasoning")
_CONVERSATION_KEYS = ("messages", "conversations", "conversation")
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


def format_openthoughts(record: dict[str, Any]) -> Example:
    """OpenThoughts ``conversations`` (thought + solution markers) -> think block + solution."""
    user, reply = sharegpt_question_and_reply(record)
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


def _conversation(record: dict[str, Any]) -> list[dict[str, Any]]:
    for key in _CONVERSATION_KEYS:
        turns = record.get(key)
        if isinstance(turns, str):
            try:
                turns = json.loads(turns)
            except ValueError:
                continue
        if isinstance(turns, list):
            return [t for t in turns if isinstance(t, dict)]
    raise SkipRecord(f"no conversation under {', '.join(_CONVERSATION_KEYS)}")


def _role(turn: dict[str, Any]) -> str:
    return str(turn.get("role", turn.get("from", "")))


def _part_text(part: dict[str, Any]) -> str:
    return next((part[k] for k in _TEXT_KEYS if isinstance(part.get(k), str)), "")


def _turn_content(turn: dict[str, Any]) -> tuple[str, str]:
    """(text, reasoning) of a turn: string content, or typed content parts."""
    content = turn.get("content", turn.get("value", ""))
    reasoning = next((turn[k] for k in _REASONING_KEYS if isinstance(turn.get(k), str) and turn[k]), "")
    if isinstance(content, str):
        return content, reasoning
    if not isinstance(content, list):
        return "", reasoning
    texts, thoughts = [], [reasoning] if reasoning else []
    for part in content:
        if isinstance(part, dict) and part.get("type") in _REASONING_PART_TYPES:
            thoughts.append(_part_text(part))
        elif isinstance(part, dict) and part.get("type", "text") == "text":
            texts.append(_part_text(part))
    return "\n".join(t for t in texts if t), "\n\n".join(t for t in thoughts if t)


def _has_tool_use(turn: dict[str, Any]) -> bool:
    parts = turn.get("content") if isinstance(turn.get("content"), list) else []
    return (_role(turn) in _TOOL_ROLES or bool(turn.get("tool_calls") or turn.get("function_call"))
            or any(isinstance(p, dict) and p.get("type") in _TOOL_PART_TYPES for p in parts))


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
    tools = record.get("tools")
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except ValueError:
            return None
    return tools if isinstance(tools, list) and tools else None


def format_reasoning_messages(record: dict[str, Any]) -> Example:
    """A conversation whose last assistant turn carries reasoning -> prompt turns + think block.

    Serves ``reasoning_messages`` and LLaMA-Factory's ``messages_tools`` reasoning files: a
    conversation with tool calls or results is skipped (the tools capability trains those).
    """
    turns = _conversation(record)
    if any(_has_tool_use(t) for t in turns):
        raise SkipRecord("the conversation has tool calls or tool results (the tools capability "
                         "trains those)")
    last = max((i for i, t in enumerate(turns) if _ROLES.get(_role(t)) == "assistant"), default=None)
    if last is None:
        raise SkipRecord("no assistant turn in the conversation")
    prompt = []
    for turn in turns[:last]:
        role = _ROLES.get(_role(turn))
        if role is None:
            raise SkipRecord(f"unknown role '{_role(turn)}' (expected system, user or assistant)")
        text, _ = _turn_content(turn)
        prompt.append({"role": role, "content": text})
    if not any(m["role"] == "user" for m in prompt):
        raise SkipRecord("no user turn before the last assistant turn")
    reasoning, answer = _split_reasoning(*_turn_content(turns[last]))
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
        "accuracy": float(bool(closed) and answer_matches(answer, example["reference"])),
    }


# --- generation with a thinking budget -------------------------------------------------------------


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


def generate(model: Any, tokenizer: Any, examples: list[Example], max_new_tokens: int,
             thinking_budget: int = 0) -> list[str]:
    """Greedy completions; budget-forced ones when ``thinking_budget > 0`` (:func:`generate_with_budget`).

    With ``thinking_budget == 0`` this is the shared greedy generation
    (:func:`nexus.evaluate.generate`): nothing is prefilled, so the model has to open and close the
    think block by itself, which is what ``think_format`` measures.
    """
    if thinking_budget <= 0:
        from nexus.evaluate import generate as greedy

        return greedy(model, tokenizer, examples, max_new_tokens)
    return [o.text for o in generate_with_budget(model, tokenizer, examples, max_new_tokens,
                                                 thinking_budget)]


def generate_with_budget(model: Any, tokenizer: Any, examples: list[Example], max_new_tokens: int,
                         thinking_budget: int, batch_size: int = 8) -> list[BudgetedOutput]:
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


def prefilled_prompt(example: Example, tokenizer: Any) -> str:
    """The generation prompt with the assistant turn opened by ``<think>\\n``.

    A template that already opens the block (thinking-mode templates) is not given a second one.
    """
    text = render_prompt(example, tokenizer)
    return text if text.rstrip().endswith(THINK_OPEN) else f"{text}{THINK_OPEN}\n"


def _budget_batch(model: Any, tokenizer: Any, examples: Sequence[Example], max_new_tokens: int,
                  thinking_budget: int) -> list[BudgetedOutput]:
    """Budget forcing for one batch: think (stop at ``</think>``), force the close, then answer."""
    prompts = [tokenizer(prefilled_prompt(e, tokenizer), add_special_tokens=False)["input_ids"]
               for e in examples]
    thoughts = _greedy(model, tokenizer, prompts, thinking_budget, stop_strings=[THINK_CLOSE])
    closed = [THINK_CLOSE in tokenizer.decode(t, skip_special_tokens=True) for t in thoughts]
    close_ids = tokenizer(FORCED_CLOSE, add_special_tokens=False)["input_ids"]
    continued = [p + t + ([] if c else close_ids) for p, t, c in zip(prompts, thoughts, closed, strict=True)]
    remaining = [max_new_tokens - len(t) for t in thoughts]
    answers = _greedy(model, tokenizer, continued, max(remaining))
    outputs = []
    for thought, is_closed, left, answer in zip(thoughts, closed, remaining, answers, strict=True):
        answer = answer[:left]
        ids = thought + ([] if is_closed else close_ids) + answer
        text = f"{THINK_OPEN}\n" + tokenizer.decode(ids, skip_special_tokens=True)
        outputs.append(BudgetedOutput(text, len(thought), not is_closed, len(answer)))
    return outputs


def _stop_ids(model: Any, tokenizer: Any) -> set[int]:
    """Token ids that end a generated row: end-of-sequence ids and the padding id."""
    ids: set[int] = set()
    for value in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id,
                  tokenizer.pad_token_id):
        ids.update(value if isinstance(value, list) else [] if value is None else [value])
    return ids


def _greedy(model: Any, tokenizer: Any, rows: list[list[int]], max_new_tokens: int,
            stop_strings: list[str] | None = None) -> list[list[int]]:
    """Greedy continuations of token-id rows (left padded), each cut before its first stop id."""
    import torch

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    width = max(len(r) for r in rows)
    input_ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows], device=model.device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=model.device)
    extra = {"stop_strings": stop_strings, "tokenizer": tokenizer} if stop_strings else {}
    with torch.inference_mode():
        out = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=pad_id, **extra)
    stops = _stop_ids(model, tokenizer)
    new_rows = []
    for row in out[:, width:].tolist():
        end = next((i for i, token in enumerate(row) if token in stops), len(row))
        new_rows.append(row[:end])
    return new_rows
