"""Greedy, batched (left-padded) replies of an omni model to examples with media.

The text path's helpers do the padding and stopping (:func:`nexus.generation.batch.left_pad`,
:func:`nexus.generation.batch.cut_at_stop_ids`, :func:`nexus.generation.limits.stop_ids`); media go to
``generate`` with the prompt and reach the model on the first step only. Prompts are never cut (a cut
would split a media's tokens): one longer than the context window is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from nexus.generation.batch import DEFAULT_BATCH_SIZE, cut_at_stop_ids, left_pad
from nexus.generation.limits import context_length, eos_ids, padding_id, stop_ids
from nexus.multimodal.collate import MediaBatchError, load_media, prompt_ids


def generate_media(model: Any, processor: Any, examples: Sequence[dict[str, Any]], max_new_tokens: int,
                   progress: Callable[[int], None] | None = None,
                   batch_size: int = DEFAULT_BATCH_SIZE) -> list[str]:
    """The greedy completion text of each example (prompt messages + media), in the examples' order.

    Each reply stops at an end-of-sequence / end-of-turn id and is decoded without special tokens.
    ``progress`` (e.g. :class:`nexus.progress.ItemsDone`) is called with the number done after each batch.
    """
    import torch

    tokenizer = processor.tokenizer
    rows = [prompt_ids(e, processor, f"example {i}") for i, e in enumerate(examples)]
    context = context_length(model)
    longest = max((len(r) for r in rows), default=0)
    if context is not None and longest >= context:
        raise MediaBatchError(f"a prompt takes {longest} tokens (media included), not under the model's context "
                              f"of {context}; use fewer or smaller media")
    new_tokens = max(1, min(max_new_tokens, context - longest)) if context is not None else max_new_tokens
    pad = padding_id(tokenizer)
    stops = stop_ids(model, tokenizer)
    options = {"max_new_tokens": new_tokens, "do_sample": False, "pad_token_id": pad,
               "eos_token_id": sorted(eos_ids(model, tokenizer))}
    model.eval()
    replies: list[str] = []
    for start in range(0, len(examples), max(batch_size, 1)):
        batch = range(start, min(start + batch_size, len(examples)))
        inputs = left_pad([rows[i] for i in batch], pad, model.device)
        inputs.pop("position_ids")  # generate derives them from the attention mask
        media: dict[str, list[Any]] = {"images": [], "audios": [], "videos": []}
        for i in batch:
            for kind, items in load_media(examples[i], processor).items():
                media[kind].extend(items)
        tensors = processor.media_tensors(media["images"], media["audios"], media["videos"])
        inputs.update({k: v.to(model.device) for k, v in tensors.items()})
        with torch.inference_mode():
            out = model.generate(**inputs, **options)
        new = [cut_at_stop_ids(row, stops) for row in out[:, inputs["input_ids"].shape[1]:].tolist()]
        replies.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
        if progress is not None:
            progress(len(replies))
    return replies
