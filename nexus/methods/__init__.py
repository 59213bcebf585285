"""Training methods: each a module that owns its settings, its rows and its builder; one table.

``capabilities.<cap>.method`` in params.yaml (``METHOD=`` in ``make train``) picks a row of
:data:`METHODS`. A row (:class:`~nexus.methods.base.Method`) is declared by its method's module:
its settings dataclass (``methods.<method>`` in params.yaml, per capability
``capabilities.<cap>.<method>``), the manifest record kind it reads, how its rows are completed
once the model is loaded, and a builder that returns a ready ``transformers.Trainer`` from a
:class:`TrainContext`. The shared trainer (:mod:`nexus.trainer`) does everything else (loading,
adapters, controller, dvclive, saving) the same way for every method. Adding a method means one
module (or a few lines in one) and one name in :data:`METHODS`.

Record kinds a method can read from the capability's manifest (see :mod:`nexus.methods.data`):

- none: the capability's own formatted examples (prompt / completion / reference);
- ``preference``: prompt + chosen + rejected pairs; without a file, built from the capability's own
  examples (reference as chosen, the base model's wrong answer as rejected);
- ``unpaired_preference``: prompt + completion + boolean label (KTO); without a file, the same
  pairs unpaired;
- ``text``: plain text for continued pre-training;
- ``prompt_only``: prompts labelled harmful / harmless (``safety`` and ``anti-refusal``).

This package loads params (:func:`load_params`): :mod:`nexus.config` reads every section, and this
module supplies what config cannot know, the methods' names and settings (:func:`method_schema`).
No torch import at module level: ``nexus plan`` reads :data:`METHODS`.
"""

from __future__ import annotations

import os
from typing import Any

from nexus import config
from nexus.config import PARAMS_FILE, CapabilityParams, Params, capability_params, read_params
from nexus.methods.base import Method, MethodSettings, TrainContext
from nexus.methods.distill import DISTILL
from nexus.methods.grpo import GRPO
from nexus.methods.ppo import PPO
from nexus.methods.preference import ANTI_REFUSAL, DPO, KTO, ORPO
from nexus.methods.sft import CPT, SAFETY, SFT

__all__ = ["ALIASES", "METHODS", "Method", "MethodSettings", "TrainContext", "capability_from_dict",
           "load_params", "method_record_kinds", "method_schema", "parse_params", "resolve",
           "resolved_settings"]

METHODS: dict[str, Method] = {m.name: m for m in (SFT, CPT, DISTILL, DPO, ORPO, KTO, GRPO, PPO, SAFETY,
                                                   ANTI_REFUSAL)}

ALIASES = {"anti_refusal": "anti-refusal"}


def resolve(name: str) -> Method:
    """The method a params value names (``anti_refusal`` is accepted for ``anti-refusal``).

    Raises:
        KeyError: no such method; the message lists the valid ones.
    """
    key = ALIASES.get(name, name)
    if key not in METHODS:
        raise KeyError(f"'{name}' is not a training method; choose one of: {', '.join(METHODS)}")
    return METHODS[key]


def method_schema(name: str) -> tuple[str, type[MethodSettings]]:
    """``(canonical name, settings dataclass)`` of a method: the hook :mod:`nexus.config` validates with.

    Raises:
        KeyError: no such method; the message lists the valid ones.
    """
    method = resolve(name)
    return method.name, method.settings


def parse_params(raw: Any, source: str = PARAMS_FILE) -> Params:
    """Validate an already-loaded params mapping, method names and settings included.

    Raises:
        ParamsError: one message listing every problem, each naming its params.yaml key.
    """
    return config.parse_params(raw, source, resolve_method=method_schema)


def load_params(path: str | os.PathLike[str] = PARAMS_FILE) -> Params:
    """Read and fully validate params.yaml: the one way to load params.

    Raises:
        ParamsError: the file is missing, not YAML, or fails validation (every problem at once).
    """
    return parse_params(read_params(path), str(path))


def resolved_settings(params: Params, name: str) -> dict[str, Any]:
    """Capability ``name``'s effective settings as JSON-ready data: every key resolved over
    ``capability_defaults``, quick mode applied, ``method_settings`` the method's own settings
    (read back with :func:`capability_from_dict`).

    Raises:
        ParamsError: params.yaml has no entry for ``name``.
    """
    return capability_params(params, name).to_dict()


def capability_from_dict(data: Any, where: str) -> CapabilityParams:
    """Settings written by :func:`resolved_settings`, validated like params.yaml (``where`` names the file).

    Raises:
        ParamsError: one message listing every problem, each naming ``<where>.<key>``.
    """
    return CapabilityParams.from_dict(data, where, resolve_method=method_schema)


def method_record_kinds() -> dict[str, str]:
    """The manifest record kinds methods read, each with the methods that read it (``"dpo, orpo"``)."""
    kinds: dict[str, list[str]] = {}
    for method in METHODS.values():
        if method.record_kind is not None:
            kinds.setdefault(method.record_kind, []).append(method.name)
    return {kind: ", ".join(names) for kind, names in kinds.items()}
