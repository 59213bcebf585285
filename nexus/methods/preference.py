"""Preference methods: ``dpo`` (TRL), ``orpo`` (``trl.experimental.orpo``), ``kto`` (TRL) and
``anti-refusal`` (DPO on refusal pairs).

Rows come from the capability's preference or KTO files (:mod:`nexus.methods.data`); a capability
without one gets pairs built from its own examples (:func:`nexus.methods.rows.pairs_from_examples`).
Anti-refusal pairs come from prompts labelled harmful / harmless (:mod:`nexus.methods.safety`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from nexus.methods.base import Method, MethodRows, MethodSettings, RowRequest, TrainContext, failing
from nexus.methods.rows import BUILT_FROM_EXAMPLES, pairs_from_examples, refusal_prompts, refusal_rows
from nexus.methods.safety import anti_refusal_pairs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BetaSettings(MethodSettings):
    """Settings of a preference method whose one knob is ``beta`` (>= 0)."""

    beta: float = 0.1

    def problems(self) -> dict[str, str]:
        """``beta`` must be >= 0."""
        return failing(("beta", self.beta < 0, "must be >= 0"))


@dataclass(frozen=True)
class DPOSettings(BetaSettings):
    """``methods.dpo`` (and ``methods.anti-refusal``): ``beta`` is the strength of the implicit KL
    constraint to the reference model (TRL ``DPOConfig.beta``)."""


@dataclass(frozen=True)
class ORPOSettings(BetaSettings):
    """``methods.orpo``: ``beta`` weighs the odds-ratio term against the SFT loss (the paper's lambda)."""


@dataclass(frozen=True)
class KTOSettings(BetaSettings):
    """``methods.kto``: ``beta`` is the strength of the KL constraint to the reference model
    (TRL ``KTOConfig.beta``)."""


def prepare_pairs(request: RowRequest) -> MethodRows:
    """The preference file's pairs, else pairs built from the capability's own examples."""
    if request.found.rows:
        return request.found
    log.warning("%s: no usable preference file in its manifest; building pairs from its own examples "
                "(%s)", request.capability, BUILT_FROM_EXAMPLES)
    examples = request.examples
    pairs = pairs_from_examples(request.model, request.tokenizer, request.capability, examples,
                                min(request.limit, len(examples)), request.max_new_tokens)
    return MethodRows(pairs, BUILT_FROM_EXAMPLES)


def prepare_unpaired(request: RowRequest) -> MethodRows:
    """The KTO file's rows, else the built pairs unpaired (chosen labelled good, rejected bad)."""
    if request.found.rows:
        return request.found
    pairs = prepare_pairs(request).rows
    rows = [row for p in pairs for row in (
        {"prompt": p["prompt"], "completion": p["chosen"], "label": True},
        {"prompt": p["prompt"], "completion": p["rejected"], "label": False})]
    return MethodRows(rows, BUILT_FROM_EXAMPLES)


def prepare_anti_refusal(request: RowRequest) -> MethodRows:
    """Refusal pairs: help over refusal on harmless prompts, refusal over compliance on harmful."""
    return refusal_rows(request, anti_refusal_pairs)


def _dataset(ctx: TrainContext) -> Any:
    from datasets import Dataset

    return Dataset.from_list(ctx.rows)


def build_dpo(ctx: TrainContext) -> Any:
    """Direct preference optimization on chosen/rejected pairs."""
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(**ctx.args, beta=ctx.settings(DPOSettings).beta, dataset_num_proc=None)
    return DPOTrainer(model=ctx.model, args=args, train_dataset=_dataset(ctx),
                      processing_class=ctx.tokenizer, callbacks=ctx.callbacks)


def build_orpo(ctx: TrainContext) -> Any:
    """Odds-ratio preference optimization (SFT + odds-ratio term; no reference model)."""
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    args = ORPOConfig(**ctx.args, beta=ctx.settings(ORPOSettings).beta, dataset_num_proc=None)
    return ORPOTrainer(model=ctx.model, args=args, train_dataset=_dataset(ctx),
                       processing_class=ctx.tokenizer, callbacks=ctx.callbacks)


def build_kto(ctx: TrainContext) -> Any:
    """Kahneman-Tversky optimization on unpaired completions labelled good or bad."""
    from trl import KTOConfig, KTOTrainer

    # KTO's KL estimate pairs each completion with another prompt of the batch: it needs 2 or more.
    args = KTOConfig(**{**ctx.args, "per_device_train_batch_size": max(2, ctx.args["per_device_train_batch_size"])},
                     beta=ctx.settings(KTOSettings).beta, dataset_num_proc=None)
    return KTOTrainer(model=ctx.model, args=args, train_dataset=_dataset(ctx),
                      processing_class=ctx.tokenizer, callbacks=ctx.callbacks)


def build_anti_refusal(ctx: TrainContext) -> Any:
    """DPO on refusal pairs: help preferred on harmless prompts, refusal on harmful ones."""
    return build_dpo(ctx)


DPO = Method("dpo", "direct preference optimization on chosen/rejected pairs", "trl.DPOTrainer", build_dpo,
             DPOSettings, record_kind="preference", rows_from_examples=True, prepare=prepare_pairs)
ORPO = Method("orpo", "odds-ratio preference optimization (no reference model)",
              "trl.experimental.orpo.ORPOTrainer", build_orpo, ORPOSettings, record_kind="preference",
              rows_from_examples=True, prepare=prepare_pairs)
KTO = Method("kto", "Kahneman-Tversky optimization on unpaired good/bad completions", "trl.KTOTrainer",
             build_kto, KTOSettings, record_kind="unpaired_preference", rows_from_examples=True,
             prepare=prepare_unpaired)
ANTI_REFUSAL = Method("anti-refusal", "DPO that lowers false refusals on harmless prompts and keeps refusals "
                      "on harmful ones", "trl.DPOTrainer", build_anti_refusal, DPOSettings,
                      record_kind="prompt_only", prepare=prepare_anti_refusal, eval_prompts=refusal_prompts)
