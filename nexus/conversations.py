"""The one parser of chat-shaped records: every layout becomes one list of canonical :class:`Turn`.

Layouts read (the vocabulary TRL, LLaMA-Factory and ms-swift use; :mod:`nexus.formats` detects them
with the tables defined here):

- ShareGPT ``conversations`` of ``from``/``value`` turns (``human``, ``gpt``, ``system``,
  ``function_call``, ``observation``, ...), and ms-swift's ``{"human": q, "assistant": a}`` pairs;
- OpenAI/TRL ``messages`` of ``role``/``content`` turns, content as a string or a list of typed
  parts (``{"type": "text", "text"|"value": ...}``, media, reasoning and tool-call parts), with
  ``tool_calls``/``function_call`` on assistant turns;
- LLaMA-Factory alpaca (``instruction``/``input``/``output``/``system``/``history``), ms-swift's
  query/response vocabulary and TRL ``prompt``/``completion``.

A :class:`Turn` has one role of :data:`ROLES` (every alias in :data:`ROLE_ALIASES` maps to one),
``content`` as a string or a list of parts (``{"type": "text", "text": str}``, ``{"type": "image" |
"audio" | "video", "source": ...}``; other parts are kept as given), the turn's ``reasoning``
(``reasoning_content``/``reasoning``/``thinking`` fields and reasoning parts) and its tool ``calls``
(``{"name", "arguments"}``). Capabilities map turns to training examples; they do not read raw
records. A record that cannot be parsed raises :class:`ConversationError`, whose message is the
reason (capabilities report it as a dropped record). Standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

# --- vocabulary ------------------------------------------------------------------------------

CONVERSATION_KEYS = ("messages", "conversations", "conversation")
QUERY_KEYS = ("prompt", "query", "instruction", "question", "problem", "input")
RESPONSE_KEYS = (
    "response", "answer", "answers", "output", "completion", "completions", "solution",
    "target", "targets", "answer_key",
)
ROLE_KEYS = ("role", "from")
CONTENT_KEYS = ("content", "value", "text")
ROLES = ("system", "user", "assistant", "tool")
ROLE_ALIASES: dict[str, str] = {
    "system": "system", "developer": "system",
    "user": "user", "human": "user",
    "assistant": "assistant", "gpt": "assistant", "bot": "assistant", "model": "assistant",
    "tool": "tool", "observation": "tool", "function": "tool", "ipython": "tool",
}
"""Every role name a record may use -> its canonical role (tool-call roles below are assistant turns)."""
TOOL_CALL_ROLES = ("function_call", "tool_call", "tool_calls")
"""ShareGPT roles of an assistant turn whose value is the call (or calls) it makes."""
ASSISTANT_ROLES = tuple(k for k, v in ROLE_ALIASES.items() if v == "assistant")
TOOL_RESULT_ROLES = tuple(k for k, v in ROLE_ALIASES.items() if v == "tool")
KNOWN_ROLES = (*ROLE_ALIASES, *TOOL_CALL_ROLES)
PAIR_KEYS = (("human", "user"), ("assistant", "gpt"))
"""ms-swift turn pairs: the query key, then the reply key."""
REASONING_TURN_KEYS = ("reasoning_content", "reasoning", "thinking")
REASONING_PART_TYPES = ("reasoning", "thinking")
TOOL_CALL_PART_TYPES = ("tool_call", "tool_use", "function_call")
IMAGE_PART_TYPES = ("image", "image_url", "input_image")
VIDEO_PART_TYPES = ("video", "video_url")
AUDIO_PART_TYPES = ("audio", "audio_url", "input_audio")
MEDIA_KINDS: dict[str, str] = {
    **dict.fromkeys(IMAGE_PART_TYPES, "image"), **dict.fromkeys(AUDIO_PART_TYPES, "audio"),
    **dict.fromkeys(VIDEO_PART_TYPES, "video"),
}
"""Media part type -> canonical part type (``image``, ``audio``, ``video``)."""
PART_TEXT_KEYS = ("text", "value", "content", "thinking", "reasoning")
_MEDIA_SOURCE_KEYS = ("value", "url", "path", "data", "file")

Message = dict[str, str]
"""A plain text chat message, ``{"role": ..., "content": ...}`` (what examples hold)."""
Part = dict[str, Any]
Content = str | list[Part]


class ConversationError(ValueError):
    """A chat-shaped record that cannot be used; the message is the reason (one line)."""


@dataclass(frozen=True)
class Turn:
    """One canonical turn.

    Attributes:
        role: one of :data:`ROLES`.
        content: the text, or a list of parts: ``{"type": "text", "text": str}``, media parts
            ``{"type": "image" | "audio" | "video", "source": path, URL, data or None}`` (None: the
            record's ``images``/``audios``/``videos`` list, in order), and any other part as given.
        reasoning: the turn's reasoning (fields and reasoning parts, blank-line separated), or "".
        calls: the tool calls the turn makes, each ``{"name": str, "arguments": dict}``.
    """

    role: str
    content: Content = ""
    reasoning: str = ""
    calls: tuple[dict[str, Any], ...] = ()

    @property
    def text(self) -> str:
        """The turn's text parts joined (:func:`text_of`)."""
        return text_of(self.content)


# --- values and content ------------------------------------------------------------------------


def json_value(value: Any) -> Any:
    """``value`` decoded when it is JSON text of a list or object (CSV cells, xLAM, LLaMA-Factory
    ``tools``); anything else unchanged."""
    if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def text_content(content: Any) -> str | None:
    """The text of a message's ``content``: a string, or a list of text parts
    (``{"type": "text", "text": ...}``; LLaMA-Factory v1 uses ``"value"``). None when any part is not text."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return None
    texts: list[str] = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, dict) or part.get("type") != "text":
            return None
        value = part.get("text", part.get("value"))
        if not isinstance(value, str):
            return None
        texts.append(value)
    return "".join(texts)


def text_of(content: Content, sep: str = "") -> str:
    """The text of canonical content: the string, or its non-empty text parts joined by ``sep``
    (media and other parts are left out)."""
    if isinstance(content, str):
        return content
    return sep.join(p["text"] for p in content if p.get("type") == "text" and p["text"])


def _part_text(part: dict[str, Any]) -> str:
    return next((part[k] for k in PART_TEXT_KEYS if isinstance(part.get(k), str)), "")


def _media_source(part: dict[str, Any], kind: str) -> Any:
    """The path, URL or data of a media part (OpenAI ``{"image_url": {"url": ...}}`` included)."""
    for key in (str(part["type"]), kind, *_MEDIA_SOURCE_KEYS):
        value = part.get(key)
        if isinstance(value, dict) and isinstance(value.get("url"), str):
            return value["url"]
        if value is not None and key != "type":
            return value
    return None


# --- tool calls --------------------------------------------------------------------------------


def as_call(obj: Any) -> dict[str, Any] | None:
    """One call as ``{"name": str, "arguments": dict}``, or None when ``obj`` is not a call.

    Accepts ``{"name", "arguments"}`` (``arguments`` may be a JSON string, ``parameters`` is an
    alias, missing means none) and OpenAI's ``{"type": "function", "function": {...}}``.
    """
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict) and "name" not in obj:
        obj = obj["function"]
    name = obj.get("name")
    args = obj.get("arguments", obj.get("parameters", {}))
    args = {} if args is None or args == "" else json_value(args)
    if not isinstance(name, str) or not name.strip() or not isinstance(args, dict):
        return None
    return {"name": name.strip(), "arguments": args}


def as_calls(value: Any) -> list[dict[str, Any]] | None:
    """A call or list of calls (possibly JSON text) as a list of calls; None if any is not a call."""
    value = json_value(value)
    items = value if isinstance(value, list) else [value]
    calls = [as_call(item) for item in items]
    return None if any(c is None for c in calls) else calls  # type: ignore[return-value]


def _calls(value: Any) -> list[dict[str, Any]]:
    calls = as_calls(value)
    if calls is None:
        raise ConversationError("a tool call is not a JSON {name, arguments} object")
    return calls


# --- turns -------------------------------------------------------------------------------------


def _content(raw: Any) -> tuple[Content, list[str], list[dict[str, Any]]]:
    """(canonical content, reasoning texts, calls) of a raw ``content``/``value``."""
    if raw is None:
        return "", [], []
    if isinstance(raw, str):
        return raw, [], []
    if not isinstance(raw, list):
        raise ConversationError("a turn's content is neither text nor a list of parts")
    parts: list[Part] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in raw:
        if isinstance(part, str):
            parts.append({"type": "text", "text": part})
        elif not isinstance(part, dict):
            raise ConversationError("a content part is neither text nor an object")
        elif part.get("type") in REASONING_PART_TYPES:
            reasoning.append(_part_text(part))
        elif part.get("type") in TOOL_CALL_PART_TYPES:
            calls.extend(_calls(part.get("value", part.get("text", part))))
        elif part.get("type", "text") == "text":
            parts.append({"type": "text", "text": _part_text(part)})
        elif str(part.get("type")) in MEDIA_KINDS:  # str(): a list or object type is an unknown part
            kind = MEDIA_KINDS[part["type"]]
            parts.append({"type": kind, "source": _media_source(part, kind)})
        else:
            parts.append(dict(part))
    return parts, reasoning, calls


def _role_turn(turn: dict[str, Any]) -> Turn:
    key = next(k for k in ROLE_KEYS if k in turn)
    raw_role = turn[key]
    value = turn["content"] if "content" in turn else turn.get("value")
    if raw_role in TOOL_CALL_ROLES:
        return Turn("assistant", "", calls=tuple(_calls(value)))
    if not isinstance(raw_role, str) or raw_role not in ROLE_ALIASES:
        raise ConversationError(f"unknown '{key}' role '{raw_role}' (known: {', '.join(KNOWN_ROLES)})")
    content, thoughts, calls = _content(value)
    field = next((turn[k] for k in REASONING_TURN_KEYS if isinstance(turn.get(k), str) and turn[k]), "")
    for call_key in ("tool_calls", "function_call"):
        if turn.get(call_key):
            calls.extend(_calls(turn[call_key]))
    reasoning = "\n\n".join(t for t in (field, *thoughts) if t)
    return Turn(ROLE_ALIASES[raw_role], content, reasoning, tuple(calls))


def _pair_turns(turn: dict[str, Any]) -> list[Turn]:
    query = next((turn[k] for k in PAIR_KEYS[0] if k in turn), None)
    reply = next((turn[k] for k in PAIR_KEYS[1] if k in turn), None)
    if not isinstance(query, str):
        raise ConversationError("a turn has neither a role (role/from) nor a human/assistant pair")
    return [Turn("user", query)] + ([Turn("assistant", reply)] if isinstance(reply, str) else [])


def parse_turns(raw: Any) -> list[Turn]:
    """Canonical turns of a raw conversation (a list of turns, or its JSON text), in order.

    Consecutive ShareGPT ``function_call`` turns become one assistant turn holding every call.

    Raises:
        ConversationError: not a list, a turn that is not an object, an unknown role, content that
            is neither text nor parts, or a tool call that is not ``{name, arguments}``.
    """
    raw = json_value(raw)
    if not isinstance(raw, list):
        raise ConversationError("the conversation is not a list of turns")
    turns: list[Turn] = []
    for item in raw:
        if not isinstance(item, dict):
            raise ConversationError("a turn is not an object")
        if not any(k in item for k in ROLE_KEYS):
            turns.extend(_pair_turns(item))
            continue
        turn = _role_turn(item)
        merge = item.get("role", item.get("from")) in TOOL_CALL_ROLES
        if merge and turns and turns[-1].role == "assistant" and turns[-1].calls:
            turns[-1] = replace(turns[-1], calls=turns[-1].calls + turn.calls)
        else:
            turns.append(turn)
    return turns


def has_tool_use(turns: Iterable[Turn]) -> bool:
    """True when any turn is a tool result or makes a tool call."""
    return any(t.role == "tool" or t.calls for t in turns)


# --- records -----------------------------------------------------------------------------------


def record_turns(record: dict[str, Any], keys: tuple[str, ...] = CONVERSATION_KEYS) -> list[Turn]:
    """The turns of the first of ``keys`` holding a conversation (a list, or its JSON text).

    Raises:
        ConversationError: no such key, or :func:`parse_turns` refuses the conversation.
    """
    for key in keys:
        value = json_value(record.get(key))
        if isinstance(value, list):
            return parse_turns(value)
    raise ConversationError(f"no conversation (a list of turns under {', '.join(keys)})")


def system_turns(record: dict[str, Any]) -> list[Turn]:
    """The record's ``system`` prompt as a turn (none when absent or blank)."""
    system = record.get("system")
    return [Turn("system", system)] if isinstance(system, str) and system.strip() else []


def with_system(record: dict[str, Any], turns: list[Turn]) -> list[Turn]:
    """``turns`` with the record's ``system`` prompt first, unless a turn is a system turn already."""
    return turns if any(t.role == "system" for t in turns) else [*system_turns(record), *turns]


def history_turns(record: dict[str, Any]) -> list[Turn]:
    """LLaMA-Factory/ms-swift ``history``: ``[[query, response], ...]`` before the current turn."""
    turns: list[Turn] = []
    history = record.get("history") or []
    for pair in history if isinstance(history, list) else [None]:  # not a list: refused below
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise ConversationError("'history' is not a list of [query, response] string pairs")
        turns += [Turn("user", pair[0]), Turn("assistant", pair[1])]
    return turns


def record_tools(record: dict[str, Any]) -> list[Any]:
    """The record's tool schemas (``tools``: a list or its JSON text); [] when absent or empty.

    Raises:
        ConversationError: ``tools`` is neither a list nor JSON text of one.
    """
    tools = json_value(record.get("tools"))
    if not tools:
        return []
    if not isinstance(tools, list):
        raise ConversationError("tools is not a JSON list of tool schemas")
    return tools


def first_text(record: dict[str, Any], keys: Iterable[str]) -> str | None:
    """The first non-blank string under ``keys`` (a one-item list of one counts), else None."""
    for key in keys:
        value = record.get(key)
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if isinstance(value, str) and value.strip():
            return value
    return None


# --- plain text views ------------------------------------------------------------------------


def plain_messages(turns: Iterable[Turn]) -> list[Message]:
    """Text-only turns as ``{"role", "content"}`` messages (reasoning left out).

    Raises:
        ConversationError: a tool call or result, or non-text content.
    """
    messages: list[Message] = []
    for turn in turns:
        if turn.role == "tool" or turn.calls:
            raise ConversationError("tool calls or results: the tools capability takes these conversations")
        text = text_content(turn.content)
        if text is None:
            raise ConversationError("non-text content (images, audio, ...): the multimodal capabilities "
                                    "take it")
        messages.append({"role": turn.role, "content": text})
    return messages


def text_messages(raw: Any) -> list[Message]:
    """A raw conversation (any layout) as plain text messages (:func:`plain_messages`)."""
    return plain_messages(parse_turns(raw))


def split_conversation(messages: list[Message]) -> tuple[list[Message], str]:
    """(prompt, reply): the last assistant message's text, and every message before it.

    Raises:
        ConversationError: no non-empty assistant reply, or no user message before it.
    """
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None or not messages[last]["content"].strip():
        raise ConversationError("no non-empty assistant reply")
    prompt = messages[:last]
    if not any(m["role"] == "user" and m["content"].strip() for m in prompt):
        raise ConversationError("no user message before the last assistant reply")
    return prompt, messages[last]["content"]


def first_exchange(turns: list[Turn]) -> tuple[str, str]:
    """The text of the first user turn and of the first assistant turn.

    Raises:
        ConversationError: either is missing, blank or not text.
    """
    user = next((text_content(t.content) for t in turns if t.role == "user"), None)
    reply = next((text_content(t.content) for t in turns if t.role == "assistant"), None)
    if not (user and user.strip() and reply and reply.strip()):
        raise ConversationError("no user question and assistant reply in conversations")
    return user, reply


# --- record layouts as text conversations ------------------------------------------------------


def chat_messages(record: dict[str, Any]) -> list[Message]:
    """A ShareGPT/messages record as text messages, its ``system`` prompt first when it has none."""
    return plain_messages(with_system(record, record_turns(record)))


def alpaca_messages(record: dict[str, Any]) -> list[Message]:
    """Alpaca ``instruction`` (+ ``input``, ``system``, ``history``) and ``output`` as messages."""
    instruction, output = record.get("instruction"), record.get("output")
    if not isinstance(instruction, str) or not instruction.strip() or not isinstance(output, str):
        raise ConversationError("no instruction text, or no output text")
    extra = record.get("input")
    query = f"{instruction}\n{extra}" if isinstance(extra, str) and extra.strip() else instruction
    return plain_messages([*system_turns(record), *history_turns(record), Turn("user", query),
                           Turn("assistant", output)])


def query_response_messages(record: dict[str, Any]) -> list[Message]:
    """ms-swift's query/response vocabulary (:data:`QUERY_KEYS`, :data:`RESPONSE_KEYS`, with
    ``system`` and ``history``) as messages."""
    query, response = first_text(record, QUERY_KEYS), first_text(record, RESPONSE_KEYS)
    if query is None or response is None:
        raise ConversationError(f"no query text (one of {', '.join(QUERY_KEYS)}) or no response text "
                                f"(one of {', '.join(RESPONSE_KEYS)})")
    return plain_messages([*system_turns(record), *history_turns(record), Turn("user", query),
                           Turn("assistant", response)])


def prompt_completion_messages(record: dict[str, Any]) -> list[Message]:
    """TRL ``prompt``/``completion``: strings (standard) or message lists (conversational)."""
    prompt, completion = record.get("prompt"), record.get("completion")
    if isinstance(prompt, list):
        turns = parse_turns(prompt)
    elif isinstance(prompt, str):
        turns = [Turn("user", prompt)]
    else:
        raise ConversationError("prompt is neither text nor a message list")
    if isinstance(completion, list):
        replies = parse_turns(completion)
        if len(replies) != 1 or replies[0].role != "assistant":
            raise ConversationError("conversational completion is not exactly one assistant message")
    elif isinstance(completion, str):
        replies = [Turn("assistant", completion)]
    else:
        raise ConversationError("completion is neither text nor a message list")
    return plain_messages(turns + replies)


def prompt_messages(record: dict[str, Any]) -> list[Message]:
    """The prompt of a record whose reply is held elsewhere (preference and KTO records): its
    conversation (``system`` first when it has none), a ``prompt`` message list, or query text.

    Raises:
        ConversationError: none of them, a non-text conversation, or no user message in it.
    """
    for key in CONVERSATION_KEYS:
        turns = json_value(record.get(key))
        if isinstance(turns, list) and turns:
            messages = plain_messages(with_system(record, parse_turns(turns)))
            if not any(m["role"] == "user" and m["content"].strip() for m in messages):
                raise ConversationError("no user message in the prompt conversation")
            return messages
    if isinstance(record.get("prompt"), list):
        return text_messages(record["prompt"])
    query = first_text(record, QUERY_KEYS)
    if query is None:
        raise ConversationError("no prompt: neither a conversation, messages nor a query key")
    return [{"role": "user", "content": query}]


def reply_text(value: Any) -> str:
    """The reply a preference value holds: text, one turn (``value``/``content``), or a
    conversation ending in the reply.

    Raises:
        ConversationError: none of these.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        text = value.get("value", value.get("content"))
        if isinstance(text, str):
            return text
    if isinstance(value, list):
        return split_conversation(text_messages(value))[1]
    raise ConversationError("chosen/rejected is neither text, a turn, nor messages")
