"""`llmsim calibrate`: time the kernels of one model on one device and fit a Profile.

1. Time, for one decoder layer (times x layers for the model): the dense per-token work
   (norms, QKV/O/gate-up/down projections, rotary, SwiGLU) over token counts; prefill
   attention over (chunk, cached context); decode attention over (batch, context); the
   LM head with sampling over rows.
2. Fit the profile's tables (profile.py) and the per-iteration overhead: what a whole
   forward takes beyond its kernels, as the median over a few small forwards.
3. Check fidelity on other shapes: time the whole model's forward for sampled iteration
   shapes (decode-only, prefill chunks, mixed) against the profile's prediction.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .. import __version__
from ..engine.cost import IterationShape
from .layers import LayerKernels
from .profile import Profile, ProfileCostModel
from .shapes import ModelShape
from .timing import Timer


@dataclass(frozen=True, slots=True)
class KernelGrid:
    tokens: tuple[int, ...]
    head_rows: tuple[int, ...]
    prefill_chunks: tuple[int, ...]
    prefill_contexts: tuple[int, ...]
    decode_batches: tuple[int, ...]
    decode_contexts: tuple[int, ...]
    max_cache_tokens: int  # skip (batch, context) points whose KV would not fit

    @classmethod
    def full(cls, max_num_batched_tokens: int = 8192, max_num_seqs: int = 256) -> KernelGrid:
        # dense where tensor-core tiles bite (small counts, multiples of 64), sparse above
        small = [1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 80, 96, 112, 128]
        tokens = sorted({*small, *range(192, 1025, 64), *range(1280, max_num_batched_tokens + 1,
                                                               256), max_num_batched_tokens})
        rows = sorted({1, 2, 4, 8, 16, 32, 64, 128, 256, max_num_seqs})
        return cls(tuple(t for t in tokens if t <= max_num_batched_tokens),
                   tuple(r for r in rows if r <= max_num_seqs),
                   (16, 64, 256, 512, 1024, 2048, 4096, 8192), (0, 512, 2048, 8192, 32768),
                   (1, 2, 4, 8, 16, 32, 64, 128, 256), (128, 512, 2048, 8192, 32768),
                   max_cache_tokens=2_000_000)

    @classmethod
    def quick(cls) -> KernelGrid:
        """A handful of points: for tests and CPU runs of tiny models."""
        return cls((1, 4, 16, 64), (1, 4, 16), (4, 16, 64), (0, 32, 128), (1, 4, 16),
                   (16, 64, 256), max_cache_tokens=100_000)

    def size(self) -> int:
        return (len(self.tokens) + len(self.head_rows)
                + len(self.prefill_chunks) * len(self.prefill_contexts)
                + len(self.decode_batches) * len(self.decode_contexts))


def environment(device: torch.device) -> dict:
    meta = {"device": device.type, "torch": torch.__version__, "host": platform.node(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "llmsim_version": __version__}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        meta.update(gpu=props.name, cuda=torch.version.cuda,
                    driver=_driver_version(), gpu_memory_bytes=props.total_memory)
    else:
        meta.update(gpu=f"cpu ({platform.processor() or platform.machine()})")
    return meta


def _driver_version() -> str | None:
    try:
        import subprocess

        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 else None
    except (OSError, IndexError, subprocess.SubprocessError):
        return None


class Calibrator:
    def __init__(self, shape: ModelShape, tp: int, device: torch.device, grid: KernelGrid,
                 timer: Timer, progress: Callable[[str], None] | None = None) -> None:
        self.shape, self.tp, self.device, self.grid, self.timer = shape, tp, device, grid, timer
        self.k = LayerKernels(shape, tp, device)
        self.progress = progress or (lambda what: None)

    # -- kernel measurements (per layer unless said otherwise) --------------------------

    @torch.inference_mode()
    def measure(self) -> dict:
        k, g, timer = self.k, self.grid, self.timer
        out = {"dense": [], "head": [], "prefill": [], "decode": []}
        for n in g.tokens:
            x = k.tokens(n)
            out["dense"].append([n, timer.median(lambda x=x: k.dense(x))])
            self.progress(f"dense layers, {n} tokens")
        for rows in g.head_rows:
            x = k.tokens(rows)
            out["head"].append([rows, timer.median(lambda x=x: k.sample(x))])
            self.progress(f"LM head + sampling, {rows} rows")
        d = self.shape.head_dim
        for chunk in g.prefill_chunks:
            for cached in g.prefill_contexts:
                q = torch.randn(1, k.heads, chunk, d, device=self.device, dtype=k.dtype)
                kk, vv = k.kv(1, cached + chunk)
                out["prefill"].append(
                    [chunk, cached, timer.median(lambda q=q, kk=kk, vv=vv:
                                                 k.prefill_attention(q, kk, vv))])
                self.progress(f"prefill attention, chunk {chunk}, cached {cached}")
        for batch in g.decode_batches:
            for ctx in g.decode_contexts:
                if batch * ctx > g.max_cache_tokens:
                    continue
                q = torch.randn(batch, k.heads, 1, d, device=self.device, dtype=k.dtype)
                kk, vv = k.kv(batch, ctx)
                out["decode"].append(
                    [batch, ctx, timer.median(lambda q=q, kk=kk, vv=vv:
                                              k.decode_attention(q, kk, vv))])
                self.progress(f"decode attention, batch {batch}, context {ctx}")
        return out

    def fit(self, m: dict) -> dict:
        layers = self.shape.num_layers
        g = self.grid
        dense = np.array(m["dense"])
        head = np.array(m["head"])
        prefill = np.full((len(g.prefill_chunks), len(g.prefill_contexts)), np.nan)
        for chunk, cached, s in m["prefill"]:
            prefill[g.prefill_chunks.index(chunk), g.prefill_contexts.index(cached)] = s * layers
        batches, base, slope = [], [], []
        decode = np.array(m["decode"])
        for b in g.decode_batches:
            pts = decode[decode[:, 0] == b]
            if len(pts) < 2:
                continue
            total_ctx = pts[:, 0] * pts[:, 1]
            s, a = np.polyfit(total_ctx, pts[:, 2] * layers, 1)  # time = a + s * summed context
            batches.append(b)
            base.append(float(a))
            slope.append(float(max(s, 0.0)))
        return {"tokens": dense[:, 0].tolist(), "dense_s": (dense[:, 1] * layers).tolist(),
                "head_rows": head[:, 0].tolist(), "head_s": head[:, 1].tolist(),
                "prefill_chunks": list(g.prefill_chunks),
                "prefill_contexts": list(g.prefill_contexts), "prefill_s": prefill.tolist(),
                "decode_batches": batches, "decode_base_s": base, "decode_per_token_s": slope,
                "overhead_s": 0.0}

    # -- whole-model forwards ----------------------------------------------------------

    @torch.inference_mode()
    def forward_time(self, shape: IterationShape, uniform_context: int) -> float:
        """Time of the whole model's forward for an iteration shape (decodes with equal
        contexts), all layers run with one layer's weights (same kernels, same times)."""
        k = self.k
        x = k.tokens(shape.num_tokens)
        positions = torch.arange(shape.num_tokens, device=self.device)
        caches = [k.kv(1, cached + chunk) for chunk, cached in shape.prefill_chunks]
        dec = k.kv(shape.num_decodes, uniform_context) if shape.num_decodes else None
        sampled = torch.arange(shape.num_sampled, device=self.device)

        def run():
            h = x
            for _ in range(self.shape.num_layers):
                q, _, _ = k.pre_attention(h, positions)
                parts, at = [], 0
                for (chunk, _), (kk, vv) in zip(shape.prefill_chunks, caches, strict=True):
                    qi = q[at:at + chunk].transpose(0, 1).unsqueeze(0)
                    parts.append(k.prefill_attention(qi, kk, vv)[0].transpose(0, 1))
                    at += chunk
                if dec is not None:
                    qd = q[at:at + shape.num_decodes].unsqueeze(2)
                    parts.append(k.decode_attention(qd, *dec).squeeze(2))
                h = k.post_attention(h, torch.cat(parts).reshape(h.shape[0], -1) if parts
                                     else q.reshape(h.shape[0], -1))
            return k.sample(h[sampled])

        return self.timer.median(run)

    def fit_overhead(self, tables: dict, shapes: list[tuple[IterationShape, int]]) -> float:
        """Per-iteration time a forward takes beyond its kernels (launches, gaps): the median
        over `shapes` of measured minus predicted-without-overhead."""
        model = ProfileCostModel(Profile({}, self.shape, self.tp, {}, tables))
        gaps = [self.forward_time(s, c) - model.iteration_time(s) for s, c in shapes]
        return max(0.0, statistics.median(gaps))


def decode_shape(batch: int, context: int) -> IterationShape:
    return IterationShape(batch, batch, (), batch, batch * context, batch)


def prefill_shape(chunk: int, cached: int, decodes: int = 0, context: int = 0) -> IterationShape:
    return IterationShape(chunk + decodes, 1 + decodes, ((chunk, cached),), decodes,
                          decodes * context, 1 + decodes)


def fidelity_shapes(grid: KernelGrid, rng: np.random.Generator, n: int = 16):
    """Sampled iteration shapes, (shape, context of each decode): a third decode-only, a third
    prefill chunks, a third mixed; sizes within the grid's range, off its points."""
    tmax, cmax = max(grid.tokens), max(grid.decode_contexts)
    bmax = max(grid.decode_batches)
    out = []
    for i in range(n):
        kind = i % 3
        ctx = int(rng.integers(1, cmax // 2 + 1))
        b = int(rng.integers(1, bmax + 1))
        while b * ctx > grid.max_cache_tokens // 2:
            ctx //= 2
        chunk = int(rng.integers(2, max(3, tmax // 2)))
        cached = int(rng.integers(0, max(grid.prefill_contexts) // 2 + 1))
        if kind == 0:
            out.append((decode_shape(b, ctx), ctx))
        elif kind == 1:
            out.append((prefill_shape(chunk, cached), 0))
        else:
            b = max(1, min(b, tmax - chunk))
            out.append((prefill_shape(chunk, cached, b, ctx), ctx))
    return out


def calibrate(shape: ModelShape, tp: int = 1, device: str = "cuda",
              grid: KernelGrid | None = None,
              warmup: int = 3, repeats: int = 10, flush_l2: bool = False,
              fidelity_points: int = 16, seed: int = 0,
              progress: Callable[[str], None] | None = None, command: str = "",
              cuda_graphs: bool = True) -> Profile:
    if shape.is_moe or shape.sliding_layers:
        raise ValueError(f"{shape.name}: llmsim calibrate times dense, full-attention layers; "
                         "MoE and sliding-window layers are not timed yet (the fitted "
                         "profiles of h100/b200 price them)")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("no CUDA device here; use --device cpu (for tiny models) or a GPU box")
    grid = grid or KernelGrid.full()
    if dev.type == "cpu":
        # One thread: OpenMP workers spinning against other processes on a small machine
        # turn microsecond kernels into millisecond stalls.
        torch.set_num_threads(1)
    timer = Timer(dev, warmup, repeats, flush_l2, cuda_graphs)
    cal = Calibrator(shape, tp, dev, grid, timer, progress)
    measurements = cal.measure()
    tables = cal.fit(measurements)
    overhead_shapes = [(decode_shape(1, grid.decode_contexts[0]), grid.decode_contexts[0]),
                       (decode_shape(grid.decode_batches[1], grid.decode_contexts[0]),
                        grid.decode_contexts[0]),
                       (prefill_shape(grid.tokens[1], 0), 0)]
    tables["overhead_s"] = cal.fit_overhead(tables, overhead_shapes)
    if progress:
        progress("per-iteration overhead")
    measurements["overhead_points"] = [[list(s), c] for s, c in overhead_shapes]
    profile = Profile({**environment(dev), "dtype": str(cal.k.dtype).removeprefix("torch."),
                       "command": command, "grid": grid.__class__.__name__,
                       "warmup": warmup, "repeats": repeats, "flush_l2": flush_l2,
                       "timing": "cuda graph replays" if timer.graphs else
                       ("eager launches" if dev.type == "cuda" else "wall clock")},
                      shape, tp, measurements, tables)
    model = ProfileCostModel(profile)
    points = []
    for s, ctx in fidelity_shapes(grid, np.random.default_rng(seed), fidelity_points):
        measured = cal.forward_time(s, ctx)
        predicted = model.iteration_time(s)
        points.append({"shape": s._asdict(), "decode_context_each": ctx, "measured_s": measured,
                       "predicted_s": predicted, "error": (predicted - measured) / measured})
        if progress:
            progress(f"fidelity: whole forward {s.num_tokens} tokens")
    errors = np.abs([p["error"] for p in points])
    profile.meta["eager_fallbacks"] = timer.eager_fallbacks  # graphs that failed to capture
    profile.fidelity = {"points": points, "mape": float(errors.mean()),
                        "worst": float(errors.max()), "note": "whole-model forward vs profile"}
    return profile


def plot_fidelity(profile: Profile, path) -> None:
    """Predicted vs measured iteration time of the fidelity points, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = profile.fidelity["points"]
    measured = np.array([p["measured_s"] for p in pts]) * 1e3
    predicted = np.array([p["predicted_s"] for p in pts]) * 1e3
    kinds = ["decode" if not p["shape"]["prefill_chunks"] else
             "mixed" if p["shape"]["num_decodes"] else "prefill" for p in pts]
    fig, ax = plt.subplots(figsize=(5, 5))
    for kind, color in (("decode", "tab:blue"), ("prefill", "tab:orange"), ("mixed", "tab:green")):
        sel = [i for i, k in enumerate(kinds) if k == kind]
        ax.scatter(measured[sel], predicted[sel], label=kind, color=color, s=18)
    lim = [min(measured.min(), predicted.min()) * 0.8, max(measured.max(), predicted.max()) * 1.2]
    ax.plot(lim, lim, color="gray", lw=1)
    ax.set(xscale="log", yscale="log", xlim=lim, ylim=lim, xlabel="measured forward (ms)",
           ylabel="profile prediction (ms)",
           title=f"{profile.model.name} on {profile.meta.get('gpu')}: "
                 f"MAPE {100 * profile.fidelity['mape']:.1f}%")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
