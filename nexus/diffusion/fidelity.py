"""How close generated images are to the subject, and how different they are from each other.

The DreamBooth paper's DINO score (Ruiz et al., CVPR 2023): the mean cosine similarity between the
self-supervised ViT embeddings (the CLS token) of generated and real images of the subject; here the
encoder is DINOv2-small, the vision encoder the encoders stage converts. Diversity is one minus the
mean cosine similarity between the images generated for different prompts (0: all alike).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


class ImageEmbedder:
    """CLS embeddings (unit length) of a DINOv2 folder (``Dinov2Model`` + its image processor)."""

    def __init__(self, folder: str | Path) -> None:
        from transformers import AutoImageProcessor, AutoModel

        if not (Path(folder) / "config.json").is_file():
            raise FileNotFoundError(f"{folder}: no vision encoder (config.json); run the encoders stage "
                                    "(dvc repro encoders, after make install) or set vision_encoder in params.yaml")
        self.model = AutoModel.from_pretrained(folder).eval()
        self.processor = AutoImageProcessor.from_pretrained(folder)

    def __call__(self, images: Sequence[Any]) -> torch.Tensor:
        """``(len(images), hidden)`` unit vectors for PIL images."""
        with torch.no_grad():
            inputs = self.processor(images=list(images), return_tensors="pt")
            cls = self.model(pixel_values=inputs["pixel_values"]).last_hidden_state[:, 0]
        return torch.nn.functional.normalize(cls.float(), dim=-1)


def frame_fidelity(generated: torch.Tensor, reference: torch.Tensor) -> float:
    """The DINO score of one sample: the mean over frames of the cosine similarity between each
    generated frame and the same frame of the reference (an image is one frame)."""
    count = min(len(generated), len(reference))
    return float((generated[:count] * reference[:count]).sum(dim=-1).mean())


def diversity(generated: torch.Tensor) -> float:
    """One minus the mean cosine similarity between distinct generated images (0.0 for fewer than two)."""
    count = generated.shape[0]
    if count < 2:
        return 0.0
    similarity = generated @ generated.T
    off_diagonal = (similarity.sum() - similarity.diagonal().sum()) / (count * (count - 1))
    return float(1.0 - off_diagonal)
