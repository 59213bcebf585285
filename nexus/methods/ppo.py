"""``ppo``: a compact proximal policy optimization trainer on ``transformers.Trainer``.

TRL removed its PPOTrainer after 1.12.0, and the 1.12.0 one cannot serve this project even where it
imports (no ``resume_from_checkpoint``, ``max_steps`` ignored, value model not checkpointed, reward
must be a model); docs/ppo.md has the evidence. This module is the replacement: a ``Trainer``
subclass, so the controller callback, dvclive logging, checkpoints and resume work as for every
other method.

One rollout per micro-batch of prompts:

1. sample ``num_generations`` completions per prompt with the policy (``temperature``, no top-k/p);
2. score each completion with the capability's verifiable reward ``ctx.reward(text, example)``;
3. per-token log-probabilities of the policy (old) and of the reference (adapters disabled for a
   LoRA model, a frozen copy for a full model), and per-token values from a linear value head on
   the policy's last hidden states;
4. per-token rewards ``-beta * (logp - ref_logp)``, plus the score on the last completion token;
5. GAE advantages (whitened) and returns.

Every knob is a field of :class:`PPOSettings` (params.yaml ``methods.ppo``, per capability
``capabilities.<cap>.ppo``). Each rollout then drives ``ppo_epochs`` optimizer steps (the sampler
repeats the same prompts, see :class:`ChunkRepeatSampler`), each minimizing the clipped policy loss
plus ``vf_coef`` times the clipped value loss. Torch is imported inside functions only: ``nexus plan``
imports the method table without it.
"""

from __future__ import annotations

import functools
import logging
import math
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nexus.chat import render_prompt
from nexus.generation.limits import eos_ids
from nexus.methods.base import Method, MethodSettings, TrainContext, failing

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

VALUE_HEAD_FILE = "value_head.safetensors"


@dataclass(frozen=True)
class PPOSettings(MethodSettings):
    """``methods.ppo``: every PPO knob.

    Attributes:
        num_generations: completions sampled per prompt (rollout size = ``batch_size`` x this).
        beta: KL coefficient: weight of the per-token KL-to-reference penalty.
        ppo_epochs: optimizer steps taken on each rollout (1 makes the ratio always 1: no clipping).
        gamma: discount of GAE.
        lam: lambda of GAE.
        cliprange: policy ratio clip (epsilon).
        cliprange_value: value prediction clip around the rollout's values.
        vf_coef: weight of the value loss.
        max_train_new_tokens: cap on tokens generated per completion in training (CPU speed).
        temperature: sampling temperature (log-probabilities use the same).
        whiten_advantages: normalize advantages over the rollout's completion tokens.
    """

    num_generations: int = 4
    beta: float = 0.1
    ppo_epochs: int = 2
    gamma: float = 1.0
    lam: float = 0.95
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    max_train_new_tokens: int = 64
    temperature: float = 1.0
    whiten_advantages: bool = True

    def problems(self) -> dict[str, str]:
        """Ranges: counts at least 1 (2 completions), gamma and lambda in [0, 1], positive clips."""
        return failing(
            ("num_generations", self.num_generations < 2, "ppo needs at least 2 completions per prompt"),
            ("beta", self.beta < 0, "must be >= 0"),
            ("ppo_epochs", self.ppo_epochs < 1, "must be at least 1"),
            ("gamma", not 0 <= self.gamma <= 1, "must be between 0 and 1"),
            ("lam", not 0 <= self.lam <= 1, "must be between 0 and 1"),
            ("cliprange", self.cliprange <= 0, "must be positive"),
            ("cliprange_value", self.cliprange_value <= 0, "must be positive"),
            ("vf_coef", self.vf_coef < 0, "must be >= 0"),
            ("max_train_new_tokens", self.max_train_new_tokens < 1, "must be at least 1"),
            ("temperature", self.temperature <= 0, "must be positive"))


# ---- tensor math (pure functions) ----


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is 1."""
    return (values * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``values`` shifted to mean 0 and scaled to variance 1 over the masked positions (0 elsewhere).

    With fewer than two masked positions only the mean is removed.
    """
    mean = masked_mean(values, mask)
    centered = (values - mean) * mask
    count = mask.sum()
    if count < 2:
        return centered
    var = (centered**2).sum() / (count - 1)
    return centered / (var + eps).sqrt()


def completion_mask(completion_ids: torch.Tensor, stop_ids: list[int]) -> torch.Tensor:
    """1 for completion tokens up to and including the first stop token, 0 after it (float)."""
    import torch

    is_stop = torch.isin(completion_ids, torch.tensor(stop_ids, device=completion_ids.device))
    length = completion_ids.size(1)
    positions = torch.arange(length, device=completion_ids.device)
    first = torch.where(is_stop.any(1), is_stop.int().argmax(1), length)
    return (positions.unsqueeze(0) <= first.unsqueeze(1)).float()


def token_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-token rewards: ``-beta * kl`` on every completion token, plus the score on the last one."""
    import torch

    rewards = -beta * kl * mask
    last = (mask.sum(1).long() - 1).clamp(min=0)
    rows = torch.arange(rewards.size(0), device=rewards.device)
    rewards[rows, last] += scores.to(rewards.dtype)
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation over completion tokens.

    Positions where ``mask`` is 0 (after the completion ended) carry neither reward nor value, so the
    bootstrap value after the last token is 0.

    Returns:
        ``(advantages, returns)``, both shaped like ``rewards``; ``returns = advantages + values``.
    """
    import torch

    rewards, values = rewards * mask, values * mask
    length = rewards.size(1)
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(length)):
        next_value = values[:, t + 1] if t + 1 < length else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def ppo_losses(new_logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor,
               new_values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
               mask: torch.Tensor, settings: PPOSettings,
               ) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """Clipped PPO policy loss and clipped value loss, averaged over completion tokens.

    Returns:
        ``(policy_loss, value_loss, stats)``; stats hold ``clipfrac`` and ``approx_kl``.
    """
    import torch

    log_ratio = (new_logps - old_logps) * mask
    ratio = torch.exp(log_ratio)
    clipped_ratio = ratio.clamp(1 - settings.cliprange, 1 + settings.cliprange)
    policy_loss = masked_mean(torch.max(-advantages * ratio, -advantages * clipped_ratio), mask)
    clipped_values = old_values + (new_values - old_values).clamp(-settings.cliprange_value,
                                                                  settings.cliprange_value)
    value_error = torch.max((new_values - returns) ** 2, (clipped_values - returns) ** 2)
    value_loss = 0.5 * masked_mean(value_error, mask)
    with torch.no_grad():
        stats = {"clipfrac": float(masked_mean(((ratio - 1).abs() > settings.cliprange).float(), mask)),
                 "approx_kl": float(0.5 * masked_mean(log_ratio**2, mask))}
    return policy_loss, value_loss, stats


# ---- data ----


class PromptIndex:
    """The training dataset: example positions; prompts are rendered when a rollout needs them."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> int:
        return i


class ChunkRepeatSampler:
    """Shuffled example positions, in chunks of one optimizer step's prompts, each chunk repeated.

    A chunk is ``batch_size * grad_accum`` positions and is yielded ``repeats`` (``ppo_epochs``)
    times in a row, so the trainer takes ``ppo_epochs`` optimizer steps on the same prompts and can
    reuse their rollouts. A trailing partial chunk is dropped; a dataset smaller than one chunk is
    cycled. The order depends on ``seed`` and the epoch only (deterministic across resumes).
    """

    def __init__(self, size: int, chunk: int, repeats: int, seed: int) -> None:
        self.size, self.chunk, self.repeats, self.seed = size, chunk, repeats, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by the trainer at each epoch start."""
        self.epoch = epoch

    def _order(self) -> list[int]:
        rng = random.Random(self.seed + self.epoch)
        order: list[int] = []
        while len(order) < max(self.size, self.chunk):
            block = list(range(self.size))
            rng.shuffle(block)
            order += block
        return order[: len(order) // self.chunk * self.chunk]

    def __iter__(self):
        order = self._order()
        for start in range(0, len(order), self.chunk):
            for _ in range(self.repeats):
                yield from order[start:start + self.chunk]

    def __len__(self) -> int:
        cycled = self.size * math.ceil(max(self.size, self.chunk) / self.size)
        return cycled // self.chunk * self.chunk * self.repeats


def collate_positions(batch: list[int]) -> dict[str, Any]:
    """Batch of example positions -> ``{"idx": LongTensor}``."""
    import torch

    return {"idx": torch.tensor(batch, dtype=torch.long)}


# ---- trainer ----


def build_ppo(ctx: TrainContext, settings: PPOSettings | None = None) -> Any:
    """A ready compact PPO trainer (a ``transformers.Trainer``) for the capability's examples.

    ``ctx.args`` supplies the TrainingArguments; its ``max_length`` bounds prompt + completion.
    ``settings`` defaults to the capability's :class:`PPOSettings` from params.yaml.

    Raises:
        ValueError: the capability has no verifiable reward, or no examples.
    """
    from transformers import TrainingArguments

    if ctx.reward is None:
        raise ValueError(f"ppo needs a verifiable reward; capability '{ctx.capability}' has none")
    if not ctx.examples:
        raise ValueError(f"ppo: capability '{ctx.capability}' has no training examples")
    settings = settings or ctx.settings(PPOSettings)
    args = dict(ctx.args)
    max_length = int(args.pop("max_length", 1024))  # not a TrainingArguments keyword
    return ppo_trainer_class()(
        model=ctx.model, args=TrainingArguments(**args), tokenizer=ctx.tokenizer, examples=ctx.examples,
        reward=ctx.reward, beta=settings.beta, num_generations=max(1, settings.num_generations),
        max_new_tokens=max(1, min(ctx.cap.max_new_tokens, settings.max_train_new_tokens)),
        max_length=max_length, settings=settings, callbacks=ctx.callbacks,
    )


@functools.cache
def ppo_trainer_class() -> type:
    """The compact PPO ``Trainer`` subclass (built on first use so torch loads only then)."""
    import copy

    import torch
    from peft import PeftModel
    from safetensors.torch import load_file, save_file
    from transformers import GenerationConfig, Trainer
    from trl.trainer.utils import disable_dropout_in_model, selective_log_softmax

    class CompactPPOTrainer(Trainer):
        """PPO with a linear value head on the policy; see the module docstring.

        Logs ``reward`` (mean score), ``kl`` (mean summed per-sequence KL to the reference),
        ``policy_loss``, ``value_loss``, ``clipfrac`` and ``approx_kl`` at every logging step.
        The value head is saved as ``value_head.safetensors`` in every checkpoint and restored on
        resume; it is not part of the final model.
        """

        def __init__(self, *, model: Any, args: Any, tokenizer: Any, examples: list[dict[str, Any]],
                     reward: Any, beta: float, num_generations: int, max_new_tokens: int,
                     max_length: int, settings: PPOSettings, callbacks: list[Any] | None = None) -> None:
            disable_dropout_in_model(model)  # old and new log-probs must come from the same function
            super().__init__(model=model, args=args, train_dataset=PromptIndex(len(examples)),
                             data_collator=collate_positions, processing_class=tokenizer, callbacks=callbacks)
            self.examples, self.reward_fn, self.beta = examples, reward, beta
            self.num_generations, self.max_new_tokens = num_generations, max_new_tokens
            self.max_length, self.settings = max_length, settings
            hidden = self.model.config.get_text_config().hidden_size
            self.value_head = torch.nn.Linear(hidden, 1).to(self.args.device)
            torch.nn.init.zeros_(self.value_head.weight)  # values start at 0; no RNG drawn
            torch.nn.init.zeros_(self.value_head.bias)
            self.is_peft = isinstance(self.model, PeftModel)
            self.ref_model = None
            if not self.is_peft:
                self.ref_model = copy.deepcopy(self.model).eval().requires_grad_(False)
            self.stop_ids = sorted(eos_ids(self.model, tokenizer))  # a completion ends at any EOS id
            self._rollouts: dict[int, dict[str, Any]] = {}
            self._micro_calls = 0
            self._ppo_metrics: dict[str, list[float]] = defaultdict(list)
            self._total_train_tokens = 0

        # -- optimizer, checkpoints, logging --

        def create_optimizer(self, model: Any = None) -> Any:
            """The Trainer's optimizer plus a parameter group for the value head."""
            optimizer = super().create_optimizer(model)
            head = list(self.value_head.parameters())
            known = {id(p) for group in optimizer.param_groups for p in group["params"]}
            if not any(id(p) in known for p in head):
                optimizer.add_param_group({"params": head, "weight_decay": 0.0})
            return optimizer

        def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
            super()._save(output_dir, state_dict)
            if self.args.should_save:
                out = Path(output_dir if output_dir is not None else self.args.output_dir)
                save_file({k: v.detach().cpu().contiguous() for k, v in self.value_head.state_dict().items()},
                          str(out / VALUE_HEAD_FILE))

        def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
            super()._load_from_checkpoint(resume_from_checkpoint, model)
            path = Path(resume_from_checkpoint) / VALUE_HEAD_FILE
            if path.is_file():
                self.value_head.load_state_dict(load_file(str(path), device=str(self.args.device)))
            else:
                log.warning("%s has no %s: the value head restarts from zero", resume_from_checkpoint,
                            VALUE_HEAD_FILE)

        def _get_train_sampler(self, train_dataset: Any = None) -> ChunkRepeatSampler:
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            chunk = self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps
            return ChunkRepeatSampler(len(dataset), chunk, self.settings.ppo_epochs, self.args.seed)

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            """Add the PPO metrics gathered since the last log (means) to the Trainer's logs."""
            if self._ppo_metrics:
                logs = {**logs, **{k: sum(v) / len(v) for k, v in self._ppo_metrics.items()}}
                self._ppo_metrics.clear()
            super().log(logs, start_time)

        # -- rollout --

        def _forward(self, model: Any, input_ids: Any, attention_mask: Any, completion_len: int,
                     with_values: bool) -> tuple[Any, Any]:
            """Per-token log-probs of the completion tokens (and values of the states before them)."""
            position_ids = (attention_mask.cumsum(1) - 1).clamp(min=0)
            out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                        output_hidden_states=with_values, use_cache=False, logits_to_keep=completion_len + 1)
            logits = out.logits[:, :-1].float()
            logps = selective_log_softmax(logits, input_ids[:, -completion_len:], self.settings.temperature)
            values = None
            if with_values:
                states = out.hidden_states[-1][:, -completion_len - 1:-1]
                values = self.value_head(states.float()).squeeze(-1)
            return logps, values

        def _prompt_batch(self, idx: list[int]) -> tuple[Any, Any]:
            """Left-padded prompt ids and mask, each prompt repeated ``num_generations`` times."""
            tok = self.processing_class
            room = max(1, self.max_length - self.max_new_tokens)
            texts = [render_prompt(self.examples[i], tok) for i in idx]
            rendered = [tok(text, add_special_tokens=False)["input_ids"][-room:] for text in texts]
            prompts = [p for p in rendered for _ in range(self.num_generations)]
            width = max(len(p) for p in prompts)
            ids = torch.full((len(prompts), width), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(prompts), width), dtype=torch.long)
            for row, p in enumerate(prompts):
                ids[row, width - len(p):] = torch.tensor(p)
                mask[row, width - len(p):] = 1
            return ids.to(self.args.device), mask.to(self.args.device)

        @torch.no_grad()
        def _rollout(self, model: Any, idx: list[int]) -> dict[str, Any]:
            """Sample, score, and compute old log-probs, values, reference KL, advantages, returns."""
            unwrapped = self.accelerator.unwrap_model(model)
            prompt_ids, prompt_mask = self._prompt_batch(idx)
            config = GenerationConfig(do_sample=True, max_new_tokens=self.max_new_tokens,
                                      temperature=self.settings.temperature, top_k=0, top_p=1.0,
                                      pad_token_id=self.processing_class.pad_token_id,
                                      eos_token_id=self.stop_ids, use_cache=True)
            with self.accelerator.autocast():
                sequences = unwrapped.generate(input_ids=prompt_ids, attention_mask=prompt_mask,
                                               generation_config=config)
            completion = sequences[:, prompt_ids.size(1):]
            mask = completion_mask(completion, self.stop_ids)
            completion = torch.where(mask.bool(), completion, self.processing_class.pad_token_id)
            sequences = torch.cat([prompt_ids, completion], 1)
            attention = torch.cat([prompt_mask, mask.long()], 1)
            length = completion.size(1)
            texts = self.processing_class.batch_decode(completion, skip_special_tokens=True)
            examples = [self.examples[i] for i in idx for _ in range(self.num_generations)]
            scores = torch.tensor([float(self.reward_fn(t, e)) for t, e in zip(texts, examples, strict=True)],
                                  device=sequences.device)
            with self.accelerator.autocast():
                old_logps, old_values = self._forward(unwrapped, sequences, attention, length, True)
                if self.is_peft:
                    with unwrapped.disable_adapter():
                        ref_logps, _ = self._forward(unwrapped, sequences, attention, length, False)
                else:
                    ref_logps, _ = self._forward(self.ref_model, sequences, attention, length, False)
            kl = (old_logps - ref_logps) * mask
            rewards = token_rewards(scores, kl, mask, self.beta)
            old_values = old_values.float()
            advantages, returns = gae(rewards, old_values, mask, self.settings.gamma, self.settings.lam)
            if self.settings.whiten_advantages:
                advantages = masked_whiten(advantages, mask)
            return {"idx": list(idx), "uses": 0, "input_ids": sequences, "attention_mask": attention,
                    "completion_mask": mask, "old_logps": old_logps, "old_values": old_values,
                    "advantages": advantages, "returns": returns,
                    "reward": float(scores.mean()), "kl": float(kl.sum(1).mean())}

        # -- training step and loss --

        def _track_num_input_tokens(self, inputs: dict[str, Any]) -> None:
            """The batches hold example positions only; :meth:`_count_tokens` counts the rollouts."""

        def _count_tokens(self, attention_mask: Any) -> None:
            """Add one rollout's prompt + completion tokens to the counters (padding excluded)."""
            real = int(attention_mask.sum())
            self._total_train_tokens += real
            mode = self.args.include_num_input_tokens_seen
            if mode not in ("no", False, None):
                self.state.num_input_tokens_seen += real if mode == "non_padding" else attention_mask.numel()

        def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
            """Reuse this micro-batch slot's rollout for ``ppo_epochs`` steps, else roll out anew."""
            slot = self._micro_calls % self.args.gradient_accumulation_steps
            self._micro_calls += 1
            idx = inputs["idx"].tolist()
            rollout = self._rollouts.get(slot)
            if rollout is None or rollout["idx"] != idx or rollout["uses"] >= self.settings.ppo_epochs:
                rollout = self._rollouts[slot] = self._rollout(model, idx)
            rollout["uses"] += 1
            self._ppo_metrics["reward"].append(rollout["reward"])
            self._ppo_metrics["kl"].append(rollout["kl"])
            self._count_tokens(rollout["attention_mask"])
            tensors = {k: v for k, v in rollout.items() if isinstance(v, torch.Tensor)}
            return super().training_step(model, tensors, num_items_in_batch)

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            """Clipped policy loss + ``vf_coef`` x clipped value loss on one rollout."""
            mask = inputs["completion_mask"]
            new_logps, new_values = self._forward(model, inputs["input_ids"], inputs["attention_mask"],
                                                  mask.size(1), True)
            policy_loss, value_loss, stats = ppo_losses(
                new_logps, inputs["old_logps"], inputs["advantages"], new_values.float(),
                inputs["old_values"], inputs["returns"], mask, self.settings)
            loss = policy_loss + self.settings.vf_coef * value_loss
            stats.update(policy_loss=float(policy_loss.detach()), value_loss=float(value_loss.detach()))
            for key, value in stats.items():
                self._ppo_metrics[key].append(value)
            return (loss, None) if return_outputs else loss

    return CompactPPOTrainer


PPO = Method("ppo", "proximal policy optimization with a value head and the verifiable reward",
             "nexus.methods.ppo (see docs/ppo.md)", build_ppo, PPOSettings)
