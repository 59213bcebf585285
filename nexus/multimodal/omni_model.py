"""The composite "omni" model: a text LM that also reads images, video frames and audio.

Layout (the module names of transformers' LLaVA and AudioFlamingo3, so that the vision part exports to a
plain :class:`~transformers.LlavaForConditionalGeneration` by keeping keys, see
:func:`nexus.multimodal.compose.export_llava`)::

    model.vision_tower           any AutoModel vision encoder (DINOv2 here), or absent
    model.multi_modal_projector  linear_1 -> act -> linear_2 (LlavaMultiModalProjector's layout)
    model.audio_tower            WhisperEncoder with max_source_positions cut to the clip length, or absent
    model.audio_projector        linear_1 -> act -> linear_2
    model.language_model         the text model (LlamaModel for SmolLM2)
    lm_head                      tied to the input embeddings when the text config ties them

Media reach the LM as embeddings scattered into placeholder positions of ``input_ids``:

- an image: one ``image_token_id`` per vision token: ``(image_size / patch)**2`` patches, plus the CLS
  token with ``vision_feature_select_strategy="full"`` (LLaVA's "default" drops it);
- a video: its frames go through the vision tower one by one; each frame's patch grid (CLS dropped) is
  average-pooled by ``video_pool`` (ceil), so a frame costs ``ceil(grid / video_pool)**2`` tokens and a
  clip of F frames ``F`` times that, as consecutive ``video_token_id`` tokens (frame after frame);
- an audio clip: the Whisper encoder's ``max_source_positions`` frames average-pooled by ``audio_pool``
  (ceil): ``ceil(max_source_positions / audio_pool)`` ``audio_token_id`` tokens.

Text-only inputs go straight through the LM: the logits equal the LM's. Importing this module registers
the classes with ``AutoConfig``, ``AutoModel``, ``AutoModelForImageTextToText`` and ``AutoModelForCausalLM``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    GenerationMixin,
    PreTrainedConfig,
    PreTrainedModel,
)
from transformers.activations import ACT2FN
from transformers.configuration_utils import SubConfigSpec
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.modeling_utils import slice_logits_to_keep
from transformers.models.whisper.modeling_whisper import WhisperEncoder

MODEL_TYPE = "nexus_omni"


class NexusOmniConfig(PreTrainedConfig):
    """A text config plus optional vision (DINOv2) and audio (Whisper) configs and the placeholder ids."""

    model_type = MODEL_TYPE
    sub_configs_defaults = {
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
        "vision_config": SubConfigSpec(config_class=AutoConfig, model_type="dinov2", optional=True),
        "audio_config": SubConfigSpec(config_class=AutoConfig, model_type="whisper", optional=True),
    }

    text_config: dict | PreTrainedConfig | None = None
    vision_config: dict | PreTrainedConfig | None = None
    audio_config: dict | PreTrainedConfig | None = None
    image_token_id: int | None = None
    audio_token_id: int | None = None
    video_token_id: int | None = None
    projector_hidden_act: str = "gelu"
    multimodal_projector_bias: bool = True
    vision_feature_layer: int = -1
    vision_feature_select_strategy: str = "full"
    audio_pool: int = 2
    video_pool: int = 2
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        if not self.tie_word_embeddings and getattr(self.text_config, "tie_word_embeddings", False):
            self.tie_word_embeddings = True  # SmolLM2 ties; the composite follows its text config
        if self.vision_feature_select_strategy not in ("full", "default"):
            raise ValueError(f"vision_feature_select_strategy must be 'full' or 'default', "
                             f"not {self.vision_feature_select_strategy!r}")


def image_token_count(config: NexusOmniConfig, image_size: int) -> int:
    """Tokens one ``image_size`` px square image costs (patches, plus CLS with the "full" strategy)."""
    patch = config.vision_config.patch_size
    if image_size % patch:
        raise ValueError(f"image_size {image_size} is not a multiple of the vision patch size {patch}")
    return (image_size // patch) ** 2 + (1 if config.vision_feature_select_strategy == "full" else 0)


def video_frame_token_count(config: NexusOmniConfig, image_size: int) -> int:
    """Tokens one video frame costs: the patch grid average-pooled by ``video_pool`` (ceil), CLS dropped."""
    grid = image_size // config.vision_config.patch_size
    return math.ceil(grid / config.video_pool) ** 2


def audio_token_count(config: NexusOmniConfig) -> int:
    """Tokens one audio clip costs: the encoder frames average-pooled by ``audio_pool`` (ceil)."""
    return math.ceil(config.audio_config.max_source_positions / config.audio_pool)


class OmniProjector(nn.Module):
    """linear_1 -> act -> linear_2, the layout of transformers' LlavaMultiModalProjector."""

    def __init__(self, in_features: int, out_features: int, act: str, bias: bool) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_features, out_features, bias=bias)
        self.act = ACT2FN[act]
        self.linear_2 = nn.Linear(out_features, out_features, bias=bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(features)))


class NexusOmniPreTrainedModel(PreTrainedModel):
    config_class = NexusOmniConfig
    config: NexusOmniConfig
    base_model_prefix = "model"
    input_modalities = ("image", "video", "audio", "text")
    supports_gradient_checkpointing = True
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True


class NexusOmniModel(NexusOmniPreTrainedModel):
    """The encoders, the projectors and the text model, without the LM head."""

    def __init__(self, config: NexusOmniConfig) -> None:
        super().__init__(config)
        text_hidden = config.text_config.hidden_size
        act, bias = config.projector_hidden_act, config.multimodal_projector_bias
        if config.vision_config is not None:
            self.vision_tower = AutoModel.from_config(config.vision_config)
            self.multi_modal_projector = OmniProjector(config.vision_config.hidden_size, text_hidden, act, bias)
        else:
            self.vision_tower = self.multi_modal_projector = None
        if config.audio_config is not None:
            self.audio_tower = WhisperEncoder(config.audio_config)
            self.audio_projector = OmniProjector(config.audio_config.d_model, text_hidden, act, bias)
        else:
            self.audio_tower = self.audio_projector = None
        self.language_model = AutoModel.from_config(config.text_config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def _vision_states(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.vision_tower is None:
            raise ValueError("this omni model has no vision tower: build it with a vision encoder "
                             "(nexus.multimodal.compose.build_omni vision_path) to pass images or videos")
        dtype = next(self.vision_tower.parameters()).dtype
        out = self.vision_tower(pixel_values.to(dtype), output_hidden_states=True, return_dict=True)
        return out.hidden_states[self.config.vision_feature_layer]

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Projected vision tokens of images ``(n, 3, S, S)``: ``(n, tokens_per_image, text_hidden)``."""
        states = self._vision_states(pixel_values)
        if self.config.vision_feature_select_strategy == "default":
            states = states[:, 1:]
        return self.multi_modal_projector(states)

    def get_video_features(self, pixel_values_videos: torch.Tensor) -> torch.Tensor:
        """Projected tokens of video frames ``(frames, 3, S, S)`` (all clips' frames in order):
        ``(frames, tokens_per_frame, text_hidden)``, each frame's patch grid pooled by ``video_pool``."""
        states = self._vision_states(pixel_values_videos.flatten(0, -4))[:, 1:]  # the patch grid, CLS dropped
        frames, patches, dim = states.shape
        grid = math.isqrt(patches)
        if grid * grid != patches:
            raise ValueError(f"video frames give {patches} patch tokens, not a square grid: use square frames")
        grid_states = states.transpose(1, 2).reshape(frames, dim, grid, grid)
        pool = self.config.video_pool
        pooled = nn.functional.avg_pool2d(grid_states, pool, pool, ceil_mode=True)
        return self.multi_modal_projector(pooled.flatten(2).transpose(1, 2))

    def get_audio_features(self, input_features: torch.Tensor) -> torch.Tensor:
        """Projected tokens of log-mel features ``(n, mels, 2 * max_source_positions)``:
        ``(n, tokens_per_clip, text_hidden)``."""
        if self.audio_tower is None:
            raise ValueError("this omni model has no audio tower: build it with an audio encoder "
                             "(nexus.multimodal.compose.build_omni audio_path) to pass audio")
        dtype = next(self.audio_tower.parameters()).dtype
        states = self.audio_tower(input_features.to(dtype), return_dict=True).last_hidden_state
        pool = self.config.audio_pool
        pooled = nn.functional.avg_pool1d(states.transpose(1, 2), pool, pool, ceil_mode=True).transpose(1, 2)
        return self.audio_projector(pooled)

    def _scatter(self, input_ids: torch.Tensor, embeds: torch.Tensor, token_id: int | None,
                 features: torch.Tensor | None, kind: str, prefill: bool) -> torch.Tensor:
        if token_id is None:
            if features is not None:
                raise ValueError(f"{kind} inputs given but the config has no {kind}_token_id")
            return embeds
        mask = input_ids == token_id
        count = int(mask.sum())
        if features is None:
            if count and prefill:
                raise ValueError(f"input_ids hold {count} {kind} placeholder token(s) (id {token_id}) but no {kind} "
                                 f"inputs were given: pass them, or run the text through NexusOmniProcessor")
            return embeds
        flat = features.reshape(-1, features.shape[-1])
        if count != flat.shape[0]:
            raise ValueError(f"{kind} placeholders and features do not match: {count} placeholder tokens in "
                             f"input_ids, {flat.shape[0]} {kind} feature tokens ({features.shape[0]} item(s) x "
                             f"{features.shape[1]}); expand the text with NexusOmniProcessor for the same media")
        return embeds.masked_scatter(mask.unsqueeze(-1).to(embeds.device), flat.to(embeds.device, embeds.dtype))

    def forward(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                pixel_values: torch.Tensor | None = None, pixel_values_videos: torch.Tensor | None = None,
                input_features: torch.Tensor | None = None, position_ids: torch.LongTensor | None = None,
                cache: Any = None, inputs_embeds: torch.Tensor | None = None, use_cache: bool | None = None,
                **kwargs: Any) -> BaseModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if input_ids is not None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
            prefill = cache is None or cache.get_seq_length() == 0
            config = self.config
            image = self.get_image_features(pixel_values) if pixel_values is not None else None
            video = self.get_video_features(pixel_values_videos) if pixel_values_videos is not None else None
            audio = self.get_audio_features(input_features) if input_features is not None else None
            inputs_embeds = self._scatter(input_ids, inputs_embeds, config.image_token_id, image, "image", prefill)
            inputs_embeds = self._scatter(input_ids, inputs_embeds, config.video_token_id, video, "video", prefill)
            inputs_embeds = self._scatter(input_ids, inputs_embeds, config.audio_token_id, audio, "audio", prefill)
        elif any(x is not None for x in (pixel_values, pixel_values_videos, input_features)):
            raise ValueError("media inputs need input_ids (their placeholder positions), not inputs_embeds")
        return self.language_model(attention_mask=attention_mask, position_ids=position_ids, cache=cache,
                                   inputs_embeds=inputs_embeds, use_cache=use_cache, **kwargs)


class NexusOmniForConditionalGeneration(NexusOmniPreTrainedModel, GenerationMixin):
    """The omni model with its LM head; ``generate`` passes the media on the first step only
    (GenerationMixin drops ``pixel_values``, ``pixel_values_videos`` and ``input_features`` after prefill)."""

    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}

    def __init__(self, config: NexusOmniConfig) -> None:
        super().__init__(config)
        self.model = NexusOmniModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.lm_head = value

    def forward(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                pixel_values: torch.Tensor | None = None, pixel_values_videos: torch.Tensor | None = None,
                input_features: torch.Tensor | None = None, labels: torch.LongTensor | None = None,
                position_ids: torch.LongTensor | None = None, cache: Any = None,
                inputs_embeds: torch.Tensor | None = None, use_cache: bool | None = None,
                logits_to_keep: int | torch.Tensor = 0, **kwargs: Any) -> CausalLMOutputWithPast:
        """Logits (and with ``labels`` the shifted LM loss, -100 ignored) of the text with the media's
        features in their placeholder positions."""
        kwargs.pop("input_features_mask", None)  # Whisper pads to a fixed length; the mask is not used
        outputs = self.model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
                             pixel_values_videos=pixel_values_videos, input_features=input_features,
                             position_ids=position_ids, cache=cache, inputs_embeds=inputs_embeds,
                             use_cache=use_cache, **kwargs)
        hidden = slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep)
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels,
                                      vocab_size=self.config.text_config.vocab_size, **kwargs)
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=outputs.cache,
                                      hidden_states=outputs.hidden_states, attentions=outputs.attentions)


def register() -> None:
    """Register the omni classes with transformers' Auto classes (idempotent)."""
    AutoConfig.register(MODEL_TYPE, NexusOmniConfig, exist_ok=True)
    AutoModel.register(NexusOmniConfig, NexusOmniModel, exist_ok=True)
    AutoModelForImageTextToText.register(NexusOmniConfig, NexusOmniForConditionalGeneration, exist_ok=True)
    AutoModelForCausalLM.register(NexusOmniConfig, NexusOmniForConditionalGeneration, exist_ok=True)


register()
