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

Scoring (``generate`` draws one image per held-out caption, seeded, and writes it under the eval
report's ``samples/``): ``dino`` is the cosine similarity between the DINOv2 CLS embeddings of the
generated image and the example's reference image (the DreamBooth paper's DINO score, with the
vision encoder the encoders stage converts); ``diversity`` is one minus the mean similarity between
the images of different prompts (the same for every example of one model); ``random_parts`` is 1
when the diffusion parts were tiny random ones: their images are noise and the scores say nothing
about picture quality.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nexus.capabilities import Example, SkipRecord

METRIC = "dino"
CAPTION_KEYS = ("text", "caption")
IMAGE_KEYS = ("image", "image_path", "file_name")
HELD_OUT_SPLITS = ("test", "eval", "validation")


def _first(record: dict[str, Any], keys: tuple[str, ...], what: str) -> Any:
    for key in keys:
        value = record.get(key)
        if value:
            return value
    raise SkipRecord(f"no {what} ({' or '.join(keys)})")


def format_caption(record: dict[str, Any]) -> Example:
    """``image_caption`` record -> a generation example (see the module docstring).

    Raises:
        SkipRecord: no caption, no image, or an image that is not a path or URL.
    """
    caption = str(_first(record, CAPTION_KEYS, "caption")).strip()
    image = _first(record, IMAGE_KEYS, "image")
    if isinstance(image, dict):  # a datasets Image feature without bytes stands for its path
        image = image.get("path")
    if not isinstance(image, str) or not image.strip():
        raise SkipRecord("the image is not a file path or URL")
    example: Example = {"prompt": [{"role": "user", "content": caption}],
                        "completion": [{"role": "assistant", "content": ""}], "reference": caption,
                        "images": [image]}
    if record.get("split"):
        example["group"] = f"split:{str(record['split']).lower()}"
    return example


FORMATTERS = {"image_caption": format_caption}


def held_out(example: Example) -> bool | None:
    """A record's ``split`` fixes its side (test/eval/validation held out, train trained on)."""
    split = example.get("group", "").removeprefix("split:")
    if split in HELD_OUT_SPLITS:
        return True
    return False if split == "train" else None


def generate(model: Any, tokenizer: Any, examples: list[Example], max_new_tokens: int, diffusion_steps: int,
             guidance_scale: float, vision_encoder: str, media_dir: Path | None = None) -> list[str]:
    """Draw one image per example's caption with the generator ``model`` (seeded by position), save it
    as ``<media_dir>/<n>.png`` and return that path relative to ``media_dir``'s parent (the eval
    report's ``samples/``: ``base/000.png``), carrying ``metrics`` ``{"dino", "diversity",
    "random_parts"}`` (:class:`nexus.generation.stream.StreamedText`)."""
    import tempfile

    from nexus.diffusion.collate import caption_of
    from nexus.diffusion.fidelity import ImageEmbedder, diversity, subject_fidelity
    from nexus.generation.stream import StreamedText
    from nexus.multimodal.media import load_image

    if not vision_encoder:
        raise ValueError("image_generation: scoring needs vision_encoder (a DINOv2 folder, e.g. "
                         "models/encoders/vision/dinov2-small); set it in params.yaml")
    embed = ImageEmbedder(vision_encoder)
    images = [model.images([caption_of(e)], steps=diffusion_steps, guidance=guidance_scale, seed=n)[0]
              for n, e in enumerate(examples)]
    generated = embed(images)
    fidelity = subject_fidelity(generated, embed([load_image(e["images"][0]) for e in examples]))
    spread = round(diversity(generated), 4)
    folder = Path(media_dir) if media_dir is not None else Path(tempfile.mkdtemp(prefix="nexus-images-"))
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for n, (image, score) in enumerate(zip(images, fidelity.tolist(), strict=True)):
        path = folder / f"{n:03d}.png"
        image.save(path)
        out.append(StreamedText(f"{folder.name}/{path.name}", {"dino": round(score, 4), "diversity": spread,
                                            "random_parts": float(model.parts.random)}))
    return out


def score(generated: str, example: Example) -> dict[str, float]:
    """``dino``, ``diversity`` and ``random_parts`` as :func:`generate` measured them."""
    metrics = getattr(generated, "metrics", None) or {}
    return {key: float(metrics[key]) for key in (METRIC, "diversity", "random_parts") if key in metrics}
