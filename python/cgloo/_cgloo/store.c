/*
 * Stores: one Python type over cgloo_store with a subtype per backend, the TCP store server,
 * and CustomStore, whose callbacks call a Python object's methods.
 *
 * Store calls release the GIL. A call that waits (get, wait, multi_get, connecting) has no
 * context and so no interrupt check: it runs in slices of at most CGLOO_INTERRUPT_CHECK_MS and
 * looks for signals (Ctrl-C) between them.
 */
#include "cgloo_py.h"

#include <time.h>

#define STORE_DEFAULT_MS CGLOO_DEFAULT_TIMEOUT_MS

/* ---- lifetime ---- */

/* store_destroy frees the library's store and lets go of what it wraps. */
static void store_destroy(cgpy_Store *s)
{
    cgloo_store *st = s->store;
    s->store = NULL;
    if (st) {
        CGPY_NOGIL(cgloo_store_destroy(st));
    }
    if (s->inner) {
        cgpy_Store *in = (cgpy_Store *)s->inner;
        if (--in->busy == 0 && in->closed)
            store_destroy(in);
        Py_CLEAR(s->inner);
    }
}

int cgpy_store_enter(cgpy_Store *s)
{
    if (!s->store || s->closed) {
        PyErr_SetString(PyExc_ValueError, "the store is closed");
        return -1;
    }
    s->busy++;
    return 0;
}

void cgpy_store_leave(cgpy_Store *s)
{
    if (--s->busy == 0 && s->closed)
        store_destroy(s);
}

/* store_raise raises the exception for rc naming the operation, with the exception a custom
 * store's callback raised (if any) as its cause. */
static PyObject *store_raise(cgpy_Store *s, int rc, const char *what, PyObject *key)
{
    /* A store that keeps its own account of the failure (Redis: the server's words) adds it. */
    char why[512] = "";
    if (s->store)
        cgloo_store_last_error(s->store, why, sizeof why);
    const char *sep = *why ? ": " : "";
    PyObject *detail = key ? PyUnicode_FromFormat("store %s(%R)%s%s", what, key, sep, why)
                           : PyUnicode_FromFormat("store %s%s%s", what, sep, why);
    const char *text = detail ? PyUnicode_AsUTF8(detail) : NULL;
    cgpy_raise(rc, text ? text : what);
    Py_XDECREF(detail);
    if (s->failure && PyErr_Occurred()) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        PyException_SetCause(value, s->failure); /* steals the reference */
        s->failure = NULL;
        PyErr_Restore(type, value, tb);
    }
    return NULL;
}

/* ---- keys ---- */

/* key_text reads a str or bytes key (the text lives as long as the object). */
static const char *key_text(PyObject *key)
{
    if (PyUnicode_Check(key))
        return PyUnicode_AsUTF8(key);
    if (PyBytes_Check(key))
        return PyBytes_AS_STRING(key);
    PyErr_Format(PyExc_TypeError, "a store key must be str or bytes, not %.100s",
                 Py_TYPE(key)->tp_name);
    return NULL;
}

/* A list of keys held for a call: a tuple (so that the texts stay alive while the GIL is
 * released) and their texts. */
typedef struct key_list {
    PyObject *tuple;
    const char **keys;
    size_t n;
} key_list;

static void keys_free(key_list *k)
{
    Py_XDECREF(k->tuple);
    PyMem_Free(k->keys);
}

/* keys_get reads a single key or a sequence of keys. */
static int keys_get(PyObject *o, key_list *k)
{
    k->keys = NULL;
    k->tuple = PyUnicode_Check(o) || PyBytes_Check(o) ? PyTuple_Pack(1, o) : PySequence_Tuple(o);
    if (!k->tuple)
        return -1;
    k->n = (size_t)PyTuple_GET_SIZE(k->tuple);
    k->keys = PyMem_Calloc(k->n + 1, sizeof *k->keys);
    if (!k->keys) {
        PyErr_NoMemory();
        keys_free(k);
        return -1;
    }
    for (size_t i = 0; i < k->n; i++)
        if (!(k->keys[i] = key_text(PyTuple_GET_ITEM(k->tuple, i)))) {
            keys_free(k);
            return -1;
        }
    return 0;
}

/* ---- waiting in slices ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One waiting store operation, run for `slice_ms` without the GIL. */
typedef int (*slice_fn)(void *arg, int slice_ms);

/* run_sliced runs fn in slices until it returns something other than `again` (ETIMEDOUT, or
 * also ECONNREFUSED while connecting) or timeout_ms passes, checking signals between slices.
 * Returns the status, or CGLOO_EINTR with the signal's exception set. */
static int run_sliced(slice_fn fn, void *arg, int timeout_ms, int again2)
{
    int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : STORE_DEFAULT_MS);
    for (;;) {
        int64_t left = deadline - now_ms();
        int slice = (int)(left < 1                          ? 1
                          : left > CGLOO_INTERRUPT_CHECK_MS ? CGLOO_INTERRUPT_CHECK_MS
                                                            : left);
        int rc;
        CGPY_NOGIL(rc = fn(arg, slice));
        if ((rc != CGLOO_ETIMEDOUT && rc != again2) || now_ms() >= deadline)
            return rc;
        if (PyErr_CheckSignals() < 0)
            return CGLOO_EINTR;
    }
}

/* ---- methods ---- */

static PyObject *store_set(cgpy_Store *s, PyObject *args)
{
    PyObject *key;
    Py_buffer value;
    if (!PyArg_ParseTuple(args, "Oy*:set", &key, &value))
        return NULL;
    const char *k = key_text(key);
    int rc = CGLOO_OK;
    if (k && cgpy_store_enter(s) == 0) {
        CGPY_NOGIL(rc = cgloo_store_set(s->store, k, value.buf, (size_t)value.len));
        cgpy_store_leave(s);
    } else {
        k = NULL;
    }
    PyBuffer_Release(&value);
    if (!k)
        return NULL;
    if (rc != CGLOO_OK)
        return store_raise(s, rc, "set", key);
    Py_RETURN_NONE;
}

typedef struct get_call {
    cgloo_store *store;
    const char *key;
    void *value;
    size_t len;
} get_call;

static int get_slice(void *arg, int slice_ms)
{
    get_call *g = arg;
    return cgloo_store_get(g->store, g->key, slice_ms, &g->value, &g->len);
}

static PyObject *store_get(cgpy_Store *s, PyObject *args, PyObject *kw)
{
    static char *names[] = {"key", "timeout", NULL};
    PyObject *key, *timeout = NULL;
    int ms;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O:get", names, &key, &timeout) ||
        cgpy_timeout_ms(timeout, &ms) < 0)
        return NULL;
    get_call g = {.key = key_text(key)};
    if (!g.key || cgpy_store_enter(s) < 0)
        return NULL;
    g.store = s->store;
    int rc = run_sliced(get_slice, &g, ms, CGLOO_ETIMEDOUT);
    cgpy_store_leave(s);
    if (rc != CGLOO_OK)
        return store_raise(s, rc, "get", key);
    PyObject *v = PyBytes_FromStringAndSize(g.value, (Py_ssize_t)g.len);
    cgloo_free(g.value);
    return v;
}

typedef struct wait_call {
    cgloo_store *store;
    key_list k;
    void **values;
    size_t *lens;
} wait_call;

static int wait_slice(void *arg, int slice_ms)
{
    wait_call *w = arg;
    return cgloo_store_wait(w->store, w->k.keys, w->k.n, slice_ms);
}

static int multi_get_slice(void *arg, int slice_ms)
{
    wait_call *w = arg;
    return cgloo_store_multi_get(w->store, w->k.keys, w->k.n, slice_ms, w->values, w->lens);
}

/* wait_begin parses (keys, timeout=None) and enters the store. */
static int wait_begin(cgpy_Store *s, PyObject *args, PyObject *kw, const char *fmt, wait_call *w,
                      int *ms)
{
    static char *names[] = {"keys", "timeout", NULL};
    PyObject *keys, *timeout = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, fmt, names, &keys, &timeout) ||
        cgpy_timeout_ms(timeout, ms) < 0 || keys_get(keys, &w->k) < 0)
        return -1;
    if (cgpy_store_enter(s) < 0) {
        keys_free(&w->k);
        return -1;
    }
    w->store = s->store;
    return 0;
}

static PyObject *store_wait(cgpy_Store *s, PyObject *args, PyObject *kw)
{
    wait_call w = {0};
    int ms;
    if (wait_begin(s, args, kw, "O|O:wait", &w, &ms) < 0)
        return NULL;
    int rc = run_sliced(wait_slice, &w, ms, CGLOO_ETIMEDOUT);
    cgpy_store_leave(s);
    PyObject *first = w.k.n ? PyTuple_GET_ITEM(w.k.tuple, 0) : NULL;
    if (rc != CGLOO_OK)
        store_raise(s, rc, "wait", first);
    keys_free(&w.k);
    if (rc != CGLOO_OK)
        return NULL;
    Py_RETURN_NONE;
}

/* values_list turns n values into a list of bytes, freeing them. */
static PyObject *values_list(void **values, size_t *lens, size_t n)
{
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; i < n; i++) {
        PyObject *v = list ? PyBytes_FromStringAndSize(values[i], (Py_ssize_t)lens[i]) : NULL;
        if (list && !v)
            Py_CLEAR(list);
        if (list)
            PyList_SET_ITEM(list, (Py_ssize_t)i, v);
        cgloo_free(values[i]);
    }
    return list;
}

static PyObject *store_multi_get(cgpy_Store *s, PyObject *args, PyObject *kw)
{
    wait_call w = {0};
    int ms;
    if (wait_begin(s, args, kw, "O|O:multi_get", &w, &ms) < 0)
        return NULL;
    w.values = PyMem_Calloc(w.k.n + 1, sizeof *w.values);
    w.lens = PyMem_Calloc(w.k.n + 1, sizeof *w.lens);
    int rc =
        w.values && w.lens ? run_sliced(multi_get_slice, &w, ms, CGLOO_ETIMEDOUT) : CGLOO_ENOMEM;
    cgpy_store_leave(s);
    PyObject *out = NULL;
    if (rc == CGLOO_OK)
        out = values_list(w.values, w.lens, w.k.n);
    else
        store_raise(s, rc, "multi_get", w.k.n ? PyTuple_GET_ITEM(w.k.tuple, 0) : NULL);
    PyMem_Free(w.values);
    PyMem_Free(w.lens);
    keys_free(&w.k);
    return out;
}

static PyObject *store_check(cgpy_Store *s, PyObject *keys)
{
    key_list k;
    int all = 0, rc = CGLOO_OK;
    if (keys_get(keys, &k) < 0)
        return NULL;
    if (cgpy_store_enter(s) < 0) {
        keys_free(&k);
        return NULL;
    }
    CGPY_NOGIL(rc = cgloo_store_check(s->store, k.keys, k.n, &all));
    cgpy_store_leave(s);
    if (rc != CGLOO_OK)
        store_raise(s, rc, "check", k.n ? PyTuple_GET_ITEM(k.tuple, 0) : NULL);
    keys_free(&k);
    if (rc != CGLOO_OK)
        return NULL;
    return PyBool_FromLong(all);
}

static PyObject *store_add(cgpy_Store *s, PyObject *args)
{
    PyObject *key;
    long long delta;
    int64_t result = 0;
    int rc;
    if (!PyArg_ParseTuple(args, "OL:add", &key, &delta))
        return NULL;
    const char *k = key_text(key);
    if (!k || cgpy_store_enter(s) < 0)
        return NULL;
    CGPY_NOGIL(rc = cgloo_store_add(s->store, k, (int64_t)delta, &result));
    cgpy_store_leave(s);
    if (rc != CGLOO_OK)
        return store_raise(s, rc, "add", key);
    return PyLong_FromLongLong(result);
}

static PyObject *store_delete(cgpy_Store *s, PyObject *key)
{
    int rc;
    const char *k = key_text(key);
    if (!k || cgpy_store_enter(s) < 0)
        return NULL;
    CGPY_NOGIL(rc = cgloo_store_delete(s->store, k));
    cgpy_store_leave(s);
    if (rc != CGLOO_OK)
        return store_raise(s, rc, "delete", key);
    Py_RETURN_NONE;
}

static PyObject *store_close(cgpy_Store *s, PyObject *unused)
{
    if (!s->closed) {
        s->closed = 1;
        if (s->busy == 0)
            store_destroy(s);
    }
    Py_RETURN_NONE;
}

static PyObject *store_enter_cm(PyObject *s, PyObject *unused)
{
    return Py_NewRef(s);
}

static PyObject *store_exit_cm(cgpy_Store *s, PyObject *args)
{
    return store_close(s, NULL);
}

static PyObject *store_closed_get(cgpy_Store *s, void *unused)
{
    return PyBool_FromLong(s->closed || !s->store);
}

static PyMethodDef store_methods[] = {
    {"set", (PyCFunction)store_set, METH_VARARGS,
     "set(key, value)\n--\n\nStore a copy of the bytes-like value under key (str or bytes), "
     "replacing any older value."},
    {"get", (PyCFunction)(void (*)(void))store_get, METH_VARARGS | METH_KEYWORDS,
     "get(key, timeout=None)\n--\n\nWait up to timeout seconds (None: 30) for key, then return "
     "its value as bytes. Raises cgloo.TimeoutError if it does not appear."},
    {"wait", (PyCFunction)(void (*)(void))store_wait, METH_VARARGS | METH_KEYWORDS,
     "wait(keys, timeout=None)\n--\n\nWait up to timeout seconds (None: 30) until every key "
     "exists. Raises cgloo.TimeoutError."},
    {"check", (PyCFunction)store_check, METH_O,
     "check(keys)\n--\n\nReturn True if every key exists now. Never waits."},
    {"add", (PyCFunction)store_add, METH_VARARGS,
     "add(key, delta)\n--\n\nAtomically add delta to the counter under key (absent counts as "
     "0) and return the new value."},
    {"delete", (PyCFunction)store_delete, METH_O,
     "delete(key)\n--\n\nRemove key; removing an absent key succeeds."},
    {"multi_get", (PyCFunction)(void (*)(void))store_multi_get, METH_VARARGS | METH_KEYWORDS,
     "multi_get(keys, timeout=None)\n--\n\nWait for every key, then return their values as a "
     "list of bytes."},
    {"close", (PyCFunction)store_close, METH_NOARGS,
     "close()\n--\n\nRelease the store. A store still in use (by a call in flight, a "
     "PrefixStore or a connecting Context) is released when they are done with it."},
    {"__enter__", store_enter_cm, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)store_exit_cm, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef store_getset[] = {
    {"closed", (getter)store_closed_get, NULL, "True once close() was called.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static int store_traverse(cgpy_Store *s, visitproc visit, void *arg)
{
    Py_VISIT(s->inner);
    Py_VISIT(s->obj);
    Py_VISIT(s->failure);
    return 0;
}

static int store_clear(cgpy_Store *s)
{
    /* The library's store goes before the objects its callbacks use. */
    s->closed = 1;
    store_destroy(s);
    Py_CLEAR(s->obj);
    Py_CLEAR(s->failure);
    return 0;
}

static void store_dealloc(cgpy_Store *s)
{
    PyObject_GC_UnTrack(s);
    if (s->weakrefs)
        PyObject_ClearWeakRefs((PyObject *)s);
    store_clear(s);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static int store_init_base(PyObject *self, PyObject *args, PyObject *kw)
{
    PyErr_SetString(PyExc_TypeError, "cgloo.Store is abstract: make a HashStore, FileStore, "
                                     "PrefixStore, TCPStore or CustomStore, or call open_store");
    return -1;
}

/* store_adopt gives a new Store object its library store (refusing a second __init__). */
static int store_adopt(cgpy_Store *s, int rc, cgloo_store *st, const char *what)
{
    if (rc != CGLOO_OK) {
        cgpy_raise_last(rc, "creating a %s", what);
        return -1;
    }
    if (s->store) {
        cgloo_store_destroy(st);
        PyErr_SetString(PyExc_RuntimeError, "the store is already initialised");
        return -1;
    }
    s->store = st;
    return 0;
}

/* ---- backends ---- */

static int hash_init(cgpy_Store *s, PyObject *args, PyObject *kw)
{
    static char *names[] = {NULL};
    cgloo_store *st = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, ":HashStore", names))
        return -1;
    int rc = cgloo_store_hash_create(&st);
    return store_adopt(s, rc, st, "HashStore");
}

static int file_init(cgpy_Store *s, PyObject *args, PyObject *kw)
{
    static char *names[] = {"path", "run_id", NULL};
    PyObject *path = NULL;
    const char *run_id = NULL;
    cgloo_store *st = NULL;
    int rc;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&|z:FileStore", names, PyUnicode_FSConverter,
                                     &path, &run_id))
        return -1;
    CGPY_NOGIL(rc = cgloo_store_file_create(PyBytes_AS_STRING(path), run_id, &st));
    Py_DECREF(path);
    return store_adopt(s, rc, st, "FileStore");
}

static int prefix_init(cgpy_Store *s, PyObject *args, PyObject *kw)
{
    static char *names[] = {"prefix", "store", NULL};
    const char *prefix;
    cgpy_Store *inner;
    cgloo_store *st = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "sO!:PrefixStore", names, &prefix, &cgpy_StoreType,
                                     &inner) ||
        cgpy_store_enter(inner) < 0)
        return -1;
    int rc = cgloo_store_prefix_create(inner->store, prefix, &st);
    if (store_adopt(s, rc, st, "PrefixStore") < 0) {
        cgpy_store_leave(inner);
        return -1;
    }
    /* The inner store stays entered (busy) for as long as this wrapper lives. */
    s->inner = Py_NewRef(inner);
    return 0;
}

typedef struct connect_call {
    const char *host, *url;
    int port;
    cgloo_store *st;
    char detail[512]; /* why the last open of url failed, without its password */
} connect_call;

static int tcp_slice(void *arg, int slice_ms)
{
    connect_call *c = arg;
    return c->url ? cgloo_store_open_detail(c->url, slice_ms, c->detail, sizeof c->detail, &c->st)
                  : cgloo_store_tcp_connect(c->host, c->port, slice_ms, &c->st);
}

static int tcp_init(cgpy_Store *s, PyObject *args, PyObject *kw)
{
    static char *names[] = {"host", "port", "timeout", NULL};
    connect_call c = {0};
    PyObject *timeout = NULL;
    int ms;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "si|O:TCPStore", names, &c.host, &c.port,
                                     &timeout) ||
        cgpy_timeout_ms(timeout, &ms) < 0)
        return -1;
    int rc = run_sliced(tcp_slice, &c, ms, CGLOO_ECONNREFUSED);
    return rc == CGLOO_EINTR && PyErr_Occurred() ? -1 : store_adopt(s, rc, c.st, "TCPStore");
}

PyObject *cgpy_open_store(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames)
{
    static const char *const names[] = {"url", "timeout", NULL};
    static cgpy_params params = {"open_store", names, 2, 1, 0, NULL};
    PyObject *a[2];
    connect_call c = {0};
    int ms;
    if (cgpy_parse(&params, args, nargs, kwnames, a) < 0 || cgpy_str(a[0], "url", &c.url) < 0 ||
        cgpy_timeout_ms(a[1], &ms) < 0)
        return NULL;
    if (!c.url)
        return PyErr_Format(PyExc_TypeError, "url must be a str");
    cgpy_Store *s = (cgpy_Store *)cgpy_StoreType.tp_alloc(&cgpy_StoreType, 0);
    if (!s)
        return NULL;
    int rc = run_sliced(tcp_slice, &c, ms, CGLOO_ECONNREFUSED);
    if (rc != CGLOO_OK && !(rc == CGLOO_EINTR && PyErr_Occurred()))
        cgpy_raise(rc, c.detail); /* never the URL itself: it may hold a password */
    if (rc != CGLOO_OK || store_adopt(s, rc, c.st, "store") < 0)
        Py_CLEAR(s);
    return (PyObject *)s;
}

/* launch_info_dict turns what the library read from the launcher's environment into a dict. */
static PyObject *launch_info_dict(const cgloo_launch_info *li)
{
    return Py_BuildValue("{s:s,s:i,s:i,s:i,s:i,s:s,s:s,s:s,s:i,s:O}", "launcher", li->launcher,
                         "rank", li->rank, "size", li->size, "local_rank", li->local_rank,
                         "local_size", li->local_size, "store", li->store, "prefix", li->prefix,
                         "serve_host", li->serve_host, "serve_port", li->serve_port, "watch_store",
                         li->watch_store ? Py_True : Py_False);
}

/* read_launch_info reads the environment, raising InvalidArgumentError with the library's
 * detail when it does not do. */
static int read_launch_info(cgloo_launch_info *li)
{
    int rc = cgloo_launch_info_from_env(li);
    if (rc != CGLOO_OK) {
        cgpy_raise(rc, li->detail);
        return -1;
    }
    return 0;
}

PyObject *cgpy_launch_info(PyObject *module, PyObject *unused)
{
    cgloo_launch_info li;
    return read_launch_info(&li) < 0 ? NULL : launch_info_dict(&li);
}

typedef struct launch_call {
    cgloo_launch_info info;
    cgloo_store *st;
} launch_call;

static int launch_slice(void *arg, int slice_ms)
{
    launch_call *c = arg;
    return cgloo_launch_store_open(&c->info, slice_ms, &c->st);
}

PyObject *cgpy_open_launch_store(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames)
{
    static const char *const names[] = {"timeout", NULL};
    static cgpy_params params = {"open_launch_store", names, 1, 0, 0, NULL};
    PyObject *a[1];
    launch_call c = {0};
    int ms;
    if (cgpy_parse(&params, args, nargs, kwnames, a) < 0 || cgpy_timeout_ms(a[0], &ms) < 0 ||
        read_launch_info(&c.info) < 0)
        return NULL;
    if (!c.info.store[0])
        return PyErr_Format(PyExc_ValueError, "a job of one rank has no store");
    cgpy_Store *s = (cgpy_Store *)cgpy_StoreType.tp_alloc(&cgpy_StoreType, 0);
    if (!s)
        return NULL;
    int rc = run_sliced(launch_slice, &c, ms, CGLOO_ECONNREFUSED);
    if ((rc == CGLOO_EINTR && PyErr_Occurred()) || store_adopt(s, rc, c.st, c.info.store) < 0)
        Py_CLEAR(s);
    return (PyObject *)s;
}

/* ---- the custom store: callbacks into a Python object ---- */

/* custom_status maps the exception a callback raised to a status, keeping unexpected ones as
 * the cause of the error the caller will see. */
static int custom_status(cgpy_Store *s)
{
    if (PyErr_ExceptionMatches(PyExc_TimeoutError) || PyErr_ExceptionMatches(PyExc_KeyError)) {
        PyErr_Clear();
        return CGLOO_ETIMEDOUT;
    }
    int rc = PyErr_ExceptionMatches(PyExc_NotImplementedError) ? CGLOO_ENOTSUP : CGLOO_ESTORE;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value && tb)
        PyException_SetTraceback(value, tb);
    Py_XSETREF(s->failure, value);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return rc;
}

/* custom_call calls obj.<method>(args...) with the GIL held; *out gets the result (new) or the
 * status is returned. `fmt` is a Py_BuildValue format. */
static int custom_call(cgpy_Store *s, PyObject **out, const char *method, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    PyObject *args = Py_VaBuildValue(fmt, ap);
    va_end(ap);
    PyObject *fn = args ? PyObject_GetAttrString(s->obj, method) : NULL;
    PyObject *r = fn ? PyObject_Call(fn, args, NULL) : NULL;
    Py_XDECREF(fn);
    Py_XDECREF(args);
    if (!r)
        return custom_status(s);
    *out = r;
    return CGLOO_OK;
}

static PyObject *custom_keys(const char *const *keys, size_t nkeys)
{
    PyObject *list = PyList_New((Py_ssize_t)nkeys);
    for (size_t i = 0; list && i < nkeys; i++) {
        PyObject *k = PyUnicode_DecodeUTF8(keys[i], (Py_ssize_t)strlen(keys[i]), "surrogateescape");
        if (!k)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, (Py_ssize_t)i, k);
    }
    return list;
}

static int custom_set(void *user, const char *key, const void *value, size_t len)
{
    PyObject *r = NULL;
    PyGILState_STATE g = PyGILState_Ensure();
    int rc = custom_call(user, &r, "set", "(sy#)", key, (const char *)value, (Py_ssize_t)len);
    Py_XDECREF(r);
    PyGILState_Release(g);
    return rc;
}

/* custom_value copies a bytes-like result into malloc'd memory for the library. */
static int custom_value(cgpy_Store *s, PyObject *r, void **value, size_t *len)
{
    Py_buffer v;
    if (r == Py_None)
        return CGLOO_ETIMEDOUT;
    if (PyObject_GetBuffer(r, &v, PyBUF_SIMPLE) < 0)
        return custom_status(s);
    *value = malloc((size_t)v.len + 1);
    if (*value) {
        memcpy(*value, v.buf, (size_t)v.len);
        ((char *)*value)[v.len] = '\0';
        *len = (size_t)v.len;
    }
    PyBuffer_Release(&v);
    return *value ? CGLOO_OK : CGLOO_ENOMEM;
}

static int custom_get(void *user, const char *key, int timeout_ms, void **value, size_t *len)
{
    PyObject *r = NULL;
    PyGILState_STATE g = PyGILState_Ensure();
    int rc = custom_call(user, &r, "get", "(sd)", key, timeout_ms / 1000.0);
    if (rc == CGLOO_OK)
        rc = custom_value(user, r, value, len);
    Py_XDECREF(r);
    PyGILState_Release(g);
    return rc;
}

static int custom_wait(void *user, const char *const *keys, size_t nkeys, int timeout_ms)
{
    PyObject *r = NULL;
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *list = custom_keys(keys, nkeys);
    int rc = list ? custom_call(user, &r, "wait", "(Od)", list, timeout_ms / 1000.0)
                  : custom_status(user);
    if (rc == CGLOO_OK && r == Py_False)
        rc = CGLOO_ETIMEDOUT;
    Py_XDECREF(list);
    Py_XDECREF(r);
    PyGILState_Release(g);
    return rc;
}

static int custom_add(void *user, const char *key, int64_t delta, int64_t *result)
{
    PyObject *r = NULL;
    PyGILState_STATE g = PyGILState_Ensure();
    int rc = custom_call(user, &r, "add", "(sL)", key, (long long)delta);
    if (rc == CGLOO_OK) {
        long long v = PyLong_AsLongLong(r);
        if (v == -1 && PyErr_Occurred())
            rc = custom_status(user);
        else
            *result = (int64_t)v;
    }
    Py_XDECREF(r);
    PyGILState_Release(g);
    return rc;
}

static int custom_check(void *user, const char *const *keys, size_t nkeys, int *all_present)
{
    PyObject *r = NULL;
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *list = custom_keys(keys, nkeys);
    int rc = list ? custom_call(user, &r, "check", "(O)", list) : custom_status(user);
    if (rc == CGLOO_OK) {
        int t = PyObject_IsTrue(r);
        if (t < 0)
            rc = custom_status(user);
        else
            *all_present = t;
    }
    Py_XDECREF(list);
    Py_XDECREF(r);
    PyGILState_Release(g);
    return rc;
}

static int custom_del(void *user, const char *key)
{
    PyObject *r = NULL;
    PyGILState_STATE g = PyGILState_Ensure();
    int rc = custom_call(user, &r, "delete", "(s)", key);
    Py_XDECREF(r);
    PyGILState_Release(g);
    return rc;
}

static int custom_init(cgpy_Store *s, PyObject *args, PyObject *kw)
{
    static char *names[] = {"obj", NULL};
    static const char *const needed[] = {"set", "get", "wait", "add"};
    PyObject *obj;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O:CustomStore", names, &obj))
        return -1;
    for (size_t i = 0; i < sizeof needed / sizeof needed[0]; i++)
        if (!PyObject_HasAttrString(obj, needed[i])) {
            PyErr_Format(PyExc_TypeError, "CustomStore: %.100s has no method %s()",
                         Py_TYPE(obj)->tp_name, needed[i]);
            return -1;
        }
    cgloo_store_callbacks cb = {
        .set = custom_set,
        .get = custom_get,
        .wait = custom_wait,
        .add = custom_add,
        .check = PyObject_HasAttrString(obj, "check") ? custom_check : NULL,
        .del = PyObject_HasAttrString(obj, "delete") ? custom_del : NULL,
    };
    cgloo_store *st = NULL;
    int rc = cgloo_store_custom_create(&cb, s, &st);
    if (store_adopt(s, rc, st, "CustomStore") < 0)
        return -1;
    s->obj = Py_NewRef(obj);
    return 0;
}

/* ---- the types ---- */

#define STORE_FLAGS (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC)

PyTypeObject cgpy_StoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cgloo.Store",
    .tp_basicsize = sizeof(cgpy_Store),
    .tp_flags = STORE_FLAGS,
    .tp_doc = "A key/value store the ranks meet through (the base of every store type). "
              "Usable as a context manager that closes it.",
    .tp_new = PyType_GenericNew,
    .tp_init = store_init_base,
    .tp_dealloc = (destructor)store_dealloc,
    .tp_traverse = (traverseproc)store_traverse,
    .tp_clear = (inquiry)store_clear,
    .tp_methods = store_methods,
    .tp_getset = store_getset,
    .tp_weaklistoffset = offsetof(cgpy_Store, weakrefs),
};

#define STORE_SUBTYPE(var, name, init, doc)                                                        \
    PyTypeObject var = {                                                                           \
        PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cgloo." name,                                    \
        .tp_basicsize = sizeof(cgpy_Store),                                                        \
        .tp_flags = STORE_FLAGS,                                                                   \
        .tp_doc = doc,                                                                             \
        .tp_base = &cgpy_StoreType,                                                                \
        .tp_init = (initproc)init,                                                                 \
        .tp_traverse = (traverseproc)store_traverse,                                               \
        .tp_clear = (inquiry)store_clear,                                                          \
    };

STORE_SUBTYPE(cgpy_HashStoreType, "HashStore", hash_init,
              "HashStore()\n--\n\nAn in-process store, for ranks that are threads of one process.")
STORE_SUBTYPE(cgpy_FileStoreType, "FileStore", file_init,
              "FileStore(path, run_id=None)\n--\n\nA store kept in a directory shared by the "
              "ranks (created if missing). run_id (default: CGLOO_RUN_ID) scopes the keys to one "
              "run.")
STORE_SUBTYPE(cgpy_PrefixStoreType, "PrefixStore", prefix_init,
              "PrefixStore(prefix, store)\n--\n\nstore with every key under \"<prefix>/\". Keeps "
              "store open while it lives.")
STORE_SUBTYPE(cgpy_TCPStoreType, "TCPStore", tcp_init,
              "TCPStore(host, port, timeout=30.0)\n--\n\nA client of a TCP store server (a "
              "StoreServer, cgloo-store or cgloo-run), retrying refused connections for up to "
              "timeout seconds.")
STORE_SUBTYPE(cgpy_CustomStoreType, "CustomStore", custom_init,
              "CustomStore(obj)\n--\n\nA store that calls obj's methods: set(key: str, value: "
              "bytes), get(key: str, timeout: float) -> bytes (raise KeyError or TimeoutError, "
              "or return None, while absent), wait(keys: list[str], timeout: float) (raise "
              "TimeoutError or return False if not all appear), add(key: str, delta: int) -> "
              "int, and optionally check(keys) -> bool and delete(key). They may be called from "
              "any thread. Other exceptions become cgloo.StoreError with the original as cause.")

/* ---- the TCP store server ---- */

typedef struct cgpy_StoreServer {
    PyObject_HEAD cgloo_store_server *server;
    PyObject *host;
    int port;
} cgpy_StoreServer;

static void server_stop_now(cgpy_StoreServer *s)
{
    cgloo_store_server *sv = s->server;
    s->server = NULL;
    if (sv) {
        CGPY_NOGIL(cgloo_store_server_stop(sv));
    }
}

static int server_init(cgpy_StoreServer *s, PyObject *args, PyObject *kw)
{
    static char *names[] = {"host", "port", NULL};
    const char *host = NULL;
    int port = 0, rc;
    cgloo_store_server *sv = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|zi:StoreServer", names, &host, &port))
        return -1;
    if (s->server) {
        PyErr_SetString(PyExc_RuntimeError, "the server is already started");
        return -1;
    }
    CGPY_NOGIL(rc = cgloo_store_server_start(host, port, &sv));
    if (rc != CGLOO_OK) {
        cgpy_raise_last(rc, "starting a store server");
        return -1;
    }
    s->server = sv;
    s->port = cgloo_store_server_port(sv);
    Py_XSETREF(s->host, PyUnicode_FromString(host ? host : "127.0.0.1"));
    return s->host ? 0 : -1;
}

static PyObject *server_stop(cgpy_StoreServer *s, PyObject *unused)
{
    server_stop_now(s);
    Py_RETURN_NONE;
}

static PyObject *server_exit(cgpy_StoreServer *s, PyObject *args)
{
    return server_stop(s, NULL);
}

static PyObject *server_host(cgpy_StoreServer *s, void *unused)
{
    return Py_NewRef(s->host ? s->host : Py_None);
}

static PyObject *server_port(cgpy_StoreServer *s, void *unused)
{
    return PyLong_FromLong(s->port);
}

static PyObject *server_url(cgpy_StoreServer *s, void *unused)
{
    if (!s->host)
        Py_RETURN_NONE;
    int v6 = PyUnicode_FindChar(s->host, ':', 0, PyUnicode_GET_LENGTH(s->host), 1) >= 0;
    return PyUnicode_FromFormat(v6 ? "tcp://[%U]:%d" : "tcp://%U:%d", s->host, s->port);
}

static void server_dealloc(cgpy_StoreServer *s)
{
    server_stop_now(s);
    Py_CLEAR(s->host);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static PyMethodDef server_methods[] = {
    {"stop", (PyCFunction)server_stop, METH_NOARGS,
     "stop()\n--\n\nStop serving and close every connection; clients blocked on it get an "
     "error. Idempotent."},
    {"__enter__", store_enter_cm, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)server_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef server_getset[] = {
    {"host", (getter)server_host, NULL, "The address it listens on.", NULL},
    {"port", (getter)server_port, NULL, "The port it listens on.", NULL},
    {"url", (getter)server_url, NULL, "\"tcp://host:port\", for open_store and CGLOO_STORE.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject cgpy_StoreServerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cgloo.StoreServer",
    .tp_basicsize = sizeof(cgpy_StoreServer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "StoreServer(host=None, port=0)\n--\n\nA TCP store server on a background thread "
              "of this process (host None: 127.0.0.1; port 0: a free one). A context manager "
              "that stops it.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)server_init,
    .tp_dealloc = (destructor)server_dealloc,
    .tp_methods = server_methods,
    .tp_getset = server_getset,
};
