"""The shared trainer: every train stage runs :func:`run_capability`.

It loads the base model (HF folder or GGUF), wraps it in a LoRA adapter (PEFT) unless
``adapter: full``, formats the capability's records into chat examples, and trains with the
library trainer that :data:`METHODS` names for the capability's ``method``. The controller
callback (pause/resume, cooldown, thermal guard, signal checkpoints) and the dvclive callback
(metrics and loss curve) are attached to every run.

CPU-safe defaults (see docs/performance.md): no gradient checkpointing, bf16 autocast only where
the CPU (or GPU) has bf16, and on CPU the model's own loss instead of TRL's fused LM head, which
without Triton scores every position and recomputes LM-head tiles in backward.
"""

from __future__ import annotations

import json
import logging
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nexus import paths, registry, results
from nexus.config import CapabilityParams, Params, capability_params
from nexus.examples import ExampleSet, load_examples

log = logging.getLogger(__name__)

EXIT_TERMINATED = 143  # 128 + SIGTERM: checkpoint written, stage not complete


class CapabilityUnavailableError(ValueError):
    """The chosen capability or method cannot run with this model or this build of Nexus."""


@dataclass(frozen=True)
class DeviceProfile:
    """How this machine trains: device, mixed precision, and which loss path is fastest."""

    device: str
    bf16: bool
    model_loss: bool  # use model(**inputs).loss rather than TRL's fused LM head

    @staticmethod
    def detect() -> DeviceProfile:
        """Inspect the accelerator (or CPU flags) once."""
        import torch

        if torch.cuda.is_available():
            import importlib.util

            return DeviceProfile(
                "cuda", torch.cuda.is_bf16_supported(), importlib.util.find_spec("triton") is None
            )
        return DeviceProfile("cpu", _cpu_has_bf16(), True)


def _cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 matmuls (AVX512-BF16 or AMX-BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return platform.machine() == "arm64"
    return " avx512_bf16" in flags or " amx_bf16" in flags


def check_modalities(capability: str, modality_file: str | Path) -> None:
    """Stop with a message saying what to run when the model lacks a required modality.

    Raises:
        CapabilityUnavailableError: a required modality is missing.
    """
    from nexus.modality import missing_message

    report = json.loads(Path(modality_file).read_text(encoding="utf-8"))
    message = missing_message(report, registry.CAPABILITIES[capability].modalities, capability)
    if message:
        raise CapabilityUnavailableError(message)


def trainable_summary(model: Any) -> str:
    """One start-up line: parameters per part (base frozen/trained, adapters)."""
    base = adapters = trained_base = 0
    for name, param in model.named_parameters():
        if "lora_" in name or "modules_to_save" in name:
            adapters += param.numel()
        else:
            base += param.numel()
            trained_base += param.numel() if param.requires_grad else 0
    total = base + adapters
    trainable = adapters + trained_base
    return (
        f"trainable {trainable / 1e6:.2f}M of {total / 1e6:.2f}M parameters "
        f"({100 * trainable / max(total, 1):.2f}%): base {base / 1e6:.2f}M "
        f"({'trained' if trained_base else 'frozen'}), adapters {adapters / 1e6:.2f}M"
    )


def schedule_of(cap: CapabilityParams, params: Params, data: ExampleSet) -> dict[str, Any]:
    """What defines a run's schedule; a resume refuses when any of it changed."""
    keys = ("method", "adapter", "init_from", "epochs", "max_steps", "learning_rate", "batch_size", "grad_accum",
            "sample_size", "eval_size", "max_length", "lora_r", "lora_alpha", "lora_dropout")
    return {**{k: getattr(cap, k) for k in keys}, "seed": params.base.seed,
            "base_model": params.base.model, "data": data.fingerprint}


def drop_long(examples: list[dict[str, Any]], tokenizer: Any, max_length: int) -> tuple[list, int]:
    """Keep examples whose full chat rendering fits ``max_length`` tokens; count the others."""
    from nexus.chat import token_ids

    kept = [example for example in examples if len(token_ids(example, tokenizer)) <= max_length]
    return kept, len(examples) - len(kept)


def _sft(model: Any, tokenizer: Any, train_rows: list[dict[str, Any]], args: dict[str, Any],
         callbacks: list[Any], profile: DeviceProfile) -> Any:
    """TRL SFTTrainer on prompt/completion chat rows (loss on the completion only)."""
    from datasets import Dataset
    from transformers import Trainer
    from trl import SFTConfig, SFTTrainer

    from nexus.chat import prepare

    class _ModelLossSFTTrainer(SFTTrainer):
        """SFTTrainer whose loss is the model's own (see module docstring); metrics kept."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if "attention_mask" in inputs and model.training:
                self._total_train_tokens += int(inputs["attention_mask"].sum())
                self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
            return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

    trainer_cls = _ModelLossSFTTrainer if profile.model_loss else SFTTrainer
    # Tool schemas travel as JSON strings: Arrow cannot hold heterogeneous schemas as structs (TRL
    # decodes a string `tools` column), and every row gets the column so the first row cannot drop it.
    rows = []
    for row in train_rows:
        ready = prepare(row, tokenizer)
        tools = ready.get("tools")
        rows.append({"prompt": ready["prompt"], "completion": ready["completion"],
                     "tools": json.dumps(tools, ensure_ascii=False) if tools else None})
    if not any(r["tools"] for r in rows):
        rows = [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows]
    dataset = Dataset.from_list(rows)
    config = SFTConfig(**args, completion_only_loss=True, dataset_num_proc=None)
    return trainer_cls(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                       callbacks=callbacks)


# Training methods: name -> builder returning a ready trainer. Issue "training methods" adds the rest.
METHODS: dict[str, Callable[..., Any]] = {"sft": _sft}


def _training_args(cap: CapabilityParams, params: Params, ckpt_dir: Path, profile: DeviceProfile) -> dict:
    return {
        "output_dir": str(ckpt_dir),
        "num_train_epochs": cap.epochs,
        "max_steps": cap.max_steps,
        "per_device_train_batch_size": cap.batch_size,
        "gradient_accumulation_steps": cap.grad_accum,
        "learning_rate": cap.learning_rate,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0.05,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": params.controller.checkpoint_every_steps,
        "save_total_limit": 2,
        "seed": params.base.seed,
        "max_length": cap.max_length,
        "use_cpu": profile.device == "cpu",
        "bf16": profile.bf16,
        "gradient_checkpointing": False,
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }


def _apply_adapter(model: Any, cap: CapabilityParams) -> Any:
    if cap.adapter == "full":
        return model
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=cap.lora_r, lora_alpha=cap.lora_alpha, lora_dropout=cap.lora_dropout,
                        target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def _library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "dvc", "dvclive"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


def run_capability(
    capability: str,
    params: Params,
    out_dir: str | Path,
    organized_dir: str | Path = paths.ORGANIZED_DIR,
    modality_file: str | Path = paths.MODALITY_FILE,
    report_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Train one capability and save its adapter (or full model), tokenizer and run card.

    Returns:
        The run's summary (also written to ``<out_dir>/run_card.json`` and ``results/training.csv``).

    Raises:
        CapabilityUnavailableError: unknown method or missing modality.
        ScheduleChangedError: a checkpoint exists whose schedule differs from params.yaml.
        NoDataError: no usable records.
        SystemExit: with 143 after SIGTERM (checkpoint written; rerun to resume).
    """
    import torch
    from dvclive import Live
    from transformers.integrations import DVCLiveCallback

    from nexus.atomic import atomic_dir, write_json_atomic
    from nexus.checkpoints import clear_checkpoints, find_resume_checkpoint
    from nexus.controller import TrainingController
    from nexus.loading import load_model, load_tokenizer

    cap = capability_params(params, capability)
    if cap.method not in METHODS:
        raise CapabilityUnavailableError(
            f"params.yaml capabilities.{capability}.method: '{cap.method}' is not available; "
            f"available: {', '.join(METHODS)}"
        )
    check_modalities(capability, modality_file)
    torch.manual_seed(params.base.seed)
    profile = DeviceProfile.detect()
    data = load_examples(capability, organized_dir, cap.eval_size, cap.sample_size, params.base.seed)
    tokenizer = load_tokenizer(params.base.model)
    train_rows, too_long = drop_long(data.train, tokenizer, cap.max_length)
    log.info("%s: %d records kept, %d held out for eval, %d training examples, %d dropped as longer "
             "than max_length=%d; dropped while formatting: %s", capability, data.kept, len(data.eval),
             len(train_rows), too_long, cap.max_length, dict(data.dropped) or "none")
    if not train_rows:
        raise CapabilityUnavailableError(
            f"capability '{capability}': no training example fits max_length={cap.max_length}; "
            f"raise capabilities.{capability}.max_length in params.yaml"
        )
    schedule = schedule_of(cap, params, data)
    ckpt_dir = paths.checkpoint_dir(capability)
    resume = find_resume_checkpoint(ckpt_dir, schedule)
    chained = cap.init_from != params.base.model  # starts from another capability's output
    model = _apply_adapter(load_model(cap.init_from), cap)
    log.info("%s (%s, %s from %s on %s, bf16=%s, model loss=%s)", trainable_summary(model), cap.method,
             cap.adapter, cap.init_from, profile.device, profile.bf16, profile.model_loss)

    report = Path(report_dir) if report_dir else paths.train_report_dir(capability)
    live = Live(dir=str(report), dvcyaml=None, save_dvc_exp=False, resume=resume is not None)
    controller = TrainingController(params.controller, schedule, logger=log)
    trainer = METHODS[cap.method](model, tokenizer, train_rows,
                                  _training_args(cap, params, ckpt_dir, profile),
                                  [controller, DVCLiveCallback(live=live)], profile)
    controller.install_signal_handlers()
    started = time.perf_counter()
    try:
        if resume:
            log.info("resuming from %s", resume)
        output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    finally:
        controller.restore_signal_handlers()
    if controller.stopped_by_signal:
        log.info("stopped by SIGTERM at step %d; checkpoint in %s; rerun the stage to resume",
                 trainer.state.global_step, ckpt_dir)
        sys.exit(EXIT_TERMINATED)
    elapsed = time.perf_counter() - started
    tokens = int(getattr(trainer, "_total_train_tokens", 0))  # real (non-padding) tokens seen
    summary = {
        "capability": capability,
        "method": cap.method,
        "adapter": cap.adapter,
        "steps": trainer.state.global_step,
        "train_loss": round(float(output.training_loss), 4),
        "final_loss": round(float(next((h["loss"] for h in reversed(trainer.state.log_history)
                                        if "loss" in h), float("nan"))), 4),
        "train_examples": len(train_rows),
        "eval_examples": len(data.eval),
        "runtime_s": round(elapsed, 1),
        "tokens_per_s": round(tokens / elapsed, 1) if elapsed else 0.0,
        "quick": cap.quick,
        "base_model": params.base.model,
        "data_fingerprint": data.fingerprint,
    }
    for key in ("train_loss", "final_loss", "steps", "runtime_s", "tokens_per_s"):
        live.summary[key] = summary[key]
    live.make_summary()

    out = Path(out_dir)
    card = {**summary, "params": asdict(cap), "seed": params.base.seed, "device": asdict(profile),
            "dropped": {**data.dropped, f"longer than max_length={cap.max_length}": too_long},
            "data_files": data.files, "versions": _library_versions()}
    # A chained LoRA is saved merged into its start model: one full model, loadable on its own.
    final = trainer.model.merge_and_unload() if chained and cap.adapter == "lora" else trainer.model
    with atomic_dir(out) as tmp:
        final.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json_atomic(card, tmp / "run_card.json")
    clear_checkpoints(ckpt_dir)
    results.append_row("training", {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **summary})
    log.info("saved %s: %s", out, json.dumps(summary))
    return summary
