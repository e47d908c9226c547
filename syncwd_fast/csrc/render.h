/* A scanned JSON value as the field of a text COPY into a typed stage
 * column: the C twin of render.py, whose docstring says why each rule holds. */
#ifndef SYNCWD_RENDER_H
#define SYNCWD_RENDER_H

#include "buffer.h"
#include "json.h"

/* Column kinds, as schema.TableSchema.kinds spells them. */
#define SW_KIND_SCALAR 's'
#define SW_KIND_FLOAT8 'f'
#define SW_KIND_JSONB 'j'
#define SW_KIND_ARRAY 'a'

/* Append the COPY field of v for a column of kind. Returns 1 when rendered,
 * 0 when only the jsonb path is exact (out is then left as it was), -1 when
 * memory ran out. */
int sw_render(sw_buf *out, char kind, const sw_value *v);

/* Append bytes as COPY text: backslash, tab, newline and CR escaped. */
int sw_copy_escaped(sw_buf *out, const unsigned char *p, size_t n);

#endif
