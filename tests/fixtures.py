"""Shared fixtures (registered from conftest.py): tiny models built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiny import build_tiny_llama


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama (hidden 64, 2 layers) with the SmolLM2 tokenizer, as an HF folder."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama")
