"""The one definition of the ``chat`` and ``serve`` command lines, used by ``nexus chat|serve``
(:mod:`nexus.cli` hands their words to :func:`run`) and by ``python -m nexus.serving chat|serve``
(:func:`main`)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from nexus import logs, serving
from nexus.generation.stream import DEFAULT_MAX_NEW_TOKENS
from nexus.serving.repl import chat_repl
from nexus.serving.server import DEFAULT_HOST, DEFAULT_PORT, serve

CHAT_HELP = ("chat in the terminal; tokens stream as they are generated (/image PATH, /audio PATH attach "
             "files for a multimodal composite)")
SERVE_HELP = "serve an OpenAI-compatible /v1/chat/completions on localhost"
MODEL_HELP = ("HF model folder, .gguf file, trained adapter folder, or multimodal composite folder, which "
              "also takes images and audio (e.g. models/base, models/capabilities/streaming, "
              "models/capabilities/omni)")
THREADS_HELP = ("torch threads for decoding on the CPU (default: $OMP_NUM_THREADS, else physical cores "
                "minus one, at most 4; see docs/serving.md)")


def _positive(value: int, option: str) -> None:
    if value < 1:
        raise ValueError(f"{option} must be at least 1, got {value}")


def _check_common(args: argparse.Namespace) -> None:
    _positive(args.max_new_tokens, "--max-new-tokens")
    if args.threads is not None:
        _positive(args.threads, "--threads")


def _log_requests() -> None:
    """Send the ``nexus`` logger (the access log included) to stderr and ``logs/serve.log``; to
    stderr alone when ``logs/`` cannot be written here."""
    try:
        logs.setup("serve")
    except OSError:
        logging.basicConfig(format=logs.FORMAT, stream=sys.stderr, force=True)
        logging.getLogger("nexus").setLevel(logging.INFO)


def cmd_chat(args: argparse.Namespace) -> int:
    """``nexus chat MODEL [--max-new-tokens N] [--threads N]``; Ctrl-C while the model loads exits
    with 130."""
    _check_common(args)
    try:
        return chat_repl(args.model, args.max_new_tokens, threads=args.threads)
    except KeyboardInterrupt:
        return 130


def cmd_serve(args: argparse.Namespace) -> int:
    """``nexus serve MODEL [--host H] [--port P] [--max-new-tokens N] [--model-name NAME]
    [--threads N]``; requests are logged to stderr and ``logs/serve.log``.

    Ctrl-C while the model loads (before the server's own signal handling starts) exits with 130.
    """
    _check_common(args)
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be from 0 to 65535, got {args.port}")
    _log_requests()
    try:
        return serve(args.model, args.host, args.port, getattr(args, "model_name", None),
                     args.max_new_tokens, threads=args.threads)
    except KeyboardInterrupt:
        return 130


def _add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, help=THREADS_HELP)


def add_chat_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``nexus chat``."""
    parser.add_argument("model", help=MODEL_HELP)
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS,
                        help=f"most tokens per reply (default: {DEFAULT_MAX_NEW_TOKENS})")
    _add_threads(parser)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``nexus serve``."""
    parser.add_argument("model", help=MODEL_HELP)
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"interface to bind (default: {DEFAULT_HOST}, this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"TCP port (default: {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS,
                        help=f"max_tokens of a request that gives none (default: {DEFAULT_MAX_NEW_TOKENS})")
    parser.add_argument("--model-name", help="model id reported to clients (default: the folder name)")
    _add_threads(parser)


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
                 parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    """Add the ``chat`` and ``serve`` sub-commands (arguments and handlers) to ``subparsers``.

    Args:
        subparsers: what ``ArgumentParser.add_subparsers()`` returned.
        parents: parsers whose options every sub-command also takes (``nexus``'s ``--params``).
    """
    p = subparsers.add_parser("chat", parents=list(parents), help=CHAT_HELP)
    add_chat_arguments(p)
    p.set_defaults(func=cmd_chat)
    p = subparsers.add_parser("serve", parents=list(parents), help=SERVE_HELP)
    add_serve_arguments(p)
    p.set_defaults(func=cmd_serve)


def build_parser(prog: str = "python -m nexus.serving",
                 parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    """The ``chat|serve`` parser; ``nexus`` passes ``prog="nexus"`` and its common options."""
    parser = argparse.ArgumentParser(prog=prog, description=serving.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_commands(parser.add_subparsers(dest="command", required=True), parents)
    return parser


def run(argv: Sequence[str], prog: str = "python -m nexus.serving",
        parents: Sequence[argparse.ArgumentParser] = ()) -> int:
    """Parse ``chat|serve ...`` and run it (what ``nexus chat|serve`` calls).

    Raises:
        SystemExit: a usage error (exit code 2) or ``--help``.
        ValueError, OSError: an option out of range, not a model, a port that cannot be bound.
    """
    args = build_parser(prog, parents).parse_args(list(argv))
    return int(args.func(args))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m nexus.serving chat|serve MODEL ...`` (the same verbs as ``nexus chat|serve``)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except (ValueError, OSError) as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        return 1
