/* Stage rows in the order of their integer keys (merge.key_order is the
 * specification): a batch that reaches the target's key index in key order
 * costs PostgreSQL a fifth less than one in Redis's hash order. */
#include "order.h"

#include <stdint.h>
#include <string.h>

typedef struct {
    uint64_t key;    /* the int64 key with its sign bit flipped: unsigned order is signed order */
    PyObject *index; /* borrowed: staged holds it until int_order returns */
} Keyed;

/* LSD radix sort by key, a byte a pass, skipping bytes every key shares:
 * stable, so ties keep their order in staged, as Python's sort does; a
 * batch of ids below 2^24 takes three passes. */
static void radix_sort(Keyed *keyed, Keyed *scratch, Py_ssize_t n)
{
    Keyed *from = keyed, *to = scratch;
    for (int shift = 0; shift < 64; shift += 8) {
        Py_ssize_t count[257] = {0};
        for (Py_ssize_t k = 0; k < n; k++)
            count[((from[k].key >> shift) & 0xFF) + 1]++;
        if (count[((from[0].key >> shift) & 0xFF) + 1] == n)
            continue; /* one byte value: this pass would move nothing */
        for (int b = 0; b < 256; b++)
            count[b + 1] += count[b];
        for (Py_ssize_t k = 0; k < n; k++)
            to[count[(from[k].key >> shift) & 0xFF]++] = from[k];
        Keyed *t = from;
        from = to;
        to = t;
    }
    if (from != keyed)
        memcpy(keyed, from, (size_t)n * sizeof(Keyed));
}

/* 1 and *out set when text is -?[0-9]+ within int64; else 0 (int() may still
 * read it, with spaces, '+', '_' or other digits: the Python twin decides). */
static int parse(PyObject *text, int64_t *out)
{
    if (!PyUnicode_Check(text) || !PyUnicode_IS_ASCII(text))
        return 0;
    const unsigned char *p = PyUnicode_1BYTE_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text), k = 0;
    int negative = n > 0 && p[0] == '-';
    k = negative;
    if (k == n)
        return 0;
    uint64_t v = 0;
    for (; k < n; k++) {
        unsigned d = (unsigned)p[k] - '0';
        if (d > 9 || v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    if (v > (uint64_t)INT64_MAX + (uint64_t)negative)
        return 0;
    if (!negative)
        *out = (int64_t)v;
    else
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    return 1;
}

PyObject *sw_int_order(PyObject *module, PyObject *args)
{
    PyObject *items, *staged;
    (void)module;
    if (!PyArg_ParseTuple(args, "O!O!:int_order", &PyList_Type, &items, &PyList_Type, &staged))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(staged), count = PyList_GET_SIZE(items);
    Keyed *keyed = PyMem_Malloc(2 * (size_t)(n > 0 ? n : 1) * sizeof(Keyed));
    if (keyed == NULL)
        return PyErr_NoMemory();
    PyObject *result = NULL;
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *index = PyList_GET_ITEM(staged, k);
        Py_ssize_t i = PyLong_Check(index) ? PyLong_AsSsize_t(index) : -1;
        if (i == -1 && PyErr_Occurred())
            goto done;
        if (i < 0 || i >= count) {
            PyErr_SetString(PyExc_IndexError, "int_order: a staged index is not an item");
            goto done;
        }
        PyObject *item = PyList_GET_ITEM(items, i);
        int64_t key;
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) < 2 || !parse(PyTuple_GET_ITEM(item, 1), &key)) {
            result = Py_NewRef(Py_None);
            goto done;
        }
        keyed[k].key = (uint64_t)key ^ ((uint64_t)1 << 63);
        keyed[k].index = index;
    }
    if (n > 0)
        radix_sort(keyed, keyed + n, n);
    result = PyList_New(n);
    if (result == NULL)
        goto done;
    for (Py_ssize_t k = 0; k < n; k++)
        PyList_SET_ITEM(result, k, Py_NewRef(keyed[k].index));
done:
    PyMem_Free(keyed);
    return result;
}

/* Where a line's field ``skip`` starts (past ``skip`` tabs: COPY text
 * escapes a tab inside a value, so every raw tab ends a field); -1 when the
 * line has fewer fields. */
static Py_ssize_t field_start(const char *line, Py_ssize_t len, int skip)
{
    Py_ssize_t at = 0;
    for (int k = 0; k < skip; k++) {
        const char *tab = memchr(line + at, '\t', (size_t)(len - at));
        if (tab == NULL)
            return -1;
        at = tab - line + 1;
    }
    return at;
}

PyObject *sw_ordered_lines(PyObject *module, PyObject *args)
{
    PyObject *items, *order;
    int skip = 0;
    (void)module;
    if (!PyArg_ParseTuple(args, "O!O!|i:ordered_lines", &PyList_Type, &items, &PyList_Type, &order, &skip))
        return NULL;
    if (skip < 0) {
        PyErr_SetString(PyExc_ValueError, "ordered_lines: skip < 0");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(order), count = PyList_GET_SIZE(items);
    Py_ssize_t *starts = PyMem_Malloc((size_t)(n > 0 ? n : 1) * sizeof(Py_ssize_t));
    if (starts == NULL)
        return PyErr_NoMemory();
    PyObject *out = NULL;
    /* Checked and measured first, copied next: nothing runs Python between. */
    Py_ssize_t total = 0;
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *index = PyList_GET_ITEM(order, k);
        if (!PyLong_Check(index)) {
            PyErr_SetString(PyExc_TypeError, "ordered_lines: an index is not an int");
            goto done;
        }
        Py_ssize_t i = PyLong_AsSsize_t(index);
        if (i == -1 && PyErr_Occurred())
            goto done;
        if (i < 0 || i >= count) {
            PyErr_SetString(PyExc_IndexError, "ordered_lines: an index is not an item");
            goto done;
        }
        PyObject *item = PyList_GET_ITEM(items, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) < 4 || !PyBytes_Check(PyTuple_GET_ITEM(item, 3))) {
            PyErr_SetString(PyExc_TypeError, "ordered_lines: an item's line is not bytes");
            goto done;
        }
        PyObject *line = PyTuple_GET_ITEM(item, 3);
        Py_ssize_t len = PyBytes_GET_SIZE(line);
        starts[k] = field_start(PyBytes_AS_STRING(line), len, skip);
        if (starts[k] < 0) {
            PyErr_SetString(PyExc_ValueError, "ordered_lines: a line has fewer fields than it skips");
            goto done;
        }
        if (len - starts[k] > PY_SSIZE_T_MAX - total) {
            PyErr_NoMemory();
            goto done;
        }
        total += len - starts[k];
    }
    out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL)
        goto done;
    char *at = PyBytes_AS_STRING(out);
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *line = PyTuple_GET_ITEM(PyList_GET_ITEM(items, PyLong_AsSsize_t(PyList_GET_ITEM(order, k))), 3);
        Py_ssize_t len = PyBytes_GET_SIZE(line) - starts[k];
        memcpy(at, PyBytes_AS_STRING(line) + starts[k], (size_t)len);
        at += len;
    }
done:
    PyMem_Free(starts);
    return out;
}
