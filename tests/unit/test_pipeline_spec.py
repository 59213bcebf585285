"""The registry, params.yaml, capability modules and dvc.yaml agree with each other."""

import importlib
import subprocess
from dataclasses import fields

import yaml

from nexus import registry
from nexus.config import CapabilityParams
from nexus.methods import load_params
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
    assert set(registry.implemented()) == set(params.capabilities) | set(params.parked)


def test_capability_entries_name_method_and_start_model_for_dvc_foreach():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    keys = {f.name for f in fields(CapabilityParams)}
    for name, entry in raw["capabilities"].items():
        assert {"method", "init_from"} <= set(entry), f"capabilities.{name}: dvc.yaml reads init_from"
        assert set(entry) - {"method_settings"} <= keys | set(raw["methods"]) | {"sft", "cpt", "safety"}
    assert set(raw["capability_defaults"]) <= keys


def test_dvc_parses_the_dag_into_per_capability_stages():
    out = subprocess.run([str(VENV_BIN / "dvc"), "stage", "list"], cwd=ROOT, env=env(),
                         capture_output=True, text=True, check=True).stdout
    names = {line.split()[0] for line in out.splitlines() if line.strip()}
    params = load_params(ROOT / "params.yaml")
    expected = {"base_model", "organize", "detect"}
    expected |= {f"{kind}@{cap}" for cap in params.capabilities for kind in ("prepare", "train", "eval")}
    assert expected <= names


def test_only_prepare_reads_capability_params_and_nothing_reads_the_controller():
    dag = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert "capabilities" not in str(dag["organize"].get("params", []))
    assert "capabilities.${key}" in dag["prepare"]["do"]["params"]
    assert "capabilities" not in dag["prepare"]["do"]["params"]
    for kind in ("train", "eval"):  # they read data/prepared/<cap>/settings.json instead
        assert dag[kind]["do"]["params"] == ["base"]
        assert "data/prepared/${key}" in dag[kind]["do"]["deps"]
    assert "controller" not in str({name: stage.get("params") or stage.get("do", {}).get("params")
                                    for name, stage in dag.items()})
