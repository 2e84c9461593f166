"""How far llmsim's fitted cost model is from real vLLM, on models it was not fitted to.

For each GPU (H100, B200) and each dense model measured on it by the ML.ENERGY Benchmark v3
(`../shared/data/mlenergy`), fit the GPU's parameters on the other models and predict the
held-out one's median ITL and steady-state output throughput at every max_num_seqs, with
every run simulated the way it was measured (llmsim's engine, all requests at t=0, the
run's output lengths, its engine settings). Prints MAPE per held-out model, and the MoE
model priced with the parameters fitted on every dense model (never fitted on), and
writes docs/img/fidelity-<gpu>.png. `--bundle` also writes the fits on every dense model
as llmsim's bundled profiles (llmsim/calibration/fitted/<gpu>.json). `--roofline` instead
prices every run with the datasheet roofline (the default before fitted profiles), with the
bundled profile's prompt lengths, for comparison.

    python benchmarks/fidelity_mlenergy.py [--gpus h100,b200] [--bundle]
    python benchmarks/fidelity_mlenergy.py --prefix-caching   # the runs simulated with it
    python benchmarks/fidelity_mlenergy.py --roofline

CPU: one unit-time simulation per (run, prompt-length setting), cached in
$XDG_CACHE_HOME/llmsim/fit (about 10 CPU-minutes per GPU the first time on one core),
then one least-squares fit per (fold, prompt setting) of a few CPU-seconds each.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmsim.calibration import fit as F  # noqa: E402
from llmsim.calibration.fit_cli import _grid, default_cache  # noqa: E402
from llmsim.calibration.fit_plot import plot_fit  # noqa: E402
from llmsim.calibration.gpus import get_gpu  # noqa: E402
from llmsim.calibration.mlenergy import SOURCE, load_mlenergy  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "mlenergy"
TARGET = {"h100": 0.05, "b200": 0.08}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--gpus", default="h100,b200")
    ap.add_argument("--prompt-medians", default="200,300,450")
    ap.add_argument("--prompt-sigmas", default="0.7,1.0")
    ap.add_argument("--bundle", action="store_true",
                    help="write the all-model fits as llmsim's bundled profiles")
    ap.add_argument("--prefix-caching", action="store_true",
                    help="simulate the runs with prefix caching, as their vLLM ran (the "
                         "bundled fits recompute preempted requests whole); the figure gets "
                         "a -prefix-caching suffix")
    ap.add_argument("--roofline", action="store_true",
                    help="only price every run with the datasheet roofline")
    ap.add_argument("--bound", action="append", default=[], metavar="NAME=LO:HI",
                    help="tighter bounds on a fitted parameter, SI units (e.g. "
                         "gemm_flops=1e14:7.7e14, the bf16 GEMM ceiling measured on an H200)")
    args = ap.parse_args()
    bounds = {}
    for b in args.bound:
        name, _, span = b.partition("=")
        lo, _, hi = span.partition(":")
        bounds[name] = (float(lo), float(hi))
    if args.roofline:
        return roofline(args)
    grid = _grid(args.prompt_medians, args.prompt_sigmas)
    cache = default_cache()
    summary = []
    for name in args.gpus.split(","):
        gpu = get_gpu(name)
        t0 = time.process_time()
        points, _ = load_mlenergy(args.data, (gpu.name.upper(),),
                                  prefix_caching=args.prefix_caching)
        dense = [p for p in points if not p.model.is_moe]
        moe = [p for p in points if p.model.is_moe]

        def say(msg: str, gpu=gpu) -> None:
            print(f"  [{gpu.name}] {msg}", file=sys.stderr, flush=True)

        held = F.leave_one_out(dense, gpu, grid, cache=cache, progress=say, bounds=bounds)
        fitted = F.fit(dense, gpu, grid, cache=cache, progress=say, bounds=bounds)
        preds = F.predict_points(dense, fitted, cache)
        moe_preds = F.predict_points(moe, fitted, cache) if moe else []
        cpu = time.process_time() - t0
        print(f"\n{gpu.name.upper()}: held-out MAPE over max_num_seqs (target "
              f"<= {100 * TARGET[gpu.name]:.0f}%), {len(dense)} dense runs, "
              f"{cpu / 60:.1f} CPU-min")
        print(f"{'held-out model':<28} {'runs':>4} {'median ITL':>10} {'tok/s':>7} "
              f"{'running':>7}  prompts (fitted on the others)")
        for h in held:
            e = F.errors(h.points, h.predictions)
            pr = next(iter(h.fitted.prompts.values()))
            ok = max(e["itl_mape"], e["tps_mape"]) <= TARGET[gpu.name]
            print(f"{h.group:<28} {len(h.points):>4} {100 * e['itl_mape']:>9.1f}% "
                  f"{100 * e['tps_mape']:>6.1f}% {100 * e['running_mape']:>6.1f}%  "
                  f"median {pr.median:g} sigma {pr.sigma:g}{'' if ok else '  (target missed)'}")
            summary.append((gpu.name, h.group, e, ok))
        if moe:
            e = F.errors(moe, moe_preds)
            print(f"{moe[0].group + ' (MoE)':<28} {len(moe):>4} {100 * e['itl_mape']:>9.1f}% "
                  f"{100 * e['tps_mape']:>6.1f}% {100 * e['running_mape']:>6.1f}%  "
                  "dense-fitted parameters, never fitted on MoE")
        e = F.errors(dense, preds)
        print(f"{'all dense, in the fit':<28} {len(dense):>4} {100 * e['itl_mape']:>9.1f}% "
              f"{100 * e['tps_mape']:>6.1f}% {100 * e['running_mape']:>6.1f}%")
        print("fitted on every dense model: " + ", ".join(
            f"{k} {v:.4g}" for k, v in asdict(fitted.params).items() if k in fitted.free))
        suffix = "-prefix-caching" if args.prefix_caching else ""
        img = ROOT / "docs" / "img" / f"fidelity-{gpu.name}{suffix}.png"
        pts = [p for h in held for p in h.points] + moe
        prd = [q for h in held for q in h.predictions] + moe_preds
        plot_fit(pts, prd, f"{gpu.name.upper()}: real vLLM (ML.ENERGY v3) vs llmsim, each "
                 "model held out of the fit", img, held_out=[True] * len(pts))
        print(f"figure: {img.relative_to(ROOT)}")
        if args.bundle:
            prof = F.fitted_profile(fitted, gpu, SOURCE, dense, preds, held,
                                    "python benchmarks/fidelity_mlenergy.py --bundle")
            out = ROOT / "llmsim" / "calibration" / "fitted" / f"{gpu.name}.json"
            prof.save(out)
            print(f"bundled profile: {out.relative_to(ROOT)}")
    missed = [f"{g} {m}" for g, m, _, ok in summary if not ok]
    print("\ntargets met for every held-out dense model" if not missed
          else f"\ntargets missed: {', '.join(missed)}")


def roofline(args) -> None:
    """MAPE of the datasheet roofline on the same runs, simulated the same way."""
    from llmsim.calibration.fitted import load_fitted
    from llmsim.calibration.measured import Prediction, PromptLengths, workload_of
    from llmsim.calibration.roofline import RooflineCostModel
    from llmsim.policies import FCFS
    from llmsim.simulate import Deployment, simulate

    for name in args.gpus.split(","):
        gpu = get_gpu(name)
        prompts = load_fitted(f"fitted-{gpu.name}").fit["prompt_lengths"]
        points, _ = load_mlenergy(args.data, (gpu.name.upper(),))
        print(f"\n{gpu.name.upper()}: datasheet roofline, MAPE over max_num_seqs")
        for group in dict.fromkeys(p.group for p in points):
            pts = [p for p in points if p.group == group]
            preds = []
            for p in pts:
                pr = prompts[p.prompt_family]
                w = workload_of(p, PromptLengths(pr["median"], pr["sigma"], pr["max_tokens"]))
                r = simulate(w, FCFS, Deployment(engine=p.engine),
                             cost=RooflineCostModel(p.model, gpu, p.tp))
                s = r.summary
                preds.append(Prediction(s["itl"]["median"], s["throughput_output_tps_steady"],
                                        s["mean_batch_size"]))
            e = F.errors(pts, preds)
            bias = sum(q.median_itl_s / p.median_itl_s - 1
                       for p, q in zip(pts, preds, strict=True)) / len(pts)
            print(f"{group:<34} {len(pts):>4} median ITL {100 * e['itl_mape']:5.1f}% "
                  f"(mean error {100 * bias:+.1f}%)  tok/s {100 * e['tps_mape']:5.1f}%")


if __name__ == "__main__":
    main()
