"""The LLaVA recipe's two stages in one training run: projectors first, then LoRA on the language model too.

``lora_from_step: K`` (with ``adapter: lora`` and ``train_parts``): before step K only the parts train
(stage 1, alignment); from step K the language model's LoRA trains with them (stage 2). One run, one
schedule, one checkpoint series: a kill in either stage resumes where it was.
"""

from __future__ import annotations

import logging
from typing import Any

from transformers import TrainerCallback

log = logging.getLogger(__name__)


class LoraFromStep(TrainerCallback):
    """Freezes the LM's LoRA weights before ``step`` and unfreezes them from it.

    The optimizer is built with the LoRA weights in it (they are trainable when the Trainer starts;
    this callback freezes them at ``on_train_begin``, after the optimizer exists), and AdamW skips
    weights without a gradient: before ``step`` they neither move nor decay. LoRA's B matrices start
    at zero, so frozen LoRA leaves the language model as it was.
    """

    def __init__(self, model: Any, step: int) -> None:
        self.lora = [w for name, w in model.named_parameters() if "lora_" in name and w.requires_grad]
        if not self.lora:
            raise ValueError("lora_from_step: the model has no trainable LoRA weights; set adapter: lora")
        self.step = step
        self.stage = 0

    def _apply(self, global_step: int) -> None:
        stage = 2 if global_step >= self.step else 1
        if stage == self.stage:
            return
        for weight in self.lora:
            weight.requires_grad_(stage == 2)
        self.stage = stage
        log.info("stage %d at step %d: %s", stage, global_step,
                 "LoRA on the language model trains too" if stage == 2
                 else f"train_parts only; LoRA on the language model joins at step {self.step}")

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Set the stage a fresh or resumed run is in."""
        self._apply(state.global_step)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Switch to stage 2 when the step comes."""
        self._apply(state.global_step)
