"""dvc.yaml declares what each stage really runs: every project file in the import closure of its
command is a dep (so editing it reruns the stage), and no project-code dep is stale."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.stage_deps import closure, covered, minimal_deps, stage_deps


@pytest.fixture(scope="module")
def stages():
    return stage_deps()


def test_every_stage_declares_its_import_closure(stages):
    assert {"organize", "detect", "prepare@cot", "train@cot", "eval@cot", "merge", "report"} <= set(stages)
    problems = []
    for name, (script, files, declared) in stages.items():
        assert script in files and Path("nexus/cli.py") in files
        missing = sorted(str(f) for f in files if not covered(f, declared))
        if missing:
            problems.append(f"{name}: add to its deps in dvc.yaml: {', '.join(missing)}")
    assert not problems, "\n".join(problems) + "\n(python -m tests.stage_deps --deps prints them)"


def test_no_stage_declares_code_it_does_not_run(stages):
    stale = []
    for name, (_, files, declared) in stages.items():
        for dep in declared:
            if dep.parts[0] not in ("nexus", "stages"):
                continue  # data, models, folders of other stages' outputs
            if not any(f == dep or dep in f.parents for f in files):
                stale.append(f"{name}: {dep}")
    assert not stale, f"deps that the stage's command never imports: {stale}"


def test_a_capability_stage_runs_only_its_own_capability_module():
    train_cot = closure(Path("stages/train.py"), "cot")
    assert Path("nexus/capabilities/cot.py") in train_cot
    assert Path("nexus/capabilities/tools.py") not in train_cot
    assert Path("nexus/methods/ppo.py") in train_cot  # the method is a param: every method module
    organize = closure(Path("stages/organize.py"))
    assert Path("nexus/capabilities/tools.py") in organize  # routing reads every formatter table


def test_training_path_does_not_import_the_server_or_the_evaluator():
    train = closure(Path("stages/train.py"), "streaming")
    assert not [f for f in train if f.parts[:2] == ("nexus", "serving")]
    assert Path("nexus/evaluate.py") not in train


def test_minimal_deps_folds_whole_packages():
    files = {p.relative_to(Path(__file__).resolve().parents[2])
             for p in (Path(__file__).resolve().parents[2] / "nexus" / "generation").glob("*.py")}
    assert minimal_deps(files | {Path("nexus/config.py")}) == ["nexus/config.py", "nexus/generation"]
