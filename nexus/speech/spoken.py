"""Speaking a reply while it is written: text chunks in, text and sentence audio out.

Each sentence that completes in the streamed text goes to the voice on one worker thread, so text
keeps flowing while the sentence is synthesized; its audio is handed on, in sentence order, as soon
as it is ready (checked after every text chunk) and at the end. Used by ``nexus serve`` for
``modalities: ["text", "audio"]`` requests and by the tri_streaming capability's evaluation, which
records what this measures: time to the first text chunk and to the first audio chunk, and the
audio's real-time factor (seconds of synthesis per second of speech).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from nexus.speech.audio import split_sentences


@dataclass(frozen=True)
class SpokenSentence:
    """One sentence of the reply and its audio (float32 mono at ``sample_rate``)."""

    text: str
    samples: Any
    sample_rate: int
    synth_s: float

    @property
    def seconds(self) -> float:
        """Length of the audio in seconds."""
        return len(self.samples) / self.sample_rate


class SpokenStream:
    """Iterate to get ``("text", str)`` and ``("audio", SpokenSentence)`` events, in the order a
    listener needs them: text as it comes, each sentence's audio once synthesized.

    Args:
        chunks: the reply's text chunks (a :class:`~nexus.generation.stream.ChatStream`, or any iterable).
        voice: a :class:`nexus.speech.voices.Synthesizer` (``synthesize(text)``, ``sample_rate``).
        clock: the timer the metrics use (seconds).
    """

    def __init__(self, chunks: Iterable[str], voice: Any, clock: Any = time.perf_counter) -> None:
        self.chunks = chunks
        self.voice = voice
        self.clock = clock
        self.started = clock()
        self.first_text_s: float | None = None
        self.first_audio_s: float | None = None
        self.sentences: list[SpokenSentence] = []

    def _speak(self, sentence: str) -> SpokenSentence | None:
        """The sentence spoken, or None when it holds nothing to say (only symbols, say)."""
        from nexus.speech.voices import SpeechError

        start = self.clock()
        try:
            samples = self.voice.synthesize(sentence)
        except SpeechError:
            return None
        if not len(samples):
            return None
        return SpokenSentence(sentence, samples, self.voice.sample_rate, self.clock() - start)

    def _ready(self, pending: deque[Future], wait: bool) -> Iterator[tuple[str, Any]]:
        while pending and (wait or pending[0].done()):
            spoken = pending.popleft().result()
            if spoken is None:
                continue
            if self.first_audio_s is None:
                self.first_audio_s = self.clock() - self.started
            self.sentences.append(spoken)
            yield "audio", spoken

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        buffer = ""
        pending: deque[Future] = deque()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nexus-voice") as worker:
            for chunk in self.chunks:
                if not chunk:
                    continue
                if self.first_text_s is None:
                    self.first_text_s = self.clock() - self.started
                yield "text", chunk
                buffer += chunk
                parts = split_sentences(buffer)
                if len(parts) > 1:  # all but the last are complete; the last may still grow
                    pending.extend(worker.submit(self._speak, s) for s in parts[:-1])
                    buffer = buffer[buffer.rfind(parts[-1]):]  # the open sentence, its trailing space kept
                yield from self._ready(pending, wait=False)
            if buffer.strip():
                pending.append(worker.submit(self._speak, buffer.strip()))
            yield from self._ready(pending, wait=True)

    def metrics(self) -> dict[str, float]:
        """``first_text_s``, ``first_audio_s`` (seconds from the start; -1 when none came),
        ``audio_s`` (seconds of speech) and ``rtf`` (synthesis seconds per second of speech)."""
        audio_s = sum(s.seconds for s in self.sentences)
        synth_s = sum(s.synth_s for s in self.sentences)
        return {"first_text_s": -1.0 if self.first_text_s is None else round(self.first_text_s, 4),
                "first_audio_s": -1.0 if self.first_audio_s is None else round(self.first_audio_s, 4),
                "audio_s": round(audio_s, 3), "rtf": round(synth_s / audio_s, 4) if audio_s else 0.0}
