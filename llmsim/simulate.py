"""The one call behind `llmsim run`: a workload, a policy and a deployment in; records and a
summary out."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from .calibration.fitted import fitted_cost_model
from .calibration.gpus import get_gpu
from .calibration.memory import kv_cache_blocks, memory_breakdown
from .calibration.profile import ProfileCostModel, default_profile, find_profile
from .calibration.roofline import RooflineCostModel, allreduce_costs
from .calibration.shapes import ModelShape, get_model
from .engine.config import EngineConfig
from .engine.cost import CostModel
from .engine.fast import FastCluster
from .engine.policy import Policy
from .engine.records import Records
from .engine.reference import ReferenceCluster
from .engine.router import ROUTERS, make_router
from .engine.summary import Slo, summarize
from .memory import check_replicas_fit
from .policies.scoring import release_times
from .steady_state import steady_output_tps
from .traces.workload import Workload


@dataclass(frozen=True, slots=True)
class Deployment:
    """What is being simulated: the model on which GPU, how many replicas, routed how."""

    model: str = "llama-3-8b"
    gpu: str = "h100"
    tp: int = 1
    num_replicas: int = 1
    router: str = "round-robin"
    engine: EngineConfig = field(default_factory=EngineConfig)
    profile: str | None = None  # a fitted or measured profile (path or bundled name), or
    # "roofline"; None: the bundled fitted profile for the GPU, else the bundled measured
    # profile for (gpu, model, tp), else the roofline estimate
    engine_overhead_s: float = 0.0  # per iteration, on top of the cost model: the engine's own
    # work beyond the model's kernels (scheduling, sampling, Python), which a kernel profile
    # does not time; measure it on the real engine (docs: `benchmarks/validate_cpu.sh`)

    def __post_init__(self) -> None:
        for name in ("tp", "num_replicas"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        check_replicas_fit(self.num_replicas)
        if self.router not in ROUTERS:
            raise ValueError(f"unknown router {self.router!r}; known routers: "
                             f"{', '.join(ROUTERS)}")
        if not (self.engine_overhead_s >= 0 and math.isfinite(self.engine_overhead_s)):
            raise ValueError(f"engine_overhead_s must be finite and >= 0, "
                             f"got {self.engine_overhead_s}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["engine"] = self.engine.to_dict()
        return d

    def shape(self) -> ModelShape:
        """The model's shape, checked against the tensor-parallel degree."""
        model = get_model(self.model)
        model.check_tp(self.tp)
        return model

    def cost_model(self) -> CostModel:
        model = self.shape()
        if not self.engine_overhead_s >= 0:
            raise ValueError(f"engine_overhead_s must be >= 0, got {self.engine_overhead_s}")
        fitted = fitted_cost_model(self.profile, model, self.gpu, self.tp,
                                   self.engine.async_scheduling, self.engine_overhead_s)
        if fitted is not None:
            return fitted
        gpu = get_gpu(self.gpu)
        profile = (find_profile(self.profile) if self.profile not in (None, "roofline")
                   else default_profile(self.model, self.gpu, self.tp) if self.profile is None
                   else None)
        if profile is None:
            return RooflineCostModel(model, gpu, tp=self.tp,
                                     engine_overhead_s=self.engine_overhead_s)
        profile.check_for(model, self.tp)
        per_token, fixed = allreduce_costs(model, gpu, self.tp)
        return ProfileCostModel(profile, per_token, fixed,
                                engine_overhead_s=self.engine_overhead_s)

    def num_gpu_blocks(self) -> int:
        e = self.engine
        if e.num_gpu_blocks is not None:
            return e.num_gpu_blocks
        return kv_cache_blocks(self.shape(), get_gpu(self.gpu), self.tp,
                               e.gpu_memory_utilization, e.block_size, e.max_num_batched_tokens,
                               e.max_num_seqs)

    def memory(self) -> dict:
        e = self.engine
        return memory_breakdown(self.shape(), get_gpu(self.gpu), self.tp,
                                e.gpu_memory_utilization, e.block_size, e.max_num_batched_tokens,
                                e.max_num_seqs)


SIMULATORS = {"fast": FastCluster, "reference": ReferenceCluster}


@dataclass(frozen=True, eq=False)
class RunResult:
    policy: str
    records: Records
    summary: dict
    config: dict


def simulate(workload: Workload, policy: Policy, deployment: Deployment = Deployment(),
             slo: Slo = Slo(), cost: CostModel | None = None,
             progress: Callable[[int], None] | None = None,
             simulator: str = "fast") -> RunResult:
    """Simulate `workload` under `policy` on `deployment`; `cost` overrides the deployment's
    cost model (a measured profile, a test's fixed costs). `progress(done)` is called as
    requests finish or are rejected. `simulator` is "fast" or "reference" (one SimPy step
    per iteration; the fast simulator must match it exactly)."""
    if simulator not in SIMULATORS:
        raise ValueError(f"unknown simulator {simulator!r}; known simulators: "
                         f"{', '.join(SIMULATORS)}")
    cost = cost if cost is not None else deployment.cost_model()
    num_blocks = deployment.num_gpu_blocks()
    if progress is not None:
        progress = _every_permille(progress, len(workload))
    release = (release_times(workload.arrival, policy.scoring_delay)
               if policy.scoring_delay else None)
    cluster = SIMULATORS[simulator](workload, policy, cost, deployment.engine, num_blocks,
                              make_router(deployment.router), deployment.num_replicas, progress,
                              release)
    records = cluster.run()
    reps = [r.stats() for r in cluster.replicas]
    iterations = sum(r["iterations"] for r in reps)
    span = float(np.nanmax(records.finish) - records.arrival.min()) if records.completed.any() \
        else 0.0
    engine_stats = {
        "iterations": iterations,
        "mean_batch_size": sum(r["batched_seqs"] for r in reps) / iterations if iterations else 0.0,
        "kv_utilization": (sum(r["block_seconds"] for r in reps) / (num_blocks * len(reps) * span)
                           if span > 0 else 0.0),
        "busy_fraction": (sum(r["busy_time_s"] for r in reps) / (len(reps) * span)
                          if span > 0 else 0.0),
        "num_gpu_blocks": num_blocks,
        "replicas": reps,
    }
    config = {
        "policy": {"name": policy.name, "victim": policy.victim,
                   "preemptive": policy.preemptive, "starvation": policy.starvation,
                   "scoring_delay_s": policy.scoring_delay, "description": policy.description},
        "deployment": deployment.to_dict(),
        "cost_model": getattr(cost, "label", type(cost).__name__),
        "workload": {"source": workload.source, "requests": len(workload)},
        "simulator": simulator,
        "slo": slo.to_dict(),
    }
    from . import engine  # the same results either way; only the speed differs

    config["engine_modules"] = "compiled" if engine.compiled() else "python"
    if simulator == "fast":
        from .engine.fast import compiled_affine_run
        config["decode_run_loop"] = "compiled" if compiled_affine_run else "python"
    if deployment.engine.enable_prefix_caching:  # likewise
        from .engine import prefix_cache
        config["prefix_pool_steps"] = "compiled" if prefix_cache.CompiledArrays else "numpy"

    describe = getattr(cost, "describe", None)
    if describe is not None:
        config["cost_model_parameters"] = describe()
    summary = summarize(records, engine_stats, slo)
    steady = steady_output_tps(records, deployment.engine.max_num_seqs * deployment.num_replicas)
    summary["throughput_output_tps_steady"] = steady if steady == steady else None  # NaN: none
    return RunResult(policy.name, records, summary, config)


def _every_permille(progress: Callable[[int], None], total: int) -> Callable[[int], None]:
    """Report progress about a thousand times per run, not once per request."""
    step = max(1, total // 1000)

    def report(done: int) -> None:
        if done % step == 0 or done == total:
            progress(done)

    return report
