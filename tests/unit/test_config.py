"""params.yaml loading: typed sections, every problem named by its key, quick mode."""

import pytest

from nexus.config import QUICK_STEPS, ParamsError, capability_params, load_params, parse_params, with_overrides
from tests.project import ROOT


def test_shipped_params_load():
    params = load_params(ROOT / "params.yaml")
    assert params.base.model == "models/base"
    assert "cot" in params.capabilities
    assert params.controller.cooldown_every_steps == 500 and params.controller.cooldown_seconds == 60
    assert params.controller.max_gpu_temp_c == 83


def test_all_problems_are_reported_together_with_their_keys():
    raw = {"base": {"model": "m", "sedd": 1},
           "capabilities": {"cot": {"epochs": "two", "adapter": "prefix", "batch_size": 0}}}
    with pytest.raises(ParamsError) as err:
        parse_params(raw)
    message = str(err.value)
    for key in ("base.sedd", "capabilities.cot.epochs", "capabilities.cot.adapter",
                "capabilities.cot.batch_size"):
        assert key in message
    assert "\n" not in message


def test_quick_mode_shrinks_the_run():
    params = parse_params({"capabilities": {"cot": {"quick": True, "max_steps": 500,
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
    raw = {"capabilities": {"cot": {"method": "ppo2", "adapter": "qlora4"}}}
    with pytest.raises(ParamsError) as err:
        parse_params(raw)
    assert "capabilities.cot.method: 'ppo2' is not a training method; choose one of: sft, cpt" in str(err.value)
    assert "capabilities.cot.adapter: 'qlora4' is not one of lora, qlora, full" in str(err.value)
    assert parse_params({"capabilities": {"cot": {"method": "anti_refusal"}}})  # alias accepted
