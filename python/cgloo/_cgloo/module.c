/*
 * cgloo._cgloo: the extension module. Its types are the package's public classes (Context,
 * Request, the stores, StoreServer, Device); cgloo/__init__.py adds the enums, the exception
 * classes and init_from_env in Python.
 */
#include "cgloo_py.h"

static PyObject *mod_status_name(PyObject *m, PyObject *arg)
{
    int status;
    if (cgpy_int(arg, "status", 0, &status) < 0)
        return NULL;
    return PyUnicode_FromString(cgloo_status_name(status));
}

static PyObject *mod_strerror(PyObject *m, PyObject *arg)
{
    int status;
    if (cgpy_int(arg, "status", 0, &status) < 0)
        return NULL;
    return PyUnicode_FromString(cgloo_strerror(status));
}

static PyObject *mod_version_string(PyObject *m, PyObject *unused)
{
    return PyUnicode_FromString(cgloo_version_string());
}

static PyObject *mod_algorithm_names(PyObject *m, PyObject *arg)
{
    const char *coll;
    if (cgpy_str(arg, "collective", &coll) < 0)
        return NULL;
    const char *const *names = coll ? cgloo_algorithm_names(coll) : NULL;
    if (!names)
        return PyErr_Format(PyExc_ValueError, "no collective named %R", arg);
    PyObject *list = PyList_New(0);
    for (size_t i = 0; list && names[i]; i++) {
        PyObject *s = PyUnicode_FromString(names[i]);
        if (!s || PyList_Append(list, s) < 0)
            Py_CLEAR(list);
        Py_XDECREF(s);
    }
    return list;
}

static PyObject *mod_set_log_level(PyObject *m, PyObject *arg)
{
    int level;
    if (cgpy_int(arg, "level", 0, &level) < 0)
        return NULL;
    if (level < CGLOO_LOG_OFF || level > CGLOO_LOG_TRACE)
        return PyErr_Format(PyExc_ValueError, "log level %d is not 0 (off) to 5 (trace)", level);
    cgloo_log_set_level((cgloo_log_level)level);
    Py_RETURN_NONE;
}

/* Large local reductions run without the GIL; small ones are not worth the switch. */
#define REDUCE_LOCAL_NOGIL_BYTES (64 * 1024)

/* reduce_local_error raises for a refused (op, dtype), worded as the collectives word it. The
 * buffers are never NULL here, so the op is what the library refused. */
static PyObject *reduce_local_error(int rc, int op, cgloo_dtype dtype)
{
    char detail[128];
    const char *name = cgloo_op_name((cgloo_op)op);
    if (name)
        snprintf(detail, sizeof detail, "reduce_local: op %s is not defined for dtype %s", name,
                 cgloo_dtype_name(dtype));
    else
        snprintf(detail, sizeof detail, "reduce_local: op %d is not a cgloo.Op", op);
    return cgpy_raise(rc, detail);
}

static PyObject *mod_reduce_local(PyObject *m, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames)
{
    static const char *const names[] = {"inout", "in_", "op", "dtype", NULL};
    static cgpy_params params = {"reduce_local", names, 3, 2, 0, NULL};
    PyObject *a[4];
    cgpy_buf io, in;
    int op, dtype, rc;
    if (cgpy_parse(&params, args, nargs, kwnames, a) < 0 ||
        cgpy_int(a[2], "op", CGLOO_SUM, &op) < 0 || cgpy_dtype_arg(a[3], &dtype) < 0 ||
        cgpy_buf_get(a[0], "inout", CGPY_WRITE, dtype, &io) < 0)
        return NULL;
    if (cgpy_buf_get(a[1], "in_", CGPY_READ, dtype, &in) < 0) {
        cgpy_buf_release(&io);
        return NULL;
    }
    int bad = cgpy_same_dtype(&in, "in_", io.dtype, "inout") < 0;
    if (!bad && in.count != io.count) {
        PyErr_Format(PyExc_ValueError, "in_ has %zu elements but inout has %zu", in.count,
                     io.count);
        bad = 1;
    }
    if (!bad && io.view.len >= REDUCE_LOCAL_NOGIL_BYTES)
        CGPY_NOGIL(rc = cgloo_reduce_local(io.view.buf, in.view.buf, io.count, io.dtype, op));
    else if (!bad)
        rc = cgloo_reduce_local(io.view.buf, in.view.buf, io.count, io.dtype, (cgloo_op)op);
    cgpy_buf_release(&io);
    cgpy_buf_release(&in);
    if (bad)
        return NULL;
    if (rc != CGLOO_OK)
        return reduce_local_error(rc, op, io.dtype);
    return Py_NewRef(a[0]);
}

static PyMethodDef module_methods[] = {
    {"_set_errors", cgpy_set_errors, METH_VARARGS, "Register the exception classes (internal)."},
    {"status_name", mod_status_name, METH_O,
     "status_name(status)\n--\n\nThe name of a status code, e.g. \"ETIMEDOUT\"."},
    {"strerror", mod_strerror, METH_O, "strerror(status)\n--\n\nThe sentence for a status code."},
    {"version_string", mod_version_string, METH_NOARGS,
     "version_string()\n--\n\nThe linked library's version, \"major.minor.patch\"."},
    {"algorithm_names", mod_algorithm_names, METH_O,
     "algorithm_names(collective)\n--\n\nThe algorithm names of a collective (\"allreduce\", "
     "...)."},
    {"_set_log_level", mod_set_log_level, METH_O, "Set the library's log level (0-5)."},
    {"reduce_local", (PyCFunction)(void (*)(void))mod_reduce_local, METH_FASTCALL | METH_KEYWORDS,
     "reduce_local(inout, in_, op=SUM, *, dtype=None)\n--\n\ninout[i] = inout[i] op in_[i] "
     "with the library's kernels; returns inout."},
    {"open_store", (PyCFunction)(void (*)(void))cgpy_open_store, METH_FASTCALL | METH_KEYWORDS,
     "open_store(url, timeout=30.0)\n--\n\nA store from a URL: \"tcp://host:port\", "
     "\"torch://host:port\", \"file:///dir\", \"hash:\" or "
     "\"redis://[[user]:password@]host:port[/db][?cleanup=1]\"."},
    {"launch_info", cgpy_launch_info, METH_NOARGS,
     "launch_info()\n--\n\nWhat the library reads from the launcher's environment (cgloo-run, "
     "torchrun, mpirun, PMI, Slurm): a dict of launcher, rank, size, local_rank, local_size, "
     "store, prefix, serve_host, serve_port and watch_store."},
    {"open_launch_store", (PyCFunction)(void (*)(void))cgpy_open_launch_store,
     METH_FASTCALL | METH_KEYWORDS,
     "open_launch_store(timeout=30.0)\n--\n\nThe store of launch_info(), served first when "
     "this rank hosts it; closing the store stops that server."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "cgloo._cgloo",
    .m_doc = "The cgloo extension module (import cgloo instead).",
    .m_size = -1,
    .m_methods = module_methods,
};

/* main_thread_ident asks the threading module which thread is the main one (the module may be
 * imported from any thread). */
static int main_thread_ident(void)
{
    PyObject *threading = PyImport_ImportModule("threading");
    PyObject *main = threading ? PyObject_CallMethod(threading, "main_thread", NULL) : NULL;
    PyObject *ident = main ? PyObject_GetAttrString(main, "ident") : NULL;
    if (ident)
        cgpy_main_thread = PyLong_AsUnsignedLong(ident);
    Py_XDECREF(ident);
    Py_XDECREF(main);
    Py_XDECREF(threading);
    return ident && !PyErr_Occurred() ? 0 : -1;
}

static int add_type(PyObject *m, PyTypeObject *t, const char *name)
{
    if (PyType_Ready(t) < 0)
        return -1;
    Py_INCREF(t);
    if (PyModule_AddObject(m, name, (PyObject *)t) < 0) {
        Py_DECREF(t);
        return -1;
    }
    return 0;
}

PyMODINIT_FUNC PyInit__cgloo(void);

PyMODINIT_FUNC PyInit__cgloo(void)
{
    if (main_thread_ident() < 0 || cgpy_context_type_init() < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (!m)
        return NULL;
    if (add_type(m, &cgpy_StoreType, "Store") < 0 ||
        add_type(m, &cgpy_HashStoreType, "HashStore") < 0 ||
        add_type(m, &cgpy_FileStoreType, "FileStore") < 0 ||
        add_type(m, &cgpy_PrefixStoreType, "PrefixStore") < 0 ||
        add_type(m, &cgpy_TCPStoreType, "TCPStore") < 0 ||
        add_type(m, &cgpy_CustomStoreType, "CustomStore") < 0 ||
        add_type(m, &cgpy_StoreServerType, "StoreServer") < 0 ||
        add_type(m, &cgpy_DeviceType, "Device") < 0 ||
        add_type(m, &cgpy_ContextType, "Context") < 0 ||
        add_type(m, &cgpy_RequestType, "Request") < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
