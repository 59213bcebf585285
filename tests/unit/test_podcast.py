"""podcast: the script format and its checks, the formatter on the real sample documents, scoring,
the two-voice rendering, and ``nexus podcast`` as a user runs it (real voices, real files)."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from nexus.atomic import leftover_temps
from nexus.capabilities import SkipRecord
from nexus.capabilities.podcast import (
    ScriptError,
    check_script,
    coverage,
    excerpt,
    format_chat,
    key_terms,
    parse_script,
    podcast_prompt,
    round_trip_metrics,
    score,
    voice_lines,
)
from tests.project import ROOT, env

SAMPLES = ROOT / "data" / "samples" / "podcast" / "scripts.jsonl"
TURNS = [{"speaker": "Alex", "text": "Welcome. Today we talk about spoken digits."},
         {"speaker": "Sam", "text": "Six speakers recorded fifty takes of each digit."},
         {"speaker": "Alex", "text": "What are the files like?"},
         {"speaker": "Sam", "text": "They are short recordings at eight kilohertz."}]
DOCUMENT = ("The Free Spoken Digit Dataset holds recordings of people saying digits. Six speakers recorded "
            "fifty takes of each digit. The recordings are short files at eight kilohertz.")


def records() -> list[dict]:
    return [json.loads(line) for line in SAMPLES.read_text(encoding="utf-8").splitlines()]


def test_parse_script_reads_turns_and_names_what_is_wrong() -> None:
    assert parse_script(json.dumps(TURNS)) == TURNS
    assert parse_script("Here it is:\n```json\n" + json.dumps(TURNS) + "\n```") == TURNS
    for reply, words in [("no list here", "no JSON list"), ('[{"speaker": "Alex", "text": "hi"', "no JSON list"),
                         ('[{"speaker": "Alex", "text": "hi"},]', "not valid JSON"), ("[]", "non-empty list"),
                         ('[{"speaker": "Alex"}]', "turn 0 needs"), ('["hi"]', "turn 0 is not an object")]:
        with pytest.raises(ScriptError, match=words):
            parse_script(reply)


def test_check_script_wants_two_alternating_hosts_within_bounds() -> None:
    check_script(TURNS, 4, 12)
    with pytest.raises(ScriptError, match="outside 5..12"):
        check_script(TURNS, 5, 12)
    with pytest.raises(ScriptError, match="do not alternate"):
        check_script([TURNS[0], TURNS[2], TURNS[1], TURNS[3]], 2, 12)
    with pytest.raises(ScriptError, match="do not alternate"):
        check_script([TURNS[0], TURNS[1], {"speaker": "Kim", "text": "Hi."}, TURNS[1]], 2, 12)


def test_key_terms_and_coverage() -> None:
    terms = key_terms(DOCUMENT)
    assert terms[:4] == ["digit", "recordings", "free", "spoken"]  # most frequent first, then first seen
    assert len(terms) == 8 and not {"each", "fifty", "people"} & set(terms)  # common words are not key terms
    assert coverage("Recordings of a digit.", ["recordings", "digit", "speakers", "kilohertz"]) == 0.5
    assert coverage("anything", []) == 1.0


def test_excerpt_keeps_whole_sentences_and_mends_run_ons() -> None:
    text = "Alabama () is a state.Alabama is nicknamed the Yellowhammer State. " + "More words here. " * 60
    cut = excerpt(text, words=12)
    assert cut == "Alabama is a state. Alabama is nicknamed the Yellowhammer State. More words here."
    assert excerpt('Known as the "Heart of Dixie".') == "Known as the \u201cHeart of Dixie\u201d."  # no JSON escapes
    with pytest.raises(ValueError, match="no words"):
        excerpt("   \n")


def test_every_sample_record_is_a_podcast_example_about_a_real_document() -> None:
    rows = records()
    assert len(rows) >= 300
    for record in rows:
        example = format_chat(record)
        turns = parse_script(example["reference"])
        check_script(turns, 4, 12)  # the project's scripts are within the default bounds
        assert example["prompt"][-1]["content"].startswith(podcast_prompt("")[:60])
        assert score(example["reference"], example)["format_ok"] == 1.0
        assert score(example["reference"], example)["coverage"] >= 0.25
    wiki = rows[4]["messages"][0]["content"]
    assert "Document:\nAlabama is a state in the Southeastern region" in wiki  # wiki_demo.txt line 5, mended


def test_formatter_drops_a_reply_that_is_not_a_script() -> None:
    record = {"messages": [{"role": "user", "content": podcast_prompt(DOCUMENT)},
                           {"role": "assistant", "content": "Sure! Alex: hello. Sam: hi."}]}
    with pytest.raises(SkipRecord, match="not a podcast script: no JSON list"):
        format_chat(record)


def test_score_of_replies() -> None:
    example = {"prompt": [{"role": "user", "content": podcast_prompt(DOCUMENT)}], "reference": json.dumps(TURNS)}
    good = score(json.dumps(TURNS), example)
    assert good["format_ok"] == good["parses"] == good["alternates"] == 1.0 and good["turns"] == 4.0
    assert 0 < good["coverage"] < 1
    assert score(json.dumps(TURNS), example, min_turns=6)["format_ok"] == 0.0  # the bounds come from params
    bad = score("Alex: Welcome to the show", example)
    assert bad == {"format_ok": 0.0, "parses": 0.0, "alternates": 0.0, "turns": 0.0, "coverage": 0.0}


def test_voice_lines_cast_hosts_in_order_of_appearance() -> None:
    turns = [TURNS[1], TURNS[0], TURNS[3]]
    assert voice_lines(turns, ["heart", "joe"]) == [("heart", TURNS[1]["text"]), ("joe", TURNS[0]["text"]),
                                                    ("heart", TURNS[3]["text"])]


def test_round_trip_voices_the_script_and_reads_it_back(tmp_path: Path) -> None:
    from nexus.speech.transcribe import Transcriber
    from tests.tiny import build_tiny_whisper

    transcriber = Transcriber(build_tiny_whisper(tmp_path))  # random weights: the plumbing, not the accuracy
    metrics = round_trip_metrics(json.dumps(TURNS[:2]), ["heart", "joe"], transcriber)
    assert metrics["rendered"] == 1.0 and 0.0 <= metrics["wer"] <= 1.0 and metrics["audio_s"] > 3
    assert round_trip_metrics("no script", ["heart", "joe"], transcriber) == {"rendered": 0.0}  # no wer: nothing voiced


def podcast(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nexus.cli", "podcast", "--params", str(ROOT / "params.yaml"),
                           *args], cwd=cwd, env=env(), capture_output=True, text=True, timeout=300)


def test_nexus_podcast_voices_a_script_with_two_voices(tmp_path: Path) -> None:
    (tmp_path / "doc.txt").write_text(DOCUMENT)
    (tmp_path / "script.json").write_text(json.dumps(TURNS))
    run = podcast("doc.txt", "--script", "script.json", "--out", "show", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "4 turns" in run.stdout and "Alex: heart, Sam: joe" in run.stdout
    script = json.loads((tmp_path / "show" / "script.json").read_text())
    assert script["voices"] == {"Alex": "heart", "Sam": "joe"} and script["excerpt"] == DOCUMENT
    frames = []
    for turn, expected in zip(script["turns"], TURNS, strict=True):
        assert (turn["speaker"], turn["text"]) == (expected["speaker"], expected["text"])
        with wave.open(str(tmp_path / "show" / turn["audio"])) as w:
            assert w.getframerate() == 24000 and w.getnchannels() == 1  # joe's 22.05 kHz resampled to heart's
            frames.append(w.getnframes())
    assert all(n > 24000 for n in frames)  # every line is more than a second of speech
    with wave.open(str(tmp_path / "show" / "podcast.wav")) as w:
        assert w.getnframes() > sum(frames)  # the turns and the pauses between them
    again = podcast("doc.txt", "--script", "show/script.json", "--voices", "joe,heart", "--out", "show", cwd=tmp_path)
    assert again.returncode == 0, again.stderr  # a script.json voiced again, hosts swapped, folder replaced
    assert json.loads((tmp_path / "show" / "script.json").read_text())["voices"] == {"Alex": "joe", "Sam": "heart"}


@pytest.mark.parametrize(("args", "words"), [
    (["missing.txt", "--script", "script.json"], "missing.txt: no such document"),
    (["empty.txt", "--script", "script.json"], "empty.txt: the document holds no words"),
    (["doc.txt", "--script", "bad.json"], "--script bad.json: not a podcast script"),
    (["doc.txt", "--script", "script.json", "--voices", "heart"], "--voices heart: give two voices"),
    (["doc.txt", "--script", "script.json", "--voices", "heart,alloy"], "unknown voice 'alloy'"),
    (["doc.txt", "--model", "nowhere"], "--model nowhere: not a model"),
])
def test_nexus_podcast_refuses_bad_input_in_one_line(tmp_path: Path, args: list[str], words: str) -> None:
    (tmp_path / "doc.txt").write_text(DOCUMENT)
    (tmp_path / "empty.txt").write_text(" \n")
    (tmp_path / "script.json").write_text(json.dumps(TURNS))
    (tmp_path / "bad.json").write_text(json.dumps([TURNS[0], TURNS[2]]))  # one host only
    run = podcast(*args, "--out", "show", cwd=tmp_path)
    assert run.returncode == 1 and words in run.stderr, run.stderr
    assert run.stderr.strip().count("\n") == 0 and run.stderr.startswith("error: ")
    assert not (tmp_path / "show").exists() and not leftover_temps(tmp_path / "show")


def test_nexus_podcast_with_an_untrained_model_says_to_train_it(tmp_path: Path, tiny_model_dir: Path) -> None:
    (tmp_path / "doc.txt").write_text(DOCUMENT)
    run = podcast("doc.txt", "--model", str(tiny_model_dir), "--max-new-tokens", "8", "--out", "show", cwd=tmp_path)
    assert run.returncode == 1 and "its reply is not a podcast script" in run.stderr, run.stderr
    assert "make train CAPS=podcast" in run.stderr and not (tmp_path / "show").exists()


@pytest.mark.skipif(not (ROOT.parent / "shared" / "datasets" / "llamafactory").is_dir(),
                    reason="../shared/datasets (the documents' source) is not beside this checkout")
def test_sample_scripts_are_what_the_builder_writes() -> None:
    run = subprocess.run([sys.executable, "data/make_podcast_samples.py", "--check"], cwd=ROOT, env=env(),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
