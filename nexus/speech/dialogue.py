"""Several voices taking turns: each line spoken by its voice, all at one sample rate, then joined.

The podcast's renderer (``nexus podcast``, the podcast evaluator's round trip). Voices may speak at
different rates (hibari's ``heart`` at 24 kHz, Piper's ``joe`` at 22.05 kHz): every turn is resampled to
the highest rate among the voices used, so the turns can be written side by side and joined.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nexus.speech.audio import join, resample
from nexus.speech.voices import load_voice

TURN_GAP_S = 0.35  # silence between two turns of the joined audio


@dataclass(frozen=True)
class Dialogue:
    """The rendered turns: ``turns[i]`` is line i's float32 mono audio at ``sample_rate``."""

    turns: list[np.ndarray]
    sample_rate: int

    def joined(self, gap_s: float = TURN_GAP_S) -> np.ndarray:
        """All turns back to back with ``gap_s`` seconds of silence between them."""
        return join(self.turns, self.sample_rate, gap_s=gap_s)


def render_dialogue(lines: Sequence[tuple[str, str]]) -> Dialogue:
    """Speak each ``(voice, text)`` line with its voice (:func:`nexus.speech.voices.load_voice`).

    Raises:
        SpeechError: an unknown voice, a missing voice wheel, or a line that renders no speech (the
            message names the voice and the text).
    """
    voices = {name: load_voice(name) for name in dict.fromkeys(name for name, _ in lines)}
    rate = max((v.sample_rate for v in voices.values()), default=24000)
    turns = [resample(voices[name].synthesize(text), voices[name].sample_rate, rate) for name, text in lines]
    return Dialogue(turns, rate)
