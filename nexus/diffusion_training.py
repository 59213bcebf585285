"""Where a generation run differs from a text one (image_generation, video_generation): a projector trains.

:mod:`nexus.trainer` and :mod:`nexus.evaluate` call these and keep everything else (the split, the
controller, checkpoints, dvclive, the run card). The model a transformers ``Trainer`` minimizes is
:class:`~nexus.diffusion.objective.FlowMatchingObjective`: the language model (``init_from``) reads
each caption, the projector maps its hidden states into the diffusion transformer's conditioning,
and only the projector learns; the diffusion parts (SD3 for images, Wan 2.1 for video: :data:`FAMILIES`)
come from ``diffusion_model`` (a local diffusers folder) or, when it is empty, are tiny random ones
built from configs (seeded: the same parts each run; they draw noise, and the outputs say so). The
output is a generator folder (:mod:`nexus.diffusion.generator`) that ``nexus generate-image`` and
``nexus generate-video`` read.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from nexus.config import CapabilityParams, Params

log = logging.getLogger(__name__)

FAMILIES = {"image_generation": "sd3", "video_generation": "wan"}
"""Capability -> the diffusion family it drives (:data:`nexus.diffusion.families.FAMILIES`)."""
DECODERS = {"image_generation": "decoders.image", "video_generation": "decoders.video"}
"""Capability -> its entry in ``configs/encoders.yaml`` (the omni issue's encoders/decoders config)."""


def diffusion_source(capability: str, cap: CapabilityParams) -> tuple[str, str]:
    """``(folder, why)``: ``diffusion_model`` when set, else the decoders config's offline folder for the
    capability; ``""`` (tiny random parts) when neither names one, with the config's GPU default in ``why``."""
    if cap.diffusion_model:
        return cap.diffusion_model, f"capabilities.{capability}.diffusion_model"
    from nexus.encoders.spec import SPEC_FILE, EncoderSpecError, load_spec

    try:
        entry = load_spec().entries.get(DECODERS[capability])
    except (OSError, EncoderSpecError):
        entry = None
    if entry is not None and entry.offline is not None:
        return str(entry.offline.out), f"{SPEC_FILE} {DECODERS[capability]}.offline"
    model = (entry.gpu_default.get("model") if entry else None) or "a local diffusers folder"
    return "", (f"{SPEC_FILE} {DECODERS[capability]} has no offline weights: tiny random parts stand in (they draw "
                f"noise); on a GPU download {model} and set capabilities.{capability}.diffusion_model")


class DiffusionRunError(ValueError):
    """A generation capability's settings cannot run (method, adapter, a missing diffusion folder)."""


def output_kind(capability: str) -> str:
    """The run card's ``output`` for ``capability``: ``nexus_sd3_projector`` or ``nexus_wan_projector``."""
    return f"nexus_{FAMILIES[capability]}_projector"


def frames_of(capability: str, cap: CapabilityParams) -> int:
    """Frames per sample: ``video_frames`` for a video family, 1 for an image one."""
    return cap.video_frames if FAMILIES[capability] != "sd3" else 1


def check_settings(capability: str, cap: CapabilityParams) -> None:
    """Fail before any model loads on what a projector run cannot do.

    Raises:
        DiffusionRunError: a method other than sft, an adapter other than none (the language model
            stays frozen), or a ``diffusion_model`` folder without SD3 parts.
    """
    where = f"params.yaml capabilities.{capability}"
    if cap.method != "sft":
        raise DiffusionRunError(f"{where}.method: '{cap.method}'; the projector trains by the denoising loss "
                                "alone: set method: sft")
    if cap.adapter != "none":
        raise DiffusionRunError(f"{where}.adapter: '{cap.adapter}'; the language model stays frozen and only "
                                "the projector trains: set adapter: none")
    if FAMILIES[capability] == "wan" and (cap.video_frames - 1) % 4:
        raise DiffusionRunError(f"{where}.video_frames: {cap.video_frames}; Wan's VAE wants 4k + 1 frames (5, 9, 13, "
                                "... 81)")
    if cap.diffusion_model:
        missing = [n for n in ("transformer", "vae", "scheduler") if not (Path(cap.diffusion_model) / n).is_dir()]
        if missing:
            raise DiffusionRunError(f"{where}.diffusion_model: {cap.diffusion_model} has no {', '.join(missing)}/; "
                                    "give a local diffusers folder (docs/generation.md) or '' for tiny "
                                    "random parts")


def start_model(capability: str, cap: CapabilityParams, seed: int, device: str) -> tuple[Any, Any]:
    """``(objective, tokenizer)``: a new seeded projector between ``init_from`` and the parts."""
    from nexus.diffusion.generator import diffusion_parts, new_generator, parts_dtype
    from nexus.diffusion.objective import FlowMatchingObjective

    source, why = diffusion_source(capability, cap)
    log.info("%s: diffusion parts from %s", capability, why if not source else f"{source} ({why})")
    parts = diffusion_parts(source, seed, cap.output_size, FAMILIES[capability], frames_of(capability, cap),
                            parts_dtype(device))
    generator = new_generator(cap.init_from, parts, cap.output_size, seed)
    objective = FlowMatchingObjective(generator.language_model, generator.projector, parts)
    return objective.to(device), generator.tokenizer


def build_trainer(objective: Any, tokenizer: Any, cap: CapabilityParams, args: dict[str, Any],
                  examples: list[dict[str, Any]], callbacks: list[Any]) -> Any:
    """transformers' ``Trainer`` minimizing the objective over (caption, image) ``examples``
    (``args``: :func:`nexus.trainer.training_arguments`, less TRL's ``max_length``)."""
    from transformers import Trainer, TrainingArguments

    from nexus.diffusion.collate import CaptionCollator

    keywords = {k: v for k, v in args.items() if k != "max_length"}
    keywords["remove_unused_columns"] = False  # the collator reads the examples' captions and images
    keywords["bf16"] = False  # the parts carry their own dtype; the projector trains in fp32
    collator = CaptionCollator(tokenizer, cap.output_size, cap.max_length, frames=objective.parts.frames)
    return Trainer(model=objective, args=TrainingArguments(**keywords), train_dataset=list(examples),
                   data_collator=collator, callbacks=callbacks)


def save_output(capability: str, objective: Any, tokenizer: Any, folder: Path, cap: CapabilityParams) -> None:
    """Write the generator folder (:func:`nexus.diffusion.generator.save_generator`) into ``folder``."""
    from nexus.diffusion.generator import Generator, save_generator

    generator = Generator(objective.language_model, tokenizer, objective.projector, objective.parts,
                          cap.init_from, cap.output_size)
    save_generator(generator, folder, diffusion_source(capability, cap)[0])


def eval_model(capability: str, path: str | Path, cap: CapabilityParams, seed: int) -> tuple[Any, Any]:
    """``(generator, tokenizer)`` to score: a trained generator folder, or for a language model (the
    baseline) the untrained generator training starts from (same parts, same seeded projector)."""
    from nexus.device import DeviceProfile
    from nexus.diffusion.generator import diffusion_parts, is_generator, load_generator, new_generator, parts_dtype

    device = DeviceProfile.detect().device
    dtype = parts_dtype(device)
    if is_generator(path):
        generator = load_generator(path, dtype)
    else:
        parts = diffusion_parts(diffusion_source(capability, cap)[0], seed, cap.output_size, FAMILIES[capability],
                                frames_of(capability, cap), dtype)
        generator = new_generator(str(path), parts, cap.output_size, seed)
    return generator.to(device), generator.tokenizer


class DiffusionKind:
    """A projector from the frozen language model into a frozen diffusion model
    (:mod:`nexus.diffusion_training`)."""

    schedule_keys = ("diffusion_model", "output_size", "video_frames")

    def check(self, run: Any, params: Params) -> str | None:
        """What :func:`check_settings` refuses, or None."""
        try:
            check_settings(run.capability, run.cap)
        except DiffusionRunError as error:
            return str(error)
        return None

    def start(self, run: Any, tokenizer: Any, params: Params) -> tuple[Any, Any]:
        return start_model(run.capability, run.cap, params.base.seed, run.profile.device)

    def build(self, run: Any, model: Any, tokenizer: Any, args: dict[str, Any], callbacks: list[Any],
              params: Params) -> Any:
        return build_trainer(model, tokenizer, run.cap, args, run.split.train, callbacks)

    def card(self, run: Any, params: Params) -> dict[str, Any]:
        return {"library": "transformers.Trainer", "is_adapter": False,
                "output": output_kind(run.capability)}

    def save(self, run: Any, trainer: Any, tokenizer: Any, folder: Path, params: Params) -> None:
        save_output(run.capability, trainer.model, tokenizer, folder, run.cap)
