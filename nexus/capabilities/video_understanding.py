"""video_understanding: answer questions about video clips.

Trains the composite model (frames sampled from the clip through the vision encoder and projector,
see :mod:`nexus.multimodal`) to say what a clip shows, and scores exact-sequence accuracy on a
held-out split (greedy generation).

Accepted formats (detected by the organizer, see :mod:`nexus.formats`):

- ``mllm_video`` (LLaMA-Factory/ms-swift): ``{"messages": [{"role": "user", "content": "<video>Which
  digits appear, in order? Answer with the digits separated by spaces."}, {"role": "assistant",
  "content": "3 8 1"}], "videos": ["clips/c000.mp4"]}``; typed ``{"type": "video"}`` parts read the same.

Examples follow the multimodal contract (:func:`nexus.capabilities.vision_qa.media_example`): one
``<video>`` placeholder per clip, ``videos`` with the record's own paths, ``reference`` the reply.

Scoring, for a reference that is a sequence of digits (``"3 8 1"``): ``accuracy`` is 1 when the
digits of the answer, in order, are exactly the reference's (``"3 8 1"``, ``"3, 8, 1"`` and
``"381"`` all count; a missing or extra digit does not); ``digit_accuracy`` is the share of the
reference's positions the answer gets right. A free-form reference (LLaMA-Factory's video demo:
"She is cooking.") is matched as normalized text and, having no single right answer, is only
trained on (:func:`held_out`).
"""

from __future__ import annotations

import re
from typing import Any

from nexus.capabilities import Example
from nexus.capabilities.vision_qa import media_example, normalized

METRIC = "accuracy"
_DIGITS = re.compile(r"\s*\d(?:[\s,]+\d)*\s*\.?\s*")


def digit_sequence(reference: str) -> list[str] | None:
    """The digits of a reference such as ``"3 8 1"``, or None when it is not a digit sequence."""
    return re.findall(r"\d", reference) if _DIGITS.fullmatch(reference) else None


def format_video(record: dict[str, Any]) -> Example:
    """``mllm_video`` record -> a video question example (see the module docstring)."""
    return media_example(record, ("video",), "video_understanding")


FORMATTERS = {"mllm_video": format_video}


def held_out(example: Example) -> bool | None:
    """Free-form answers are trained on, never held out; digit sequences follow the seeded shuffle
    (:func:`nexus.examples.split_held_out`)."""
    return None if digit_sequence(example["reference"]) else False


def score(generated: str, example: Example) -> dict[str, float]:
    """``accuracy``: the answer's digits are exactly the reference sequence; ``digit_accuracy``: the
    share of positions right (digit-sequence references only)."""
    expected = digit_sequence(example["reference"])
    if expected is None:
        return {METRIC: float(normalized(generated) == normalized(example["reference"]))}
    got = re.findall(r"\d", generated)
    right = sum(1 for i, digit in enumerate(expected) if i < len(got) and got[i] == digit)
    return {METRIC: float(got == expected), "digit_accuracy": right / len(expected)}
