"""The shared trainer: every train stage runs :func:`run_capability`.

It loads the base model (HF folder or GGUF), wraps it in a LoRA adapter (PEFT) unless
``adapter: full``, formats the capability's records into chat examples, and trains with the
library trainer that :data:`nexus.methods.METHODS` names for the capability's ``method``. The controller
callback (pause/resume, cooldown, thermal guard, signal checkpoints) and the dvclive callback
(metrics and loss curve) are attached to every run.

Resume: a rerun continues from the newest checkpoint that verifies (see :mod:`nexus.checkpoints`),
after removing what a killed run left (temporary folders, unverifiable newer checkpoints). When
that checkpoint is already at ``max_steps`` nothing is trained again: its weights are loaded and
saved. Losses in the run card and the dvclive curve cover the whole run (the checkpoint's
``trainer_state.json`` carries the steps before the kill), on the Trainer's step axis.

CPU-safe defaults (see docs/performance.md): no gradient checkpointing, bf16 autocast only where
the CPU (or GPU) has bf16, and on CPU the model's own forward with logits at labelled positions
only (:func:`nexus.methods.sft.labelled_loss`) on padding-free SFT batches, instead of TRL's fused
LM head, which without Triton scores every position and recomputes LM-head tiles in backward.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from nexus import diffusion_training, launch, media_training, methods, paths, ranks, registry, results, text_training
from nexus.atomic import write_text_atomic
from nexus.checkpoints import (
    TRAINER_STATE,
    checkpoint_progress,
    clear_checkpoints,
    find_resume_checkpoint,
    tidy_checkpoints,
)
from nexus.config import CapabilityParams, Params
from nexus.controller import TrainingController
from nexus.device import DeviceProfile
from nexus.live_metrics import LiveAtGlobalStep, live_logger
from nexus.loading import load_tokenizer
from nexus.methods.rows import MethodRows, check_method_data
from nexus.modality import missing_message
from nexus.prepare import PreparedSplit, split_for
from nexus.signals import EXIT_CODE_SIGTERM, StageSignals
from nexus.train_progress import attach_training_progress

log = logging.getLogger(__name__)

EXIT_TERMINATED = EXIT_CODE_SIGTERM  # 128 + SIGTERM: checkpoint written (or nothing trained yet)


class CapabilityUnavailableError(ValueError):
    """The chosen capability or method cannot run with this model or this build of Nexus."""


def check_modalities(capability: str, modality_file: str | Path, start: str | Path | None = None) -> None:
    """Stop with a message saying what to run when the model lacks a required modality: the base
    (the detect stage's ``modality_file``), or ``start`` when a run starts from another model
    (a capability's output, e.g. omni's composite).

    Raises:
        CapabilityUnavailableError: a required modality is missing.
    """
    if start is not None and (Path(start) / "config.json").is_file():  # an adapter folder: the base decides
        from nexus.modality import detect_modalities

        report = detect_modalities(start)
    else:
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
        f"({f'{trained_base / 1e6:.2f}M of it trained' if trained_base else 'frozen'}), adapters {adapters / 1e6:.2f}M"
    )


def schedule_of(cap: CapabilityParams, params: Params, split: PreparedSplit) -> dict[str, Any]:
    """What defines a run's schedule; a resume refuses when any of it changed."""
    keys = ("method", "adapter", "init_from", "epochs", "max_steps", "learning_rate", "batch_size", "grad_accum",
            "sample_size", "eval_size", "max_length", "lora_r", "lora_alpha", "lora_dropout")
    keys += kind_of(split.capability).schedule_keys
    return {**{k: getattr(cap, k) for k in keys}, "seed": params.base.seed,
            "base_model": params.base.model, "data": split.fingerprint}


def batch_split(cap: CapabilityParams, capability: str = "capabilities") -> tuple[int, int]:
    """``(per-process batch, accumulation steps)`` for this run's world size: the global batch
    ``batch_size x grad_accum`` split (:func:`nexus.ranks.split_global_batch`). Quick mode (a
    smoke run of batch 1) takes one example per process per step when its batch cannot split.

    Raises:
        BatchSplitError: the world size does not divide the global batch of a full run.
    """
    world = ranks.world_size()
    if cap.quick and (cap.batch_size * cap.grad_accum) % world:
        return 1, 1
    return ranks.split_global_batch(cap.batch_size, cap.grad_accum, world, where=f"capabilities.{capability}")


def training_arguments(cap: CapabilityParams, params: Params, ckpt_dir: Path, profile: DeviceProfile,
                       capability: str = "capabilities") -> dict:
    """The ``TrainingArguments`` keywords every method shares (method configs add their own).

    ``batch_size x grad_accum`` is the global batch: several processes split it
    (:func:`nexus.ranks.split_global_batch`), so the schedule is the same on any world size.

    Raises:
        BatchSplitError: the world size does not divide the global batch.
    """
    per_process, accum = batch_split(cap, capability)
    return {
        "output_dir": str(ckpt_dir),
        "num_train_epochs": cap.epochs,
        "max_steps": cap.max_steps,
        "per_device_train_batch_size": per_process,
        "gradient_accumulation_steps": accum,
        "learning_rate": cap.learning_rate,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0.05,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": params.controller.checkpoint_every_steps,
        "save_total_limit": None,  # rotation is the controller's, after each checkpoint verifies
        "seed": params.base.seed,
        "max_length": cap.max_length,
        "use_cpu": profile.device == "cpu",
        "bf16": profile.bf16,
        "activation_checkpointing": False,  # transformers 5.2x's name (gradient_checkpointing is its deprecated alias)
        "report_to": "none",
        "disable_tqdm": not sys.stderr.isatty(),  # a terminal gets the bar, a log step lines (nexus.progress)
        "include_num_input_tokens_seen": "non_padding",
        "dataloader_num_workers": 0,
        "save_on_each_node": ranks.nodes() > 1,  # each node's clone holds its checkpoints (docs/distributed.md)
    }


def _library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "dvc", "dvclive"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


@dataclass
class _Run:
    """What one training run is made of, gathered before the trainer starts."""

    capability: str
    cap: CapabilityParams
    method: methods.Method
    split: PreparedSplit
    profile: DeviceProfile
    rows: MethodRows
    ckpt_dir: Path
    resume: Path | None
    schedule: dict[str, Any]

    @property
    def finished(self) -> bool:
        """Whether the checkpoint resumed from is already at ``max_steps`` (nothing left to train)."""
        if self.resume is None:
            return False
        step, max_steps = checkpoint_progress(self.resume)
        return 0 < max_steps <= step


def _resolve_method(capability: str, cap: CapabilityParams) -> methods.Method:
    try:
        return methods.resolve(cap.method)
    except KeyError as err:
        raise CapabilityUnavailableError(f"params.yaml capabilities.{capability}.method: {err.args[0]}") from err


def _log_split(split: PreparedSplit) -> None:
    dropped = split.dropped
    log.info("%s: %s examples kept, %d held out for eval, %d training examples; dropped: %s",
             split.capability, split.stats.get("kept", "?"), len(split.eval), len(split.train),
             dropped or "none")
    if not split.train:
        raise CapabilityUnavailableError(
            f"capability '{split.capability}': no training example fits max_length="
            f"{split.settings.max_length}; raise capabilities.{split.capability}.max_length in params.yaml")


def run_loss(log_history: list[dict[str, Any]]) -> float:
    """Mean training loss over a whole run's log history, each logged loss weighted by the steps
    it covers (after a resume the history holds the steps before the kill too); NaN when empty."""
    total = steps = 0.0
    last = 0
    for entry in log_history:
        if "loss" in entry and "step" in entry:
            span = max(int(entry["step"]) - last, 1)
            total, steps, last = total + float(entry["loss"]) * span, steps + span, int(entry["step"])
    return total / steps if steps else float("nan")


def _summary(run: _Run, trainer: Any, elapsed: float, params: Params) -> dict[str, Any]:
    """The run's figures: steps, losses, examples, throughput (the run card and results row)."""
    method, cap, rows = run.method, run.cap, run.rows
    train_rows = run.split.train
    # real (non-padding) tokens seen: TRL's SFT count, the Trainer's own, or TRL's logged num_tokens
    logged = next((float(h["num_tokens"]) for h in reversed(trainer.state.log_history) if "num_tokens" in h), 0)
    tokens = int(getattr(trainer, "_total_train_tokens", 0) or trainer.state.num_input_tokens_seen or logged)
    return {
        "capability": run.capability,
        "method": method.name,
        "adapter": cap.adapter,
        "steps": trainer.state.global_step,
        "train_loss": round(run_loss(trainer.state.log_history), 4),
        "final_loss": round(float(next((h["loss"] for h in reversed(trainer.state.log_history)
                                        if "loss" in h), float("nan"))), 4),
        "train_examples": len(rows.rows) if method.record_kind else len(train_rows),
        "eval_examples": len(run.split.eval),
        "runtime_s": round(elapsed, 1),
        "tokens_per_s": round(tokens / elapsed, 1) if elapsed else 0.0,
        "quick": cap.quick,
        "base_model": params.base.model,
        "data_fingerprint": run.split.fingerprint,
    }


def data_file_counts(capability: str, files: list[str], organized_dir: str | Path = paths.ORGANIZED_DIR,
                     ) -> list[dict[str, Any]]:
    """``{"path", "records"}`` for each of a run's source files, the counts from the organizer's
    manifest of ``capability`` when it lists the file (else ``path`` alone)."""
    manifest = Path(organized_dir) / capability / "manifest.json"
    try:
        listed = {e["path"]: e.get("records") for e in json.loads(manifest.read_text(encoding="utf-8"))["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        listed = {}
    return [{"path": f, **({"records": listed[f]} if listed.get(f) is not None else {})} for f in files]


class TrainingKind(Protocol):
    """How one kind of capability (registry ``kind``: text, composite, diffusion) starts, trains
    and saves its model; the rest of a run (split, controller, checkpoints, dvclive, run card) is
    shared. :data:`KINDS` holds one per kind."""

    schedule_keys: tuple[str, ...]
    """Params besides the shared ones whose change makes a checkpoint unusable."""

    def check(self, run: _Run, params: Params) -> str | None:
        """Why this kind cannot run the settings (one line naming the params.yaml key), or None;
        asked before any model loads."""

    def start(self, run: _Run, tokenizer: Any, params: Params) -> tuple[Any, Any]:
        """``(model to train, tokenizer or processor)``, parts frozen as the capability asks."""

    def build(self, run: _Run, model: Any, tokenizer: Any, args: dict[str, Any], callbacks: list[Any],
              params: Params) -> Any:
        """The library trainer (TRL's or transformers') over the run's examples."""

    def card(self, run: _Run, params: Params) -> dict[str, Any]:
        """Run-card fields: ``library``, ``is_adapter`` (and what else says what the output is)."""

    def save(self, run: _Run, trainer: Any, tokenizer: Any, folder: Path, params: Params) -> None:
        """Write the trained model into ``folder`` (a temporary folder the caller renames)."""


KINDS: dict[str, TrainingKind] = {"text": text_training.TextKind(), "composite": media_training.CompositeKind(),
                                  "diffusion": diffusion_training.DiffusionKind()}
"""Registry ``kind`` -> how its runs start, train and save."""


def kind_of(capability: str) -> TrainingKind:
    """The :class:`TrainingKind` of ``capability`` (its registry row's ``kind``)."""
    return KINDS[registry.CAPABILITIES[capability].kind]


def distributed_strategy() -> str:
    """How this run's ranks share the model, from the launcher's environment: ``ddp``, ``fsdp``,
    ``zero2``/``zero3`` (``single`` for one process)."""
    if ranks.world_size() <= 1:
        return "single"
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        return "fsdp"
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        return f"zero{os.environ.get('ACCELERATE_DEEPSPEED_ZERO_STAGE', '')}"
    return "ddp"


def _save_other_rank(run: _Run, trainer: Any, tokenizer: Any, params: Params) -> None:
    """A rank other than 0 writes nothing; under FSDP or ZeRO it takes part in gathering the
    weights that rank 0 saves (into a scratch folder it then drops)."""
    import tempfile

    if ranks.is_sharded(trainer):
        with tempfile.TemporaryDirectory(prefix="nexus-rank-save-") as scratch:
            kind_of(run.capability).save(run, trainer, tokenizer, Path(scratch), params)


def _save(run: _Run, trainer: Any, tokenizer: Any, summary: dict[str, Any], params: Params,
          out_dir: str | Path) -> Path:
    """Write the trained model (its kind's files), the run card and model card (README.md) as one
    atomic step; an adapter's ``base_model_name_or_path`` is its base's absolute path (a Hub id as is)."""
    from nexus.atomic import atomic_dir, write_json_atomic
    from nexus.model_card import CARD_FILE, capability_card, example_question, resolvable_base

    log.info("%s: training finished at step %d; saving %s", run.capability, summary["steps"], out_dir)
    kind, rows = kind_of(run.capability), run.rows
    card = {**summary, "base_model_path": resolvable_base(params.base.model), "params": asdict(run.cap),
            "seed": params.base.seed, "device": asdict(run.profile), "dropped": run.split.dropped,
            "processes": {"world_size": ranks.world_size(), "strategy": distributed_strategy(),
                          "per_process_batch": trainer.args.per_device_train_batch_size,
                          "grad_accum_per_process": trainer.args.gradient_accumulation_steps},
            "data_files": run.split.stats.get("files", []),
            "method_data": {"source": rows.source, "rows": len(rows.rows)},
            **kind.card(run, params), "versions": _library_versions()}
    if rows.held_out:  # safety prompts the eval stage scores (never trained on)
        card["held_out_prompts"] = rows.held_out
    out = Path(out_dir)
    readme = capability_card(card, out.resolve(), data_file_counts(run.capability, card["data_files"]),
                             run.split.stats.get("kept", "?"), example_question(run.split.eval))
    with atomic_dir(out) as tmp:
        kind.save(run, trainer, tokenizer, tmp, params)
        write_json_atomic(card, tmp / "run_card.json")
        write_text_atomic(readme, tmp / CARD_FILE)  # replaces PEFT's auto card
    return out


def _plan_run(capability: str, params: Params, organized_dir: str | Path, modality_file: str | Path,
              prepared_dir: str | Path | None, tokenizer: Any, out_dir: str | Path) -> _Run:
    """Everything checked and read before a model loads: method, modalities, data, checkpoint
    (what a killed run left is removed here, once the checkpoint to resume from is known)."""
    split = split_for(capability, params, prepared_dir, organized_dir, tokenizer)
    cap = split.settings
    method = _resolve_method(capability, cap)
    check_modalities(capability, modality_file, cap.init_from if cap.init_from != params.base.model else None)
    found = check_method_data(method, capability, organized_dir)  # fails before any model loads
    ckpt_dir = paths.checkpoint_dir(capability)
    run = _Run(capability, cap, method, split, DeviceProfile.detect(), found, ckpt_dir, None, {})
    problem = kind_of(capability).check(run, params)
    if problem:
        raise CapabilityUnavailableError(problem)
    _log_split(split)
    per_process, accum = batch_split(cap, capability)  # an unsplittable global batch is refused here
    world = ranks.world_size()
    if world > 1:
        log.info("%s: %d processes x batch %d x %d accumulation steps = global batch %d%s", capability, world,
                 per_process, accum, world * per_process * accum,
                 "" if world * per_process * accum == cap.batch_size * cap.grad_accum
                 else " (quick mode: one example per process)")
    run.schedule = schedule_of(cap, params, split)
    ranks.barrier()  # every rank has planned before rank 0 tidies the checkpoints they all read
    if ranks.is_main():
        run.resume = find_resume_checkpoint(ckpt_dir, run.schedule)
        tidy_checkpoints(ckpt_dir, run.resume, out_dir)
    ranks.barrier()
    if not ranks.is_main():
        run.resume = find_resume_checkpoint(ckpt_dir, run.schedule)
    return run


def _train(run: _Run, trainer: Any, controller: TrainingController) -> float:
    """Train (or, when the checkpoint is at ``max_steps``, only load it); exit 143 after SIGTERM.

    Returns:
        The seconds spent.
    """
    from transformers import TrainerState

    controller.install_signal_handlers()  # a no-op under the stage's handlers
    started = time.perf_counter()
    if run.finished:
        log.info("resuming from %s: it is at max_steps, nothing left to train; loading it for the final save",
                 run.resume)
        trainer._load_from_checkpoint(str(run.resume))  # the loader train() uses (PPO adds its value head)
        trainer.state = TrainerState.load_from_json(str(run.resume / TRAINER_STATE))
    else:
        if run.resume:
            log.info("resuming from %s", run.resume)
        trainer.train(resume_from_checkpoint=str(run.resume) if run.resume else None)
    controller.finish_training()
    if controller.stopped_by_signal:
        log.info("stopped by SIGTERM at step %d; checkpoint in %s; rerun the stage to resume",
                 trainer.state.global_step, run.ckpt_dir)
        ranks.barrier()  # the ranks leave together, after rank 0 marked the checkpoint complete
        if ranks.is_main():
            launch.leave_stop_note()
        sys.exit(EXIT_TERMINATED)
    return time.perf_counter() - started


def run_capability(
    capability: str,
    params: Params,
    out_dir: str | Path,
    organized_dir: str | Path = paths.ORGANIZED_DIR,
    modality_file: str | Path = paths.MODALITY_FILE,
    report_dir: str | Path | None = None,
    prepared_dir: str | Path | None = None,
    signals: StageSignals | None = None,
) -> dict[str, Any]:
    """Train one capability and save its adapter (or full model), tokenizer and run card.

    Args:
        prepared_dir: the prepare stage's folder (examples, split and resolved settings); without
            it the split is built in memory from ``params`` (see :func:`nexus.prepare.split_for`).
        signals: the stage's signal handlers, installed before torch loaded; they stay installed
            (``nexus train`` passes :func:`nexus.signals.install_stage_signals`). Without it,
            handlers are installed here and the previous ones restored on return.

    Returns:
        The run's summary (also written to ``<out_dir>/run_card.json`` and ``results/training.csv``).

    Raises:
        CapabilityUnavailableError: unknown method or missing modality.
        ScheduleChangedError: a checkpoint exists whose schedule differs from params.yaml.
        NoDataError: no usable records.
        SystemExit: with 143 after SIGTERM (checkpoint written, or nothing trained yet; rerun to resume).
    """
    own = signals is None
    signals = (signals or StageSignals(log)).install()
    try:
        return _run_capability(capability, params, Path(out_dir), organized_dir, modality_file,
                               report_dir, prepared_dir, signals)
    finally:
        if own:
            signals.restore()


def _run_capability(capability: str, params: Params, out_dir: Path, organized_dir: str | Path,
                    modality_file: str | Path, report_dir: str | Path | None, prepared_dir: str | Path | None,
                    signals: StageSignals) -> dict[str, Any]:
    """:func:`run_capability` under installed ``signals``: plan, load, train (or resume), save."""
    import torch
    from transformers.integrations import DVCLiveCallback

    log.info("%s: starting (PID %d): loading the tokenizer and the data; kill -USR1 %d pauses at the first step",
             capability, os.getpid(), os.getpid())
    ranks.start_process_group()
    if ranks.world_size() > 1:
        pids = ", ".join(f"{pid} (rank {r})" for r, pid in enumerate(ranks.gather_pids()))
        log.info("%s: %d processes (%s), PIDs %s: a signal to any of them acts on all at the same step",
                 capability, ranks.world_size(), distributed_strategy(), pids)
    tokenizer = load_tokenizer(params.base.model)
    run = _plan_run(capability, params, organized_dir, modality_file, prepared_dir, tokenizer, out_dir)
    cap = run.cap
    torch.manual_seed(params.base.seed)
    kind = kind_of(capability)
    model, tokenizer = kind.start(run, tokenizer, params)  # a composite's tokenizer is its processor
    log.info("%s (%s via %s, %s from %s on %s, bf16=%s, model loss=%s, padding-free=%s)",
             trainable_summary(model), run.method.name, kind.card(run, params)["library"], cap.adapter,
             cap.init_from, run.profile.device, run.profile.bf16, run.profile.model_loss, run.profile.padding_free)
    controller = TrainingController(params.controller, run.schedule, logger=log, signals=signals)
    args = training_arguments(cap, params, run.ckpt_dir, run.profile, capability)
    callbacks: list[Any] = [controller]
    live = None
    if ranks.is_main():  # one writer of metrics and plots
        live = live_logger(report_dir or paths.train_report_dir(capability), run.resume)
        callbacks += [LiveAtGlobalStep(live), DVCLiveCallback(live=live)]
    trainer = kind.build(run, model, tokenizer, args, callbacks, params)
    attach_training_progress(trainer, capability)  # replaces the Trainer's dict per log
    elapsed = _train(run, trainer, controller)
    summary = _summary(run, trainer, elapsed, params)
    if not ranks.is_main():
        _save_other_rank(run, trainer, tokenizer, params)
        return summary
    assert live is not None
    for key in ("train_loss", "final_loss", "steps", "runtime_s", "tokens_per_s"):
        live.summary[key] = summary[key]
    live.step = trainer.state.global_step
    live.make_summary()
    out = _save(run, trainer, tokenizer, summary, params, out_dir)
    results.append_row("training", {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **summary})
    clear_checkpoints(run.ckpt_dir)  # last: a kill before it reruns only the save (from the final checkpoint)
    log.info("saved %s: %s", out, json.dumps(summary))
    return summary
