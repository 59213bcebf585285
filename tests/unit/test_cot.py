"""cot formatter and evaluator on the real GSM8K sample records."""

import json

import pytest

from nexus.capabilities import SkipRecord, cot
from nexus.capabilities.answers import extract_answer, gsm8k_answer_matches, normalize
from tests.project import ROOT

GSM8K = ROOT / "data" / "samples" / "gsm8k" / "train_first500.jsonl"


def gsm8k_records(n=20):
    with GSM8K.open() as f:
        return [json.loads(next(f)) for _ in range(n)]


def test_gsm8k_records_become_reasoning_plus_final_answer():
    record = gsm8k_records(1)[0]  # Natalia sold clips ... #### 72
    example = cot.format_gsm8k(record)
    assert example["reference"] == "72"
    assert example["prompt"][0]["role"] == "user" and record["question"] in example["prompt"][0]["content"]
    answer = example["completion"][0]["content"]
    assert "<<" not in answer and answer.endswith("The final answer is 72.")


def test_every_sample_record_scores_1_against_its_own_formatted_answer():
    for record in gsm8k_records(50):
        example = cot.format_gsm8k(record)
        assert cot.score(example["completion"][0]["content"], example) == {"accuracy": 1.0,
                                                                           "answer_format": 1.0}


def test_wrong_or_missing_answers_score_0():
    example = cot.format_gsm8k(gsm8k_records(1)[0])
    assert cot.score("The final answer is 71.", example)["accuracy"] == 0.0
    assert cot.score("I do not know.", example) == {"accuracy": 0.0, "answer_format": 0.0}


def test_bad_records_are_skipped_with_a_reason():
    with pytest.raises(SkipRecord, match="####"):
        cot.format_gsm8k({"question": "q", "answer": "no marker"})


def test_openthoughts_record():
    # Synthetic test fixture in the OpenThoughts-114k schema (system + conversations with markers).
    record = {"system": "You are a helpful assistant.", "conversations": [
        {"from": "user", "value": "What is 2 + 3?"},
        {"from": "assistant", "value": "<|begin_of_thought|>\n\n2 plus 3 is 5.\n\n<|end_of_thought|>\n\n"
                                       "<|begin_of_solution|>\n\n\\boxed{5}\n\n<|end_of_solution|>"}]}
    example = cot.format_openthoughts(record)
    assert example["reference"] == "5"
    assert "2 plus 3 is 5." in example["completion"][0]["content"]
    with pytest.raises(SkipRecord):
        cot.format_openthoughts({"conversations": [{"from": "user", "value": "hi"},
                                                   {"from": "assistant", "value": "hello"}]})


@pytest.mark.parametrize(("text", "expected"), [
    ("so #### 1,234", "1,234"), ("the answer is \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("The final answer is $18.", "$18"), ("3 apples and 4 pears", "4"), ("none", None),
])
def test_answer_extraction(text, expected):
    assert extract_answer(text) == expected


def test_normalization_compares_numbers_not_strings():
    assert normalize("1,234.0") == normalize("1234") == "1234"
    assert normalize("\\frac{1}{2}") == normalize("0.5") == "1/2"
    assert gsm8k_answer_matches("The final answer is $18.00.", "18")


def test_about_half_the_prompts_carry_the_instruction_the_rest_ask_plainly():
    records = gsm8k_records(200)
    prompts = [cot.format_gsm8k(r)["prompt"][0]["content"] for r in records]
    instructed = [p for p in prompts if p.endswith(f"\n\n{cot.INSTRUCTION}")]
    assert 80 <= len(instructed) <= 120  # INSTRUCTION_SHARE = 0.5 of 200
    for record, prompt in zip(records, prompts, strict=True):  # otherwise the question as asked
        assert prompt in (record["question"].strip(), f"{record['question'].strip()}\n\n{cot.INSTRUCTION}")
    # fixed by the question's text: the same in another call, with other fields or spacing
    record = records[0]
    again = cot.format_gsm8k({**record, "question": f"  {record['question']}\n", "id": 7})
    assert again["prompt"] == cot.format_gsm8k(record)["prompt"]
    assert [cot.format_gsm8k(r)["prompt"][0]["content"] for r in records] == prompts


def test_openthoughts_prompts_follow_the_same_rule():
    turns = [{"from": "user", "value": "What is 2 + 3?"}, {"from": "assistant", "value": (
        "<|begin_of_thought|>2 plus 3 is 5.<|end_of_thought|><|begin_of_solution|>\\boxed{5}<|end_of_solution|>")}]
    prompt = cot.format_openthoughts({"conversations": turns})["prompt"][0]["content"]
    asked = "What is 2 + 3?"
    assert prompt == (f"{asked}\n\n{cot.INSTRUCTION}" if cot.carries_instruction(asked) else asked)
