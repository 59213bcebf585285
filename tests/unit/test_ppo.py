"""The compact PPO method (nexus.methods.ppo): tensor math, sampler, and short runs on a tiny Llama."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from nexus.methods.ppo import ChunkRepeatSampler, PPOSettings

PROJECT = Path(__file__).resolve().parents[2]
GSM8K = PROJECT / "data" / "samples" / "gsm8k" / "train_first500.jsonl"


# ---- pure pieces ----


def test_gae_matches_a_hand_computation():
    import torch

    from nexus.methods.ppo import gae, token_rewards

    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.2, 0.1], [0.3, 0.4, 9.0]])  # 9.0 sits after the end: ignored
    kl = torch.tensor([[0.1, 0.0, 0.2], [0.0, 0.5, 7.0]])
    rewards = token_rewards(torch.tensor([1.0, 0.0]), kl, mask, beta=0.5)
    assert torch.allclose(rewards, torch.tensor([[-0.05, 0.0, 0.9], [0.0, -0.25, 0.0]]))
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # row 0: deltas -0.35, -0.1, 0.8 -> A2 = 0.8, A1 = -0.1 + 0.4 = 0.3, A0 = -0.35 + 0.15 = -0.2
    # row 1: deltas 0.1, -0.65 (bootstrap 0 after the end) -> A1 = -0.65, A0 = 0.1 - 0.325
    assert torch.allclose(adv, torch.tensor([[-0.2, 0.3, 0.8], [-0.225, -0.65, 0.0]]))
    assert torch.allclose(ret, (adv + values) * mask)


def test_clipped_losses_and_masks():
    import torch

    from nexus.methods.ppo import completion_mask, masked_whiten, ppo_losses

    mask = completion_mask(torch.tensor([[5, 2, 7, 7], [5, 6, 8, 9]]), stop_ids=[2])
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    white = masked_whiten(torch.tensor([[1.0, 3.0, 100.0, 100.0], [2.0, 2.0, 2.0, 2.0]]), mask)
    assert white[0, 2:].abs().sum() == 0 and abs(float((white * mask).sum())) < 1e-5
    old = torch.zeros(2, 4)
    adv = torch.ones(2, 4)
    settings = PPOSettings(cliprange=0.2, cliprange_value=0.2)
    # ratio e^1 > 1.2 with positive advantage: clipped, no gradient
    new = torch.ones(2, 4, requires_grad=True)
    values = torch.ones(2, 4)  # moved by 1 from the rollout's 0, returns 2
    pg, vf, stats = ppo_losses(new, old, adv, values, old, 2 * torch.ones(2, 4), mask, settings)
    pg.backward()
    assert torch.allclose(pg, torch.tensor(-1.2)) and new.grad.abs().sum() == 0
    assert stats["clipfrac"] == 1.0
    # the clipped prediction (0.2) is further from the return than the new one (1): it counts
    assert torch.allclose(vf, torch.tensor(0.5 * 1.8**2))


def test_sampler_repeats_each_step_chunk():
    sampler = ChunkRepeatSampler(size=5, chunk=2, repeats=3, seed=1)
    order = list(sampler)
    assert len(order) == len(sampler) == 12  # 2 full chunks x 2 positions x 3 repeats
    assert order[0:2] == order[2:4] == order[4:6] and order[6:8] == order[8:10] == order[10:12]
    assert list(sampler) == order  # deterministic for an epoch
    sampler.set_epoch(1)
    assert len(list(sampler)) == 12
    assert len(list(ChunkRepeatSampler(size=1, chunk=4, repeats=1, seed=0))) == 4  # cycled


def test_import_needs_no_torch():
    import subprocess
    import sys

    code = "import sys, nexus.methods.ppo; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PROJECT)


# ---- short runs on a tiny model ----


def _cot_examples(count: int) -> list[dict]:
    from nexus.capabilities.cot import format_gsm8k

    with GSM8K.open(encoding="utf-8") as f:
        return [format_gsm8k(json.loads(next(f))) for _ in range(count)]


def _length_reward(text: str, example: dict) -> float:
    """A reward computed from the text: longer completions (in characters, up to 200) score higher."""
    return min(len(text.strip()), 200) / 200


def _cot_reward(text: str, example: dict) -> float:
    from nexus.capabilities.cot import score

    return score(text, example)["accuracy"]


def test_ppo_settings_come_from_params_yaml():
    """Every PPO knob is reachable from params.yaml: methods.ppo, then capabilities.<cap>.ppo."""
    from nexus.config import CapabilityParams
    from nexus.methods import METHODS, TrainContext, parse_params
    from nexus.methods.preference import DPOSettings

    raw = {"methods": {"ppo": {"ppo_epochs": 3, "gamma": 0.99}},
           "capabilities": {"cot": {"method": "ppo", "init_from": "models/base", "ppo": {"cliprange": 0.1}}}}
    cap = parse_params(raw).capabilities["cot"]
    assert METHODS["ppo"].settings is PPOSettings
    assert cap.method_settings == PPOSettings(ppo_epochs=3, gamma=0.99, cliprange=0.1)

    def context(settings):
        return TrainContext("cot", None, None, CapabilityParams(method="ppo", method_settings=settings),
                            None, {}, [], None, [])

    assert context(None).settings(PPOSettings) == PPOSettings()  # params built in code: the defaults
    with pytest.raises(TypeError, match="needs PPOSettings, got DPOSettings"):
        context(DPOSettings()).settings(PPOSettings)


def _context(model_dir: Path, out_dir: Path, reward, adapter: str = "lora", **cap_overrides):
    from nexus.device import DeviceProfile
    from nexus.loading import load_model, load_tokenizer
    from nexus.methods import TrainContext, load_params
    from nexus.text_training import apply_adapter
    from nexus.trainer import training_arguments

    params = load_params(PROJECT / "params.yaml")
    cap = dataclasses.replace(params.capabilities["cot"], method="ppo", adapter=adapter, max_steps=2,
                              batch_size=2, max_new_tokens=8, method_settings=PPOSettings(num_generations=2),
                              **cap_overrides)
    profile = DeviceProfile("cpu", False, True)
    args = training_arguments(cap, params, out_dir, profile)
    args.update(save_steps=1, warmup_steps=0)  # no warmup: step 1 already moves the weights
    model = apply_adapter(load_model(model_dir), cap)
    return TrainContext(capability="cot", model=model, tokenizer=load_tokenizer(model_dir), cap=cap,
                        params=params, args=args, callbacks=[], profile=profile, examples=_cot_examples(6),
                        reward=reward)


def _lora_weights(model) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


def test_ppo_trains_logs_checkpoints_and_resumes(tiny_model_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    from nexus.methods import METHODS
    from nexus.methods.ppo import VALUE_HEAD_FILE

    out = tmp_path / "ckpt"
    ctx = _context(tiny_model_dir, out, _length_reward)
    before = _lora_weights(ctx.model)
    trainer = METHODS["ppo"].build(ctx)
    trainer.train()
    assert trainer.state.global_step == 2
    after = _lora_weights(trainer.model)
    assert any(not torch.equal(before[n], after[n]) for n in before), "LoRA weights did not change"
    logged = [h for h in trainer.state.log_history if "reward" in h]
    assert len(logged) == 2
    for key in ("reward", "kl", "value_loss", "policy_loss", "loss"):
        assert all(key in h for h in logged), key
    assert all(0 < h["reward"] < 1 for h in logged)  # a text-computed reward that varies
    assert logged[1]["approx_kl"] > 0  # step 2 reuses step 1's rollout with the updated policy
    assert trainer._total_train_tokens > 0
    if trainer.args.include_num_input_tokens_seen != "no":
        assert trainer.state.num_input_tokens_seen == trainer._total_train_tokens
    head_1 = load_file(str(out / "checkpoint-1" / VALUE_HEAD_FILE))
    assert head_1["weight"].abs().sum() > 0, "value head not trained by step 1"
    assert (out / "checkpoint-1" / "adapter_model.safetensors").is_file()

    # resume from step 1 on a fresh model: the value head comes back from the checkpoint
    resumed = METHODS["ppo"].build(_context(tiny_model_dir, out, _length_reward))
    loaded = {}
    original = resumed._load_from_checkpoint

    def spy(path, model=None):
        original(path, model)
        loaded.update({k: v.detach().clone() for k, v in resumed.value_head.state_dict().items()})

    resumed._load_from_checkpoint = spy
    resumed.train(resume_from_checkpoint=str(out / "checkpoint-1"))
    assert resumed.state.global_step == 2
    for name, tensor in head_1.items():
        assert torch.equal(loaded[name], tensor), name
    assert not torch.equal(resumed.value_head.weight.detach().cpu(), head_1["weight"])  # then trained on
    head_2 = load_file(str(out / "checkpoint-2" / VALUE_HEAD_FILE))
    assert torch.equal(head_2["weight"], resumed.value_head.weight.detach().cpu())


def test_ppo_with_cot_accuracy_reward_and_full_model(tiny_model_dir, tmp_path):
    """A full model gets a frozen reference copy; an all-zero reward gives no learning signal."""
    import torch

    from nexus.methods.ppo import build_ppo

    ctx = _context(tiny_model_dir, tmp_path / "ckpt", _cot_reward, adapter="full")
    trainer = build_ppo(ctx, PPOSettings(num_generations=2, ppo_epochs=1, max_train_new_tokens=4))
    assert trainer.ref_model is not None and not any(p.requires_grad for p in trainer.ref_model.parameters())
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    assert trainer.state.global_step == 2
    logged = [h for h in trainer.state.log_history if "reward" in h]
    assert [h["reward"] for h in logged] == [0.0, 0.0]  # a random tiny model never answers right
    # zero rewards, policy == reference (KL 0) and zero-initialized values: zero advantages, no update
    assert all(h["kl"] == 0.0 and h["loss"] == 0.0 for h in logged)
    assert all(torch.equal(p, before[n]) for n, p in trainer.model.named_parameters())


def test_ppo_needs_a_reward(tiny_model_dir, tmp_path):
    from nexus.methods.ppo import build_ppo

    ctx = _context(tiny_model_dir, tmp_path / "ckpt", None)
    with pytest.raises(ValueError, match="verifiable reward"):
        build_ppo(ctx)
