/* The prefix-caching pool's per-block work in C: the common cases of prefix_cache.py's
   and key_table.py's NumPy steps, each the same operation on the same arrays.

   With caching on, a Mooncake prompt's ~750 blocks are looked up, touched, handed out,
   keyed, freed and evicted once or more, and each of those steps was a few NumPy calls
   over a request's blocks: ~115 us a request, five times the rest of the simulation. Here
   each step is one call and one pass over the blocks.

   `Arrays` holds the pool's arrays (bound once, and again whenever Python replaces one);
   its methods take a request's blocks or keys and the pool's counters, and return the new
   counters. Each does what the Python code it stands for does, to the same arrays, in the
   same order, so the two can be mixed: the rare cases (a key already held by another
   block, a key table that must grow or reclaim rows) are left to Python, which calls no
   step where it sees one coming, and to which `insert` hands back, before it has changed
   anything, the one it finds (check, then act). Own keys (preemptions) live in Python's
   dicts: `take` lists the blocks it evicted that had one. prefix_cache.py
   falls back to its NumPy code when this module was not built;
   tests/test_prefix_pool_compiled.py holds the two to the same pools.

   Functions beside it serve the pool's callers the same way: `make_keys` makes a
   request's keys (PrefixKeys.keys), `watched` is the lockstep decoders' test before a
   lookup (DecoderAggregate.flush_keys), `watch_add` and `watch_above` keep and test their
   counts per key slot (join, leave), and
   `sharers` and `shared_upto` tell which of a request's trace blocks a request left may
   still look up (BlockHashes._sharers, PrefixKeys.private_from); each falls back to NumPy
   where this was not built.
   An editable install does not rebuild this on its own: after editing it, run
   `pip install -e .` (or `python setup.py build_ext --inplace`). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h> /* a build requirement (pyproject.toml): see numpy_ints */

#define PAGE_BITS 10 /* key_table.PAGE_BITS */
#define PAGE_MASK ((1LL << PAGE_BITS) - 1)
#define UNUSED_ROW (-2) /* key_table.UNUSED: a spare row whose cells are not written yet */
#define NONE_CELL (-3) /* prefix_cache.NONE */
#define OWN_CELL (-2) /* prefix_cache.OWN */

enum { REC, IDS, LRU, BASE, TABLE, ROW_PAGE, SPARE, OWNED, FILLED, NARRAYS };
static const char *array_names[NARRAYS] = {
    "records", "ids", "lru", "base", "table", "row_page", "spare", "owned", "filled"};

/* A block's record (prefix_cache.RECORD, read as two int64 per block): its cell in the map
   (int32), its references (int32), its queue entry's number (int64). One cache line for
   what a step reads and writes of a block: as three arrays, a taken block missed three. */
#define CELL(b) (((int32_t *)(rec + 2 * (b)))[0])
#define REFS(b) (((int32_t *)(rec + 2 * (b)))[1])
#define SEQ(b) (rec[2 * (b) + 1])
/* Cell and references in one store, not two: insert's miss the cache, and wait in the
   store buffer for their lines (one store: ~10% fewer of insert's samples in `perf`) */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define CELL_REFS(b, c, r) (rec[2 * (b)] = (int64_t)((uint64_t)(uint32_t)(c) << 32 | (uint32_t)(r)))
#else
#define CELL_REFS(b, c, r) (rec[2 * (b)] = (int64_t)((uint64_t)(uint32_t)(r) << 32 | (uint32_t)(c)))
#endif

/* A keyed free block's entry in the queue (prefix_cache.entry): its block in the low 32
   bits, its cell + 3 (OWN: 1, a map cell: 3 on) in the high ones, so that `take` evicts it
   without reading its record. A touch (a hit taking the block out of the queue) clears the
   high bits: the entry is dead. A run of DEAD keys' blocks (which have no ids) is one
   entry, minus their count. */
#define ENTRY(b, c) ((int64_t)(((uint64_t)((c) + 3) << 32) | (uint64_t)(b)))
#define ENTRY_BLOCK(e) ((e) & 0xFFFFFFFFLL)
#define ENTRY_CELL(e) (((e) >> 32) - 3)

typedef struct {
    PyObject_HEAD
    Py_buffer view[NARRAYS];
    int bound;
} Arrays;

/* A 1-D C-contiguous buffer of `itemsize`-byte integers, writable if asked, exported
   (the exporter keeps its data in place until the view is released). */
static int
export_ints(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize, const char *name,
            int writable)
{
    int flags = PyBUF_FORMAT | PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return 0;
    const char *f = view->format ? view->format : "B";
    if (*f == '<' || *f == '=' || *f == '@')
        f++;
    int integer = f[0] != '\0' && f[1] == '\0' && strchr(itemsize == 8 ? "lq" : "i", f[0]);
    if (view->ndim != 1 || view->itemsize != itemsize || !integer) {
        PyErr_Format(PyExc_TypeError, "%s: a 1-D contiguous array of %zd-byte integers",
                     name, itemsize);
        PyBuffer_Release(view);
        return 0;
    }
    return 1;
}

/* The data of `obj` if it is a NumPy array that export_ints would take (one dimension,
   C-contiguous, native signed `itemsize`-byte integers, writable if asked), read through
   NumPy's C API: NumPy builds an export's format string anew for every request, ~700
   instructions an argument and ~4% of a caching-on run of Mooncake's trace. NULL for
   anything else. */
static void *
numpy_ints(PyObject *obj, Py_ssize_t itemsize, int writable, Py_ssize_t *len)
{
    if (!PyArray_Check(obj))
        return NULL;
    PyArrayObject *a = (PyArrayObject *)obj;
    if (PyArray_NDIM(a) != 1 || !PyArray_IS_C_CONTIGUOUS(a) || PyArray_ITEMSIZE(a) != itemsize
        || !PyArray_ISSIGNED(a) || !PyArray_ISNOTSWAPPED(a)
        || (writable && !PyArray_ISWRITEABLE(a)))
        return NULL;
    *len = PyArray_DIM(a, 0);
    return PyArray_DATA(a);
}

/* An argument's integers, as export_ints takes them, for the length of one call: a NumPy
   array's data as they are (a view with no exporter, which PyBuffer_Release ignores: the
   caller's reference keeps the array, and nothing here runs Python code that could resize
   it), anything else exported. */
static int
get_ints(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize, const char *name, int writable)
{
    Py_ssize_t n;
    void *data = numpy_ints(obj, itemsize, writable, &n);
    if (!data)
        return export_ints(obj, view, itemsize, name, writable);
    view->buf = data;
    view->obj = NULL;
    view->len = n * itemsize;
    view->itemsize = itemsize;
    return 1;
}

/* A tuple of the n integers x (what Py_BuildValue makes, without parsing a format) */
static PyObject *
ints_tuple(Py_ssize_t n, const long long *x)
{
    PyObject *t = PyTuple_New(n);
    for (Py_ssize_t i = 0; t && i < n; i++) {
        PyObject *item = PyLong_FromLongLong(x[i]);
        if (!item)
            Py_CLEAR(t);
        else
            PyTuple_SET_ITEM(t, i, item);
    }
    return t;
}

/* Evicted blocks come from all over the pool's arrays: `take` asks for the map cell of
   the entry AHEAD entries on in the queue while it works on this one, so that the memory
   fetches overlap (Mooncake: take's time 0.081-0.087 -> 0.066-0.069 s; the same in
   `release` and `insert` changed nothing measurable, so they have none). */
#define AHEAD 16
#if defined(__GNUC__)
#define PREFETCH(p, write) __builtin_prefetch((p), (write))
#else
#define PREFETCH(p, write) ((void)0)
#endif

#define I64(a) ((int64_t *)self->view[a].buf)
#define LEN(a) (self->view[a].len / 8)
#define CELLS ((int32_t *)self->view[TABLE].buf)  /* the map's cells: blocks, int32 */
#define NCELLS (self->view[TABLE].len / 4)
#define NBLOCKS (self->view[REC].len / 16)

static void
unbind(Arrays *self)
{
    if (self->bound)
        for (int i = 0; i < NARRAYS; i++)
            PyBuffer_Release(&self->view[i]);
    self->bound = 0;
}

static void
Arrays_dealloc(Arrays *self)
{
    unbind(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* bind(records, ids, lru, base, table, row_page, spare, owned, filled): the pool's arrays
   (`ids`: the stack of ids no keyed block has; `owned`: where `take` lists the blocks with
   own keys it evicted); `lru` is the free queue's ring, a power of two long (an entry's
   slot is its number's low bits). The steps trust what the arrays hold to keep the pool's
   invariants (CachingBlockPool.check): a block, row or cell they read from one is in range
   of the others. */
static PyObject *
Arrays_bind(Arrays *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != NARRAYS) {
        PyErr_SetString(PyExc_TypeError, "bind takes the pool's 9 arrays");
        return NULL;
    }
    Py_buffer fresh[NARRAYS];
    for (int i = 0; i < NARRAYS; i++) {
        if (!export_ints(args[i], &fresh[i], i == TABLE ? 4 : 8, array_names[i], 1)) {
            while (i--)
                PyBuffer_Release(&fresh[i]);
            return NULL;
        }
    }
    Py_ssize_t nb = fresh[REC].len / 16;  /* the steps index these by block, row and cell */
    if (fresh[REC].len % 16 || fresh[IDS].len / 8 != nb
        || fresh[TABLE].len / 4 != (fresh[ROW_PAGE].len / 8) << PAGE_BITS
        || fresh[TABLE].len / 4 > INT32_MAX  /* cells fit a record's int32 */
        || nb > INT32_MAX  /* and blocks a cell's */
        || !fresh[LRU].len || (fresh[LRU].len / 8 & (fresh[LRU].len / 8 - 1))  /* a ring */
        || fresh[SPARE].len / 8 > fresh[ROW_PAGE].len / 8
        || fresh[FILLED].len != fresh[ROW_PAGE].len
        || fresh[OWNED].len / 8 < nb) {
        for (int i = 0; i < NARRAYS; i++)
            PyBuffer_Release(&fresh[i]);
        PyErr_SetString(PyExc_ValueError, "bind: the arrays' lengths do not agree");
        return NULL;
    }
    unbind(self);
    memcpy(self->view, fresh, sizeof fresh);
    self->bound = 1;
    Py_RETURN_NONE;
}

/* Arguments: arrays of int64 (read or written) and integers. */
typedef struct {
    Py_buffer view[4];
    int n;
} Views;

static void
release_views(Views *v)
{
    while (v->n)
        PyBuffer_Release(&v->view[--v->n]);
}

/* An argument array of int64 called `name`, `writable` if the step writes it. */
static int64_t *
arg_array(Views *v, PyObject *obj, Py_ssize_t *len, const char *name, int writable)
{
    Py_buffer *view = &v->view[v->n];
    if (!get_ints(obj, view, 8, name, writable))
        return NULL;
    v->n++;
    *len = view->len / 8;
    return (int64_t *)view->buf;
}

static int
arg_long(PyObject *obj, int64_t *out)
{
    long long x = PyLong_AsLongLong(obj);
    if (x == -1 && PyErr_Occurred())
        return 0;
    *out = x;
    return 1;
}

static int
nargs_is(Py_ssize_t nargs, Py_ssize_t want, const char *name)
{
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "%s takes %zd arguments", name, want);
        return 0;
    }
    return 1;
}

static int
check(Arrays *self, Py_ssize_t nargs, Py_ssize_t want, const char *name)
{
    if (!self->bound) {
        PyErr_SetString(PyExc_RuntimeError, "Arrays: bind() first");
        return 0;
    }
    return nargs_is(nargs, want, name);
}

static int
in_range(int64_t b, Py_ssize_t n)
{
    if (b < 0 || b >= n) {
        PyErr_Format(PyExc_IndexError, "block %lld out of range", (long long)b);
        return 0;
    }
    return 1;
}

/* 1 if every block of blocks[:n] is in [0, nb), else 0 with IndexError naming the first that
   is not: one branch-free pass (a branch a block cost 1.4% of a caching-on run) */
static int
all_in_range(const int64_t *blocks, Py_ssize_t n, Py_ssize_t nb)
{
    int64_t bad = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        bad |= blocks[i] | (nb - 1 - blocks[i]);  /* negative iff out of range */
    if (bad >= 0)
        return 1;
    for (Py_ssize_t i = 0; i < n; i++)
        if (!in_range(blocks[i], nb))
            return 0;
    return 0;  /* not reached */
}

/* run(keys, n, out) -> found: the blocks holding the longest run of cached keys from the
   first of keys[:n], written to out[:found] (KeyTable.run; at most len(out) of them). */
static PyObject *
Arrays_run(Arrays *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (!check(self, nargs, 3, "run"))
        return NULL;
    Views v = {.n = 0};
    Py_ssize_t nk, nout;
    int64_t n;
    if (!arg_long(args[1], &n))
        return NULL;
    int64_t *keys = arg_array(&v, args[0], &nk, "keys", 0);
    int64_t *out = keys ? arg_array(&v, args[2], &nout, "out", 1) : NULL;
    if (!out) {
        release_views(&v);
        return NULL;
    }
    if (n < 0 || n > nk) {
        release_views(&v);
        PyErr_SetString(PyExc_ValueError, "run: n out of range");
        return NULL;
    }
    const int64_t *base = I64(BASE);
    const int32_t *table = CELLS;
    const int64_t *rec = I64(REC);
    Py_ssize_t nbase = LEN(BASE), i = 0;
    if (n > nout)
        n = nout;
    for (; i < n; i++) {
        int64_t key = keys[i], page = key >> PAGE_BITS;
        if (key < 0 || page >= nbase)
            break;
        if (i + AHEAD < n) {  /* the cell of the key AHEAD further on */
            int64_t later = keys[i + AHEAD];
            if (later >= 0 && later >> PAGE_BITS < nbase)
                PREFETCH(&table[base[later >> PAGE_BITS] + (later & PAGE_MASK)], 0);
        }
        int64_t b = table[base[page] + (key & PAGE_MASK)];
        if (b < 0)
            break;
        PREFETCH(&rec[2 * b], 1);  /* its record, which idle and touch read next */
        out[i] = b;
    }
    release_views(&v);
    return PyLong_FromSsize_t(i);
}

/* bounds(keys) -> (smallest, largest), of keys not empty (what allocate checks) */
static PyObject *
Arrays_bounds(Arrays *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (!check(self, nargs, 1, "bounds"))
        return NULL;
    Views v = {.n = 0};
    Py_ssize_t n;
    int64_t *keys = arg_array(&v, args[0], &n, "keys", 0);
    if (!keys)
        return NULL;
    if (!n) {
        release_views(&v);
        PyErr_SetString(PyExc_ValueError, "bounds: no keys");
        return NULL;
    }
    int64_t lo = keys[0], hi = keys[0];
    for (Py_ssize_t i = 1; i < n; i++) {
        lo = keys[i] < lo ? keys[i] : lo;
        hi = keys[i] > hi ? keys[i] : hi;
    }
    release_views(&v);
    return ints_tuple(2, (long long[]){lo, hi});
}

/* The arguments (blocks, n) of idle and touch: blocks[:n], each a block of the pool; NULL
   with an exception (and no view held) where they are not that. */
static int64_t *
pool_blocks_arg(Arrays *self, PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want,
                Views *v, int64_t *n, const char *name)
{
    Py_ssize_t len;
    if (!check(self, nargs, want, name) || !arg_long(args[1], n))
        return NULL;
    int64_t *blocks = arg_array(v, args[0], &len, "blocks", 0);
    if (!blocks)
        return NULL;
    if (*n < 0 || *n > len) {
        release_views(v);
        PyErr_Format(PyExc_ValueError, "%s: n out of range", name);
        return NULL;
    }
    if (!all_in_range(blocks, *n, NBLOCKS)) {
        release_views(v);
        return NULL;
    }
    return blocks;
}

/* idle(blocks, n) -> how many of blocks[:n] no request holds (refs 0: they sit in the
   free queue) */
static PyObject *
Arrays_idle(Arrays *self, PyObject *const *args, Py_ssize_t nargs)
{
    Views v = {.n = 0};
    int64_t n;
    const int64_t *blocks = pool_blocks_arg(self, args, nargs, 2, &v, &n, "idle");
    if (!blocks)
        return NULL;
    const int64_t *rec = I64(REC);
    Py_ssize_t idle = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        idle += REFS(blocks[i]) == 0;
    release_views(&v);
    return PyLong_FromSsize_t(idle);
}

/* touch(hits, n, head) -> (idle, smallest seq among them): a request takes its hit blocks,
   hits[:n], distinct (CachingBlockPool.allocate): idle ones leave their queue entries dead
   (the entry numbered seq, at or after the queue's head, loses its cell; seq -1); every
   one gets one more reference. */
static PyObject *
Arrays_touch(Arrays *self, PyObject *const *args, Py_ssize_t nargs)
{
    Views v = {.n = 0};
    int64_t n, head;
    const int64_t *hits = pool_blocks_arg(self, args, nargs, 3, &v, &n, "touch");
    if (!hits)
        return NULL;
    if (!arg_long(args[2], &head)) {
        release_views(&v);
        return NULL;
    }
    Py_ssize_t idle = 0, nlru = LEN(LRU), mask = nlru - 1;  /* a ring (bind) */
    int64_t *rec = I64(REC), *lru = I64(LRU), first = INT64_MAX;
    for (Py_ssize_t i = 0; i < n; i++) {  /* check, then act: a free block whose entry is
                                             not in the queue (a corrupt pool, as in take)
                                             is refused before any block changes */
        int64_t b = hits[i];
        if (REFS(b) == 0 && (SEQ(b) < head || SEQ(b) - head >= nlru)) {
            release_views(&v);
            PyErr_SetString(PyExc_RuntimeError, "touch: a free block is not in the queue");
            return NULL;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t b = hits[i];
        if (REFS(b) == 0) {
            idle++;
            if (SEQ(b) < first)
                first = SEQ(b);
            lru[SEQ(b) & mask] = b;  /* dead: no cell */
            SEQ(b) = -1;
        }
        REFS(b)++;
    }
    release_views(&v);
    return ints_tuple(2, (long long[]){idle, first});
}

/* Ask for the map cell of queue entry e, which take writes, where e is a live keyed entry
   with a cell in the map (a DEAD key's, an own key's or a dead entry's is not written) */
static inline void
fetch_cell(int32_t *table, int64_t e, Py_ssize_t ntable)
{
    int64_t c = ENTRY_CELL(e);
    if (e >= 0 && (uint64_t)c < (uint64_t)ntable)
        PREFETCH(&table[c], 1);
}

/* take(k, head, ids_n) -> (entries used, dead entries skipped, owned blocks, ids_n, rest),
   or, where it skipped none, evicted no own key and left no rest, used | ids_n << 32 (one
   int: a tuple and its ints cost ~300 instructions a call, ~40,000 calls on Mooncake's
   trace): k blocks out of the free queue's keyed part (CachingBlockPool._evict), from the
   entry numbered `head` on (in the ring), least recently freed first. A DEAD run gives its
   blocks, no ids, or some of them (its entry is used either way: the blocks it did not
   give are `rest`, which the caller hands out before the queue, `_head_dead`); a
   keyed block's entry gives its block, whose key is dropped (its map cell emptied:
   KeyTable.remove, where no key is held twice: the caller makes sure of that) and whose id
   goes back on the stack at `ids_n`; a dead entry gives none. No block's record is read or
   written: an evicted one's stays as it was, and nothing reads it until a key is set
   (prefix_cache.py: `_keyed`). Evicted blocks that had an own key (cell OWN) are listed in
   the bound `owned`, in order, for the caller to drop those keys from its dicts. There
   must be k blocks in the queue. */
static PyObject *
Arrays_take(Arrays *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (!check(self, nargs, 3, "take"))
        return NULL;
    int64_t k, head, ids_n, nown = 0, *owned = I64(OWNED);
    if (!arg_long(args[0], &k) || !arg_long(args[1], &head) || !arg_long(args[2], &ids_n))
        return NULL;
    Py_ssize_t nlru = LEN(LRU), mask = nlru - 1, nids = LEN(IDS);  /* a ring (bind) */
    if (k < 0 || k > LEN(OWNED) || head < 0 || ids_n < 0 || ids_n > nids) {
        PyErr_SetString(PyExc_ValueError, "take: bad counts");
        return NULL;
    }
    int64_t *lru = I64(LRU), *ids = I64(IDS), *filled = I64(FILLED), *rec = I64(REC);
    int32_t *table = CELLS;
    Py_ssize_t ntable = NCELLS, nb = NBLOCKS;
    int64_t got = 0, used = 0, skipped = 0, rest = 0;
    /* Entries come in rounds of at most as many as blocks are still wanted, in one run of
       the ring (to its end, where they wrap): a keyed entry gives one block and a dead one
       none, so a round of them never gives too many, and its loop needs no count but its
       length. A DEAD run ends a round. While an entry is worked on, the map cell of the
       one AHEAD further on is fetched. */
    while (got < k) {
        Py_ssize_t slot = (head + used) & mask, round = k - got, m;
        if (round > nlru - slot)
            round = nlru - slot;
        if (used + round > nlru) {  /* counts that lie: the pool is corrupt, not the input */
            PyErr_SetString(PyExc_RuntimeError, "take: the free queue ran out of entries");
            return NULL;
        }
        int64_t *entries = lru + slot, was = skipped;
        Py_ssize_t ahead = nlru - slot - AHEAD;  /* entries[m + AHEAD] is in the ring */
        for (m = 0; m < round; m++) {
            int64_t e = entries[m];
            if (e < 0)
                break;
            if (m < ahead)
                fetch_cell(table, entries[m + AHEAD], ntable);
            int64_t b = ENTRY_BLOCK(e), c = ENTRY_CELL(e);
            if (c == NONE_CELL || b >= nb) {  /* dead: touched out of the queue since */
                skipped++;
                continue;
            }
            if (ids_n >= nids) {
                PyErr_SetString(PyExc_RuntimeError, "take: more ids than blocks");
                return NULL;
            }
            ids[ids_n++] = b;
            PREFETCH(&rec[2 * b], 1);  /* its record, which `insert` writes next */
            if (c >= 0 && c < ntable) {
                table[c] = -1;
                filled[c >> PAGE_BITS]--;
            }
            else if (c == OWN_CELL)
                owned[nown++] = b;
        }
        got += m - (skipped - was);
        used += m;
        if (m < round) {  /* a DEAD run of -e blocks, its entry used */
            int64_t dead = -entries[m];
            used++;
            if (dead > k - got) {  /* more than wanted: the rest to the caller */
                rest = dead - (k - got);
                got = k;
            }
            else
                got += dead;
        }
    }
    if (!skipped && !nown && !rest && used <= UINT32_MAX)  /* the common answer */
        return PyLong_FromLongLong(used | (long long)ids_n << 32);
    return ints_tuple(5, (long long[]){used, skipped, nown, ids_n, rest});
}

/* KeyTable._reclaim for an insertion of keys[:nk] that maps `fresh` new pages with
   `spare_n` spare rows: the rows in use that hold nothing (`filled` counts a row's cells
   holding a block: insert and take keep it as KeyTable's steps do), but those of the
   insertion's pages that have one, become spare, in ascending order after the spare rows there are,
   when that leaves at least `fresh` and half the rows spare (else KeyTable doubles the
   rows: Python's). Returns how many became spare (0: none, nothing changed), -1 on error.
   Check, then act: the rows are listed before any is taken back. */
static int64_t
reclaim(Arrays *self, const int64_t *keys, Py_ssize_t nk, int64_t fresh, int64_t spare_n)
{
    int64_t *base = I64(BASE), *row_page = I64(ROW_PAGE), *spare = I64(SPARE);
    const int64_t *filled = I64(FILLED);
    Py_ssize_t nrows = LEN(ROW_PAGE);
    char *kept = calloc((size_t)nrows, 1);
    int64_t *empty = malloc((size_t)nrows * sizeof *empty);
    if (!kept || !empty) {
        free(kept);
        free(empty);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < nk; i++) {
        int64_t row = base[keys[i] >> PAGE_BITS];  /* pages in the table: checked */
        if (row > 0)
            kept[row >> PAGE_BITS] = 1;
    }
    int64_t n = 0, want = fresh > nrows / 2 ? fresh : nrows / 2;
    for (Py_ssize_t r = 0; r < nrows; r++)
        if (row_page[r] >= 0 && !kept[r] && !filled[r])
            empty[n++] = r;
    if (spare_n + n < want || spare_n + n > LEN(SPARE))
        n = 0;
    for (int64_t i = 0; i < n; i++) {
        base[row_page[empty[i]]] = 0;
        row_page[empty[i]] = -1;
        spare[spare_n + i] = empty[i];
    }
    free(kept);
    free(empty);
    return n;
}

/* The end of the run of keys from keys[i], keys[i] not negative: consecutive keys in one
   page, so in consecutive cells of the map (a trace block's keys are consecutive:
   block_tokens / block_size of them). insert works run by run: key by key, its checks and
   cell writes cost ~43 instructions a key, ~18% of the instructions caching adds to
   Mooncake's trace. */
#define RUNS_KEPT 64  /* an insertion has ~11 runs on Mooncake's trace */

static inline Py_ssize_t
run_end(const int64_t *keys, Py_ssize_t i, Py_ssize_t nk)
{
    int64_t key = keys[i];
    Py_ssize_t stop = i + ((1 << PAGE_BITS) - (key & PAGE_MASK)), j = i + 1;
    if (stop > nk)
        stop = nk;
    for (; j + 8 <= stop; j += 8) {  /* eight at a time, branch-free (vectorized) */
        int64_t differ = 0;
        for (int m = 0; m < 8; m++)
            differ |= keys[j + m] ^ (key + (j + m - i));
        if (differ)
            break;
    }
    while (j < stop && keys[j] == key + (j - i))
        j++;
    return j;
}

/* insert(keys, blocks, start, stop, spare_n, ids_n) -> spare_n | ids_n << 32, or -1: cache
   blocks[start:stop] under keys[start:stop] (distinct), the blocks first given ids popped
   from the stack's top at `ids_n`, in order (CachingBlockPool._give_ids), unless ids_n is
   -1 (they have theirs: the answer's ids_n is then -1's low bits, to be ignored):
   map the pages that have no row from the spare rows (the first such page seen takes the
   lowest of the rows handed out, as KeyTable._distinct orders them; a row never handed
   out has its cells written -1 first), write the blocks
   into their cells and each block's cell into `cell` (KeyTable.insert, then
   CachingBlockPool._key), reclaiming empty rows first where the spare ones run out
   (KeyTable._reclaim: `reclaim`). -1, with nothing changed, where Python must: a page past
   the table's end, a map that must grow its rows, or a key already held. */
static PyObject *
Arrays_insert(Arrays *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (!check(self, nargs, 6, "insert"))
        return NULL;
    Views v = {.n = 0};
    Py_ssize_t nkeys, nblocks;
    int64_t start, stop, spare_n, ids_n;
    if (!arg_long(args[2], &start) || !arg_long(args[3], &stop) || !arg_long(args[4], &spare_n)
        || !arg_long(args[5], &ids_n))
        return NULL;
    int named = ids_n == -1;
    int64_t *keys = arg_array(&v, args[0], &nkeys, "keys", 0);
    int64_t *blocks = keys ? arg_array(&v, args[1], &nblocks, "blocks", !named) : NULL;
    if (!blocks) {
        release_views(&v);
        return NULL;
    }
    if (start < 0 || stop < start || stop > nkeys || stop > nblocks || spare_n < 0
        || spare_n > LEN(SPARE) || (!named && (ids_n < stop - start || ids_n > LEN(IDS)))) {
        release_views(&v);
        PyErr_SetString(PyExc_ValueError, "insert: bad arguments");
        return NULL;
    }
    keys += start;
    blocks += start;
    Py_ssize_t nk = stop - start;
    int64_t *base = I64(BASE), *rec = I64(REC), *ids = I64(IDS);
    int32_t *table = CELLS;
    int64_t *row_page = I64(ROW_PAGE), *spare = I64(SPARE), *filled = I64(FILLED);
    Py_ssize_t nbase = LEN(BASE), nb = NBLOCKS;
    int64_t fresh = 0, fallback = 0, bad = 0;
    Py_ssize_t i, j;
    /* check: blocks in range (one branch-free pass; ids from the stack are); then run by
       run, its keys in the table's pages (its first one: the rest follow it in its page)
       and none held (all its cells empty: negative, so their AND is too); number the new
       pages (-1, -2, ... in base) */
    for (i = 0; named && i < nk; i++)  /* negative iff out of range */
        bad |= blocks[i] | (nb - 1 - blocks[i]);
    fallback = bad < 0;
    Py_ssize_t ends[RUNS_KEPT], nruns = 0;  /* where the first runs end, for the act pass */
    for (i = 0; i < nk && !fallback; i = j) {
        int64_t key = keys[i], page = key >> PAGE_BITS;
        if (key < 0 || page >= nbase) {
            fallback = 1;
            break;
        }
        j = run_end(keys, i, nk);
        if (nruns < RUNS_KEPT)
            ends[nruns++] = j;
        int64_t row = base[page], all = -1;
        if (row == 0)
            base[page] = -(++fresh);
        else if (row > 0) {
            const int32_t *cell = table + row + (key & PAGE_MASK);
            for (Py_ssize_t m = 0; m < j - i; m++)
                all &= cell[m];
            if (all >= 0) {
                fallback = 1;
                break;
            }
        }
    }
    int64_t more = 0;
    if (!fallback && fresh > spare_n) {  /* spare rows run out: reclaim, unless it must grow */
        more = reclaim(self, keys, nk, fresh, spare_n);
        fallback = more <= 0;
    }
    if (fallback) {  /* nothing changed but the marks of new pages: undone */
        for (j = 0; j < i; j++) {
            int64_t page = keys[j] >> PAGE_BITS;
            if (base[page] < 0)
                base[page] = 0;
        }
        release_views(&v);
        return more < 0 ? NULL : PyLong_FromLong(-1);
    }
    spare_n += more;
    /* act, run by run: new page number m gets spare row spare[spare_n - fresh + m - 1]; a
       run's blocks (ids popped first, unless named) go to its cells, and each block's
       record gets its cell */
    int64_t first = spare_n - fresh;
    Py_ssize_t run = 0;
    for (i = 0; i < nk; i = j, run++) {
        int64_t key = keys[i], page = key >> PAGE_BITS, row = base[page];
        j = run < nruns ? ends[run] : run_end(keys, i, nk);
        if (row < 0) {
            int64_t r = spare[first - row - 1];
            if (row_page[r] == UNUSED_ROW)  /* never handed out: its cells written now */
                memset(table + (r << PAGE_BITS), 0xFF, sizeof *table << PAGE_BITS);
            row_page[r] = page;
            row = base[page] = r << PAGE_BITS;
        }
        int64_t c = row + (key & PAGE_MASK);
        filled[row >> PAGE_BITS] += j - i;
        for (Py_ssize_t m = i; m < j; m++, c++) {
            if (!named)  /* an id from the stack's top */
                blocks[m] = ids[--ids_n];
            int64_t b = blocks[m];  /* in range: checked, or an id */
            table[c] = (int32_t)b;
            CELL_REFS(b, c, 1);  /* a keyless block's record is not kept: held once */
        }
    }
    release_views(&v);  /* first <= spare's length, ids_n <= the blocks: below 2**31 (bind) */
    return PyLong_FromLongLong(first | (long long)(named ? 0 : ids_n) << 32);
}

/* release(blocks, keyed, dead, tail) -> the keyed blocks it queued: a request lets go of
   its blocks (CachingBlockPool.free), tail first, to the free queue's keyed part, numbered
   from `tail` on (in the ring): `dead` blocks past its keyed ones (a finished request's full
   blocks past its keys: DEAD keys, no ids) as one entry, -dead, if any; then its keyed
   ones, blocks[:keyed], each with one reference less, those no longer held. (Its keyless
   last block, if any, is a count: the caller's.) The ring must have room for all of them
   (`_widen`): it is written where they are numbered. */
static PyObject *
Arrays_release(Arrays *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (!check(self, nargs, 4, "release"))
        return NULL;
    Views v = {.n = 0};
    Py_ssize_t nbuffer;
    int64_t keyed, dead, tail;
    if (!arg_long(args[1], &keyed) || !arg_long(args[2], &dead) || !arg_long(args[3], &tail))
        return NULL;
    int64_t *blocks = arg_array(&v, args[0], &nbuffer, "blocks", 0);
    if (!blocks)
        return NULL;
    if (keyed < 0 || keyed > nbuffer || dead < 0 || tail < 0 || keyed + 1 > LEN(LRU)) {
        release_views(&v);
        PyErr_SetString(PyExc_ValueError, "release: bad counts");
        return NULL;
    }
    if (!all_in_range(blocks, keyed, NBLOCKS)) {
        release_views(&v);
        return NULL;
    }
    int64_t *lru = I64(LRU), *rec = I64(REC);
    int64_t number = tail, mask = LEN(LRU) - 1;  /* a power of two long (bind) */
    if (dead)
        lru[number++ & mask] = -dead;
    for (Py_ssize_t i = keyed; i;) {  /* one pass, tail first (a request's blocks are
                                         distinct) */
        if (i > AHEAD)  /* the record of the block AHEAD further on */
            PREFETCH(&rec[2 * blocks[i - 1 - AHEAD]], 1);
        int64_t b = blocks[--i];
        if (--REFS(b) == 0) {
            lru[number & mask] = ENTRY(b, CELL(b));
            SEQ(b) = number++;
        }
    }
    release_views(&v);
    return PyLong_FromLongLong(number - tail - (dead > 0));
}

static PyMethodDef Arrays_methods[] = {
    {"bind", (PyCFunction)(void (*)(void))Arrays_bind, METH_FASTCALL, NULL},
    {"run", (PyCFunction)(void (*)(void))Arrays_run, METH_FASTCALL, NULL},
    {"bounds", (PyCFunction)(void (*)(void))Arrays_bounds, METH_FASTCALL, NULL},
    {"idle", (PyCFunction)(void (*)(void))Arrays_idle, METH_FASTCALL, NULL},
    {"touch", (PyCFunction)(void (*)(void))Arrays_touch, METH_FASTCALL, NULL},
    {"take", (PyCFunction)(void (*)(void))Arrays_take, METH_FASTCALL, NULL},
    {"insert", (PyCFunction)(void (*)(void))Arrays_insert, METH_FASTCALL, NULL},
    {"release", (PyCFunction)(void (*)(void))Arrays_release, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

/* watched(watch, keys) -> bool: whether any key's slot (key & (len(watch) - 1), len(watch)
   a power of two) counts a member in `watch` (int32): DecoderAggregate.flush_keys's test,
   which a request's lookup asks first (NumPy took ~3 us for it: 60 ms of a run of 3,000
   synthetic sessions). */
static PyObject *
pool_watched(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (!nargs_is(nargs, 2, "watched"))
        return NULL;
    Py_buffer watch_view;
    if (!get_ints(args[0], &watch_view, 4, "watch", 0))
        return NULL;
    Py_ssize_t nwatch = watch_view.len / 4;
    if (nwatch == 0 || (nwatch & (nwatch - 1))) {
        PyBuffer_Release(&watch_view);
        PyErr_SetString(PyExc_ValueError, "watched: watch's length must be a power of two");
        return NULL;
    }
    Views v = {.n = 0};
    Py_ssize_t nk;
    const int64_t *keys = arg_array(&v, args[1], &nk, "keys", 0);
    if (!keys) {
        PyBuffer_Release(&watch_view);
        return NULL;
    }
    const int32_t *watch = (const int32_t *)watch_view.buf;
    int64_t mask = nwatch - 1;
    int found = 0;
    for (Py_ssize_t i = 0; i < nk && !found; i++)
        found = watch[keys[i] & mask] != 0;
    release_views(&v);
    PyBuffer_Release(&watch_view);
    return PyBool_FromLong(found);
}

/* The arguments of watch_add and watch_above, (watch, keys, start, stop, x): the int32
   `watch` (a power of two long), the range [start, stop) of int64 `keys` and an integer;
   0 with an exception where they are not that. */
static int
watch_args(PyObject *const *args, Py_ssize_t nargs, Py_buffer *watch_view, Views *v,
           const int64_t **keys, int64_t *start, int64_t *stop, int64_t *x, const char *name)
{
    Py_ssize_t nk;
    if (!nargs_is(nargs, 5, name) || !arg_long(args[2], start) || !arg_long(args[3], stop)
        || !arg_long(args[4], x))
        return 0;
    if (!get_ints(args[0], watch_view, 4, "watch", 1))
        return 0;
    Py_ssize_t nwatch = watch_view->len / 4;
    *keys = arg_array(v, args[1], &nk, "keys", 0);
    if (!*keys || nwatch == 0 || (nwatch & (nwatch - 1)) || *start < 0 || *stop > nk) {
        if (*keys)
            PyErr_Format(PyExc_ValueError, "%s: watch's length must be a power of two and "
                         "start, stop within the keys", name);
        release_views(v);
        PyBuffer_Release(watch_view);
        return 0;
    }
    return 1;
}

/* watch_add(watch, keys, start, stop, delta): `delta` added once to each distinct slot
   (key & (len(watch) - 1)) of keys[start:stop] in the int32 `watch`, as NumPy's
   watch[slots] += delta does where slots repeat (DecoderAggregate.join and leave: a member
   counts once in each slot its keys due fall in; NumPy's mask, fancy add and the slice
   took ~3 us a member). A slot is marked by flipping its count's bits (counts are not
   negative), then the marked ones are counted once; a count that would go negative is
   refused before anything changes. */
static PyObject *
pool_watch_add(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t start, stop, delta;
    Py_buffer watch_view;
    Views v = {.n = 0};
    const int64_t *keys;
    if (!watch_args(args, nargs, &watch_view, &v, &keys, &start, &stop, &delta, "watch_add"))
        return NULL;
    int32_t *watch = (int32_t *)watch_view.buf;
    int64_t mask = watch_view.len / 4 - 1, i;
    for (i = start; i < stop; i++)  /* check */
        if (watch[keys[i] & mask] < 0 || watch[keys[i] & mask] + delta < 0
            || watch[keys[i] & mask] + delta > INT32_MAX)
            break;
    if (i < stop) {
        release_views(&v);
        PyBuffer_Release(&watch_view);
        PyErr_SetString(PyExc_ValueError, "watch_add: a count would leave [0, 2**31)");
        return NULL;
    }
    for (i = start; i < stop; i++) {  /* act: mark each distinct slot, then count it once */
        int32_t *slot = &watch[keys[i] & mask];
        if (*slot >= 0)
            *slot = ~*slot;
    }
    for (i = start; i < stop; i++) {
        int32_t *slot = &watch[keys[i] & mask];
        if (*slot < 0)
            *slot = (int32_t)(~*slot + delta);
    }
    release_views(&v);
    PyBuffer_Release(&watch_view);
    Py_RETURN_NONE;
}

/* watch_above(watch, keys, start, stop, level) -> bool: whether any slot of keys[start:stop]
   counts more than `level` in `watch` (DecoderAggregate.leave: another member shares one) */
static PyObject *
pool_watch_above(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t start, stop, level;
    Py_buffer watch_view;
    Views v = {.n = 0};
    const int64_t *keys;
    if (!watch_args(args, nargs, &watch_view, &v, &keys, &start, &stop, &level,
                    "watch_above"))
        return NULL;
    const int32_t *watch = (const int32_t *)watch_view.buf;
    int64_t mask = watch_view.len / 4 - 1;
    int found = 0;
    for (int64_t i = start; i < stop && !found; i++)
        found = watch[keys[i] & mask] > level;
    release_views(&v);
    PyBuffer_Release(&watch_view);
    return PyBool_FromLong(found);
}

/* make_keys(first, lo, block_tokens, block_size, n) -> keys, a new int64 array of n:
   keys[j] = first[lo + t] + j - j0, where engine block j's last token falls in the
   request's trace block t, whose engine blocks start at j0 = t * block_tokens // block_size
   (BlockHashes.keys: the engine's keys of a request's blocks, from its trace blocks' first
   keys). Trace block by trace block,
   so that the inner loop is a run of consecutive keys (gathering first[lo + t[j]] block by
   block cost ~9 instructions a block, ~2% of a caching-on run of Mooncake's trace). The
   array is made here: np.empty called from the engine cost ~1,500 instructions a request. */
static PyObject *
pool_make_keys(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (!nargs_is(nargs, 5, "make_keys"))
        return NULL;
    int64_t lo, bt, bs, n;
    if (!arg_long(args[1], &lo) || !arg_long(args[2], &bt) || !arg_long(args[3], &bs)
        || !arg_long(args[4], &n))
        return NULL;
    Views v = {.n = 0};
    Py_ssize_t nfirst;
    const int64_t *first = arg_array(&v, args[0], &nfirst, "first", 0);
    if (!first)
        return NULL;
    if (bt <= 0 || bs <= 0 || lo < 0 || n < 0 || (n && lo + (n * bs - 1) / bt >= nfirst)) {
        release_views(&v);
        PyErr_SetString(PyExc_IndexError, "make_keys: out of range");
        return NULL;
    }
    npy_intp dims[1] = {(npy_intp)n};
    PyObject *keys = PyArray_SimpleNew(1, dims, NPY_INT64);
    if (!keys) {
        release_views(&v);
        return NULL;
    }
    int64_t *out = (int64_t *)PyArray_DATA((PyArrayObject *)keys);
    for (int64_t t = 0, j = 0; j < n; t++) {
        int64_t key = first[lo + t] - t * bt / bs, stop = (t + 1) * bt / bs;
        for (stop = stop < n ? stop : n; j < stop; j++)
            out[j] = key + j;
    }
    release_views(&v);
    return keys;
}

/* shared_upto(sharers, lo, upto, watermark) -> 1 + the place of the last of a request's
   trace blocks, among its first `upto`, that another request may still look up, or 0
   (PrefixKeys.private_from): sharers[lo + t] is, for its trace block t, the latest request
   before it that has that trace block (-1: none), or more than any request where one after
   it has it; every request before `watermark` has left for good. */
static PyObject *
pool_shared_upto(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t lo, upto, watermark;
    if (!nargs_is(nargs, 4, "shared_upto") || !arg_long(args[1], &lo)
        || !arg_long(args[2], &upto) || !arg_long(args[3], &watermark))
        return NULL;
    Views v = {.n = 0};
    Py_ssize_t n;
    const int64_t *sharers = arg_array(&v, args[0], &n, "sharers", 0);
    if (!sharers)
        return NULL;
    if (lo < 0 || upto < 0 || lo + upto > n) {
        release_views(&v);
        PyErr_SetString(PyExc_IndexError, "shared_upto: out of range");
        return NULL;
    }
    while (upto > 0 && sharers[lo + upto - 1] < watermark)
        upto--;
    release_views(&v);
    return PyLong_FromLongLong(upto);
}

/* sharers(offsets, numbers, count, out, upto): for each request's trace blocks (request
   r's are numbers[offsets[r]:offsets[r + 1]], each in [0, count)), out[k] = LATER (2**62)
   where a later request has numbers[k], else the latest request before r that has it, or
   -1 (BlockHashes._sharers); and upto[r] = 1 + the place of r's last trace block another
   request has, or 0 (BlockHashes._shared_upto). One pass, remembering each number's last
   request and place, then one back over each request: NumPy's ufunc.at, bincount and
   reduceat passes and their temporaries took 31 and 79 ms on 3,000 sessions. */
static PyObject *
pool_sharers(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t count;
    if (!nargs_is(nargs, 5, "sharers") || !arg_long(args[2], &count))
        return NULL;
    Views v = {.n = 0};
    Py_ssize_t noffsets, nnumbers, nout, nupto;
    const int64_t *offsets = arg_array(&v, args[0], &noffsets, "offsets", 0);
    const int64_t *numbers = offsets ? arg_array(&v, args[1], &nnumbers, "numbers", 0) : NULL;
    int64_t *out = numbers ? arg_array(&v, args[3], &nout, "out", 1) : NULL;
    int64_t *upto = out ? arg_array(&v, args[4], &nupto, "upto", 1) : NULL;
    if (!upto) {
        release_views(&v);
        return NULL;
    }
    int64_t bad = count < 0 || noffsets < 1 || nout != nnumbers || nupto != noffsets - 1
                  || offsets[0] != 0 || offsets[noffsets - 1] != nnumbers;
    for (Py_ssize_t r = 1; !bad && r < noffsets; r++)
        bad = offsets[r] < offsets[r - 1];
    for (Py_ssize_t k = 0; !bad && k < nnumbers; k++)
        bad = (uint64_t)numbers[k] >= (uint64_t)count;
    int64_t *seen = bad ? NULL : malloc(((size_t)count + 1) * 2 * sizeof *seen);
    if (!seen) {
        release_views(&v);
        if (bad)
            PyErr_SetString(PyExc_ValueError, "sharers: offsets or numbers out of range");
        else
            PyErr_NoMemory();
        return NULL;
    }
    for (int64_t t = 0; t < count; t++)
        seen[2 * t] = -1;  /* the last request seen with number t; seen[2t + 1]: its place */
    for (Py_ssize_t r = 0; r + 1 < noffsets; r++)
        for (int64_t k = offsets[r]; k < offsets[r + 1]; k++) {
            int64_t t = numbers[k], before = seen[2 * t];
            if (before >= 0)
                out[seen[2 * t + 1]] = (int64_t)1 << 62;  /* a later request has it */
            out[k] = before;
            seen[2 * t] = r;
            seen[2 * t + 1] = k;
        }
    for (Py_ssize_t r = 0; r + 1 < noffsets; r++) {
        int64_t k = offsets[r + 1];
        while (k > offsets[r] && out[k - 1] == -1)
            k--;
        upto[r] = k - offsets[r];
    }
    free(seen);
    release_views(&v);
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"watched", (PyCFunction)(void (*)(void))pool_watched, METH_FASTCALL, NULL},
    {"watch_add", (PyCFunction)(void (*)(void))pool_watch_add, METH_FASTCALL, NULL},
    {"watch_above", (PyCFunction)(void (*)(void))pool_watch_above, METH_FASTCALL, NULL},
    {"make_keys", (PyCFunction)(void (*)(void))pool_make_keys, METH_FASTCALL, NULL},
    {"shared_upto", (PyCFunction)(void (*)(void))pool_shared_upto, METH_FASTCALL, NULL},
    {"sharers", (PyCFunction)(void (*)(void))pool_sharers, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ArraysType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "llmsim.engine._pool.Arrays",
    .tp_basicsize = sizeof(Arrays),
    .tp_dealloc = (destructor)Arrays_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The caching pool's arrays, and its per-block steps over them (_pool.c).",
    .tp_methods = Arrays_methods,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_pool",
    "The prefix-caching pool's per-block steps in C (see _pool.c).", -1, module_methods,
};

PyMODINIT_FUNC
PyInit__pool(void)
{
    import_array();  /* NumPy's C API (numpy_ints); returns NULL if it cannot */
    if (PyType_Ready(&ArraysType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    Py_INCREF(&ArraysType);
    if (PyModule_AddObject(m, "Arrays", (PyObject *)&ArraysType) < 0) {
        Py_DECREF(&ArraysType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
