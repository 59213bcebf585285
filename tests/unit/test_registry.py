"""The capability registry: names, groups, and the up-front errors `make train` relies on."""

import dataclasses
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


def test_every_capability_names_a_known_kind():
    assert {cap.kind for cap in registry.CAPABILITIES.values()} <= set(registry.KINDS)
    assert {registry.CAPABILITIES[name].kind for name in ("image_generation", "video_generation")} == {"diffusion"}
    assert registry.CAPABILITIES["omni"].kind == "composite" and registry.CAPABILITIES["podcast"].kind == "text"


def test_groups_derive_from_the_group_field():
    for group in {cap.group for cap in registry.CAPABILITIES.values()}:
        members = [n for n, c in registry.CAPABILITIES.items() if c.group == group]
        assert registry.GROUPS[f"all-{group}"] == tuple(members)
    assert registry.is_group("cot,all-text") and not registry.is_group("cot,tools")


@pytest.fixture
def declared(monkeypatch: pytest.MonkeyPatch) -> str:
    """Every capability of the seed is implemented now: remotion_explainer stands in for one that is
    declared but not trainable (what a new row is until its module lands)."""
    row = dataclasses.replace(registry.CAPABILITIES["remotion_explainer"], implemented=False,
                              missing="a code formatter and render-check evaluator")
    monkeypatch.setitem(registry.CAPABILITIES, "remotion_explainer", row)
    return "remotion_explainer"


def test_unknown_name_lists_the_runnable_names_and_the_declared_ones_apart(declared):
    with pytest.raises(registry.UnknownCapabilityError) as err:
        registry.resolve("cot,nosuch")
    message = str(err.value)
    assert message.startswith("unknown capability 'nosuch'; valid: cot, reasoning, thinking, tools, ")
    valid, declared_names = message.split("; valid: ")[1].split("; declared, not trainable yet: ")
    assert valid.split(", ") == [*registry.implemented(), "all-text", "all-multimodal", "all-generation", "all"]
    assert declared_names.split(", ") == [declared]


def test_with_everything_implemented_the_message_lists_only_valid_names():
    with pytest.raises(registry.UnknownCapabilityError) as err:
        registry.resolve("nosuch")
    assert "declared, not trainable yet" not in str(err.value) and str(err.value).endswith(", all")


def test_unimplemented_name_says_what_is_missing(declared):
    with pytest.raises(registry.NotImplementedCapabilityError, match="remotion_explainer.*not implemented"):
        registry.resolve("remotion_explainer")


def test_hyphenated_names_are_accepted(declared):
    assert registry.resolve("vision-qa") == (["vision_qa"], [])
    assert registry.resolve("Tri-Streaming") == (["tri_streaming"], [])
    assert registry.resolve("Video-Generation") == (["video_generation"], [])
    with pytest.raises(registry.NotImplementedCapabilityError, match="remotion_explainer"):
        registry.resolve("Remotion-Explainer")


def test_registry_cli_runs_on_plain_python_without_dependencies():
    ok = subprocess.run([sys.executable, "-S", "-m", "nexus.registry", "cot"], cwd=ROOT,
                        capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.strip() == "cot"
    bad = subprocess.run([sys.executable, "-S", "-m", "nexus.registry", "nosuch"], cwd=ROOT,
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "; valid: cot, " in bad.stderr
    every = subprocess.run([sys.executable, "-S", "-m", "nexus.registry", "all"], cwd=ROOT,
                           capture_output=True, text=True)
    assert every.stdout.split() == list(registry.CAPABILITIES) and every.stderr == ""  # all 13 trainable


def _registry(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-S", "-m", "nexus.registry", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_check_mode_says_only_what_is_wrong(declared, capsys):
    """`make` checks CAPS with --check: a group's skip notes are then said once, by what runs next."""
    assert registry.main(["--check", "all"]) == 0
    assert capsys.readouterr() == ("", "")
    bad = _registry("--check", "nosuch")
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown capability 'nosuch'; valid: ")
    assert registry.main(["all"]) == 0
    out, err = capsys.readouterr()
    assert out.split() == registry.implemented()
    assert err.count("note: skipping 'remotion_explainer' ") == 1 and len(err.splitlines()) == 1


def test_a_group_with_nothing_trainable_fails_up_front(declared, monkeypatch, capsys):
    # every group has a trainable member now: make the generation group's others undeclared too
    for name in ("image_generation", "video_generation"):
        row = dataclasses.replace(registry.CAPABILITIES[name], implemented=False, missing="a projector")
        monkeypatch.setitem(registry.CAPABILITIES, name, row)
    assert registry.main(["all-generation"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == ("error: 'all-generation' has nothing trainable yet (image_generation, "
                                 "video_generation, remotion_explainer: declared, not implemented); valid: "
                                 f"{', '.join(registry.implemented())}, all-text, all-multimodal, all\n")
