"""Format rules: each against the real sample file it targets, or a labelled synthetic fixture."""

from __future__ import annotations

from pathlib import Path

import pytest

from nexus import formats
from nexus.capabilities import formats_of
from nexus.formats import KINDS, RULES, detect_format
from nexus.readers import peek_records
from nexus.registry import implemented

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "data" / "samples"
LF = SAMPLES / "llamafactory" / "data"

REAL = [
    # (sample file, format, kind, a key the reason must name)
    (SAMPLES / "gsm8k" / "train_first500.jsonl", "gsm8k", "math_qa", "####"),
    (SAMPLES / "xlam_function_calling_60k" / "xlam_function_calling_60k_first15.json", "xlam",
     "tool_calls", "answers"),
    (SAMPLES / "xlam_function_calling_60k" / "hf_subset" / "data" / "train-00000-of-00001.parquet",
     "xlam", "tool_calls", "tools"),
    (LF / "alpaca_en_demo.json", "alpaca", "instruction", "instruction"),
    (LF / "glaive_toolcall_en_demo.json", "sharegpt_tools", "tool_calls", "function_call"),
    (LF / "reason_tool_use_demo_50.jsonl", "messages_tools", "tool_calls", "tool_call"),
    (LF / "v1_dpo_demo.jsonl", "llamafactory_v1_preference", "preference", "chosen_messages"),
    (LF / "kto_en_demo_first100.json", "conversation_kto", "unpaired_preference", "label"),
    (LF / "c4_demo_first100.jsonl", "text", "text", "text"),
    (LF / "mllm_demo.json", "mllm_image", "image", "images"),
    (SAMPLES / "safety_refusal" / "refusal_direction_splits" / "harmful_train.json", "prompt_only",
     "prompt_only", "instruction"),
    (SAMPLES / "safety_refusal" / "refusal_direction_splits" / "harmless_train_first500.json",
     "prompt_only", "prompt_only", "category"),
]


@pytest.mark.parametrize("path,fmt,kind,key", REAL, ids=[p[0].name for p in REAL])
def test_real_samples(path, fmt, kind, key):
    detection = detect_format(peek_records(path, 5))
    assert (detection.format, detection.kind) == (fmt, kind), detection.why
    assert key in detection.why


def test_reasoning_parts_are_named_for_tool_use_with_reasoning():
    detection = detect_format(peek_records(LF / "reason_tool_use_demo_50.jsonl", 5))
    assert "reasoning" in detection.why and "with a tools list" in detection.why


def test_plain_text_file_is_text(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("A paragraph.\n\nAnother one.\n", encoding="utf-8")
    assert detect_format(peek_records(path, 5)).kind == "text"


# --- synthetic test fixtures ---------------------------------------------------------------------
# SYNTHETIC TEST FIXTURES: no real sample of these schemas is available offline. The records are
# invented for the test and follow the schemas documented on the datasets' cards (NuminaMath-CoT,
# OpenThoughts-114k, s1K-1.1), TRL's dataset-format guide and the OpenAI chat/tool-call format,
# and LLaMA-Factory's data/README.md. They are not data.

SYNTHETIC = {
    "numina_math": (
        [{"source": "synthetic_fixture", "problem": "Compute 2+3.", "solution": "2+3=5. \\boxed{5}",
          "messages": [{"role": "user", "content": "Compute 2+3."},
                       {"role": "assistant", "content": "2+3=5. \\boxed{5}"}]}],
        "math_solution",
    ),
    "openthoughts": (
        [{"system": "Your role as an assistant involves thoroughly exploring questions...",
          "conversations": [
              {"from": "user", "value": "What is 1+1?"},
              {"from": "assistant", "value": "<|begin_of_thought|>\n\nAdd them.\n\n<|end_of_thought|>\n\n"
                                             "<|begin_of_solution|>\n\n2\n\n<|end_of_solution|>"}]}],
        "reasoning_trace",
    ),
    "openthoughts_metadata": (
        [{"problem": "What is 1+1?", "deepseek_reasoning": "Add them.", "deepseek_solution": "2",
          "ground_truth_solution": "2", "domain": "math", "source": "synthetic_fixture"}],
        "reasoning_trace",
    ),
    "s1k": (
        [{"solution": "2", "question": "What is 1+1?", "cot_type": "math", "source_type": "fixture",
          "metadata": "{}", "gemini_thinking_trajectory": "Add them.", "gemini_attempt": "2",
          "deepseek_thinking_trajectory": "One plus one.", "deepseek_attempt": "2"}],
        "reasoning_trace",
    ),
    "messages_tools": (
        [{"messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp_c\": 18}"},
            {"role": "assistant", "content": "It is 18 C in Paris."}],
          "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {
              "type": "object", "properties": {"city": {"type": "string"}}}}}]}],
        "tool_calls",
    ),
    "trl_unpaired_preference": (
        [{"prompt": "The sky is", "completion": " blue.", "label": True},
         {"prompt": "The sky is", "completion": " green.", "label": False}],
        "unpaired_preference",
    ),
    "trl_preference": (
        [{"prompt": "The sky is", "chosen": " blue.", "rejected": " green."}],
        "preference",
    ),
    "trl_stepwise_supervision": (
        [{"prompt": "1+1?", "completions": ["One plus one", "is 2"], "labels": [True, True]}],
        "stepwise_supervision",
    ),
    "conversation_preference": (
        [{"conversations": [{"from": "human", "value": "Hi"}],
          "chosen": {"from": "gpt", "value": "Hello!"}, "rejected": {"from": "gpt", "value": "Go away."}}],
        "preference",
    ),
    "sharegpt": (
        [{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]}],
        "chat",
    ),
    "messages": (
        [{"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                       {"role": "assistant", "content": "Hello!"}]}],
        "chat",
    ),
    "reasoning_messages": (
        [{"messages": [{"role": "user", "content": "1+1?"},
                       {"role": "assistant", "reasoning_content": "Add them.", "content": "2"}]}],
        "reasoning_trace",
    ),
    "trl_prompt_completion": ([{"prompt": "The sky is", "completion": " blue."}], "instruction"),
    "query_response": ([{"query": "Hi", "response": "Hello", "history": []}], "instruction"),
    "multiple_choice": (
        [{"question": "2+2?", "A": "3", "B": "4", "C": "5", "D": "6", "answer": "B"}],
        "multiple_choice",
    ),
    "mllm_video": (
        [{"messages": [{"role": "user", "content": "<video>What happens?"},
                       {"role": "assistant", "content": "A baby reads."}], "videos": ["clip.mp4"]}],
        "video",
    ),
    "mllm_audio": (
        [{"messages": [{"role": "user", "content": "<audio>What is said?"},
                       {"role": "assistant", "content": "Hello."}], "audios": ["speech.flac"]}],
        "audio",
    ),
    "mllm_video_audio": (
        [{"messages": [{"role": "user", "content": "<video><audio>Describe."},
                       {"role": "assistant", "content": "A girl draws."}],
          "videos": ["clip.mp4"], "audios": ["clip.mp3"]}],
        "video_audio",
    ),
    "image_caption": ([{"file_name": "0001.png", "text": "a drawing of a fox"}], "image_caption"),
}


@pytest.mark.parametrize("fmt", sorted(SYNTHETIC))
def test_synthetic_fixtures(fmt):
    records, kind = SYNTHETIC[fmt]
    detection = detect_format(records)
    assert (detection.format, detection.kind) == (fmt, kind), detection.why


def test_kto_completion_needs_a_boolean_label():
    records = [{"prompt": "The sky is", "completion": " blue.", "label": "yes"}]  # synthetic fixture
    assert detect_format(records).kind == "instruction"  # prompt/completion, not KTO


def test_preference_with_implicit_prompt_says_so():
    detection = detect_format([{"chosen": "good", "rejected": "bad"}])  # synthetic fixture
    assert detection.kind == "preference" and "implicit prompt" in detection.why


def test_gsm8k_needs_the_final_answer_marker():
    records = [{"question": "2+2?", "answer": "It is 4."}]  # synthetic fixture
    assert detect_format(records).format == "query_response"


def test_unknown_keys_are_not_guessed():
    detection = detect_format([{"foo": 1, "bar": "x"}, {"foo": 2, "bar": "y", "baz": 3}])
    assert detection.format is None and detection.kind is None
    assert "foo" in detection.why and "bar" in detection.why and "baz" in detection.why


def test_empty_file_is_not_guessed():
    detection = detect_format([])
    assert detection.format is None and "empty" in detection.why


def test_long_key_lists_are_shortened():
    detection = detect_format([{f"key_{i:03d}": i for i in range(40)}])
    assert detection.format is None and "and 28 more" in detection.why


def test_every_rule_kind_is_described_and_routable():
    assert {rule.kind for rule in RULES} <= set(KINDS)
    assert len({rule.format for rule in RULES}) == len(RULES)
    for name in implemented():  # every formatter is reachable: its format is one a rule detects
        assert formats_of(name) <= {rule.format for rule in RULES}, f"{name}: formatter for no rule"


def test_json_encoded_conversations_are_read():
    records = [{"messages": '[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]'}]
    assert formats.detect_format(records).kind == "chat"  # e.g. a CSV cell holding JSON
