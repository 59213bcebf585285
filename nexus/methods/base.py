"""What a training method is made of (TRL's trainer/config pattern): a settings dataclass, the rows
it trains on and a builder that returns a ready ``transformers.Trainer``.

Each method module (:mod:`~nexus.methods.sft`, :mod:`~nexus.methods.distill`,
:mod:`~nexus.methods.preference`, :mod:`~nexus.methods.grpo`, :mod:`~nexus.methods.ppo`) defines
its :class:`MethodSettings` subclasses, its row preparation (a :class:`RowRequest` in, a
:class:`MethodRows` out) and its builders, and declares each method as one :class:`Method`;
:data:`nexus.methods.METHODS` lists them. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from nexus.capabilities import Example
    from nexus.config import CapabilityParams, Params
    from nexus.device import DeviceProfile

S = TypeVar("S", bound="MethodSettings")


@dataclass(frozen=True)
class MethodSettings:
    """A method's own knobs: a frozen dataclass with a default for every field.

    params.yaml sets them in ``methods.<method>`` (every capability) and
    ``capabilities.<cap>.<method>`` (one capability, over the former); :mod:`nexus.config` reads
    both with the same typed, collect-every-error rules as every other section. A method without
    knobs uses this class itself.
    """

    def problems(self) -> dict[str, str]:
        """Field name -> what is wrong with its value; empty when every value is valid."""
        return {}


def failing(*checks: tuple[str, bool, str]) -> dict[str, str]:
    """``{key: message}`` for each ``(key, is_bad, message)`` whose value is bad (for ``problems``)."""
    return {key: message for key, bad, message in checks if bad}


@dataclass
class TrainContext:
    """Everything a method builder gets; it returns a ready ``transformers.Trainer``.

    Attributes:
        capability: registry name of the capability being trained.
        model: the model to train (PEFT-wrapped unless ``adapter: full``), on the training device.
        tokenizer: its tokenizer (pad token set).
        cap: the capability's effective params; ``cap.method_settings`` holds the method's settings.
        params: all of params.yaml.
        args: common ``TrainingArguments`` keywords (output_dir, max_steps, learning_rate, bf16,
            use_cpu, save_steps, ...); method configs add their own keys to these.
        callbacks: controller and dvclive callbacks; pass them to the trainer.
        profile: device profile (device, bf16, loss path, padding-free batches).
        examples: the capability's formatted training examples.
        rows: the method's own rows when it needs more than ``examples`` (pairs, text, prompts).
        reward: verifiable reward of one completion text for one example, in [0, 1].
    """

    capability: str
    model: Any
    tokenizer: Any
    cap: CapabilityParams
    params: Params
    args: dict[str, Any]
    callbacks: list[Any]
    profile: DeviceProfile
    examples: list[Example]
    rows: list[dict[str, Any]] = field(default_factory=list)
    reward: Callable[[str, Example], float] | None = None

    def settings(self, kind: type[S]) -> S:
        """The method's settings from params.yaml, or ``kind``'s defaults when ``cap`` was built in
        code without them.

        Raises:
            TypeError: ``cap.method_settings`` belongs to another method.
        """
        found = self.cap.method_settings
        if found is None:
            return kind()
        if not isinstance(found, kind):
            raise TypeError(f"capability '{self.capability}': method '{self.cap.method}' needs "
                            f"{kind.__name__}, got {type(found).__name__}; load params with "
                            f"nexus.methods.load_params")
        return found


@dataclass
class MethodRows:
    """A method's rows and where they came from (shown in the log and the run card)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    source: str = "the capability's own examples"
    files: list[str] = field(default_factory=list)
    held_out: list[dict[str, Any]] = field(default_factory=list)  # safety prompts kept for evaluation


@dataclass
class RowRequest:
    """What a method's row preparation (:attr:`Method.prepare`) gets.

    Attributes:
        found: the rows read from the method's files (:func:`nexus.methods.rows.check_method_data`).
        capability: registry name.
        cap: the capability's effective params.
        model, tokenizer: the start model as loaded, before training.
        examples: the capability's formatted training examples.
        seed: ``base.seed``.
        limit: how many rows the run can use (:func:`nexus.methods.rows.needed_examples`).
        max_new_tokens: per generated reply.
    """

    found: MethodRows
    capability: str
    cap: CapabilityParams
    model: Any
    tokenizer: Any
    examples: list[dict[str, Any]]
    seed: int
    limit: int
    max_new_tokens: int


@dataclass(frozen=True)
class Method:
    """One training method: what its module declares.

    Attributes:
        name: the value of ``capabilities.<cap>.method``.
        description: one line for ``nexus plan`` and the docs.
        library: the trainer it uses (shown in the docs and the run card).
        build: returns a ready trainer for a :class:`TrainContext` (torch imported inside).
        settings: its settings dataclass (``methods.<name>`` in params.yaml).
        record_kind: the organizer's record kind of its own data files, read from the capability's
            manifest (``method_files``); None when it trains on the capability's examples only.
        rows_from_examples: without such a file, :attr:`prepare` builds the rows from the
            capability's own examples instead of failing.
        prepare: completes the rows once the start model is loaded (generation); None keeps the
            rows as read.
        eval_prompts: the labelled prompts the eval stage scores for this method (held out of
            training), as ``(capability, cap, seed, organized_dir) -> prompts``; None for none.
    """

    name: str
    description: str
    library: str
    build: Callable[[TrainContext], Any]
    settings: type[MethodSettings] = MethodSettings
    record_kind: str | None = None
    rows_from_examples: bool = False
    prepare: Callable[[RowRequest], MethodRows] | None = None
    eval_prompts: Callable[[str, CapabilityParams, int, str | Path], list[dict[str, Any]]] | None = None
