"""`make compare` as a user runs it: one DVC experiment per method, then one table (tiny model)."""

import sys

from tests.project import copy_project, git, run, tiny_params

MAKE_ENV = [f"VENV={sys.prefix}", "SKIP_INSTALL=1"]


def test_make_compare_runs_one_experiment_per_method_and_prints_the_table(tmp_path, tiny_model_dir):
    """Two methods (an SFT and a preference one), in quick mode: each experiment is a full `dvc exp run`
    (prepare, train, eval, merge, report), so a third method or a second call would only repeat them."""
    repo = copy_project(tmp_path / "project")
    tiny_params(repo, tiny_model_dir, steps=2)
    git(repo, "commit", "-qam", "tiny model")
    before = (repo / "params.yaml").read_text()

    result = run(repo, "make", "--no-print-directory", "compare", "CAP=cot", "METHODS=sft,dpo", "QUICK=1", *MAKE_ENV)
    assert "-S ++capabilities.cot.quick=true" in result.stdout
    lines = result.stdout.splitlines()
    start = lines.index("method bake-off: cot (metric accuracy, held-out split)")
    header, _, *rows = lines[start + 1:start + 5]
    assert header.split()[:4] == ["method", "experiment", "base", "accuracy"]
    assert [r.split()[:2] for r in rows] == [["sft", "cot-sft"], ["dpo", "cot-dpo"]]
    for row in rows:
        base, trained = row.split()[2:4]
        assert 0.0 <= float(base) <= 1.0 and 0.0 <= float(trained) <= 1.0
    assert (repo / "params.yaml").read_text() == before  # the last method is not left in params.yaml

    shown = run(repo, "dvc", "exp", "show", "--csv", "--keep", "capabilities.cot.(method|quick)").stdout
    assert {"sft", "dpo"} <= {cell for line in shown.splitlines() for cell in line.split(",")}
    row = next(line for line in shown.splitlines() if "cot-sft" in line)
    assert "True" in row.split(",") or "true" in row.split(","), shown


def test_make_compare_rejects_an_unknown_method_in_one_line(tmp_path, tiny_model_dir):
    repo = copy_project(tmp_path / "project")
    result = run(repo, "make", "--no-print-directory", "compare", "CAP=cot", "METHODS=sft,nosuch", *MAKE_ENV,
                 check=False)
    assert result.returncode != 0
    assert "unknown method(s) nosuch; choose from: sft, cpt, distill" in result.stderr
