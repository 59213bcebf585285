"""CUDA checks that a CPU machine cannot make: QLoRA through bitsandbytes, the thermal guard on
real NVML readings, and training throughput per adapter. Run on demand on a GPU machine:

    python benchmarks/gpu_check.py --model models/base --out reports/gpu_check.json
    python benchmarks/gpu_check.py --config-only DIR   # the architecture of DIR, random weights

``--config-only`` builds the model of ``DIR/config.json`` with random weights and DIR's tokenizer
(for a machine the weights cannot be copied to); throughput and memory are then those of the real
architecture, losses are not meaningful. Prints one line per check and writes them as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import threading
import time
from pathlib import Path
from typing import Any

from samples import ROOT, cot_examples  # benchmarks/samples.py


def _random_model_folder(config_dir: Path, out: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(config_dir))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(config_dir).save_pretrained(out)
    return out


def check_thermal_guard(result: dict[str, Any]) -> None:
    """Real NVML reading; the guard pauses while the GPU is above the limit and resumes below it."""
    import logging

    from nexus.config import ControllerParams
    from nexus.controller import NvmlTemperatureReader, TrainingController

    reader = NvmlTemperatureReader()
    temp = reader()
    result["nvml_temperature_c"] = temp
    print(f"NVML: GPU temperature {temp} C", flush=True)
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    log = logging.getLogger("gpu_check.controller")
    log.addHandler(Keep())
    log.setLevel(logging.INFO)
    params = ControllerParams(max_gpu_temp_c=float(temp) - 1, thermal_poll_seconds=0.2,
                              cooldown_every_steps=0)
    controller = TrainingController(params, {"check": 1}, logger=log, read_temperature=reader)

    def raise_limit() -> None:  # what a cooler GPU would do: the reading falls below the limit
        time.sleep(3)
        controller.params = dataclasses.replace(params, max_gpu_temp_c=float(temp) + 50)

    from transformers import TrainerControl, TrainerState, TrainingArguments

    args = TrainingArguments(output_dir="/tmp/gpu-check-thermal", report_to="none")
    state, control = TrainerState(), TrainerControl()
    state.global_step = 1
    threading.Thread(target=raise_limit, daemon=True).start()
    started = time.perf_counter()
    controller.on_train_begin(args, state, control)
    controller.on_step_end(args, state, control)
    waited = time.perf_counter() - started
    result["thermal_guard"] = {"limit_c": params.max_gpu_temp_c, "held_s": round(waited, 1), "log": records}
    print(f"thermal guard: held {waited:.1f} s at a limit below the reading; log: {records}", flush=True)


def train_adapter(model_dir: Path, adapter: str, steps: int, batch: int, result: dict[str, Any]) -> None:
    """Train ``steps`` SFT steps with ``adapter`` on CUDA; record tokens/s, peak memory, losses."""
    import torch

    from nexus.device import DeviceProfile
    from nexus.loading import load_tokenizer
    from nexus.methods import METHODS, TrainContext, load_params
    from nexus.text_training import apply_adapter, load_start_model
    from nexus.trainer import trainable_summary, training_arguments

    params = load_params(ROOT / "params.yaml")
    cap = dataclasses.replace(params.capabilities["cot"], adapter=adapter, max_steps=steps, batch_size=batch,
                              init_from=str(model_dir), learning_rate=2e-4 if adapter != "full" else 2e-5)
    profile = DeviceProfile.detect()
    torch.cuda.reset_peak_memory_stats()
    tokenizer = load_tokenizer(model_dir)
    model = apply_adapter(load_start_model(cap, profile), cap)
    four_bit = sum(1 for m in model.modules() if type(m).__name__ == "Linear4bit")
    args = training_arguments(cap, params, Path(f"/tmp/gpu-check-{adapter}"), profile)
    args.update(save_strategy="no")
    trainer = METHODS["sft"].build(TrainContext(
        capability="cot", model=model, tokenizer=tokenizer, cap=cap, params=params, args=args, callbacks=[],
        profile=profile, examples=cot_examples(steps * batch)))
    torch.cuda.synchronize()
    started = time.perf_counter()
    trainer.train()
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    tokens = int(getattr(trainer, "_total_train_tokens", 0) or trainer.state.num_input_tokens_seen or 0)
    row = {"adapter": adapter, "steps": trainer.state.global_step, "bf16": profile.bf16,
           "model_loss": profile.model_loss, "linear4bit_modules": four_bit,
           "tokens_per_s": round(tokens / elapsed, 1), "seconds": round(elapsed, 2),
           "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20),
           "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
           "trainable": trainable_summary(model)}
    result.setdefault("adapters", []).append(row)
    print(json.dumps(row), flush=True)
    del trainer, model
    torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="an HF model folder")
    source.add_argument("--config-only", type=Path, help="a folder with config.json and a tokenizer")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--adapters", default="lora,qlora,full")
    parser.add_argument("--out", type=Path, default=Path("reports/gpu_check.json"))
    args = parser.parse_args()

    import torch

    result: dict[str, Any] = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    print(f"device: {result['device']}, torch {result['torch']}", flush=True)
    model_dir = args.model or _random_model_folder(args.config_only, Path("/tmp/gpu-check-model"))
    result["model"] = str(args.model or f"{args.config_only} (random weights)")
    for name, check in (("thermal", lambda: check_thermal_guard(result)),
                        *((a, (lambda a=a: train_adapter(model_dir, a, args.steps, args.batch_size, result)))
                          for a in args.adapters.split(","))):
        try:
            check()
        except Exception as err:  # noqa: BLE001 - report every check, keep going
            result.setdefault("errors", {})[name] = repr(err)
            print(f"{name}: FAILED {err!r}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
