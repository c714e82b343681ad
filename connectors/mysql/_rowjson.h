/* What the two halves of the C accelerator share (see _rowjson.c, _records.c).
 *
 * _rowjson.c reads one binlog row image into the sink format's JSON object text
 * (`Image`); _records.c builds whole Kafka records of row events and of whole
 * MariaDB transactions around those images (`RecordPlan`, `Scanner`).
 */
#ifndef CDC_ROWJSON_H
#define CDC_ROWJSON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

enum { K_INT = 0, K_STR = 1, K_DECIMAL = 2, K_EPOCH = 3 };

typedef struct {
    int kind;
    int a, b;
    int width;     /* INT: bytes; STR: length prefix bytes; DECIMAL: packed size */
    int is_signed; /* INT */
    int nfrac, mult; /* EPOCH: fraction bytes, multiplier to microseconds */
    /* DECIMAL: group widths in bytes and digits, integer groups first */
    int ngroups, nint;
    int gwidth[16], gdigits[16];
    const char *prefix;
    Py_ssize_t prefix_len;
} Column;

typedef struct {
    PyObject_HEAD
    Column *cols;
    Py_ssize_t ncols;
    Py_ssize_t nbitmap;   /* null bitmap bytes */
    Py_ssize_t nkeys;
    Py_ssize_t *key_cols; /* column index of each key column, in key order */
    Py_ssize_t *slot_of;  /* per column: its place in the key, or -1 */
    PyObject **key_values; /* scratch: the key's values, in key order */
    Py_ssize_t *key_spans; /* scratch: start and end of each key value's text in buf */
    PyObject *key_names;  /* tuple of str */
    PyObject *prefixes;   /* tuple of bytes: owns the prefix texts */
    int prefixes_ascii;   /* no column name has a non-ASCII character */
    PyObject *rendered;   /* the type to wrap the text in */
    PyObject *fallback;   /* (data, pos) -> the generated reader's answer */
    char *buf;
    Py_ssize_t cap;
} ImageObject;

extern PyTypeObject rj_ImageType;

/* Room for `more` bytes after `used` in self->buf; -1 (MemoryError set) if none. */
int rj_reserve(ImageObject *self, Py_ssize_t used, Py_ssize_t more);
/* The decimal digits of v at out (at most 20, 21 with a sign); how many. */
Py_ssize_t rj_put_u64(char *out, uint64_t v);
Py_ssize_t rj_put_i64(char *out, int64_t v);
/* The image at data[pos] rendered at self->buf + o: the offset after it (and
 * *next, the position after the image), -1 on an error, -2 where it is not
 * taken. With `nulls`, NULL columns are written as null (a NULL key is not
 * taken). The key values' places in buf are left in key_spans. */
Py_ssize_t rj_render_image(ImageObject *self, const unsigned char *data, Py_ssize_t size,
                           Py_ssize_t pos, Py_ssize_t o, int nulls, Py_ssize_t *next, int *ascii);
/* The key's JSON text from the image rendered last (key_spans), as bytes. */
PyObject *rj_key_text(ImageObject *self);

/* Adds RecordPlan, Scanner and their constants to the module (_records.c). */
int rj_add_records(PyObject *module);

#endif
