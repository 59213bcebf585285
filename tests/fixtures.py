"""Shared fixtures (registered from conftest.py): tiny models built once per session."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tiny import build_tiny_llama


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama (hidden 64, 2 layers) with the SmolLM2 tokenizer, as an HF folder."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture
def keep_signal_handlers() -> Iterator[None]:
    """Whatever a test does, the process's SIGUSR1/SIGUSR2/SIGTERM handlers are put back afterwards."""
    signals = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)
    before = {sig: signal.getsignal(sig) for sig in signals}
    yield
    for sig, handler in before.items():
        signal.signal(sig, handler)
