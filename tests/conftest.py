"""The test suite's selection flags, offline defaults and shared fixtures.

Selection (the markers are declared in pyproject.toml)::

    pytest                    default: tests marked ``slow`` or ``benchmark`` are deselected
    pytest -F                 --full-tests: the ``slow`` tests too
    pytest -G                 --full-benchmarks: every ``benchmark`` test too
    pytest -B gsm8k,mmlu      --benchmark: the benchmark tests of those names too
    pytest -T dvc,plan        --test: only tests whose node id contains one of the substrings

``-F``, ``-G`` and ``-B`` widen the default selection; ``-T`` narrows whatever is selected (as
``-k`` and ``-m`` do, with which it combines). A benchmark picked by ``-G`` or ``-B`` runs even when
it is also marked ``slow``. A benchmark test names itself in its marker,
``@pytest.mark.benchmark("gsm8k")`` (or ``name="gsm8k"``); names match case-insensitively.
Deselected tests are reported as deselected, not skipped. Tests marked ``gpu`` are skipped
("needs CUDA") unless ``torch.cuda.is_available()``; torch is imported only when a selected test
carries that marker, so this file stays torch-free.

The fixtures of ``tests/fixtures.py`` are registered here, with ``project_root``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Shared fixtures (tiny models built once per session). They import torch inside the fixtures only.
pytest_plugins = ["tests.fixtures"]

# Offline, quiet defaults for every test (and every process a test starts); the caller's own
# environment wins.
for _name, _value in {
    "DVC_NO_ANALYTICS": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_name, _value)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NEEDS_CUDA = "needs CUDA"
_UNKNOWN_BENCHMARKS = pytest.StashKey[list[str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("nexus", "Nexus test selection (tests/conftest.py)")
    group.addoption(
        "-F",
        "--full-tests",
        action="store_true",
        default=False,
        help="also run the tests marked slow",
    )
    group.addoption(
        "-G",
        "--full-benchmarks",
        action="store_true",
        default=False,
        help="also run every test marked benchmark",
    )
    group.addoption(
        "-B",
        "--benchmark",
        action="append",
        default=[],
        metavar="NAMES",
        dest="benchmark_names",
        help="also run the benchmark tests of these names (comma-separated, repeatable), "
        'e.g. -B gsm8k for @pytest.mark.benchmark("gsm8k")',
    )
    group.addoption(
        "-T",
        "--test",
        action="append",
        default=[],
        metavar="PATTERN",
        dest="test_patterns",
        help="only run tests whose node id contains PATTERN (case-insensitive; comma-separated, "
        "repeatable: any of them)",
    )


def _split(values: list[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def benchmark_names(item: pytest.Item) -> set[str]:
    """The names an item's ``benchmark`` markers give (positional arguments or ``name=``)."""
    names: set[str] = set()
    for mark in item.iter_markers("benchmark"):
        names.update(str(arg).lower() for arg in mark.args)
        if "name" in mark.kwargs:
            names.add(str(mark.kwargs["name"]).lower())
    return names


def _selected(item: pytest.Item, config: pytest.Config, wanted: set[str], patterns: list[str]) -> bool:
    if patterns and not any(pattern in item.nodeid.lower() for pattern in patterns):
        return False
    if item.get_closest_marker("benchmark") is not None:
        return config.getoption("full_benchmarks") or bool(benchmark_names(item) & wanted)
    if item.get_closest_marker("slow") is not None:
        return config.getoption("full_tests")
    return True


def pytest_report_header(config: pytest.Config) -> str:
    slow = "run" if config.getoption("full_tests") else "deselected (-F runs them)"
    if config.getoption("full_benchmarks"):
        bench = "all run"
    elif names := _split(config.getoption("benchmark_names")):
        bench = "only " + ",".join(names)
    else:
        bench = "deselected (-G or -B NAMES runs them)"
    return f"nexus: slow tests {slow}; benchmarks {bench}"


@pytest.hookimpl(trylast=True)  # after -k/-m, so that CUDA is probed only for gpu tests still selected
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = {name.lower() for name in _split(config.getoption("benchmark_names"))}
    patterns = [pattern.lower() for pattern in _split(config.getoption("test_patterns"))]
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        (kept if _selected(item, config, wanted, patterns) else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept

    known = set().union(*(benchmark_names(item) for item in kept + dropped))
    if unknown := sorted(wanted - known):
        config.stash[_UNKNOWN_BENCHMARKS] = unknown

    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if gpu_items and not _cuda_available():
        for item in gpu_items:
            item.add_marker(pytest.mark.skip(reason=NEEDS_CUDA))


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    if unknown := config.stash.get(_UNKNOWN_BENCHMARKS, None):
        terminalreporter.write_line(
            f"nexus: -B named no collected benchmark test: {', '.join(unknown)}", yellow=True
        )


def _cuda_available() -> bool:
    """Whether torch sees a CUDA device; torch is imported here only, and only for gpu tests."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@pytest.fixture(scope="session")
def project_root() -> Path:
    """The repository root (the folder holding pyproject.toml)."""
    return PROJECT_ROOT
