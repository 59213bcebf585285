"""``nexus generate-image "prompt" --out x.png`` and ``nexus generate-video "prompt" --out x.mp4``.

The trained generator folder (``models/capabilities/image_generation`` or ``video_generation``, from
``make train CAPS=image-generation`` / ``video-generation``; see :mod:`nexus.diffusion.generator`)
holds the projector and names the language model and the diffusion parts. An image is one PNG; a
video is the MP4, a GIF beside it (``x.gif``) and its frames as PNGs (``x_frames/``). Every file is
written to a temporary name and renamed, so a failed run leaves nothing. On the tiny random parts a
fresh clone trains on, the result is noise (the command says so); trained on a local SD3.5 or Wan
2.1 folder, it is a picture.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_MODELS = {"image": "models/capabilities/image_generation", "video": "models/capabilities/video_generation"}
SUFFIXES = {"image": ".png", "video": ".mp4"}


class GenerateMediaError(ValueError):
    """Bad input to ``nexus generate-image`` / ``generate-video``: the message names the flag and what to do."""


@dataclass(frozen=True)
class MediaRequest:
    """What to draw and where (see :func:`generate_media`); ``size`` 0 = the size trained at."""

    kind: str  # image | video
    prompt: str
    out: Path
    model: str = ""  # '' = DEFAULT_MODELS[kind]
    steps: int = 20
    guidance: float = 1.0
    seed: int = 0
    size: int = 0
    fps: int = 8


def request_from_params(kind: str, prompt: str, out: str, params_file: str, model: str | None = None,
                        steps: int | None = None, guidance: float | None = None, seed: int = 0,
                        size: int = 0) -> MediaRequest:
    """The request the command line asks for: a flag left out takes the capability's params.yaml entry
    (``diffusion_steps``, ``guidance_scale``; parked or not), else :class:`MediaRequest`'s default."""
    from nexus.methods import load_params

    params = load_params(params_file)
    capability = f"{kind}_generation"
    entry = params.capabilities.get(capability) or params.parked.get(capability)
    settings: dict[str, Any] = {} if entry is None else {"steps": entry.diffusion_steps,
                                                         "guidance": entry.guidance_scale}
    settings.update({k: v for k, v in (("steps", steps), ("guidance", guidance)) if v is not None})
    return MediaRequest(kind, prompt, Path(out), model=model or "", seed=seed, size=size, **settings)


def summary_line(kind: str, made: dict[str, Any]) -> str:
    """The command's one line: size, frames, files, and a note when the parts were random."""
    note = " (tiny random diffusion parts: noise; train on a local SD3.5 / Wan 2.1 folder for pictures)" \
        if made["random_parts"] else ""
    frames = f", {made['frames']} frames" if made["frames"] > 1 else ""
    return f"generate-{kind}: {made['size']}x{made['size']} px{frames} -> {', '.join(made['files'])}{note}"


def check_request(request: MediaRequest) -> None:
    """Refuse bad input before any model loads.

    Raises:
        GenerateMediaError: an empty prompt, an output of the wrong type, or steps, guidance, size or
            fps out of range.
    """
    verb, suffix = f"nexus generate-{request.kind}", SUFFIXES[request.kind]
    if not request.prompt.strip():
        raise GenerateMediaError(f"prompt: empty; say what to draw, e.g. {verb} \"a sks dog\" --out dog{suffix}")
    if request.out.suffix.lower() != suffix:
        raise GenerateMediaError(f"--out {request.out}: give a {suffix} file name")
    if request.steps < 1 or request.guidance < 1.0 or request.size < 0 or request.size % 16 or request.fps < 1:
        raise GenerateMediaError("--steps and --fps must be at least 1, --guidance at least 1 (1 = off), --size a "
                                 "multiple of 16 (0 = the size trained at)")


def _replace(out: Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` a file beside ``out``, then rename it to ``out`` (removed on failure)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(handle)
    try:
        write(Path(tmp))
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_video(frames: list[Any], out: Path, fps: int) -> list[str]:
    from nexus.atomic import atomic_dir
    from nexus.diffusion.export import write_gif, write_mp4

    gif, folder = out.with_suffix(".gif"), out.with_name(f"{out.stem}_frames")
    with atomic_dir(folder) as tmp:
        for number, frame in enumerate(frames):
            frame.save(tmp / f"{number:03d}.png")
    _replace(gif, lambda path: write_gif(frames, path, fps))
    _replace(out, lambda path: write_mp4(frames, path, fps))
    return [str(out), str(gif), f"{folder}/"]


def generate_media(request: MediaRequest) -> dict[str, Any]:
    """Draw the sample and write it; returns ``{"files", "size", "frames", "random_parts", "model"}``.

    Raises:
        GenerateMediaError: bad input (see :func:`check_request`), or a model of the other kind.
        GeneratorError: the model folder holds no trained generator.
    """
    check_request(request)
    from nexus.device import DeviceProfile
    from nexus.diffusion.generator import load_generator, parts_dtype

    model = request.model or DEFAULT_MODELS[request.kind]
    device = DeviceProfile.detect().device
    generator = load_generator(model, parts_dtype(device)).to(device)
    video = generator.parts.frames > 1
    if video != (request.kind == "video"):
        other = "video" if video else "image"
        raise GenerateMediaError(f"--model {model}: a {other} generator; use nexus generate-{other}")
    sample = generator.draw([request.prompt], steps=request.steps, guidance=request.guidance, seed=request.seed,
                            size=request.size or None)[0]
    frames = sample if video else [sample]
    if video:
        files = _write_video(frames, request.out, request.fps)
    else:
        _replace(request.out, lambda path: sample.save(path, format="PNG"))
        files = [str(request.out)]
    return {"files": files, "size": frames[0].size[0], "frames": len(frames), "random_parts": generator.parts.random,
            "model": model}
