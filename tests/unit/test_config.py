"""params.yaml loading: typed sections, every problem named by its key, quick mode, defaults with
per-capability overrides, method settings."""

import dataclasses

import pytest

from nexus.config import QUICK_STEPS, ParamsError, capability_params, with_overrides
from nexus.methods import capability_from_dict, load_params, parse_params, resolved_settings
from nexus.methods.ppo import PPOSettings
from nexus.methods.preference import DPOSettings
from tests.project import ROOT

ENTRY = {"method": "sft", "init_from": "models/base"}  # what every capability entry names


def test_shipped_params_load():
    params = load_params(ROOT / "params.yaml")
    assert params.base.model == "models/base"
    assert "cot" in params.capabilities
    assert params.controller.cooldown_every_steps == 500 and params.controller.cooldown_seconds == 60
    assert params.controller.max_gpu_temp_c == 83


def test_all_problems_are_reported_together_with_their_keys():
    raw = {"base": {"model": "m", "sedd": 1},
           "capabilities": {"cot": {**ENTRY, "epochs": "two", "adapter": "prefix", "batch_size": 0}}}
    with pytest.raises(ParamsError) as err:
        parse_params(raw)
    message = str(err.value)
    for key in ("base.sedd", "capabilities.cot.epochs", "capabilities.cot.adapter",
                "capabilities.cot.batch_size"):
        assert key in message
    assert "\n" not in message


def test_quick_mode_shrinks_the_run():
    params = parse_params({"capabilities": {"cot": {**ENTRY, "quick": True, "max_steps": 500,
                                                    "batch_size": 8, "eval_size": 50}}})
    cap = capability_params(params, "cot")
    assert (cap.max_steps, cap.batch_size, cap.eval_size) == (QUICK_STEPS, 1, 5)


def test_missing_capability_entry_says_how_to_add_it():
    with pytest.raises(ParamsError, match="capabilities.tools"):
        capability_params(parse_params({}), "tools")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "params.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("base: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)


def test_stage_flags_override_one_capability_and_are_validated():
    params = load_params(ROOT / "params.yaml")
    quick = with_overrides(params, "cot", quick=True, long_context=None)
    assert capability_params(quick, "cot").max_steps == QUICK_STEPS
    assert capability_params(quick, "reasoning") == capability_params(params, "reasoning")
    assert with_overrides(params, "cot", long_context=2048).capabilities["cot"].long_context == 2048
    with pytest.raises(ParamsError, match="capabilities.cot.long_context"):
        with_overrides(params, "cot", long_context=-1)


def test_unknown_method_and_adapter_name_the_valid_ones():
    raw = {"capabilities": {"cot": {**ENTRY, "method": "ppo2", "adapter": "qlora4"}}}
    with pytest.raises(ParamsError) as err:
        parse_params(raw)
    message = str(err.value)
    assert "capabilities.cot.method: 'ppo2' is not a training method; choose one of: sft, cpt" in message
    assert "capabilities.cot.adapter: 'qlora4' is not one of lora, qlora, full" in message
    assert parse_params({"capabilities": {"cot": {**ENTRY, "method": "anti_refusal"}}})  # alias accepted


def test_entries_override_capability_defaults_and_must_name_method_and_start():
    params = parse_params({"capability_defaults": {"max_steps": 60, "eval_size": 12},
                           "capabilities": {"cot": {**ENTRY, "max_steps": 80}, "tools": ENTRY}})
    assert (params.capabilities["cot"].max_steps, params.capabilities["cot"].eval_size) == (80, 12)
    assert params.capabilities["tools"].max_steps == 60
    with pytest.raises(ParamsError) as err:
        parse_params({"capability_defaults": {"init_from": "models/base"},
                      "capabilities": {"cot": {"max_steps": 80}}})
    for key in ("capability_defaults.init_from", "capabilities.cot.method: missing",
                "capabilities.cot.init_from: missing"):
        assert key in str(err.value)


def test_method_settings_defaults_and_per_capability_overrides():
    raw = {"methods": {"dpo": {"beta": 0.3}, "ppo": {"gamma": 0.99}},
           "capabilities": {"cot": {**ENTRY, "method": "dpo", "dpo": {"beta": 0.5}},
                            "tools": {**ENTRY, "method": "dpo"},
                            "streaming": {**ENTRY, "method": "ppo", "ppo": {"ppo_epochs": 3}},
                            "reasoning": {**ENTRY, "dpo": {"beta": 0.9}}}}
    caps = parse_params(raw).capabilities
    assert caps["cot"].method_settings == DPOSettings(beta=0.5)
    assert caps["tools"].method_settings == DPOSettings(beta=0.3)
    assert caps["streaming"].method_settings == PPOSettings(gamma=0.99, ppo_epochs=3)
    assert type(caps["reasoning"].method_settings).__name__ == "MethodSettings"  # sft: dpo's kept aside


def test_method_settings_problems_are_collected_with_their_keys():
    raw = {"methods": {"ppo": {"gamma": 2, "cliprange": 0}, "grpo": {"num_generations": 1}, "nosuch": {}},
           "capabilities": {"cot": {**ENTRY, "method": "ppo", "ppo": {"lam": "x", "vf_coef": -1}},
                            "tools": {**ENTRY, "dpoo": {"beta": 1}, "kto": {"betta": 1}}}}
    with pytest.raises(ParamsError) as err:
        parse_params(raw)
    message = str(err.value)
    for key in ("methods.ppo.gamma: must be between 0 and 1", "methods.ppo.cliprange: must be positive",
                "methods.grpo.num_generations: grpo needs at least 2", "methods.nosuch: 'nosuch' is not a",
                "capabilities.cot.ppo.lam: expected float", "capabilities.cot.ppo.vf_coef: must be >= 0",
                "capabilities.tools.dpoo: unknown key",
                "capabilities.tools.kto.betta: unknown key (known: beta)"):
        assert key in message, key
    assert message.count("methods.ppo.gamma") == 1  # an inherited bad value is reported where it is written


def test_resolved_settings_round_trip_through_json():
    import json

    raw = {"capabilities": {"cot": {**ENTRY, "method": "ppo", "quick": True, "ppo": {"gamma": 0.9}}}}
    params = parse_params(raw)
    data = json.loads(json.dumps(resolved_settings(params, "cot")))
    assert data["max_steps"] == QUICK_STEPS and data["method_settings"]["gamma"] == 0.9
    cap = capability_from_dict(data, "settings.json")
    assert cap == capability_params(params, "cot") and isinstance(cap.method_settings, PPOSettings)
    with pytest.raises(ParamsError, match=r"settings.json.method_settings.gamma: must be between"):
        capability_from_dict({**data, "method_settings": {"gamma": 3}}, "settings.json")
    with pytest.raises(ParamsError, match=r"settings.json.nosuch: unknown key"):
        capability_from_dict({**data, "nosuch": 1}, "settings.json")
    assert dataclasses.asdict(cap) == data
