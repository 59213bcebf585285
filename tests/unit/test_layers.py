"""House rules the code must keep: the import layers (import-linter), no private names imported
across modules, small modules and functions, and a clean ruff lint."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.project import ROOT

BIN = Path(sys.executable).parent
SOURCE_DIRS = ("nexus", "stages", "benchmarks")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
# Longer on purpose, with the reason (keep this list short).
LONG_FUNCTIONS = {
    "nexus/cli.py:build_parser": "one flat argparse table: every verb's options, read top to bottom",
    "nexus/methods/ppo.py:ppo_trainer_class": "a class factory: the Trainer subclass is defined inside it so "
                                              "that importing the method table does not import torch; each "
                                              "of its methods is short",
}
LONG_MODULES: dict[str, str] = {}


def _tool(name: str) -> str:
    found = BIN / name
    if found.exists():
        return str(found)
    which = shutil.which(name)
    if which is None:
        pytest.fail(f"{name} is not installed: run `make install` (pyproject's test extra has it)")
    return which


def _sources() -> list[Path]:
    return sorted(p for d in SOURCE_DIRS for p in (ROOT / d).rglob("*.py"))


def test_import_linter_contracts_hold():
    result = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def _module_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def test_no_private_name_is_imported_from_another_module():
    offenders = []
    for path in _sources():
        here = _module_of(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nexus")):
                continue
            package = node.module.rsplit(".", 1)[0] if "." in node.module else node.module
            inside = here == node.module or here.startswith(package + ".")
            for alias in node.names:
                if alias.name.startswith("_") and not inside:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {node.module}.{alias.name}")
    assert not offenders, "use or add a public name instead:\n" + "\n".join(offenders)


def _docstring_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of the function's docstring (not counted: documentation is not length)."""
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return first.end_lineno - first.lineno + 1
    return 0


def test_modules_and_functions_stay_small():
    problems = []
    for path in _sources():
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_MODULE_LINES and rel not in LONG_MODULES:
            problems.append(f"{rel}: {text.count(chr(10))} lines (at most {MAX_MODULE_LINES}: split it)")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1 - _docstring_lines(node)
                if length > MAX_FUNCTION_LINES and f"{rel}:{node.name}" not in LONG_FUNCTIONS:
                    problems.append(f"{rel}:{node.lineno} {node.name}: {length} lines (at most {MAX_FUNCTION_LINES})")
    assert not problems, "\n".join(problems)


def test_ruff_lint_is_clean():
    result = subprocess.run([_tool("ruff"), "check", "--no-cache", *SOURCE_DIRS, "tests"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-1000:]
