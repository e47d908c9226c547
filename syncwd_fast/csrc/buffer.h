/* A growable byte buffer: the one place that allocates while rendering. */
#ifndef SYNCWD_BUFFER_H
#define SYNCWD_BUFFER_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    unsigned char *data;
    size_t len;
    size_t cap;
} sw_buf;

/* 0 on success, -1 when memory ran out (the buffer is left as it was). */
static inline int sw_buf_reserve(sw_buf *b, size_t extra)
{
    if (extra > (size_t)-1 / 2 - b->len)
        return -1;
    if (b->len + extra <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra)
        cap *= 2;
    unsigned char *data = realloc(b->data, cap);
    if (data == NULL)
        return -1;
    b->data = data;
    b->cap = cap;
    return 0;
}

static inline int sw_buf_add(sw_buf *b, const void *bytes, size_t n)
{
    if (sw_buf_reserve(b, n) < 0)
        return -1;
    if (n)
        memcpy(b->data + b->len, bytes, n);
    b->len += n;
    return 0;
}

static inline int sw_buf_byte(sw_buf *b, unsigned char c)
{
    if (b->len == b->cap && sw_buf_reserve(b, 1) < 0)
        return -1;
    b->data[b->len++] = c;
    return 0;
}

/* The decimal text of a non-negative number. */
static inline int sw_buf_uint(sw_buf *b, size_t v)
{
    char digits[24];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    if (sw_buf_reserve(b, n) < 0)
        return -1;
    while (n)
        b->data[b->len++] = (unsigned char)digits[--n];
    return 0;
}

static inline void sw_buf_free(sw_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

#endif
