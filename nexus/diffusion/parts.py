"""The frozen diffusion parts: SD3's transformer, its VAE and its flow-matching scheduler.

From a local diffusers folder (``load_parts``: an SD3 / SD3.5 checkpoint such as
``stabilityai/stable-diffusion-3.5-medium`` downloaded on a GPU machine; its text encoders are not
loaded) or tiny random parts built from configs (``tiny_parts``: no diffusion weights exist offline
here, so what they draw is noise). ``pipeline(parts)`` is a ``StableDiffusion3Pipeline`` with its three
text encoders and tokenizers set to None: it generates from the projector's embeddings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

RANDOM_MARK = "nexus_random_parts.json"  # in a folder of tiny random parts: says what they are
NO_TEXT_ENCODERS = {name: None for name in ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2",
                                            "text_encoder_3", "tokenizer_3")}


@dataclass
class DiffusionParts:
    """The transformer, VAE and scheduler of one SD3-style model; ``random`` when built from configs."""

    transformer: Any
    vae: Any
    scheduler: Any
    random: bool = False

    @property
    def joint_attention_dim(self) -> int:
        """Width of the per-token conditioning the transformer reads."""
        return int(self.transformer.config.joint_attention_dim)

    @property
    def pooled_projection_dim(self) -> int:
        """Width of the pooled conditioning the transformer reads."""
        return int(self.transformer.config.pooled_projection_dim)

    def freeze(self) -> DiffusionParts:
        """No gradients for the transformer or the VAE; both in eval mode."""
        for module in (self.transformer, self.vae):
            module.requires_grad_(False)
            module.eval()
        return self


def tiny_parts(seed: int = 0, image_size: int = 32) -> DiffusionParts:
    """Tiny random SD3 parts built from configs (a few hundred thousand weights): the real classes and
    the real pipeline, for tests and for this machine; they generate noise."""
    torch.manual_seed(seed)
    latent = image_size // 4  # two VAE down blocks halve the side twice
    transformer = SD3Transformer2DModel(sample_size=latent, patch_size=2, in_channels=4, num_layers=2,
                                        attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32,
                                        caption_projection_dim=16, pooled_projection_dim=16, out_channels=4,
                                        pos_embed_max_size=max(16, latent))
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 3,
                        up_block_types=["UpDecoderBlock2D"] * 3, block_out_channels=[8, 16, 16],
                        layers_per_block=1, latent_channels=4, norm_num_groups=4, sample_size=image_size,
                        shift_factor=0.0, scaling_factor=1.0)
    return DiffusionParts(transformer, vae, FlowMatchEulerDiscreteScheduler(), random=True)


def save_parts(parts: DiffusionParts, folder: str | Path) -> Path:
    """Write the parts as a diffusers folder (``transformer/``, ``vae/``, ``scheduler/``)."""
    out = Path(folder)
    parts.transformer.save_pretrained(out / "transformer")
    parts.vae.save_pretrained(out / "vae")
    parts.scheduler.save_pretrained(out / "scheduler")
    if parts.random:
        (out / RANDOM_MARK).write_text(json.dumps({"random": True, "note": "tiny random diffusion parts built "
                                                   "from configs by Nexus: they generate noise"}) + "\n")
    return out


def load_parts(folder: str | Path, dtype: torch.dtype | None = None) -> DiffusionParts:
    """The transformer, VAE and scheduler of a local SD3-style diffusers folder, frozen.

    Raises:
        FileNotFoundError: the folder lacks ``transformer/``, ``vae/`` or ``scheduler/`` (named).
    """
    root = Path(folder)
    missing = [name for name in ("transformer", "vae", "scheduler") if not (root / name).is_dir()]
    if missing:
        raise FileNotFoundError(f"{root}: not an SD3 diffusers folder (no {', '.join(missing)}/); give a local "
                                "copy of stabilityai/stable-diffusion-3.5-medium or the tiny parts Nexus writes")
    return DiffusionParts(SD3Transformer2DModel.from_pretrained(root / "transformer", torch_dtype=dtype),
                          AutoencoderKL.from_pretrained(root / "vae", torch_dtype=dtype),
                          FlowMatchEulerDiscreteScheduler.from_pretrained(root / "scheduler"),
                          random=(root / RANDOM_MARK).is_file()).freeze()


def pipeline(parts: DiffusionParts) -> StableDiffusion3Pipeline:
    """``StableDiffusion3Pipeline`` over the parts, without text encoders (it takes ``prompt_embeds``)."""
    pipe = StableDiffusion3Pipeline(transformer=parts.transformer, vae=parts.vae, scheduler=parts.scheduler,
                                    **NO_TEXT_ENCODERS)
    pipe.set_progress_bar_config(disable=True)  # one bar per image otherwise; the eval logs items done
    return pipe
