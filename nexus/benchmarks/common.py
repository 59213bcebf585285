"""Helpers shared by the benchmarks: where the data lies, token batching with left padding.

Nothing here imports torch at module import time (``nexus --help`` loads the registry).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_ENV = "NEXUS_BENCHMARK_DATA"


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


def model_context_length(model: Any, default: int = 2048) -> int:
    """The most positions the model takes (``max_position_embeddings``), or ``default``."""
    value = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 0 else default


def encode(tokenizer: Any, text: str, max_tokens: int | None = None) -> list[int]:
    """Token ids of ``text`` (the tokenizer's own special-token default, as lm-eval does),
    left-truncated to the last ``max_tokens`` ids when longer."""
    ids: list[int] = list(tokenizer(text).input_ids)
    if max_tokens is not None and len(ids) > max_tokens:
        ids = ids[-max_tokens:]
    return ids


def left_pad(rows: Sequence[Sequence[int]], pad_id: int, device: Any = None) -> dict[str, Any]:
    """``input_ids``, ``attention_mask`` and ``position_ids`` tensors for rows padded on the left.

    Position ids count real tokens only, so a padded row sees the same positions as it would alone.
    """
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    batch = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
    return {k: v.to(device) for k, v in batch.items()} if device is not None else batch


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Indices grouped into batches of similar length (longest first), to waste little padding."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for start in range(0, len(order), max(batch_size, 1)):
        yield order[start:start + batch_size]


def prepare_model(model: Any) -> Any:
    """Put the model in eval mode on the GPU when there is one (it loads on the CPU)."""
    import torch

    model.eval()
    device = getattr(model, "device", None)
    if torch.cuda.is_available() and device is not None and device.type == "cpu":
        model.to("cuda")
    return model
