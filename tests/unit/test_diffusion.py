"""The LM -> projector -> SD3 path on tiny random diffusion parts and a tiny random Llama.

Real diffusers classes and pipeline, real transformers Trainer, real handwritten digit images; the
diffusion parts are random (no diffusion weights exist offline), so the images are noise: what is
checked is the plumbing (shapes, frozen parts, the loss going down on what it trains on, saving and
loading, seeded generation), not image quality.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nexus.diffusion.families import load_parts, tiny_parts
from nexus.diffusion.generate import generate, prompt_embeddings
from nexus.diffusion.objective import FlowMatchingObjective
from nexus.diffusion.parts import RANDOM_MARK
from nexus.diffusion.projector import TextProjector
from tests.project import ROOT

SIZE = 32
DIGITS = ROOT / "data" / "samples" / "vision_qa"


@pytest.fixture(scope="module")
def lm(tiny_model_dir: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), AutoTokenizer.from_pretrained(tiny_model_dir)


def digit_pairs(n: int) -> list[tuple[str, torch.Tensor]]:
    """(caption, image in [-1, 1]) for the first n real digit images of vision_qa's samples."""
    records = json.loads((DIGITS / "digits_questions.json").read_text())[:n]
    pairs = []
    for record in records:
        image = Image.open(DIGITS / record["images"][0]).convert("RGB").resize((SIZE, SIZE), Image.NEAREST)
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)
        pairs.append((f"a handwritten digit {record['messages'][-1]['content'].strip()}", pixels))
    return pairs


def test_projector_shapes_padding_and_diffusers_round_trip(tmp_path: Path) -> None:
    projector = TextProjector(hidden_size=64, joint_attention_dim=32, pooled_projection_dim=16)
    hidden = torch.randn(2, 5, 64)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    tokens, pooled = projector(hidden, mask)
    assert tokens.shape == (2, 5, 32) and pooled.shape == (2, 16)
    assert not tokens[0, 3:].any()  # padding positions carry nothing
    moved = hidden.clone()
    moved[0, 3:] = 100.0  # what sits under padding does not change the pooled embedding
    assert torch.allclose(projector(moved, mask)[1][0], pooled[0])
    projector.save_pretrained(tmp_path / "projector")
    again = TextProjector.from_pretrained(tmp_path / "projector")
    assert again.config.joint_attention_dim == 32 and torch.equal(again(hidden, mask)[1], pooled)


def test_tiny_parts_save_and_load_as_a_diffusers_folder(tmp_path: Path) -> None:
    parts = tiny_parts(size=SIZE)
    parts.save(tmp_path / "sd3")
    assert (tmp_path / "sd3" / RANDOM_MARK).is_file()
    loaded = load_parts(tmp_path / "sd3")
    assert loaded.random and loaded.text_dim == 32 and loaded.pooled_dim == 16
    assert not any(p.requires_grad for p in loaded.transformer.parameters())
    with pytest.raises(FileNotFoundError, match="not a diffusers folder of SD3 or Wan parts .*transformer, vae"):
        load_parts(tmp_path / "nothing")


def test_trainer_trains_the_projector_alone_and_the_loss_falls(lm, tmp_path: Path) -> None:
    from transformers import Trainer, TrainingArguments

    model, tokenizer = lm
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    parts = tiny_parts(size=SIZE)
    torch.manual_seed(0)
    projector = TextProjector(hidden_size=model.config.hidden_size, joint_attention_dim=parts.text_dim,
                              pooled_projection_dim=parts.pooled_dim)
    objective = FlowMatchingObjective(model, projector, parts)
    pairs = digit_pairs(8)
    rows = [{"caption": c, "pixel_values": p} for c, p in pairs]

    def collate(batch: list[dict]) -> dict:
        text = tokenizer([r["caption"] for r in batch], return_tensors="pt", padding=True)
        return {**text, "pixel_values": torch.stack([r["pixel_values"] for r in batch])}

    def fixed_loss() -> float:  # the same noise and levels before and after
        torch.manual_seed(123)
        with torch.no_grad():
            return float(np.mean([objective(**collate(rows))["loss"].item() for _ in range(4)]))

    frozen = {n: p.clone() for n, p in objective.named_parameters() if not n.startswith("projector.")}
    before = fixed_loss()
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=30, per_device_train_batch_size=4,
                             learning_rate=3e-3, report_to=[], save_strategy="no", logging_steps=10,
                             remove_unused_columns=False, use_cpu=True, seed=0)
    Trainer(model=objective, args=args, train_dataset=rows, data_collator=collate).train()
    after = fixed_loss()
    assert after < before, (before, after)
    assert all(torch.equal(p, frozen[n]) for n, p in objective.named_parameters() if n in frozen)
    assert sum(p.numel() for p in objective.parameters() if p.requires_grad) == \
        sum(p.numel() for p in projector.parameters())


def test_generation_is_seeded_and_follows_the_prompt(lm) -> None:
    model, tokenizer = lm
    parts = tiny_parts(size=SIZE)
    projector = TextProjector(hidden_size=model.config.hidden_size, joint_attention_dim=parts.text_dim,
                              pooled_projection_dim=parts.pooled_dim)
    prompts = ["a handwritten digit 3", "a red bicycle by the sea"]
    embeds, pooled = prompt_embeddings(model, tokenizer, projector, prompts)
    assert embeds.shape[:1] == pooled.shape[:1] == (2,) and embeds.shape[-1] == 32
    first = generate(model, tokenizer, projector, parts, prompts, SIZE, steps=3, seed=7)
    again = generate(model, tokenizer, projector, parts, prompts, SIZE, steps=3, seed=7)
    assert [im.size for im in first] == [(SIZE, SIZE)] * 2
    assert np.array_equal(np.asarray(first[0]), np.asarray(again[0]))  # seeded
    alone = [generate(model, tokenizer, projector, parts, [p], SIZE, steps=3, seed=7)[0] for p in prompts]
    assert not np.array_equal(np.asarray(alone[0]), np.asarray(alone[1]))  # same noise: the prompt makes the change
    guided = generate(model, tokenizer, projector, parts, prompts[:1], SIZE, steps=3, guidance=3.0, seed=7)
    assert guided[0].size == (SIZE, SIZE)  # the zero unconditional branch stands in for a negative prompt


def test_a_checkpoint_holds_the_projector_alone_and_resumes_it(lm, tmp_path: Path) -> None:
    """The Trainer saves the objective's state dict: the projector's weights, not the frozen LM and parts
    (tied embeddings would not even save); a fresh objective loads them back from the checkpoint."""
    from safetensors.torch import load_file
    from transformers import Trainer, TrainingArguments

    model, tokenizer = lm
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    parts = tiny_parts(size=SIZE)

    def objective() -> FlowMatchingObjective:
        return FlowMatchingObjective(model, TextProjector(hidden_size=model.config.hidden_size, joint_attention_dim=32,
                                                          pooled_projection_dim=16), parts)

    rows = [{"caption": c, "pixel_values": p} for c, p in digit_pairs(4)]

    def collate(batch: list[dict]) -> dict:
        text = tokenizer([r["caption"] for r in batch], return_tensors="pt", padding=True)
        return {**text, "pixel_values": torch.stack([r["pixel_values"] for r in batch])}

    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=2, per_device_train_batch_size=2,
                             learning_rate=1e-2, report_to=[], save_strategy="steps", save_steps=2,
                             remove_unused_columns=False, use_cpu=True, seed=0)
    trained = objective()
    Trainer(model=trained, args=args, train_dataset=rows, data_collator=collate).train()
    saved = load_file(tmp_path / "run" / "checkpoint-2" / "model.safetensors")
    assert saved and all(key.startswith("projector.") for key in saved)
    assert set(saved) == {f"projector.{k}" for k in trained.projector.state_dict()}
    fresh = objective()
    Trainer(model=fresh, args=args, train_dataset=rows, data_collator=collate)._load_from_checkpoint(
        str(tmp_path / "run" / "checkpoint-2"))
    assert all(torch.equal(a, b) for a, b in zip(fresh.projector.state_dict().values(),
                                                 trained.projector.state_dict().values(), strict=True))


CLIPS = ROOT / "data" / "samples" / "video_understanding" / "clips"


def test_wan_parts_train_the_projector_on_real_clips_and_draw_frames(lm, tmp_path: Path) -> None:
    """The video family: Wan's per-token conditioning only (no pooled head), 4k + 1 frames, the
    objective's loss reaching the projector alone, a diffusers round trip, and frames to GIF and MP4."""
    from nexus.diffusion.collate import clip_pixels
    from nexus.diffusion.export import write_gif, write_mp4
    from nexus.multimodal.media import load_video

    model, tokenizer = lm
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    parts = tiny_parts(size=SIZE, family="wan").freeze()
    parts.frames = 5
    projector = TextProjector(hidden_size=model.config.hidden_size, joint_attention_dim=parts.text_dim,
                              pooled_projection_dim=parts.pooled_dim)
    assert parts.family == "wan" and parts.pooled_dim == 0 and projector.pooled is None
    clips = torch.stack([clip_pixels(load_video(str(CLIPS / f"c00{n}.mp4"), 5), SIZE) for n in range(2)])
    assert clips.shape == (2, 3, 5, SIZE, SIZE) and clips.min() >= -1.0 and clips.max() <= 1.0
    batch = tokenizer(["handwritten digits 6, 8 and 2", "handwritten digits 1 and 4"], return_tensors="pt",
                      padding=True)
    loss = FlowMatchingObjective(model, projector, parts)(**batch, pixel_values=clips)["loss"]
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in projector.parameters())
    assert all(p.grad is None for p in parts.transformer.parameters())
    parts.save(tmp_path / "wan")
    again = load_parts(tmp_path / "wan")
    assert again.family == "wan" and again.random and again.text_dim == 32
    frames = generate(model, tokenizer, projector, parts, ["handwritten digits 6, 8 and 2"], SIZE, steps=2, seed=3)[0]
    assert len(frames) == 5 and frames[0].size == (SIZE, SIZE)
    gif, mp4 = write_gif(frames, tmp_path / "clip.gif"), write_mp4(frames, tmp_path / "clip.mp4")
    assert Image.open(gif).n_frames == 5
    assert len(load_video(str(mp4), 5)) == 5 and load_video(str(mp4), 5)[0].size == (SIZE, SIZE)
    for name in ("transformer", "vae", "scheduler"):
        (tmp_path / "odd" / name).mkdir(parents=True)
    (tmp_path / "odd" / "transformer" / "config.json").write_text('{"_class_name": "FluxTransformer2DModel"}')
    with pytest.raises(FileNotFoundError, match="its transformer is a FluxTransformer2DModel; Nexus drives SD3"):
        load_parts(tmp_path / "odd")


def test_the_decoder_comes_from_params_or_the_decoders_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """configs/encoders.yaml names no offline diffusion weights: tiny random parts, and the GPU default is
    named; a diffusion_model set in params.yaml wins."""
    from nexus.config import CapabilityParams
    from nexus.diffusion_training import diffusion_source

    monkeypatch.chdir(ROOT)
    folder, why = diffusion_source("image_generation", CapabilityParams())
    assert folder == "" and "decoders.image has no offline weights" in why
    assert "stabilityai/stable-diffusion-3.5-medium" in why
    assert "Wan-AI/Wan2.1-T2V-1.3B-Diffusers" in diffusion_source("video_generation", CapabilityParams())[1]
    assert diffusion_source("image_generation", CapabilityParams(diffusion_model="models/sd35"))[0] == "models/sd35"
