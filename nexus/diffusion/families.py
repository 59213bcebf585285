"""Which family a diffusers folder holds, and the parts of each: :data:`FAMILIES` by name."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from nexus.diffusion.parts import RANDOM_MARK, DiffusionParts, SD3Parts
from nexus.diffusion.wan import WanParts

FAMILIES: dict[str, type[DiffusionParts]] = {"sd3": SD3Parts, "wan": WanParts}
"""Family name -> its parts class (:mod:`nexus.diffusion.parts`)."""


def tiny_parts(seed: int = 0, size: int = 32, family: str = "sd3") -> DiffusionParts:
    """Tiny random parts of ``family`` (noise; for tests and machines without diffusion weights)."""
    return FAMILIES[family].tiny(seed, size)


def load_parts(folder: str | Path, dtype: torch.dtype | None = None) -> DiffusionParts:
    """The frozen parts of a local diffusers folder, of the family its ``transformer/config.json`` names.

    Raises:
        FileNotFoundError: the folder lacks ``transformer/``, ``vae/`` or ``scheduler/`` (named), or its
            transformer is of no known family.
    """
    root = Path(folder)
    missing = [name for name in ("transformer", "vae", "scheduler") if not (root / name).is_dir()]
    if missing:
        raise FileNotFoundError(f"{root}: not a diffusers folder of SD3 or Wan parts (no {', '.join(missing)}/); "
                                "give a local copy of stabilityai/stable-diffusion-3.5-medium (or "
                                "Wan-AI/Wan2.1-T2V-1.3B-Diffusers) or the tiny parts Nexus writes")
    try:
        name = json.loads((root / "transformer" / "config.json").read_text(encoding="utf-8")).get("_class_name")
    except (OSError, ValueError) as err:
        raise FileNotFoundError(f"{root / 'transformer' / 'config.json'}: unreadable ({err})") from err
    family = next((cls for cls in FAMILIES.values() if cls.transformer_class == name), None)
    if family is None:
        known = ", ".join(cls.transformer_class for cls in FAMILIES.values())
        raise FileNotFoundError(f"{root}: its transformer is a {name}; Nexus drives {known}")
    parts = family.load(root, dtype)
    parts.random = (root / RANDOM_MARK).is_file()
    return parts.freeze()

