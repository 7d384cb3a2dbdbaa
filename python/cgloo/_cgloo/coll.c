/*
 * The collectives as Context methods. Each method parses its arguments by hand (FASTCALL),
 * takes its buffers and checks their sizes and dtypes so that mistakes raise a TypeError or
 * ValueError naming the argument before any message is sent, then runs the library call with
 * the GIL released through coll_exec. A call with no options passes NULL options.
 *
 * A custom reduction (reduce_fn) is a Python callable the library calls on whatever thread runs
 * the collective; it takes the GIL, gets the two blocks as arrays (or memoryviews without numpy)
 * and must write the result into the first. Its first exception is kept and raised once the
 * collective returns (later blocks are left unreduced: the result is garbage anyway).
 */
#include "cgloo_py.h"

/* A custom reduction's state for one call. */
typedef struct user_reduce {
    PyObject *fn;
    int failed;
    PyObject *type, *value, *tb;
} user_reduce;

/* Everything one collective call needs. */
typedef struct coll_call {
    cgloo_coll_opts opts;
    const cgloo_coll_opts *popts; /* NULL when every option is the default */
    int dtype;                    /* the dtype= override, or -1 */
    int op, root, rank, size;
    user_reduce ur;
    cgpy_buf send, recv;
    const void *sp;
    void *rp;
    size_t count;
    size_t *counts, *counts2; /* v variants */
    cgpy_buf *bufs;           /* allreduce_multi: the buffers held (nheld of them) */
    size_t nsend, nrecv, nheld;
    const void **sps;
    void **rps;
    int nb;              /* the non-blocking form: start it and hand out a Request */
    cgloo_request **req; /* where the non-blocking form puts its request */
} coll_call;

typedef int (*coll_fn)(cgloo_context *ctx, coll_call *c);

/* COLL_CALL(name, args...) is cgloo_i<name>(args..., c->req) for the non-blocking form, else
 * cgloo_<name>(args...): one run function serves both forms of a method. */
#define COLL_CALL(name, ...)                                                                       \
    (c->req ? cgloo_i##name(__VA_ARGS__, c->req) : cgloo_##name(__VA_ARGS__))

/* ---- the custom reduction ---- */

static void release_view(PyObject *mv)
{
    if (!mv)
        return;
    PyObject *r = PyObject_CallMethod(mv, "release", NULL);
    if (!r)
        PyErr_Clear(); /* still exported (the callable kept an array): nothing more to do */
    Py_XDECREF(r);
    Py_DECREF(mv);
}

static void user_reduce_call(void *inout, const void *in, size_t count, cgloo_dtype dtype,
                             void *user)
{
    user_reduce *u = user;
    PyGILState_STATE g = PyGILState_Ensure();
    if (!u->failed) {
        PyObject *mva = NULL, *mvb = NULL;
        PyObject *a = cgpy_dtype_view(inout, count, dtype, 1, &mva);
        PyObject *b = a ? cgpy_dtype_view((void *)in, count, dtype, 0, &mvb) : NULL;
        PyObject *r = b ? PyObject_CallFunctionObjArgs(u->fn, a, b, NULL) : NULL;
        if (!r) {
            u->failed = 1;
            PyErr_Fetch(&u->type, &u->value, &u->tb);
        }
        Py_XDECREF(r);
        Py_XDECREF(a);
        Py_XDECREF(b);
        release_view(mva);
        release_view(mvb);
    }
    PyGILState_Release(g);
}

/* ---- options ---- */

enum { O_ALGORITHM, O_TAG, O_TIMEOUT, O_DTYPE, O_REDUCE_FN, O_RADIX };

/* coll_opts reads the keyword-only options o[0..n) (in the order of the enum above). */
static int coll_opts(coll_call *c, PyObject *const *o, int n)
{
    int any = 0;
    for (int i = 0; i < n; i++)
        any |= o[i] != NULL && o[i] != Py_None;
    c->dtype = -1;
    c->popts = NULL;
    if (!any)
        return 0;
    if (cgpy_str(o[O_ALGORITHM], "algorithm", &c->opts.algorithm) < 0 ||
        cgpy_u64(o[O_TAG], "tag", &c->opts.tag) < 0 ||
        cgpy_timeout_ms(o[O_TIMEOUT], &c->opts.timeout_ms) < 0 ||
        cgpy_dtype_arg(o[O_DTYPE], &c->dtype) < 0)
        return -1;
    if (n > O_REDUCE_FN && o[O_REDUCE_FN] && o[O_REDUCE_FN] != Py_None) {
        if (!PyCallable_Check(o[O_REDUCE_FN])) {
            PyErr_SetString(PyExc_TypeError, "reduce_fn must be callable");
            return -1;
        }
        c->ur.fn = o[O_REDUCE_FN];
        c->opts.reduce_fn = user_reduce_call;
        c->opts.reduce_user = &c->ur;
    }
    if (n > O_RADIX && cgpy_int(o[O_RADIX], "radix", 0, &c->opts.radix) < 0)
        return -1;
    c->popts = &c->opts;
    return 0;
}

/* coll_op reads op= (default SUM). */
static int coll_op(coll_call *c, PyObject *o)
{
    if (cgpy_int(o, "op", CGLOO_SUM, &c->op) < 0)
        return -1;
    if (c->op < 0 || c->op >= CGLOO_OP_COUNT) {
        PyErr_Format(PyExc_ValueError, "op %d is not a cgloo.Op", c->op);
        return -1;
    }
    return 0;
}

static void coll_init(coll_call *c, cgpy_Context *self, int nb)
{
    memset(c, 0, sizeof *c);
    c->rank = self->rank;
    c->size = self->size;
    c->nb = nb;
}

static void coll_free(coll_call *c)
{
    cgpy_buf_release(&c->send);
    cgpy_buf_release(&c->recv);
    for (size_t i = 0; c->bufs && i < c->nheld; i++)
        cgpy_buf_release(&c->bufs[i]);
    PyMem_Free(c->bufs);
    PyMem_Free(c->sps);
    PyMem_Free(c->rps);
    PyMem_Free(c->counts);
    PyMem_Free(c->counts2);
    c->bufs = NULL;
    c->sps = NULL;
    c->rps = NULL;
    c->counts = c->counts2 = NULL;
    c->nheld = 0;
}

/* coll_exec runs fn without the GIL, then raises for a failure (a custom reduction's exception
 * first). The call's resources are freed either way. Returns 0 or -1. */
static int coll_exec(cgpy_Context *self, coll_call *c, coll_fn fn)
{
    char detail[CGLOO_ERROR_MAX];
    int rc;
    if (cgpy_ctx_enter(self) < 0) {
        coll_free(c);
        return -1;
    }
    CGPY_NOGIL(rc = fn(self->ctx, c);
               if (rc != CGLOO_OK) cgpy_ctx_detail(self, rc, detail, sizeof detail));
    coll_free(c);
    int ret = cgpy_ctx_leave(self, rc, detail);
    if (c->ur.failed) {
        if (ret < 0)
            PyErr_Clear();
        PyErr_Restore(c->ur.type, c->ur.value, c->ur.tb);
        ret = -1;
    }
    return ret;
}

/* coll_start is coll_exec for the non-blocking form: the call moves to the heap (the library
 * keeps pointers to its reduction state), is started without the GIL, and goes to a Request
 * that holds its buffers and returns `result` from wait(). */
static PyObject *coll_start(cgpy_Context *self, coll_call *c, coll_fn fn, PyObject *result)
{
    coll_call *held = PyMem_Malloc(sizeof *held);
    if (!held) {
        coll_free(c);
        return PyErr_NoMemory();
    }
    *held = *c;
    if (held->popts)
        held->popts = &held->opts;
    if (held->ur.fn) {
        held->opts.reduce_user = &held->ur;
        Py_INCREF(held->ur.fn); /* the caller's argument may go before the collective runs */
    }
    cgloo_request *req = NULL;
    held->req = &req;
    char detail[CGLOO_ERROR_MAX];
    int rc;
    if (cgpy_ctx_enter(self) < 0) {
        cgpy_coll_free(held);
        return NULL;
    }
    CGPY_NOGIL(rc = fn(self->ctx, held);
               if (rc != CGLOO_OK) cgpy_ctx_detail(self, rc, detail, sizeof detail));
    held->req = NULL;
    if (cgpy_ctx_leave(self, rc, detail) < 0) {
        cgpy_coll_free(held);
        return NULL;
    }
    return cgpy_request_new_coll(self, req, held, result);
}

/* coll_run ends every collective method: run the call (or start it, for the i form) and return
 * `result` (or a Request whose wait() returns it). */
static PyObject *coll_run(cgpy_Context *self, coll_call *c, coll_fn fn, PyObject *result)
{
    if (c->nb)
        return coll_start(self, c, fn, result);
    if (coll_exec(self, c, fn) < 0)
        return NULL;
    return Py_NewRef(result);
}

void cgpy_coll_release(coll_call *c)
{
    coll_free(c);
}

int cgpy_coll_raise(coll_call *c)
{
    if (!c->ur.failed)
        return 0;
    c->ur.failed = 0;
    PyErr_Restore(c->ur.type, c->ur.value, c->ur.tb);
    c->ur.type = c->ur.value = c->ur.tb = NULL;
    return -1;
}

void cgpy_coll_free(coll_call *c)
{
    if (!c)
        return;
    coll_free(c);
    Py_XDECREF(c->ur.fn);
    Py_XDECREF(c->ur.type);
    Py_XDECREF(c->ur.value);
    Py_XDECREF(c->ur.tb);
    PyMem_Free(c);
}

/* ---- buffer checks ---- */

/* get_buf takes a buffer with the call's dtype override; `first`, if given, is the buffer whose
 * dtype this one must have. */
static int get_buf(coll_call *c, PyObject *o, const char *name, int mode, cgpy_buf *b,
                   const cgpy_buf *first, const char *first_name)
{
    if (!o || o == Py_None) {
        PyErr_Format(PyExc_TypeError, "%s is required", name);
        return -1;
    }
    if (cgpy_buf_get(o, name, mode, c->dtype, b) < 0)
        return -1;
    if (first && cgpy_same_dtype(b, name, first->dtype, first_name) < 0) {
        cgpy_buf_release(b);
        return -1;
    }
    return 0;
}

/* need checks a buffer's element count: exactly `want`, or at least it when !exact. */
static int need(const cgpy_buf *b, const char *name, size_t want, int exact, const char *why)
{
    if (b->count == want || (!exact && b->count > want))
        return 0;
    PyErr_Format(PyExc_ValueError, "%s has %zu elements but %s%zu are needed (%s)", name, b->count,
                 exact ? "" : "at least ", want, why);
    return -1;
}

/* get_counts reads a list of `size` counts into *out and checks this rank's buffer against
 * it. */
static int get_counts(coll_call *c, PyObject *o, const char *name, size_t **out, size_t *sum)
{
    *out = cgpy_counts(o, name, c->size, sum);
    return *out ? 0 : -1;
}

/* ---- allreduce ---- */

static int run_allreduce(cgloo_context *ctx, coll_call *c)
{
    return COLL_CALL(allreduce, ctx, c->sp, c->rp, c->count, c->send.dtype, (cgloo_op)c->op,
                     c->popts);
}

static PyObject *allreduce_call(cgpy_Context *self, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames, int nb)
{
    static const char *const names[] = {"sendbuf", "recvbuf", "op",        "algorithm", "tag",
                                        "timeout", "dtype",   "reduce_fn", "radix",     NULL};
    static cgpy_params params = {"allreduce", names, 3, 1, 0, NULL};
    PyObject *a[9];
    coll_call c;
    if (cgpy_parse(&params, args, nargs, kwnames, a) < 0)
        return NULL;
    coll_init(&c, self, nb);
    int inplace = !a[1] || a[1] == Py_None;
    if (coll_op(&c, a[2]) < 0 || coll_opts(&c, a + 3, 6) < 0 ||
        cgpy_buf_get(a[0], "sendbuf", inplace ? CGPY_WRITE : CGPY_READ, c.dtype, &c.send) < 0)
        goto fail;
    c.count = c.send.count;
    c.sp = c.send.view.buf;
    c.rp = c.send.view.buf;
    if (!inplace) {
        if (get_buf(&c, a[1], "recvbuf", CGPY_WRITE, &c.recv, &c.send, "sendbuf") < 0 ||
            need(&c.recv, "recvbuf", c.count, 1, "as many as sendbuf") < 0)
            goto fail;
        c.rp = c.recv.view.buf;
    }
    return coll_run(self, &c, run_allreduce, inplace ? a[0] : a[1]);
fail:
    coll_free(&c);
    return NULL;
}

/* ---- allreduce_multi ---- */

static int run_allreduce_multi(cgloo_context *ctx, coll_call *c)
{
    return COLL_CALL(allreduce_multi, ctx, c->sps, c->nsend, c->rps, c->nrecv, c->count,
                     c->bufs[0].dtype, (cgloo_op)c->op, c->popts);
}

/* multi_buf takes buffer i of the lists (inputs first, then outputs; in place the inputs are
 * the outputs), checking it against the first. */
static int multi_buf(coll_call *c, PyObject *sends, PyObject *recvs, size_t i, int inplace)
{
    int is_send = i < c->nsend;
    PyObject *o = is_send ? PySequence_Fast_GET_ITEM(sends, (Py_ssize_t)i)
                          : PySequence_Fast_GET_ITEM(recvs, (Py_ssize_t)(i - c->nsend));
    const char *name = is_send ? "sendbufs" : "recvbufs";
    int mode = is_send && !inplace ? CGPY_READ : CGPY_WRITE;
    if (get_buf(c, o, name, mode, &c->bufs[i], i ? &c->bufs[0] : NULL, "sendbufs[0]") < 0)
        return -1;
    c->nheld = i + 1;
    if (need(&c->bufs[i], name, c->bufs[0].count, 1, "as many as sendbufs[0]") < 0)
        return -1;
    if (is_send)
        c->sps[i] = c->bufs[i].view.buf;
    if (!is_send || inplace)
        c->rps[is_send ? i : i - c->nsend] = c->bufs[i].view.buf;
    return 0;
}

/* multi_bufs takes every buffer of the lists, all of one dtype and count. */
static int multi_bufs(coll_call *c, PyObject *sends, PyObject *recvs, int inplace)
{
    size_t n = inplace ? c->nsend : c->nsend + c->nrecv;
    c->bufs = PyMem_Calloc(n + 1, sizeof *c->bufs);
    c->sps = PyMem_Calloc(c->nsend + 1, sizeof *c->sps);
    c->rps = PyMem_Calloc(c->nrecv + 1, sizeof *c->rps);
    if (!c->bufs || !c->sps || !c->rps) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (multi_buf(c, sends, recvs, i, inplace) < 0)
            return -1;
    c->count = c->bufs[0].count;
    return 0;
}

static PyObject *allreduce_multi_call(cgpy_Context *self, PyObject *const *args, Py_ssize_t nargs,
                                      PyObject *kwnames, int nb)
{
    static const char *const names[] = {"sendbufs", "recvbufs", "op",        "algorithm", "tag",
                                        "timeout",  "dtype",    "reduce_fn", "radix",     NULL};
    static cgpy_params params = {"allreduce_multi", names, 3, 1, 0, NULL};
    PyObject *a[9], *sends = NULL, *recvs = NULL;
    coll_call c;
    if (cgpy_parse(&params, args, nargs, kwnames, a) < 0)
        return NULL;
    coll_init(&c, self, nb);
    int inplace = !a[1] || a[1] == Py_None;
    if (coll_op(&c, a[2]) < 0 || coll_opts(&c, a + 3, 6) < 0 ||
        !(sends = PySequence_Fast(a[0], "sendbufs must be a sequence of buffers")) ||
        (!inplace && !(recvs = PySequence_Fast(a[1], "recvbufs must be a sequence of buffers"))))
        goto fail;
    c.nsend = (size_t)PySequence_Fast_GET_SIZE(sends);
    c.nrecv = inplace ? c.nsend : (size_t)PySequence_Fast_GET_SIZE(recvs);
    if (c.nsend == 0 || c.nrecv == 0) {
        PyErr_SetString(PyExc_ValueError, "allreduce_multi needs at least one buffer");
        goto fail;
    }
    if (multi_bufs(&c, sends, recvs, inplace) < 0)
        goto fail;
    Py_XDECREF(sends);
    Py_XDECREF(recvs);
    return coll_run(self, &c, run_allreduce_multi, inplace ? a[0] : a[1]);
fail:
    Py_XDECREF(sends);
    Py_XDECREF(recvs);
    coll_free(&c);
    return NULL;
}

/* ---- reduce_scatter ---- */

static int run_reduce_scatter(cgloo_context *ctx, coll_call *c)
{
    return COLL_CALL(reduce_scatter, ctx, c->sp, c->rp, c->count, c->send.dtype, (cgloo_op)c->op,
                     c->popts);
}

static int run_reduce_scatterv(cgloo_context *ctx, coll_call *c)
{
    return COLL_CALL(reduce_scatterv, ctx, c->sp, c->rp, c->counts, c->send.dtype, (cgloo_op)c->op,
                     c->popts);
}

/* send_recv takes sendbuf and recvbuf; the same object given twice is taken once, writable
 * (the library works in place then). */
static int send_recv(coll_call *c, PyObject *send, PyObject *recv)
{
    int same = send == recv;
    if (get_buf(c, send, "sendbuf", same ? CGPY_WRITE : CGPY_READ, &c->send, NULL, NULL) < 0)
        return -1;
    c->sp = c->send.view.buf;
    c->rp = c->send.view.buf;
    if (same) {
        c->recv.count = c->send.count;
        c->recv.dtype = c->send.dtype;
        return 0;
    }
    if (get_buf(c, recv, "recvbuf", CGPY_WRITE, &c->recv, &c->send, "sendbuf") < 0)
        return -1;
    c->rp = c->recv.view.buf;
    return 0;
}

static PyObject *reduce_scatter_call(cgpy_Context *self, PyObject *const *args, Py_ssize_t nargs,
                                     PyObject *kwnames, int nb)
{
    static const char *const names[] = {"sendbuf", "recvbuf", "op",        "algorithm", "tag",
                                        "timeout", "dtype",   "reduce_fn", NULL};
    static cgpy_params params = {"reduce_scatter", names, 3, 2, 0, NULL};
    PyObject *a[8];
    coll_call c;
    if (cgpy_parse(&params, args, nargs, kwnames, a) < 0)
        return NULL;
    coll_init(&c, self, nb);
    if (coll_op(&c, a[2]) < 0 || coll_opts(&c, a + 3, 5) < 0 || send_recv(&c, a[0], a[1]) < 0)
        goto fail;
    c.count = a[0] == a[1] ? c.send.count / (size_t)c.size : c.recv.count;
    if (need(&c.send, "sendbuf", c.count * (size_t)c.size, 1, "size blocks of recvbuf's count") < 0)
        goto fail;
    return coll_run(self, &c, run_reduce_scatter, a[1]);
fail:
    coll_free(&c);
    return NULL;
}

static PyObject *reduce_scatterv_call(cgpy_Context *self, PyObject *const *args, Py_ssize_t nargs,
                                      PyObject *kwnames, int nb)
{
    static const char *const names[] = {"sendbuf",   "recvbuf", "recvcounts", "op",
                                        "algorithm", "tag",     "timeout",    "dtype",
                                        "reduce_fn", NULL};
    static cgpy_params params = {"reduce_scatterv", names, 4, 3, 0, NULL};
    PyObject *a[9];
    coll_call c;
    size_t sum;
    if (cgpy_parse(&params, args, nargs, kwnames, a) < 0)
        return NULL;
    coll_init(&c, self, nb);
    if (coll_op(&c, a[3]) < 0 || coll_opts(&c, a + 4, 5) < 0 ||
        get_counts(&c, a[2], "recvcounts", &c.counts, &sum) < 0 || send_recv(&c, a[0], a[1]) < 0 ||
        need(&c.send, "sendbuf", sum, 0, "the sum of recvcounts") < 0 ||
        need(&c.recv, "recvbuf", c.counts[c.rank], 0, "recvcounts[rank]") < 0)
        goto fail;
    return coll_run(self, &c, run_reduce_scatterv, a[1]);
fail:
    coll_free(&c);
    return NULL;
}

/* ---- allgather ---- */

static int run_allgather(cgloo_context *ctx, coll_call *c)
{
    return COLL_CALL(allgather, ctx, c->sp, c->rp, c->count, c->send.dtype, c->popts);
}

static int run_allgatherv(cgloo_context *ctx, coll_call *c)
{
    return COLL_CALL(allgatherv, ctx, c->sp, c->count, c->rp, c->counts, c->send.dtype, c->popts);
}

static PyObject *allgather_call(cgpy_Context *self, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames, int nb)
{
    static const char *const names[] = {"sendbuf", "recvbuf", "algorithm", "tag",
                                        "timeout", "dtype",   NULL};
    static cgpy_params params = {"allgather", names, 2, 2, 0, NULL};
    PyObject *a[6];
    coll_call c;
    if (cgpy_parse(&params, args, nargs, kwnames, a) < 0)
        return NULL;
    coll_init(&c, self, nb);
    if (coll_opts(&c, a + 2, 4) < 0 || send_recv(&c, a[0], a[1]) < 0)
        goto fail;
    c.count = c.send.count;
    if (need(&c.recv, "recvbuf", c.count * (size_t)c.size, 1, "size times sendbuf's count") < 0)
        goto fail;
    return coll_run(self, &c, run_allgather, a[1]);
fail:
    coll_free(&c);
    return NULL;
}

static PyObject *allgatherv_call(cgpy_Context *self, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames, int nb)
{
    static const char *const names[] = {"sendbuf", "recvbuf", "recvcounts", "algorithm",
                                        "tag",     "timeout", "dtype",      NULL};
    static cgpy_params params = {"allgatherv", names, 3, 3, 0, NULL};
    PyObject *a[7];
    coll_call c;
    size_t sum;
    if (cgpy_parse(&params, args, nargs, kwnames, a) < 0)
        return NULL;
    coll_init(&c, self, nb);
    if (coll_opts(&c, a + 3, 4) < 0 || get_counts(&c, a[2], "recvcounts", &c.counts, &sum) < 0 ||
        send_recv(&c, a[0], a[1]) < 0 ||
        need(&c.send, "sendbuf", c.counts[c.rank], 1, "recvcounts[rank]") < 0 ||
        need(&c.recv, "recvbuf", sum, 0, "the sum of recvcounts") < 0)
        goto fail;
    c.count = c.send.count;
    return coll_run(self, &c, run_allgatherv, a[1]);
fail:
    coll_free(&c);
    return NULL;
}

/* ---- broadcast ---- */

static int run_broadcast(cgloo_context *ctx, coll_call *c)
{
    return COLL_CALL(broadcast, ctx, c->rp, c->count, c->send.dtype, c->root, c->popts);
}

static PyObject *broadcast_call(cgpy_Context *self, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames, int nb)
{
    static const char *const names[] = {"buf",     "root",  "algorithm", "tag",
                                        "timeout", "dtype", NULL};
    static cgpy_params params = {"broadcast", names, 2, 1, 0, NULL};
    PyObject *a[6];
    coll_call c;
    if (cgpy_parse(&params, args, nargs, kwnames, a) < 0)
        return NULL;
    coll_init(&c, self, nb);
    if (cgpy_int(a[1], "root", 0, &c.root) < 0 || coll_opts(&c, a + 2, 4) < 0 ||
        get_buf(&c, a[0], "buf", c.root == c.rank ? CGPY_READ : CGPY_WRITE, &c.send, NULL, NULL) <
            0)
        goto fail;
    c.count = c.send.count;
    c.rp = c.send.view.buf; /* the root's buffer is only read */
    return coll_run(self, &c, run_broadcast, a[0]);
fail:
    coll_free(&c);
    return NULL;
}

/* ---- reduce ---- */

static int run_reduce(cgloo_context *ctx, coll_call *c)
{
    return COLL_CALL(reduce, ctx, c->sp, c->rp, c->count, c->send.dtype, (cgloo_op)c->op, c->root,
                     c->popts);
}

static PyObject *reduce_call(cgpy_Context *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames, int nb)
{
    static const char *const names[] = {"sendbuf", "recvbuf", "op",    "root",      "algorithm",
                                        "tag",     "timeout", "dtype", "reduce_fn", NULL};
    static cgpy_params params = {"reduce", names, 4, 1, 0, NULL};
    PyObject *a[9];
    coll_call c;
    if (cgpy_parse(&params, args, nargs, kwnames, a) < 0)
        return NULL;
    coll_init(&c, self, nb);
    int inplace = !a[1] || a[1] == Py_None;
    if (coll_op(&c, a[2]) < 0 || cgpy_int(a[3], "root", 0, &c.root) < 0 ||
        coll_opts(&c, a + 4, 5) < 0)
        goto fail;
    int at_root = c.root == c.rank;
    if (inplace || !at_root) {
        /* Off the root the result goes nowhere: recvbuf is not looked at. */
        int mode = inplace && at_root ? CGPY_WRITE : CGPY_READ;
        if (get_buf(&c, a[0], "sendbuf", mode, &c.send, NULL, NULL) < 0)
            goto fail;
        c.sp = c.send.view.buf;
        c.rp = at_root ? c.send.view.buf : NULL;
    } else if (send_recv(&c, a[0], a[1]) < 0 ||
               need(&c.recv, "recvbuf", c.send.count, 1, "as many as sendbuf") < 0) {
        goto fail;
    }
    c.count = c.send.count;
    return coll_run(self, &c, run_reduce, inplace ? a[0] : a[1]);
fail:
    coll_free(&c);
    return NULL;
}

/* ---- gather ---- */

static int run_gather(cgloo_context *ctx, coll_call *c)
{
    return COLL_CALL(gather, ctx, c->sp, c->rp, c->count, c->send.dtype, c->root, c->popts);
}

static int run_gatherv(cgloo_context *ctx, coll_call *c)
{
    return COLL_CALL(gatherv, ctx, c->sp, c->count, c->rp, c->counts, c->send.dtype, c->root,
                     c->popts);
}

/* rooted_send_recv takes sendbuf everywhere and recvbuf on the root only (required there). */
static int rooted_send_recv(coll_call *c, PyObject *send, PyObject *recv)
{
    if (c->root == c->rank)
        return send_recv(c, send, recv);
    if (get_buf(c, send, "sendbuf", CGPY_READ, &c->send, NULL, NULL) < 0)
        return -1;
    c->sp = c->send.view.buf;
    c->rp = NULL;
    return 0;
}

static PyObject *gather_call(cgpy_Context *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames, int nb)
{
    static const char *const names[] = {"sendbuf", "recvbuf", "root",  "algorithm",
                                        "tag",     "timeout", "dtype", NULL};
    static cgpy_params params = {"gather", names, 3, 1, 0, NULL};
    PyObject *a[7];
    coll_call c;
    if (cgpy_parse(&params, args, nargs, kwnames, a) < 0)
        return NULL;
    coll_init(&c, self, nb);
    if (cgpy_int(a[2], "root", 0, &c.root) < 0 || coll_opts(&c, a + 3, 4) < 0 ||
        rooted_send_recv(&c, a[0], a[1]) < 0)
        goto fail;
    c.count = c.send.count;
    if (c.rp &&
        need(&c.recv, "recvbuf", c.count * (size_t)c.size, 1, "size times sendbuf's count") < 0)
        goto fail;
    return coll_run(self, &c, run_gather, a[1] ? a[1] : Py_None);
fail:
    coll_free(&c);
    return NULL;
}

static PyObject *gatherv_call(cgpy_Context *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames, int nb)
{
    static const char *const names[] = {"sendbuf", "recvbuf", "recvcounts", "root", "algorithm",
                                        "tag",     "timeout", "dtype",      NULL};
    static cgpy_params params = {"gatherv", names, 4, 3, 0, NULL};
    PyObject *a[8];
    coll_call c;
    size_t sum;
    if (cgpy_parse(&params, args, nargs, kwnames, a) < 0)
        return NULL;
    coll_init(&c, self, nb);
    if (cgpy_int(a[3], "root", 0, &c.root) < 0 || coll_opts(&c, a + 4, 4) < 0 ||
        get_counts(&c, a[2], "recvcounts", &c.counts, &sum) < 0 ||
        rooted_send_recv(&c, a[0], a[1]) < 0 ||
        need(&c.send, "sendbuf", c.counts[c.rank], 1, "recvcounts[rank]") < 0 ||
        (c.rp && need(&c.recv, "recvbuf", sum, 0, "the sum of recvcounts") < 0))
        goto fail;
    c.count = c.send.count;
    return coll_run(self, &c, run_gatherv, a[1]);
fail:
    coll_free(&c);
    return NULL;
}

/* ---- scatter ---- */

static int run_scatter(cgloo_context *ctx, coll_call *c)
{
    return COLL_CALL(scatter, ctx, c->sp, c->rp, c->count, c->recv.dtype, c->root, c->popts);
}

static int run_scatterv(cgloo_context *ctx, coll_call *c)
{
    return COLL_CALL(scatterv, ctx, c->sp, c->counts, c->rp, c->count, c->recv.dtype, c->root,
                     c->popts);
}

/* recv_rooted takes recvbuf everywhere and sendbuf on the root only (required there). */
static int recv_rooted(coll_call *c, PyObject *send, PyObject *recv)
{
    if (get_buf(c, recv, "recvbuf", CGPY_WRITE, &c->recv, NULL, NULL) < 0)
        return -1;
    c->rp = c->recv.view.buf;
    c->sp = NULL;
    if (c->root != c->rank)
        return 0;
    if (get_buf(c, send, "sendbuf", CGPY_READ, &c->send, &c->recv, "recvbuf") < 0)
        return -1;
    c->sp = c->send.view.buf;
    return 0;
}

static PyObject *scatter_call(cgpy_Context *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames, int nb)
{
    static const char *const names[] = {"sendbuf", "recvbuf", "root",  "algorithm",
                                        "tag",     "timeout", "dtype", NULL};
    static cgpy_params params = {"scatter", names, 3, 2, 0, NULL};
    PyObject *a[7];
    coll_call c;
    if (cgpy_parse(&params, args, nargs, kwnames, a) < 0)
        return NULL;
    coll_init(&c, self, nb);
    if (cgpy_int(a[2], "root", 0, &c.root) < 0 || coll_opts(&c, a + 3, 4) < 0 ||
        recv_rooted(&c, a[0], a[1]) < 0)
        goto fail;
    c.count = c.recv.count;
    if (c.sp &&
        need(&c.send, "sendbuf", c.count * (size_t)c.size, 1, "size times recvbuf's count") < 0)
        goto fail;
    return coll_run(self, &c, run_scatter, a[1]);
fail:
    coll_free(&c);
    return NULL;
}

static PyObject *scatterv_call(cgpy_Context *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames, int nb)
{
    static const char *const names[] = {"sendbuf", "sendcounts", "recvbuf", "root", "algorithm",
                                        "tag",     "timeout",    "dtype",   NULL};
    static cgpy_params params = {"scatterv", names, 4, 3, 0, NULL};
    PyObject *a[8];
    coll_call c;
    size_t sum;
    if (cgpy_parse(&params, args, nargs, kwnames, a) < 0)
        return NULL;
    coll_init(&c, self, nb);
    if (cgpy_int(a[3], "root", 0, &c.root) < 0 || coll_opts(&c, a + 4, 4) < 0 ||
        get_counts(&c, a[1], "sendcounts", &c.counts, &sum) < 0 ||
        recv_rooted(&c, a[0], a[2]) < 0 ||
        need(&c.recv, "recvbuf", c.counts[c.rank], 0, "sendcounts[rank]") < 0 ||
        (c.sp && need(&c.send, "sendbuf", sum, 0, "the sum of sendcounts") < 0))
        goto fail;
    c.count = c.counts[c.rank];
    return coll_run(self, &c, run_scatterv, a[2]);
fail:
    coll_free(&c);
    return NULL;
}

/* ---- alltoall ---- */

static int run_alltoall(cgloo_context *ctx, coll_call *c)
{
    return COLL_CALL(alltoall, ctx, c->sp, c->rp, c->count, c->send.dtype, c->popts);
}

static int run_alltoallv(cgloo_context *ctx, coll_call *c)
{
    return COLL_CALL(alltoallv, ctx, c->sp, c->counts, c->rp, c->counts2, c->send.dtype, c->popts);
}

static PyObject *alltoall_call(cgpy_Context *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames, int nb)
{
    static const char *const names[] = {"sendbuf", "recvbuf", "algorithm", "tag",
                                        "timeout", "dtype",   NULL};
    static cgpy_params params = {"alltoall", names, 2, 2, 0, NULL};
    PyObject *a[6];
    coll_call c;
    if (cgpy_parse(&params, args, nargs, kwnames, a) < 0)
        return NULL;
    coll_init(&c, self, nb);
    if (coll_opts(&c, a + 2, 4) < 0 || send_recv(&c, a[0], a[1]) < 0 ||
        need(&c.recv, "recvbuf", c.send.count, 1, "as many as sendbuf") < 0)
        goto fail;
    if (c.send.count % (size_t)c.size) {
        PyErr_Format(PyExc_ValueError, "sendbuf's %zu elements do not split into %d blocks",
                     c.send.count, c.size);
        goto fail;
    }
    c.count = c.send.count / (size_t)c.size;
    return coll_run(self, &c, run_alltoall, a[1]);
fail:
    coll_free(&c);
    return NULL;
}

static PyObject *alltoallv_call(cgpy_Context *self, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames, int nb)
{
    static const char *const names[] = {"sendbuf",    "sendcounts", "recvbuf",
                                        "recvcounts", "algorithm",  "tag",
                                        "timeout",    "dtype",      NULL};
    static cgpy_params params = {"alltoallv", names, 4, 4, 0, NULL};
    PyObject *a[8];
    coll_call c;
    size_t ssum, rsum;
    if (cgpy_parse(&params, args, nargs, kwnames, a) < 0)
        return NULL;
    coll_init(&c, self, nb);
    if (coll_opts(&c, a + 4, 4) < 0 || get_counts(&c, a[1], "sendcounts", &c.counts, &ssum) < 0 ||
        get_counts(&c, a[3], "recvcounts", &c.counts2, &rsum) < 0 ||
        send_recv(&c, a[0], a[2]) < 0 ||
        need(&c.send, "sendbuf", ssum, 0, "the sum of sendcounts") < 0 ||
        need(&c.recv, "recvbuf", rsum, 0, "the sum of recvcounts") < 0)
        goto fail;
    return coll_run(self, &c, run_alltoallv, a[2]);
fail:
    coll_free(&c);
    return NULL;
}

/* ---- barrier ---- */

static int run_barrier(cgloo_context *ctx, coll_call *c)
{
    return COLL_CALL(barrier, ctx, c->popts);
}

static PyObject *barrier_call(cgpy_Context *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames, int nb)
{
    static const char *const names[] = {"algorithm", "tag", "timeout", NULL};
    static cgpy_params params = {"barrier", names, 0, 0, 0, NULL};
    PyObject *a[4] = {NULL, NULL, NULL, NULL};
    coll_call c;
    if (cgpy_parse(&params, args, nargs, kwnames, a) < 0)
        return NULL;
    coll_init(&c, self, nb);
    if (coll_opts(&c, a, 4) < 0)
        return NULL;
    return coll_run(self, &c, run_barrier, Py_None);
}

/* ---- the method table ---- */

/* ---- the methods: each collective and its non-blocking i form ---- */

#define COLL_METHODS(name)                                                                         \
    static PyObject *ctx_##name(cgpy_Context *self, PyObject *const *args, Py_ssize_t nargs,       \
                                PyObject *kwnames)                                                 \
    {                                                                                              \
        return name##_call(self, args, nargs, kwnames, 0);                                         \
    }                                                                                              \
    static PyObject *ctx_i##name(cgpy_Context *self, PyObject *const *args, Py_ssize_t nargs,      \
                                 PyObject *kwnames)                                                \
    {                                                                                              \
        return name##_call(self, args, nargs, kwnames, 1);                                         \
    }
COLL_METHODS(allreduce)
COLL_METHODS(allreduce_multi)
COLL_METHODS(reduce_scatter)
COLL_METHODS(reduce_scatterv)
COLL_METHODS(allgather)
COLL_METHODS(allgatherv)
COLL_METHODS(broadcast)
COLL_METHODS(reduce)
COLL_METHODS(gather)
COLL_METHODS(gatherv)
COLL_METHODS(scatter)
COLL_METHODS(scatterv)
COLL_METHODS(alltoall)
COLL_METHODS(alltoallv)
COLL_METHODS(barrier)

#define COLL(name, doc)                                                                            \
    {#name, (PyCFunction)(void (*)(void))ctx_##name, METH_FASTCALL | METH_KEYWORDS, doc},          \
    {                                                                                              \
        "i" #name, (PyCFunction)(void (*)(void))ctx_i##name, METH_FASTCALL | METH_KEYWORDS,        \
            "i" #name "(...)\n--\n\nStart " #name " with the same arguments and return a "         \
            "cgloo.Request at once; its wait() returns what " #name " returns. The "               \
            "buffers must stay untouched until then. Non-blocking collectives of one "             \
            "tag run in the order issued, on the context's progress thread."                       \
    }

#define OPTS                                                                                       \
    "algorithm names one of algorithm_names(collective) (None: chosen by size); tag tells apart "  \
    "collectives running at once on one context (below 2**47); timeout in seconds (None: the "     \
    "context's); dtype overrides the buffers' (e.g. cgloo.bfloat16 over uint16 data)."
#define REDUCE_OPTS                                                                                \
    " reduce_fn(inout, in_) replaces op: it gets two blocks as arrays of the dtype (bfloat16 as "  \
    "uint16; memoryviews without numpy) and must write inout op in_ into inout; it must be "       \
    "associative and commutative; its exception is raised after the collective."

PyMethodDef cgpy_coll_methods[] = {
    COLL(allreduce,
         "allreduce(sendbuf, recvbuf=None, op=SUM, *, algorithm=None, tag=0, timeout=None, "
         "dtype=None, reduce_fn=None, radix=0)\n--\n\nReduce sendbuf over all ranks into recvbuf "
         "(None: in place, into sendbuf) on every rank; returns the output buffer. radix is "
         "bcube's group size. " OPTS REDUCE_OPTS),
    COLL(allreduce_multi,
         "allreduce_multi(sendbufs, recvbufs=None, op=SUM, *, algorithm=None, tag=0, "
         "timeout=None, dtype=None, reduce_fn=None, radix=0)\n--\n\nReduce several buffers of "
         "one count and dtype locally and across ranks; every output gets the result "
         "(None: the inputs). Returns the outputs. " OPTS REDUCE_OPTS),
    COLL(reduce_scatter,
         "reduce_scatter(sendbuf, recvbuf, op=SUM, *, algorithm=None, tag=0, timeout=None, "
         "dtype=None, reduce_fn=None)\n--\n\nsendbuf holds size blocks of len(recvbuf) "
         "elements; rank r gets block r reduced over all ranks. recvbuf may be sendbuf (the "
         "result lands at its front). Returns recvbuf. " OPTS REDUCE_OPTS),
    COLL(reduce_scatterv, "reduce_scatterv(sendbuf, recvbuf, recvcounts, op=SUM, *, "
                          "algorithm=None, tag=0, "
                          "timeout=None, dtype=None, "
                          "reduce_fn=None)\n--\n\nreduce_scatter with recvcounts[r] "
                          "elements for rank r. Returns recvbuf. " OPTS REDUCE_OPTS),
    COLL(allgather, "allgather(sendbuf, recvbuf, *, algorithm=None, tag=0, timeout=None, "
                    "dtype=None)\n--\n\nrecvbuf gets every rank's sendbuf in rank order (size "
                    "times as many elements). Returns recvbuf. " OPTS),
    COLL(allgatherv, "allgatherv(sendbuf, recvbuf, recvcounts, *, algorithm=None, "
                     "tag=0, timeout=None, "
                     "dtype=None)\n--\n\nallgather where rank r sends "
                     "recvcounts[r] elements, packed back to "
                     "back. Returns recvbuf. " OPTS),
    COLL(broadcast, "broadcast(buf, root=0, *, algorithm=None, tag=0, timeout=None, "
                    "dtype=None)\n--\n\nCopy root's buf into every rank's buf. Returns "
                    "buf. " OPTS),
    COLL(reduce, "reduce(sendbuf, recvbuf=None, op=SUM, root=0, *, "
                 "algorithm=None, tag=0, "
                 "timeout=None, dtype=None, reduce_fn=None)\n--\n\nReduce "
                 "sendbuf over all ranks "
                 "into root's recvbuf (None: into sendbuf); recvbuf is not "
                 "used elsewhere. "
                 "Returns recvbuf (or sendbuf). " OPTS REDUCE_OPTS),
    COLL(gather, "gather(sendbuf, recvbuf=None, root=0, *, algorithm=None, "
                 "tag=0, timeout=None, "
                 "dtype=None)\n--\n\nroot's recvbuf gets every rank's sendbuf "
                 "in rank order; "
                 "recvbuf is needed on the root only. Returns recvbuf. " OPTS),
    COLL(gatherv, "gatherv(sendbuf, recvbuf, recvcounts, root=0, "
                  "*, algorithm=None, tag=0, "
                  "timeout=None, dtype=None)\n--\n\ngather where "
                  "rank r sends recvcounts[r] "
                  "elements (recvbuf may be None off the root). "
                  "Returns recvbuf. " OPTS),
    COLL(scatter, "scatter(sendbuf, recvbuf, root=0, *, "
                  "algorithm=None, tag=0, timeout=None, "
                  "dtype=None)\n--\n\nRank r gets block r of "
                  "root's sendbuf (sendbuf may be "
                  "None off the root). Returns recvbuf. " OPTS),
    COLL(scatterv, "scatterv(sendbuf, sendcounts, recvbuf, root=0, "
                   "*, algorithm=None, tag=0, "
                   "timeout=None, dtype=None)\n--\n\nscatter where "
                   "rank r gets sendcounts[r] "
                   "elements. Returns recvbuf. " OPTS),
    COLL(alltoall, "alltoall(sendbuf, recvbuf, *, "
                   "algorithm=None, tag=0, timeout=None, "
                   "dtype=None)\n--\n\nBlock j of rank i's "
                   "sendbuf lands as block i of rank j's "
                   "recvbuf (recvbuf may be sendbuf). Returns "
                   "recvbuf. " OPTS),
    COLL(alltoallv, "alltoallv(sendbuf, sendcounts, recvbuf, "
                    "recvcounts, *, algorithm=None, tag=0, "
                    "timeout=None, dtype=None)\n--\n\nalltoall "
                    "with sendcounts[j] elements to rank j and "
                    "recvcounts[j] from it, packed back to "
                    "back. Returns recvbuf. " OPTS),
    COLL(barrier, "barrier(*, algorithm=None, tag=0, "
                  "timeout=None)\n--\n\nReturn once "
                  "every rank "
                  "has entered the barrier."),
    {NULL, NULL, 0, NULL},
};
