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
    # encoders: upstream of every train stage; with text capabilities only it converts nothing
    assert ran(first.stdout) == {"encoders", "organize", "detect", "prepare@cot", "train@cot", "eval@cot"}
    prepared = repo / "data" / "prepared" / "cot"
    assert len((prepared / "eval.jsonl").read_text().splitlines()) == 2
    assert json.loads((prepared / "settings.json").read_text())["max_steps"] == 2
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
    # organize rescans the data folders every run (always_changed: DVC never hashes data/raw, where a
    # FIFO would hang it); its output is unchanged, so nothing downstream reruns.
    assert ran(again.stdout) == {"organize"}, again.stdout

    edit_params(repo, capabilities__cot__learning_rate=1e-4)
    diff = run(repo, "dvc", "params", "diff").stdout
    assert "capabilities.cot.learning_rate" in diff
    third = run(repo, "dvc", "repro", "train@cot", "eval@cot")
    # encoders reads capabilities: (the encoders its entries name): it reruns, converts nothing, and
    # its models/encoders/uses/cot.json is unchanged, so only cot's own change retrains it
    assert ran(third.stdout) == {"encoders", "organize", "prepare@cot", "train@cot", "eval@cot"}, third.stdout
    metrics_show = run(repo, "dvc", "metrics", "show").stdout
    assert "reports/eval/cot/metrics.json" in metrics_show


def status_of(repo, *targets: str) -> str:
    """`dvc status` of the targets (empty when they are up to date)."""
    out = run(repo, "dvc", "status", *targets).stdout
    return "" if "up to date" in out else out


def test_deps_are_honest_pacing_knobs_and_unchanged_defaults_retrain_nothing(tmp_path, tiny_model_dir):
    repo = copy_project(tmp_path / "project")
    tiny_params(repo, tiny_model_dir, steps=2)
    git(repo, "commit", "-qam", "tiny model")
    run(repo, "dvc", "repro", "eval@cot")
    assert status_of(repo, "eval@cot") == ""

    edit_params(repo, controller__cooldown_seconds=5, controller__checkpoint_every_steps=7)
    assert status_of(repo, "train@cot", "eval@cot") == ""  # pacing, not learning

    answers = repo / "nexus" / "capabilities" / "answers.py"  # the cot scorer: eval and train import it
    original = answers.read_text()
    answers.write_text(original + "\n# edited\n")
    changed = status_of(repo, "train@cot")
    assert "train@cot" in changed and "nexus/capabilities/answers.py" in changed, changed
    answers.write_text(original)
    assert status_of(repo, "eval@cot") == ""

    edit_params(repo, capability_defaults__max_steps=7)  # cot overrides max_steps: nothing to retrain
    again = run(repo, "dvc", "repro", "eval@cot")
    assert ran(again.stdout) == {"organize", "prepare@cot"}, again.stdout
    edit_params(repo, capability_defaults__lora_r=4)  # cot inherits lora_r: it retrains
    again = run(repo, "dvc", "repro", "eval@cot")
    assert ran(again.stdout) == {"organize", "prepare@cot", "train@cot", "eval@cot"}, again.stdout

