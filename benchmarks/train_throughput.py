"""Training throughput: Nexus's trainer path against a plain TRL SFT script with TRL's defaults.

Same model, same data (GSM8K sample rows formatted by the cot capability), same steps, batch and
max length; prints real (non-padding) tokens/s and the final loss side by side, plus the time of
`nexus plan`. Variants: `trl-defaults` (TRL's SFTConfig defaults: bf16 autocast, gradient
checkpointing, fused LM head), `trl-fp32` (the same without bf16 and checkpointing, to compare
losses like for like) and `nexus` (the shared trainer's path, see nexus/trainer.py).
Run on demand (not part of the test suite):

    python benchmarks/train_throughput.py                 # embedded SmolLM2 (models/base), 20 steps
    python benchmarks/train_throughput.py --model PATH --steps 40 --batch-size 2

Each variant runs in its own subprocess so neither inherits the other's threads or caches.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from samples import ROOT, cot_examples  # benchmarks/samples.py


def _rows(n: int) -> list[dict]:
    return [{"prompt": e["prompt"], "completion": e["completion"]} for e in cot_examples(n)]


def run_variant(variant: str, model_path: str, steps: int, batch_size: int, max_length: int) -> dict:
    """Train ``steps`` steps with one variant in this process and measure it."""
    import tempfile

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from nexus import trainer as nexus_trainer
    from nexus.config import CapabilityParams
    from nexus.loading import load_model, load_tokenizer
    from nexus.methods import METHODS, TrainContext, parse_params
    from nexus.text_training import apply_adapter

    torch.manual_seed(0)
    rows = _rows(steps * batch_size)
    tokenizer = load_tokenizer(model_path)
    out = tempfile.mkdtemp(prefix=f"bench-{variant}-")
    if variant.startswith("trl"):
        # A plain TRL script: TRL's defaults, except use_cpu (required to run at all on a CPU);
        # "trl-fp32" also turns off bf16 and gradient checkpointing, to compare losses like for like.
        import transformers

        # The optimisation schedule is Nexus's (same learning rate, scheduler, warm-up), so the losses
        # compare; only the speed levers keep TRL's defaults.
        extra = {"bf16": False, "gradient_checkpointing": False} if variant == "trl-fp32" else {}
        cap = CapabilityParams()
        config = SFTConfig(output_dir=out, max_steps=steps, per_device_train_batch_size=batch_size,
                           max_length=max_length, report_to="none", save_strategy="no", logging_steps=1,
                           learning_rate=cap.learning_rate, lr_scheduler_type="cosine", warmup_steps=0.05,
                           use_cpu=not torch.cuda.is_available(), disable_tqdm=True, seed=0, **extra)
        peft = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                          task_type="CAUSAL_LM")
        trainer = SFTTrainer(model=load_model(model_path), args=config, train_dataset=Dataset.from_list(rows),
                             processing_class=tokenizer, peft_config=peft)
        del transformers
    else:
        cap = CapabilityParams(max_steps=steps, batch_size=batch_size, max_length=max_length)
        params = parse_params({"base": {"model": model_path, "seed": 0}, "controller":
                               {"checkpoint_every_steps": 10**9}})
        profile = nexus_trainer.DeviceProfile.detect()
        args = nexus_trainer.training_arguments(cap, params, Path(out), profile)
        args.update(save_strategy="no")
        model = apply_adapter(load_model(model_path), cap)
        trainer = METHODS["sft"].build(TrainContext(
            capability="cot", model=model, tokenizer=tokenizer, cap=cap, params=params, args=args,
            callbacks=[], profile=profile, examples=rows))
    started = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - started
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    tokens = trainer._total_train_tokens
    return {"variant": variant, "steps": trainer.state.global_step, "seconds": round(elapsed, 1),
            "tokens": tokens, "tokens_per_s": round(tokens / elapsed, 1),
            "first_loss": round(losses[0], 4), "final_loss": round(sum(losses[-5:]) / len(losses[-5:]), 4)}


def plan_seconds() -> float:
    """Wall time of `nexus plan --caps cot` in a fresh interpreter (median of 3)."""
    times = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "nexus.cli", "plan", "--caps", "cot"], cwd=ROOT,
                       capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return round(sorted(times)[1], 2)


def main() -> None:
    """Run both variants and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "models" / "base"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.model, args.steps, args.batch_size, args.max_length)))
        return
    results = []
    for variant in ("trl-defaults", "trl-fp32", "nexus"):
        done = subprocess.run([sys.executable, __file__, "--variant", variant, "--model", args.model,
                               "--steps", str(args.steps), "--batch-size", str(args.batch_size),
                               "--max-length", str(args.max_length)],
                              capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"model {args.model}, {args.steps} steps, batch {args.batch_size}, max_length {args.max_length}")
    print(f"{'variant':<14}{'tokens/s':>10}{'seconds':>9}{'tokens':>8}{'first loss':>12}{'final loss':>12}")
    for r in results:
        print(f"{r['variant']:<14}{r['tokens_per_s']:>10}{r['seconds']:>9}{r['tokens']:>8}{r['first_loss']:>12}"
              f"{r['final_loss']:>12}")
    base, fp32, ours = results
    print(f"speed-up: {ours['tokens_per_s'] / max(base['tokens_per_s'], 1e-9):.2f}x plain TRL defaults "
          f"(target >= 1.5x), {ours['tokens_per_s'] / max(fp32['tokens_per_s'], 1e-9):.2f}x TRL fp32")
    print(f"final loss (mean of the last 5 steps): nexus {ours['final_loss']}, TRL fp32 {fp32['final_loss']} "
          f"({ours['final_loss'] - fp32['final_loss']:+.4f}), TRL defaults {base['final_loss']} "
          f"({ours['final_loss'] - base['final_loss']:+.4f})")
    print(f"nexus plan: {plan_seconds()} s (target < 2 s)")


if __name__ == "__main__":
    main()
