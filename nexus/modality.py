"""Modality detection: what a model folder or GGUF file can take in and put out, without weights.

A report says, for each of :data:`nexus.registry.MODALITIES` (text, vision, audio_in, audio_out,
video), whether the model has it, plus its ``model_type``, ``architectures``, ``role`` (decoder,
encoder or encoder-decoder), ``source`` (``config.json`` or ``gguf``) and ``why`` (the signals
that decided it).

Signals, from a Hugging Face ``config.json`` (nested sub-configs included, e.g. Qwen2.5-Omni's
``thinker_config.audio_config``):

- the model type, looked up in :data:`MODEL_TYPES` (Llava and SigLIP: vision; Whisper: audio in;
  Qwen2-VL, LLaVA-OneVision and Video-LLaVA: video; Qwen2.5-Omni: everything);
- sub-configs: ``vision_config`` (vision), ``audio_config`` (audio in), ``talker_config`` or
  ``token2wav_config`` (audio out);
- special-token keys: ``image_token_id``/``image_token_index`` (vision), ``video_token_*`` (video),
  ``audio_token_*`` (audio in);
- architectures: a ``...ForCausalLM`` / ``...ForConditionalGeneration`` head generates text; an
  encoder-only head (``...VisionModel``, ``...ForAudioClassification``) does not.

From a GGUF file, the header's key/value metadata (``general.architecture``; ``clip.has_*`` for
multimodal projectors) is read without touching the tensors. Standard library only.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

from nexus.atomic import write_json_atomic
from nexus.registry import MODALITIES

_ALL = frozenset(MODALITIES)
_VL = frozenset({"text", "vision"})
_VIDEO_VL = frozenset({"text", "vision", "video"})

# Known model types and the modalities they have (text = reads and writes text as a language model).
MODEL_TYPES: dict[str, frozenset[str]] = {
    **{t: _VL for t in (
        "llava", "llava_next", "idefics2", "idefics3", "smolvlm", "paligemma", "mllama", "gemma3",
        "internvl", "mistral3", "fuyu", "blip-2", "instructblip", "kosmos-2", "aya_vision",
        "llama4", "lfm2_vl", "deepseek_vl", "fast_vlm",
    )},
    **{t: _VIDEO_VL for t in (
        "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe", "llava_onevision", "llava_next_video",
        "video_llava", "instructblipvideo", "video_llama_3",
    )},
    **{t: frozenset({"vision"}) for t in (
        "siglip", "siglip2", "siglip_vision_model", "siglip2_vision_model", "clip",
        "clip_vision_model", "vit", "dinov2", "pixtral",
    )},
    **{t: frozenset({"audio_in"}) for t in ("wav2vec2", "hubert", "wavlm", "whisper_encoder")},
    "whisper": frozenset({"audio_in", "text"}),
    "qwen2_audio": frozenset({"audio_in", "text"}),
    "nexus_omni": frozenset({"text"}),  # nexus.multimodal's composite: its sub-configs and token ids say the rest
    "qwen2_5_omni": _ALL,
    "qwen3_omni_moe": _ALL,
    **{t: frozenset({"text", "audio_out"}) for t in ("speecht5", "bark", "musicgen", "csm")},
}
ENCODER_TYPES = frozenset({
    "siglip", "siglip2", "siglip_vision_model", "siglip2_vision_model", "clip", "clip_vision_model",
    "vit", "dinov2", "pixtral", "wav2vec2", "hubert", "wavlm", "whisper_encoder",
})
GENERATIVE_ARCH_SUFFIXES = (
    "ForCausalLM", "LMHeadModel", "ForConditionalGeneration", "ForSeq2SeqLM", "OmniModel",
    "ForVision2Seq", "ForImageTextToText",
)
ENCODER_ARCH_SUFFIXES = (
    "Encoder", "EncoderModel", "VisionModel", "AudioModel", "TextModel", "ForAudioClassification",
    "ForImageClassification", "ForCTC", "ForSequenceClassification",
)
_SUBSTRING_SIGNALS = (
    ("vision", "vision"), ("siglip", "vision"), ("clip", "vision"),
    ("audio", "audio_in"), ("whisper", "audio_in"), ("speech", "audio_in"),
    ("talker", "audio_out"), ("token2wav", "audio_out"), ("video", "video"),
)
_KEY_SIGNALS = (
    ("vision_config", "vision"), ("mm_vision_tower", "vision"), ("image_token_id", "vision"),
    ("image_token_index", "vision"), ("video_token_id", "video"), ("video_token_index", "video"),
    ("audio_config", "audio_in"), ("audio_token_id", "audio_in"), ("audio_token_index", "audio_in"),
    ("talker_config", "audio_out"), ("token2wav_config", "audio_out"),
)

REMEDIES: dict[str, str] = {
    "audio_in": "run the omni capability first (make train CAPS=omni,<capability>), which joins an audio "
                "encoder to the text model, or point base.model at a model that hears",
    "audio_out": "point base.model at a model with a speech decoder (the podcast issue adds one)",
    "vision": "run the omni capability first (make train CAPS=omni,<capability>), which joins a vision "
              "encoder to the text model, or point base.model at a vision-language model (a Llava folder)",
    "video": "run the omni capability first (make train CAPS=omni,<capability>), or point base.model at a "
             "video-capable model (e.g. a Qwen2-VL or LLaVA-OneVision folder)",
    "text": "point base.model at a causal language model folder or a .gguf file",
}


def _walk(config: dict[str, Any], where: str = "") -> list[tuple[str, dict[str, Any]]]:
    """The config and every nested ``*_config`` mapping, with their dotted paths."""
    found = [(where, config)]
    for key, value in config.items():
        if isinstance(value, dict) and key.endswith("_config"):
            found.extend(_walk(value, f"{where}{key}."))
    return found


def _arch_kind(architectures: list[str]) -> str | None:
    if any(a.endswith(GENERATIVE_ARCH_SUFFIXES) for a in architectures):
        return "generative"
    if architectures and all(a.endswith(ENCODER_ARCH_SUFFIXES) for a in architectures):
        return "encoder"
    return None


def check_config_types(config: dict[str, Any], where: Path) -> None:
    """Refuse a ``config.json`` whose ``model_type`` / ``architectures`` have the wrong types.

    Raises:
        ValueError: naming the file and the field.
    """
    model_type = config.get("model_type")
    if model_type is not None and not isinstance(model_type, str):
        raise ValueError(f"{where}: model_type is a {type(model_type).__name__}, expected a string such as 'llama'")
    archs = config.get("architectures")
    if archs is not None and not (isinstance(archs, list) and all(isinstance(a, str) for a in archs)):
        raise ValueError(f"{where}: architectures must be a list of class names such as "
                         f"['LlamaForCausalLM'], got {json.dumps(archs)[:60]}")


def modalities_from_config(config: dict[str, Any]) -> dict[str, Any]:
    """Decide modalities and role from a parsed ``config.json``.

    Args:
        config: the mapping in a Hugging Face model folder's ``config.json``.

    Returns:
        A partial report: the five modality flags, ``model_type``, ``architectures``, ``role`` and
        ``why``.
    """
    model_type = str(config.get("model_type") or "")
    architectures = [str(a) for a in config.get("architectures") or []]
    arch_kind = _arch_kind(architectures)
    found: dict[str, list[str]] = {m: [] for m in MODALITIES}

    known = MODEL_TYPES.get(model_type)
    if known is not None:
        for m in known:
            found[m].append(f"model_type {model_type}")
    for path, sub in _walk(config):
        sub_type = str(sub.get("model_type") or "")
        if path and sub_type:
            for needle, m in _SUBSTRING_SIGNALS:
                if needle in sub_type:
                    found[m].append(f"{path}model_type {sub_type}")
        for key, m in _KEY_SIGNALS:
            if sub.get(key) not in (None, False, ""):
                found[m].append(f"{path}{key}")
    if config.get("enable_audio_output") is False:
        found["audio_out"] = []
    # Text means a language-model head: generative architectures, or a text LM with no known type.
    if arch_kind == "generative":
        found["text"].append(f"architecture {architectures[0]}")
    elif arch_kind == "encoder":
        found["text"] = []
    elif known is None and model_type not in ENCODER_TYPES and (
        "vocab_size" in config or "text_config" in config
    ):
        found["text"].append("vocab_size/text_config without an encoder-only architecture")

    role, role_why = _role(config, model_type, architectures, arch_kind)
    report: dict[str, Any] = {m: bool(found[m]) for m in MODALITIES}
    reasons = [f"{m}: {', '.join(dict.fromkeys(found[m]))}" for m in MODALITIES if found[m]]
    report.update(
        model_type=model_type or None,
        architectures=architectures,
        role=role,
        why="; ".join(reasons + [role_why]) if reasons else f"no modality signal found; {role_why}",
    )
    return report


def _role(config: dict[str, Any], model_type: str, architectures: list[str],
          arch_kind: str | None) -> tuple[str | None, str]:
    if arch_kind == "encoder" or (arch_kind is None and model_type in ENCODER_TYPES):
        return "encoder", "role encoder (encoder-only architecture or type)"
    if config.get("is_encoder_decoder") is True:
        return "encoder-decoder", "role encoder-decoder (is_encoder_decoder)"
    if arch_kind == "generative" or model_type in MODEL_TYPES or "vocab_size" in config:
        return "decoder", "role decoder (language-model head)"
    return None, "role unknown (no architectures, no known model_type)"


# --- GGUF ------------------------------------------------------------------------------------

_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                 10: "<Q", 11: "<q", 12: "<d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def _read(f: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise ValueError("file ends inside the GGUF header")
    return struct.unpack(fmt, data)[0]


GGUF_MAX_STRING = 1 << 24  # bytes: a metadata string longer than this is a crafted or broken header


def _left(f: BinaryIO) -> int:
    """Bytes between the read position and the end of the file."""
    return os.fstat(f.fileno()).st_size - f.tell()


class GGUFHeaderError(ValueError):
    """A GGUF header whose lengths or counts the file cannot hold (crafted or truncated)."""


def _check_fits(f: BinaryIO, n: int, what: str) -> None:
    if n > _left(f):
        raise GGUFHeaderError(f"{what} of {n} bytes runs past the end of the file")


def _skip(f: BinaryIO, n: int, what: str) -> None:
    """Skip ``n`` bytes, refusing a length the file cannot hold (a crafted header's huge counts)."""
    _check_fits(f, n, what)
    f.seek(n, os.SEEK_CUR)


def _read_str(f: BinaryIO) -> str:
    n = _read(f, "<Q")
    if n > min(GGUF_MAX_STRING, _left(f)):
        raise GGUFHeaderError(f"GGUF string of {n} bytes runs past the end of the file or the "
                              f"{GGUF_MAX_STRING}-byte limit")
    return f.read(n).decode("utf-8", errors="replace")


def _read_value(f: BinaryIO, vtype: int, depth: int = 0) -> Any:
    if vtype in _GGUF_SCALARS:
        return _read(f, _GGUF_SCALARS[vtype])
    if vtype == _GGUF_STRING:
        return _read_str(f)
    if vtype == _GGUF_ARRAY:
        item_type, count = _read(f, "<I"), _read(f, "<Q")
        if depth >= 2:
            raise GGUFHeaderError("GGUF arrays nested deeper than 2 levels")
        if item_type in _GGUF_SCALARS:  # skipped, not decoded: tokenizer arrays are large
            _skip(f, count * struct.calcsize(_GGUF_SCALARS[item_type]), "a GGUF array")
        elif item_type == _GGUF_STRING:
            _check_fits(f, count * 8, "a GGUF string array")
            for _ in range(count):
                _skip(f, _read(f, "<Q"), "a GGUF string")
        else:
            _check_fits(f, count * 4, "a GGUF array")
            for _ in range(count):
                _read_value(f, item_type, depth + 1)
        return {"array_of": item_type, "length": count}
    raise ValueError(f"unknown GGUF value type {vtype}")


def read_gguf_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a GGUF file's key/value metadata without loading tensors.

    Arrays (the tokenizer vocabulary) are skipped and reported as ``{"array_of", "length"}``. This
    parser reads only the header; ``gguf.GGUFReader`` also indexes every tensor and decodes every
    array, which takes seconds, and is used only as a fallback for headers this parser rejects.

    Raises:
        ValueError: the file is not a GGUF file; :class:`GGUFHeaderError` when a length or count in
            its header is more than the file holds (crafted or truncated), checked before reading.
    """
    p = Path(path)
    try:
        with open(p, "rb") as f:
            if f.read(4) != b"GGUF":
                raise ValueError(f"{p}: not a GGUF file (no GGUF magic); expected a .gguf model file")
            version = _read(f, "<I")
            _tensors, kv_count = _read(f, "<Q"), _read(f, "<Q")
            if kv_count * 12 > _left(f):  # each key/value takes at least 12 bytes
                raise GGUFHeaderError(f"GGUF header claims {kv_count} metadata keys, more than the file holds")
            meta: dict[str, Any] = {"GGUF.version": version}
            for _ in range(kv_count):
                key = _read_str(f)
                meta[key] = _read_value(f, _read(f, "<I"))
            return meta
    except (ValueError, struct.error) as err:
        if isinstance(err, GGUFHeaderError):
            raise GGUFHeaderError(f"{p}: unreadable GGUF header: {err}") from None
        if "GGUF magic" in str(err):
            raise
        return _gguf_reader_metadata(p, err)


def _gguf_reader_metadata(path: Path, cause: Exception) -> dict[str, Any]:
    try:
        import gguf  # slow (indexes every tensor); only for headers the fast parser rejects

        reader = gguf.GGUFReader(path)
        meta: dict[str, Any] = {}
        for key, field in reader.fields.items():
            if len(field.types) == 1:
                meta[key] = field.contents()
        return meta
    except Exception as err:  # any failure means an unreadable header
        raise ValueError(f"{path}: unreadable GGUF header ({cause}; gguf: {err})") from err


def modalities_from_gguf(meta: dict[str, Any]) -> dict[str, Any]:
    """Decide modalities and role from GGUF metadata (see :func:`read_gguf_metadata`)."""
    arch = str(meta.get("general.architecture") or "")
    report: dict[str, Any] = {m: False for m in MODALITIES}
    why: list[str] = []
    if arch == "clip" or meta.get("general.type") == "mmproj":
        report["vision"] = bool(meta.get("clip.has_vision_encoder", True))
        report["audio_in"] = bool(meta.get("clip.has_audio_encoder", False))
        why.append(f"general.architecture {arch or '?'}: a multimodal projector/encoder "
                   f"(vision {report['vision']}, audio_in {report['audio_in']})")
        role = "encoder"
    elif arch:
        report["text"] = True
        why.append(f"general.architecture {arch}: a text language model")
        role = "decoder"
    else:
        why.append("no general.architecture key")
        role = None
    report.update(model_type=arch or None, architectures=[arch] if arch else [], role=role,
                  why="; ".join(why))
    return report


# --- public API ------------------------------------------------------------------------------


def detect_modalities(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Detect what a model can take in and put out, from its config or GGUF header only.

    Args:
        path: a Hugging Face model folder holding ``config.json``, or a ``.gguf`` file.

    Returns:
        ``{"text", "vision", "audio_in", "audio_out", "video"}`` booleans plus ``model_type``,
        ``architectures``, ``role``, ``source`` (``config.json`` or ``gguf``), ``path`` and ``why``.

    Raises:
        ValueError: the path is neither a folder with config.json nor a .gguf file, or the file
            cannot be parsed.
    """
    p = Path(path)
    if p.is_file() and p.suffix.lower() == ".gguf":
        report = modalities_from_gguf(read_gguf_metadata(p))
        source = "gguf"
    elif p.is_dir() and (p / "config.json").is_file():
        try:
            config = json.loads((p / "config.json").read_text(encoding="utf-8"))
        except (ValueError, OSError) as err:
            raise ValueError(f"{p / 'config.json'}: not valid JSON ({err})") from None
        if not isinstance(config, dict):
            raise ValueError(f"{p / 'config.json'}: expected a JSON object")
        check_config_types(config, p / "config.json")
        report = modalities_from_config(config)
        source = "config.json"
    else:
        what = "does not exist" if not p.exists() else (
            "is a folder without config.json" if p.is_dir() else "is not a .gguf file"
        )
        raise ValueError(
            f"{p}: {what}; expected a model folder holding config.json or a .gguf file "
            f"(set base.model in params.yaml or pass --model)"
        )
    return {**report, "source": source, "path": str(p)}


def missing_modalities(report: dict[str, Any], required: tuple[str, ...] | list[str]) -> list[str]:
    """The modalities in ``required`` that the report says the model lacks, in order."""
    return [m for m in required if not report.get(m)]


def missing_message(report: dict[str, Any], required: tuple[str, ...] | list[str],
                    capability: str | None = None) -> str | None:
    """A one-line message saying what is missing and what to run, or None when nothing is.

    Example: ``model models/base has no audio_in; run the omni capability first (make train
    CAPS=omni) or point base.model at an omni model``.
    """
    missing = missing_modalities(report, required)
    if not missing:
        return None
    who = f"capability '{capability}' needs {', '.join(required)}: " if capability else ""
    model = report.get("path") or "the model"
    caps = f"omni,{capability.replace('_', '-')}" if capability and capability != "omni" else "omni"
    remedies = list(dict.fromkeys(REMEDIES.get(m, "use a model that has it").replace("omni,<capability>", caps)
                                  for m in missing))
    return f"{who}model {model} has no {', '.join(missing)}; {'; or '.join(remedies)}"


def write_report(path_in: str | os.PathLike[str], out_json: str | os.PathLike[str]) -> dict[str, Any]:
    """Detect a model's modalities and write the report to ``out_json`` atomically.

    Returns:
        The report that was written.

    Raises:
        ValueError: see :func:`detect_modalities`.
    """
    report = detect_modalities(path_in)
    write_json_atomic(report, out_json)
    return report


def sort_models(model_dirs: Iterable[str | os.PathLike[str]],
                notes: list[str] | None = None) -> list[dict[str, Any]]:
    """Classify the models under each folder by role and modalities, without moving anything.

    Each sub-folder holding ``config.json`` (and the folder itself, if it holds one) and each
    ``.gguf`` file directly inside is classified as ``decoder`` (causal LMs, VLMs), ``encoder``
    (SigLIP, CLIP vision, Whisper encoder) or ``encoder-decoder`` (Whisper, T5), with its
    modalities (see :mod:`nexus.modality`).

    Args:
        model_dirs: folders to scan.
        notes: where to append a note for each folder that does not exist.

    Returns:
        One entry per model: ``{"path", "role", "modalities", "model_type", "architectures",
        "source", "why"}``.
    """
    models: list[dict[str, Any]] = []
    for raw in model_dirs:
        root = Path(raw)
        if not root.is_dir():
            if notes is not None:
                notes.append(f"model folder {root.as_posix()} does not exist; skipped")
            continue
        candidates = [root] if (root / "config.json").is_file() else []
        for child in sorted(root.iterdir()):
            if child.name.startswith("."):
                continue
            if (child.is_dir() and (child / "config.json").is_file()) or (
                child.is_file() and child.suffix.lower() == ".gguf"
            ):
                candidates.append(child)
        for path in candidates:
            try:
                report = detect_modalities(path)
            except ValueError as err:
                models.append({"path": path.as_posix(), "role": None, "modalities": [],
                               "model_type": None, "architectures": [], "source": None,
                               "why": str(err)})
                continue
            models.append({
                "path": path.as_posix(),
                "role": report["role"],
                "modalities": [m for m in MODALITIES if report[m]],
                "model_type": report["model_type"],
                "architectures": report["architectures"],
                "source": report["source"],
                "why": report["why"],
            })
    return models
