"""Training methods: one dispatch table, each entry a library trainer.

``capabilities.<cap>.method`` in params.yaml (``METHOD=`` in ``make train``) picks a row of
:data:`METHODS`. A row says which record kinds the method trains on (:attr:`Method.needs`) and how
to build a ready ``transformers.Trainer`` from a :class:`TrainContext`; the shared trainer
(:mod:`nexus.trainer`) does everything else (loading, adapters, controller, dvclive, saving) the
same way for every method. Adding a method means one builder and one row here.

Data kinds a method can need (see :mod:`nexus.methods.data`):

- ``examples``: the capability's own formatted examples (prompt / completion / reference).
- ``preference``: prompt + chosen + rejected pairs; from the capability's preference files, else
  built from its own examples (reference as chosen, the base model's wrong answer as rejected).
- ``unpaired_preference``: prompt + completion + boolean label (KTO); from KTO files, else the
  same pairs unpaired.
- ``text``: plain text for continued pre-training.
- ``safety_prompts``: harmful and harmless prompts (``safety`` and ``anti-refusal``).

This module imports no torch: ``nexus plan`` reads :data:`METHODS` to check a method's data.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nexus.capabilities import Example
    from nexus.config import CapabilityParams, Params
    from nexus.device import DeviceProfile


@dataclass
class TrainContext:
    """Everything a method builder gets; it returns a ready ``transformers.Trainer``.

    Attributes:
        capability: registry name of the capability being trained.
        model: the model to train (PEFT-wrapped unless ``adapter: full``), on the training device.
        tokenizer: its tokenizer (pad token set).
        cap: the capability's effective params.
        params: all of params.yaml.
        args: common ``TrainingArguments`` keywords (output_dir, max_steps, learning_rate, bf16,
            use_cpu, save_steps, ...); method configs add their own keys to these.
        callbacks: controller and dvclive callbacks; pass them to the trainer.
        profile: device profile (device, bf16, model_loss).
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


@dataclass(frozen=True)
class Method:
    """One training method.

    Attributes:
        name: the value of ``capabilities.<cap>.method``.
        description: one line for ``nexus plan`` and the docs.
        library: the trainer it uses (shown in the docs and the run card).
        needs: the data kind it trains on (see the module docstring).
        builder: ``"module:function"`` under ``nexus.methods``, imported when the method runs.
    """

    name: str
    description: str
    library: str
    needs: str
    builder: str

    def build(self, ctx: TrainContext) -> Any:
        """Import the builder and return a ready trainer."""
        module, function = self.builder.split(":")
        return getattr(importlib.import_module(f"{__name__}.{module}"), function)(ctx)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("sft", "supervised fine-tuning on the capability's prompt/completion examples",
               "trl.SFTTrainer", "examples", "sft:build_sft"),
        Method("cpt", "continued pre-training on plain text, packed into full-length blocks",
               "trl.SFTTrainer (packing)", "text", "sft:build_cpt"),
        Method("distill", "knowledge distillation from a teacher model (capabilities.<cap>.teacher)",
               "trl.experimental.gkd.GKDTrainer", "examples", "distill:build_distill"),
        Method("dpo", "direct preference optimization on chosen/rejected pairs",
               "trl.DPOTrainer", "preference", "preference:build_dpo"),
        Method("orpo", "odds-ratio preference optimization (no reference model)",
               "trl.experimental.orpo.ORPOTrainer", "preference", "preference:build_orpo"),
        Method("kto", "Kahneman-Tversky optimization on unpaired good/bad completions",
               "trl.KTOTrainer", "unpaired_preference", "preference:build_kto"),
        Method("grpo", "group relative policy optimization with the capability's verifiable reward",
               "trl.GRPOTrainer", "examples", "grpo:build_grpo"),
        Method("ppo", "proximal policy optimization with a value head and the verifiable reward",
               "nexus.methods.ppo (see docs/methods.md)", "examples", "ppo:build_ppo"),
        Method("safety", "SFT on refusal data: harmful requests get refusals, harmless ones help",
               "trl.SFTTrainer", "safety_prompts", "sft:build_safety"),
        Method("anti-refusal", "DPO that lowers false refusals on harmless prompts and keeps "
               "refusals on harmful ones", "trl.DPOTrainer", "safety_prompts",
               "preference:build_anti_refusal"),
    )
}

ALIASES = {"anti_refusal": "anti-refusal"}


def resolve(name: str) -> Method:
    """The method a params value names (``anti_refusal`` is accepted for ``anti-refusal``).

    Raises:
        KeyError: no such method; the message lists the valid ones.
    """
    key = ALIASES.get(name, name)
    if key not in METHODS:
        raise KeyError(f"'{name}' is not a training method; choose one of: {', '.join(METHODS)}")
    return METHODS[key]
