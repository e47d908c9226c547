/* syncwd_fast._speedups: the drain's per-row work for a whole popped batch
 * (decode.py is its specification). Each record is scanned, its key checked
 * against its id, and rendered as one line of the text COPY into the merge's
 * stage. A record this code is not sure of (invalid or unusual JSON, a key
 * it cannot render, a missing value, --strict with keys that are no
 * columns) is handed to the Python decoder, which decides and words it. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "buffer.h"
#include "json.h"
#include "order.h"
#include "render.h"
#include "wire.h"

#define DELETE_GROUP (-1)
/* What decode() reports of the items it appended (decode.Decoder reads them). */
#define DECODED_UNKNOWN 1 /* some record carries keys that are not columns */
#define DECODED_JSONB 2   /* some line is on the jsonb path */
#define MAX_KEY_DIGITS 18 /* an int key longer than this may not be an int to orjson */

typedef struct {
    PyObject_HEAD
    Py_ssize_t n;              /* columns, in table order */
    PyObject **names;          /* their names, UTF-8 bytes */
    char *kinds;               /* render.h kinds, one per column */
    Py_ssize_t nkey;
    Py_ssize_t *key;           /* positions of the key columns */
    int strict;
    PyObject *groups_of_mask;  /* mask bytes -> the group of those columns */
    PyObject *by_mask;         /* the dict that callable fills */
    Py_ssize_t mask_len;
} Decoder;

/* One decode() call's scratch: never in the Decoder, because a call runs
 * Python code mid-record (groups_of_mask, the slow path), where the GIL may
 * pass to another thread decoding with the same Decoder. */
typedef struct {
    sw_value *values;          /* the record's value of each column */
    unsigned char *mask;       /* the columns it carries */
    unsigned char *last_mask;  /* the shape seen last, and its group */
    long last_group;
    int have_last;
    int huge;                  /* the record holds a number only the jsonb path may judge */
    Py_ssize_t hint;           /* where the next key is likely to be */
    sw_buf line, text;
} Work;

static void work_free(Work *w)
{
    PyMem_Free(w->values);
    PyMem_Free(w->mask);
    PyMem_Free(w->last_mask);
    sw_buf_free(&w->line);
    sw_buf_free(&w->text);
}

static int work_init(Work *w, Decoder *self)
{
    memset(w, 0, sizeof(*w));
    w->values = PyMem_Calloc((size_t)self->n, sizeof(sw_value));
    w->mask = PyMem_Calloc((size_t)self->mask_len, 1);
    w->last_mask = PyMem_Calloc((size_t)self->mask_len, 1);
    if (!w->values || !w->mask || !w->last_mask) {
        work_free(w);
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void Decoder_dealloc(Decoder *self)
{
    if (self->names) {
        for (Py_ssize_t i = 0; i < self->n; i++)
            Py_XDECREF(self->names[i]);
        PyMem_Free(self->names);
    }
    PyMem_Free(self->kinds);
    PyMem_Free(self->key);
    Py_XDECREF(self->groups_of_mask);
    Py_XDECREF(self->by_mask);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Decoder_init(Decoder *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"columns", "kinds", "key", "strict", "groups_of_mask", "by_mask", NULL};
    PyObject *columns, *key, *groups_of_mask, *by_mask;
    const char *kinds;
    Py_ssize_t kinds_len;
    int strict;
    if (self->names != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Decoder is initialized once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!s#O!pOO!", kwlist, &PyTuple_Type, &columns, &kinds, &kinds_len,
                                     &PyTuple_Type, &key, &strict, &groups_of_mask, &PyDict_Type, &by_mask))
        return -1;
    Py_ssize_t n = PyTuple_GET_SIZE(columns), nkey = PyTuple_GET_SIZE(key);
    if (n == 0 || kinds_len != n || nkey == 0 || nkey > n || !PyCallable_Check(groups_of_mask)) {
        PyErr_SetString(PyExc_ValueError, "Decoder: one kind per column, 1..n key positions, a callable");
        return -1;
    }
    self->n = n;
    self->mask_len = (n + 7) / 8;
    self->names = PyMem_Calloc((size_t)n, sizeof(PyObject *));
    self->kinds = PyMem_Malloc((size_t)n);
    self->key = PyMem_Malloc((size_t)nkey * sizeof(Py_ssize_t));
    if (!self->names || !self->kinds || !self->key) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(self->kinds, kinds, (size_t)n);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = PyTuple_GET_ITEM(columns, i);
        if (!PyUnicode_Check(name)) {
            PyErr_SetString(PyExc_TypeError, "Decoder: column names are str");
            return -1;
        }
        self->names[i] = PyUnicode_AsUTF8String(name);
        if (self->names[i] == NULL)
            return -1;
    }
    self->nkey = nkey;
    for (Py_ssize_t i = 0; i < nkey; i++) {
        Py_ssize_t pos = PyLong_AsSsize_t(PyTuple_GET_ITEM(key, i));
        if (pos == -1 && PyErr_Occurred())
            return -1;
        if (pos < 0 || pos >= n) {
            PyErr_SetString(PyExc_ValueError, "Decoder: a key position is no column");
            return -1;
        }
        self->key[i] = pos;
    }
    self->strict = strict;
    Py_INCREF(groups_of_mask);
    self->groups_of_mask = groups_of_mask;
    Py_INCREF(by_mask);
    self->by_mask = by_mask;
    return 0;
}

/* The column a JSON key names, or -1 (the key is no column). */
static Py_ssize_t find_column(Decoder *self, Work *w, const sw_value *k)
{
    const unsigned char *name;
    size_t len;
    if (k->plain) {
        name = k->start + 1;
        len = k->len - 2;
    } else {
        const unsigned char *p = k->start + 1, *end = k->start + k->len - 1;
        w->text.len = 0;
        while (p < end) {
            unsigned char c[4];
            int n = sw_next_char(&p, c);
            if (sw_buf_add(&w->text, c, (size_t)n) < 0)
                return -2;
        }
        name = w->text.data;
        len = w->text.len;
    }
    for (Py_ssize_t j = 0; j < self->n; j++) {
        Py_ssize_t at = (w->hint + j) % self->n;
        PyObject *col = self->names[at];
        if ((size_t)PyBytes_GET_SIZE(col) == len && (len == 0 || memcmp(PyBytes_AS_STRING(col), name, len) == 0)) {
            w->hint = at + 1 == self->n ? 0 : at + 1;
            return at;
        }
    }
    return -1;
}

/* Scan the document as an object: the value of each column it carries (the
 * last of duplicate keys, as orjson keeps), in w->values and w->mask.
 * 1 when scanned, 0 when the record is for the Python decoder, -1 on error. */
static int scan_object(Decoder *self, Work *w, const unsigned char *p, const unsigned char *end, int *unknown)
{
    sw_value k, v;
    memset(w->mask, 0, (size_t)self->mask_len);
    *unknown = 0;
    w->huge = 0;
    p = sw_skip_ws(p, end);
    if (p >= end || *p != '{')
        return 0;
    p = sw_skip_ws(p + 1, end);
    if (p < end && *p == '}') {
        p++;
    } else {
        for (;;) {
            p = sw_skip_ws(p, end);
            if (sw_scan_string(&p, end, &k) < 0)
                return 0;
            p = sw_skip_ws(p, end);
            if (p >= end || *p != ':')
                return 0;
            p++;
            if (sw_scan_value(&p, end, 1, &v) < 0)
                return 0;
            w->huge |= v.huge;
            Py_ssize_t col = find_column(self, w, &k);
            if (col == -2) {
                PyErr_NoMemory();
                return -1;
            }
            if (col < 0)
                *unknown = 1;
            else {
                w->values[col] = v;
                w->mask[col >> 3] |= (unsigned char)(1u << (col & 7));
            }
            p = sw_skip_ws(p, end);
            if (p >= end)
                return 0;
            if (*p == ',') {
                p++;
                continue;
            }
            if (*p != '}')
                return 0;
            p++;
            break;
        }
    }
    return sw_skip_ws(p, end) == end; /* trailing content: let orjson word it */
}

static int has(const Work *w, Py_ssize_t col) { return w->mask[col >> 3] >> (col & 7) & 1; }

/* Whether the key columns render to rid, as keys.canonical_id renders them:
 * a single str key is its text, an int its digits, several keys the JSON
 * array of their values. 1 yes, 0 not sure (the Python decoder decides). */
static int key_matches(Decoder *self, Work *w, PyObject *rid)
{
    sw_buf *t = &w->text;
    t->len = 0;
    if (self->nkey > 1 && sw_buf_byte(t, '[') < 0)
        return -1;
    for (Py_ssize_t i = 0; i < self->nkey; i++) {
        Py_ssize_t col = self->key[i];
        if (!has(w, col))
            return 0;
        const sw_value *v = &w->values[col];
        if (i > 0 && sw_buf_byte(t, ',') < 0)
            return -1;
        if (v->type == SW_NUMBER) {
            if (!v->integer || v->len > MAX_KEY_DIGITS)
                return 0;
            if (sw_buf_add(t, v->start, v->len) < 0)
                return -1;
        } else if (v->type == SW_STRING) {
            const unsigned char *p = v->start + 1, *end = v->start + v->len - 1;
            if (self->nkey > 1 && sw_buf_byte(t, '"') < 0)
                return -1;
            while (p < end) {
                unsigned char c[4];
                int n = sw_next_char(&p, c);
                /* orjson escapes these inside the array: not rendered here */
                if (self->nkey > 1 && n == 1 && (c[0] == '"' || c[0] == '\\' || c[0] < 0x20))
                    return 0;
                if (sw_buf_add(t, c, (size_t)n) < 0)
                    return -1;
            }
            if (self->nkey > 1 && sw_buf_byte(t, '"') < 0)
                return -1;
        } else
            return 0; /* null (missing key), bool, float, object, array */
    }
    if (self->nkey > 1 && sw_buf_byte(t, ']') < 0)
        return -1;
    Py_ssize_t len;
    const char *id = PyUnicode_AsUTF8AndSize(rid, &len);
    if (id == NULL) { /* an id that is not UTF-8 (surrogate escapes) */
        PyErr_Clear();
        return 0;
    }
    return (size_t)len == t->len && memcmp(id, t->data, t->len) == 0;
}

/* The group of the current shape (the columns it carries). */
static int group_of(Decoder *self, Work *w, long *group)
{
    if (w->have_last && memcmp(w->last_mask, w->mask, (size_t)self->mask_len) == 0) {
        *group = w->last_group;
        return 0;
    }
    PyObject *mask = PyBytes_FromStringAndSize((const char *)w->mask, self->mask_len);
    if (mask == NULL)
        return -1;
    PyObject *found = PyDict_GetItemWithError(self->by_mask, mask); /* borrowed */
    if (found != NULL)
        Py_INCREF(found);
    else if (!PyErr_Occurred())
        found = PyObject_CallOneArg(self->groups_of_mask, mask);
    Py_DECREF(mask);
    if (found == NULL)
        return -1;
    *group = PyLong_AsLong(found);
    Py_DECREF(found);
    if (*group == -1 && PyErr_Occurred())
        return -1;
    memcpy(w->last_mask, w->mask, (size_t)self->mask_len);
    w->last_group = *group;
    w->have_last = 1;
    return 0;
}

static int line_start(sw_buf *b, Py_ssize_t i, long g, int del)
{
    b->len = 0;
    if (sw_buf_uint(b, (size_t)i) < 0 || sw_buf_byte(b, '\t') < 0)
        return -1;
    if (g < 0 ? sw_buf_add(b, "-1", 2) < 0 : sw_buf_uint(b, (size_t)g) < 0)
        return -1;
    return sw_buf_add(b, del ? "\tt\t" : "\tf\t", 3);
}

/* The typed line: 1 rendered, 0 some value renders only on the jsonb path. */
static int typed_line(Decoder *self, Work *w, Py_ssize_t i, long g, int del, int deleting)
{
    sw_buf *b = &w->line;
    if (line_start(b, i, g, del) < 0 || sw_buf_add(b, "\\N", 2) < 0)
        return -1;
    for (Py_ssize_t col = 0; col < self->n; col++) {
        int carried = has(w, col);
        if (carried && deleting) { /* a tombstone carries its key only */
            carried = 0;
            for (Py_ssize_t k = 0; k < self->nkey; k++)
                carried |= self->key[k] == col;
        }
        if (sw_buf_byte(b, '\t') < 0)
            return -1;
        if (!carried) {
            if (sw_buf_add(b, "\\N", 2) < 0)
                return -1;
            continue;
        }
        int rc = sw_render(b, self->kinds[col], &w->values[col]);
        if (rc <= 0)
            return rc;
    }
    return sw_buf_byte(b, '\n') < 0 ? -1 : 1;
}

static int jsonb_line(Decoder *self, Work *w, Py_ssize_t i, long g, int del, const unsigned char *doc, size_t len)
{
    sw_buf *b = &w->line;
    if (line_start(b, i, g, del) < 0 || sw_copy_escaped(b, doc, len) < 0)
        return -1;
    for (Py_ssize_t col = 0; col < self->n; col++)
        if (sw_buf_add(b, "\t\\N", 3) < 0)
            return -1;
    return sw_buf_byte(b, '\n');
}

/* One record: 1 appended to items, 0 for the Python decoder, -1 on error. */
static int decode_record(Decoder *self, Work *w, PyObject *rid, PyObject *raw, PyObject *recreated, PyObject *items,
                         PyObject *replace, int *flags)
{
    if (!PyUnicode_Check(rid) || !PyBytes_Check(raw))
        return 0;
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(raw);
    size_t len = (size_t)PyBytes_GET_SIZE(raw);
    int deleting = len > 0 && data[0] == '~';
    const unsigned char *doc = data + deleting;
    size_t doc_len = len - (size_t)deleting;
    int unknown, rc;
    rc = scan_object(self, w, doc, doc + doc_len, &unknown);
    if (rc <= 0)
        return rc;
    rc = key_matches(self, w, rid);
    if (rc <= 0)
        return rc;
    long group = DELETE_GROUP;
    if (!deleting) {
        if (unknown && self->strict)
            return 0; /* the Python decoder names the keys */
        if (group_of(self, w, &group) < 0)
            return -1;
    }
    int again = deleting;
    PyObject *generation = PyDict_GetItemWithError(recreated, rid); /* borrowed */
    if (generation == NULL && PyErr_Occurred())
        return -1;
    if (generation != NULL) {
        again = 1;
        if (!deleting && PyDict_SetItem(replace, rid, generation) < 0)
            return -1;
    }
    Py_ssize_t i = PyList_GET_SIZE(items);
    rc = w->huge ? 0 : typed_line(self, w, i, group, again, deleting);
    if (rc < 0)
        return -1;
    if (rc == 0) {
        if (jsonb_line(self, w, i, group, again, doc, doc_len) < 0)
            return -1;
        *flags |= DECODED_JSONB;
    }
    PyObject *line = PyBytes_FromStringAndSize((const char *)w->line.data, (Py_ssize_t)w->line.len);
    PyObject *docobj = deleting ? PyBytes_FromStringAndSize((const char *)doc, (Py_ssize_t)doc_len) : Py_NewRef(raw);
    PyObject *g = PyLong_FromLong(group);
    PyObject *item = line && docobj && g ? PyTuple_Pack(4, g, rid, docobj, line) : NULL;
    Py_XDECREF(line);
    Py_XDECREF(docobj);
    Py_XDECREF(g);
    if (item == NULL)
        return -1;
    rc = PyList_Append(items, item);
    Py_DECREF(item);
    if (rc < 0)
        return -1;
    if (!deleting && unknown)
        *flags |= DECODED_UNKNOWN;
    return 1;
}

static PyObject *Decoder_decode(Decoder *self, PyObject *args)
{
    PyObject *ids, *values, *recreated, *items, *replace, *slow;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!O:decode", &PyList_Type, &ids, &PyList_Type, &values, &PyDict_Type,
                          &recreated, &PyList_Type, &items, &PyDict_Type, &replace, &slow))
        return NULL;
    if (self->names == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Decoder is not initialized");
        return NULL;
    }
    if (PyList_GET_SIZE(ids) != PyList_GET_SIZE(values)) {
        PyErr_SetString(PyExc_ValueError, "decode: one value per id");
        return NULL;
    }
    int flags = 0;
    Work w;
    if (work_init(&w, self) < 0)
        return NULL;
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(ids); k++) {
        /* the lists may change while the slow path runs Python code */
        if (k >= PyList_GET_SIZE(ids) || k >= PyList_GET_SIZE(values))
            break;
        PyObject *rid = PyList_GET_ITEM(ids, k), *raw = PyList_GET_ITEM(values, k);
        Py_INCREF(rid);
        Py_INCREF(raw);
        int rc = decode_record(self, &w, rid, raw, recreated, items, replace, &flags);
        if (rc == 0) {
            PyObject *r = PyObject_CallFunctionObjArgs(slow, rid, raw, NULL);
            Py_XDECREF(r);
            rc = r == NULL ? -1 : 1;
        }
        Py_DECREF(rid);
        Py_DECREF(raw);
        if (rc < 0) {
            work_free(&w);
            return NULL;
        }
    }
    work_free(&w);
    return PyLong_FromLong(flags);
}

static PyMethodDef Decoder_methods[] = {
    {"decode", (PyCFunction)Decoder_decode, METH_VARARGS,
     "decode(ids, values, recreated, items, replace, slow) -> int: append the batch's items; every record it\n"
     "is not sure of goes to slow(id, value), which words dead letters. Flags of the items it appended: 1 some\n"
     "record carries keys that are not columns, 2 some line is on the jsonb path."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject DecoderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "syncwd_fast._speedups.Decoder",
    .tp_basicsize = sizeof(Decoder),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Decoder(columns, kinds, key, strict, groups_of_mask, by_mask): decode.Decoder's C twin",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Decoder_init,
    .tp_dealloc = (destructor)Decoder_dealloc,
    .tp_methods = Decoder_methods,
};

/* For tests: how the scanner and the renderer see one JSON text. */
static PyObject *render_value(PyObject *module, PyObject *args)
{
    const char *kind;
    Py_ssize_t kind_len;
    Py_buffer text;
    (void)module;
    if (!PyArg_ParseTuple(args, "s#y*:render", &kind, &kind_len, &text))
        return NULL;
    const unsigned char *p = text.buf, *end = p + text.len;
    sw_value v;
    sw_buf out = {0};
    PyObject *result = NULL;
    if (kind_len != 1) {
        PyErr_SetString(PyExc_ValueError, "render: one kind letter");
    } else if (sw_scan_value(&p, end, 0, &v) < 0 || sw_skip_ws(p, end) != end) {
        result = Py_NewRef(Py_False); /* refused by the scanner */
    } else {
        int rc = sw_render(&out, kind[0], &v);
        if (rc < 0)
            PyErr_NoMemory();
        else if (rc == 0)
            result = Py_NewRef(Py_None);
        else
            result = PyBytes_FromStringAndSize((const char *)out.data, (Py_ssize_t)out.len);
    }
    sw_buf_free(&out);
    PyBuffer_Release(&text);
    return result;
}

static PyMethodDef module_methods[] = {
    {"render", render_value, METH_VARARGS,
     "render(kind, json) -> bytes | None | False: the COPY field of one JSON value; None when only the jsonb\n"
     "path is exact; False when the scanner refuses the text (the Python decoder then decides)."},
    {"int_order", sw_int_order, METH_VARARGS,
     "int_order(items, staged) -> list[int] | None: staged sorted by its items' ids as integers (merge.key_order)."},
    {"ordered_lines", sw_ordered_lines, METH_VARARGS,
     "ordered_lines(items, order, skip=0) -> bytes: the items' stage lines joined in that order, each past its\n"
     "first skip fields (merge.copy_payload)."},
    {"ids_text", sw_ids_text, METH_VARARGS,
     "ids_text(raw) -> list[str]: ids as text, bytes that are not UTF-8 as surrogates (scripts.ids_text)."},
    {"mget_command", sw_mget_command, METH_VARARGS,
     "mget_command(prefix, raw) -> bytes: MGET of prefix + each id, packed (scripts.mget_command)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "syncwd_fast._speedups",
    .m_doc = "The drain's per-row work in C; decode.py and render.py are its specification.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
    if (PyType_Ready(&DecoderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    Py_INCREF(&DecoderType);
    if (PyModule_AddObject(m, "Decoder", (PyObject *)&DecoderType) < 0) {
        Py_DECREF(&DecoderType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
