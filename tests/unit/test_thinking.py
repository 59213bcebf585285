"""thinking formatters (real LLaMA-Factory reasoning sample, synthetic s1K/OpenThoughts/messages rows),
scorer, and s1-style budget forcing on a tiny random model."""

import json
from collections import Counter
from types import SimpleNamespace

import pytest

from nexus.capabilities import SkipRecord, thinking
from nexus.formats import detect_format
from nexus.generation import budget
from tests.project import ROOT

REASON_TOOL_USE = ROOT / "data" / "samples" / "llamafactory" / "data" / "reason_tool_use_demo_50.jsonl"

# --- synthetic test fixtures, following the published schemas (not real dataset rows) -------------

S1K_1_1 = {  # simplescaling/s1K-1.1
    "solution": "128",
    "question": "How many positive divisors does $2^{127}$ have?",
    "cot_type": "math",
    "source_type": "synthetic",
    "metadata": "{}",
    "gemini_thinking_trajectory": "Gemini: the divisors are 2^k.",
    "gemini_attempt": "There are $\\boxed{128}$ divisors.",
    "deepseek_thinking_trajectory": "DeepSeek: each divisor is 2^k for k = 0..127, so 128 of them.",
    "deepseek_attempt": "The divisors are $2^0, \\dots, 2^{127}$: $\\boxed{128}$.",
}
S1K_1_0 = {  # simplescaling/s1K
    "solution": "The answer is $\\boxed{\\frac{1}{2}}$ because ...",
    "question": "A fair coin is tossed once. What is the probability of heads?",
    "cot_type": "math",
    "source_type": "synthetic",
    "metadata": "{}",
    "cot": None,
    "thinking_trajectories": ["Two equally likely outcomes.", "One of them is heads."],
    "attempt": "The probability is $\\boxed{0.5}$.",
}
OPENTHOUGHTS = {  # open-thoughts/OpenThoughts-114k (default config)
    "system": "Your role as an assistant involves thoroughly exploring questions ...",
    "conversations": [
        {"from": "user", "value": "What is 2 + 3?"},
        {"from": "assistant", "value": "<|begin_of_thought|>\n\n2 plus 3 is 5.\n\n<|end_of_thought|>\n\n"
                                       "<|begin_of_solution|>\n\n\\boxed{5}\n\n<|end_of_solution|>"},
    ],
}
OPENTHOUGHTS_METADATA = {  # open-thoughts/OpenThoughts-114k (metadata config)
    "problem": "What is 2 + 3?",
    "deepseek_reasoning": "2 plus 3 is 5.",
    "deepseek_solution": "The sum is $\\boxed{5}$.",
    "ground_truth_solution": "5",
    "domain": "math",
    "source": "synthetic",
}
REASONING_CONTENT = {  # OpenAI-style messages with the assistant's reasoning in reasoning_content
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2 + 3?"},
        {"role": "assistant", "reasoning_content": "2 plus 3 is 5.", "content": "5"},
    ],
}
THINKING_PARTS = {  # typed content parts of type "thinking"
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "What is 2 + 3?"}]},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "2 plus 3 is 5."},
                                          {"type": "text", "text": "5"}]},
    ],
}
THINK_TAGS_SHAREGPT = {  # ShareGPT turns with a <think> block in the reply
    "conversations": [
        {"from": "human", "value": "What is 2 + 3?"},
        {"from": "gpt", "value": "<think>\n2 plus 3 is 5.\n</think>\n\nThe answer is 5."},
    ],
}


def reason_tool_use_records():
    with REASON_TOOL_USE.open() as f:
        return [json.loads(line) for line in f]


def completion(example):
    return example["completion"][0]["content"]


# --- formatters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("record", "fmt"), [
    (S1K_1_1, "s1k"), (OPENTHOUGHTS, "openthoughts"),
    (OPENTHOUGHTS_METADATA, "openthoughts_metadata"), (REASONING_CONTENT, "reasoning_messages"),
    (THINKING_PARTS, "reasoning_messages"), (THINK_TAGS_SHAREGPT, "reasoning_messages"),
])
def test_each_fixture_is_detected_as_a_format_thinking_formats(record, fmt):
    assert detect_format([record]).format == fmt
    example = thinking.FORMATTERS[fmt](record)
    assert completion(example).startswith("<think>\n") and "\n</think>\n\n" in completion(example)
    assert thinking.score(completion(example), example) == {"think_format": 1.0, "accuracy": 1.0}


def test_s1k_prefers_the_deepseek_trace_and_takes_the_reference_from_the_solution():
    example = thinking.format_s1k(S1K_1_1)
    assert completion(example) == (f"<think>\n{S1K_1_1['deepseek_thinking_trajectory']}\n</think>\n\n"
                                   f"{S1K_1_1['deepseek_attempt']}")
    assert example["prompt"] == [{"role": "user", "content": S1K_1_1["question"]}]
    assert example["reference"] == "128"


def test_s1k_1_0_joins_its_list_of_trajectories():
    example = thinking.format_s1k(S1K_1_0)
    assert "Two equally likely outcomes.\n\nOne of them is heads." in completion(example)
    assert example["reference"] == "1/2"
    assert thinking.score(completion(example), example) == {"think_format": 1.0, "accuracy": 1.0}


def test_s1k_1_0_is_detected_as_s1k():
    assert detect_format([S1K_1_0]).format == "s1k"


def test_openthoughts_markers_become_a_think_block_and_the_system_prompt_is_dropped():
    example = thinking.format_openthoughts(OPENTHOUGHTS)
    assert example["prompt"] == [{"role": "user", "content": "What is 2 + 3?"}]
    assert completion(example) == "<think>\n2 plus 3 is 5.\n</think>\n\n\\boxed{5}"
    assert example["reference"] == "5"


def test_reasoning_content_field_with_earlier_turns_as_prompt():
    example = thinking.format_reasoning_messages(REASONING_CONTENT)
    assert example["prompt"] == [{"role": "system", "content": "Be brief."},
                                 {"role": "user", "content": "What is 2 + 3?"}]
    assert completion(example) == "<think>\n2 plus 3 is 5.\n</think>\n\n5"
    assert example["reference"] == "5"


def test_llamafactory_reasoning_sample_keeps_the_conversations_without_tool_calls():
    records = reason_tool_use_records()
    assert detect_format(records[:5]).format == "messages_tools"
    outcomes = Counter()
    for record in records:
        try:
            example = thinking.FORMATTERS["messages_tools"](record)
        except SkipRecord as reason:
            outcomes[str(reason)] += 1
            continue
        outcomes["kept"] += 1
        assert [m["role"] for m in example["prompt"]] == ["system", "user"]
        tools = json.loads(record["tools"])
        assert example.get("tools", []) == tools  # the reasoning refers to the tools it was shown
        outcomes["with tools"] += bool(tools)
        assert thinking.score(completion(example), example) == {"think_format": 1.0, "accuracy": 1.0}
    assert outcomes["kept"] == 18 and outcomes["with tools"] == 16
    assert sum(n for reason, n in outcomes.items() if "tool calls" in reason) == 31
    assert sum(n for reason, n in outcomes.items() if "stray" in reason) == 1  # "</think>" in an answer


@pytest.mark.parametrize(("record", "reason"), [
    ({**S1K_1_1, "deepseek_attempt": "", "gemini_thinking_trajectory": ""}, "thinking_trajectory"),
    ({"conversations": [{"from": "user", "value": "hi"}, {"from": "assistant", "value": "hello"}]},
     "markers"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
     "no reasoning"),
    ({"messages": [{"role": "user", "content": "hi"},
                   {"role": "assistant", "content": "<think>greeting</think>\n\n"}]}, "no answer"),
    ({"messages": [{"role": "assistant", "reasoning_content": "r", "content": "a"}]}, "no user turn"),
])
def test_unusable_records_are_skipped_with_a_reason(record, reason):
    formatter = thinking.format_openthoughts if "conversations" in record else (
        thinking.format_s1k if "question" in record else thinking.format_reasoning_messages)
    with pytest.raises(SkipRecord, match=reason):
        formatter(record)


# --- scoring ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("generated", "expected"), [
    ("<think>\n2 plus 3 is 5.\n</think>\n\n\\boxed{5}", {"think_format": 1.0, "accuracy": 1.0}),
    ("<think>\nadd them\n</think>\n\nThe answer is 5.", {"think_format": 1.0, "accuracy": 1.0}),
    ("<think>\n2 plus 3 is 6.\n</think>\n\n\\boxed{6}", {"think_format": 1.0, "accuracy": 0.0}),
    ("\\boxed{5}", {"think_format": 0.0, "accuracy": 0.0}),  # right, but no think block
    ("<think>\n2 plus 3 is 5.\n</think>\n\n", {"think_format": 0.0, "accuracy": 0.0}),  # no answer
    ("<think>\n2 plus 3 is", {"think_format": 0.0, "accuracy": 0.0}),  # thinking never closed
    ("<think>a</think><think>b</think>\\boxed{5}", {"think_format": 0.0, "accuracy": 1.0}),  # two blocks
    ("Sure. <think>a</think> \\boxed{5}", {"think_format": 0.0, "accuracy": 1.0}),  # block not first
])
def test_score_right_wrong_and_malformed_outputs(generated, expected):
    assert thinking.score(generated, {"reference": "5"}) == expected


# --- budget forcing --------------------------------------------------------------------------------

QUESTIONS = [{"prompt": [{"role": "user", "content": "What is 2 + 3?"}], "completion": [], "reference": "5"},
             {"prompt": [{"role": "user", "content": "A longer question: what is 7 times 6, please?"}],
              "completion": [], "reference": "42"}]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from nexus.loading import load_model, load_tokenizer

    return load_model(tiny_model_dir), load_tokenizer(tiny_model_dir)


def test_budget_caps_the_thinking_then_forces_the_close_and_generates_the_answer(tiny):
    model, tokenizer = tiny
    outputs = budget.generate_with_budget(model, tokenizer, QUESTIONS, max_new_tokens=16,
                                          thinking_budget=5)
    for out in outputs:
        assert out.forced and out.thinking_tokens <= 5  # a random model does not close the block
        assert 1 <= out.answer_tokens <= 16 - out.thinking_tokens
        head, close, _ = out.text.partition(budget.FORCED_CLOSE)
        assert close and head.startswith("<think>\n")
        assert len(tokenizer(head.removeprefix("<think>\n"), add_special_tokens=False)["input_ids"]) <= 5
    texts = thinking.generate(model, tokenizer, QUESTIONS, 16, thinking_budget=5)
    assert texts == [o.text for o in outputs]


def test_prefill_opens_the_think_block_once(tiny):
    _, tokenizer = tiny
    prompt = budget.prefilled_prompt(QUESTIONS[0], tokenizer)
    assert prompt.endswith("<|im_start|>assistant\n<think>\n")
    tokenizer_opening_it = SimpleNamespace(apply_chat_template=lambda *a, **k: "assistant\n<think>\n",
                                           chat_template="")
    assert budget.prefilled_prompt(QUESTIONS[0], tokenizer_opening_it) == "assistant\n<think>\n"


def test_budget_0_uses_the_shared_greedy_generation(monkeypatch):
    calls = []
    monkeypatch.setattr("nexus.capabilities.thinking.generate_examples",
                        lambda model, tok, examples, max_new: calls.append(max_new) or ["x"] * len(examples))
    assert thinking.generate("model", "tokenizer", QUESTIONS, 32) == ["x", "x"]
    assert thinking.generate("model", "tokenizer", QUESTIONS, 32, thinking_budget=0) == ["x", "x"]
    assert calls == [32, 32]


def test_a_budget_that_leaves_no_answer_tokens_is_refused():
    with pytest.raises(ValueError, match="lower capabilities.thinking.thinking_budget"):
        budget.generate_with_budget("model", "tokenizer", QUESTIONS, max_new_tokens=8, thinking_budget=8)


class ScriptedModel:
    """Stands in for a causal LM: each generate() call appends the next scripted token rows."""

    def __init__(self, scripts, eos_id, pad_id):
        import torch

        self.device = torch.device("cpu")
        self.generation_config = SimpleNamespace(eos_token_id=eos_id)
        self.scripts, self.pad_id, self.calls = list(scripts), pad_id, []

    def eval(self):
        return self

    def generate(self, input_ids, attention_mask, max_new_tokens, **kwargs):
        import torch

        self.calls.append({"input_ids": input_ids.tolist(), "max_new_tokens": max_new_tokens, **kwargs})
        rows = [row[:max_new_tokens] for row in self.scripts.pop(0)]
        width = max(len(r) for r in rows)
        new = torch.tensor([r + [self.pad_id] * (width - len(r)) for r in rows])
        return torch.cat([input_ids, new], dim=1)


def test_a_think_block_closed_by_the_model_is_kept_and_an_early_end_is_forced_closed(tiny):
    _, tokenizer = tiny

    def ids(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    eos = tokenizer.eos_token_id
    closes_itself, ends_early = ids("Add them.</think>"), ids("Hmm") + [eos]
    model = ScriptedModel([[closes_itself, ends_early], [ids("\n\n\\boxed{5}") + [eos], ids("6") + [eos]]],
                          eos_id=eos, pad_id=tokenizer.pad_token_id)
    first, second = budget.generate_with_budget(model, tokenizer, QUESTIONS, max_new_tokens=40,
                                                thinking_budget=30)
    assert first == budget.BudgetedOutput("<think>\nAdd them.</think>\n\n\\boxed{5}",
                                          len(closes_itself), False, len(ids("\n\n\\boxed{5}")))
    assert second.text == "<think>\nHmm\n</think>\n\n6" and second.forced
    assert second.thinking_tokens == len(ids("Hmm"))
    think_call, answer_call = model.calls
    assert think_call["max_new_tokens"] == 30 and think_call["stop_strings"] == ["</think>"]
    assert answer_call["max_new_tokens"] == 40 - len(ids("Hmm")) and "stop_strings" not in answer_call
    assert answer_call["input_ids"][1][-len(ids(budget.FORCED_CLOSE)):] == ids(budget.FORCED_CLOSE)
    assert thinking.score(first.text, QUESTIONS[0]) == {"think_format": 1.0, "accuracy": 1.0}
    assert thinking.score(second.text, QUESTIONS[1]) == {"think_format": 1.0, "accuracy": 0.0}
