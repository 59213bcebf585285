"""``nexus plan`` / ``make plan`` / ``DRY_RUN=1``: the seed's view of a run, without training.

Prints the base model, outputs, mode, detected modalities, the training queue in order, and which
DVC stages ``make train CAPS=...`` would rerun and why (those stages and the ones upstream of them):
stages without a dvc.lock entry are named as never run, ``always_changed`` ones said apart, and for
the others the reasons DVC's own ``Stage.status()`` gives, asked in process over one index (dvc.yaml
and dvc.lock read once, with ruamel.yaml's C parser), for the targets and their upstream stages
only. Imports neither torch nor transformers.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from nexus import paths, registry
from nexus.config import PARAMS_FILE, QUICK_STEPS, ParamsError
from nexus.methods import Method, load_params, resolve
from nexus.modality import detect_modalities


@dataclass
class Plan:
    """What a run of the selected capabilities would do."""

    base_model: str
    base_state: str
    modalities: dict[str, Any]
    mode: str
    queue: list[dict[str, Any]]
    skipped: list[tuple[str, str]]
    dvc: dict[str, list[str]] = field(default_factory=dict)
    dvc_always: dict[str, str] = field(default_factory=dict)
    dvc_error: str = ""
    dvc_checked: bool = False
    moves: list[str] = field(default_factory=list)  # what the selection moves in params.yaml


def _base_state(model: str) -> str:
    path = Path(model)
    if path.suffix == ".gguf" and path.is_file():
        return "GGUF file"
    if (path / "config.json").is_file():
        return "HF folder"
    if model == "models/base":
        return "not built yet: stage base_model converts the embedded SmolLM2-135M-Instruct"
    return "MISSING: set base.model in params.yaml to an HF folder or .gguf file"


def _modalities(model: str) -> dict[str, Any]:
    report = paths.MODALITY_FILE
    if report.is_file():
        return {**json.loads(report.read_text(encoding="utf-8")), "from": str(report)}
    try:
        return {**detect_modalities(model), "from": f"{model} (live)"}
    except (ValueError, OSError) as err:
        return {"from": f"unknown ({err})"}


def _usable(files: list[dict[str, Any]]) -> int:
    """Records the formatters accept in manifest ``files`` (all records when none was checked)."""
    return sum((f["records"] if f.get("usable") is None else f["usable"]) or 0 for f in files)


def _data_summary(capability: str, method: Method) -> str:
    """The capability's example files, and where its method's own data would come from."""
    manifest = paths.ORGANIZED_DIR / capability / "manifest.json"
    if not manifest.is_file():
        return "organize has not run yet (or no file of this capability's kinds)"
    listed = json.loads(manifest.read_text(encoding="utf-8"))
    files = listed["files"]
    summary = f"{len(files)} file(s), {_usable(files)} examples"  # the count organize and train show
    kind, name = method.record_kind, method.name
    if kind is None:
        return f"{summary} ({name} needs no method data)"
    extra = [f for f in listed.get("method_files", []) if f.get("kind") == kind]
    if extra:
        return f"{summary}; {name} data: {len(extra)} {kind} file(s), {_usable(extra)} records"
    if method.rows_from_examples:
        return f"{summary}; {name} pairs: built from these examples at training time (no {kind} file)"
    return f"{summary}; {name} data: NONE ({kind} needed; the train stage will stop)"


# (stage -> why it would rerun, always_changed stage -> what it does, why DVC could not answer)
Status = tuple[dict[str, list[str]], dict[str, str], str]
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # dvc.lock's stage names only

NEVER_RUN = "never run (no dvc.lock entry)"
UNLOCKED = "not in dvc.lock: added since the last run"
# Why an ``always_changed: true`` stage runs every time: how it is declared, not a change.
ALWAYS_RUNS = {"organize": "rescans the data folders every run (about a second)"}


def _always_text(name: str, outs: list[str]) -> str:
    why = ALWAYS_RUNS.get(name, "runs every time (always_changed: true)")
    return f"{why}; the stages after it rerun only if {', '.join(outs) or 'its outputs'} changes"


def _change(path: str, state: Any, unlocked: set[str]) -> str:
    if path in unlocked:
        return f"{path} ({UNLOCKED})"
    if isinstance(state, dict):  # params.yaml: {key: state}
        return f"{path}: " + ", ".join(f"{key} ({value})" for key, value in state.items())
    return f"{path} ({state})"


def _stage_reasons(stage: Any, locked: set[str]) -> list[str]:
    """Why DVC would rerun ``stage`` (a ``dvc.stage.PipelineStage``), one line per kind of change;
    ``always changed`` is left out (said apart)."""
    if stage.addressing not in locked:
        return [NEVER_RUN]
    unlocked = {str(item) for item in (*stage.deps, *stage.outs) if not item.hash_info}
    lines = []
    for entry in stage.status().get(stage.addressing, []):
        if isinstance(entry, dict):
            lines.extend(f"{kind}: " + ", ".join(_change(p, state, unlocked) for p, state in changes.items())
                         for kind, changes in entry.items())
        elif entry != "always changed":
            lines.append(entry)
    return lines


def _key(value: Any) -> Any:
    """A value as a memo key: strings, numbers and None as they are, DVC objects by identity."""
    return value if value is None or isinstance(value, str | int | float | bool) else id(value)


@contextmanager
def _one_hash_per_path() -> Iterator[None]:
    """While the plan asks DVC: each path is hashed once, and each params file read once.

    The stages list the same code files (nexus/cli.py in every one: about 1,100 deps, 130 paths), and
    each dep's ``status()`` runs DVC's own ``build`` (a state-DB lookup, a rehash where it misses) and
    each ``params`` dep rereads params.yaml. The answers are DVC's, computed once per call with the
    same arguments; nothing outlives the ``with`` (no answer can go stale between two plans)."""
    import dvc.dependency.param as dvc_param
    import dvc.output as dvc_output

    build, load_path = getattr(dvc_output, "build", None), getattr(dvc_param, "load_path", None)
    if not (callable(build) and callable(load_path)):  # another DVC layout: its answers, unshared
        yield
        return
    built: dict[tuple[Any, ...], Any] = {}
    loaded: dict[tuple[str, int], Any] = {}

    def one_build(*args: Any, **kwargs: Any) -> Any:  # the same call, progress callback aside
        key = (*map(_key, args), *sorted((k, _key(v)) for k, v in kwargs.items() if k != "callback"))
        if key not in built:
            built[key] = build(*args, **kwargs)
        return built[key]

    def one_load(path: str, fs: Any, **kwargs: Any) -> Any:
        if kwargs:
            return load_path(path, fs, **kwargs)
        if (path, id(fs)) not in loaded:
            loaded[path, id(fs)] = load_path(path, fs)
        return copy.deepcopy(loaded[path, id(fs)])  # read_param_file hands out parts of it

    dvc_output.build, dvc_param.load_path = one_build, one_load
    try:
        yield
    finally:
        dvc_output.build, dvc_param.load_path = build, load_path


def _dvc_api_status(targets: list[str]) -> Status:
    """The same answer from DVC itself, in process: one index (dvc.yaml and dvc.lock read once),
    then ``Stage.status()`` on the targets and their upstream stages only. (``Repo.status(targets,
    with_deps=True)`` rereads both files for every target: 5 s for a group.)"""
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    reasons: dict[str, list[str]] = {}
    always: dict[str, str] = {}
    try:
        import networkx as nx
        from dvc.repo import Repo

        with Repo(".") as repo, repo.lock, _one_hash_per_path():
            index = repo.index
            stages = {stage.addressing: stage for stage in index.stages}
            missing = [t for t in targets if t not in stages]
            if missing or not targets:
                return {}, {}, f"dvc.yaml has no stage {', '.join(missing) or 'to run'}"
            wanted = {stages[t] for t in targets}
            needed = wanted.union(*(nx.descendants(index.graph, stage) for stage in wanted))
            lock = Path(repo.root_dir) / "dvc.lock"
            lock_data = yaml.load(lock.read_text(encoding="utf-8"), Loader=LOADER) if lock.is_file() else None
            locked = set((lock_data or {}).get("stages", {}))
            for name, stage in ((n, s) for n, s in stages.items() if s in needed):
                if stage.always_changed and name in locked:
                    always[name] = _always_text(name, [str(out) for out in stage.outs])
                if lines := _stage_reasons(stage, locked):
                    reasons[name] = lines
    except Exception as err:  # noqa: BLE001 - any DVC failure is reported, the plan still prints
        return {}, {}, f"{type(err).__name__}: {err}".splitlines()[0]
    return reasons, always, ""


def _dvc_status(targets: list[str]) -> Status:
    """What ``dvc repro targets`` would run and why, asked of DVC in process."""
    return _dvc_api_status(targets)


def _selection_moves(selected: list[str], params: Any, via_omni: list[str]) -> list[str]:
    """What ``make train`` would move between ``capabilities:`` and ``parked:`` for this selection
    (``via_omni``: the capabilities it starts from omni's composite, which brings omni along)."""
    starts = {n: c.init_from for n, c in {**params.parked, **params.capabilities}.items()}
    starts.update({n: paths.OMNI_OUTPUT for n in via_omni})
    wanted = registry.with_prerequisites(selected, starts)
    back = [n for n in wanted if n in params.parked]
    out = [n for n in params.capabilities if n not in wanted]
    return ([f"back under capabilities (their stages never ran in this DAG): {', '.join(back)}"] if back else []) + \
        ([f"parked (out of the DAG, settings kept): {', '.join(out)}"] if out else [])


def build_plan(caps: str, params_file: str = PARAMS_FILE, quick: bool = False,
               with_dvc: bool = True) -> Plan:
    """Resolve ``caps`` and collect everything the plan prints.

    Raises:
        UnknownCapabilityError / NotImplementedCapabilityError: from :func:`nexus.registry.resolve`.
        ParamsError: params.yaml is invalid or lacks an entry for a selected capability.
    """
    selected, skipped = registry.resolve(caps)
    params = load_params(params_file)
    queue = []
    for name in selected:  # a parked entry is what `make train CAPS=` would move back: plan with it
        cap = params.capabilities.get(name) or params.parked.get(name)
        if cap is None:
            raise ParamsError(f"{params_file}: no entry capabilities.{name}; add one to train it")
        if quick:
            cap = replace(cap, quick=True)
        cap = cap.effective()
        queue.append({
            "name": name, "method": cap.method, "adapter": cap.adapter,
            "steps": cap.max_steps if cap.max_steps > 0 else f"{cap.epochs:g} epoch(s)",
            "learning_rate": cap.learning_rate, "batch_size": cap.batch_size,
            "eval_size": cap.eval_size, "data": _data_summary(name, resolve(cap.method)),
            "output": str(paths.output_dir(name)), "needs": registry.CAPABILITIES[name].modalities,
            # make train CAPS=omni,<cap> starts a capability that needs more than text from omni's composite
            "via_omni": name != "omni" and ("omni" in selected or (paths.output_dir("omni") / "config.json").is_file())
            and cap.init_from == params.base.model
            and bool(set(registry.CAPABILITIES[name].modalities) - {"text"}),
        })
    any_quick = quick or any((params.capabilities.get(n) or params.parked[n]).quick for n in selected)
    mode = (f"quick: {QUICK_STEPS} steps, batch 1, at most 5 eval records" if any_quick
            else "full: steps and batches from params.yaml")
    plan = Plan(params.base.model, _base_state(params.base.model), _modalities(params.base.model),
                mode, queue, [(n, registry.CAPABILITIES[n].missing) for n in skipped])
    plan.moves = _selection_moves(selected, params, [row["name"] for row in queue if row["via_omni"]])
    if with_dvc:  # `make train CAPS=...` selects, then runs `dvc repro`: the selection's stages, merge, report
        targets = [f"{kind}@{n}" for n in selected if n in params.capabilities for kind in ("train", "eval")]
        plan.dvc, plan.dvc_always, plan.dvc_error = _dvc_status([*targets, "merge", "report"])
        plan.dvc_checked = True
    return plan


def format_plan(plan: Plan) -> str:
    """The plan as the text ``nexus plan`` prints."""
    have = [m for m in registry.MODALITIES if plan.modalities.get(m)]
    lines = [
        "Nexus plan (dry run: nothing is trained)",
        f"  base model   {plan.base_model}  [{plan.base_state}]",
        f"  outputs      models/capabilities/<capability> (NEXUS_OUTPUT_DIR); checkpoints in "
        f"{paths.checkpoint_dir('<capability>')}",
        f"  mode         {plan.mode}",
        f"  modalities   {', '.join(have) or 'unknown'}  (from {plan.modalities.get('from', '?')})",
        "  training queue:",
    ]
    for i, item in enumerate(plan.queue, 1):
        missing = [] if item["via_omni"] else [m for m in item["needs"] if have and m not in have]
        remedy = f" (run omni first: make train CAPS=omni,{item['name'].replace('_', '-')})" \
            if set(missing) - {"text"} else ""
        lines.append(
            f"    {i}. {item['name']:<10} {item['method']}/{item['adapter']}, {item['steps']} steps, "
            f"lr {item['learning_rate']:g}, batch {item['batch_size']}, eval {item['eval_size']} "
            f"-> {item['output']}; data: {item['data']}"
            + ("; starts from omni's composite (models/capabilities/omni)" if item["via_omni"] else "")
            + (f"; MISSING modalities {', '.join(missing)}{remedy}" if missing else "")
        )
    for name, why in plan.skipped:
        lines.append(f"    -  {name:<10} skipped: not implemented yet ({why})")
    lines.extend(f"  params.yaml  {move}" for move in plan.moves)
    if plan.dvc_error or not plan.dvc_checked:
        lines.append(f"  DVC status unavailable: {plan.dvc_error or 'not asked'}")
        return "\n".join(lines)
    lines.extend(f"  always runs: {stage}: {note}" for stage, note in plan.dvc_always.items())
    if plan.dvc:
        lines.append("  DVC would rerun (params.yaml as it stands, before the moves above):" if plan.moves
                     else "  DVC would rerun:")
        never = [stage for stage, reasons in plan.dvc.items() if reasons == [NEVER_RUN]]
        if never:
            lines.append(f"    {NEVER_RUN}: {', '.join(never)}")
        lines.extend(f"    {stage}: {'; '.join(reasons)}" for stage, reasons in plan.dvc.items()
                     if stage not in never)
    elif plan.dvc_always:
        lines.append("  DVC: everything else up to date")
    else:
        lines.append("  DVC: everything up to date (dvc repro would do nothing)")
    return "\n".join(lines)
