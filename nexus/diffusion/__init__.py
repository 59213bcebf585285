"""The language model as a diffusion model's text encoder: a trained projector between them.

- :mod:`nexus.diffusion.projector`: ``TextProjector``, the LM's hidden states -> a diffusion
  transformer's ``prompt_embeds`` and ``pooled_prompt_embeds`` (a diffusers ``ModelMixin``: saved and
  loaded with diffusers conventions).
- :mod:`nexus.diffusion.parts`: the frozen diffusion parts, from a local diffusers folder (SD3.5 on a
  GPU) or tiny random ones built from configs (this machine has no diffusion weights offline: what
  they draw is noise, and is labelled so).
- :mod:`nexus.diffusion.objective`: the flow-matching loss a transformers ``Trainer`` minimizes, with
  the LM, the transformer and the VAE frozen and only the projector trained.
- :mod:`nexus.diffusion.generate`: prompts -> images through ``StableDiffusion3Pipeline`` with the
  projected embeddings in place of its text encoders.
"""
