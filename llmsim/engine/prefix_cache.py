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

from .blocks import BlockPool
from .request import Request

OWN_SHIFT = 24  # own keys: -1 - (id << OWN_SHIFT | block index): negative, never a given key


DEAD = object()  # the key of a finished request's own block: nobody can look it up, so it
# is not in the cache map, but the block is keyed (it queues with the keyed blocks)


def own_key(req_id: int, index: int) -> int:
    return -1 - (req_id << OWN_SHIFT | index)


class CachingBlockPool(BlockPool):
    """The free queue's keyed part is a list of stamps in the order blocks were freed
    (`stamp = sequence * num_blocks + block`); a stamp is live while the block's current
    stamp is that one: a block touched out of the queue by a hit leaves a dead stamp
    behind, skipped when the head reaches it. (An ordered dict would be simpler, but
    popping from its front degrades as deleted entries pile up there.) The cache map holds
    a block per key, or a list of blocks, first cached first, when several hold it."""

    caching = True

    def __init__(self, num_blocks: int, block_size: int = 16) -> None:
        super().__init__(num_blocks, block_size)
        self._key: list = [None] * num_blocks  # block -> its key, DEAD, or None
        self._refs = [0] * num_blocks
        self._free_plain = list(range(num_blocks - 1, -1, -1))  # keyless free blocks; pop() next
        self._lru: list[int] = []  # stamps of keyed free blocks, least recently freed first
        self._lru_head = 0  # stamps before it are consumed
        self._stamp = [-1] * num_blocks  # block -> its live stamp in `_lru`, or -1
        self._stamps = 0  # stamps handed out
        self.keyed_free = 0  # keyed blocks in the free queue
        self._cached: dict = {}  # key -> block holding it, or list of blocks
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
        n = min(limit, len(given)) if given is not None else 0
        for j in range(n):
            b = cached.get(given[j])
            if b is None:
                break
            found.append(b if b.__class__ is int else b[0])
        else:
            for j in range(n, limit):  # its own blocks, kept since a preemption
                b = cached.get(own_key(req.id, j))
                if b is None:
                    break
                found.append(b if b.__class__ is int else b[0])
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
        refs, stamp = self._refs, self._stamp
        for b in hits:  # touch: shared now, out of the free queue
            if refs[b] == 0:
                stamp[b] = -1  # its stamp in `_lru` is dead
                self.keyed_free -= 1
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
            evicted = self._evict(n - len(out))
            out += evicted
        refs = self._refs
        for b in out:
            refs[b] = 1
        return out

    def _evict(self, k: int) -> list[int]:
        """The `k` least recently freed keyed blocks, out of the queue and the cache map."""
        lru, stamp, nb = self._lru, self._stamp, self.num_blocks
        live: list[int] = []
        head = self._lru_head
        while len(live) < k:
            chunk = lru[head:head + k - len(live)]
            head += len(chunk)
            live += [s for s in chunk if stamp[s % nb] == s]
        self._lru_head = head
        if head > 4096 and head * 2 > len(lru):  # drop what the head has consumed
            del lru[:head]
            self._lru_head = 0
        blocks = [s % nb for s in live]
        keys, cached = self._key, self._cached
        for b in blocks:
            stamp[b] = -1
            key = keys[b]
            keys[b] = None
            if key is DEAD:
                continue
            holders = cached[key]
            if holders.__class__ is int:
                del cached[key]
            else:
                holders.remove(b)
                if len(holders) == 1:
                    cached[key] = holders[0]
        self.keyed_free -= k
        self.evictions += k
        return blocks

    def _insert(self, key: int, b: int) -> None:
        """Cache block `b` under `key` (after any block already holding it)."""
        cached = self._cached
        holders = cached.setdefault(key, b)
        if holders != b:  # a duplicate
            if holders.__class__ is int:
                cached[key] = [holders, b]
            else:
                holders.append(b)

    def _key_full(self, req: Request, blocks: list[int], tokens: int) -> None:
        """Key the request's blocks that `tokens` scheduled tokens fill, as far as its given
        keys go (vLLM's `cache_blocks`; own keys wait for `free`). Blocks past those keyed
        so far are fresh: none has a key yet."""
        given = req.block_hashes
        if given is None:
            return
        start = self._keyed[req.id]
        stop = min(tokens // self.block_size, len(given))
        if stop <= start:
            return
        keys, cached = self._key, self._cached
        for b, key in zip(blocks[start:stop], given[start:stop], strict=True):
            keys[b] = key
            holders = cached.setdefault(key, b)
            if holders != b:  # a duplicate: cached after the block already holding it
                if holders.__class__ is int:
                    cached[key] = [holders, b]
                else:
                    holders.append(b)
        self._keyed[req.id] = stop

    def free(self, req: Request) -> None:
        """Its full blocks get their keys (own keys now: DEAD ones if it is done, as no
        lookup can reach them), then it lets go of all of them, tail first: keyless ones to
        the head of the free queue, keyed ones to its tail."""
        rid = req.id
        blocks = self._blocks.pop(rid)
        del self._held[rid]
        start = self._keyed.pop(rid)
        # as vLLM keys blocks when it schedules their tokens, even tokens a preemption in
        # the same iteration then takes back
        stop = min(self._upto.pop(rid) // self.block_size, len(blocks))
        keys, given = self._key, req.block_hashes
        own = start if given is None else max(start, min(len(given), stop))
        assert own == start, "given keys are set when their tokens are scheduled"
        if own < stop:
            if req.done:
                for b in blocks[own:stop]:
                    keys[b] = DEAD
            else:
                for j in range(own, stop):
                    key = own_key(rid, j)
                    keys[blocks[j]] = key
                    self._insert(key, blocks[j])
        refs = self._refs
        for b in blocks:
            refs[b] -= 1
        zero = [b for b in reversed(blocks) if refs[b] == 0]
        plain = [b for b in zero if keys[b] is None]
        self._free_plain += plain
        keyed = [b for b in zero if keys[b] is not None] if plain else zero
        if keyed:
            nb, n0, stamp = self.num_blocks, self._stamps, self._stamp
            stamps = [(n0 + i) * nb + b for i, b in enumerate(keyed)]
            for b, s in zip(keyed, stamps, strict=True):
                stamp[b] = s
            self._lru += stamps
            self._stamps = n0 + len(keyed)
            self.keyed_free += len(keyed)
        self.free_blocks += len(zero)
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

    # -- for tests --------------------------------------------------------------------

    def keyed_free_blocks(self) -> list[int]:
        """The keyed free blocks, least recently freed first."""
        nb, stamp = self.num_blocks, self._stamp
        return [s % nb for s in self._lru[self._lru_head:] if stamp[s % nb] == s]

    def cached_keys(self) -> list:
        return list(self._cached)

    def check(self) -> None:
        """Invariants: counts agree, keyed free blocks are cached, refs add up."""
        refs = [0] * self.num_blocks
        for blocks in self._blocks.values():
            for b in blocks:
                refs[b] += 1
        for b in self._loose:
            refs[b] += 1
        assert refs == self._refs
        keyed = self.keyed_free_blocks()
        assert len(keyed) == len(set(keyed)) == self.keyed_free
        free = set(self._free_plain) | set(keyed)
        assert len(free) == self.free_blocks == len(self._free_plain) + len(keyed)
        assert free == {b for b in range(self.num_blocks) if refs[b] == 0}
        assert all(self._key[b] is None for b in self._free_plain)
        assert all(self._key[b] is not None for b in keyed)
        assert all((self._stamp[b] >= 0) == (b in set(keyed)) for b in range(self.num_blocks))
        held = 0
        for key, holders in self._cached.items():
            holders = [holders] if holders.__class__ is int else holders
            assert holders and all(self._key[b] == key for b in holders)
            assert len(holders) == len(set(holders)) and (len(holders) > 1 or
                                                          self._cached[key].__class__ is int)
            held += len(holders)
        assert held == sum(k is not None and k is not DEAD for k in self._key)
