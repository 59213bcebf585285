"""`nexus plan`: the seed's dry-run view, without importing torch."""

import logging
import shutil
import subprocess
import sys

import yaml

from nexus.methods import load_params, resolve
from nexus.methods.base import MethodRows
from nexus.methods.rows import prepare_rows
from nexus.plan import build_plan, format_plan
from tests.project import ROOT, copy_project, edit_params, env, run

NO_TORCH = """
import sys
from nexus.cli import main
code = main(["plan", "--caps", "all"])
assert "torch" not in sys.modules, "plan imported torch"
assert "transformers" not in sys.modules, "plan imported transformers"
sys.exit(code)
"""


def test_plan_prints_the_queue_and_imports_no_torch():
    result = subprocess.run([sys.executable, "-c", NO_TORCH], cwd=ROOT, env=env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "base model   models/base" in out
    assert "1. cot" in out and "sft/lora" in out
    assert "5. streaming" in out
    assert "podcast" in out and "13. remotion_explainer" in out  # every capability of the seed trains
    assert "modalities" in out and "mode" in out
    assert "DVC" in out


def test_plan_rejects_unknown_capabilities_in_one_line():
    result = subprocess.run([sys.executable, "-m", "nexus.cli", "plan", "--caps", "nosuch"], cwd=ROOT,
                            env=env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("error: unknown capability 'nosuch'")
    assert result.stderr.count("\n") == 1


def _plan(repo, caps: str) -> str:
    """`nexus plan` run in a project copy, on the copy's own code."""
    result = subprocess.run([sys.executable, "-m", "nexus.cli", "plan", "--caps", caps], cwd=repo, env=env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _dvc_part(repo, caps: str) -> str:
    """The plan's DVC lines."""
    out = _plan(repo, caps)
    return out[out.index("  always runs:") if "  always runs:" in out else out.index("  DVC"):]


def test_a_fresh_clone_names_never_run_stages_and_a_group_includes_merge_and_report(tmp_path):
    repo = copy_project(tmp_path / "project")  # no dvc.lock, as in a fresh clone
    full = _plan(repo, "cot")
    assert "  params.yaml  parked (out of the DAG, settings kept): reasoning, thinking, tools, streaming\n" in full
    out = _dvc_part(repo, "cot").splitlines()
    assert out[0] == "  DVC would rerun (params.yaml as it stands, before the moves above):"
    assert out[1].startswith("    never run (no dvc.lock entry): base_model, encoders, organize, detect, prepare@cot")
    assert out[1].endswith("eval@streaming, merge, report"), out
    group = _dvc_part(repo, "all-text").splitlines()
    assert group[0] == "  DVC would rerun:"  # all five selected: nothing moves
    assert len(group) == 2 and group[1].endswith("eval@streaming, merge, report"), group


def test_the_plan_says_what_dvc_would_rerun_and_why(tmp_path):
    """After a real organize run, and after each kind of change, the plan words what DVC's own
    status says."""
    repo = copy_project(tmp_path / "project")
    run(repo, "dvc", "repro", "organize", timeout=300)
    out = _dvc_part(repo, "cot")
    assert out.startswith("  always runs: organize: rescans the data folders every run (about a second); "
                          "the stages after it rerun only if data/organized changes\n")
    assert "    never run (no dvc.lock entry): base_model, encoders, detect, prepare@cot, prepare@reasoning" in out
    assert "    organize:" not in out  # always_changed is how the stage is declared, not a change

    with (repo / "stages" / "organize.py").open("a", encoding="utf-8") as script:
        script.write("# edited\n")
    spec = yaml.safe_load((repo / "dvc.yaml").read_text(encoding="utf-8"))
    spec["stages"]["organize"]["deps"].append("README.md")
    spec["stages"]["organize"]["cmd"] += " "
    (repo / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    edit_params(repo, organize__head_records=6)
    line = next(x for x in _dvc_part(repo, "cot").splitlines() if x.startswith("    organize: "))
    assert line == ("    organize: changed deps: stages/organize.py (modified), README.md (not in dvc.lock: "
                    "added since the last run), params.yaml: organize (modified); changed command")

    shutil.rmtree(repo / ".dvc" / "cache")
    (repo / "data" / "organized" / "catalog.json").unlink()
    line = next(x for x in _dvc_part(repo, "cot").splitlines() if x.startswith("    organize: "))
    assert line.endswith("; changed outs: data/organized (not in cache); changed command")


def test_skipped_capabilities_are_said_once(tmp_path, monkeypatch, capsys):
    """`make plan CAPS=all` checks CAPS with `nexus.registry --check` (silent), then the plan lists
    each skipped capability once (remotion_explainer stands in for a declared, untrainable one)."""
    import dataclasses

    from nexus import registry

    row = dataclasses.replace(registry.CAPABILITIES["remotion_explainer"], implemented=False, missing="a module")
    monkeypatch.setitem(registry.CAPABILITIES, "remotion_explainer", row)
    assert registry.main(["--check", "all"]) == 0 and capsys.readouterr() == ("", "")
    out = format_plan(build_plan("all", with_dvc=False))
    for name in ("remotion_explainer",):
        assert out.count(f"-  {name} ") == 1, out
    assert "DVC status unavailable: not asked" in out


def test_sft_data_is_described_the_same_by_the_plan_and_the_trainer(caplog):
    """sft trains on the capability's own examples: neither the plan nor the trainer's log calls
    that '0 rows'."""
    cap = load_params().capabilities["cot"]
    with caplog.at_level(logging.INFO, logger="nexus.methods.rows"):
        prepare_rows(resolve("sft"), MethodRows(), "cot", cap, None, None, [], 0)
    assert caplog.messages == ["cot: method sft trains on the capability's own examples (no method data needed)"]
