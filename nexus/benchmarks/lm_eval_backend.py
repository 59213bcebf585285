"""Optional backend: the same benchmarks run by lm-evaluation-harness (``pip install lm-eval==0.4.13``).

lm-eval's own ``gsm8k`` and ``mmlu`` tasks name Hub datasets (``openai/gsm8k``, ``cais/mmlu``) and
fail offline, so this module hands it task configs of its own, built from lm-eval's templates
but reading the repo's local files (``dataset_path: json``/``csv`` with ``data_files``). The model
is the one nexus already loaded (HF folder, GGUF or adapter), wrapped in lm-eval's ``HFLM``.

The per-example outputs (GSM8K generations, MMLU letter log-likelihoods) go through the same
``score`` functions as the native backend, so both backends write the same JSON; lm-eval's own
aggregate numbers are kept under ``lm_eval_metrics``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from nexus.benchmarks import gsm8k, mmlu
from nexus.benchmarks.common import BenchmarkError, require_file

VERSION_TESTED = "0.4.13"


def available() -> bool:
    """Whether ``lm_eval`` can be imported in this environment."""
    return importlib.util.find_spec("lm_eval") is not None


def require() -> None:
    """Raise a BenchmarkError that says how to install lm-eval when it is missing."""
    if not available():
        raise BenchmarkError(f"lm-eval is not installed: `pip install lm-eval=={VERSION_TESTED}` into the "
                             "project venv, or use --backend native (the default)")


def gsm8k_task(data: str | os.PathLike[str] | None, num_fewshot: int,
               max_new_tokens: int = gsm8k.MAX_NEW_TOKENS) -> dict[str, Any]:
    """lm-eval's gsm8k v3 config with local files: shots from the train sample, questions from test.jsonl."""
    return {
        "task": "nexus_gsm8k",
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {
            "train": str(require_file(Path(gsm8k.SHOTS_FILE), "GSM8K few-shot file")),
            "test": str(gsm8k.questions_file(data)),
        }},
        "output_type": "generate_until",
        "training_split": "train",
        "fewshot_split": "train",
        "test_split": "test",
        "fewshot_config": {"sampler": "first_n"},
        "num_fewshot": num_fewshot,
        "doc_to_text": "Question: {{question}}\nAnswer:",
        "doc_to_target": "{{answer}}",
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                         "ignore_case": True, "ignore_punctuation": False,
                         "regexes_to_ignore": [",", "\\$", "(?s).*#### ", "\\.$"]}],
        "generation_kwargs": {"until": list(gsm8k.STOP_STRINGS), "do_sample": False, "temperature": 0.0,
                              "max_gen_toks": max_new_tokens},
        "filter_list": [
            {"name": "strict-match", "filter": [
                {"function": "regex", "regex_pattern": "#### (\\-?[0-9\\.\\,]+)"},
                {"function": "take_first"}]},
            {"name": "flexible-extract", "filter": [{"function": "regex", "group_select": -1,
                                                     "regex_pattern": "(-?[$0-9.,]{2,})|(-?[0-9]+)"},
                                                    {"function": "take_first"}]},
        ],
        "metadata": {"version": 3.0},
    }


def mmlu_task(subject: str, data: str | os.PathLike[str] | None, num_fewshot: int) -> dict[str, Any]:
    """lm-eval's mmlu (default) config for one subject, reading the headerless local CSVs."""
    folder = mmlu.subjects_dir(data)
    return {
        "task": f"nexus_mmlu_{subject}",
        "dataset_path": "csv",
        "dataset_kwargs": {
            "data_files": {
                split: str(require_file(folder / split / f"{subject}_{split}.csv", f"MMLU {subject} {split}"))
                for split in ("dev", "test")},
            "column_names": ["question", *mmlu.LETTERS, "answer"],
            "header": None,
            "keep_default_na": False,  # keep answers such as "None" as text
        },
        "test_split": "test",
        "fewshot_split": "dev",
        "fewshot_config": {"sampler": "first_n"},
        "num_fewshot": num_fewshot,
        "output_type": "multiple_choice",
        "description": mmlu.header(subject),
        "doc_to_text": "{{question.strip()}}\nA. {{A}}\nB. {{B}}\nC. {{C}}\nD. {{D}}\nAnswer:",
        "doc_to_choice": list(mmlu.LETTERS),
        "doc_to_target": "{{['A', 'B', 'C', 'D'].index(answer.strip())}}",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0},
    }


def _evaluate(model: Any, tokenizer: Any, tasks: list[dict[str, Any]], limit: int | None,
              batch_size: int) -> dict[str, Any]:
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    out = simple_evaluate(model=lm, tasks=tasks, limit=limit or None, log_samples=True, bootstrap_iters=0)
    if out is None:
        raise BenchmarkError("lm-eval returned no results")
    return out


def run(name: str, model: Any, tokenizer: Any, limit: int | None = None, *,
        data: str | os.PathLike[str] | None = None, num_fewshot: int | None = None,
        batch_size: int = 8, max_new_tokens: int = gsm8k.MAX_NEW_TOKENS) -> dict[str, Any]:
    """Run benchmark ``name`` through lm-eval; the result has the native backend's shape."""
    require()
    if name == gsm8k.NAME:
        shots = gsm8k.DEFAULT_FEWSHOT if num_fewshot is None else num_fewshot
        limit = gsm8k.DEFAULT_LIMIT if limit is None else limit
        out = _evaluate(model, tokenizer, [gsm8k_task(data, shots, max_new_tokens)], limit, batch_size)
        samples = sorted((s for s in out["samples"]["nexus_gsm8k"]
                          if s.get("filter") in (None, "strict-match")), key=lambda s: s["doc_id"])
        records = [{"question": s["doc"]["question"], "answer": s["doc"]["answer"]} for s in samples]
        outputs = [s["resps"][0][0] for s in samples]
        result = gsm8k.score(records, outputs, config={"num_fewshot": shots, "limit": limit,
                                                       "max_new_tokens": max_new_tokens})
        result["lm_eval_metrics"] = _numbers(out["results"]["nexus_gsm8k"])
        return result
    if name == mmlu.NAME:
        shots = mmlu.DEFAULT_FEWSHOT if num_fewshot is None else num_fewshot
        limit = mmlu.DEFAULT_LIMIT if limit is None else limit
        names = mmlu.subjects(data)
        out = _evaluate(model, tokenizer, [mmlu_task(s, data, shots) for s in names], limit, batch_size)
        items: list[tuple[str, int, dict[str, str]]] = []
        logprobs: list[list[float]] = []
        for subject in names:
            for s in sorted(out["samples"][f"nexus_mmlu_{subject}"], key=lambda s: s["doc_id"]):
                row = {k: str(v) for k, v in s["doc"].items()}
                items.append((subject, s["doc_id"], row))
                logprobs.append([float(r[0][0]) for r in s["resps"]])
        result = mmlu.score(items, logprobs, config={"num_fewshot": shots, "limit_per_subject": limit})
        result["lm_eval_metrics"] = {s: _numbers(out["results"][f"nexus_mmlu_{s}"]) for s in names}
        return result
    raise BenchmarkError(f"no lm-eval task for benchmark {name!r}")


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and "stderr" not in k}
