"""video_generation: text-to-video through a projector from the language model into Wan 2.1.

The same path as :mod:`nexus.capabilities.image_generation` with a video family: the trained
projector maps the frozen LM's hidden states into ``WanTransformer3DModel``'s per-token
conditioning (no pooled one), trained by the flow-matching loss on (caption, clip) pairs.

Accepted formats (detected by the organizer, see :mod:`nexus.formats`):

- ``video_caption`` (WebVid / OpenVid-style clip captions): ``{"video": "clips/c000.mp4", "text":
  "handwritten digits 6, 8 and 2, one after another"}`` (``video_path`` and ``caption`` read the
  same); ``"split"`` as for images.

Scoring (``generate`` draws one clip per held-out caption, ``video_frames`` frames, seeded, and writes
it as an animated GIF under the eval report's ``samples/``): ``dino`` is the mean over frames of the
DINOv2 cosine similarity between each generated frame and the same frame of the reference clip
(sampled to as many frames); ``diversity`` and ``random_parts`` as for images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nexus.capabilities import Example
from nexus.capabilities._generation import caption_example, draw_and_score, held_out, score

METRIC = "dino"
VIDEO_KEYS = ("video", "video_path")
__all__ = ["FORMATTERS", "METRIC", "format_caption", "generate", "held_out", "score"]


def format_caption(record: dict[str, Any]) -> Example:
    """``video_caption`` record -> a generation example (see the module docstring)."""
    return caption_example(record, VIDEO_KEYS, "videos")


FORMATTERS = {"video_caption": format_caption}


def _gif(frames: list[Any], stem: Path) -> Path:
    from nexus.diffusion.export import write_gif

    return write_gif(frames, stem.with_suffix(".gif"))


def generate(model: Any, tokenizer: Any, examples: list[Example], max_new_tokens: int, diffusion_steps: int,
             guidance_scale: float, vision_encoder: str, video_frames: int,
             media_dir: Path | None = None) -> list[str]:
    """One clip per held-out caption (``<media_dir>/<n>.gif``) and its scores (see the module docstring)."""
    from nexus.multimodal.media import load_video

    return draw_and_score(model, examples, diffusion_steps, guidance_scale, vision_encoder, media_dir,
                          lambda example: load_video(example["videos"][0], video_frames), _gif)
