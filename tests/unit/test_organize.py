"""The dataset organizer on the real samples: routing, manifests, untouched sources, atomic output."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nexus import modality, walk
from nexus import organize as org
from nexus.capabilities import formats_of, load
from nexus.catalog_summary import format_summary
from nexus.organize import (
    METHOD_KINDS,
    OrganizeError,
    capabilities_for_format,
    organize,
)
from nexus.registry import CAPABILITIES

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = Path("data/samples")  # relative: the catalog keeps paths as given
LF = "data/samples/llamafactory/data"

EXPECTED = {
    # path: (format, kind, capabilities)
    "data/samples/gsm8k/train_first500.jsonl": ("gsm8k", "math_qa", ["cot", "reasoning"]),
    f"{LF}/alpaca_en_demo.json": ("alpaca", "instruction", ["streaming"]),
    f"{LF}/glaive_toolcall_en_demo.json": ("sharegpt_tools", "tool_calls", ["tools"]),
    f"{LF}/reason_tool_use_demo_50.jsonl": ("messages_tools", "tool_calls", ["tools"]),
    f"{LF}/mllm_demo.json": ("mllm_image", "image", ["omni", "vision_qa", "tri_streaming"]),
    "data/samples/omni/digits_captions.json": ("mllm_image", "image", ["omni"]),  # its folder picks omni
    "data/samples/omni/spoken_digits.json": ("mllm_audio", "audio", ["omni"]),
    "data/samples/omni/llamafactory/mllm_audio_demo.json": ("mllm_audio", "audio", ["omni"]),
    "data/samples/vision_qa/digits_questions.json": ("mllm_image", "image", ["vision_qa"]),
    "data/samples/podcast/scripts.jsonl": ("messages", "chat", ["podcast"]),  # its folder picks podcast
    "data/samples/tri_streaming/conversations.json": ("mllm_image", "image", ["tri_streaming"]),
    "data/samples/tri_streaming/text_chats.json": ("messages", "chat", ["tri_streaming"]),
    "data/samples/image_generation/captions.jsonl": ("image_caption", "image_caption", ["image_generation"]),
    "data/samples/video_generation/captions.jsonl": ("video_caption", "video_caption", ["video_generation"]),
    "data/samples/remotion_explainer/explainers.jsonl": ("explainer_code", "explainer_code", ["remotion_explainer"]),
    "data/samples/video_understanding/digit_sequences.json": ("mllm_video", "video", ["video_understanding"]),
    "data/samples/video_understanding/llamafactory/mllm_video_demo.json":
        ("mllm_video", "video", ["video_understanding"]),
    "data/samples/xlam_function_calling_60k/xlam_function_calling_60k_first15.json":
        ("xlam", "tool_calls", ["tools"]),
    "data/samples/xlam_function_calling_60k/hf_subset/data/train-00000-of-00001.parquet":
        ("xlam", "tool_calls", ["tools"]),
    f"{LF}/v1_dpo_demo.jsonl": ("llamafactory_v1_preference", "preference", []),
    f"{LF}/kto_en_demo_first100.json": ("conversation_kto", "unpaired_preference", []),
    f"{LF}/c4_demo_first100.jsonl": ("text", "text", []),
    "data/samples/safety_refusal/refusal_direction_splits/harmful_train.json":
        ("prompt_only", "prompt_only", []),
    "data/samples/safety_refusal/refusal_direction_splits/harmless_train_first500.json":
        ("prompt_only", "prompt_only", []),
}
RECORDS = {"data/samples/gsm8k/train_first500.jsonl": 500, f"{LF}/alpaca_en_demo.json": 999,
           f"{LF}/kto_en_demo_first100.json": 100, f"{LF}/c4_demo_first100.jsonl": 100}


def _tree_digest(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        p.relative_to(folder).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)
    return ROOT


def test_samples_are_routed_and_left_untouched(at_root, tmp_path):
    before = _tree_digest(SAMPLES)
    out = tmp_path / "organized"
    catalog = organize([SAMPLES, Path("data/does-not-exist")], out)
    assert _tree_digest(SAMPLES) == before

    got = {f.path: (f.format, f.kind) for f in catalog.files}
    assert got == {path: (fmt, kind) for path, (fmt, kind, _) in EXPECTED.items()}
    text_caps = [c.name for c in CAPABILITIES.values() if c.group == "text"]
    for entry in catalog.files:  # example files go where a formatter for their format is
        if entry.kind in METHOD_KINDS:
            continue
        takers = [n for n in CAPABILITIES if entry.format in formats_of(n)]
        named = org.folder_capability(Path(entry.path))
        assert entry.capabilities == ([named] if named in takers else takers)  # a capability's folder picks it
        for name in entry.capabilities:  # routed means formatted: no file is dropped at load time
            assert entry.format in load(name).FORMATTERS
    method_files = {f.path: f for f in catalog.files if f.kind in METHOD_KINDS}
    assert method_files[f"{LF}/v1_dpo_demo.jsonl"].capabilities == ["streaming"]  # general chat
    assert method_files[f"{LF}/kto_en_demo_first100.json"].capabilities == ["streaming"]
    assert method_files[f"{LF}/c4_demo_first100.jsonl"].capabilities == text_caps
    harmful = method_files["data/samples/safety_refusal/refusal_direction_splits/harmful_train.json"]
    assert harmful.capabilities == text_caps and harmful.label == "harmful"
    assert method_files["data/samples/safety_refusal/refusal_direction_splits/"
                        "harmless_train_first500.json"].label == "harmless"
    assert "for dpo, orpo of the general-chat capabilities" in method_files[f"{LF}/v1_dpo_demo.jsonl"].why
    for entry in catalog.files:
        assert entry.status == ("placed" if entry.capabilities else "unplaced")
        assert entry.sha256 == hashlib.sha256(Path(entry.path).read_bytes()).hexdigest()
        assert entry.why
    for path, n in RECORDS.items():
        assert next(f.records for f in catalog.files if f.path == path) == n
    assert catalog.unplaced == []
    assert any(n.startswith("cot: no preference file; dpo/orpo/kto pairs are built at training time")
               for n in catalog.notes)
    assert not any(n.startswith("streaming: no preference file") for n in catalog.notes)
    assert "data/does-not-exist does not exist; skipped" in " ".join(catalog.notes)
    assert "skipped 2034 media files" in " ".join(catalog.notes)
    assert not any(n.startswith("omni: no preference file") for n in catalog.notes)  # sft only

    written = json.loads((out / "catalog.json").read_text(encoding="utf-8"))
    assert written == catalog.to_dict()
    assert set(written) == {"files", "models", "notes"}
    assert set(written["files"][0]) == {"path", "format", "kind", "capabilities", "records", "sha256",
                                        "status", "why", "label", "usable", "invalid", "problems"}
    caps = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert caps == sorted({c for f in catalog.files for c in f.capabilities})
    assert {"cot", "reasoning", "thinking", "tools", "streaming"} <= set(caps)
    tools = json.loads((out / "tools" / "manifest.json").read_text(encoding="utf-8"))
    assert tools["capability"] == "tools"
    assert {f["path"] for f in tools["files"]} == {p for p, v in EXPECTED.items() if "tools" in v[2]}
    assert set(tools["files"][0]) == {"path", "format", "kind", "records", "usable", "invalid", "sha256"}
    assert {f["kind"] for f in tools["method_files"]} == {"text", "prompt_only"}  # cpt and safety data
    streaming = json.loads((out / "streaming" / "manifest.json").read_text(encoding="utf-8"))
    assert {f["kind"] for f in streaming["method_files"]} == {"text", "prompt_only", "preference",
                                                              "unpaired_preference"}
    assert sorted(p.name for p in (out / "cot").iterdir()) == ["manifest.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["organized"]  # no temp dir left behind


def test_unknown_and_unreadable_files_are_unplaced_with_reasons(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "mystery.jsonl").write_text('{"foo": 1, "bar": 2}\n', encoding="utf-8")
    (raw / "broken.jsonl").write_text('{"text": "ok"}\n{"text": \n', encoding="utf-8")
    (raw / "sheet.xlsx").write_bytes(b"PK")
    (raw / "README.md").write_text("docs", encoding="utf-8")
    (raw / ".hidden.jsonl").write_text("{", encoding="utf-8")
    (raw / "photo.jpg").write_bytes(b"\xff\xd8")
    catalog = organize([raw], tmp_path / "out")
    why = {Path(f.path).name: f.why for f in catalog.files}
    assert set(why) == {"mystery.jsonl", "broken.jsonl", "sheet.xlsx"}
    assert all(f.status == "unplaced" and not f.capabilities for f in catalog.files)
    assert why["mystery.jsonl"].startswith("unrecognized: no known schema uses keys bar, foo")
    assert "broken.jsonl: line 2 (record 2)" in why["broken.jsonl"]
    assert "unsupported file type '.xlsx'" in why["sheet.xlsx"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["catalog.json"]


def test_failure_midway_leaves_no_output_and_no_temp_dir(tmp_path, monkeypatch, at_root):
    calls = []
    real_write = org._write_json

    def failing_write(path, data):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full (simulated)")
        real_write(path, data)

    monkeypatch.setattr(org, "_write_json", failing_write)
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(OSError, match="simulated"):
        organize([SAMPLES], work / "organized")
    assert list(work.iterdir()) == []


def test_rerun_replaces_output_and_a_failed_rerun_keeps_the_old_one(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ROOT / SAMPLES / "gsm8k" / "train_first500.jsonl", src / "gsm.jsonl")
    out = tmp_path / "out"
    organize([src], out)
    (out / "stale").mkdir()
    (out / "stale" / "manifest.json").write_text("{}", encoding="utf-8")
    organize([src], out)
    assert not (out / "stale").exists()  # generated files from an older run are replaced
    before = _tree_digest(out)
    monkeypatch.setattr(org, "_manifest", lambda name, files: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        organize([src], out)
    assert _tree_digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]


def test_out_dir_inside_a_source_is_not_scanned(tmp_path):
    data = tmp_path / "data"
    (data / "raw").mkdir(parents=True)
    shutil.copy(ROOT / SAMPLES / "gsm8k" / "train_first500.jsonl", data / "raw" / "gsm.jsonl")
    organize([data], data / "organized")
    catalog = organize([data], data / "organized")  # second run sees its own output
    assert [Path(f.path).name for f in catalog.files] == ["gsm.jsonl"]


def test_move_only_behind_the_flag_and_only_from_raw(tmp_path):
    raw, other = tmp_path / "raw", tmp_path / "other"
    raw.mkdir()
    other.mkdir()
    gsm = ROOT / SAMPLES / "gsm8k" / "train_first500.jsonl"
    shutil.copy(gsm, raw / "gsm.jsonl")
    shutil.copy(gsm, other / "gsm_elsewhere.jsonl")
    (raw / "mystery.jsonl").write_text('{"foo": 1}\n', encoding="utf-8")
    out = tmp_path / "out"

    organize([raw, other], out, raw_dir=raw)
    assert (raw / "gsm.jsonl").exists()  # no flag, no move

    catalog = organize([raw, other], out, move=True, raw_dir=raw)
    assert not (raw / "gsm.jsonl").exists() and (out / "cot" / "gsm.jsonl").exists()
    assert (other / "gsm_elsewhere.jsonl").exists()  # outside raw: never moved
    assert (raw / "mystery.jsonl").exists()  # unplaced: never moved
    paths = {f.path for f in catalog.files}
    assert (out / "cot" / "gsm.jsonl").as_posix() in paths
    manifest = json.loads((out / "reasoning" / "manifest.json").read_text(encoding="utf-8"))
    assert (out / "cot" / "gsm.jsonl").as_posix() in {f["path"] for f in manifest["files"]}

    again = organize([raw, other], out, raw_dir=raw)  # the moved file survives a rerun
    assert (out / "cot" / "gsm.jsonl").exists()
    assert (out / "cot" / "gsm.jsonl").as_posix() in {f.path for f in again.files}


def test_failed_move_is_rolled_back(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy(ROOT / SAMPLES / "gsm8k" / "train_first500.jsonl", raw / "gsm.jsonl")
    real_rename = org.os.rename

    def failing_rename(src, dst):
        if ".tmp-" in str(src):
            raise OSError("rename failed (simulated)")
        real_rename(src, dst)

    monkeypatch.setattr(org.os, "rename", failing_rename)
    with pytest.raises(OSError, match="simulated"):
        organize([raw], tmp_path / "out", move=True, raw_dir=raw)
    assert (raw / "gsm.jsonl").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


def test_bad_arguments(tmp_path):
    with pytest.raises(OrganizeError, match="head_records must be at least 1"):
        organize([tmp_path], tmp_path / "out", head_records=0)
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(OrganizeError, match="is not a folder"):
        organize([tmp_path], tmp_path / "file")


def test_sort_models(tmp_path):
    models = tmp_path / "models"
    for name, config in {
        "decoder": {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 10},
        "siglip": {"model_type": "siglip_vision_model", "architectures": ["SiglipVisionModel"]},
        "whisper": {"model_type": "whisper", "architectures": ["WhisperForConditionalGeneration"],
                    "is_encoder_decoder": True},
    }.items():
        (models / name).mkdir(parents=True)
        (models / name / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (models / "not-a-model").mkdir()
    notes: list[str] = []
    found = modality.sort_models([models, tmp_path / "absent"], notes)
    assert [(Path(m["path"]).name, m["role"], m["modalities"]) for m in found] == [
        ("decoder", "decoder", ["text"]),
        ("siglip", "encoder", ["vision"]),
        ("whisper", "encoder-decoder", ["text", "audio_in"]),
    ]
    assert notes == [f"model folder {(tmp_path / 'absent').as_posix()} does not exist; skipped"]
    catalog = organize([], tmp_path / "out", model_dirs=[models])
    assert json.loads((tmp_path / "out" / "catalog.json").read_text())["models"] == found
    assert (models / "siglip" / "config.json").exists()  # folders are not moved
    assert "siglip: encoder (vision)" in format_summary(catalog)


def test_routing_follows_the_formatters():
    assert capabilities_for_format("gsm8k") == ["cot", "reasoning", "thinking"]
    assert capabilities_for_format("xlam") == ["tools"]  # thinking has no xlam formatter
    assert capabilities_for_format("messages_tools") == ["thinking", "tools"]
    assert capabilities_for_format("llamafactory_v1_preference") == []
    assert capabilities_for_format(None) == []


def test_summary_lists_capabilities_and_unplaced(at_root, tmp_path):
    text = format_summary(organize([SAMPLES], tmp_path / "o"))
    assert text.splitlines()[0].endswith("24 data files into " + (tmp_path / "o").as_posix()
                                         + ": 24 placed, 0 unplaced")
    assert "  cot " in text and "  vision_qa " in text and "unplaced" not in text.split("\n", 1)[1]


def test_organize_stage(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(f"organize:\n  sources: [{(ROOT / SAMPLES / 'gsm8k').as_posix()}, missing]\n",
                      encoding="utf-8")
    script = ROOT / "stages" / "organize.py"
    ok = subprocess.run([sys.executable, str(script), "--out", "organized", "--params", str(params)],
                        capture_output=True, text=True, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "1 placed" in ok.stdout and (tmp_path / "organized" / "cot" / "manifest.json").exists()
    bad = subprocess.run([sys.executable, str(script), "--out", "organized", "--params", "nope.yaml"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 1 and bad.stderr.startswith("error: nope.yaml: not found")
    assert len(bad.stderr.strip().splitlines()) == 1


def test_method_files_follow_a_capability_folder_and_unlabelled_prompts_stay_unplaced(tmp_path):
    """A preference file under data/raw/cot/ goes to cot only; prompts without a safety label are
    listed as unplaced with what to do."""
    raw = tmp_path / "raw"
    (raw / "cot").mkdir(parents=True)
    shutil.copy(ROOT / LF / "v1_dpo_demo.jsonl", raw / "cot" / "pairs.jsonl")
    prompts = json.loads((ROOT / "data/samples/safety_refusal/refusal_direction_splits/harmful_train.json")
                         .read_text(encoding="utf-8"))[:3]
    (raw / "questions.json").write_text(json.dumps(prompts), encoding="utf-8")
    catalog = organize([raw], tmp_path / "o")
    by_name = {Path(f.path).name: f for f in catalog.files}
    assert by_name["pairs.jsonl"].capabilities == ["cot"]
    assert "of capability cot (its folder is named after it)" in by_name["pairs.jsonl"].why
    assert by_name["questions.json"].status == "unplaced"
    assert "name the file *harmful* or *harmless*" in by_name["questions.json"].why
    manifest = json.loads((tmp_path / "o" / "cot" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["files"] == [] and [f["kind"] for f in manifest["method_files"]] == ["preference"]
    assert manifest["preference_pairs"] == f"files: {raw / 'cot' / 'pairs.jsonl'}".replace("\\", "/")


# --- every file is judged alone ------------------------------------------------------------------


@pytest.fixture
def deadline():
    """Fail (not hang) if the test blocks for 20 s, e.g. on opening a FIFO: a real SIGALRM."""

    def expire(signum, frame):
        raise TimeoutError("blocked for 20 s (was a FIFO opened?)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _gsm(path: Path, n: int = 3) -> Path:
    """``n`` real GSM8K sample records (data/samples) written to ``path``."""
    lines = (ROOT / SAMPLES / "gsm8k" / "train_first500.jsonl").read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(lines[:n]) + "\n", encoding="utf-8")
    return path


def test_paths_that_cannot_be_data_are_reported_unopened(tmp_path, deadline):
    raw = tmp_path / "raw"
    (raw / "sub").mkdir(parents=True)
    _gsm(raw / "sub" / "real.jsonl")
    os.symlink("sub/real.jsonl", raw / "inside_link.jsonl")  # inside the root: followed, listed once
    os.symlink("/etc/passwd", raw / "passwd.jsonl")
    os.symlink("/etc", raw / "etc_folder")
    os.symlink("loop.jsonl", raw / "loop.jsonl")
    os.symlink("missing.jsonl", raw / "broken.jsonl")
    os.mkfifo(raw / "pipe.jsonl")
    (raw / "empty_dir.jsonl").mkdir()
    (raw / "dir.json").mkdir()
    _gsm(raw / "dir.json" / "inner.jsonl")  # a folder named like a file: reported, and still scanned
    _gsm(raw / "locked.jsonl")
    os.chmod(raw / "locked.jsonl", 0)
    (raw / "locked_dir").mkdir()
    _gsm(raw / "locked_dir" / "hidden_by_mode.jsonl")
    os.chmod(raw / "locked_dir", 0)
    try:
        catalog = organize([raw], tmp_path / "out")
    finally:
        os.chmod(raw / "locked.jsonl", 0o600)
        os.chmod(raw / "locked_dir", 0o700)
    why = {Path(f.path).relative_to(raw).as_posix(): f.why for f in catalog.unplaced}
    assert why == {
        "dir.json": "a folder named like a data file (.json), not a file; files inside it are scanned on "
                    "their own",
        "empty_dir.jsonl": "a folder named like a data file (.jsonl), not a file; files inside it are "
                           "scanned on their own",
        "etc_folder": f"a symlink out of the data root {raw.resolve()} (-> /etc); copy the file into the "
                      f"folder instead",
        "locked_dir": "folder not readable by its owner (mode 000); chmod u+rx",
        "broken.jsonl": "a broken symlink (-> missing.jsonl: no such file); remove the link",
        "locked.jsonl": "file not readable by its owner (mode 000); chmod u+r",
        "loop.jsonl": "a symlink loop (-> loop.jsonl); remove the link",
        "passwd.jsonl": f"a symlink out of the data root {raw.resolve()} (-> /etc/passwd); copy the file "
                        f"into the folder instead",
        "pipe.jsonl": "a FIFO (named pipe), not a regular file; never opened",
    }
    placed = sorted(Path(f.path).relative_to(raw).as_posix() for f in catalog.files if f.status == "placed")
    assert placed == ["dir.json/inner.jsonl", "inside_link.jsonl"]  # sub/real.jsonl is the same file
    assert all(f.sha256 is None and f.records is None for f in catalog.unplaced)
    summary = format_summary(catalog)
    assert f"  {raw / 'pipe.jsonl'}: a FIFO (named pipe)" in summary


def test_a_single_file_source_is_judged_too(tmp_path, deadline):
    os.mkfifo(tmp_path / "pipe.jsonl")
    catalog = organize([tmp_path / "pipe.jsonl"], tmp_path / "out")
    assert [(f.status, f.why) for f in catalog.files] == [
        ("unplaced", "a FIFO (named pipe), not a regular file; never opened")]


def test_judge_path_never_opens_and_follows_links_only_inside_the_root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    _gsm(root / "a.jsonl")
    os.symlink(root / "a.jsonl", root / "abs_link.jsonl")
    os.symlink(tmp_path / "root/../root/a.jsonl", root / "dotdot_link.jsonl")
    os.symlink("../outside.jsonl", root / "out_link.jsonl")
    _gsm(tmp_path / "outside.jsonl")
    real = os.path.realpath(root)
    assert walk.judge_path(root / "a.jsonl", real) is None
    assert walk.judge_path(root / "abs_link.jsonl", real) is None
    assert walk.judge_path(root / "dotdot_link.jsonl", real) is None
    assert walk.judge_path(root / "out_link.jsonl", real).startswith("a symlink out of the data root")
    assert walk.judge_path(root / "out_link.jsonl", None) is None  # a file named as a source itself
    os.chmod(root / "a.jsonl", 0o200)  # write-only for its owner
    assert walk.judge_path(root / "a.jsonl", real) == "file not readable by its owner (mode 200); chmod u+r"


def test_every_record_is_checked_and_a_file_with_no_usable_record_is_unplaced(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    kto = json.loads((ROOT / LF / "kto_en_demo_first100.json").read_text(encoding="utf-8"))[:3]
    for record in kto:  # the real KTO sample records, their boolean labels spelled as strings
        record["label"] = str(record["label"]).lower()
    (raw / "kto_strings.json").write_text(json.dumps(kto), encoding="utf-8")
    chats = json.loads((ROOT / LF / "glaive_toolcall_en_demo.json").read_text(encoding="utf-8"))[:6]
    with_calls = [r for r in chats if any(t["from"] == "function_call" for t in r["conversations"])]
    mixed = [*with_calls, {"conversations": "a string where the turns should be", "tools": "[]"}, with_calls[0]]
    (raw / "mixed.json").write_text(json.dumps(mixed), encoding="utf-8")
    out = tmp_path / "out"
    catalog = organize([raw], out)
    by_name = {Path(f.path).name: f for f in catalog.files}
    bad = by_name["kto_strings.json"]
    assert (bad.status, bad.records, bad.usable, bad.invalid) == ("unplaced", 3, 0, 3)
    assert bad.why == "no usable record: record 1: label is the string 'true', expected a boolean (true/false)"
    assert bad.capabilities == [] and len(bad.problems) == 3
    good = by_name["mixed.json"]
    n = len(with_calls)
    assert (good.status, good.records, good.usable, good.invalid) == ("placed", n + 2, n + 1, 1)
    assert good.problems == [f"record {n + 1}: conversations is a string, expected a list of turns"]
    manifest = json.loads((out / "tools" / "manifest.json").read_text(encoding="utf-8"))
    assert [(Path(f["path"]).name, f["records"], f["usable"], f["invalid"]) for f in manifest["files"]] == [
        ("mixed.json", n + 2, n + 1, 1)]
    assert not any("kto_strings" in json.dumps(m) for m in
                   (json.loads(p.read_text()) for p in out.glob("*/manifest.json")))
    summary = format_summary(catalog)
    assert f"mixed.json: 1 of {n + 2} not usable (record {n + 1}: conversations is a string" in summary
    assert "kto_strings.json: no usable record: record 1: label is the string 'true'" in summary


def test_a_check_or_reader_that_trips_on_one_file_does_not_stop_the_run(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    raw.mkdir()
    _gsm(raw / "good.jsonl")
    odd = _gsm(raw / "odd.jsonl")

    def picky(record, fmt, kind, source):
        if source.name == "odd.jsonl" and record["question"].startswith("Natalia"):
            raise TypeError("a shape the check did not expect")
        return None

    entry = org.classify_file(odd, check=picky)
    assert (entry.status, entry.usable, entry.invalid) == ("placed", 2, 1)
    assert entry.problems == ["record 1: cannot be checked (TypeError: a shape the check did not expect)"]

    real_detect = org.formats.detect_format

    def detect(records):  # an unexpected failure deep in one file's detection
        if "trip" in records[0]:
            raise RecursionError("maximum recursion depth exceeded")
        return real_detect(records)

    monkeypatch.setattr(org.formats, "detect_format", detect)
    (raw / "trips.jsonl").write_text('{"trip": 1}\n', encoding="utf-8")
    catalog = organize([raw], tmp_path / "out")
    why = {Path(f.path).name: (f.status, f.why) for f in catalog.files}
    assert why["trips.jsonl"] == ("unplaced", "could not be read as data (RecursionError: maximum recursion "
                                              "depth exceeded)")
    assert why["good.jsonl"][0] == why["odd.jsonl"][0] == "placed"


def test_reasons_and_paths_stay_on_one_line(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "two\nlines.jsonl").write_text('{"foo": 1}\n', encoding="utf-8")
    (raw / "bad\rname.jsonl").write_text('{"text": \n', encoding="utf-8")
    catalog = organize([raw], tmp_path / "out")
    assert all("\n" not in f.why and "\r" not in f.why for f in catalog.files)
    lines = format_summary(catalog).splitlines()
    assert any(line.startswith(f"  {raw}/two\\nlines.jsonl: unrecognized") for line in lines)
    bad = f"{raw}/bad\\rname.jsonl"
    assert any(line.startswith(f"  {bad}: unreadable: {bad}: line 1") for line in lines)
    written = json.loads((tmp_path / "out" / "catalog.json").read_text(encoding="utf-8"))
    assert sorted(Path(f["path"]).name for f in written["files"]) == ["bad\rname.jsonl", "two\nlines.jsonl"]


def test_the_dvc_stage_never_hashes_data_raw_and_never_deletes_its_output():
    """DVC opens every file of a dep folder to hash it (a FIFO there hangs `dvc repro`) and deletes
    a stage's outs before running it: the organize stage scans data/raw itself and keeps its out."""
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]["organize"]
    assert "data/raw" not in stage["deps"] and stage["always_changed"] is True
    assert stage["outs"] == [{"data/organized": {"persist": True}}]
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    assert "data/raw" in params["organize"]["sources"]  # ... and the organizer does scan it
