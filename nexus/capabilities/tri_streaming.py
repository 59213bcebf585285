"""tri_streaming: images and speech in, text and speech out, while the reply is being written.

Trains the composite (omni's output: vision and audio encoders joined to the language model) on
mixed conversations: a digit image, a spoken digit, both at once ("is the written digit the one
spoken?"), and short text chats. Evaluation streams each held-out conversation the way ``nexus
serve`` answers a ``modalities: ["text", "audio"]`` request: the reply's text streams from
:func:`nexus.generation.stream.stream_chat` and each finished sentence is spoken by the first of
``voices`` on a worker thread (:class:`nexus.speech.spoken.SpokenStream`), so what is measured is
what a listener gets.

Accepted formats (detected by the organizer, see :mod:`nexus.formats`):

- ``mllm_image`` / ``mllm_audio`` (LLaMA-Factory/TRL, OpenAI ``image_url`` / ``input_audio`` parts):
  ``{"messages": [{"role": "user", "content": "<image><audio>Is the written digit the same as the
  spoken one? ..."}, {"role": "assistant", "content": "No. The image shows 3 and the voice says 5."}],
  "images": ["digits/d0607.png"], "audios": ["fsdd/5_george_6.wav"], "speaker": "george"}``
- ``messages`` / ``sharegpt``: text chats (the reply streams as text and speech). No alpaca formatter:
  the 999 long-answer alpaca demos would outweigh the short spoken replies (``text_chats.json`` holds
  60 of them with short answers, as messages).

Held-out split (:func:`held_out`): every recording of omni's held-out speaker (theo) is held out,
the other speakers' are always trained on; images and chats are drawn by the seeded shuffle.

Scoring: ``accuracy`` over the media questions (the first number for one image or one recording;
yes/no and every number in order for an image with a recording), repeated per kind as
``image_accuracy``, ``audio_accuracy``, ``both_accuracy``; ``streamed`` (more than one text chunk);
and the measurements ``ttft_s`` (seconds to the first text chunk), ``first_audio_s`` (seconds to the
first spoken sentence), ``tokens_per_s`` and ``rtf`` (seconds of synthesis per second of speech).
"""

from __future__ import annotations

import re
from typing import Any

from nexus.capabilities import Example
from nexus.capabilities._records import formatter
from nexus.capabilities.omni import HELD_OUT_SPEAKER, SPEAKER_GROUP, speaker_grouped
from nexus.capabilities.streaming import chat_example
from nexus.capabilities.vision_qa import answer_matches, media_example
from nexus.conversations import chat_messages

METRIC = "accuracy"
KINDS = ("image", "audio")
MEASURED = ("ttft_s", "first_audio_s", "tokens_per_s", "rtf")
_NUMBERS = re.compile(r"\d+")
_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def _kind(example: dict[str, Any]) -> str:
    images, audios = bool(example.get("images")), bool(example.get("audios"))
    return "both" if images and audios else "image" if images else "audio" if audios else "text"


def format_media(record: dict[str, Any]) -> Example:
    """An image and/or audio conversation -> a media example (grouped by its ``speaker``)."""
    example = speaker_grouped(media_example(record, KINDS, "tri_streaming"), record)
    return {**example, "kind": _kind(example)}  # type: ignore[typeddict-unknown-key]


@formatter
def format_chat(record: dict[str, Any]) -> Example:
    """A chat (``messages``, ShareGPT ``conversations``) -> a text example, or a media example when the
    record lists images or audio (a file mixing both kinds is detected as plain ``messages``)."""
    if record.get("images") or record.get("audios"):
        return format_media(record)
    return {**chat_example(chat_messages(record)), "kind": "text"}  # type: ignore[typeddict-unknown-key]


FORMATTERS = {"mllm_image": format_media, "mllm_audio": format_media, "messages": format_chat,
              "sharegpt": format_chat}


def held_out(example: Example) -> bool | None:
    """True for the held-out speaker's recordings, False for the other speakers', None (the seeded
    shuffle decides) for images alone and chats (:func:`nexus.examples.split_held_out`)."""
    group = str(example.get("group", ""))
    if group.startswith(SPEAKER_GROUP):
        return group == f"{SPEAKER_GROUP}{HELD_OUT_SPEAKER}"
    return None


def generate(model: Any, tokenizer: Any, examples: list[Example], max_new_tokens: int,
             voices: list[str]) -> list[str]:
    """Stream each example's reply as text and speech (the first of ``voices``), one at a time.

    A one-token warm-up runs first, so start-up costs do not land on the first measurement.

    Returns:
        :class:`nexus.generation.stream.StreamedText` replies whose ``metrics`` hold the stream's
        measurements (``ttft_s``, ``tokens_per_s``, ``chunks``, ...) and the speech's
        (``first_audio_s``, ``audio_s``, ``rtf``).
    """
    from nexus.generation.stream import StreamedText, stream_chat
    from nexus.multimodal.collate import load_media
    from nexus.speech.spoken import SpokenStream
    from nexus.speech.voices import load_voice

    voice = load_voice(voices[0])
    model.eval()
    replies = []
    for number, example in enumerate(examples):
        media = load_media(example, tokenizer)
        if number == 0:  # warm-up: one token, not measured
            with stream_chat(model, tokenizer, example["prompt"], 1, images=media["images"],
                             audios=media["audios"]) as stream:
                "".join(stream)
        with stream_chat(model, tokenizer, example["prompt"], max_new_tokens, images=media["images"],
                         audios=media["audios"]) as stream:
            spoken = SpokenStream(stream, voice)
            text = "".join(value for kind, value in spoken if kind == "text")
            metrics = stream.metrics()
        replies.append(StreamedText(text, {**metrics, **spoken.metrics()}))
    return replies


def _both_matches(generated: str, reference: str) -> bool:
    """Yes/no first, then the same numbers in the same order as the reference."""
    said, expected = _YES_NO.search(generated), _YES_NO.search(reference)
    same_answer = bool(said and expected and said.group(1).lower() == expected.group(1).lower())
    return same_answer and _NUMBERS.findall(generated)[:2] == _NUMBERS.findall(reference)[:2]


def score(generated: str, example: Example) -> dict[str, float]:
    """``accuracy`` and ``<kind>_accuracy`` on media questions, ``streamed`` on every reply, and the
    stream's measurements when ``generated`` carries them (see the module docstring)."""
    kind = str(example.get("kind") or _kind(example))
    metrics = getattr(generated, "metrics", None) or {}
    scores = {"streamed": float(metrics.get("chunks", 0) > 1 and bool(str(generated).strip()))}
    if kind != "text":
        hit = _both_matches(generated, example["reference"]) if kind == "both" else \
            answer_matches(generated, example["reference"])
        scores[METRIC] = scores[f"{kind}_accuracy"] = float(hit)
    for key in MEASURED:
        value = metrics.get(key)
        if isinstance(value, (int, float)) and value >= 0:
            scores[key] = float(value)
    return scores
