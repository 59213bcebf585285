"""Scaling: the real train stage on 1 and on N processes (launch.processes), same capability, steps and
global batch; prints tokens/s, seconds per step, the speed-up and the losses side by side. And
``--memory``: the memory per GPU that DDP, ZeRO-2 and FSDP/ZeRO-3 need for the model states of the
seed's model sizes, computed from their parameter counts (docs/performance.md, "Several processes").

    python benchmarks/train_scaling.py                     # cot on the embedded SmolLM2, 1 vs 2 processes
    python benchmarks/train_scaling.py --processes 1 2 4 --steps 16 --model models/base
    python benchmarks/train_scaling.py --memory --gpus 1 2 4 8

Each run is `python stages/train.py` in a throw-away copy of the project (the same command DVC runs,
launching accelerate for N > 1); figures come from its run card. Run on demand, on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Parameter counts (from each model's config.json) of the sizes the seed names; LoRA r=16 on every
# linear layer of the decoder adds well under 1 % and is left out.
MODELS = {"Qwen2.5-0.5B": 0.494e9, "Qwen2.5-1.5B": 1.544e9, "Qwen2.5-3B": 3.086e9, "Qwen2.5-7B": 7.616e9}
GIB = 1024**3


def model_state_gib(params: float, gpus: int, strategy: str, lora: bool) -> float:
    """GiB per GPU for weights, gradients and AdamW state (activations, buffers and the CUDA
    context come on top). Full fine-tuning in bf16 mixed precision keeps 16 bytes per parameter
    (2 weights, 2 gradients, 4 fp32 master weights, 8 Adam moments); LoRA keeps the frozen base
    in bf16 (2 bytes) and trains a negligible adapter."""
    if lora:
        replicated, sharded = (2.0, 0.0) if strategy in ("ddp", "zero2") else (0.0, 2.0)
    else:
        replicated, sharded = {"ddp": (16.0, 0.0), "zero2": (2.0, 14.0), "zero3": (0.0, 16.0)}[strategy]
    return params * (replicated + sharded / gpus) / GIB


def memory_table(gpus: list[int]) -> str:
    """Markdown rows: model, strategy, GiB per GPU at each GPU count (full fine-tuning and LoRA)."""
    head = "| model | training | strategy | " + " | ".join(f"{g} GPU{'s' if g > 1 else ''}" for g in gpus) + " |"
    lines = [head, "| --- " * (3 + len(gpus)) + "|"]
    for name, params in MODELS.items():
        for lora in (False, True):
            for strategy, label in (("ddp", "DDP"), ("zero2", "ZeRO-2"), ("zero3", "FSDP / ZeRO-3")):
                if lora and strategy == "zero2":
                    continue  # LoRA's gradients and optimizer state are tiny: ZeRO-2 saves nothing over DDP
                cells = " | ".join(f"{model_state_gib(params, g, strategy, lora):.1f}" for g in gpus)
                lines.append(f"| {name} | {'LoRA (bf16 base)' if lora else 'full (bf16 + fp32 Adam)'} "
                             f"| {label} | {cells} |")
    return "\n".join(lines)


def _project(model: Path, steps: int, workdir: Path) -> Path:
    """A copy of the project's tracked files, trained from ``model``; ``dvc repro prepare@cot`` run."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout.decode()
    repo = workdir / "project"
    for rel in filter(None, files.split("\0")):
        if (ROOT / rel).is_file():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, repo / rel)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    import yaml

    params = yaml.safe_load((repo / "params.yaml").read_text())
    (repo / "models").mkdir()
    (repo / "models" / "base").symlink_to(model.resolve())  # params.yaml's base.model, as DVC's base_model makes it
    params["capabilities"]["cot"].update(max_steps=steps, sample_size=64, eval_size=4, max_length=384)
    params["controller"]["checkpoint_every_steps"] = 10_000
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", "copy"],
                   cwd=repo, check=True)
    for stage in ("organize", "detect", "prepare@cot"):
        done = subprocess.run([sys.executable, "-m", "dvc", "repro", "-s", stage], cwd=repo, capture_output=True,
                              text=True, env=_env())
        if done.returncode != 0:
            raise SystemExit(f"dvc repro -s {stage} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return repo


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def run_stage(repo: Path, processes: int) -> dict:
    """One train stage on ``processes`` processes; its run card's figures."""
    import yaml

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["launch"]["processes"] = processes
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.rmtree(repo / "checkpoints", ignore_errors=True)
    out = repo / "models" / "capabilities" / "cot"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "stages/train.py", "--prepared", "--data", "data/organized",
                           "--modality", "data/modality.json", "--capability", "cot", "--out", str(out)],
                          cwd=repo, env=_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"train on {processes} process(es) failed ({done.returncode}):\n{done.stderr[-3000:]}")
    card = json.loads((out / "run_card.json").read_text())
    return {"processes": processes, "wall_s": round(time.perf_counter() - started, 1), "train_s": card["runtime_s"],
            "s_per_step": round(card["runtime_s"] / max(card["steps"], 1), 2), "tokens_per_s": card["tokens_per_s"],
            "train_loss": card["train_loss"], "split": card["processes"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "base", help="HF folder (default: models/base)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--memory", action="store_true", help="print the memory-per-GPU table and stop")
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 2, 4, 8])
    args = parser.parse_args()
    if args.memory:
        print(memory_table(args.gpus))
        return
    if not (args.model / "config.json").is_file():
        raise SystemExit(f"--model {args.model}: no HF folder there; run `dvc repro base_model` first")
    flags = Path("/proc/cpuinfo").read_text().split("flags")[1].split("\n")[0] if Path("/proc/cpuinfo").exists() else ""
    print(f"cpus {os.cpu_count()}, avx512_bf16 {'avx512_bf16' in flags}, load {os.getloadavg()[0]:.2f}, "
          f"model {args.model}, {args.steps} steps, global batch from params.yaml (cot)")
    with tempfile.TemporaryDirectory(prefix="nexus-scaling-") as tmp:
        repo = _project(args.model, args.steps, Path(tmp))
        rows = [run_stage(repo, n) for n in args.processes]
    base = rows[0]["tokens_per_s"] or 1
    for row in rows:
        print(json.dumps({**row, "speedup": round(row["tokens_per_s"] / base, 2)}))
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
