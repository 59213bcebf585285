"""Verifiable rewards for online methods (grpo, ppo), from each capability's own scorer."""

from __future__ import annotations

from collections.abc import Callable

from nexus import capabilities


def reward_of(capability: str) -> Callable[[str, capabilities.Example], float]:
    """The reward of one completion: the mean of the capability's ``REWARD_KEYS`` scores, in [0, 1].

    cot: correct answer and a final-answer line; reasoning: correct answer and a boxed answer;
    thinking: think format and correctness; tools: exact calls, names, and JSON that parses.
    """
    module = capabilities.load(capability)
    keys = tuple(getattr(module, "REWARD_KEYS", (module.METRIC,)))

    def reward(generated: str, example: capabilities.Example) -> float:
        scores = module.score(generated, example)
        return sum(scores[key] for key in keys) / len(keys)

    return reward
