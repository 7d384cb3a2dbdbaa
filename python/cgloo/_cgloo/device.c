/*
 * Devices: one listening endpoint, shared by any number of contexts. close() while contexts
 * still use the device defers the destroy to the last of them (the library requires every
 * context on a device to go first).
 */
#include "cgloo_py.h"

static void device_destroy(cgpy_Device *d)
{
    cgloo_device *dev = d->dev;
    d->dev = NULL;
    if (dev)
        CGPY_NOGIL(cgloo_device_destroy(dev));
}

int cgpy_device_use(cgpy_Device *d)
{
    if (!d->dev || d->closed) {
        PyErr_SetString(PyExc_ValueError, "the device is closed");
        return -1;
    }
    d->users++;
    return 0;
}

void cgpy_device_release(cgpy_Device *d)
{
    if (--d->users == 0 && d->closed)
        device_destroy(d);
}

static int device_init(cgpy_Device *d, PyObject *args, PyObject *kw)
{
    static char *names[] = {"hostname",   "iface",     "port_min",  "port_max", "family",
                            "store_host", "advertise", "transport", NULL};
    PyObject *hostname = Py_None, *iface = Py_None, *store_host = Py_None, *advertise = Py_None,
             *transport = Py_None;
    cgloo_tcp_attr attr = {0};
    cgloo_device *dev = NULL;
    int rc;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|OOiiiOOO:Device", names, &hostname, &iface,
                                     &attr.port_min, &attr.port_max, &attr.family, &store_host,
                                     &advertise, &transport) ||
        cgpy_str(hostname, "hostname", &attr.hostname) < 0 ||
        cgpy_str(iface, "iface", &attr.iface) < 0 ||
        cgpy_str(store_host, "store_host", &attr.store_host) < 0 ||
        cgpy_str(advertise, "advertise", &attr.advertise) < 0 ||
        cgpy_str(transport, "transport", &attr.transport) < 0)
        return -1;
    if (d->dev) {
        PyErr_SetString(PyExc_RuntimeError, "the device is already initialised");
        return -1;
    }
    CGPY_NOGIL(rc = cgloo_device_tcp_create(&attr, &dev));
    if (rc != CGLOO_OK) {
        cgpy_raise_last(rc, "Device(hostname=%R, iface=%R, ports %d..%d)", hostname, iface,
                        attr.port_min, attr.port_max);
        return -1;
    }
    d->dev = dev;
    Py_XSETREF(d->hostname, Py_NewRef(hostname));
    Py_XSETREF(d->iface, Py_NewRef(iface));
    d->port_min = attr.port_min;
    d->port_max = attr.port_max;
    d->family = attr.family;
    return 0;
}

static PyObject *device_close(cgpy_Device *d, PyObject *unused)
{
    d->closed = 1;
    if (d->users == 0)
        device_destroy(d);
    Py_RETURN_NONE;
}

static PyObject *device_exit(cgpy_Device *d, PyObject *args)
{
    return device_close(d, NULL);
}

static PyObject *device_enter(PyObject *d, PyObject *unused)
{
    return Py_NewRef(d);
}

static PyObject *device_address(cgpy_Device *d, void *unused)
{
    char buf[300];
    if (!d->dev) {
        PyErr_SetString(PyExc_ValueError, "the device is closed");
        return NULL;
    }
    int rc = cgloo_device_address(d->dev, buf, sizeof buf);
    if (rc != CGLOO_OK)
        return cgpy_raise(rc, "device address");
    return PyUnicode_FromString(buf);
}

static PyObject *device_repr(cgpy_Device *d)
{
    if (!d->dev)
        return PyUnicode_FromString("<cgloo.Device closed>");
    PyObject *a = device_address(d, NULL);
    PyObject *r = a ? PyUnicode_FromFormat("<cgloo.Device %U>", a) : NULL;
    Py_XDECREF(a);
    return r;
}

static void device_dealloc(cgpy_Device *d)
{
    device_destroy(d);
    Py_CLEAR(d->hostname);
    Py_CLEAR(d->iface);
    Py_TYPE(d)->tp_free((PyObject *)d);
}

static PyMethodDef device_methods[] = {
    {"close", (PyCFunction)device_close, METH_NOARGS,
     "close()\n--\n\nClose the listening socket (once no context uses the device)."},
    {"__enter__", device_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)device_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef device_getset[] = {
    {"address", (getter)device_address, NULL, "\"host:port\" that peers reach it at.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef device_members[] = {
    {"hostname", T_OBJECT, offsetof(cgpy_Device, hostname), READONLY, "As given, or None."},
    {"iface", T_OBJECT, offsetof(cgpy_Device, iface), READONLY, "As given, or None."},
    {"port_min", T_INT, offsetof(cgpy_Device, port_min), READONLY, "As given."},
    {"port_max", T_INT, offsetof(cgpy_Device, port_max), READONLY, "As given."},
    {"family", T_INT, offsetof(cgpy_Device, family), READONLY, "4, 6, or 0 for any."},
    {NULL, 0, 0, 0, NULL},
};

PyTypeObject cgpy_DeviceType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cgloo.Device",
    .tp_basicsize = sizeof(cgpy_Device),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Device(hostname=None, iface=None, port_min=0, port_max=0, family=0, "
              "store_host=None, advertise=None, transport=None)\n--\n\n"
              "A TCP endpoint: binds and listens on an IP or host name (CGLOO_HOSTNAME), or an "
              "address chosen by interface names, IPs and subnets (CGLOO_IFACE, e.g. "
              "'^lo,docker0' or '10.1.0.0/16'), else the address the route to store_host (the "
              "host of CGLOO_STORE) leaves from, else the host name's, else loopback; on a port "
              "range (0: ephemeral; CGLOO_PORT), family 4 or 6 (0: any). advertise "
              "(CGLOO_ADVERTISE_ADDR) is published instead of the bound address (NAT). transport "
              "('auto', 'shm' or 'tcp') is how contexts on the device reach peers on their own "
              "host unless their own transport says (CGLOO_TRANSPORT). Contexts "
              "on the device keep it open. A context manager that closes it.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)device_init,
    .tp_dealloc = (destructor)device_dealloc,
    .tp_repr = (reprfunc)device_repr,
    .tp_methods = device_methods,
    .tp_getset = device_getset,
    .tp_members = device_members,
};
