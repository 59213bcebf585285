"""Validating ``POST /v1/chat/completions`` bodies: each refusal names the problem and the field.

A multimodal composite (:class:`~nexus.serving.models.Modalities` with media) also takes, in user
messages, OpenAI content parts ``{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}``
and ``{"type": "input_audio", "input_audio": {"data": "<base64>", "format": "wav"}}``: each becomes a
``<image>`` / ``<audio>`` placeholder at the part's place in the text, and its decoded media joins
:attr:`ChatRequest.images` / :attr:`ChatRequest.audios`. Only inline data is read: the server fetches
no URL and opens no path a client names. Parts are read by :mod:`nexus.conversations`, the one parser
of chat content.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from nexus.conversations import ConversationError, parse_turns, text_content
from nexus.generation.stream import DEFAULT_MAX_NEW_TOKENS
from nexus.multimodal.media import DATA_URL_PREFIX, MediaError, load_audio, load_audio_bytes, load_image
from nexus.multimodal.processor import AUDIO_TOKEN, IMAGE_TOKEN, PLACEHOLDERS
from nexus.serving.models import Modalities

MAX_STOP_SEQUENCES = 4
AUDIO_INPUT_FORMATS = ("wav", "mp3", "flac")
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
    images: tuple[Any, ...] = ()
    """PIL images, in the order of the messages' ``<image>`` placeholders (composites only)."""
    audios: tuple[Any, ...] = ()
    """float32 mono arrays at the model's sampling rate, in ``<audio>`` order (composites only)."""
    voice: str | None = None
    """``audio.voice`` when ``modalities`` asks for audio: the reply is also spoken, sentence by sentence."""
    audio_format: str = "wav"
    """``audio.format``: ``wav`` (each chunk a whole WAV file) or ``pcm16`` (raw 16-bit little-endian samples)."""


def _number(body: dict[str, Any], key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise RequestError(f"'{key}' must be a number from {low:g} to {high:g}, got {value!r}", key)
    return float(value)


@dataclass
class _Media:
    """What the request's messages may hold besides text, and the media read so far."""

    modalities: Modalities
    images: list[Any]
    audios: list[Any]


def _refuse_placeholders(text: str, where: str) -> None:
    """A composite reads ``<image>`` ``<audio>`` ``<video>`` in text as media slots: refuse them typed."""
    found = [t for t in PLACEHOLDERS if t in text]
    if found:
        raise RequestError(f"{where}: the text holds {', '.join(found)}, this model's media placeholder; "
                           f"send media as image_url / input_audio content parts, not as text", where)


def _canonical_part(part: Any, where: str) -> dict[str, Any] | None:
    """One raw content part as :mod:`nexus.conversations` reads it (None: a reasoning or tool-call part)."""
    try:
        content = parse_turns([{"role": "user", "content": [part]}])[0].content
    except ConversationError as err:
        raise RequestError(f"{where}: {err}", where) from None
    return content[0] if isinstance(content, list) and content else None


def _data_url(source: Any, where: str, kind: str, example: str) -> str:
    """``source`` when it is a data URL; refusals say to send the media inline."""
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        raise RequestError(f"{where}: {kind} URLs are not fetched (the server has no network access); "
                           f"send the {kind} inline as a data URL, {example}", where)
    if not isinstance(source, str) or not source.startswith(DATA_URL_PREFIX):
        raise RequestError(f"{where}: the {kind} must be a data URL such as {example} (the server opens "
                           f"no path and fetches no URL)", where)
    return source


def _image(source: Any, where: str) -> Any:
    url = _data_url(source, where, "image", "data:image/png;base64,...")
    try:
        return load_image(url)
    except MediaError as err:
        raise RequestError(f"{where}: {err}", where) from None


def _audio(source: Any, where: str, modalities: Modalities) -> Any:
    """An ``input_audio`` object (``{"data": base64, "format": ...}``) or an audio data URL, decoded."""
    rate, seconds = modalities.sampling_rate, modalities.audio_seconds
    try:
        if isinstance(source, dict):
            data, fmt = source.get("data"), source.get("format")
            if not isinstance(data, str) or not data or not isinstance(fmt, str) or not fmt:
                raise RequestError(f"{where}: input_audio must be {{\"data\": <base64>, \"format\": \"wav\" | "
                                   f"\"mp3\" | \"flac\"}}", where)
            if fmt.lower() not in AUDIO_INPUT_FORMATS:
                raise RequestError(f"{where}: input_audio.format '{fmt}' is not supported; send one of "
                                   f"{', '.join(AUDIO_INPUT_FORMATS)}", where)
            try:
                raw = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError) as err:
                raise RequestError(f"{where}: input_audio.data is not valid base64 ({err})", where) from None
            return load_audio_bytes(raw, fmt, rate, seconds, name=f"input_audio ({fmt})")
        return load_audio(_data_url(source, where, "audio", "data:audio/wav;base64,..."), rate, seconds)
    except MediaError as err:
        raise RequestError(f"{where}: {err}", where) from None


def _media_text(content: list[Any], where: str, role: str, media: _Media) -> str:
    """The text of a composite's content parts, each media part a placeholder (its media read)."""
    modalities, texts = media.modalities, []
    for j, raw in enumerate(content):
        at = f"{where}[{j}]"
        part = _canonical_part(raw, at)
        kind = part.get("type") if part else None
        if kind == "text":
            _refuse_placeholders(part["text"], at)
            texts.append(part["text"])
            continue
        if kind not in ("image", "audio"):
            what = f"a '{raw.get('type')}' part" if isinstance(raw, dict) else "this part"
            raise RequestError(f"{at}: {what} is not supported; this server reads text, image_url and "
                               f"input_audio parts", at)
        if role != "user":
            raise RequestError(f"{at}: images and audio go in user messages, not {role} messages", at)
        if not (modalities.image if kind == "image" else modalities.audio):
            raise RequestError(f"{at}: this model takes {modalities.describe()}; it has no "
                               f"{'vision' if kind == 'image' else 'audio'} encoder", at)
        if kind == "image":
            media.images.append(_image(part["source"], at))
            texts.append(IMAGE_TOKEN)
        else:
            media.audios.append(_audio(part["source"], at, modalities))
            texts.append(AUDIO_TOKEN)
    return "".join(texts)


def _message(message: Any, where: str, media: _Media) -> dict[str, str]:
    """One validated ``messages`` entry as ``{"role", "content"}`` text (``developer`` -> system); a
    composite's media parts become placeholders, their media kept in ``media``."""
    if not isinstance(message, dict):
        raise RequestError(f"{where} must be an object with 'role' and 'content'", where)
    role = message.get("role")
    if role in ("tool", "function") or message.get("tool_calls") or message.get("function_call"):
        raise RequestError(f"{where}: tool calls and tool results are not supported by this server "
                           f"yet; send plain system/user/assistant messages", where)
    if role not in ROLES:
        raise RequestError(f"{where}.role must be one of {', '.join(ROLES)}, got {role!r}",
                           f"{where}.role")
    content = message.get("content")
    if media.modalities.media and isinstance(content, list):
        text = _media_text(content, f"{where}.content", str(role), media)
    else:
        text = text_content(content)
        if text is None and media.modalities.media:
            raise RequestError(f"{where}.content must be a string or a list of content parts (text, image_url, "
                               f"input_audio)", f"{where}.content")
        if text is None:
            raise RequestError(f"{where}.content must be a string or a list of text parts "
                               f"(images, audio and files are not supported: this model takes text only)",
                               f"{where}.content")
        if media.modalities.media:
            _refuse_placeholders(text, f"{where}.content")
    return {"role": "system" if role == "developer" else str(role), "content": text}


def _request_messages(raw: Any, media: _Media) -> list[dict[str, str]]:
    if not isinstance(raw, list) or not raw:
        raise RequestError("'messages' must be a non-empty list of {\"role\", \"content\"} objects",
                           "messages")
    messages = [_message(message, f"messages[{i}]", media) for i, message in enumerate(raw)]
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


AUDIO_FORMATS = ("wav", "pcm16")


def _audio_output(body: dict[str, Any], voices: tuple[str, ...]) -> tuple[str | None, str]:
    """``(voice, format)`` from ``modalities`` and ``audio`` (OpenAI's audio output); no voice when
    the request asks for text only."""
    modalities = body.get("modalities")
    if modalities is None:
        modalities = ["text"]
    if not isinstance(modalities, list) or not modalities or any(m not in ("text", "audio") for m in modalities):
        raise RequestError(f"'modalities' must be [\"text\"] or [\"text\", \"audio\"], got {modalities!r}",
                           "modalities")
    if "audio" not in modalities:
        return None, "wav"
    audio = body.get("audio")
    if not isinstance(audio, dict):
        raise RequestError("'modalities' asks for audio: give 'audio': {\"voice\": ..., \"format\": \"wav\"}", "audio")
    voice, fmt = audio.get("voice"), audio.get("format", "wav")
    if voice not in voices:
        raise RequestError(f"'audio.voice' must be one of {', '.join(voices)} (the offline voices), got {voice!r}",
                           "audio.voice")
    if fmt not in AUDIO_FORMATS:
        raise RequestError(f"'audio.format' must be one of {', '.join(AUDIO_FORMATS)}, got {fmt!r}", "audio.format")
    return voice, fmt


def _stops(body: dict[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,)
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop) and len(stop) <= MAX_STOP_SEQUENCES:
        return tuple(stop)
    raise RequestError(f"'stop' must be a string or a list of up to {MAX_STOP_SEQUENCES} strings", "stop")


def parse_chat_request(body: Any, default_max_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                       modalities: Modalities | None = None, voices: tuple[str, ...] = ()) -> ChatRequest:
    """Validate an OpenAI chat-completions request body.

    Reads ``messages``, ``max_completion_tokens`` / ``max_tokens``, ``temperature`` (default 0:
    greedy), ``top_p``, ``stream``, ``stream_options.include_usage``, ``stop`` and ``seed``;
    ``model`` may name anything (the server has one model). Other fields are ignored, except those
    asking for what this server cannot do (``n`` > 1, ``tools``, ``functions``), which are refused.
    When ``modalities`` has media, user messages may hold image_url / input_audio parts (data only),
    decoded here: a bad one is refused naming ``messages[i].content[j]``. ``modalities: ["text",
    "audio"]`` with ``audio: {"voice", "format"}`` asks for the reply spoken too (``voices``: the
    names the server can speak with).

    Raises:
        RequestError: the body names the problem and the field.
    """
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object with 'messages'")
    if body.get("model") is not None and not isinstance(body["model"], str):
        raise RequestError("'model' must be a string", "model")
    media = _Media(modalities or Modalities(), [], [])
    messages = _request_messages(body.get("messages"), media)
    _refuse_unsupported(body)
    max_tokens = _max_tokens(body, default_max_tokens)
    temperature = _number(body, "temperature", 0.0, 2.0) or 0.0
    top_p = _number(body, "top_p", 0.0, 1.0)
    stream, include_usage = _stream_flags(body)
    stops = _stops(body)
    voice, audio_format = _audio_output(body, voices)
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError(f"'seed' must be an integer, got {seed!r}", "seed")
    return ChatRequest(messages=messages, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                       stream=stream, include_usage=include_usage, stop=stops, seed=seed,
                       images=tuple(media.images), audios=tuple(media.audios), voice=voice,
                       audio_format=audio_format)
