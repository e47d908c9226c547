/* A strict JSON scanner that accepts only what orjson accepts too.
 *
 * It never builds values: it checks a document and reports where each value
 * lies. Whatever it is not sure orjson would read the same way (nesting
 * deeper than SW_MAX_DEPTH, a number that may overflow a double, an escaped
 * NUL, bytes that are not UTF-8) it refuses, and the caller hands the record
 * to the pure-Python decoder, which decides. So a document this scanner
 * accepts is always one orjson accepts, with the same values. */
#ifndef SYNCWD_JSON_H
#define SYNCWD_JSON_H

#include <stddef.h>

#define SW_MAX_DEPTH 64

typedef enum { SW_STRING, SW_NUMBER, SW_TRUE, SW_FALSE, SW_NULL, SW_OBJECT, SW_ARRAY } sw_type;

typedef struct {
    const unsigned char *start; /* the value's JSON text, quotes included */
    size_t len;
    sw_type type;
    /* strings: no escapes, so the text between the quotes is the value */
    unsigned plain : 1;
    /* numbers: digits only (no fraction, no exponent) and not a negative zero */
    unsigned integer : 1;
    /* numbers: the text numeric_out would print for it (no exponent, no
     * negative zero) */
    unsigned canonical : 1;
    /* the value is or holds a number jsonb's numeric may refuse (more than
     * 100000 digits before the point or 16000 after it, exponent counted):
     * valid JSON that only the jsonb path may judge */
    unsigned huge : 1;
} sw_value;

/* Scan the value at *p (whitespace before it is skipped); on success fill
 * *out, move *p past the value and return 0. Return -1 for anything refused. */
int sw_scan_value(const unsigned char **p, const unsigned char *end, int depth, sw_value *out);

/* Skip JSON whitespace. */
const unsigned char *sw_skip_ws(const unsigned char *p, const unsigned char *end);

/* Scan the string at *p (its opening quote); same contract as sw_scan_value. */
int sw_scan_string(const unsigned char **p, const unsigned char *end, sw_value *out);

/* Decode the next character of a scanned string's body at *p (which must
 * not be its closing quote) into utf8[0..3]; returns its byte count. The
 * string was validated by the scanner, so this cannot fail. */
int sw_next_char(const unsigned char **p, unsigned char utf8[4]);

#endif
