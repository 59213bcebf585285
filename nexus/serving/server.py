"""``nexus serve``: an OpenAI-compatible HTTP server (standard library only) for one model.

Routes: ``POST /v1/chat/completions`` (``stream`` true or false; streamed replies are server-sent
events in chunked transfer encoding), ``GET /v1/models``, ``GET /v1/models/{id}`` and ``GET /health``.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from nexus.generation.stream import DEFAULT_MAX_NEW_TOKENS, ContextLengthError
from nexus.serving.models import load_chat_model, model_display_name
from nexus.serving.requests import ChatRequest, RequestError, parse_chat_request
from nexus.serving.service import ChatService

log = logging.getLogger(__name__)

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

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

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
            request = parse_chat_request(body, self.service.max_new_tokens)
            self._chat(request)
        except RequestError as err:
            self._send_error(err)
        except ContextLengthError as err:
            self._send_error(RequestError(str(err), "messages", code="context_length_exceeded"))
        except (BrokenPipeError, ConnectionResetError):
            log.info("client closed the connection")
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
            if request.stream:
                self._send_events(service.chunks(stream, request))
            else:
                self._send_json(200, service.completion(stream))


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
          stop_event: threading.Event | None = None, out: TextIO | None = None) -> int:
    """Serve ``model_path`` as an OpenAI-compatible API until SIGINT/SIGTERM (or ``stop_event``).

    Prints one line, ``Serving NAME on http://HOST:PORT/v1 (Ctrl-C stops)``, once requests are
    accepted. Routes: ``POST /v1/chat/completions`` (``stream`` true or false), ``GET /v1/models``,
    ``GET /health``. Binds to localhost by default; another host is reachable by others with no
    authentication (a warning is logged).

    Args:
        model_path: HF folder, ``.gguf`` file, or trained adapter folder.
        host: interface to bind.
        port: TCP port; 0 picks a free one (the printed line shows it).
        model_name: id reported to clients (default: the folder name or GGUF file stem).
        max_new_tokens: a request's ``max_tokens`` when it gives none.
        stop_event: set it to stop the server (for callers running it in a thread).
        out: where the one line goes (default stdout).

    Returns:
        0 after a clean shutdown.

    Raises:
        OSError: the port is taken or the host cannot be bound.
    """
    out = out or sys.stdout
    server = _bind(host, port)  # bind first, so that a taken port fails before the slow model load
    try:
        model, tokenizer = load_chat_model(model_path)
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
