"""The shared trainer: every train stage runs :func:`run_capability`.

It loads the base model (HF folder or GGUF), wraps it in a LoRA adapter (PEFT) unless
``adapter: full``, formats the capability's records into chat examples, and trains with the
library trainer that :data:`nexus.methods.METHODS` names for the capability's ``method``. The controller
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nexus import methods, paths, registry, results
from nexus.config import CapabilityParams, Params, capability_params
from nexus.device import DeviceProfile
from nexus.examples import ExampleSet, capability_examples
from nexus.methods import TrainContext

log = logging.getLogger(__name__)

EXIT_TERMINATED = 143  # 128 + SIGTERM: checkpoint written, stage not complete


class CapabilityUnavailableError(ValueError):
    """The chosen capability or method cannot run with this model or this build of Nexus."""


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
        "include_num_input_tokens_seen": "non_padding",
        "dataloader_num_workers": 0,
    }


def _apply_adapter(model: Any, cap: CapabilityParams) -> Any:
    """LoRA on every linear layer (QLoRA: on the 4-bit base, prepared for k-bit training)."""
    if cap.adapter == "full":
        return model
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if cap.adapter == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    config = LoraConfig(r=cap.lora_r, lora_alpha=cap.lora_alpha, lora_dropout=cap.lora_dropout,
                        target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def _load_start_model(cap: CapabilityParams, profile: DeviceProfile) -> Any:
    """The start model, 4-bit for QLoRA, with RoPE scaled for ``long_context``."""
    from nexus.loading import load_model, long_context_overrides

    overrides = long_context_overrides(cap.init_from, cap.long_context) if cap.long_context else {}
    model = load_model(cap.init_from, quantize_4bit=cap.adapter == "qlora", config_overrides=overrides)
    return model if cap.adapter == "qlora" else model.to(profile.device)


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
    from nexus.loading import load_tokenizer
    from nexus.methods.rewards import reward_of
    from nexus.methods.rows import check_method_data, prepare_rows

    cap = capability_params(params, capability)
    try:
        method = methods.resolve(cap.method)
    except KeyError as err:
        raise CapabilityUnavailableError(f"params.yaml capabilities.{capability}.method: {err.args[0]}") from err
    check_modalities(capability, modality_file)
    found = check_method_data(method, capability, organized_dir)  # fails before any model loads
    torch.manual_seed(params.base.seed)
    profile = DeviceProfile.detect()
    data = capability_examples(capability, params, organized_dir)
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
    start_model = _load_start_model(cap, profile)
    rows = prepare_rows(method, found, capability, cap, start_model, tokenizer, train_rows, params.base.seed)
    model = _apply_adapter(start_model, cap)
    log.info("%s (%s via %s, %s from %s on %s, bf16=%s, model loss=%s)", trainable_summary(model),
             method.name, method.library, cap.adapter, cap.init_from, profile.device, profile.bf16,
             profile.model_loss)

    report = Path(report_dir) if report_dir else paths.train_report_dir(capability)
    live = Live(dir=str(report), dvcyaml=None, save_dvc_exp=False, resume=resume is not None)
    controller = TrainingController(params.controller, schedule, logger=log)
    trainer = method.build(TrainContext(
        capability=capability, model=model, tokenizer=tokenizer, cap=cap, params=params,
        args=_training_args(cap, params, ckpt_dir, profile), callbacks=[controller, DVCLiveCallback(live=live)],
        profile=profile, examples=train_rows, rows=rows.rows, reward=reward_of(capability)))
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
    # real (non-padding) tokens seen: TRL's SFT count, the Trainer's own, or TRL's logged num_tokens
    logged = next((float(h["num_tokens"]) for h in reversed(trainer.state.log_history) if "num_tokens" in h), 0)
    tokens = int(getattr(trainer, "_total_train_tokens", 0) or trainer.state.num_input_tokens_seen or logged)
    summary = {
        "capability": capability,
        "method": method.name,
        "adapter": cap.adapter,
        "steps": trainer.state.global_step,
        "train_loss": round(float(output.training_loss), 4),
        "final_loss": round(float(next((h["loss"] for h in reversed(trainer.state.log_history)
                                        if "loss" in h), float("nan"))), 4),
        "train_examples": len(rows.rows) if method.needs != "examples" else len(train_rows),
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
            "data_files": data.files, "method_data": {"source": rows.source, "rows": len(rows.rows)},
            "library": method.library, "versions": _library_versions()}
    if rows.held_out:  # safety prompts the eval stage scores (never trained on)
        card["held_out_prompts"] = rows.held_out
    # A chained or long-context LoRA is saved merged into its start model: one full model whose
    # config (RoPE scaling included) loads on its own. QLoRA keeps the adapter (the base is 4-bit).
    merge_into_start = (chained or cap.long_context) and cap.adapter == "lora"
    final = trainer.model.merge_and_unload() if merge_into_start else trainer.model
    with atomic_dir(out) as tmp:
        final.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json_atomic(card, tmp / "run_card.json")
    clear_checkpoints(ckpt_dir)
    results.append_row("training", {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **summary})
    log.info("saved %s: %s", out, json.dumps(summary))
    return summary
