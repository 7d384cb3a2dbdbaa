/*
 * Contexts: creation and connection, the interrupt check that lets Ctrl-C end a long wait,
 * lifetime (close() while other threads are inside the context aborts it and leaves the destroy
 * to the last one out), and point-to-point messages. The collectives are in coll.c.
 *
 * Every library call that may wait or take the context's lock runs with the GIL released: a
 * thread inside the library that holds the context's lock may need the GIL (a custom reduction,
 * a custom store), so no thread may wait for that lock while holding the GIL.
 */
#include "cgloo_py.h"

unsigned long cgpy_main_thread;

/* interrupt_check is called by a thread that has waited on the context for
 * CGLOO_INTERRUPT_CHECK_MS, without the context lock and without the GIL. Python runs signal
 * handlers on the main thread only, so other threads answer at once. On the main thread it runs
 * the handlers; an exception they raise (KeyboardInterrupt) stays set in the thread state and
 * the nonzero return ends the wait with CGLOO_EINTR, after which the caller returns NULL. */
static int interrupt_check(void *user)
{
    if (PyThread_get_thread_ident() != cgpy_main_thread)
        return 0;
    PyGILState_STATE g = PyGILState_Ensure();
    int stop = PyErr_CheckSignals() < 0;
    PyGILState_Release(g);
    return stop;
}

/* ---- lifetime ---- */

static void ctx_destroy(cgpy_Context *self)
{
    cgloo_context *ctx = self->ctx;
    cgloo_device *own = self->own_dev;
    self->ctx = NULL;
    self->own_dev = NULL;
    /* The context goes before any device it used. */
    CGPY_NOGIL(cgloo_context_destroy(ctx); cgloo_device_destroy(own));
    if (self->device) {
        cgpy_device_release((cgpy_Device *)self->device);
        Py_CLEAR(self->device);
    }
}

void cgpy_ctx_maybe_destroy(cgpy_Context *self)
{
    if (self->ctx && self->closing && self->calls == 0 && !self->pending)
        ctx_destroy(self);
}

int cgpy_ctx_enter(cgpy_Context *self)
{
    if (!self->ctx || self->closing) {
        PyErr_SetString(PyExc_ValueError, "the context is closed");
        return -1;
    }
    self->calls++;
    return 0;
}

void cgpy_ctx_detail(cgpy_Context *self, int rc, char *buf, size_t len)
{
    buf[0] = '\0';
    if (rc != CGLOO_OK && rc != CGLOO_EINTR)
        cgloo_context_last_error(self->ctx, buf, len);
}

int cgpy_ctx_leave(cgpy_Context *self, int rc, const char *detail)
{
    int ret = 0;
    self->calls--;
    if (rc != CGLOO_OK || PyErr_Occurred()) {
        cgpy_raise(rc, detail);
        ret = -1;
    }
    if (self->closing)
        cgpy_ctx_maybe_destroy(self);
    return ret;
}

void cgpy_ctx_unlink(cgpy_Context *self, cgpy_Request *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else if (self->pending == r)
        self->pending = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

/* ---- creation ---- */

/* ctx_args reads Context()'s store and device, which must be of the right types. */
static int ctx_args(PyObject *store, PyObject *device, int size)
{
    if (store != Py_None && !PyObject_TypeCheck(store, &cgpy_StoreType)) {
        PyErr_Format(PyExc_TypeError, "store must be a cgloo.Store, not %.100s",
                     Py_TYPE(store)->tp_name);
        return -1;
    }
    if (device != Py_None && !PyObject_TypeCheck(device, &cgpy_DeviceType)) {
        PyErr_Format(PyExc_TypeError, "device must be a cgloo.Device, not %.100s",
                     Py_TYPE(device)->tp_name);
        return -1;
    }
    if (size > 1 && store == Py_None) {
        PyErr_SetString(PyExc_ValueError, "a store is needed when size > 1");
        return -1;
    }
    return 0;
}

/* ctx_device picks the device: the caller's (counted as used), or a default one the context
 * owns. */
static int ctx_device(cgpy_Context *self, PyObject *device)
{
    int rc;
    if (device != Py_None) {
        if (cgpy_device_use((cgpy_Device *)device) < 0)
            return -1;
        self->device = Py_NewRef(device);
        return 0;
    }
    if (self->size == 1)
        return 0;
    CGPY_NOGIL(rc = cgloo_device_tcp_create(NULL, &self->own_dev));
    if (rc != CGLOO_OK) {
        cgpy_raise_last(rc, "the context's default device");
        return -1;
    }
    return 0;
}

/* ctx_connect connects the mesh through the store, without the GIL. */
static int ctx_connect(cgpy_Context *self, PyObject *store)
{
    cgpy_Store *s = store != Py_None ? (cgpy_Store *)store : NULL;
    cgloo_device *dev = self->own_dev  ? self->own_dev
                        : self->device ? ((cgpy_Device *)self->device)->dev
                                       : NULL;
    char detail[CGLOO_ERROR_MAX];
    int rc;
    if (s && cgpy_store_enter(s) < 0)
        return -1;
    CGPY_NOGIL(rc = cgloo_context_connect(self->ctx, s ? s->store : NULL, dev);
               cgpy_ctx_detail(self, rc, detail, sizeof detail));
    if (s)
        cgpy_store_leave(s);
    if (rc == CGLOO_OK)
        return 0;
    cgpy_raise(rc, detail);
    if (s && s->failure && PyErr_Occurred()) {
        /* A custom store's callback failed: its exception explains the connect error. */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        PyException_SetCause(value, s->failure);
        s->failure = NULL;
        PyErr_Restore(type, value, tb);
    }
    return -1;
}

static int ctx_init(cgpy_Context *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"rank",    "size", "store",     "device",
                            "timeout", "name", "check",     "flight_recorder",
                            "secret",  "lazy", "transport", NULL};
    int rank, size, ms;
    PyObject *store = Py_None, *device = Py_None, *timeout = Py_None, *check = Py_None,
             *recorder = Py_None, *lazy = Py_None;
    const char *name = NULL, *secret = NULL, *transport = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "ii|OOOzOO$zOz:Context", names, &rank, &size, &store,
                                     &device, &timeout, &name, &check, &recorder, &secret, &lazy,
                                     &transport) ||
        ctx_args(store, device, size) < 0 || cgpy_timeout_ms(timeout, &ms) < 0)
        return -1;
    int check_on = check == Py_None ? 0 : PyObject_IsTrue(check) ? 1 : -1;
    int lazy_on = lazy == Py_None ? 0 : PyObject_IsTrue(lazy) ? 1 : -1;
    long entries = recorder == Py_None ? 0 : PyLong_AsLong(recorder);
    if (entries == -1 && PyErr_Occurred())
        return -1;
    if (entries < 0 || entries > 65536) {
        PyErr_SetString(PyExc_ValueError, "flight_recorder must be from 0 to 65536");
        return -1;
    }
    if (self->ctx) {
        PyErr_SetString(PyExc_RuntimeError, "the context is already initialised");
        return -1;
    }
    cgloo_context_attr attr = {.timeout_ms = ms,
                               .name = name,
                               .check = check_on,
                               .flight_recorder = recorder == Py_None ? 0
                                                  : entries == 0      ? -1
                                                                      : (int)entries,
                               .secret = secret,
                               .lazy = lazy_on,
                               .transport = transport};
    int rc = cgloo_context_create(rank, size, &attr, &self->ctx);
    if (rc != CGLOO_OK) {
        cgpy_raise_last(rc, "Context(rank=%d, size=%d)", rank, size);
        return -1;
    }
    cgloo_context_set_interrupt_check(self->ctx, interrupt_check, NULL);
    self->rank = rank;
    self->size = size;
    if (ctx_device(self, device) < 0 || ctx_connect(self, store) < 0) {
        ctx_destroy(self);
        return -1;
    }
    return 0;
}

static void ctx_dealloc(cgpy_Context *self)
{
    if (self->weakrefs)
        PyObject_ClearWeakRefs((PyObject *)self);
    /* Pending requests hold the context, and calls hold it too: neither is left here. */
    if (self->ctx)
        ctx_destroy(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* ---- methods ---- */

static PyObject *ctx_close(cgpy_Context *self, PyObject *unused)
{
    if (!self->ctx)
        Py_RETURN_NONE;
    self->closing = 1;
    /* Cancel what nobody waits on; wake whoever waits inside the library. */
    for (;;) {
        cgpy_Request *r = self->pending;
        while (r && r->waiting)
            r = r->next;
        if (!r)
            break;
        cgpy_request_close_cancel(r);
    }
    if (self->calls > 0)
        CGPY_NOGIL(cgloo_context_abort(self->ctx));
    cgpy_ctx_maybe_destroy(self);
    Py_RETURN_NONE;
}

static PyObject *ctx_exit(cgpy_Context *self, PyObject *args)
{
    return ctx_close(self, NULL);
}

static PyObject *ctx_enter_cm(cgpy_Context *self, PyObject *unused)
{
    if (!self->ctx || self->closing) {
        PyErr_SetString(PyExc_ValueError, "the context is closed");
        return NULL;
    }
    return Py_NewRef(self);
}

static PyObject *ctx_abort(cgpy_Context *self, PyObject *unused)
{
    if (cgpy_ctx_enter(self) < 0)
        return NULL;
    CGPY_NOGIL(cgloo_context_abort(self->ctx));
    cgpy_ctx_leave(self, CGLOO_OK, NULL);
    Py_RETURN_NONE;
}

static PyObject *ctx_last_error(cgpy_Context *self, PyObject *unused)
{
    char buf[1024];
    if (cgpy_ctx_enter(self) < 0)
        return NULL;
    cgloo_context_last_error(self->ctx, buf, sizeof buf);
    cgpy_ctx_leave(self, CGLOO_OK, NULL);
    return PyUnicode_DecodeUTF8(buf, (Py_ssize_t)strlen(buf), "replace");
}

/* ctx_dump: the flight recorder as text, through a memory stream. */
static PyObject *ctx_dump(cgpy_Context *self, PyObject *unused)
{
    char *text = NULL;
    size_t len = 0;
    if (cgpy_ctx_enter(self) < 0)
        return NULL;
    FILE *f = open_memstream(&text, &len);
    int rc = f ? cgloo_context_dump(self->ctx, f) : CGLOO_ENOMEM;
    if (f)
        fclose(f);
    if (cgpy_ctx_leave(self, rc, rc == CGLOO_ENOTSUP ? "the flight recorder is off" : NULL) < 0) {
        free(text);
        return NULL;
    }
    PyObject *out = PyUnicode_DecodeUTF8(text ? text : "", (Py_ssize_t)len, "replace");
    free(text);
    return out;
}

static PyObject *ctx_get_timeout(cgpy_Context *self, void *unused)
{
    if (!self->ctx)
        Py_RETURN_NONE;
    return PyFloat_FromDouble(cgloo_context_timeout(self->ctx) / 1000.0);
}

static PyObject *ctx_get_connections(cgpy_Context *self, void *unused)
{
    if (!self->ctx)
        return PyLong_FromLong(0);
    return PyLong_FromLong(cgloo_context_connections(self->ctx));
}

static int ctx_set_timeout(cgpy_Context *self, PyObject *value, void *unused)
{
    int ms, rc;
    if (!value || value == Py_None) {
        PyErr_SetString(PyExc_TypeError, "timeout must be a number of seconds");
        return -1;
    }
    if (cgpy_timeout_ms(value, &ms) < 0 || cgpy_ctx_enter(self) < 0)
        return -1;
    CGPY_NOGIL(rc = cgloo_context_set_timeout(self->ctx, ms));
    return cgpy_ctx_leave(self, rc, "set_timeout");
}

static PyObject *ctx_closed(cgpy_Context *self, void *unused)
{
    return PyBool_FromLong(!self->ctx || self->closing);
}

static PyObject *ctx_repr(cgpy_Context *self)
{
    return PyUnicode_FromFormat("<cgloo.Context rank %d of %d%s>", self->rank, self->size,
                                self->ctx && !self->closing ? "" : ", closed");
}

/* ctx_wrap_child makes the Context object of a sub-context the library made. */
static PyObject *ctx_wrap_child(cgloo_context *child)
{
    cgpy_Context *c = (cgpy_Context *)cgpy_ContextType.tp_alloc(&cgpy_ContextType, 0);
    if (!c) {
        CGPY_NOGIL(cgloo_context_destroy(child));
        return NULL;
    }
    c->ctx = child;
    c->rank = cgloo_context_rank(child);
    c->size = cgloo_context_size(child);
    cgloo_context_set_interrupt_check(child, interrupt_check, NULL);
    return (PyObject *)c;
}

static PyObject *ctx_split(cgpy_Context *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames)
{
    static const char *const names[] = {"color", "key", NULL};
    static cgpy_params params = {"split", names, 2, 1, 0, NULL};
    PyObject *a[2];
    int color, key, rc;
    cgloo_context *child = NULL;
    char detail[CGLOO_ERROR_MAX];
    if (cgpy_parse(&params, args, nargs, kwnames, a) < 0 ||
        cgpy_int(a[0], "color", 0, &color) < 0 || cgpy_int(a[1], "key", 0, &key) < 0 ||
        cgpy_ctx_enter(self) < 0)
        return NULL;
    CGPY_NOGIL(rc = cgloo_context_split(self->ctx, color, key, &child);
               cgpy_ctx_detail(self, rc, detail, sizeof detail));
    if (cgpy_ctx_leave(self, rc, detail) < 0) {
        CGPY_NOGIL(cgloo_context_destroy(child));
        return NULL;
    }
    if (!child)
        Py_RETURN_NONE;
    return ctx_wrap_child(child);
}

/* ---- point-to-point ---- */

/* p2p_begin reads the buffer and the peer of a point-to-point call and enters the context. */
static int p2p_begin(cgpy_Context *self, PyObject **a, int mode, cgpy_buf *b, int *peer,
                     const char *peer_name, uint64_t *tag)
{
    if ((peer_name && cgpy_int(a[1], peer_name, 0, peer) < 0) || cgpy_u64(a[2], "tag", tag) < 0 ||
        cgpy_bytes_get(a[0], "buf", mode, b) < 0)
        return -1;
    if (cgpy_ctx_enter(self) < 0) {
        cgpy_buf_release(b);
        return -1;
    }
    return 0;
}

static PyObject *ctx_send(cgpy_Context *self, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames)
{
    static const char *const names[] = {"buf", "dst", "tag", "timeout", NULL};
    static cgpy_params params = {"send", names, 4, 2, 0, NULL};
    PyObject *a[4];
    cgpy_buf b;
    int dst, ms, rc;
    uint64_t tag;
    char detail[CGLOO_ERROR_MAX];
    if (cgpy_parse(&params, args, nargs, kwnames, a) < 0 || cgpy_timeout_ms(a[3], &ms) < 0 ||
        p2p_begin(self, a, CGPY_READ, &b, &dst, "dst", &tag) < 0)
        return NULL;
    CGPY_NOGIL(rc = cgloo_send(self->ctx, b.view.buf, (size_t)b.view.len, dst, tag, ms);
               if (rc != CGLOO_OK) cgpy_ctx_detail(self, rc, detail, sizeof detail));
    cgpy_buf_release(&b);
    if (cgpy_ctx_leave(self, rc, detail) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *ctx_recv(cgpy_Context *self, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames)
{
    static const char *const names[] = {"buf", "src", "tag", "timeout", NULL};
    static cgpy_params params = {"recv", names, 4, 2, 0, NULL};
    PyObject *a[4];
    cgpy_buf b;
    int src, ms, rc;
    uint64_t tag;
    cgloo_completion done = {0, 0};
    char detail[CGLOO_ERROR_MAX];
    if (cgpy_parse(&params, args, nargs, kwnames, a) < 0 || cgpy_timeout_ms(a[3], &ms) < 0 ||
        p2p_begin(self, a, CGPY_WRITE, &b, &src, "src", &tag) < 0)
        return NULL;
    CGPY_NOGIL(rc = cgloo_recv(self->ctx, b.view.buf, (size_t)b.view.len, src, tag, ms, &done);
               if (rc != CGLOO_OK) cgpy_ctx_detail(self, rc, detail, sizeof detail));
    cgpy_buf_release(&b);
    if (cgpy_ctx_leave(self, rc, detail) < 0)
        return NULL;
    return PyLong_FromSize_t(done.bytes);
}

static PyObject *ctx_recv_any(cgpy_Context *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    static const char *const names[] = {"buf", "srcs", "tag", "timeout", NULL};
    static cgpy_params params = {"recv_any", names, 4, 2, 0, NULL};
    PyObject *a[4];
    cgpy_buf b;
    int ms, rc, dummy;
    uint64_t tag;
    Py_ssize_t n;
    cgloo_completion done = {0, 0};
    char detail[CGLOO_ERROR_MAX];
    if (cgpy_parse(&params, args, nargs, kwnames, a) < 0 || cgpy_timeout_ms(a[3], &ms) < 0)
        return NULL;
    int *srcs = cgpy_ints(a[1], "srcs", -1, &n);
    if (!srcs || p2p_begin(self, a, CGPY_WRITE, &b, &dummy, NULL, &tag) < 0) {
        PyMem_Free(srcs);
        return NULL;
    }
    CGPY_NOGIL(rc = cgloo_recv_any(self->ctx, b.view.buf, (size_t)b.view.len, srcs, (size_t)n, tag,
                                   ms, &done);
               if (rc != CGLOO_OK) cgpy_ctx_detail(self, rc, detail, sizeof detail));
    cgpy_buf_release(&b);
    PyMem_Free(srcs);
    if (cgpy_ctx_leave(self, rc, detail) < 0)
        return NULL;
    return Py_BuildValue("(in)", done.source, (Py_ssize_t)done.bytes);
}

/* p2p_post finishes isend/irecv/irecv_any: a Request on success. The Request joins the pending
 * list before the call is counted out, so that a close() meanwhile cannot destroy the context
 * under it. */
static PyObject *p2p_post(cgpy_Context *self, int rc, cgloo_request *req, cgpy_buf *b,
                          const char *detail)
{
    PyObject *r = NULL;
    if (rc == CGLOO_OK)
        r = cgpy_request_new(self, req, b);
    else
        cgpy_buf_release(b);
    if (cgpy_ctx_leave(self, rc == CGLOO_OK && !r ? CGLOO_ENOMEM : rc, detail) < 0)
        Py_CLEAR(r);
    return r;
}

static PyObject *ctx_isend(cgpy_Context *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames)
{
    static const char *const names[] = {"buf", "dst", "tag", NULL};
    static cgpy_params params = {"isend", names, 3, 2, 0, NULL};
    PyObject *a[3];
    cgpy_buf b;
    int dst, rc;
    uint64_t tag;
    cgloo_request *req = NULL;
    char detail[CGLOO_ERROR_MAX];
    if (cgpy_parse(&params, args, nargs, kwnames, a) < 0 ||
        p2p_begin(self, a, CGPY_READ, &b, &dst, "dst", &tag) < 0)
        return NULL;
    CGPY_NOGIL(rc = cgloo_isend(self->ctx, b.view.buf, (size_t)b.view.len, dst, tag, &req);
               if (rc != CGLOO_OK) cgpy_ctx_detail(self, rc, detail, sizeof detail));
    return p2p_post(self, rc, req, &b, detail);
}

static PyObject *ctx_irecv(cgpy_Context *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames)
{
    static const char *const names[] = {"buf", "src", "tag", NULL};
    static cgpy_params params = {"irecv", names, 3, 2, 0, NULL};
    PyObject *a[3];
    cgpy_buf b;
    int src, rc;
    uint64_t tag;
    cgloo_request *req = NULL;
    char detail[CGLOO_ERROR_MAX];
    if (cgpy_parse(&params, args, nargs, kwnames, a) < 0 ||
        p2p_begin(self, a, CGPY_WRITE, &b, &src, "src", &tag) < 0)
        return NULL;
    CGPY_NOGIL(rc = cgloo_irecv(self->ctx, b.view.buf, (size_t)b.view.len, src, tag, &req);
               if (rc != CGLOO_OK) cgpy_ctx_detail(self, rc, detail, sizeof detail));
    return p2p_post(self, rc, req, &b, detail);
}

static PyObject *ctx_irecv_any(cgpy_Context *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    static const char *const names[] = {"buf", "srcs", "tag", NULL};
    static cgpy_params params = {"irecv_any", names, 3, 2, 0, NULL};
    PyObject *a[3];
    cgpy_buf b;
    int rc, dummy;
    uint64_t tag;
    Py_ssize_t n;
    cgloo_request *req = NULL;
    char detail[CGLOO_ERROR_MAX];
    if (cgpy_parse(&params, args, nargs, kwnames, a) < 0)
        return NULL;
    int *srcs = cgpy_ints(a[1], "srcs", -1, &n);
    if (!srcs || p2p_begin(self, a, CGPY_WRITE, &b, &dummy, NULL, &tag) < 0) {
        PyMem_Free(srcs);
        return NULL;
    }
    CGPY_NOGIL(
        rc = cgloo_irecv_any(self->ctx, b.view.buf, (size_t)b.view.len, srcs, (size_t)n, tag, &req);
        if (rc != CGLOO_OK) cgpy_ctx_detail(self, rc, detail, sizeof detail));
    PyMem_Free(srcs);
    return p2p_post(self, rc, req, &b, detail);
}

/* ---- the type ---- */

#define FASTCALL(fn) (PyCFunction)(void (*)(void))(fn), METH_FASTCALL | METH_KEYWORDS

static PyMethodDef ctx_methods[] = {
    {"send", FASTCALL(ctx_send),
     "send(buf, dst, tag=0, timeout=None)\n--\n\nSend the bytes of buf to rank dst; blocks "
     "until the library no longer needs buf. Raises cgloo.TimeoutError, PeerError, ..."},
    {"recv", FASTCALL(ctx_recv),
     "recv(buf, src, tag=0, timeout=None)\n--\n\nReceive a message from rank src into the "
     "writable buf; returns its length in bytes. A longer message raises TruncatedError."},
    {"recv_any", FASTCALL(ctx_recv_any),
     "recv_any(buf, srcs, tag=0, timeout=None)\n--\n\nReceive from whichever of the ranks in "
     "srcs sends first; returns (source, nbytes)."},
    {"isend", FASTCALL(ctx_isend),
     "isend(buf, dst, tag=0)\n--\n\nStart sending buf to dst; returns a Request that holds buf "
     "until it completes."},
    {"irecv", FASTCALL(ctx_irecv),
     "irecv(buf, src, tag=0)\n--\n\nStart receiving from src into buf; returns a Request."},
    {"irecv_any", FASTCALL(ctx_irecv_any),
     "irecv_any(buf, srcs, tag=0)\n--\n\nStart receiving from any of srcs into buf; returns a "
     "Request."},
    {"split", FASTCALL(ctx_split),
     PyDoc_STR("split(color, key=0) -> Context or None: a sub-context of the ranks that give "
               "the same color, ordered by key then rank (MPI_Comm_split). Every rank calls it; "
               "a negative color takes part and gets None. The child has its own connections "
               "and may be closed before or after this context.")},
    {"abort", (PyCFunction)ctx_abort, METH_NOARGS,
     "abort()\n--\n\nMake every call waiting on the context, and every later one, raise "
     "cgloo.AbortedError. Safe from any thread."},
    {"dump", (PyCFunction)ctx_dump, METH_NOARGS,
     "dump()\n--\n\nThe flight recorder: the context's latest operations, one a line, oldest "
     "first (cgloo_context_dump). Safe while other threads run collectives."},
    {"last_error", (PyCFunction)ctx_last_error, METH_NOARGS,
     "last_error()\n--\n\nThe detail of the latest error on the context (\"\" if none)."},
    {"close", (PyCFunction)ctx_close, METH_NOARGS,
     "close()\n--\n\nClose every connection and free the context. Pending requests are "
     "cancelled; calls other threads are making are aborted. Idempotent."},
    {"__enter__", (PyCFunction)ctx_enter_cm, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)ctx_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef ctx_members[] = {
    {"rank", T_INT, offsetof(cgpy_Context, rank), READONLY, "This process's rank."},
    {"size", T_INT, offsetof(cgpy_Context, size), READONLY, "The number of ranks."},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef ctx_getset[] = {
    {"timeout", (getter)ctx_get_timeout, (setter)ctx_set_timeout,
     "The default timeout of every blocking call, in seconds.", NULL},
    {"closed", (getter)ctx_closed, NULL, "True once close() was called.", NULL},
    {"connections", (getter)ctx_get_connections, NULL,
     "How many peers have a live connection now (lazy contexts: those talked to).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

int cgpy_context_type_init(void)
{
    size_t n = sizeof ctx_methods / sizeof ctx_methods[0], m = 0;
    while (cgpy_coll_methods[m].ml_name)
        m++;
    PyMethodDef *all = PyMem_Calloc(n + m, sizeof *all);
    if (!all) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(all, cgpy_coll_methods, m * sizeof *all);
    memcpy(all + m, ctx_methods, n * sizeof *all); /* ends with ctx_methods' NULL entry */
    cgpy_ContextType.tp_methods = all;
    return 0;
}

PyTypeObject cgpy_ContextType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cgloo.Context",
    .tp_basicsize = sizeof(cgpy_Context),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Context(rank, size, store=None, device=None, timeout=None, name=None)\n--\n\n"
              "One communicator of size ranks, connected as a full mesh through store (needed "
              "when size > 1) on device (None: a default TCP device the context owns). timeout "
              "is the default of every blocking call in seconds (None: CGLOO_TIMEOUT_MS or 30); "
              "name tells apart communicators sharing a store. A context manager that closes it.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)ctx_init,
    .tp_dealloc = (destructor)ctx_dealloc,
    .tp_repr = (reprfunc)ctx_repr,
    .tp_members = ctx_members,
    .tp_getset = ctx_getset,
    .tp_weaklistoffset = offsetof(cgpy_Context, weakrefs),
};
