"""Batched, left-padded generation: greedy, or sampled at a temperature.

Two entry points share one loop (:func:`generate_rows`'s batches of left-padded token rows passed to
``model.generate``):

- :func:`generate_examples`: the replies to examples' chat prompts (rendered with
  :func:`nexus.chat.render_prompt`), as text. The evaluator, preference-pair building and the
  safety methods use it.
- :func:`generate_rows`: the new token ids after token-id rows (already encoded prompts), cut at the
  first stop id, or every new token. Thinking-budget forcing and the GSM8K benchmark use it.

Sampling draws from torch's global generator: the caller seeds it (``torch.manual_seed``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from nexus.chat import render_prompt
from nexus.generation.limits import context_length, fit_context, padding_id, stop_ids

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 8
TOP_P = 0.95  # nucleus sampling cut-off when sampling (temperature above 0)


def sampling_options(temperature: float) -> dict[str, Any]:
    """``model.generate`` options: greedy at ``temperature`` 0, else sampled at it with top-p."""
    if temperature > 0:
        return {"do_sample": True, "temperature": temperature, "top_p": TOP_P}
    return {"do_sample": False}


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


def _in_order_batches(count: int, batch_size: int) -> Iterator[list[int]]:
    for start in range(0, count, max(batch_size, 1)):
        yield list(range(start, min(start + batch_size, count)))


def cut_at_stop_ids(row: Sequence[int], stops: set[int]) -> list[int]:
    """``row`` up to (not including) its first id in ``stops``."""
    end = next((i for i, token in enumerate(row) if token in stops), len(row))
    return list(row[:end])


def generate_rows(model: Any, tokenizer: Any, rows: Sequence[Sequence[int]], max_new_tokens: int, *,
                  batch_size: int = DEFAULT_BATCH_SIZE, temperature: float = 0.0,
                  stop_strings: Sequence[str] | None = None, length_sorted: bool = False,
                  cut: bool = True, progress: Callable[[int], None] | None = None) -> list[list[int]]:
    """The new token ids after each prompt row, in the rows' order.

    Rows are left padded (with :func:`nexus.generation.limits.padding_id`) in batches of
    ``batch_size``: in the given order, or by length, longest first, with ``length_sorted``.
    Prompts and ``max_new_tokens`` are first fitted to the model's context window
    (:func:`nexus.generation.limits.fit_context`: an over-long prompt keeps its last tokens, with a
    warning), so a huge record cannot make ``generate`` allocate beyond the window.
    Generation is greedy, or sampled at ``temperature`` above 0; it stops at the end-of-sequence
    ids and, with ``stop_strings``, after any of them. With ``cut`` each row ends before its first
    stop id (:func:`nexus.generation.limits.stop_ids`); without it the rows keep every new token,
    the padding after a finished row included. ``progress`` is called after each batch with the
    number of rows done.
    """
    import torch

    model.eval()
    rows, max_new_tokens, cut_rows = fit_context(rows, context_length(model), max_new_tokens)
    if cut_rows:
        log.warning("%d prompt(s) longer than the model's context (%s tokens, %d kept for the reply): "
                    "kept their last tokens", cut_rows, context_length(model), max_new_tokens)
    pad = padding_id(tokenizer)
    options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": pad,
                               **sampling_options(temperature)}
    if stop_strings:
        options.update(stop_strings=list(stop_strings), tokenizer=tokenizer)
    batches = (length_sorted_batches([len(r) for r in rows], batch_size) if length_sorted
               else _in_order_batches(len(rows), batch_size))
    stops = stop_ids(model, tokenizer) if cut else set()
    new_rows: list[list[int]] = [[] for _ in rows]
    done = 0
    for batch in batches:
        inputs = left_pad([rows[i] for i in batch], pad, model.device)
        inputs.pop("position_ids")  # generate derives them from the attention mask
        with torch.inference_mode():
            out = model.generate(**inputs, **options)
        for i, row in zip(batch, out[:, inputs["input_ids"].shape[1]:].tolist(), strict=True):
            new_rows[i] = cut_at_stop_ids(row, stops) if cut else row
        done += len(batch)
        if progress is not None:
            progress(done)
    return new_rows


def generate_examples(model: Any, tokenizer: Any, examples: Sequence[dict[str, Any]], max_new_tokens: int,
                      batch_size: int = DEFAULT_BATCH_SIZE, temperature: float = 0.0,
                      progress: Callable[[int], None] | None = None) -> list[str]:
    """Replies to the examples' chat prompts, batched in order with left padding: greedy, or
    sampled at ``temperature`` above 0 (seeded by the caller's ``torch.manual_seed``).

    Each reply is every new token decoded without special tokens. The tokenizer is left with
    ``padding_side = "left"``, as the evaluator's generation has always left it. ``progress`` is
    called with the number of examples done after each batch (e.g. :class:`nexus.progress.ItemsDone`).
    """
    tokenizer.padding_side = "left"
    rows = [tokenizer(render_prompt(e, tokenizer), add_special_tokens=False)["input_ids"] for e in examples]
    new = generate_rows(model, tokenizer, rows, max_new_tokens, batch_size=batch_size,
                        temperature=temperature, cut=False, progress=progress)
    return tokenizer.batch_decode(new, skip_special_tokens=True) if new else []
