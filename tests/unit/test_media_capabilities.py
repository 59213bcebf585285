"""The omni, vision_qa and video_understanding capabilities on the real media samples: formatters,
held-out rules, scores, and where the organizer places the sample folders."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from nexus import capabilities
from nexus.capabilities import SkipRecord, omni, video_understanding, vision_qa
from nexus.examples import load_examples
from nexus.organize import organize

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = Path("data/samples")
FILES = {  # sample file: (format, capabilities, records)
    "omni/digits_captions.json": ("mllm_image", ["omni"], 600),  # a capability's folder picks it
    "omni/spoken_digits.json": ("mllm_audio", ["omni"], 300),
    "omni/llamafactory/mllm_audio_demo.json": ("mllm_audio", ["omni"], 3),
    "vision_qa/digits_questions.json": ("mllm_image", ["vision_qa"], 600),
    "video_understanding/digit_sequences.json": ("mllm_video", ["video_understanding"], 200),
    "video_understanding/llamafactory/mllm_video_demo.json": ("mllm_video", ["video_understanding"], 3),
    "llamafactory/data/mllm_demo.json": ("mllm_image", ["omni", "vision_qa", "tri_streaming"], 6),
}
MODULES = {"omni": omni, "vision_qa": vision_qa, "video_understanding": video_understanding}
PLACEHOLDER = {"images": "<image>", "audios": "<audio>", "videos": "<video>"}


@pytest.fixture
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)
    return ROOT


def _records(name: str) -> list[dict]:
    return json.loads((ROOT / SAMPLES / name).read_text(encoding="utf-8"))


def _check_contract(example: dict, folder: Path) -> None:
    assert example["completion"][-1]["role"] == "assistant" and len(example["completion"]) == 1
    assert example["reference"] == example["completion"][0]["content"].strip()
    assert example["prompt"][-1]["role"] == "user"
    used = [key for key in PLACEHOLDER if key in example]
    assert used, "an example carries media"
    text = "".join(m["content"] for m in example["prompt"])
    for key, mark in PLACEHOLDER.items():
        assert text.count(mark) == len(example.get(key, []))
        for ref in example.get(key, []):
            assert (folder / ref).is_file(), ref  # the record's own path, relative to its file


@pytest.mark.parametrize("name", list(FILES))
def test_every_sample_record_formats_to_a_contract_example(name):
    fmt, caps, n = FILES[name]
    records = _records(name)
    assert len(records) == n
    for cap in caps:
        fn = capabilities.load(cap).FORMATTERS[fmt]
        for record in records:
            _check_contract(fn(record), (ROOT / SAMPLES / name).parent)


def test_digit_examples_are_exact_single_digits():
    example = vision_qa.format_image(_records("vision_qa/digits_questions.json")[0])
    assert example["prompt"] == [{"role": "user", "content": "<image>What number is written in this image? "
                                                              "Answer with one digit."}]
    assert re.fullmatch(r"\d", example["reference"]) and example["images"][0].startswith("digits/d")
    spoken = omni.format_audio(_records("omni/spoken_digits.json")[0])
    assert spoken["audios"] == ["fsdd/0_george_0.wav"] and spoken["reference"] == "0"
    assert spoken["group"] == "speaker:george"
    clip = video_understanding.format_video(_records("video_understanding/digit_sequences.json")[0])
    assert clip["reference"] == "6 8 2" and clip["videos"] == ["clips/c000.mp4"]


def test_multi_turn_photo_record_keeps_its_earlier_turns_and_both_images():
    example = vision_qa.format_image(_records("llamafactory/data/mllm_demo.json")[0])
    assert [m["role"] for m in example["prompt"]] == ["user", "assistant", "user"]
    assert example["prompt"][2]["content"] == "What are they doing?<image>"
    assert example["images"] == ["mllm_demo_data/1.jpg", "mllm_demo_data/1.jpg"]
    assert example["reference"] == "They are celebrating on the soccer field."


def test_typed_parts_and_openai_input_audio():
    trl = {"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which digit?"}]},
                        {"role": "assistant", "content": [{"type": "text", "text": "4"}]}],
           "images": ["digits/d0004.png"]}
    assert vision_qa.format_image(trl)["prompt"][0]["content"] == "<image>Which digit?"
    openai = {"messages": [
        {"role": "user", "content": [{"type": "text", "text": "Say it: "},
                                     {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}]},
        {"role": "assistant", "content": "5"}]}
    example = omni.format_audio(openai)
    assert example["prompt"][0]["content"] == "Say it: <audio>"
    assert example["audios"] == ["data:audio/wav;base64,UklGRg=="]


@pytest.mark.parametrize("record, reason", [
    ({"messages": [{"role": "user", "content": "<image><image>Which?"}, {"role": "assistant", "content": "1"}],
      "images": ["a.png"]}, "2 <image> placeholder"),
    ({"messages": [{"role": "user", "content": "<audio>Which?"}, {"role": "assistant", "content": "1"}],
      "audios": ["a.wav"]}, "vision_qa takes only image"),
    ({"messages": [{"role": "user", "content": "<image>Which?"}, {"role": "assistant", "content": "<image>"}],
      "images": ["a.png"]}, "reply holds an <image>"),
    ({"messages": [{"role": "user", "content": "Which?"}, {"role": "assistant", "content": "1"}]}, "no image"),
    ({"messages": [{"role": "user", "content": "<image>Which?"}], "images": ["a.png"]}, "no non-empty assistant"),
])
def test_unusable_records_are_skipped_with_the_reason(record, reason):
    with pytest.raises(SkipRecord, match=re.escape(reason)):
        vision_qa.format_image(record)


def test_held_out_rules():
    audio = [omni.format_audio(r) for r in _records("omni/spoken_digits.json")]
    assert {omni.held_out(e) for e in audio if e["group"] == "speaker:theo"} == {True}
    assert {omni.held_out(e) for e in audio if e["group"] != "speaker:theo"} == {False}
    assert omni.held_out(omni.format_image(_records("omni/digits_captions.json")[0])) is None
    for record in _records("omni/llamafactory/mllm_audio_demo.json"):
        assert omni.held_out(omni.format_audio(record)) is False  # free-form: training only
    assert vision_qa.held_out(vision_qa.format_image(_records("llamafactory/data/mllm_demo.json")[0])) is False
    assert vision_qa.held_out(vision_qa.format_image(_records("vision_qa/digits_questions.json")[0])) is None
    video = video_understanding
    assert video.held_out(video.format_video(_records("video_understanding/digit_sequences.json")[0])) is None
    demo = _records("video_understanding/llamafactory/mllm_video_demo.json")[0]
    assert video.held_out(video.format_video(demo)) is False


def test_scores():
    image = {"reference": "7", "images": ["x.png"]}
    audio = {"reference": "7", "audios": ["x.wav"]}
    assert omni.score("The digit 7.", image) == {"accuracy": 1.0, "vision_accuracy": 1.0}
    assert omni.score("17", image) == {"accuracy": 0.0, "vision_accuracy": 0.0}
    assert omni.score("seven, I think 7", audio) == {"accuracy": 1.0, "audio_accuracy": 1.0}
    assert omni.score("no idea", audio) == {"accuracy": 0.0, "audio_accuracy": 0.0}
    assert vision_qa.score("3", {"reference": "3"}) == {"accuracy": 1.0}
    assert vision_qa.score("8, not 3", {"reference": "3"}) == {"accuracy": 0.0}
    assert vision_qa.score("She is cooking!", {"reference": "She is cooking."}) == {"accuracy": 1.0}
    seq = {"reference": "3 8 1"}
    assert video_understanding.score("3 8 1", seq) == {"accuracy": 1.0, "digit_accuracy": 1.0}
    assert video_understanding.score("The digits are 3, 8, 1.", seq)["accuracy"] == 1.0
    assert video_understanding.score("3 8", seq) == {"accuracy": 0.0, "digit_accuracy": pytest.approx(2 / 3)}
    assert video_understanding.score("3 8 1 4", seq) == {"accuracy": 0.0, "digit_accuracy": 1.0}
    assert video_understanding.score("1 8 3", seq) == {"accuracy": 0.0, "digit_accuracy": pytest.approx(1 / 3)}
    assert video_understanding.score("cooking", {"reference": "She is cooking."}) == {"accuracy": 0.0}


def test_organizer_places_the_media_samples_and_the_split_holds_out_a_speaker(at_root, tmp_path):
    out = tmp_path / "organized"
    catalog = organize([SAMPLES], out)
    got = {f.path: f for f in catalog.files}
    for name, (fmt, caps, n) in FILES.items():
        entry = got[(SAMPLES / name).as_posix()]
        assert (entry.format, entry.capabilities, entry.records, entry.usable, entry.status) == (fmt, caps, n, n,
                                                                                                "placed")
    for cap in MODULES:
        listed = {f["path"] for f in json.loads((out / cap / "manifest.json").read_text())["files"]}
        assert listed == {(SAMPLES / n).as_posix() for n, (_, caps, _) in FILES.items() if cap in caps}
    split = load_examples("omni", out, eval_size=12, sample_size=0, seed=42)
    assert not split.dropped
    held_groups = {e.get("group") for e in split.eval}
    train_groups = {e.get("group") for e in split.train}
    assert "speaker:theo" in held_groups and "speaker:theo" not in train_groups
    assert sum(e.get("group") == "speaker:theo" for e in split.eval) == 50  # every take of the unseen voice
    assert held_groups <= {"speaker:theo", None} and len(train_groups - {None}) == 5
    assert all(Path(ref).is_file() for e in split.eval for key in PLACEHOLDER for ref in e.get(key, []))
