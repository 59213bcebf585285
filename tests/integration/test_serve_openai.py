"""``nexus serve`` with a real client: the official ``openai`` package against the local server.

The server runs the tiny random Llama on 127.0.0.1 with a free port (``port=0``), in a thread of
this process (``serve(..., stop_event=...)``), so the model loads once and no interpreter starts.
One test runs ``serve`` in the main thread and stops it with SIGTERM, as a terminal user would; the
``slow`` test does the same through ``python -m nexus.serving serve`` in a child process.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest

from nexus.serving import serve
from tests.project import ROOT
from tests.serving import LINE, Lines, running_server

openai = pytest.importorskip("openai", reason="the openai client is a test dependency: pip install openai")

MODEL = "tiny-llama"  # the fixture folder's name: what /v1/models reports
HI = [{"role": "user", "content": "Hello! Tell me about crepes."}]
ACCESS = re.compile(r'127\.0\.0\.1:\d+ - "(\w+) (\S+) HTTP/1\.1" (\d{3}) prompt_tokens=(\d+|-) '
                    r'completion_tokens=(\d+|-) stream=(true|false) (\d+\.\d{3})s(?: "(.*)")?')


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    """The base URL of a running server; stopped (and its exit code checked) after the module."""
    with running_server(tiny_model_dir, MODEL, 16) as url:
        yield url


@pytest.fixture
def client(server):
    with openai.OpenAI(base_url=server, api_key="none", timeout=60, max_retries=0) as c:
        yield c


def _http(server: str, method: str, path: str, body: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    url = urlsplit(server)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def _stream(client, **kwargs) -> tuple[list, str]:
    chunks = list(client.chat.completions.create(model=MODEL, messages=HI, stream=True, **kwargs))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return chunks, text


def test_models_and_health(client, server):
    assert [m.id for m in client.models.list()] == [MODEL]
    with urllib.request.urlopen(server.removesuffix("/v1") + "/health", timeout=30) as response:
        assert json.load(response) == {"status": "ok", "model": MODEL}


def test_streamed_deltas_concatenate_to_the_non_streamed_reply(client):
    full = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=12)
    assert full.object == "chat.completion" and full.model == MODEL
    choice = full.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason == "length"
    assert full.usage.completion_tokens == 12
    assert full.usage.total_tokens == full.usage.prompt_tokens + 12

    chunks, text = _stream(client, max_tokens=12)
    contents = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(contents) > 1 and text == choice.message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)


def test_seeded_sampling_streams_the_same_words_as_the_plain_call(client):
    args = {"max_completion_tokens": 30, "temperature": 1.0, "seed": 11}
    full = client.chat.completions.create(model=MODEL, messages=HI, **args).choices[0].message.content
    chunks, text = _stream(client, **args)
    assert text == full and " " in text.strip() and len(chunks) > 5


def test_usage_chunk_and_stop_sequences(client):
    chunks, _ = _stream(client, max_tokens=8, stream_options={"include_usage": True})
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 8
    args = {"max_tokens": 30, "temperature": 1.0, "seed": 11}
    full = client.chat.completions.create(model=MODEL, messages=HI, **args).choices[0].message.content
    stop = full.split()[3]
    cut = client.chat.completions.create(model=MODEL, messages=HI, stop=[stop], **args).choices[0]
    assert cut.message.content == full[:full.index(stop)] and cut.finish_reason == "stop"


def test_bad_requests_get_an_openai_error(client):
    with pytest.raises(openai.BadRequestError, match="role must be one of") as info:
        client.chat.completions.create(model=MODEL, messages=[{"role": "robot", "content": "hi"}])
    assert info.value.status_code == 400
    assert info.value.body["param"] == "messages[0].role"
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.chat.completions.create(model=MODEL, messages=HI, max_tokens=0, stream=True)
    with pytest.raises(openai.BadRequestError, match="context") as info:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "word " * 2000}])
    assert info.value.code == "context_length_exceeded"
    # The server keeps serving after refusing requests.
    assert client.chat.completions.create(model=MODEL, messages=HI, max_tokens=2).choices[0].message


def test_raw_http_sse_framing_and_error_statuses(server):
    body = json.dumps({"model": MODEL, "messages": HI, "max_tokens": 4, "stream": True}).encode()
    status, headers, raw = _http(server, "POST", "/v1/chat/completions", body,
                                 {"Content-Type": "application/json"})
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = [line for line in raw.decode().split("\n\n") if line]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    finish = json.loads(events[-2][6:])["choices"][0]
    assert finish["delta"] == {} and finish["finish_reason"] == "length"

    status, _, raw = _http(server, "POST", "/v1/chat/completions", b"{not json",
                           {"Content-Type": "application/json"})
    assert status == 400 and "not valid JSON" in json.loads(raw)["error"]["message"]
    status, _, raw = _http(server, "GET", "/v1/chat/completions")
    assert status == 405
    status, _, raw = _http(server, "GET", "/v1/nope")
    assert status == 404 and "POST /v1/chat/completions" in json.loads(raw)["error"]["message"]


def _access_records(caplog, tag: str, count: int) -> list[logging.LogRecord]:
    """The access records whose request line holds ``tag``, once ``count`` arrived (the server thread
    writes a line just after the response is sent) or 10 s passed."""
    deadline = time.monotonic() + 10
    while True:
        found = [r for r in caplog.records if r.name == "nexus.serving.access" and tag in r.getMessage()]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_every_request_writes_one_access_line(client, server, caplog):
    tag = {"extra_query": {"log": "access-test"}}  # marks this test's request lines
    chat = "/v1/chat/completions?log=access-test"
    with caplog.at_level(logging.INFO, logger="nexus.serving.access"):
        client.chat.completions.create(model=MODEL, messages=HI, max_tokens=5, **tag)
        _stream(client, max_tokens=3, **tag)
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model=MODEL, messages=[{"role": "robot", "content": "hi"}], **tag)
        assert _http(server, "GET", "/v1/nope?log=access-test")[0] == 404
        records = _access_records(caplog, "access-test", 4)
    lines = [r.getMessage() for r in records]
    fields = [ACCESS.fullmatch(line) for line in lines]
    assert len(lines) == 4 and all(fields), lines
    assert [(m[1], m[2], m[3], m[5], m[6]) for m in fields] == [  # method, path, status, completion, stream
        ("POST", chat, "200", "5", "false"), ("POST", chat, "200", "3", "true"),
        ("POST", chat, "400", "-", "false"), ("GET", "/v1/nope?log=access-test", "404", "-", "false")]
    assert fields[0][4] == fields[1][4] and int(fields[0][4]) > 10 and fields[2][4] == "-"
    assert all(float(m[7]) > 0 for m in fields[:2])
    assert fields[0][8] is None and "role must be one of" in fields[2][8] and "unknown path" in fields[3][8]
    assert [r.levelname for r in records] == ["INFO", "INFO", "WARNING", "WARNING"]


def test_access_lines_escape_what_the_client_sent(server, caplog):
    import socket

    url = urlsplit(server)
    with caplog.at_level(logging.INFO, logger="nexus.serving.access"), \
            socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(b"GET /v1/nope?log=escape-test\x1b[2J\x07 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(64).startswith(b"HTTP/1.1 404")
        records = _access_records(caplog, "escape-test", 1)
    assert len(records) == 1 and "\x1b" not in records[0].getMessage()
    assert '"GET /v1/nope?log=escape-test\\x1b[2J\\x07 HTTP/1.1" 404' in records[0].getMessage()


def test_sigterm_stops_serve_cleanly(tiny_model_dir):
    """``serve`` in the main thread, as ``nexus serve`` runs it; a helper thread sends SIGTERM."""
    out, stop, seen = Lines(), threading.Event(), {}
    before = signal.getsignal(signal.SIGTERM)

    def helper() -> None:
        try:
            if out.ready.wait(120):
                url = LINE.fullmatch(out.text).group(2).removesuffix("/v1")
                with urllib.request.urlopen(url + "/health", timeout=30) as response:
                    seen["health"] = response.status
                seen["killed_at"] = time.monotonic()
                os.kill(os.getpid(), signal.SIGTERM)
        finally:
            if not stop.wait(20):  # a safety net: never leave serve() running
                seen["fallback"] = True
                stop.set()

    thread = threading.Thread(target=helper, daemon=True)
    thread.start()
    assert serve(tiny_model_dir, port=0, stop_event=stop, out=out) == 0
    returned_at = time.monotonic()
    thread.join(30)
    assert seen.get("health") == 200 and "fallback" not in seen
    assert returned_at - seen["killed_at"] < 10
    assert signal.getsignal(signal.SIGTERM) is before  # the previous handler is back


def test_a_taken_port_fails_before_the_model_loads(tiny_model_dir):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}: .*choose another --port"):
            serve(tiny_model_dir, port=port, out=Lines())
        assert time.monotonic() - started < 2


@pytest.mark.slow
def test_python_m_serve_process_answers_logs_and_exits_on_sigint(tiny_model_dir, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "nexus.serving", "serve", str(tiny_model_dir),
                             "--port", "0", "--max-new-tokens", "4", "--threads", "1"], cwd=tmp_path,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(120)
        match = LINE.fullmatch(lines[0] if lines else "")
        assert match, (lines, proc.poll())
        with openai.OpenAI(base_url=match.group(2), api_key="none", timeout=60, max_retries=0) as c:
            reply = c.chat.completions.create(model=MODEL, messages=HI)
        assert reply.usage.completion_tokens == 4
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        stderr = proc.stderr.read()
        assert "decoding with 1 torch thread" in stderr
        line = next(x for x in stderr.splitlines() if "nexus.serving.access" in x)
        assert ACCESS.search(line).group(3, 4, 5) == ("200", str(reply.usage.prompt_tokens), "4"), stderr
        assert line.split(": ", 1)[1] in (tmp_path / "logs" / "serve.log").read_text(encoding="utf-8")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
