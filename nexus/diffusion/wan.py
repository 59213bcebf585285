"""Wan 2.1 text-to-video parts (:class:`WanParts`): the video family of :mod:`nexus.diffusion.parts`.

``WanTransformer3DModel`` reads per-token conditioning only (``text_dim``: 4096, umT5's width, for
Wan2.1-T2V-1.3B); ``AutoencoderKLWan`` encodes ``(batch, 3, frames, height, width)`` clips (frames
``4k + 1``: its time axis shrinks fourfold) into latents normalized by its ``latents_mean`` and
``latents_std``; ``WanPipeline`` draws frames from projected embeddings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nexus.diffusion.parts import DiffusionParts, negative_zeros


class WanParts(DiffusionParts):
    """Wan 2.1's transformer, VAE and flow-matching scheduler."""

    family = "wan"
    transformer_class = "WanTransformer3DModel"

    @property
    def text_dim(self) -> int:
        return int(self.transformer.config.text_dim)

    @classmethod
    def tiny(cls, seed: int = 0, size: int = 32) -> WanParts:
        """Tiny random parts (about 40 thousand weights, diffusers' test sizes): noise, for tests and this machine."""
        from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel

        torch.manual_seed(seed)
        vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                               temperal_downsample=[False, True, True])
        transformer = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                                            in_channels=16, out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32,
                                            num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                            rope_max_seq_len=32)
        return cls(transformer, vae, FlowMatchEulerDiscreteScheduler(shift=7.0), random=True)

    @classmethod
    def load(cls, root: Path, dtype: torch.dtype | None = None) -> WanParts:
        """The parts of a local Wan 2.1 diffusers folder (its umT5 text encoder is not loaded)."""
        from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel

        return cls(WanTransformer3DModel.from_pretrained(root / "transformer", torch_dtype=dtype),
                   AutoencoderKLWan.from_pretrained(root / "vae", torch_dtype=torch.float32),  # Wan's VAE wants fp32
                   FlowMatchEulerDiscreteScheduler.from_pretrained(root / "scheduler"))

    def _normalization(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        config = self.vae.config
        shape = (1, config.z_dim, 1, 1, 1)
        mean = torch.tensor(config.latents_mean, dtype=like.dtype, device=like.device).view(shape)
        std = torch.tensor(config.latents_std, dtype=like.dtype, device=like.device).view(shape)
        return mean, std

    def latents(self, pixels: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            sample = self.vae.encode(pixels.to(self.vae.dtype)).latent_dist.sample()
        mean, std = self._normalization(sample)
        return (sample - mean) / std

    def velocity(self, noisy: torch.Tensor, sigma: torch.Tensor, embeds: torch.Tensor,
                 pooled: torch.Tensor | None) -> torch.Tensor:
        dtype = self.transformer.dtype
        return self.transformer(hidden_states=noisy.to(dtype), timestep=sigma * 1000.0,
                                encoder_hidden_states=embeds.to(dtype), return_dict=False)[0]

    def pipeline(self) -> Any:
        """``WanPipeline`` over the parts, without its tokenizer and text encoder."""
        from diffusers import WanPipeline

        pipe = WanPipeline(tokenizer=None, text_encoder=None, vae=self.vae, scheduler=self.scheduler,
                           transformer=self.transformer)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def draw(self, embeds: torch.Tensor, pooled: torch.Tensor | None, size: int, steps: int, guidance: float,
             seed: int) -> list[Any]:
        from PIL import Image

        embeds = embeds.to(self.transformer.dtype)
        with torch.no_grad():
            out = self.pipeline()(prompt_embeds=embeds, height=size, width=size, num_frames=self.frames,
                                  num_inference_steps=steps, guidance_scale=guidance, output_type="np",
                                  generator=torch.Generator().manual_seed(seed),
                                  **negative_zeros(embeds, None, guidance))
        clips = (out.frames * 255.0).round().clip(0, 255).astype("uint8")  # (batch, frames, height, width, 3)
        return [[Image.fromarray(frame) for frame in clip] for clip in clips]
