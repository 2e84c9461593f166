"""Shared test helpers: cost models whose iteration times are easy to compute by hand."""

from __future__ import annotations

import numpy as np

from llmsim.engine.config import EngineConfig
from llmsim.engine.cost import IterationShape
from llmsim.simulate import Deployment
from llmsim.traces.workload import Workload


class LinearCost:
    """time = base + per_token * num_tokens + per_context * decode_context, or `floor` if that
    is more; logs every shape."""

    label = "linear test cost"

    def __init__(self, base: float = 1.0, per_token: float = 0.0, per_context: float = 0.0,
                 floor: float = 0.0):
        self.base, self.per_token, self.per_context = base, per_token, per_context
        self.floor = floor
        self.shapes: list[IterationShape] = []

    def iteration_time(self, shape: IterationShape) -> float:
        self.shapes.append(shape)
        return max(self.base + self.per_token * shape.num_tokens
                   + self.per_context * shape.decode_context, self.floor)


class RunLinearCost(LinearCost):
    """LinearCost with the affine form of its decode-only iterations, so that the fast
    simulator prices runs of them in closed form (it logs only the shapes priced one by
    one)."""

    def decode_affine(self, num_decodes: int) -> tuple[float, float, float]:
        return self.base + self.per_token * num_decodes, self.per_context, self.floor


def workload(rows, source="test") -> Workload:
    """rows: (arrival, prompt_tokens, output_tokens)."""
    a, p, o = (np.array(c) for c in zip(*rows, strict=True))
    return Workload(a.astype(float), p, o, source=source)


def deployment(**engine) -> Deployment:
    engine.setdefault("num_gpu_blocks", 10_000)
    replicas = engine.pop("num_replicas", 1)
    router = engine.pop("router", "round-robin")
    return Deployment(num_replicas=replicas, router=router, engine=EngineConfig(**engine))
