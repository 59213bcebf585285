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
                cap: CapabilityParams) -> tuple[dict[str, float], list[str]]:
    """Load ``model_path`` (base folder, GGUF or adapter folder) and score it on ``examples``."""
    from nexus.loading import load_model, load_tokenizer

    return score_examples(load_model(model_path), load_tokenizer(model_path), capability, examples, cap)


def _refusal_scores(params: Params, cap: CapabilityParams, capability: str, model_dir: str | Path,
                    organized_dir: str | Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """Safety methods: refusal rate (harmful) and false-refusal rate (harmless), base and trained,
    on the held-out prompts the train stage never used (same seeded split)."""
    from nexus.loading import load_model, load_tokenizer
    from nexus.methods.data import load_rows
    from nexus.methods.safety import refusal_metrics, split_prompts

    rows, _ = load_rows("safety_prompts", organized_dir, capability)
    held, _ = split_prompts(rows, cap.eval_size, params.base.seed)
    for which, path in (("base", params.base.model), ("trained", model_dir)):
        scores, _ = refusal_metrics(load_model(path), load_tokenizer(path), held, cap.max_new_tokens)
        metrics[which].update(scores)
    return {"n_safety": len(held)}


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
    base_scores, base_out = score_model(params.base.model, capability, data.eval, cap)
    trained_scores, trained_out = score_model(model_dir, capability, data.eval, cap)
    metrics = {"base": base_scores, "trained": trained_scores, "n": len(data.eval)}
    if methods.resolve(cap.method).needs == "safety_prompts":
        metrics.update(_refusal_scores(params, cap, capability, model_dir, organized_dir, metrics))
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
