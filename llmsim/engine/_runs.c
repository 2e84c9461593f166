/* The fast simulator's decode-run loop in C: `_affine_run` of fast.py, line for line.

   A long-output simulation spends about a quarter of its time in that loop (one pass per
   decode iteration, tens of millions of them). This is the same loop over C doubles and
   64-bit integers: the same IEEE operations in the same order, so the same results to the
   last bit. Built with -ffp-contract=off (setup.py): a fused multiply-add in a + b * C
   would round once instead of twice. fast.py keeps the Python loop as the reference and
   falls back to it when this module was not built; tests/test_engine_runs.py holds the
   two to the same results, so a change to one that the other lacks fails there. An
   editable install does not rebuild this on its own: after editing it, run
   `pip install -e .` (or `python setup.py build_ext --inplace`) again. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>

static int
as_double(PyObject *o, double *out)
{
    *out = PyFloat_AsDouble(o);
    return !(*out == -1.0 && PyErr_Occurred());
}

static int
as_long(PyObject *o, long long *out)
{
    *out = PyLong_AsLongLong(o);
    return !(*out == -1 && PyErr_Occurred());
}

static PyObject *
release(long long *needs, long long *local)
{
    if (needs != local)
        PyMem_Free(needs);
    return NULL;
}

/* bins[index] += count */
static int
add_count(PyObject *bins, Py_ssize_t index, long long count)
{
    if (!count)
        return 1;
    long long have;
    if (index < 0 || index >= PyList_GET_SIZE(bins)) {
        PyErr_SetString(PyExc_IndexError, "ITL bin out of range");
        return 0;
    }
    if (!as_long(PyList_GET_ITEM(bins, index), &have))
        return 0;
    PyObject *sum = PyLong_FromLongLong(have + count);
    if (!sum)
        return 0;
    return PyList_SetItem(bins, index, sum) == 0;  /* steals `sum` */
}

/* bisect.bisect_right(edges, gap) */
static int
bisect_right(PyObject *edges, double gap, Py_ssize_t *out)
{
    Py_ssize_t lo = 0, hi = PyList_GET_SIZE(edges);
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        double edge;
        if (!as_double(PyList_GET_ITEM(edges, mid), &edge))
            return 0;
        if (gap < edge)
            hi = mid;
        else
            lo = mid + 1;
    }
    *out = lo;
    return 1;
}

/* affine_run(k, until, now, context, n, a, b, phase, by_phase, used, cap, binned, bins,
   edges) -> (j, now, used, block_seconds, flight): see fast._affine_run */
static PyObject *
affine_run(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    long long k, context, n, phase, used, cap, need;
    double until, now, a, b;
    if (nargs != 14) {
        PyErr_SetString(PyExc_TypeError, "affine_run takes 14 arguments");
        return NULL;
    }
    PyObject *by_phase = args[8], *binned = args[11], *bins = args[12], *edges = args[13];
    if (!PyList_Check(by_phase) || !PyList_Check(binned) || PyList_GET_SIZE(binned) != 3
            || !PyList_Check(bins) || !PyList_Check(edges)) {
        PyErr_SetString(PyExc_TypeError, "by_phase, binned, bins and edges must be lists");
        return NULL;
    }
    if (!as_long(args[0], &k) || !as_double(args[1], &until) || !as_double(args[2], &now)
            || !as_long(args[3], &context) || !as_long(args[4], &n)
            || !as_double(args[5], &a) || !as_double(args[6], &b)
            || !as_long(args[7], &phase) || !as_long(args[9], &used)
            || !as_long(args[10], &cap))
        return NULL;
    Py_ssize_t bs = PyList_GET_SIZE(by_phase);
    if (bs < 1 || phase < 0 || phase >= bs) {
        PyErr_SetString(PyExc_ValueError, "phase must index by_phase");
        return NULL;
    }
    long long local[64], *needs = bs <= 64 ? local : PyMem_New(long long, bs);
    if (!needs)
        return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < bs; i++)
        if (!as_long(PyList_GET_ITEM(by_phase, i), &needs[i]))
            return release(needs, local);
    long long index_ll;
    double lo, hi;
    if (!as_long(PyList_GET_ITEM(binned, 0), &index_ll)
            || !as_double(PyList_GET_ITEM(binned, 1), &lo)
            || !as_double(PyList_GET_ITEM(binned, 2), &hi))
        return release(needs, local);
    Py_ssize_t index = (Py_ssize_t)index_ll;

    double block_seconds = 0.0, t = 0.0;
    long long binned_from = 0, j = 0, flight_need = 0;
    int flight = 0;
    long long at = phase;  /* (phase - j) mod bs */
    for (j = 0; j < k; j++) {
        need = needs[at];
        if (used + need > cap)
            break;
        t = a + b * (double)context;
        double end = now + t;
        if (end > until) {
            if (now < until) {  /* one starting at `until` waits for its arrivals */
                flight = 1;
                flight_need = need;
            }
            break;
        }
        used += need;
        block_seconds += (double)used * t;
        double gap = end - now;
        if (!(lo <= gap && gap < hi)) {  /* another ITL bin: _rebin */
            if (!add_count(bins, index, (j - binned_from) * n))
                return release(needs, local);
            if (!bisect_right(edges, gap, &index))
                return release(needs, local);
            binned_from = j;
            Py_ssize_t m = PyList_GET_SIZE(edges);
            if (index) {
                if (!as_double(PyList_GET_ITEM(edges, index - 1), &lo))
                    return release(needs, local);
            } else {
                lo = -INFINITY;
            }
            if (index < m) {
                if (!as_double(PyList_GET_ITEM(edges, index), &hi))
                    return release(needs, local);
            } else {
                hi = INFINITY;
            }
        }
        now = end;
        context += n;
        at = at ? at - 1 : bs - 1;
    }
    if (needs != local) {
        PyMem_Free(needs);
        needs = local;
    }
    if (k < 0)  /* as Python's for-else leaves it */
        j = k;
    if (!add_count(bins, index, (j - binned_from) * n))
        return release(needs, local);
    PyObject *index_obj = PyLong_FromSsize_t(index);
    PyObject *lo_obj = PyFloat_FromDouble(lo);
    PyObject *hi_obj = PyFloat_FromDouble(hi);
    if (!index_obj || !lo_obj || !hi_obj) {
        Py_XDECREF(index_obj);
        Py_XDECREF(lo_obj);
        Py_XDECREF(hi_obj);
        return NULL;
    }
    PyList_SetItem(binned, 0, index_obj);  /* steal the references */
    PyList_SetItem(binned, 1, lo_obj);
    PyList_SetItem(binned, 2, hi_obj);
    if (flight)
        return Py_BuildValue("(LdLd(Ld))", j, now, used, block_seconds, flight_need, t);
    return Py_BuildValue("(LdLdO)", j, now, used, block_seconds, Py_None);
}

static PyMethodDef methods[] = {
    {"affine_run", (PyCFunction)(void (*)(void))affine_run, METH_FASTCALL,
     "fast._affine_run in C: the same decode-run loop, the same results"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_runs", "The fast simulator's decode-run loop in C.", -1, methods,
};

PyMODINIT_FUNC
PyInit__runs(void)
{
    return PyModule_Create(&module);
}
