"""CTranslate2 Whisper (``model.bin`` + ``config.json`` + ``tokenizer.json``) -> a Hugging Face
``WhisperForConditionalGeneration`` folder with its ``WhisperProcessor``.

``model.bin`` is read with numpy; the layout (CTranslate2's ``models/model.cc``, little-endian)::

    uint32 binary_version                      (2..6 are read here)
    string spec_name, uint32 spec_revision     (binary_version >= 2)
    uint32 n_variables, then per variable:
        string name, uint8 rank, uint32 dims[rank],
        uint8 dtype_id (version >= 4) | uint8 item_size (older), uint32 n_bytes, bytes data
    uint32 n_aliases, then per alias: string alias, string variable_name   (binary_version >= 3)
    string = uint16 length (with the trailing NUL), bytes

CTranslate2 fuses attention projections: self-attention ``linear_0`` holds q, k, v stacked on the
output axis, cross-attention ``linear_1`` holds k, v; they are split back into ``q_proj``/``k_proj``/
``v_proj``. HF Whisper has no key bias (a key bias adds the same value to every logit of a query, so
softmax cancels it): the zero k-bias slice is dropped. Weights are written as float32.
torch/transformers are imported inside the functions that need them.
"""

from __future__ import annotations

import json
import logging
import re
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# CTranslate2 DataType ids (include/ctranslate2/types.h)
CT2_DTYPES: dict[int, str] = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}
_ITEM_SIZES = {4: np.float32, 1: np.int8, 2: np.float16}  # binary_version < 4: only the item size is stored
GELU = 3  # CTranslate2 ActivationType::GELU (erf)
SAMPLING_RATE = 16000


class CT2FormatError(ValueError):
    """model.bin is not a CTranslate2 file this reader understands, or not a Whisper it can convert."""


@dataclass
class CT2Model:
    """The parsed contents of a CTranslate2 ``model.bin``."""

    binary_version: int
    spec: str
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> np.ndarray:
        """A variable by name, following aliases (e.g. ``decoder/projection/weight``)."""
        name = self.aliases.get(name, name)
        try:
            return self.variables[name]
        except KeyError:
            raise CT2FormatError(f"model.bin has no variable {name!r} (spec {self.spec})") from None

    def has(self, name: str) -> bool:
        return self.aliases.get(name, name) in self.variables

    def scalar(self, name: str, default: int | None = None) -> int:
        if not self.has(name):
            if default is None:
                raise CT2FormatError(f"model.bin has no variable {name!r} (spec {self.spec})")
            return default
        return int(self.get(name).reshape(-1)[0])


class _Cursor:
    def __init__(self, data: bytes | memoryview, path: Path) -> None:
        self.data, self.pos, self.path = data, 0, path

    def take(self, n: int) -> bytes | memoryview:
        if self.pos + n > len(self.data):
            raise CT2FormatError(f"{self.path}: truncated at byte {self.pos} (wanted {n} more bytes)")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def uint(self, fmt: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        raw = bytes(self.take(self.uint("H")))
        return raw.rstrip(b"\0").decode("utf-8")


def _to_numpy(raw: bytes | memoryview, dtype_id: int, dims: list[int], name: str, path: Path) -> np.ndarray:
    kind = CT2_DTYPES.get(dtype_id)
    if kind is None:
        raise CT2FormatError(f"{path}: variable {name} has an unknown CTranslate2 dtype id {dtype_id}")
    if kind == "bfloat16":  # numpy has no bfloat16: widen the 16 bits into the top of a float32
        array = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    else:
        array = np.frombuffer(raw, dtype=np.dtype(kind).newbyteorder("<")).copy()
    expected = int(np.prod(dims)) if dims else 1
    if array.size != expected:
        raise CT2FormatError(f"{path}: variable {name} holds {array.size} values for shape {dims}")
    return array.reshape(dims)


def read_ct2(path: str | Path) -> CT2Model:
    """Parse a CTranslate2 ``model.bin`` into numpy arrays (no CTranslate2 needed).

    Raises:
        CT2FormatError: an unknown binary version or dtype, or a truncated file.
    """
    path = Path(path)
    cur = _Cursor(memoryview(path.read_bytes()), path)
    version = cur.uint("I")
    if not 1 <= version <= 6:
        raise CT2FormatError(f"{path}: CTranslate2 binary version {version} is not supported (this reader knows 1-6)")
    spec, revision = ("", 1) if version < 2 else (cur.string(), cur.uint("I"))
    variables: dict[str, np.ndarray] = {}
    for _ in range(cur.uint("I")):
        name = cur.string()
        dims = [cur.uint("I") for _ in range(cur.uint("B"))]
        if version >= 4:
            dtype_id = cur.uint("B")
            raw = cur.take(cur.uint("I"))
        else:
            item_size = cur.uint("B")
            count = cur.uint("I")  # older files store the element count
            if item_size not in _ITEM_SIZES:
                raise CT2FormatError(f"{path}: variable {name} has an unsupported item size {item_size}")
            dtype_id = {4: 0, 1: 1, 2: 4}[item_size]
            raw = cur.take(count * item_size)
        variables[name] = _to_numpy(raw, dtype_id, dims, name, path)
    aliases: dict[str, str] = {}
    if version >= 3:
        for _ in range(cur.uint("I")):
            alias = cur.string()
            aliases[alias] = cur.string()
    if cur.pos != len(cur.data):
        raise CT2FormatError(f"{path}: {len(cur.data) - cur.pos} unread bytes after the aliases")
    return CT2Model(version, spec, revision, variables, aliases)


def _layers(model: CT2Model, stack: str) -> int:
    found = {int(m.group(1)) for n in model.variables if (m := re.match(rf"^{stack}/layer_(\d+)/", n))}
    if not found or found != set(range(len(found))):
        raise CT2FormatError(f"model.bin: the {stack} layers are not numbered 0..N-1 ({sorted(found)})")
    return len(found)


def _f32(array: np.ndarray) -> np.ndarray:
    if array.dtype in (np.int8, np.int16, np.int32):
        raise CT2FormatError("model.bin holds quantized (integer) weights; convert the model to float16 or "
                             "float32 with CTranslate2 (`--quantization float16`) first")
    return np.ascontiguousarray(array, dtype=np.float32)


def _split(array: np.ndarray, parts: int, name: str) -> list[np.ndarray]:
    if array.shape[0] % parts:
        raise CT2FormatError(f"model.bin: {name} has {array.shape[0]} rows, not a multiple of {parts}")
    return list(np.split(_f32(array), parts, axis=0))


def check_whisper_spec(model: CT2Model) -> None:
    """Refuse a CTranslate2 model that is not a Whisper (its spec name and decoder switches).

    Raises:
        CT2FormatError: names the variable that differs.
    """
    if model.spec and model.spec != "WhisperSpec":
        raise CT2FormatError(f"model.bin is a {model.spec}, not a WhisperSpec")
    for name, expected in (("decoder/pre_norm", 1), ("decoder/alibi", 0), ("decoder/scale_embeddings", 0),
                           ("decoder/start_from_zero_embedding", 0), ("decoder/activation", GELU)):
        if model.has(name) and model.scalar(name) != expected:
            raise CT2FormatError(f"model.bin: {name} = {model.scalar(name)}, a Whisper needs {expected}")


def whisper_state_dict(model: CT2Model) -> dict[str, np.ndarray]:
    """The HF ``WhisperForConditionalGeneration`` state dict (float32 numpy) of a CTranslate2 WhisperSpec."""
    check_whisper_spec(model)
    sd: dict[str, np.ndarray] = {}

    def linear(hf: str, ct2: str, bias: bool = True) -> None:
        sd[f"{hf}.weight"] = _f32(model.get(f"{ct2}/weight"))
        if bias:
            sd[f"{hf}.bias"] = _f32(model.get(f"{ct2}/bias"))

    def norm(hf: str, ct2: str) -> None:
        sd[f"{hf}.weight"] = _f32(model.get(f"{ct2}/gamma"))
        sd[f"{hf}.bias"] = _f32(model.get(f"{ct2}/beta"))

    def qkv(hf: str, ct2: str) -> None:
        q, k, v = _split(model.get(f"{ct2}/weight"), 3, f"{ct2}/weight")
        qb, _kb, vb = _split(model.get(f"{ct2}/bias"), 3, f"{ct2}/bias")
        sd.update({f"{hf}.q_proj.weight": q, f"{hf}.q_proj.bias": qb, f"{hf}.k_proj.weight": k,
                   f"{hf}.v_proj.weight": v, f"{hf}.v_proj.bias": vb})

    def ffn(hf: str, ct2: str) -> None:
        norm(f"{hf}.final_layer_norm", f"{ct2}/ffn/layer_norm")
        linear(f"{hf}.fc1", f"{ct2}/ffn/linear_0")
        linear(f"{hf}.fc2", f"{ct2}/ffn/linear_1")

    def self_attention(hf: str, ct2: str) -> None:
        norm(f"{hf}.self_attn_layer_norm", f"{ct2}/self_attention/layer_norm")
        qkv(f"{hf}.self_attn", f"{ct2}/self_attention/linear_0")
        linear(f"{hf}.self_attn.out_proj", f"{ct2}/self_attention/linear_1")

    enc, dec = "model.encoder", "model.decoder"
    linear(f"{enc}.conv1", "encoder/conv1")
    linear(f"{enc}.conv2", "encoder/conv2")
    sd[f"{enc}.embed_positions.weight"] = _f32(model.get("encoder/position_encodings/encodings"))
    for i in range(_layers(model, "encoder")):
        hf, ct2 = f"{enc}.layers.{i}", f"encoder/layer_{i}"
        self_attention(hf, ct2)
        ffn(hf, ct2)
    norm(f"{enc}.layer_norm", "encoder/layer_norm")
    sd[f"{dec}.embed_tokens.weight"] = _f32(model.get("decoder/embeddings/weight"))
    sd[f"{dec}.embed_positions.weight"] = _f32(model.get("decoder/position_encodings/encodings"))
    for i in range(_layers(model, "decoder")):
        hf, ct2 = f"{dec}.layers.{i}", f"decoder/layer_{i}"
        self_attention(hf, ct2)
        norm(f"{hf}.encoder_attn_layer_norm", f"{ct2}/attention/layer_norm")
        linear(f"{hf}.encoder_attn.q_proj", f"{ct2}/attention/linear_0")
        k, v = _split(model.get(f"{ct2}/attention/linear_1/weight"), 2, f"{ct2}/attention/linear_1/weight")
        _kb, vb = _split(model.get(f"{ct2}/attention/linear_1/bias"), 2, f"{ct2}/attention/linear_1/bias")
        sd.update({f"{hf}.encoder_attn.k_proj.weight": k, f"{hf}.encoder_attn.v_proj.weight": v,
                   f"{hf}.encoder_attn.v_proj.bias": vb})
        linear(f"{hf}.encoder_attn.out_proj", f"{ct2}/attention/linear_2")
        ffn(hf, ct2)
    norm(f"{dec}.layer_norm", "decoder/layer_norm")
    if model.has("decoder/projection/weight"):
        projection = _f32(model.get("decoder/projection/weight"))
        if not np.array_equal(projection, sd[f"{dec}.embed_tokens.weight"]):
            sd["proj_out.weight"] = projection  # untied output projection
    return sd


def special_tokens(tokenizer_json: dict[str, Any]) -> dict[str, int]:
    """The special tokens of a Whisper ``tokenizer.json``: content -> id."""
    return {t["content"]: t["id"] for t in tokenizer_json.get("added_tokens", []) if t.get("special")}


def whisper_config_kwargs(model: CT2Model, ct2_config: dict[str, Any],
                          tokenizer_json: dict[str, Any]) -> dict[str, Any]:
    """``WhisperConfig`` keyword arguments inferred from the tensors, the CT2 config and the tokenizer."""
    vocab_size, d_model = model.get("decoder/embeddings/weight").shape
    conv1 = model.get("encoder/conv1/weight")
    specials = special_tokens(tokenizer_json)
    for token in ("<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>"):
        if token not in specials:
            raise CT2FormatError(f"tokenizer.json has no special token {token}: not a Whisper tokenizer")
    eot = specials["<|endoftext|>"]
    return {
        "vocab_size": int(vocab_size),
        "num_mel_bins": int(conv1.shape[1]),
        "d_model": int(d_model),
        "encoder_layers": _layers(model, "encoder"),
        "decoder_layers": _layers(model, "decoder"),
        "encoder_attention_heads": model.scalar("encoder/num_heads"),
        "decoder_attention_heads": model.scalar("decoder/num_heads"),
        "encoder_ffn_dim": int(model.get("encoder/layer_0/ffn/linear_0/weight").shape[0]),
        "decoder_ffn_dim": int(model.get("decoder/layer_0/ffn/linear_0/weight").shape[0]),
        "max_source_positions": int(model.get("encoder/position_encodings/encodings").shape[0]),
        "max_target_positions": int(model.get("decoder/position_encodings/encodings").shape[0]),
        "activation_function": "gelu",
        "scale_embedding": False,
        "decoder_start_token_id": specials["<|startoftranscript|>"],
        "bos_token_id": eot,
        "eos_token_id": eot,
        "pad_token_id": eot,
        "suppress_tokens": list(ct2_config.get("suppress_ids", [])),
        "begin_suppress_tokens": list(ct2_config.get("suppress_ids_begin", [])),
        "tie_word_embeddings": not model.has("decoder/projection/weight")
        or model.aliases.get("decoder/projection/weight") == "decoder/embeddings/weight",
    }


def generation_kwargs(config: dict[str, Any], ct2_config: dict[str, Any],
                      tokenizer_json: dict[str, Any]) -> dict[str, Any]:
    """``GenerationConfig`` settings for Whisper's ``generate``: start token, no-timestamps token,
    suppressed tokens, alignment heads; language and task ids for a multilingual model only (an
    English-only ``.en`` model starts with ``<|startoftranscript|><|notimestamps|>``)."""
    specials = special_tokens(tokenizer_json)
    multilingual = config["vocab_size"] >= 51865  # the .en vocabularies have 51864 entries
    settings: dict[str, Any] = {
        "decoder_start_token_id": config["decoder_start_token_id"],
        "bos_token_id": config["bos_token_id"],
        "eos_token_id": config["eos_token_id"],
        "pad_token_id": config["pad_token_id"],
        "no_timestamps_token_id": specials["<|notimestamps|>"],
        "suppress_tokens": config["suppress_tokens"],
        "begin_suppress_tokens": config["begin_suppress_tokens"],
        "max_length": config["max_target_positions"],
        "max_initial_timestamp_index": 50,
        "return_timestamps": False,
        "is_multilingual": multilingual,
        "alignment_heads": [list(pair) for pair in ct2_config.get("alignment_heads", [])],
    }
    if "<|startofprev|>" in specials:
        settings["prev_sot_token_id"] = specials["<|startofprev|>"]
    if multilingual:
        settings["lang_to_id"] = {t: i for t, i in specials.items() if re.fullmatch(r"<\|[a-z]{2,3}\|>", t)}
        settings["task_to_id"] = {task: specials[f"<|{task}|>"] for task in ("transcribe", "translate")}
    return settings


def build_tokenizer(tokenizer_file: Path, vocabulary_file: Path | None) -> Any:
    """A ``WhisperTokenizer`` from ``tokenizer.json``; the timestamp tokens ``<|0.00|>``..``<|30.00|>``
    that ``vocabulary.txt`` lists past the tokenizer's last id are added (as Hugging Face's Whisper
    tokenizers have them, not special)."""
    from tokenizers import AddedToken
    from transformers import WhisperTokenizer

    data = json.loads(tokenizer_file.read_text(encoding="utf-8"))
    specials = sorted(special_tokens(data).items(), key=lambda item: item[1])
    tokenizer = WhisperTokenizer(
        vocab=data["model"]["vocab"],
        merges=[tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in data["model"]["merges"]],
        extra_special_tokens=[AddedToken(t, lstrip=False, rstrip=False, normalized=False, special=True)
                              for t, _ in specials if t != "<|endoftext|>"],
    )
    for token, token_id in specials:
        if tokenizer.convert_tokens_to_ids(token) != token_id:
            raise CT2FormatError(f"{tokenizer_file}: {token} got id {tokenizer.convert_tokens_to_ids(token)} "
                                 f"instead of {token_id}")
    if vocabulary_file is not None:
        words = vocabulary_file.read_text(encoding="utf-8").split("\n")
        extra = [w for w in words[len(tokenizer):] if w]
        if extra:
            tokenizer.add_tokens([AddedToken(w, lstrip=False, rstrip=False, normalized=False, special=False)
                                  for w in extra])
    return tokenizer


def convert_whisper_ct2(files: dict[str, Path], out_dir: str | Path) -> dict[str, Any]:
    """Write a ``WhisperForConditionalGeneration`` + ``WhisperProcessor`` folder into ``out_dir``
    (an existing, empty folder: the caller makes it atomic) from the CTranslate2 files
    ``files["model"]`` (model.bin), ``files["config"]``, ``files["tokenizer"]`` and optionally
    ``files["vocabulary"]``.

    Returns:
        A summary: parameter count, config values, seconds.
    """
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )

    started = time.perf_counter()
    out_dir = Path(out_dir)
    ct2 = read_ct2(files["model"])
    ct2_config = json.loads(Path(files["config"]).read_text(encoding="utf-8"))
    tokenizer_json = json.loads(Path(files["tokenizer"]).read_text(encoding="utf-8"))
    log.info("read %s: %s rev %d, binary v%d, %d variables in %.1f s", files["model"], ct2.spec, ct2.revision,
             ct2.binary_version, len(ct2.variables), time.perf_counter() - started)
    kwargs = whisper_config_kwargs(ct2, ct2_config, tokenizer_json)
    config = WhisperConfig(**kwargs)
    state = {k: torch.from_numpy(v) for k, v in whisper_state_dict(ct2).items()}
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    result = model.load_state_dict(state, strict=False, assign=True)
    tied = {"proj_out.weight"} if config.tie_word_embeddings else set()
    missing = sorted(set(result.missing_keys) - tied)
    if missing or result.unexpected_keys:
        raise CT2FormatError(f"{files['model']}: the converted weights do not fit WhisperForConditionalGeneration "
                             f"(missing {missing[:5]}, unexpected {result.unexpected_keys[:5]})")
    model.tie_weights()
    if any(p.is_meta for p in model.parameters()) or any(b.is_meta for b in model.buffers()):
        raise CT2FormatError(f"{files['model']}: some Whisper weights were not filled by the conversion")
    model.generation_config = GenerationConfig(**generation_kwargs(kwargs, ct2_config, tokenizer_json))
    model.eval()
    tokenizer = build_tokenizer(Path(files["tokenizer"]), files.get("vocabulary"))
    feature_extractor = WhisperFeatureExtractor(feature_size=kwargs["num_mel_bins"], sampling_rate=SAMPLING_RATE)
    processor = WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    params = sum(p.numel() for p in model.parameters())
    seconds = time.perf_counter() - started
    log.info("wrote WhisperForConditionalGeneration (%.1f M parameters, %d mel bins, %d+%d layers) in %.1f s",
             params / 1e6, kwargs["num_mel_bins"], kwargs["encoder_layers"], kwargs["decoder_layers"], seconds)
    return {"parameters": params, "seconds": round(seconds, 1), "num_mel_bins": kwargs["num_mel_bins"],
            "d_model": kwargs["d_model"], "vocab_size": kwargs["vocab_size"]}
