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

from nexus import capabilities, diffusion_training, media_training, methods, paths, registry, results
from nexus.atomic import atomic_dir, write_json_atomic, write_text_atomic
from nexus.config import CapabilityParams, Params
from nexus.examples import MEDIA_KEYS
from nexus.generation.batch import generate_examples
from nexus.media_training import is_media
from nexus.prepare import split_for
from nexus.progress import ItemsDone

log = logging.getLogger(__name__)


def score_examples(model: Any, tokenizer: Any, capability: str, examples: list[capabilities.Example],
                   cap: CapabilityParams, label: str = "", media_dir: Path | None = None,
                   ) -> tuple[dict[str, float], list[str]]:
    """Generate for ``examples`` with a loaded model and average each of the capability's scores over
    the examples that report it (a modality's accuracy over that modality's examples); items
    done are logged as ``eval <capability> <label>: n/N done ...`` (:class:`nexus.progress.ItemsDone`).
    A module's ``generate`` that takes ``media_dir`` writes what it makes (images) there."""
    import inspect

    module = capabilities.load(capability)
    progress = ItemsDone(" ".join(filter(None, ("eval", capability, label))), len(examples))
    if hasattr(module, "generate"):  # a capability may generate its own way (budget forcing, streaming, speech)
        options = _param_options(module.generate, cap)
        if "media_dir" in inspect.signature(module.generate).parameters:
            options["media_dir"] = media_dir
        generated = module.generate(model, tokenizer, examples, cap.max_new_tokens, **options)
    elif is_media(capability):  # tokenizer: the composite's processor
        from nexus.multimodal.generate import generate_media

        generated = generate_media(model, tokenizer, examples, cap.max_new_tokens, progress=progress)
    else:
        generated = generate_examples(model, tokenizer, examples, cap.max_new_tokens, progress=progress)
    totals: dict[str, float] = {}
    counts: dict[str, int] = {}
    options = _param_options(module.score, cap, skip={"generated", "example"})
    for text, example in zip(generated, examples, strict=True):
        # a key only where it applies (audio_accuracy)
        for key, value in module.score(text, example, **options).items():
            totals[key] = totals.get(key, 0.0) + value
            counts[key] = counts.get(key, 0) + 1
    return {k: round(v / counts[k], 4) for k, v in totals.items()}, generated


def _param_options(fn: Any, cap: CapabilityParams, skip: frozenset[str] | set[str] = frozenset({"max_new_tokens"})
                   ) -> dict[str, Any]:
    """The capability params a module's ``generate`` or ``score`` asks for by name (e.g.
    ``thinking_budget``, podcast's ``min_turns``)."""
    import inspect

    accepted = set(inspect.signature(fn).parameters) - set(skip)
    return {name: getattr(cap, name) for name in accepted if name in CapabilityParams.__dataclass_fields__}


def _text_model(capability: str, path: str | Path, cap: CapabilityParams, seed: int) -> tuple[Any, Any]:
    from nexus.loading import load_model, load_tokenizer

    return load_model(path), load_tokenizer(path)


EVAL_MODELS = {"text": _text_model, "composite": media_training.eval_model, "diffusion": diffusion_training.eval_model}
"""Registry ``kind`` -> ``load(capability, path, cap, seed) -> (model, tokenizer or processor)`` for scoring."""


def score_model(model_path: str | Path, capability: str, examples: list[capabilities.Example],
                cap: CapabilityParams, refusal_prompts: list[dict[str, Any]] | None = None,
                label: str = "", seed: int = 0, media_dir: Path | None = None) -> tuple[dict[str, float], list[str]]:
    """Load ``model_path`` (base folder, GGUF or adapter folder) once and score it on ``examples``;
    with ``refusal_prompts`` (safety methods) also its refusal and false-refusal rates. ``label``
    names the model in the progress lines (``base``, ``trained``). A multimodal capability loads a
    composite, or builds the untrained one from a text model (``seed``: its projectors); a
    generation one its generator, or the untrained one (see :data:`EVAL_MODELS`)."""
    model, tokenizer = EVAL_MODELS[registry.CAPABILITIES[capability].kind](capability, model_path, cap, seed)
    log.info("eval %s %s: %s loaded; generating for %d held-out examples", capability, label, model_path,
             len(examples))
    scores, generated = score_examples(model, tokenizer, capability, examples, cap, label, media_dir)
    if refusal_prompts:
        from nexus.methods.safety import refusal_metrics

        scores.update(refusal_metrics(model, tokenizer, refusal_prompts, cap.max_new_tokens)[0])
    return scores, generated


def held_out_refusal_prompts(params: Params, cap: CapabilityParams, capability: str,
                             organized_dir: str | Path) -> list[dict[str, Any]] | None:
    """For safety methods, the harmful and harmless prompts the train stage held out (same seeded
    split); None for every other method."""
    held_out = methods.resolve(cap.method).eval_prompts
    return held_out(capability, cap, params.base.seed, organized_dir) if held_out else None


SAMPLES_NOTE = ("# Samples\n\nWhat the eval stage generated besides text (images for image_generation), "
                "under base/ and trained/; predictions.jsonl names each file relative to this folder. A text "
                "capability has none.\n")


def run_eval(capability: str, params: Params, model_dir: str | Path,
             organized_dir: str | Path = paths.ORGANIZED_DIR,
             report_dir: str | Path | None = None,
             prepared_dir: str | Path | None = None) -> dict[str, Any]:
    """Score the base model and the trained one on the held-out split; write metrics and samples.

    The held-out split and the settings come from the prepare stage's ``prepared_dir``, else are
    built in memory from ``params``. Writes ``<report_dir>/metrics.json``
    (``{"base": {...}, "trained": {...}, "n": N}``) and ``predictions.jsonl`` atomically, and
    appends a row to ``results/eval.csv``.
    """
    import torch

    torch.manual_seed(params.base.seed)
    split = split_for(capability, params, prepared_dir, organized_dir)
    cap = split.settings
    started = time.perf_counter()
    held = held_out_refusal_prompts(params, cap, capability, organized_dir)
    # a multimodal or generation capability's baseline is its start: the untrained composite (omni),
    # omni's output, or the language model with an untrained projector
    text = registry.CAPABILITIES[capability].kind == "text"
    baseline = params.base.model if text else cap.init_from
    seed = params.base.seed
    report = Path(report_dir) if report_dir else paths.eval_report_dir(capability)
    with atomic_dir(report / "samples") as samples:  # a DVC output of every eval stage: never empty
        write_text_atomic(SAMPLES_NOTE, samples / "README.md")
        base_scores, base_out = score_model(baseline, capability, split.eval, cap, held, "base", seed,
                                            samples / "base")
        trained_scores, trained_out = score_model(model_dir, capability, split.eval, cap, held, "trained", seed,
                                                  samples / "trained")
    metrics: dict[str, Any] = {"base": base_scores, "trained": trained_scores, "n": len(split.eval)}
    if held is not None:
        metrics["n_safety"] = len(held)
    write_json_atomic(metrics, report / "metrics.json")
    rows = [json.dumps({"prompt": e["prompt"][-1]["content"], "reference": e["reference"],
                        **{k: e[k] for k in MEDIA_KEYS if e.get(k)}, "base": b, "trained": t})
            for e, b, t in zip(split.eval, base_out, trained_out, strict=True)]
    write_text_atomic("\n".join(rows) + "\n", report / "predictions.jsonl")
    metric = capabilities.load(capability).METRIC
    results.append_row("eval", {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "capability": capability, "method": cap.method,
        "n": len(split.eval), "metric": metric, "base": base_scores.get(metric),
        "trained": trained_scores.get(metric), "runtime_s": round(time.perf_counter() - started, 1),
        "model": str(model_dir),
    })
    log.info("%s %s: base %.3f -> trained %.3f (n=%d)", capability, metric, base_scores.get(metric, 0.0),
             trained_scores.get(metric, 0.0), len(split.eval))
    return metrics
