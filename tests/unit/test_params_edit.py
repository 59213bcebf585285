"""Make-style overrides land in params.yaml as tracked values, comments kept."""

import shutil

import pytest

from nexus.config import ParamsError, load_params
from nexus.params_edit import apply_overrides, overrides_from_options
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
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]
    assert len(changed) == 2 and "# QUICK=1" in after


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
