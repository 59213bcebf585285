"""Generation: the one place that turns prompts into model output.

- :mod:`nexus.generation.limits`: a model's context length and the token ids that end a reply.
- :mod:`nexus.generation.batch`: batched, left-padded greedy or sampled generation.
- :mod:`nexus.generation.budget`: thinking-budget forcing (s1-style).
- :mod:`nexus.generation.stream`: token streaming with time to first token (chat, serve, eval).

Evaluation, preference-pair building, safety, PPO/GRPO helpers, benchmarks and serving all
generate through these modules. Nothing here imports torch at module level.
"""
