"""``grpo``: TRL's GRPOTrainer with the capability's verifiable reward.

Each prompt is sampled ``num_generations`` times; the reward of a completion is the capability's
own check (:func:`nexus.methods.rewards.reward_of`): answer correctness for cot and reasoning,
calls that parse and match for tools, format plus correctness for thinking.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from nexus.chat import render_prompt
from nexus.methods.base import Method, MethodSettings, TrainContext, failing


@dataclass(frozen=True)
class GRPOSettings(MethodSettings):
    """``methods.grpo``.

    Attributes:
        num_generations: completions sampled per prompt (the group whose rewards are compared).
        beta: KL coefficient to the reference model (0 = no reference model).
        temperature: sampling temperature of the completions.
    """

    num_generations: int = 4
    beta: float = 0.1
    temperature: float = 1.0

    def problems(self) -> dict[str, str]:
        """At least 2 completions per prompt, ``beta`` >= 0, a positive temperature."""
        return failing(
            ("num_generations", self.num_generations < 2, "grpo needs at least 2 completions per prompt"),
            ("beta", self.beta < 0, "must be >= 0"),
            ("temperature", self.temperature <= 0, "must be positive"))


def completion_text(completion: Any) -> str:
    """A GRPO completion (text, or conversational assistant messages) as text."""
    if isinstance(completion, str):
        return completion
    return "".join(str(m.get("content") or "") for m in completion)


def reward_function(ctx: TrainContext) -> Any:
    """A TRL reward function scoring each completion against its example (passed as JSON)."""
    reward = ctx.reward

    def verifiable_reward(prompts: list[Any], completions: list[Any], example: list[str],
                          **_: Any) -> list[float]:
        return [float(reward(completion_text(c), json.loads(e))) for c, e in zip(completions, example,
                                                                                   strict=True)]

    verifiable_reward.__name__ = f"{ctx.capability}_reward"
    return verifiable_reward


def prompt_dataset(ctx: TrainContext) -> Any:
    """Rendered prompts (the chat template applied, tools folded in) and their examples as JSON."""
    from datasets import Dataset

    return Dataset.from_list([{"prompt": render_prompt(e, ctx.tokenizer),
                               "example": json.dumps(e, ensure_ascii=False)} for e in ctx.examples])


def build_grpo(ctx: TrainContext) -> Any:
    """GRPO: ``batch_size`` prompts per step, each sampled ``num_generations`` times."""
    from trl import GRPOConfig, GRPOTrainer

    settings = ctx.settings(GRPOSettings)
    args = dict(ctx.args)
    args.pop("max_length", None)
    args["include_num_input_tokens_seen"] = "no"  # batches hold prompt ids, not input_ids: TRL counts tokens
    groups = settings.num_generations
    args["per_device_train_batch_size"] *= groups  # this process's share of batch_size, times the group
    config = GRPOConfig(**args, num_generations=groups, max_completion_length=ctx.cap.max_new_tokens,
                        beta=settings.beta, temperature=settings.temperature, log_completions=False)
    return GRPOTrainer(model=ctx.model, reward_funcs=[reward_function(ctx)], args=config,
                       train_dataset=prompt_dataset(ctx), processing_class=ctx.tokenizer,
                       callbacks=ctx.callbacks)


GRPO = Method("grpo", "group relative policy optimization with the capability's verifiable reward",
              "trl.GRPOTrainer", build_grpo, GRPOSettings)
