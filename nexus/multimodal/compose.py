"""Build, save, load, freeze, LoRA-scope and export the omni model (:mod:`nexus.multimodal.omni_model`).

- :func:`build_omni`: an LM folder (SmolLM2 / any Llama), optionally a vision encoder folder (a DINOv2
  ``Dinov2Model`` with its image processor) and an audio encoder folder (a Whisper model with its feature
  extractor), joined by fresh seeded projectors. The placeholders ``<image>`` ``<audio>`` ``<video>`` are
  added to the tokenizer and the embeddings grow to match. Whisper's encoder is cut to ``audio_seconds``
  (``50 * audio_seconds`` positions, the first rows of its positional table; the feature extractor then
  pads or cuts clips to ``audio_seconds``).
- :func:`save_omni` / :func:`load_omni`: one folder (model + processor), loadable by transformers'
  ``from_pretrained`` once :mod:`nexus.multimodal.omni_model` is imported.
- :func:`set_trainable`, :func:`part_table`, :func:`lm_lora_config`: what trains.
- :func:`export_llava`: the vision + text part as a plain ``LlavaForConditionalGeneration`` folder;
  :func:`import_llava` (which :func:`load_omni` calls for a LLaVA folder) reads one back.

Everything imports torch / transformers inside the functions.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

PARTS = ("vision_tower", "audio_tower", "multi_modal_projector", "audio_projector", "language_model", "lm_head")
PROJECTORS = ("multi_modal_projector", "audio_projector")
WHISPER_POSITIONS_PER_SECOND = 50  # 100 mel frames a second, halved by the encoder's stride-2 conv
# LoRA on the text model's linear layers only (a bare ["q_proj", "v_proj"] would also hit DINOv2's attention).
LM_LORA_TARGETS = r".*language_model\.layers\.\d+\..*(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


def _omni(model: Any) -> Any:
    """The NexusOmniForConditionalGeneration inside ``model`` (a PEFT wrapper's base model, or itself)."""
    from nexus.multimodal.omni_model import NexusOmniForConditionalGeneration

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PEFT wrapper's model
    if not isinstance(inner, NexusOmniForConditionalGeneration):
        raise TypeError(f"{type(model).__name__} is not a NexusOmniForConditionalGeneration")
    return inner


def _is_peft(model: Any) -> bool:
    return hasattr(model, "peft_config")


def _resize_image_processor(image_processor: Any, image_size: int) -> Any:
    size = getattr(image_processor, "size", None) or {}
    image_processor.size = ({"shortest_edge": image_size} if "shortest_edge" in size
                            else {"height": image_size, "width": image_size})
    if getattr(image_processor, "crop_size", None) is not None:
        image_processor.crop_size = {"height": image_size, "width": image_size}
    return image_processor


def _audio_encoder(audio_path: str | Path, audio_seconds: int) -> tuple[Any, Any, Any]:
    """(encoder config with positions cut, encoder state dict cut, feature extractor for the clip length)."""
    from transformers import WhisperFeatureExtractor, WhisperModel

    if int(audio_seconds) != audio_seconds or audio_seconds < 1:
        raise ValueError(f"audio_seconds must be a whole number of seconds >= 1, not {audio_seconds}")
    whisper = WhisperModel.from_pretrained(audio_path)
    config = copy.deepcopy(whisper.config)
    positions = WHISPER_POSITIONS_PER_SECOND * int(audio_seconds)
    if positions > config.max_source_positions:
        raise ValueError(f"audio_seconds {audio_seconds} is longer than {audio_path}'s encoder window "
                         f"({config.max_source_positions // WHISPER_POSITIONS_PER_SECOND} s)")
    config.max_source_positions = positions
    state = whisper.get_encoder().state_dict()
    state["embed_positions.weight"] = state["embed_positions.weight"][:positions].clone()
    base = WhisperFeatureExtractor.from_pretrained(audio_path).to_dict()
    settings = {k: v for k, v in base.items() if k not in ("n_samples", "nb_max_frames", "feature_extractor_type")}
    extractor = WhisperFeatureExtractor(**{**settings, "chunk_length": int(audio_seconds)})
    return config, state, extractor


def build_omni(lm_path: str | Path, vision_path: str | Path | None = None, audio_path: str | Path | None = None,
               *, image_size: int = 224, audio_seconds: int = 2, seed: int = 0, video_frames: int = 4,
               audio_pool: int = 2, video_pool: int = 2) -> tuple[Any, Any]:
    """A new omni model and its processor from pretrained parts; the projectors are fresh (seeded by ``seed``).

    Args:
        lm_path: HF folder of the text LM (its tokenizer included).
        vision_path: HF folder of the vision encoder (``AutoModel`` + image processor), or None.
        audio_path: HF folder of a Whisper model (+ feature extractor), or None.
        image_size: the side images (and video frames) are resized to; a multiple of the patch size.
        audio_seconds: the clip length audio is padded or cut to (whole seconds).
        video_frames: frames sampled per video.

    Returns:
        ``(NexusOmniForConditionalGeneration, NexusOmniProcessor)``, float32, in eval mode.
    """
    import torch
    from transformers import AutoImageProcessor, AutoModel, AutoModelForCausalLM

    from nexus.loading import load_tokenizer
    from nexus.multimodal.omni_model import (
        NexusOmniConfig,
        NexusOmniForConditionalGeneration,
        audio_token_count,
        image_token_count,
        video_frame_token_count,
    )
    from nexus.multimodal.processor import PLACEHOLDERS, NexusOmniProcessor

    tokenizer = load_tokenizer(lm_path)
    tokenizer.add_tokens([t for t in PLACEHOLDERS if t not in tokenizer.get_vocab()], special_tokens=True)
    lm = AutoModelForCausalLM.from_pretrained(lm_path, dtype=torch.float32)
    vision = AutoModel.from_pretrained(vision_path, dtype=torch.float32) if vision_path else None
    audio_config, audio_state, extractor = _audio_encoder(audio_path, audio_seconds) if audio_path else (None,) * 3
    config = NexusOmniConfig(
        text_config=copy.deepcopy(lm.config), vision_config=copy.deepcopy(vision.config) if vision else None,
        audio_config=audio_config, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        audio_token_id=tokenizer.convert_tokens_to_ids("<audio>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<video>"),
        audio_pool=audio_pool, video_pool=video_pool)
    torch.manual_seed(seed)
    model = NexusOmniForConditionalGeneration(config)
    model.model.language_model.load_state_dict(lm.get_decoder().state_dict())
    if not config.tie_word_embeddings:
        model.lm_head.load_state_dict(lm.get_output_embeddings().state_dict())
    if vision is not None:
        model.model.vision_tower.load_state_dict(vision.state_dict())
    if audio_state is not None:
        model.model.audio_tower.load_state_dict(audio_state)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)  # placeholder rows: replaced by media features
    model.generation_config = copy.deepcopy(lm.generation_config)
    image_processor = None
    if vision is not None:
        image_processor = _resize_image_processor(AutoImageProcessor.from_pretrained(vision_path), image_size)
    processor = NexusOmniProcessor(
        tokenizer, image_processor, extractor, image_size=image_size if vision else 0,
        image_tokens=image_token_count(config, image_size) if vision else 0, video_frames=video_frames,
        video_frame_tokens=video_frame_token_count(config, image_size) if vision else 0,
        audio_seconds=int(audio_seconds) if audio_path else 0,
        audio_tokens=audio_token_count(config) if audio_path else 0)
    return model.eval(), processor


def set_video_sampling(model: Any, processor: Any, frames: int, pool: int) -> None:
    """Sample ``frames`` frames per clip and pool each frame's patch grid by ``pool`` (1: every
    patch, as an image is read, so the projector omni trained on images reads frames alike)."""
    from nexus.multimodal.omni_model import video_frame_token_count

    processor.video_frames = frames
    if getattr(model.config, "vision_config", None) is None:
        return
    model.config.video_pool = pool
    if hasattr(model, "model"):
        model.model.config.video_pool = pool
    processor.video_frame_tokens = video_frame_token_count(model.config, processor.image_size)


REMOTE_CODE_FILE = "omni_model.py"
"""The modeling file a ``remote_code`` folder carries (the one :mod:`nexus.multimodal.omni_model`,
which imports only torch and transformers)."""
AUTO_MAP = {auto: f"omni_model.{name}" for auto, name in (
    ("AutoConfig", "NexusOmniConfig"), ("AutoModel", "NexusOmniModel"),
    ("AutoModelForImageTextToText", "NexusOmniForConditionalGeneration"),
    ("AutoModelForCausalLM", "NexusOmniForConditionalGeneration"))}


def save_omni(model: Any, processor: Any, out_dir: str | Path, remote_code: bool = False) -> Path:
    """Write the model and its processor into ``out_dir`` (whole or not at all). A PEFT-wrapped model
    must be merged first (``model = model.merge_and_unload()``): the folder holds full weights.

    With ``remote_code`` the folder also carries the modeling file and an ``auto_map`` in its
    config, the Hub's convention for custom models: transformers' Auto classes load it with
    ``trust_remote_code=True`` in a Python that never imports Nexus."""
    import shutil

    from nexus.atomic import atomic_dir
    from nexus.multimodal import omni_model

    if _is_peft(model):
        raise TypeError("save_omni: the model is wrapped in PEFT; call model.merge_and_unload() first "
                        "(or save the adapter with model.save_pretrained)")
    if remote_code:
        model.config.auto_map = dict(AUTO_MAP)
    elif hasattr(model.config, "auto_map"):  # loaded from a remote-code folder: this one has no modeling file
        del model.config.auto_map
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        if remote_code:
            shutil.copyfile(omni_model.__file__, tmp / REMOTE_CODE_FILE)
    return Path(out_dir)


def load_omni(path: str | Path, dtype: Any = None, device: Any = None) -> tuple[Any, Any]:
    """The omni model (eval mode) and processor saved by :func:`save_omni` in ``path``."""
    from nexus.multimodal.omni_model import NexusOmniForConditionalGeneration
    from nexus.multimodal.processor import NexusOmniProcessor

    if not (Path(path) / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no config.json; not a saved omni model (see nexus.multimodal.compose)")
    if json.loads((Path(path) / "config.json").read_text(encoding="utf-8")).get("model_type") == "llava":
        model, processor = import_llava(path, dtype)
        return (model.to(device) if device is not None else model).eval(), processor
    model = NexusOmniForConditionalGeneration.from_pretrained(path, dtype=dtype)
    if device is not None:
        model = model.to(device)
    return model.eval(), NexusOmniProcessor.from_pretrained(path)


def import_llava(path: str | Path, dtype: Any = None) -> tuple[Any, Any]:
    """A LLaVA folder (:func:`export_llava`'s, or any LLaVA with a DINOv2-style encoder and the
    ``<image>`` token) as the omni model without audio, weights unchanged (the module names are
    LLaVA's), and its processor: the inverse of :func:`export_llava`.

    Raises:
        ValueError: the folder's processor has no ``<video>`` placeholder to reuse (not a Nexus export).
    """
    import torch
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from nexus.multimodal.omni_model import NexusOmniConfig, NexusOmniForConditionalGeneration, video_frame_token_count
    from nexus.multimodal.processor import NexusOmniProcessor

    llava = LlavaForConditionalGeneration.from_pretrained(path, dtype=dtype or torch.float32)
    source = AutoProcessor.from_pretrained(path)
    tokenizer, lc = source.tokenizer, llava.config
    if "<video>" not in tokenizer.get_vocab():
        raise ValueError(f"{path}: the tokenizer has no <video> placeholder; not a LLaVA exported by Nexus")
    config = NexusOmniConfig(
        text_config=copy.deepcopy(lc.text_config), vision_config=copy.deepcopy(lc.vision_config),
        image_token_id=lc.image_token_index, audio_token_id=tokenizer.convert_tokens_to_ids("<audio>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<video>"), projector_hidden_act=lc.projector_hidden_act,
        vision_feature_layer=lc.vision_feature_layer, vision_feature_select_strategy=lc.vision_feature_select_strategy,
        multimodal_projector_bias=lc.multimodal_projector_bias, tie_word_embeddings=lc.tie_word_embeddings)
    model = NexusOmniForConditionalGeneration(config).to(llava.dtype)
    result = model.load_state_dict(llava.state_dict(), strict=False)
    missing = [k for k in result.missing_keys if _part(k) not in ("audio_tower", "audio_projector")
               and not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or result.unexpected_keys:
        raise RuntimeError(f"{path}: LLaVA weights do not map onto the omni model: missing {missing[:5]}, "
                           f"unexpected {result.unexpected_keys[:5]}")
    model.tie_weights()
    model.generation_config = copy.deepcopy(llava.generation_config)
    size = source.image_processor.crop_size or source.image_processor.size
    image_size = int(size.get("height") or size.get("shortest_edge"))
    processor = NexusOmniProcessor(
        tokenizer, source.image_processor, None, image_size=image_size, image_tokens=lc.image_seq_length,
        video_frames=4, video_frame_tokens=video_frame_token_count(config, image_size), audio_seconds=0,
        audio_tokens=0)
    return model, processor


def _part(name: str) -> str | None:
    segments = name.split(".")
    return next((p for p in PARTS if p in segments), None)


def set_trainable(model: Any, *, vision_tower: bool = False, audio_tower: bool = False, projectors: bool = True,
                  language_model: bool = False) -> None:
    """Switch ``requires_grad`` per part. ``lm_head`` follows ``language_model`` (tied heads are the embeddings).
    LoRA parameters (``lora_`` in the name) are left as they are, so a PEFT model keeps its adapters
    trainable: call this after ``get_peft_model`` to train the projectors next to LoRA."""
    wanted = {"vision_tower": vision_tower, "audio_tower": audio_tower, "multi_modal_projector": projectors,
              "audio_projector": projectors, "language_model": language_model, "lm_head": language_model}
    for name, param in model.named_parameters():
        if "lora_" in name:
            continue
        part = _part(name)
        if part is None:
            raise ValueError(f"set_trainable: parameter {name} belongs to no omni part {PARTS}")
        param.requires_grad_(wanted[part])


def part_table(model: Any) -> str:
    """One line per part: ``part  trainable / total`` parameters (a tied ``lm_head`` is said to be tied)."""
    counts = {p: [0, 0] for p in PARTS}
    for name, param in model.named_parameters():  # a tied head's weight is listed once, under the embeddings
        part = _part(name)
        if part is not None and ".original_module." not in name:  # PEFT modules_to_save: count the trained copy
            counts[part][1] += param.numel()
            counts[part][0] += param.numel() if param.requires_grad else 0
    omni = _omni(model)
    lines = []
    for part in PARTS:
        trainable, total = counts[part]
        if part == "lm_head" and omni.config.tie_word_embeddings:
            lines.append(f"{part:<22} tied to language_model's input embeddings")
        elif total == 0:
            lines.append(f"{part:<22} absent")
        else:
            lines.append(f"{part:<22} {trainable:>13,} / {total:>13,} trainable")
    return "\n".join(lines)


def lm_lora_config(r: int = 16, alpha: int = 32, dropout: float = 0.05) -> Any:
    """A ``peft.LoraConfig`` on the language model's attention and MLP projections only (the encoders'
    layers, which share names such as ``q_proj``, and the projectors are left alone)."""
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=LM_LORA_TARGETS,
                      task_type="CAUSAL_LM")


def export_llava(model: Any, processor: Any, out_dir: str | Path) -> Path:
    """Write the vision + text part as a plain transformers LLaVA folder (``LlavaForConditionalGeneration``
    + ``LlavaProcessor``), loadable by ``AutoModelForImageTextToText`` / ``AutoProcessor`` without Nexus.

    The weights keep their names (``model.vision_tower``, ``model.multi_modal_projector``,
    ``model.language_model``, ``lm_head``); the audio tower and projector are left out. ``image_token_index``
    is the omni's ``<image>`` id and the LLaVA processor expands it into the same token count. A PEFT model
    must be merged first (``model.merge_and_unload()``).
    """
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    from nexus.atomic import atomic_dir

    if _is_peft(model):
        raise TypeError("export_llava: the model is wrapped in PEFT; call model.merge_and_unload() first")
    config = model.config
    if config.vision_config is None or processor.image_processor is None:
        raise ValueError("export_llava: the omni model has no vision tower, so there is no LLaVA to export")
    strategy = config.vision_feature_select_strategy
    llava_config = LlavaConfig(
        text_config=config.text_config.to_dict(), vision_config=config.vision_config.to_dict(),
        image_token_index=config.image_token_id, image_seq_length=processor.image_tokens,
        projector_hidden_act=config.projector_hidden_act, vision_feature_layer=config.vision_feature_layer,
        vision_feature_select_strategy=strategy, multimodal_projector_bias=config.multimodal_projector_bias,
        tie_word_embeddings=config.tie_word_embeddings)
    llava = LlavaForConditionalGeneration(llava_config).to(model.dtype)
    state = {k: v for k, v in model.state_dict().items() if _part(k) not in ("audio_tower", "audio_projector")}
    result = llava.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or result.unexpected_keys:
        raise RuntimeError(f"export_llava: weights do not map onto LLaVA: missing {missing[:5]}, "
                           f"unexpected {result.unexpected_keys[:5]}")
    llava.generation_config = copy.deepcopy(model.generation_config)
    llava_processor = LlavaProcessor(
        image_processor=processor.image_processor, tokenizer=processor.tokenizer,
        patch_size=config.vision_config.patch_size, vision_feature_select_strategy=strategy,
        chat_template=processor.tokenizer.chat_template, image_token="<image>",
        num_additional_image_tokens=1)  # DINOv2's CLS (strategy "default" drops it again)
    with atomic_dir(out_dir) as tmp:
        llava.save_pretrained(tmp)
        llava_processor.save_pretrained(tmp)
    return Path(out_dir)
