"""What one request costs the engine: the yardstick a scheduler's ranking is judged by.

A request with a prompt of p tokens that generates o tokens is prefilled once and then
decoded o times, each decode attending to its whole KV cache (p, then p+1, ...). Its GPU
time therefore grows like

    cost(p, o) = per_prompt_token * p + per_output_token * o
                 + per_context_token * (p * o + o**2 / 2)

and the last term dominates long generations: a 15,000-token runaway costs as much as
thousands of ordinary requests. Mean latency under shortest-job-first is decided by
pushing those few to the back of the queue, which is why predictors are judged (and
selected) by the cost share they send there, not by rank correlation alone.

`RequestCost()` is the unit-free default, p * o + o**2 / 2. `RequestCost.from_cost_model`
prices the three terms from a deployment's cost model (seconds): the marginal time one
more sequence adds to a reference decode batch, per step and per KV token attended, and
the marginal time of its prompt as a prefill chunk in that batch.

A server caps generations at `max_tokens`; `capped(lengths, cap)` is what it would run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The decode batch the marginal costs are taken at: a busy replica (vLLM's 256 seats
# half full) whose sequences hold ~1k tokens of KV each.
REF_DECODES = 128
REF_CONTEXT = 1024
PREFILL_CHUNK = 512


@dataclass(frozen=True, slots=True)
class RequestCost:
    per_prompt_token: float = 0.0
    per_output_token: float = 0.0
    per_context_token: float = 1.0
    label: str = "p*o + o^2/2 (KV tokens attended while decoding)"

    def __call__(self, prompt_tokens, output_tokens) -> np.ndarray:
        """Cost of each request; `output_tokens` may be a (prompts, samples) matrix, in
        which case `prompt_tokens` (one per prompt) is broadcast over the samples."""
        p = np.asarray(prompt_tokens, dtype=np.float64)
        o = np.asarray(output_tokens, dtype=np.float64)
        if o.ndim == 2 and p.ndim == 1:
            p = p[:, None]
        return (self.per_prompt_token * p + self.per_output_token * o
                + self.per_context_token * (p * o + o * o / 2))

    def to_dict(self) -> dict:
        return {"per_prompt_token": self.per_prompt_token,
                "per_output_token": self.per_output_token,
                "per_context_token": self.per_context_token, "label": self.label}

    @classmethod
    def from_dict(cls, d: dict) -> RequestCost:
        return cls(float(d["per_prompt_token"]), float(d["per_output_token"]),
                   float(d["per_context_token"]), str(d["label"]))

    @classmethod
    def from_cost_model(cls, cost) -> RequestCost:
        """Marginal seconds at a reference decode batch (REF_DECODES sequences of
        REF_CONTEXT KV tokens each) of `cost` (an `llmsim.engine.cost.CostModel`)."""
        from ..engine.cost import IterationShape

        def t(decodes: int, context: int, chunk: int = 0) -> float:
            chunks = ((chunk, 0),) if chunk else ()
            return cost.iteration_time(IterationShape(
                num_tokens=decodes + chunk, num_seqs=decodes + (1 if chunk else 0),
                prefill_chunks=chunks, num_decodes=decodes, decode_context=context,
                num_sampled=decodes + (1 if chunk else 0)))

        b, c = REF_DECODES, REF_DECODES * REF_CONTEXT
        base = t(b, c)
        per_seq = t(b + 1, c) - base
        per_ctx = (t(b + 1, c + 4096) - t(b + 1, c)) / 4096
        per_prompt = (t(b, c, PREFILL_CHUNK) - base) / PREFILL_CHUNK
        assert per_ctx > 0, f"{cost.label}: decode time does not grow with context"
        return cls(max(per_prompt, 0.0), max(per_seq, 0.0), per_ctx,
                   f"marginal seconds in a {b}-sequence decode batch ({cost.label})")


def capped(lengths: np.ndarray, cap: int | None) -> np.ndarray:
    """Output lengths as a server with `max_tokens = cap` runs them (None: uncapped)."""
    lengths = np.asarray(lengths)
    return lengths if cap is None else np.minimum(lengths, cap)
