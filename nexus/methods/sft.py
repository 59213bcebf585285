"""Supervised methods on TRL's SFTTrainer: ``sft``, ``cpt`` (packed plain text) and ``safety``.

None of them has settings of its own: the shared capability keys (steps, batch, learning rate,
``max_length``, LoRA) drive them.
"""

from __future__ import annotations

import json
from typing import Any

from nexus.chat import prepare
from nexus.device import DeviceProfile
from nexus.methods.base import Method, MethodRows, RowRequest, TrainContext
from nexus.methods.rows import refusal_prompts, refusal_rows
from nexus.methods.safety import safety_examples


def labelled_loss(model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
    """The model's next-token loss with logits computed only where a label is trained.

    The model's own forward runs with ``logits_to_keep`` set to the positions whose next token is
    labelled (in any row), so the LM head and the cross-entropy skip the prompt and the padding;
    the loss is the same sum over labelled tokens divided by ``num_items_in_batch`` (their count
    when None) that ``model(**inputs).loss`` gives. Works on padded batches and on TRL's
    padding-free rows (``position_ids``, no ``attention_mask``).
    """
    import torch
    from torch.nn.functional import cross_entropy

    labels = inputs["labels"]
    targets = labels[:, 1:]
    keep = (targets != -100).any(dim=0).nonzero().flatten()
    forward = {k: v for k, v in inputs.items() if k != "labels"} | {"use_cache": False}
    logits = model(**forward, logits_to_keep=keep).logits
    kept = targets[:, keep]
    total = cross_entropy(logits.float().flatten(0, 1), kept.flatten(), ignore_index=-100, reduction="sum")
    count = (kept != -100).sum() if num_items_in_batch is None else num_items_in_batch
    return total / torch.as_tensor(count, device=total.device).clamp(min=1)


def _sft_trainer_class(profile: DeviceProfile) -> Any:
    """TRL's SFTTrainer, or a subclass whose training loss is :func:`labelled_loss` (see
    nexus/device.py for when each is faster)."""
    from transformers import Trainer
    from trl import SFTTrainer

    if not profile.model_loss:
        return SFTTrainer

    class LabelledLossSFTTrainer(SFTTrainer):
        """SFTTrainer whose loss is the model's own, scored at labelled positions only (token
        counting kept for the metrics, as TRL counts them)."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = {**inputs, "use_cache": False}  # a cache would also hide packed rows from the mask
            if not model.training or return_outputs:
                return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)
            # every rank's tokens, as TRL counts them (one tiny all-gather under several processes)
            local = (inputs["attention_mask"].sum() if "attention_mask" in inputs
                     else inputs["input_ids"].new_tensor(inputs["input_ids"].size(1)))
            self._total_train_tokens += int(self.accelerator.gather_for_metrics(local).sum())
            self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
            if not profile.labelled_logits:
                return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)
            return labelled_loss(model, inputs, num_items_in_batch)

    return LabelledLossSFTTrainer


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
    """An SFT trainer on ``dataset``; chat rows go padding-free where the profile says so: TRL
    tokenizes and truncates them to ``max_length`` as usual, then its own collator concatenates
    each batch into one row with ``position_ids`` (no padding computed; attention stays within
    each example, transformers masks packed rows by their ``position_ids``)."""
    from trl import SFTConfig, SFTTrainer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    padding_free = ctx.profile.padding_free and not config.get("packing")
    settings = {**ctx.args, "dataset_num_proc": None, **config}
    if padding_free:  # one flat row holds no padding: every input token counts
        settings["include_num_input_tokens_seen"] = "all"
    trainer: SFTTrainer = _sft_trainer_class(ctx.profile)(
        model=ctx.model, args=SFTConfig(**settings), train_dataset=dataset, processing_class=ctx.tokenizer,
        callbacks=ctx.callbacks)
    if padding_free:
        trainer.data_collator = DataCollatorForLanguageModeling(
            pad_token_id=ctx.tokenizer.pad_token_id, padding_free=True)
    return trainer


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
