/*
 * Library statuses as exceptions. The classes are defined in Python (cgloo/__init__.py, where a
 * hierarchy reads best) and handed to the module once; the constructor there parses the peer
 * rank out of the detail.
 */
#include "cgloo_py.h"

#define STATUS_SLOTS 32

static PyObject *error_base;                  /* cgloo.Error */
static PyObject *error_classes[STATUS_SLOTS]; /* indexed by -status */

PyObject *cgpy_set_errors(PyObject *module, PyObject *args)
{
    PyObject *base, *map, *key, *value;
    Py_ssize_t pos = 0;
    if (!PyArg_ParseTuple(args, "OO!:_set_errors", &base, &PyDict_Type, &map))
        return NULL;
    Py_XSETREF(error_base, Py_NewRef(base));
    while (PyDict_Next(map, &pos, &key, &value)) {
        long status = PyLong_AsLong(key);
        if (status == -1 && PyErr_Occurred())
            return NULL;
        if (status > 0 || -status >= STATUS_SLOTS)
            return PyErr_Format(PyExc_ValueError, "status %ld out of range", status);
        Py_XSETREF(error_classes[-status], Py_NewRef(value));
    }
    Py_RETURN_NONE;
}

/* error_class returns the class for status (borrowed). */
static PyObject *error_class(int status)
{
    if (status < 0 && -status < STATUS_SLOTS && error_classes[-status])
        return error_classes[-status];
    return error_base ? error_base : PyExc_RuntimeError;
}

PyObject *cgpy_raise(int status, const char *detail)
{
    if (PyErr_Occurred())
        return NULL;
    if (!detail)
        detail = "";
    PyObject *msg = *detail ? PyUnicode_FromFormat("%s: %s", cgloo_strerror(status), detail)
                            : PyUnicode_FromString(cgloo_strerror(status));
    PyObject *cls = error_class(status);
    PyObject *exc = NULL;
    if (msg && error_base && (cls == error_base || PyObject_IsSubclass(cls, error_base) == 1))
        exc = PyObject_CallFunction(cls, "Ois", msg, status, detail);
    else if (msg)
        exc = PyObject_CallOneArg(cls, msg);
    if (exc) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    Py_XDECREF(msg);
    return NULL;
}

PyObject *cgpy_raise_last(int status, const char *fmt, ...)
{
    char last[CGLOO_ERROR_MAX];
    cgloo_last_error(last, sizeof last);
    va_list ap;
    va_start(ap, fmt);
    PyObject *what = PyUnicode_FromFormatV(fmt, ap);
    va_end(ap);
    PyObject *detail = what && last[0] ? PyUnicode_FromFormat("%U: %s", what, last) : NULL;
    const char *text = detail ? PyUnicode_AsUTF8(detail) : what ? PyUnicode_AsUTF8(what) : NULL;
    cgpy_raise(status, text ? text : last);
    Py_XDECREF(detail);
    Py_XDECREF(what);
    return NULL;
}
