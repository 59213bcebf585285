"""Fixtures of the benchmark tests (selected with ``pytest -G`` or ``pytest -B gsm8k,mmlu``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded SmolLM2-135M-Instruct as an HF folder: models/base when it exists, else converted now."""
    base = PROJECT_ROOT / "models" / "base"
    if (base / "config.json").is_file():
        return base
    from nexus.loading import convert_to_hf, embedded_gguf_path

    return convert_to_hf(embedded_gguf_path(), tmp_path_factory.mktemp("smollm2") / "base")
