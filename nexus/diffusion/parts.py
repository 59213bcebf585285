"""The frozen diffusion parts: a transformer, its VAE and its flow-matching scheduler, per model family.

A family is one subclass of :class:`DiffusionParts`: :class:`SD3Parts` here (text-to-image:
``SD3Transformer2DModel`` + ``AutoencoderKL``, drawn by ``StableDiffusion3Pipeline``) and
:class:`nexus.diffusion.wan.WanParts` (text-to-video: Wan 2.1). Each knows how its VAE encodes
pixels into latents, how its transformer is asked for a velocity, and which diffusers pipeline
draws from projected embeddings (its text encoders set to None). Parts come from a local diffusers
folder (:func:`nexus.diffusion.families.load_parts`: SD3.5 or Wan 2.1 downloaded on a GPU machine)
or are tiny random ones built from configs (``tiny``: no diffusion weights exist offline here, so
what they draw is noise, and the folder they are saved in says so).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

RANDOM_MARK = "nexus_random_parts.json"  # in a folder of tiny random parts: says what they are
SD3_TEXT_PARTS = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "text_encoder_3", "tokenizer_3")


@dataclass
class DiffusionParts:
    """The transformer, VAE and scheduler of one model; ``random`` when built from configs."""

    transformer: Any
    vae: Any
    scheduler: Any
    random: bool = False
    frames: int = 1
    """Frames drawn per sample (a video family's; ``4k + 1`` for Wan), 1 for an image family."""
    family: ClassVar[str] = ""
    transformer_class: ClassVar[str] = ""
    """The ``_class_name`` of the family's ``transformer/config.json`` (how a folder's family is told)."""

    @property
    def text_dim(self) -> int:
        """Width of the per-token conditioning the transformer reads."""
        raise NotImplementedError

    @property
    def pooled_dim(self) -> int:
        """Width of the pooled conditioning the transformer reads (0: none)."""
        return 0

    def freeze(self) -> DiffusionParts:
        """No gradients for the transformer or the VAE; both in eval mode."""
        for module in (self.transformer, self.vae):
            module.requires_grad_(False)
            module.eval()
        return self

    def latents(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels in [-1, 1] -> the VAE's normalized latents (no gradients)."""
        raise NotImplementedError

    def velocity(self, noisy: torch.Tensor, sigma: torch.Tensor, embeds: torch.Tensor,
                 pooled: torch.Tensor | None) -> torch.Tensor:
        """The transformer's predicted velocity for ``noisy`` latents at noise levels ``sigma`` in (0, 1)."""
        raise NotImplementedError

    def draw(self, embeds: torch.Tensor, pooled: torch.Tensor | None, size: int, steps: int, guidance: float,
             seed: int) -> list[Any]:
        """One sample per prompt from projected embeddings: a PIL image, or a list of PIL frames."""
        raise NotImplementedError

    def save(self, folder: str | Path) -> Path:
        """Write the parts as a diffusers folder (``transformer/``, ``vae/``, ``scheduler/``)."""
        out = Path(folder)
        self.transformer.save_pretrained(out / "transformer")
        self.vae.save_pretrained(out / "vae")
        self.scheduler.save_pretrained(out / "scheduler")
        if self.random:
            (out / RANDOM_MARK).write_text(json.dumps({"random": True, "family": self.family, "note": "tiny random "
                                                       "diffusion parts built from configs by Nexus: they generate "
                                                       "noise"}) + "\n")
        return out


def negative_zeros(embeds: torch.Tensor, pooled: torch.Tensor | None, guidance: float) -> dict[str, torch.Tensor]:
    """With guidance above 1 the unconditional branch is the zero conditioning (the pipelines would
    otherwise tokenize an empty negative prompt, and there is no tokenizer)."""
    if guidance <= 1.0:
        return {}
    zeros = {"negative_prompt_embeds": torch.zeros_like(embeds)}
    if pooled is not None:
        zeros["negative_pooled_prompt_embeds"] = torch.zeros_like(pooled)
    return zeros


class SD3Parts(DiffusionParts):
    """Stable Diffusion 3 / 3.5: per-token (``joint_attention_dim``: 4096 for SD3.5) and pooled
    (``pooled_projection_dim``: 2048) conditioning; VAE latents shifted and scaled."""

    family = "sd3"
    transformer_class = "SD3Transformer2DModel"

    @property
    def text_dim(self) -> int:
        return int(self.transformer.config.joint_attention_dim)

    @property
    def pooled_dim(self) -> int:
        return int(self.transformer.config.pooled_projection_dim)

    @classmethod
    def tiny(cls, seed: int = 0, size: int = 32) -> SD3Parts:
        """Tiny random parts (a few hundred thousand weights): the real classes, for tests and this machine."""
        from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel

        torch.manual_seed(seed)
        latent = size // 4  # three VAE blocks, two of them halving the side
        transformer = SD3Transformer2DModel(sample_size=latent, patch_size=2, in_channels=4, num_layers=2,
                                            attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32,
                                            caption_projection_dim=16, pooled_projection_dim=16, out_channels=4,
                                            pos_embed_max_size=max(16, latent))
        vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 3,
                            up_block_types=["UpDecoderBlock2D"] * 3, block_out_channels=[8, 16, 16],
                            layers_per_block=1, latent_channels=4, norm_num_groups=4, sample_size=size,
                            shift_factor=0.0, scaling_factor=1.0)
        return cls(transformer, vae, FlowMatchEulerDiscreteScheduler(), random=True)

    @classmethod
    def load(cls, root: Path, dtype: torch.dtype | None = None) -> SD3Parts:
        """The parts of a local SD3 diffusers folder (its text encoders are not loaded)."""
        from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel

        return cls(SD3Transformer2DModel.from_pretrained(root / "transformer", torch_dtype=dtype),
                   AutoencoderKL.from_pretrained(root / "vae", torch_dtype=dtype),
                   FlowMatchEulerDiscreteScheduler.from_pretrained(root / "scheduler"))

    def latents(self, pixels: torch.Tensor) -> torch.Tensor:
        config = self.vae.config
        with torch.no_grad():
            sample = self.vae.encode(pixels.to(self.vae.dtype)).latent_dist.sample()
        return (sample - (config.shift_factor or 0.0)) * config.scaling_factor

    def velocity(self, noisy: torch.Tensor, sigma: torch.Tensor, embeds: torch.Tensor,
                 pooled: torch.Tensor | None) -> torch.Tensor:
        return self.transformer(hidden_states=noisy, encoder_hidden_states=embeds.to(noisy.dtype),
                                pooled_projections=pooled.to(noisy.dtype), timestep=sigma * 1000.0).sample

    def pipeline(self) -> Any:
        """``StableDiffusion3Pipeline`` over the parts, without text encoders (it takes ``prompt_embeds``)."""
        from diffusers import StableDiffusion3Pipeline

        pipe = StableDiffusion3Pipeline(transformer=self.transformer, vae=self.vae, scheduler=self.scheduler,
                                        **dict.fromkeys(SD3_TEXT_PARTS))
        pipe.set_progress_bar_config(disable=True)  # one bar per image otherwise; the eval logs items done
        return pipe

    def draw(self, embeds: torch.Tensor, pooled: torch.Tensor | None, size: int, steps: int, guidance: float,
             seed: int) -> list[Any]:
        dtype = self.transformer.dtype
        embeds, pooled = embeds.to(dtype), pooled.to(dtype)
        with torch.no_grad():
            out = self.pipeline()(prompt_embeds=embeds, pooled_prompt_embeds=pooled, height=size, width=size,
                                  num_inference_steps=steps, guidance_scale=guidance, output_type="pil",
                                  generator=torch.Generator().manual_seed(seed),
                                  **negative_zeros(embeds, pooled, guidance))
        return list(out.images)
