"""An ONNX export of a (wrapped) Hugging Face ``Dinov2Model`` -> a plain ``Dinov2Model`` folder with a
``BitImageProcessor`` (DINOv2's ImageNet mean/std).

PyTorch's TorchScript exporter keeps the module path in every node name
(``/backbone/encoder/layer.0/attention/attention/query/MatMul``) but not always in the initializer
names: linear weights become anonymous ``onnx::MatMul_1966`` tensors (stored transposed), the position
embeddings are folded into two anonymous pieces (class token ``[1, 1, D]`` and patch grid
``[1, N, D]``), and identical tensors (e.g. ones/zeros norms) are stored once, the others reached
through ``Identity`` nodes. So the state dict is rebuilt from the graph: every (initializer,
consuming node) pair gives the
parameter the node's module path and op say it is; plain initializer names are used only where no
node says more. Legacy module names (``attention.attention.query``, ``attention.output.dense``) are
mapped onto the installed transformers' names (``attention.q_proj``, ``attention.o_proj``).
The config (hidden size, layers, heads, patch and image size, eps) is read from the tensors and graph.
torch/transformers/onnx are imported inside the functions.
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
CROP_SIZE = 224  # what DINOv2's image processor crops to (facebook/dinov2-*: resize 256, crop 224)
# legacy (transformers < 5) -> current module names, both left as they are when the model uses them
LEGACY_NAMES = (
    ("attention.attention.query", "attention.q_proj"),
    ("attention.attention.key", "attention.k_proj"),
    ("attention.attention.value", "attention.v_proj"),
    ("attention.output.dense", "attention.o_proj"),
)
_NORM = re.compile(r"(^|\.)(norm\d*|layernorm|layer_norm)$")


class OnnxDinov2Error(ValueError):
    """The ONNX file holds no Dinov2 backbone this converter can rebuild."""


@dataclass
class Dinov2Tensors:
    """What the ONNX graph yields: parameters by HF name (float32, HF layouts) and graph facts."""

    params: dict[str, np.ndarray]
    prefix: str  # the backbone's module path in the export ("backbone" or "")
    layer_norm_eps: float | None
    num_heads: int | None
    uses_gelu: bool


def _module_of(node_name: str) -> str:
    """``/backbone/encoder/layer.0/norm1/Mul`` -> ``backbone.encoder.layer.0.norm1``."""
    parts = [p for p in node_name.split("/") if p]
    return ".".join(parts[:-1])


def _strip(module: str, prefix: str) -> str | None:
    if not prefix:
        return module
    if module == prefix:
        return ""
    return module[len(prefix) + 1:] if module.startswith(prefix + ".") else None


def _find_prefix(names: list[str], node_modules: list[str]) -> str:
    for name in names:
        if name.endswith("embeddings.cls_token"):
            return name[: -len("embeddings.cls_token")].rstrip(".")
    for module in node_modules:  # cls_token shared/renamed: the embeddings' module path
        m = re.match(r"^(.*?)\.?embeddings$", module)
        if m:
            return m.group(1)
    raise OnnxDinov2Error("the graph has no Dinov2 embeddings (no *embeddings.cls_token, no /embeddings/ nodes)")


def _constant_values(graph: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    values: dict[str, np.ndarray] = {}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].type == 4:  # TENSOR
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def read_onnx_dinov2(path: str | Path) -> Dinov2Tensors:
    """Rebuild the Dinov2 parameters (HF names, current or legacy module names) from an ONNX file."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {t.name: numpy_helper.to_array(t).astype(np.float32, copy=False) for t in graph.initializer}
    for node in graph.node:  # the exporter stores identical tensors once: Identity(first) -> the others' names
        if node.op_type == "Identity" and node.input and node.input[0] in inits:
            inits[node.output[0]] = inits[node.input[0]]
    prefix = _find_prefix(list(inits), [_module_of(n.name) for n in graph.node])
    params = _backbone_params(graph, inits, prefix, path)
    eps, heads = _eps_and_heads(graph, prefix, params)
    uses_gelu = any(n.op_type in ("Erf", "Gelu") and ".mlp." in f".{_strip(_module_of(n.name), prefix) or ''}."
                    for n in graph.node)  # mlp.activation (transformers < 5) or mlp.activation_fn
    return Dinov2Tensors(params, prefix, eps, heads, uses_gelu)


def _backbone_params(graph: Any, inits: dict[str, np.ndarray], prefix: str, path: str | Path) -> dict[str, np.ndarray]:
    """Each initializer under its HF parameter name, read from the op and module of the node using it."""
    consumers: dict[str, list[tuple[Any, int]]] = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name in inits:
                consumers.setdefault(name, []).append((node, index))
    params: dict[str, np.ndarray] = {}
    pos_pieces: dict[str, np.ndarray] = {}

    def put(key: str, value: np.ndarray) -> None:
        if key in params and not np.array_equal(params[key], value):
            raise OnnxDinov2Error(f"{path}: two different tensors claim {key}")
        params[key] = value

    for name, value in inits.items():
        for node, index in consumers.get(name, []):
            module = _strip(_module_of(node.name), prefix)
            if module is not None:  # None: outside the backbone (the saliency decoder)
                _place(name, value, node, index, module, put, pos_pieces)
        if not consumers.get(name) and name.startswith(f"{prefix}." if prefix else ""):
            key = name[len(prefix) + 1:] if prefix else name
            params.setdefault(key, value)  # unused by the graph (mask_token, say): keep its own name
    if "embeddings.position_embeddings" not in params:
        if set(pos_pieces) != {"class", "patch"}:
            raise OnnxDinov2Error(f"{path}: the position embeddings were not found in the graph "
                                  f"(pieces found: {sorted(pos_pieces) or 'none'})")
        params["embeddings.position_embeddings"] = np.concatenate([pos_pieces["class"], pos_pieces["patch"]], axis=1)
    return params


def _place(name: str, value: np.ndarray, node: Any, index: int, module: str, put: Any,
           pos_pieces: dict[str, np.ndarray]) -> None:
    """Name one initializer from the node that uses it (``index``: its input position)."""
    op = node.op_type
    if op == "MatMul" and value.ndim == 2:
        put(f"{module}.weight", np.ascontiguousarray(value.T))  # x @ W.T is stored as W.T
    elif op == "Gemm":
        transposed = any(a.name == "transB" and a.i == 1 for a in node.attribute)
        put(f"{module}.{'weight' if index == 1 else 'bias'}", value if transposed or index == 2 else value.T)
    elif op == "Conv" or op == "LayerNormalization":
        put(f"{module}.{'weight' if index == 1 else 'bias'}", value)
    elif _NORM.search(module) and op in ("Mul", "Add"):
        put(f"{module}.{'weight' if op == 'Mul' else 'bias'}", value)
    elif module.endswith(("layer_scale1", "layer_scale2")) and op == "Mul":
        put(f"{module}.lambda1", value)
    elif op == "Add" and value.ndim == 1 and not module.endswith("embeddings"):
        put(f"{module}.bias", value)  # a Linear's bias (the Add after its MatMul)
    elif module == "embeddings" and value.ndim == 3:
        if op == "Expand" or name.endswith("cls_token"):
            put("embeddings.cls_token", value)
        elif name.endswith("position_embeddings"):
            put("embeddings.position_embeddings", value)
        elif value.shape[1] == 1:
            pos_pieces["class"] = value  # position_embeddings[:, :1], folded
        elif math.isqrt(value.shape[1]) ** 2 == value.shape[1]:
            pos_pieces["patch"] = value  # position_embeddings[:, 1:], folded


def _eps_and_heads(graph: Any, prefix: str, params: dict[str, np.ndarray]) -> tuple[float | None, int | None]:
    """The layer-norm epsilon and the attention head count, read from the first layer's nodes."""
    constants = _constant_values(graph)
    eps = heads = None
    for node in graph.node:
        module = _strip(_module_of(node.name), prefix) or ""
        if eps is None and module.endswith("layer.0.norm1") and node.op_type == "Add":
            for name in node.input:
                if name in constants and constants[name].size == 1:
                    eps = float(constants[name])
        if eps is None and module.endswith("layer.0.norm1") and node.op_type == "LayerNormalization":
            eps = next((a.f for a in node.attribute if a.name == "epsilon"), None)
        if heads is None and module.startswith("encoder.layer.0.attention") and node.op_type == "Concat":
            ints = [int(constants[n].reshape(-1)[0]) for n in node.input if n in constants and constants[n].size == 1]
            hidden = params.get("embeddings.cls_token", np.zeros((1, 1, 0))).shape[-1]
            if len(ints) == 2 and ints[0] * ints[1] == hidden:  # view(b, n, heads, head_dim)
                heads = ints[0]
            elif len(ints) == 2 and ints[0] == -1 and ints[1] > 0 and hidden % ints[1] == 0:  # view(b, n, -1, head_dim)
                heads = hidden // ints[1]
    return eps, heads


def dinov2_config_kwargs(tensors: Dinov2Tensors) -> dict[str, Any]:
    """``Dinov2Config`` keyword arguments read from the tensors (and, for heads and eps, the graph)."""
    p = tensors.params
    if any(".mlp.weights_in" in k for k in p):
        raise OnnxDinov2Error("this export uses the SwiGLU MLP (DINOv2 giant); only the GELU MLP is supported")
    try:
        hidden = p["embeddings.cls_token"].shape[-1]
        proj = p["embeddings.patch_embeddings.projection.weight"]
        fc1 = p["encoder.layer.0.mlp.fc1.weight"]
    except KeyError as exc:
        raise OnnxDinov2Error(f"the graph yields no {exc.args[0]}: not a Dinov2 backbone") from None
    layers = {int(m.group(1)) for k in p if (m := re.match(r"^encoder\.layer\.(\d+)\.", k))}
    grid = math.isqrt(p["embeddings.position_embeddings"].shape[1] - 1)
    heads = tensors.num_heads
    if heads is None:
        heads = max(1, hidden // 64)  # every DINOv2 size has 64-wide heads
        log.warning("the attention head count is not readable from the graph; assuming %d (head size 64)", heads)
    if fc1.shape[0] % hidden:
        raise OnnxDinov2Error(f"the MLP width {fc1.shape[0]} is not a multiple of the hidden size {hidden}")
    return {
        "hidden_size": int(hidden),
        "num_hidden_layers": len(layers),
        "num_attention_heads": int(heads),
        "mlp_ratio": int(fc1.shape[0] // hidden),
        "patch_size": int(proj.shape[-1]),
        "num_channels": int(proj.shape[1]),
        "image_size": int(grid * proj.shape[-1]),
        "layer_norm_eps": tensors.layer_norm_eps or 1e-6,
        "hidden_act": "gelu",
        "qkv_bias": any(k.endswith(("q_proj.bias", "attention.query.bias")) for k in p),
        "layerscale_value": 1.0,  # placeholder: the real lambda1 values are loaded
        "use_swiglu_ffn": False,
    }


def to_model_names(params: dict[str, np.ndarray], model_keys: set[str]) -> dict[str, np.ndarray]:
    """Rename legacy module names to the ones ``model_keys`` (the model's state dict) uses."""
    out: dict[str, np.ndarray] = {}
    for key, value in params.items():
        target = key
        if target not in model_keys:
            for old, new in LEGACY_NAMES:
                target = target.replace(old, new)
        out[target] = value
    return out


def image_processor() -> Any:
    """DINOv2's preprocessing: resize the short side to 256 (bicubic), centre-crop 224, ImageNet mean/std."""
    from transformers import BitImageProcessor

    return BitImageProcessor(
        do_resize=True, size={"shortest_edge": 256}, resample=3, do_center_crop=True,
        crop_size={"height": CROP_SIZE, "width": CROP_SIZE}, do_rescale=True, rescale_factor=1 / 255,
        do_normalize=True, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD, do_convert_rgb=True)


def convert_dinov2_onnx(files: dict[str, Path], out_dir: str | Path) -> dict[str, Any]:
    """Write a ``Dinov2Model`` folder + ``preprocessor_config.json`` into ``out_dir`` (an existing,
    empty folder: the caller makes it atomic) from ``files["onnx"]``.

    Returns:
        A summary: parameter count, config values, parameters filled with zeros, seconds.
    """
    import torch
    from transformers import Dinov2Config, Dinov2Model

    started = time.perf_counter()
    tensors = read_onnx_dinov2(files["onnx"])
    if not tensors.uses_gelu:
        raise OnnxDinov2Error(f"{files['onnx']}: no erf GELU in the backbone MLP; not a DINOv2 export")
    kwargs = dinov2_config_kwargs(tensors)
    log.info("read %s: backbone at %r, %d tensors in %.1f s", files["onnx"], tensors.prefix or "(root)",
             len(tensors.params), time.perf_counter() - started)
    config = Dinov2Config(**kwargs)
    model = Dinov2Model(config).eval()
    expected = model.state_dict()
    params = to_model_names(tensors.params, set(expected))
    zeroed = []
    if "embeddings.mask_token" not in params:  # used only with bool_masked_pos (masked pre-training)
        params["embeddings.mask_token"] = np.zeros(tuple(expected["embeddings.mask_token"].shape), np.float32)
        zeroed.append("embeddings.mask_token")
    missing = sorted(set(expected) - set(params))
    unexpected = sorted(set(params) - set(expected))
    if missing or unexpected:
        raise OnnxDinov2Error(f"{files['onnx']}: the graph's tensors do not fit Dinov2Model "
                              f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    for key, value in params.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise OnnxDinov2Error(f"{files['onnx']}: {key} has shape {value.shape}, Dinov2Model wants "
                                  f"{tuple(expected[key].shape)}")
    model.load_state_dict({k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in params.items()}, strict=True)
    model.save_pretrained(out_dir)
    image_processor().save_pretrained(out_dir)
    count = sum(p.numel() for p in model.parameters())
    seconds = time.perf_counter() - started
    log.info("wrote Dinov2Model (%.1f M parameters, hidden %d, %d layers, %d heads, patch %d, image %d; "
             "zero-filled: %s) in %.1f s", count / 1e6, kwargs["hidden_size"], kwargs["num_hidden_layers"],
             kwargs["num_attention_heads"], kwargs["patch_size"], kwargs["image_size"], zeroed or "none", seconds)
    return {"parameters": count, "seconds": round(seconds, 1), "zero_filled": zeroed,
            **{k: kwargs[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "patch_size",
                                      "image_size")}}
