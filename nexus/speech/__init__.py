"""Speech out and back in: the offline voices (:mod:`nexus.speech.voices`), audio plumbing
(:mod:`nexus.speech.audio`), the Whisper read-back and word error rate (:mod:`nexus.speech.transcribe`)
and speaking a streamed reply sentence by sentence (:mod:`nexus.speech.spoken`).

Importing this package loads numpy only: onnxruntime loads with a voice, torch and transformers with a
:class:`~nexus.speech.transcribe.Transcriber`.
"""

from nexus.speech.audio import join, read_wav_bytes, resample, split_sentences, to_wav_bytes, write_mp3, write_wav
from nexus.speech.transcribe import Transcriber, normalize_text, word_error_rate
from nexus.speech.voices import VOICES, SpeechError, Synthesizer, load_voice

__all__ = [
    "VOICES", "SpeechError", "Synthesizer", "Transcriber", "join", "load_voice", "normalize_text", "read_wav_bytes",
    "resample", "split_sentences", "to_wav_bytes", "word_error_rate", "write_mp3", "write_wav",
]
