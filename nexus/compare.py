"""Method bake-off: one DVC experiment per training method of a capability, then one table.

``make compare CAP=cot METHODS=sft,dpo,orpo`` runs :func:`compare`: for each method
``dvc exp run -n <cap>-<method> -S capabilities.<cap>.method=<method> train@<cap> eval@<cap>``
(one after another, in the workspace, so each experiment reuses the converted base model and the
organized data, untracked files included), then reads ``dvc exp show --json`` and prints one row
per method with the capability's metric, base and trained. The experiments stay in DVC:
``dvc exp show``, ``dvc exp diff`` and ``dvc exp apply <name>`` work on them afterwards.

params.yaml is restored afterwards (the last experiment's method is not left in it).
No torch import: the work happens in the ``dvc`` subprocesses.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nexus import capabilities, registry
from nexus.methods import METHODS, resolve
from nexus.paths import eval_report_dir


class CompareError(ValueError):
    """A bake-off that cannot run as asked, or whose experiment failed."""


@dataclass(frozen=True)
class MethodResult:
    """One row of the bake-off table."""

    method: str
    experiment: str
    base: float | None
    trained: float | None
    extra: dict[str, float]


def parse_methods(methods: str) -> list[str]:
    """Comma-separated method names, validated against the dispatch table.

    Raises:
        CompareError: empty, or a name that is not a training method.
    """
    given = [m.strip() for m in methods.split(",") if m.strip()]
    if not given:
        raise CompareError(f"METHODS is empty; choose from: {', '.join(METHODS)}")
    names, unknown = [], []
    for name in given:
        try:
            names.append(resolve(name).name)
        except KeyError:
            unknown.append(name)
    if unknown:
        raise CompareError(f"unknown method(s) {', '.join(unknown)}; choose from: {', '.join(METHODS)}")
    return list(dict.fromkeys(names))


def experiment_name(capability: str, method: str) -> str:
    """The DVC experiment name of one run (DVC refs allow letters, digits, '-' and '_')."""
    return f"{capability}-{method}"


def _dvc(*args: str) -> subprocess.CompletedProcess:
    dvc = shutil.which("dvc") or str(Path(sys.executable).parent / "dvc")
    return subprocess.run([dvc, *args], capture_output=True, text=True)


def _metric_of(capability: str) -> str:
    """The capability's headline metric name, read from its module without importing torch."""
    return capabilities.load(capability).METRIC


def _metrics_of(exp: dict[str, Any], metrics_file: str) -> dict[str, Any] | None:
    data = (exp.get("data") or {}).get("metrics") or {}
    return (data.get(metrics_file) or {}).get("data")


def _flatten(experiments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every experiment entry of ``dvc exp show --json`` (baselines and their experiments)."""
    out = []
    for entry in experiments:
        out.append(entry)
        for exp_range in entry.get("experiments") or []:
            out.extend(exp_range.get("revs") or [])
    return out


def collect(capability: str, methods: list[str], shown: list[dict[str, Any]]) -> list[MethodResult]:
    """The bake-off rows from ``dvc exp show --json`` output: the newest experiment of each name."""
    metrics_file = (eval_report_dir(capability) / "metrics.json").as_posix()
    metric = _metric_of(capability)
    by_name: dict[str, dict[str, Any]] = {}
    for exp in _flatten(shown):
        name = exp.get("name")
        if name and name not in by_name:  # dvc lists the newest first
            by_name[name] = exp
    rows = []
    for method in methods:
        name = experiment_name(capability, method)
        exp = by_name.get(name)
        metrics = _metrics_of(exp, metrics_file) if exp else None
        if metrics is None:
            rows.append(MethodResult(method, name, None, None, {}))
            continue
        trained = metrics.get("trained", {})
        extra = {k: v for k, v in trained.items() if k != metric and isinstance(v, (int, float))}
        base = metrics.get("base", {}).get(metric)
        rows.append(MethodResult(method, name, base, trained.get(metric), extra))
    return rows


def format_table(capability: str, rows: list[MethodResult]) -> str:
    """A plain-text table: one row per method, the capability's metric base and trained."""
    metric = _metric_of(capability)
    header = ["method", "experiment", f"base {metric}", f"trained {metric}", "other trained metrics"]

    def num(value: float | None) -> str:
        return "failed" if value is None else f"{value:.3f}"

    body = [[r.method, r.experiment, num(r.base), num(r.trained),
             ", ".join(f"{k} {v:.3f}" for k, v in sorted(r.extra.items()))] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=True)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip()
             for line in [header, ["-" * w for w in widths], *body]]
    return "\n".join([f"method bake-off: {capability} (metric {metric}, held-out split)", *lines])


def compare(capability: str, methods: str, params_file: str = "params.yaml", quick: bool = False) -> int:
    """Run one experiment per method and print the table; the exit status is 0 when all ran.

    ``quick`` runs each experiment in quick mode (``-S ++capabilities.<cap>.quick=true``: 10 steps,
    tiny batches, 5 eval records), as ``QUICK=1`` means on every make target.

    Raises:
        CompareError: bad capability or method names.
    """
    selected, _ = registry.resolve(capability)
    if len(selected) != 1:
        raise CompareError(f"CAP takes one capability, got '{capability}'")
    cap = selected[0]
    names = parse_methods(methods)
    params = Path(params_file)
    original = params.read_text(encoding="utf-8")
    failed = []
    try:
        for method in names:
            name = experiment_name(cap, method)
            sets = ["-S", f"capabilities.{cap}.method={method}"]
            sets += ["-S", f"++capabilities.{cap}.quick=true"] if quick else []
            print(f"== experiment {name}: dvc exp run {' '.join(sets)} train@{cap} eval@{cap}", flush=True)
            run = _dvc("exp", "run", "-n", name, *sets, f"train@{cap}", f"eval@{cap}")
            sys.stdout.write(run.stdout[-2000:])
            if run.returncode != 0:
                failed.append(method)
                print(f"experiment {name} failed (exit {run.returncode}): {run.stderr.strip()[-1500:]}",
                      file=sys.stderr)
    finally:
        params.write_text(original, encoding="utf-8")
    shown = _dvc("exp", "show", "--json")
    if shown.returncode != 0:
        raise CompareError(f"dvc exp show failed: {shown.stderr.strip()}")
    print(format_table(cap, collect(cap, names, json.loads(shown.stdout))))
    print("more: dvc exp show --only-changed; dvc exp apply <experiment> puts one in the workspace")
    return 1 if failed else 0
