/*
 * Requests: one isend/irecv/irecv_any, or one non-blocking collective, in flight. The object
 * holds the caller's buffers (their Py_buffers, so the exporter cannot resize or free them,
 * and a collective's reduce_fn) until the request completes or is
 * cancelled, and cancels in its destructor a request still pending, so the library never
 * writes into memory Python has let go of. Only one thread may wait on a request at a time.
 */
#include "cgloo_py.h"

/* request_finish records the outcome of a request the library has freed, releases the buffer
 * and leaves the context's pending list. */
static void request_finish(cgpy_Request *r, int status, const cgloo_completion *c,
                           const char *detail)
{
    r->req = NULL;
    r->done = 1;
    r->status = status;
    r->source = c ? c->source : -1;
    r->bytes = c ? c->bytes : 0;
    if (status != CGLOO_OK && detail && *detail) {
        size_t n = strlen(detail) + 1;
        r->detail = PyMem_Malloc(n);
        if (r->detail)
            memcpy(r->detail, detail, n);
    }
    cgpy_buf_release(&r->buf);
    if (r->coll)
        cgpy_coll_release(r->coll);
    if (r->ctx) {
        cgpy_ctx_unlink(r->ctx, r);
        cgpy_Context *ctx = r->ctx;
        r->ctx = NULL;
        cgpy_ctx_maybe_destroy(ctx);
        Py_DECREF(ctx);
    }
}

/* request_cancel withdraws a pending request (the library then no longer touches the
 * buffer). */
static void request_cancel(cgpy_Request *r, const char *why)
{
    cgloo_request *req = r->req;
    r->req = NULL;
    CGPY_NOGIL(cgloo_cancel(req));
    request_finish(r, CGLOO_EABORTED, NULL, why);
}

void cgpy_request_close_cancel(cgpy_Request *r)
{
    request_cancel(r, "the context was closed before the request completed");
}

/* request_alloc makes a pending request object for req and files it with the context. */
static cgpy_Request *request_alloc(cgpy_Context *ctx, cgloo_request *req)
{
    cgpy_Request *r = PyObject_New(cgpy_Request, &cgpy_RequestType);
    if (!r) {
        CGPY_NOGIL(cgloo_cancel(req));
        return NULL;
    }
    r->req = req;
    r->id = cgloo_request_id(req);
    r->ctx = (cgpy_Context *)Py_NewRef(ctx);
    r->buf.held = 0;
    r->coll = NULL;
    r->result = NULL;
    r->waiting = r->done = r->status = r->source = 0;
    r->bytes = 0;
    r->detail = NULL;
    r->prev = NULL;
    r->next = ctx->pending;
    if (ctx->pending)
        ctx->pending->prev = r;
    ctx->pending = r;
    return r;
}

PyObject *cgpy_request_new(cgpy_Context *ctx, cgloo_request *req, cgpy_buf *buf)
{
    cgpy_Request *r = request_alloc(ctx, req);
    if (!r) {
        cgpy_buf_release(buf);
        return NULL;
    }
    r->buf = *buf;
    buf->held = 0;
    if (ctx->closing)
        cgpy_request_close_cancel(r);
    return (PyObject *)r;
}

PyObject *cgpy_request_new_coll(cgpy_Context *ctx, cgloo_request *req, struct coll_call *call,
                                PyObject *result)
{
    cgpy_Request *r = request_alloc(ctx, req);
    if (!r) {
        cgpy_coll_free(call);
        return NULL;
    }
    r->coll = call;
    r->result = Py_NewRef(result);
    if (ctx->closing)
        cgpy_request_close_cancel(r);
    return (PyObject *)r;
}

/* request_result returns (source, nbytes) of a completed request, or a collective's result,
 * or raises its error (a collective's reduce_fn exception first). */
static PyObject *request_result(cgpy_Request *r)
{
    if (r->coll && cgpy_coll_raise(r->coll) < 0)
        return NULL;
    if (r->status != CGLOO_OK)
        return cgpy_raise(r->status, r->detail);
    if (r->result)
        return Py_NewRef(r->result);
    return Py_BuildValue("(in)", r->source, (Py_ssize_t)r->bytes);
}

/* request_busy refuses a second thread on a request already waited on. */
static int request_busy(cgpy_Request *r)
{
    if (!r->waiting)
        return 0;
    PyErr_SetString(PyExc_RuntimeError, "another thread is waiting on this request");
    return -1;
}

/* request_drive runs cgloo_wait (test = 0) or cgloo_test (test = 1) without the GIL, the
 * context counted busy so that a close() meanwhile aborts instead of freeing it. Returns 1 if
 * the request completed (successfully or not), 0 if it is still pending, -1 with an
 * exception. */
static int request_drive(cgpy_Request *r, int test, int ms)
{
    cgpy_Context *ctx = (cgpy_Context *)Py_NewRef(r->ctx);
    cgloo_completion c = {0, 0};
    int rc, completed = 1;
    char detail[CGLOO_ERROR_MAX] = "";
    r->waiting = 1;
    ctx->calls++;
    CGPY_NOGIL(rc = test ? cgloo_test(r->req, &completed, &c) : cgloo_wait(r->req, ms, &c);
               if (rc != CGLOO_OK) cgpy_ctx_detail(ctx, rc, detail, sizeof detail));
    r->waiting = 0;
    /* A point-to-point wait that timed out or was interrupted leaves the request pending; a
     * collective's wait always ends it (the library stops the collective). */
    int pending = test ? !completed : !r->coll && (rc == CGLOO_ETIMEDOUT || rc == CGLOO_EINTR);
    if (!pending)
        request_finish(r, rc, &c, detail);
    else if (ctx->closing)
        cgpy_request_close_cancel(r);
    int ret = cgpy_ctx_leave(ctx, pending ? rc : CGLOO_OK, detail) < 0 ? -1 : !pending;
    Py_DECREF(ctx);
    return ret;
}

static PyObject *request_wait(cgpy_Request *r, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    static const char *const names[] = {"timeout", NULL};
    static cgpy_params params = {"wait", names, 1, 0, 0, NULL};
    PyObject *a[1];
    int ms;
    if (cgpy_parse(&params, args, nargs, kwnames, a) < 0 || cgpy_timeout_ms(a[0], &ms) < 0 ||
        request_busy(r) < 0)
        return NULL;
    if (!r->done && request_drive(r, 0, ms) < 0)
        return NULL;
    return request_result(r);
}

static PyObject *request_test(cgpy_Request *r, PyObject *unused)
{
    if (request_busy(r) < 0)
        return NULL;
    if (!r->done) {
        int got = request_drive(r, 1, 0);
        if (got <= 0)
            return got < 0 ? NULL : Py_NewRef(Py_False);
    }
    if (r->status != CGLOO_OK || (r->coll && cgpy_coll_raise(r->coll) < 0))
        return request_result(r);
    Py_RETURN_TRUE;
}

static PyObject *request_cancel_m(cgpy_Request *r, PyObject *unused)
{
    if (request_busy(r) < 0)
        return NULL;
    if (!r->done)
        request_cancel(r, "the request was cancelled");
    Py_RETURN_NONE;
}

/* request_abort ends the request from any thread, also while another waits on it: that
 * wait() raises cgloo.AbortedError (as does the next one, if nobody waits yet). The library
 * names the request by its number, so a request that completes meanwhile is left alone. */
static PyObject *request_abort(cgpy_Request *r, PyObject *unused)
{
    if (r->done || !r->ctx)
        Py_RETURN_FALSE;
    cgpy_Context *ctx = (cgpy_Context *)Py_NewRef(r->ctx);
    if (cgpy_ctx_enter(ctx) < 0) { /* closing: close() cancels its requests itself */
        PyErr_Clear();
        Py_DECREF(ctx);
        Py_RETURN_FALSE;
    }
    int rc;
    CGPY_NOGIL(rc = cgloo_context_abort_request(ctx->ctx, r->id));
    cgpy_ctx_leave(ctx, CGLOO_OK, NULL);
    Py_DECREF(ctx);
    return PyBool_FromLong(rc == CGLOO_OK);
}

static PyObject *request_done(cgpy_Request *r, void *unused)
{
    return PyBool_FromLong(r->done);
}

static PyObject *request_repr(cgpy_Request *r)
{
    if (!r->done)
        return PyUnicode_FromString("<cgloo.Request pending>");
    if (r->coll && r->status == CGLOO_OK)
        return PyUnicode_FromString("<cgloo.Request done>");
    if (r->status != CGLOO_OK)
        return PyUnicode_FromFormat("<cgloo.Request failed: %s>", cgloo_status_name(r->status));
    return PyUnicode_FromFormat("<cgloo.Request done: %zu bytes from rank %d>", r->bytes,
                                r->source);
}

static void request_dealloc(cgpy_Request *r)
{
    if (!r->done && r->req)
        request_cancel(r, NULL);
    cgpy_buf_release(&r->buf);
    cgpy_coll_free(r->coll);
    Py_XDECREF(r->result);
    PyMem_Free(r->detail);
    PyObject_Free(r);
}

static PyMethodDef request_methods[] = {
    {"wait", (PyCFunction)(void (*)(void))request_wait, METH_FASTCALL | METH_KEYWORDS,
     "wait(timeout=None)\n--\n\nWait until the request completes; returns (source, nbytes) "
     "or raises its error. On cgloo.TimeoutError it stays pending: wait again or cancel it."},
    {"test", (PyCFunction)request_test, METH_NOARGS,
     "test()\n--\n\nDrive progress once without blocking; True once the request completed "
     "(raises its error if it failed)."},
    {"cancel", (PyCFunction)request_cancel_m, METH_NOARGS,
     "cancel()\n--\n\nWithdraw a pending request and release its buffer (a later wait() "
     "raises cgloo.AbortedError). No effect on a completed request."},
    {"abort", (PyCFunction)request_abort, METH_NOARGS,
     "abort()\n--\n\nEnd the request from any thread, also while another thread waits on "
     "it: that wait() raises cgloo.AbortedError at once. The context stays usable (after a "
     "collective's abort, for point-to-point only). True if it aborted the request, False if "
     "it had completed already."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef request_getset[] = {
    {"done", (getter)request_done, NULL, "True once the request completed or was cancelled.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject cgpy_RequestType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cgloo.Request",
    .tp_basicsize = sizeof(cgpy_Request),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "An operation in flight: point-to-point (isend, irecv, irecv_any; wait() returns "
              "(source, nbytes)) or a non-blocking collective (iallreduce, ...; wait() returns "
              "what the blocking call returns). It holds the buffers until it completes or is "
              "cancelled; dropping a pending request cancels it.",
    .tp_dealloc = (destructor)request_dealloc,
    .tp_repr = (reprfunc)request_repr,
    .tp_methods = request_methods,
    .tp_getset = request_getset,
};
