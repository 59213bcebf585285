"""Serving a model: ``nexus chat`` (a terminal REPL) and ``nexus serve`` (an OpenAI-compatible HTTP
server on localhost).

    nexus chat models/capabilities/streaming      # type a message, watch the reply arrive
    nexus serve models/base --port 8000           # POST http://127.0.0.1:8000/v1/chat/completions
    python -m nexus.serving serve MODEL           # the same verbs without the nexus CLI

- :mod:`nexus.serving.models`: load a model for chatting (with the decoding threads of
  :func:`~nexus.serving.models.decode_threads`), and the name it is shown under.
- :mod:`nexus.serving.repl`: :class:`ChatSession` and :func:`chat_repl`.
- :mod:`nexus.serving.requests`: validating ``POST /v1/chat/completions`` bodies.
- :mod:`nexus.serving.service`: the model behind the server, OpenAI-shaped results.
- :mod:`nexus.serving.server`: the HTTP server, its access log (one line per request) and :func:`serve`.
- :mod:`nexus.serving.cli`: the one definition of the ``chat`` and ``serve`` command lines.

Replies stream through :mod:`nexus.generation.stream`. Models load through
:func:`nexus.loading.load_model` (an HF folder, a GGUF file, or a trained PEFT adapter folder,
merged on load); a multimodal composite (omni's output, a LLaVA folder) through
:func:`nexus.multimodal.compose.load_omni`, and then takes OpenAI ``image_url`` (data URLs) and
``input_audio`` parts. The server uses only the standard library (``http.server.ThreadingHTTPServer``)
and runs one generation at a time. Tool calls are not supported yet. Nothing but the standard
library is imported until a model is loaded. Nothing on the training path imports this package.
"""

from __future__ import annotations

from nexus.serving.models import load_chat_model, model_display_name
from nexus.serving.repl import ChatSession, chat_repl
from nexus.serving.requests import ChatRequest, RequestError, parse_chat_request
from nexus.serving.server import ChatServer, serve
from nexus.serving.service import ChatService

__all__ = [
    "ChatRequest", "ChatServer", "ChatService", "ChatSession", "RequestError", "chat_repl",
    "load_chat_model", "model_display_name", "parse_chat_request", "serve",
]
