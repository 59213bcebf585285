"""Multimodal building blocks: media loading, the composite omni model, its processor and collator.

- :mod:`nexus.multimodal.media`: images, audio and video frames from paths or ``data:`` URLs.
- :mod:`nexus.multimodal.omni_model`: NexusOmniConfig / NexusOmniForConditionalGeneration (``nexus_omni``),
  registered with transformers' Auto classes on import.
- :mod:`nexus.multimodal.processor`: NexusOmniProcessor (placeholders -> token runs, media -> tensors).
- :mod:`nexus.multimodal.compose`: build / save / load / set_trainable / part_table / lm_lora_config / export_llava.
- :mod:`nexus.multimodal.collate`: MediaCollator for training; :mod:`nexus.multimodal.generate`: generate_media.

Nothing here is imported by this package file, so ``import nexus.multimodal`` stays free of torch.
"""
