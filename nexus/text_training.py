"""How a text capability's run trains the language model itself (the trainer's ``text`` kind).

LoRA on every linear layer (QLoRA: on the 4-bit base), or the whole model (``adapter: full``),
through the library trainer the capability's method names (:mod:`nexus.methods`: TRL's SFT, DPO,
GRPO, ...). The output is the adapter, or a full model when a chained or long-context LoRA is
merged into its start model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nexus import ranks
from nexus.config import CapabilityParams, Params
from nexus.device import DeviceProfile
from nexus.launch_params import SHARDED_WEIGHTS
from nexus.loading import load_model, long_context_overrides
from nexus.methods import TrainContext
from nexus.methods.rewards import reward_of
from nexus.methods.rows import prepare_rows


def apply_adapter(model: Any, cap: CapabilityParams) -> Any:
    """LoRA on every linear layer (QLoRA: on the 4-bit base, prepared for k-bit training); the
    model itself for ``adapter: full``."""
    if cap.adapter == "full":
        return model
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if cap.adapter == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    config = LoraConfig(r=cap.lora_r, lora_alpha=cap.lora_alpha, lora_dropout=cap.lora_dropout,
                        target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def load_start_model(cap: CapabilityParams, profile: DeviceProfile) -> Any:
    """The start model (``init_from``), 4-bit for QLoRA, with RoPE scaled for ``long_context``."""
    overrides = long_context_overrides(cap.init_from, cap.long_context) if cap.long_context else {}
    model = load_model(cap.init_from, quantize_4bit=cap.adapter == "qlora", config_overrides=overrides)
    return model if cap.adapter == "qlora" else model.to(profile.device)


class TextKind:
    """The language model itself: LoRA/QLoRA/full through the method's TRL (or PEFT) trainer."""

    schedule_keys: tuple[str, ...] = ()

    def check(self, run: Any, params: Params) -> str | None:
        """A LoRA saved merged into its start model needs the whole model on one process: not under
        a sharding strategy (the method itself is resolved before)."""
        sharded = params.launch.world_size > 1 and params.launch.strategy in SHARDED_WEIGHTS
        if sharded and self._merge_into_start(run, params):
            return (f"capabilities.{run.capability}: a chained or long-context LoRA is saved merged into its start "
                    f"model, which needs the whole model in one process; use launch.strategy ddp or zero2 for it")
        return None

    def start(self, run: Any, tokenizer: Any, params: Params) -> tuple[Any, Any]:
        start_model = load_start_model(run.cap, run.profile)
        run.rows = prepare_rows(run.method, run.rows, run.capability, run.cap, start_model, tokenizer,
                                run.split.train, params.base.seed)
        return apply_adapter(start_model, run.cap), tokenizer

    def build(self, run: Any, model: Any, tokenizer: Any, args: dict[str, Any], callbacks: list[Any],
              params: Params) -> Any:
        return run.method.build(TrainContext(
            capability=run.capability, model=model, tokenizer=tokenizer, cap=run.cap, params=params, args=args,
            callbacks=callbacks, profile=run.profile, examples=run.split.train, rows=run.rows.rows,
            reward=reward_of(run.capability)))

    @staticmethod
    def _merge_into_start(run: Any, params: Params) -> bool:
        # A chained or long-context LoRA is saved merged into its start model: one full model whose
        # config (RoPE scaling included) loads on its own. QLoRA keeps the adapter (the base is 4-bit).
        chained = run.cap.init_from != params.base.model  # starts from another capability's output
        return (chained or bool(run.cap.long_context)) and run.cap.adapter == "lora"

    def card(self, run: Any, params: Params) -> dict[str, Any]:
        is_adapter = run.cap.adapter not in ("full", "none") and not self._merge_into_start(run, params)
        return {"library": run.method.library, "is_adapter": is_adapter}

    def save(self, run: Any, trainer: Any, tokenizer: Any, folder: Path, params: Params) -> None:
        from nexus.model_card import point_adapter_at_base

        if ranks.is_sharded(trainer):
            trainer.save_model(str(folder))  # FSDP / ZeRO: every rank gathers the shards, rank 0 writes
        else:
            final = trainer.model.merge_and_unload() if self._merge_into_start(run, params) else trainer.model
            final.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        if (folder / "adapter_config.json").is_file():
            point_adapter_at_base(folder / "adapter_config.json", run.cap.init_from)
