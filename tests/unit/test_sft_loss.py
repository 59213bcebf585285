"""The SFT fast path on CPU: logits only at labelled positions, batches padding-free. Both must give
the loss (and gradients) the model's own padded forward gives, on real tiny models and TRL's collator."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
GSM8K = PROJECT / "data" / "samples" / "gsm8k" / "train_first500.jsonl"

# three examples of different lengths: prompt ids, then completion ids (completion_mask 1)
EXAMPLES = [([5, 9, 11, 3], [7, 8, 2]), ([4, 6], [12, 13, 14, 15, 2]), ([10, 20, 30, 40, 50], [1, 2])]


def _features() -> list[dict]:
    return [{"input_ids": p + c, "completion_mask": [0] * len(p) + [1] * len(c)} for p, c in EXAMPLES]


def _loss_and_grads(model, loss_fn) -> tuple[float, dict]:
    model.zero_grad()
    loss = loss_fn()
    loss.backward()
    return float(loss), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_labelled_loss_matches_the_models_padded_loss_padded_and_padding_free():
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from nexus.methods.sft import labelled_loss
    from tests.tiny import tiny_llama

    model = tiny_llama(attention_dropout=0.0)
    padded = DataCollatorForLanguageModeling(pad_token_id=0)(_features())
    flat = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(_features())
    assert "attention_mask" not in flat and flat["input_ids"].shape == (1, sum(len(p) + len(c) for p, c in EXAMPLES))
    assert flat["position_ids"].tolist()[0][:7] == [0, 1, 2, 3, 4, 5, 6]

    reference, reference_grads = _loss_and_grads(model, lambda: model(**padded).loss)
    for batch in (padded, flat):
        loss, grads = _loss_and_grads(model, lambda b=batch: labelled_loss(model, b))
        assert math.isclose(loss, reference, rel_tol=1e-5), (loss, reference)
        assert grads.keys() == reference_grads.keys()
        for name, grad in grads.items():
            torch.testing.assert_close(grad, reference_grads[name], rtol=1e-4, atol=1e-6, msg=name)

    # with num_items_in_batch (gradient accumulation), the sum is divided by that count
    labelled = int((padded["labels"][:, 1:] != -100).sum())
    halved = float(labelled_loss(model, padded, num_items_in_batch=2 * labelled))
    assert math.isclose(halved, reference / 2, rel_tol=1e-5)


def _cot_examples(count: int) -> list[dict]:
    from nexus.capabilities.cot import format_gsm8k

    with GSM8K.open(encoding="utf-8") as f:
        return [format_gsm8k(json.loads(next(f))) for _ in range(count)]


def _sft_losses(model_dir: Path, out: Path, padding_free: bool) -> tuple[object, list[float]]:
    import torch

    from nexus.device import DeviceProfile
    from nexus.loading import load_model, load_tokenizer
    from nexus.methods import METHODS, TrainContext, load_params
    from nexus.text_training import apply_adapter
    from nexus.trainer import training_arguments

    params = load_params(PROJECT / "params.yaml")
    cap = dataclasses.replace(params.capabilities["cot"], method="sft", max_steps=3, batch_size=2,
                              lora_dropout=0.0, learning_rate=5e-3)
    profile = DeviceProfile("cpu", bf16=False, model_loss=True, padding_free=padding_free)
    args = training_arguments(cap, params, out, profile)
    args.update(warmup_steps=0, save_strategy="no")
    torch.manual_seed(0)
    model = apply_adapter(load_model(model_dir), cap)
    trainer = METHODS["sft"].build(TrainContext(
        capability="cot", model=model, tokenizer=load_tokenizer(model_dir), cap=cap, params=params,
        args=args, callbacks=[], profile=profile, examples=_cot_examples(6)))
    trainer.train()
    return trainer, [h["loss"] for h in trainer.state.log_history if "loss" in h]


def test_padding_free_sft_trains_with_the_padded_runs_losses(tiny_model_dir, tmp_path):
    from nexus.device import DeviceProfile

    detected = DeviceProfile.detect()
    assert detected.padding_free == (detected.device == "cpu")  # the CPU default
    trainer, flat_losses = _sft_losses(tiny_model_dir, tmp_path / "flat", padding_free=True)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1 and "position_ids" in batch
    padded_trainer, padded_losses = _sft_losses(tiny_model_dir, tmp_path / "padded", padding_free=False)
    assert "attention_mask" in padded_trainer.data_collator([padded_trainer.train_dataset[i] for i in range(2)])

    assert len(flat_losses) == len(padded_losses) == 3 and all(math.isfinite(x) for x in flat_losses)
    for flat, padded in zip(flat_losses, padded_losses, strict=True):
        assert math.isclose(flat, padded, rel_tol=1e-3), (flat_losses, padded_losses)
    # tokens seen: every token of a padding-free row is real, as the padded run's non-padding count
    assert 0 < trainer.state.num_input_tokens_seen == padded_trainer.state.num_input_tokens_seen
