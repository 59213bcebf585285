"""Prompts -> samples: the LM reads each prompt, the projector conditions the family's pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from nexus.diffusion.objective import caption_states
from nexus.diffusion.parts import DiffusionParts
from nexus.diffusion.projector import TextProjector


def prompt_embeddings(language_model: Any, tokenizer: Any, projector: TextProjector,
                      prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(prompt_embeds, pooled_prompt_embeds or None)`` of the prompts (right-padded, padding zeroed)."""
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    device = next(projector.parameters()).device
    batch = tokenizer(list(prompts), return_tensors="pt", padding=True).to(device)
    hidden = caption_states(language_model, batch["input_ids"], batch["attention_mask"])
    with torch.no_grad():
        return projector(hidden.to(projector.dtype), batch["attention_mask"])


def generate(language_model: Any, tokenizer: Any, projector: TextProjector, parts: DiffusionParts,
             prompts: Sequence[str], size: int, steps: int = 20, guidance: float = 1.0, seed: int = 0) -> list[Any]:
    """One sample per prompt, ``size`` pixels square, ``steps`` denoising steps, seeded: a PIL image
    (SD3) or a list of PIL frames (Wan). With ``guidance`` above 1 (classifier-free guidance) the
    unconditional branch is the zero conditioning."""
    embeds, pooled = prompt_embeddings(language_model, tokenizer, projector, prompts)
    return parts.draw(embeds, pooled, size, steps, guidance, seed)
