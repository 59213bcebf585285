"""The composite omni model (nexus.multimodal): tiny random Llama + DINOv2 + Whisper built from configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tiny import build_tiny_encoders as build_encoders

IMAGE_SIZE = 28  # 2 x 2 patches of 14 px: 4 + CLS = 5 tokens an image, 1 a video frame (pool 2)
AUDIO_SECONDS = 1  # 50 encoder positions (of the tiny Whisper's 1500), pooled by 2: 25 tokens a clip
VIDEO_FRAMES = 2


def build_tiny_omni(lm_dir: Path, root: Path, seed: int = 0):
    """(model, processor) of a tiny omni model with every part."""
    from nexus.multimodal.compose import build_omni

    vision, audio = (root / "vision", root / "audio") if (root / "audio").is_dir() else build_encoders(root)
    return build_omni(lm_dir, vision, audio, image_size=IMAGE_SIZE, audio_seconds=AUDIO_SECONDS, seed=seed,
                      video_frames=VIDEO_FRAMES)


@pytest.fixture(scope="module")
def parts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("omni_parts")
    build_encoders(root)
    return root


@pytest.fixture
def omni(tiny_model_dir: Path, parts_dir: Path):
    return build_tiny_omni(tiny_model_dir, parts_dir)


def square(value: int, size: int = 40):
    from PIL import Image

    return Image.new("RGB", (size, size), (value, value, value))


def media_batch(processor):
    import numpy

    texts = ["<image> and <audio> then <video>.", "just text, then <image>"]
    audio = numpy.sin(numpy.arange(12000, dtype=numpy.float32) / 20)
    return processor(texts, images=[square(10), square(240)], audios=[audio],
                     videos=[[square(50), square(90), square(130)]])


def test_token_counts_and_audio_window(omni, parts_dir: Path) -> None:
    from transformers import WhisperModel

    model, processor = omni
    assert (processor.image_tokens, processor.video_frame_tokens, processor.audio_tokens) == (5, 1, 25)
    whisper = WhisperModel.from_pretrained(parts_dir / "audio").encoder.embed_positions.weight
    ours = model.model.audio_tower.embed_positions.weight
    assert ours.shape[0] == 50 and (ours == whisper[:50]).all()
    batch = media_batch(processor)
    assert tuple(batch["pixel_values"].shape) == (2, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert tuple(batch["pixel_values_videos"].shape) == (VIDEO_FRAMES, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert tuple(batch["input_features"].shape) == (1, 80, 100 * AUDIO_SECONDS)
    assert int((batch["input_ids"] == processor.audio_token_id).sum()) == 25


def test_text_only_logits_equal_the_lm(omni, tiny_model_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model, processor = omni
    lm = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    ids = processor.tokenizer(["Hello there, how are you?"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        ours, theirs = model(input_ids=ids).logits, lm(input_ids=ids).logits
    assert ours.shape[-1] == theirs.shape[-1] + 3  # <image> <audio> <video>
    assert torch.equal(ours[..., :theirs.shape[-1]], theirs)
    assert model.lm_head.weight is model.get_input_embeddings().weight  # SmolLM2 ties


def test_forward_backward_only_trainable_parts_get_grads(omni) -> None:
    import torch

    from nexus.multimodal.compose import part_table, set_trainable

    model, processor = omni
    set_trainable(model, vision_tower=False, audio_tower=False, projectors=True, language_model=False)
    batch = media_batch(processor)
    model.train()
    out = model(**batch, labels=batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    for name, param in model.named_parameters():
        is_projector = "multi_modal_projector" in name or "audio_projector" in name
        assert param.requires_grad == is_projector, name
        assert (param.grad is not None and param.grad.abs().sum() > 0) == is_projector, name
    table = part_table(model)
    assert len(table.splitlines()) == 6 and "tied" in table
    projector_line = next(line for line in table.splitlines() if line.startswith("multi_modal_projector"))
    trainable, total = (int(x.replace(",", "")) for x in projector_line.split()[1:4:2])
    assert trainable == total == 32 * 64 + 64 + 64 * 64 + 64


def test_placeholder_count_mismatch_is_a_clear_error(omni) -> None:
    model, processor = omni
    batch = processor(["<image> one"], images=[square(10)])
    with pytest.raises(ValueError, match="image placeholders and features do not match"):
        model(input_ids=batch["input_ids"][:, 1:], pixel_values=batch["pixel_values"])
    with pytest.raises(ValueError, match="1 <image> placeholder"):
        processor(["<image> one"], images=[])


def test_save_load_round_trip_gives_identical_logits(omni, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForImageTextToText

    from nexus.multimodal.compose import load_omni, save_omni

    model, processor = omni
    save_omni(model, processor, tmp_path / "omni")
    loaded, loaded_processor = load_omni(tmp_path / "omni")
    auto = AutoModelForImageTextToText.from_pretrained(tmp_path / "omni").eval()
    batch, again = media_batch(processor), media_batch(loaded_processor)
    for key, value in batch.items():
        assert torch.equal(value, again[key]), key
    with torch.no_grad():
        logits = model(**batch).logits
        assert torch.equal(logits, loaded(**again).logits)
        assert torch.equal(logits, auto(**again).logits)


LOAD_REMOTE = """
import sys, torch
from transformers import AutoModelForImageTextToText
try:
    AutoModelForImageTextToText.from_pretrained(sys.argv[1])
except Exception as error:  # without trust_remote_code: refused, naming it
    assert "trust_remote_code" in str(error), error
else:
    raise SystemExit("loaded without trust_remote_code")
model = AutoModelForImageTextToText.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
batch = torch.load(sys.argv[2])
with torch.no_grad():
    torch.save(model(**batch).logits, sys.argv[3])
assert not any(n == "nexus" or n.startswith("nexus.") for n in sys.modules), "imported nexus"
print(type(model).__name__)
"""


def test_remote_code_folder_loads_with_auto_classes_without_nexus(omni, tmp_path: Path) -> None:
    import torch

    from nexus.multimodal.compose import REMOTE_CODE_FILE, load_omni, save_omni
    from tests.project import env

    model, processor = omni
    save_omni(model, processor, tmp_path / "omni", remote_code=True)
    assert (tmp_path / "omni" / REMOTE_CODE_FILE).is_file()
    batch = dict(media_batch(processor))
    torch.save(batch, tmp_path / "batch.pt")
    run = subprocess.run([sys.executable, "-I", "-c", LOAD_REMOTE, str(tmp_path / "omni"), str(tmp_path / "batch.pt"),
                          str(tmp_path / "logits.pt")], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**env(), "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")})
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split()[-1] == "NexusOmniForConditionalGeneration"
    with torch.no_grad():
        # same weights, same inputs; another process may split the matmuls across threads differently
        torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), model(**batch).logits, rtol=1e-4, atol=1e-5)
    loaded, _ = load_omni(tmp_path / "omni")  # Nexus's loader reads the same folder
    save_omni(loaded, processor, tmp_path / "plain")  # saved again without remote_code: no stale auto_map
    assert "auto_map" not in json.loads((tmp_path / "plain" / "config.json").read_text())
    assert not (tmp_path / "plain" / REMOTE_CODE_FILE).exists()


def test_video_frames_read_every_patch_with_pool_1(omni) -> None:
    import torch

    from nexus.multimodal.compose import set_video_sampling

    model, processor = omni
    assert processor.video_frame_tokens == 1  # 2 x 2 patches pooled by 2
    set_video_sampling(model, processor, frames=3, pool=1)
    assert (processor.video_frames, processor.video_frame_tokens, processor.video_tokens) == (3, 4, 12)
    batch = processor(["<video> what?"], videos=[[square(50), square(90), square(130)]])
    assert int((batch["input_ids"] == processor.video_token_id).sum()) == 12
    with torch.no_grad():
        assert model(**batch).logits.shape[1] == batch["input_ids"].shape[1]


def test_lora_touches_only_the_language_model(omni) -> None:
    from peft import get_peft_model

    from nexus.multimodal.compose import lm_lora_config, part_table, set_trainable

    model, processor = omni
    peft_model = get_peft_model(model, lm_lora_config(r=4, alpha=8, dropout=0.0))
    lora = [name for name, _ in peft_model.named_parameters() if "lora_" in name]
    assert lora and all(".language_model." in name for name in lora)
    assert len(lora) == 2 * 2 * 7  # 2 layers x (A, B) x 7 projections
    set_trainable(peft_model, projectors=True, language_model=False)
    trainable = {name for name, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable == set(lora) | {n for n, _ in peft_model.named_parameters() if "projector" in n}
    assert "language_model" in part_table(peft_model)
    batch = media_batch(processor)
    peft_model(**batch, labels=batch["input_ids"]).loss.backward()  # media pass through the PEFT wrapper
    assert {n for n, p in peft_model.named_parameters() if p.grad is not None} == trainable


EXPORT_CHECK = """
import sys, torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor
folder, image, prompt, out = sys.argv[1:5]
model = AutoModelForImageTextToText.from_pretrained(folder).eval()
processor = AutoProcessor.from_pretrained(folder)
inputs = processor(images=Image.open(image), text=prompt, return_tensors="pt")
with torch.no_grad():
    logits = model(**inputs).logits
assert not any(name.startswith("nexus") for name in sys.modules), "imported nexus"
torch.save({"logits": logits, "input_ids": inputs["input_ids"], "class": type(model).__name__}, out)
"""


def test_export_llava_after_lora_merge_loads_in_plain_transformers(omni, tmp_path: Path) -> None:
    import torch
    from peft import get_peft_model

    from nexus.multimodal.compose import export_llava, lm_lora_config

    model, processor = omni
    peft_model = get_peft_model(model, lm_lora_config(r=4, alpha=8, dropout=0.0))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)  # a non-zero adapter, so the merge changes the LM
    merged = peft_model.merge_and_unload().eval()
    export_llava(merged, processor, tmp_path / "llava")
    config = json.loads((tmp_path / "llava" / "config.json").read_text())
    assert config["model_type"] == "llava" and config["image_token_index"] == processor.image_token_id
    image = tmp_path / "gray.png"
    square(120).save(image)
    prompt = processor.tokenizer.apply_chat_template([{"role": "user", "content": "<image>What is it?"}],
                                                     tokenize=False, add_generation_prompt=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", EXPORT_CHECK, str(tmp_path / "llava"), str(image), prompt,
                    str(tmp_path / "out.pt")], check=True, env=env, cwd=tmp_path, timeout=120)
    theirs = torch.load(tmp_path / "out.pt")
    ours = processor([prompt], images=[square(120)])
    with torch.no_grad():
        logits = merged(**ours).logits
    assert theirs["class"] == "LlavaForConditionalGeneration"
    assert torch.equal(theirs["input_ids"], ours["input_ids"])
    assert torch.allclose(theirs["logits"], logits, atol=1e-5)

    from nexus.multimodal.compose import load_omni  # and back: the LLaVA folder as the omni model (eval reads it)

    back, back_processor = load_omni(tmp_path / "llava")
    again = back_processor([prompt], images=[square(120)])
    assert torch.equal(again["input_ids"], ours["input_ids"])
    with torch.no_grad():
        assert torch.allclose(back(**again).logits, logits, atol=1e-5)
    assert back.config.audio_config is None and back_processor.audio_tokens == 0


@pytest.fixture(scope="module")
def sharp_lm_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama's shape and tokenizer with weights drawn at std 0.3: at the usual 0.02 its logits stay
    near uniform whatever the input, so no projector could make it answer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    config = LlamaConfig.from_pretrained(tiny_model_dir)
    config.initializer_range = 0.3
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("sharp") / "lm"
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_projector_training_teaches_two_images_two_answers(sharp_lm_dir: Path, parts_dir: Path) -> None:
    import torch

    from nexus.multimodal.collate import MediaCollator
    from nexus.multimodal.compose import set_trainable
    from nexus.multimodal.generate import generate_media
    from nexus.progress import ItemsDone

    model, processor = build_tiny_omni(sharp_lm_dir, parts_dir)
    examples = [{"prompt": [{"role": "user", "content": "<image>What colour is this?"}],
                 "completion": [{"role": "assistant", "content": answer}], "images": [square(value)]}
                for value, answer in ((0, "black"), (255, "white"))]
    assert generate_media(model, processor, examples, max_new_tokens=1) != ["black", "white"]
    set_trainable(model, projectors=True)
    batch = MediaCollator(processor, max_length=128)(examples)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-2)
    model.train()
    losses = []
    for _ in range(20):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    done: list[int] = []
    progress = ItemsDone("omni answers", 2)
    # one new token: the answer word (the tiny LM does not learn to close its turn in 20 projector steps)
    replies = generate_media(model, processor, examples, max_new_tokens=1,
                             progress=lambda n: (done.append(n), progress(n)), batch_size=2)
    assert losses[-1] < losses[0] - 3
    assert replies == ["black", "white"]
    assert done == [2]
    longer = generate_media(model, processor, examples, max_new_tokens=4, batch_size=1)
    assert [r[:5] for r in longer] == ["black", "white"] and all(isinstance(r, str) for r in longer)


def test_generation_stops_at_an_end_of_turn_id(omni) -> None:
    model, processor = omni
    example = {"prompt": [{"role": "user", "content": "<audio><image>Hi"}], "completion": [],
               "images": [square(30)], "audios": [[0.0] * 8000]}
    free = generate_media_ids(model, processor, example)
    model.generation_config.eos_token_id = free[1]  # the second greedy token now ends the reply
    from nexus.multimodal.generate import generate_media

    kept = free[:free.index(free[1])]  # up to its first occurrence (the first token, or none if it repeats)
    assert generate_media(model, processor, [example], max_new_tokens=5) == [
        processor.decode(kept, skip_special_tokens=True)]


def generate_media_ids(model, processor, example) -> list[int]:
    """The greedy token ids of a plain ``generate`` call on the example (no stop ids but the max length)."""
    import numpy
    import torch

    from nexus.multimodal.collate import prompt_ids

    ids = torch.tensor([prompt_ids(example, processor)])
    media = processor.media_tensors(example["images"], [numpy.asarray(a) for a in example["audios"]])
    model.generation_config.eos_token_id = None
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **media, max_new_tokens=3,
                         do_sample=False, pad_token_id=processor.tokenizer.pad_token_id)
    return out[0, ids.shape[1]:].tolist()
