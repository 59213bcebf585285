"""The registry, params.yaml, capability modules and dvc.yaml agree with each other."""

import importlib
import subprocess
from dataclasses import fields

import yaml

from nexus import registry
from nexus.config import CapabilityParams, load_params
from tests.project import ROOT, VENV_BIN, env


def test_every_params_capability_is_implemented_and_has_a_module():
    params = load_params(ROOT / "params.yaml")
    for name in params.capabilities:
        assert registry.CAPABILITIES[name].implemented, f"params.yaml trains unimplemented '{name}'"
        module = importlib.import_module(f"nexus.capabilities.{name}")
        assert module.FORMATTERS and module.METRIC and callable(module.score)
        assert (ROOT / "nexus" / "capabilities" / f"{name}.py").is_file()


def test_every_implemented_capability_has_a_params_entry():
    params = load_params(ROOT / "params.yaml")
    assert set(registry.implemented()) == set(params.capabilities)


def test_capability_entries_have_identical_keys_for_dvc_foreach():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    keys = {f.name for f in fields(CapabilityParams)}
    for name, entry in raw["capabilities"].items():
        assert set(entry) == keys, f"capabilities.{name} keys differ from the others"


def test_dvc_parses_the_dag_into_per_capability_stages():
    out = subprocess.run([str(VENV_BIN / "dvc"), "stage", "list"], cwd=ROOT, env=env(),
                         capture_output=True, text=True, check=True).stdout
    names = {line.split()[0] for line in out.splitlines() if line.strip()}
    params = load_params(ROOT / "params.yaml")
    expected = {"base_model", "organize", "detect"}
    expected |= {f"{kind}@{cap}" for cap in params.capabilities for kind in ("train", "eval")}
    assert expected <= names


def test_train_stages_depend_only_on_their_own_capability_params():
    dag = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert "capabilities" not in str(dag["organize"].get("params", []))
    assert "capabilities.${key}" in dag["train"]["do"]["params"]
    assert "capabilities" not in dag["train"]["do"]["params"]
