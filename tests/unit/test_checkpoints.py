"""Resume logic: verified checkpoints, rotation, orphans, schedule changes, resumed loss history,
and a real SIGTERM-then-resume run past a corrupt checkpoint."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from nexus.checkpoints import (
    SCHEDULE_FILE,
    IncompleteCheckpointError,
    ScheduleChangedError,
    checkpoint_problem,
    clear_checkpoints,
    discard_checkpoint,
    find_resume_checkpoint,
    list_checkpoints,
    read_schedule_marker,
    remove_orphans,
    rotate_checkpoints,
    tidy_checkpoints,
    write_schedule_marker,
)
from nexus.config import ControllerParams
from nexus.controller import TrainingController
from nexus.live_metrics import LiveAtGlobalStep, live_logger, trim_metric_history
from nexus.trainer import run_loss
from tests.tiny import random_token_dataset, tiny_llama

torch.set_num_threads(2)

SCHEDULE = {"max_steps": 6, "learning_rate": 1e-3, "batch_size": 2, "seed": 0, "data": "sha256:ab12"}
QUIET = ControllerParams(cooldown_every_steps=0, max_gpu_temp_c=0)


pytestmark = pytest.mark.usefixtures("keep_signal_handlers")


class SigtermAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def make_trainer(out: Path, *callbacks: TrainerCallback) -> Trainer:
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=6,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        use_cpu=True,
        report_to="none",
        save_strategy="steps",
        save_steps=3,
        logging_steps=1,
        disable_tqdm=True,
        seed=0,
    )
    return Trainer(model=tiny_llama(), args=args, train_dataset=random_token_dataset(),
                   callbacks=list(callbacks))


def fake_checkpoint(root: Path, step: int, schedule: dict[str, Any] | None = SCHEDULE) -> Path:
    """A checkpoint folder as the Trainer leaves it; complete when ``schedule`` is given."""
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "max_steps": 6}))
    (folder / "adapter_model.safetensors").write_bytes(os.urandom(256))
    (folder / "optimizer.pt").write_bytes(os.urandom(128))
    if schedule is not None:
        write_schedule_marker(folder, schedule, step)
    return folder


# ---------------------------------------------------------------------------------------- real run
def test_sigterm_then_resume_past_a_corrupt_checkpoint_matches_an_uninterrupted_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    straight = make_trainer(tmp_path / "straight")
    straight.train()

    out = tmp_path / "run"
    controller = TrainingController(QUIET, SCHEDULE)
    first = make_trainer(out, SigtermAt(4), controller)
    with controller:
        first.train()
    assert controller.stopped_by_signal and first.state.global_step == 4
    assert [n for n, _ in list_checkpoints(out)] == [4, 3]
    assert checkpoint_problem(out / "checkpoint-4") is None

    # What a kill during the Trainer's own rotation left: marker present, weights gone. And the run
    # died while writing checkpoint-5: no marker. Both are skipped; checkpoint-3 is used.
    (out / "checkpoint-4" / "model.safetensors").unlink()
    fake_checkpoint(out, 5, schedule=None)
    with caplog.at_level(logging.WARNING, logger="nexus.checkpoints"):
        resume = find_resume_checkpoint(out, SCHEDULE)
    assert resume == out / "checkpoint-3"
    assert f"Skipping incomplete checkpoint {out / 'checkpoint-5'} (no valid {SCHEDULE_FILE}" in caplog.text
    assert f"Skipping incomplete checkpoint {out / 'checkpoint-4'} (model.safetensors is missing)" in caplog.text

    controller = TrainingController(QUIET, SCHEDULE)
    second = make_trainer(out, controller)
    with controller:
        second.train(resume_from_checkpoint=str(resume))
    assert not controller.stopped_by_signal
    assert second.state.global_step == 6
    assert {k: v for k, v in read_schedule_marker(out / "checkpoint-6").items() if k != "files"} == {
        "step": 6, "schedule": SCHEDULE}
    for name, weight in straight.model.state_dict().items():
        torch.testing.assert_close(second.model.state_dict()[name], weight, msg=name)
    # Rotation after checkpoint-6 verified: the unverifiable 5 and 4 went, 3 stays as the fallback.
    assert [n for n, _ in list_checkpoints(out)] == [6, 3]
    assert clear_checkpoints(out) == 2
    assert list_checkpoints(out) == []
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------------------------------- resume rules
def test_no_checkpoint_means_start_from_scratch(tmp_path: Path) -> None:
    assert find_resume_checkpoint(tmp_path / "missing", SCHEDULE) is None
    assert find_resume_checkpoint(tmp_path, SCHEDULE) is None
    fake_checkpoint(tmp_path, 2, schedule=None)
    assert find_resume_checkpoint(tmp_path, SCHEDULE) is None


def test_newest_is_chosen_by_step_number_not_by_name(tmp_path: Path) -> None:
    fake_checkpoint(tmp_path, 9)
    fake_checkpoint(tmp_path, 10)
    (tmp_path / "checkpoint-final").mkdir()
    (tmp_path / "checkpoint-11").write_text("a file, not a folder")
    assert find_resume_checkpoint(tmp_path, SCHEDULE) == tmp_path / "checkpoint-10"


def test_a_changed_schedule_names_each_key_and_the_fix(tmp_path: Path) -> None:
    fake_checkpoint(tmp_path, 3)
    changed = {**SCHEDULE, "max_steps": 10, "learning_rate": 5e-4}
    with pytest.raises(ScheduleChangedError) as info:
        find_resume_checkpoint(tmp_path, changed)
    message = str(info.value)
    assert "\n" not in message
    assert "learning_rate 0.001→0.0005" in message
    assert "max_steps 6→10" in message
    assert "seed" not in message
    assert str(tmp_path / "checkpoint-3") in message
    assert f"restore those params, or delete {tmp_path} to start over" in message
    assert isinstance(info.value, ValueError)


def test_added_or_removed_keys_count_as_changes(tmp_path: Path) -> None:
    fake_checkpoint(tmp_path, 3)
    with pytest.raises(ScheduleChangedError, match=r"grad_accum '<unset>'→4"):
        find_resume_checkpoint(tmp_path, {**SCHEDULE, "grad_accum": 4})
    smaller = {k: v for k, v in SCHEDULE.items() if k != "data"}
    with pytest.raises(ScheduleChangedError, match=r"data 'sha256:ab12'→'<unset>'"):
        find_resume_checkpoint(tmp_path, smaller)


def test_json_round_trip_is_not_a_change(tmp_path: Path) -> None:
    fake_checkpoint(tmp_path, 3, schedule={**SCHEDULE, "layers": (1, 2)})
    assert find_resume_checkpoint(tmp_path, {**SCHEDULE, "layers": [1, 2]}) == tmp_path / "checkpoint-3"


def test_a_corrupt_marker_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = fake_checkpoint(tmp_path, 3)
    bad = fake_checkpoint(tmp_path, 6)
    (bad / SCHEDULE_FILE).write_text('{"step": 6, "sched')
    with caplog.at_level(logging.WARNING, logger="nexus.checkpoints"):
        assert find_resume_checkpoint(tmp_path, SCHEDULE) == good
    assert "Unreadable" in caplog.text and "Skipping incomplete checkpoint" in caplog.text


def test_marker_is_written_atomically(tmp_path: Path) -> None:
    folder = fake_checkpoint(tmp_path, 7)
    written = json.loads((folder / SCHEDULE_FILE).read_text())
    assert (written["step"], written["schedule"]) == (7, SCHEDULE)
    write_schedule_marker(folder, {**SCHEDULE, "seed": 1}, 7)  # replaces in place
    assert read_schedule_marker(folder)["schedule"]["seed"] == 1
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["adapter_model.safetensors", SCHEDULE_FILE, "optimizer.pt", "trainer_state.json"])
    with pytest.raises(FileNotFoundError, match="checkpoint folder not found"):
        write_schedule_marker(tmp_path / "checkpoint-99", SCHEDULE, 99)


def test_clear_checkpoints_leaves_other_files(tmp_path: Path) -> None:
    fake_checkpoint(tmp_path, 3)
    fake_checkpoint(tmp_path, 6, schedule=None)
    (tmp_path / "model.safetensors").write_text("final model")
    (tmp_path / "checkpoint-notes").mkdir()
    assert clear_checkpoints(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-notes", "model.safetensors"]
    assert clear_checkpoints(tmp_path / "missing") == 0


# ---------------------------------------------------------------------------------------- verification
def test_a_missing_resized_or_changed_file_fails_verification(tmp_path: Path) -> None:
    folder = fake_checkpoint(tmp_path, 4)
    assert checkpoint_problem(folder) is None
    files = read_schedule_marker(folder)["files"]
    assert set(files) == {"adapter_model.safetensors", "optimizer.pt", "trainer_state.json"}
    assert all(len(entry["sha256"]) == 64 for entry in files.values())

    weights = folder / "adapter_model.safetensors"
    flipped = bytearray(weights.read_bytes())
    flipped[10] ^= 0xFF
    weights.write_bytes(bytes(flipped))  # same size, other bytes
    assert checkpoint_problem(folder) == f"adapter_model.safetensors does not match its sha256 in {SCHEDULE_FILE}"
    assert checkpoint_problem(folder, hashes=False) is None  # the fast path checks sizes only

    with (folder / "optimizer.pt").open("ab") as fh:
        fh.write(b"x")
    assert checkpoint_problem(folder, hashes=False) == "optimizer.pt is 129 bytes, 128 when the checkpoint was marked"
    (folder / "optimizer.pt").unlink()
    assert checkpoint_problem(folder, hashes=False) == "optimizer.pt is missing"


def test_a_marker_listing_no_files_is_not_trusted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = fake_checkpoint(tmp_path, 2)
    old = fake_checkpoint(tmp_path, 4, schedule=None)
    (old / SCHEDULE_FILE).write_text(json.dumps({"step": 4, "schedule": SCHEDULE}))  # an older Nexus's marker
    with caplog.at_level(logging.WARNING, logger="nexus.checkpoints"):
        assert find_resume_checkpoint(tmp_path, SCHEDULE) == good
    assert "lists no files (written by an older Nexus)" in caplog.text


def test_a_folder_without_trainer_state_or_weights_is_not_marked(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoint-3"
    folder.mkdir()
    (folder / "optimizer.pt").write_bytes(b"x")
    with pytest.raises(IncompleteCheckpointError, match=r"checkpoint-3: no trainer_state.json and no weights"):
        write_schedule_marker(folder, SCHEDULE, 3)
    assert not (folder / SCHEDULE_FILE).exists()


# ---------------------------------------------------------------------------------------- rotation
def test_rotation_goes_by_step_and_keeps_one_verified_fallback(tmp_path: Path) -> None:
    for step in (2, 4, 6):
        fake_checkpoint(tmp_path, step)
    future = time.time() + 3600
    os.utime(tmp_path / "checkpoint-2", (future, future))  # newest by mtime, oldest by step
    corrupt = fake_checkpoint(tmp_path, 8)
    (corrupt / "adapter_model.safetensors").unlink()
    newest = fake_checkpoint(tmp_path, 10)
    assert rotate_checkpoints(tmp_path, newest) == [tmp_path / "checkpoint-8", tmp_path / "checkpoint-4",
                                                    tmp_path / "checkpoint-2"]
    assert [n for n, _ in list_checkpoints(tmp_path)] == [10, 6]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-10", "checkpoint-6"]


def test_rotation_waits_until_the_newest_verifies(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fake_checkpoint(tmp_path, 2)
    fake_checkpoint(tmp_path, 4)
    newest = fake_checkpoint(tmp_path, 6)
    (newest / "trainer_state.json").write_text("{}")  # resized after marking
    with caplog.at_level(logging.WARNING, logger="nexus.checkpoints"):
        assert rotate_checkpoints(tmp_path, newest) == []
    assert [n for n, _ in list_checkpoints(tmp_path)] == [6, 4, 2]
    assert "Keeping every older checkpoint" in caplog.text and "trainer_state.json is 2 bytes" in caplog.text


def test_an_interrupted_removal_leaves_no_partial_checkpoint(tmp_path: Path) -> None:
    fake_checkpoint(tmp_path, 2)
    keep = fake_checkpoint(tmp_path, 4)
    # A kill between discard_checkpoint's rename and its rmtree: half-deleted, under the temp name.
    trash = tmp_path / ".checkpoint-2.removing.tmp"
    (tmp_path / "checkpoint-2").rename(trash)
    (trash / "adapter_model.safetensors").unlink()
    assert [n for n, _ in list_checkpoints(tmp_path)] == [4]
    assert find_resume_checkpoint(tmp_path, SCHEDULE) == keep
    assert remove_orphans(tmp_path) == [trash]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-4"]


def test_orphans_are_only_our_own_temp_names(tmp_path: Path) -> None:
    ckpts, models = tmp_path / "checkpoints" / "cot", tmp_path / "models" / "capabilities"
    done = fake_checkpoint(ckpts, 3)
    marker_tmp = done / f".{SCHEDULE_FILE}.k2j4_x9a.tmp"
    marker_tmp.write_text("{")
    orphans = [ckpts / "tmp-checkpoint-5", ckpts / ".checkpoint-1.removing.tmp", models / ".cot.a1b2_c3d.tmp"]
    kept = [ckpts / "checkpoint-notes", models / "cot", models / ".cot2.a1b2c3d4.tmp", models / ".cot.tmp",
            models / ".cot.x.tmp.keep"]
    for folder in orphans + kept:
        folder.mkdir(parents=True)
        (folder / "file").write_text("x")
    (models / ".cot.filetmp.tmp").write_text("a file, not atomic_dir's folder")
    assert sorted(remove_orphans(ckpts, models / "cot")) == sorted([*orphans, marker_tmp])
    assert all(p.exists() for p in kept) and (models / ".cot.filetmp.tmp").exists()
    assert checkpoint_problem(done) is None


def test_tidy_removes_what_training_would_write_again(tmp_path: Path) -> None:
    resume = fake_checkpoint(tmp_path, 3)
    fake_checkpoint(tmp_path, 5, schedule=None)
    (tmp_path / "tmp-checkpoint-6").mkdir()
    assert find_resume_checkpoint(tmp_path, SCHEDULE) == resume
    assert tidy_checkpoints(tmp_path, resume) == [tmp_path / "tmp-checkpoint-6", tmp_path / "checkpoint-5"]
    assert [n for n, _ in list_checkpoints(tmp_path)] == [3]
    fake_checkpoint(tmp_path, 4, schedule=None)
    assert tidy_checkpoints(tmp_path, None) == [tmp_path / "checkpoint-4", tmp_path / "checkpoint-3"]
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------- resumed history
def test_run_loss_covers_the_whole_history_weighted_by_steps() -> None:
    history = [{"loss": 4.0, "step": 1}, {"loss": 2.0, "step": 3}, {"train_loss": 9.0, "step": 3},
               {"loss": 1.0, "step": 4}]
    assert run_loss(history) == pytest.approx((4.0 + 2.0 * 2 + 1.0) / 4)
    assert math.isnan(run_loss([{"train_runtime": 1.0, "step": 2}]))


def test_trim_metric_history_drops_replayed_and_cut_rows(tmp_path: Path) -> None:
    plots = tmp_path / "plots" / "metrics"
    (plots / "train").mkdir(parents=True)
    (plots / "loss.tsv").write_text("step\tloss\n1\t4.1\n2\t4.0\n3\t3.9\n4\t3.8\n5\t3.")
    (plots / "train" / "lr.tsv").write_text("timestamp\tstep\tlr\n9\t2\t0.1\n9\t4\t0.05\n")
    (plots / "other.tsv").write_text("a\tb\n1\t2\n")  # not dvclive's: left alone
    assert trim_metric_history(plots, 2) == 4
    assert (plots / "loss.tsv").read_text().splitlines() == ["step\tloss", "1\t4.1", "2\t4.0"]
    assert (plots / "train" / "lr.tsv").read_text().splitlines() == ["timestamp\tstep\tlr", "9\t2\t0.1"]
    assert (plots / "other.tsv").read_text() == "a\tb\n1\t2\n"
    assert trim_metric_history(plots, 2) == 0
    assert trim_metric_history(tmp_path / "missing", 2) == 0


def test_a_resumed_run_continues_the_loss_curve_and_the_train_loss(tmp_path: Path) -> None:
    from transformers.integrations import DVCLiveCallback

    def trainer_with_live(out: Path, report: Path, resume: Path | None, *callbacks: TrainerCallback) -> Trainer:
        live = live_logger(report, resume)
        return make_trainer(out, *callbacks, LiveAtGlobalStep(live), DVCLiveCallback(live=live))

    straight = trainer_with_live(tmp_path / "straight", tmp_path / "straight-report", None)
    straight.train()

    out, report = tmp_path / "run", tmp_path / "report"
    controller = TrainingController(QUIET, SCHEDULE)
    with controller:
        trainer_with_live(out, report, None, SigtermAt(4), controller).train()
    # As if killed after step 4 was logged while checkpoint-4 was written: resume from 3.
    discard_checkpoint(out / "checkpoint-4")
    resume = find_resume_checkpoint(out, SCHEDULE)
    assert resume == out / "checkpoint-3"
    controller = TrainingController(QUIET, SCHEDULE)
    resumed = trainer_with_live(out, report, resume, controller)
    with controller:
        resumed.train(resume_from_checkpoint=str(resume))

    curve = (report / "plots" / "metrics" / "loss.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in curve] == ["step", "1", "2", "3", "4", "5", "6"]  # no repeats
    assert curve == (tmp_path / "straight-report" / "plots" / "metrics" / "loss.tsv").read_text().splitlines()
    assert [h["step"] for h in resumed.state.log_history if "loss" in h] == [1, 2, 3, 4, 5, 6]
    assert run_loss(resumed.state.log_history) == run_loss(straight.state.log_history)
    assert run_loss(straight.state.log_history) == pytest.approx(straight.state.log_history[-1]["train_loss"])
