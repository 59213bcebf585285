"""omni: turn a text model into one that sees and hears.

Trains the composite model (vision and audio encoders joined to the language model by projectors,
see :mod:`nexus.multimodal`) on image captions and audio transcriptions, and scores exact-answer
accuracy on a held-out split (greedy generation), for images and audio apart.

Accepted formats (detected by the organizer, see :mod:`nexus.formats`):

- ``mllm_image`` (LLaMA-Factory/TRL): ``{"messages": [{"role": "user", "content": "<image>Which
  digit is shown?"}, {"role": "assistant", "content": "7"}], "images": ["digits/d0007.png"]}``
- ``mllm_audio`` (LLaMA-Factory/ms-swift): ``{"messages": [{"role": "user", "content": "<audio>Which
  digit is spoken?"}, {"role": "assistant", "content": "7"}], "audios": ["fsdd/7_jackson_3.wav"],
  "speaker": "jackson"}``; OpenAI ``input_audio`` parts (base64 ``data`` + ``format``) become
  ``data:audio/...`` references.

A record may carry images and audio together. Examples follow the multimodal contract (see
:func:`nexus.capabilities.vision_qa.media_example`); a record's ``speaker`` becomes the example's
``group`` (``speaker:<name>``).

Held-out split (:func:`held_out`): every recording of :data:`HELD_OUT_SPEAKER` is held out and the
other speakers' recordings are always trained on, so ``audio_accuracy`` measures a voice the model
never heard; images are drawn by the seeded shuffle; free-form answers (LLaMA-Factory's audio demo:
"It is the sound of glass shattering.") train the format and are never scored.

Scoring: ``accuracy`` is 1 when the first number of the answer equals the reference's (free-form
references: normalized text equality); ``vision_accuracy`` / ``audio_accuracy`` repeat it on the
examples with images / audio only (the evaluator averages each key over the examples reporting it).
"""

from __future__ import annotations

from typing import Any

from nexus.capabilities import Example
from nexus.capabilities.vision_qa import answer_matches, has_exact_answer, media_example

METRIC = "accuracy"
KINDS = ("image", "audio")
HELD_OUT_SPEAKER = "theo"  # one of the six FSDD speakers; all of his recordings are eval-only
SPEAKER_GROUP = "speaker:"


def speaker_grouped(example: Example, record: dict[str, Any]) -> Example:
    """``example`` with ``group: speaker:<name>`` when the record names its speaker (FSDD recordings)."""
    speaker = record.get("speaker")
    if isinstance(speaker, str) and speaker.strip():
        return {**example, "group": f"{SPEAKER_GROUP}{speaker.strip()}"}  # type: ignore[typeddict-unknown-key]
    return example


def format_image(record: dict[str, Any]) -> Example:
    """``mllm_image`` record -> an image example (audio in the same record is kept too)."""
    return speaker_grouped(media_example(record, KINDS, "omni"), record)


def format_audio(record: dict[str, Any]) -> Example:
    """``mllm_audio`` record -> an audio example, grouped by its ``speaker`` when it names one."""
    return speaker_grouped(media_example(record, KINDS, "omni"), record)


FORMATTERS = {"mllm_image": format_image, "mllm_audio": format_audio}


def held_out(example: Example) -> bool | None:
    """True for :data:`HELD_OUT_SPEAKER`'s recordings, False for the other speakers' and for free-form
    answers, None (the seeded shuffle decides) for the rest (:func:`nexus.examples.split_held_out`)."""
    if not has_exact_answer(example):
        return False
    group = str(example.get("group", ""))
    if group.startswith(SPEAKER_GROUP):
        return group == f"{SPEAKER_GROUP}{HELD_OUT_SPEAKER}"
    return None


def score(generated: str, example: Example) -> dict[str, float]:
    """``accuracy`` (first number equals the reference's), and the same as ``vision_accuracy`` and/or
    ``audio_accuracy`` on examples carrying images and/or audio."""
    hit = float(answer_matches(generated, example["reference"]))
    scores = {METRIC: hit}
    if example.get("images"):
        scores["vision_accuracy"] = hit
    if example.get("audios"):
        scores["audio_accuracy"] = hit
    return scores
