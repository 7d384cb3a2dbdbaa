/*
 * Buffers: any object with the buffer protocol, its dtype read from the format character and
 * the item size (so "l" is int64 here and int32 where long has 4 bytes), checked for layout,
 * writability and dtype before any library call. numpy is never needed; it is only used, when
 * importable, to hand a custom reduction its blocks as arrays.
 */
#include "cgloo_py.h"

#include <string.h>

/* What a format character says, before the item size picks the dtype. */
enum { K_NONE, K_SINT, K_UINT, K_FLOAT, K_BYTE, K_BOOL, K_COUNT };

static const unsigned char format_kind[128] = {
    ['b'] = K_SINT, ['h'] = K_SINT, ['i'] = K_SINT,  ['l'] = K_SINT,  ['q'] = K_SINT,
    ['n'] = K_SINT, ['B'] = K_UINT, ['H'] = K_UINT,  ['I'] = K_UINT,  ['L'] = K_UINT,
    ['Q'] = K_UINT, ['N'] = K_UINT, ['e'] = K_FLOAT, ['f'] = K_FLOAT, ['d'] = K_FLOAT,
    ['c'] = K_BYTE, ['?'] = K_BOOL,
};

/* The dtype of (kind, item size 1..8), or -1 where cgloo has none (a 4-byte bool, say). */
static const signed char kind_dtype[K_COUNT][9] = {
    [K_NONE] = {-1, -1, -1, -1, -1, -1, -1, -1, -1},
    [K_SINT] = {-1, CGLOO_INT8, CGLOO_INT16, -1, CGLOO_INT32, -1, -1, -1, CGLOO_INT64},
    [K_UINT] = {-1, CGLOO_UINT8, CGLOO_UINT16, -1, CGLOO_UINT32, -1, -1, -1, CGLOO_UINT64},
    [K_FLOAT] = {-1, -1, CGLOO_FLOAT16, -1, CGLOO_FLOAT32, -1, -1, -1, CGLOO_FLOAT64},
    [K_BYTE] = {-1, CGLOO_UINT8, -1, -1, -1, -1, -1, -1, -1},
    [K_BOOL] = {-1, CGLOO_BOOL, -1, -1, -1, -1, -1, -1, -1},
};

/* complex_dtype reads a complex format's part letter ("Zf": two floats, numpy's complex64); the
 * item size must be twice the part's. -1 for any other part (numpy's "Zg", long double). */
static int complex_dtype(const char *part, Py_ssize_t itemsize)
{
    if (strcmp(part, "f") == 0 && itemsize == 8)
        return CGLOO_COMPLEX64;
    if (strcmp(part, "d") == 0 && itemsize == 16)
        return CGLOO_COMPLEX128;
    return -1;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define FOREIGN_ORDER '<'
#else
#define FOREIGN_ORDER '>'
#endif

/* format_dtype reads the dtype of a buffer's format: -1 for none, -2 for a foreign byte order. */
static int format_dtype(const char *fmt, Py_ssize_t itemsize)
{
    if (!fmt)
        fmt = "B";
    char c = fmt[0];
    if (c != '\0' && strchr("@=<>!", c)) {
        if ((c == FOREIGN_ORDER || c == '!') && itemsize > 1)
            return -2;
        c = fmt[1];
        fmt++;
    }
    if (c == 'Z')
        return complex_dtype(fmt + 1, itemsize);
    if (fmt[1] != '\0' || (unsigned char)c >= 128 || itemsize < 1 || itemsize > 8)
        return -1;
    return kind_dtype[format_kind[(unsigned char)c]][itemsize];
}

/* buf_take gets obj's buffer with strides and format, so that the checks below, not the
 * exporter, word the errors. */
static int buf_take(PyObject *obj, const char *name, Py_buffer *view)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_RECORDS_RO) == 0)
        return 0;
    if (PyErr_ExceptionMatches(PyExc_TypeError)) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError,
                     "%s must support the buffer protocol (a numpy array, bytearray, "
                     "array.array, memoryview), not %.100s",
                     name, Py_TYPE(obj)->tp_name);
    }
    return -1;
}

/* buf_layout checks contiguity and writability. */
static int buf_layout(const Py_buffer *view, const char *name, int mode)
{
    if (!PyBuffer_IsContiguous(view, 'C')) {
        PyErr_Format(PyExc_ValueError, "%s is not C-contiguous (use numpy.ascontiguousarray)",
                     name);
        return -1;
    }
    if (mode == CGPY_WRITE && view->readonly) {
        PyErr_Format(PyExc_ValueError, "%s is read-only but receives the result", name);
        return -1;
    }
    return 0;
}

/* buf_dtype picks the dtype: the override if given (same item size, or a byte buffer whose
 * length is a multiple of it), else the format's. */
static int buf_dtype(const Py_buffer *view, const char *name, int dtype, cgloo_dtype *out)
{
    const char *fmt = view->format ? view->format : "B";
    if (dtype >= 0) {
        size_t size = cgloo_dtype_size((cgloo_dtype)dtype);
        int bytes = view->itemsize == 1 && view->len % (Py_ssize_t)size == 0;
        if ((size_t)view->itemsize != size && !bytes) {
            PyErr_Format(PyExc_TypeError, "%s has %zd-byte items but dtype %s has %zu-byte ones",
                         name, view->itemsize, cgloo_dtype_name((cgloo_dtype)dtype), size);
            return -1;
        }
        *out = (cgloo_dtype)dtype;
        return 0;
    }
    int d = format_dtype(fmt, view->itemsize);
    if (d == -2)
        PyErr_Format(PyExc_TypeError, "%s has format '%s': byte-swapped data is not supported",
                     name, fmt);
    else if (d < 0)
        PyErr_Format(PyExc_TypeError,
                     "%s has format '%s' (%zd-byte items), which is no cgloo dtype (int8 to "
                     "uint64, float16, float32, float64, bool, complex64, complex128; bfloat16 as "
                     "uint16 with dtype=cgloo.bfloat16)",
                     name, fmt, view->itemsize);
    if (d < 0)
        return -1;
    *out = (cgloo_dtype)d;
    return 0;
}

int cgpy_buf_get(PyObject *obj, const char *name, int mode, int dtype, cgpy_buf *b)
{
    b->held = 0;
    if (buf_take(obj, name, &b->view) < 0)
        return -1;
    if (buf_layout(&b->view, name, mode) < 0 || buf_dtype(&b->view, name, dtype, &b->dtype) < 0) {
        PyBuffer_Release(&b->view);
        return -1;
    }
    b->count = (size_t)b->view.len / cgloo_dtype_size(b->dtype);
    b->held = 1;
    return 0;
}

int cgpy_bytes_get(PyObject *obj, const char *name, int mode, cgpy_buf *b)
{
    b->held = 0;
    if (buf_take(obj, name, &b->view) < 0)
        return -1;
    if (buf_layout(&b->view, name, mode) < 0) {
        PyBuffer_Release(&b->view);
        return -1;
    }
    b->dtype = CGLOO_UINT8;
    b->count = (size_t)b->view.len;
    b->held = 1;
    return 0;
}

void cgpy_buf_release(cgpy_buf *b)
{
    if (b->held) {
        PyBuffer_Release(&b->view);
        b->held = 0;
    }
}

int cgpy_dtype_arg(PyObject *o, int *dtype)
{
    *dtype = -1;
    if (!o || o == Py_None)
        return 0;
    if (cgpy_int(o, "dtype", 0, dtype) < 0)
        return -1;
    if (*dtype < 0 || *dtype >= CGLOO_DTYPE_COUNT) {
        PyErr_Format(PyExc_ValueError, "dtype %d is not a cgloo.DType", *dtype);
        return -1;
    }
    return 0;
}

int cgpy_same_dtype(const cgpy_buf *b, const char *name, cgloo_dtype want, const char *first)
{
    if (b->dtype == want)
        return 0;
    PyErr_Format(PyExc_TypeError, "%s has dtype %s but %s has dtype %s", name,
                 cgloo_dtype_name(b->dtype), first, cgloo_dtype_name(want));
    return -1;
}

/* numpy_frombuffer returns numpy.frombuffer (borrowed), or NULL when numpy cannot be imported
 * (looked up once). */
static PyObject *numpy_frombuffer(void)
{
    static PyObject *fn;
    static int tried;
    if (!tried) {
        tried = 1;
        PyObject *np = PyImport_ImportModule("numpy");
        if (np) {
            fn = PyObject_GetAttrString(np, "frombuffer");
            Py_DECREF(np);
        }
        PyErr_Clear();
    }
    return fn;
}

/* The numpy dtype names and struct formats of cgloo's dtypes; bfloat16 shows as uint16. The
 * struct module has no complex format, so without numpy a complex block is a memoryview of its
 * parts, real and imaginary in turn. */
static const char *const numpy_names[CGLOO_DTYPE_COUNT] = {
    [CGLOO_INT8] = "int8",       [CGLOO_UINT8] = "uint8",         [CGLOO_INT32] = "int32",
    [CGLOO_UINT32] = "uint32",   [CGLOO_INT64] = "int64",         [CGLOO_UINT64] = "uint64",
    [CGLOO_FLOAT16] = "float16", [CGLOO_BFLOAT16] = "uint16",     [CGLOO_FLOAT32] = "float32",
    [CGLOO_FLOAT64] = "float64", [CGLOO_BOOL] = "bool",           [CGLOO_INT16] = "int16",
    [CGLOO_UINT16] = "uint16",   [CGLOO_COMPLEX64] = "complex64", [CGLOO_COMPLEX128] = "complex128",
};
static const char *const struct_formats[CGLOO_DTYPE_COUNT] = {
    [CGLOO_INT8] = "b",    [CGLOO_UINT8] = "B",     [CGLOO_INT32] = "i",
    [CGLOO_UINT32] = "I",  [CGLOO_INT64] = "q",     [CGLOO_UINT64] = "Q",
    [CGLOO_FLOAT16] = "e", [CGLOO_BFLOAT16] = "H",  [CGLOO_FLOAT32] = "f",
    [CGLOO_FLOAT64] = "d", [CGLOO_BOOL] = "?",      [CGLOO_INT16] = "h",
    [CGLOO_UINT16] = "H",  [CGLOO_COMPLEX64] = "f", [CGLOO_COMPLEX128] = "d",
};

PyObject *cgpy_dtype_view(void *p, size_t count, cgloo_dtype dtype, int writable, PyObject **mview)
{
    size_t size = cgloo_dtype_size(dtype);
    *mview =
        PyMemoryView_FromMemory(p, (Py_ssize_t)(count * size), writable ? PyBUF_WRITE : PyBUF_READ);
    if (!*mview)
        return NULL;
    PyObject *frombuffer = numpy_frombuffer();
    if (frombuffer)
        return PyObject_CallFunction(frombuffer, "Os", *mview, numpy_names[dtype]);
    return PyObject_CallMethod(*mview, "cast", "s", struct_formats[dtype]);
}
