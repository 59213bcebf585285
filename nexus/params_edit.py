"""Write Make-style overrides (METHOD=, EPOCHS=, ...) into params.yaml, keeping its comments.

``make train CAPS=cot EPOCHS=2`` edits ``capabilities.cot.epochs`` in params.yaml before
``dvc repro``, so the change is a tracked parameter: ``dvc params diff`` shows it, the stage
reruns, and the run is reproducible from the file alone. The file is rewritten through a temporary
file and a rename.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from nexus.config import ParamsError, parse_params

_OPTION_KEYS = {"method": "method", "sample_size": "sample_size", "epochs": "epochs",
                "batch_size": "batch_size", "quick": "quick"}


def overrides_from_options(capabilities: list[str], **options: Any) -> dict[str, Any]:
    """Map option values (None = not given) onto dotted params keys for each capability."""
    changes: dict[str, Any] = {}
    for option, value in options.items():
        if value is None or value == "":
            continue
        if option == "quick":
            value = str(value) in ("1", "true", "True", "yes")
        elif option == "epochs" and float(value).is_integer():
            value = int(float(value))
        for cap in capabilities:
            changes[f"capabilities.{cap}.{_OPTION_KEYS[option]}"] = value
    return changes


def apply_overrides(params_file: str | os.PathLike[str], changes: dict[str, Any]) -> list[str]:
    """Set dotted keys in ``params_file``; returns one ``key: old -> new`` line per real change.

    Raises:
        ParamsError: a key does not exist, or the result fails validation (file left unchanged).
    """
    from ruamel.yaml import YAML

    path = Path(params_file)
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    data = yaml.load(path.read_text(encoding="utf-8"))
    lines = []
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = data
        for part in parents:
            if not isinstance(node, dict) or part not in node:
                raise ParamsError(f"{path}: no section {'.'.join(parents)}; add it before overriding {dotted}")
            node = node[part]
        if leaf not in node:
            raise ParamsError(f"{path}: unknown key {dotted}")
        if node[leaf] != value:
            lines.append(f"{dotted}: {node[leaf]} -> {value}")
            node[leaf] = value
    if not lines:
        return []
    import yaml as pyyaml

    buffer = io.StringIO()
    yaml.dump(data, buffer)
    parse_params(pyyaml.safe_load(buffer.getvalue()), str(path))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(buffer.getvalue(), encoding="utf-8")
    os.replace(tmp, path)
    return lines
