"""The commands that make media from a trained model: ``nexus podcast``, ``generate-image``,
``generate-video`` and ``explain`` (their parsers and handlers; :mod:`nexus.cli` adds them).

Nothing here imports torch at import time: ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
from typing import Any


def _cmd_podcast(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nexus import logs
    from nexus.methods import load_params
    from nexus.podcast import PodcastRequest, make_podcast

    params = load_params(args.params)
    entry = params.capabilities.get("podcast") or params.parked.get("podcast")  # defaults: its params entry
    settings: dict = {}  # what neither a flag nor params.yaml sets keeps PodcastRequest's default
    if entry is not None:
        settings = {"voices": tuple(entry.voices), "max_new_tokens": entry.max_new_tokens,
                    "min_turns": entry.min_turns, "max_turns": entry.max_turns}
    if args.voices:
        settings["voices"] = tuple(v.strip() for v in args.voices.split(",") if v.strip())
    if args.max_new_tokens:
        settings["max_new_tokens"] = args.max_new_tokens
    request = PodcastRequest(Path(args.document), Path(args.out), model=args.model,
                             script=Path(args.script) if args.script else None, **settings)
    logs.setup("podcast")
    script = make_podcast(request)
    print(f"podcast: {len(script['turns'])} turns, {script['seconds']} s, voices "
          f"{', '.join(f'{s}: {v}' for s, v in script['voices'].items())} -> {args.out}/podcast.wav"
          f"{' (+ podcast.mp3)' if script['mp3'] else ''}, script {args.out}/script.json")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from nexus import logs
    from nexus.generate_media import check_request, generate_media, request_from_params, summary_line

    request = request_from_params(args.kind, args.prompt, args.out, args.params, model=args.model, steps=args.steps,
                                  guidance=args.guidance, seed=args.seed, size=args.size)
    check_request(request)  # before the libraries load
    logs.setup(f"generate-{args.kind}")
    print(summary_line(args.kind, generate_media(request)))
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nexus import logs
    from nexus.explain import ExplainRequest, explain

    request = ExplainRequest(args.topic, Path(args.out), model=args.model,
                             composition=Path(args.composition) if args.composition else None,
                             max_new_tokens=args.max_new_tokens)
    logs.setup("explain")
    made = explain(request)
    print(f"explain: {made['out']}/src/Explainer.tsx type-checks, bundles and renders -> {made['mp4']}")
    return 0


def add_media_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the media commands to ``sub`` (the top parser's subparsers; ``common``: the shared options)."""
    p = sub.add_parser("podcast", parents=[common],
                       help="a document in, a two-host podcast out: script.json, one WAV per turn, podcast.wav")
    p.add_argument("document", help="a UTF-8 text or Markdown file")
    p.add_argument("--out", required=True, help="output folder (replaced whole, atomically)")
    p.add_argument("--model", default="models/capabilities/podcast",  # nexus.podcast.DEFAULT_MODEL (no import here)
                   help="the podcast model: HF or adapter folder (default: %(default)s, from make train CAPS=podcast)")
    p.add_argument("--script", help="voice this script instead of asking a model (a JSON list of turns, or a "
                   "script.json written before)")
    p.add_argument("--voices", help="two offline voices, first host first (default: params.yaml podcast voices, "
                   "heart,joe)")
    p.add_argument("--max-new-tokens", type=int, help="script length cap in tokens (default: params.yaml podcast)")
    p.set_defaults(func=_cmd_podcast)

    for kind, out in (("image", "the PNG to write"), ("video", "the MP4 to write (a GIF and x_frames/ beside it)")):
        p = sub.add_parser(f"generate-{kind}", parents=[common],
                           help=f"a prompt in, {'a PNG' if kind == 'image' else 'an MP4, GIF and frames'} out, from "
                                f"the trained {kind}_generation model")
        p.add_argument("prompt", help="what to draw, e.g. \"a sks dog in the snow\"")
        p.add_argument("--out", required=True, help=f"{out} (written whole, atomically)")
        p.add_argument("--model", help=f"the trained generator folder (default: models/capabilities/{kind}_generation, "
                       f"from make train CAPS={kind}-generation)")
        p.add_argument("--steps", type=int, help=f"denoising steps (default: params.yaml {kind}_generation "
                       "diffusion_steps)")
        p.add_argument("--guidance", type=float, help="classifier-free guidance, 1 = off (default: params.yaml)")
        p.add_argument("--seed", type=int, default=0, help="noise seed (default: %(default)s)")
        p.add_argument("--size", type=int, default=0, help="pixels per side, a multiple of 16 (default: as trained)")
        p.set_defaults(func=_cmd_generate, kind=kind)

    p = sub.add_parser("explain", parents=[common], help="a topic in, a Remotion explainer project and its MP4 out")
    p.add_argument("topic", help="what to explain, e.g. \"prime numbers\"")
    p.add_argument("--out", required=True, help="the project folder to write (replaced whole, atomically)")
    p.add_argument("--model", default="models/capabilities/remotion_explainer",  # nexus.explain.DEFAULT_MODEL
                   help="the trained model (default: %(default)s, from make train CAPS=remotion-explainer)")
    p.add_argument("--composition", help="render this TSX composition instead of asking a model")
    p.add_argument("--max-new-tokens", type=int, default=560, help="composition length cap (default: %(default)s)")
    p.set_defaults(func=_cmd_explain)
