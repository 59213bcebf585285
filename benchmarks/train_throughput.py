"""Training throughput: Nexus's trainer path against the fair anchors, interleaved, in one run.

Same model, same rows (GSM8K sample records formatted by the cot capability), same steps, batch,
max length, LoRA (r=16, alpha 32, dropout 0.05, all linear layers) and optimisation schedule
(Nexus's learning rate, cosine, 5% warm-up) for every variant:

- ``trl-tuned``: a plain TRL ``SFTTrainer`` script as a careful user tunes it for this machine: no
  gradient checkpointing, bf16 autocast only where the hardware has bf16 (fp32 elsewhere: emulated
  bf16 is the slowest option), TRL's own loss path (its fused LM head);
- ``trl-fp32``: the same in fp32 everywhere (the anchor on a CPU without bf16);
- ``trl-defaults``: the same script with TRL's defaults (bf16 autocast, gradient checkpointing).
  On a CPU without native bf16 the autocast is emulated and many times slower: it runs
  ``--defaults-steps`` steps once (2 by default there), and the table says so;
- ``nexus``: the shared trainer's path (nexus/trainer.py, nexus/methods/sft.py) with the profile
  ``DeviceProfile.detect()`` picks for this machine;
- lever variants, each one lever off (``--variants``): ``nexus-padded`` (padded batches instead of
  padding-free rows), ``nexus-all-logits`` (padded, logits at every position: Nexus before these
  levers), ``nexus-compile`` (``torch.compile`` on top of ``nexus``);
- ``llamafactory``: LLaMA-Factory's defaults on the same rows, steps and LoRA, when
  ``--llamafactory PYTHON`` names an interpreter of a separate environment that has it
  (benchmarks/llamafactory_run.py says how to make one).

Each run is its own process. The variants run interleaved (A B C A B C ... ``--repeats`` times);
medians and ranges are printed with the load average around each run and the CPU's flags. Tokens
are counted the same way for all: the real (non-padding) tokens of the tokenized training rows,
every row consumed once (rows = steps x batch). The losses of every step are compared with
``trl-tuned``'s.

    python benchmarks/train_throughput.py                      # embedded SmolLM2 (models/base)
    python benchmarks/train_throughput.py --steps 8 --repeats 3 --variants trl-tuned,nexus,nexus-padded
    python benchmarks/train_throughput.py --llamafactory /tmp/lf-venv/bin/python

On a GPU it prints tokens/s and the model FLOPs utilisation (MFU; ``--peak-tflops`` for a GPU the
script does not know).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from samples import ROOT, cot_examples  # benchmarks/samples.py

ANCHOR = "trl-tuned"
NEXUS_LEVERS = {  # DeviceProfile fields each Nexus variant overrides
    "nexus": {},
    "nexus-padded": {"padding_free": False},
    "nexus-all-logits": {"padding_free": False, "labelled_logits": False},
    "nexus-compile": {},
}
TRL_VARIANTS = ("trl-defaults", ANCHOR, "trl-fp32")
DEFAULT_VARIANTS = ("trl-defaults", ANCHOR, "nexus")
LOSS_TOLERANCE = 0.02  # |mean loss difference| counted as the same loss (LoRA dropout masks differ by shape)
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "4090": 165.0}
FP32 = {"on": False}  # --fp32: bf16 off everywhere, the path a CPU without native bf16 takes
LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear"}


def _rows(n: int) -> list[dict]:
    return [{"prompt": e["prompt"], "completion": e["completion"]} for e in cot_examples(n)]


def _trl_trainer(variant: str, model_path: str, rows: list[dict], steps: int, batch_size: int,
                 max_length: int, out: str) -> object:
    """A plain TRL script: ``trl-tuned``, ``trl-fp32`` or ``trl-defaults`` (see the module's doc)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from nexus.config import CapabilityParams
    from nexus.device import DeviceProfile
    from nexus.loading import load_model, load_tokenizer

    bf16 = DeviceProfile.detect().bf16 and not FP32["on"]
    tuned = {"bf16": variant == ANCHOR and bf16, "gradient_checkpointing": False}
    tuned = {} if variant == "trl-defaults" else tuned
    cap = CapabilityParams()
    config = SFTConfig(output_dir=out, max_steps=steps, per_device_train_batch_size=batch_size,
                       max_length=max_length, report_to="none", save_strategy="no", logging_steps=1,
                       learning_rate=cap.learning_rate, lr_scheduler_type="cosine", warmup_steps=0.05,
                       use_cpu=not torch.cuda.is_available(), disable_tqdm=True, seed=0, **tuned)
    return SFTTrainer(model=load_model(model_path), args=config, train_dataset=Dataset.from_list(rows),
                      processing_class=load_tokenizer(model_path),
                      peft_config=LoraConfig(**LORA, task_type="CAUSAL_LM"))


def _nexus_trainer(variant: str, model_path: str, rows: list[dict], steps: int, batch_size: int,
                   max_length: int, out: str) -> object:
    """The shared trainer's SFT path with this machine's profile, one lever off for a lever variant."""
    from nexus import trainer as nexus_trainer
    from nexus.config import CapabilityParams
    from nexus.loading import load_model, load_tokenizer
    from nexus.methods import METHODS, TrainContext, parse_params
    from nexus.text_training import apply_adapter

    cap = CapabilityParams(max_steps=steps, batch_size=batch_size, max_length=max_length,
                           lora_r=LORA["r"], lora_alpha=LORA["lora_alpha"], lora_dropout=LORA["lora_dropout"])
    params = parse_params({"base": {"model": model_path, "seed": 0},
                           "controller": {"checkpoint_every_steps": 10**9}})
    profile = dataclasses.replace(nexus_trainer.DeviceProfile.detect(), **NEXUS_LEVERS[variant])
    profile = dataclasses.replace(profile, bf16=profile.bf16 and not FP32["on"])
    args = nexus_trainer.training_arguments(cap, params, Path(out), profile)
    args.update(save_strategy="no", torch_compile=variant == "nexus-compile")
    tokenizer = load_tokenizer(model_path)
    return METHODS["sft"].build(TrainContext(
        capability="cot", model=apply_adapter(load_model(model_path), cap), tokenizer=tokenizer, cap=cap,
        params=params, args=args, callbacks=[], profile=profile, examples=rows))


def run_variant(variant: str, model_path: str, steps: int, batch_size: int, max_length: int, threads: int) -> dict:
    """Train ``steps`` steps with one variant in this process and measure it."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    rows = _rows(steps * batch_size)
    out = tempfile.mkdtemp(prefix=f"bench-{variant}-")
    if variant.startswith("trl"):
        trainer = _trl_trainer(variant, model_path, rows, steps, batch_size, max_length, out)
    else:
        trainer = _nexus_trainer(variant, model_path, rows, steps, batch_size, max_length, out)
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])  # every row once
    started = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - started
    steps_done = trainer.state.global_step
    if steps_done == steps:  # a short --defaults-steps run consumed only its rows
        consumed = tokens
    else:
        consumed = sum(len(ids) for ids in trainer.train_dataset["input_ids"][:steps_done * batch_size])
    return {"variant": variant, "steps": steps_done, "seconds": round(elapsed, 2), "tokens": consumed,
            "tokens_per_s": round(consumed / elapsed, 1), "threads": torch.get_num_threads(),
            "losses": [round(h["loss"], 5) for h in trainer.state.log_history if "loss" in h],
            "flops_per_token": _flops_per_token(trainer, max_length)}


def _flops_per_token(trainer: object, max_length: int) -> int:
    from trl.trainer.utils import compute_flops_per_token

    return int(compute_flops_per_token(trainer.model.config, max_length))


def cpu_summary() -> str:
    """The CPU's model name, cores and the flags that decide the fast path."""
    try:
        info = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return "cpu: unknown"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    shown = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return f"cpu: {name}, {os.cpu_count()} cores, flags: {' '.join(shown) or 'none of avx2/avx512/amx'}"


def _child(variant: str, args: argparse.Namespace, steps: int) -> dict:
    """One variant in a fresh process (its own threads and caches), with the load around it."""
    load_before = os.getloadavg()[0]
    if variant == "llamafactory":
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(_rows(steps * args.batch_size), f)
        from nexus.config import CapabilityParams

        cmd = [args.llamafactory, str(Path(__file__).with_name("llamafactory_run.py")), "--model", args.model,
               "--rows", f.name, "--steps", str(steps), "--batch-size", str(args.batch_size),
               "--max-length", str(args.max_length), "--learning-rate", str(CapabilityParams().learning_rate),
               "--lora-r", str(LORA["r"]), "--lora-alpha", str(LORA["lora_alpha"]),
               "--lora-dropout", str(LORA["lora_dropout"]), "--out", tempfile.mkdtemp(prefix="bench-lf-")]
    else:
        cmd = [sys.executable, __file__, "--variant", variant, "--model", args.model, "--steps", str(steps),
               "--batch-size", str(args.batch_size), "--max-length", str(args.max_length),
               "--threads", str(args.threads), *(["--fp32"] if args.fp32 else [])]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"train_throughput: variant {variant} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["load"] = (round(load_before, 2), round(os.getloadavg()[0], 2))
    return result


def _gpu_line(result: dict, peak_tflops: float | None) -> str:
    import torch

    name = torch.cuda.get_device_name(0)
    peak = peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    if not peak or not result.get("flops_per_token"):
        return f"{name}: MFU unknown (pass --peak-tflops)"
    mfu = result["tokens_per_s"] * result["flops_per_token"] / (peak * 1e12)
    return f"{name}: MFU {100 * mfu:.2f}% of {peak:.0f} TFLOP/s (TRL's FLOPs per token, seq {result.get('seq')})"


def _loss_check(ours: dict, anchor: dict) -> str:
    pairs = list(zip(ours["losses"], anchor["losses"], strict=False))
    if not pairs:
        return "no losses to compare"
    worst = max(abs(a - b) for a, b in pairs)
    mean_gap = statistics.fmean(a for a, _ in pairs) - statistics.fmean(b for _, b in pairs)
    same = abs(mean_gap) <= LOSS_TOLERANCE
    return (f"mean loss over {len(pairs)} steps {mean_gap:+.4f}, worst step {worst:.4f}: "
            f"{'same loss within noise' if same else 'LOSSES DIFFER'} (tolerance {LOSS_TOLERANCE})")


def report(runs: dict[str, list[dict]], args: argparse.Namespace, emulated_bf16: bool) -> None:
    """Print medians, ranges, loads, the speed-ups over the anchor and the loss check."""
    print(cpu_summary())
    print(f"model {args.model}, {args.steps} steps, batch {args.batch_size}, max_length {args.max_length}, "
          f"repeats {args.repeats} interleaved, threads {runs[next(iter(runs))][0]['threads']}"
          f"{', fp32 forced (--fp32)' if args.fp32 else ''}")
    print(f"{'variant':<18}{'median tok/s':>13}{'range':>17}{'tokens':>8}{'steps':>6}{'mean loss':>11}"
          "  load before/after")
    for variant, done in runs.items():
        speeds = [r["tokens_per_s"] for r in done]
        mean_loss = statistics.fmean(statistics.fmean(r["losses"]) for r in done)
        loads = ", ".join(f"{r['load'][0]}/{r['load'][1]}" for r in done)
        note = " (bf16 emulated on this CPU)" if variant == "trl-defaults" and emulated_bf16 else ""
        print(f"{variant:<18}{statistics.median(speeds):>13.1f}{f'{min(speeds)}-{max(speeds)}':>17}"
              f"{done[0]['tokens']:>8}{done[0]['steps']:>6}{mean_loss:>11.4f}  {loads}{note}")
    if ANCHOR not in runs:
        return
    anchor = statistics.median(r["tokens_per_s"] for r in runs[ANCHOR])
    for variant, done in runs.items():
        if variant == ANCHOR:
            continue
        ratios = [r["tokens_per_s"] / a["tokens_per_s"] for r, a in zip(done, runs[ANCHOR], strict=False)]
        median = statistics.median(r["tokens_per_s"] for r in done)
        target = " (target >= 1.5x)" if variant == "nexus" else ""
        print(f"{variant}: {median / anchor:.2f}x {ANCHOR} (pairs {min(ratios):.2f}-{max(ratios):.2f}){target}; "
              f"loss vs {ANCHOR}: {_loss_check(done[0], runs[ANCHOR][0])}")
    if args.gpu_line:
        print(args.gpu_line)


def main() -> None:
    """Run the variants interleaved and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "models" / "base"))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved runs per variant (default 2)")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                        help=f"comma list of {', '.join((*TRL_VARIANTS, *NEXUS_LEVERS, 'llamafactory'))}")
    parser.add_argument("--defaults-steps", type=int, default=None,
                        help="steps for trl-defaults (default: --steps with native bf16, else 2, run once)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per run (0: torch's default)")
    parser.add_argument("--llamafactory", metavar="PYTHON", help="interpreter of an environment with LLaMA-Factory")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's peak dense bf16 TFLOP/s, for MFU")
    parser.add_argument("--fp32", action="store_true",
                        help="bf16 off for trl-tuned and nexus: the path of a CPU without native bf16")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    FP32["on"] = args.fp32
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.model, args.steps, args.batch_size, args.max_length,
                                     args.threads)))
        return
    import torch

    from nexus.device import DeviceProfile

    on_gpu = torch.cuda.is_available()
    emulated = not on_gpu and not DeviceProfile.detect().bf16
    variants = [v for v in args.variants.split(",") if v]
    if args.llamafactory and "llamafactory" not in variants:
        variants.append("llamafactory")
    unknown = [v for v in variants if v not in TRL_VARIANTS + ("llamafactory", *NEXUS_LEVERS)]
    if unknown or ("llamafactory" in variants and not args.llamafactory):
        sys.exit(f"train_throughput: --variants: unknown {unknown or ['llamafactory without --llamafactory PYTHON']}")
    defaults_steps = args.defaults_steps or (2 if emulated else args.steps)
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for repeat in range(args.repeats):
        for variant in variants:
            short = variant == "trl-defaults" and defaults_steps != args.steps
            if short and repeat:
                continue  # the emulated-bf16 run is too slow to repeat
            result = _child(variant, args, defaults_steps if short else args.steps)
            print(f"  run {repeat + 1}: {variant} {result['tokens_per_s']} tok/s, load {result['load']}",
                  file=sys.stderr, flush=True)
            runs[variant].append(result)
    args.gpu_line = _gpu_line(runs.get("nexus", runs[variants[-1]])[0] | {"seq": args.max_length},
                              args.peak_tflops) if on_gpu else ""
    report(runs, args, emulated)


if __name__ == "__main__":
    main()
