"""The capability registry: every capability Nexus knows, declared as data.

A capability is one row of :data:`CAPABILITIES`. Adding one means adding a row here, a module in
``nexus/capabilities/`` (formatters + evaluator) and an entry under ``capabilities:`` in params.yaml;
``tests/unit/test_pipeline_spec.py`` checks that the three agree. What data a capability trains on
is not declared here: the organizer routes a file to the capabilities whose module has a formatter
for its detected format (:func:`nexus.capabilities.formats_of`). Groups (``all-text``, ``all``)
derive from the ``group`` field.

This module imports nothing beyond the standard library: ``make train`` validates ``CAPS`` with it
before any virtualenv exists (``python3 -m nexus.registry cot,tools``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

MODALITIES = ("text", "vision", "audio_in", "audio_out", "video")
KINDS = ("text", "composite", "diffusion")
"""What a capability's run trains (:attr:`Capability.kind`)."""


@dataclass(frozen=True)
class Capability:
    """One trainable capability.

    Attributes:
        name: snake_case key; also the DVC stage suffix (``train@<name>``) and module name.
        description: one line for ``nexus plan`` and the docs.
        modalities: modalities the base model must have (see :mod:`nexus.modality`).
        group: ``text``, ``multimodal`` or ``generation``; the group ``all-<group>`` selects its members.
        implemented: False while no formatter/evaluator exists; choosing it fails up front.
        missing: what has to be built before it can run (shown when ``implemented`` is False).
        kind: what a run trains (:data:`KINDS`): ``text`` (the language model, TRL or PEFT, podcast
            included: its voice is a TTS backend, not part of the model), ``composite`` (a model with
            media encoders: images, audio or video in; :mod:`nexus.media_training`) or ``diffusion``
            (a projector from the frozen language model into a frozen diffusion model;
            :mod:`nexus.diffusion_training`).
    """

    name: str
    description: str
    modalities: tuple[str, ...]
    group: str
    implemented: bool = False
    missing: str = ""
    kind: str = "text"


CAPABILITIES: dict[str, Capability] = {
    c.name: c
    for c in (
        Capability(
            "cot", "step-by-step chain-of-thought answers to word problems",
            ("text",), "text", implemented=True,
        ),
        Capability(
            "reasoning", "math reasoning with verifiable final answers",
            ("text",), "text", implemented=True,
        ),
        Capability(
            "thinking", "extended thinking inside <think>...</think> with a thinking budget",
            ("text",), "text", implemented=True,
        ),
        Capability(
            "tools", "function calling from a tool schema",
            ("text",), "text", implemented=True,
        ),
        Capability(
            "streaming", "token streaming at inference (nexus chat / nexus serve)",
            ("text",), "text", implemented=True,
        ),
        Capability(
            "omni", "convert a text model into one that sees and hears: vision and audio encoders "
            "joined to it through trained projectors",
            ("text",), "multimodal", implemented=True, kind="composite",
        ),
        Capability(
            "podcast", "a document in, a two-host podcast out: the script, voiced by two offline voices",
            ("text",), "multimodal", implemented=True,
        ),
        Capability(
            "vision_qa", "answer questions about images",
            ("text", "vision"), "multimodal", implemented=True, kind="composite",
        ),
        Capability(
            "video_understanding", "answer questions about video clips",
            ("text", "vision", "video"), "multimodal", implemented=True, kind="composite",
        ),
        Capability(
            "tri_streaming", "images and speech in, text and speech streamed out while the reply is written",
            ("text", "vision", "audio_in"), "multimodal", implemented=True, kind="composite",
        ),
        Capability(
            "image_generation", "text-to-image: the language model conditions SD3 through a trained projector",
            ("text",), "generation", implemented=True, kind="diffusion",
        ),
        Capability(
            "video_generation", "text-to-video: the language model conditions Wan 2.1 through a trained projector",
            ("text",), "generation", implemented=True, kind="diffusion",
        ),
        Capability(
            "remotion_explainer", "a topic in, a Remotion explainer (TSX) out, checked by the real toolchain",
            ("text",), "generation", implemented=True,
        ),
    )
}

GROUPS: dict[str, tuple[str, ...]] = {
    **{f"all-{group}": tuple(name for name, cap in CAPABILITIES.items() if cap.group == group)
       for group in dict.fromkeys(cap.group for cap in CAPABILITIES.values())},
    "all": tuple(CAPABILITIES),
}


class UnknownCapabilityError(ValueError):
    """A CAPS entry that is neither a capability nor a group."""


class NotImplementedCapabilityError(ValueError):
    """A capability that is declared but cannot be trained yet."""


def normalize(name: str) -> str:
    """Map a user-typed name (``vision-qa``, ``Vision_QA``) onto a registry key."""
    return name.strip().lower().replace("-", "_")


def valid_names() -> list[str]:
    """Every name CAPS accepts: the capabilities, then the groups."""
    return [*CAPABILITIES, *GROUPS]


def names_by_readiness() -> tuple[list[str], list[str]]:
    """``(runnable, declared)``: the capabilities and groups that train something now, and those
    declared but with nothing trainable yet (a group whose members are all unimplemented)."""
    runnable = [*implemented(), *(g for g, members in GROUPS.items() if set(members) & set(implemented()))]
    return runnable, [n for n in valid_names() if n not in runnable]


def choices() -> str:
    """``valid: cot, ..., all; declared, not trainable yet: omni, ...`` for the error messages."""
    runnable, declared = names_by_readiness()
    waiting = f"; declared, not trainable yet: {', '.join(declared)}" if declared else ""
    return f"valid: {', '.join(runnable)}{waiting}"


def resolve(caps: str | list[str]) -> tuple[list[str], list[str]]:
    """Resolve a CAPS value into the capabilities to train, in registry order.

    Names chosen one by one must be implemented; a group keeps its implemented members and reports
    the others as skipped.

    Args:
        caps: comma-separated string or list of names and groups.

    Returns:
        ``(selected, skipped)``: capability names to train, and group members skipped because they
        are not implemented yet.

    Raises:
        UnknownCapabilityError: a name is neither a capability nor a group.
        NotImplementedCapabilityError: a name chosen explicitly is not implemented.
    """
    items = [c for c in (caps.split(",") if isinstance(caps, str) else caps) if c.strip()]
    if not items:
        raise UnknownCapabilityError(
            f"no capability given; {choices()}"
        )
    chosen: set[str] = set()
    skipped: set[str] = set()
    for raw in items:
        key = raw.strip().lower()
        if key in GROUPS:
            for member in GROUPS[key]:
                (chosen if CAPABILITIES[member].implemented else skipped).add(member)
            continue
        name = normalize(key)
        if name not in CAPABILITIES:
            raise UnknownCapabilityError(
                f"unknown capability '{raw.strip()}'; {choices()}"
            )
        cap = CAPABILITIES[name]
        if not cap.implemented:
            raise NotImplementedCapabilityError(
                f"capability '{name}' is declared but not implemented yet: missing {cap.missing}. "
                f"Implemented now: {', '.join(implemented())}"
            )
        chosen.add(name)
    order = list(CAPABILITIES)
    return sorted(chosen, key=order.index), sorted(skipped - chosen, key=order.index)


def is_group(caps: str) -> bool:
    """True when a CAPS value names a group (``all-text``, ``all``): ``make train`` then also merges
    the adapters and writes the scorecard."""
    return any(item.strip().lower() in GROUPS for item in caps.split(","))


def implemented() -> list[str]:
    """Names of the capabilities that can be trained now."""
    return [name for name, cap in CAPABILITIES.items() if cap.implemented]


def main(argv: list[str] | None = None) -> int:
    """``python3 -m nexus.registry CAPS``: print the resolved names (a note per group member
    skipped), or one error line and exit 2; ``--check CAPS`` prints only the error (``make``'s
    up-front check, so the notes are not said twice); ``--is-group CAPS`` exits 0 when CAPS names
    a group."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--is-group"]:  # exit 0 when CAPS names a group (used by the Makefile)
        return 0 if is_group(args[1] if len(args) > 1 else "") else 1
    check = args[:1] == ["--check"]
    caps = args[1:] if check else args
    try:
        selected, skipped = resolve(caps[0] if caps else "")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not selected:
        print(f"error: '{caps[0]}' has nothing trainable yet ({', '.join(skipped)}: declared, not "
              f"implemented); valid: {', '.join(names_by_readiness()[0])}", file=sys.stderr)
        return 2
    if check:
        return 0
    for name in skipped:
        print(f"note: skipping '{name}' (not implemented yet: {CAPABILITIES[name].missing})",
              file=sys.stderr)
    print(" ".join(selected))
    return 0


if __name__ == "__main__":
    sys.exit(main())


def with_prerequisites(selected: list[str], init_from: dict[str, str]) -> list[str]:
    """``selected`` plus every capability a selected one starts from (``init_from:
    models/capabilities/<other>``, followed down the chain), in the order given then found."""
    out = list(selected)
    for name in out:  # grows while it is walked: a chain of any length
        start = init_from.get(name, "")
        other = start.removeprefix("models/capabilities/") if start.startswith("models/capabilities/") else None
        if other and other not in out:
            out.append(other)
    return out
