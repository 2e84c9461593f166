"""The physical cost model: an iteration's time from labelled terms with GPU parameters.

One set of GPU parameters (`GpuParams`) prices any model shape: the shape says how many
bytes and FLOPs each term moves, the parameters say how fast this GPU and engine move them.
Per iteration, on one GPU of the tensor-parallel group:

    gpu = fixed + per_layer * layers + norm * norms         launches, syncs, kernel tails
        + max(weights / weight_bw, flops * (tokens + tile) / gemm_flops)    weight GEMMs
        + activation bytes(tokens) / weight_bw                norms, RoPE, SiLU, residuals
        + max(head / weight_bw, head flops * (rows + tile) / gemm_flops)      LM head
        + rows * vocab * 4 B * sampling_passes / weight_bw      sampling over fp32 logits
        + KV bytes read by decodes / (attention_bw * n / (n + half_seqs))
        + seq_layer * seqs * layers                 decode attention, n decoding sequences
        + prefill attention FLOPs / attention_flops + cached KV / attention_bw
        + 2 * layers * (allreduce_latency + ring bytes(tokens) / allreduce_bw)   TP > 1
    cpu = cpu_fixed + cpu_per_seq * seqs          the engine's scheduling and output work
    time = max(gpu, cpu) with async scheduling (vLLM overlaps step k+1's CPU work with step
           k on the GPU), gpu + cpu without it.

MoE layers read the weights of the experts the batch touches (uniform routing: of E
experts with k per token, E (1 - (1 - k/E)^tokens) are touched) and compute k experts per
token. Sliding-window layers read at most `window` cached tokens per sequence.

The decode rule (engine/cost.py): for a decode-only batch of n sequences, the time is
piecewise affine in the summed context C: the GPU part is affine in C, except that
sliding-window layers read a concave piecewise-affine estimate of sum(min(c_i, window))
(`windowed`: the engine tells a cost model only n and C), and async scheduling takes
max(gpu, cpu). `decode_pieces(n)` gives the pieces and their breakpoints.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

import numpy as np

from ..engine.cost import IterationShape
from .shapes import ModelShape

FP32 = 4


@dataclass(frozen=True, slots=True)
class GpuParams:
    """What one GPU and its engine achieve, in SI units. `describe()` in the fitted profile
    says where each value came from (fitted, datasheet, assumed)."""

    weight_bandwidth: float  # B/s streaming weights and activations (memory-bound GEMMs)
    gemm_flops: float  # FLOP/s of the weight GEMMs once compute-bound
    gemm_tile_tokens: float  # tokens of tile/wave waste added to each GEMM's compute time
    attention_bandwidth: float  # B/s reading paged KV in decode attention, GPU filled
    attention_half_seqs: float  # decoding sequences at which decode attention reaches half
    # that bandwidth: a small batch cannot fill the GPU
    attention_flops: float  # FLOP/s of prefill attention
    sampling_passes: float  # fp32 passes over the vocabulary per sampled row
    seq_layer_s: float  # GPU seconds per sequence per layer (attention setup, split-KV merge)
    fixed_s: float  # GPU seconds per iteration
    per_layer_s: float  # GPU seconds per decoder layer per iteration
    norm_s: float  # GPU seconds per RMSNorm kernel (each layer runs norms_per_layer)
    cpu_fixed_s: float  # engine CPU seconds per step
    cpu_per_seq_s: float  # engine CPU seconds per scheduled sequence per step
    allreduce_bandwidth: float  # B/s per GPU, one direction, for the TP all-reduce
    allreduce_latency_s: float  # seconds per all-reduce call

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GpuParams:
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in d]
        if missing:
            raise ValueError(f"GPU parameters lack {missing}")
        return cls(**{n: float(d[n]) for n in names})

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{f.name} must be finite and >= 0, got {v}")
        for name in ("weight_bandwidth", "gemm_flops", "attention_bandwidth", "attention_flops",
                     "allreduce_bandwidth"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")


PARAM_NAMES = tuple(f.name for f in fields(GpuParams))
PARAM_INFO = {  # name: (unit, what it prices)
    "weight_bandwidth": ("B/s", "HBM bandwidth streaming weights and activations"),
    "gemm_flops": ("FLOP/s", "weight GEMMs once compute-bound"),
    "gemm_tile_tokens": ("tokens", "tile and wave waste added to each GEMM's token count"),
    "attention_bandwidth": ("B/s", "paged decode attention reading KV, GPU filled"),
    "attention_half_seqs": ("sequences", "decoding sequences at half that bandwidth"),
    "attention_flops": ("FLOP/s", "prefill attention"),
    "sampling_passes": ("passes", "fp32 passes over the vocabulary per sampled row"),
    "seq_layer_s": ("s", "GPU time per sequence per layer (attention setup, merges)"),
    "fixed_s": ("s", "GPU time per iteration (launch, sync, sampler setup)"),
    "per_layer_s": ("s", "GPU time per decoder layer per iteration"),
    "norm_s": ("s", "GPU time per RMSNorm kernel per iteration"),
    "cpu_fixed_s": ("s", "engine CPU time per step (scheduling, inputs, outputs)"),
    "cpu_per_seq_s": ("s", "engine CPU time per scheduled sequence per step"),
    "allreduce_bandwidth": ("B/s", "tensor-parallel all-reduce, per GPU one way"),
    "allreduce_latency_s": ("s", "per all-reduce call (two per layer)"),
}
assert set(PARAM_INFO) == set(PARAM_NAMES)


class Features(NamedTuple):
    """An iteration's work as the physical model sees it (scalars, or arrays of iterations).
    Prefill sums run over the iteration's prefill chunks; `*_local` count what the
    sliding-window layers see (equal to the full-attention figure if the model has none)."""

    tokens: object  # new tokens in the batch
    seqs: object  # sequences in the batch
    decodes: object  # sequences decoding one token
    context: object  # summed KV tokens the decodes attend to
    sampled: object  # rows that sample a token
    pf_pairs: object  # prefill (query, key) pairs, causal, full attention
    pf_pairs_local: object  # the same within the sliding window
    pf_kv: object  # cached + new KV tokens read by the prefill chunks (full attention)
    pf_kv_local: object  # the same, capped at the window


def window_pairs(chunk: int, cached: int, window: int) -> int:
    """(query, key) pairs of a causal chunk of `chunk` new tokens after `cached` ones, where
    each query sees at most `window` keys (itself included); window 0 means no limit."""
    a, b = cached + 1, cached + chunk  # 1-based positions of the chunk's queries
    if not window or b <= window:
        return (a + b) * chunk // 2
    if a > window:
        return chunk * window
    return (a + window) * (window - a + 1) // 2 + (b - window) * window


def features(shape: IterationShape, window: int) -> Features:
    pairs = pairs_local = kv = kv_local = 0
    for chunk, cached in shape.prefill_chunks:
        pairs += window_pairs(chunk, cached, 0)
        pairs_local += window_pairs(chunk, cached, window)
        kv += cached + chunk
        kv_local += min(cached + chunk, window) if window else cached + chunk
    return Features(shape.num_tokens, shape.num_seqs, shape.num_decodes, shape.decode_context,
                    shape.num_sampled, pairs, pairs_local, kv, kv_local)


class ShapeCosts(NamedTuple):
    """A model shape on one GPU of its TP group, in bytes and FLOPs per unit of work."""

    layers: int
    norms: int  # RMSNorm kernels, all layers
    weight_bytes: float  # dense linear weights (attention + dense MLP, or attention + router)
    weight_flops: float  # FLOPs per token through them
    expert_bytes: float  # one expert of one layer, times layers (0: dense)
    expert_flops: float  # FLOPs per token through one expert in every layer
    num_experts: int
    experts_per_token: int
    activation_bytes: float  # elementwise bytes per token, all layers
    head_bytes: float
    head_flops: float  # per sampled row
    vocab: int
    kv_full: float  # KV bytes per token, full-attention layers
    kv_local: float  # KV bytes per token, sliding-window layers
    window: int
    attn_flops_full: float  # FLOPs per (query, key) pair, full-attention layers
    attn_flops_local: float
    allreduce_bytes: float  # ring bytes per token per all-reduce (0 at TP 1)

    @classmethod
    def of(cls, m: ModelShape, tp: int) -> ShapeCosts:
        if tp < 1:
            raise ValueError(f"tp must be >= 1, got {tp}")
        b = m.dtype_bytes
        heads = max(1, m.num_heads // tp)
        kv_heads = m.kv_heads_per_gpu(tp)
        attn = m.attention_params_per_layer(tp)
        if m.is_moe:
            dense = m.num_layers * (attn + m.hidden_size * m.num_experts)  # + router
            expert = m.num_layers * m.expert_params(tp)
            mlp_act = 3 * m.experts_per_token * m.moe_intermediate_size // tp
        else:
            dense = m.linear_params(tp)
            expert = 0
            mlp_act = 3 * m.intermediate_size // tp
        # Elementwise traffic per token and layer, read + write: the fused add+RMSNorms
        # (4 hidden each), q/k norm, RoPE and the KV-cache write over the heads, SiLU-and-mul.
        qk = (heads + 2 * kv_heads) * m.head_dim
        act = m.num_layers * (4 * m.norms_per_layer * m.hidden_size + 3 * qk + mlp_act) * b
        kv_layer = 2 * kv_heads * m.head_dim * b
        pair_flops = 4 * heads * m.head_dim
        ring = 2 * (tp - 1) / tp * m.hidden_size * b
        return cls(m.num_layers, m.num_layers * m.norms_per_layer, dense * b, 2.0 * dense,
                   expert * b, 2.0 * expert,
                   m.num_experts, m.experts_per_token, act, m.lm_head_params(tp) * b,
                   2.0 * m.lm_head_params(tp), m.vocab_size, m.full_attention_layers * kv_layer,
                   m.sliding_layers * kv_layer, m.sliding_window,
                   m.full_attention_layers * pair_flops, m.sliding_layers * pair_flops, ring)


def gpu_time(c: ShapeCosts, p: GpuParams, f: Features, mx=max, power=pow):
    """The GPU part of an iteration's time; `mx` and `power` are `max` and `pow` for scalars,
    `np.maximum` and `np.power` for arrays of iterations."""
    t = p.fixed_s + p.per_layer_s * c.layers + p.norm_s * c.norms
    tile = p.gemm_tile_tokens
    if c.num_experts:
        untouched = power(1.0 - c.experts_per_token / c.num_experts, f.tokens)
        touched = c.num_experts * (1.0 - untouched)
        read = c.weight_bytes + c.expert_bytes * touched
        flops = (c.weight_flops * (f.tokens + tile)
                 + c.expert_flops * (c.experts_per_token * f.tokens + touched * tile))
    else:
        read = c.weight_bytes
        flops = c.weight_flops * (f.tokens + tile)
    t = t + mx(read / p.weight_bandwidth, flops / p.gemm_flops)
    t = t + c.activation_bytes * f.tokens / p.weight_bandwidth
    head = mx(c.head_bytes / p.weight_bandwidth, c.head_flops * (f.sampled + tile) / p.gemm_flops)
    t = t + head * (f.sampled > 0)  # no logits in an iteration that only runs prompt chunks
    t = t + f.sampled * (c.vocab * FP32 * p.sampling_passes / p.weight_bandwidth)
    kv = c.kv_full * f.context
    if c.window:
        kv = kv + c.kv_local * windowed(f.context, f.decodes * c.window, mx)
    # Bandwidth attn_bw * n / (n + half): at a fixed batch still affine in C.
    t = t + kv * (1 + p.attention_half_seqs / mx(f.decodes, 1)) / p.attention_bandwidth
    t = t + p.seq_layer_s * c.layers * f.seqs
    t = t + (c.attn_flops_full * f.pf_pairs + c.attn_flops_local * f.pf_pairs_local) \
        / p.attention_flops
    t = t + (c.kv_full * f.pf_kv + c.kv_local * f.pf_kv_local) / p.attention_bandwidth
    if c.allreduce_bytes:
        t = t + 2 * c.layers * (p.allreduce_latency_s
                                + c.allreduce_bytes * f.tokens / p.allreduce_bandwidth)
    return t


def windowed(context, cap, mx=max):
    """Tokens the sliding-window layers read, from the summed context C of n sequences
    (cap = n * window): min(C, cap / e + (1 - 2 / e) C, cap). The true sum of
    min(c_i, window) needs every c_i; were contexts exponential with mean m it would be
    n m (1 - exp(-window / m)), and the middle line is its tangent at m = window. Concave and
    piecewise affine in C, with breakpoints at C = cap / 2 and C = cap (e - 1) / (e - 2)."""
    return -mx(mx(-context, -(cap / math.e + WINDOW_SLOPE * context)), -cap)


WINDOW_SLOPE = 1 - 2 / math.e
WINDOW_KNEES = (0.5, (math.e - 1) / (math.e - 2))  # breakpoints of `windowed`, in units of cap


def cpu_time(p: GpuParams, f: Features):
    return p.cpu_fixed_s + p.cpu_per_seq_s * f.seqs


class PhysicalCostModel:
    """Prices iterations with `GpuParams` for one model shape and TP degree."""

    def __init__(self, model: ModelShape, tp: int, params: GpuParams, label: str,
                 async_scheduling: bool = True, engine_overhead_s: float = 0.0) -> None:
        if engine_overhead_s < 0:
            raise ValueError(f"engine_overhead_s must be >= 0, got {engine_overhead_s}")
        self.model, self.tp, self.params = model, tp, params
        self.costs = ShapeCosts.of(model, tp)
        self.async_scheduling = async_scheduling
        self.engine_overhead_s = engine_overhead_s
        self.label = label
        self._dense = not self.costs.num_experts and not self.costs.window
        c, q = self.costs, params
        # The simulator calls iteration_time once per iteration: dense models take a path
        # of precomputed constants (the same formula as gpu_time; tests hold them equal).
        self._k = (q.fixed_s + q.per_layer_s * c.layers + q.norm_s * c.norms + engine_overhead_s,
                   c.weight_bytes / q.weight_bandwidth, c.weight_flops / q.gemm_flops,
                   q.gemm_tile_tokens, c.activation_bytes / q.weight_bandwidth,
                   c.head_bytes / q.weight_bandwidth, c.head_flops / q.gemm_flops,
                   c.vocab * FP32 * q.sampling_passes / q.weight_bandwidth,
                   c.kv_full / q.attention_bandwidth, q.attention_half_seqs,
                   q.seq_layer_s * c.layers, c.attn_flops_full / q.attention_flops,
                   2 * c.layers * q.allreduce_latency_s if c.allreduce_bytes else 0.0,
                   2 * c.layers * c.allreduce_bytes / q.allreduce_bandwidth,
                   q.cpu_fixed_s, q.cpu_per_seq_s)

    def describe(self) -> dict:
        return {"kind": "physical", "model": self.model.to_dict(), "tp": self.tp,
                "params": self.params.to_dict(), "async_scheduling": self.async_scheduling,
                "engine_overhead_s": self.engine_overhead_s}

    def iteration_time(self, shape: IterationShape) -> float:
        assert shape.num_tokens > 0, f"empty iteration {shape}"
        if self._dense:
            return self._dense_time(shape)
        f = features(shape, self.costs.window)
        gpu = gpu_time(self.costs, self.params, f) + self.engine_overhead_s
        cpu = cpu_time(self.params, f)
        return float(max(gpu, cpu) if self.async_scheduling else gpu + cpu)

    def _dense_time(self, s: IterationShape) -> float:
        (fixed, w_read, w_flop, tile, act, h_read, h_flop, sample, kv, half,
         seq, pair, ar_fixed, ar_tok, cpu0, cpu1) = self._k
        tokens, seqs, chunks, n, context, rows = s  # unpacked: a field read costs more
        gpu = fixed + max(w_read, w_flop * (tokens + tile)) + act * tokens
        if rows:
            gpu += max(h_read, h_flop * (rows + tile)) + rows * sample
        gpu += seq * seqs
        if chunks:
            pairs = ctx = 0
            for chunk, cached in chunks:
                pairs += (2 * cached + chunk + 1) * chunk // 2
                ctx += cached + chunk
            gpu += pair * pairs + kv * ctx
        if ar_fixed:
            gpu += ar_fixed + ar_tok * tokens
        cpu = cpu0 + cpu1 * seqs
        if n:  # the decode attention term last: see `decode_affine`
            per_token = kv * (1 + half / n)
            if self.async_scheduling:
                return max(gpu + per_token * context, cpu)
            return gpu + cpu + per_token * context
        return max(gpu, cpu) if self.async_scheduling else gpu + cpu

    def decode_affine(self, num_decodes: int) -> tuple[float, float, float] | None:
        """(a, b, floor): a decode-only iteration of `num_decodes` sequences with summed
        context C takes exactly max(a + b * C, floor), the same operations as
        `iteration_time` (engine/cost.py). Dense models only: sliding windows and experts
        are not affine in C (None: the simulator prices each iteration)."""
        if not self._dense:
            return None
        (fixed, w_read, w_flop, tile, act, h_read, h_flop, sample, kv, half,
         seq, _, ar_fixed, ar_tok, cpu0, cpu1) = self._k
        n = num_decodes
        gpu = fixed + max(w_read, w_flop * (n + tile)) + act * n
        gpu += max(h_read, h_flop * (n + tile)) + n * sample
        gpu += seq * n
        if ar_fixed:
            gpu += ar_fixed + ar_tok * n
        cpu = cpu0 + cpu1 * n
        per_token = kv * (1 + half / n)
        if self.async_scheduling:
            return gpu, per_token, cpu
        return gpu + cpu, per_token, 0.0

    def iteration_times(self, f: Features) -> np.ndarray:
        """Times of many iterations at once (arrays in `f`); the same numbers as
        `iteration_time` gives one by one."""
        gpu = gpu_time(self.costs, self.params, f, np.maximum, np.power) + self.engine_overhead_s
        cpu = cpu_time(self.params, f)
        return np.maximum(gpu, cpu) if self.async_scheduling else gpu + cpu

    def decode_pieces(self, num_decodes: int) -> list[tuple[float, float, float]]:
        """A decode-only batch of `num_decodes` sequences costs `a + b * C` for summed
        context C in [start, next start): returns [(start, a, b), ...], starts ascending
        from 0. Breakpoints: C = n * window (sliding-window layers stop reading more) and,
        with async scheduling, where the GPU time overtakes the CPU time."""
        n = num_decodes
        assert n >= 1

        def at(ctx: float) -> float:
            return gpu_time(self.costs, self.params,
                            Features(n, n, n, ctx, n, 0, 0, 0, 0)) + self.engine_overhead_s

        bw = self.params.attention_bandwidth / (1 + self.params.attention_half_seqs / n)
        slope_full = (self.costs.kv_full + self.costs.kv_local) / bw
        gpu = [(0.0, at(0.0), slope_full)]
        if self.costs.window and self.costs.kv_local:
            cap = float(n * self.costs.window)
            for knee, local_slope in zip(WINDOW_KNEES, (WINDOW_SLOPE, 0.0), strict=True):
                slope = (self.costs.kv_full + self.costs.kv_local * local_slope) / bw
                gpu.append((knee * cap, at(knee * cap) - slope * knee * cap, slope))
        cpu = cpu_time(self.params, Features(n, n, n, 0, n, 0, 0, 0, 0))
        if not self.async_scheduling:
            return [(s, a + cpu, b) for s, a, b in gpu]
        pieces: list[tuple[float, float, float]] = []
        for i, (s, a, b) in enumerate(gpu):
            end = gpu[i + 1][0] if i + 1 < len(gpu) else math.inf
            if a + b * s >= cpu:  # the GPU bounds the whole piece (it only grows)
                pieces.append((s, a, b))
                continue
            cross = (cpu - a) / b if b > 0 else math.inf
            if not pieces or pieces[-1][1:] != (cpu, 0.0):
                pieces.append((s, cpu, 0.0))
            if cross < end:
                pieces.append((cross, a, b))
        return pieces
