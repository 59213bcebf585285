"""The flow-matching loss that trains the projector, as a module a transformers ``Trainer`` minimizes.

For a (caption, image or clip) batch: the frozen LM reads the caption (last hidden states), the
projector turns them into the diffusion transformer's conditioning, the frozen VAE encodes the
pixels into latents ``x0``; with noise ``e`` and a level ``s`` drawn uniformly in (0, 1), the frozen
transformer sees ``(1 - s) x0 + s e`` at timestep ``1000 s`` and is asked for the velocity ``e - x0``
(rectified flow, as SD3 and Wan were trained). Only the projector's weights get gradients. How a
family encodes and is asked is :class:`nexus.diffusion.parts.DiffusionParts`'.
"""

from __future__ import annotations

from typing import Any

import torch

from nexus.diffusion.parts import DiffusionParts
from nexus.diffusion.projector import TextProjector


def caption_states(language_model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The LM's last hidden states for the prompts (no gradients: the LM is frozen)."""
    with torch.no_grad():
        out = language_model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
    return out.hidden_states[-1]


class FlowMatchingObjective(torch.nn.Module):
    """``forward(input_ids, attention_mask, pixel_values) -> {"loss"}``; trains ``projector`` alone.

    Args:
        language_model: a causal LM (frozen here).
        projector: the :class:`TextProjector` being trained.
        parts: the diffusion parts (frozen here).
    """

    _keys_to_ignore_on_save = None  # read by the Trainer after loading a checkpoint, as on a PreTrainedModel

    def __init__(self, language_model: Any, projector: TextProjector, parts: DiffusionParts) -> None:
        super().__init__()
        self.language_model = language_model.requires_grad_(False).eval()
        self.projector = projector
        self.parts = parts.freeze()
        self.transformer, self.vae = parts.transformer, parts.vae  # registered: moved with .to(device)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        """The projector's weights alone (``projector.*``): what a checkpoint holds. The frozen LM and
        parts are rebuilt from their sources, so a checkpoint stays megabytes, not gigabytes (the
        Trainer loads it back with ``strict=False``)."""
        return {f"projector.{key}": value for key, value in self.projector.state_dict(*args, **kwargs).items()}

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:  # type: ignore[override]
        """Load a checkpoint :meth:`state_dict` wrote into the projector (every projector key must be there)."""
        own = {key.removeprefix("projector."): value for key, value in state_dict.items()
               if key.startswith("projector.")}
        return self.projector.load_state_dict(own, strict=True, assign=assign)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor,
                **_: Any) -> dict[str, torch.Tensor]:
        """The batch's flow-matching loss."""
        hidden = caption_states(self.language_model, input_ids, attention_mask)
        prompt_embeds, pooled = self.projector(hidden.to(self.projector.dtype), attention_mask)
        x0 = self.parts.latents(pixel_values)  # images (batch, 3, H, W) or clips (batch, 3, frames, H, W)
        noise = torch.randn_like(x0)
        sigma = torch.rand(x0.shape[0], device=x0.device, dtype=x0.dtype)
        level = sigma.view(-1, *([1] * (x0.dim() - 1)))
        noisy = (1.0 - level) * x0 + level * noise
        velocity = self.parts.velocity(noisy, sigma, prompt_embeds, pooled)
        return {"loss": torch.nn.functional.mse_loss(velocity.float(), (noise - x0).float())}
