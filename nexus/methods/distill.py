"""``distill``: on-policy knowledge distillation with TRL's DistillationTrainer.

The student (the model being trained) generates completions for the capability's prompts and
learns the teacher's token distribution on them (generalized Jensen-Shannon divergence; ``beta``
interpolates between forward KL at 0 and reverse KL at 1). The teacher is
``methods.distill.teacher`` (or ``capabilities.<cap>.distill.teacher``): any HF folder or GGUF file
sharing the student's tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nexus.chat import prepare
from nexus.loading import load_model
from nexus.methods.base import Method, MethodSettings, TrainContext, failing


class TeacherMissingError(ValueError):
    """``distill`` without a usable teacher model."""


@dataclass(frozen=True)
class DistillSettings(MethodSettings):
    """``methods.distill``.

    Attributes:
        teacher: the teacher model (HF folder or .gguf file) with the student's tokenizer.
        beta: generalized JSD interpolation: 0 forward KL, 1 reverse KL.
    """

    teacher: str = ""
    beta: float = 0.1

    def problems(self) -> dict[str, str]:
        """``beta`` must lie in [0, 1]."""
        return failing(("beta", not 0 <= self.beta <= 1, "must be between 0 and 1"))


def build_distill(ctx: TrainContext) -> Any:
    """DistillationTrainer with the teacher loaded through Nexus's loader (HF folder or GGUF)."""
    from datasets import Dataset
    from trl import DistillationConfig, DistillationTrainer

    settings = ctx.settings(DistillSettings)
    if not settings.teacher:
        raise TeacherMissingError(
            f"params.yaml methods.distill.teacher (or capabilities.{ctx.capability}.distill.teacher): "
            f"method 'distill' needs a teacher model (an HF folder or .gguf file); set it, e.g. "
            f"teacher: models/capabilities/{ctx.capability}")
    teacher = load_model(settings.teacher).to(ctx.model.device)
    if teacher.config.vocab_size != ctx.model.config.vocab_size:
        raise TeacherMissingError(
            f"methods.distill.teacher: {settings.teacher} has a vocabulary of "
            f"{teacher.config.vocab_size} tokens, the student {ctx.model.config.vocab_size}; distillation "
            f"needs the same tokenizer")
    args = dict(ctx.args)
    args.pop("max_length", None)
    args["include_num_input_tokens_seen"] = "no"  # batches hold prompt ids, not input_ids: TRL counts tokens
    config = DistillationConfig(**args, beta=settings.beta, max_completion_length=ctx.cap.max_new_tokens)
    dataset = Dataset.from_list([{"prompt": prepare(e, ctx.tokenizer)["prompt"]} for e in ctx.examples])
    return DistillationTrainer(model=ctx.model, teacher_model=teacher, args=config, train_dataset=dataset,
                               processing_class=ctx.tokenizer, callbacks=ctx.callbacks)


DISTILL = Method("distill", "knowledge distillation from a teacher model (methods.distill.teacher)",
                 "trl.DistillationTrainer", build_distill, DistillSettings)
