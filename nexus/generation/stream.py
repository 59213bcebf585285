"""Token streaming: a model's reply handed on chunk by chunk while ``model.generate`` runs.

``model.generate`` runs in a background thread that feeds transformers' ``TextIteratorStreamer``
(the standard transformers recipe); the caller iterates over text chunks as they are decoded.
:class:`ChatStream` adds what a runtime needs on top of that recipe: time to first token, token
counts, ``stop`` strings, cancellation (Ctrl-C, a client that hangs up) and the finish reason
(``stop`` or ``length``).

A multimodal composite streams the same way: pass its processor
(:class:`~nexus.multimodal.processor.NexusOmniProcessor`) as the tokenizer and the media in the
placeholders' order (``images``, ``audios``); the chat renders through the processor's text tokenizer
and the processor builds the inputs (placeholders expanded, media tensors).

Used by ``nexus chat`` and ``nexus serve`` (:mod:`nexus.serving`) and by the streaming
capability's evaluation (:func:`measure_stream`, :class:`StreamedText`). Nothing but the standard
library is imported until a stream starts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any, Self

from nexus.chat import render_prompt
from nexus.generation.limits import context_length, eos_ids

DEFAULT_MAX_NEW_TOKENS = 512


class ContextLengthError(ValueError):
    """The prompt does not fit in the model's context window."""


class StopFilter:
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


def render_messages(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The generation prompt of a chat through the tokenizer's chat template (as training renders it).

    Raises:
        ValueError: the tokenizer has no chat template.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("the model's tokenizer has no chat template; chat and serve need an instruct "
                         "model (tokenizer_config.json with a chat_template), e.g. models/base")
    return render_prompt({"prompt": messages}, tokenizer)


def is_processor(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` is a multimodal processor: a text ``tokenizer`` inside and an ``expand`` of
    the media placeholders (:class:`~nexus.multimodal.processor.NexusOmniProcessor`)."""
    return hasattr(tokenizer, "tokenizer") and hasattr(tokenizer, "expand")


def _prompt_inputs(model: Any, tokenizer: Any, messages: list[dict[str, str]], images: Sequence[Any],
                   audios: Sequence[Any]) -> tuple[Any, dict[str, Any]]:
    """(the text tokenizer, the model's inputs on its device) of the chat's generation prompt."""
    if not is_processor(tokenizer):
        if images or audios:
            raise ValueError("images or audio were given but the model takes text only (its tokenizer is "
                             "not a multimodal processor)")
        return tokenizer, tokenizer(render_messages(tokenizer, messages), return_tensors="pt",
                                    add_special_tokens=False).to(model.device)
    text_tokenizer = tokenizer.tokenizer
    batch = tokenizer(render_messages(text_tokenizer, messages), images=list(images), audios=list(audios))
    dtype = getattr(model, "dtype", None)
    inputs = {key: value.to(model.device, dtype=dtype) if value.is_floating_point() and dtype is not None
              else value.to(model.device) for key, value in batch.items()}
    return text_tokenizer, inputs


def _context_length(model: Any) -> int | None:
    """The model's context window; a composite's is its text model's."""
    limit = context_length(model)
    text_config = getattr(getattr(model, "config", None), "text_config", None)
    return limit if limit is not None or text_config is None else context_length(text_config)


class ChatStream:
    """The text chunks of one chat completion, yielded while ``model.generate`` runs in a thread.

    Iterate over it to receive the reply as it is decoded; empty chunks are never yielded. Once the
    iteration ends, :attr:`finish_reason`, :attr:`completion_tokens` and :meth:`metrics` are final.
    Breaking out early leaves the generation thread running until :meth:`close` (or ``with``)
    cancels it.

    Args:
        model: a causal LM, or a multimodal composite.
        tokenizer: its tokenizer (with a chat template), or the composite's processor.
        messages: the conversation, ``[{"role": ..., "content": ...}, ...]``; with a processor the
            contents hold one ``<image>`` / ``<audio>`` placeholder per item of ``images`` / ``audios``.
        max_new_tokens: most tokens to generate (lowered to what the context window leaves).
        temperature: 0 for greedy decoding, otherwise the sampling temperature.
        top_p: nucleus sampling share (sampling only).
        stop: strings that end the reply; the reply is cut before the first of them.
        seed: seeds torch's generator before sampling.
        images: PIL images, in the order of the ``<image>`` placeholders (a processor only).
        audios: float32 mono arrays at the processor's sampling rate, in ``<audio>`` order.

    Raises:
        ContextLengthError: the prompt fills the model's context window.
        ValueError: the tokenizer has no chat template, media for a text model, or placeholders
            that do not match the media given.
    """

    def __init__(self, model: Any, tokenizer: Any, messages: list[dict[str, str]],
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, temperature: float = 0.0, *,
                 top_p: float | None = None, stop: Sequence[str] = (), seed: int | None = None,
                 images: Sequence[Any] = (), audios: Sequence[Any] = ()) -> None:
        import torch
        from transformers import StoppingCriteriaList

        self.started_at = time.perf_counter()
        tokenizer, inputs = _prompt_inputs(model, tokenizer, messages, images or (), audios or ())
        self.prompt_tokens = int(inputs["input_ids"].shape[1])
        limit = _context_length(model)
        if limit is not None and self.prompt_tokens >= limit:
            raise ContextLengthError(
                f"the prompt has {self.prompt_tokens} tokens but the model's context is {limit} tokens; "
                f"shorten the conversation (or /reset in nexus chat)")
        room = limit - self.prompt_tokens if limit else max_new_tokens
        self.max_new_tokens = max(1, min(max_new_tokens, room))
        self._eos = eos_ids(model, tokenizer)
        self._streamer = _timed_streamer(tokenizer)
        self._stops = StopFilter(stop)
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
        except Exception as err:  # re-raised in the consumer's thread by _finish  # noqa: BLE001 - re-raised in the consumer's thread by _finish
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
                top_p: float | None = None, stop: Sequence[str] = (), seed: int | None = None,
                images: Sequence[Any] = (), audios: Sequence[Any] = ()) -> ChatStream:
    """Stream the model's reply to ``messages`` chunk by chunk as it is generated.

    Greedy by default, so the concatenated chunks equal the non-streamed greedy decode of the same
    prompt. See :class:`ChatStream` for the arguments (a composite's processor as ``tokenizer``, with
    ``images`` / ``audios``, streams a reply about the media); the returned stream is an
    ``Iterator[str]`` that also reports token counts, finish reason and timings.

    Example:
        >>> for chunk in stream_chat(model, tokenizer, [{"role": "user", "content": "Hi"}], 64):
        ...     print(chunk, end="", flush=True)
    """
    return ChatStream(model, tokenizer, messages, max_new_tokens, temperature, top_p=top_p, stop=stop,
                      seed=seed, images=images, audios=audios)


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
