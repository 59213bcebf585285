"""Token streaming at inference: ``nexus chat`` (a terminal REPL) and ``nexus serve`` (an
OpenAI-compatible HTTP server on localhost).

Both run ``model.generate`` in a background thread that feeds transformers'
``TextIteratorStreamer`` (the standard transformers recipe); the caller iterates over text chunks as
they are decoded. :class:`ChatStream` adds what a runtime needs on top of that recipe: time to first
token, token counts, ``stop`` strings, cancellation (Ctrl-C, a client that hangs up) and the finish
reason (``stop`` or ``length``).

    nexus chat models/capabilities/streaming      # type a message, watch the reply arrive
    nexus serve models/base --port 8000           # POST http://127.0.0.1:8000/v1/chat/completions
    python -m nexus.streaming serve MODEL         # the same verbs without the nexus CLI

Models load through :func:`nexus.loading.load_model` (an HF folder, a GGUF file, or a trained PEFT
adapter folder, merged on load). The server uses only the standard library
(``http.server.ThreadingHTTPServer``) and runs one generation at a time. Tool calls are not supported
yet. Nothing but the standard library is imported until a model is loaded.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import logging
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self, TextIO
from urllib.parse import urlsplit

from nexus.chat import render_prompt

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_NEW_TOKENS = 512
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_STOP_SEQUENCES = 4
CHAT_PATH = "/v1/chat/completions"
ROLES = ("system", "developer", "user", "assistant")
REPL_COMMANDS = "/reset clears the conversation, /exit (or Ctrl-D) quits"


class ContextLengthError(ValueError):
    """The prompt does not fit in the model's context window."""


# --- streaming generation ---------------------------------------------------------------------


class _StopFilter:
    """Cuts streamed text at the first ``stop`` string, never emitting part of a stop string."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Returns the text safe to emit and whether a stop string was reached."""
        if not self.stops:
            return text, False
        buffer = self.pending + text
        hits = [i for i in (buffer.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.pending = ""
            return buffer[:min(hits)], True
        keep = 0  # the longest tail of the buffer that may still grow into a stop string
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(buffer)), keep, -1):
                if stop.startswith(buffer[-size:]):
                    keep = size
                    break
        self.pending = buffer[len(buffer) - keep:]
        return buffer[:len(buffer) - keep], False

    def flush(self) -> str:
        """The held-back tail once generation has ended (it never became a stop string)."""
        rest, self.pending = self.pending, ""
        return rest


_STREAMER_CLASS: Any = None


def _timed_streamer(tokenizer: Any) -> Any:
    """A ``TextIteratorStreamer`` that also counts generated tokens and times the first and last one."""
    global _STREAMER_CLASS
    if _STREAMER_CLASS is None:
        from transformers import TextIteratorStreamer

        class TimedStreamer(TextIteratorStreamer):
            """Records ``first_token_at``/``last_token_at`` (perf_counter), ``tokens``, ``last_token_id``."""

            def __init__(self, tok: Any) -> None:
                super().__init__(tok, skip_prompt=True, skip_special_tokens=True)
                self.first_token_at: float | None = None
                self.last_token_at: float | None = None
                self.tokens = 0
                self.last_token_id: int | None = None

            def put(self, value: Any) -> None:
                if not self.next_tokens_are_prompt:  # the first put is the prompt itself
                    now = time.perf_counter()
                    ids = value.reshape(-1).tolist()
                    if ids:
                        self.first_token_at = self.first_token_at or now
                        self.last_token_at = now
                        self.tokens += len(ids)
                        self.last_token_id = int(ids[-1])
                super().put(value)

        _STREAMER_CLASS = TimedStreamer
    return _STREAMER_CLASS(tokenizer)


def _cancel_criteria(event: threading.Event) -> Any:
    """A stopping criterion that ends generation once ``event`` is set."""
    import torch
    from transformers import StoppingCriteria

    class Cancelled(StoppingCriteria):
        def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
            return torch.full((input_ids.shape[0],), event.is_set(), dtype=torch.bool,
                              device=input_ids.device)

    return Cancelled()


def context_length(model: Any) -> int | None:
    """The model's context window in tokens (``max_position_embeddings`` or its synonyms), if known."""
    config = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for value in (getattr(getattr(model, "generation_config", None), "eos_token_id", None),
                  tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return ids


def render_messages(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The generation prompt of a chat through the tokenizer's chat template (as training renders it).

    Raises:
        ValueError: the tokenizer has no chat template.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("the model's tokenizer has no chat template; chat and serve need an instruct "
                         "model (tokenizer_config.json with a chat_template), e.g. models/base")
    return render_prompt({"prompt": messages}, tokenizer)


class ChatStream:
    """The text chunks of one chat completion, yielded while ``model.generate`` runs in a thread.

    Iterate over it to receive the reply as it is decoded; empty chunks are never yielded. Once the
    iteration ends, :attr:`finish_reason`, :attr:`completion_tokens` and :meth:`metrics` are final.
    Breaking out early leaves the generation thread running until :meth:`close` (or ``with``)
    cancels it.

    Args:
        model: a causal LM.
        tokenizer: its tokenizer (with a chat template).
        messages: the conversation, ``[{"role": ..., "content": ...}, ...]``.
        max_new_tokens: most tokens to generate (lowered to what the context window leaves).
        temperature: 0 for greedy decoding, otherwise the sampling temperature.
        top_p: nucleus sampling share (sampling only).
        stop: strings that end the reply; the reply is cut before the first of them.
        seed: seeds torch's generator before sampling.

    Raises:
        ContextLengthError: the prompt fills the model's context window.
        ValueError: the tokenizer has no chat template.
    """

    def __init__(self, model: Any, tokenizer: Any, messages: list[dict[str, str]],
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, temperature: float = 0.0, *,
                 top_p: float | None = None, stop: Sequence[str] = (), seed: int | None = None) -> None:
        import torch
        from transformers import StoppingCriteriaList

        self.started_at = time.perf_counter()
        inputs = tokenizer(render_messages(tokenizer, messages), return_tensors="pt",
                           add_special_tokens=False).to(model.device)
        self.prompt_tokens = int(inputs["input_ids"].shape[1])
        limit = context_length(model)
        if limit is not None and self.prompt_tokens >= limit:
            raise ContextLengthError(
                f"the prompt has {self.prompt_tokens} tokens but the model's context is {limit} tokens; "
                f"shorten the conversation (or /reset in nexus chat)")
        room = limit - self.prompt_tokens if limit else max_new_tokens
        self.max_new_tokens = max(1, min(max_new_tokens, room))
        self._eos = _eos_ids(model, tokenizer)
        self._streamer = _timed_streamer(tokenizer)
        self._stops = _StopFilter(stop)
        self._cancel = threading.Event()
        self._error: BaseException | None = None
        self._parts: list[str] = []
        self._ended_at: float | None = None
        self._stopped_by_string = False
        self._done = False
        self.finish_reason: str | None = None
        kwargs: dict[str, Any] = {
            **inputs, "streamer": self._streamer, "max_new_tokens": self.max_new_tokens,
            "pad_token_id": tokenizer.pad_token_id,
            "stopping_criteria": StoppingCriteriaList([_cancel_criteria(self._cancel)]),
        }
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=float(temperature), top_p=float(top_p or 1.0))
            if seed is not None:
                torch.manual_seed(seed)
        else:
            kwargs.update(do_sample=False)
        self._thread = threading.Thread(target=self._generate, args=(model, kwargs), daemon=True,
                                        name="nexus-generate")
        self._thread.start()

    def _generate(self, model: Any, kwargs: dict[str, Any]) -> None:
        import torch

        finished = False
        try:
            with torch.inference_mode():
                model.generate(**kwargs)  # ends the streamer itself
            finished = True
        except Exception as err:  # noqa: BLE001 - re-raised in the consumer's thread by _finish
            self._error = err
        finally:
            if not finished:
                self._streamer.end()  # wake the consumer

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> str:
        while not self._done:
            try:
                chunk = next(self._streamer)
            except StopIteration:
                self._finish()
                if rest := self._stops.flush():
                    return self._emit(rest)
                break
            text, stopped = self._stops.feed(chunk)
            if stopped:
                self._stopped_by_string = True
                self._cancel.set()
                self._finish()
            if text:
                return self._emit(text)
        raise StopIteration

    def _emit(self, text: str) -> str:
        self._parts.append(text)
        return text

    def _finish(self) -> None:
        self._done = True
        self._thread.join()
        self._ended_at = time.perf_counter()
        if self._error is not None:
            raise RuntimeError(f"generation failed: {self._error}") from self._error
        streamer = self._streamer
        if self._stopped_by_string or streamer.last_token_id in self._eos:
            self.finish_reason = "stop"
        elif streamer.tokens >= self.max_new_tokens:
            self.finish_reason = "length"
        else:
            self.finish_reason = "stop"

    def close(self, timeout_s: float = 30.0) -> None:
        """Cancel the generation (if still running) and wait for its thread."""
        self._cancel.set()
        self._thread.join(timeout_s)
        if not self._done:
            self._done = True
            self._ended_at = time.perf_counter()
            self.finish_reason = self.finish_reason or "stop"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def text(self) -> str:
        """The text yielded so far."""
        return "".join(self._parts)

    @property
    def chunks(self) -> int:
        """How many (non-empty) chunks were yielded."""
        return len(self._parts)

    @property
    def completion_tokens(self) -> int:
        """Tokens generated so far (the end-of-sequence token included, as in ``usage``)."""
        return int(self._streamer.tokens)

    def metrics(self) -> dict[str, Any]:
        """Latency and throughput of the stream (final once the iteration ended).

        Returns:
            ``ttft_s``: seconds from the call to the first generated token (prompt rendering,
            tokenization and prefill included); ``tokens_per_s``: decoding speed after the first
            token, ``(tokens - 1) / (last token time - first token time)`` (``tokens / total_s``
            for a one-token reply); ``tokens``; ``chunks``; ``total_s``; ``finish_reason``; ``text``.
        """
        streamer = self._streamer
        end = self._ended_at or time.perf_counter()
        total = end - self.started_at
        first, last, tokens = streamer.first_token_at, streamer.last_token_at, streamer.tokens
        ttft = (first - self.started_at) if first is not None else total
        if tokens >= 2 and first is not None and last is not None and last > first:
            rate = (tokens - 1) / (last - first)
        else:
            rate = tokens / total if tokens and total > 0 else 0.0
        return {"ttft_s": round(ttft, 6), "tokens_per_s": round(rate, 3), "tokens": tokens,
                "chunks": self.chunks, "total_s": round(total, 6), "finish_reason": self.finish_reason,
                "text": self.text}


def stream_chat(model: Any, tokenizer: Any, messages: list[dict[str, str]],
                max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, temperature: float = 0.0, *,
                top_p: float | None = None, stop: Sequence[str] = (), seed: int | None = None) -> ChatStream:
    """Stream the model's reply to ``messages`` chunk by chunk as it is generated.

    Greedy by default, so the concatenated chunks equal the non-streamed greedy decode of the same
    prompt. See :class:`ChatStream` for the arguments; the returned stream is an ``Iterator[str]``
    that also reports token counts, finish reason and timings.

    Example:
        >>> for chunk in stream_chat(model, tokenizer, [{"role": "user", "content": "Hi"}], 64):
        ...     print(chunk, end="", flush=True)
    """
    return ChatStream(model, tokenizer, messages, max_new_tokens, temperature, top_p=top_p, stop=stop,
                      seed=seed)


def measure_stream(model: Any, tokenizer: Any, messages: list[dict[str, str]],
                   max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, temperature: float = 0.0,
                   **kwargs: Any) -> dict[str, Any]:
    """Stream one reply to the end and return its measurements.

    Returns:
        ``{"ttft_s", "tokens_per_s", "tokens", "chunks", "total_s", "finish_reason", "text"}``
        (see :meth:`ChatStream.metrics`).
    """
    with stream_chat(model, tokenizer, messages, max_new_tokens, temperature, **kwargs) as stream:
        for _ in stream:
            pass
        return stream.metrics()


class StreamedText(str):
    """A generated reply (a plain ``str``) carrying the measurements of the stream that produced it.

    The streaming capability's ``generate`` returns these, so ``score(generated, example)`` reads
    ``generated.metrics`` without any change to the shared evaluator.
    """

    metrics: dict[str, Any]

    def __new__(cls, text: str, metrics: dict[str, Any] | None = None) -> Self:
        obj = super().__new__(cls, text)
        obj.metrics = {k: v for k, v in (metrics or {}).items() if k != "text"}
        return obj


def load_chat_model(model_path: str | Path, device: str | None = None) -> tuple[Any, Any]:
    """Load a model and tokenizer for chatting, in eval mode, on CUDA when available.

    Args:
        model_path: HF folder, ``.gguf`` file, or trained adapter folder (merged on load).
        device: torch device; default ``cuda`` when available, else ``cpu``.

    Raises:
        ValueError: not a model, or its tokenizer has no chat template.
    """
    from nexus.loading import ModelSourceError, load_model, load_tokenizer, model_source

    try:
        model_source(model_path)  # a wrong path fails here, before the slow imports
    except ModelSourceError:
        raise ModelSourceError(f"{model_path}: not a model; give an HF model folder (with config.json), "
                               f"a .gguf file or a trained adapter folder, e.g. models/base") from None
    import torch

    tokenizer = load_tokenizer(model_path)
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{model_path}: the tokenizer has no chat template; chat and serve need an "
                         f"instruct model (tokenizer_config.json with a chat_template), e.g. models/base")
    model = load_model(model_path)
    model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.eval()
    return model, tokenizer


def model_display_name(model_path: str | Path) -> str:
    """The name a model is served and shown under: its folder name, or a GGUF file's stem."""
    path = Path(model_path)
    return path.stem if path.suffix == ".gguf" else (path.resolve().name or str(path))


# --- nexus chat: the terminal REPL --------------------------------------------------------------


@dataclass
class ChatSession:
    """A conversation with a loaded model; :meth:`send` streams the next reply and records it."""

    model: Any
    tokenizer: Any
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    temperature: float = 0.0
    system: str | None = None
    history: list[dict[str, str]] = field(default_factory=list)

    def reset(self) -> None:
        """Forget the conversation (the system prompt stays)."""
        self.history.clear()

    def _messages(self) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.history

    def send(self, text: str) -> Iterator[str]:
        """Add a user message and stream the reply; the reply (even an interrupted one) joins the history.

        The oldest exchanges are dropped when the conversation outgrows the context window.

        Raises:
            ContextLengthError: the message alone does not fit (it is not kept).
        """
        self.history.append({"role": "user", "content": text})
        while True:
            try:
                stream = stream_chat(self.model, self.tokenizer, self._messages(), self.max_new_tokens,
                                     self.temperature)
                break
            except ContextLengthError:
                if len(self.history) <= 1:
                    self.history.pop()
                    raise
                del self.history[:2]  # the oldest user/assistant exchange
        try:
            yield from stream
        finally:
            stream.close()
            self.history.append({"role": "assistant", "content": stream.text})


def _read_line(stdin: TextIO, prompt: str | None) -> str | None:
    """One line of input, or None at end of input; ``prompt`` uses ``input()`` (line editing)."""
    if prompt is not None:
        try:
            return input(prompt)
        except EOFError:
            return None
    line = stdin.readline()
    return line if line else None


def chat_repl(model_path: str | Path, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, *,
              temperature: float = 0.0, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """Chat with a model in the terminal, printing the reply's tokens as they are generated.

    Reads one user message per line. ``/reset`` starts a new conversation, ``/exit`` (or ``/quit``,
    end of input, Ctrl-D) leaves; Ctrl-C interrupts a reply, and at the prompt quits. When stdin is
    a terminal a ``> `` prompt and a banner are shown; piped input gets only the replies, one line
    each.

    Returns:
        0 (the exit code).
    """
    stdin = stdin or sys.stdin
    out = stdout or sys.stdout
    interactive = stdin is sys.stdin and stdin.isatty()
    name = model_display_name(model_path)
    if interactive:
        out.write(f"Loading {name} ...\n")
        out.flush()
    model, tokenizer = load_chat_model(model_path)
    session = ChatSession(model, tokenizer, max_new_tokens, temperature)
    if interactive:
        out.write(f"Chatting with {name} ({REPL_COMMANDS}).\n")
        out.flush()
    while True:
        try:
            line = _read_line(stdin, "> " if interactive else None)
        except KeyboardInterrupt:
            line = None
        if line is None:
            if interactive:
                out.write("\n")
            break
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            session.reset()
            out.write("(conversation cleared)\n")
            out.flush()
            continue
        if text == "/help":
            out.write(f"Type a message and press Enter; {REPL_COMMANDS}.\n")
            out.flush()
            continue
        try:
            for chunk in session.send(text):
                out.write(chunk)
                out.flush()
        except KeyboardInterrupt:
            out.write(" [interrupted]")
        except ContextLengthError as err:
            out.write(f"error: {err}")
        out.write("\n")
        out.flush()
    return 0


# --- nexus serve: the OpenAI-compatible server --------------------------------------------------


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


def _number(body: dict[str, Any], key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise RequestError(f"'{key}' must be a number from {low:g} to {high:g}, got {value!r}", key)
    return float(value)


def _request_messages(raw: Any) -> list[dict[str, str]]:
    if not isinstance(raw, list) or not raw:
        raise RequestError("'messages' must be a non-empty list of {\"role\", \"content\"} objects",
                           "messages")
    messages: list[dict[str, str]] = []
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
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
        messages.append({"role": "system" if role == "developer" else str(role), "content": text})
    if not any(m["role"] == "user" for m in messages):
        raise RequestError("'messages' needs at least one user message", "messages")
    return messages


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
    for key in ("tools", "functions"):
        if body.get(key):
            raise RequestError(f"'{key}' is not supported by this server yet (tool calls come with the "
                               f"tools capability); send the request without it", key)
    n = body.get("n")
    if n is not None and n != 1:
        raise RequestError(f"'n' must be 1 (one choice per request), got {n!r}", "n")
    max_tokens = default_max_tokens
    for key in ("max_tokens", "max_completion_tokens"):  # the newer name wins when both are given
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RequestError(f"'{key}' must be a positive integer, got {value!r}", key)
        max_tokens = value
    temperature = _number(body, "temperature", 0.0, 2.0) or 0.0
    top_p = _number(body, "top_p", 0.0, 1.0)
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise RequestError(f"'stream' must be true or false, got {stream!r}", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise RequestError("'stream_options' must be an object such as {\"include_usage\": true}",
                           "stream_options")
    stop = body.get("stop")
    stops: tuple[str, ...] = ()
    if isinstance(stop, str):
        stops = (stop,)
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop) and len(stop) <= MAX_STOP_SEQUENCES:
        stops = tuple(stop)
    elif stop is not None:
        raise RequestError(f"'stop' must be a string or a list of up to {MAX_STOP_SEQUENCES} strings",
                           "stop")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError(f"'seed' must be an integer, got {seed!r}", "seed")
    return ChatRequest(messages=messages, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                       stream=stream, include_usage=bool(options.get("include_usage")) and stream,
                       stop=stops, seed=seed)


class ChatService:
    """The model behind the server: one generation at a time, OpenAI-shaped results.

    Args:
        model: a loaded causal LM (eval mode).
        tokenizer: its tokenizer (with a chat template).
        model_name: the id reported in responses and by ``GET /v1/models``.
        max_new_tokens: a request's ``max_tokens`` when it gives none.
    """

    def __init__(self, model: Any, tokenizer: Any, model_name: str,
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.max_new_tokens = max_new_tokens
        self.created = int(time.time())
        self._lock = threading.Lock()
        self._active: ChatStream | None = None

    @contextlib.contextmanager
    def generation(self, request: ChatRequest) -> Iterator[ChatStream]:
        """Hold the generation lock and a started stream for ``request``; cancel it on exit.

        Raises:
            ContextLengthError: the prompt does not fit (raised before anything is sent).
        """
        with self._lock:
            stream = stream_chat(self.model, self.tokenizer, request.messages, request.max_tokens,
                                 request.temperature, top_p=request.top_p, stop=request.stop,
                                 seed=request.seed)
            self._active = stream
            try:
                yield stream
            finally:
                stream.close()
                self._active = None

    def cancel(self) -> None:
        """Cancel the running generation, if any (used at shutdown)."""
        stream = self._active
        if stream is not None:
            stream.close(timeout_s=5.0)

    def _usage(self, stream: ChatStream) -> dict[str, int]:
        completion = stream.completion_tokens
        return {"prompt_tokens": stream.prompt_tokens, "completion_tokens": completion,
                "total_tokens": stream.prompt_tokens + completion}

    def completion(self, stream: ChatStream) -> dict[str, Any]:
        """Run ``stream`` to the end; the ``chat.completion`` object."""
        text = "".join(stream)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": self.model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "logprobs": None, "finish_reason": stream.finish_reason}],
            "usage": self._usage(stream),
        }

    def chunks(self, stream: ChatStream, request: ChatRequest) -> Iterator[dict[str, Any]]:
        """The ``chat.completion.chunk`` objects of ``stream``: the role, each text chunk, the finish
        reason, and (with ``stream_options.include_usage``) a last chunk with ``usage``."""
        base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": self.model_name}
        extra = {"usage": None} if request.include_usage else {}

        def chunk(delta: dict[str, str], finish: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                         "finish_reason": finish}], **extra}

        yield chunk({"role": "assistant", "content": ""})
        for text in stream:
            yield chunk({"content": text})
        yield chunk({}, stream.finish_reason or "stop")
        if request.include_usage:
            yield {**base, "choices": [], "usage": self._usage(stream)}

    def models(self) -> dict[str, Any]:
        """The ``GET /v1/models`` list (this server's one model)."""
        return {"object": "list", "data": [self.model_card()]}

    def model_card(self) -> dict[str, Any]:
        """The model object of ``GET /v1/models/{id}``."""
        return {"id": self.model_name, "object": "model", "created": self.created, "owned_by": "nexus"}


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive; streamed responses use chunked transfer encoding."""

    protocol_version = "HTTP/1.1"
    server_version = "nexus-serve/0.1"
    timeout = 120  # an idle keep-alive connection is closed after this many seconds
    server: ChatServer

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

    # -- responses --

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_error(self, err: RequestError) -> None:
        self._send_json(err.status, err.body())

    def _write_chunk(self, text: str) -> None:
        data = text.encode("utf-8")
        self.wfile.write(f"{len(data):X}\r\n".encode("ascii") + data + b"\r\n")
        self.wfile.flush()

    @property
    def service(self) -> ChatService:
        service = self.server.service
        assert service is not None, "ChatServer.service is set before serve_forever()"
        return service

    # -- routes --

    def _route(self) -> str:
        return urlsplit(self.path).path.rstrip("/") or "/"

    def do_GET(self) -> None:
        path = self._route()
        service = self.service
        if path in ("/health", "/v1/health"):
            self._send_json(200, {"status": "ok", "model": service.model_name})
        elif path == "/v1/models":
            self._send_json(200, service.models())
        elif path == f"/v1/models/{service.model_name}":
            self._send_json(200, service.model_card())
        elif path.startswith("/v1/models/"):
            self._send_error(RequestError(f"model '{path.rsplit('/', 1)[1]}' is not served here; this "
                                          f"server has '{service.model_name}'", "model", 404,
                                          "model_not_found"))
        elif path == CHAT_PATH:
            self._send_error(RequestError(f"use POST for {CHAT_PATH}", status=405,
                                          code="method_not_allowed"))
        else:
            self._not_found(path)

    def do_POST(self) -> None:
        path = self._route()
        try:
            body = self._read_json()  # always read the body, so a kept-alive connection stays in sync
        except RequestError as err:
            self.close_connection = True
            self._send_error(err)
            return
        if path != CHAT_PATH:
            self._not_found(path)
            return
        try:
            request = parse_chat_request(body, self.service.max_new_tokens)
            self._chat(request)
        except RequestError as err:
            self._send_error(err)
        except ContextLengthError as err:
            self._send_error(RequestError(str(err), "messages", code="context_length_exceeded"))
        except (BrokenPipeError, ConnectionResetError):
            log.info("client closed the connection")
            self.close_connection = True
        except Exception as err:  # one bad generation must not stop the server
            log.exception("chat completion failed")
            self._send_error(RequestError(f"generation failed: {err}", status=500, code="server_error"))

    def _not_found(self, path: str) -> None:
        self._send_error(RequestError(f"unknown path {path}; this server has POST {CHAT_PATH}, "
                                      f"GET /v1/models and GET /health", status=404, code="not_found"))

    def _read_json(self) -> Any:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raise RequestError("chunked request bodies are not supported; send Content-Length",
                               status=411)
        length = self.headers.get("Content-Length")
        if length is None:
            if self.command == "POST":
                raise RequestError("the request has no body: send a JSON object with Content-Length",
                                   status=411)
            return None
        try:
            size = int(length)
        except ValueError:
            raise RequestError(f"bad Content-Length {length!r}") from None
        if size > MAX_BODY_BYTES:
            raise RequestError(f"the request body is {size} bytes; the limit is {MAX_BODY_BYTES}",
                               status=413)
        raw = self.rfile.read(size)
        try:
            return json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise RequestError(f"the request body is not valid JSON: {err}") from None

    def _chat(self, request: ChatRequest) -> None:
        service = self.service
        with service.generation(request) as stream:
            if not request.stream:
                self._send_json(200, service.completion(stream))
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for event in service.chunks(stream, request):
                    self._write_chunk(f"data: {json.dumps(event, ensure_ascii=False)}\n\n")
            except (BrokenPipeError, ConnectionResetError):
                raise
            except Exception as err:  # headers sent: report in the stream
                log.exception("streamed chat completion failed")
                error = RequestError(f"generation failed: {err}", status=500, code="server_error")
                self._write_chunk(f"data: {json.dumps(error.body())}\n\n")
            self._write_chunk("data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()


class ChatServer(ThreadingHTTPServer):
    """A ``ThreadingHTTPServer`` serving one :class:`ChatService` (``port=0`` picks a free port)."""

    daemon_threads = True
    block_on_close = False  # server_close() must not wait for idle keep-alive connections

    def __init__(self, service: ChatService | None, host: str = DEFAULT_HOST,
                 port: int = DEFAULT_PORT) -> None:
        self.service = service  # may be set after binding, before serve_forever()
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log a failed connection (instead of printing a traceback); a client hanging up is routine."""
        err = sys.exc_info()[1]
        if isinstance(err, (ConnectionError, TimeoutError)):
            log.debug("connection from %s ended: %s", client_address, err)
        else:
            log.exception("request from %s failed", client_address)

    @property
    def url(self) -> str:
        """The OpenAI base URL, ``http://HOST:PORT/v1``."""
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}/v1"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(model_path: str | Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          model_name: str | None = None, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, *,
          stop_event: threading.Event | None = None, out: TextIO | None = None) -> int:
    """Serve ``model_path`` as an OpenAI-compatible API until SIGINT/SIGTERM (or ``stop_event``).

    Prints one line, ``Serving NAME on http://HOST:PORT/v1 (Ctrl-C stops)``, once requests are
    accepted. Routes: ``POST /v1/chat/completions`` (``stream`` true or false), ``GET /v1/models``,
    ``GET /health``. Binds to localhost by default; another host is reachable by others with no
    authentication (a warning is logged).

    Args:
        model_path: HF folder, ``.gguf`` file, or trained adapter folder.
        host: interface to bind.
        port: TCP port; 0 picks a free one (the printed line shows it).
        model_name: id reported to clients (default: the folder name or GGUF file stem).
        max_new_tokens: a request's ``max_tokens`` when it gives none.
        stop_event: set it to stop the server (for callers running it in a thread).
        out: where the one line goes (default stdout).

    Returns:
        0 after a clean shutdown.

    Raises:
        OSError: the port is taken or the host cannot be bound.
    """
    out = out or sys.stdout
    try:  # bind first, so that a taken port fails before the slow model load
        server = ChatServer(None, host, port)
    except OSError as err:
        raise OSError(f"cannot listen on {host}:{port}: {err.strerror or err}; choose another --port "
                      f"(0 picks a free one)") from err
    try:
        model, tokenizer = load_chat_model(model_path)
    except BaseException:
        server.server_close()
        raise
    service = ChatService(model, tokenizer, model_name or model_display_name(model_path), max_new_tokens)
    server.service = service
    if not _is_loopback(host):
        log.warning("serving on %s: anyone who can reach this address can use the model (no "
                    "authentication); use --host 127.0.0.1 to keep it local", host)
    stop = stop_event or threading.Event()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="nexus-serve", daemon=True)
    thread.start()
    try:
        out.write(f"Serving {service.model_name} on {server.url} (Ctrl-C stops)\n")
        out.flush()
        while not stop.wait(0.5):
            pass
    finally:
        service.cancel()
        server.shutdown()
        server.server_close()
        thread.join(5)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("server stopped")
    return 0


# --- command-line entry points --------------------------------------------------------------------


def _positive(value: int, option: str) -> None:
    if value < 1:
        raise ValueError(f"{option} must be at least 1, got {value}")


def cmd_chat(args: argparse.Namespace) -> int:
    """``nexus chat MODEL [--max-new-tokens N]``; Ctrl-C while the model loads exits with 130."""
    _positive(args.max_new_tokens, "--max-new-tokens")
    try:
        return chat_repl(args.model, args.max_new_tokens)
    except KeyboardInterrupt:
        return 130


def cmd_serve(args: argparse.Namespace) -> int:
    """``nexus serve MODEL [--host H] [--port P] [--max-new-tokens N] [--model-name NAME]``.

    Ctrl-C while the model loads (before the server's own signal handling starts) exits with 130.
    """
    _positive(args.max_new_tokens, "--max-new-tokens")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be from 0 to 65535, got {args.port}")
    try:
        return serve(args.model, args.host, args.port, getattr(args, "model_name", None),
                     args.max_new_tokens)
    except KeyboardInterrupt:
        return 130


MODEL_HELP = ("HF model folder, .gguf file, or trained adapter folder "
              "(e.g. models/base, models/capabilities/streaming)")


def add_chat_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``nexus chat``."""
    parser.add_argument("model", help=MODEL_HELP)
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS,
                        help=f"most tokens per reply (default: {DEFAULT_MAX_NEW_TOKENS})")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``nexus serve``."""
    parser.add_argument("model", help=MODEL_HELP)
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"interface to bind (default: {DEFAULT_HOST}, this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"TCP port (default: {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS,
                        help=f"max_tokens of a request that gives none (default: {DEFAULT_MAX_NEW_TOKENS})")
    parser.add_argument("--model-name", help="model id reported to clients (default: the folder name)")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m nexus.streaming chat|serve MODEL ...`` (the same verbs as ``nexus chat|serve``)."""
    parser = argparse.ArgumentParser(prog="python -m nexus.streaming", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("chat", help="chat in the terminal; tokens stream as they are generated")
    add_chat_arguments(p)
    p.set_defaults(func=cmd_chat)
    p = sub.add_parser("serve", help="serve an OpenAI-compatible /v1/chat/completions on localhost")
    add_serve_arguments(p)
    p.set_defaults(func=cmd_serve)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except (ValueError, OSError) as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
