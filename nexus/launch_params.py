"""The ``launch:`` section of params.yaml: how many processes a train stage runs in, on how many
machines, and how they share the model (parsed and checked by :mod:`nexus.config`; used by
:mod:`nexus.launch`). Pure standard library.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SHARDED_WEIGHTS", "STRATEGIES", "LaunchParams"]

STRATEGIES = ("ddp", "fsdp", "zero2", "zero3")
"""``launch.strategy`` values: each is ``configs/accelerate/<strategy>.yaml``."""
SHARDED_WEIGHTS = ("fsdp", "zero3")
"""Strategies under which no process holds the whole model (the weights themselves are sharded)."""


@dataclass(frozen=True)
class LaunchParams:
    """``launch:`` how many processes the train stages run in, and how they share the model.

    No stage tracks it: ``batch_size x grad_accum`` is the global batch whatever the world size, so a
    run on 1 or 8 processes learns the same schedule (:func:`nexus.ranks.split_global_batch`).
    """

    processes: int = 1  # per node (one per GPU; on a CPU, one per core pair or so)
    nodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"  # node 0's address (several nodes)
    master_port: int = 0  # 0: a free port on one node; several nodes need a fixed one (29500)
    strategy: str = "ddp"  # ddp | fsdp | zero2 | zero3

    @property
    def world_size(self) -> int:
        """Processes over all nodes."""
        return self.processes * self.nodes

    def problems(self) -> dict[str, str]:
        """``{key: what is wrong}`` for every invalid value."""
        out: dict[str, str] = {}
        for key in ("processes", "nodes"):
            if getattr(self, key) < 1:
                out[key] = f"must be 1 or more, got {getattr(self, key)}"
        if not 0 <= self.node_rank < max(self.nodes, 1):
            out["node_rank"] = f"must be in 0..{self.nodes - 1} (launch.nodes is {self.nodes}), got {self.node_rank}"
        if not 0 <= self.master_port <= 65535:
            out["master_port"] = f"must be a TCP port (0 picks a free one on one node), got {self.master_port}"
        elif self.nodes > 1 and self.master_port == 0:
            out["master_port"] = "several nodes need a fixed port that node 0 listens on (e.g. 29500)"
        if self.strategy not in STRATEGIES:
            out["strategy"] = f"'{self.strategy}' is not one of {', '.join(STRATEGIES)}"
        return out
