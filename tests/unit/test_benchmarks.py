"""Benchmarks' pure parts on the real GSM8K/MMLU files, and a tiny-model run of both (fast, unmarked).

The runs on the real SmolLM2 are in tests/benchmarks/ (``pytest -B gsm8k,mmlu``).
"""

from __future__ import annotations

import csv
import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from nexus import cli
from nexus.benchmarks import (
    BENCHMARKS,
    BenchmarkError,
    format_table,
    gsm8k,
    mmlu,
    parse_names,
    run_benchmarks,
)
from nexus.benchmarks.common import data_dir

ROOT = Path(__file__).resolve().parents[2]
GSM8K_TEST = ROOT / "data" / "benchmarks" / "gsm8k" / "test.jsonl"
MMLU_DATA = ROOT / "data" / "benchmarks" / "mmlu" / "data"


# ---- data ----

def test_data_files_are_in_the_repo() -> None:
    assert data_dir() == ROOT / "data" / "benchmarks"
    assert len(gsm8k.load_records(GSM8K_TEST)) == 1319
    assert mmlu.subjects() == ["abstract_algebra", "college_computer_science", "elementary_mathematics",
                               "global_facts", "high_school_geography", "machine_learning"]
    counts = {s: len(mmlu.read_rows(MMLU_DATA / "test" / f"{s}_test.csv")) for s in mmlu.subjects()}
    assert sum(counts.values()) == 988 and counts["elementary_mathematics"] == 378
    for name in ("gsm8k/LICENSE", "gsm8k/SOURCE.md", "mmlu/SOURCE.md", "README.md"):
        assert (ROOT / "data" / "benchmarks" / name).is_file(), name


def test_organizer_does_not_pick_up_benchmark_data(tmp_path: Path) -> None:
    """The test splits must never become training data: the configured sources leave data/benchmarks out."""
    from nexus.methods import load_params
    from nexus.organize import organize

    params = load_params(ROOT / "params.yaml")
    sources = [ROOT / s for s in params.organize.sources]
    benchmarks = (ROOT / "data" / "benchmarks").resolve()
    assert all(s.resolve() not in (benchmarks, *benchmarks.parents) for s in sources)
    catalog = organize(sources, tmp_path / "organized", head_records=params.organize.head_records)
    assert catalog.files
    assert not [f.path for f in catalog.files if "benchmarks" in Path(f.path).resolve().parts]


# ---- GSM8K: final-number extraction on the real answers ----

@pytest.mark.parametrize(("text", "expected"), [
    ("18", "18"), (" 1,000 ", "1000"), ("$18.00", "18"), ("18.", "18"), ("18.0", "18"), ("-3.50", "-3.5"),
    ("0.5", "0.5"), ("$1,234,567", "1234567"), ("abc", "abc"), ("007", "7"), ("-0.0", "0"),
    ("9" * 40, "9" * 40),
])
def test_normalize_number(text: str, expected: str) -> None:
    assert gsm8k.normalize_number(text) == expected


def test_gold_answers_of_the_whole_test_split() -> None:
    records = gsm8k.load_records(GSM8K_TEST)
    golds = [gsm8k.gold_answer(r["answer"]) for r in records]
    assert golds[:3] == ["18", "3", "70000"]  # Janet's ducks; 2 + 1 bolts; Josh's house flip
    for gold in golds:
        Decimal(gold)  # every gold is a plain number after normalization
        assert "," not in gold and "$" not in gold


def test_reference_solutions_score_as_correct_outputs() -> None:
    """Written out as a model would, each reference solution yields its own gold number."""
    records = gsm8k.load_records(GSM8K_TEST)
    for r in records:
        gold = gsm8k.gold_answer(r["answer"])
        assert gsm8k.extract_strict(r["answer"]) == gold, r["answer"][-60:]
        assert gsm8k.extract_flexible(r["answer"]) == gold, r["answer"][-60:]
    result = gsm8k.score(records[:20], [r["answer"] for r in records[:20]])
    assert result["metrics"] == {"accuracy": 1.0, "accuracy_flexible": 1.0}
    wrong = gsm8k.score(records[:4], ["", "no number here", "#### 999999", "The answer is 5.\n"])
    assert wrong["metrics"]["accuracy"] == 0.0
    assert [e["prediction"] for e in wrong["examples"]] == [None, None, "999999", None]
    assert [e["prediction_flexible"] for e in wrong["examples"]] == [None, None, "999999", "5"]


def test_extraction_details() -> None:
    out = gsm8k.cut_at_stop(" She sells 9 * 2 = $18.\n#### 18\n\nQuestion: next one #### 7")
    assert out == " She sells 9 * 2 = $18.\n#### 18\n\n"
    assert gsm8k.extract_strict(out) == "18"
    assert gsm8k.extract_strict("#### 1,250.00") == "1250"
    assert gsm8k.extract_strict("####18") is None  # strict-match wants '#### N'
    assert gsm8k.extract_flexible("5 apples and 7 pears, total $1,200.") == "1200"
    assert gsm8k.extract_flexible("it drops to -4 degrees") == "-4"


def test_gsm8k_prompt_uses_the_first_training_records_as_shots() -> None:
    shots = gsm8k.load_records(gsm8k.SHOTS_FILE, 5)
    question = gsm8k.load_records(GSM8K_TEST, 1)[0]["question"]
    prompt = gsm8k.build_prompt(question, shots)
    assert prompt.startswith(f"Question: {shots[0]['question']}\nAnswer: {shots[0]['answer']}\n\nQuestion: ")
    assert prompt.count("Question: ") == 6 and prompt.count("#### ") == 5
    assert prompt.endswith(f"Question: {question}\nAnswer:")
    assert gsm8k.build_prompt(question, []) == f"Question: {question}\nAnswer:"


# ---- MMLU: prompts from the real CSV rows ----

def test_mmlu_rows_and_five_shot_prompt() -> None:
    subject = "abstract_algebra"
    dev = mmlu.read_rows(MMLU_DATA / "dev" / f"{subject}_dev.csv")
    test = mmlu.read_rows(MMLU_DATA / "test" / f"{subject}_test.csv", 3)
    assert len(dev) == 5 and len(test) == 3
    row = test[0]
    assert row["question"].startswith("Find the degree for the given field extension Q(sqrt(2), sqrt(3)")
    assert (row["A"], row["B"], row["C"], row["D"], row["answer"]) == ("0", "4", "2", "6", "B")

    prompt = mmlu.build_prompt(subject, dev, row)
    assert prompt.startswith(
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n")
    assert re.findall(r"\nAnswer: ([ABCD])\n\n", prompt) == [d["answer"] for d in dev]  # 5 solved shots
    assert prompt.endswith(f"{row['question'].strip()}\nA. 0\nB. 4\nC. 2\nD. 6\nAnswer:")
    assert prompt.count("\nAnswer:") == 6 and prompt.count(row["question"].strip()) == 1
    assert dev[0]["question"].strip() in prompt.split("\n\n")[1]


def test_every_subject_has_five_dev_shots_and_valid_answers() -> None:
    for subject in mmlu.subjects():
        dev = mmlu.read_rows(MMLU_DATA / "dev" / f"{subject}_dev.csv")
        assert len(dev) == 5, subject
        for row in mmlu.read_rows(MMLU_DATA / "test" / f"{subject}_test.csv"):
            assert row["answer"] in mmlu.LETTERS


def test_mmlu_rejects_a_malformed_csv(tmp_path: Path) -> None:
    bad = tmp_path / "x_test.csv"
    bad.write_text("question,A,B,C,D,answer\n", encoding="utf-8")  # a header row is not MMLU's format
    with pytest.raises(BenchmarkError, match="expected question,A,B,C,D,answer"):
        mmlu.read_rows(bad)


def test_mmlu_score_micro_and_macro() -> None:
    row = {"question": "q", "A": "a", "B": "b", "C": "c", "D": "d"}
    items = [("s1", 0, {**row, "answer": "A"}), ("s1", 1, {**row, "answer": "B"}),
             ("s1", 2, {**row, "answer": "C"}), ("s2", 0, {**row, "answer": "D"})]
    logprobs = [[-0.1, -2, -3, -4], [-0.1, -2, -3, -4], [-3, -3, -0.5, -3], [-1, -1, -1, -0.2]]
    result = mmlu.score(items, logprobs)
    assert [e["prediction"] for e in result["examples"]] == ["A", "A", "C", "D"]
    assert result["metrics"]["accuracy"] == 0.75  # 3 of 4 questions
    assert result["metrics"]["accuracy_macro"] == round((2 / 3 + 1) / 2, 4)
    assert result["subjects"] == {"s1": {"n": 3, "accuracy": 0.6667}, "s2": {"n": 1, "accuracy": 1.0}}


def test_letters_are_single_tokens_after_answer_colon(tiny_model_dir: Path) -> None:
    """One forward pass scores the letters only if ' A' is one token that follows the prompt's tokens."""
    from nexus.loading import load_tokenizer

    tokenizer = load_tokenizer(tiny_model_dir)
    ids = mmlu.letter_token_ids(tokenizer)
    assert len(set(ids)) == 4
    dev = mmlu.read_rows(MMLU_DATA / "dev" / "global_facts_dev.csv")
    first = mmlu.read_rows(MMLU_DATA / "test" / "global_facts_test.csv", 1)[0]
    prompt = mmlu.build_prompt("global_facts", dev, first)
    for letter, token in zip(mmlu.LETTERS, ids, strict=True):
        assert tokenizer(prompt + f" {letter}").input_ids == tokenizer(prompt).input_ids + [token]


# ---- registry, runs, CLI, make ----

def test_parse_names() -> None:
    assert list(BENCHMARKS) == ["gsm8k", "mmlu"]
    assert parse_names(None) == ["gsm8k", "mmlu"] == parse_names("all") == parse_names("")
    assert parse_names(" MMLU, gsm8k,mmlu") == ["mmlu", "gsm8k"]
    assert parse_names(["gsm8k"]) == ["gsm8k"]
    with pytest.raises(BenchmarkError, match=r"unknown benchmark 'arc'; valid: gsm8k, mmlu"):
        parse_names("gsm8k,arc")


def test_run_both_on_a_tiny_model_writes_reports_and_csv_rows(tiny_model_dir: Path, tmp_path: Path) -> None:
    out, res = tmp_path / "reports", tmp_path / "results"
    results = run_benchmarks(tiny_model_dir, "gsm8k,mmlu", limit=2, out_dir=out, results_dir=res,
                             max_new_tokens=8, batch_size=4)
    assert list(results) == ["gsm8k", "mmlu"]
    gsm, mm = results["gsm8k"], results["mmlu"]
    assert gsm["n"] == 2 and [e["gold"] for e in gsm["examples"]] == ["18", "3"]
    assert gsm["config"]["num_fewshot"] == 5 and gsm["config"]["max_new_tokens"] == 8
    assert mm["n"] == 12 and all(s["n"] == 2 for s in mm["subjects"].values())
    for result in results.values():
        assert 0.0 <= result["metrics"]["accuracy"] <= 1.0
        correct = sum(e["correct"] for e in result["examples"]) / result["n"]
        assert result["metrics"]["accuracy"] == round(correct, 4)
        saved = json.loads((out / f"{result['benchmark']}.json").read_text(encoding="utf-8"))
        assert saved["metrics"] == result["metrics"] and saved["backend"] == "native"
        assert saved["model"] == str(tiny_model_dir)
    assert sorted(p.name for p in out.iterdir()) == ["gsm8k.json", "mmlu.json"]  # no temp files left
    for e in mm["examples"]:
        assert e["prediction"] == max(e["logprobs"], key=e["logprobs"].get)
        assert all(v <= 0 for v in e["logprobs"].values())

    with (res / "benchmarks.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["benchmark"] for r in rows] == ["gsm8k", "mmlu"]
    assert rows[1]["n"] == "12" and rows[1]["limit"] == "2"
    assert float(rows[1]["accuracy"]) == mm["metrics"]["accuracy"]
    assert "gsm8k" in format_table(results) and "abstract_algebra" in format_table(results)


def test_run_benchmarks_rejects_bad_input_before_loading(tmp_path: Path) -> None:
    from nexus.loading import ModelSourceError

    with pytest.raises(BenchmarkError, match="valid: gsm8k, mmlu"):
        run_benchmarks(tmp_path, "nope")
    with pytest.raises(ModelSourceError):
        run_benchmarks(tmp_path / "missing", "gsm8k")
    with pytest.raises(BenchmarkError, match="backend"):
        run_benchmarks(tmp_path, "gsm8k", backend="vllm")


def test_cli_usage_errors_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["benchmark", "--model", str(tmp_path), "--tasks", "gsm8k,hellaswag"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown benchmark 'hellaswag'; valid: gsm8k, mmlu" in err
    assert cli.main(["benchmark", "--model", str(tmp_path / "no-such-model")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --model ") and "not a model" in err


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The CLI's logs.setup replaces the root logger's handlers; put them back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    nexus_level = logging.getLogger("nexus").level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("nexus").setLevel(nexus_level)


def test_cli_runs_and_prints_a_table(tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str], restore_logging: None) -> None:
    monkeypatch.chdir(tmp_path)  # results/ and logs/ land here
    code = cli.main(["benchmark", "--model", str(tiny_model_dir), "--tasks", "mmlu", "--limit", "1",
                     "--out", "bench"])
    assert code == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["benchmark", "n", "accuracy", "other"]
    assert re.search(r"^mmlu\s+6\s+[01]\.\d{4}", out, re.M)
    assert (tmp_path / "bench" / "mmlu.json").is_file()
    assert (tmp_path / "results" / "benchmarks.csv").is_file()


def test_make_benchmark_target(tmp_path) -> None:
    """make benchmark hands MODEL / TASKS / LIMIT to `nexus benchmark` as whole arguments."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    phony = next(line for line in makefile.splitlines() if line.startswith(".PHONY:"))
    assert "benchmark" in phony.split()

    def make(*variables: str) -> subprocess.CompletedProcess:
        return subprocess.run(["make", "--no-print-directory", "benchmark", "SKIP_INSTALL=1",
                               f"VENV={Path(sys.executable).parent.parent}", *variables],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)

    missing = tmp_path / "no such model"
    result = make(f"MODEL={missing}", "TASKS=gsm8k", "LIMIT=3")
    assert result.returncode != 0 and str(missing) in result.stderr, result.stderr
    bad_limit = make(f"MODEL={missing}", "LIMIT=3 4")
    assert "invalid int value: '3 4'" in bad_limit.stderr, bad_limit.stderr
    default = subprocess.run(["make", "-n", "--no-print-directory", "benchmark", "SKIP_INSTALL=1"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
    assert '--model "${MODEL:-models/base}"' in default
