"""nexus.multimodal.media on the real sample files: images, WAV/mp3/flac audio, video frames, data URLs, errors."""

from __future__ import annotations

import base64
import wave
from pathlib import Path

import numpy as np
import pytest

from nexus.multimodal.media import (
    MediaError,
    frame_indices,
    load_audio,
    load_audio_bytes,
    load_image,
    load_video,
    resample,
)

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "data" / "samples"
DIGIT = SAMPLES / "omni" / "digits" / "d0000.png"
FSDD = SAMPLES / "omni" / "fsdd" / "7_jackson_3.wav"
LF_AUDIO = SAMPLES / "omni" / "llamafactory" / "mllm_demo_data"
LF_VIDEO = SAMPLES / "video_understanding" / "llamafactory" / "mllm_demo_data"
CLIP = SAMPLES / "video_understanding" / "clips" / "c000.mp4"
PHOTO = SAMPLES / "llamafactory" / "data" / "mllm_demo_data" / "1.jpg"


def _data_url(path: Path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def test_digit_png_is_an_rgb_image_with_the_scaled_pixels():
    image = load_image(str(DIGIT))
    assert image.mode == "RGB" and image.size == (8, 8)
    gray = np.asarray(image)[:, :, 0]
    assert set(np.unique(gray)) <= {round(v * 255 / 16) for v in range(17)}  # 0..16 scaled to 0..255
    assert gray.min() == 0 and gray.max() > 200
    photo = load_image(str(PHOTO))
    assert photo.mode == "RGB" and min(photo.size) > 100


def test_image_data_url_reads_the_same_pixels():
    from_url = load_image(_data_url(DIGIT, "image/png"))
    assert np.array_equal(np.asarray(from_url), np.asarray(load_image(str(DIGIT))))


def test_fsdd_wav_resampled_from_8_to_16_khz():
    with wave.open(str(FSDD)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        frames = w.getnframes()
        raw = np.frombuffer(w.readframes(frames), dtype="<i2").astype(np.float32) / 32768.0
    native = load_audio(str(FSDD), sampling_rate=8000)
    assert native.dtype == np.float32 and np.allclose(native, raw)
    up = load_audio(str(FSDD), sampling_rate=16000)
    assert up.dtype == np.float32 and up.ndim == 1 and len(up) == 2 * frames
    assert np.allclose(up[::2], raw, atol=0.02)  # upsampling keeps the original samples (band-limited)
    assert len(load_audio(str(FSDD), 16000, max_seconds=0.1)) == 1600


def test_stereo_and_8_bit_wav_are_averaged_and_scaled(tmp_path):
    tone = np.sin(np.linspace(0, 40 * np.pi, 1600)).astype(np.float32)
    path = tmp_path / "stereo8.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(1)
        w.setframerate(16000)
        left = np.round(tone * 100 + 128).astype(np.uint8)
        right = np.full_like(left, 128)  # silence: the mean halves the tone
        w.writeframes(np.stack([left, right], axis=1).tobytes())
    samples = load_audio(str(path), 16000)
    assert len(samples) == 1600 and np.allclose(samples, tone * 100 / 128 / 2, atol=0.01)


@pytest.mark.parametrize("name, rate, seconds", [("1.mp3", 16000, 4.0), ("3.flac", 16000, 5.9), ("2.wav", 16000, 2.9)])
def test_demo_audio_decodes_to_mono_float(name, rate, seconds):
    samples = load_audio(str(LF_AUDIO / name), sampling_rate=rate)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) / rate - seconds) < 0.2 and np.isfinite(samples).all() and np.abs(samples).max() > 0.1


def test_flac_is_16_khz_mono_speech_kept_as_is():
    import av

    with av.open(str(LF_AUDIO / "3.flac")) as container:
        assert container.streams.audio[0].codec_context.sample_rate == 16000
    at_16k = load_audio(str(LF_AUDIO / "3.flac"), 16000)
    at_8k = load_audio(str(LF_AUDIO / "3.flac"), 8000)
    assert len(at_8k) == round(len(at_16k) / 2)


def test_audio_bytes_and_data_urls():
    wav_bytes = FSDD.read_bytes()
    assert np.array_equal(load_audio_bytes(wav_bytes, "wav"), load_audio(str(FSDD)))
    mp3 = LF_AUDIO / "1.mp3"
    assert np.array_equal(load_audio(_data_url(mp3, "audio/mpeg")), load_audio(str(mp3)))
    assert np.array_equal(load_audio_bytes(mp3.read_bytes(), "mp3"), load_audio(str(mp3)))
    assert len(load_audio(_data_url(FSDD, "audio/wav"), 16000)) == len(load_audio(str(FSDD), 16000))


def test_resample_length_and_identity():
    x = np.random.default_rng(0).standard_normal(1001).astype(np.float32)
    assert resample(x, 16000, 16000) is not x and np.array_equal(resample(x, 16000, 16000), x)
    assert len(resample(x, 44100, 16000)) == round(1001 * 16000 / 44100)
    assert len(resample(x, 8000, 16000)) == 2002


def test_project_clip_frames_are_one_image_per_frame():
    frames = load_video(str(CLIP), 6)
    assert len(frames) == 6 and all(f.size == (56, 56) and f.mode == "RGB" for f in frames)
    a, b = (np.asarray(f, dtype=np.int16) for f in frames[:2])
    assert np.abs(a - b).max() <= 4  # a digit is shown for two frames
    assert len(load_video(str(CLIP), 3)) == 3 and len(load_video(str(CLIP), 10)) == 10  # repeats when short


def test_demo_videos_mp4_and_avi():
    for name in ("1.mp4", "2.avi", "3.mp4"):
        frames = load_video(str(LF_VIDEO / name), 4)
        assert len(frames) == 4 and all(f.mode == "RGB" for f in frames)
        assert len({f.tobytes() for f in frames}) > 1  # evenly spaced, not the same frame
    assert load_video(_data_url(CLIP, "video/mp4"), 2)[0].tobytes() == load_video(str(CLIP), 2)[0].tobytes()


def test_frame_indices_are_segment_middles():
    assert frame_indices(6, 3) == [1, 3, 5]
    assert frame_indices(100, 4) == [12, 37, 62, 87]
    assert frame_indices(2, 4) == [0, 0, 1, 1]


def test_broken_files_raise_media_error_naming_them(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    with pytest.raises(MediaError, match=r"broken\.png: cannot read image"):
        load_image(str(broken))
    noise = tmp_path / "noise.mp3"
    noise.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(MediaError, match=r"noise\.mp3: "):
        load_audio(str(noise))
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42 broken")
    with pytest.raises(MediaError, match=r"clip\.mp4: "):
        load_video(str(clip), 4)
    with pytest.raises(MediaError, match=r"missing\.wav: no such audio file"):
        load_audio(str(tmp_path / "missing.wav"))
    with pytest.raises(MediaError, match=r"data:image/png;base64,<\d+ chars>: invalid base64"):
        load_image("data:image/png;base64,@@@not-base64@@@")
    with pytest.raises(MediaError, match="not fetched"):
        load_image("https://example.com/a.png")
    with pytest.raises(MediaError, match=r"no video stream"):
        load_video(str(LF_AUDIO / "1.mp3"), 2)
    assert issubclass(MediaError, ValueError)


def test_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"GIF89a\n\n\nbroken\n")
    with pytest.raises(MediaError) as caught:
        load_image(str(bad))
    assert "\n" not in str(caught.value) and str(bad) in str(caught.value)
