"""What the engine asks of a cost model: the time of one iteration for a batch shape.

The interface is deliberately narrow so that a roofline estimate and a measured GPU profile
slot in the same way: `iteration_time(shape)` is all a new cost model needs. One rule binds
every implementation: for a decode-only batch with a fixed number of sequences,
`iteration_time` is affine in `decode_context`.

The fast simulator prices a run of consecutive decode-only iterations at once when the
cost model offers `decode_times(num_decodes, contexts) -> ndarray`: the times of decode-only
iterations of `num_decodes` sequences whose summed contexts are `contexts` (each one token
longer per sequence than the last). It must give exactly what `iteration_time` gives for
each such shape (the same operations in the same order: the simulators' decisions depend on
these times to the last bit where an arrival falls exactly at an iteration's end), and it
may be asked for iterations that never happen (an arrival cuts the run short). A cost model
without it is priced one iteration at a time: the same results, more slowly.
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

