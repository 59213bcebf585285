"""The capability registry: names, groups, and the up-front errors `make train` relies on."""

import subprocess
import sys

import pytest

from nexus import registry
from tests.project import ROOT


def test_all_thirteen_capabilities_are_declared_with_their_modalities():
    assert len(registry.CAPABILITIES) == 13
    for cap in registry.CAPABILITIES.values():
        assert cap.description and cap.group
        assert set(cap.modalities) <= set(registry.MODALITIES)
        assert cap.implemented or cap.missing, f"{cap.name} must say what is missing"


def test_groups_resolve_to_implemented_members_and_report_the_rest():
    selected, skipped = registry.resolve("all-text")
    assert selected + skipped == ["cot", "reasoning", "thinking", "tools", "streaming"]
    assert selected == [n for n in selected if registry.CAPABILITIES[n].implemented]
    assert all(not registry.CAPABILITIES[n].implemented for n in skipped)
    selected, skipped = registry.resolve("all")
    assert selected == registry.implemented()
    assert len(selected) + len(skipped) == 13


def test_groups_derive_from_the_group_field():
    for group in {cap.group for cap in registry.CAPABILITIES.values()}:
        members = [n for n, c in registry.CAPABILITIES.items() if c.group == group]
        assert registry.GROUPS[f"all-{group}"] == tuple(members)
    assert registry.is_group("cot,all-text") and not registry.is_group("cot,tools")


def test_unknown_name_lists_valid_names():
    with pytest.raises(registry.UnknownCapabilityError) as err:
        registry.resolve("cot,nosuch")
    assert "nosuch" in str(err.value) and "all-text" in str(err.value) and "tools" in str(err.value)


def test_unimplemented_name_says_what_is_missing():
    with pytest.raises(registry.NotImplementedCapabilityError, match="omni.*not implemented"):
        registry.resolve("omni")


def test_hyphenated_names_are_accepted():
    with pytest.raises(registry.NotImplementedCapabilityError, match="vision_qa"):
        registry.resolve("vision-qa")


def test_registry_cli_runs_on_plain_python_without_dependencies():
    ok = subprocess.run([sys.executable, "-S", "-m", "nexus.registry", "cot"], cwd=ROOT,
                        capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.strip() == "cot"
    bad = subprocess.run([sys.executable, "-S", "-m", "nexus.registry", "nosuch"], cwd=ROOT,
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "valid names" in bad.stderr
