"""One request's progress through a replica, in vLLM V1's terms.

vLLM V1 has no prefill or decode phase: a request knows `num_tokens` (prompt + tokens
emitted so far) and `computed` (tokens whose KV is in the cache). Each iteration feeds it
`num_tokens - computed` tokens, or fewer when the token budget chunks its prompt; when
`computed` reaches `num_tokens` a new token is sampled. Recompute preemption resets
`computed` to 0, so the request re-prefills its prompt and everything emitted so far.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


class Holding:
    """A request's blocks in a caching pool (prefix_cache.py): n of them, the first `keyed`
    with keys set, their ids buffer[:keyed] (the others have no ids; the buffer is sized
    for all it can hold, and a block's id is written in place when its key is set)."""

    def __init__(self, buffer: np.ndarray, n: int, keyed: int) -> None:
        self.buffer = buffer
        self.n = n
        self.keyed = keyed


class State(Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"
    REJECTED = "rejected"


@dataclass(slots=True, eq=False)
class Request:
    id: int  # row in the workload
    arrival: float
    prompt_tokens: int
    output_tokens: int  # tokens it will emit before it stops (the trace's length)
    computed: int = 0  # tokens whose KV is computed (and held in blocks)
    emitted: int = 0  # output tokens sampled so far
    rank: float = 0.0  # the policy's sort key, set when it enters the waiting queue
    state: State = State.WAITING
    last_token_at: float = 0.0
    discarded: int = 0  # computed tokens thrown away by preemptions, to be recomputed
    tick: int = 0  # fast simulator: decoder tick at which computed/emitted were written back
    waited_since: int = 0  # scheduler iteration at which it last entered the waiting queue
    promoted_at: int = -1  # starvation prevention: iteration it was promoted at, or -1
    protected: bool = False  # admitted while promoted: no eviction for a better-ranked head
    block_hashes: np.ndarray | None = None  # keys of its leading full KV blocks (prefix
    # caching: dense int64 slot numbers, prefix_cache.py); None: its blocks are its own
    private_from: int = 1 << 62  # its keys from this block on no other request of the
    # workload has, or none that may still look them up (PrefixKeys.private_from): only it
    # could look them up, after a preemption
    keys_checked: bool = False  # its keys are known to be in the pool's range (PrefixKeys
    # makes them so; a pool checks others once)
    cached: int = -1  # prompt tokens found in the prefix cache at its first admission
    cached_hint: int = 0  # prompt tokens its replica held cached when it arrived (policies)
    seat: int = 0  # admission sequence number: running order is increasing seat
    scheduled_kv: int = 0  # prefix caching: tokens scheduled into its blocks while it holds
    # them (which of its full blocks get keys when it frees them; prefix_cache.py)
    # a caching pool's state for it, kept here: a dict keyed by id cost a boxed lookup
    # each, ~4% of the instructions caching adds to Mooncake's trace
    holding: Holding | None = None  # the blocks it holds (None: none, or not looked up
    # since the pool named its blocks: CachingBlockPool._holding)
    lookup: Holding | None = None  # the blocks its last `hit` found, until it is allocated
    failed: tuple[int, int, int] | None = None  # CachingBlockPool.blocked's counts
    queued_key: tuple = ()  # the sort key of its live entry in the waiting queue (a plain
    # `tuple`: the queue tests entries by identity, and a compiled fixed-shape tuple would be
    # unboxed and boxed anew)

    @property
    def num_tokens(self) -> int:
        return self.prompt_tokens + self.emitted

    @property
    def remaining_tokens(self) -> int:
        """Tokens this request still has to emit."""
        return self.output_tokens - self.emitted

    @property
    def max_kv_tokens(self) -> int:
        """KV slots it holds at its largest: the last emitted token is never fed back."""
        return self.prompt_tokens + self.output_tokens - 1

    @property
    def is_decoding(self) -> bool:
        """Whether its next feed is exactly its last sampled token (one token, then it samples
        the next): what the cost model prices as a decode, and what may run in lockstep."""
        return self.emitted > 0 and self.computed == self.prompt_tokens + self.emitted - 1

    @property
    def done(self) -> bool:
        """Whether it has emitted its whole output."""
        return self.emitted == self.output_tokens

    def chunk(self, budget: int) -> int:
        """Tokens it is fed in an iteration with `budget` tokens left: the rest of what it
        has not computed, cut to the budget (chunked prefill)."""
        left = self.prompt_tokens + self.emitted - self.computed  # num_tokens - computed
        return left if left < budget else budget

    def feed(self, n: int) -> bool:
        """An iteration computed `n` of its tokens; returns whether it then sampled a token
        (it does once everything it holds is computed)."""
        self.computed += n
        if self.computed < self.prompt_tokens + self.emitted:  # < num_tokens
            return False  # a prompt chunk that is not the last one
        self.emitted += 1
        return True

    @property
    def promoted(self) -> bool:
        return self.promoted_at >= 0

    def sort_key(self) -> tuple:  # (int, float, float, int): see `queued_key`
        """Waiting-queue order: (rank, arrival, id), as vLLM's heap; the priority victim is
        the largest without the id (ties: the first in running order). Requests promoted
        against starvation go first, among themselves by rank, as vllm-ltr sorts by
        (promoted, score)."""
        return (0 if self.promoted_at >= 0 else 1, self.rank, self.arrival, self.id)
