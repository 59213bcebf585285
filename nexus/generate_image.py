"""``nexus generate-image "prompt" --out x.png``: the trained image_generation model draws one image.

The generator folder (``models/capabilities/image_generation``, from ``make train
CAPS=image-generation``; see :mod:`nexus.diffusion.generator`) holds the projector and names the
language model and the diffusion parts. The PNG is written to a temporary file and renamed, so a
failed run leaves nothing. On the tiny random parts a fresh clone trains on, the image is noise
(the command says so); pointed at a model trained on a local SD3.5 folder it is a picture.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_MODEL = "models/capabilities/image_generation"


class GenerateImageError(ValueError):
    """Bad input to ``nexus generate-image``: the message names the flag and what to do."""


@dataclass(frozen=True)
class ImageRequest:
    """What to draw and where (see :func:`generate_image`); ``size`` 0 = the size trained at."""

    prompt: str
    out: Path
    model: str = DEFAULT_MODEL
    steps: int = 20
    guidance: float = 1.0
    seed: int = 0
    size: int = 0


def check_request(request: ImageRequest) -> None:
    """Refuse bad input before any model loads.

    Raises:
        GenerateImageError: an empty prompt, an output that is not a .png, or steps, guidance or
            size out of range.
    """
    if not request.prompt.strip():
        raise GenerateImageError("prompt: empty; say what to draw, e.g. "
                                 "nexus generate-image \"a sks dog\" --out dog.png")
    if request.out.suffix.lower() != ".png":
        raise GenerateImageError(f"--out {request.out}: give a .png file name")
    if request.steps < 1 or request.guidance < 1.0 or request.size < 0 or request.size % 16:
        raise GenerateImageError("--steps must be at least 1, --guidance at least 1 (1 = off), --size a multiple "
                                 "of 16 (0 = the size trained at)")


def generate_image(request: ImageRequest) -> dict[str, Any]:
    """Draw the image and write ``request.out``; returns ``{"out", "size", "random_parts", "model"}``.

    Raises:
        GenerateImageError: bad input (see :func:`check_request`).
        GeneratorError: the model folder holds no trained generator.
    """
    check_request(request)
    from nexus.diffusion.generator import load_generator

    generator = load_generator(request.model)
    image = generator.images([request.prompt], steps=request.steps, guidance=request.guidance, seed=request.seed,
                             size=request.size or None)[0]
    request.out.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{request.out.name}.", suffix=".tmp", dir=request.out.parent)
    os.close(handle)
    try:
        image.save(tmp, format="PNG")
        os.replace(tmp, request.out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {"out": str(request.out), "size": image.size[0], "random_parts": generator.parts.random,
            "model": request.model}
