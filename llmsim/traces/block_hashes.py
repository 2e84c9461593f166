"""Per-request prefix-cache block ids (Mooncake's `hash_ids`), kept compactly.

Mooncake's traces give each request the ids of its prompt's 512-token blocks; two requests
sharing a leading id share that prefix, which is what a prefix-caching model needs. Kept
as one flat int64 array plus offsets (CSR), not a list per request: the conversation
trace's 12,031 requests hold 288,500 ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..engine import prefix_keys
from ..engine.prefix_keys import PrefixKeys

POSITION_BITS = 24  # a trace block's place in its request, packed under its id to number them
LATER = 1 << 62  # `_sharers`: a request after this one has the trace block


@dataclass(frozen=True, eq=False)
class BlockHashes:
    offsets: np.ndarray  # int64, len = requests + 1; request i is ids[offsets[i]:offsets[i+1]]
    ids: np.ndarray  # int64
    block_tokens: int  # prompt tokens per block (512 in Mooncake's traces)
    covers_output: bool = False  # the ids go on over the output tokens (synthetic sessions,
    # whose next turn resends this one's answer); Mooncake's cover the prompt only

    def keys(self, i: int, prompt: int, output: int, block_size: int) -> np.ndarray | None:
        """The engine's keys for request i's leading full KV blocks of `block_size` tokens
        (prefix_cache.py), or None when it has no ids.

        Engine block j (tokens j*bs .. (j+1)*bs - 1) gets a key when it is full of tokens
        the ids cover (the prompt, or prompt and output); its key names the trace block
        holding its last token (its id and its place t in the request) and j: two requests
        with that id there share every token up to the end of that trace block, so their
        block j holds the same tokens. A trace block's id names its tokens, so a short last
        block (a prompt that does not end on a trace-block boundary) has an id of its own.

        Keys are dense slot numbers, as the pool's cache map wants: the trace block's number
        among the distinct (id, t) in the trace, times the engine blocks one can end in,
        plus j's place among them."""
        return self.engine_keys(block_size).keys(i, prompt, output)

    @cached_property
    def _bounds(self) -> memoryview:
        """`offsets`, read as Python ints (`keys` reads two a request; a memoryview, not a
        list: a list of 10M requests' offsets would take ~360 MB)."""
        return memoryview(np.ascontiguousarray(self.offsets, np.int64))

    def private_from(self, i: int, block_size: int) -> int:
        """The first of request i's engine blocks whose key no other request of the trace
        has: each is in a trace block after the last one another request also has (the
        same id at the same place). Only request i itself could look these keys up, after
        a preemption, so the pool sets them only then (half of Mooncake's conversation
        trace's blocks: 48% of its trace blocks appear in one request)."""
        return self.engine_keys(block_size).private_from(i)

    @cached_property
    def _shared_upto(self) -> np.ndarray:
        """Per request, 1 + the place of its last trace block another request also has
        (0: none)."""
        if self._sharing is not None:
            return self._sharing[1]
        numbers = self._numbers
        counts = np.diff(self.offsets)
        upto = np.zeros(len(counts), np.int64)
        if not len(numbers):
            return upto
        place = np.arange(len(numbers), dtype=np.int64) - np.repeat(self.offsets[:-1], counts)
        shared = np.bincount(numbers)[numbers] >= 2
        some = counts > 0
        upto[some] = np.maximum.reduceat(np.where(shared, place + 1, 0), self.offsets[:-1][some])
        return upto

    @cached_property
    def _sharers(self) -> np.ndarray:
        """Per id (each trace block of each request): the latest request before it that has
        the same trace block (-1: none), or LATER where one after it has it. What lets a
        request tell, as it arrives, which of its trace blocks no request left can look up
        (`PrefixKeys.private_from`)."""
        if self._sharing is not None:
            return self._sharing[0]
        numbers = self._numbers
        if not len(numbers):
            return np.empty(0, np.int64)
        counts = np.diff(self.offsets)
        request = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
        last = np.full(int(numbers.max()) + 1, -1, np.int64)  # per trace block
        np.maximum.at(last, numbers, request)
        later = request < last[numbers]
        before = np.full(len(last), -1, np.int64)  # the latest holder before the last one
        np.maximum.at(before, numbers[later], request[later])
        return np.where(later, LATER, before[numbers])

    @cached_property
    def _sharing(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(`_sharers`, `_shared_upto`) in one C pass (the NumPy code above is the
        reference), or None where it was not built or there are no ids."""
        numbers = self._numbers
        if prefix_keys.sharers is None or not len(numbers):
            return None
        sharers = np.empty(len(numbers), np.int64)
        upto = np.empty(len(self), np.int64)
        prefix_keys.sharers(np.ascontiguousarray(self.offsets, np.int64),
                            np.ascontiguousarray(numbers, np.int64), int(numbers.max()) + 1,
                            sharers, upto)
        return sharers, upto

    @cached_property
    def _may_shrink(self) -> np.ndarray:
        """Per request: whether the last of its first `_shared_upto` trace blocks is one no
        request after it has (so its keys from there on may become its own as it arrives)."""
        upto = self._shared_upto
        last = self.offsets[:-1] + upto - 1
        shrink = np.zeros(len(upto), np.uint8)
        some = upto > 0
        shrink[some] = self._sharers[last[some]] < LATER
        return shrink

    def engine_keys(self, block_size: int) -> PrefixKeys:
        """`keys` and `private_from` for one block size, compiled with the engine (what a
        cluster asks as each request arrives). Engine block j ends in trace block t, and is
        the j - t * block_tokens // block_size-th of the engine blocks that can end in one
        (at most `span`); the same for every request, so worked out once per block size. A
        request's keys are then a gather from each trace block's first key (its number times
        `span`), plus the places."""
        made = self._engine_keys.get(block_size)
        if made is None:
            longest = int(np.diff(self.offsets).max(initial=0))
            j = np.arange(longest * self.block_tokens // block_size + 1, dtype=np.int64)
            t = ((j + 1) * block_size - 1) // self.block_tokens
            place = j - t * self.block_tokens // block_size
            span = self.block_tokens // block_size + 2
            made = self._engine_keys[block_size] = PrefixKeys(
                self._bounds, self._numbers * span, t, place,
                memoryview(self._shared_upto), self.block_tokens, self.covers_output,
                block_size, self._sharers, memoryview(self._may_shrink))
        return made

    @cached_property
    def _engine_keys(self) -> dict[int, PrefixKeys]:
        return {}

    @cached_property
    def _numbers(self) -> np.ndarray:
        """Each id's number among the distinct (id, place in its request) of the trace."""
        ids = self.ids
        if len(ids) and ids.min() < 0:
            i = int(np.searchsorted(self.offsets, int(np.argmax(ids < 0)), side="right")) - 1
            raise ValueError(f"request {i}: hash ids must be >= 0, got {int(ids.min())}")
        if len(ids) and int(ids.max()) >= 1 << (63 - POSITION_BITS):
            raise ValueError(f"hash ids must be below 2**{63 - POSITION_BITS}")
        place = np.arange(len(ids), dtype=np.int64) - np.repeat(self.offsets[:-1],
                                                                np.diff(self.offsets))
        numbers = _numbers_by_id(ids, place)
        if numbers is not None:
            return numbers
        return np.unique(ids << POSITION_BITS | place, return_inverse=True)[1].astype(np.int64)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def of(self, i: int) -> np.ndarray:
        """Request i's block ids."""
        return self.ids[self.offsets[i]:self.offsets[i + 1]]

    def take(self, rows: np.ndarray) -> BlockHashes:
        """The block ids of the given requests, in that order (vectorised gather)."""
        rows = np.asarray(rows, dtype=np.int64)
        counts = np.diff(self.offsets)[rows]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        starts = np.repeat(self.offsets[rows] - offsets[:-1], counts)
        return BlockHashes(offsets, self.ids[starts + np.arange(offsets[-1])], self.block_tokens,
                           self.covers_output)

    @classmethod
    def from_lists(cls, lists, block_tokens: int, covers_output: bool = False) -> BlockHashes:
        counts = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        ids = np.fromiter((i for x in lists for i in x), dtype=np.int64, count=int(offsets[-1]))
        return cls(offsets, ids, block_tokens, covers_output)

    @classmethod
    def from_arrow(cls, array, block_tokens: int, covers_output: bool = False) -> BlockHashes:
        """From a pyarrow list<int64> array without nulls (the fast JSON path)."""
        offsets = array.offsets.to_numpy().astype(np.int64)
        ids = array.values.to_numpy().astype(np.int64)
        return cls(offsets - offsets[0], ids[offsets[0]:offsets[-1]], block_tokens, covers_output)


def _numbers_by_id(ids: np.ndarray, place: np.ndarray) -> np.ndarray | None:
    """`BlockHashes._numbers` without sorting, where it can: when the largest id is small
    (under 4x the number of ids given, so a bitmap over 0..max is cheap) and every id sits
    at one place only (as chained hashes do), the distinct (id, place) pairs sort as their
    ids, so an id's rank among the distinct ids is its number. None otherwise. Sessions'
    2.1M ids took 0.19-0.37 s to sort, this 0.03 s."""
    if not len(ids):
        return None
    top = int(ids.max()) + 1
    if top > 4 * len(ids) + 1024:
        return None
    seen = np.zeros(top, bool)
    seen[ids] = True
    at = np.empty(top, np.int64)
    at[ids] = place  # an id at two places disagrees with this at one of them
    if not (at[ids] == place).all():
        return None
    return (np.cumsum(seen) - 1)[ids]
