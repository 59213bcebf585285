"""What bounds a generation: the model's context window and the token ids that end a reply."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, overload

CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


@overload
def context_length(model_or_config: Any, default: int) -> int: ...


@overload
def context_length(model_or_config: Any, default: None = None) -> int | None: ...


def context_length(model_or_config: Any, default: int | None = None) -> int | None:
    """The context window in tokens (``max_position_embeddings`` or a synonym) of a model or a
    config, or ``default`` when the config names none."""
    config = getattr(model_or_config, "config", model_or_config)
    for key in CONTEXT_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return default


def fit_context(rows: Sequence[Sequence[int]], context: int | None,
                max_new_tokens: int) -> tuple[list[list[int]], int, int]:
    """Prompt rows and a new-token budget that fit a ``context``-token window together.

    A row longer than the room left after ``max_new_tokens`` keeps its last tokens (the end of a
    chat prompt, where the reply starts); ``max_new_tokens`` shrinks to at most half the window so
    that a prompt always keeps some room.

    Returns:
        ``(rows, max_new_tokens, cut)``: the fitted rows, the budget, how many rows were shortened.
    """
    if context is None:
        return [list(r) for r in rows], max_new_tokens, 0
    new_tokens = max(1, min(max_new_tokens, context // 2))
    room = context - new_tokens
    fitted = [list(r[-room:]) if len(r) > room else list(r) for r in rows]
    return fitted, new_tokens, sum(len(r) > room for r in rows)


def _ids(value: Any) -> set[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return {value}
    if isinstance(value, (list, tuple)):
        return {int(v) for v in value}
    return set()


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """The end-of-sequence ids of the model's generation config and of the tokenizer."""
    generation_config = getattr(model, "generation_config", None)
    return _ids(getattr(generation_config, "eos_token_id", None)) | _ids(tokenizer.eos_token_id)


def stop_ids(model: Any, tokenizer: Any) -> set[int]:
    """Token ids that end a generated row of a padded batch: the end-of-sequence ids and the
    padding id."""
    return eos_ids(model, tokenizer) | _ids(tokenizer.pad_token_id)


def padding_id(tokenizer: Any) -> int:
    """The id that pads a batch: the tokenizer's padding id, else its end-of-sequence id."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
