"""What the engine asks of a cost model: the time of one iteration for a batch shape.

The interface is deliberately narrow so that a roofline estimate and a measured GPU profile
slot in the same way: `iteration_time(shape)` is all a new cost model needs. One rule binds
every implementation: for a decode-only batch with a fixed number of sequences,
`iteration_time` is affine in `decode_context`.

The fast simulator runs stretches of decode-only iterations without its per-iteration
machinery (`FastReplica._run_decodes`), pricing each one with `iteration_time`, or in closed
form when the cost model offers `decode_affine(num_decodes) -> (a, b, floor) | None`: for a
decode-only batch of `num_decodes` sequences whose contexts sum to C, `iteration_time` is
`max(a + b * C, floor)`, exactly: the same floats, because `iteration_time` adds the
context term last. The simulators' decisions depend on iteration ends to the last bit (an
arrival may fall exactly at one), so "about equal" is not enough. None (or no such method)
means no such form for this batch size; the results are the same, a little more slowly.
Both depend on their arguments alone: the fast simulator remembers `decode_affine` per
batch size.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol


class IterationShape(NamedTuple):
    """The work of one engine iteration (one forward pass), as the cost model sees it."""

    num_tokens: int  # new tokens fed to the model: prefill chunk tokens + one per decode
    num_seqs: int  # sequences in the batch (prefilling or decoding)
    prefill_chunks: tuple[tuple[int, int], ...]  # (chunk tokens, tokens already in KV) per prefill
    num_decodes: int  # sequences feeding exactly one token after their prompt is done
    decode_context: int  # sum over decodes of the KV tokens each attends to (including its new one)
    num_sampled: int  # sequences that sample a token at the end (LM head rows)


class CostModel(Protocol):
    """Prices an iteration in seconds. `label` names it in every output (e.g. 'roofline ...')."""

    label: str

    def iteration_time(self, shape: IterationShape) -> float: ...

