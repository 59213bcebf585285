"""omni's two stages in one run (``lora_from_step``): projectors alone first, LoRA on the LM joins later,
through the real transformers Trainer and PEFT on the tiny composite; a checkpoint taken in stage 1
resumes into stage 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from nexus.config import CapabilityParams, ParamsError, capability_params
from tests.unit.test_omni_model import build_tiny_omni, square

pytestmark = pytest.mark.usefixtures("keep_signal_handlers")



def _snapshots(model):
    from transformers import TrainerCallback

    class Record(TrainerCallback):
        def __init__(self):
            self.rows = {}

        def on_step_end(self, args, state, control, **kwargs):
            named = dict(model.named_parameters())
            lora_b = sum(float(w.detach().abs().sum()) for n, w in named.items() if "lora_B" in n)
            projector = next(w for n, w in named.items() if "multi_modal_projector" in n and w.requires_grad)
            self.rows[state.global_step] = (lora_b, float(projector.detach().sum()))

    return Record()


def _trainer(tmp_path: Path, lm: Path, parts: Path, cap: CapabilityParams, max_steps: int, save_steps: int):
    from nexus.media_training import apply_parts, build_trainer

    model, processor = build_tiny_omni(lm, parts)
    model = apply_parts(model, cap)
    examples = [{"prompt": [{"role": "user", "content": "<image>What colour is this?"}],
                 "completion": [{"role": "assistant", "content": answer}], "images": [square(value)]}
                for value, answer in ((0, "black"), (255, "white"))]
    args = {"output_dir": str(tmp_path / "ckpt"), "max_steps": max_steps, "per_device_train_batch_size": 2,
            "learning_rate": 1e-2, "save_steps": save_steps, "save_strategy": "steps", "logging_steps": 1,
            "report_to": [], "use_cpu": True, "seed": 0, "disable_tqdm": True}
    record = _snapshots(model)
    return build_trainer(model, processor, cap, args, examples, [record]), record


def test_projectors_train_alone_until_the_step_then_lora_joins(tmp_path: Path, tiny_model_dir: Path) -> None:
    from tests.tiny import build_tiny_encoders

    build_tiny_encoders(tmp_path / "parts")
    cap = CapabilityParams(adapter="lora", train_parts=["projectors"], lora_from_step=2, max_steps=4)
    trainer, record = _trainer(tmp_path, tiny_model_dir, tmp_path / "parts", cap, max_steps=4, save_steps=2)
    trainer.train()
    rows = record.rows
    assert rows[1][0] == 0 and rows[2][0] == 0  # steps 1-2 (global steps 0 and 1 began): LoRA-B still zero
    assert rows[1][1] != rows[2][1]  # while the projector moved
    assert rows[3][0] > 0 and rows[4][0] > rows[3][0] * 0.5  # stage 2: LoRA learns

    # a run resumed from the stage-1 checkpoint (step 2) takes the same path into stage 2
    again, record_again = _trainer(tmp_path, tiny_model_dir, tmp_path / "parts", cap, max_steps=4, save_steps=2)
    again.train(resume_from_checkpoint=str(tmp_path / "ckpt" / "checkpoint-2"))
    assert set(record_again.rows) == {3, 4} and record_again.rows[3][0] > 0
    assert record_again.rows[4] == pytest.approx(rows[4], rel=1e-4)


@pytest.mark.parametrize("settings, message", [
    ({"adapter": "none", "lora_from_step": 5}, "used with adapter: lora"),
    ({"adapter": "lora", "lora_from_step": 200, "max_steps": 200}, "not below max_steps 200"),
])
def test_lora_from_step_without_lora_or_past_the_end_is_refused(settings, message, tmp_path: Path) -> None:
    import yaml

    from nexus.methods import load_params
    from tests.project import ROOT

    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["capabilities"]["omni"] = {**data["parked"]["omni"], **settings}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ParamsError, match=f"capabilities.omni.lora_from_step: .*{message}"):
        capability_params(load_params(path), "omni")
