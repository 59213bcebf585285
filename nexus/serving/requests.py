"""Validating ``POST /v1/chat/completions`` bodies: each refusal names the problem and the field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nexus.conversations import text_content
from nexus.generation.stream import DEFAULT_MAX_NEW_TOKENS

MAX_STOP_SEQUENCES = 4
ROLES = ("system", "developer", "user", "assistant")


class RequestError(ValueError):
    """A request the server refuses; becomes an OpenAI-style error body.

    Attributes:
        status: HTTP status code.
        param: the request field at fault, if any.
        code: an OpenAI-style error code, if any.
    """

    def __init__(self, message: str, param: str | None = None, status: int = 400,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        """``{"error": {"message", "type", "param", "code"}}``."""
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": str(self), "type": kind, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class ChatRequest:
    """A validated ``POST /v1/chat/completions`` body."""

    messages: list[dict[str, str]]
    max_tokens: int
    temperature: float = 0.0
    top_p: float | None = None
    stream: bool = False
    include_usage: bool = False
    stop: tuple[str, ...] = ()
    seed: int | None = None


def _number(body: dict[str, Any], key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise RequestError(f"'{key}' must be a number from {low:g} to {high:g}, got {value!r}", key)
    return float(value)


def _message(message: Any, where: str) -> dict[str, str]:
    """One validated ``messages`` entry as ``{"role", "content"}`` text (``developer`` -> system)."""
    if not isinstance(message, dict):
        raise RequestError(f"{where} must be an object with 'role' and 'content'", where)
    role = message.get("role")
    if role in ("tool", "function") or message.get("tool_calls") or message.get("function_call"):
        raise RequestError(f"{where}: tool calls and tool results are not supported by this server "
                           f"yet; send plain system/user/assistant messages", where)
    if role not in ROLES:
        raise RequestError(f"{where}.role must be one of {', '.join(ROLES)}, got {role!r}",
                           f"{where}.role")
    text = text_content(message.get("content"))
    if text is None:
        raise RequestError(f"{where}.content must be a string or a list of text parts "
                           f"(images, audio and files are not supported)", f"{where}.content")
    return {"role": "system" if role == "developer" else str(role), "content": text}


def _request_messages(raw: Any) -> list[dict[str, str]]:
    if not isinstance(raw, list) or not raw:
        raise RequestError("'messages' must be a non-empty list of {\"role\", \"content\"} objects",
                           "messages")
    messages = [_message(message, f"messages[{i}]") for i, message in enumerate(raw)]
    if not any(m["role"] == "user" for m in messages):
        raise RequestError("'messages' needs at least one user message", "messages")
    return messages


def _refuse_unsupported(body: dict[str, Any]) -> None:
    """Refuse what this server cannot do: tools, functions, more than one choice."""
    for key in ("tools", "functions"):
        if body.get(key):
            raise RequestError(f"'{key}' is not supported by this server yet (tool calls come with the "
                               f"tools capability); send the request without it", key)
    n = body.get("n")
    if n is not None and n != 1:
        raise RequestError(f"'n' must be 1 (one choice per request), got {n!r}", "n")


def _max_tokens(body: dict[str, Any], default: int) -> int:
    max_tokens = default
    for key in ("max_tokens", "max_completion_tokens"):  # the newer name wins when both are given
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RequestError(f"'{key}' must be a positive integer, got {value!r}", key)
        max_tokens = value
    return max_tokens


def _stream_flags(body: dict[str, Any]) -> tuple[bool, bool]:
    """``stream`` and ``stream_options.include_usage`` (only meaningful when streaming)."""
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise RequestError(f"'stream' must be true or false, got {stream!r}", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise RequestError("'stream_options' must be an object such as {\"include_usage\": true}",
                           "stream_options")
    return stream, bool(options.get("include_usage")) and stream


def _stops(body: dict[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,)
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop) and len(stop) <= MAX_STOP_SEQUENCES:
        return tuple(stop)
    raise RequestError(f"'stop' must be a string or a list of up to {MAX_STOP_SEQUENCES} strings", "stop")


def parse_chat_request(body: Any, default_max_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> ChatRequest:
    """Validate an OpenAI chat-completions request body.

    Reads ``messages``, ``max_completion_tokens`` / ``max_tokens``, ``temperature`` (default 0:
    greedy), ``top_p``, ``stream``, ``stream_options.include_usage``, ``stop`` and ``seed``;
    ``model`` may name anything (the server has one model). Other fields are ignored, except those
    asking for what this server cannot do (``n`` > 1, ``tools``, ``functions``), which are refused.

    Raises:
        RequestError: the body names the problem and the field.
    """
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object with 'messages'")
    if body.get("model") is not None and not isinstance(body["model"], str):
        raise RequestError("'model' must be a string", "model")
    messages = _request_messages(body.get("messages"))
    _refuse_unsupported(body)
    max_tokens = _max_tokens(body, default_max_tokens)
    temperature = _number(body, "temperature", 0.0, 2.0) or 0.0
    top_p = _number(body, "top_p", 0.0, 1.0)
    stream, include_usage = _stream_flags(body)
    stops = _stops(body)
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError(f"'seed' must be an integer, got {seed!r}", "seed")
    return ChatRequest(messages=messages, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                       stream=stream, include_usage=include_usage, stop=stops, seed=seed)
