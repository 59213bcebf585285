"""streaming: general chat and instruction following, served token by token.

Trains on chat/instruction data (the last assistant turn is the completion, every earlier turn the
prompt) and evaluates by streaming each held-out prompt through :func:`nexus.streaming.stream_chat`:
a model streams correctly when its reply arrives in more than one chunk and is not empty. Time to
first token and decoding speed are measured on the way. The runtime itself is ``nexus chat`` and
``nexus serve`` (see :mod:`nexus.streaming` and docs/streaming.md).

Accepted formats (detected by the organizer, see :mod:`nexus.formats`):

- ``alpaca``: ``{"instruction": "Describe a process of making crepes.", "input": "", "output":
  "Making crepes is an easy ...", "system"?: "...", "history"?: [["q", "a"], ...]}`` (LLaMA-Factory)
- ``sharegpt``: ``{"conversations": [{"from": "human", "value": "..."}, {"from": "gpt", "value":
  "..."}], "system"?: "..."}`` (LLaMA-Factory); also ms-swift's ``[{"human": "...", "assistant":
  "..."}]`` turn pairs
- ``messages``: ``{"messages": [{"role": "user", "content": "..."}, {"role": "assistant",
  "content": "..."}]}`` (OpenAI/TRL; content may be a list of text parts)
- ``trl_prompt_completion``: ``{"prompt": "..." | [messages], "completion": "..." | [messages]}``
- ``query_response``: ms-swift's vocabulary, e.g. ``{"query": "...", "response": "..."}``

Metrics: ``streamed`` (share of replies that streamed: more than one chunk, non-empty text),
``ttft_s`` (mean seconds to the first token) and ``tokens_per_s`` (mean decoding speed after the
first token). The last two are measurements, not shares.
"""

from __future__ import annotations

from typing import Any

from nexus.capabilities import Example, SkipRecord
from nexus.formats import CONVERSATION_KEYS, QUERY_KEYS, RESPONSE_KEYS
from nexus.streaming import StreamedText, measure_stream, text_content  # standard library at import

METRIC = "streamed"

_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "bot": "assistant", "model": "assistant", "system": "system"}
_MESSAGE_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system",
                  "model": "assistant"}
_TOOL_ROLES = ("function_call", "observation", "tool", "tool_call", "tool_calls", "function", "ipython")


def _system(record: dict[str, Any]) -> list[dict[str, str]]:
    system = record.get("system")
    return [{"role": "system", "content": system}] if isinstance(system, str) and system.strip() else []


def _history(record: dict[str, Any]) -> list[dict[str, str]]:
    """LLaMA-Factory/ms-swift ``history``: ``[[query, response], ...]`` before the current turn."""
    turns: list[dict[str, str]] = []
    for pair in record.get("history") or []:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise SkipRecord("'history' is not a list of [query, response] string pairs")
        turns += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    return turns


def split_conversation(messages: list[dict[str, str]]) -> Example:
    """Split a conversation at its last assistant turn: earlier turns prompt, that turn completes."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None or not messages[last]["content"].strip():
        raise SkipRecord("no non-empty assistant reply")
    prompt = messages[:last]
    if not any(m["role"] == "user" and m["content"].strip() for m in prompt):
        raise SkipRecord("no user message before the last assistant reply")
    reply = messages[last]["content"]
    return {"prompt": prompt, "completion": [{"role": "assistant", "content": reply}], "reference": reply}


def format_alpaca(record: dict[str, Any]) -> Example:
    """Alpaca ``instruction`` (+ ``input``, ``system``, ``history``) -> ``output``."""
    instruction, output = record.get("instruction"), record.get("output")
    if not isinstance(instruction, str) or not instruction.strip() or not isinstance(output, str):
        raise SkipRecord("no instruction text, or no output text")
    extra = record.get("input")
    query = f"{instruction}\n{extra}" if isinstance(extra, str) and extra.strip() else instruction
    return split_conversation([*_system(record), *_history(record), {"role": "user", "content": query},
                     {"role": "assistant", "content": output}])


def format_sharegpt(record: dict[str, Any]) -> Example:
    """ShareGPT ``conversations`` of ``from``/``value`` turns (or ms-swift human/assistant pairs)."""
    key = next((k for k in CONVERSATION_KEYS if isinstance(record.get(k), list)), None)
    if key is None:
        raise SkipRecord("no conversations list")
    messages = _system(record)
    for turn in record[key]:
        if not isinstance(turn, dict):
            raise SkipRecord("a turn is not an object")
        if "from" in turn:
            role = str(turn.get("from"))
            if role in _TOOL_ROLES:
                raise SkipRecord(f"tool turn '{role}': the tools capability takes tool-call conversations")
            if role not in _SHAREGPT_ROLES or not isinstance(turn.get("value"), str):
                raise SkipRecord(f"turn from '{role}' is not a human/gpt/system text turn")
            messages.append({"role": _SHAREGPT_ROLES[role], "content": turn["value"]})
        elif isinstance(turn.get("human", turn.get("user")), str):  # ms-swift {"human", "assistant"}
            messages.append({"role": "user", "content": turn.get("human", turn.get("user"))})
            reply = turn.get("assistant", turn.get("gpt"))
            if isinstance(reply, str):
                messages.append({"role": "assistant", "content": reply})
        else:
            raise SkipRecord("a turn has neither from/value nor human/assistant keys")
    return split_conversation(messages)


def text_messages(turns: Any) -> list[dict[str, str]]:
    """OpenAI-style ``role``/``content`` turns (text parts allowed) as plain text messages.

    Raises:
        SkipRecord: tool turns, unknown roles, or non-text content.
    """
    if not isinstance(turns, list):
        raise SkipRecord("messages is not a list")
    messages: list[dict[str, str]] = []
    for turn in turns:
        if not isinstance(turn, dict):
            raise SkipRecord("a message is not an object")
        role = str(turn.get("role"))
        if role in _TOOL_ROLES or turn.get("tool_calls") or turn.get("function_call"):
            raise SkipRecord("tool calls or results: the tools capability takes these conversations")
        if role not in _MESSAGE_ROLES:
            raise SkipRecord(f"unknown role '{role}'")
        content = text_content(turn.get("content", turn.get("value")))
        if content is None:
            raise SkipRecord("non-text content (images, audio, ...): the multimodal capabilities take it")
        messages.append({"role": _MESSAGE_ROLES[role], "content": content})
    return messages


def format_messages(record: dict[str, Any]) -> Example:
    """OpenAI/TRL ``messages`` (``role``/``content``; text parts allowed)."""
    key = next((k for k in CONVERSATION_KEYS if k in record), None)
    if key is None:
        raise SkipRecord("no messages list")
    messages = text_messages(record[key])
    if not any(m["role"] == "system" for m in messages):
        messages = _system(record) + messages
    return split_conversation(messages)


def format_prompt_completion(record: dict[str, Any]) -> Example:
    """TRL ``prompt``/``completion``: strings (standard) or message lists (conversational)."""
    prompt, completion = record.get("prompt"), record.get("completion")
    turns = text_messages(prompt) if isinstance(prompt, list) else None
    if turns is None:
        if not isinstance(prompt, str):
            raise SkipRecord("prompt is neither text nor a message list")
        turns = [{"role": "user", "content": prompt}]
    if isinstance(completion, list):
        replies = text_messages(completion)
        if len(replies) != 1 or replies[0]["role"] != "assistant":
            raise SkipRecord("conversational completion is not exactly one assistant message")
        turns = turns + replies
    elif isinstance(completion, str):
        turns = turns + [{"role": "assistant", "content": completion}]
    else:
        raise SkipRecord("completion is neither text nor a message list")
    return split_conversation(turns)


def format_query_response(record: dict[str, Any]) -> Example:
    """ms-swift query/response vocabulary (``query``/``response``, ``question``/``answer``, ...)."""
    query_key = next((k for k in QUERY_KEYS if k in record), None)
    response_key = next((k for k in RESPONSE_KEYS if k in record), None)
    if query_key is None or response_key is None:
        raise SkipRecord("no query key or no response key")
    query, response = record[query_key], record[response_key]
    if isinstance(response, list) and len(response) == 1:
        response = response[0]
    if not isinstance(query, str) or not query.strip() or not isinstance(response, str):
        raise SkipRecord(f"'{query_key}' or '{response_key}' is not text")
    return split_conversation([*_system(record), *_history(record), {"role": "user", "content": query},
                     {"role": "assistant", "content": response}])


FORMATTERS = {
    "alpaca": format_alpaca,
    "sharegpt": format_sharegpt,
    "messages": format_messages,
    "trl_prompt_completion": format_prompt_completion,
    "query_response": format_query_response,
}


def generate(model: Any, tokenizer: Any, examples: list[Example], max_new_tokens: int) -> list[str]:
    """Stream each example's prompt greedily, one at a time, measuring it.

    A one-token warm-up generation runs first, so one-time start-up costs do not land on the first
    example's time to first token.

    Returns:
        :class:`nexus.streaming.StreamedText` replies (plain strings whose ``metrics`` hold ``ttft_s``,
        ``tokens_per_s``, ``tokens``, ``chunks``, ``total_s``, ``finish_reason``), read by :func:`score`.
    """
    model.eval()
    if examples:
        measure_stream(model, tokenizer, examples[0]["prompt"], 1)
    return [StreamedText(m["text"], m) for m in
            (measure_stream(model, tokenizer, e["prompt"], max_new_tokens) for e in examples)]


def score(generated: str, example: Example) -> dict[str, float]:
    """``streamed``: 1.0 when the reply arrived in more than one chunk and is not empty;
    ``ttft_s`` and ``tokens_per_s``: the stream's measurements (seconds, tokens per second).

    A plain string (not produced by :func:`generate`) has no measurements and scores only
    ``streamed`` = 0.0.
    """
    metrics = getattr(generated, "metrics", None)
    if not metrics:
        return {METRIC: 0.0}
    return {
        METRIC: float(metrics.get("chunks", 0) > 1 and bool(str(generated).strip())),
        "ttft_s": float(metrics["ttft_s"]),
        "tokens_per_s": float(metrics["tokens_per_s"]),
    }
