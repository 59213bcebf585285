"""``nexus serve``: an OpenAI-compatible HTTP server (standard library only) for one model.

Routes: ``POST /v1/chat/completions`` (``stream`` true or false; streamed replies are server-sent
events in chunked transfer encoding), ``GET /v1/models``, ``GET /v1/models/{id}`` and ``GET /health``.
A multimodal composite also takes images and audio in user messages (inline data, see
:mod:`nexus.serving.requests`); a body is at most :data:`MAX_BODY_BYTES`.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from nexus.generation.stream import DEFAULT_MAX_NEW_TOKENS, ChatStream, ContextLengthError
from nexus.serving.models import load_chat_model, model_display_name
from nexus.serving.requests import ChatRequest, RequestError, parse_chat_request
from nexus.serving.service import ChatService

log = logging.getLogger(__name__)
access_log = logging.getLogger("nexus.serving.access")  # one line per request (docs/serving.md)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
MAX_BODY_BYTES = 8 * 1024 * 1024
CHAT_PATH = "/v1/chat/completions"


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive; streamed responses use chunked transfer encoding."""

    protocol_version = "HTTP/1.1"
    server_version = "nexus-serve/0.1"
    timeout = 120  # an idle keep-alive connection is closed after this many seconds
    server: ChatServer

    # -- the access log: one line per request, written once the response is sent --

    def handle_one_request(self) -> None:
        """Read and answer one request, then write its access log line (:func:`access_line`)."""
        self._started = time.perf_counter()
        self._status: int | None = None
        self._request: ChatRequest | None = None
        self._stream: ChatStream | None = None
        self._note = ""
        try:
            super().handle_one_request()
        finally:
            if self._status is not None:  # None: the connection closed without a request
                self._log_access()

    def parse_request(self) -> bool:
        self._started = time.perf_counter()  # a kept-alive connection waited for this request
        return super().parse_request()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Called by ``send_response``: remember the status for the access line."""
        self._status = int(code) if str(code).isdigit() else 0

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's refusals (a bad request line, an unsupported method) keep their
        message for the access line."""
        self._note = message or ""
        super().send_error(code, message, explain)

    def log_message(self, format: str, *args: Any) -> None:
        """The standard library's own messages (bad request lines, time-outs): the access line
        carries the status, so these go to debug."""
        log.debug("%s %s", self.address_string(), format % args)

    def _log_access(self) -> None:
        stream, status = self._stream, self._status or 0
        tokens = (stream.prompt_tokens, stream.completion_tokens) if stream is not None else None
        line = access_line(f"{self.client_address[0]}:{self.client_address[1]}",
                           getattr(self, "requestline", ""), status, tokens,
                           bool(self._request and self._request.stream),
                           time.perf_counter() - self._started, self._note)
        access_log.log(logging.WARNING if status >= 400 else logging.INFO, "%s", line)

    # -- responses --

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_error(self, err: RequestError) -> None:
        self._note = str(err)
        self._send_json(err.status, err.body())

    def _write_chunk(self, text: str) -> None:
        data = text.encode("utf-8")
        self.wfile.write(f"{len(data):X}\r\n".encode("ascii") + data + b"\r\n")
        self.wfile.flush()

    def _send_events(self, events: Iterator[dict[str, Any]]) -> None:
        """Server-sent events, one ``data: {json}`` per event, ending with ``data: [DONE]``."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for event in events:
                self._write_chunk(f"data: {json.dumps(event, ensure_ascii=False)}\n\n")
        except (BrokenPipeError, ConnectionResetError):
            raise
        except Exception as err:  # headers sent: report in the stream
            log.exception("streamed chat completion failed")
            error = RequestError(f"generation failed: {err}", status=500, code="server_error")
            self._note = str(error)
            self._write_chunk(f"data: {json.dumps(error.body())}\n\n")
        self._write_chunk("data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    @property
    def service(self) -> ChatService:
        service = self.server.service
        assert service is not None, "ChatServer.service is set before serve_forever()"
        return service

    # -- routes --

    def _route(self) -> str:
        return urlsplit(self.path).path.rstrip("/") or "/"

    def do_GET(self) -> None:
        path = self._route()
        service = self.service
        if path in ("/health", "/v1/health"):
            self._send_json(200, {"status": "ok", "model": service.model_name})
        elif path == "/v1/models":
            self._send_json(200, service.models())
        elif path == f"/v1/models/{service.model_name}":
            self._send_json(200, service.model_card())
        elif path.startswith("/v1/models/"):
            self._send_error(RequestError(f"model '{path.rsplit('/', 1)[1]}' is not served here; this "
                                          f"server has '{service.model_name}'", "model", 404,
                                          "model_not_found"))
        elif path == CHAT_PATH:
            self._send_error(RequestError(f"use POST for {CHAT_PATH}", status=405,
                                          code="method_not_allowed"))
        else:
            self._not_found(path)

    def do_POST(self) -> None:
        path = self._route()
        try:
            body = self._read_json()  # always read the body, so a kept-alive connection stays in sync
        except RequestError as err:
            self.close_connection = True
            self._send_error(err)
            return
        if path != CHAT_PATH:
            self._not_found(path)
            return
        self._answer_chat(body)

    def _answer_chat(self, body: Any) -> None:
        """Answer a chat-completions body; every failure becomes an OpenAI-style error."""
        try:
            self._request = request = parse_chat_request(body, self.service.max_new_tokens,
                                                         self.service.modalities, self.service.voices)
            self._chat(request)
        except RequestError as err:
            self._send_error(err)
        except ContextLengthError as err:
            self._send_error(RequestError(str(err), "messages", code="context_length_exceeded"))
        except (BrokenPipeError, ConnectionResetError):
            self._note = "the client closed the connection"
            self.close_connection = True
        except Exception as err:  # one bad generation must not stop the server
            log.exception("chat completion failed")
            self._send_error(RequestError(f"generation failed: {err}", status=500, code="server_error"))

    def _not_found(self, path: str) -> None:
        self._send_error(RequestError(f"unknown path {path}; this server has POST {CHAT_PATH}, "
                                      f"GET /v1/models and GET /health", status=404, code="not_found"))

    def _body_size(self) -> int | None:
        """The body's ``Content-Length`` (None for a request without a body that may have none)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raise RequestError("chunked request bodies are not supported; send Content-Length",
                               status=411)
        length = self.headers.get("Content-Length")
        if length is None:
            if self.command == "POST":
                raise RequestError("the request has no body: send a JSON object with Content-Length",
                                   status=411)
            return None
        try:
            size = int(length)
        except ValueError:
            raise RequestError(f"bad Content-Length {length!r}") from None
        if size > MAX_BODY_BYTES:
            raise RequestError(f"the request body is {size} bytes; the limit is {MAX_BODY_BYTES}",
                               status=413)
        return size

    def _read_json(self) -> Any:
        size = self._body_size()
        if size is None:
            return None
        raw = self.rfile.read(size)
        try:
            return json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise RequestError(f"the request body is not valid JSON: {err}") from None

    def _chat(self, request: ChatRequest) -> None:
        service = self.service
        with service.generation(request) as stream:
            self._stream = stream
            if request.stream:
                self._send_events(service.chunks(stream, request))
            else:
                self._send_json(200, service.completion(stream, request))


def _printable(text: str, limit: int = 200) -> str:
    """``text`` with control characters escaped, cut to ``limit`` characters (it comes from clients)."""
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def access_line(client: str, requestline: str, status: int, tokens: tuple[int, int] | None,
                streamed: bool, seconds: float, note: str = "") -> str:
    """One access log line, uvicorn's style with the completion's figures appended.

    Example:
        ``127.0.0.1:51234 - "POST /v1/chat/completions HTTP/1.1" 200 prompt_tokens=23
        completion_tokens=12 stream=true 0.812s`` (one line); requests without a completion show
        ``-`` for the token counts; an error or a hang-up adds the message, quoted, at the end.
    """
    prompt, completion = tokens if tokens is not None else ("-", "-")
    line = (f'{client} - "{_printable(requestline)}" {status} prompt_tokens={prompt} '
            f"completion_tokens={completion} stream={str(streamed).lower()} {seconds:.3f}s")
    return f"{line} {json.dumps(_printable(note), ensure_ascii=False)}" if note else line


class ChatServer(ThreadingHTTPServer):
    """A ``ThreadingHTTPServer`` serving one :class:`ChatService` (``port=0`` picks a free port)."""

    daemon_threads = True
    block_on_close = False  # server_close() must not wait for idle keep-alive connections

    def __init__(self, service: ChatService | None, host: str = DEFAULT_HOST,
                 port: int = DEFAULT_PORT) -> None:
        self.service = service  # may be set after binding, before serve_forever()
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log a failed connection (instead of printing a traceback); a client hanging up is routine."""
        err = sys.exc_info()[1]
        if isinstance(err, (ConnectionError, TimeoutError)):
            log.debug("connection from %s ended: %s", client_address, err)
        else:
            log.exception("request from %s failed", client_address)

    @property
    def url(self) -> str:
        """The OpenAI base URL, ``http://HOST:PORT/v1``."""
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}/v1"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> ChatServer:
    """A bound server without its service yet, or an ``OSError`` that says what to do."""
    try:
        return ChatServer(None, host, port)
    except OSError as err:
        raise OSError(f"cannot listen on {host}:{port}: {err.strerror or err}; choose another --port "
                      f"(0 picks a free one)") from err


def _stop_on_signals(stop: threading.Event) -> dict[int, Any]:
    """Make SIGINT/SIGTERM set ``stop`` (in the main thread only); the handlers they replaced."""
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    return previous


def serve(model_path: str | Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          model_name: str | None = None, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, *,
          stop_event: threading.Event | None = None, out: TextIO | None = None,
          threads: int | None = None) -> int:
    """Serve ``model_path`` as an OpenAI-compatible API until SIGINT/SIGTERM (or ``stop_event``).

    Prints one line, ``Serving NAME on http://HOST:PORT/v1 (Ctrl-C stops)``, once requests are
    accepted, then one access log line per request on the ``nexus.serving.access`` logger
    (:func:`access_line`). Routes: ``POST /v1/chat/completions`` (``stream`` true or false), ``GET /v1/models``,
    ``GET /health``. Binds to localhost by default; another host is reachable by others with no
    authentication (a warning is logged).

    Args:
        model_path: HF folder, ``.gguf`` file, trained adapter folder, or multimodal composite folder.
        host: interface to bind.
        port: TCP port; 0 picks a free one (the printed line shows it).
        model_name: id reported to clients (default: the folder name or GGUF file stem).
        max_new_tokens: a request's ``max_tokens`` when it gives none.
        stop_event: set it to stop the server (for callers running it in a thread).
        out: where the one line goes (default stdout).
        threads: torch threads for CPU decoding (default: the rule of
            :func:`nexus.serving.models.decode_threads`).

    Returns:
        0 after a clean shutdown.

    Raises:
        OSError: the port is taken or the host cannot be bound.
    """
    out = out or sys.stdout
    server = _bind(host, port)  # bind first, so that a taken port fails before the slow model load
    try:
        model, tokenizer = load_chat_model(model_path, threads=threads)
    except BaseException:
        server.server_close()
        raise
    service = ChatService(model, tokenizer, model_name or model_display_name(model_path), max_new_tokens)
    server.service = service
    if not _is_loopback(host):
        log.warning("serving on %s: anyone who can reach this address can use the model (no "
                    "authentication); use --host 127.0.0.1 to keep it local", host)
    stop = stop_event or threading.Event()
    previous = _stop_on_signals(stop)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="nexus-serve", daemon=True)
    thread.start()
    try:
        out.write(f"Serving {service.model_name} on {server.url} (Ctrl-C stops)\n")
        out.flush()
        while not stop.wait(0.5):
            pass
    finally:
        service.cancel()
        server.shutdown()
        server.server_close()
        thread.join(5)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("server stopped")
    return 0
