/*
 * Argument parsing for METH_FASTCALL | METH_KEYWORDS methods, written for the hot calls: a call
 * with positional arguments only touches no dictionary and no tuple, and keywords match by
 * pointer against interned names before falling back to a string compare.
 */
#include "cgloo_py.h"

#include <limits.h>
#include <math.h>

/* params_intern interns the parameter names once. */
static int params_intern(cgpy_params *p)
{
    int n = 0;
    while (p->names[n])
        n++;
    PyObject **in = PyMem_Calloc((size_t)n, sizeof *in);
    if (!in) {
        PyErr_NoMemory();
        return -1;
    }
    for (int i = 0; i < n; i++) {
        in[i] = PyUnicode_InternFromString(p->names[i]);
        if (!in[i]) {
            while (i--)
                Py_DECREF(in[i]);
            PyMem_Free(in);
            return -1;
        }
    }
    p->interned = in;
    p->n = n;
    return 0;
}

/* params_find returns the index of keyword `kw`, or -1. */
static int params_find(const cgpy_params *p, PyObject *kw)
{
    for (int i = 0; i < p->n; i++)
        if (p->interned[i] == kw)
            return i;
    for (int i = 0; i < p->n; i++)
        if (PyUnicode_Compare(p->interned[i], kw) == 0)
            return i;
    return -1;
}

/* params_keywords places the keyword arguments of a call. */
static int params_keywords(const cgpy_params *p, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames, PyObject **out)
{
    Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *kw = PyTuple_GET_ITEM(kwnames, k);
        int i = params_find(p, kw);
        if (i < 0) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", p->func,
                         kw);
            return -1;
        }
        if (out[i]) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", p->func,
                         p->names[i]);
            return -1;
        }
        out[i] = args[nargs + k];
    }
    return 0;
}

int cgpy_parse(cgpy_params *p, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
               PyObject **out)
{
    if (!p->interned && params_intern(p) < 0)
        return -1;
    if (nargs > p->npos) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d positional arguments (%zd given)",
                     p->func, p->npos, nargs);
        return -1;
    }
    for (int i = 0; i < p->n; i++)
        out[i] = i < nargs ? args[i] : NULL;
    if (kwnames && PyTuple_GET_SIZE(kwnames) && params_keywords(p, args, nargs, kwnames, out) < 0)
        return -1;
    for (int i = (int)nargs; i < p->nreq; i++)
        if (!out[i]) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", p->func,
                         p->names[i]);
            return -1;
        }
    return 0;
}

int cgpy_timeout_ms(PyObject *o, int *ms)
{
    *ms = 0;
    if (!o || o == Py_None)
        return 0;
    double s = PyFloat_AsDouble(o);
    if (s == -1.0 && PyErr_Occurred()) {
        PyErr_SetString(PyExc_TypeError, "timeout must be a number of seconds or None");
        return -1;
    }
    if (!(s >= 0)) {
        PyErr_SetString(PyExc_ValueError, "timeout must not be negative");
        return -1;
    }
    double v = ceil(s * 1000.0);
    /* 0 means "the default" to the library; a timeout of 0 s asks for the shortest wait. */
    *ms = v < 1 ? 1 : v > INT_MAX ? INT_MAX : (int)v;
    return 0;
}

int cgpy_int(PyObject *o, const char *name, int dflt, int *v)
{
    if (!o) {
        *v = dflt;
        return 0;
    }
    int overflow;
    long x = PyLong_AsLongAndOverflow(o, &overflow);
    if (x == -1 && PyErr_Occurred()) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s", name, Py_TYPE(o)->tp_name);
        return -1;
    }
    if (overflow || x < INT_MIN || x > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "%s is out of range", name);
        return -1;
    }
    *v = (int)x;
    return 0;
}

int cgpy_u64(PyObject *o, const char *name, uint64_t *v)
{
    *v = 0;
    if (!o)
        return 0;
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s", name, Py_TYPE(o)->tp_name);
        return -1;
    }
    unsigned long long x = PyLong_AsUnsignedLongLong(o);
    if (x == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s must be a non-negative int below 2**64", name);
        return -1;
    }
    *v = x;
    return 0;
}

int cgpy_str(PyObject *o, const char *name, const char **s)
{
    *s = NULL;
    if (!o || o == Py_None)
        return 0;
    if (!PyUnicode_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be a str, not %.100s", name, Py_TYPE(o)->tp_name);
        return -1;
    }
    *s = PyUnicode_AsUTF8(o);
    return *s ? 0 : -1;
}

/* seq_alloc turns o into a fast sequence of `want` entries (any number when want < 0) and
 * allocates a zeroed array of one more than that many elements of `size` bytes. NULL with the
 * exception set on a bad argument or no memory. */
static PyObject *seq_alloc(PyObject *o, const char *name, Py_ssize_t want, size_t size,
                           void **array)
{
    PyObject *seq = o && o != Py_None ? PySequence_Fast(o, "") : NULL;
    if (!seq) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be a sequence of ints", name);
        return NULL;
    }
    Py_ssize_t len = PySequence_Fast_GET_SIZE(seq);
    if (want >= 0 && len != want)
        PyErr_Format(PyExc_ValueError, "%s must have %zd entries, not %zd", name, want, len);
    else if (!(*array = PyMem_Calloc((size_t)len + 1, size)))
        PyErr_NoMemory();
    else
        return seq;
    Py_DECREF(seq);
    return NULL;
}

int *cgpy_ints(PyObject *o, const char *name, Py_ssize_t want, Py_ssize_t *n)
{
    int *v = NULL;
    PyObject *seq = seq_alloc(o, name, want, sizeof *v, (void **)&v);
    if (!seq)
        return NULL;
    *n = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; v && i < *n; i++)
        if (cgpy_int(PySequence_Fast_GET_ITEM(seq, i), name, 0, &v[i]) < 0) {
            PyMem_Free(v);
            v = NULL;
        }
    Py_DECREF(seq);
    return v;
}

/* count_at reads entry i of a sequence of counts. */
static int count_at(PyObject *seq, Py_ssize_t i, const char *name, size_t *c)
{
    Py_ssize_t x = PyNumber_AsSsize_t(PySequence_Fast_GET_ITEM(seq, i), PyExc_OverflowError);
    if (x == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s[%zd] must be an int", name, i);
        return -1;
    }
    if (x < 0) {
        PyErr_Format(PyExc_ValueError, "%s[%zd] is negative", name, i);
        return -1;
    }
    *c = (size_t)x;
    return 0;
}

size_t *cgpy_counts(PyObject *o, const char *name, Py_ssize_t want, size_t *sum)
{
    size_t *c = NULL;
    PyObject *seq = seq_alloc(o, name, want, sizeof *c, (void **)&c);
    if (!seq)
        return NULL;
    Py_ssize_t len = PySequence_Fast_GET_SIZE(seq);
    *sum = 0;
    for (Py_ssize_t i = 0; c && i < len; i++) {
        if (count_at(seq, i, name, &c[i]) < 0) {
            PyMem_Free(c);
            c = NULL;
        } else {
            *sum += c[i];
        }
    }
    Py_DECREF(seq);
    return c;
}
