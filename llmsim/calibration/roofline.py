"""The roofline cost model: iteration time from FLOPs and bytes against datasheet peaks.

A labelled estimate for when no measured profile exists. Each part of the forward pass
takes max(FLOPs / (peak x compute efficiency), bytes / (bandwidth x memory efficiency)):

- linear layers (QKV, O, gate/up, down) over the batch's new tokens: weights read once;
- the LM head over the rows that sample a token (vLLM computes no other logits);
- prefill attention per chunk of c new tokens after k cached ones: c*k + c(c+1)/2 query-key
  pairs, 4 * head_dim FLOPs each per head, reading the K/V of k + c tokens;
- decode attention: bandwidth-bound, reading the K/V of the summed context, so that a
  decode-only iteration is affine in its summed context (the fast engine relies on it);
- tensor-parallel all-reduce (2 per layer, ring algorithm over NVLink, analytic);
- a fixed per-iteration overhead (scheduling, input preparation, launch, sampling) plus a
  small per-sequence part.
"""

from __future__ import annotations

from ..engine.cost import IterationShape
from .gpus import GpuSpec
from .shapes import ModelShape


class RooflineCostModel:
    def __init__(self, model: ModelShape, gpu: GpuSpec, tp: int = 1,
                 compute_efficiency: float = 0.6, memory_efficiency: float = 0.8,
                 overhead_s: float = 1.0e-3, per_seq_overhead_s: float = 5e-6,
                 allreduce_latency_s: float = 10e-6, engine_overhead_s: float = 0.0) -> None:
        if tp < 1:
            raise ValueError(f"tp must be >= 1, got {tp}")
        for name, value in (("compute_efficiency", compute_efficiency),
                            ("memory_efficiency", memory_efficiency)):
            if not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        self.model, self.gpu, self.tp = model, gpu, tp
        self.compute_efficiency = compute_efficiency
        self.memory_efficiency = memory_efficiency
        self.overhead_s = overhead_s  # the roofline's own estimate of the fixed part
        self.engine_overhead_s = engine_overhead_s  # measured beyond the model (Deployment)
        self._fixed_s = overhead_s + engine_overhead_s
        self.per_seq_overhead_s = per_seq_overhead_s
        self.allreduce_latency_s = allreduce_latency_s
        self.label = (f"roofline estimate (datasheet {gpu.name}, {model.name}, tp={tp}; "
                      "not measured)")
        flops = gpu.peak_flops * compute_efficiency
        bw = gpu.memory_bandwidth * memory_efficiency
        m = model
        # Per-token and per-iteration constants, so that each call is a few multiply-adds.
        self._linear_flops_s = 2 * m.linear_params(tp) / flops  # per token
        self._linear_bytes_s = m.linear_params(tp) * m.dtype_bytes / bw  # per iteration
        self._head_flops_s = 2 * m.lm_head_params(tp) / flops  # per sampled row
        self._head_bytes_s = m.lm_head_params(tp) * m.dtype_bytes / bw
        heads = m.num_heads // tp if m.num_heads >= tp else 1
        self._attn_flops_s = 4 * heads * m.head_dim * m.num_layers / flops  # per query-key pair
        self._kv_s = m.kv_bytes_per_token(tp) / bw  # per cached token read
        self._allreduce_s, self._allreduce_fixed_s = allreduce_costs(m, gpu, tp,
                                                                     allreduce_latency_s)

    def describe(self) -> dict:
        return {"kind": "roofline", "model": self.model.to_dict(), "gpu": self.gpu.to_dict(),
                "tp": self.tp, "compute_efficiency": self.compute_efficiency,
                "memory_efficiency": self.memory_efficiency, "overhead_s": self.overhead_s,
                "engine_overhead_s": self.engine_overhead_s,
                "per_seq_overhead_s": self.per_seq_overhead_s,
                "allreduce_latency_s": self.allreduce_latency_s}

    def iteration_time(self, shape: IterationShape) -> float:
        tokens, seqs, chunks, _, context, sampled = shape  # unpacked: a field read costs more
        assert tokens > 0, f"empty iteration {shape}"
        t = self._fixed_s + self.per_seq_overhead_s * seqs
        t += max(self._linear_flops_s * tokens, self._linear_bytes_s)
        if sampled:
            t += max(self._head_flops_s * sampled, self._head_bytes_s)
        for chunk, cached in chunks:
            pairs = chunk * cached + chunk * (chunk + 1) / 2
            t += max(self._attn_flops_s * pairs, self._kv_s * (cached + chunk))
        if self._allreduce_s:
            t += self._allreduce_fixed_s + self._allreduce_s * tokens
        return t + self._kv_s * context  # last: see `decode_affine`

    def decode_affine(self, num_decodes: int) -> tuple[float, float, float]:
        """(a, b, floor): a decode-only iteration of `num_decodes` sequences with summed
        context C takes exactly max(a + b * C, floor), here a + b * C (the same operations as
        `iteration_time`; engine/cost.py)."""
        n = num_decodes
        t = self._fixed_s + self.per_seq_overhead_s * n
        t += max(self._linear_flops_s * n, self._linear_bytes_s)
        t += max(self._head_flops_s * n, self._head_bytes_s)
        if self._allreduce_s:
            t += self._allreduce_fixed_s + self._allreduce_s * n
        return t, self._kv_s, 0.0

def allreduce_costs(model: ModelShape, gpu: GpuSpec, tp: int,
                    latency_s: float = 10e-6) -> tuple[float, float]:
    """Tensor-parallel all-reduce per iteration, analytic (not measured): two per layer, ring
    algorithm moving 2 (tp - 1) / tp of each token's hidden state over NVLink. Returns
    (seconds per token, fixed seconds per iteration)."""
    if tp == 1:
        return 0.0, 0.0
    ring = 2 * (tp - 1) / tp * model.hidden_size * model.dtype_bytes / gpu.interconnect_bandwidth
    return 2 * model.num_layers * ring, 2 * model.num_layers * latency_s
