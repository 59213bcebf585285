"""Preference methods: ``dpo`` (TRL), ``orpo`` (``trl.experimental.orpo``), ``kto`` (TRL) and
``anti-refusal`` (DPO on refusal pairs). Rows come from :mod:`nexus.methods.data` or, for a
capability without preference files, from :mod:`nexus.methods.pairs`."""

from __future__ import annotations

from typing import Any

from nexus.methods import TrainContext


def _dataset(ctx: TrainContext) -> Any:
    from datasets import Dataset

    return Dataset.from_list(ctx.rows)


def build_dpo(ctx: TrainContext) -> Any:
    """Direct preference optimization on chosen/rejected pairs."""
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(**ctx.args, beta=ctx.cap.beta, dataset_num_proc=None)
    return DPOTrainer(model=ctx.model, args=args, train_dataset=_dataset(ctx),
                      processing_class=ctx.tokenizer, callbacks=ctx.callbacks)


def build_orpo(ctx: TrainContext) -> Any:
    """Odds-ratio preference optimization (SFT + odds-ratio term; no reference model)."""
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    args = ORPOConfig(**ctx.args, beta=ctx.cap.beta, dataset_num_proc=None)
    return ORPOTrainer(model=ctx.model, args=args, train_dataset=_dataset(ctx),
                       processing_class=ctx.tokenizer, callbacks=ctx.callbacks)


def build_kto(ctx: TrainContext) -> Any:
    """Kahneman-Tversky optimization on unpaired completions labelled good or bad."""
    from trl import KTOConfig, KTOTrainer

    # KTO's KL estimate pairs each completion with another prompt of the batch: it needs 2 or more.
    args = KTOConfig(**{**ctx.args, "per_device_train_batch_size": max(2, ctx.cap.batch_size)},
                     beta=ctx.cap.beta, dataset_num_proc=None)
    return KTOTrainer(model=ctx.model, args=args, train_dataset=_dataset(ctx),
                      processing_class=ctx.tokenizer, callbacks=ctx.callbacks)


def build_anti_refusal(ctx: TrainContext) -> Any:
    """DPO on refusal pairs: help preferred on harmless prompts, refusal on harmful ones."""
    return build_dpo(ctx)
