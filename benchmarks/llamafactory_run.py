"""LLaMA-Factory's defaults on the benchmark's rows: the ``llamafactory`` variant of train_throughput.py.

benchmarks/train_throughput.py runs this script with ``--llamafactory PYTHON``, where PYTHON is the
interpreter of a separate environment that has LLaMA-Factory (its pins on transformers, TRL, PEFT,
datasets and accelerate clash with Nexus's). Make that environment with:

    python3 -m venv /tmp/lf-venv && /tmp/lf-venv/bin/pip install torch==2.13.0
    /tmp/lf-venv/bin/pip install torch==2.13.0 llamafactory==0.9.5
    /tmp/lf-venv/bin/pip uninstall -y torchvision torchaudio

``torch==2.13.0`` first and again with LLaMA-Factory keeps the CPU build (an unpinned torch pulls a
CUDA build of several GB). The last line removes the torchvision and torchaudio that LLaMA-Factory
pulls in: their PyPI builds link CUDA libraries (``libc10_cuda.so``) and fail to load against a CPU
torch, and a broken torchvision breaks ``import transformers``. Text SFT needs neither. This script
lends LLaMA-Factory's import an empty ``torchaudio`` module when the real one is missing or broken,
because ``llamafactory.data.mm_plugin`` imports it at module level (it uses it only for audio).
Tested with llamafactory 0.9.5, transformers 5.6.0, TRL 0.24.0, PEFT 0.18.1, datasets 4.0.0,
accelerate 1.11.0 and torch 2.13.0+cpu.

The rows (a JSON list of ``{"prompt", "completion"}``, texts or lists of role/content messages, as
train_throughput.py's ``_rows`` makes them) are registered in a ``dataset_info.json`` in a temporary
dataset_dir: text rows as an alpaca dataset (instruction = prompt, output = completion), message rows
as a sharegpt (OpenAI-style messages) dataset, the prompt's messages then the completion's. They are
trained in this process through ``llamafactory.train.tuner.run_exp``:

- set here: ``stage=sft``, ``do_train``, ``finetuning_type=lora``, ``lora_target=all``, the LoRA rank,
  alpha and dropout, ``learning_rate``, ``per_device_train_batch_size``,
  ``gradient_accumulation_steps=1``, ``max_steps``, ``cutoff_len``, ``logging_steps=1``,
  ``report_to=none``, ``save_strategy=no``, no eval, ``template`` (see ``--template``);
- LLaMA-Factory's and Transformers' defaults otherwise: no packing, prompt tokens masked from the
  loss, Transformers' default AdamW, a linear schedule without warm-up (the other variants use
  cosine with 5% warm-up), seed 42, gradient checkpointing on (LLaMA-Factory enables it unless
  ``disable_gradient_checkpointing``), and its own precision choice: bf16 where the GPU has it, else
  fp16 on a GPU, else fp32 (on a CPU: fp32, no mixed precision, even one with native bf16). The
  printed ``dtype`` says what it picked.

The template is the one LLaMA-Factory registers for the model (``smollm2`` for SmolLM2-*-Instruct),
looked up by the model's name in ``nexus_base.json`` (its ``source``), ``config.json`` or the
folder's name; ``--template NAME`` overrides it, and ``--template none`` leaves it unset (then
LLaMA-Factory parses the tokenizer's chat template).

Only ``trainer.train()`` is timed. Tokens are the real tokens of the supervised rows LLaMA-Factory
tokenized (``sum(len(input_ids))`` of its train dataset: template, prompt and response ids, cut at
``cutoff_len``), the rows the steps consumed, each once, as train_throughput.py counts them. The last
line of stdout is one JSON object::

    {"variant": "llamafactory", "steps", "seconds", "tokens", "tokens_per_s", "threads", "losses",
     "flops_per_token": 0, "dtype", "template", "llamafactory"}   # the last three: what it used

    /tmp/lf-venv/bin/python benchmarks/llamafactory_run.py --model models/base --rows rows.json \\
        --steps 2 --batch-size 2 --max-length 384 --learning-rate 2e-4 --out /tmp/lf-out
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

DATASET = "nexus_bench"


def _fail(message: str) -> None:
    """Exit with a one-line error."""
    sys.exit(f"llamafactory_run: {message}")


def _import_run_exp() -> Any:
    """``llamafactory.train.tuner.run_exp``, with an empty ``torchaudio`` while LLaMA-Factory imports.

    ``llamafactory.data.mm_plugin`` imports torchaudio at module level but calls it only for audio
    inputs, and PyPI's torchaudio links CUDA libraries and does not load against a CPU torch. When
    the real one is missing or broken, an empty module stands in for that import only: Transformers
    is imported before it and the stand-in leaves ``sys.modules`` after, so every availability check
    still sees no torchaudio.
    """
    try:
        importlib.import_module("torchaudio")
        stand_in = None
    except (ImportError, OSError):
        sys.modules.pop("torchaudio", None)
        importlib.import_module("transformers")  # its package checks run here, without the stand-in
        stand_in = sys.modules["torchaudio"] = types.ModuleType("torchaudio")
    try:
        return importlib.import_module("llamafactory.train.tuner").run_exp
    finally:
        if stand_in is not None and sys.modules.get("torchaudio") is stand_in:
            del sys.modules["torchaudio"]


def _model_names(model: Path) -> list[str]:
    """Names the model goes by: nexus_base.json's source, config.json's name and the folder's name."""
    names = []
    for file, key in (("nexus_base.json", "source"), ("config.json", "_name_or_path")):
        try:
            value = json.loads((model / file).read_text(encoding="utf-8")).get(key)
        except (OSError, ValueError):
            continue
        if isinstance(value, str) and value:
            names.append(value.rsplit("/", 1)[-1])
    return [*names, model.name]


def default_template(model: Path) -> str | None:
    """The template LLaMA-Factory registers for the model (longest registered name it starts with)."""
    from llamafactory.extras.constants import DEFAULT_TEMPLATE

    for name in _model_names(model):
        matches = [key for key in DEFAULT_TEMPLATE if name.lower().startswith(key.lower())]
        if matches:
            return DEFAULT_TEMPLATE[max(matches, key=len)]
    return None


def _is_messages(value: object) -> bool:
    """Whether ``value`` is a list of ``{"role": str, "content": str}`` messages."""
    return isinstance(value, list) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value)


def write_dataset(rows: list[dict[str, Any]], dataset_dir: Path) -> None:
    """Write the rows as a LLaMA-Factory dataset and register it in ``dataset_info.json``.

    Text rows become alpaca records (instruction = prompt, output = completion). Conversational rows
    (prompt and completion lists of role/content messages, as train_throughput.py's cot rows are)
    become sharegpt records in OpenAI style: the prompt's messages then the completion's, a leading
    system message as the system prompt; LLaMA-Factory's template formats them either way.
    """
    if all(isinstance(r["prompt"], str) for r in rows):
        records: list[dict[str, Any]] = [{"instruction": r["prompt"], "input": "", "output": r["completion"]}
                                         for r in rows]
        attr: dict[str, Any] = {"formatting": "alpaca",
                                "columns": {"prompt": "instruction", "query": "input", "response": "output"}}
    else:
        records = [{"messages": [*r["prompt"], *r["completion"]]} for r in rows]
        attr = {"formatting": "sharegpt", "columns": {"messages": "messages"},
                "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                         "assistant_tag": "assistant", "system_tag": "system"}}
    (dataset_dir / "rows.json").write_text(json.dumps(records), encoding="utf-8")
    info = {DATASET: {"file_name": "rows.json", **attr}}
    (dataset_dir / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")


def load_rows(path: Path, steps: int, batch_size: int) -> list[dict[str, Any]]:
    """The first ``steps * batch_size`` rows of the rows file (prompt/completion: text or messages)."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        _fail(f"--rows {path}: {e}")
    if not isinstance(rows, list) or not rows or not (
            all(isinstance(r, dict) and isinstance(r.get("prompt"), str) and isinstance(r.get("completion"), str)
                for r in rows)
            or all(isinstance(r, dict) and _is_messages(r.get("prompt")) and _is_messages(r.get("completion"))
                   for r in rows)):
        _fail(f"--rows {path}: not a JSON list of {{'prompt', 'completion'}}, all text or all role/content messages")
    if len(rows) < steps * batch_size:
        _fail(f"--rows {path}: {len(rows)} rows, need steps x batch = {steps * batch_size}")
    return rows[:steps * batch_size]


def lf_args(args: argparse.Namespace, dataset_dir: Path, template: str | None) -> dict[str, Any]:
    """The run_exp arguments: the benchmark's settings, LLaMA-Factory's defaults otherwise."""
    config: dict[str, Any] = {
        "model_name_or_path": str(args.model), "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "lora_target": "all", "lora_rank": args.lora_r, "lora_alpha": args.lora_alpha,
        "lora_dropout": args.lora_dropout, "dataset": DATASET, "dataset_dir": str(dataset_dir),
        "cutoff_len": args.max_length, "output_dir": str(args.out), "logging_steps": 1,
        "per_device_train_batch_size": args.batch_size, "gradient_accumulation_steps": 1,
        "max_steps": args.steps, "learning_rate": args.learning_rate, "report_to": "none",
        "save_strategy": "no", "eval_strategy": "no", "disable_tqdm": True,
    }
    if template:
        config["template"] = template
    return config


class _Measured:
    """What the timed trainer saw: seconds in ``train()``, the trainer and its train dataset."""

    seconds: float = 0.0
    trainer: Any = None


def _patch_trainer() -> None:
    """Time ``trainer.train()`` of LLaMA-Factory's SFT trainer and keep the trainer.

    ``llamafactory.train.sft.workflow.run_sft`` builds ``CustomSeq2SeqTrainer`` (imported by name
    into the workflow module) and calls ``train()`` then saves; a subclass swapped in there times
    exactly ``train()``, as train_throughput.py does for the other variants, and exposes the
    tokenized train dataset and ``state.log_history``.
    """
    from llamafactory.train.sft import workflow

    base = workflow.CustomSeq2SeqTrainer

    class TimedTrainer(base):  # type: ignore[misc, valid-type]
        def train(self, *a: Any, **kw: Any) -> Any:
            _Measured.trainer = self
            started = time.perf_counter()
            try:
                return super().train(*a, **kw)
            finally:
                _Measured.seconds = time.perf_counter() - started

    TimedTrainer.__name__ = TimedTrainer.__qualname__ = base.__name__
    workflow.CustomSeq2SeqTrainer = TimedTrainer


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train with LLaMA-Factory in this process and measure it."""
    rows = load_rows(args.rows, args.steps, args.batch_size)
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_CACHE", str(args.out / "hf-datasets-cache"))
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        run_exp = _import_run_exp()
        import llamafactory
    except ImportError as e:
        _fail(f"cannot import LLaMA-Factory ({e}); make the environment as this script's --help says")
    template = None if args.template == "none" else (
        default_template(args.model) if args.template == "auto" else args.template)
    _patch_trainer()
    with tempfile.TemporaryDirectory(prefix="lf-dataset-") as dataset_dir:
        write_dataset(rows, Path(dataset_dir))
        run_exp(args=lf_args(args, Path(dataset_dir), template))
    trainer = _Measured.trainer
    if trainer is None:
        _fail("LLaMA-Factory did not call trainer.train()")
    steps_done = trainer.state.global_step
    ids = trainer.train_dataset["input_ids"]
    if len(ids) != len(rows):
        _fail(f"LLaMA-Factory kept {len(ids)} of {len(rows)} rows (it skips rows it cannot format)")
    consumed = sum(len(x) for x in ids[:steps_done * args.batch_size])  # the rows the steps took, each once
    seconds = _Measured.seconds
    dtype = next(p.dtype for p in trainer.model.parameters() if not p.requires_grad)
    mixed = "bf16" if trainer.args.bf16 else "fp16" if trainer.args.fp16 else "none"
    return {"variant": "llamafactory", "steps": steps_done, "seconds": round(seconds, 2), "tokens": consumed,
            "tokens_per_s": round(consumed / seconds, 1), "threads": torch.get_num_threads(),
            "losses": [round(h["loss"], 5) for h in trainer.state.log_history if "loss" in h],
            "flops_per_token": 0, "dtype": f"{str(dtype).removeprefix('torch.')} weights, mixed precision {mixed}",
            "template": template or "parsed from the tokenizer", "llamafactory": llamafactory.__version__}


def main() -> None:
    """Parse the arguments, train, print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="Hugging Face model folder")
    parser.add_argument("--rows", type=Path, required=True, help='JSON list of {"prompt", "completion"}')
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--max-length", type=int, required=True, help="LLaMA-Factory's cutoff_len")
    parser.add_argument("--learning-rate", type=float, required=True)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-alpha", type=int, default=32)
    parser.add_argument("--lora-dropout", type=float, default=0.05)
    parser.add_argument("--out", type=Path, required=True, help="output_dir (must be empty or absent)")
    parser.add_argument("--template", default="auto",
                        help="LLaMA-Factory template; auto: the one it registers for the model (default); "
                             "none: parse the tokenizer's chat template")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.steps < 1 or args.batch_size < 1 or args.max_length < 1:
        _fail("--steps, --batch-size and --max-length must be positive")
    if not (args.model / "config.json").is_file():
        _fail(f"--model {args.model}: no config.json there")
    result = run(args)
    sys.stdout.flush()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
