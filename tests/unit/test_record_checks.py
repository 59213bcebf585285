"""check_record: the usability of one record for its detected format, judged by the code that trains on it.

REAL RECORDS come from ``data/samples`` (sources and licenses in each folder's SOURCE.md).
MALFORMED VARIANTS are written by us: each test takes a real record and breaks one field the way a
user's file does (a string where turns belong, a KTO label as the string "true", a ``../`` image
path, control characters as text, ...). The variants are not data.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import pytest

from nexus import examples
from nexus.formats import detect_format
from nexus.methods.data import load_rows
from nexus.readers import iter_records, peek_records
from nexus.record_checks import check_record, format_record

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "data" / "samples"
LF = SAMPLES / "llamafactory" / "data"
GSM8K = SAMPLES / "gsm8k" / "train_first500.jsonl"
XLAM = SAMPLES / "xlam_function_calling_60k" / "xlam_function_calling_60k_first15.json"
GLAIVE, KTO, MLLM = LF / "glaive_toolcall_en_demo.json", LF / "kto_en_demo_first100.json", LF / "mllm_demo.json"
ALPACA, DPO, C4 = LF / "alpaca_en_demo.json", LF / "v1_dpo_demo.jsonl", LF / "c4_demo_first100.jsonl"
REASON_TOOLS = LF / "reason_tool_use_demo_50.jsonl"
RAW = Path("data/raw/user_file.json")  # where a user's variant would sit (no media: never read)


def first(path: Path, n: int = 1) -> list[dict]:
    return [copy.deepcopy(r) for r in peek_records(path, n)]


def glaive_call() -> dict:
    """The first real glaive record whose conversation makes a tool call."""
    return copy.deepcopy(next(r for r in iter_records(GLAIVE)
                              if any(t["from"] == "function_call" for t in r["conversations"])))


def with_(record: dict, **fields) -> dict:
    return {**record, **fields}


def turn_set(record: dict, key: str, index: int, **fields) -> dict:
    out = copy.deepcopy(record)
    out[key][index].update(fields)
    return out


# --- every sample record is usable ---------------------------------------------------------------

KNOWN_REFUSED = {  # real records the formatters refuse today, and why (counted at organize time)
    GLAIVE.name: {"conversation has no tool call (nothing to learn or score)": 147},
    REASON_TOOLS.name: {"thinking: a stray <think> or </think> inside the reasoning or the answer; tools: "
                        "conversation has no tool call (nothing to learn or score)": 1},
}


@pytest.mark.parametrize("path", [GSM8K, XLAM, GLAIVE, KTO, MLLM, ALPACA, DPO, C4, REASON_TOOLS,
                                  *sorted((SAMPLES / "safety_refusal").rglob("*.json"))], ids=lambda p: p.name)
def test_real_sample_records_are_usable(path):
    detection = detect_format(peek_records(path, 5))
    refused: dict[str, int] = {}
    for record in iter_records(path):
        reason = check_record(record, detection.format, detection.kind, path)
        if reason:
            refused[reason] = refused.get(reason, 0) + 1
    assert refused == KNOWN_REFUSED.get(path.name, {})


# --- every reason, on a real record broken by us -------------------------------------------------

SHAREGPT = {"conversations": first(GLAIVE)[0]["conversations"][:2]}  # a real human/gpt exchange

CASES = [
    # (id, record, format, kind, source, the reason)
    ("conversations a string", with_(first(GLAIVE)[0], conversations="Hi, can you help me?"),
     "sharegpt_tools", "tool_calls", RAW, "conversations is a string, expected a list of turns"),
    ("conversations a number", with_(SHAREGPT, conversations=7), "sharegpt", "chat", RAW,
     "conversations is a number, expected a list of turns"),
    ("conversations null", with_(SHAREGPT, conversations=None), "sharegpt", "chat", RAW,
     "conversations is null, expected a list of turns"),
    ("conversations broken JSON text", with_(SHAREGPT, conversations='[{"from": "human"'), "sharegpt", "chat",
     RAW, "conversations is not valid JSON (expected a list of turns)"),
    ("unknown role", turn_set(SHAREGPT, "conversations", 1, **{"from": "robot"}), "sharegpt", "chat", RAW,
     "turn 2 of conversations: unknown 'from' role 'robot' (known: system,"),
    ("turn not an object", with_(SHAREGPT, conversations=[SHAREGPT["conversations"][0], "Sure."]),
     "sharegpt", "chat", RAW, "turn 2 of conversations: a turn is not an object"),
    ("turn content a number", turn_set(SHAREGPT, "conversations", 0, value=42), "sharegpt", "chat", RAW,
     "turn 1 of conversations: a turn's content is neither text nor a list of parts"),
    ("content part type a list", turn_set(first(KTO)[0], "messages", 0, content=[{"type": ["text"]}]),
     "conversation_kto", "unpaired_preference", RAW, "non-text content"),
    ("instruction null", with_(first(ALPACA)[0], instruction=None), "alpaca", "instruction", RAW,
     "instruction is null, expected text"),
    ("input null, output missing: the null optional field is not blamed",
     {"instruction": first(ALPACA)[0]["instruction"], "input": None}, "alpaca", "instruction", RAW,
     "no instruction text, or no output text"),
    ("output a number", with_(first(ALPACA)[0], output=3.5), "alpaca", "instruction", RAW,
     "output is a number, expected text"),
    ("history a number", with_(first(ALPACA)[0], history=1), "alpaca", "instruction", RAW,
     "history is a number, expected a list of [query, response] pairs"),
    ("gsm8k question a number", with_(first(GSM8K)[0], question=12), "gsm8k", "math_qa", RAW,
     "question is a number, expected text"),
    ("gsm8k answer without ####", with_(first(GSM8K)[0], answer="72"), "gsm8k", "math_qa", RAW,
     "no question, or answer without '#### <final answer>'"),
    ("xlam answers broken JSON", with_(first(XLAM)[0], answers='[{"name": "live_giveaways_by_type", '),
     "xlam", "tool_calls", RAW, "answers is not valid JSON (expected a JSON list of {name, arguments} calls)"),
    ("xlam tools a number", with_(first(XLAM)[0], tools=5), "xlam", "tool_calls", RAW,
     "tools is a number, expected a JSON list of tool schemas"),
    ("function_call value broken JSON",
     turn_set(glaive_call(), "conversations", 3, value='{"name": "search_recipes", "arguments": {'),
     "sharegpt_tools", "tool_calls", RAW, "turn 4 of conversations: 'value' is not valid JSON"),
    ("tool_calls arguments broken JSON",
     {"messages": [{"role": "user", "content": "Recipes with chicken?"},
                   {"role": "assistant", "content": None, "tool_calls": [
                       {"type": "function", "function": {"name": "search_recipes", "arguments": "{ingredients: "}}]}],
      "tools": json.loads(glaive_call()["tools"])},
     "messages_tools", "tool_calls", RAW, "turn 2 of messages: tool call arguments are not valid JSON"),
    ("tool schema properties a string",
     with_(glaive_call(), tools=[{"name": "search_recipes", "parameters": {"type": "object", "properties": "x"}}]),
     "sharegpt_tools", "tool_calls", RAW, "a tool schema's parameters.properties is not a JSON object"),
    ("KTO label the string 'true'", with_(first(KTO)[0], label="true"), "messages", "chat", RAW,
     "label is the string 'true', expected a boolean (true/false)"),
    ("KTO label the string 'False' in a KTO file", with_(first(KTO)[0], label="False"), "conversation_kto",
     "unpaired_preference", RAW, "label is the string 'False', expected a boolean (true/false)"),
    ("KTO label a number", with_(first(KTO)[0], label=1), "conversation_kto", "unpaired_preference", RAW,
     "label is a number, expected a boolean (true/false)"),
    ("KTO label missing", {"messages": first(KTO)[0]["messages"]}, "conversation_kto", "unpaired_preference",
     RAW, "no boolean label / kto_tag"),
    ("preference chosen empty", with_(first(DPO)[0], chosen_messages=first(DPO)[0]["chosen_messages"][:2] + [
        {"role": "assistant", "content": [{"type": "text", "value": " "}]}]), "llamafactory_v1_preference",
     "preference", RAW, "no non-empty assistant reply"),
    ("preference replies equal", with_(first(DPO)[0], rejected_messages=first(DPO)[0]["chosen_messages"]),
     "llamafactory_v1_preference", "preference", RAW, "chosen and rejected are the same reply"),
    ("preference rejected a string of turns", with_(first(DPO)[0], rejected_messages="assistant: no"),
     "llamafactory_v1_preference", "preference", RAW, "rejected_messages is a string, expected a list of turns"),
    ("TRL preference chosen empty", {"prompt": first(ALPACA)[0]["instruction"], "chosen": "",
                                     "rejected": first(ALPACA)[0]["output"]},
     "trl_preference", "preference", RAW, "chosen is empty"),
    ("transcripts with different prompts",
     {"chosen": f"\n\nHuman: {first(ALPACA)[0]['instruction']}\n\nAssistant: {first(ALPACA)[0]['output']}",
      "rejected": f"\n\nHuman: {first(ALPACA, 2)[1]['instruction']}\n\nAssistant: no"},
     "trl_preference", "preference", RAW, "the chosen and rejected transcripts differ before their last"),
    ("text of control characters", {"text": "".join(f"{c}\x00\x01\x02" for c in first(C4)[0]["text"][:200])},
     "text", "text", RAW, "text is mostly control characters (binary data, not text)"),
    ("text a number", {"text": 404}, "text", "text", RAW, "text is a number, expected text"),
    ("alpaca output of control characters", with_(first(ALPACA)[0], output="\x1b\x07\x08" * 50 + "ok"),
     "alpaca", "instruction", RAW, "completion is mostly control characters (binary data, not text)"),
    ("safety prompt empty", with_(first(SAMPLES / "safety_refusal" / "refusal_direction_splits" /
                                         "harmful_train.json")[0], instruction="  "),
     "prompt_only", "prompt_only", RAW, "no prompt text"),
]


@pytest.mark.parametrize("record,fmt,kind,source,reason", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_malformed_variant_is_refused_with_its_reason(record, fmt, kind, source, reason):
    got = check_record(record, fmt, kind, source)
    assert got is not None and got.startswith(reason), got
    assert "\n" not in got


def test_a_label_on_plain_text_is_metadata_not_a_kto_label():
    assert check_record(with_(first(C4)[0], label="true"), "text", "text", C4) is None


def test_a_shape_the_formatter_did_not_expect_is_a_reason_not_a_crash():
    record = first(GSM8K)[0]
    result, reason = format_record(lambda r: r["question"] + 1, record)  # a formatter with a bug
    assert result is None and reason.startswith("the record's shape breaks the formatter (TypeError: ")


# --- media paths ---------------------------------------------------------------------------------


@pytest.mark.parametrize("images,reason", [
    (["../../../../etc/passwd"], "image 1 of images path '../../../../etc/passwd' leaves the data file's folder"),
    (["/etc/passwd"], "image 1 of images path '/etc/passwd' is absolute"),
    (["C:\\Windows\\win.ini"], "image 1 of images path 'C:\\Windows\\win.ini' is absolute"),
    (["~/photo.jpg"], "image 1 of images path '~/photo.jpg' is absolute"),
    (["mllm_demo_data/1.jpg", "mllm_demo_data/missing.jpg"],
     "image 2 of images path 'mllm_demo_data/missing.jpg' is not a file in the data file's folder"),
    (["mllm_demo_data"], "image 1 of images path 'mllm_demo_data' is not a file"),
    ([3], "image 1 of images is a number, expected a relative file path"),
    ([{"bytes": None, "path": "../../x.jpg"}], "image 1 of images path '../../x.jpg' leaves the data file's folder"),
    (["file:///etc/passwd"], "image 1 of images 'file:///etc/passwd' is a URL the loader cannot fetch"),
    (["mllm_demo_data/1.jpg\x00.png"], "image 1 of images path 'mllm_demo_data/1.jpg\\x00.png' cannot be resolved"),
])
def test_media_paths_must_stay_in_the_data_files_folder_and_exist(images, reason):
    record = with_(first(MLLM)[0], images=images)
    got = check_record(record, "mllm_image", "image", MLLM)
    assert got is not None and got.startswith(reason), got


def test_real_media_paths_and_urls_pass():
    record = first(MLLM)[0]
    assert check_record(record, "mllm_image", "image", MLLM) is None
    assert check_record(with_(record, images=["https://example.org/a.jpg"] * 2), "mllm_image", "image", MLLM) is None
    embedded = [{"bytes": (MLLM.parent / "mllm_demo_data" / "1.jpg").read_bytes(), "path": None}] * 2
    assert check_record(with_(record, images=embedded), "mllm_image", "image", MLLM) is None


def test_media_parts_in_turns_are_checked_too():
    record = first(MLLM)[0]
    record["messages"][0]["content"] = [{"type": "image", "image": "../../secret.png"},
                                        {"type": "text", "text": "Who are they?"}]
    got = check_record(record, "mllm_image", "image", MLLM)
    assert got == "image in turn 1 of messages path '../../secret.png' leaves the data file's folder"


def test_a_symlink_out_of_the_folder_is_refused(tmp_path):
    data = tmp_path / "mllm"
    shutil.copytree(MLLM.parent / "mllm_demo_data", data / "mllm_demo_data")
    shutil.copy(MLLM, data / MLLM.name)
    os.symlink("/etc/hostname", data / "mllm_demo_data" / "evil.jpg")
    os.symlink("loop.jpg", data / "mllm_demo_data" / "loop.jpg")
    record = first(MLLM)[0]
    source = data / MLLM.name
    assert check_record(record, "mllm_image", "image", source) is None
    evil = check_record(with_(record, images=["mllm_demo_data/evil.jpg"]), "mllm_image", "image", source)
    assert evil == "image 1 of images path 'mllm_demo_data/evil.jpg' leaves the data file's folder"
    loop = check_record(with_(record, images=["mllm_demo_data/loop.jpg"]), "mllm_image", "image", source)
    assert loop.startswith("image 1 of images path 'mllm_demo_data/loop.jpg' ")


# --- the same judgement at training time ---------------------------------------------------------


def manifest(tmp_path: Path, capability: str, files: list[tuple[Path, str, str]]) -> Path:
    out = tmp_path / "organized"
    (out / capability).mkdir(parents=True)
    entries = [{"path": str(p), "format": fmt, "kind": kind, "records": None, "sha256": p.name}
               for p, fmt, kind in files]
    (out / capability / "manifest.json").write_text(json.dumps({"capability": capability, "files": entries}))
    return out


def test_later_records_with_conversations_as_a_string_are_skipped_and_counted(tmp_path):
    records = [r for r in iter_records(GLAIVE) if any(t["from"] == "function_call" for t in r["conversations"])][:8]
    for record in records[3:]:  # written by us: the conversation flattened to its first turn's text
        record["conversations"] = record["conversations"][0]["value"]
    path = tmp_path / "glaive_broken_tail.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    fmt = detect_format(peek_records(path, 3))
    assert fmt.format == "sharegpt_tools"  # the first records decide the format
    split = examples.load_examples("tools", manifest(tmp_path, "tools", [(path, fmt.format, fmt.kind)]),
                                   eval_size=1, sample_size=0, seed=0)
    assert split.kept == 3 and len(split.train) + len(split.eval) == 3
    assert split.dropped == {"conversations is a string, expected a list of turns": 5}


def test_kto_labels_as_strings_are_refused_not_trained_as_sft(tmp_path):
    records = first(KTO, 20)
    for record in records:  # written by us: the real labels, as strings
        record["label"] = str(record["label"]).lower()
    path = tmp_path / "kto_string_labels.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    fmt = detect_format(peek_records(path, 5))
    assert (fmt.format, fmt.kind) == ("messages", "chat")  # not KTO any more: it would route to SFT
    assert {check_record(r, fmt.format, fmt.kind, path) for r in records} == {
        "label is the string 'true', expected a boolean (true/false)",
        "label is the string 'false', expected a boolean (true/false)"}
    organized = manifest(tmp_path, "streaming", [(path, fmt.format, fmt.kind), (ALPACA, "alpaca", "instruction")])
    split = examples.load_examples("streaming", organized, eval_size=2, sample_size=0, seed=0)
    alpaca = manifest(tmp_path / "alpaca", "streaming", [(ALPACA, "alpaca", "instruction")])
    assert split.kept == examples.load_examples("streaming", alpaca, eval_size=2, sample_size=0, seed=0).kept
    assert sum(n for reason, n in split.dropped.items() if reason.startswith("label is the string")) == 20
    alone = manifest(tmp_path / "alone", "streaming", [(path, fmt.format, fmt.kind)])
    with pytest.raises(examples.NoDataError, match="label is the string"):
        examples.load_examples("streaming", alone, eval_size=2, sample_size=0, seed=0)


def test_method_rows_drop_string_labels_and_binary_text_per_file(tmp_path):
    kto = first(KTO, 6)
    kto[1]["label"] = "true"  # written by us
    text = first(C4, 3)
    text[2]["text"] = "\x00\x01" * 100  # written by us
    files = {"unpaired_preference": (kto, "conversation_kto"), "text": (text, "text")}
    out = tmp_path / "organized" / "streaming"
    out.mkdir(parents=True)
    entries = []
    for kind, (records, fmt) in files.items():
        path = tmp_path / f"{kind}.json"
        path.write_text(json.dumps(records), encoding="utf-8")
        entries.append({"path": str(path), "format": fmt, "kind": kind, "records": len(records), "sha256": "x"})
    (out / "manifest.json").write_text(json.dumps({"capability": "streaming", "files": [], "method_files": entries}))
    dropped: dict[str, int] = {}
    rows, used = load_rows("unpaired_preference", tmp_path / "organized", "streaming", dropped)
    assert len(rows) == 5 and used == [entries[0]["path"]]
    assert dropped == {f"{entries[0]['path']}: label is the string 'true', expected a boolean (true/false)": 1}
    dropped = {}
    rows, _ = load_rows("text", tmp_path / "organized", "streaming", dropped)
    assert len(rows) == 2
    assert dropped == {f"{entries[1]['path']}: text is mostly control characters (binary data, not text)": 1}
