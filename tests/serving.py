"""A real ``nexus serve`` in a thread of the test process, for the server tests."""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nexus.serving import serve

LINE = re.compile(r"Serving (\S+) on (http://127\.0\.0\.1:(\d+)/v1) \(Ctrl-C stops\)\n")


class Lines(io.TextIOBase):
    """Collects what ``serve`` prints and signals the first complete line."""

    def __init__(self) -> None:
        self.text = ""
        self.ready = threading.Event()

    def write(self, s: str) -> int:
        self.text += s
        if "\n" in self.text:
            self.ready.set()
        return len(s)


@contextmanager
def running_server(model_dir: Path, name: str, max_new_tokens: int) -> Iterator[str]:
    """The base URL of a server of ``model_dir`` (announced as ``name``); stopped, and its exit code
    checked, on leaving."""
    stop, out, result = threading.Event(), Lines(), {}

    def run() -> None:
        try:
            result["rc"] = serve(model_dir, port=0, max_new_tokens=max_new_tokens, stop_event=stop, out=out)
        except BaseException as err:  # reported by the caller  # noqa: BLE001 - reported by the caller
            result["error"] = err
            out.ready.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert out.ready.wait(120), "the server did not start within 120 s"
    assert "error" not in result, result.get("error")
    match = LINE.fullmatch(out.text)
    assert match and match.group(1) == name, out.text
    yield match.group(2)
    stop.set()
    thread.join(30)
    assert not thread.is_alive() and result == {"rc": 0}
