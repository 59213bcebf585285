"""Make-style overrides land in params.yaml as tracked values, comments kept."""

import shutil

import pytest

from nexus.config import ParamsError
from nexus.methods import load_params
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
