"""Media loading: images, audio and video clips from a path or a ``data:`` URL.

- :func:`load_image`: an RGB :class:`PIL.Image.Image`.
- :func:`load_audio` / :func:`load_audio_bytes`: float32 mono samples in [-1, 1] at ``sampling_rate``.
  WAV (8/16-bit PCM, mono or stereo) is read with the standard library's :mod:`wave`; every other
  format (mp3, flac, ogg, WAV of other encodings, ...) is decoded with PyAV. Channels are averaged
  and the signal is resampled with an FFT (the method of ``scipy.signal.resample``, numpy only).
  ``load_audio_bytes`` reads the base64-decoded ``data`` of an OpenAI ``input_audio`` part.
- :func:`load_video`: ``num_frames`` RGB frames, evenly spaced (the middle frame of each of
  ``num_frames`` equal segments), decoded with PyAV.

A reference (``ref``) is a file path or a ``data:<mime>;base64,<data>`` URL; http(s) URLs are refused
(nothing is fetched). Every failure raises :class:`MediaError`, one line naming the file. numpy, PIL
and PyAV are imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

import base64
import binascii
import io
import wave
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy
    from PIL import Image

DATA_URL_PREFIX = "data:"
# data:audio/<subtype> -> the format name load_audio_bytes takes
_AUDIO_SUBTYPES = {"mpeg": "mp3", "mp3": "mp3", "x-wav": "wav", "wav": "wav", "wave": "wav", "vnd.wave": "wav",
                   "flac": "flac", "x-flac": "flac", "ogg": "ogg", "webm": "webm", "mp4": "m4a", "x-m4a": "m4a"}
_WAV_FORMATS = ("wav", "wave")


class MediaError(ValueError):
    """A media file or URL that cannot be read; the message (one line) names it and says why."""


def describe(ref: str) -> str:
    """How a reference is named in messages: the path, or a data URL cut to its header and size."""
    if ref.startswith(DATA_URL_PREFIX):
        header = ref.split(",", 1)[0]
        return f"{header},<{max(len(ref) - len(header) - 1, 0)} chars>"
    return ref


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def split_data_url(ref: str) -> tuple[str, bytes]:
    """``data:<mime>;base64,<data>`` -> (mime type, decoded bytes).

    Raises:
        MediaError: not a base64 data URL, or the data is not valid base64.
    """
    header, sep, payload = ref.partition(",")
    if not sep or not header.endswith(";base64"):
        raise MediaError(f"{describe(ref)}: not a base64 data URL (expected data:<type>;base64,<data>)")
    mime = header[len(DATA_URL_PREFIX):-len(";base64")].split(";", 1)[0].strip().lower()
    try:
        return mime, base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as err:
        raise MediaError(f"{describe(ref)}: invalid base64 data ({_one_line(err)})") from err


def _read(ref: str, what: str) -> tuple[str, bytes | Path]:
    """(mime type or "", bytes of a data URL or the path of a file) of ``ref``."""
    if not isinstance(ref, str) or not ref.strip():
        raise MediaError(f"{what} reference {ref!r} is not a file path or data URL")
    if ref.startswith(DATA_URL_PREFIX):
        return split_data_url(ref)
    if ref.startswith(("http://", "https://")):
        raise MediaError(f"{ref}: {what} URLs are not fetched; download the file and give its path")
    path = Path(ref)
    if not path.is_file():
        raise MediaError(f"{ref}: no such {what} file")
    return "", path


# --- images ------------------------------------------------------------------------------------


def load_image(ref: str) -> Image.Image:
    """An image file or ``data:image/...;base64,`` URL as an RGB PIL image (fully decoded).

    Raises:
        MediaError: missing, unreadable or not an image.
    """
    from PIL import Image, UnidentifiedImageError

    _, source = _read(ref, "image")
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            image.load()
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise MediaError(f"{describe(ref)}: cannot read image ({_one_line(err)})") from err


# --- audio -------------------------------------------------------------------------------------


def resample(samples: numpy.ndarray, rate: int, target: int) -> numpy.ndarray:
    """``samples`` (1-D) from ``rate`` to ``target`` Hz by FFT: the spectrum cut or zero-padded to
    the new length (``scipy.signal.resample``'s method); the output has ``round(n * target / rate)``
    samples, float32."""
    import numpy as np

    x = np.asarray(samples, dtype=np.float64)
    n_in = x.shape[0]
    if rate == target or n_in == 0:
        return x.astype(np.float32)
    n_out = max(int(round(n_in * target / rate)), 1)
    spectrum = np.fft.rfft(x)
    kept = np.zeros(n_out // 2 + 1, dtype=spectrum.dtype)
    n = min(n_in, n_out)
    kept[: n // 2 + 1] = spectrum[: n // 2 + 1]
    if n % 2 == 0:  # the Nyquist bin of the shorter length is shared by two bins of the longer one
        kept[n // 2] *= 2.0 if n_out < n_in else 0.5
    return (np.fft.irfft(kept, n_out) * (n_out / n_in)).astype(np.float32)


def _wav_samples(source: bytes | Path) -> tuple[numpy.ndarray, int] | None:
    """(mono float samples, rate) of an 8/16-bit PCM WAV, or None when :mod:`wave` cannot read it
    (another encoding: PyAV decodes those)."""
    import numpy as np

    try:
        with wave.open(io.BytesIO(source) if isinstance(source, bytes) else str(source), "rb") as w:
            width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError):
        return None
    if width == 1:
        data = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        data = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    else:
        return None
    usable = len(data) - len(data) % channels
    return data[:usable].reshape(-1, channels).mean(axis=1), rate


def _av_samples(source: bytes | Path, name: str) -> tuple[numpy.ndarray, int]:
    """(mono float samples, rate) of any audio PyAV decodes (the first audio stream)."""
    import av
    import numpy as np

    chunks: list[Any] = []
    try:
        with av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source)) as container:
            if not container.streams.audio:
                raise MediaError(f"{name}: no audio stream")
            stream = container.streams.audio[0]
            rate = stream.codec_context.sample_rate or stream.rate
            to_float = av.AudioResampler(format="fltp")
            for frame in container.decode(stream):
                chunks.extend(to_float.resample(frame))
            chunks.extend(to_float.resample(None))
    except MediaError:
        raise
    except (av.FFmpegError, OSError, ValueError, IndexError) as err:
        raise MediaError(f"{name}: cannot decode audio ({_one_line(err)})") from err
    if not chunks or not rate:
        raise MediaError(f"{name}: no audio samples decoded")
    data = np.concatenate([c.to_ndarray() for c in chunks], axis=1)  # (channels, samples)
    return data.mean(axis=0), int(rate)


def _audio(source: bytes | Path, fmt: str, name: str, sampling_rate: int,
           max_seconds: float | None) -> numpy.ndarray:
    import numpy as np

    if sampling_rate <= 0:
        raise MediaError(f"{name}: sampling_rate must be positive, got {sampling_rate}")
    read = _wav_samples(source) if fmt in _WAV_FORMATS else None
    samples, rate = read if read is not None else _av_samples(source, name)
    if max_seconds is not None:
        samples = samples[: max(int(max_seconds * rate), 0)]
    if not np.all(np.isfinite(samples)):
        raise MediaError(f"{name}: audio holds NaN or infinite samples")
    return resample(samples, rate, sampling_rate)


def load_audio_bytes(data: bytes, fmt: str, sampling_rate: int = 16000, max_seconds: float | None = None,
                     name: str = "<audio bytes>") -> numpy.ndarray:
    """Encoded audio bytes (e.g. the base64-decoded ``data`` of an OpenAI ``input_audio`` part with
    its ``format``: ``wav``, ``mp3``, ``flac``...) as float32 mono samples at ``sampling_rate``.

    Args:
        data: the encoded file's bytes.
        fmt: its format name (``wav`` is read with :mod:`wave` when it is 8/16-bit PCM; any other
            format, or an empty one, is probed and decoded by PyAV).
        sampling_rate: output rate in Hz.
        max_seconds: keep at most this much audio from the start (None: all).
        name: how the audio is named in errors.

    Raises:
        MediaError: undecodable data, no audio stream, or non-finite samples.
    """
    return _audio(data, (fmt or "").lower().lstrip("."), name, sampling_rate, max_seconds)


def load_audio(ref: str, sampling_rate: int = 16000, max_seconds: float | None = None) -> numpy.ndarray:
    """An audio file or ``data:audio/...;base64,`` URL as float32 mono samples at ``sampling_rate``
    (see :func:`load_audio_bytes`); the format comes from the file suffix or the URL's type.

    Raises:
        MediaError: missing file, undecodable audio, or non-finite samples.
    """
    mime, source = _read(ref, "audio")
    if isinstance(source, bytes):
        subtype = mime.split("/", 1)[-1]
        return _audio(source, _AUDIO_SUBTYPES.get(subtype, subtype), describe(ref), sampling_rate, max_seconds)
    return _audio(source, source.suffix.lower().lstrip("."), ref, sampling_rate, max_seconds)


# --- video -------------------------------------------------------------------------------------


def frame_indices(total: int, num_frames: int) -> list[int]:
    """``num_frames`` indices into ``total`` frames: the middle of each of ``num_frames`` equal
    segments (frames repeat when the clip is shorter than ``num_frames``)."""
    return [min(int((k + 0.5) * total / num_frames), total - 1) for k in range(num_frames)]


def _count_frames(open_video: Any) -> int:
    with open_video() as container:
        stream = container.streams.video[0]
        if stream.frames:
            return int(stream.frames)
        return sum(1 for _ in container.decode(stream))


def load_video(ref: str, num_frames: int) -> list[Image.Image]:
    """``num_frames`` evenly spaced RGB frames of a video file or ``data:video/...;base64,`` URL.

    The frame count is the container's (else counted by decoding); when fewer frames decode than it
    says, the last decoded frame stands in for the missing ones.

    Raises:
        MediaError: missing file, no video stream, nothing decodable, or ``num_frames`` below 1.
    """
    import av

    _, source = _read(ref, "video")
    name = describe(ref)
    if num_frames < 1:
        raise MediaError(f"{name}: num_frames must be at least 1, got {num_frames}")

    def open_video() -> Any:
        return av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source))

    try:
        with open_video() as container:
            if not container.streams.video:
                raise MediaError(f"{name}: no video stream")
        wanted = frame_indices(_count_frames(open_video), num_frames)
        kept: dict[int, Image.Image] = {}
        last: Any = None
        with open_video() as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for index, frame in enumerate(container.decode(stream)):
                last = (index, frame)
                if index in wanted:
                    kept[index] = frame.to_image().convert("RGB")
                if index >= wanted[-1]:
                    break
    except MediaError:
        raise
    except (av.FFmpegError, OSError, ValueError, IndexError) as err:
        raise MediaError(f"{name}: cannot decode video ({_one_line(err)})") from err
    if last is None:
        raise MediaError(f"{name}: no video frames decoded")
    if last[0] not in kept:
        kept[last[0]] = last[1].to_image().convert("RGB")
    return [kept[i] if i in kept else kept[max(k for k in kept if k <= i)] for i in wanted]
