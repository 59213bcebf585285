"""image_generation: text-to-image through a projector from the language model into SD3.

The language model becomes the diffusion model's text encoder: a trained projector
(:mod:`nexus.diffusion`) maps its hidden states into SD3's conditioning; both models stay frozen.

Accepted formats (detected by the organizer, see :mod:`nexus.formats`):

- ``image_caption`` (HF imagefolder ``metadata.jsonl``, BLIP-caption sets): ``{"image": "dog/00.jpg",
  "text": "a photo of sks dog"}`` (``image_path``/``file_name`` and ``caption`` read the same). An
  optional ``"split": "test"`` (or ``eval``/``validation``) holds the record out for evaluation,
  ``"train"`` keeps it in training; without it the seeded shuffle decides.

Examples: the caption as the user turn of ``prompt`` (what the LM reads), an empty completion, the
caption as ``reference``, and the image under ``images`` (the training target; for a held-out
example, the reference the generated image is compared with).

Scoring (``generate`` draws one image per held-out caption, seeded, and writes it as a PNG under the
eval report's ``samples/``): ``dino`` is the cosine similarity between the DINOv2 CLS embeddings of
the generated image and the example's reference image (the DreamBooth paper's DINO score, with the
vision encoder the encoders stage converts); ``diversity`` is one minus the mean similarity between
the images of different prompts (the same for every example of one model); ``random_parts`` is 1
when the diffusion parts were tiny random ones: their images are noise and the scores say nothing
about picture quality.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nexus.capabilities import Example
from nexus.capabilities._generation import caption_example, draw_and_score, held_out, score

METRIC = "dino"
IMAGE_KEYS = ("image", "image_path", "file_name")
__all__ = ["FORMATTERS", "METRIC", "format_caption", "generate", "held_out", "score"]


def format_caption(record: dict[str, Any]) -> Example:
    """``image_caption`` record -> a generation example (see the module docstring)."""
    return caption_example(record, IMAGE_KEYS, "images")


FORMATTERS = {"image_caption": format_caption}


def _png(image: Any, stem: Path) -> Path:
    path = stem.with_suffix(".png")
    image.save(path)
    return path


def generate(model: Any, tokenizer: Any, examples: list[Example], max_new_tokens: int, diffusion_steps: int,
             guidance_scale: float, vision_encoder: str, media_dir: Path | None = None) -> list[str]:
    """One image per held-out caption (``<media_dir>/<n>.png``) and its scores (see the module docstring)."""
    from nexus.multimodal.media import load_image

    return draw_and_score(model, examples, diffusion_steps, guidance_scale, vision_encoder, media_dir,
                          lambda example: [load_image(example["images"][0])], _png)
