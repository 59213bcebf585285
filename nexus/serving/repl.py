"""``nexus chat``: a terminal REPL that prints the reply's tokens as they are generated.

With a multimodal composite, ``/image PATH`` and ``/audio PATH`` attach a file to the next message
(its placeholder goes at the start of the message); the media stay with their message in the history.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from nexus.generation.stream import DEFAULT_MAX_NEW_TOKENS, ContextLengthError, stream_chat
from nexus.multimodal.media import load_audio, load_image
from nexus.multimodal.processor import AUDIO_TOKEN, IMAGE_TOKEN, PLACEHOLDERS
from nexus.serving.models import Modalities, load_chat_model, model_display_name, model_modalities

REPL_COMMANDS = "/reset clears the conversation, /exit (or Ctrl-D) quits"
MEDIA_COMMANDS = "/image PATH or /audio PATH attaches a file to your next message"


@dataclass
class ChatSession:
    """A conversation with a loaded model; :meth:`send` streams the next reply and records it."""

    model: Any
    tokenizer: Any
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    temperature: float = 0.0
    system: str | None = None
    history: list[dict[str, str]] = field(default_factory=list)
    media: list[tuple[tuple[Any, ...], tuple[Any, ...]]] = field(default_factory=list)
    """(images, audios) of each history message, in step with :attr:`history`."""
    pending: dict[str, list[Any]] = field(default_factory=lambda: {"image": [], "audio": []})
    """Media attached (:meth:`attach`) to the next message."""

    @property
    def modalities(self) -> Modalities:
        """What the model reads besides text."""
        return model_modalities(self.tokenizer)

    def reset(self) -> None:
        """Forget the conversation and any attached media (the system prompt stays)."""
        self.history.clear()
        self.media.clear()
        for items in self.pending.values():
            items.clear()

    def attach(self, kind: str, path: str) -> None:
        """Load an image or audio file for the next message.

        Raises:
            ValueError: ``kind`` is neither ``image`` nor ``audio``, the model does not read it,
                or the file cannot be read (:class:`~nexus.multimodal.media.MediaError`).
        """
        modalities = self.modalities
        if kind not in self.pending:
            raise ValueError(f"cannot attach a {kind!r}: /image and /audio attach files")
        if not modalities.media:
            raise ValueError(f"this model takes text only; /{kind} needs a multimodal composite "
                             f"(e.g. models/capabilities/omni)")
        if not (modalities.image if kind == "image" else modalities.audio):
            raise ValueError(f"this model takes {modalities.describe()}; it has no "
                             f"{'vision' if kind == 'image' else 'audio'} encoder")
        if kind == "image":
            self.pending["image"].append(load_image(path))
        else:
            self.pending["audio"].append(load_audio(path, modalities.sampling_rate, modalities.audio_seconds))

    def _media(self) -> dict[str, list[Any]]:
        return {"images": [i for images, _ in self.media for i in images],
                "audios": [a for _, audios in self.media for a in audios]}

    def _messages(self) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.history

    def send(self, text: str) -> Iterator[str]:
        """Add a user message and stream the reply; the reply (even an interrupted one) joins the history.

        Attached media (:meth:`attach`) go with the message, their placeholders first (images, then
        audio). The oldest exchanges (and their media) are dropped when the conversation outgrows the
        context window.

        Raises:
            ContextLengthError: the message alone does not fit (it is not kept, nor its media).
            ValueError: with a composite, the text holds a media placeholder such as ``<image>``.
        """
        images, audios = tuple(self.pending["image"]), tuple(self.pending["audio"])
        if self.modalities.media and any(t in text for t in PLACEHOLDERS):
            raise ValueError(f"the message holds a media placeholder ({', '.join(PLACEHOLDERS)}); attach "
                             f"media with /image PATH or /audio PATH instead")
        for items in self.pending.values():
            items.clear()
        self.history.append({"role": "user", "content": IMAGE_TOKEN * len(images) + AUDIO_TOKEN * len(audios)
                             + text})
        self.media.append((images, audios))
        while True:
            try:
                stream = stream_chat(self.model, self.tokenizer, self._messages(), self.max_new_tokens,
                                     self.temperature, **self._media())
                break
            except ContextLengthError:
                if len(self.history) <= 1:
                    self.history.pop()
                    self.media.pop()
                    raise
                del self.history[:2]  # the oldest user/assistant exchange
                del self.media[:2]
        try:
            yield from stream
        finally:
            stream.close()
            self.history.append({"role": "assistant", "content": stream.text})
            self.media.append(((), ()))


def _read_line(stdin: TextIO, prompt: str | None) -> str | None:
    """One line of input, or None at end of input; ``prompt`` uses ``input()`` (line editing)."""
    if prompt is not None:
        try:
            return input(prompt)
        except EOFError:
            return None
    line = stdin.readline()
    return line if line else None


def _commands(session: ChatSession) -> str:
    """The commands line of the banner and ``/help`` (the media commands for a composite only)."""
    modalities = session.modalities
    if not modalities.media:
        return REPL_COMMANDS
    return f"{REPL_COMMANDS}; {MEDIA_COMMANDS} (this model takes {modalities.describe()})"


def _attach(text: str, session: ChatSession, out: TextIO) -> None:
    """``/image PATH`` or ``/audio PATH``: load the file for the next message, or say why not."""
    command, _, rest = text.partition(" ")
    kind, path = command[1:], rest.strip().strip("'\"")
    if not path:
        out.write(f"usage: /{kind} PATH (attaches the file to your next message)\n")
        return
    try:
        session.attach(kind, path)
    except ValueError as err:  # MediaError included
        out.write(f"error: {err}\n")
        return
    out.write(f"({kind} {path} attached to your next message)\n")


def _run_command(text: str, session: ChatSession, out: TextIO) -> bool:
    """Carry out ``/reset``, ``/help``, ``/image PATH`` or ``/audio PATH``; False when ``text`` is none
    of them (a message to send)."""
    if text == "/reset":
        session.reset()
        out.write("(conversation cleared)\n")
    elif text == "/help":
        out.write(f"Type a message and press Enter; {_commands(session)}.\n")
    elif text.split(" ", 1)[0] in ("/image", "/audio"):
        _attach(text, session, out)
    else:
        return False
    out.flush()
    return True


def _reply(session: ChatSession, text: str, out: TextIO) -> None:
    """Send one message and print the reply as it streams; Ctrl-C cuts it short."""
    try:
        for chunk in session.send(text):
            out.write(chunk)
            out.flush()
    except KeyboardInterrupt:
        out.write(" [interrupted]")
    except (ContextLengthError, ValueError) as err:
        out.write(f"error: {err}")
    out.write("\n")
    out.flush()


def chat_repl(model_path: str | Path, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, *,
              temperature: float = 0.0, stdin: TextIO | None = None, stdout: TextIO | None = None,
              threads: int | None = None) -> int:
    """Chat with a model in the terminal, printing the reply's tokens as they are generated.

    Reads one user message per line. ``/reset`` starts a new conversation, ``/exit`` (or ``/quit``,
    end of input, Ctrl-D) leaves; Ctrl-C interrupts a reply, and at the prompt quits. When stdin is
    a terminal a ``> `` prompt and a banner are shown; piped input gets only the replies, one line
    each. ``threads`` sets torch's threads for CPU decoding (default: the rule of
    :func:`nexus.serving.models.decode_threads`). With a multimodal composite, ``/image PATH`` and
    ``/audio PATH`` attach a file to the next message.

    Returns:
        0 (the exit code).
    """
    stdin = stdin or sys.stdin
    out = stdout or sys.stdout
    interactive = stdin is sys.stdin and stdin.isatty()
    name = model_display_name(model_path)
    if interactive:
        out.write(f"Loading {name} ...\n")
        out.flush()
    model, tokenizer = load_chat_model(model_path, threads=threads)
    session = ChatSession(model, tokenizer, max_new_tokens, temperature)
    if interactive:
        out.write(f"Chatting with {name} ({_commands(session)}).\n")
        out.flush()
    while True:
        try:
            line = _read_line(stdin, "> " if interactive else None)
        except KeyboardInterrupt:
            line = None
        if line is None:
            if interactive:
                out.write("\n")
            break
        text = line.strip()
        if text in ("/exit", "/quit"):
            break
        if text and not _run_command(text, session, out):
            _reply(session, text, out)
    return 0
