"""Synthetic workloads of any size drawn from real prompts and real output lengths.

`synthesize(n, pool, arrivals, rng)` builds n requests (ten million in a few seconds):
- each request draws a pool row uniformly at random, with replacement;
- its prompt length is that row's `input_size`;
- its output length is one of that row's sampled output lengths (CASTILLO: 10
  generations of the same prompt by the same model), chosen uniformly at random, so the
  workload keeps the real spread of lengths *within* a prompt, the noise no length
  predictor can remove;
- `prompt_id` is the pool row (int64); the texts are not copied per request: read them as
  `pool.text[workload.prompt_id]`, the pool is `workload.meta["pool"]`;
- `model` is set per request only when the pool mixes models (else `meta["model"]`);
- arrival times come from `arrivals`: a process (`arrivals.Poisson`, `Gamma`, `Replay` --
  a real trace's times, tiled in time past its end), or an array of times to replay.

Deterministic under a seed: `rng` is split (`Generator.spawn`) into three streams, for
the pool rows, the output samples and the arrivals, so the same seed gives the same
requests whichever arrival process they are given, and the first k of n requests are the
k requests of a smaller run. All numpy, no per-request Python.
"""

from __future__ import annotations

import numpy as np

from .arrivals import ArrivalProcess, Replay
from .pool import PromptPool
from .workload import Workload


def synthesize(n: int, pool: PromptPool | Workload, arrivals: ArrivalProcess | np.ndarray,
               rng: np.random.Generator) -> Workload:
    """n requests from `pool` at the times of `arrivals` (see the module docstring)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if isinstance(pool, Workload):
        pool = PromptPool.from_workload(pool)
    if isinstance(arrivals, np.ndarray):
        arrivals = Replay(arrivals)
    row_rng, sample_rng, arrival_rng = rng.spawn(3)
    rows = row_rng.integers(0, len(pool), size=n, dtype=np.int64)
    prompt = pool.input_size[rows]
    if pool.samples == 1:
        output = pool.output_sizes[rows, 0]
    else:
        pick = sample_rng.integers(0, pool.samples, size=n, dtype=np.int64)
        output = pool.output_sizes.ravel()[rows * pool.samples + pick]
        del pick
    times = arrivals.times(n, arrival_rng)
    if len(times) != n:
        raise ValueError(f"the arrival process gave {len(times)} times for {n} requests")
    models = None if pool.model is None else np.unique(pool.model)
    per_request_model = pool.model[rows] if models is not None and len(models) > 1 else None
    how = arrivals.describe() if hasattr(arrivals, "describe") else type(arrivals).__name__
    meta = {"pool": pool, "pool_source": pool.source, "arrivals": how, "has_arrivals": True,
            "format": "synthetic"}
    if models is not None and len(models) == 1:
        meta["model"] = str(models[0])
    return Workload(times, prompt, output, prompt_id=rows, model=per_request_model,
                    source=f"{n} requests synthesised from {pool.source}; {how}", meta=meta)
