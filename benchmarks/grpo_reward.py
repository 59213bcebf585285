"""GRPO on a verifiable task: does the mean reward rise over the steps? Prints the curve.

Trains the embedded SmolLM2 (models/base; `make train` or `nexus prepare-base` creates it) with the
``grpo`` method exactly as the train stage builds it (nexus.methods.grpo: TRL's GRPOTrainer), on
the cot capability's GSM8K sample prompts, with the cot reward: the mean of answer correctness and
a "The final answer is N." line (nexus.methods.rewards). Each step samples ``--generations``
completions for each of ``--prompts`` prompts; the reward logged at a step is the mean over those
completions, before the update. Run on demand (not part of the test suite):

    python benchmarks/grpo_reward.py                      # 30 steps on CPU: about 10 minutes here
    python benchmarks/grpo_reward.py --steps 60 --model PATH --png reports/benchmarks/grpo_reward.png

Prints one line per step (reward, a bar, loss), the first and last fifths' means, and writes a
PNG of the curve when ``--png`` is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from samples import ROOT, cot_examples  # benchmarks/samples.py


def run(model_path: str, steps: int, prompts: int, generations: int, max_new_tokens: int,
        learning_rate: float, out: Path) -> list[dict]:
    """Train ``steps`` GRPO steps and return the per-step log rows that carry a reward."""
    import torch
    from transformers import TrainerCallback

    from nexus.device import DeviceProfile
    from nexus.loading import load_model, load_tokenizer
    from nexus.methods import METHODS, TrainContext, load_params
    from nexus.methods.grpo import GRPOSettings
    from nexus.methods.rewards import reward_of
    from nexus.text_training import apply_adapter
    from nexus.trainer import training_arguments

    params = load_params(ROOT / "params.yaml")
    cap = dataclasses.replace(params.capabilities["cot"], method="grpo", max_steps=steps, batch_size=prompts,
                              max_new_tokens=max_new_tokens, learning_rate=learning_rate,
                              method_settings=GRPOSettings(num_generations=generations, beta=0.0))
    profile = DeviceProfile.detect()
    torch.manual_seed(params.base.seed)
    tokenizer = load_tokenizer(model_path)
    model = apply_adapter(load_model(model_path).to(profile.device), cap)
    args = training_arguments(cap, params, out, profile)
    args.update(save_strategy="no", warmup_steps=0, lr_scheduler_type="constant")
    seen: list[dict] = []

    class Printer(TrainerCallback):
        def on_log(self, _args, state, _control, logs=None, **_):
            if logs and "reward" in logs:
                row = {"step": state.global_step, "reward": logs["reward"], "loss": logs.get("loss")}
                seen.append(row)
                bar = "#" * round(40 * row["reward"])
                print(f"step {row['step']:3d}  reward {row['reward']:.3f}  {bar:<40}  loss {row['loss']}",
                      flush=True)

    trainer = METHODS["grpo"].build(TrainContext(
        capability="cot", model=model, tokenizer=tokenizer, cap=cap, params=params, args=args,
        callbacks=[Printer()], profile=profile, examples=cot_examples(steps * prompts),
        reward=reward_of("cot")))
    trainer.train()
    return seen


def _plot(rows: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot([r["step"] for r in rows], [r["reward"] for r in rows], marker="o", ms=3)
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("mean reward (cot)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models/base"))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--prompts", type=int, default=2, help="prompts per step")
    parser.add_argument("--generations", type=int, default=4, help="completions per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--png", type=Path, help="write the curve as a PNG here")
    parser.add_argument("--work", type=Path, default=Path("/tmp/nexus-grpo-bench"))
    args = parser.parse_args()
    started = time.perf_counter()
    rows = run(args.model, args.steps, args.prompts, args.generations, args.max_new_tokens,
               args.learning_rate, args.work)
    fifth = max(1, len(rows) // 5)
    first = sum(r["reward"] for r in rows[:fifth]) / fifth
    last = sum(r["reward"] for r in rows[-fifth:]) / fifth
    print(f"mean reward, first {fifth} steps: {first:.3f}; last {fifth} steps: {last:.3f} "
          f"({'rose' if last > first else 'did not rise'}); {time.perf_counter() - started:.0f} s in all")
    if args.png:
        _plot(rows, args.png)
        print(f"curve: {args.png}")


if __name__ == "__main__":
    main()
