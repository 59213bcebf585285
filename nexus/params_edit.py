"""Write Make-style overrides (METHOD=, EPOCHS=, ...) into params.yaml, keeping its comments.

``make train CAPS=cot EPOCHS=2`` sets ``capabilities.cot.epochs`` in params.yaml before
``dvc repro``, so the change is a tracked parameter: ``dvc params diff`` shows it, the stage
reruns, and the run is reproducible from the file alone. A key the capability's entry does not
list yet (it comes from ``capability_defaults``) is added to the entry as an override. The file is
rewritten through a temporary file and a rename, and only when the result validates.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import yaml as pyyaml

from nexus import registry
from nexus.config import ParamsError
from nexus.methods import parse_params
from nexus.paths import OMNI_OUTPUT
from nexus.registry import CAPABILITIES


def overrides_from_options(capabilities: list[str], **options: Any) -> dict[str, Any]:
    """Map option values (None = not given) onto ``capabilities.<cap>.<option>`` for each capability."""
    changes: dict[str, Any] = {}
    for option, value in options.items():
        if value is None or value == "":
            continue
        if option == "quick":
            value = str(value) in ("1", "true", "True", "yes")
        elif option == "epochs" and float(value).is_integer():
            value = int(float(value))
        for cap in capabilities:
            changes[f"capabilities.{cap}.{option}"] = value
    return changes


PARKED_HEADING_LINES = ("Capabilities out of the DAG, settings kept as they were: `make train CAPS=<name>` moves an",
                        "entry back under capabilities: (and parks the ones not asked for)")
PARKED_HEADING = "\n" + "\n".join(PARKED_HEADING_LINES)  # ruamel's before-comment form: a blank line first


def select_capabilities(params_file: str | os.PathLike[str], selected: list[str]) -> list[str]:
    """Make ``capabilities:`` hold exactly ``selected`` (and the capabilities they chain from): the
    DAG's foreach stages are its entries, so ``dvc repro`` then runs what the user asked for. Other
    entries move, unchanged, to ``parked:``; a parked entry that is selected moves back.

    Returns:
        One line per move (``parked: reasoning, thinking``; ``back under capabilities: cot``).

    Raises:
        ParamsError: a selected capability has no entry in either section; the file is unchanged.
    """

    path = Path(params_file)
    data = _load(path)
    lines = _select(data, path, selected)
    if lines:
        _write_validated(path, data)
    return lines


def _select(data: Any, path: Path, selected: list[str]) -> list[str]:
    """:func:`select_capabilities` on loaded params (``data``), in memory."""
    from ruamel.yaml.comments import CommentedMap

    active, parked = data.get("capabilities") or CommentedMap(), data.get("parked") or CommentedMap()
    entries = {**parked, **active}
    rewired = start_from_omni(entries, selected, str((data.get("base") or {}).get("model", "")), path)
    wanted = registry.with_prerequisites(selected, {n: str((e or {}).get("init_from", "")) for n, e in entries.items()})
    missing = [name for name in wanted if name not in entries]
    if missing:
        raise ParamsError(f"{path}: no entry capabilities.{missing[0]} (nor parked.{missing[0]}); add one "
                          f"(copy capabilities.cot and adjust it)")
    back = [name for name in wanted if name in parked]
    out = [name for name in list(active) if name not in wanted]
    notes = [f"{name} starts from {OMNI_OUTPUT} (omni's composite)" for name in rewired]
    if not back and not out:
        return notes
    heading = _take_tail_comment(active)  # the next section's heading rides on the last entry
    for name in back:
        active[name] = parked.pop(name)
    for name in out:
        parked[name] = active.pop(name)
    for name in sorted(active, key=lambda n: list(CAPABILITIES).index(n) if n in CAPABILITIES else len(CAPABILITIES)):
        active.move_to_end(name)  # registry order, whatever order they were selected in
    _put_tail_comment(active, heading)
    data["capabilities"] = active
    if parked and "parked" not in data:
        data["parked"] = parked
        data.yaml_set_comment_before_after_key("parked", before=PARKED_HEADING)
    elif not parked and "parked" in data:
        _drop_parked(data)
    return ([f"parked (out of the DAG, settings kept under parked:): {', '.join(out)}"] if out else []) + \
        ([f"back under capabilities: {', '.join(back)}"] if back else []) + notes




def base_modalities(base_model: str) -> dict[str, Any]:
    """What ``base_model`` takes in (:func:`nexus.modality.detect_modalities`); a base not made yet
    (``models/base``, which the base_model stage converts from the embedded SmolLM2) counts as text."""
    from nexus.modality import detect_modalities

    if not Path(base_model).exists():
        return {"text": True, "path": f"{base_model} (the embedded SmolLM2, a text model)"}
    return detect_modalities(base_model)


def start_from_omni(entries: dict[str, Any], selected: list[str], base_model: str, path: Path) -> list[str]:
    """For a selected capability that needs a modality the base lacks (vision_qa on a text model):
    start it from omni's composite when omni is selected too or already trained (its ``init_from``
    is rewritten; omni then comes along as its prerequisite), else fail naming omni, before
    anything runs.

    Returns:
        The capabilities whose ``init_from`` now points at omni's output.

    Raises:
        ParamsError: the capability cannot start from the base and omni is not selected.
    """
    from nexus.modality import missing_message

    needy = [n for n in selected if n != "omni" and n in CAPABILITIES and set(CAPABILITIES[n].modalities) - {"text"}
             and str((entries.get(n) or {}).get("init_from", "")) == base_model]
    if not needy:
        return []
    report = base_modalities(base_model)
    rewired = []
    for name in needy:
        message = missing_message(report, CAPABILITIES[name].modalities, name)
        if message is None:
            continue
        if "omni" not in selected and not (Path(OMNI_OUTPUT) / "config.json").is_file():  # omni not trained yet
            raise ParamsError(f"{path}: {message}")
        entries[name]["init_from"] = OMNI_OUTPUT
        rewired.append(name)
    return rewired


def _drop_parked(data: Any) -> None:
    """Remove the empty ``parked:`` section and its heading (kept by ruamel on the section before)."""
    keys = list(data)
    before = keys[keys.index("parked") - 1] if keys.index("parked") else None
    del data["parked"]
    data.ca.items.pop("parked", None)
    if before is None or not isinstance(data[before], dict):
        return
    taken = _take_tail_comment(data[before])
    if taken is not None:
        rest, mark = taken
        rest = rest.replace("".join(f"# {line}\n" for line in PARKED_HEADING_LINES), "")
        _put_tail_comment(data[before], (rest, mark) if rest.strip() else None)


def _last_key(node: Any) -> tuple[Any, Any]:
    """The innermost mapping at the end of ``node`` and its last key (where ruamel keeps the
    comment lines that follow a block)."""
    while True:
        key = next(reversed(node))
        if isinstance(node[key], dict) and node[key]:
            node = node[key]
        else:
            return node, key


def _take_tail_comment(node: Any) -> Any:
    """Detach the comment lines after mapping ``node`` (its end-of-line comment stays); None if none."""
    if not node:
        return None
    inner, key = _last_key(node)
    tokens = inner.ca.items.get(key)
    if not tokens or len(tokens) < 3 or tokens[2] is None:
        return None
    eol, _, rest = tokens[2].value.partition("\n")
    if not rest:
        return None
    tokens[2].value = eol + "\n"
    return rest, tokens[2].start_mark


def _put_tail_comment(node: Any, taken: Any) -> None:
    """Put comment lines taken by :func:`_take_tail_comment` after mapping ``node``'s new end."""
    from ruamel.yaml.tokens import CommentToken

    if taken is None or not node:
        return
    rest, mark = taken
    inner, key = _last_key(node)
    tokens = inner.ca.items.setdefault(key, [None, None, None, None])
    while len(tokens) < 3:
        tokens.append(None)
    if tokens[2] is None:
        tokens[2] = CommentToken("\n" + rest, mark, None)
    else:
        tokens[2].value = tokens[2].value.rstrip("\n") + "\n" + rest


def _append(node: Any, key: str, value: Any) -> None:
    """Add ``key`` at the end of ruamel mapping ``node``; a comment block that followed the old last
    key (the next section's heading) moves below the new key, its end-of-line comment stays."""
    from ruamel.yaml.tokens import CommentToken

    last = next(reversed(node), None)
    node[key] = value
    tokens = node.ca.items.get(last)
    if not tokens or len(tokens) < 3 or tokens[2] is None:
        return
    eol, _, rest = tokens[2].value.partition("\n")
    if not rest:
        return
    tokens[2].value = eol + "\n" if eol.strip() else "\n"
    node.ca.items[key] = [None, None, CommentToken("\n" + rest, tokens[2].start_mark, None), None]


def _current(data: Any, path: Path, dotted: str) -> Any:
    """The value ``dotted`` has now when the file does not write it (``capabilities.<cap>.<key>``
    from ``capability_defaults``); raises ParamsError for any other missing key."""
    parts = dotted.split(".")
    if len(parts) == 3 and parts[0] == "capabilities":
        params = parse_params(pyyaml.safe_load(_dump(data)), str(path))
        if parts[1] in params.capabilities and hasattr(params.capabilities[parts[1]], parts[2]):
            return getattr(params.capabilities[parts[1]], parts[2])
    raise ParamsError(f"{path}: unknown key {dotted}")


def _dump(data: Any) -> str:
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.indent(mapping=2, sequence=4, offset=2)
    buffer = io.StringIO()
    yaml.dump(data, buffer)
    return buffer.getvalue()


def apply_overrides(params_file: str | os.PathLike[str], changes: dict[str, Any],
                    select: list[str] | None = None) -> list[str]:
    """Set dotted keys in ``params_file``, after selecting the capabilities ``select`` (see
    :func:`select_capabilities`) when given; one write for both, only when the result validates.

    Returns:
        One line per move of the selection and one ``key: old -> new`` line per real change.

    Raises:
        ParamsError: a key does not exist, or the result fails validation (file left unchanged).
    """
    path = Path(params_file)
    data = _load(path)
    lines = _select(data, path, select) if select is not None else []
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = data
        for part in parents:
            if not isinstance(node, dict) or part not in node:
                raise ParamsError(f"{path}: no section {'.'.join(parents)}; add it before setting {dotted}")
            node = node[part]
        if leaf in node:
            if node[leaf] != value:
                lines.append(f"{dotted}: {node[leaf]} -> {value}")
                node[leaf] = value
            continue
        old = _current(data, path, dotted)
        if isinstance(old, float) and old.is_integer():
            old = int(old)  # shown as params.yaml writes it (epochs: 1)
        if old != value:
            lines.append(f"{dotted}: {old} -> {value}")
            _append(node, leaf, value)
    if not lines:
        return []
    _write_validated(path, data)
    return lines


def _load(path: Path) -> Any:
    """params.yaml through ruamel (comments and quotes kept for the rewrite)."""
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.preserve_quotes = True
    return yaml.load(path.read_text(encoding="utf-8"))


def _write_validated(path: Path, data: Any) -> None:
    """Write ``data`` back to ``path`` through a temporary file, only when it validates."""
    text = _dump(data)
    parse_params(pyyaml.safe_load(text), str(path))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
