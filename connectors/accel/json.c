/* Text output shared by the accelerator's parts: a growable buffer, decimal
 * numbers, strict UTF-8 checking and JSON strings as Python's json module
 * writes them (json.encoder.encode_basestring: non-ASCII kept as is).
 */

#include <string.h>

#include "accel.h"

int
rj_buffer_init(Buffer *buffer)
{
    buffer->cap = 256;
    buffer->data = PyMem_Malloc(buffer->cap);
    if (buffer->data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

void
rj_buffer_free(Buffer *buffer)
{
    PyMem_Free(buffer->data);
    buffer->data = NULL;
    buffer->cap = 0;
}

int
rj_reserve(Buffer *buffer, Py_ssize_t used, Py_ssize_t more)
{
    if (used + more <= buffer->cap)
        return 0;
    Py_ssize_t cap = buffer->cap * 2;
    while (cap < used + more)
        cap *= 2;
    char *data = PyMem_Realloc(buffer->data, cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    buffer->data = data;
    buffer->cap = cap;
    return 0;
}

Py_ssize_t
rj_put_u64(char *out, uint64_t v)
{
    char tmp[20];
    Py_ssize_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (Py_ssize_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

Py_ssize_t
rj_put_i64(char *out, int64_t v)
{
    if (v < 0) {
        out[0] = '-';
        return 1 + rj_put_u64(out + 1, (uint64_t)0 - (uint64_t)v);
    }
    return rj_put_u64(out, (uint64_t)v);
}

/* Strict UTF-8, as CPython's decoder: no overlongs, no surrogates, <= U+10FFFF. */
int
rj_valid_utf8(const unsigned char *s, Py_ssize_t n, int *ascii)
{
    Py_ssize_t i = 0;
    int all_ascii = 1;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        all_ascii = 0;
        if (c >= 0xC2 && c <= 0xDF) {
            if (i + 1 >= n || (s[i + 1] & 0xC0) != 0x80)
                return 0;
            i += 2;
        }
        else if (c >= 0xE0 && c <= 0xEF) {
            if (i + 2 >= n)
                return 0;
            unsigned char c1 = s[i + 1];
            if ((c1 & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80)
                return 0;
            if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 > 0x9F))
                return 0;
            i += 3;
        }
        else if (c >= 0xF0 && c <= 0xF4) {
            if (i + 3 >= n)
                return 0;
            unsigned char c1 = s[i + 1];
            if ((c1 & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80 || (s[i + 3] & 0xC0) != 0x80)
                return 0;
            if ((c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 > 0x8F))
                return 0;
            i += 4;
        }
        else {
            return 0;
        }
    }
    *ascii = all_ascii;
    return 1;
}

static const char HEX[] = "0123456789abcdef";

/* A JSON string as json.encoder.encode_basestring writes it (non-ASCII kept). */
Py_ssize_t
rj_put_json_string(char *out, const unsigned char *s, Py_ssize_t n)
{
    Py_ssize_t o = 0;
    out[o++] = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            out[o++] = (char)c;
            continue;
        }
        out[o++] = '\\';
        switch (c) {
        case '"': out[o++] = '"'; break;
        case '\\': out[o++] = '\\'; break;
        case '\n': out[o++] = 'n'; break;
        case '\r': out[o++] = 'r'; break;
        case '\t': out[o++] = 't'; break;
        case '\b': out[o++] = 'b'; break;
        case '\f': out[o++] = 'f'; break;
        default:
            out[o++] = 'u';
            out[o++] = '0';
            out[o++] = '0';
            out[o++] = HEX[c >> 4];
            out[o++] = HEX[c & 15];
        }
    }
    out[o++] = '"';
    return o;
}

