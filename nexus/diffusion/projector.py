"""``TextProjector``: a language model's hidden states -> a diffusion transformer's text conditioning.

SD3's transformer reads two things from its text encoders: ``encoder_hidden_states`` (per token,
``joint_attention_dim`` wide: 4096 for SD3.5) and ``pooled_projections`` (one vector,
``pooled_projection_dim``: 2048). The projector makes both from the LM's last hidden states: a
two-layer MLP per token, and a linear map of the mask-weighted mean over the prompt's tokens.
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config


class TextProjector(ModelMixin, ConfigMixin):
    """LM hidden states ``(batch, tokens, hidden_size)`` -> ``(prompt_embeds, pooled_prompt_embeds)``.

    Args:
        hidden_size: the language model's hidden size (576 for SmolLM2-135M).
        joint_attention_dim: the transformer's ``joint_attention_dim``.
        pooled_projection_dim: the transformer's ``pooled_projection_dim`` (0: no pooled head, for Wan).
    """

    @register_to_config
    def __init__(self, hidden_size: int = 576, joint_attention_dim: int = 4096,
                 pooled_projection_dim: int = 2048) -> None:
        super().__init__()
        self.tokens = torch.nn.Sequential(torch.nn.Linear(hidden_size, joint_attention_dim), torch.nn.GELU(),
                                          torch.nn.Linear(joint_attention_dim, joint_attention_dim))
        self.pooled = torch.nn.Sequential(torch.nn.Linear(hidden_size, pooled_projection_dim), torch.nn.GELU(),
                                          torch.nn.Linear(pooled_projection_dim, pooled_projection_dim)) \
            if pooled_projection_dim else None  # Wan reads per-token conditioning only

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-token embeddings (padding positions zeroed) and the pooled embedding of each prompt
        (None without a pooled head)."""
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        if self.pooled is None:
            return self.tokens(hidden) * weights, None
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return self.tokens(hidden) * weights, self.pooled(pooled)
