"""streaming: general chat and instruction following, served token by token.

Trains on chat/instruction data (the last assistant turn is the completion, every earlier turn the
prompt) and evaluates by streaming each held-out prompt through
:func:`nexus.generation.stream.stream_chat`: a model streams correctly when its reply arrives in
more than one chunk and is not empty. Time to first token and decoding speed are measured on the
way. The runtime itself is ``nexus chat`` and ``nexus serve`` (see :mod:`nexus.serving` and
docs/streaming.md).

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

from nexus import conversations
from nexus.capabilities import Example
from nexus.capabilities._records import formatter
from nexus.generation.stream import StreamedText, measure_stream  # standard library at import

METRIC = "streamed"


def chat_example(messages: list[dict[str, str]]) -> Example:
    """A text conversation split at its last assistant turn: earlier turns prompt, that turn completes
    (:func:`nexus.conversations.split_conversation`)."""
    prompt, reply = conversations.split_conversation(messages)
    return {"prompt": prompt, "completion": [{"role": "assistant", "content": reply}], "reference": reply}


@formatter
def format_alpaca(record: dict[str, Any]) -> Example:
    """Alpaca ``instruction`` (+ ``input``, ``system``, ``history``) -> ``output``."""
    return chat_example(conversations.alpaca_messages(record))


@formatter
def format_chat(record: dict[str, Any]) -> Example:
    """ShareGPT ``conversations`` of ``from``/``value`` turns (or ms-swift human/assistant pairs) and
    OpenAI/TRL ``messages`` (``role``/``content``; text parts allowed); the record's ``system``
    prompt comes first when the conversation has none."""
    return chat_example(conversations.chat_messages(record))


format_sharegpt = format_messages = format_chat


@formatter
def format_prompt_completion(record: dict[str, Any]) -> Example:
    """TRL ``prompt``/``completion``: strings (standard) or message lists (conversational)."""
    return chat_example(conversations.prompt_completion_messages(record))


@formatter
def format_query_response(record: dict[str, Any]) -> Example:
    """ms-swift query/response vocabulary (``query``/``response``, ``question``/``answer``, ...)."""
    return chat_example(conversations.query_response_messages(record))


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
        :class:`nexus.generation.stream.StreamedText` replies (plain strings whose ``metrics`` hold
        ``ttft_s``, ``tokens_per_s``, ``tokens``, ``chunks``, ``total_s``, ``finish_reason``), read by
        :func:`score`.
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
