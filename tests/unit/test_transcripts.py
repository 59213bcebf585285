"""Preference pairs in the transcript form ("\\n\\nHuman: ...\\n\\nAssistant: ...", Anthropic HH-RLHF):
split into prompt, chosen and rejected at the last assistant turn, as TRL's extract_prompt does.

The records here are written by this test in that layout (no real HH-RLHF rows ship with the
project); the layout is the one the public dataset uses.
"""

from __future__ import annotations

import json

import pytest

from nexus.conversations import ConversationError
from nexus.formats import detect_format
from nexus.methods.data import load_rows, preference_row
from nexus.transcripts import is_transcript, split_transcript_pair, transcript_messages

SINGLE = {"chosen": "\n\nHuman: What is 2 + 2?\n\nAssistant: 4.",
          "rejected": "\n\nHuman: What is 2 + 2?\n\nAssistant: Probably 5."}
MULTI = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Name a prime.\n\nAssistant: 7 is prime.",
         "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Name a prime.\n\nAssistant: 8."}


def test_a_single_turn_pair_splits_at_the_assistant_reply():
    row = preference_row(SINGLE)
    assert row == {"prompt": [{"role": "user", "content": "What is 2 + 2?"}],
                   "chosen": [{"role": "assistant", "content": "4."}],
                   "rejected": [{"role": "assistant", "content": "Probably 5."}]}


def test_a_multi_turn_pair_keeps_the_shared_history_as_the_prompt():
    row = preference_row(MULTI)
    assert [m["role"] for m in row["prompt"]] == ["user", "assistant", "user"]
    assert row["prompt"][1]["content"] == "Hello!"
    assert row["chosen"][0]["content"] == "7 is prime." and row["rejected"][0]["content"] == "8."


@pytest.mark.parametrize(("record", "reason"), [
    ({"chosen": "\n\nHuman: A\n\nAssistant: x", "rejected": "\n\nHuman: B\n\nAssistant: y"}, "differ"),
    ({"chosen": "\n\nHuman: A\n\nAssistant: x", "rejected": "\n\nHuman: A\n\nAssistant:"}, "rejected"),
    ({"chosen": "\n\nAssistant: x", "rejected": "\n\nAssistant: y"}, "no 'Human:' turn"),
    ({"chosen": "preamble\n\nHuman: A\n\nAssistant: x", "rejected": "\n\nHuman: A\n\nAssistant: y"}, "before"),
])
def test_unusable_transcripts_are_refused_with_the_reason(record, reason):
    with pytest.raises(ConversationError, match=reason):
        split_transcript_pair(record["chosen"], record["rejected"])


def test_transcript_helpers():
    assert is_transcript(SINGLE["chosen"]) and not is_transcript("Assistant was here") and not is_transcript(3)
    assert transcript_messages("Human: hi\n\nAssistant: yo") == [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]


def test_a_transcript_file_is_detected_as_preference_and_every_row_trains(tmp_path):
    records = [SINGLE, MULTI] * 3
    assert detect_format(records).kind == "preference"
    path = tmp_path / "hh_style_pairs.jsonl"  # written by this test, labelled as such
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    organized = tmp_path / "organized" / "streaming"
    organized.mkdir(parents=True)
    manifest = {"capability": "streaming", "files": [],
                "method_files": [{"path": str(path), "format": "trl_preference", "kind": "preference",
                                  "records": len(records)}]}
    (organized / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    dropped: dict[str, int] = {}
    rows, files = load_rows("preference", tmp_path / "organized", "streaming", dropped)
    assert len(rows) == len(records) and not dropped and files == [str(path)]


def test_a_file_with_no_usable_row_is_not_named_as_a_source(tmp_path, caplog):
    from nexus.methods import resolve
    from nexus.methods.rows import check_method_data

    good = tmp_path / "pairs_written_by_this_test.jsonl"
    good.write_text(json.dumps(SINGLE) + "\n", encoding="utf-8")
    bad = tmp_path / "unpaired_transcripts_written_by_this_test.jsonl"  # prompts differ: no pair
    bad.write_text(json.dumps({"chosen": "\n\nHuman: A\n\nAssistant: x",
                               "rejected": "\n\nHuman: B\n\nAssistant: y"}) + "\n", encoding="utf-8")
    folder = tmp_path / "organized" / "streaming"
    folder.mkdir(parents=True)
    entries = [{"path": str(p), "format": "trl_preference", "kind": "preference", "records": 1} for p in (good, bad)]
    (folder / "manifest.json").write_text(json.dumps({"capability": "streaming", "files": [],
                                                     "method_files": entries}), encoding="utf-8")
    with caplog.at_level("WARNING", logger="nexus"):
        found = check_method_data(resolve("dpo"), "streaming", tmp_path / "organized")
    assert found.files == [str(good)] and len(found.rows) == 1
    assert found.source == f"files: {good} (1 rows)"
    assert any(str(bad) in r.message and "no usable preference row" in r.message and "differ" in r.message
               for r in caplog.records)

