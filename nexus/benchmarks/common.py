"""Helpers shared by the benchmarks: where the data lies, prompt encoding, the model's device.

Batching with left padding lives in :mod:`nexus.generation.batch`, the context length in
:mod:`nexus.generation.limits`.

Nothing here imports torch at module import time (``nexus --help`` loads the registry).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_ENV = "NEXUS_BENCHMARK_DATA"
DEFAULT_CONTEXT = 2048  # tokens assumed when the model's config names no context length


class BenchmarkError(ValueError):
    """A benchmark cannot run: unknown name, missing data file, unusable tokenizer."""


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The benchmark data folder: ``explicit``, else ``$NEXUS_BENCHMARK_DATA``, else data/benchmarks."""
    if explicit:
        return Path(explicit)
    return Path(os.environ.get(DATA_ENV) or REPO_ROOT / "data" / "benchmarks")


def require_file(path: Path, what: str) -> Path:
    """Return ``path`` if it is a file, else raise a BenchmarkError that says how to get it."""
    if not path.is_file():
        raise BenchmarkError(
            f"{what} not found at {path}: restore data/benchmarks from git (docs/benchmarks.md) "
            f"or point ${DATA_ENV} at a folder holding it"
        )
    return path


def encode(tokenizer: Any, text: str, max_tokens: int | None = None) -> list[int]:
    """Token ids of ``text`` (the tokenizer's own special-token default, as lm-eval does),
    left-truncated to the last ``max_tokens`` ids when longer."""
    ids: list[int] = list(tokenizer(text).input_ids)
    if max_tokens is not None and len(ids) > max_tokens:
        ids = ids[-max_tokens:]
    return ids


def prepare_model(model: Any) -> Any:
    """Put the model in eval mode on the GPU when there is one (it loads on the CPU)."""
    import torch

    model.eval()
    device = getattr(model, "device", None)
    if torch.cuda.is_available() and device is not None and device.type == "cpu":
        model.to("cuda")
    return model
