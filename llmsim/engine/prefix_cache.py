"""The KV pool with automatic prefix caching, after vLLM V1's `BlockPool` and
`KVCacheManager` (vllm/v1/core/block_pool.py, kv_cache_manager.py, v0.33).

Blocks have identities here. A full block is known by a chained hash of its tokens (a
`key`: the same key means the same tokens from the start of the sequence up to that
block's end). A request looks up the longest run of cached keys from its first block,
capped so that at least one token is computed (the last one gives the logits); the blocks
it hits are shared with whoever holds them (reference counts) and it computes from there.
Blocks whose count drops to zero go to the free queue and keep their key until they are
handed out again: they stay hits until then. The queue is, as in vLLM 0.33, blocks without
a key first (reused first) then keyed blocks in the order they were freed (least recently
used first; a request frees its blocks tail first, so a prefix outlives its suffix).
`free_blocks` counts the whole queue, as vLLM's `get_num_free_blocks`.

Keys: a request's `block_hashes` name its leading full blocks (from a trace's `hash_ids`
or a synthetic session); every full block after them gets a key of its own, unique to the
request (`own_key`), so a preempted request finds its own blocks again, as in vLLM, where
every request's blocks are hashed. A block is keyed once it is full of scheduled tokens,
as vLLM's `cache_blocks` does when it allocates; an own key is set when the request frees
the block instead: nobody else can look it up, so nothing tells the two apart, and the
fast simulator's lockstep decoders need no per-block work while they decode. The same goes
for given keys from a request's `private_from` on (no other request of the workload has
them): they are set when it frees its blocks, in the map if it was preempted; if it is
done, its blocks past its shared keys get DEAD keys, which only hold their place in the
free queue (one entry for them all, no ids: see `CachingBlockPool`).

Given keys that cover output tokens (sessions, whose next turn resends this one's answer)
fall due while a request decodes. The fast simulator's decoders key them lazily: the
pool calls `flush` (set by the `DecoderAggregate`) before anything that could see a key
(a lookup, or another request keying its blocks), and the aggregate then keys, in the
order the step-by-step scheduler would have, every block whose tokens are scheduled.

The scheduler asks `hit(req)` before admitting a waiting request; the rest of the
interface is `BlockPool`'s, with the same counts. Until a key anybody can look up is set
(a request with given keys, or a preemption), the pool keeps `BlockPool`'s counts only:
its blocks are `anonymous` (see `_name`), so requests without ids cost what they cost with
caching off.

Speed: a Mooncake prompt fills ~750 blocks, and each is keyed, freed, evicted and looked up
once or more, so every per-block step is a NumPy operation over a request's blocks, never a
Python loop (a dict operation per block cost more than the whole simulation without
caching). Given keys are therefore dense slot numbers, and the cache map is a page table
over them (`key_table.py`). A block remembers its cell in the map, so eviction needs no
lookup. Only a block with a key has an id: the others are counted. Own keys, set only by
preemptions, stay in a dict. Where `_pool.c` was built, its
`Arrays` does the common per-block steps on these same arrays, one C call each (a
caching-on run of Mooncake's trace takes half the time it took without), taking a
request's whole arrays and a range (a NumPy slice and its buffer cost more than a short
step); the NumPy code here stays the reference and does the rare cases: a key held twice,
a map that must grow, and setting and looking up own keys.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy as np

from .blocks import BlockPool, mypyc_attr
from .key_table import EMPTY, MAX_KEY, KeyTable
from .request import Holding, Request

try:  # the per-block steps compiled (_pool.c); optional (setup.py)
    from ._pool import Arrays as CompiledArrays
except ImportError:
    CompiledArrays = None

OWN_SHIFT = 24  # own keys: -1 - (id << OWN_SHIFT | block index): negative, never a given key
OWN, NONE = -2, -3  # a block's cell when it holds an own key (in `_own_key`), or no key
# anybody can look up: the map ignores these cells, eviction passes them. A finished
# request's full blocks past its keys hold DEAD keys (vLLM hashes them; nobody can look them
# up): they queue with the keyed blocks as one entry, minus their count (`free`); they have
# no ids (see `CachingBlockPool`)
INF = 1 << 62
CELL_SHIFT = 32  # a keyed free block's queue entry: b | (cell + 3) << CELL_SHIFT (`entry`)
BLOCK_MASK = (1 << CELL_SHIFT) - 1
RECORD = np.dtype([("cell", np.int32), ("refs", np.int32), ("seq", np.int64)])  # a block's
# state in one record (16 bytes): the compiled steps read and write one cache line a block
DEAD_BLOCK = -1  # `keyed_free_blocks`' stand-in for a block of a DEAD run (it has no id)
NAMED_FROM_START = False  # True: every pool names its blocks when it is made, never counts
# them anonymously (tests compare the two: the same results)


def ring_size(n: int) -> int:
    """The free queue's ring for `n` entries: a power of two (an entry's slot is its number's
    low bits), at least 8 (small: the tests' pools wrap and widen it)."""
    return max(1 << (n - 1).bit_length(), 8)


def table_rows(num_blocks: int) -> int:
    """Rows for a pool's cache map to start with: one per 128 blocks, a power of two, at
    least 16. On Mooncake's trace a replica's map settles at 256 rows for 27,864 blocks
    (pages of 1,024 keys a third full, doubled until half the rows are spare); grown from
    16 rows, its four doublings and their scans took ~2% of a caching-on run."""
    rows = 16
    while rows * 128 < num_blocks:
        rows *= 2
    return rows


def entry(blocks: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Keyed free blocks' entries in the queue: each block with its cell (>= 0, or OWN),
    which `take` clears in the map without reading the block's record. A touch rewrites an
    entry as the bare block, with no cell: a dead entry. A run of DEAD keys' blocks is one
    entry, -count."""
    return blocks | (cells.astype(np.int64) + 3) << CELL_SHIFT


def own_key(req_id: int, index: int) -> int:
    return -1 - (req_id << OWN_SHIFT | index)


@mypyc_attr(allow_interpreted_subclasses=True)  # compiled (setup.py); tests subclass it
class CachingBlockPool(BlockPool):
    """Only a block with a key anybody can look up (given, or own: `_keyed`) has an id; the
    others are counts. A keyless block, or one holding a DEAD key, is held by one request
    at most and shared by none, and nothing can tell two of them apart, so the free queue
    keeps how many there are, requests and the fast simulator's aggregate how many they
    hold, and none of them has an id or a record. A block gets an id when its key is set,
    from a stack of the ids no keyed block has (`_ids`, top at `_ids_n`: `_give_ids`), and
    gives it back when it is evicted (`take`). On Mooncake's trace that leaves 5.8M of the
    9.3M blocks freed in a run without one: each used to be written into the queue, read
    back and copied into the buffer of the request it was handed to.

    State is NumPy arrays indexed by id. The free queue's keyless part is a count
    (`_plain_n`); its keyed part is a queue in the order blocks were freed (`_lru`, a
    ring): an entry a keyed block, or a run of DEAD blocks (minus their count: a finished
    request's, freed together). Each entry's number is its place in the queue since the
    start (at `_lru[number & _lru_mask]`), kept in its block's `_seq`. A keyed block's
    entry carries its cell (`entry`), so that evicting it reads no record; a block touched
    out of the queue by a hit takes its entry's cell away, leaving a dead entry behind,
    skipped when the head reaches it (`_dead_from` bounds where the first is, so that most
    evictions need no check). The cache map (`KeyTable`) holds given keys; own keys are in
    `_own`. A request's `Holding` lists the ids of its keyed blocks, which lead it, and
    counts the rest.

    An id's record (cell, references, entry number) is read only while its block has a key:
    setting a key writes cell and references, and evicting a block leaves its record as it
    was, stale until its id is given out again (a keyed block's entry carries what
    eviction needs)."""

    def __init__(self, num_blocks: int, block_size: int = 16,
                 compiled: bool | None = None, keys: int = 0) -> None:
        """`compiled`: do the per-block steps in C (_pool.c) where they are the common case;
        None: where the module was built. The results are the same either way. `keys`: the
        given keys to come are below it, where known (`KeyTable`)."""
        super().__init__(num_blocks, block_size)
        self.caching = True
        if compiled and CompiledArrays is None:
            raise RuntimeError("llmsim.engine._pool was not built (no C compiler at install)")
        nb = num_blocks
        self._records = np.zeros(nb, RECORD)  # the three below are its fields; zeros, not
        # written until a key is set (nothing reads them before: `_keyed`), so that a pool's
        # pages are touched as its blocks are keyed, not all when it is made
        self._cell = self._records["cell"]  # block -> its cell in the map, or NONE/OWN
        self._refs = self._records["refs"]
        self._seq = self._records["seq"]  # block -> its entry's number in `_lru` (what a
        # touch finds the entry by)
        self._plain_n = nb  # keyless free blocks (a count: no block without a key has an id)
        self._ids = np.arange(nb - 1, -1, -1, dtype=np.intp)  # ids no keyed block has, a
        # stack (top at `_ids_n`): a block gets one when its key is set (`_give_ids`) and
        # gives it back when it is evicted
        self._ids_n = nb
        self._lru = np.empty(ring_size(2 * nb), np.intp)  # keyed free blocks (`entry`),
        # oldest first: entries numbered [_lru_head, _lru_tail), in a ring (`_widen` doubles
        # it where they would not fit). It was an array four times the blocks, compacted
        # when its end was reached: its copies took ~1% of a caching-on run of Mooncake's
        # trace, and the ring is ~40% fewer pages to fault in (the run's seconds did not
        # move: `take` now reads entries no compaction has just copied)
        self._lru_mask = len(self._lru) - 1
        self._lru_head = self._lru_tail = 0
        self._dead = 0  # dead entries between head and tail
        self._dead_from = INF  # no dead entry has a smaller number
        self.keyed_free = 0  # keyed blocks in the free queue
        self._head_dead = 0  # the rest of a DEAD run partly taken, at the queue's head: its
        # entry is gone (`_take` hands these out first, without a C call: on Mooncake's
        # trace half of the takes that reach the queue need no more)
        self._map = KeyTable(table_rows(nb), keys)  # given key -> block
        self._own: dict[int, int | list[int]] = {}  # own key -> block, or blocks in order
        self._own_key: dict[int, int] = {}  # block -> its own key
        self._reqs: dict[int, Holding] = {}  # request id -> the blocks it holds (each
        # request keeps its own as `holding`, which the steps read: this is for the pool's
        # checks and for `_name`). A request's `lookup` holds the blocks its last `hit`
        # found, in the buffer it is allocated with (the lookup writes them there: no copy)
        self._spare: dict[int, list[np.ndarray]] = {}  # c -> freed buffers of >= 2**c blocks
        self._keyings = 0  # times keys were set so far (see `blocked`)
        self._touches = 0  # idle cached blocks hits took out of the free queue (`blocked`)
        # (a request's `failed`: _keyings, _touches, free_blocks when its admission last
        # failed)
        self._loose_n = 0  # blocks taken for the fast simulator's aggregate (keyless)
        self._owed = 0  # blocks it took that are still in the free queue (see `take`)
        # the fast simulator's decoders: flush(keys, seat), before `keys` are looked up or
        # set by a request admitted now (seat None), or set by the running request seated `seat`
        self.flush: Callable[[np.ndarray, int | None], None] | None = None
        self._evictions = 0  # keyed blocks handed out again (their key dropped)
        self.hit_tokens = 0  # tokens found cached at admissions (first or after preemption)
        self.anonymous = True  # no block has a key anybody could look up yet: counts only,
        # until `_name` gives the blocks identities (see there)
        self._parked: dict[int, int] = {}  # anonymous: request id -> blocks it holds while
        # the fast simulator's aggregate has them (unsettled)
        use_c = CompiledArrays is not None if compiled is None else compiled
        self._c = CompiledArrays() if use_c else None  # bound to the arrays above (`_bind`)
        self._out = np.empty(nb, np.intp)  # what `run` hands back to `peek`, read at once
        self._owned = np.empty(nb, np.intp)  # blocks `take` evicted that had own keys
        self._bind()
        if NAMED_FROM_START:
            self._name()

    def _bind(self) -> None:
        """Point the compiled steps at the arrays (again, after one was replaced)."""
        if self._c is not None:
            m = self._map
            self._c.bind(self._records.view(np.int64), self._ids, self._lru, m.base,
                         m.table, m.row_page, m.spare, self._owned, m.filled)

    # -- lookup ---------------------------------------------------------------------

    def _cached_run(self, keys: np.ndarray, n: int, out: np.ndarray) -> int:
        """How many blocks hold the longest run of cached keys from the first of keys[:n],
        those blocks written to out[:found]."""
        if not n:
            return 0
        if self._c is not None:
            found: int = self._c.run(keys, n, out)
            return found
        blocks = self._map.run(keys[:n])
        out[:len(blocks)] = blocks
        return len(blocks)

    def peek(self, req: Request) -> int:
        """Tokens of `req`'s prompt this pool holds cached (its given keys only: a new
        request has no blocks of its own yet), without remembering anything: what a
        cache-aware router asks every replica."""
        given = req.block_hashes
        if given is None or self.anonymous:
            return 0
        n = min(len(given), (req.prompt_tokens - 1) // self.block_size)
        if self.flush is not None:
            self.flush(given[:n], None)
        self._pay()
        return self._cached_run(given, n, self._out) * self.block_size

    def hit(self, req: Request) -> int:
        """Tokens of `req`'s longest cached prefix of full blocks, capped at num_tokens - 1
        (vLLM's `get_computed_blocks`); remembered for the `can_allocate`/`allocate` that
        follow. Changes nothing in the pool."""
        if self.anonymous:  # nothing is cached
            return 0
        bs = self.block_size
        limit = (req.prompt_tokens + req.emitted - 1) // bs
        given = req.block_hashes if req.block_hashes is not None else EMPTY
        n = min(limit, len(given))
        if n and self.flush is not None:
            self.flush(given[:n], None)
        self._pay()
        held = req.lookup  # an earlier lookup's buffer, to reuse
        if held is None:
            held = req.lookup = Holding(self._buffer(self._capacity(req)), 0, 0)
        found = self._cached_run(given, n, held.buffer)
        if found == n < limit and self._own:  # its own blocks, kept since a preemption
            for j in range(n, limit):
                b = self._own.get(own_key(req.id, j))
                if b is None:
                    break
                held.buffer[found] = b if isinstance(b, int) else b[0]
                found += 1
        held.n = held.keyed = found
        return found * bs

    def _capacity(self, req: Request) -> int:
        """Blocks a buffer for `req` holds: all it can ever hold."""
        return self.blocks_for(req.prompt_tokens + req.output_tokens)

    def blocked(self, req: Request) -> bool:
        """Whether admitting `req` (waiting) is sure to fail again, with no lookup: its last
        `can_allocate` failed, and since then no key was set, no hit took a cached block out
        of the free queue, and the free blocks did not grow. It lacked blocks: it needs its
        blocks less its hit blocks held by others. With no key set its cached run can only
        lose blocks (to evictions), which never lowers what it needs; a block allocated
        lowers what is free and not what it needs; a block freed raises what is free by one
        and what it needs by at most one. So while the free blocks have not grown, it still
        lacks blocks. A hit taking one of its cached blocks out of the free queue lowers
        both by one, but beside a block freed elsewhere the free count hides it (free back
        where it was, need one lower): any such touch means looking again. What a head of
        the queue stuck behind a full pool asks every iteration."""
        failed = req.failed
        if failed is None:
            return False
        if self.flush is not None and req.block_hashes is not None:  # keys due by now count
            limit = (req.prompt_tokens + req.emitted - 1) // self.block_size
            self.flush(req.block_hashes[:limit], None)
        return (failed[0] == self._keyings and failed[1] == self._touches
                and self.free_blocks <= failed[2])

    # -- allocation -------------------------------------------------------------------

    def can_allocate(self, req: Request, num_new_tokens: int) -> bool:
        """vLLM's admission gate with its hits: blocks for all its tokens, less the hit
        blocks, plus the hit blocks that sit in the free queue (touching takes them out)."""
        assert req.id not in self._held, f"request {req.id} already holds blocks"
        if self.anonymous:  # nothing hits
            return super().can_allocate(req, num_new_tokens)
        held = req.lookup
        found = held.n if held is not None else 0
        assert found * self.block_size == req.computed, "hit() must come first"
        whole = max(req.prompt_tokens + req.emitted, req.computed + num_new_tokens)
        evictable = 0
        if held is not None and found:
            evictable = (self._c.idle(held.buffer, found) if self._c is not None
                         else int(np.count_nonzero(self._refs[held.buffer[:found]] == 0)))
        if -(-whole // self.block_size) - found + evictable <= self.free_blocks:
            req.failed = None
            return True
        req.failed = (self._keyings, self._touches, self.free_blocks)
        return False

    def allocate(self, req: Request, num_new_tokens: int) -> None:
        if self.anonymous:
            if req.block_hashes is None or not len(req.block_hashes):
                return self._allocate_anonymous(req, num_new_tokens)
            self._name()  # its keys will be looked up
        self._pay()
        held = req.lookup
        req.lookup = None
        if held is None:
            held = Holding(self._buffer(self._capacity(req)), 0, 0)
        found = held.n
        assert req.id not in self._held and found * self.block_size == req.computed
        given = req.block_hashes
        if given is not None and len(given) and not req.keys_checked:
            lo, hi = (self._c.bounds(given) if self._c is not None
                      else (int(given.min()), int(given.max())))
            if lo < 0 or hi >= MAX_KEY:
                raise ValueError(f"request {req.id}: prefix keys are dense slot numbers in "
                                 f"[0, {MAX_KEY}) (BlockHashes.keys makes them), got "
                                 f"{lo} .. {hi}")
            req.keys_checked = True
        if found and self._c is not None:  # touch: shared now, out of the free queue
            idle, first = cast(tuple[int, int], self._c.touch(held.buffer, found,
                                                              self._lru_head))
            if idle:
                self._dead_from = min(self._dead_from, first)
                self._dead += idle
                self.keyed_free -= idle
                self.free_blocks -= idle
                self._touches += idle
        elif found:
            hits = held.buffer[:found]
            refs = self._refs
            counts = refs[hits]
            touched = hits[counts == 0]
            if len(touched):
                numbers = self._seq[touched]
                self._dead_from = min(self._dead_from, int(numbers.min()))
                self._lru[numbers & self._lru_mask] = touched  # their entries are dead
                self._seq[touched] = -1
                self._dead += len(touched)
                self.keyed_free -= len(touched)
                self.free_blocks -= len(touched)
                self._touches += len(touched)
            refs[hits] = counts + 1
        self.hit_tokens += req.computed
        self._reqs[req.id] = req.holding = held  # its hit blocks lead its buffer, keyed
        self._held[req.id] = found
        req.scheduled_kv = req.computed + num_new_tokens
        self._grow(req, self.missing(req, num_new_tokens))
        self._key_scheduled(req, req.computed + num_new_tokens, None)

    def append(self, req: Request, num_new_tokens: int) -> None:
        if self.anonymous:
            self._pop_anonymous(self.missing(req, num_new_tokens))
            super().append(req, num_new_tokens)
            req.scheduled_kv = req.computed + num_new_tokens
            return
        self._pay()
        self._grow(req, self.missing(req, num_new_tokens))
        req.scheduled_kv = req.computed + num_new_tokens
        self._key_scheduled(req, req.computed + num_new_tokens, req.seat)

    def _key_scheduled(self, req: Request, tokens: int, seat: int | None) -> None:
        """`_key` for a request scheduling tokens, after the fast simulator's decoders have
        set those of their due keys it is about to set too (`seat`: see `flush`)."""
        given = req.block_hashes
        if given is None or self._holding(req).keyed >= self._shared(req):
            return
        if self.flush is not None:
            start = self._holding(req).keyed
            stop = min(tokens // self.block_size, self._shared(req))
            if stop > start:
                self.flush(given[start:stop], seat)
        self._key(req, tokens)

    def _shared(self, req: Request) -> int:
        """How many of `req`'s given keys are set as their blocks fill: those up to its
        `private_from`, which another request may look up. The rest wait for `free`."""
        given = req.block_hashes
        assert given is not None
        return min(len(given), req.private_from)

    def _holding(self, req: Request) -> Holding:
        """The blocks `req` holds here (kept on it; `_reqs` has them by id, for the
        blocks named while it held them anonymously)."""
        held = req.holding
        if held is None:
            held = req.holding = self._reqs[req.id]
        return held

    def _grow(self, req: Request, n: int) -> None:
        assert n <= self.free_blocks
        if n:
            self.free_blocks -= n
            self._take(n)
            held = self._holding(req)
            held.n += n
            self._held[req.id] = held.n  # (settled: what it holds)

    def _buffer(self, n: int) -> np.ndarray:
        """A buffer for `n` blocks or more: a freed one where one is spare (an np.empty per
        request took ~9 ms of a caching-on run of Mooncake's trace)."""
        c = (n - 1).bit_length()
        spare = self._spare.get(c)
        return spare.pop() if spare else np.empty(1 << c, np.intp)

    def _room(self, held: Holding, n: int) -> np.ndarray:
        """A request's buffer, made to hold `n` blocks if it holds fewer (a buffer is sized
        for all a request can hold, but `_name` sizes them to what they hold)."""
        buffer = held.buffer
        if n > len(buffer):
            buffer = held.buffer = np.concatenate(
                [buffer, np.empty(max(n, 2 * len(buffer)) - len(buffer), np.intp)])
        return buffer

    def _take(self, n: int) -> None:
        """`n` blocks out of the free queue (vLLM's `get_new_blocks`), for a request or the
        aggregate, which count them: keyless ones first, then the least recently freed
        keyed ones, whose keys are dropped (their ids back on the stack). The caller
        lowered the free count."""
        top = self._plain_n
        if n <= top:
            self._plain_n = top - n
            return
        self._plain_n = 0
        k = n - top
        self.keyed_free -= k
        self._evictions += k
        dead = self._head_dead
        if k <= dead:
            self._head_dead = dead - k
            return
        k -= dead
        self._head_dead = 0
        c = self._c
        if c is None or self._map.dups:  # a key held twice: NumPy's
            self._evict(k)
            return
        head = self._lru_head
        got = c.take(k, head, self._ids_n)  # own keys: `_owned`
        if isinstance(got, int):  # none skipped or owned: used | ids_n << 32 (`_pool.c`)
            used, skipped, owned, self._ids_n, rest = got & 0xFFFFFFFF, 0, 0, got >> 32, 0
        else:  # (typed: mypyc then unpacks the tuple and does the sums below natively)
            used, skipped, owned, self._ids_n, rest = cast(tuple[int, int, int, int, int], got)
        self._head_dead = rest
        if owned:  # own keys (preemptions) live in dicts
            for b in self._owned[:owned].tolist():
                self._uncache_own(b)
        self._lru_head = head + used
        self._dead -= skipped
        if not self._dead:
            self._dead_from = INF
        else:  # a bound: no dead entry before the head
            self._dead_from = max(self._dead_from, self._lru_head)

    def _evict(self, k: int) -> None:
        """`_take`'s `k` blocks from the keyed part of the queue past `_head_dead`, least
        recently freed first: a DEAD run gives its blocks (or some: the rest become
        `_head_dead`), a keyed block's entry its block, whose key is dropped, and a dead
        entry none."""
        head, need = self._lru_head, k
        while need:  # read ahead: dead entries come in runs (a hit touches a prefix)
            chunk = self._queue(head, min(head + 2 * need + 64, self._lru_tail))
            gives = np.where(chunk < 0, -chunk, ~self._dead_entries(chunk))  # blocks each
            total = np.cumsum(gives)
            used = int(np.searchsorted(total, need)) + 1 if total[-1] >= need else len(chunk)
            left = int(total[used - 1]) - need  # a DEAD run's blocks not taken
            if left > 0:
                self._head_dead = left
                part = chunk[:used - 1]
            else:
                part = chunk[:used]
            dead = self._dead_entries(part)
            live = part[(part >= 0) & ~dead]  # keyed blocks, their keys dropped
            self._dead -= int(np.count_nonzero(dead))
            named, cells = live & BLOCK_MASK, (live >> CELL_SHIFT) - 3  # records not read,
            # nor reset: nothing reads a block's record until a key is set again (`_keyed`)
            if self._own_key:
                for b in named[cells == OWN].tolist():
                    self._uncache_own(b)
            self._map.remove(cells, named)
            self._ids[self._ids_n:self._ids_n + len(named)] = named
            self._ids_n += len(named)
            head += used
            need -= min(int(total[-1]), need)
        self._lru_head = head
        if not self._dead:
            self._dead_from = INF
        elif self._dead_from < head:  # look for the next dead entry
            ahead = self._queue(head, min(head + 4096, self._lru_tail))  # a bound is enough
            dead = self._dead_entries(ahead)
            first = int(dead.argmax())
            self._dead_from = head + (first if dead[first] else len(ahead))

    def _give_ids(self, blocks: np.ndarray, start: int, stop: int) -> None:
        """Ids for blocks[start:stop], about to be keyed: popped from the stack in order."""
        top = self._ids_n
        k = stop - start
        assert k <= top, "an id for every block"
        blocks[start:stop] = self._ids[top - k:top][::-1]
        self._ids_n = top - k

    def _queue(self, start: int, stop: int) -> np.ndarray:
        """The queue's entries numbered [start, stop), in order (a copy)."""
        return self._lru[np.arange(start, stop) & self._lru_mask]

    @staticmethod
    def _dead_entries(entries: np.ndarray) -> np.ndarray:
        """Which of the queue's `entries` are dead (their block was touched out of the queue
        since: no cell); a DEAD run's entry (-count) never is."""
        return (entries >= 0) & (entries >> CELL_SHIFT == 0)

    # -- own keys ----------------------------------------------------------------------

    def _cache_own(self, key: int, b: int) -> None:
        self._keyings += 1
        holders = self._own.setdefault(key, b)
        if holders != b:  # a duplicate
            if isinstance(holders, int):
                self._own[key] = [holders, b]
            else:
                holders.append(b)
        self._own_key[b] = key

    def _uncache_own(self, b: int) -> None:
        key = self._own_key.pop(b)
        holders = self._own[key]
        if isinstance(holders, int):
            del self._own[key]
        else:
            holders.remove(b)
            if len(holders) == 1:
                self._own[key] = holders[0]

    def _key(self, req: Request, tokens: int) -> None:
        """Key the request's blocks that `tokens` scheduled tokens fill, as far as its given
        keys go (vLLM's `cache_blocks`; own keys wait for `free`). Blocks past those keyed
        so far are fresh: none has a key yet."""
        given = req.block_hashes
        if given is None:
            return
        held = self._holding(req)
        start = held.keyed
        stop = min(tokens // self.block_size, self._shared(req))
        if stop <= start:
            return
        assert stop <= held.n
        self._insert(given, self._room(held, stop), start, stop)
        held.keyed = stop
        self._keyings += 1

    def _insert(self, keys: np.ndarray, blocks: np.ndarray, start: int, stop: int,
                named: bool = False) -> None:
        """Cache blocks[start:stop] under keys[start:stop] in the map, and remember their
        cells; the blocks get their ids here (`_give_ids`), unless `named`."""
        if self._c is not None:
            got: int = self._c.insert(keys, blocks, start, stop, self._map.spare_n,
                                      -1 if named else self._ids_n)
            if got >= 0:  # spare_n | ids_n << 32 (`_pool.c`)
                self._map.spare_n = got & 0xFFFFFFFF
                if not named:
                    self._ids_n = got >> 32
                return
        if not named:
            self._give_ids(blocks, start, stop)
        keys, blocks = keys[start:stop], blocks[start:stop]
        self._cell[blocks] = self._map.insert(keys, blocks)
        self._refs[blocks] = 1  # a block without a key had no record to read
        self._bind()  # the map may have grown its arrays

    def free(self, req: Request) -> None:
        """Its full blocks get their keys (own keys now: DEAD ones if it is done, as no
        lookup can reach them), then it lets go of all of them, tail first: keyless ones to
        the head of the free queue, keyed ones to its tail, a DEAD run as one entry."""
        if self.anonymous:
            if req.done:
                return self._free_anonymous(req)
            self._name()  # preempted: its blocks get own keys, which it looks up again
        self._pay()
        rid = req.id
        held = self._holding(req)
        del self._reqs[rid]
        req.holding = None
        del self._held[rid]
        n, start = held.n, held.keyed  # it holds n blocks, the first `start` with ids
        # as vLLM keys blocks when it schedules their tokens, even tokens a preemption in
        # the same iteration then takes back
        stop = min(req.scheduled_kv // self.block_size, n)
        assert start <= stop and n - stop <= 1  # its last block, if not full
        given = req.block_hashes
        own = start if given is None else max(start, min(len(given), stop))
        assert own == start or start >= self._shared(req), "shared keys are set on time"
        dead = stop - start if req.done else 0  # blocks[start:stop] get DEAD keys: a run
        keyed = start
        if stop > start and not dead:  # keys it looks up when it comes back
            buffer = self._room(held, stop)
            if own > start:  # private given keys
                assert given is not None
                self._insert(given, buffer, start, own)
                self._keyings += 1
            if own < stop:
                self._give_ids(buffer, own, stop)
                owned = buffer[own:stop]
                self._cell[owned] = OWN
                self._refs[owned] = 1
                for j, b in enumerate(owned.tolist(), own):
                    self._cache_own(own_key(rid, j), b)
            keyed = stop
        buffer = held.buffer  # spare for the next request: nothing below asks for one
        self._spare.setdefault(len(buffer).bit_length() - 1, []).append(buffer)
        self._plain_n += n - stop  # its last block, not full: keyless, to the queue's head
        self.free_blocks += n - stop
        self._widen(keyed + 1)
        tail = self._lru_tail
        if self._c is not None:
            zero: int = self._c.release(buffer, keyed, dead, tail)  # (blocks queued)
        else:
            blocks = buffer[:keyed]
            counts = self._refs[blocks] - 1
            self._refs[blocks] = counts
            freed = blocks[counts == 0][::-1]  # tail first
            zero = len(freed)
            number = tail + (dead > 0)  # past the DEAD run's entry, -dead
            if dead:
                self._lru[tail & self._lru_mask] = -dead
            self._lru[np.arange(number, number + zero) & self._lru_mask] = entry(
                freed, self._cell[freed])
            self._seq[freed] = np.arange(number, number + zero)
        self._lru_tail = tail + zero + (dead > 0)
        self.keyed_free += zero + dead
        self.free_blocks += zero + dead
        assert self.free_blocks <= self.num_blocks

    def _widen(self, n: int) -> None:
        """Make room in the queue's ring for `n` more entries: doubled (entries keep their
        numbers) until they fit. Dead entries can outnumber the blocks, which a ring of
        twice the blocks mostly leaves room for."""
        head, tail = self._lru_head, self._lru_tail
        size = len(self._lru)
        if tail - head + n <= size:
            return
        while tail - head + n > size:
            size *= 2
        numbers = np.arange(head, tail)
        fresh = np.empty(size, np.intp)
        fresh[numbers & (size - 1)] = self._lru[numbers & self._lru_mask]
        self._lru, self._lru_mask = fresh, size - 1
        self._bind()

    # -- anonymous blocks: counts until the first key anybody can look up ----------------

    def _pop_anonymous(self, n: int) -> None:
        """`_pop`'s queue by counts (`BlockPool` counts the free blocks): keyless free
        blocks first, then keyed (DEAD) ones, evicted."""
        if n <= self._plain_n:
            self._plain_n -= n
        else:
            evicted = n - self._plain_n
            self._plain_n = 0
            self.keyed_free -= evicted
            self._evictions += evicted

    def _allocate_anonymous(self, req: Request, num_new_tokens: int) -> None:
        assert req.computed == 0
        self._pop_anonymous(self.missing(req, num_new_tokens))
        super().allocate(req, num_new_tokens)
        req.scheduled_kv = num_new_tokens

    def _free_anonymous(self, req: Request) -> None:
        """`free` for a finished request: its full blocks get DEAD keys and go to the
        queue's keyed part, its last one, if not full, to the keyless part."""
        n = self._held[req.id]
        full = min(req.scheduled_kv // self.block_size, n)
        assert n - full <= 1
        self._plain_n += n - full
        self.keyed_free += full
        super().free(req)

    def _name(self) -> None:
        """Keep the pool's full state from here on, before the first key anybody can look
        up is set: a request with given keys is allocated, or one is preempted (own keys).

        Until then the pool keeps `BlockPool`'s counts only (no `Holding`s, no queue): every
        free block in the queue's keyed part holds a finished request's DEAD key (nobody
        can look it up, only its place in the queue counts), every other block no key, and
        none is shared (nothing can hit). In the full state, too, such blocks have no ids:
        the DEAD ones become one run at the queue's head, and each request holding blocks
        gets a `Holding` that counts them. A workload whose requests have no given keys and
        are never preempted (Azure's traces, most of llmsim's) runs with caching on at
        about the cost of caching off (1.04x on Azure's, docs/prefix_caching.md)."""
        assert self.anonymous and not self._owed and not self._reqs and not self._lru_tail
        assert self._ids_n == self.num_blocks  # no key set yet: every id on the stack
        for rid, n in (*self._held.items(), *self._parked.items()):
            self._reqs[rid] = Holding(np.empty(n, np.intp), n, 0)
        assert self.keyed_free == self.free_blocks - self._plain_n and not self._head_dead
        if self.keyed_free:  # DEAD keys: one run
            self._lru[0] = -self.keyed_free
            self._lru_tail = 1
        self._parked.clear()
        self.anonymous = False

    # -- the fast simulator's aggregate: blocks in use, not yet attributed ----------------

    def take(self, n: int) -> None:
        """`n` blocks for the aggregate. They leave the free queue only when something
        next reads or changes it, the cache map or the blocks in use (`_pay`), all at once:
        the fast simulator's decoders take blocks every few iterations, and one eviction
        of many keys costs little more than one of a few."""
        assert 0 <= n <= self.free_blocks
        if self.anonymous:
            self._pop_anonymous(n)
            self._loose_n += n
            super().take(n)
            return
        self.free_blocks -= n
        self._owed += n

    def _pay(self) -> None:
        """The blocks `take` owes, out of the free queue now: every method that reads or
        changes the queue, the map or the blocks in use calls this first, so the queue
        sees the same pops, in the same order, as if `take` had popped at once."""
        n = self._owed
        if n:
            self._owed = 0
            self._take(n)
            self._loose_n += n

    @property
    def evictions(self) -> int:
        self._pay()
        return self._evictions

    def unsettle(self, req: Request) -> None:
        held = self._held.pop(req.id)
        assert held == self.blocks_for(req.computed)
        if self.anonymous:
            self._parked[req.id] = held

    def settle(self, req: Request) -> None:
        assert req.id not in self._held
        if self.anonymous:  # `_attribute`'s count
            more = self.blocks_for(req.computed) - self._parked.pop(req.id)
            assert 0 <= more <= self._loose_n
            self._loose_n -= more
            super().settle(req)
            req.scheduled_kv = req.computed
            return
        self._held[req.id] = self._attribute(req, req.computed)
        req.scheduled_kv = req.computed
        given = req.block_hashes
        if given is not None and self._holding(req).keyed < self._shared(req):
            self._key(req, req.computed)

    def _attribute(self, req: Request, tokens: int) -> int:
        """Give `req` blocks taken for the aggregate until it holds those of `tokens` (the
        taken blocks are alike: keyless, held once, counted); returns how many it holds."""
        self._pay()
        held = self._holding(req)
        n = self.blocks_for(tokens) - held.n
        if n > 0:
            assert n <= self._loose_n
            self._loose_n -= n
            held.n += n
        return held.n

    def key_due(self, req: Request) -> int | None:
        """Scheduled tokens at which `req`'s next given key falls due (its next block is
        full), or None when it has no given key left to set."""
        given = req.block_hashes
        if given is None:
            return None
        keyed = self._holding(req).keyed
        return None if keyed >= self._shared(req) else (keyed + 1) * self.block_size

    def keys_range(self, req: Request) -> tuple[int, int]:
        """Where `req`'s given keys to set as its blocks fill, not set yet, are in its
        `block_hashes`: `keys_left` as a range."""
        return self._holding(req).keyed, self._shared(req)

    def keys_left(self, req: Request) -> np.ndarray:
        """`req`'s given keys to set as its blocks fill, not set yet."""
        given = req.block_hashes
        assert given is not None
        return given[self._holding(req).keyed:self._shared(req)]

    def key_members(self, due: list[tuple[Request, int, int]]) -> None:
        """Aggregate members' blocks full of their scheduled tokens get their given keys,
        as the step-by-step scheduler set them when it scheduled them: ordered by the tick
        each block filled ((j + 1) * block_size - base for block j), then by seat, which
        matters only where two hold the same key (the first one set holds it). `due`:
        (member, tokens scheduled, its base)."""
        if len(due) == 1:
            req, scheduled, _ = due[0]
            self._attribute(req, scheduled)
            self._key(req, scheduled)
            return
        bs, runs = self.block_size, []
        for req, scheduled, base in due:
            self._attribute(req, scheduled)
            given = req.block_hashes
            assert given is not None  # only members with given keys fall due
            start, stop = self._holding(req).keyed, min(scheduled // bs, self._shared(req))
            if stop > start:  # its blocks get their ids in the order they come here
                blocks = self._room(self._holding(req), stop)
                self._give_ids(blocks, start, stop)
                runs.append((req, start, stop, base, blocks))
        if not runs:
            return
        self._keyings += 1
        keys = np.concatenate([self.keys_left(req)[:b - a] for req, a, b, _, _ in runs])
        blocks = np.concatenate([held[a:b] for _, a, b, _, held in runs])
        ordered = np.sort(keys) if len(runs) > 1 else keys
        if len(runs) > 1 and (ordered[1:] == ordered[:-1]).any():  # in the order they filled
            tick = np.concatenate([np.arange(a + 1, b + 1) * bs - base
                                   for _, a, b, base, _ in runs])
            seat = np.concatenate([np.full(b - a, req.seat) for req, a, b, _, _ in runs])
            for i in np.lexsort((seat, tick)).tolist():
                self._insert(keys, blocks, i, i + 1, named=True)
        else:
            self._insert(keys, blocks, 0, len(keys), named=True)
        for req, _, stop, _, _ in runs:
            self._holding(req).keyed = stop

    # -- for tests --------------------------------------------------------------------

    def _identify(self) -> None:
        """Blocks with ids, owed ones paid: what a test looking at blocks needs."""
        if self.anonymous:
            self._name()
        self._pay()

    def _keyed(self) -> np.ndarray:
        """Which blocks have a key anybody can look up (given or own): those with ids, whose
        records are kept. Held ones before their holders' `keyed`, and keyed free ones.
        Any other id is on the stack, its record stale: neither evicting a block nor
        handing it out resets it."""
        keyed = np.zeros(self.num_blocks, bool)
        for holding in self._reqs.values():
            keyed[holding.buffer[:holding.keyed]] = True
        keyed[self._live()] = True
        return keyed

    def _live(self) -> np.ndarray:
        """The keyed free blocks, least recently freed first (the queue's live keyed
        entries' blocks)."""
        entries = self._queue(self._lru_head, self._lru_tail)
        live = entries[(entries >= 0) & ~self._dead_entries(entries)]
        return live & BLOCK_MASK

    def key_of(self, b: int | None):
        """Block `b`'s key: a given key, an own key, "dead" for DEAD (a block in a DEAD
        run, `keyed_free_blocks`' -1), or None (no id: `blocks_of`' None)."""
        self._identify()
        if b is None:
            return None
        if b == DEAD_BLOCK:
            return "dead"
        assert self._keyed()[b], f"block {b} has no key"
        cell = int(self._cell[b])
        return self._map.key(cell) if cell >= 0 else self._own_key.get(b)

    def blocks_of(self, req: Request) -> list[int | None]:
        """`req`'s blocks in order: ids where they have keys, None past those."""
        self._identify()
        held = self._reqs[req.id]
        return [*held.buffer[:held.keyed].tolist(), *[None] * (held.n - held.keyed)]

    def refs(self, b: int) -> int:
        """Requests holding block `b`, which has a key."""
        self._identify()
        assert self._keyed()[b], f"block {b} has no key"
        return int(self._refs[b])

    def keyed_free_blocks(self) -> list[int]:
        """The keyed free blocks, least recently freed first: an id, or DEAD_BLOCK (-1) for
        each block of a DEAD run."""
        self._identify()
        entries = self._queue(self._lru_head, self._lru_tail)
        out = [DEAD_BLOCK] * self._head_dead
        for e in entries[~self._dead_entries(entries)].tolist():
            out.extend([DEAD_BLOCK] * -e if e < 0 else [e & BLOCK_MASK])
        return out

    def cached_keys(self) -> list:
        self._pay()
        return sorted(self._map.holders()) + list(self._own)

    def check(self) -> None:
        """Invariants: counts agree, ids are the keyed blocks' and the stack's, keyed free
        blocks are cached, refs add up where they are kept (keyed blocks), and the cache map
        holds exactly the blocks keyed with a given or own key."""
        nb = self.num_blocks
        if self.anonymous:  # counts add up
            held = sum(self._held.values()) + sum(self._parked.values())
            assert held + self._loose_n + self.free_blocks == nb and not self._owed
            assert self._plain_n + self.keyed_free == self.free_blocks
            assert self._ids_n == nb and not self._lru_tail
            assert not self._reqs and not self._own and not self._map.holders()
            return
        self._pay()
        refs = np.zeros(nb, np.int64)
        held = 0
        for rid, holding in self._reqs.items():
            blocks = holding.buffer[:holding.keyed]
            assert holding.keyed <= min(holding.n, len(holding.buffer))
            assert self._held.get(rid, holding.n) == holding.n  # (unsettled: not in _held)
            assert len(set(blocks.tolist())) == len(blocks)
            refs[blocks] += 1
            held += holding.n - holding.keyed  # blocks without ids
        in_use = int(np.count_nonzero(refs)) + held + self._loose_n  # (keyed ones shared)
        assert in_use + self.free_blocks == nb
        named = self._keyed()  # records kept: refs add up
        assert (refs[named] == self._refs[named]).all() and not refs[~named].any()
        assert (self._cell[named] != NONE).all()
        ids = self._ids[:self._ids_n]
        assert not named[ids].any() and len(set(ids.tolist())) == len(ids) == nb - named.sum()
        queue = self._queue(self._lru_head, self._lru_tail)
        runs = -queue[queue < 0]
        live = self._live()
        assert len(live) == len(set(live.tolist())) and (runs > 0).all()
        dead = runs.sum() + self._head_dead
        assert self.keyed_free == len(live) + dead and self._head_dead >= 0
        assert self.free_blocks == self._plain_n + self.keyed_free
        assert len(ids) == held + self._loose_n + self._plain_n + dead  # no id
        gone = self._dead_entries(queue)
        assert int(np.count_nonzero(gone)) == self._dead
        if self._dead:  # the first dead entry is not before `_dead_from`
            assert self._lru_head + int(gone.argmax()) >= self._dead_from
        at = np.flatnonzero(queue >= 0)  # keyed blocks' entries, live or dead
        queued, numbers, alive = queue[at], self._lru_head + at, ~gone[at]
        assert (self._seq[live] == numbers[alive]).all()
        assert (queued[alive] >> CELL_SHIFT == self._cell[live] + 3).all()
        assert not refs[live].any()  # free
        assert (self._seq[queued[~alive]] != numbers[~alive]).all()  # a dead one: neither
        assert self._map.check(self._cell) == int(np.count_nonzero(self._cell[named] >= 0))
        own = 0
        for key, holders in self._own.items():
            holders = [holders] if isinstance(holders, int) else holders
            assert holders and len(holders) == len(set(holders))
            assert all(self._own_key[b] == key and self._cell[b] == OWN for b in holders)
            own += len(holders)
        assert own == len(self._own_key) == int(np.count_nonzero(self._cell[named] == OWN))
