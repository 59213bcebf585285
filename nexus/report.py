"""The scorecard: the base model, each capability model and the merged model, in one report.

The ``report`` stage reads what the eval stages already measured (``reports/eval/<cap>/
metrics.json``: the base model and the capability's own model on its held-out split) and scores
only what they did not: the merged model on every capability's held-out split, and the base model
on a capability that no eval stage scored yet. Every cell is measured on the same held-out
examples (the prepare stage's ``eval.jsonl``). It writes ``reports/scorecard/``: ``scorecard.md``
(a markdown table), ``scorecard.png`` (grouped bars), ``loss_curves.png`` (each train stage's loss
from dvclive), ``samples.png`` (the images, clips and rendered stills the eval stages generated),
and ``metrics.json`` for ``dvc metrics show``. A row per model and capability is appended to
``results/scorecard.csv``.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path
from typing import Any

from nexus import capabilities, paths, registry, results
from nexus.atomic import atomic_dir, write_json_atomic, write_text_atomic
from nexus.config import Params
from nexus.evaluate import score_examples
from nexus.loading import load_model, load_tokenizer
from nexus.prepare import PreparedSplit, read_split

log = logging.getLogger(__name__)


def read_eval_metrics(eval_dir: Path, capability: str) -> dict[str, Any] | None:
    """The eval stage's ``metrics.json`` of a capability, or None when it has not run."""
    path = eval_dir / capability / "metrics.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _score(path: Path, splits: dict[str, PreparedSplit]) -> dict[str, dict[str, float]]:
    """Load one model once and score it on each split's held-out examples."""
    started = time.perf_counter()
    model, tokenizer = load_model(path), load_tokenizer(path)
    scores = {name: score_examples(model, tokenizer, name, split.eval, split.settings)[0]
              for name, split in splits.items()}
    log.info("scored %s on %d capabilities in %.0f s", path, len(splits), time.perf_counter() - started)
    return scores


def build_scorecard(params: Params, prepared_dir: Path, eval_dir: Path, merged_dir: Path,
                    models_dir: Path) -> dict[str, Any]:
    """``{"metrics": {model: {cap: value}}, "details": ..., "notes": [...]}``: eval's figures for the
    base and each capability model, the merged model (and unevaluated capabilities) scored here."""
    splits = {name: read_split(prepared_dir / name) for name in params.capabilities}
    details: dict[str, dict[str, dict[str, float]]] = {"base": {}}
    models = {"base": str(params.base.model)}
    notes, unscored = [], {}
    for name in splits:
        evaluated = read_eval_metrics(eval_dir, name)
        if evaluated is None:
            unscored[name] = splits[name]
            notes.append(f"{name}: not trained and evaluated yet (base score only)")
            continue
        details["base"][name] = evaluated["base"]
        details[name] = {name: evaluated["trained"]}
        models[name] = str(models_dir / name)
    text = {name: split for name, split in splits.items()  # what a text model can take
            if registry.CAPABILITIES[name].kind == "text"}
    if unscored := {name: split for name, split in unscored.items() if name in text}:
        details["base"].update(_score(Path(params.base.model), unscored))
    if (merged_dir / "config.json").is_file() and text:
        details["merged"] = _score(merged_dir, text)
        models["merged"] = str(merged_dir)
    metric_names = {name: capabilities.load(name).METRIC for name in splits}
    table = {label: {cap: scores.get(metric_names[cap], 0.0) for cap, scores in row.items()}
             for label, row in details.items()}
    return {"metrics": table, "details": details, "metric_names": metric_names,
            "n": {name: len(split.eval) for name, split in splits.items()}, "models": models, "notes": notes}


def markdown(card: dict[str, Any]) -> str:
    """The scorecard as a markdown table: models down, capabilities (and their metric) across."""
    caps = list(card["metric_names"])
    header = "| model | " + " | ".join(f"{c} ({card['metric_names'][c]}, n={card['n'][c]})" for c in caps) + " |"
    lines = ["# Nexus scorecard", "",
             "Each capability's own held-out metric, greedy decoding; higher is better. Bold: better than base. "
             "A capability model is scored on its own capability (by its eval stage); the merged model on all.",
             "", header, "|" + " --- |" * (len(caps) + 1)]
    base = card["metrics"].get("base", {})
    for label, row in card["metrics"].items():
        cells = []
        for cap in caps:
            value = row.get(cap)
            text = "–" if value is None else f"{value:.3f}"
            if label != "base" and value is not None and value > base.get(cap, value):
                text = f"**{text}**"
            cells.append(text)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Models: " + ", ".join(f"{k} = `{v}`" for k, v in card["models"].items()), ""]
    lines += [f"Note: {note}" for note in card.get("notes", [])]
    if card.get("samples"):
        lines += ["", "## Samples", "", "What the eval stages generated, base and trained, first ones (all of them "
                  "under `reports/eval/<capability>/samples/`):", "", "![samples](samples.png)", ""]
        lines += [f"- {name}: " + ", ".join(f"{label} `{paths[0]}`" for label, paths in models.items() if paths)
                  for name, models in card["samples"].items()]
    return "\n".join(lines) + "\n"


SAMPLE_SUFFIXES = (".png", ".gif")
SAMPLES_SHOWN = 3  # per model and capability in samples.png


def sample_files(eval_dir: Path, capabilities_: list[str]) -> dict[str, dict[str, list[Path]]]:
    """``{capability: {"base": [...], "trained": [...]}}``: the media each eval stage generated (images,
    GIF clips, rendered stills under ``reports/eval/<cap>/samples/``); capabilities without any left out."""
    found: dict[str, dict[str, list[Path]]] = {}
    for name in capabilities_:
        models = {label: sorted(p for p in (eval_dir / name / "samples" / label).glob("*")
                                if p.suffix in SAMPLE_SUFFIXES)[:SAMPLES_SHOWN] for label in ("base", "trained")}
        if any(models.values()):
            found[name] = models
    return found


def plot_samples(samples: dict[str, dict[str, list[Path]]], out: Path) -> None:
    """A contact sheet: a row per capability and model, its first samples (a clip's first frame)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    rows = [(name, label, files) for name, models in samples.items() for label, files in models.items() if files]
    fig, axes = plt.subplots(max(len(rows), 1), SAMPLES_SHOWN, figsize=(3 * SAMPLES_SHOWN, 2.2 * max(len(rows), 1)),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    if not rows:
        axes[0][0].text(0, 0.5, "no media samples: every capability in this run writes text", fontsize=10)
    for row, (name, label, files) in enumerate(rows):
        for col, path in enumerate(files):
            with Image.open(path) as image:
                axes[row][col].imshow(image.convert("RGB"))
            axes[row][col].set_title(f"{name} {label}: {path.name}", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


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
        values = [card["metrics"][label].get(c, float("nan")) for c in caps]  # nan: no bar
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


def plot_losses(capability_names: list[str], out: Path, train_dir: Path = paths.REPORTS_DIR / "train") -> bool:
    """Loss curves of the train stages (dvclive's ``loss.tsv``) in one PNG; False when none exist."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = False
    for name in capability_names:
        tsv = train_dir / name / "plots" / "metrics" / "loss.tsv"
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


def run_report(params: Params, out_dir: str | Path, models_dir: Path = Path("models/capabilities"),
               merged_dir: Path = Path("models/merged"), prepared_dir: Path = paths.PREPARED_DIR,
               eval_dir: Path = paths.REPORTS_DIR / "eval",
               train_dir: Path = paths.REPORTS_DIR / "train") -> dict[str, Any]:
    """Build, write and record the scorecard; returns it."""
    card = build_scorecard(params, Path(prepared_dir), Path(eval_dir), Path(merged_dir), Path(models_dir))
    samples = sample_files(Path(eval_dir), list(params.capabilities))
    card["samples"] = {name: {label: [str(p) for p in files] for label, files in models.items()}
                       for name, models in samples.items()}
    with atomic_dir(out_dir) as tmp:
        write_json_atomic(card["metrics"], tmp / "metrics.json")
        write_json_atomic(card, tmp / "scorecard.json")
        write_text_atomic(markdown(card), tmp / "scorecard.md")
        plot_scores(card, tmp / "scorecard.png")
        plot_losses(list(params.capabilities), tmp / "loss_curves.png", Path(train_dir))
        plot_samples(samples, tmp / "samples.png")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    for label, row in card["metrics"].items():
        for cap, value in row.items():
            results.append_row("scorecard", {"time": stamp, "model": label, "capability": cap,
                                             "metric": card["metric_names"][cap], "value": value,
                                             "n": card["n"][cap]})
    print(markdown(card))
    return card
