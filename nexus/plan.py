"""``nexus plan`` / ``make plan`` / ``DRY_RUN=1``: the seed's view of a run, without training.

Prints the base model, outputs, mode, detected modalities, the training queue in order, and which
DVC stages would rerun and why (``dvc status``). Imports neither torch nor transformers.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

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
    dvc_error: str = ""


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


def _data_summary(capability: str, method: Method) -> str:
    """The capability's example files, and where its method's own data would come from."""
    manifest = paths.ORGANIZED_DIR / capability / "manifest.json"
    if not manifest.is_file():
        return "organize has not run yet (or no file of this capability's kinds)"
    listed = json.loads(manifest.read_text(encoding="utf-8"))
    files = listed["files"]
    summary = f"{len(files)} file(s), {sum(f.get('records') or 0 for f in files)} records"
    kind, name = method.record_kind, method.name
    if kind is None:
        return summary
    extra = [f for f in listed.get("method_files", []) if f.get("kind") == kind]
    if extra:
        records = sum(f.get("records") or 0 for f in extra)
        return f"{summary}; {name} data: {len(extra)} {kind} file(s), {records} records"
    if method.rows_from_examples:
        return f"{summary}; {name} pairs: built from these examples at training time (no {kind} file)"
    return f"{summary}; {name} data: NONE ({kind} needed; the train stage will stop)"


def _dvc_status(targets: list[str]) -> tuple[dict[str, list[str]], str]:
    """``{stage: [reasons]}`` for stages (and their upstream) that would rerun."""
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    try:
        from dvc.repo import Repo

        with Repo(".") as repo:
            status = repo.status(targets=targets, with_deps=True)
    except Exception as err:  # any DVC failure is reported, the plan still prints  # noqa: BLE001 - any DVC failure is reported, the plan still prints
        return {}, f"{type(err).__name__}: {err}".splitlines()[0]
    reasons: dict[str, list[str]] = {}
    for stage, entries in status.items():
        lines = []
        for entry in entries:
            if isinstance(entry, str):
                lines.append(entry)
                continue
            for kind, changes in entry.items():
                if isinstance(changes, dict):
                    lines.append(f"{kind}: " + ", ".join(f"{k} ({v})" for k, v in changes.items()))
                else:
                    lines.append(f"{kind}: {changes}")
        reasons[stage] = lines
    return reasons, ""


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
    for name in selected:
        if name not in params.capabilities:
            raise ParamsError(f"{params_file}: no entry capabilities.{name}; add one to train it")
        cap = params.capabilities[name]
        if quick:
            cap = replace(cap, quick=True)
        cap = cap.effective()
        queue.append({
            "name": name, "method": cap.method, "adapter": cap.adapter,
            "steps": cap.max_steps if cap.max_steps > 0 else f"{cap.epochs:g} epoch(s)",
            "learning_rate": cap.learning_rate, "batch_size": cap.batch_size,
            "eval_size": cap.eval_size, "data": _data_summary(name, resolve(cap.method)),
            "output": str(paths.output_dir(name)), "needs": registry.CAPABILITIES[name].modalities,
        })
    any_quick = quick or any(params.capabilities[n].quick for n in selected)
    mode = (f"quick: {QUICK_STEPS} steps, batch 1, at most 5 eval records" if any_quick
            else "full: steps and batches from params.yaml")
    plan = Plan(params.base.model, _base_state(params.base.model), _modalities(params.base.model),
                mode, queue, [(n, registry.CAPABILITIES[n].missing) for n in skipped])
    if with_dvc:
        targets = [f"{kind}@{n}" for n in selected for kind in ("train", "eval")]
        plan.dvc, plan.dvc_error = _dvc_status(targets)
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
        missing = [m for m in item["needs"] if have and m not in have]
        lines.append(
            f"    {i}. {item['name']:<10} {item['method']}/{item['adapter']}, {item['steps']} steps, "
            f"lr {item['learning_rate']:g}, batch {item['batch_size']}, eval {item['eval_size']} "
            f"-> {item['output']}; data: {item['data']}"
            + (f"; MISSING modalities {', '.join(missing)}" if missing else "")
        )
    for name, why in plan.skipped:
        lines.append(f"    -  {name:<10} skipped: not implemented yet ({why})")
    if plan.dvc_error:
        lines.append(f"  DVC status unavailable: {plan.dvc_error}")
    elif plan.dvc:
        lines.append("  DVC would rerun:")
        for stage, reasons in plan.dvc.items():
            lines.append(f"    {stage}: {'; '.join(reasons) or 'changed'}")
    else:
        lines.append("  DVC: everything up to date (dvc repro would do nothing)")
    return "\n".join(lines)
