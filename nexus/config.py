"""The only reader of params.yaml: each section loads into a typed, validated dataclass.

Unknown keys and wrong types are collected and raised together as one :class:`ParamsError`, every
problem naming its ``params.yaml`` key. No torch import here: ``nexus plan`` uses this module.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

PARAMS_FILE = "params.yaml"
QUICK_STEPS = 10

T = TypeVar("T")


class ParamsError(ValueError):
    """params.yaml is missing, malformed, or holds unknown or ill-typed keys."""


@dataclass(frozen=True)
class BaseParams:
    """``base:`` the model every capability starts from."""

    model: str = "models/base"  # HF model folder or .gguf file
    seed: int = 42


@dataclass(frozen=True)
class OrganizeParams:
    """``organize:`` where the dataset organizer looks."""

    sources: list[str] = field(default_factory=lambda: ["data/samples", "data/raw"])
    head_records: int = 5
    stream_threshold_mb: int = 1024  # a data file larger than this is read as a stream, never held whole
    model_dirs: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ControllerParams:
    """``controller:`` checkpoint cadence, cooldown and thermal guard."""

    checkpoint_every_steps: int = 25
    cooldown_every_steps: int = 500
    cooldown_seconds: float = 60
    max_gpu_temp_c: float = 83
    thermal_poll_seconds: float = 10


@dataclass(frozen=True)
class CapabilityParams:
    """``capabilities.<name>:`` how one capability is trained and evaluated."""

    method: str = "sft"
    adapter: str = "lora"
    init_from: str = "models/base"  # start model: base.model, or models/capabilities/<cap> to chain
    epochs: float = 1
    max_steps: int = -1
    learning_rate: float = 2e-4
    batch_size: int = 2
    grad_accum: int = 1
    sample_size: int = 0
    eval_size: int = 20
    max_length: int = 384
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    max_new_tokens: int = 200
    thinking_budget: int = 0  # max thinking tokens at generation, then the answer is forced (0 = off)
    teacher: str = ""  # distill: the teacher model (HF folder or .gguf)
    beta: float = 0.1  # dpo / orpo / kto / distill: the method's beta
    num_generations: int = 4  # grpo / ppo: completions sampled per prompt
    long_context: int = 0  # target context length in tokens: RoPE scaling through the config (0 = off)
    quick: bool = False

    def effective(self) -> CapabilityParams:
        """The values a run actually uses: quick mode shrinks steps, batches and evaluation."""
        if not self.quick:
            return self
        return dataclasses.replace(
            self,
            max_steps=QUICK_STEPS,
            batch_size=1,
            grad_accum=1,
            sample_size=min(self.sample_size or 40, 40),
            eval_size=min(self.eval_size, 5),
            max_new_tokens=min(self.max_new_tokens, 96),
        )


@dataclass(frozen=True)
class MergeParams:
    """``merge:`` which capability adapters become one model, and how (PEFT add_weighted_adapter)."""

    capabilities: list[str] = field(default_factory=list)  # empty = every capability trained with LoRA
    combination: str = "cat"
    weights: list[float] = field(default_factory=list)  # empty = 1.0 each
    density: float = 0.5  # for ties / dare_* / magnitude_prune


@dataclass(frozen=True)
class ReportParams:
    """``report:`` the scorecard."""

    eval_size: int = 8  # held-out examples per capability per model


@dataclass(frozen=True)
class Params:
    """Everything in params.yaml."""

    base: BaseParams
    organize: OrganizeParams
    controller: ControllerParams
    capabilities: dict[str, CapabilityParams]
    merge: MergeParams = field(default_factory=MergeParams)
    report: ReportParams = field(default_factory=ReportParams)


_ADAPTERS = ("lora", "qlora", "full")


def _coerce(cls: type[T], raw: Any, where: str, errors: list[str]) -> T:
    """Build dataclass ``cls`` from mapping ``raw``, appending one message per bad key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        errors.append(f"{where}: expected a mapping, got {type(raw).__name__}")
        return cls()
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            errors.append(f"{where}.{key}: unknown key (known: {', '.join(known)})")
            continue
        default = known[key].default
        if default is dataclasses.MISSING:
            default = known[key].default_factory()  # type: ignore[misc]
        expected = type(default)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if expected is bool and not isinstance(value, bool):
            errors.append(f"{where}.{key}: expected true or false, got {value!r}")
            continue
        if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
            errors.append(f"{where}.{key}: expected an integer, got {value!r}")
            continue
        if expected in (float, str, list) and not isinstance(value, expected):
            errors.append(f"{where}.{key}: expected {expected.__name__}, got {value!r}")
            continue
        values[key] = value
    return cls(**values)


def _check_capability(name: str, cap: CapabilityParams, errors: list[str]) -> None:
    where = f"capabilities.{name}"
    if cap.adapter not in _ADAPTERS:
        errors.append(f"{where}.adapter: '{cap.adapter}' is not one of {', '.join(_ADAPTERS)}")
    for key in ("batch_size", "grad_accum", "max_length", "lora_r", "max_new_tokens"):
        if getattr(cap, key) < 1:
            errors.append(f"{where}.{key}: must be at least 1")
    if cap.eval_size < 0 or cap.sample_size < 0:
        errors.append(f"{where}: eval_size and sample_size must be >= 0")
    if cap.max_steps == 0 or cap.max_steps < -1:
        errors.append(f"{where}.max_steps: use a positive count, or -1 to train for `epochs`")
    if cap.learning_rate <= 0:
        errors.append(f"{where}.learning_rate: must be positive")
    from nexus.methods import ALIASES, METHODS  # standard library only

    if ALIASES.get(cap.method, cap.method) not in METHODS:
        errors.append(f"{where}.method: '{cap.method}' is not a training method; choose one of: "
                      f"{', '.join(METHODS)}")
    if cap.long_context < 0:
        errors.append(f"{where}.long_context: a context length in tokens, or 0 (off)")
    if cap.num_generations < 2 and ALIASES.get(cap.method, cap.method) in ("grpo", "ppo"):
        errors.append(f"{where}.num_generations: grpo/ppo need at least 2 completions per prompt")
    if cap.beta < 0:
        errors.append(f"{where}.beta: must be >= 0")
    budget, room = cap.thinking_budget, cap.effective().max_new_tokens
    if budget < 0 or (budget > 0 and budget >= room):
        errors.append(f"{where}.thinking_budget: {budget} leaves no tokens for the answer; keep it "
                      f"below max_new_tokens ({room} in this mode), or 0 (off)")


def parse_params(raw: Any, source: str = PARAMS_FILE) -> Params:
    """Validate an already-loaded params mapping.

    Raises:
        ParamsError: one message listing every problem, each naming its key.
    """
    errors: list[str] = []
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping at the top level")
    sections = ("base", "organize", "controller", "capabilities", "merge", "report")
    for key in raw:
        if key not in sections:
            errors.append(f"{key}: unknown section (known: {', '.join(sections)})")
    base = _coerce(BaseParams, raw.get("base"), "base", errors)
    organize = _coerce(OrganizeParams, raw.get("organize"), "organize", errors)
    controller = _coerce(ControllerParams, raw.get("controller"), "controller", errors)
    caps_raw = raw.get("capabilities") or {}
    capabilities: dict[str, CapabilityParams] = {}
    if not isinstance(caps_raw, dict):
        errors.append("capabilities: expected a mapping of capability name to settings")
        caps_raw = {}
    for name, entry in caps_raw.items():
        cap = _coerce(CapabilityParams, entry, f"capabilities.{name}", errors)
        _check_capability(name, cap, errors)
        capabilities[name] = cap
    merge = _coerce(MergeParams, raw.get("merge"), "merge", errors)
    for name in merge.capabilities:
        if name not in capabilities:
            errors.append(f"merge.capabilities: '{name}' has no entry under capabilities")
    report = _coerce(ReportParams, raw.get("report"), "report", errors)
    for name, cap in capabilities.items():
        if cap.init_from != base.model and not cap.init_from.startswith("models/capabilities/"):
            errors.append(f"capabilities.{name}.init_from: '{cap.init_from}' is neither base.model "
                          f"('{base.model}') nor models/capabilities/<capability>; set it to one of them")
        if cap.init_from == f"models/capabilities/{name}":
            errors.append(f"capabilities.{name}.init_from: a capability cannot start from its own output")
    if errors:
        raise ParamsError(f"{source}: " + "; ".join(errors))
    return Params(base, organize, controller, capabilities, merge, report)


def load_params(path: str | os.PathLike[str] = PARAMS_FILE) -> Params:
    """Read and validate params.yaml.

    Raises:
        ParamsError: the file is missing, not YAML, or fails validation.
    """
    p = Path(path)
    if not p.is_file():
        raise ParamsError(f"{p}: not found; run from the project root or pass --params")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ParamsError(f"{p}: not valid YAML ({err})".replace("\n", " ")) from err
    return parse_params(raw, str(p))


def with_overrides(params: Params, name: str, **values: Any) -> Params:
    """``params`` with capability ``name``'s keys replaced (values of None are ignored).

    For the stage script's own flags (``--quick``, ``--long-context``); DVC does not track these, so
    ``make train`` writes options into params.yaml instead.

    Raises:
        ParamsError: params.yaml has no entry for ``name``, or a value fails validation.
    """
    changes = {key: value for key, value in values.items() if value is not None}
    if not changes:
        return params
    if name not in params.capabilities:
        capability_params(params, name)  # raises the standard message
    cap = dataclasses.replace(params.capabilities[name], **changes)
    errors: list[str] = []
    _check_capability(name, cap, errors)
    if errors:
        raise ParamsError("; ".join(errors))
    return dataclasses.replace(params, capabilities={**params.capabilities, name: cap})


def capability_params(params: Params, name: str) -> CapabilityParams:
    """The effective settings of one capability.

    Raises:
        ParamsError: params.yaml has no entry for ``name``.
    """
    if name not in params.capabilities:
        raise ParamsError(
            f"{PARAMS_FILE}: no entry capabilities.{name}; add one "
            f"(copy capabilities.cot and adjust it)"
        )
    return params.capabilities[name].effective()
