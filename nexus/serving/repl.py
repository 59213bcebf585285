"""``nexus chat``: a terminal REPL that prints the reply's tokens as they are generated."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from nexus.generation.stream import DEFAULT_MAX_NEW_TOKENS, ContextLengthError, stream_chat
from nexus.serving.models import load_chat_model, model_display_name

REPL_COMMANDS = "/reset clears the conversation, /exit (or Ctrl-D) quits"


@dataclass
class ChatSession:
    """A conversation with a loaded model; :meth:`send` streams the next reply and records it."""

    model: Any
    tokenizer: Any
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    temperature: float = 0.0
    system: str | None = None
    history: list[dict[str, str]] = field(default_factory=list)

    def reset(self) -> None:
        """Forget the conversation (the system prompt stays)."""
        self.history.clear()

    def _messages(self) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.history

    def send(self, text: str) -> Iterator[str]:
        """Add a user message and stream the reply; the reply (even an interrupted one) joins the history.

        The oldest exchanges are dropped when the conversation outgrows the context window.

        Raises:
            ContextLengthError: the message alone does not fit (it is not kept).
        """
        self.history.append({"role": "user", "content": text})
        while True:
            try:
                stream = stream_chat(self.model, self.tokenizer, self._messages(), self.max_new_tokens,
                                     self.temperature)
                break
            except ContextLengthError:
                if len(self.history) <= 1:
                    self.history.pop()
                    raise
                del self.history[:2]  # the oldest user/assistant exchange
        try:
            yield from stream
        finally:
            stream.close()
            self.history.append({"role": "assistant", "content": stream.text})


def _read_line(stdin: TextIO, prompt: str | None) -> str | None:
    """One line of input, or None at end of input; ``prompt`` uses ``input()`` (line editing)."""
    if prompt is not None:
        try:
            return input(prompt)
        except EOFError:
            return None
    line = stdin.readline()
    return line if line else None


def _run_command(text: str, session: ChatSession, out: TextIO) -> bool:
    """Carry out ``/reset`` or ``/help``; False when ``text`` is neither (a message to send)."""
    if text == "/reset":
        session.reset()
        out.write("(conversation cleared)\n")
    elif text == "/help":
        out.write(f"Type a message and press Enter; {REPL_COMMANDS}.\n")
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
    except ContextLengthError as err:
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
    :func:`nexus.serving.models.decode_threads`).

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
        out.write(f"Chatting with {name} ({REPL_COMMANDS}).\n")
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
