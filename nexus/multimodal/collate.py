"""MediaCollator: chat examples with media (the multimodal contract's Example) into a training batch.

Each example's prompt messages are rendered with the tokenizer's chat template (with the generation
prompt), then the whole conversation (prompt + completion); the placeholders expand to their media token
counts (:meth:`nexus.multimodal.processor.NexusOmniProcessor.expand`). Labels are -100 except on the
completion's tokens up to and including its end-of-turn token; never on a placeholder or on padding.
Media refs (paths or ``data:`` URLs) load through :mod:`nexus.multimodal.media`; already loaded items
(PIL images, numpy arrays, lists of frames) pass through.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nexus.generation.limits import eos_ids, padding_id

IGNORE = -100


class MediaBatchError(ValueError):
    """An example that cannot become a training or generation row (placeholders vs media, length)."""


def load_media(example: dict[str, Any], processor: Any) -> dict[str, list[Any]]:
    """The example's ``images`` / ``audios`` / ``videos`` loaded (refs through nexus.multimodal.media)."""

    def load(kind: str, ref: Any) -> Any:
        if not isinstance(ref, str):
            return ref  # already loaded: a PIL image, an array, a list of frames
        from nexus.multimodal import media

        if kind == "images":
            return media.load_image(ref)
        if kind == "audios":
            return media.load_audio(ref, sampling_rate=processor.feature_extractor.sampling_rate,
                                    max_seconds=processor.audio_seconds)
        return media.load_video(ref, num_frames=processor.video_frames)

    return {kind: [load(kind, ref) for ref in example.get(kind) or []] for kind in ("images", "audios", "videos")}


def check_placeholders(text: str, example: dict[str, Any], where: str) -> None:
    """Raise MediaBatchError unless the text has one placeholder per media item of each kind."""
    from nexus.multimodal.processor import AUDIO_TOKEN, IMAGE_TOKEN, VIDEO_TOKEN

    for token, kind in ((IMAGE_TOKEN, "images"), (AUDIO_TOKEN, "audios"), (VIDEO_TOKEN, "videos")):
        have, want = text.count(token), len(example.get(kind) or [])
        if have != want:
            raise MediaBatchError(f"{where}: the messages have {have} {token} placeholder(s) but the example "
                                  f"lists {want} {kind}; put one {token} in the user text per item")


def prompt_ids(example: dict[str, Any], processor: Any, where: str = "example") -> list[int]:
    """Token ids of the example's generation prompt (chat template, placeholders expanded)."""
    from nexus.chat import render_prompt

    text = render_prompt(example, processor.tokenizer)
    check_placeholders(text, example, where)
    return processor.tokenizer(processor.expand(text), add_special_tokens=False)["input_ids"]


def _full_text(example: dict[str, Any], tokenizer: Any) -> str:
    from nexus.chat import prepare

    ready = prepare(example, tokenizer)
    kwargs = {"tools": ready["tools"]} if ready.get("tools") else {}
    return tokenizer.apply_chat_template(ready["prompt"] + ready["completion"], tokenize=False, **kwargs)


class MediaCollator:
    """Examples (prompt, completion, images / audios / videos) -> ``input_ids``, ``attention_mask``,
    ``labels`` (right padded) and ``pixel_values`` / ``pixel_values_videos`` / ``input_features``."""

    def __init__(self, processor: Any, max_length: int = 2048) -> None:
        self.processor = processor
        self.max_length = max_length
        self.end_ids = eos_ids(None, processor.tokenizer)
        self.media_ids = processor.media_token_ids

    def encode(self, example: dict[str, Any], where: str = "example") -> tuple[list[int], list[int]]:
        """``(input_ids, labels)`` of one example."""
        tokenizer = self.processor.tokenizer
        prompt = prompt_ids(example, self.processor, where)
        full = tokenizer(self.processor.expand(_full_text(example, tokenizer)), add_special_tokens=False)["input_ids"]
        if full[:len(prompt)] != prompt:
            raise MediaBatchError(f"{where}: the chat template renders the prompt differently alone and before "
                                  f"the completion, so the completion tokens cannot be found")
        if len(prompt) >= self.max_length:
            raise MediaBatchError(f"{where}: the prompt takes {len(prompt)} tokens (media included), not under "
                                  f"max_length {self.max_length}; raise max_length or use fewer or smaller media")
        completion = full[len(prompt):]
        ends = [i for i, t in enumerate(completion) if t in self.end_ids]
        answer_len = ends[-1] + 1 if ends else len(completion)  # up to and including the end-of-turn token
        labels = [IGNORE] * len(prompt) + [t if i < answer_len and t not in self.media_ids else IGNORE
                                           for i, t in enumerate(completion)]
        return full[:self.max_length], labels[:self.max_length]

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        rows = [self.encode(e, f"example {i}") for i, e in enumerate(examples)]
        width = max(len(ids) for ids, _ in rows)
        pad = padding_id(self.processor.tokenizer)
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (ids, lab) in enumerate(rows):
            input_ids[i, :len(ids)] = torch.tensor(ids)
            labels[i, :len(lab)] = torch.tensor(lab)
            attention[i, :len(ids)] = 1
        media: dict[str, list[Any]] = {"images": [], "audios": [], "videos": []}
        for example in examples:
            for kind, items in load_media(example, self.processor).items():
                media[kind].extend(items)
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels,
                **self.processor.media_tensors(media["images"], media["audios"], media["videos"])}
