"""What image_generation and video_generation share: the caption formatter, the split rule, and the
draw-and-score loop of their ``generate`` (DINO fidelity and diversity; see :mod:`nexus.diffusion.fidelity`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from nexus.capabilities import Example, SkipRecord

CAPTION_KEYS = ("text", "caption")
HELD_OUT_SPLITS = ("test", "eval", "validation")
SCORES = ("dino", "diversity", "random_parts")


def _first(record: dict[str, Any], keys: tuple[str, ...], what: str) -> Any:
    for key in keys:
        value = record.get(key)
        if value:
            return value
    raise SkipRecord(f"no {what} ({' or '.join(keys)})")


def caption_example(record: dict[str, Any], media_keys: tuple[str, ...], list_key: str) -> Example:
    """A caption record -> a generation example: the caption as the user turn of ``prompt`` (what the
    LM reads), an empty completion, the caption as ``reference``, the media path under ``list_key``
    (``images``/``videos``), and a ``split`` key as ``group`` ``split:<name>``.

    Raises:
        SkipRecord: no caption, no media, or media that is not a path or URL.
    """
    caption = str(_first(record, CAPTION_KEYS, "caption")).strip()
    media = _first(record, media_keys, list_key[:-1])
    if isinstance(media, dict):  # a datasets Image/Video feature without bytes stands for its path
        media = media.get("path")
    if not isinstance(media, str) or not media.strip():
        raise SkipRecord(f"the {list_key[:-1]} is not a file path or URL")
    example: Example = {"prompt": [{"role": "user", "content": caption}],
                        "completion": [{"role": "assistant", "content": ""}], "reference": caption,
                        list_key: [media]}  # type: ignore[misc]
    if record.get("split"):
        example["group"] = f"split:{str(record['split']).lower()}"
    return example


def held_out(example: Example) -> bool | None:
    """A record's ``split`` fixes its side (test/eval/validation held out, train trained on)."""
    split = example.get("group", "").removeprefix("split:")
    if split in HELD_OUT_SPLITS:
        return True
    return False if split == "train" else None


def draw_and_score(model: Any, examples: list[Example], steps: int, guidance: float, vision_encoder: str,
                   media_dir: Path | None, references: Callable[[Example], list[Any]],
                   write: Callable[[Any, Path], Path]) -> list[str]:
    """Draw one sample per example's caption with the generator ``model`` (seeded by position), write
    it with ``write(sample, <media_dir>/<n>)`` and return its path relative to ``media_dir``'s parent
    (``base/000.png``), carrying ``metrics`` ``{"dino", "diversity", "random_parts"}``.

    A sample is a list of frames (an image is one): ``dino`` is the mean over frames of the cosine
    similarity between the generated frame and the same frame of ``references(example)``; ``diversity``
    is taken between the samples' mean frame embeddings.
    """
    import tempfile

    import torch

    from nexus.diffusion.collate import caption_of
    from nexus.diffusion.fidelity import ImageEmbedder, diversity, frame_fidelity
    from nexus.generation.stream import StreamedText

    if not vision_encoder:
        raise ValueError("generation scoring needs vision_encoder (a DINOv2 folder, e.g. "
                         "models/encoders/vision/dinov2-small); set it in params.yaml")
    embed = ImageEmbedder(vision_encoder)
    samples = [model.draw([caption_of(e)], steps=steps, guidance=guidance, seed=n)[0] for n, e in enumerate(examples)]
    frames = [sample if isinstance(sample, list) else [sample] for sample in samples]
    fidelity, means = [], []
    for drawn, example in zip(frames, examples, strict=True):
        generated = embed(drawn)
        fidelity.append(frame_fidelity(generated, embed(references(example)[:len(drawn)])))
        means.append(torch.nn.functional.normalize(generated.mean(dim=0), dim=-1))
    spread = round(diversity(torch.stack(means)), 4)
    folder = Path(media_dir) if media_dir is not None else Path(tempfile.mkdtemp(prefix="nexus-samples-"))
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for n, (sample, score) in enumerate(zip(samples, fidelity, strict=True)):
        path = write(sample, folder / f"{n:03d}")
        out.append(StreamedText(f"{folder.name}/{path.name}", {"dino": round(score, 4), "diversity": spread,
                                                               "random_parts": float(model.parts.random)}))
    return out


def score(generated: str, example: Example) -> dict[str, float]:
    """``dino``, ``diversity`` and ``random_parts`` as :func:`draw_and_score` measured them."""
    metrics = getattr(generated, "metrics", None) or {}
    return {key: float(metrics[key]) for key in SCORES if key in metrics}
