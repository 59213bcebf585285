"""The model behind ``nexus serve``: one generation at a time, OpenAI-shaped results."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from nexus.generation.stream import DEFAULT_MAX_NEW_TOKENS, ChatStream, stream_chat
from nexus.serving.models import model_modalities
from nexus.serving.requests import ChatRequest
from nexus.speech.voices import VOICES

AUDIO_TTL_S = 3600  # an audio reply's expires_at: OpenAI's field; nothing is kept server-side after the reply


class ChatService:
    """The model behind the server: one generation at a time, OpenAI-shaped results.

    Args:
        model: a loaded causal LM (eval mode), or a multimodal composite.
        tokenizer: its tokenizer (with a chat template), or the composite's processor; what it
            reads besides text is :attr:`modalities` (requests with media are parsed against it).
        model_name: the id reported in responses and by ``GET /v1/models``.
        max_new_tokens: a request's ``max_tokens`` when it gives none.
    """

    def __init__(self, model: Any, tokenizer: Any, model_name: str,
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.max_new_tokens = max_new_tokens
        self.modalities = model_modalities(tokenizer)
        self.voices = tuple(VOICES)  # any model's reply can be spoken (modalities: ["text", "audio"])
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
                                 seed=request.seed, images=request.images, audios=request.audios)
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

    def completion(self, stream: ChatStream, request: ChatRequest | None = None) -> dict[str, Any]:
        """Run ``stream`` to the end; the ``chat.completion`` object (with ``message.audio``, one WAV
        of the whole reply, when the request asks for audio)."""
        message: dict[str, Any] = {"role": "assistant"}
        if request is not None and request.voice:
            spoken = _spoken(stream, request.voice)
            message["content"] = "".join(value for kind, value in spoken if kind == "text")
            message["audio"] = _audio_object(spoken.sentences, request.audio_format, message["content"])
        else:
            message["content"] = "".join(stream)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": self.model_name,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": stream.finish_reason}],
            "usage": self._usage(stream),
        }

    def chunks(self, stream: ChatStream, request: ChatRequest) -> Iterator[dict[str, Any]]:
        """The ``chat.completion.chunk`` objects of ``stream``: the role, each text chunk, the finish
        reason, and (with ``stream_options.include_usage``) a last chunk with ``usage``.

        With ``modalities: ["text", "audio"]`` each sentence's audio follows as soon as it is
        synthesized, while the text keeps streaming: a ``delta.audio`` of ``{"id", "data" (base64:
        a whole WAV per chunk, or raw pcm16), "transcript" (that sentence), "expires_at"}``; the
        finish chunk then carries ``nexus_metrics`` (seconds to the first text and audio chunk,
        seconds of audio, real-time factor)."""
        base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": self.model_name}
        extra = {"usage": None} if request.include_usage else {}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                         "finish_reason": finish}], **extra}

        yield chunk({"role": "assistant", "content": ""})
        if request.voice:
            spoken, audio_id = _spoken(stream, request.voice), f"audio_{uuid.uuid4().hex}"
            for kind, value in spoken:
                yield chunk({"content": value} if kind == "text" else
                            {"audio": _audio_delta(audio_id, [value], request.audio_format, value.text)})
            yield {**chunk({}, stream.finish_reason or "stop"), "nexus_metrics": spoken.metrics()}
        else:
            for text in stream:
                yield chunk({"content": text})
            yield chunk({}, stream.finish_reason or "stop")
        if request.include_usage:
            yield {**base, "choices": [], "usage": self._usage(stream)}

    def models(self) -> dict[str, Any]:
        """The ``GET /v1/models`` list (this server's one model)."""
        return {"object": "list", "data": [self.model_card()]}

    def model_card(self) -> dict[str, Any]:
        """The model object of ``GET /v1/models/{id}``; a composite's also lists its ``modalities``
        (``["text", "image", "audio"]``, those it reads)."""
        card = {"id": self.model_name, "object": "model", "created": self.created, "owned_by": "nexus"}
        return {**card, "modalities": self.modalities.names()} if self.modalities.media else card


def _spoken(stream: ChatStream, voice: str) -> Any:
    """``stream``'s text with each sentence spoken by ``voice`` (:class:`nexus.speech.spoken.SpokenStream`)."""
    from nexus.speech.spoken import SpokenStream
    from nexus.speech.voices import load_voice

    return SpokenStream(stream, load_voice(voice))


def _audio_bytes(sentences: list[Any], audio_format: str) -> bytes:
    """The sentences' audio as one WAV file, or raw 16-bit samples (``pcm16``)."""
    from nexus.speech.audio import join, to_pcm16_bytes, to_wav_bytes

    if not sentences:
        return b""
    rate = sentences[0].sample_rate
    samples = join([s.samples for s in sentences], rate, gap_s=0.0)
    return to_pcm16_bytes(samples) if audio_format == "pcm16" else to_wav_bytes(samples, rate)


def _audio_delta(audio_id: str, sentences: list[Any], audio_format: str, transcript: str) -> dict[str, Any]:
    import base64

    return {"id": audio_id, "data": base64.b64encode(_audio_bytes(sentences, audio_format)).decode("ascii"),
            "transcript": transcript, "expires_at": int(time.time()) + AUDIO_TTL_S}


def _audio_object(sentences: list[Any], audio_format: str, transcript: str) -> dict[str, Any]:
    """``message.audio`` of a non-streamed reply: the whole reply's speech."""
    return _audio_delta(f"audio_{uuid.uuid4().hex}", sentences, audio_format, transcript)
