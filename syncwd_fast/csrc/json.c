/* The strict JSON scanner (json.h): RFC 8259, UTF-8 only, as orjson reads it. */
#include "json.h"

/* A double holds any number below 1e308: beyond that orjson may refuse it. */
#define SW_MAX_ORDER 308

const unsigned char *sw_skip_ws(const unsigned char *p, const unsigned char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static int hex4(const unsigned char *p, const unsigned char *end, unsigned *out)
{
    unsigned v = 0;
    if (end - p < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        v = v << 4 | d;
    }
    *out = v;
    return 0;
}

/* The length of the valid UTF-8 sequence at p (a non-ASCII lead byte), or 0. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t n;
    unsigned lo = 0x80, hi = 0xBF; /* the second byte's range */
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0; /* no overlong forms */
        else if (c == 0xED)
            hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F; /* nothing above U+10FFFF */
    } else
        return 0;
    if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return n;
}

int sw_scan_string(const unsigned char **pp, const unsigned char *end, sw_value *out)
{
    const unsigned char *p = *pp;
    if (p >= end || *p != '"')
        return -1;
    out->start = p++;
    out->type = SW_STRING;
    out->plain = 1;
    out->integer = out->canonical = out->huge = 0;
    while (p < end) {
        unsigned c = *p;
        if (c == '"') {
            p++;
            out->len = (size_t)(p - out->start);
            *pp = p;
            return 0;
        }
        if (c < 0x20)
            return -1;
        if (c < 0x80 && c != '\\') {
            p++;
            continue;
        }
        if (c >= 0x80) {
            size_t n = utf8_len(p, end);
            if (n == 0)
                return -1;
            p += n;
            continue;
        }
        out->plain = 0;
        if (end - p < 2)
            return -1;
        switch (p[1]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
            p += 2;
            continue;
        case 'u':
            break;
        default:
            return -1;
        }
        unsigned u, low;
        if (hex4(p + 2, end, &u) < 0 || u == 0) /* \u0000: the Python decoder words the refusal */
            return -1;
        p += 6;
        if (u >= 0xDC00 && u <= 0xDFFF)
            return -1; /* a low surrogate alone */
        if (u >= 0xD800 && u <= 0xDBFF) {
            if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, end, &low) < 0 || low < 0xDC00 ||
                low > 0xDFFF)
                return -1;
            p += 6;
        }
    }
    return -1;
}

static int scan_number(const unsigned char **pp, const unsigned char *end, sw_value *out)
{
    const unsigned char *p = *pp;
    int negative = 0, nonzero = 0, fraction = 0;
    long order = 0; /* digits before the point, plus the exponent */
    long whole = 0, decimals = 0, e = 0; /* digit counts and exponent, capped */
    out->start = p;
    out->type = SW_NUMBER;
    out->plain = 0;
    if (p < end && *p == '-') {
        negative = 1;
        p++;
    }
    if (p >= end || *p < '0' || *p > '9')
        return -1;
    if (*p == '0') {
        p++;
        order = whole = 1;
        if (p < end && *p >= '0' && *p <= '9')
            return -1; /* a leading zero */
    } else {
        while (p < end && *p >= '0' && *p <= '9') {
            nonzero = 1;
            if (order < 1000000)
                order++;
            p++;
        }
        whole = order;
    }
    if (p < end && *p == '.') {
        p++;
        fraction = 1;
        if (p >= end || *p < '0' || *p > '9')
            return -1;
        while (p < end && *p >= '0' && *p <= '9') {
            if (*p != '0')
                nonzero = 1;
            if (decimals < 1000000)
                decimals++;
            p++;
        }
    }
    int exponent = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        exponent = 1;
        p++;
        int minus = 0;
        if (p < end && (*p == '+' || *p == '-'))
            minus = *p++ == '-';
        if (p >= end || *p < '0' || *p > '9')
            return -1;
        while (p < end && *p >= '0' && *p <= '9') {
            if (e < 1000000)
                e = e * 10 + (*p - '0');
            p++;
        }
        if (minus)
            e = -e;
        order += e;
    }
    if (nonzero && order > SW_MAX_ORDER)
        return -1; /* may overflow a double, which orjson refuses */
    out->len = (size_t)(p - out->start);
    out->huge = whole + (e > 0 ? e : 0) > 100000 || decimals - (e < 0 ? e : 0) > 16000;
    out->canonical = !exponent && !(negative && !nonzero);
    out->integer = out->canonical && !fraction;
    *pp = p;
    return 0;
}

static int scan_literal(const unsigned char **pp, const unsigned char *end, const char *word, size_t n)
{
    const unsigned char *p = *pp;
    if ((size_t)(end - p) < n)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)word[i])
            return -1;
    *pp = p + n;
    return 0;
}

static int scan_container(const unsigned char **pp, const unsigned char *end, int depth, sw_value *out)
{
    const unsigned char *p = *pp;
    unsigned char close = *p == '{' ? '}' : ']';
    int object = *p == '{';
    sw_value inner;
    if (depth >= SW_MAX_DEPTH)
        return -1;
    out->start = p++;
    out->type = object ? SW_OBJECT : SW_ARRAY;
    out->plain = out->integer = out->canonical = out->huge = 0;
    p = sw_skip_ws(p, end);
    if (p < end && *p == close) {
        p++;
        out->len = (size_t)(p - out->start);
        *pp = p;
        return 0;
    }
    for (;;) {
        if (object) {
            p = sw_skip_ws(p, end);
            if (sw_scan_string(&p, end, &inner) < 0)
                return -1;
            p = sw_skip_ws(p, end);
            if (p >= end || *p != ':')
                return -1;
            p++;
        }
        if (sw_scan_value(&p, end, depth + 1, &inner) < 0)
            return -1;
        out->huge |= inner.huge;
        p = sw_skip_ws(p, end);
        if (p >= end)
            return -1;
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p != close)
            return -1;
        p++;
        out->len = (size_t)(p - out->start);
        *pp = p;
        return 0;
    }
}

int sw_scan_value(const unsigned char **pp, const unsigned char *end, int depth, sw_value *out)
{
    const unsigned char *p = sw_skip_ws(*pp, end);
    int rc;
    if (p >= end)
        return -1;
    switch (*p) {
    case '"':
        rc = sw_scan_string(&p, end, out);
        break;
    case '{':
    case '[':
        rc = scan_container(&p, end, depth, out);
        break;
    case 't':
        out->start = p;
        rc = scan_literal(&p, end, "true", 4);
        out->type = SW_TRUE;
        out->len = 4;
        break;
    case 'f':
        out->start = p;
        rc = scan_literal(&p, end, "false", 5);
        out->type = SW_FALSE;
        out->len = 5;
        break;
    case 'n':
        out->start = p;
        rc = scan_literal(&p, end, "null", 4);
        out->type = SW_NULL;
        out->len = 4;
        break;
    default:
        rc = scan_number(&p, end, out);
        break;
    }
    if (rc < 0)
        return -1;
    if (out->type >= SW_TRUE && out->type <= SW_NULL)
        out->plain = out->integer = out->canonical = out->huge = 0;
    *pp = p;
    return 0;
}

int sw_next_char(const unsigned char **pp, unsigned char utf8[4])
{
    const unsigned char *p = *pp;
    unsigned c = *p;
    if (c != '\\') {
        int n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        for (int i = 0; i < n; i++)
            utf8[i] = p[i];
        *pp = p + n;
        return n;
    }
    unsigned u = 0;
    switch (p[1]) {
    case 'b': utf8[0] = '\b'; *pp = p + 2; return 1;
    case 'f': utf8[0] = '\f'; *pp = p + 2; return 1;
    case 'n': utf8[0] = '\n'; *pp = p + 2; return 1;
    case 'r': utf8[0] = '\r'; *pp = p + 2; return 1;
    case 't': utf8[0] = '\t'; *pp = p + 2; return 1;
    case 'u': break;
    default: utf8[0] = p[1]; *pp = p + 2; return 1; /* " \ / */
    }
    hex4(p + 2, p + 6, &u);
    p += 6;
    if (u >= 0xD800 && u <= 0xDBFF) {
        unsigned low = 0xDC00;
        hex4(p + 2, p + 6, &low);
        p += 6;
        u = 0x10000 + ((u - 0xD800) << 10) + (low - 0xDC00);
    }
    *pp = p;
    if (u < 0x80) {
        utf8[0] = (unsigned char)u;
        return 1;
    }
    if (u < 0x800) {
        utf8[0] = (unsigned char)(0xC0 | u >> 6);
        utf8[1] = (unsigned char)(0x80 | (u & 0x3F));
        return 2;
    }
    if (u < 0x10000) {
        utf8[0] = (unsigned char)(0xE0 | u >> 12);
        utf8[1] = (unsigned char)(0x80 | (u >> 6 & 0x3F));
        utf8[2] = (unsigned char)(0x80 | (u & 0x3F));
        return 3;
    }
    utf8[0] = (unsigned char)(0xF0 | u >> 18);
    utf8[1] = (unsigned char)(0x80 | (u >> 12 & 0x3F));
    utf8[2] = (unsigned char)(0x80 | (u >> 6 & 0x3F));
    utf8[3] = (unsigned char)(0x80 | (u & 0x3F));
    return 4;
}
