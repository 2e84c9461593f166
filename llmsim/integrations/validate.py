"""`llmsim validate`: the simulator's prediction beside a real run of the same workload.

The real run is a result file of `llmsim replay` (vLLM `bench serve` fields plus an
`llmsim` section). The simulator is given what the server was given: the requests that
completed, arriving when they were sent (`start_times`: after any client-side concurrency
wait, so what the server saw), with the prompt and output lengths the server reported, on
the engine settings recorded with the run, under the same policy: the integer priorities
the client sent if it sent any (vLLM's priority scheduling), else the recorded policy name
(a server-side llmsim scheduler), else FCFS (vLLM's default). Failed requests are left out
on both sides, and counted. A run recorded with prefix caching on (vLLM's default) whose
workload had block ids (the replay writes them beside the lengths) is simulated with
llmsim's prefix cache over those ids, the server's cache over the prompts they shaped.

Both sides are summarised the same way, over the same requests: TTFT, TPOT (per request:
(E2E - TTFT) / (output tokens - 1), requests of more than one token) and E2E by mean, P50,
P90 and P99; throughput as completed requests (and output tokens) per second between the
first send and the last finish. Relative error = (sim - real) / real: positive when the
simulator predicts more (slower latencies, higher throughput).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from ..engine.config import EngineConfig
from ..engine.cost import CostModel
from ..engine.request import Request
from ..files import read_json_object
from ..policies import FCFS, Policy, get_policy
from ..simulate import Deployment, simulate
from ..traces.block_hashes import BlockHashes
from ..traces.workload import Workload
from .replay import FORMAT

LATENCIES = ("ttft", "tpot", "e2e")
STATS = ("mean", "p50", "p90", "p99")
REQUIRED = ("ttfts", "latencies", "output_lens", "input_lens", "start_times", "errors")


class ResultsFileError(ValueError):
    """A results file that `validate` cannot read; the message names the file and the field."""


@dataclass(frozen=True, eq=False)
class MeasuredRun:
    """What validation needs from a replay's results file, one row per request."""

    path: str
    start: np.ndarray  # send time, s from the run's start
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray  # tokens received (requested, for failures)
    ttft: np.ndarray
    e2e: np.ndarray
    ok: np.ndarray  # bool: completed without error
    engine: EngineConfig
    policy: str | None  # the llmsim policy named with the run, if any
    priorities: np.ndarray | None  # the integer priorities sent, if any
    deployment: dict  # simulator defaults recorded with the run (model, gpu, tp, profile)
    hash_ids: BlockHashes | None = None  # the workload's prefix-cache block ids, per row

    def __len__(self) -> int:
        return len(self.start)


def load_measured_run(path: str | Path) -> MeasuredRun:
    """Read and check a replay results file; `ResultsFileError` says what is wrong."""
    path = Path(path)
    doc = read_json_object(path, ResultsFileError, "results file")
    missing = [k for k in REQUIRED if not isinstance(doc.get(k), list)]
    if missing:
        raise ResultsFileError(f"{path}: no per-request list {missing[0]!r}: not a replay "
                               "result (vLLM writes these lists only with --save-detailed)")
    meta = doc.get("llmsim")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ResultsFileError(f"{path}: no 'llmsim' section of format {FORMAT}: write it with "
                               "`llmsim replay`, which records the workload and engine settings")
    workload = meta.get("workload") or {}
    n = len(doc["errors"])
    columns = {k: doc[k] for k in REQUIRED}
    columns.update({f"llmsim.workload.{k}": workload.get(k) for k in ("prompt_tokens",
                                                                     "output_tokens")})
    for name, col in columns.items():
        if not isinstance(col, list) or len(col) != n:
            got = f"{len(col)} entries" if isinstance(col, list) else "nothing"
            raise ResultsFileError(f"{path}: {name} has {got}, errors has {n}")
    if not n:
        raise ResultsFileError(f"{path}: the run has no requests")
    ok = np.array([e in ("", None) for e in doc["errors"]])
    nums = {}
    for name in ("ttfts", "latencies", "output_lens", "input_lens", "start_times"):
        try:
            nums[name] = np.array([math.nan if v is None else v for v in doc[name]], dtype=float)
        except (TypeError, ValueError):
            raise ResultsFileError(f"{path}: {name} holds something that is not a number") \
                from None
        bad = np.flatnonzero(ok & ~np.isfinite(nums[name]))
        if len(bad):
            raise ResultsFileError(f"{path}: {name}[{bad[0]}] is not a number for a request "
                                   "that completed")
    requested_out = np.array(workload["output_tokens"], dtype=float)
    requested_in = np.array(workload["prompt_tokens"], dtype=float)
    out = np.where(ok & (nums["output_lens"] > 0), nums["output_lens"], requested_out)
    inp = np.where(ok & (nums["input_lens"] > 0), nums["input_lens"], requested_in)
    if np.any(ok & (nums["ttfts"] > nums["latencies"])):
        i = int(np.flatnonzero(ok & (nums["ttfts"] > nums["latencies"]))[0])
        raise ResultsFileError(f"{path}: request {i} has a TTFT longer than its E2E latency")
    priorities = meta.get("priorities")
    if priorities is not None and len(priorities) != n:
        raise ResultsFileError(f"{path}: llmsim.priorities has {len(priorities)} entries, "
                               f"errors has {n}")
    recorded = meta.get("engine") or {}
    if not isinstance(recorded, dict):
        raise ResultsFileError(f"{path}: llmsim.engine is not an object of engine settings")
    # runs recorded before llmsim modelled prefix caching say nothing of it: they ran without
    recorded = {"enable_prefix_caching": False, **recorded}
    try:
        engine = EngineConfig(**recorded)
    except (TypeError, ValueError) as e:
        raise ResultsFileError(f"{path}: llmsim.engine: {e}") from None
    return MeasuredRun(str(path), nums["start_times"], inp.astype(np.int64), out.astype(np.int64),
                   nums["ttfts"], nums["latencies"], ok, engine, meta.get("policy"),
                   None if priorities is None else np.asarray(priorities, dtype=np.int64),
                   dict(meta.get("deployment") or {}), _hash_ids(path, workload, n))


def _hash_ids(path: Path, workload: dict, n: int) -> BlockHashes | None:
    doc = workload.get("hash_ids")
    if doc is None:
        return None
    try:
        offsets = np.asarray(doc["offsets"], dtype=np.int64)
        hashes = BlockHashes(offsets, np.asarray(doc["ids"], dtype=np.int64),
                             int(doc["block_tokens"]), bool(doc["covers_output"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ResultsFileError(f"{path}: llmsim.workload.hash_ids is malformed ({e})") from None
    if (len(offsets) != n + 1 or offsets[0] != 0 or np.any(np.diff(offsets) < 0)
            or offsets[-1] != len(hashes.ids) or hashes.block_tokens < 1):
        raise ResultsFileError(f"{path}: llmsim.workload.hash_ids does not hold {n} requests' "
                               "block ids")
    return hashes


def _recorded_priority(priorities: np.ndarray, req: Request, now: float) -> float:
    return float(priorities[req.id])


def real_policy(real: MeasuredRun, rows: np.ndarray, name: str | None = None) -> Policy:
    """The policy the server ran: `name` if given, else the priorities sent, else the
    recorded policy name, else FCFS. `rows` are the simulated requests' rows in the file."""
    if name is not None:
        return get_policy(name)
    if real.priorities is not None:
        return Policy("priorities", partial(_recorded_priority, real.priorities[rows]),
                      victim="priority", description="the integer priorities the client sent "
                      "(vLLM priority scheduling: lowest first, preempts the largest)")
    return get_policy(real.policy) if real.policy else FCFS


@dataclass(frozen=True, eq=False)
class Validation:
    real: dict[str, np.ndarray]  # per compared request: ttft, tpot, e2e, start, finish, tokens
    sim: dict[str, np.ndarray]
    table: dict  # metric -> {"real": {stat: v}, "sim": {...}, "rel_error": {...}}
    config: dict


def validate(real: MeasuredRun, deployment: Deployment, cost: CostModel | None = None,
             policy: str | None = None) -> Validation:
    """Simulate the real run's completed requests on `deployment` (its engine settings
    replaced by the run's) and compare."""
    from dataclasses import replace

    rows = np.flatnonzero(real.ok)
    if not len(rows):
        raise ResultsFileError(f"{real.path}: no request completed; nothing to compare")
    # the simulator wants arrivals in order; send times under a concurrency cap may not be
    order = rows[np.argsort(real.start[rows], kind="stable")]
    start = real.start[order]
    meta = {} if real.hash_ids is None else {"hash_ids": real.hash_ids.take(order)}
    workload = Workload(start - start[0], real.prompt_tokens[order], real.output_tokens[order],
                        source=f"requests that completed in {real.path}", meta=meta)
    deployment = replace(deployment, engine=real.engine)
    sim_policy = real_policy(real, order, policy)
    result = simulate(workload, sim_policy, deployment, cost=cost)
    cols = result.records.columns()
    done = ~np.isnan(cols["finish"])
    if not done.all():
        raise ValueError(f"the simulator could not serve {int((~done).sum())} of the requests "
                         "(they never fit in its KV cache): check --model, --gpu and "
                         "num_gpu_blocks")
    real_cols = _per_request(real.ttft[order], real.e2e[order], start - start[0],
                             real.output_tokens[order])
    sim_cols = _per_request(cols["ttft"], cols["e2e"], cols["arrival"], cols["output_tokens"])
    table = {name: _side_by_side(real_cols[name], sim_cols[name]) for name in LATENCIES}
    table["throughput"] = _side_by_side_rates(real_cols, sim_cols)
    config = {
        "results": real.path, "requests": len(real), "compared": len(rows),
        "failed_in_real_run": int((~real.ok).sum()),
        "policy": result.config["policy"], "deployment": deployment.to_dict(),
        "cost_model": result.config["cost_model"],
        "sim_preemptions": result.summary["preemptions"],
        "sim_prefix_hit_rate": result.summary.get("prefix_hit_rate"),
    }
    return Validation(real_cols, sim_cols, table, config)


def _per_request(ttft, e2e, start, tokens) -> dict[str, np.ndarray]:
    tokens = np.asarray(tokens, dtype=float)
    tpot = np.where(tokens > 1, (e2e - ttft) / np.maximum(tokens - 1, 1), np.nan)
    return {"ttft": np.asarray(ttft, float), "tpot": tpot, "e2e": np.asarray(e2e, float),
            "start": np.asarray(start, float), "finish": start + e2e, "tokens": tokens}


def summary_stats(values: np.ndarray) -> dict[str, float]:
    values = values[~np.isnan(values)]
    if not len(values):
        return dict.fromkeys(STATS, math.nan)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"mean": float(values.mean()), "p50": float(p50), "p90": float(p90),
            "p99": float(p99)}


def relative_error(sim: float, real: float) -> float:
    return (sim - real) / real if real and math.isfinite(real) else math.nan


def _side_by_side(real: np.ndarray, sim: np.ndarray) -> dict:
    r, s = summary_stats(real), summary_stats(sim)
    return {"real": r, "sim": s, "rel_error": {k: relative_error(s[k], r[k]) for k in STATS}}


def _rates(cols: dict[str, np.ndarray]) -> dict[str, float]:
    span = float(cols["finish"].max() - cols["start"].min())
    n = len(cols["start"])
    return {"requests_per_s": n / span if span > 0 else math.nan,
            "output_tokens_per_s": float(cols["tokens"].sum()) / span if span > 0 else math.nan}


def _side_by_side_rates(real_cols, sim_cols) -> dict:
    r, s = _rates(real_cols), _rates(sim_cols)
    return {"real": r, "sim": s, "rel_error": {k: relative_error(s[k], r[k]) for k in r}}


def to_json(v: Validation) -> dict:
    return {"config": v.config, "metrics": v.table}


def plot_cdfs(v: Validation, path: str | Path) -> Path:
    """TTFT and E2E CDFs, real beside simulated, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, name, label in zip(axes, ("ttft", "e2e"), ("TTFT (s)", "E2E latency (s)"),
                               strict=True):
        for side, values, style in (("real", v.real[name], "-"), ("simulated", v.sim[name], "--")):
            x = np.sort(values[~np.isnan(values)])
            ax.step(x, np.arange(1, len(x) + 1) / len(x), style, where="post", label=side)
        ax.set_xlabel(label)
        ax.set_ylabel("fraction of requests")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle(f"{v.config['compared']} requests, policy {v.config['policy']['name']}")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
