"""Loading a model to chat with, what it reads (:class:`Modalities`), and the name it is shown and served under.

A text model loads with :func:`nexus.loading.load_model` and its tokenizer; a multimodal composite
(:func:`nexus.media_training.is_composite`: a ``nexus_omni`` folder or a LLaVA folder) loads with
:func:`nexus.multimodal.compose.load_omni`, and its :class:`~nexus.multimodal.processor.NexusOmniProcessor`
stands where the tokenizer does (:mod:`nexus.generation.stream` tells them apart).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nexus.generation.stream import is_processor
from nexus.loading import ModelSourceError, load_model, load_tokenizer, model_source

log = logging.getLogger(__name__)
MAX_DECODE_THREADS = 4


def _usable_cores() -> int:
    """Physical cores this process may run on (logical CPUs when psutil cannot tell)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    try:
        import psutil

        physical = psutil.cpu_count(logical=False) or usable
    except ImportError:
        physical = usable
    return max(1, min(usable, physical))


def decode_threads(requested: int | None = None, cores: int | None = None) -> int:
    """The torch thread count for CPU decoding: ``requested``, else ``OMP_NUM_THREADS``, else the rule.

    The rule is ``min(cores - 1, 4)``, at least 1: one core is left to the server, the tokenizer
    and whatever else runs, because a thread pool spanning every core stalls whenever any of them is
    busy (measured on a loaded 2-core machine, SmolLM2-135M: 13.6 tokens/s with 1 thread, 3.6
    with 2; docs/serving.md), and a small model's per-token matrix products are too small to
    split further than 4 ways.

    Args:
        requested: ``--threads``; None chooses.
        cores: usable physical cores (default: this machine's).

    Raises:
        ValueError: ``requested`` is below 1.
    """
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--threads must be at least 1, got {requested}")
        return requested
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) >= 1:
        return int(env)
    cores = cores or _usable_cores()
    return max(1, min(cores - 1, MAX_DECODE_THREADS))


@dataclass(frozen=True)
class Modalities:
    """What a loaded chat model reads besides text (nothing, for a text model).

    Attributes:
        image: it has a vision tower (``<image>`` placeholders).
        audio: it has an audio tower (``<audio>`` placeholders).
        sampling_rate: the audio rate its feature extractor takes (Hz).
        audio_seconds: the clip length it reads (longer audio is cut), or None.
    """

    image: bool = False
    audio: bool = False
    sampling_rate: int = 16000
    audio_seconds: float | None = None

    @property
    def media(self) -> bool:
        """Whether the model reads any media."""
        return self.image or self.audio

    def names(self) -> list[str]:
        """``["text", "image", "audio"]``, those the model reads (``GET /v1/models``)."""
        return ["text", *(["image"] if self.image else []), *(["audio"] if self.audio else [])]

    def describe(self) -> str:
        """``text only``, ``text and images only``, ``text and audio only`` or ``text, images and audio``."""
        kinds = (["images"] if self.image else []) + (["audio"] if self.audio else [])
        if not kinds:
            return "text only"
        return f"text and {kinds[0]} only" if len(kinds) == 1 else "text, images and audio"


def model_modalities(tokenizer: Any) -> Modalities:
    """What the model behind ``tokenizer`` (a text tokenizer, or a composite's processor) reads."""
    if not is_processor(tokenizer):
        return Modalities()
    extractor = getattr(tokenizer, "feature_extractor", None)
    seconds = getattr(tokenizer, "audio_seconds", 0) or None
    return Modalities(image=bool(getattr(tokenizer, "image_tokens", 0)),
                      audio=bool(getattr(tokenizer, "audio_tokens", 0)) and extractor is not None,
                      sampling_rate=int(getattr(extractor, "sampling_rate", 16000) or 16000),
                      audio_seconds=float(seconds) if seconds else None)


def _load_composite(model_path: str | Path, device: str) -> tuple[Any, Any]:
    from nexus.multimodal.compose import load_omni

    model, processor = load_omni(model_path, device=device)
    if not getattr(processor.tokenizer, "chat_template", None):
        raise ValueError(f"{model_path}: the composite's tokenizer has no chat template; chat and serve need "
                         f"one (tokenizer_config.json or chat_template.jinja in the folder)")
    return model.eval(), processor


def load_chat_model(model_path: str | Path, device: str | None = None,
                    threads: int | None = None) -> tuple[Any, Any]:
    """Load a model and tokenizer for chatting, in eval mode, on CUDA when available.

    A multimodal composite (a ``nexus_omni`` or LLaVA folder) comes with its processor in place of
    the tokenizer (:func:`model_modalities` says what it reads).

    Args:
        model_path: HF folder, ``.gguf`` file, trained adapter folder (merged on load), or composite folder.
        device: torch device; default ``cuda`` when available, else ``cpu``.
        threads: torch threads for decoding on the CPU (default: :func:`decode_threads`' rule).

    Raises:
        ValueError: not a model, or its tokenizer has no chat template.
    """
    try:
        model_source(model_path)  # a wrong path fails here, before the slow imports
    except ModelSourceError:
        raise ModelSourceError(f"{model_path}: not a model; give an HF model folder (with config.json), "
                               f"a .gguf file or a trained adapter folder, e.g. models/base") from None
    count = decode_threads(threads)
    import torch

    torch.set_num_threads(count)
    log.info("decoding with %d torch thread%s", count, "" if count == 1 else "s")
    from nexus.media_training import is_composite

    if is_composite(model_path):
        return _load_composite(model_path, device or ("cuda" if torch.cuda.is_available() else "cpu"))
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
