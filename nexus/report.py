"""The scorecard: every model on every capability's own metric, in one report.

The ``report`` stage scores the base model, each single-capability model and the merged model on
the first ``report.eval_size`` held-out examples of every capability in params.yaml, and writes
``reports/scorecard/``: ``scorecard.md`` (a markdown table), ``scorecard.png`` (grouped bars),
``loss_curves.png`` (each train stage's loss from dvclive), and ``metrics.json`` for
``dvc metrics show``. A row per model and capability is appended to ``results/scorecard.csv``.
A capability that is not trained yet appears with its base score and a note.
"""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path
from typing import Any

from nexus import capabilities, paths, results
from nexus.atomic import write_json_atomic, write_text_atomic
from nexus.config import Params, capability_params
from nexus.examples import capability_examples

log = logging.getLogger(__name__)

MERGED_DIR = Path("models/merged")


def candidate_models(params: Params, models_dir: Path = Path("models/capabilities"),
                     merged_dir: Path = MERGED_DIR) -> dict[str, Path]:
    """Models to score, in display order: base, each trained capability, merged (if present)."""
    models: dict[str, Path] = {"base": Path(params.base.model)}
    for name in params.capabilities:
        folder = models_dir / name
        if (folder / "adapter_config.json").is_file() or (folder / "config.json").is_file():
            models[name] = folder
    if (merged_dir / "config.json").is_file():
        models["merged"] = merged_dir
    return models


def build_scorecard(params: Params, models: dict[str, Path], eval_size: int,
                    organized_dir: Path = paths.ORGANIZED_DIR) -> dict[str, Any]:
    """Score every model on every capability; ``{"metrics": {model: {cap: value}}, ...}``."""
    from nexus.evaluate import score_examples
    from nexus.loading import load_model, load_tokenizer

    held_out: dict[str, list[capabilities.Example]] = {}
    for name in params.capabilities:
        cap = capability_params(params, name)
        data = capability_examples(name, params, organized_dir)
        held_out[name] = data.eval[:eval_size]
    table: dict[str, dict[str, float]] = {}
    details: dict[str, dict[str, dict[str, float]]] = {}
    for label, path in models.items():
        started = time.perf_counter()
        model, tokenizer = load_model(path), load_tokenizer(path)
        table[label], details[label] = {}, {}
        for name, examples in held_out.items():
            module = capabilities.load(name)
            scores, _ = score_examples(model, tokenizer, name, examples, capability_params(params, name))
            table[label][name] = scores.get(module.METRIC, 0.0)
            details[label][name] = scores
        log.info("scored %s on %d capabilities in %.0f s", label, len(held_out), time.perf_counter() - started)
        del model
    metric_names = {name: capabilities.load(name).METRIC for name in held_out}
    return {"metrics": table, "details": details, "metric_names": metric_names,
            "n": {name: len(examples) for name, examples in held_out.items()},
            "models": {label: str(path) for label, path in models.items()}}


def markdown(card: dict[str, Any]) -> str:
    """The scorecard as a markdown table: models down, capabilities (and their metric) across."""
    caps = list(card["metric_names"])
    header = "| model | " + " | ".join(f"{c} ({card['metric_names'][c]}, n={card['n'][c]})" for c in caps) + " |"
    lines = ["# Nexus scorecard", "",
             "Each capability's own held-out metric, greedy decoding; higher is better. Bold: better than base.",
             "", header, "|" + " --- |" * (len(caps) + 1)]
    base = card["metrics"].get("base", {})
    for label, row in card["metrics"].items():
        cells = []
        for cap in caps:
            value = row.get(cap)
            text = "n/a" if value is None else f"{value:.3f}"
            if label != "base" and value is not None and value > base.get(cap, value):
                text = f"**{text}**"
            cells.append(text)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Models: " + ", ".join(f"{k} = `{v}`" for k, v in card["models"].items()), ""]
    return "\n".join(lines)


def plot_scores(card: dict[str, Any], out: Path) -> None:
    """Grouped bars: one group per capability, one bar per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    caps = list(card["metric_names"])
    labels = list(card["metrics"])
    width = 0.8 / max(len(labels), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(caps)), 4))
    for i, label in enumerate(labels):
        values = [card["metrics"][label].get(c, 0.0) for c in caps]
        ax.bar([x + i * width for x in range(len(caps))], values, width, label=label)
    ax.set_xticks([x + width * (len(labels) - 1) / 2 for x in range(len(caps))])
    ax.set_xticklabels([f"{c}\n({card['metric_names'][c]})" for c in caps])
    ax.set_ylim(0, 1)
    ax.set_ylabel("held-out score")
    ax.set_title("Nexus scorecard: base vs trained vs merged")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def plot_losses(capability_names: list[str], out: Path) -> bool:
    """Loss curves of the train stages (dvclive's ``loss.tsv``) in one PNG; False when none exist."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = False
    for name in capability_names:
        tsv = paths.train_report_dir(name) / "plots" / "metrics" / "loss.tsv"
        if not tsv.is_file():
            continue
        with tsv.open(encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        ax.plot([int(r["step"]) for r in rows], [float(r["loss"]) for r in rows], label=name)
        drawn = True
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss per capability")
    if drawn:
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return drawn


def run_report(params: Params, out_dir: str | Path, eval_size: int) -> dict[str, Any]:
    """Build, write and record the scorecard; returns it."""
    from nexus.atomic import atomic_dir

    card = build_scorecard(params, candidate_models(params), eval_size)
    with atomic_dir(out_dir) as tmp:
        write_json_atomic(card["metrics"], tmp / "metrics.json")
        write_json_atomic(card, tmp / "scorecard.json")
        write_text_atomic(markdown(card), tmp / "scorecard.md")
        plot_scores(card, tmp / "scorecard.png")
        plot_losses(list(params.capabilities), tmp / "loss_curves.png")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    for label, row in card["metrics"].items():
        for cap, value in row.items():
            results.append_row("scorecard", {"time": stamp, "model": label, "capability": cap,
                                             "metric": card["metric_names"][cap], "value": value,
                                             "n": card["n"][cap]})
    print(markdown(card))
    return card
