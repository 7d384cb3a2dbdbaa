/*
 * The one internal header of the cgloo extension module: the object layouts shared between
 * files, argument parsing, buffers and errors. Everything here runs with the GIL held unless a
 * comment says otherwise; the library (include/cgloo/cgloo.h) is called with the GIL released
 * whenever the call can block or take a context's lock.
 */
#ifndef CGLOO_PY_H
#define CGLOO_PY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <cgloo/cgloo.h>

#include <stdint.h>

/* CGPY_NOGIL runs `stmt` with the GIL released. */
#define CGPY_NOGIL(stmt)                                                                           \
    do {                                                                                           \
        PyThreadState *cgpy_ts_ = PyEval_SaveThread();                                             \
        stmt;                                                                                      \
        PyEval_RestoreThread(cgpy_ts_);                                                            \
    } while (0)

/* ---- argument parsing (args.c) ---- */

/* A method's parameters: names in order, how many may be given by position, how many are
 * required. The names are interned on first use so that keywords compare by pointer. */
typedef struct cgpy_params {
    const char *func;         /* for messages: "allreduce" */
    const char *const *names; /* NULL-terminated */
    int npos;                 /* the first npos may be positional; the rest keyword-only */
    int nreq;                 /* the first nreq are required */
    int n;                    /* filled on first use */
    PyObject **interned;      /* filled on first use */
} cgpy_params;

/* cgpy_parse fills out[0..n) with borrowed references (NULL where not given) from a
 * METH_FASTCALL | METH_KEYWORDS call. Returns 0, or -1 with TypeError set. */
int cgpy_parse(cgpy_params *p, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
               PyObject **out);

/* cgpy_timeout_ms turns a timeout in seconds (None or NULL: 0, the default) into milliseconds,
 * at least 1 and at most INT_MAX. Returns 0, or -1 with ValueError/TypeError set. */
int cgpy_timeout_ms(PyObject *o, int *ms);
/* cgpy_int reads an int argument named `name` (NULL: `dflt`). Returns 0 or -1 with an error. */
int cgpy_int(PyObject *o, const char *name, int dflt, int *v);
/* cgpy_u64 reads a non-negative integer argument (NULL: 0). Returns 0 or -1 with an error. */
int cgpy_u64(PyObject *o, const char *name, uint64_t *v);
/* cgpy_str reads an optional str argument (NULL or None: *s = NULL); the UTF-8 text lives as
 * long as the object. Returns 0 or -1 with TypeError set. */
int cgpy_str(PyObject *o, const char *name, const char **s);
/* cgpy_ints reads a sequence of ints into a new array (free with PyMem_Free) of *n entries;
 * with `want` >= 0 the sequence must have exactly that many. Returns the array or NULL. */
int *cgpy_ints(PyObject *o, const char *name, Py_ssize_t want, Py_ssize_t *n);
/* cgpy_counts is cgpy_ints for element counts (non-negative), as size_t, and their sum. */
size_t *cgpy_counts(PyObject *o, const char *name, Py_ssize_t want, size_t *sum);

/* ---- errors (errors.c) ---- */

/* cgpy_raise sets the exception class registered for status (cgloo.Error for an unknown one)
 * with the C library's message and `detail`, and returns NULL. A pending exception (e.g.
 * KeyboardInterrupt from the interrupt check) is left in place instead. */
PyObject *cgpy_raise(int status, const char *detail);
/* cgpy_raise_last is cgpy_raise for a call that makes a store, device or context: the detail
 * is what (a PyUnicode_FromFormat format and its arguments) followed by cgloo_last_error()'s
 * text, read on this thread, which made the call with the GIL released. Returns NULL. */
PyObject *cgpy_raise_last(int status, const char *fmt, ...);
/* cgpy_set_errors is _cgloo._set_errors(base, {status: class}), called once by __init__.py. */
PyObject *cgpy_set_errors(PyObject *module, PyObject *args);

/* ---- buffers (buffers.c) ---- */

/* One buffer argument, held from cgpy_buf_get until cgpy_buf_release. */
typedef struct cgpy_buf {
    Py_buffer view;
    cgloo_dtype dtype;
    size_t count; /* elements of dtype */
    int held;
} cgpy_buf;

enum { CGPY_READ = 0, CGPY_WRITE = 1 };

/* cgpy_buf_get takes obj's buffer (C-contiguous; writable with CGPY_WRITE) and its dtype: from
 * the buffer's format, or `dtype` when that is >= 0 (the itemsize must match, or the buffer be
 * bytes). Errors name the argument: TypeError for a type or format, ValueError for layout or
 * writability. Returns 0, or -1 with nothing held. */
int cgpy_buf_get(PyObject *obj, const char *name, int mode, int dtype, cgpy_buf *b);
/* cgpy_bytes_get takes any C-contiguous buffer as bytes (point-to-point). */
int cgpy_bytes_get(PyObject *obj, const char *name, int mode, cgpy_buf *b);
/* cgpy_buf_release releases what cgpy_buf_get took (nothing if nothing is held). */
void cgpy_buf_release(cgpy_buf *b);
/* cgpy_dtype_arg reads a dtype argument (None/NULL: -1). Returns 0 or -1 with ValueError. */
int cgpy_dtype_arg(PyObject *o, int *dtype);
/* cgpy_same_dtype checks that b has dtype `want` of the first buffer, named `first`. */
int cgpy_same_dtype(const cgpy_buf *b, const char *name, cgloo_dtype want, const char *first);
/* cgpy_dtype_view makes a Python view of count elements of dtype at p (a numpy array when numpy
 * is importable, else a memoryview cast to the dtype's format). New reference or NULL. */
PyObject *cgpy_dtype_view(void *p, size_t count, cgloo_dtype dtype, int writable, PyObject **mview);

/* ---- objects ---- */

/* Stores (store.c). `busy` counts calls in flight and dependents (prefix stores, contexts
 * connecting); close() while busy defers the destroy to the last one out. */
typedef struct cgpy_Store {
    PyObject_HEAD cgloo_store *store;
    int busy;
    int closed;
    PyObject *inner;   /* PrefixStore: the wrapped store (a strong reference) */
    PyObject *obj;     /* CustomStore: the Python object (a strong reference) */
    PyObject *failure; /* CustomStore: the last exception a callback raised, for __cause__ */
    PyObject *weakrefs;
} cgpy_Store;

/* cgpy_store_enter checks that the store is open and counts a call in flight (or a
 * dependent). Returns 0, or -1 with ValueError set. */
int cgpy_store_enter(cgpy_Store *s);
/* cgpy_store_leave ends what cgpy_store_enter began; the last one out of a closed store
 * destroys it. */
void cgpy_store_leave(cgpy_Store *s);

/* Devices (device.c). `users` counts the contexts using the device. */
typedef struct cgpy_Device {
    PyObject_HEAD cgloo_device *dev;
    int users;
    int closed;
    PyObject *hostname, *iface;
    int port_min, port_max, family;
} cgpy_Device;

/* cgpy_device_use counts a context on the device (refused once it is closed). */
int cgpy_device_use(cgpy_Device *d);
/* cgpy_device_release ends a context's use; the last one out of a closed device destroys it. */
void cgpy_device_release(cgpy_Device *d);

struct cgpy_Request;

/* Contexts (context.c). `calls` counts calls in flight (GIL released); close() while calls are
 * in flight aborts the context and leaves the destroy to the last one out. */
typedef struct cgpy_Context {
    PyObject_HEAD cgloo_context *ctx;
    int rank, size;
    int calls;
    int closing;
    PyObject *device;             /* the cgpy_Device in use (strong), or NULL */
    cgloo_device *own_dev;        /* a default device the context made, destroyed with it */
    struct cgpy_Request *pending; /* requests not yet completed (a list through `next`) */
    PyObject *weakrefs;
} cgpy_Context;

/* Requests (request.c): one isend/irecv, or one non-blocking collective, in flight; holds the
 * buffers until it completes. */
typedef struct cgpy_Request {
    PyObject_HEAD cgloo_request *req;
    cgpy_Context *ctx; /* strong while pending */
    cgpy_buf buf;
    struct coll_call *coll; /* a collective's call (its buffers, its reduce_fn), or NULL */
    PyObject *result;       /* what a collective's wait() returns (strong), or NULL */
    struct cgpy_Request *prev, *next;
    int waiting; /* a thread waits on it with the GIL released */
    int status;  /* once done */
    int done;
    int source;
    size_t bytes;
    char *detail; /* PyMem text of a failure, or NULL */
    uint64_t id;  /* cgloo_request_id, for abort() from another thread */
} cgpy_Request;

extern PyTypeObject cgpy_StoreType, cgpy_HashStoreType, cgpy_FileStoreType, cgpy_PrefixStoreType,
    cgpy_TCPStoreType, cgpy_CustomStoreType, cgpy_StoreServerType, cgpy_DeviceType,
    cgpy_ContextType, cgpy_RequestType;

/* A non-blocking collective's call state (coll.c), held by its Request: cgpy_coll_release
 * releases its buffers; cgpy_coll_raise sets its reduce_fn's exception and returns -1, or
 * returns 0 when there was none; cgpy_coll_free frees it all (NULL allowed). */
struct coll_call;
void cgpy_coll_release(struct coll_call *c);
int cgpy_coll_raise(struct coll_call *c);
void cgpy_coll_free(struct coll_call *c);
/* cgpy_request_new_coll wraps a started collective's request; takes call (freed on error). */
PyObject *cgpy_request_new_coll(cgpy_Context *ctx, cgloo_request *req, struct coll_call *call,
                                PyObject *result);

/* Module functions defined outside module.c. */
PyObject *cgpy_open_store(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames);
PyObject *cgpy_launch_info(PyObject *module, PyObject *unused);
PyObject *cgpy_open_launch_store(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames);

/* ---- contexts (context.c, used by coll.c and request.c) ---- */

/* cgpy_ctx_enter checks that the context is open and counts a call in flight. Returns 0, or -1
 * with ValueError set. */
int cgpy_ctx_enter(cgpy_Context *self);
/* cgpy_ctx_leave ends a call: rc is the library's status, `detail` its text if it failed
 * (read while the GIL was released). Raises for a failure or a pending exception, and destroys
 * the context if it was closed meanwhile and this was the last call. Returns 0 or -1. */
int cgpy_ctx_leave(cgpy_Context *self, int rc, const char *detail);
/* cgpy_ctx_detail copies the context's last error into buf when rc is a failure. Safe without
 * the GIL. */
void cgpy_ctx_detail(cgpy_Context *self, int rc, char *buf, size_t len);
/* cgpy_ctx_unlink removes a finished request from the context's pending list. */
void cgpy_ctx_unlink(cgpy_Context *self, cgpy_Request *r);
/* cgpy_ctx_maybe_destroy destroys a closed context once nothing uses it. */
void cgpy_ctx_maybe_destroy(cgpy_Context *self);

/* cgpy_request_new wraps a posted request and the buffer it holds (ownership of both moves to
 * the new object, which joins the context's pending list). Returns NULL (request cancelled,
 * buffer released) on failure. */
PyObject *cgpy_request_new(cgpy_Context *ctx, cgloo_request *req, cgpy_buf *buf);
/* cgpy_request_close_cancel cancels a pending request whose context is being closed. */
void cgpy_request_close_cancel(cgpy_Request *r);

/* The collectives, Context methods defined in coll.c (ending with a NULL entry). */
extern PyMethodDef cgpy_coll_methods[];
/* cgpy_context_type_init completes the Context type's method table; before PyType_Ready. */
int cgpy_context_type_init(void);

/* cgpy_main_thread is the ident of the interpreter's main thread (the one signals go to). */
extern unsigned long cgpy_main_thread;

#endif /* CGLOO_PY_H */
