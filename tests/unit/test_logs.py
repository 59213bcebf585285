"""Known upstream noise is silenced at its source only (nexus.logs.quiet_known_upstream_noise)."""

from __future__ import annotations

import logging
import warnings

from nexus.logs import quiet_known_upstream_noise


def test_only_the_listed_upstream_messages_are_silenced(caplog) -> None:
    quiet_known_upstream_noise()
    quiet_known_upstream_noise()  # twice: one filter
    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    assert len(logger.filters) == 1
    with caplog.at_level(logging.WARNING):
        logger.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please ...", "x")
        logger.warning("a real bitsandbytes problem")
        logging.getLogger("bitsandbytes.other").warning("Failed to load CPU gemm_4bit_forward from elsewhere")
    assert [r.getMessage() for r in caplog.records] == [
        "a real bitsandbytes problem", "Failed to load CPU gemm_4bit_forward from elsewhere"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_known_upstream_noise()
        warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning,
                      stacklevel=1)
        warnings.warn("`something_else` is deprecated", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["`something_else` is deprecated"]
