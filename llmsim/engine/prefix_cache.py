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
fast simulator's lockstep decoders need no per-block work while they decode.

The scheduler asks `hit(req)` before admitting a waiting request; the rest of the
interface is `BlockPool`'s, with the same counts.
"""

from __future__ import annotations

from itertools import islice

from .blocks import BlockPool
from .request import Request

OWN_SHIFT = 24  # own keys: -1 - (id << OWN_SHIFT | block index): negative, never a given key


def own_key(req_id: int, index: int) -> int:
    return -1 - (req_id << OWN_SHIFT | index)


class CachingBlockPool(BlockPool):
    caching = True

    def __init__(self, num_blocks: int, block_size: int = 16) -> None:
        super().__init__(num_blocks, block_size)
        self._key = [None] * num_blocks  # block -> its key, or None
        self._refs = [0] * num_blocks
        self._free_plain = list(range(num_blocks - 1, -1, -1))  # keyless free blocks; pop() next
        self._free_keyed: dict[int, None] = {}  # keyed free blocks, least recently freed first
        self._cached: dict[int, list[int]] = {}  # key -> blocks holding it, first cached first
        self._blocks: dict[int, list[int]] = {}  # request id -> its blocks, in order
        self._keyed: dict[int, int] = {}  # request id -> leading blocks keyed so far
        self._upto: dict[int, int] = {}  # request id -> tokens scheduled into its blocks
        self._hits: dict[int, list[int]] = {}  # request id -> blocks its last `hit` found
        self._loose: list[int] = []  # blocks taken for the fast simulator's aggregate
        self.evictions = 0  # keyed blocks handed out again (their key dropped)
        self.hit_tokens = 0  # tokens found cached at admissions (first or after preemption)

    # -- lookup ---------------------------------------------------------------------

    def peek(self, req: Request) -> int:
        """Tokens of `req`'s prompt this pool holds cached (its given keys only: a new
        request has no blocks of its own yet), without remembering anything: what a
        cache-aware router asks every replica."""
        given = req.block_hashes
        if given is None:
            return 0
        cached, n = self._cached, 0
        for key in given[:(req.prompt_tokens - 1) // self.block_size]:
            if key not in cached:
                break
            n += 1
        return n * self.block_size

    def hit(self, req: Request) -> int:
        """Tokens of `req`'s longest cached prefix of full blocks, capped at num_tokens - 1
        (vLLM's `get_computed_blocks`); remembered for the `can_allocate`/`allocate` that
        follow. Changes nothing in the pool."""
        bs = self.block_size
        limit = (req.prompt_tokens + req.emitted - 1) // bs
        given = req.block_hashes
        found = []
        cached = self._cached
        for j in range(limit):
            key = given[j] if given is not None and j < len(given) else own_key(req.id, j)
            blocks = cached.get(key)
            if blocks is None:
                break
            found.append(blocks[0])
        self._hits[req.id] = found
        return len(found) * bs

    # -- allocation -------------------------------------------------------------------

    def can_allocate(self, req: Request, num_new_tokens: int) -> bool:
        """vLLM's admission gate with its hits: blocks for all its tokens, less the hit
        blocks, plus the hit blocks that sit in the free queue (touching takes them out)."""
        assert req.id not in self._held, f"request {req.id} already holds blocks"
        hits = self._hits.get(req.id, ())
        assert len(hits) * self.block_size == req.computed, "hit() must come first"
        whole = max(req.prompt_tokens + req.emitted, req.computed + num_new_tokens)
        refs = self._refs
        evictable = sum(1 for b in hits if refs[b] == 0)
        return -(-whole // self.block_size) - len(hits) + evictable <= self.free_blocks

    def allocate(self, req: Request, num_new_tokens: int) -> None:
        hits = self._hits.pop(req.id, [])
        assert req.id not in self._held and len(hits) * self.block_size == req.computed
        refs, keyed = self._refs, self._free_keyed
        for b in hits:  # touch: shared now, out of the free queue
            if refs[b] == 0:
                del keyed[b]
                self.free_blocks -= 1
            refs[b] += 1
        self.hit_tokens += req.computed
        blocks = hits  # the list is ours now
        self._blocks[req.id] = blocks
        self._held[req.id] = len(blocks)
        self._keyed[req.id] = len(blocks)
        self._upto[req.id] = req.computed + num_new_tokens
        self._grow(req, blocks, self.missing(req, num_new_tokens))
        self._key_full(req, blocks, req.computed + num_new_tokens)

    def append(self, req: Request, num_new_tokens: int) -> None:
        blocks = self._blocks[req.id]
        self._grow(req, blocks, self.missing(req, num_new_tokens))
        self._upto[req.id] = req.computed + num_new_tokens
        given = req.block_hashes
        if given is not None and self._keyed[req.id] < len(given):
            self._key_full(req, blocks, req.computed + num_new_tokens)

    def _grow(self, req: Request, blocks: list[int], n: int) -> None:
        assert n <= self.free_blocks
        if n:
            blocks.extend(self._pop(n))
            self._held[req.id] += n

    def _pop(self, n: int) -> list[int]:
        """`n` blocks from the head of the free queue (vLLM's `get_new_blocks`): keyless
        ones first, then the least recently freed keyed ones, whose keys are dropped."""
        self.free_blocks -= n
        plain = self._free_plain
        if n <= len(plain):
            out = plain[-n:]
            del plain[-n:]
        else:
            out = plain[:]
            plain.clear()
            keyed, cached, keys = self._free_keyed, self._cached, self._key
            evict = list(islice(keyed, n - len(out)))
            for b in evict:
                del keyed[b]
                key = keys[b]
                holders = cached[key]
                holders.remove(b)
                if not holders:
                    del cached[key]
                keys[b] = None
            out += evict
            self.evictions += len(evict)
        refs = self._refs
        for b in out:
            refs[b] = 1
        return out

    def _key_full(self, req: Request, blocks: list[int], tokens: int) -> None:
        """Key the request's blocks that `tokens` scheduled tokens fill, as far as its given
        keys go (vLLM's `cache_blocks`; own keys wait for `free`)."""
        given = req.block_hashes
        if given is None:
            return
        start = self._keyed[req.id]
        stop = min(tokens // self.block_size, len(given))
        if stop <= start:
            return
        keys, cached = self._key, self._cached
        for j in range(start, stop):
            b = blocks[j]
            if keys[b] is None:
                key = given[j]
                keys[b] = key
                holders = cached.get(key)
                if holders is None:
                    cached[key] = [b]
                else:
                    holders.append(b)
        self._keyed[req.id] = stop

    def free(self, req: Request) -> None:
        """Its full blocks get their keys (own keys now), then it lets go of all of them,
        tail first: keyless ones to the head of the free queue, keyed ones to its tail."""
        rid = req.id
        blocks = self._blocks.pop(rid)
        del self._held[rid]
        start = self._keyed.pop(rid)
        # as vLLM keys blocks when it schedules their tokens, even tokens a preemption in
        # the same iteration then takes back
        stop = min(self._upto.pop(rid) // self.block_size, len(blocks))
        keys, cached, given = self._key, self._cached, req.block_hashes
        for j in range(start, stop):
            b = blocks[j]
            if keys[b] is None:
                key = given[j] if given is not None and j < len(given) else own_key(rid, j)
                keys[b] = key
                holders = cached.get(key)
                if holders is None:
                    cached[key] = [b]
                else:
                    holders.append(b)
        refs, plain, keyed = self._refs, self._free_plain, self._free_keyed
        for b in reversed(blocks):
            refs[b] -= 1
            if refs[b] == 0:
                if keys[b] is None:
                    plain.append(b)
                else:
                    keyed[b] = None
                self.free_blocks += 1
        assert self.free_blocks <= self.num_blocks

    # -- the fast simulator's aggregate: blocks in use, not yet attributed ----------------

    def take(self, n: int) -> None:
        assert 0 <= n <= self.free_blocks
        if n:
            self._loose.extend(self._pop(n))

    def unsettle(self, req: Request) -> None:
        assert self._held.pop(req.id) == self.blocks_for(req.computed)

    def settle(self, req: Request) -> None:
        assert req.id not in self._held
        blocks = self._blocks[req.id]
        n = self.blocks_for(req.computed) - len(blocks)
        if n:
            loose = self._loose
            blocks.extend(loose[-n:])
            del loose[-n:]
        self._held[req.id] = len(blocks)
        self._upto[req.id] = req.computed

    def can_defer_keys(self, req: Request) -> bool:
        """Whether the blocks `req` fills from now on all get own keys (set when it frees
        them), so that it may decode in the fast simulator's aggregate."""
        given = req.block_hashes
        return given is None or len(given) * self.block_size <= req.computed

    # -- checks -----------------------------------------------------------------------

    def check(self) -> None:
        """Invariants, for tests: counts agree, keyed free blocks are cached, refs add up."""
        refs = [0] * self.num_blocks
        for blocks in self._blocks.values():
            for b in blocks:
                refs[b] += 1
        for b in self._loose:
            refs[b] += 1
        assert refs == self._refs
        free = set(self._free_plain) | set(self._free_keyed)
        assert len(free) == self.free_blocks == len(self._free_plain) + len(self._free_keyed)
        assert free == {b for b in range(self.num_blocks) if refs[b] == 0}
        assert all(self._key[b] is None for b in self._free_plain)
        assert all(self._key[b] is not None for b in self._free_keyed)
        for key, holders in self._cached.items():
            assert holders and all(self._key[b] == key for b in holders)
        assert sum(map(len, self._cached.values())) == sum(k is not None for k in self._key)
