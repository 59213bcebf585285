"""(caption, image or clip) examples -> the batch :class:`~nexus.diffusion.objective.FlowMatchingObjective` reads."""

from __future__ import annotations

from typing import Any

import torch

from nexus.multimodal.media import load_image, load_video


def caption_of(example: dict[str, Any]) -> str:
    """The text a generation example conditions on: its last user turn."""
    return str(example["prompt"][-1]["content"])


def pixels(image: Any, size: int) -> torch.Tensor:
    """A PIL image, centre-cropped square and resized to ``size``, as ``(3, size, size)`` in [-1, 1]."""
    from PIL import Image

    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    square = image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)
    array = torch.frombuffer(bytearray(square.tobytes()), dtype=torch.uint8).view(size, size, 3)
    return array.permute(2, 0, 1).float().div(127.5).sub(1.0)


def clip_pixels(frames: list[Any], size: int) -> torch.Tensor:
    """PIL frames -> ``(3, frames, size, size)`` in [-1, 1] (each frame as :func:`pixels`)."""
    return torch.stack([pixels(frame, size) for frame in frames], dim=1)


class CaptionCollator:
    """Tokenizes the captions (right-padded, cut at ``max_length``) and loads each example's first
    image, or with ``frames`` above 1 its first video sampled to that many frames, as ``pixel_values``.

    Args:
        tokenizer: the language model's tokenizer.
        image_size: pixels per side the diffusion model trains at.
        max_length: tokens kept per caption.
        frames: frames per clip (1: the examples are images).
    """

    def __init__(self, tokenizer: Any, image_size: int, max_length: int, frames: int = 1) -> None:
        self.tokenizer, self.image_size, self.max_length, self.frames = tokenizer, image_size, max_length, frames
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "right"

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer([caption_of(e) for e in examples], return_tensors="pt", padding=True,
                               truncation=True, max_length=self.max_length)
        if self.frames > 1:
            media = [clip_pixels(load_video(e["videos"][0], self.frames), self.image_size) for e in examples]
        else:
            media = [pixels(load_image(e["images"][0]), self.image_size) for e in examples]
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
                "pixel_values": torch.stack(media)}
