"""tools: formatters on the real sample files, the exact-call scorer, chat rendering, a short SFT run."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest
from pyarrow import ArrowInvalid

from nexus import chat
from nexus.capabilities import SkipRecord, tools
from nexus.readers import iter_records
from tests.project import ROOT

SAMPLES = ROOT / "data" / "samples"
XLAM_JSON = SAMPLES / "xlam_function_calling_60k" / "xlam_function_calling_60k_first15.json"
XLAM_PARQUET = SAMPLES / "xlam_function_calling_60k" / "hf_subset" / "data" / "train-00000-of-00001.parquet"
GLAIVE = SAMPLES / "llamafactory" / "data" / "glaive_toolcall_en_demo.json"
REASON_TOOL_USE = SAMPLES / "llamafactory" / "data" / "reason_tool_use_demo_50.jsonl"
NO_CALL = "conversation has no tool call (nothing to learn or score)"

# A small template that reads `tools` (as tool-calling templates do) on top of ChatML.
TOOLS_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nTools: {{ tools | tojson }}<|im_end|>\n{% endif %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def formatted(path: Path, fmt: str) -> tuple[list[dict], Counter[str]]:
    """Examples and kept/skip-reason counts of one sample file."""
    examples, counts = [], Counter()
    for record in iter_records(path):
        try:
            examples.append(tools.FORMATTERS[fmt](record))
            counts["kept"] += 1
        except SkipRecord as reason:
            counts[str(reason)] += 1
    return examples, counts


def call(name: str, **arguments: object) -> dict:
    return {"name": name, "arguments": arguments}


# --- formatters ----------------------------------------------------------------------------------


def test_sample_files_kept_and_skipped_with_reasons():
    assert formatted(XLAM_JSON, "xlam")[1] == {"kept": 15}
    assert formatted(GLAIVE, "sharegpt_tools")[1] == {"kept": 153, NO_CALL: 147}
    assert formatted(REASON_TOOL_USE, "messages_tools")[1] == {"kept": 31, NO_CALL: 19}


def test_xlam_json_and_parquet_give_the_same_examples_whose_target_parses_back_to_the_answers():
    from_json, _ = formatted(XLAM_JSON, "xlam")
    assert formatted(XLAM_PARQUET, "xlam")[0] == from_json
    for record, example in zip(iter_records(XLAM_JSON), from_json, strict=True):
        target = example["completion"][0]["content"]
        assert target == example["reference"] == tools.canonical_calls(json.loads(record["answers"]))
        assert tools.parse_calls(target) == json.loads(record["answers"])
        assert example["prompt"] == [{"role": "user", "content": record["query"]}]
        assert tools.score(target, example) == {"exact_match": 1.0, "name_match": 1.0, "valid_json": 1.0}


def test_canonical_form_puts_the_name_first_and_sorts_argument_keys():
    assert tools.canonical_calls([call("f", b=1, a={"z": 2, "y": "é"})]) == (
        '[{"name": "f", "arguments": {"a": {"y": "é", "z": 2}, "b": 1}}]')


def test_xlam_python_type_hints_become_json_schema():
    record = next(r for r in iter_records(XLAM_JSON) if "List[int]" in r["tools"])
    schema = tools.format_xlam(record)["tools"]
    assert all(t["type"] == "function" and t["function"]["parameters"]["type"] == "object" for t in schema)
    props = {k: v for t in schema for k, v in t["function"]["parameters"]["properties"].items()}
    assert {"type": "array", "items": {"type": "integer"}}.items() <= next(
        v for v in props.values() if v.get("items")).items()
    assert {v["type"] for v in props.values()} <= set(tools.JSON_TYPES)
    optional = tools.normalize_tool({"name": "f", "parameters": {
        "a": {"type": "int, optional", "default": 3}, "b": {"type": "str"}, "c": {"type": "Callable"}}})
    params = optional["function"]["parameters"]
    assert params["required"] == ["b", "c"]
    assert params["properties"]["a"] == {"type": "integer", "default": 3}
    assert params["properties"]["c"] == {"description": "(type: Callable)"}


def test_glaive_conversation_gives_one_example_per_call_with_history():
    record = next(r for r in iter_records(GLAIVE)
                  if [t["from"] for t in r["conversations"]].count("function_call") == 2)
    first, second = tools.conversation_examples(record, "sharegpt_tools")
    assert tools.format_sharegpt_tools(record) == first
    roles = [m["role"] for m in second["prompt"]]
    assert roles.count("tool") == 1 and roles[-1] == "user"
    earlier = second["prompt"][roles.index("tool") - 1]
    assert earlier == {"role": "assistant", "content": first["reference"]}
    assert first["tools"] == [tools.normalize_tool(t) for t in json.loads(record["tools"])]


def test_messages_tools_reads_tool_call_parts_and_drops_reasoning():
    examples, _ = formatted(REASON_TOOL_USE, "messages_tools")
    assert all(e["prompt"][0]["role"] == "system" for e in examples)
    parallel = [e for e in examples if len(tools.parse_calls(e["reference"])) == 3]
    assert parallel, "the sample has turns with three tool_call parts"
    openai = {"messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "1", "type": "function",
             "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}]}],
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]}
    reference = tools.format_messages_tools(openai)["reference"]
    assert reference == '[{"name": "weather", "arguments": {"city": "Paris"}}]'


@pytest.mark.parametrize(("record", "fmt", "reason"), [
    ({"query": "q", "answers": "[]", "tools": "[]"}, "xlam", "answers holds no call"),
    ({"query": "q", "answers": "not json", "tools": "[]"}, "xlam", "not a JSON list"),
    ({"query": "q", "answers": '[{"name": "g", "arguments": {}}]', "tools": '[{"name": "f"}]'}, "xlam",
     "missing from the tools list"),
    ({"query": "q", "answers": '[{"name": "f", "arguments": {}}]', "tools": "[]"}, "xlam", "no tools list"),
    ({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}], "tools": "[]"},
     "sharegpt_tools", "no tool call"),
    ({"conversations": [{"from": "human", "value": "hi"}, {"from": "function_call", "value": "{oops"}],
      "tools": '[{"name": "f"}]'}, "sharegpt_tools", "not a JSON"),
    ({"conversations": [{"from": "robot", "value": "hi"}], "tools": "[]"}, "sharegpt_tools",
     "unknown 'from'"),
])
def test_unusable_records_are_skipped_with_a_reason(record, fmt, reason):
    with pytest.raises(SkipRecord, match=reason):
        tools.FORMATTERS[fmt](record)


# --- scorer --------------------------------------------------------------------------------------

WEATHER, TIME = call("get_weather", city="Paris", days=3), call("get_time", zone="CET")
REFERENCE = {"reference": tools.canonical_calls([WEATHER, TIME])}
SCORER_CASES = {  # generated text -> (exact_match, name_match, valid_json)
    "right": (json.dumps([WEATHER, TIME]), (1, 1, 1)),
    "reordered calls and keys, 3.0 for 3, fenced": (
        "  ```json\n"
        + json.dumps([TIME, {"arguments": {"days": 3.0, "city": "Paris"}, "name": "get_weather"}], indent=1)
        + "\n```  ", (1, 1, 1)),
    "tool_call tags, arguments as JSON text": ("".join(
        f"<tool_call>\n{json.dumps(c)}\n</tool_call>\n"
        for c in (TIME, {**WEATHER, "arguments": json.dumps(WEATHER["arguments"])})), (1, 1, 1)),
    "string for a number": (json.dumps([call("get_weather", city="Paris", days="3"), TIME]), (0, 1, 1)),
    "wrong argument": (json.dumps([call("get_weather", city="Rome", days=3), TIME]), (0, 1, 1)),
    "wrong name": (json.dumps([call("get_forecast", city="Paris", days=3), TIME]), (0, 0, 1)),
    "one call missing": (json.dumps(TIME), (0, 0, 1)),
    "truncated JSON": (json.dumps([WEATHER, TIME])[:-1], (0, 0, 0)),
    "prose": ("The weather in Paris is sunny.", (0, 0, 0)),
    "call without a name": ('[{"arguments": {}}]', (0, 0, 0)),
}


@pytest.mark.parametrize(("generated", "expected"), SCORER_CASES.values(), ids=SCORER_CASES.keys())
def test_scorer(generated, expected):
    scores = tools.score(generated, REFERENCE)
    assert list(scores) == [tools.METRIC, "name_match", "valid_json"]
    assert tuple(scores.values()) == expected


def test_a_single_object_counts_as_a_list_of_one_and_bools_are_not_numbers():
    reference = {"reference": tools.canonical_calls([call("f", flag=True)])}
    assert tools.score('{"name": "f", "arguments": {"flag": true}}', reference)["exact_match"] == 1.0
    assert tools.score('{"name": "f", "arguments": {"flag": 1}}', reference)["exact_match"] == 0.0


# --- chat rendering ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from nexus.loading import load_tokenizer

    return load_tokenizer(tiny_model_dir)


@pytest.fixture(scope="module")
def tools_tokenizer(tiny_model_dir):
    from nexus.loading import load_tokenizer

    tok = load_tokenizer(tiny_model_dir)
    tok.chat_template = TOOLS_TEMPLATE
    return tok


def glaive_second_call() -> dict:
    record = next(r for r in iter_records(GLAIVE)
                  if [t["from"] for t in r["conversations"]].count("function_call") == 2)
    return tools.conversation_examples(record, "sharegpt_tools")[1]


def test_prepare_without_template_tools_support_writes_schemas_and_tool_results_as_text(tokenizer):
    example = glaive_second_call()
    assert not chat.template_supports_tools(tokenizer)
    ready = chat.prepare(example, tokenizer)
    assert "tools" not in ready and ready["completion"] == example["completion"]
    system = ready["prompt"][0]
    assert system["role"] == "system" and system["content"].startswith(chat.TOOLS_SYSTEM_PROMPT)
    assert json.loads(system["content"][len(chat.TOOLS_SYSTEM_PROMPT):]) == example["tools"]
    assert "tool" not in {m["role"] for m in ready["prompt"]}
    assert sum(m["content"].startswith(chat.TOOL_RESULT_PREFIX) for m in ready["prompt"]) == 1
    text = chat.render_prompt(example, tokenizer)
    assert example["tools"][0]["function"]["name"] in text and text.endswith("<|im_start|>assistant\n")
    plain = {"prompt": [{"role": "tool", "content": "x"}], "completion": [], "reference": ""}
    assert chat.prepare(plain, tokenizer) == plain  # examples without tools are left alone


def test_prepare_with_template_tools_support_keeps_tools_and_tool_role(tools_tokenizer):
    example = glaive_second_call()
    assert chat.template_supports_tools(tools_tokenizer)
    assert chat.prepare(example, tools_tokenizer) == example
    text = chat.render_prompt(example, tools_tokenizer)
    assert text.startswith("<|im_start|>system\nTools: [{") and "<|im_start|>tool\n" in text


def test_arrow_cannot_hold_heterogeneous_schemas_but_json_strings_round_trip():
    """Why the sft method must pass ``tools`` to TRL as JSON text (TRL 1.16 json.loads a str column)."""
    from datasets import Dataset

    schemas = [e["tools"] for e in formatted(XLAM_JSON, "xlam")[0]]
    with pytest.raises(ArrowInvalid):  # e.g. a property `default` that is a str here and an int there
        Dataset.from_list([{"tools": s} for s in schemas])
    two = Dataset.from_list([{"tools": schemas[0]}, {"tools": schemas[1]}])
    assert two[0]["tools"] != schemas[0]  # merged struct: other rows' keys filled with None
    as_text = Dataset.from_list([{"tools": json.dumps(s)} for s in schemas])
    assert [json.loads(t) for t in as_text["tools"]] == schemas


# --- a short real SFT run ------------------------------------------------------------------------


def sft_run(model_dir: Path, tokenizer, out: Path, steps: int = 3) -> tuple[object, dict, dict]:
    """LoRA SFT steps (batch 1) through the sft method's builder on tool examples: (trainer, before, after)."""
    import torch

    from nexus.config import BaseParams, CapabilityParams, ControllerParams, OrganizeParams, Params
    from nexus.device import DeviceProfile
    from nexus.loading import load_model
    from nexus.methods import METHODS, TrainContext
    from nexus.prepare import drop_long
    from nexus.text_training import apply_adapter
    from nexus.trainer import training_arguments

    cap = CapabilityParams(max_steps=steps, batch_size=1, learning_rate=5e-3, max_length=384)
    params = Params(BaseParams(model=str(model_dir)), OrganizeParams(), ControllerParams(), {})
    profile = DeviceProfile("cpu", bf16=False, model_loss=True)
    rows = formatted(XLAM_JSON, "xlam")[0][:6] + formatted(GLAIVE, "sharegpt_tools")[0][:2]
    rows, too_long = drop_long(rows, tokenizer, cap.max_length)  # some xLAM rows list long schemas
    assert len(rows) >= 4 and too_long >= 1
    torch.manual_seed(0)
    model = apply_adapter(load_model(model_dir), cap)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    trainer = METHODS["sft"].build(TrainContext(
        capability="tools", model=model, tokenizer=tokenizer, cap=cap, params=params,
        args=training_arguments(cap, params, out, profile), callbacks=[], profile=profile, examples=rows))
    trainer.train()
    after = {n: p.detach() for n, p in trainer.model.named_parameters() if p.requires_grad}
    return trainer, before, after


def test_short_sft_run_on_tool_examples_logs_loss_and_moves_the_adapter(tiny_model_dir, tokenizer, tmp_path):
    import torch

    from nexus.generation.batch import generate_examples as generate

    trainer, before, after = sft_run(tiny_model_dir, tokenizer, tmp_path / "ckpt")
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert trainer.state.global_step == 3 and len(losses) == 3
    assert all(math.isfinite(loss) and loss > 0 for loss in losses)
    assert before and any(not torch.equal(before[n], after[n]) for n in before)
    held_out = formatted(GLAIVE, "sharegpt_tools")[0][-2:]  # the evaluator's path: generate, then score
    for text, example in zip(generate(trainer.model, tokenizer, held_out, 8), held_out, strict=True):
        assert set(tools.score(text, example)) == {"exact_match", "name_match", "valid_json"}


def test_short_sft_run_with_a_template_that_renders_tools(tiny_model_dir, tools_tokenizer, tmp_path):
    trainer, _, _ = sft_run(tiny_model_dir, tools_tokenizer, tmp_path / "ckpt", steps=2)
    assert trainer.state.global_step == 2
    first = trainer.train_dataset[0]
    assert '<|im_start|>system\nTools: [{"type": "function"' in tools_tokenizer.decode(first["input_ids"])
