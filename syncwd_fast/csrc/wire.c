/* The drain's per-id work around Redis calls (scripts.py is the
 * specification): a pop's ids as text, and the MGET of their values packed
 * in one pass rather than a Python object per key. */
#include "wire.h"

#include "buffer.h"

PyObject *sw_ids_text(PyObject *module, PyObject *args)
{
    PyObject *raw;
    (void)module;
    if (!PyArg_ParseTuple(args, "O!:ids_text", &PyList_Type, &raw))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(raw);
    PyObject *out = PyList_New(n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *id = PyList_GET_ITEM(raw, k);
        if (!PyBytes_Check(id)) {
            PyErr_SetString(PyExc_TypeError, "ids_text: an id is not bytes");
            Py_DECREF(out);
            return NULL;
        }
        PyObject *text = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(id), PyBytes_GET_SIZE(id), "surrogateescape");
        if (text == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, k, text);
    }
    return out;
}

/* "$<n>\r\n": a bulk string's header. */
static int bulk_header(sw_buf *b, size_t n)
{
    return sw_buf_byte(b, '$') < 0 || sw_buf_uint(b, n) < 0 || sw_buf_add(b, "\r\n", 2) < 0 ? -1 : 0;
}

PyObject *sw_mget_command(PyObject *module, PyObject *args)
{
    const char *prefix;
    Py_ssize_t prefix_len;
    PyObject *raw;
    (void)module;
    if (!PyArg_ParseTuple(args, "y#O!:mget_command", &prefix, &prefix_len, &PyList_Type, &raw))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(raw);
    sw_buf b = {NULL, 0, 0};
    if (sw_buf_reserve(&b, 32 + (size_t)n * (16 + (size_t)prefix_len + 12)) < 0)
        goto nomem;
    if (sw_buf_byte(&b, '*') < 0 || sw_buf_uint(&b, (size_t)n + 1) < 0 || sw_buf_add(&b, "\r\n$4\r\nMGET\r\n", 12) < 0)
        goto nomem;
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *id = PyList_GET_ITEM(raw, k);
        if (!PyBytes_Check(id)) {
            PyErr_SetString(PyExc_TypeError, "mget_command: an id is not bytes");
            sw_buf_free(&b);
            return NULL;
        }
        size_t len = (size_t)PyBytes_GET_SIZE(id);
        if (bulk_header(&b, (size_t)prefix_len + len) < 0 || sw_buf_add(&b, prefix, (size_t)prefix_len) < 0 ||
            sw_buf_add(&b, PyBytes_AS_STRING(id), len) < 0 || sw_buf_add(&b, "\r\n", 2) < 0)
            goto nomem;
    }
    PyObject *out = PyBytes_FromStringAndSize((const char *)b.data, (Py_ssize_t)b.len);
    sw_buf_free(&b);
    return out;
nomem:
    sw_buf_free(&b);
    return PyErr_NoMemory();
}
