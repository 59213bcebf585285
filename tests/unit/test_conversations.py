"""The one conversation layer (nexus.conversations): real LLaMA-Factory, xLAM and safety records
from data/samples (and ../shared/datasets where present), every role alias, media parts, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nexus import conversations as conv
from nexus import formats, record_profile
from nexus.conversations import ConversationError, Turn
from nexus.readers import iter_records
from tests.project import ROOT

LF = ROOT / "data" / "samples" / "llamafactory" / "data"
SHARED_LF = ROOT.parent / "shared" / "datasets" / "llamafactory" / "data"


def records(name: str) -> list[dict]:
    return list(iter_records(LF / name))


def shared_records(name: str) -> list[dict]:
    if not (SHARED_LF / name).is_file():
        pytest.skip(f"{SHARED_LF / name} is not on this machine (offline sample set)")
    return list(iter_records(SHARED_LF / name))


# --- vocabulary -------------------------------------------------------------------------------


def test_the_key_and_role_tables_are_defined_once():
    for name in ("CONVERSATION_KEYS", "QUERY_KEYS", "RESPONSE_KEYS", "ROLE_KEYS", "CONTENT_KEYS",
                 "ASSISTANT_ROLES", "TOOL_CALL_ROLES", "TOOL_RESULT_ROLES", "REASONING_PART_TYPES",
                 "REASONING_TURN_KEYS", "TOOL_CALL_PART_TYPES", "IMAGE_PART_TYPES"):
        table = getattr(conv, name)  # formats (and record_profile) use it, never a copy of their own
        assert getattr(formats, name, table) is table and getattr(record_profile, name, table) is table, name
    assert set(conv.ROLE_ALIASES.values()) == set(conv.ROLES)


def test_the_module_needs_only_the_standard_library():
    code = ("import sys, nexus.conversations; "
            "print(sorted(m for m in sys.modules if m.startswith(('nexus.', 'torch', 'transformers'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "['nexus.conversations']"


@pytest.mark.parametrize("alias", sorted(conv.ROLE_ALIASES))
def test_every_role_alias_maps_to_one_canonical_role(alias):
    expected = conv.ROLE_ALIASES[alias]
    for key, content_key in (("from", "value"), ("role", "content")):
        (turn,) = conv.parse_turns([{key: alias, content_key: "hi"}])
        assert turn == Turn(expected, "hi")


@pytest.mark.parametrize("alias", conv.TOOL_CALL_ROLES)
def test_tool_call_roles_are_assistant_turns_holding_their_calls(alias):
    call = {"name": "f", "arguments": {"a": 1}}
    turns = conv.parse_turns([{"from": "human", "value": "go"}, {"from": alias, "value": json.dumps(call)},
                              {"from": alias, "value": [call]}, {"from": "observation", "value": "42"}])
    assert [t.role for t in turns] == ["user", "assistant", "tool"]
    assert turns[1].calls == (call, call)  # consecutive call turns merge into one assistant turn
    assert conv.has_tool_use(turns)


def test_ms_swift_turn_pairs_become_two_turns():
    turns = conv.parse_turns([{"human": "Hi", "assistant": "Hello!"}, {"user": "Bye"}])
    assert turns == [Turn("user", "Hi"), Turn("assistant", "Hello!"), Turn("user", "Bye")]


# --- real records ----------------------------------------------------------------------------


def test_glaive_sharegpt_tool_conversations():
    recs = records("glaive_toolcall_en_demo.json")
    seen = set()
    for record in recs:
        turns = conv.with_system(record, conv.record_turns(record))
        seen |= {t.role for t in turns}
        for turn in turns:
            assert all(set(c) == {"name", "arguments"} and isinstance(c["arguments"], dict)
                       for c in turn.calls)
    assert seen == {"user", "assistant", "tool"}
    calling = next(r for r in recs if any(t["from"] == "function_call" for t in r["conversations"]))
    raw = next(t["value"] for t in calling["conversations"] if t["from"] == "function_call")
    call = next(t for t in conv.record_turns(calling) if t.calls).calls[0]
    assert call == conv.as_call(json.loads(raw))


def test_reasoning_and_tool_call_parts_of_the_llamafactory_reasoning_sample():
    recs = records("reason_tool_use_demo_50.jsonl")
    turns = [t for r in recs for t in conv.record_turns(r)]
    assert {t.role for t in turns} == {"system", "user", "assistant", "tool"}
    with_reasoning = [t for t in turns if t.reasoning]
    assert with_reasoning and all(t.role == "assistant" for t in with_reasoning)
    assert any(len(t.calls) == 3 for t in turns)  # parallel tool_call parts
    for turn in turns:  # reasoning and call parts leave the content; text parts stay
        assert isinstance(turn.content, str) or all(p["type"] == "text" for p in turn.content)
    raw = recs[0]["messages"]
    reply = next(m for m in raw if m["role"] == "assistant")
    parsed = conv.parse_turns([reply])[0]
    assert parsed.reasoning == "\n\n".join(p["value"] for p in reply["content"] if p["type"] == "reasoning")
    assert parsed.text == "".join(p["value"] for p in reply["content"] if p["type"] == "text")


def test_alpaca_kto_and_v1_preference_samples():
    alpaca = records("alpaca_en_demo.json")
    messages = conv.alpaca_messages(alpaca[0])
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["content"] == alpaca[0]["output"]
    with_input = next(r for r in alpaca if r["input"].strip())
    query = conv.alpaca_messages(with_input)[0]["content"]
    assert query == f"{with_input['instruction']}\n{with_input['input']}"
    for record in records("kto_en_demo_first100.json"):
        prompt, reply = conv.split_conversation(conv.chat_messages(record))
        assert reply == record["messages"][-1]["content"] and prompt[-1]["role"] == "user"
    for record in records("v1_dpo_demo.jsonl"):
        chosen = conv.text_messages(record["chosen_messages"])
        assert chosen[0]["role"] == "system" and all(isinstance(m["content"], str) for m in chosen)


def test_xlam_and_safety_samples_use_the_query_keys():
    samples = ROOT / "data" / "samples"
    xlam_file = samples / "xlam_function_calling_60k" / "xlam_function_calling_60k_first15.json"
    xlam = list(iter_records(xlam_file))
    assert all(conv.as_calls(r["answers"]) for r in xlam)
    assert all(conv.record_tools(r) for r in xlam)
    harmful = samples / "safety_refusal" / "refusal_direction_splits" / "harmful_train.json"
    for record in iter_records(harmful):
        assert conv.first_text(record, conv.QUERY_KEYS) == record["instruction"]


def test_llamafactory_media_placeholders_stay_in_the_text():
    record = records("mllm_demo.json")[0]
    turns = conv.record_turns(record)
    assert turns[0] == Turn("user", "<image>Who are they?")
    assert conv.chat_messages(record)[0]["content"] == "<image>Who are they?"


def test_v1_image_parts_are_kept_as_image_parts():
    record = shared_records("v1_multimodal_demo.jsonl")[0]
    user = conv.record_turns(record)[0]
    assert user.content == [{"type": "image", "source": "data/mllm_demo_data/1.jpg"},
                            {"type": "text", "text": "Who are they?"}]
    assert user.text == "Who are they?" and conv.text_content(user.content) is None
    with pytest.raises(ConversationError, match="non-text"):
        conv.chat_messages(record)


@pytest.mark.parametrize("name", ["mllm_audio_demo.json", "mllm_video_demo.json",
                                  "mllm_video_audio_demo.json"])
def test_audio_and_video_samples_parse(name):
    for record in shared_records(name):
        turns = conv.record_turns(record)
        assert [t.role for t in turns][:2] == ["user", "assistant"]


# --- content -------------------------------------------------------------------------------------


def test_openai_and_hf_media_parts():
    (turn,) = conv.parse_turns([{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://x/cat.png", "detail": "low"}},
        {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}},
        {"type": "video", "video": "clip.mp4"},
        {"type": "image"},  # TRL: the image lives in the record's `images` column
        {"type": "text", "text": "What is this?"},
        "and this?",
        {"type": "file", "file": {"file_id": "f1"}},  # unknown parts are kept as given
    ]}])
    assert turn.content == [
        {"type": "image", "source": "https://x/cat.png"},
        {"type": "audio", "source": {"data": "UklGR", "format": "wav"}},
        {"type": "video", "source": "clip.mp4"},
        {"type": "image", "source": None},
        {"type": "text", "text": "What is this?"},
        {"type": "text", "text": "and this?"},
        {"type": "file", "file": {"file_id": "f1"}},
    ]
    assert turn.text == "What is this?and this?"
    assert conv.text_of(turn.content, "\n") == "What is this?\nand this?"


@pytest.mark.parametrize(("content", "expected"), [
    ("plain", "plain"),
    ([{"type": "text", "text": "a"}, {"type": "text", "value": "b"}, "c"], "abc"),
    ([], ""),
    ([{"type": "image_url", "image_url": {"url": "u"}}], None),
    ([{"text": "no type"}], None),
    ([{"type": "text", "text": None, "value": "v"}], None),
    ([3], None),
    (None, None),
    ({"type": "text", "text": "a"}, None),
])
def test_text_content_accepts_only_text(content, expected):
    assert conv.text_content(content) == expected


def test_reasoning_fields_and_parts():
    field, parts, tagged = conv.parse_turns([
        {"role": "assistant", "reasoning_content": "r1", "content": "5"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "r2"},
                                          {"type": "reasoning", "text": "r3"},
                                          {"type": "text", "text": "5"}]},
        {"from": "gpt", "value": "<think>r</think>5", "thinking": ""},
    ])
    assert (field.reasoning, field.content) == ("r1", "5")
    assert (parts.reasoning, parts.text) == ("r2\n\nr3", "5")
    assert (tagged.reasoning, tagged.content) == ("", "<think>r</think>5")  # tags: the thinking capability's


def test_openai_tool_calls_and_tool_results():
    turns = conv.parse_turns(json.dumps([
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "1", "type": "function",
             "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "1", "content": "sunny"},
    ]))
    assert turns == [Turn("user", "Weather in Paris?"),
                     Turn("assistant", "", calls=({"name": "weather", "arguments": {"city": "Paris"}},)),
                     Turn("tool", "sunny")]
    with pytest.raises(ConversationError, match="tools capability"):
        conv.plain_messages(turns)


# --- record layouts ----------------------------------------------------------------------------


def test_system_prompt_history_and_query_response():
    record = {"query": "Name a color", "response": ["Red"], "system": "Terse.", "history": [["Hi", "Hello"]]}
    assert conv.query_response_messages(record) == [
        {"role": "system", "content": "Terse."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Name a color"},
        {"role": "assistant", "content": "Red"}]
    own = {"messages": [{"role": "system", "content": "Own."}, {"role": "user", "content": "q"}],
           "system": "Field."}
    assert [m["content"] for m in conv.chat_messages(own)] == ["Own.", "q"]


def test_prompt_completion_prompt_and_reply_values():
    assert conv.prompt_completion_messages({"prompt": "2+2?", "completion": "4"})[-1] == {
        "role": "assistant", "content": "4"}
    dpo = {"conversations": [{"from": "human", "value": "Hi"}], "chosen": {"from": "gpt", "value": "Hey"},
           "rejected": {"from": "gpt", "value": "Go away"}}
    assert conv.prompt_messages(dpo) == [{"role": "user", "content": "Hi"}]
    assert conv.reply_text(dpo["chosen"]) == "Hey"
    assert conv.reply_text([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]) == "a"
    assert conv.prompt_messages({"question": "  ", "instruction": "Do it"}) == [
        {"role": "user", "content": "Do it"}]


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("call", "reason"), [
    (lambda: conv.parse_turns("not json"), "not a list of turns"),
    (lambda: conv.parse_turns([["user", "hi"]]), "not an object"),
    (lambda: conv.parse_turns([{"from": "robot", "value": "hi"}]), "unknown 'from' role 'robot'"),
    (lambda: conv.parse_turns([{"role": None, "content": "hi"}]), "unknown 'role' role 'None'"),
    (lambda: conv.parse_turns([{"value": "hi"}]), "neither a role"),
    (lambda: conv.parse_turns([{"role": "user", "content": 3}]), "neither text nor a list of parts"),
    (lambda: conv.parse_turns([{"role": "user", "content": [7]}]), "neither text nor an object"),
    (lambda: conv.parse_turns([{"from": "function_call", "value": "{oops"}]), "not a JSON"),
    (lambda: conv.parse_turns([{"role": "assistant", "tool_calls": [{"name": ""}]}]), "not a JSON"),
    (lambda: conv.record_turns({"text": "hi"}), "no conversation"),
    (lambda: conv.history_turns({"history": [["q"]]}), "history"),
    (lambda: conv.record_tools({"tools": "oops"}), "not a JSON list"),
    (lambda: conv.split_conversation([{"role": "user", "content": "hi"}]), "assistant reply"),
    (lambda: conv.split_conversation([{"role": "assistant", "content": "a"}]), "no user message"),
    (lambda: conv.first_exchange([Turn("user", "q")]), "no user question"),
    (lambda: conv.alpaca_messages({"instruction": " ", "output": "x"}), "no instruction"),
    (lambda: conv.query_response_messages({"query": "q"}), "no response text"),
    (lambda: conv.prompt_completion_messages({"prompt": "q", "completion": [
        {"role": "user", "content": "x"}]}), "exactly one assistant"),
    (lambda: conv.prompt_messages({"label": True}), "no prompt"),
    (lambda: conv.reply_text(3), "neither text"),
])
def test_unusable_records_raise_one_line_reasons(call, reason):
    with pytest.raises(ConversationError, match=reason) as error:
        call()
    assert "\n" not in str(error.value)
