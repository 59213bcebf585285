"""Prompts -> images: the LM reads each prompt, the projector conditions SD3's pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from nexus.diffusion.objective import caption_states
from nexus.diffusion.parts import DiffusionParts, pipeline
from nexus.diffusion.projector import TextProjector


def prompt_embeddings(language_model: Any, tokenizer: Any, projector: TextProjector,
                      prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(prompt_embeds, pooled_prompt_embeds)`` of the prompts (right-padded, padding zeroed)."""
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    batch = tokenizer(list(prompts), return_tensors="pt", padding=True)
    hidden = caption_states(language_model, batch["input_ids"], batch["attention_mask"])
    with torch.no_grad():
        return projector(hidden.to(projector.dtype), batch["attention_mask"])


def generate_images(language_model: Any, tokenizer: Any, projector: TextProjector, parts: DiffusionParts,
                    prompts: Sequence[str], size: int, steps: int = 20, guidance: float = 1.0,
                    seed: int = 0) -> list[Any]:
    """One PIL image per prompt, ``size`` pixels square, ``steps`` denoising steps, seeded.

    With ``guidance`` above 1 (classifier-free guidance) the unconditional branch is the zero
    conditioning: SD3's pipeline would otherwise try to tokenize an empty negative prompt.
    """
    embeds, pooled = prompt_embeddings(language_model, tokenizer, projector, prompts)
    dtype = parts.transformer.dtype
    extra = {}
    if guidance > 1.0:
        extra = {"negative_prompt_embeds": torch.zeros_like(embeds, dtype=dtype),
                 "negative_pooled_prompt_embeds": torch.zeros_like(pooled, dtype=dtype)}
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        out = pipeline(parts)(prompt_embeds=embeds.to(dtype), pooled_prompt_embeds=pooled.to(dtype), height=size,
                              width=size, num_inference_steps=steps, guidance_scale=guidance, generator=generator,
                              output_type="pil", **extra)
    return list(out.images)
