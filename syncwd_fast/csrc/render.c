/* The COPY text of JSON values (render.h). */
#include "render.h"

static const unsigned char NULL_FIELD[] = "\\N";

int sw_copy_escaped(sw_buf *out, const unsigned char *p, size_t n)
{
    const unsigned char *end = p + n, *run = p;
    if (sw_buf_reserve(out, n) < 0)
        return -1;
    for (; p < end; p++) {
        unsigned char c = *p, e;
        switch (c) {
        case '\\': e = '\\'; break;
        case '\t': e = 't'; break;
        case '\n': e = 'n'; break;
        case '\r': e = 'r'; break;
        default: continue;
        }
        if (sw_buf_add(out, run, (size_t)(p - run)) < 0 || sw_buf_byte(out, '\\') < 0 || sw_buf_byte(out, e) < 0)
            return -1;
        run = p + 1;
    }
    return sw_buf_add(out, run, (size_t)(end - run));
}

/* A string's characters as COPY text; in_array: also escaped as an element
 * of a quoted array literal (backslash and double quote). */
static int string_text(sw_buf *out, const sw_value *v, int in_array)
{
    const unsigned char *p = v->start + 1, *end = v->start + v->len - 1;
    if (v->plain && !in_array)
        return sw_copy_escaped(out, p, (size_t)(end - p));
    while (p < end) {
        unsigned char c[4];
        int n = sw_next_char(&p, c);
        if (n == 1 && in_array && (c[0] == '\\' || c[0] == '"')) {
            /* the array literal's escape, then COPY's for its backslash */
            if (sw_buf_add(out, c[0] == '\\' ? "\\\\\\\\" : "\\\\\"", c[0] == '\\' ? 4 : 3) < 0)
                return -1;
        } else if (sw_copy_escaped(out, c, (size_t)n) < 0)
            return -1;
    }
    return 0;
}

/* The text jsonb_to_record hands a scalar's type input; 0 when none exact. */
static int scalar_text(sw_buf *out, const sw_value *v, int in_array)
{
    switch (v->type) {
    case SW_STRING:
        return string_text(out, v, in_array) < 0 ? -1 : 1;
    case SW_NUMBER:
        if (!v->canonical)
            return 0; /* 1e3, -0: numeric_out prints another text */
        return sw_buf_add(out, v->start, v->len) < 0 ? -1 : 1; /* digits, '-', '.' need no escape */
    case SW_TRUE:
        return sw_buf_add(out, "true", 4) < 0 ? -1 : 1;
    case SW_FALSE:
        return sw_buf_add(out, "false", 5) < 0 ? -1 : 1;
    default:
        return 0; /* objects and arrays: jsonb's own text */
    }
}

/* A one-dimensional array literal, every element quoted, null as NULL. */
static int array_literal(sw_buf *out, const sw_value *v)
{
    const unsigned char *p = v->start + 1, *end = v->start + v->len - 1;
    sw_value e;
    if (sw_buf_byte(out, '{') < 0)
        return -1;
    p = sw_skip_ws(p, end);
    int first = 1;
    while (p < end) {
        if (!first) {
            p = sw_skip_ws(p, end);
            p++; /* the comma the scanner checked */
        }
        if (sw_scan_value(&p, end, SW_MAX_DEPTH - 1, &e) < 0)
            return 0; /* cannot happen: scanned before */
        p = sw_skip_ws(p, end);
        if (!first && sw_buf_byte(out, ',') < 0)
            return -1;
        first = 0;
        if (e.type == SW_NULL) {
            if (sw_buf_add(out, "NULL", 4) < 0)
                return -1;
            continue;
        }
        if (sw_buf_byte(out, '"') < 0)
            return -1;
        int rc = scalar_text(out, &e, 1);
        if (rc <= 0)
            return rc; /* nested arrays, objects, numbers with another text */
        if (sw_buf_byte(out, '"') < 0)
            return -1;
    }
    return sw_buf_byte(out, '}') < 0 ? -1 : 1;
}

int sw_render(sw_buf *out, char kind, const sw_value *v)
{
    size_t mark = out->len;
    int rc;
    if (v->type == SW_NULL)
        return sw_buf_add(out, NULL_FIELD, 2) < 0 ? -1 : 1; /* SQL NULL in every kind of column */
    switch (kind) {
    case SW_KIND_SCALAR:
    case SW_KIND_FLOAT8:
        rc = scalar_text(out, v, 0);
        break;
    case SW_KIND_JSONB:
        rc = sw_copy_escaped(out, v->start, v->len) < 0 ? -1 : 1; /* jsonb reads the same text the same way */
        break;
    case SW_KIND_ARRAY:
        rc = v->type == SW_ARRAY ? array_literal(out, v) : 0;
        break;
    default:
        rc = 0; /* json keeps jsonb's normalized text; composites */
        break;
    }
    if (rc == 0)
        out->len = mark;
    return rc;
}
