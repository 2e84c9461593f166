"""A real engine in-process: transformers' continuous batching with an llmsim policy.

For a GPU box without vLLM (and for CPU tests): a causal LM with random weights built from
a config (nothing is downloaded), served by transformers' `ContinuousBatchingManager`
(paged attention, its own scheduler loop in a background thread). llmsim's policy orders
the waiting queue: `policy_scheduler(ranks)` is transformers' FIFO scheduler (decodes
first, then prefills) except that waiting requests are taken by (rank, arrival) instead of
arrival alone. Ranks are computed once, when a request arrives, so policies whose ranks
change while a request runs (SRPT, MLFQ) and starvation prevention are refused.

`run_workload` submits the workload's requests at their arrival times (token ids drawn at
random, output length forced: EOS disabled, `max_new_tokens` = the trace's length) and
returns per-request times, measured with `time.perf_counter` on the submitting thread and
the engine's token timestamps:

    arrival      when the request was submitted (s from the run's start)
    first_token  when its first token was sampled
    finish       when its last token was sampled
    tokens       how many tokens it generated
    token_times  every token's time (for inter-token latencies)

Tested with transformers 5.23 on CPU (`attn_implementation="sdpa"`, which continuous
batching runs paged); not yet on a GPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..engine.request import Request
from ..policies import Policy
from ..traces.workload import Workload

SCHEDULER_NAME = "llmsim"


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """transformers' continuous-batching knobs, in its own names."""

    num_blocks: int = 256
    block_size: int = 16
    max_batch_tokens: int = 256
    max_requests_per_batch: int = 32
    attn_implementation: str = "sdpa"  # continuous batching runs it paged
    device: str = "cpu"
    dtype: str = "float32"  # float32 on CPU; bfloat16 on a GPU


@dataclass(eq=False)
class ServedRun:
    """What the in-process engine did with each request: times and tokens."""

    arrival: np.ndarray
    first_token: np.ndarray
    finish: np.ndarray
    tokens: np.ndarray
    token_times: list[list[float]] = field(repr=False)
    settings: EngineSettings = field(default_factory=EngineSettings)
    policy: str = "fcfs"

    def columns(self) -> dict[str, np.ndarray]:
        done = self.tokens > 1
        tpot = np.full(len(self.arrival), np.nan)
        tpot[done] = ((self.finish - self.first_token)[done] / (self.tokens[done] - 1))
        return {"arrival": self.arrival, "ttft": self.first_token - self.arrival,
                "e2e": self.finish - self.arrival, "tpot": tpot, "tokens": self.tokens}


def static_ranks(workload: Workload, policy: Policy) -> np.ndarray:
    """Each request's rank when it arrives (lower runs first)."""
    if policy.preemptive or policy.starvation is not None:
        raise ValueError(f"policy {policy.name!r} re-ranks requests as they run (preemptive or "
                         "starvation prevention); the transformers runner ranks once, on arrival")
    return np.array([policy.rank(Request(i, float(a), int(p), int(o)), float(a))
                     for i, (a, p, o) in enumerate(zip(workload.arrival, workload.prompt_tokens,
                                                       workload.output_tokens, strict=True))])


def policy_scheduler(ranks: dict[str, float]):
    """transformers' FIFO scheduler, with waiting requests ordered by (rank, arrival).

    A request without a rank (submitted by someone else) goes after the ranked ones, in
    arrival order: a missing score must not stop the engine.
    """
    from transformers.generation.continuous_batching.scheduler import FIFOScheduler

    class PolicyScheduler(FIFOScheduler):
        def _get_waiting_candidates(self):
            fifo = super()._get_waiting_candidates()
            order = {state.request_id: i for i, state in enumerate(fifo)}
            return sorted(fifo, key=lambda s: (ranks.get(s.request_id, np.inf),
                                               order[s.request_id]))

    return PolicyScheduler


def random_model(config, settings: EngineSettings, seed: int = 0):
    """A causal LM with random weights from a transformers config (no download)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(
        config, attn_implementation=settings.attn_implementation,
        dtype=getattr(torch, settings.dtype))
    return model.to(settings.device).eval()


def run_workload(model, workload: Workload, policy: Policy, settings: EngineSettings,
                 seed: int = 0, timeout: float = 600.0,
                 progress: Callable[[int], None] | None = None) -> ServedRun:
    """Serve `workload` on `model` under `policy`, in real time; see the module docstring."""
    from transformers import GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig
    from transformers.generation.continuous_batching import scheduler as cb_scheduler

    n = len(workload)
    ranks_by_row = static_ranks(workload, policy)
    ranks = {f"r{i}": float(r) for i, r in enumerate(ranks_by_row)}
    rng = np.random.default_rng(seed)
    vocab = int(model.config.vocab_size)
    prompts = [rng.integers(1, vocab, int(p)).tolist() for p in workload.prompt_tokens]

    # transformers picks its scheduler class by name from a module-level table, when its
    # background loop starts: ours is in the table for this run only.
    cb_scheduler.SCHEDULER_MAPPING[SCHEDULER_NAME] = policy_scheduler(ranks)
    submitted = np.full(n, np.nan)
    results = {}
    manager = None
    try:
        manager = model.init_continuous_batching(
            generation_config=GenerationConfig(do_sample=False, eos_token_id=-1,
                                               max_new_tokens=int(workload.output_tokens.max())),
            continuous_batching_config=ContinuousBatchingConfig(
                num_blocks=settings.num_blocks, block_size=settings.block_size,
                max_batch_tokens=settings.max_batch_tokens,
                max_requests_per_batch=settings.max_requests_per_batch,
                scheduler_type=SCHEDULER_NAME))
        manager.start()
        start = time.perf_counter()
        for i in range(n):  # submit at the trace's times
            wait = start + workload.arrival[i] - workload.arrival[0] - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            submitted[i] = time.perf_counter()
            manager.add_request(prompts[i], request_id=f"r{i}",
                                max_new_tokens=int(workload.output_tokens[i]),
                                record_timestamps=True, eos_token_id=-1)
        deadline = time.perf_counter() + timeout
        while len(results) < n:
            out = manager.get_result(timeout=max(0.1, deadline - time.perf_counter()))
            if out is None:
                if time.perf_counter() >= deadline:
                    raise TimeoutError(f"{n - len(results)} of {n} requests unfinished after "
                                       f"{timeout:.0f} s")
                continue
            results[out.request_id] = out
            if progress:
                progress(len(results))
    finally:
        if manager is not None:
            manager.stop(block=True)
            destroy = getattr(model, "destroy_cached_continuous_batching_manager", None)
            if destroy is not None:
                destroy()
        del cb_scheduler.SCHEDULER_MAPPING[SCHEDULER_NAME]

    first = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    tokens = np.zeros(n, dtype=np.int64)
    token_times: list[list[float]] = []
    for i in range(n):
        out = results[f"r{i}"]
        stamps = [t - start for t in (out.timestamps or [])]
        tokens[i] = len(out.generated_tokens)
        first[i] = stamps[0] if stamps else np.nan
        finish[i] = stamps[-1] if stamps else np.nan
        token_times.append(stamps)
    return ServedRun(submitted - start, first, finish, tokens, token_times, settings, policy.name)


def engine_config(settings: EngineSettings):
    """The llmsim engine settings closest to transformers' knobs, for `llmsim validate`."""
    from ..engine.config import EngineConfig

    return EngineConfig(max_num_seqs=settings.max_requests_per_batch,
                        max_num_batched_tokens=settings.max_batch_tokens,
                        block_size=settings.block_size, num_gpu_blocks=settings.num_blocks,
                        # transformers shares blocks its own way, not vLLM's (prefix_cache.py)
                        enable_prefix_caching=False)


def replay_run(run: ServedRun, workload: Workload, model_id: str):
    """The run as `llmsim replay` records one (`replay.bench_json` writes it), so that
    `llmsim validate` reads in-process and over-HTTP runs alike."""
    from datetime import datetime

    from .replay import ReplayRun, RequestResult

    due = workload.arrival - workload.arrival[0]
    results = []
    for i in range(len(workload)):
        stamps, sent = run.token_times[i], float(run.arrival[i])
        ok = len(stamps) > 0
        results.append(RequestResult(
            ok, "" if ok else "no token generated", float(due[i]), sent, 0.0,
            stamps[0] - sent if ok else 0.0, list(np.diff(stamps)) if ok else [],
            stamps[-1] - sent if ok else 0.0, len(stamps), int(workload.prompt_tokens[i]), ""))
    finish = max((r.start_time + r.latency for r in results), default=0.0)
    return ReplayRun(workload, _InProcess(model_id), results,
                     finish - float(run.arrival.min()), datetime.now().strftime("%Y%m%d-%H%M%S"),
                     "random token ids (in-process engine)")


@dataclass(frozen=True, slots=True)
class _InProcess:
    """Stands in for `ReplaySettings` in the written record: there was no HTTP endpoint."""

    model: str
    max_concurrency: None = None

    def to_dict(self) -> dict:
        return {"url": None, "model": self.model, "engine": "transformers continuous batching"}
