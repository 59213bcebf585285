"""The only reader of params.yaml: each section loads into a typed, validated dataclass.

Unknown keys and wrong types are collected and raised together as one :class:`ParamsError`, every
problem naming its ``params.yaml`` key. No torch import here: ``nexus plan`` uses this module.

Capabilities: ``capability_defaults`` holds the keys every capability shares and each
``capabilities.<name>`` entry only what differs, plus ``method`` and ``init_from``, which every entry
names (``dvc.yaml`` reads ``${item.init_from}``; ``dvc exp run -S capabilities.<name>.method=...``
sets a key that exists). Method knobs: ``methods.<method>`` for every capability,
``capabilities.<name>.<method>`` for one.

This module knows no training method (it imports nothing above the base layer): the methods'
names and settings dataclasses come in through the ``resolve_method`` hook of :func:`parse_params`,
which :mod:`nexus.methods` supplies. Load params with :func:`nexus.methods.load_params`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar, get_origin, get_type_hints

import yaml

from nexus.launch_params import LaunchParams  # the launch: section (re-exported)

PARAMS_FILE = "params.yaml"
QUICK_STEPS = 10

T = TypeVar("T")

MethodResolver = Callable[[str], tuple[str, type]]
"""A method name as written -> ``(canonical name, its settings dataclass)``; raises ``KeyError``
with a one-line message naming the valid methods. The settings dataclass has a default for every
field and a ``problems() -> {key: message}`` method."""


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
    """``capabilities.<name>:`` how one capability is trained and evaluated (over ``capability_defaults``).

    ``method_settings`` is not a params.yaml key: it holds the method's settings dataclass,
    resolved from ``methods.<method>`` and ``capabilities.<name>.<method>``.
    """

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
    long_context: int = 0  # target context length in tokens: RoPE scaling through the config (0 = off)
    quick: bool = False
    # Multimodal capabilities (omni, vision_qa, video_understanding); the text ones ignore these.
    vision_encoder: str = ""  # HF folder of the vision encoder omni attaches (made by the encoders stage)
    audio_encoder: str = ""  # HF folder of the audio encoder omni attaches
    image_size: int = 56  # pixels per side given to the vision encoder (DINOv2-small/14: 56 px = 16 patches + CLS)
    audio_seconds: int = 2  # audio window given to the audio encoder, whole seconds (clips are cut or padded)
    video_frames: int = 6  # frames sampled per clip, evenly spaced
    video_pool: int = 2  # a frame's patch grid average-pooled by this (1: every patch, as for an image)
    train_parts: list[str] = field(default_factory=lambda: ["projectors"])  # trained fully besides the LM's adapter
    remote_code: bool = False  # a composite output also loads with transformers' Auto classes (trust_remote_code)
    voices: list[str] = field(default_factory=lambda: ["heart", "joe"])  # podcast: the hosts' voices, in turn order
    round_trip: int = 3  # podcast: held-out scripts rendered to speech and read back by Whisper (word error rate)
    min_turns: int = 4  # podcast: a script's turn count bounds (format compliance)
    max_turns: int = 12
    diffusion_model: str = ""  # generation: a local diffusers folder (SD3.5); '' = tiny random parts (noise)
    output_size: int = 32  # generation: pixels per side of the images trained on and generated (multiple of 16)
    diffusion_steps: int = 20  # generation: denoising steps per sample at eval and in nexus generate-image
    guidance_scale: float = 1.0  # generation: classifier-free guidance (1 = off; the unconditional branch is zero)
    lora_from_step: int = 0  # adapter lora: the LM's LoRA trains from this step on, train_parts alone before (0: all)
    method_settings: Any = field(default=None, metadata={"resolved": True})

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
            lora_from_step=min(self.lora_from_step, QUICK_STEPS // 2),  # both stages still run
            round_trip=min(self.round_trip, 1),
        )

    def to_dict(self) -> dict[str, Any]:
        """Every key, JSON-ready; ``method_settings`` as a mapping (read back by :meth:`from_dict`)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str, *, resolve_method: MethodResolver) -> CapabilityParams:
        """Resolved settings read back (what :meth:`to_dict` wrote), validated like params.yaml.

        Raises:
            ParamsError: one message listing every problem, each naming ``<where>.<key>``.
        """
        errors: list[str] = []
        if not isinstance(data, dict):
            raise ParamsError(f"{where}: expected a mapping, got {type(data).__name__}")
        plain = {k: v for k, v in data.items() if k != "method_settings"}
        cap = _coerce_onto(cls(), plain, where, errors)
        _check_capability(where, cap, errors)
        try:
            _, kind = resolve_method(cap.method)
        except KeyError as err:
            errors.append(f"{where}.method: {err.args[0]}")
        else:
            settings = _coerce(kind, data.get("method_settings"), f"{where}.method_settings", errors)
            _report_problems(settings, f"{where}.method_settings", None, errors)
            cap = dataclasses.replace(cap, method_settings=settings)
        if errors:
            raise ParamsError("; ".join(errors))
        return cap


REQUIRED_KEYS = ("method", "init_from")  # named by every capabilities.<name> entry, never defaulted


@dataclass(frozen=True)
class MergeParams:
    """``merge:`` which capability adapters become one model, and how (PEFT add_weighted_adapter)."""

    capabilities: list[str] = field(default_factory=list)  # empty = every capability trained with LoRA
    combination: str = "cat"
    weights: list[float] = field(default_factory=list)  # empty = 1.0 each
    density: float = 0.5  # for ties / dare_* / magnitude_prune


@dataclass(frozen=True)
class Params:
    """Everything in params.yaml (capability entries resolved over ``capability_defaults``)."""

    base: BaseParams
    organize: OrganizeParams
    controller: ControllerParams
    capabilities: dict[str, CapabilityParams]
    merge: MergeParams = field(default_factory=MergeParams)
    parked: dict[str, CapabilityParams] = field(default_factory=dict)  # out of the DAG (``parked:``)
    launch: LaunchParams = field(default_factory=LaunchParams)


SECTIONS = ("base", "organize", "controller", "launch", "capability_defaults", "methods", "capabilities", "merge",
            "parked")
_ADAPTERS = ("lora", "qlora", "full", "none")  # none: the language model stays frozen (multimodal parts train)
TRAIN_PARTS = ("projectors", "vision_tower", "audio_tower")


def _keys(obj: Any) -> list[str]:
    """The params.yaml keys of a dataclass (fields, less the resolved ones)."""
    return [f.name for f in fields(obj) if not f.metadata.get("resolved")]


def _typed(value: Any, expected: type, where: str, errors: list[str]) -> tuple[bool, Any]:
    """``(True, value)`` when ``value`` fits the field type (an int is taken for a float), else an error."""
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return True, float(value)
    if expected is bool and not isinstance(value, bool):
        errors.append(f"{where}: expected true or false, got {value!r}")
        return False, None
    if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
        errors.append(f"{where}: expected an integer, got {value!r}")
        return False, None
    if expected in (float, str, list) and not isinstance(value, expected):
        errors.append(f"{where}: expected {expected.__name__}, got {value!r}")
        return False, None
    return True, value


def _coerce_onto(base: T, raw: Any, where: str, errors: list[str],
                 known: Collection[str] | None = None) -> T:
    """``base`` with the keys of mapping ``raw`` replaced, appending one message per bad key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        errors.append(f"{where}: expected a mapping, got {type(raw).__name__}")
        return base
    names = list(known) if known is not None else _keys(base)
    hints = get_type_hints(type(base))
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in names:
            errors.append(f"{where}.{key}: unknown key (known: {', '.join(names) or 'none'})")
            continue
        hint = hints[key]
        ok, value = _typed(value, get_origin(hint) or hint, f"{where}.{key}", errors)
        if ok:
            values[key] = value
    return dataclasses.replace(base, **values)  # type: ignore[type-var]


def _coerce(cls: type[T], raw: Any, where: str, errors: list[str]) -> T:
    """Build dataclass ``cls`` from mapping ``raw``, appending one message per bad key."""
    return _coerce_onto(cls(), raw, where, errors)


def _launch(raw: Any, errors: list[str]) -> LaunchParams:
    launch = _coerce(LaunchParams, raw, "launch", errors)
    errors.extend(f"launch.{key}: {problem}" for key, problem in launch.problems().items())
    return launch


def _report_problems(settings: Any, where: str, keys: Collection[str] | None, errors: list[str]) -> None:
    """One message per invalid method setting (only ``keys``, the ones written here, when given)."""
    for key, problem in settings.problems().items():
        if keys is None or key in keys:
            errors.append(f"{where}.{key}: {problem}")


def _check_capability(where: str, cap: CapabilityParams, errors: list[str]) -> None:
    """The method-independent rules of one capability's settings."""
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
    bad_parts = [p for p in cap.train_parts if p not in TRAIN_PARTS]
    if bad_parts:
        errors.append(f"{where}.train_parts: '{bad_parts[0]}' is not one of {', '.join(TRAIN_PARTS)}")
    if cap.adapter == "none" and not cap.train_parts:
        errors.append(f"{where}: adapter none and no train_parts leaves nothing to train; set adapter: lora "
                      f"or train_parts: [projectors]")
    if len(cap.voices) < 2 or cap.round_trip < 0 or not 2 <= cap.min_turns <= cap.max_turns:
        errors.append(f"{where}: voices needs two names (one per host), round_trip >= 0, and 2 <= min_turns "
                      f"<= max_turns")
    if cap.lora_from_step < 0 or (cap.lora_from_step and (cap.adapter != "lora" or not cap.train_parts)):
        errors.append(f"{where}.lora_from_step: {cap.lora_from_step}; a step count >= 0, used with adapter: lora "
                      f"and train_parts (those train alone before it, LoRA joins from it)")
    elif cap.max_steps > 0 and cap.lora_from_step >= cap.max_steps:
        errors.append(f"{where}.lora_from_step: {cap.lora_from_step} is not below max_steps {cap.max_steps}; "
                      f"LoRA would never train")
    if cap.image_size < 14 or cap.image_size % 14 or cap.audio_seconds < 1 or cap.video_frames < 1 \
            or cap.video_pool < 1:
        errors.append(f"{where}: image_size must be a multiple of 14 px (the encoder's patch), audio_seconds "
                      f"at least 1, video_frames and video_pool at least 1")
    if cap.output_size < 16 or cap.output_size % 16 or cap.diffusion_steps < 1 or cap.guidance_scale < 1:
        errors.append(f"{where}: output_size must be a multiple of 16 px (the VAE and patch strides), "
                      f"diffusion_steps at least 1, guidance_scale at least 1 (1 = off)")
    if cap.long_context < 0:
        errors.append(f"{where}.long_context: a context length in tokens, or 0 (off)")
    budget, room = cap.thinking_budget, cap.effective().max_new_tokens
    if budget < 0 or (budget > 0 and budget >= room):
        errors.append(f"{where}.thinking_budget: {budget} leaves no tokens for the answer; keep it "
                      f"below max_new_tokens ({room} in this mode), or 0 (off)")


def _capability_defaults(raw: Any, errors: list[str]) -> CapabilityParams:
    """``capability_defaults:``: every capability key except the ones each entry must name."""
    for key in REQUIRED_KEYS:
        if isinstance(raw, dict) and key in raw:
            errors.append(f"capability_defaults.{key}: not a shared key; set it in every capabilities.<name> "
                          f"entry")
    shared = [k for k in _keys(CapabilityParams) if k not in REQUIRED_KEYS]
    if isinstance(raw, dict):
        raw = {k: v for k, v in raw.items() if k not in REQUIRED_KEYS}
    return _coerce_onto(CapabilityParams(), raw, "capability_defaults", errors, shared)


def _method_defaults(raw: Any, resolve_method: MethodResolver, errors: list[str]) -> dict[str, Any]:
    """``methods:``: each method's settings for every capability, by canonical method name."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        errors.append("methods: expected a mapping of method name to its settings")
        return {}
    out: dict[str, Any] = {}
    for name, section in raw.items():
        try:
            canonical, kind = resolve_method(name)
        except KeyError as err:
            errors.append(f"methods.{name}: {err.args[0]}")
            continue
        if canonical in out:
            errors.append(f"methods.{name}: '{canonical}' is given twice")
            continue
        out[canonical] = _coerce(kind, section, f"methods.{name}", errors)
        _report_problems(out[canonical], f"methods.{name}", None, errors)
    return out


def _capability(name: str, entry: Any, defaults: CapabilityParams, method_defaults: dict[str, Any],
                resolve_method: MethodResolver, errors: list[str], section: str = "capabilities") -> CapabilityParams:
    """One ``capabilities.<name>`` (or ``parked.<name>``) entry over the defaults, its method's
    settings resolved."""
    where = f"{section}.{name}"
    entry = {} if entry is None else entry
    if not isinstance(entry, dict):
        errors.append(f"{where}: expected a mapping of settings, got {type(entry).__name__}")
        return defaults
    for key in REQUIRED_KEYS:
        if key not in entry:
            errors.append(f"{where}.{key}: missing; every capability entry sets method and init_from "
                          f"(dvc.yaml reads init_from per capability), e.g. init_from: models/base")
    keys = _keys(CapabilityParams)
    cap = _coerce_onto(defaults, {k: v for k, v in entry.items() if k in keys}, where, errors)
    overrides: dict[str, Any] = {}
    for key, section in entry.items():
        if key in keys:
            continue
        try:
            canonical, kind = resolve_method(key)
        except KeyError:
            errors.append(f"{where}.{key}: unknown key (known: {', '.join(keys)}, or a method name "
                          f"holding that method's settings)")
            continue
        settings = _coerce_onto(method_defaults.get(canonical, kind()), section, f"{where}.{key}", errors)
        _report_problems(settings, f"{where}.{key}", section if isinstance(section, dict) else (), errors)
        overrides[canonical] = settings
    _check_capability(where, cap, errors)
    try:
        canonical, kind = resolve_method(cap.method)
    except KeyError as err:
        errors.append(f"{where}.method: {err.args[0]}")
        return cap
    settings = overrides.get(canonical, method_defaults.get(canonical))
    return dataclasses.replace(cap, method_settings=kind() if settings is None else settings)


def _check_chains(base: BaseParams, capabilities: dict[str, CapabilityParams], errors: list[str]) -> None:
    for name, cap in capabilities.items():
        if cap.init_from != base.model and not cap.init_from.startswith("models/capabilities/"):
            errors.append(f"capabilities.{name}.init_from: '{cap.init_from}' is neither base.model "
                          f"('{base.model}') nor models/capabilities/<capability>; set it to one of them")
        if cap.init_from == f"models/capabilities/{name}":
            errors.append(f"capabilities.{name}.init_from: a capability cannot start from its own output")


def parse_params(raw: Any, source: str = PARAMS_FILE, *, resolve_method: MethodResolver) -> Params:
    """Validate an already-loaded params mapping (:func:`nexus.methods.parse_params` supplies
    ``resolve_method``).

    Raises:
        ParamsError: one message listing every problem, each naming its key.
    """
    errors: list[str] = []
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping at the top level")
    for key in raw:
        if key not in SECTIONS:
            errors.append(f"{key}: unknown section (known: {', '.join(SECTIONS)})")
    base = _coerce(BaseParams, raw.get("base"), "base", errors)
    organize = _coerce(OrganizeParams, raw.get("organize"), "organize", errors)
    controller = _coerce(ControllerParams, raw.get("controller"), "controller", errors)
    launch = _launch(raw.get("launch"), errors)
    defaults = _capability_defaults(raw.get("capability_defaults"), errors)
    method_defaults = _method_defaults(raw.get("methods"), resolve_method, errors)
    caps_raw = raw.get("capabilities") or {}
    if not isinstance(caps_raw, dict):
        errors.append("capabilities: expected a mapping of capability name to settings")
        caps_raw = {}
    capabilities = {name: _capability(name, entry, defaults, method_defaults, resolve_method, errors)
                    for name, entry in caps_raw.items()}
    parked = _parked(raw.get("parked"), capabilities, lambda name, entry: _capability(
        name, entry, defaults, method_defaults, resolve_method, errors, section="parked"), errors)
    merge = _coerce(MergeParams, raw.get("merge"), "merge", errors)
    for name in merge.capabilities:
        if name not in capabilities:
            errors.append(f"merge.capabilities: '{name}' has no entry under capabilities")
    _check_chains(base, capabilities, errors)
    if errors:
        raise ParamsError(f"{source}: " + "; ".join(errors))
    return Params(base, organize, controller, capabilities, merge, parked, launch)


def load_launch(path: str | os.PathLike[str] = PARAMS_FILE) -> LaunchParams:
    """The ``launch:`` section alone, validated (the train stage reads it before it starts ranks).
    Raises :class:`ParamsError` naming the key."""
    raw, errors = read_params(path), []
    launch = _launch(raw.get("launch") if isinstance(raw, dict) else None, errors)
    if errors:
        raise ParamsError(f"{path}: " + "; ".join(errors))
    return launch


def _parked(raw: Any, active: dict[str, Any], check: Callable[[str, Any], CapabilityParams],
            errors: list[str]) -> dict[str, CapabilityParams]:
    """The entries under ``parked:`` (``make train CAPS=...`` took them out of the DAG), each checked
    like a ``capabilities`` entry; a name in both sections is an error."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        errors.append("parked: expected a mapping of capability name to settings")
        return {}
    for name in raw:
        if name in active:
            errors.append(f"parked.{name}: also under capabilities; keep one of the two entries")
    return {name: check(name, entry) for name, entry in raw.items()}


def read_params(path: str | os.PathLike[str] = PARAMS_FILE) -> Any:
    """params.yaml as loaded YAML, not validated (:func:`nexus.methods.load_params` validates it).

    Raises:
        ParamsError: the file is missing or not YAML.
    """
    p = Path(path)
    if not p.is_file():
        raise ParamsError(f"{p}: not found; run from the project root or pass --params")
    try:
        return yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ParamsError(f"{p}: not valid YAML ({err})".replace("\n", " ")) from err


def with_overrides(params: Params, name: str, **values: Any) -> Params:
    """``params`` with capability ``name``'s keys replaced (values of None are ignored).

    For the stage script's own flags (``--quick``, ``--long-context``); DVC does not track these, so
    ``make train`` writes options into params.yaml instead. The method cannot change here (its
    settings come from params.yaml).

    Raises:
        ParamsError: params.yaml has no entry for ``name``, or a value fails validation.
    """
    changes = {key: value for key, value in values.items() if value is not None}
    if not changes:
        return params
    if name not in params.capabilities:
        capability_params(params, name)  # raises the standard message
    if {"method", "method_settings"} & set(changes):
        raise ParamsError(f"capabilities.{name}.method: set it in params.yaml, not as a stage flag")
    cap = dataclasses.replace(params.capabilities[name], **changes)
    errors: list[str] = []
    _check_capability(f"capabilities.{name}", cap, errors)
    if errors:
        raise ParamsError("; ".join(errors))
    return dataclasses.replace(params, capabilities={**params.capabilities, name: cap})


def capability_params(params: Params, name: str) -> CapabilityParams:
    """The effective settings of one capability: its entry over ``capability_defaults``, quick mode
    applied, and ``method_settings`` resolved.

    Raises:
        ParamsError: params.yaml has no entry for ``name``.
    """
    if name in params.parked:
        raise ParamsError(f"{PARAMS_FILE}: capability {name} is parked (out of the DAG); "
                          f"`make train CAPS={name}` puts it back under capabilities")
    if name not in params.capabilities:
        raise ParamsError(
            f"{PARAMS_FILE}: no entry capabilities.{name}; add one "
            f"(copy capabilities.cot and adjust it)"
        )
    return params.capabilities[name].effective()
