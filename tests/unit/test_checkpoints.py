"""Resume logic: complete checkpoints, schedule changes, a real SIGTERM-then-resume run."""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from nexus.checkpoints import (
    SCHEDULE_FILE,
    ScheduleChangedError,
    clear_checkpoints,
    find_resume_checkpoint,
    list_checkpoints,
    read_schedule_marker,
    write_schedule_marker,
)
from nexus.config import ControllerParams
from nexus.controller import TrainingController
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
    (folder / "trainer_state.json").write_text("{}")
    if schedule is not None:
        write_schedule_marker(folder, schedule, step)
    return folder


# ---------------------------------------------------------------------------------------- real run
def test_sigterm_then_resume_matches_an_uninterrupted_run(
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

    # The run died while writing checkpoint-5: no marker, so it is skipped.
    fake_checkpoint(out, 5, schedule=None)
    with caplog.at_level(logging.WARNING, logger="nexus.checkpoints"):
        resume = find_resume_checkpoint(out, SCHEDULE)
    assert resume == out / "checkpoint-4"
    assert f"Skipping incomplete checkpoint {out / 'checkpoint-5'}" in caplog.text

    controller = TrainingController(QUIET, SCHEDULE)
    second = make_trainer(out, controller)
    with controller:
        second.train(resume_from_checkpoint=str(resume))
    assert not controller.stopped_by_signal
    assert second.state.global_step == 6
    assert read_schedule_marker(out / "checkpoint-6") == {"step": 6, "schedule": SCHEDULE}
    for name, weight in straight.model.state_dict().items():
        torch.testing.assert_close(second.model.state_dict()[name], weight, msg=name)

    assert clear_checkpoints(out) == 4  # 3, 4, 5 (incomplete) and 6
    assert list_checkpoints(out) == []


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
    assert json.loads((folder / SCHEDULE_FILE).read_text()) == {"step": 7, "schedule": SCHEDULE}
    write_schedule_marker(folder, {**SCHEDULE, "seed": 1}, 7)  # replaces in place
    assert read_schedule_marker(folder)["schedule"]["seed"] == 1
    assert sorted(p.name for p in folder.iterdir()) == [SCHEDULE_FILE, "trainer_state.json"]
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
