"""Standard benchmarks on any model: GSM8K and MMLU from the repo's local files (no Hub access).

    from nexus.benchmarks import run_benchmarks
    run_benchmarks("models/base", ["gsm8k", "mmlu"], limit=None, out_dir="reports/benchmarks")

``nexus benchmark --model PATH`` and ``make benchmark MODEL=PATH`` call :func:`run_benchmarks`,
which writes ``<out_dir>/<name>.json`` (scores plus every example) and appends one row per
benchmark to ``results/benchmarks.csv``. The model may be an HF folder, a ``.gguf`` file or a PEFT
adapter folder (``nexus.loading``). See docs/benchmarks.md for the scoring.

This package imports no torch at import time; the benchmark runs do.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nexus.benchmarks.common import BenchmarkError
from nexus.paths import REPORTS_DIR, RESULTS_DIR

log = logging.getLogger(__name__)

DEFAULT_OUT = REPORTS_DIR / "benchmarks"
BACKENDS = ("native", "lm-eval")
RESULTS_KIND = "benchmarks"

__all__ = ["BACKENDS", "BENCHMARKS", "Benchmark", "BenchmarkError", "DEFAULT_OUT", "format_table",
           "parse_names", "run_benchmarks", "valid_names"]


@dataclass(frozen=True)
class Benchmark:
    """One registered benchmark: its scorer module and default size."""

    name: str
    description: str
    module: str  # defines run(model, tokenizer, limit, *, data, num_fewshot, batch_size) -> dict
    default_limit: int
    limit_unit: str
    default_fewshot: int
    generative: bool = False  # takes max_new_tokens

    def runner(self) -> Callable[..., dict[str, Any]]:
        """The module's ``run`` function (imported on first use)."""
        return importlib.import_module(self.module).run


BENCHMARKS: dict[str, Benchmark] = {
    "gsm8k": Benchmark("gsm8k", "grade-school math, greedy k-shot generation, exact match of the final "
                       "number", "nexus.benchmarks.gsm8k", default_limit=50, limit_unit="questions",
                       default_fewshot=5, generative=True),
    "mmlu": Benchmark("mmlu", "multiple choice (6 subjects), 5-shot, answer-letter log-likelihood",
                      "nexus.benchmarks.mmlu", default_limit=20, limit_unit="questions per subject",
                      default_fewshot=5),
}


def valid_names() -> list[str]:
    """The registered benchmark names."""
    return list(BENCHMARKS)


def parse_names(names: str | Sequence[str] | None) -> list[str]:
    """Benchmark names from ``"gsm8k,mmlu"`` or a list (None, ``""`` or ``"all"``: every benchmark).

    Raises:
        BenchmarkError: a name that is not registered (the message lists the valid ones).
    """
    if names is None:
        return valid_names()
    parts = names.split(",") if isinstance(names, str) else list(names)
    wanted = [p.strip().lower() for p in parts if p and p.strip()]
    if not wanted or wanted == ["all"]:
        return valid_names()
    if unknown := [n for n in wanted if n not in BENCHMARKS]:
        raise BenchmarkError(f"unknown benchmark {', '.join(map(repr, unknown))}; "
                             f"valid: {', '.join(BENCHMARKS)} (comma-separated, or all)")
    return list(dict.fromkeys(wanted))


def run_benchmarks(model_path: str | os.PathLike[str], names: str | Sequence[str] | None = None,
                   limit: int | None = None, out_dir: str | os.PathLike[str] = DEFAULT_OUT, *,
                   backend: str = "native", batch_size: int = 8, num_fewshot: int | None = None,
                   max_new_tokens: int | None = None, data: str | os.PathLike[str] | None = None,
                   results_dir: str | os.PathLike[str] = RESULTS_DIR) -> dict[str, dict[str, Any]]:
    """Load the model once and run the named benchmarks on it.

    Args:
        model_path: HF model folder, ``.gguf`` file, or PEFT adapter folder.
        names: benchmark names (``"gsm8k,mmlu"`` or a list; None: all).
        limit: examples per benchmark (per subject for MMLU); None: each benchmark's default
            (gsm8k 50, mmlu 20); 0: the whole test set.
        out_dir: where ``<name>.json`` goes (written atomically).
        backend: ``native`` (this package's scorers) or ``lm-eval`` (needs ``lm-eval`` installed).
        batch_size: prompts per forward pass / generate call (left padded).
        num_fewshot: shots per prompt (None: 5 for both).
        max_new_tokens: generation cap of generative benchmarks (None: 256, lm-eval's default).
        data: benchmark data folder (default: data/benchmarks or ``$NEXUS_BENCHMARK_DATA``).
        results_dir: folder of ``benchmarks.csv`` (one row per benchmark run).

    Returns:
        ``{name: result}``; each result has ``metrics`` (``accuracy`` first), ``n``, ``config``,
        ``examples`` and run details (model, backend, seconds, report path).

    Raises:
        BenchmarkError: unknown name or backend, missing data or lm-eval.
        ModelSourceError: ``model_path`` is not a model.
    """
    from nexus.loading import model_source

    selected = parse_names(names)
    if backend not in BACKENDS:
        raise BenchmarkError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if limit is not None and limit < 0:
        raise BenchmarkError(f"limit must be >= 0 (0: whole test set), got {limit}")
    model_source(model_path)  # fail fast, before the torch import, on a path that is not a model
    if backend == "lm-eval":
        from nexus.benchmarks import lm_eval_backend

        lm_eval_backend.require()

    from nexus.benchmarks.common import prepare_model
    from nexus.loading import load_model, load_tokenizer

    started = time.monotonic()
    model = prepare_model(load_model(model_path))
    tokenizer = load_tokenizer(model_path)
    log.info("loaded %s in %.1f s", model_path, time.monotonic() - started)
    out = Path(out_dir)
    results: dict[str, dict[str, Any]] = {}
    for name in selected:
        spec = BENCHMARKS[name]
        shots = spec.default_fewshot if num_fewshot is None else num_fewshot
        started = time.monotonic()
        options: dict[str, Any] = {"data": data, "num_fewshot": shots, "batch_size": batch_size}
        if spec.generative and max_new_tokens is not None:
            options["max_new_tokens"] = max_new_tokens
        if backend == "lm-eval":
            from nexus.benchmarks import lm_eval_backend

            result = lm_eval_backend.run(name, model, tokenizer, limit, **options)
        else:
            result = spec.runner()(model, tokenizer, limit, **options)
        seconds = round(time.monotonic() - started, 1)
        report = out / f"{name}.json"
        result = {"benchmark": name, "model": str(model_path), "backend": backend,
                  "created": datetime.now(UTC).isoformat(timespec="seconds"),
                  "seconds": seconds, "report": str(report), **result}
        _write(result, report, results_dir, spec, limit)
        results[name] = result
        log.info("%s: accuracy %.4f on %d examples (%.0f s)", name, result["metrics"]["accuracy"],
                 result["n"], seconds)
    return results


def _write(result: dict[str, Any], report: Path, results_dir: str | os.PathLike[str], spec: Benchmark,
           limit: int | None) -> None:
    from nexus import results
    from nexus.atomic import write_json_atomic

    write_json_atomic(result, report)
    metrics = result["metrics"]
    results.append_row(RESULTS_KIND, {
        "time": result["created"], "benchmark": result["benchmark"], "model": result["model"],
        "backend": result["backend"], "limit": spec.default_limit if limit is None else limit,
        "n": result["n"], "num_fewshot": result["config"].get("num_fewshot", ""),
        "accuracy": metrics["accuracy"], "accuracy_flexible": metrics.get("accuracy_flexible", ""),
        "accuracy_macro": metrics.get("accuracy_macro", ""), "seconds": result["seconds"],
        "report": str(report),
    }, results_dir)


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """A small plain-text table: one line per benchmark (and per MMLU subject)."""
    lines = [f"{'benchmark':<34} {'n':>5} {'accuracy':>9}  other"]
    for name, result in results.items():
        metrics = result["metrics"]
        other = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "accuracy")
        lines.append(f"{name:<34} {result['n']:>5} {metrics['accuracy']:>9.4f}  {other}")
        for subject, score in result.get("subjects", {}).items():
            lines.append(f"  {subject:<32} {score['n']:>5} {score['accuracy']:>9.4f}")
    if results:
        first = next(iter(results.values()))
        lines.append(f"model {first['model']}, backend {first['backend']}; reports: "
                     + ", ".join(r["report"] for r in results.values()))
    return "\n".join(lines)
