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

from nexus.config import ParamsError
from nexus.methods import parse_params


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


def apply_overrides(params_file: str | os.PathLike[str], changes: dict[str, Any]) -> list[str]:
    """Set dotted keys in ``params_file``; returns one ``key: old -> new`` line per real change.

    Raises:
        ParamsError: a key does not exist, or the result fails validation (file left unchanged).
    """
    from ruamel.yaml import YAML

    path = Path(params_file)
    yaml = YAML()
    yaml.preserve_quotes = True
    data = yaml.load(path.read_text(encoding="utf-8"))
    lines = []
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
    text = _dump(data)
    parse_params(pyyaml.safe_load(text), str(path))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return lines
