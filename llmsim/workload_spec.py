"""Which requests a run sends, and when: one description used by every command.

A `WorkloadSpec` names the requests (a trace file, or the bundled Azure sample; for
CASTILLO whose lengths and which split; optionally N requests drawn from the trace's
prompts, or only its first N) and their arrival times (the trace's own, rescaled to a mean
rate, or drawn from a Poisson or gamma process with a seed), at a rate in req/s or at a
load: a fraction of the deployment's measured capacity on those requests.

`build(deployment)` = `place(requests(), deployment)`. Commands that run many points on
the same requests (sweeps, capacity searches) call `requests()` once and `place` per point.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np

from .capacity import capacity_rps
from .engine.cost import CostModel
from .memory import check_fits_memory
from .simulate import Deployment
from .traces import PromptPool, arrivals, default_workload, load_trace, synthesize
from .traces.workload import Workload, WorkloadError

ARRIVAL_PROCESSES = ("trace", "poisson", "gamma")


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    trace: str | None = None  # a trace file; None: the bundled Azure conversation sample
    trace_model: str | None = None  # CASTILLO: whose output lengths
    split: str | None = None  # CASTILLO: train, validate or test
    draw: int | None = None  # draw N requests from the trace's prompts, with replacement
    requests: int | None = None  # keep only the first N requests
    arrival_process: str = "trace"  # "trace" (recorded times), "poisson" or "gamma"
    rate: float | None = None  # mean arrival rate, req/s
    load: float | None = None  # mean arrival rate as a fraction of measured capacity
    burstiness: float = 1.0  # gamma shape (1 is Poisson, lower is burstier)
    seed: int = 0  # of every draw: requests drawn, arrival times

    def __post_init__(self) -> None:
        if self.load is not None and self.rate is not None:
            raise ValueError("give --load or --rate, not both")
        for name in ("load", "rate"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"--{name} must be a finite number > 0, got {value}")
        if self.arrival_process not in ARRIVAL_PROCESSES:
            raise ValueError(f"--arrival-process must be trace, poisson or gamma, "
                             f"got {self.arrival_process!r}")
        if self.arrival_process != "trace" and self.rate is None and self.load is None:
            raise ValueError(f"--arrival-process {self.arrival_process} needs --rate or --load")
        if not (self.burstiness > 0 and math.isfinite(self.burstiness)):
            raise ValueError(f"burstiness must be finite and > 0, got {self.burstiness}")
        for name in ("draw", "requests"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be >= 1, got {value}")
        if self.draw is not None:
            check_fits_memory(self.draw, "--draw")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"--seed must be a whole number >= 0, got {self.seed!r}")
        if self.trace is None and (self.trace_model is not None or self.split is not None):
            raise ValueError("--trace-model and --split apply to a CASTILLO --trace")

    def to_dict(self) -> dict:
        return asdict(self)

    def requests_only(self) -> Workload:
        """The requests, with the trace's arrival times (or none, if it has none)."""
        if self.trace is None:
            workload = default_workload()
        else:
            options = {k: v for k, v in (("model", self.trace_model), ("split", self.split))
                       if v is not None}
            workload = load_trace(self.trace, **options)
        if self.draw is not None:
            pool = workload.meta.get("pool") or PromptPool.from_workload(workload)
            drawn = synthesize(self.draw, pool, np.zeros(self.draw),
                               np.random.default_rng(self.seed))
            workload = replace(drawn, source=f"{self.draw} requests drawn from {pool.source} "
                                             f"(seed {self.seed})",
                               meta={**drawn.meta, "has_arrivals": False})
        if self.requests is not None:
            workload = workload.head(self.requests)
        if not len(workload):
            raise WorkloadError("the workload has no requests")
        return workload

    def place(self, workload: Workload, deployment: Deployment | None = None,
              cost: CostModel | None = None,
              progress: Callable[[int, int], None] | None = None
              ) -> tuple[Workload, float | None]:
        """`workload` at this spec's arrival times, and the capacity measured for `--load`
        (req/s; None when the rate was given). A load needs the deployment (and its cost
        model, if not the deployment's own) to measure capacity on; `progress(done, total)`
        follows that measurement."""
        if self.arrival_process == "trace" and not workload.meta.get("has_arrivals", True):
            raise WorkloadError(f"{workload.source} has no arrival times: use "
                                "--arrival-process poisson or gamma with --rate or --load")
        rate, capacity = self.rate, None
        rescale = self.arrival_process == "trace" and (rate is not None or self.load is not None)
        if rescale and len(workload) > 1 and not workload.duration > 0:
            raise WorkloadError(f"all {len(workload)} requests of {workload.source} arrive at "
                                "the same instant: there is no rate to rescale; use "
                                "--arrival-process poisson or gamma")
        if self.load is not None:
            if deployment is None:
                raise ValueError("--load is a fraction of the simulated capacity: say which "
                                 "deployment to measure it on, or give --rate")
            capacity = capacity_rps(workload, deployment, cost, progress)
            rate = self.load * capacity
        if rate is None:
            return workload, capacity
        if self.arrival_process == "trace":
            times = arrivals.scale_to_rate(workload.arrival, rate)
            return workload.with_arrivals(times, f"arrivals rescaled to {rate:.3g} req/s"), \
                capacity
        shape = self.burstiness if self.arrival_process == "gamma" else 1.0
        times = arrivals.gamma(len(workload), rate, shape, np.random.default_rng(self.seed))
        note = (f"poisson arrivals at {rate:.6g} req/s" if self.arrival_process == "poisson"
                else f"gamma({shape:g}) arrivals at {rate:.6g} req/s")
        return workload.with_arrivals(times, f"{note}, seed {self.seed}"), capacity

    def build(self, deployment: Deployment | None = None, cost: CostModel | None = None,
              progress: Callable[[int, int], None] | None = None
              ) -> tuple[Workload, float | None]:
        """The requests at their arrival times, and the capacity measured for `--load`."""
        return self.place(self.requests_only(), deployment, cost, progress)
