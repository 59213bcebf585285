"""The test-suite flags of tests/conftest.py (-F, -G, -B, -T, the gpu skip), run on a generated test
file under the real conftest with pytester, in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
CONFTEST = ROOT / "tests" / "conftest.py"

SAMPLE = """
import pytest

def test_plain():
    pass

def test_named_alpha():
    pass

@pytest.mark.slow
def test_long():
    pass

@pytest.mark.benchmark("gsm8k")
def test_bench_gsm8k():
    pass

@pytest.mark.benchmark(name="MMLU")
def test_bench_mmlu():
    pass

@pytest.mark.slow
@pytest.mark.benchmark("gsm8k")
def test_bench_gsm8k_full():
    pass

@pytest.mark.benchmark
def test_bench_unnamed():
    pass

@pytest.mark.gpu
def test_on_gpu():
    pass
"""


def fake_torch(cuda: bool) -> types.ModuleType:
    """A stand-in for torch whose only API is ``cuda.is_available()``; it counts the calls."""
    module = types.ModuleType("torch")
    module.calls = []  # type: ignore[attr-defined]

    def is_available() -> bool:
        module.calls.append(1)  # type: ignore[attr-defined]
        return cuda

    module.cuda = types.SimpleNamespace(is_available=is_available)  # type: ignore[attr-defined]
    return module


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester folder with the real conftest, the project's markers and a fake CUDA-less torch."""
    markers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
    marker_lines = "".join(f"\n    {line}" for line in markers)
    pytester.makeini(f"[pytest]\naddopts = --strict-markers -p no:cacheprovider\nmarkers ={marker_lines}\n")
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(test_sample=SAMPLE)
    monkeypatch.syspath_prepend(str(ROOT))  # tests.fixtures, which the conftest registers
    monkeypatch.setitem(sys.modules, "torch", fake_torch(cuda=False))
    return pytester


def outcomes(result: pytest.RunResult) -> dict[str, int]:
    counts = result.parseoutcomes()
    return {key: counts.get(key, 0) for key in ("passed", "skipped", "deselected", "failed", "errors")}


def passed(result: pytest.RunResult) -> set[str]:
    """Names of the tests that passed, from the -v lines."""
    names = set()
    for line in result.outlines:
        if line.startswith("test_sample.py::") and " PASSED" in line:
            names.add(line.split("::")[1].split()[0])
    return names


@pytest.mark.parametrize(
    ("args", "ran", "skipped", "deselected"),  # ran: the tests that pass; the gpu test is the skipped one
    [
        pytest.param([], {"test_plain", "test_named_alpha"}, 1, 5, id="default"),
        pytest.param(["-F"], {"test_plain", "test_named_alpha", "test_long"}, 1, 4, id="-F"),
        pytest.param(
            ["--full-tests"], {"test_plain", "test_named_alpha", "test_long"}, 1, 4, id="--full-tests"
        ),
        pytest.param(
            ["-G"],
            {
                "test_plain",
                "test_named_alpha",
                "test_bench_gsm8k",
                "test_bench_mmlu",
                "test_bench_gsm8k_full",
                "test_bench_unnamed",
            },
            1,
            1,
            id="-G",
        ),
        pytest.param(
            ["-B", "gsm8k"],
            {"test_plain", "test_named_alpha", "test_bench_gsm8k", "test_bench_gsm8k_full"},
            1,
            3,
            id="-B gsm8k",
        ),
        pytest.param(
            ["-B", "gsm8k,mmlu"],
            {
                "test_plain",
                "test_named_alpha",
                "test_bench_gsm8k",
                "test_bench_mmlu",
                "test_bench_gsm8k_full",
            },
            1,
            2,
            id="-B gsm8k,mmlu",
        ),
        pytest.param(
            ["--benchmark=MMLU"],
            {"test_plain", "test_named_alpha", "test_bench_mmlu"},
            1,
            4,
            id="--benchmark=MMLU",
        ),
        pytest.param(["-T", "name"], {"test_named_alpha"}, 0, 7, id="-T name"),
        pytest.param(["-T", "alpha,gpu"], {"test_named_alpha"}, 1, 6, id="-T alpha,gpu"),
        pytest.param(
            ["-T", "bench", "-B", "gsm8k"],
            {"test_bench_gsm8k", "test_bench_gsm8k_full"},
            0,
            6,
            id="-T bench -B gsm8k",
        ),
        pytest.param(["-T", "long"], set(), 0, 8, id="-T long (slow stays out)"),
        pytest.param(["-T", "long", "-F"], {"test_long"}, 0, 7, id="-T long -F"),
        pytest.param(
            ["-F", "-m", "not gpu"],
            {"test_plain", "test_named_alpha", "test_long"},
            0,
            5,
            id="-F -m 'not gpu'",
        ),
    ],
)
def test_selection(
    suite: pytest.Pytester, args: list[str], ran: set[str], skipped: int, deselected: int
) -> None:
    result = suite.runpytest("-v", "-rs", *args)
    counts = outcomes(result)
    assert passed(result) == ran, result.stdout.str()
    assert counts == {
        "passed": len(ran),
        "skipped": skipped,
        "deselected": deselected,
        "failed": 0,
        "errors": 0,
    }, result.stdout.str()
    if skipped:
        result.stdout.fnmatch_lines(["SKIPPED * test_sample.py:*: needs CUDA"])


def test_gpu_tests_run_when_cuda_is_available(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch = fake_torch(cuda=True)
    monkeypatch.setitem(sys.modules, "torch", torch)
    result = suite.runpytest("-T", "gpu")
    result.assert_outcomes(passed=1, deselected=7)
    assert torch.calls == [1]


def test_cuda_is_not_probed_without_gpu_tests(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch = fake_torch(cuda=True)
    monkeypatch.setitem(sys.modules, "torch", torch)
    suite.runpytest("-m", "not gpu").assert_outcomes(passed=2, deselected=6)
    assert torch.calls == []


def test_gpu_tests_are_skipped_without_torch(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    suite.runpytest("-T", "gpu").assert_outcomes(skipped=1, deselected=7)


def test_header_and_unknown_benchmark_names(suite: pytest.Pytester) -> None:
    result = suite.runpytest("-B", "gsm8k,nosuch")
    result.stdout.fnmatch_lines(
        [
            "nexus: slow tests deselected (-F runs them); benchmarks only gsm8k,nosuch",
            "*nexus: -B named no collected benchmark test: nosuch*",
        ]
    )


def test_short_options_do_not_clash_with_pytest_own() -> None:
    """pytest keeps lower-case short options for itself; ours are upper-case and must stay free."""
    help_text = subprocess.run(
        [sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for short, long in (
        ("-F", "--full-tests"),
        ("-G", "--full-benchmarks"),
        ("-B", "--benchmark"),
        ("-T", "--test"),
    ):
        lines = [
            line
            for line in help_text.splitlines()
            if line.lstrip().startswith(short + " ") or line.lstrip().startswith(short + ",")
        ]
        assert len(lines) == 1 and long in lines[0], (short, lines)


def test_conftest_sets_offline_defaults_and_imports_no_torch() -> None:
    """Loaded on its own, the conftest sets the offline defaults, keeps the caller's values, and
    leaves torch unimported."""
    code = (
        "import importlib.util, json, os, sys\n"
        f"spec = importlib.util.spec_from_file_location('nexus_conftest', {str(CONFTEST)!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'env': {name: os.environ.get(name) for name in "
        "('DVC_NO_ANALYTICS', 'HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE', 'TOKENIZERS_PARALLELISM')}}))\n"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DVC_NO_ANALYTICS", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM"}
    }
    env["HF_HUB_OFFLINE"] = "0"  # the caller's value wins over the default
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == {
        "torch": False,
        "env": {
            "DVC_NO_ANALYTICS": "1",
            "HF_HUB_OFFLINE": "0",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        },
    }


def test_project_root_fixture(project_root: Path) -> None:
    assert (project_root / "pyproject.toml").is_file()
    assert (project_root / "tests" / "conftest.py") == CONFTEST
