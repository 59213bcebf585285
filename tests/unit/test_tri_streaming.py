"""tri_streaming's formatters, split and scores on its real samples, and the spoken stream it measures with."""

from __future__ import annotations

import json
import time

import pytest

from nexus.capabilities import tri_streaming
from nexus.generation.stream import StreamedText
from tests.project import ROOT

SAMPLES = ROOT / "data" / "samples" / "tri_streaming"


def _records(name: str) -> list[dict]:
    return json.loads((SAMPLES / name).read_text())


def test_the_samples_format_into_four_kinds_with_speakers_grouped() -> None:
    examples = [tri_streaming.format_media(r) for r in _records("conversations.json")]
    examples += [tri_streaming.format_chat(r) for r in _records("text_chats.json")]
    kinds = {k: sum(1 for e in examples if e["kind"] == k) for k in ("image", "audio", "both", "text")}
    assert kinds == {"image": 100, "audio": 180, "both": 180, "text": 60}
    both = next(e for e in examples if e["kind"] == "both")
    assert both["prompt"][-1]["content"].startswith("<image><audio>")
    assert len(both["images"]) == len(both["audios"]) == 1
    theo = [e for e in examples if e.get("group") == "speaker:theo"]
    assert len(theo) == 60 and all(tri_streaming.held_out(e) for e in theo)  # 30 alone + 30 paired, all held out
    others = [e for e in examples if str(e.get("group", "")).startswith("speaker:") and e not in theo]
    assert others and not any(tri_streaming.held_out(e) for e in others)
    assert tri_streaming.held_out(examples[0]) is None  # an image alone: the seeded shuffle decides


@pytest.mark.parametrize("reply, reference, kind, right", [
    ("It is 7.", "It is 7.", "image", 1.0),
    ("It is 1.", "It is 7.", "audio", 0.0),
    ("No. The image shows 3 and the voice says 5.", "No. The image shows 3 and the voice says 5.", "both", 1.0),
    ("Yes. Both are 5.", "No. The image shows 3 and the voice says 5.", "both", 0.0),
    ("No. The image shows 5 and the voice says 3.", "No. The image shows 3 and the voice says 5.", "both", 0.0),
])
def test_scores_per_kind(reply, reference, kind, right) -> None:
    scores = tri_streaming.score(reply, {"reference": reference, "kind": kind})
    assert scores["accuracy"] == scores[f"{kind}_accuracy"] == right
    assert scores["streamed"] == 0.0  # a plain string carries no stream measurements


def test_a_measured_reply_reports_the_stream_and_the_speech() -> None:
    reply = StreamedText("Paris is the capital.", {"chunks": 5, "ttft_s": 0.2, "tokens_per_s": 30.0,
                                                   "first_audio_s": 0.9, "rtf": 0.1, "audio_s": 1.4})
    scores = tri_streaming.score(reply, {"reference": "Paris.", "kind": "text"})
    assert scores == {"streamed": 1.0, "ttft_s": 0.2, "first_audio_s": 0.9, "tokens_per_s": 30.0, "rtf": 0.1}


class SlowVoice:
    """A stand-in voice with a real delay (the real voices are tested in test_speech): each sentence
    takes 0.2 s to 'synthesize' and yields 0.5 s of silence at 8 kHz."""

    sample_rate = 8000

    def __init__(self) -> None:
        self.spoken: list[str] = []

    def synthesize(self, text: str):
        import numpy

        time.sleep(0.2)
        self.spoken.append(text)
        return numpy.zeros(4000, dtype=numpy.float32)


@pytest.mark.parametrize("pieces", [
    ["Hello", " there.", " How are", " you? I", " am fine", "."],  # spaces before words
    ["Hello ", "there. ", "How ", "are ", "you? ", "I ", "am ", "fine."],  # after them, as TextIteratorStreamer
])
def test_spoken_stream_speaks_each_sentence_while_text_keeps_coming(pieces: list[str]) -> None:
    from nexus.speech.spoken import SpokenStream

    def chunks():
        for piece in pieces:
            time.sleep(0.15)
            yield piece

    voice = SlowVoice()
    spoken = SpokenStream(chunks(), voice)
    events = list(spoken)
    text = "".join(v for k, v in events if k == "text")
    assert text == "Hello there. How are you? I am fine."
    assert voice.spoken == ["Hello there.", "How are you?", "I am fine."]
    kinds = [k for k, _ in events]
    assert kinds.index("audio") < len(kinds) - 3  # the first sentence's audio arrived before the text ended
    metrics = spoken.metrics()
    assert 0 < metrics["first_text_s"] < metrics["first_audio_s"] and metrics["audio_s"] == 1.5
    assert metrics["rtf"] == pytest.approx(0.4, abs=0.1)
