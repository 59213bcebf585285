"""Where a multimodal run differs from a text one (omni, vision_qa, video_understanding).

:mod:`nexus.trainer` and :mod:`nexus.evaluate` call these and keep everything else (the split, the
controller, checkpoints, dvclive, the run card): the start model is a composite
(:mod:`nexus.multimodal.compose`: built from the text model and the encoders for omni, loaded when
``init_from`` already is one), the tokenizer is the composite's processor, LoRA is scoped to the
language model and the parts named by ``train_parts`` train fully (PEFT ``modules_to_save``), the
collator puts labels on the answer only (:class:`nexus.multimodal.collate.MediaCollator`), the loop
is transformers' ``Trainer`` (TRL's collators mask only padding and have no audio path), and the
output is the composite, or for vision_qa a plain transformers LLaVA that
``AutoModelForImageTextToText`` loads without Nexus.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from nexus import registry
from nexus.config import CapabilityParams, Params

log = logging.getLogger(__name__)

COMPOSITE_TYPES = ("nexus_omni", "llava")
"""``model_type`` of the folders :func:`nexus.multimodal.compose.load_omni` reads."""
LLAVA_OUTPUTS = ("vision_qa",)
"""Capabilities saved as a plain transformers LLaVA (vision only), the others as the composite."""


class MediaRunError(ValueError):
    """A multimodal capability's settings cannot run (a missing encoder, an unsupported method)."""


def is_media(capability: str) -> bool:
    """Whether ``capability`` trains a composite on images, audio or video (registry ``kind`` composite)."""
    return registry.CAPABILITIES[capability].kind == "composite"


def is_composite(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding a composite (omni's output or a LLaVA folder)."""
    config = Path(path) / "config.json"
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("model_type") in COMPOSITE_TYPES
    except (OSError, ValueError, AttributeError):
        return False


def check_settings(capability: str, cap: CapabilityParams) -> None:
    """Fail before any model loads on what a multimodal run cannot do.

    Raises:
        MediaRunError: a method other than sft, QLoRA, or a missing encoder folder for omni.
    """
    where = f"params.yaml capabilities.{capability}"
    if cap.method != "sft":
        raise MediaRunError(f"{where}.method: '{cap.method}'; multimodal capabilities train with sft only for now")
    if cap.adapter == "qlora":
        raise MediaRunError(f"{where}.adapter: qlora is not supported for multimodal capabilities; use lora")
    if is_composite(cap.init_from):
        return
    encoders = {"vision_encoder": cap.vision_encoder, "audio_encoder": cap.audio_encoder}
    if not any(encoders.values()):
        raise MediaRunError(f"{where}: init_from {cap.init_from} is a text model and no vision_encoder or "
                            f"audio_encoder is set; set them (omni does) or start from omni's output")
    for key, folder in encoders.items():
        if folder and not (Path(folder) / "config.json").is_file():
            raise MediaRunError(f"{where}.{key}: {folder} holds no model; run the encoders stage "
                                f"(dvc repro encoders, after make install)")


def start_model(cap: CapabilityParams, seed: int, device: str) -> tuple[Any, Any]:
    """``(model, processor)``: the composite ``init_from`` holds, or a new one built from the text
    model ``init_from`` and the encoders (omni: its projectors start random, seeded)."""
    from nexus.multimodal.compose import build_omni, load_omni, set_video_sampling

    if is_composite(cap.init_from):
        model, processor = load_omni(cap.init_from)
        set_video_sampling(model, processor, cap.video_frames, cap.video_pool)  # this capability's settings
    else:
        model, processor = build_omni(cap.init_from, cap.vision_encoder or None, cap.audio_encoder or None,
                                      image_size=cap.image_size, audio_seconds=cap.audio_seconds, seed=seed,
                                      video_frames=cap.video_frames, video_pool=cap.video_pool)
    return model.to(device), processor


def apply_parts(model: Any, cap: CapabilityParams) -> Any:
    """Freeze what ``cap`` does not train: the language model gets LoRA (``adapter: lora``), trains
    fully (``full``) or stays frozen (``none``); each part in ``train_parts`` trains fully. The part
    table is logged."""
    from nexus.multimodal.compose import PROJECTORS, lm_lora_config, part_table, set_trainable

    parts = set(cap.train_parts)
    set_trainable(model, vision_tower="vision_tower" in parts, audio_tower="audio_tower" in parts,
                  projectors="projectors" in parts, language_model=cap.adapter == "full")
    if cap.adapter == "lora":
        from peft import get_peft_model

        config = lm_lora_config(cap.lora_r, cap.lora_alpha, cap.lora_dropout)
        towers = [name for name in ("vision_tower", "audio_tower") if name in parts]
        full = towers + (list(PROJECTORS) if "projectors" in parts else [])
        config.modules_to_save = [m for m in full if _has_module(model, m)] or None
        model = get_peft_model(model, config)
    log.info("parts (trainable / total parameters):\n%s", part_table(model))
    return model


def _has_module(model: Any, name: str) -> bool:
    return any(n.split(".")[-1] == name for n, _ in model.named_modules())


def build_trainer(model: Any, processor: Any, cap: CapabilityParams, args: dict[str, Any],
                  examples: list[dict[str, Any]], callbacks: list[Any]) -> Any:
    """transformers' ``Trainer`` on ``examples`` with :class:`~nexus.multimodal.collate.MediaCollator`
    (``args``: :func:`nexus.trainer.training_arguments`, less TRL's ``max_length``)."""
    from transformers import Trainer, TrainingArguments

    from nexus.lora_stages import LoraFromStep
    from nexus.multimodal.collate import MediaCollator

    keywords = {k: v for k, v in args.items() if k != "max_length"}
    keywords["remove_unused_columns"] = False  # the collator reads the example's media lists
    if cap.lora_from_step:
        callbacks = [*callbacks, LoraFromStep(model, cap.lora_from_step)]
    return Trainer(model=model, args=TrainingArguments(**keywords), train_dataset=list(examples),
                   data_collator=MediaCollator(processor, cap.max_length), callbacks=callbacks)


def save_output(capability: str, model: Any, processor: Any, folder: Path, remote_code: bool = False) -> None:
    """Write the trained model into ``folder`` (a temporary folder the caller renames): LoRA merged
    in; vision_qa as a plain LLaVA, the others as the composite (with its modeling file for
    transformers' Auto classes when ``remote_code``)."""
    from nexus.multimodal.compose import export_llava, save_omni

    final = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    if capability in LLAVA_OUTPUTS:
        export_llava(final, processor, folder)
    else:
        save_omni(final, processor, folder, remote_code=remote_code)


def eval_model(capability: str, path: str | Path, cap: CapabilityParams, seed: int) -> tuple[Any, Any]:
    """``(model, processor)`` to score: a composite folder as it is, a text model as the untrained
    composite omni starts from (same encoders, same seeded projectors: omni's baseline)."""
    import dataclasses

    from nexus.device import DeviceProfile

    start = dataclasses.replace(cap, init_from=str(path))
    model, processor = start_model(start, seed, DeviceProfile.detect().device)
    return model.eval(), processor


class CompositeKind:
    """A composite with media encoders (:mod:`nexus.media_training`), always saved whole."""

    schedule_keys = ("vision_encoder", "audio_encoder", "image_size", "audio_seconds", "video_frames",
                     "video_pool", "train_parts", "lora_from_step")

    def check(self, run: Any, params: Params) -> str | None:
        """What :func:`check_settings` refuses, or None."""
        try:
            check_settings(run.capability, run.cap)
        except MediaRunError as error:
            return str(error)
        return None

    def start(self, run: Any, tokenizer: Any, params: Params) -> tuple[Any, Any]:
        model, processor = start_model(run.cap, params.base.seed, run.profile.device)
        return apply_parts(model, run.cap), processor

    def build(self, run: Any, model: Any, tokenizer: Any, args: dict[str, Any], callbacks: list[Any],
              params: Params) -> Any:
        return build_trainer(model, tokenizer, run.cap, args, run.split.train, callbacks)

    def card(self, run: Any, params: Params) -> dict[str, Any]:
        output = "llava" if run.capability in LLAVA_OUTPUTS else "nexus_omni"
        return {"library": "transformers.Trainer", "is_adapter": False, "output": output}

    def save(self, run: Any, trainer: Any, tokenizer: Any, folder: Path, params: Params) -> None:
        save_output(run.capability, trainer.model, tokenizer, folder,  # tokenizer: the processor
                                   remote_code=run.cap.remote_code)
