"""The rank side of a multi-process train stage: who this process is, and the few collective steps
the shared trainer takes (one process group, started early; barriers; the PIDs of every rank).

A process is a rank when a launcher (``accelerate launch``, ``torchrun``) set ``WORLD_SIZE`` and
``RANK``; otherwise it is the only one, and every function here is a no-op that answers for one
process. Reading the environment loads nothing; torch is imported only by the collective calls.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = [
    "BatchSplitError",
    "barrier",
    "gather_pids",
    "group",
    "is_sharded",
    "is_main",
    "local_rank",
    "nodes",
    "rank",
    "split_global_batch",
    "start_process_group",
    "world_size",
]


class BatchSplitError(ValueError):
    """The global batch (``batch_size x grad_accum``) does not split evenly across the world."""


def world_size() -> int:
    """Processes in this run (``WORLD_SIZE``; 1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank() -> int:
    """This process's global rank (``RANK``; 0 without a launcher)."""
    return int(os.environ.get("RANK", "0") or 0)


def local_rank() -> int:
    """This process's rank on its node (``LOCAL_RANK``; 0 without a launcher)."""
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def nodes() -> int:
    """Machines in this run (``WORLD_SIZE / LOCAL_WORLD_SIZE``; 1 without a launcher)."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "0") or 0) or world_size()
    return max(1, world_size() // local)


def is_main() -> bool:
    """Whether this process writes the run's outputs, metrics, checkpoints' markers and progress
    lines: the first process of its node (on one node, rank 0). Several nodes each write into their
    own clone of the project, so that every node's DVC sees the stage's outputs."""
    return local_rank() == 0


def split_global_batch(batch_size: int, grad_accum: int, world: int, where: str = "capabilities") -> tuple[int, int]:
    """``(per-process batch, accumulation steps)`` whose product times ``world`` is the global batch
    ``batch_size x grad_accum``: accumulation is divided first (the per-process batch, hence memory,
    stays what one process was given), then the batch.

    Raises:
        BatchSplitError: ``world`` does not divide the global batch; the message names the keys.
    """
    total = batch_size * grad_accum
    if world <= 1:
        return batch_size, grad_accum
    for per_process in range(batch_size, 0, -1):
        if total % (per_process * world) == 0:
            return per_process, total // (per_process * world)
    raise BatchSplitError(
        f"{where}: the global batch batch_size x grad_accum = {batch_size} x {grad_accum} = {total} does not "
        f"split across {world} processes; make it a multiple of {world} (e.g. grad_accum: "
        f"{grad_accum * world}) or change launch.processes")


def start_process_group() -> None:
    """Join the run's process group now (gloo on CPU, NCCL on GPUs), as the Trainer would later,
    so that the steps before the Trainer (tidying checkpoints) can wait for each other."""
    if world_size() <= 1:
        return
    import torch
    from accelerate import PartialState

    PartialState(cpu=not torch.cuda.is_available())


def barrier() -> None:
    """Wait until every rank gets here (nothing to wait for in one process)."""
    dist = group()
    if dist is not None:
        dist.barrier()


def gather_pids() -> list[int]:
    """Every rank's PID, by rank (this process's alone without a process group)."""
    dist = group()
    if dist is None:
        return [os.getpid()]
    pids: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(pids, os.getpid())
    return [int(p) for p in pids]


def group() -> Any:
    """``torch.distributed`` when a process group of more than one rank is running, else None
    (without a launcher's ``WORLD_SIZE``, torch is not even imported)."""
    if world_size() <= 1:
        return None
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist
    return None


def is_sharded(trainer: Any) -> bool:
    """Whether ``trainer`` shards the model across ranks (FSDP or DeepSpeed): saving its weights
    is then a collective step every rank must take."""
    return bool(getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled", False))
