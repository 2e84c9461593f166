"""The prefix cache's map from a block's key to the block holding it, in NumPy.

Keys are dense non-negative slot numbers (`BlockHashes.keys` makes them). The map is a
page table over them: page `key >> PAGE_BITS` has a row of 2**PAGE_BITS cells, rows are
handed out as pages fill and reclaimed once empty, so its size follows the KV pool, not
the trace. A cell holds one block (the first cached under its key); further blocks holding
the same key wait in `dups`, first cached first. Every operation takes a whole request's
keys at once: a Mooncake prompt has ~750.

The pool remembers each block's cell, so removing a block needs no lookup. The last row is
never handed out: cells -1 and -2 fall in it, so a pool may pass them (blocks keyed with
no key in this map) to `remove`, which writes -1 there, as everywhere it removes.
"""

from __future__ import annotations

import numpy as np

PAGE_BITS = 10  # pages of 1,024 consecutive keys: a prompt's new keys fall in a few, so
# most insertions find their pages mapped (64-key pages cost 5% more instructions with
# caching on, on Mooncake's trace; 4,096-key pages 1% less, for 50% more peak memory)
PAGE_MASK = (1 << PAGE_BITS) - 1
UNUSED = -2  # a spare row never handed out (`row_page`): its cells are written -1 then
MAX_KEY = 1 << 32  # Mooncake's conversation trace numbers 9.8M keys; the page table of
# keys this large would take 512 MB
EMPTY = np.empty(0, np.intp)


def _doubled(a: np.ndarray) -> np.ndarray:
    """`a` then as many -1s (written once: a growing table's time goes to fresh pages)."""
    out = np.empty(2 * len(a), a.dtype)
    out[:len(a)] = a
    out[len(a):] = -1
    return out


class KeyTable:
    def __init__(self, rows: int = 16, keys: int = 0) -> None:  # 64 KB; doubled as needed
        """`keys`: keys below it will come (a workload's, where known): the page index is
        made for them at once. Grown as keys past it come, each growth is an insertion in
        NumPy (the compiled one leaves pages past the index's end to Python): 24 of them on
        Mooncake's trace, ~1% of a caching-on run."""
        pages = 1024
        while pages << PAGE_BITS < keys:
            pages *= 2
        self.base = np.zeros(pages, np.int64)  # page -> its row's first cell (0: row 0, empty)
        self.table = np.empty(rows << PAGE_BITS, np.int32)  # rows of holders, end to end
        # (int32: half the pages to fault in and half the cache lines a key reads: 8 MB
        # of maps, not 16, for Mooncake's 8 replicas). A row is written -1 when first handed
        # out (`UNUSED`), so that a simulation touches the rows it uses: writing all of
        # Mooncake's eight maps when they were made took ~2 ms, and a short run used few
        self.table[:1 << PAGE_BITS] = -1  # row 0: where unmapped pages look
        self.table[-1 << PAGE_BITS:] = -1  # the last row: cells -1 and -2 (`remove`)
        self.row_page = np.full(rows, UNUSED, np.int64)  # row -> its page, or -1 when spare
        # (UNUSED: spare, and never handed out: its cells not written yet)
        self.row_page[[0, -1]] = -1
        self.filled = np.zeros(rows, np.int64)  # row -> its cells holding a block (what a
        # reclaim reads: scanning the rows for empty ones read ~1 MB a replica each time,
        # ~4% of what caching added to Mooncake's trace in seconds)
        self.spare = np.arange(rows - 2, 0, -1)  # spare rows (not 0, not the last); top last
        self.spare_n = rows - 2
        self.dups: dict[int, list[int]] = {}  # cell -> further blocks holding its key

    def cells(self, keys: np.ndarray) -> np.ndarray:
        """Each key's cell (in row 0, which holds nothing, if its page has no row)."""
        pages = keys >> PAGE_BITS
        try:
            return self.base[pages] + (keys & PAGE_MASK)
        except IndexError:  # pages past the table's end have no row
            inside = pages < len(self.base)
            return np.where(inside, self.base[np.where(inside, pages, 0)], 0) + (keys & PAGE_MASK)

    def run(self, keys: np.ndarray) -> np.ndarray:
        """The blocks holding the longest run of cached keys from the first."""
        first = int(keys[0])  # most lookups miss at once: ask the first key alone
        page = first >> PAGE_BITS
        if page >= len(self.base) or self.table[int(self.base[page])
                                                + (first & PAGE_MASK)] < 0:
            return EMPTY
        held = self.table[self.cells(keys)]
        first_miss = int(held.argmin())
        return held[:first_miss] if held[first_miss] < 0 else held

    def insert(self, keys: np.ndarray, blocks: np.ndarray) -> np.ndarray:
        """Cache `blocks` under `keys` (distinct), each after any block already holding its
        key; returns their cells."""
        pages = keys >> PAGE_BITS
        try:
            base = self.base[pages]
        except IndexError:
            self._grow_pages(int(keys.max()))
            base = self.base[pages]
        unmapped = pages[base == 0]
        if len(unmapped):
            new = self._distinct(unmapped)
            if len(new) > self.spare_n:
                self._reclaim(len(new), pages)
            n = self.spare_n - len(new)
            rows = self.spare[n:self.spare_n]
            self.spare_n = n
            for row in rows[self.row_page[rows] == UNUSED].tolist():
                self.table[row << PAGE_BITS:(row + 1) << PAGE_BITS] = -1
            self.base[new] = rows << PAGE_BITS
            self.row_page[rows] = new
            base = self.base[pages]
        cells = base + (keys & PAGE_MASK)
        table = self.table
        now = table[cells]
        if now.max() >= 0:  # duplicates: cached after the block already holding the key
            taken = now >= 0
            for cell, b in zip(cells[taken].tolist(), blocks[taken].tolist(), strict=True):
                self.dups.setdefault(cell, []).append(b)
            free = ~taken
            table[cells[free]] = blocks[free]
            np.add.at(self.filled, cells[free] >> PAGE_BITS, 1)
        else:
            table[cells] = blocks
            np.add.at(self.filled, cells >> PAGE_BITS, 1)
        return cells

    def remove(self, cells: np.ndarray, blocks: np.ndarray) -> None:
        """Drop `blocks` from their `cells` (in this order; cells -1 and -2 are ignored)."""
        dups, table = self.dups, self.table
        if dups:
            shared = np.isin(cells, np.fromiter(dups, np.int64, len(dups)))
            if shared.any():
                for cell, b in zip(cells[shared].tolist(), blocks[shared].tolist(),
                                   strict=True):
                    more = dups.get(cell)  # None once the last further holder took over
                    if table[cell] == b and more:  # the first holder goes: the next one
                        table[cell] = more.pop(0)  # takes over
                    elif table[cell] == b:  # the last holder goes
                        table[cell] = -1
                        self.filled[cell >> PAGE_BITS] -= 1
                    else:  # a further holder goes
                        assert more is not None
                        more.remove(b)
                    if more is not None and not more:
                        del dups[cell]
                cells = cells[~shared]
        table[cells] = -1
        np.subtract.at(self.filled, cells[cells >= 0] >> PAGE_BITS, 1)  # their last holders

    def key(self, cell: int) -> int:
        return int(self.row_page[cell >> PAGE_BITS]) << PAGE_BITS | cell & PAGE_MASK

    def _distinct(self, pages: np.ndarray) -> np.ndarray:
        """The distinct unmapped `pages` in the order they first come, as the compiled
        insert numbers them (the first takes the lowest of the rows handed out)."""
        _, first = np.unique(pages, return_index=True)
        return pages[np.sort(first)]

    def _grow_pages(self, key: int) -> None:
        assert key < MAX_KEY, "CachingBlockPool.allocate checks the keys"
        size = len(self.base)
        while size <= key >> PAGE_BITS:
            size *= 2
        base = np.zeros(size, np.int64)
        base[:len(self.base)] = self.base
        self.base = base

    def _reclaim(self, wanted: int, keep: np.ndarray) -> None:
        """Take back the rows that hold nothing, but those of pages `keep` (an insertion's:
        its pages with a row must keep it), and double the rows until half are spare (so
        that this runs rarely) and `wanted` can be handed out."""
        used = np.flatnonzero(self.row_page >= 0)
        empty = used[self.filled[used] == 0]
        kept = self.base[keep[keep < len(self.base)]] >> PAGE_BITS  # rows of `keep` (or 0)
        mine = np.zeros(len(self.row_page), bool)
        mine[kept] = True  # (np.isin, which sorts, cost twice the rest of this)
        empty = empty[~mine[empty]]
        self.base[self.row_page[empty]] = 0
        self.row_page[empty] = -1
        rows = len(self.row_page)
        spare = np.concatenate([self.spare[:self.spare_n], empty])
        while len(spare) < max(wanted, rows // 2):
            # the last row (all -1: only ever written -1) becomes an ordinary spare row
            spare = np.concatenate([np.arange(2 * rows - 2, rows - 2, -1), spare])
            self.table = _doubled(self.table)
            self.row_page = _doubled(self.row_page)
            self.filled = np.concatenate([self.filled, np.zeros(rows, np.int64)])
            rows *= 2
            assert rows << PAGE_BITS <= 1 << 31, "cells must fit a block record's int32"
        self.spare = np.empty(rows, np.int64)
        self.spare[:len(spare)] = spare
        self.spare_n = len(spare)

    def holders(self) -> dict[int, list[int]]:
        """Key -> the blocks holding it, first cached first (for tests)."""
        cells = self._held_cells()
        return {self.key(c): [int(self.table[c])] + self.dups.get(c, []) for c in cells.tolist()}

    def check(self, cell_of: np.ndarray) -> int:
        """Invariants, given each block's cell; returns the number of blocks held."""
        rows = np.flatnonzero(self.row_page >= 0)
        assert (self.base[self.row_page[rows]] == rows << PAGE_BITS).all()
        assert int(np.count_nonzero(self.base)) == len(rows)
        assert (self.table[:1 << PAGE_BITS] == -1).all() and (self.table[-2:] == -1).all()
        written = self.row_page != UNUSED  # rows whose cells were written
        assert (self.row_page >= UNUSED).all() and written[[0, -1]].all()
        assert (self.table.reshape(-1, 1 << PAGE_BITS)[written] >= -1).all()  # -1 or a block
        spare = self.spare[:self.spare_n].tolist()
        assert len(spare) == len(set(spare)) and not set(spare) & set(rows.tolist())
        assert 0 not in spare and len(self.row_page) - 1 not in spare
        assert len(spare) + len(rows) == len(self.row_page) - 2
        cells = self._held_cells()
        held = self.table[cells]
        assert np.isin(cells >> PAGE_BITS, rows).all()
        assert (np.bincount(cells >> PAGE_BITS, minlength=len(self.filled)) == self.filled).all()
        assert (cell_of[held] == cells).all() and len(set(held.tolist())) == len(cells)
        assert set(self.dups) <= set(cells.tolist()) and all(self.dups.values())
        for cell, more in self.dups.items():
            assert (cell_of[more] == cell).all() and self.table[cell] not in more
        return len(cells) + sum(map(len, self.dups.values()))

    def _held_cells(self) -> np.ndarray:
        """The cells holding a block, in order (of the rows written so far: `UNUSED`)."""
        rows = np.flatnonzero(self.row_page != UNUSED)
        cells = (rows[:, None] << PAGE_BITS) + np.arange(1 << PAGE_BITS)
        cells = cells.ravel()
        return cells[self.table[cells] >= 0]
