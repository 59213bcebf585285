"""Real `dvc repro` in a temporary git repo: the DAG runs, caches, and reruns only what changed."""

import json

from tests.project import copy_project, edit_params, git, run, tiny_params


def ran(output: str) -> set[str]:
    """Stage names DVC reports as run in a `dvc repro` output."""
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def test_repro_caches_and_reruns_only_the_edited_capability(tmp_path, tiny_model_dir):
    repo = copy_project(tmp_path / "project")
    tiny_params(repo, tiny_model_dir, steps=2)
    git(repo, "commit", "-qam", "tiny model")

    first = run(repo, "dvc", "repro", "train@cot", "eval@cot")
    assert ran(first.stdout) == {"organize", "detect", "train@cot", "eval@cot"}
    assert (repo / "models" / "capabilities" / "cot" / "adapter_config.json").is_file()
    card = json.loads((repo / "models" / "capabilities" / "cot" / "run_card.json").read_text())
    assert card["steps"] == 2 and card["versions"]["trl"]
    metrics = json.loads((repo / "reports" / "eval" / "cot" / "metrics.json").read_text())
    assert set(metrics) == {"base", "trained", "n"} and metrics["n"] == 2
    assert (repo / "reports" / "train" / "cot" / "plots" / "metrics" / "loss.tsv").is_file()
    assert "cot" in (repo / "results" / "training.csv").read_text()
    catalog = json.loads((repo / "data" / "organized" / "catalog.json").read_text())
    assert any(f["format"] == "gsm8k" for f in catalog["files"])

    again = run(repo, "dvc", "repro", "train@cot", "eval@cot")
    assert ran(again.stdout) == set(), again.stdout

    edit_params(repo, capabilities__cot__learning_rate=1e-4)
    diff = run(repo, "dvc", "params", "diff").stdout
    assert "capabilities.cot.learning_rate" in diff
    third = run(repo, "dvc", "repro", "train@cot", "eval@cot")
    assert ran(third.stdout) == {"train@cot", "eval@cot"}, third.stdout
    metrics_show = run(repo, "dvc", "metrics", "show").stdout
    assert "reports/eval/cot/metrics.json" in metrics_show
