"""Loading a model to chat with, and the name it is shown and served under."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nexus.loading import ModelSourceError, load_model, load_tokenizer, model_source


def load_chat_model(model_path: str | Path, device: str | None = None) -> tuple[Any, Any]:
    """Load a model and tokenizer for chatting, in eval mode, on CUDA when available.

    Args:
        model_path: HF folder, ``.gguf`` file, or trained adapter folder (merged on load).
        device: torch device; default ``cuda`` when available, else ``cpu``.

    Raises:
        ValueError: not a model, or its tokenizer has no chat template.
    """
    try:
        model_source(model_path)  # a wrong path fails here, before the slow imports
    except ModelSourceError:
        raise ModelSourceError(f"{model_path}: not a model; give an HF model folder (with config.json), "
                               f"a .gguf file or a trained adapter folder, e.g. models/base") from None
    import torch

    tokenizer = load_tokenizer(model_path)
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{model_path}: the tokenizer has no chat template; chat and serve need an "
                         f"instruct model (tokenizer_config.json with a chat_template), e.g. models/base")
    model = load_model(model_path)
    model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.eval()
    return model, tokenizer


def model_display_name(model_path: str | Path) -> str:
    """The name a model is served and shown under: its folder name, or a GGUF file's stem."""
    path = Path(model_path)
    return path.stem if path.suffix == ".gguf" else (path.resolve().name or str(path))
