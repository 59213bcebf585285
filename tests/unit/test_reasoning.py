"""reasoning formatters (real GSM8K samples, synthetic NuminaMath rows), scorer and answer normalization."""

import json

import pytest

from nexus.capabilities import SkipRecord, reasoning
from nexus.capabilities.answers import canonical_answer, last_boxed, same_answer
from nexus.formats import detect_format
from tests.project import ROOT

GSM8K = ROOT / "data" / "samples" / "gsm8k" / "train_first500.jsonl"

# Synthetic test fixture in the published AI-MO/NuminaMath-CoT schema (source, problem, solution,
# messages); not a real dataset row.
NUMINA = {
    "source": "synthetic_math",
    "problem": "What is $\\frac{1}{2} + \\frac{1}{4}$?",
    "solution": "We write $\\frac{1}{2} = \\frac{2}{4}$, so the sum is $\\frac{2}{4} + \\frac{1}{4} = "
                "\\frac{3}{4}$. The answer is $\\boxed{\\dfrac{3}{4}}$.",
    "messages": [
        {"role": "user", "content": "What is $\\frac{1}{2} + \\frac{1}{4}$?"},
        {"role": "assistant", "content": "... The answer is $\\boxed{\\dfrac{3}{4}}$."},
    ],
}


def gsm8k_records(n=50):
    with GSM8K.open() as f:
        return [json.loads(next(f)) for _ in range(n)]


def test_format_names_are_the_ones_the_organizer_detects():
    assert detect_format(gsm8k_records(5)).format == "gsm8k"
    assert detect_format([NUMINA]).format == "numina_math"
    assert set(reasoning.FORMATTERS) == {"gsm8k", "numina_math"}


def test_gsm8k_answer_line_becomes_a_boxed_answer():
    record = gsm8k_records(1)[0]  # Natalia sold clips ... #### 72
    example = reasoning.format_gsm8k(record)
    assert example["reference"] == "72"
    assert example["prompt"][0]["content"] == record["question"].strip()  # this one asked plainly
    solution = example["completion"][0]["content"]
    assert solution.endswith("\n\\boxed{72}") and "####" not in solution and "<<" not in solution


def test_every_gsm8k_sample_scores_1_against_its_own_solution():
    for record in gsm8k_records(50):
        example = reasoning.format_gsm8k(record)
        assert reasoning.score(example["completion"][0]["content"], example) == {"accuracy": 1.0,
                                                                                 "boxed": 1.0}


def test_numina_solution_is_kept_and_its_last_box_is_the_reference():
    example = reasoning.format_numina(NUMINA)
    assert example["reference"] == "3/4"
    assert example["completion"][0]["content"] == NUMINA["solution"]
    assert reasoning.score(NUMINA["solution"], example) == {"accuracy": 1.0, "boxed": 1.0}


@pytest.mark.parametrize(("record", "reason"), [
    ({**NUMINA, "solution": "The sum is three quarters."}, "boxed"),
    ({"problem": "", "solution": "\\boxed{1}"}, "problem"),
    ({"question": "q", "answer": "no marker"}, "####"),
])
def test_unusable_records_are_skipped_with_a_reason(record, reason):
    formatter = reasoning.format_gsm8k if "question" in record else reasoning.format_numina
    with pytest.raises(SkipRecord, match=reason):
        formatter(record)


@pytest.mark.parametrize(("generated", "expected"), [
    ("1/2 + 1/4 = 3/4, so \\boxed{0.75}", {"accuracy": 1.0, "boxed": 1.0}),
    ("The sum is $\\boxed{\\frac34}$.", {"accuracy": 1.0, "boxed": 1.0}),
    ("The final answer is 3/4.", {"accuracy": 1.0, "boxed": 0.0}),  # right, but not boxed
    ("So \\boxed{3/4} ... no wait, \\boxed{1/2}", {"accuracy": 0.0, "boxed": 1.0}),  # last box counts
    ("The answer is \\boxed{\\frac{3}{", {"accuracy": 0.0, "boxed": 0.0}),  # cut off inside the box
    ("I do not know.", {"accuracy": 0.0, "boxed": 0.0}),
])
def test_score_right_wrong_and_malformed_outputs(generated, expected):
    assert reasoning.score(generated, reasoning.format_numina(NUMINA)) == expected


@pytest.mark.parametrize(("answer", "canonical"), [
    ("72", "72"), ("1,234", "1234"), ("$1,234.00", "1234"), ("1{,}000", "1000"), ("-5", "-5"),
    ("\u22125", "-5"), ("0.5", "1/2"), (".5", "1/2"), ("1/2", "1/2"), ("\\frac{1}{2}", "1/2"),
    ("\\dfrac12", "1/2"), ("\\tfrac{1}{2}", "1/2"), ("-\\frac{3}{4}", "-3/4"), ("\\frac{-3}{4}", "-3/4"),
    ("1\\frac{1}{2}", "3/2"), ("50\\%", "50"), ("50%", "50"), ("90^\\circ", "90"), ("5\\text{ cm}", "5"),
    ("x = 5", "5"), ("{5}", "5"), ("5.", "5"), ("$\\frac{1}{2}$", "1/2"), ("\\(3\\)", "3"),
    ("\\left( 1, 2 \\right)", "(1,2)"), ("(0.5, \\frac{1}{4}]", "(1/2,1/4]"),
    ("\\frac{\\sqrt{3}}{2}", "\\sqrt{3}/2"), ("\\sqrt3/2", "\\sqrt{3}/2"),
    ("\\text{(B)}", "b"), ("B", "b"), ("\\text{Yes}", "yes"), ("\\infty", "\\infty"),
    ("", None), (None, None),
])
def test_answer_normalization_table(answer, canonical):
    assert canonical_answer(answer) == canonical
    assert canonical_answer(canonical) == canonical  # idempotent: references are stored canonical


@pytest.mark.parametrize(("left", "right", "same"), [
    ("0.5", "\\dfrac12", True), ("\\left(2,3\\right)", "(2, 3)", True), ("18", "$18.00", True),
    ("\\text{Monday}", "monday", True), ("3", "4", False), ("1/3", "0.333", False), (None, "1", False),
    ("", "", False),
])
def test_same_answer(left, right, same):
    assert same_answer(left, right) is same


@pytest.mark.parametrize(("text", "content"), [
    ("so $\\boxed{\\frac{\\sqrt{3}}{2}}$.", "\\frac{\\sqrt{3}}{2}"), ("\\boxed{1} then \\boxed{2}", "2"),
    ("\\boxed 5$", "5"), ("\\fbox{7}", "7"), ("\\boxed{3} and \\boxed{4", "3"), ("\\boxed{}", None),
    ("no box", None),
])
def test_last_boxed_balances_braces(text, content):
    assert last_boxed(text) == content


def test_about_half_the_prompts_name_the_boxed_format_the_rest_ask_plainly():
    records = gsm8k_records(200)
    prompts = [reasoning.format_gsm8k(r)["prompt"][0]["content"] for r in records]
    instructed = [p for p in prompts if p.endswith(f"\n\n{reasoning.INSTRUCTION}")]
    assert 80 <= len(instructed) <= 120  # INSTRUCTION_SHARE = 0.5 of 200
    for record, prompt in zip(records, prompts, strict=True):
        assert prompt in (record["question"].strip(), f"{record['question'].strip()}\n\n{reasoning.INSTRUCTION}")
    assert [reasoning.format_gsm8k(r)["prompt"][0]["content"] for r in records] == prompts  # deterministic
    numina = reasoning.format_numina(NUMINA)["prompt"][0]["content"]
    problem = NUMINA["problem"]
    assert numina == (f"{problem}\n\n{reasoning.INSTRUCTION}" if reasoning.carries_instruction(problem) else problem)
