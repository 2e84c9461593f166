"""A workload's prefix-cache keys for one block size, per request: what `BlockHashes.keys`
and `BlockHashes.private_from` return (llmsim/traces/block_hashes.py says what the keys
are), compiled with the engine. The cluster asks once per arriving request; in Python the
two took ~3 us a request, an eighth of what caching cost on Mooncake's trace."""

from __future__ import annotations

import numpy as np

from .key_table import MAX_KEY

try:  # the gather and the scans in C, where the engine's pool steps were built (setup.py)
    from ._pool import make_keys, sharers
    from ._pool import shared_upto as scan_shared  # (not `self.shared_upto`, the array)
except ImportError:
    make_keys = scan_shared = sharers = None  # (sharers: BlockHashes._sharing)


class PrefixKeys:
    def __init__(self, bounds: memoryview, first: np.ndarray, t: np.ndarray,
                 place: np.ndarray, shared_upto: memoryview, block_tokens: int,
                 covers_output: bool, block_size: int, sharers: np.ndarray,
                 may_shrink: memoryview) -> None:
        """`bounds`: request i's trace blocks are [bounds[i], bounds[i + 1]); `first`: each
        trace block's first key; `t`, `place`: engine block j ends in the request's trace
        block t[j], and is the place[j]-th engine block that ends there; `shared_upto`: per
        request, 1 + the place of its last trace block another request also has
        (memoryviews: read as Python ints); `sharers`: per trace block of each request, the
        latest request before it that has it (-1: none), or more than any request where one
        after it has it; `may_shrink`: per request, whether the last of its first
        `shared_upto` trace blocks is one no request after it has."""
        self.end = int(first.max()) + int(place.max(initial=0)) + 1 if len(first) else 0
        if self.end > MAX_KEY:  # every key is below `end`
            raise ValueError(f"{len(first):,} trace blocks make keys past the prefix cache's "
                             f"{MAX_KEY:,}")
        self.bounds = bounds  # keys within [0, MAX_KEY): the pool need not check them
        self.first = first
        self.t = t
        self.place = place
        self.shared_upto = shared_upto
        self.block_tokens = block_tokens
        self.covers_output = covers_output
        self.block_size = block_size
        self.sharers = sharers
        self.may_shrink = may_shrink

    def keys(self, i: int, prompt: int, output: int) -> np.ndarray | None:
        """Request i's keys for its leading full blocks, or None when it has none."""
        lo: int = self.bounds[i]
        hi: int = self.bounds[i + 1]
        covered = (hi - lo) * self.block_tokens
        if self.covers_output:
            covered = min(covered, prompt + output - 1)
        else:
            covered = min(covered, prompt)
        n = covered // self.block_size
        if n <= 0:
            return None
        if make_keys is not None:
            made: np.ndarray = make_keys(self.first, lo, self.block_tokens, self.block_size, n)
            return made
        keys = self.first[lo:hi][self.t[:n]]
        keys += self.place[:n]
        return keys

    def private_from(self, i: int, watermark: int = -1) -> int:
        """The first of request i's blocks whose key no other request has: past the last of
        its trace blocks another request also has, or, given `watermark` (every request
        before it has left for good: finished, or refused), another request may still look
        up (one after it, or one before it not gone). Only request i itself could look
        those keys up from now on, after a preemption."""
        upto: int = self.shared_upto[i]
        if watermark >= 0 and self.may_shrink[i]:
            lo: int = self.bounds[i]
            if scan_shared is not None:
                upto = scan_shared(self.sharers, lo, upto, watermark)
            else:
                others = np.flatnonzero(self.sharers[lo:lo + upto] >= watermark)
                upto = int(others[-1]) + 1 if len(others) else 0
        return upto * self.block_tokens // self.block_size
