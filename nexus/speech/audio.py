"""Audio plumbing for the voices: sentences, WAV bytes, resampling, joining clips, writing files.

Torch-free and numpy-only (``wave`` from the standard library for WAV; ``ffmpeg`` only for MP3, and only
when it is on PATH). Samples are float32 mono in [-1, 1] everywhere; WAV files are 16-bit PCM.
Files are written whole or not at all: a temporary sibling (``.<name>.<random>.tmp``), then
``os.replace``.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nexus.atomic import as_created

# A sentence ends at . ! ? or … (closing quotes/brackets may follow), then whitespace, then more text.
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+(?=\S)")
# A period after these does not end a sentence ("Dr. Smith", "e.g. this").
_ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "etc", "e.g", "i.e", "fig", "approx", "inc",
    "ltd", "corp", "dept", "gov", "lt", "col", "sgt", "capt", "rev", "jan", "feb", "apr", "jun", "jul", "aug",
    "sep", "sept", "oct", "nov", "dec",
})


def _ends_sentence(text: str, end: int, after: str) -> bool:
    """False for a period after an abbreviation or a single initial, or before a lowercase word."""
    if after[:1].islower():
        return False
    if text[end - 1] != ".":
        return True
    word = text[text.rfind(" ", 0, end) + 1:end - 1].lstrip("(\"'“‘")
    return not (word.lower() in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()))


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, stripped, in order, empty ones dropped.

    A line break ends a sentence; so do ``.``, ``!``, ``?`` and ``…`` (with any closing quotes or
    brackets) followed by whitespace and a word that is not lowercase, except a period after a known
    abbreviation (``Dr.``, ``e.g.``) or a single initial (``J. Smith``). Text after the last end mark
    is the last sentence, so a streaming caller can treat every part but the last as complete: a
    split is only made once the next sentence has begun, and later text never moves it.
    """
    sentences: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        cut = 0
        for match in _SENTENCE_END.finditer(line):
            if _ends_sentence(line, match.start(), line[match.end():match.end() + 1]):
                sentences.append(line[cut:match.end()].strip())
                cut = match.end()
        sentences.append(line[cut:].strip())
    return [s for s in sentences if s]


def _as_mono(samples: np.ndarray | Sequence[float]) -> np.ndarray:
    data = np.asarray(samples, dtype=np.float32)
    if data.ndim != 1:
        raise ValueError(f"expected mono samples (one dimension), got an array of shape {data.shape}")
    return data


def to_pcm16_bytes(samples: np.ndarray | Sequence[float]) -> bytes:
    """Raw little-endian signed 16-bit mono samples (float input clipped to [-1, 1]), no header."""
    return (np.clip(_as_mono(samples), -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def to_wav_bytes(samples: np.ndarray | Sequence[float], sample_rate: int) -> bytes:
    """A whole 16-bit PCM mono WAV file holding ``samples`` (float, clipped to [-1, 1])."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(int(sample_rate))
        out.writeframes(to_pcm16_bytes(samples))
    return buffer.getvalue()


def read_wav_bytes(data: bytes) -> tuple[np.ndarray, int]:
    """``(samples, sample_rate)`` of a PCM WAV file's bytes: float32 mono in [-1, 1] (channels averaged).

    Raises:
        ValueError: the bytes are not a PCM WAV file (8, 16, 24 or 32-bit integer samples).
    """
    try:
        with wave.open(io.BytesIO(data), "rb") as src:
            channels, width, rate = src.getnchannels(), src.getsampwidth(), src.getframerate()
            frames = src.readframes(src.getnframes())
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"not a PCM WAV file ({exc})") from None
    if width == 1:
        values = (np.frombuffer(frames, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        values = np.frombuffer(frames, "<i2").astype(np.float32) / 32768.0
    elif width == 3:
        raw = np.frombuffer(frames, np.uint8).reshape(-1, 3).astype(np.int32)
        ints = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
        values = (np.where(ints >= 1 << 23, ints - (1 << 24), ints)).astype(np.float32) / float(1 << 23)
    elif width == 4:
        values = (np.frombuffer(frames, "<i4").astype(np.float64) / float(1 << 31)).astype(np.float32)
    else:
        raise ValueError(f"not a PCM WAV file: {width * 8}-bit samples are not supported")
    if channels > 1:
        values = values[: len(values) - len(values) % channels].reshape(-1, channels).mean(axis=1)
    return values.astype(np.float32), rate


def resample(samples: np.ndarray | Sequence[float], from_rate: int, to_rate: int) -> np.ndarray:
    """``samples`` at ``to_rate``: band-limited (FFT) resampling, ``round(n * to_rate / from_rate)`` samples.

    The spectrum is cut (or zero-padded) at the lower Nyquist frequency, so downsampling does not
    alias. The FFT treats the clip as periodic: the first and last few milliseconds can leak into each
    other, which is inaudible for speech that starts and ends near silence.
    """
    data = _as_mono(samples)
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
    if from_rate == to_rate or not len(data):
        return data.copy()
    n = len(data)
    m = max(1, round(n * to_rate / from_rate))
    spectrum = np.fft.rfft(data.astype(np.float64))
    keep = min(len(spectrum), m // 2 + 1)
    out_spectrum = np.zeros(m // 2 + 1, dtype=np.complex128)
    out_spectrum[:keep] = spectrum[:keep]
    if keep == m // 2 + 1 and m % 2 == 0 and keep < len(spectrum):
        out_spectrum[-1] = out_spectrum[-1].real  # the new Nyquist bin of an even length is real
    return (np.fft.irfft(out_spectrum, m) * (m / n)).astype(np.float32)


def join(clips: Sequence[np.ndarray], sample_rate: int, gap_s: float = 0.35) -> np.ndarray:
    """The clips one after another with ``gap_s`` seconds of silence between them (none at the ends)."""
    if gap_s < 0:
        raise ValueError(f"gap_s must be >= 0, got {gap_s}")
    parts = [_as_mono(c) for c in clips]
    if not parts:
        return np.zeros(0, np.float32)
    gap = np.zeros(round(gap_s * sample_rate), np.float32)
    out: list[np.ndarray] = []
    for i, part in enumerate(parts):
        if i:
            out.append(gap)
        out.append(part)
    return np.concatenate(out).astype(np.float32)


def _write_bytes_atomic(data: bytes, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        as_created(Path(tmp), False)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_wav(path: str | os.PathLike[str], samples: np.ndarray | Sequence[float], sample_rate: int) -> Path:
    """Write a 16-bit PCM mono WAV atomically (temporary sibling, then rename); returns the path."""
    out = Path(path)
    _write_bytes_atomic(to_wav_bytes(samples, sample_rate), out)
    return out


def write_mp3(path: str | os.PathLike[str], samples: np.ndarray | Sequence[float], sample_rate: int) -> bool:
    """Write an MP3 with ``ffmpeg`` (libmp3lame, VBR quality 4) atomically.

    Returns:
        True when written; False when ``ffmpeg`` is not on PATH (nothing is written).

    Raises:
        RuntimeError: ffmpeg is there but failed (its last error line is in the message).
    """
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return False
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        result = subprocess.run(
            [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "wav", "-i", "pipe:0",
             "-codec:a", "libmp3lame", "-q:a", "4", "-f", "mp3", tmp],
            input=to_wav_bytes(samples, sample_rate), capture_output=True, check=False, timeout=600)
        if result.returncode != 0:
            lines = result.stderr.decode("utf-8", "replace").strip().splitlines()
            raise RuntimeError(f"ffmpeg could not write {out} (exit {result.returncode}): "
                               f"{lines[-1] if lines else 'no message'}")
        as_created(Path(tmp), False)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True
