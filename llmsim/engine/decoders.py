"""Decoding requests advancing in lockstep, kept as one aggregate (the fast simulator).

A decoding request feeds its last sampled token each iteration and samples the next, so
while nothing else happens to them, all decoders of a replica advance together: one
iteration later, each has computed one more token and emitted one more. The aggregate
counts those iterations (`tick`) instead of touching each request: a member that joined
at tick t0 having computed c0 tokens has computed c0 + (tick - t0). It keeps, in O(1) per
iteration, what the scheduler and the cost model ask of the decoders as a whole:

- how many there are, and their summed context after the next step (decode attention);
- how many need a new KV block at the next step. A member holding blocks for exactly its
  computed tokens c lacks one for its next token when c fills whole blocks
  (c % block_size == 0, `BlockPool.missing(req, 1) == 1`). With c = base + tick, where
  base = c0 - t0 is fixed per member, that is base % block_size == -tick % block_size: the
  members are counted by base % block_size, and one bucket answers;
- when each finishes: it has output_tokens - emitted tokens left when it joins, so it
  finishes at a known tick (a heap).

While a request is a member its `computed`/`emitted` fields and its blocks in the pool are
stale: the pool counts its blocks as in use but not whose they are. `leave` writes its
progress back and attributes its blocks to it again.

With prefix caching, a member whose given keys go on over its output (sessions) has keys
falling due as it decodes. They are set lazily: the pool calls `flush_keys` before
anything that could see them, and the members' due keys are set then, in the order the
step-by-step scheduler set them (the iteration whose token filled the block, then running
order), so that duplicate keys queue behind the same holder. A heap of (tick due, seat)
finds the members with keys due in O(log n) each, and a count per hashed key slot of the
members with keys yet to set there (`_watch`) lets the pool skip the flush when none of
the keys it is about to look up or set is among them (sessions: a turn never looks up the
keys of one still decoding), so that most members set their keys once, when they leave.
"""

from __future__ import annotations

import heapq
from typing import cast

import numpy as np

from .blocks import BlockPool
from .prefix_cache import CachingBlockPool
from .request import Request

try:  # the watch's counts and tests in C (_pool.c), where it was built
    from ._pool import watch_above, watch_add, watched
except ImportError:
    watch_above = watch_add = watched = None

WATCH_MASK = (1 << 16) - 1  # key slots watched: a false match only costs a flush


class DecoderAggregate:
    def __init__(self, pool: BlockPool) -> None:
        self.pool = pool
        self.tick = 0  # iterations in which every member advanced
        self.members: dict[int, Request] = {}
        self.size = 0  # len(members), read on every iteration
        self.last_seat = 0  # no member is seated after it (members that left may have been)
        self.base_sum = 0  # sum over members of (computed - tick)
        self.by_phase = [0] * pool.block_size  # members by (computed - tick) % block_size
        self._finishing: list[tuple[int, int, Request]] = []  # heap: (tick it is done at, id, req)
        self.ahead = 0  # 1 while an iteration of the members is planned or in flight: its
        # tokens are scheduled (their blocks taken, their keys due) but not computed yet
        self._keys_due: list[tuple[int, int, int]] = []  # heap: (tick + ahead at which a
        # member's next given key is due, seat, id)
        self._due: dict[int, int] = {}  # member id -> its live entry's tick due
        self._watch = np.zeros(WATCH_MASK + 1 if pool.caching else 0, np.int32)
        self._watched: dict[int, tuple[int, int]] = {}  # member id -> the range of its given
        # keys whose slots it counts in (pool.flush is flush_keys while it is not empty: no
        # cost for keys that stop at the prompt, as Mooncake's)

    def blocks_needed(self) -> int:
        """New KV blocks the members need to compute their next token (see above)."""
        return self.by_phase[-self.tick % self.pool.block_size]

    def context_after_step(self) -> int:
        """Summed KV tokens the members attend to at the next step, its new token included."""
        return self.base_sum + self.size * (self.tick + 1)

    def steps_to_next_finish(self) -> int:
        """Steps until the next member is done (it is done at the end of that step)."""
        return self._finishing[0][0] - self.tick

    def skip(self, k: int) -> None:
        """`k` steps in which no member is done, at once."""
        assert k < self.steps_to_next_finish() and not self.ahead
        self.tick += k

    def step(self) -> list[Request]:
        """Every member computed and emitted one more token; returns those that are done,
        out of the aggregate with their progress written back."""
        self.tick += 1
        self.ahead = 0
        done = []
        while self._finishing and self._finishing[0][0] == self.tick:
            req = heapq.heappop(self._finishing)[2]
            self.leave(req)
            done.append(req)
        return done

    def join(self, req: Request) -> None:
        """Make a running decoding request a member."""
        assert req.is_decoding
        self.pool.unsettle(req)
        req.tick = self.tick
        base = req.computed - self.tick
        if req.seat > self.last_seat:
            self.last_seat = req.seat
        self.members[req.id] = req
        self.size += 1
        self.base_sum += base
        self.by_phase[base % self.pool.block_size] += 1
        left = req.output_tokens - req.emitted  # remaining_tokens, written out
        heapq.heappush(self._finishing, (self.tick + left, req.id, req))
        if self.pool.caching:
            pool = cast(CachingBlockPool, self.pool)
            due = pool.key_due(req)
            if due is not None:
                start, stop = pool.keys_range(req)
                self._count(req, start, stop, 1)
                self._watched[req.id] = start, stop
                pool.flush = self.flush_keys
                self._schedule_key(req, due)

    def _count(self, req: Request, start: int, stop: int, delta: int) -> None:
        """Count the member in (delta 1) or out of (-1) the slots of its given keys
        [start, stop): once in each, even where its slots repeat."""
        given = req.block_hashes
        assert given is not None
        if watch_add is not None:
            watch_add(self._watch, given, start, stop, delta)
        else:
            self._watch[given[start:stop] & WATCH_MASK] += delta

    def _schedule_key(self, req: Request, tokens: int | None) -> None:
        """Remember when the member's next given key falls due (at `tokens` scheduled)."""
        if tokens is None:
            self._due.pop(req.id, None)
            return
        due = tokens - (req.computed - req.tick)  # its scheduled tokens are that + tick + ahead
        self._due[req.id] = due
        heapq.heappush(self._keys_due, (due, req.seat, req.id))

    def flush_keys(self, keys: np.ndarray, seat: int | None) -> None:
        """Set the given keys due by now, if a member is yet to set one of `keys` (the pool
        asks before it looks them up, or before the request seated `seat` sets them in the
        iteration being planned: then members seated after it set theirs of this iteration
        after it)."""
        heap, now = self._keys_due, self.tick + self.ahead
        if not heap or heap[0][0] > now:
            return
        if not (self._watch[keys & WATCH_MASK].any() if watched is None
                else watched(self._watch, keys)):
            return
        due_now = []  # (member, tokens scheduled, its base)
        while heap and heap[0][0] <= now:
            due, at, rid = heapq.heappop(heap)
            if self._due.get(rid) != due:
                continue  # it left, or this entry was replaced
            req = self.members[rid]
            base = req.computed - req.tick
            scheduled = base + now
            if seat is not None and at > seat:
                scheduled -= 1  # its key due in this iteration waits for the one seated first
            due_now.append((req, scheduled, base))
        pool = cast(CachingBlockPool, self.pool)  # only it has a flush to call this
        pool.key_members(due_now)
        for req, _, _ in due_now:
            self._schedule_key(req, pool.key_due(req))

    def leave(self, req: Request) -> None:
        """Take a member out with its true progress written back."""
        counted = self._watched.pop(req.id, None) if self._watched else None
        if counted is not None:  # it sets its due keys now (settle); a member sharing one
            pool = cast(CachingBlockPool, self.pool)
            start, stop = counted
            given = req.block_hashes
            assert given is not None
            shared = (watch_above(self._watch, given, start, stop, 1) if watch_above is not None
                      else bool((self._watch[given[start:stop] & WATCH_MASK] > 1).any()))
            if shared:  # sets its own first if it was due first
                self.flush_keys(pool.keys_left(req), None)
            self._count(req, start, stop, -1)
            self._due.pop(req.id, None)
            if not self._watched:
                pool.flush = None
        del self.members[req.id]
        self.size -= 1
        k = self.tick - req.tick
        base = req.computed - req.tick
        self.base_sum -= base
        self.by_phase[base % self.pool.block_size] -= 1
        req.computed += k
        req.emitted += k
        req.tick = self.tick
        self.pool.settle(req)

    def dissolve(self) -> list[Request]:
        """Every member out, progress written back; returns them in joining order."""
        members = list(self.members.values())
        for req in members:
            self.leave(req)
        assert not self.members and self.size == 0 and self.base_sum == 0
        self._finishing.clear()
        self._keys_due.clear()
        self.last_seat = 0
        return members
