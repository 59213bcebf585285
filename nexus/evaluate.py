"""The shared evaluator: greedy generation on a capability's held-out split, base versus trained.

Each capability module supplies ``score(generated, example)``; this module only generates and
averages, so every capability is scored the same way.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from nexus import capabilities, methods, paths, results
from nexus.chat import render_prompt
from nexus.config import CapabilityParams, Params, capability_params
from nexus.examples import capability_examples
from nexus.atomic import write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)


def generate(model: Any, tokenizer: Any, examples: list[capabilities.Example], max_new_tokens: int,
             batch_size: int = 8, temperature: float = 0.0) -> list[str]:
    """Completions for the examples' chat prompts, batched with left padding: greedy, or sampled at
    ``temperature`` when it is above 0 (seeded by the caller's ``torch.manual_seed``)."""
    import torch

    tokenizer.padding_side = "left"
    outputs: list[str] = []
    model.eval()
    for start in range(0, len(examples), batch_size):
        texts = [render_prompt(e, tokenizer) for e in examples[start:start + batch_size]]
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        batch = batch.to(model.device)
        with torch.inference_mode():
            sampling = {"do_sample": True, "temperature": temperature, "top_p": 0.95} if temperature > 0 \
                else {"do_sample": False}
            ids = model.generate(**batch, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                 **sampling)
        new = ids[:, batch["input_ids"].shape[1]:]
        outputs.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    return outputs


def score_examples(model: Any, tokenizer: Any, capability: str, examples: list[capabilities.Example],
                   cap: CapabilityParams) -> tuple[dict[str, float], list[str]]:
    """Generate for ``examples`` with a loaded model and average the capability's scores."""
    module = capabilities.load(capability)
    if hasattr(module, "generate"):  # a capability may generate its own way (budget forcing, streaming)
        generated = module.generate(model, tokenizer, examples, cap.max_new_tokens,
                                    **_generate_options(module.generate, cap))
    else:
        generated = generate(model, tokenizer, examples, cap.max_new_tokens)
    totals: dict[str, float] = {}
    for text, example in zip(generated, examples, strict=True):
        for key, value in module.score(text, example).items():
            totals[key] = totals.get(key, 0.0) + value
    return {k: round(v / max(len(examples), 1), 4) for k, v in totals.items()}, generated


def _generate_options(fn: Any, cap: CapabilityParams) -> dict[str, Any]:
    """The capability params a module's ``generate`` asks for by name (e.g. ``thinking_budget``)."""
    import inspect

    accepted = set(inspect.signature(fn).parameters) - {"max_new_tokens"}
    return {name: getattr(cap, name) for name in accepted if name in CapabilityParams.__dataclass_fields__}


def score_model(model_path: str | Path, capability: str, examples: list[capabilities.Example],
                cap: CapabilityParams, refusal_prompts: list[dict[str, Any]] | None = None,
                ) -> tuple[dict[str, float], list[str]]:
    """Load ``model_path`` (base folder, GGUF or adapter folder) once and score it on ``examples``;
    with ``refusal_prompts`` (safety methods) also its refusal and false-refusal rates."""
    from nexus.loading import load_model, load_tokenizer

    model, tokenizer = load_model(model_path), load_tokenizer(model_path)
    scores, generated = score_examples(model, tokenizer, capability, examples, cap)
    if refusal_prompts:
        from nexus.methods.safety import refusal_metrics

        scores.update(refusal_metrics(model, tokenizer, refusal_prompts, cap.max_new_tokens)[0])
    return scores, generated


def held_out_refusal_prompts(params: Params, cap: CapabilityParams, capability: str,
                             organized_dir: str | Path) -> list[dict[str, Any]] | None:
    """For safety methods, the harmful and harmless prompts the train stage held out (same seeded
    split); None for every other method."""
    if methods.resolve(cap.method).needs != "safety_prompts":
        return None
    from nexus.methods.data import load_rows
    from nexus.methods.safety import split_prompts

    rows, _ = load_rows("safety_prompts", organized_dir, capability)
    return split_prompts(rows, cap.eval_size, params.base.seed)[0]


def run_eval(capability: str, params: Params, model_dir: str | Path,
             organized_dir: str | Path = paths.ORGANIZED_DIR,
             report_dir: str | Path | None = None) -> dict[str, Any]:
    """Score the base model and the trained one on the held-out split; write metrics and samples.

    Writes ``<report_dir>/metrics.json`` (``{"base": {...}, "trained": {...}, "n": N}``) and
    ``predictions.jsonl`` atomically, and appends a row to ``results/eval.csv``.
    """
    import torch

    torch.manual_seed(params.base.seed)
    cap = capability_params(params, capability)
    data = capability_examples(capability, params, organized_dir)
    started = time.perf_counter()
    held = held_out_refusal_prompts(params, cap, capability, organized_dir)
    base_scores, base_out = score_model(params.base.model, capability, data.eval, cap, held)
    trained_scores, trained_out = score_model(model_dir, capability, data.eval, cap, held)
    metrics: dict[str, Any] = {"base": base_scores, "trained": trained_scores, "n": len(data.eval)}
    if held is not None:
        metrics["n_safety"] = len(held)
    report = Path(report_dir) if report_dir else paths.eval_report_dir(capability)
    report.mkdir(parents=True, exist_ok=True)
    write_json_atomic(metrics, report / "metrics.json")
    rows = [json.dumps({"prompt": e["prompt"][-1]["content"], "reference": e["reference"],
                        "base": b, "trained": t}) for e, b, t in zip(data.eval, base_out, trained_out,
                                                                    strict=True)]
    write_text_atomic("\n".join(rows) + "\n", report / "predictions.jsonl")
    module = capabilities.load(capability)
    results.append_row("eval", {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "capability": capability, "method": cap.method,
        "n": len(data.eval), "metric": module.METRIC,
        "base": base_scores.get(module.METRIC), "trained": trained_scores.get(module.METRIC),
        "runtime_s": round(time.perf_counter() - started, 1), "model": str(model_dir),
    })
    log.info("%s %s: base %.3f -> trained %.3f (n=%d)", capability, module.METRIC,
             base_scores.get(module.METRIC, 0.0), trained_scores.get(module.METRIC, 0.0), len(data.eval))
    return metrics
