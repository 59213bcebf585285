"""vision_qa: answer questions about images.

Trains the composite model (a vision encoder joined to the language model by a projector, see
:mod:`nexus.multimodal`) to answer a question about an image, and scores exact-answer accuracy on a
held-out split (greedy generation).

Accepted formats (detected by the organizer, see :mod:`nexus.formats`):

- ``mllm_image`` (LLaMA-Factory/TRL multimodal): ``{"messages": [{"role": "user", "content":
  "<image>What number is written in this image? Answer with one digit."}, {"role": "assistant",
  "content": "3"}], "images": ["digits/d0123.png"]}``; the TRL layout with typed parts
  (``{"type": "image"}`` pointing at ``images``, or ``{"type": "image_url", "image_url": {"url":
  "data:image/png;base64,..."}}`` carrying its own source) reads the same.

Examples (the multimodal contract): the conversation up to its last assistant reply as the prompt,
one ``<image>`` placeholder in the user text per image, in order; ``images`` lists the record's own
paths (:mod:`nexus.examples` makes them relative to the project root); ``reference`` is the reply.

Scoring: ``accuracy`` is 1 when the first number in the generated answer equals the reference's
number (the digit questions of ``data/samples/vision_qa``); a reference without a number (a free-form
answer, e.g. LLaMA-Factory's photo QA demo) is matched as normalized text. Such free-form examples
have no single right answer, so :func:`held_out` keeps them on the training side: they train the
format and are never scored.

This module also holds the record-to-example conversion (:func:`media_example`) and the answer
matching (:func:`answer_matches`) that omni and video_understanding share.
"""

from __future__ import annotations

import re
from typing import Any

from nexus.capabilities import Example, SkipRecord
from nexus.capabilities._records import formatter
from nexus.conversations import json_value, record_turns, split_conversation, with_system

METRIC = "accuracy"
PLACEHOLDERS = {"image": "<image>", "audio": "<audio>", "video": "<video>"}
"""Media kind -> the placeholder marking its place in the user text (LLaMA-Factory convention)."""
LIST_KEYS = {"image": "images", "audio": "audios", "video": "videos"}
"""Media kind -> the record (and example) key listing its files, in placeholder order."""
_NUMBER = re.compile(r"\d+")
_PUNCT = re.compile(r"[^\w\s]")


def _listed(record: dict[str, Any], kind: str) -> list[str]:
    """The record's ``images``/``audios``/``videos`` entries as references (a datasets feature
    ``{"path": ...}`` without bytes stands for its path)."""
    value = json_value(record.get(LIST_KEYS[kind]))
    items = value if isinstance(value, list) else [value] if value else []
    refs = []
    for number, item in enumerate(items, 1):
        if isinstance(item, dict):  # a datasets Image/Audio feature: embedded bytes win over its path
            item = _bytes_url(item["bytes"], kind) if isinstance(item.get("bytes"), bytes) and item["bytes"] \
                else item.get("path")
        if not isinstance(item, str) or not item.strip():
            raise SkipRecord(f"{kind} {number} of {LIST_KEYS[kind]} is not a file path or data URL")
        refs.append(item)
    return refs


_MAGIC = ((b"\x89PNG", "image/png"), (b"\xff\xd8", "image/jpeg"), (b"GIF8", "image/gif"), (b"RIFF", "audio/wav"),
          (b"fLaC", "audio/flac"), (b"ID3", "audio/mpeg"))


def _bytes_url(data: bytes, kind: str) -> str:
    """Embedded media bytes as a ``data:`` URL (the type from its magic bytes)."""
    import base64

    mime = next((m for magic, m in _MAGIC if data.startswith(magic)), f"{kind}/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _as_reference(source: Any) -> Any:
    """A media part's source as a reference: OpenAI ``input_audio`` ``{"data": base64, "format":
    "wav"}`` becomes a ``data:audio/<format>;base64,`` URL; anything else unchanged."""
    if isinstance(source, dict) and isinstance(source.get("data"), str):
        return f"data:audio/{source.get('format') or 'wav'};base64,{source['data']}"
    return source


def _text_with_placeholders(content: Any, inline: dict[str, list[str]]) -> str:
    """A turn's canonical content as text: media parts become placeholders (their own sources, when
    given, collected in ``inline``; a part without one points at the record's list)."""
    if isinstance(content, str):
        return content
    pieces = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            pieces.append(part["text"])
        elif kind in PLACEHOLDERS:
            pieces.append(PLACEHOLDERS[kind])
            source = _as_reference(part.get("source"))
            if source is None:
                continue
            if isinstance(source, str) and source.strip():
                inline[kind].append(source)
            else:
                raise SkipRecord(f"an {kind} part's source is not a file path or data URL")
        else:
            raise SkipRecord(f"content part of type '{kind}' is neither text nor image, audio or video")
    return "".join(pieces)


@formatter
def media_example(record: dict[str, Any], kinds: tuple[str, ...], capability: str) -> Example:
    """A multimodal chat record (LLaMA-Factory ``<image>``-style text with ``images``/``audios``/
    ``videos`` lists, or typed media parts) -> a contract example for media of ``kinds``.

    Raises:
        SkipRecord: a tool turn, no assistant reply, a placeholder in the reply, placeholders that do
            not match the listed media in number, both inline and listed media of one kind, or media
            of a kind ``capability`` does not take.
    """
    inline: dict[str, list[str]] = {kind: [] for kind in PLACEHOLDERS}
    messages = []
    for turn in with_system(record, record_turns(record)):
        if turn.role == "tool" or turn.calls:
            raise SkipRecord("tool calls or results: the tools capability takes these conversations")
        messages.append({"role": turn.role, "content": _text_with_placeholders(turn.content, inline)})
    prompt, reply = split_conversation(messages)
    example: dict[str, Any] = {"prompt": prompt, "completion": [{"role": "assistant", "content": reply}],
                               "reference": reply.strip()}
    for kind, placeholder in PLACEHOLDERS.items():
        if placeholder in reply:
            raise SkipRecord(f"the assistant reply holds an {placeholder} placeholder")
        listed = _listed(record, kind)
        if listed and inline[kind]:
            raise SkipRecord(f"{kind}s both listed under {LIST_KEYS[kind]} and given inline in the turns")
        refs = inline[kind] or listed
        marks = sum(m["content"].count(placeholder) for m in prompt)
        if (refs or marks) and kind not in kinds:
            raise SkipRecord(f"the record carries {kind}s; {capability} takes only {', '.join(kinds)}")
        if marks != len(refs):
            raise SkipRecord(f"{marks} {placeholder} placeholder(s) in the prompt but {len(refs)} "
                             f"{LIST_KEYS[kind]}; give one placeholder per file, in order")
        if refs:
            example[LIST_KEYS[kind]] = refs
    if not any(key in example for key in LIST_KEYS.values()):
        raise SkipRecord(f"no {' or '.join(kinds)} in the record")
    return example  # type: ignore[return-value]


def first_number(text: str) -> str | None:
    """The first run of digits in ``text`` without leading zeros ("007" -> "7"), or None."""
    found = _NUMBER.search(text)
    return None if found is None else str(int(found.group()))


def normalized(text: str) -> str:
    """``text`` casefolded, punctuation dropped, whitespace collapsed (free-form answers)."""
    return " ".join(_PUNCT.sub(" ", text.casefold()).split())


def answer_matches(generated: str, reference: str) -> bool:
    """The first number of ``generated`` equals the reference's first number; a reference without a
    number is compared as :func:`normalized` text."""
    expected = first_number(reference)
    if expected is None:
        return normalized(generated) == normalized(reference)
    return first_number(generated) == expected


def has_exact_answer(example: Example) -> bool:
    """Whether the example's reference is one number (scorable exactly)."""
    return bool(re.fullmatch(r"\s*\d+\s*\.?\s*", example["reference"]))


def format_image(record: dict[str, Any]) -> Example:
    """``mllm_image`` record -> an image question example (see the module docstring)."""
    return media_example(record, ("image",), "vision_qa")


FORMATTERS = {"mllm_image": format_image}


def held_out(example: Example) -> bool | None:
    """Free-form answers (no single right one) are trained on, never held out; the rest are drawn
    by the seeded shuffle (:func:`nexus.examples.split_held_out`)."""
    return None if has_exact_answer(example) else False


def score(generated: str, example: Example) -> dict[str, float]:
    """``accuracy``: the generated answer's first number equals the reference (see :func:`answer_matches`)."""
    return {METRIC: float(answer_matches(generated, example["reference"]))}
