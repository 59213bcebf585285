"""One module per capability: a formatter (record -> chat example) and an evaluator (score).

Every capability module exposes the same small surface (see :class:`CapabilityModule`); the shared
trainer and evaluator never branch on the capability name.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any, Protocol, TypedDict


class Example(TypedDict, total=False):
    """A formatted training/eval example in TRL's conversational prompt-completion form.

    ``prompt``, ``completion`` and ``reference`` are always set; ``tools`` (JSON schemas) is set by
    tool-calling formatters and rendered by :mod:`nexus.chat`; the media lists by the multimodal
    formatters (paths relative to the record's file until :func:`nexus.examples.with_media_paths`).
    """

    prompt: list[dict[str, str]]
    completion: list[dict[str, str]]
    reference: str
    tools: list[dict[str, Any]]
    images: list[str]  # media paths (or data: URLs), one <image>/<audio>/<video> placeholder each
    audios: list[str]
    videos: list[str]
    group: str  # e.g. "speaker:theo": what a module's held_out(example) decides on


class CapabilityModule(Protocol):
    """The interface each ``nexus/capabilities/<name>.py`` provides (documents shape, shares no code)."""

    FORMATTERS: dict[str, Any]
    """Detected format name -> ``fn(record) -> Example`` (raises :class:`SkipRecord` to drop it)."""

    METRIC: str
    """Name of the headline metric (``accuracy``, ...), written as ``<model>.<METRIC>``."""

    def score(self, generated: str, example: Example) -> dict[str, float]:
        """Score one generated answer against its example: shares in [0, 1] (METRIC first);
        measurements such as ``ttft_s`` are allowed too."""
        ...

    # Optional: ``REWARD_KEYS``, the scores whose mean is the verifiable reward of grpo and ppo
    # (default: METRIC alone).
    # Optional: ``generate(model, tokenizer, examples, max_new_tokens) -> list[str]`` replaces the
    # shared greedy generation of :func:`nexus.generation.batch.generate_examples` (e.g.
    # thinking-budget forcing).
    # Either may ask for capability params (params.yaml) by naming them as keyword parameters: the
    # evaluator passes ``score(generated, example, min_turns=...)`` and ``generate(..., voices=...)``.


class SkipRecord(ValueError):
    """A record the formatter cannot use; the message is the reason, counted in the stats."""


def load(name: str) -> CapabilityModule:
    """Import ``nexus.capabilities.<name>``."""
    return importlib.import_module(f"{__name__}.{name}")  # type: ignore[return-value]


def formats_of(name: str) -> frozenset[str]:
    """The detected formats (:mod:`nexus.formats` rule names) a capability has a formatter for:
    the organizer routes a file to a capability exactly when its format is one of these.
    A capability without a module yet (not implemented) has none."""
    if importlib.util.find_spec(f"{__name__}.{name}") is None:
        return frozenset()
    return frozenset(load(name).FORMATTERS)
