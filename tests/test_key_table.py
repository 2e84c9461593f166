"""The prefix cache's key -> block map (llmsim/engine/key_table.py) against a dict of lists:
random insertions and removals over sparse keys, so that pages get rows, give them back
and the rows grow, with every lookup and holder list compared."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from llmsim.engine.key_table import PAGE_BITS, KeyTable

# keys in a few clusters spread over many pages, as a trace's dense numbers are
keys = st.builds(lambda page, offset: page << PAGE_BITS | offset, st.integers(0, 40),
                 st.integers(0, 5))


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(st.tuples(st.booleans(), st.lists(keys, min_size=1, max_size=12,
                                                      unique=True)), max_size=60),
       rows=st.integers(3, 6), seed=st.integers(0, 2**16))
def test_the_map_matches_a_dict_of_lists(ops, rows, seed):
    rng = np.random.default_rng(seed)
    table = KeyTable(rows)
    model: dict[int, list[int]] = {}  # key -> blocks holding it, first cached first
    cell_of = np.full(10_000, -3, np.int64)
    key_of: dict[int, int] = {}  # block -> its key
    next_block = 0
    for insert, batch in ops:
        if insert or not key_of:
            blocks = np.arange(next_block, next_block + len(batch))
            next_block += len(batch)
            cell_of[blocks] = table.insert(np.array(batch, np.int64), blocks)
            for k, b in zip(batch, blocks.tolist(), strict=True):
                model.setdefault(k, []).append(b)
                key_of[b] = k
        else:  # remove some held blocks, in a random order
            held = np.array(sorted(key_of), np.int64)
            gone = rng.permutation(held)[:len(batch)]
            table.remove(cell_of[gone], gone)
            cell_of[gone] = -3
            for b in gone.tolist():
                model[key_of.pop(b)].remove(b)
            model = {k: v for k, v in model.items() if v}
        assert table.holders() == model
        assert table.check(cell_of) == len(key_of)
        probe = np.array(batch, np.int64)
        expected = []
        for k in batch:
            if k not in model:
                break
            expected.append(model[k][0])
        assert table.run(probe).tolist() == expected
        assert table.run(probe + (1 << 40)).tolist() == []  # past the table: a miss


def test_rows_are_given_back_once_empty_and_reused():
    table = KeyTable(4)  # rows 1 and 2 spare
    far = 1 << (PAGE_BITS + 8)  # another page, far away
    cells = table.insert(np.array([1, 2, far], np.int64), np.array([0, 1, 2]))
    assert table.spare_n == 0
    far_row = int(cells[2]) >> PAGE_BITS
    table.remove(cells[2:], np.array([2]))  # the far page is empty now
    cells = np.concatenate([cells[:2], table.insert(np.array([2 * far], np.int64),
                                                     np.array([3]))])
    assert table.holders() == {1: [0], 2: [1], 2 * far: [3]}
    assert int(cells[2]) >> PAGE_BITS == far_row  # its row was taken back and handed out
    assert table.row_page[far_row] == (2 * far) >> PAGE_BITS


def test_a_map_told_where_its_keys_end_indexes_their_pages_at_once():
    """A workload's keys known (Cluster passes PrefixKeys.end): no key makes the page index
    grow, which the compiled insert leaves to NumPy."""
    from llmsim.engine.prefix_cache import CachingBlockPool

    assert len(KeyTable(16).base) == 1024  # grown as keys come
    pool = CachingBlockPool(64, 4, keys=(5000 << PAGE_BITS) + 1)
    base = pool._map.base
    assert len(base) == 8192 and len(KeyTable(16, keys=8192 << PAGE_BITS).base) == 8192
    pool._name()
    keys = np.array([5000 << PAGE_BITS, (5000 << PAGE_BITS) + 1], np.int64)
    blocks = np.empty(2, np.intp)
    pool._insert(keys, blocks, 0, 2)  # they get ids 0 and 1
    assert pool._map.base is base and pool._map.run(keys).tolist() == blocks.tolist() == [0, 1]
