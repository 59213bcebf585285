"""MediaCollator (nexus.multimodal.collate): chat examples with media -> a masked training batch."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from tests.unit.test_omni_model import IMAGE_SIZE, VIDEO_FRAMES, build_encoders, build_tiny_omni, square


@pytest.fixture(scope="module")
def processor(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("collate_parts")
    build_encoders(root)
    return build_tiny_omni(tiny_model_dir, root)[1]


def write_wav(path: Path, seconds: float = 0.5, rate: int = 8000) -> Path:
    import numpy

    samples = (numpy.sin(numpy.arange(int(seconds * rate)) / 5) * 20000).astype(numpy.int16)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


def examples(tmp_path: Path) -> list[dict]:
    square(20).save(tmp_path / "a.png")
    square(200).save(tmp_path / "b.png")
    return [
        {"prompt": [{"role": "user", "content": "<image>Which digit is shown? Answer with one digit."}],
         "completion": [{"role": "assistant", "content": "7"}], "images": [str(tmp_path / "a.png")]},
        {"prompt": [{"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hear <audio>, see <image> and watch <video>: what happens?"}],
         "completion": [{"role": "assistant", "content": "A dog barks twice."}],
         "images": [str(tmp_path / "b.png")], "audios": [str(write_wav(tmp_path / "c.wav"))],
         "videos": [[square(40), square(80), square(120)]]},
        {"prompt": [{"role": "user", "content": "No media here, just say hi."}],
         "completion": [{"role": "assistant", "content": "hi"}]},
    ]


def test_labels_cover_the_answers_only(processor, tmp_path: Path) -> None:
    import torch

    from nexus.multimodal.collate import IGNORE, MediaCollator

    batch = MediaCollator(processor, max_length=256)(examples(tmp_path))
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    assert ids.shape == labels.shape == mask.shape and ids.shape[0] == 3
    assert tuple(batch["pixel_values"].shape) == (2, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert tuple(batch["pixel_values_videos"].shape) == (VIDEO_FRAMES, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert tuple(batch["input_features"].shape) == (1, 80, 100)
    media = torch.isin(ids, torch.tensor(sorted(processor.media_token_ids)))
    assert int((ids == processor.image_token_id).sum()) == 2 * processor.image_tokens
    assert int((ids == processor.audio_token_id).sum()) == processor.audio_tokens
    assert int((ids == processor.video_token_id).sum()) == VIDEO_FRAMES * processor.video_frame_tokens
    assert not (labels[media] != IGNORE).any()
    assert not (labels[mask == 0] != IGNORE).any()
    assert (mask[:, 0] == 1).all()  # right padding
    tokenizer = processor.tokenizer
    for row, answer in zip(labels, ("7", "A dog barks twice.", "hi"), strict=True):
        kept = row[row != IGNORE].tolist()
        assert kept[-1] == tokenizer.eos_token_id  # the end-of-turn token is trained
        assert tokenizer.decode(kept, skip_special_tokens=True) == answer
        positions = (row != IGNORE).nonzero().flatten()
        assert (positions == torch.arange(positions[0], positions[-1] + 1)).all()  # one contiguous span


def test_placeholder_and_length_errors_name_the_example(processor, tmp_path: Path) -> None:
    from nexus.multimodal.collate import MediaBatchError, MediaCollator

    good, media, _ = examples(tmp_path)
    extra = {**good, "images": good["images"] * 2}
    with pytest.raises(MediaBatchError, match=r"example 1: the messages have 1 <image> placeholder\(s\) but the "
                                              r"example lists 2 images"):
        MediaCollator(processor)([good, extra])
    with pytest.raises(MediaBatchError, match="example 0: the prompt takes .* max_length 20"):
        MediaCollator(processor, max_length=20)([media])
    long_answer = {**good, "completion": [{"role": "assistant", "content": "seven " * 50}]}
    encoded, labels = MediaCollator(processor, max_length=60).encode(long_answer)
    assert len(encoded) == len(labels) == 60  # the completion is cut, the media tokens are kept whole
