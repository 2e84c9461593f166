"""The fitted H100 profile beside kernels measured on a real GPU (`llmsim calibrate`).

    python benchmarks/fitted_vs_kernels.py docs/results/h200/h200-qwen3-8b-tp1.json \
        docs/results/h200/h200-qwen3-14b-tp1.json --ceilings docs/results/h200/ceilings.json

The fitted profile (llmsim/calibration/fitted/h100.json) is fitted to end-to-end vLLM runs
on an H100; the kernel profiles were timed on an H200 (same compute die and clocks,
4.8 vs 3.35 TB/s HBM). So the check is made twice:
1. Per term, as a fraction of each GPU's datasheet: what the fit says vLLM reaches on an
   H100 against what torch reaches on the H200 (GEMM rate, weight streaming, decode
   attention bandwidth, LM head + sampling per row).
2. Per iteration: the fitted GPU time (its CPU side left out; bandwidths moved to the H200
   by the datasheet ratio) against the calibrate profile's tables and the eager whole-model
   forwards timed on the H200.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace

import numpy as np

from llmsim.calibration.fitted import bundled_fitted, load_fitted
from llmsim.calibration.gpus import get_gpu
from llmsim.calibration.physical import FP32, PhysicalCostModel, ShapeCosts
from llmsim.calibration.profile import Profile, ProfileCostModel
from llmsim.engine.cost import IterationShape

BANDWIDTHS = ("weight_bandwidth", "attention_bandwidth")


def on_gpu(params, source: str, target: str):
    """The fitted parameters moved to another GPU of the same compute: bandwidths scaled
    by the datasheet HBM ratio, everything else kept."""
    ratio = get_gpu(target).memory_bandwidth / get_gpu(source).memory_bandwidth
    return replace(params, **{n: getattr(params, n) * ratio for n in BANDWIDTHS})


def gpu_only(params):
    """The GPU side of an iteration: no engine CPU time to hide behind."""
    return replace(params, cpu_fixed_s=0.0, cpu_per_seq_s=0.0)


def terms(profile: Profile, params, kernel_gpu: str, fitted_gpu: str) -> list[tuple]:
    """(term, fitted value, its fraction of the fitted GPU's datasheet, kernel value, its
    fraction of the kernel GPU's datasheet, unit)."""
    c = ShapeCosts.of(profile.model, profile.tp)
    t = profile.tables
    fs, ks = get_gpu(fitted_gpu), get_gpu(kernel_gpu)
    tokens, dense = np.array(t["tokens"]), np.array(t["dense_s"])
    big = tokens.argmax()
    gemm = c.weight_flops * tokens[big] / dense[big]  # a lower bound: dense_s has norms too
    stream = c.weight_bytes / dense[tokens.argmin()]
    batches = np.array(t["decode_batches"])
    slope = np.array(t["decode_per_token_s"])[batches.argmax()]
    attention = c.kv_full / slope
    nb = float(batches.max())
    fitted_attention = params.attention_bandwidth * nb / (nb + params.attention_half_seqs)
    rows, head = np.array(t["head_rows"]), np.array(t["head_s"])
    per_row = (head[-1] - head[0]) / (rows[-1] - rows[0])
    fitted_row = (c.vocab * FP32 * params.sampling_passes / params.weight_bandwidth
                  + c.head_flops / params.gemm_flops)
    return [
        (f"GEMM rate at {int(tokens[big])} tokens", params.gemm_flops,
         params.gemm_flops / fs.peak_flops, gemm, gemm / ks.peak_flops, "TFLOP/s", 1e12),
        (f"weight streaming at {int(tokens.min())} token", params.weight_bandwidth,
         params.weight_bandwidth / fs.memory_bandwidth, stream, stream / ks.memory_bandwidth,
         "TB/s", 1e12),
        (f"decode attention, batch {int(nb)}", fitted_attention,
         fitted_attention / fs.memory_bandwidth, attention, attention / ks.memory_bandwidth,
         "TB/s", 1e12),
        ("LM head + sampling per row", fitted_row, None, per_row, None, "us", 1e-6),
    ]


def share(fraction: float | None) -> str:
    return f" ({100 * fraction:3.0f}%)" if fraction is not None else "       "


def shapes() -> list[tuple[str, IterationShape]]:
    out = []
    for batch in (1, 16, 64, 256):
        out.append((f"decode {batch} x 2048",
                    IterationShape(batch, batch, (), batch, batch * 2048, batch)))
    for chunk in (512, 2048, 8192):
        out.append((f"prefill {chunk}", IterationShape(chunk, 1, ((chunk, 0),), 0, 0, 1)))
    out.append(("mixed 2048 + 64 x 2048",
                IterationShape(2112, 65, ((2048, 0),), 64, 64 * 2048, 65)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profiles", nargs="+", help="kernel profiles from llmsim calibrate")
    ap.add_argument("--fitted", default="h100", choices=sorted(bundled_fitted()))
    ap.add_argument("--ceilings", help="gpu_ceilings.py output, to print beside the terms")
    args = ap.parse_args()
    fitted = load_fitted(str(bundled_fitted()[args.fitted]))
    if args.ceilings:
        c = json.load(open(args.ceilings))
        gemm = max(v["flops_per_s"] for v in c["bf16_gemm"].values())
        print(f"{c['gpu']} as torch reaches it: copy {c['copy_bandwidth_Bps'] / 1e12:.2f} TB/s, "
              f"bf16 GEMM {gemm / 1e12:.0f} TFLOP/s (best of "
              f"{', '.join(c['bf16_gemm'])}^3)")
    for path in args.profiles:
        profile = Profile.load(path)
        kernel_gpu = profile.meta["gpu"].split()[-1].lower()
        params = fitted.params
        print(f"\n{profile.model.name}: fitted {fitted.gpu} profile vs kernels timed on "
              f"{profile.meta['gpu']} (torch {profile.meta['torch']}, "
              f"{profile.meta.get('timing', 'eager launches')})")
        print(f"{'term':34} {'fitted ' + fitted.gpu:>18} {'kernels ' + kernel_gpu:>18}")
        for name, fv, ff, kv, kf, unit, scale in terms(profile, params, kernel_gpu, fitted.gpu):
            print(f"{name:34} {fv / scale:9.1f} {unit:<3}{share(ff)} "
                  f"{kv / scale:9.1f} {unit:<3}{share(kf)}")
        moved = PhysicalCostModel(profile.model, profile.tp,
                                  gpu_only(on_gpu(params, fitted.gpu, kernel_gpu)),
                                  "fitted, moved", async_scheduling=False)
        tables = ProfileCostModel(profile)
        print(f"{'iteration (ms)':26} {'fitted->' + kernel_gpu:>13} {'kernel tables':>14} "
              f"{'ratio':>6}")
        ratios = []
        for name, s in shapes():
            a, b = moved.iteration_time(s), tables.iteration_time(s)
            ratios.append(a / b)
            print(f"{name:26} {1e3 * a:13.2f} {1e3 * b:14.2f} {a / b:6.2f}")
        pts = profile.fidelity["points"]
        eager = [p["measured_s"] for p in pts]
        fit_pts = [moved.iteration_time(IterationShape(**{
            **p["shape"], "prefill_chunks": tuple(tuple(x) for x in p["shape"]["prefill_chunks"])}))
            for p in pts]
        r = np.array(fit_pts) / np.array(eager)
        print(f"whole forwards ({len(pts)} shapes): fitted/measured median "
              f"{statistics.median(r):.2f}, range {r.min():.2f}-{r.max():.2f}; kernel tables' "
              f"own MAPE {100 * profile.fidelity['mape']:.1f}%")


if __name__ == "__main__":
    main()
