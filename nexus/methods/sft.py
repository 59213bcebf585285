"""Supervised methods on TRL's SFTTrainer: ``sft``, ``cpt`` (packed plain text) and ``safety``.

None of them has settings of its own: the shared capability keys (steps, batch, learning rate,
``max_length``, LoRA) drive them.
"""

from __future__ import annotations

import json
from typing import Any

from nexus.chat import prepare
from nexus.methods.base import Method, MethodRows, RowRequest, TrainContext
from nexus.methods.rows import refusal_prompts, refusal_rows
from nexus.methods.safety import safety_examples


def _sft_trainer_class(model_loss: bool) -> Any:
    """TRL's SFTTrainer, or a subclass using the model's own loss (see nexus/trainer.py)."""
    from transformers import Trainer
    from trl import SFTTrainer

    if not model_loss:
        return SFTTrainer

    class ModelLossSFTTrainer(SFTTrainer):
        """SFTTrainer whose loss is the model's own (token counting kept for the metrics)."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if "attention_mask" in inputs and model.training:
                # every rank's tokens, as TRL counts them (one tiny all-gather under several processes)
                tokens = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum())
                self._total_train_tokens += int(tokens.sum())
                self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
            return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

    return ModelLossSFTTrainer


def chat_dataset(examples: list[dict[str, Any]], tokenizer: Any) -> Any:
    """Prompt/completion chat rows as a ``datasets.Dataset`` (tools as JSON text when present).

    Tool schemas travel as JSON strings: Arrow cannot hold heterogeneous schemas as structs (TRL
    decodes a string ``tools`` column), and every row gets the column so the first row cannot drop it.
    """
    from datasets import Dataset

    rows = []
    for example in examples:
        ready = prepare(example, tokenizer)
        tools = ready.get("tools")
        rows.append({"prompt": ready["prompt"], "completion": ready["completion"],
                     "tools": json.dumps(tools, ensure_ascii=False) if tools else None})
    if not any(r["tools"] for r in rows):
        rows = [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows]
    return Dataset.from_list(rows)


def _trainer(ctx: TrainContext, dataset: Any, **config: Any) -> Any:
    from trl import SFTConfig

    args = SFTConfig(**ctx.args, dataset_num_proc=None, **config)
    return _sft_trainer_class(ctx.profile.model_loss)(
        model=ctx.model, args=args, train_dataset=dataset, processing_class=ctx.tokenizer,
        callbacks=ctx.callbacks)


def build_sft(ctx: TrainContext) -> Any:
    """SFT on the capability's examples; loss on the completion only."""
    return _trainer(ctx, chat_dataset(ctx.examples, ctx.tokenizer), completion_only_loss=True)


def build_cpt(ctx: TrainContext) -> Any:
    """Continued pre-training: plain text packed into ``max_length`` blocks, loss on every token."""
    from datasets import Dataset

    return _trainer(ctx, Dataset.from_list(ctx.rows), packing=True, dataset_text_field="text")


def build_safety(ctx: TrainContext) -> Any:
    """SFT on refusal examples (harmful -> refusal, harmless -> the base model's own help) mixed
    one to one with the capability's own examples, so the capability is kept while refusals are
    learned (a larger share of the capability's examples would dilute the refusals away)."""
    mixed = ctx.rows + ctx.examples[:len(ctx.rows)]
    return _trainer(ctx, chat_dataset(mixed, ctx.tokenizer), completion_only_loss=True)


def prepare_safety(request: RowRequest) -> MethodRows:
    """Refusal examples: harmful prompts -> the refusal, harmless ones -> the base model's answer."""
    return refusal_rows(request, safety_examples)


SFT = Method("sft", "supervised fine-tuning on the capability's prompt/completion examples",
             "trl.SFTTrainer", build_sft)
CPT = Method("cpt", "continued pre-training on plain text, packed into full-length blocks",
             "trl.SFTTrainer (packing)", build_cpt, record_kind="text")
SAFETY = Method("safety", "SFT on refusal data: harmful requests get refusals, harmless ones help",
                "trl.SFTTrainer", build_safety, record_kind="prompt_only", prepare=prepare_safety,
                eval_prompts=refusal_prompts)
