"""A trained generator as one folder: the projector, the diffusion parts (or where they live) and the
language model it reads.

Layout of ``models/capabilities/image_generation`` (and ``video_generation``; written by
:func:`save_generator`)::

    nexus_generator.json   {"language_model": ..., "diffusion_model": ..., "family": ..., "image_size": ...}
    projector/             the TextProjector (diffusers save_pretrained: config.json + safetensors)
    diffusion/             the tiny random parts, when the run used them (a real SD3.5 or Wan folder is
                           referenced by its path instead of copied)

The language model is referenced by its path (it was frozen: the base's weights are the ones used).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nexus.diffusion.families import load_parts, tiny_parts
from nexus.diffusion.parts import DiffusionParts
from nexus.diffusion.projector import TextProjector

GENERATOR_FILE = "nexus_generator.json"
PARTS_DIR = "diffusion"
PROJECTOR_DIR = "projector"


class GeneratorError(ValueError):
    """A folder that holds no generator, or one whose parts are missing."""


@dataclass
class Generator:
    """What turns a prompt into an image or a clip: the frozen LM and its tokenizer, the projector, the parts.

    Attributes:
        language_model_path: where the language model was loaded from (written into the folder).
        image_size: pixels per side it was trained at (the default for generation).
    """

    language_model: Any
    tokenizer: Any
    projector: TextProjector
    parts: DiffusionParts
    language_model_path: str
    image_size: int

    def to(self, device: str) -> Generator:
        """Move the language model, the projector and the parts to ``device`` (in place); returns self."""
        for module in (self.language_model, self.projector, self.parts.transformer, self.parts.vae):
            module.to(device)
        return self

    def draw(self, prompts: list[str], steps: int = 20, guidance: float = 1.0, seed: int = 0,
             size: int | None = None) -> list[Any]:
        """One sample per prompt: a PIL image, or a list of PIL frames (:func:`nexus.diffusion.generate.generate`)."""
        from nexus.diffusion.generate import generate

        return generate(self.language_model, self.tokenizer, self.projector, self.parts, prompts,
                        size or self.image_size, steps=steps, guidance=guidance, seed=seed)


def parts_dtype(device: str) -> Any:
    """The dtype real parts load in: bf16 on a GPU (SD3.5 and Wan's transformers), their own (fp32) on the CPU."""
    import torch

    return torch.bfloat16 if device == "cuda" else None


def diffusion_parts(diffusion_model: str, seed: int, image_size: int, family: str = "sd3", frames: int = 1,
                    dtype: Any = None) -> DiffusionParts:
    """The frozen parts: a local diffusers folder, or (``diffusion_model`` empty) tiny random ones of
    ``family``, seeded; a video family draws ``frames`` per sample.

    Raises:
        GeneratorError: the folder holds parts of another family than ``family``.
    """
    parts = load_parts(diffusion_model, dtype) if diffusion_model else tiny_parts(seed, image_size, family).freeze()
    if parts.family != family:
        raise GeneratorError(f"{diffusion_model}: holds {parts.family} parts; this capability drives {family}")
    parts.frames = frames
    return parts


def new_generator(language_model_path: str, parts: DiffusionParts, image_size: int, seed: int) -> Generator:
    """A generator whose projector is new (seeded): training starts from it, and it is the baseline."""
    import torch

    from nexus.loading import load_model, load_tokenizer

    model = load_model(language_model_path).eval().requires_grad_(False)
    torch.manual_seed(seed)
    projector = TextProjector(hidden_size=int(model.config.hidden_size), joint_attention_dim=parts.text_dim,
                              pooled_projection_dim=parts.pooled_dim)
    return Generator(model, load_tokenizer(language_model_path), projector, parts, language_model_path, image_size)


def save_generator(generator: Generator, folder: str | Path, diffusion_model: str) -> Path:
    """Write the projector, the parts when random (else their path) and ``nexus_generator.json``."""
    out = Path(folder)
    generator.projector.save_pretrained(out / PROJECTOR_DIR)
    if generator.parts.random:
        generator.parts.save(out / PARTS_DIR)
        where = PARTS_DIR
    else:
        where = str(Path(diffusion_model).resolve())
    card = {"language_model": str(Path(generator.language_model_path).resolve()), "diffusion_model": where,
            "family": generator.parts.family, "random_parts": generator.parts.random,
            "image_size": generator.image_size, "frames": generator.parts.frames}
    (out / GENERATOR_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return out


def is_generator(folder: str | Path) -> bool:
    """Whether ``folder`` holds a saved generator (:func:`save_generator`)."""
    return (Path(folder) / GENERATOR_FILE).is_file()


def load_generator(folder: str | Path, dtype: Any = None) -> Generator:
    """The generator saved in ``folder``.

    Raises:
        GeneratorError: no ``nexus_generator.json`` (not a trained image_generation output), or parts missing.
    """
    from nexus.loading import load_model, load_tokenizer

    root = Path(folder)
    if not is_generator(root):
        raise GeneratorError(f"{root}: no {GENERATOR_FILE}; give a trained image_generation or video_generation "
                             "output (make train CAPS=image-generation writes models/capabilities/image_generation)")
    card = json.loads((root / GENERATOR_FILE).read_text(encoding="utf-8"))
    parts_dir = root / card["diffusion_model"] if not Path(card["diffusion_model"]).is_absolute() \
        else Path(card["diffusion_model"])
    try:
        parts = load_parts(parts_dir, dtype)
    except FileNotFoundError as err:
        raise GeneratorError(str(err)) from err
    parts.frames = int(card.get("frames", 1))
    model = load_model(card["language_model"]).eval().requires_grad_(False)
    projector = TextProjector.from_pretrained(root / PROJECTOR_DIR).eval()
    return Generator(model, load_tokenizer(card["language_model"]), projector, parts, card["language_model"],
                     int(card["image_size"]))
