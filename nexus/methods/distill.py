"""``distill``: on-policy knowledge distillation with TRL's DistillationTrainer.

The student (the model being trained) generates completions for the capability's prompts and
learns the teacher's token distribution on them (generalized Jensen-Shannon divergence; ``beta``
interpolates between forward KL at 0 and reverse KL at 1). The teacher is
``capabilities.<cap>.teacher``: any HF folder or GGUF file sharing the student's tokenizer.
"""

from __future__ import annotations

from typing import Any

from nexus.methods import TrainContext


class TeacherMissingError(ValueError):
    """``distill`` without a usable teacher model."""


def build_distill(ctx: TrainContext) -> Any:
    """DistillationTrainer with the teacher loaded through Nexus's loader (HF folder or GGUF)."""
    from datasets import Dataset
    from trl import DistillationConfig, DistillationTrainer

    from nexus.chat import prepare
    from nexus.loading import load_model

    if not ctx.cap.teacher:
        raise TeacherMissingError(
            f"params.yaml capabilities.{ctx.capability}.teacher: method 'distill' needs a teacher "
            f"model (an HF folder or .gguf file); set it, e.g. teacher: models/capabilities/{ctx.capability}")
    teacher = load_model(ctx.cap.teacher).to(ctx.model.device)
    if teacher.config.vocab_size != ctx.model.config.vocab_size:
        raise TeacherMissingError(
            f"capabilities.{ctx.capability}.teacher: {ctx.cap.teacher} has a vocabulary of "
            f"{teacher.config.vocab_size} tokens, the student {ctx.model.config.vocab_size}; distillation "
            f"needs the same tokenizer")
    args = dict(ctx.args)
    args.pop("max_length", None)
    args["include_num_input_tokens_seen"] = "no"  # batches hold prompt ids, not input_ids: TRL counts tokens
    config = DistillationConfig(**args, beta=ctx.cap.beta, max_completion_length=ctx.cap.max_new_tokens)
    dataset = Dataset.from_list([{"prompt": prepare(e, ctx.tokenizer)["prompt"]} for e in ctx.examples])
    return DistillationTrainer(model=ctx.model, teacher_model=teacher, args=config, train_dataset=dataset,
                               processing_class=ctx.tokenizer, callbacks=ctx.callbacks)
