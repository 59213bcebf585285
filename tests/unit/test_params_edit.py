"""Make-style overrides land in params.yaml as tracked values, comments kept."""

import shutil

import pytest
import yaml

from nexus.config import ParamsError, capability_params
from nexus.methods import load_params
from nexus.params_edit import apply_overrides, overrides_from_options, select_capabilities
from tests.project import ROOT


def test_overrides_edit_only_the_named_keys_and_keep_comments(tmp_path):
    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    before = path.read_text()
    changes = overrides_from_options(["cot"], method="sft", epochs=2.0, batch_size=None, quick="1")
    lines = apply_overrides(path, changes)
    assert lines == ["capabilities.cot.epochs: 1 -> 2", "capabilities.cot.quick: False -> True"]
    after = path.read_text()
    assert load_params(path).capabilities["cot"].epochs == 2
    added = [line for line in after.splitlines() if line not in before.splitlines()]
    assert added == ["    epochs: 2", "    quick: true"]  # written into the cot entry as overrides
    assert len(after.splitlines()) == len(before.splitlines()) + 2 and "# QUICK=1" in after
    again = apply_overrides(path, overrides_from_options(["cot"], epochs=3))
    assert again == ["capabilities.cot.epochs: 2 -> 3"]  # now in the entry: set in place


def test_a_key_added_to_the_last_entry_stays_above_the_next_heading(tmp_path):
    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    apply_overrides(path, overrides_from_options(["streaming"], batch_size=4))
    lines = path.read_text().splitlines()
    heading = next(i for i, line in enumerate(lines) if line.startswith("merge:"))
    assert "    batch_size: 4" in lines[heading - 4:heading]
    assert load_params(path).capabilities["streaming"].batch_size == 4


def test_invalid_override_leaves_the_file_untouched(tmp_path):
    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    before = path.read_text()
    with pytest.raises(ParamsError, match="batch_size"):
        apply_overrides(path, {"capabilities.cot.batch_size": 0})
    with pytest.raises(ParamsError, match="unknown key"):
        apply_overrides(path, {"capabilities.cot.nosuch": 1})
    assert path.read_text() == before
    assert not list(tmp_path.glob("*.tmp"))


def test_selecting_capabilities_parks_the_others_and_brings_them_back_unchanged(tmp_path):
    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    original = path.read_text()
    lines = select_capabilities(path, ["tools", "cot"])
    assert lines == ["parked (out of the DAG, settings kept under parked:): reasoning, thinking, streaming"]
    params = load_params(path)
    assert list(params.capabilities) == ["cot", "tools"]
    assert list(params.parked) == ["omni", "vision_qa", "video_understanding", "podcast", "tri_streaming",
                                   "image_generation", "video_generation", "remotion_explainer", "reasoning",
                                   "thinking", "streaming"]
    text = path.read_text()
    assert "\n# One model out of many capabilities" in text.split("parked:")[0]  # headings stay in place
    assert "max_length: 768" in text.split("parked:")[0]  # the selected entries keep their settings
    with pytest.raises(ParamsError, match="capability thinking is parked"):
        capability_params(params, "thinking")
    assert select_capabilities(path, ["cot", "tools"]) == []  # already so: the file is not rewritten
    select_capabilities(path, ["cot", "reasoning", "thinking", "tools", "streaming"])
    assert path.read_text() == original  # settings, comments and order all back


def test_a_selected_chain_keeps_what_it_starts_from(tmp_path):
    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    apply_overrides(path, {"capabilities.reasoning.init_from": "models/capabilities/cot"})
    select_capabilities(path, ["reasoning"])
    assert list(load_params(path).capabilities) == ["cot", "reasoning"]


def test_an_entry_in_both_sections_or_none_is_refused(tmp_path):
    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    select_capabilities(path, ["cot"])
    path.write_text(path.read_text() + "  cot:\n    method: sft\n    init_from: models/base\n")
    with pytest.raises(ParamsError, match="parked.cot: also under capabilities"):
        load_params(path)
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    del data["parked"]["remotion_explainer"]  # a capability with no entry in either section
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    before = path.read_text()
    with pytest.raises(ParamsError, match="no entry capabilities.remotion_explainer"):
        select_capabilities(path, ["remotion_explainer"])
    assert path.read_text() == before
