"""How this machine trains: the accelerator, bf16 support, and which loss path is fastest.

Imported by the trainer and by every training method; the torch import happens inside
:meth:`DeviceProfile.detect` only.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DeviceProfile:
    """How this machine trains: device, mixed precision, and which loss path is fastest."""

    device: str
    bf16: bool
    model_loss: bool  # the model's own forward and loss rather than TRL's fused LM head
    labelled_logits: bool = True  # with model_loss: logits only where a label is trained
    padding_free: bool = False  # SFT batches as one row with position_ids, no padding computed

    @staticmethod
    def detect() -> DeviceProfile:
        """Inspect the accelerator (or CPU flags) once."""
        import torch

        if torch.cuda.is_available():
            import importlib.util

            return DeviceProfile(
                "cuda", torch.cuda.is_bf16_supported(), importlib.util.find_spec("triton") is None
            )
        return DeviceProfile("cpu", _cpu_has_bf16(), True, padding_free=True)


def _cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 matmuls (AVX512-BF16 or AMX-BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return platform.machine() == "arm64"
    return " avx512_bf16" in flags or " amx_bf16" in flags
