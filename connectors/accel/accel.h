/* The C accelerator (the extension connectors._accel): what its parts share.
 *
 *   json.c         a growable output buffer, decimal numbers, UTF-8, JSON strings
 *   records.c      whole Kafka records from the format's templates; the module
 *   mysql_image.c  MySQL binlog row images -> the format's JSON (Image)
 *   mysql_scan.c   MySQL row events and whole MariaDB transactions -> records
 *                  (RecordPlan, Scanner)
 *   pg_scan.c      whole PostgreSQL transactions (pgoutput) -> records
 *                  (PgTable, PgScanner)
 *
 * Optional: without a C compiler the package installs without it and the
 * Python paths do the same work, slower (connectors/native.py).
 */
#ifndef CDC_ACCEL_H
#define CDC_ACCEL_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* -- json.c ----------------------------------------------------------------------- */

typedef struct {
    char *data;
    Py_ssize_t cap;
} Buffer;

int rj_buffer_init(Buffer *buffer);
void rj_buffer_free(Buffer *buffer);
/* Room for `more` bytes after `used`; -1 (MemoryError set) if none. */
int rj_reserve(Buffer *buffer, Py_ssize_t used, Py_ssize_t more);
/* The decimal digits of v at out (at most 20, 21 with a sign); how many. */
Py_ssize_t rj_put_u64(char *out, uint64_t v);
Py_ssize_t rj_put_i64(char *out, int64_t v);
/* Strict UTF-8 as CPython's decoder; *ascii tells whether all of it is ASCII. */
int rj_valid_utf8(const unsigned char *s, Py_ssize_t n, int *ascii);
/* s as a JSON string (at most 6 * n + 2 bytes), as json.encoder.encode_basestring
 * writes it; how many bytes. */
Py_ssize_t rj_put_json_string(char *out, const unsigned char *s, Py_ssize_t n);

/* -- records.c -------------------------------------------------------------------- */

enum { OP_INSERT = 0, OP_UPDATE = 1, OP_DELETE = 2 };
/* Why a scanner stopped (module constants SCAN_*), and what became of one
 * transaction it looked at. */
enum { SCAN_END = 0, SCAN_PYTHON = 1, SCAN_INCOMPLETE = 2, SCAN_FULL = 3 };
enum { TAKEN = 0, DECLINED = 1, INCOMPLETE = 2 };

/* The holes of a record template (cdc.model.Hole). */
enum {
    H_BEFORE, H_AFTER, H_TS_MS, H_TS_US, H_TS_NS, H_SERVER_ID, H_GTID, H_FILE,
    H_POS, H_ROW, H_NOW_MS, H_NOW_US, H_NOW_NS, H_TXID, H_LAST_COMMIT, H_COUNT,
    H_TEXT = -1,
};

typedef struct {
    int hole; /* H_TEXT: text */
    const char *text;
    Py_ssize_t len;
} Piece;

typedef struct {
    Piece *pieces;
    Py_ssize_t n;
} Template;

/* What every record of a table version shares: a value template and a topic
 * per op, whether a delete is followed by a tombstone, the event-id header. */
typedef struct {
    PyObject *templates; /* the template tuples: own the texts */
    Template tpl[3];
    PyObject *topics[3];
    PyObject *id_header;
    int tombstones;
} RecordSpec;

/* What the holes of one row's record are filled with (a hole of the other
 * connector's finds its text empty, its number 0: zero the Context first). */
typedef struct {
    int64_t ts_us;     /* the change's commit time, microseconds since the epoch */
    int64_t server_id; /* MySQL: the server that wrote the transaction's first row event */
    const char *gtid;  /* MySQL: JSON text */
    Py_ssize_t gtid_len;
    const char *file;  /* MySQL: JSON text */
    Py_ssize_t file_len;
    uint64_t pos;      /* MySQL: the row event's position; PostgreSQL: the change's LSN */
    int64_t txid;      /* PostgreSQL: the transaction's xid */
    const char *last_commit; /* PostgreSQL: the commit LSN before, as Debezium's sequence has it */
    Py_ssize_t last_commit_len;
    const char *id_prefix; /* the event ids' text before the index */
    Py_ssize_t id_prefix_len;
    int64_t index;     /* the first row's index in its transaction */
} Context;

PyObject *rj_not_initialised(const char *type);
/* A row's key as the format writes it: '{', then per key column its prefix
 * ('{"a":' or ',"a":') without the first character, and its value's text, at
 * [spans[2j], spans[2j + 1]) of buf, joined by ','; then '}'. */
PyObject *rj_key_json(const char *buf, Py_ssize_t nkeys, const Py_ssize_t *spans,
                      const char *const *prefix, const Py_ssize_t *prefix_len);
/* templates: one tuple of bytes and holes per op; topics: one str per op. */
int rj_spec_init(RecordSpec *spec, PyObject *templates, PyObject *topics, int tombstones,
                 PyObject *id_header);
void rj_spec_clear(RecordSpec *spec);
/* The record of row `row` appended to `out` (and a delete's tombstone): its
 * value from the op's template, written to buf at offset o, the row's images at
 * [b0, b1) and [a0, a1) of buf (null where b0 / a0 is -1), `key` its key (None
 * without one). 0, or -1 on an error. */
int rj_emit(const RecordSpec *spec, Buffer *buf, const Context *ctx, int op, int64_t row,
            Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t a0, Py_ssize_t a1, Py_ssize_t o,
            PyObject *key, PyObject *out);

/* -- mysql_image.c ---------------------------------------------------------------- */

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
    Py_ssize_t *key_spans; /* scratch: start and end of each key value's text in out */
    const char **key_prefix; /* each key column's prefix, in key order */
    Py_ssize_t *key_prefix_len;
    PyObject *key_names;  /* tuple of str */
    PyObject *prefixes;   /* tuple of bytes: owns the prefix texts */
    int prefixes_ascii;   /* no column name has a non-ASCII character */
    PyObject *rendered;   /* the type to wrap the text in */
    PyObject *fallback;   /* (data, pos) -> the generated reader's answer */
    Buffer out;
} ImageObject;

extern PyTypeObject rj_ImageType;

/* The image at data[pos] rendered at self->out + o: the offset after it (and
 * *next, the position after the image), -1 on an error, -2 where it is not
 * taken. With `nulls`, NULL columns are written as null (a NULL key is not
 * taken). The key values' places in out are left in key_spans. */
Py_ssize_t rj_render_image(ImageObject *self, const unsigned char *data, Py_ssize_t size,
                           Py_ssize_t pos, Py_ssize_t o, int nulls, Py_ssize_t *next, int *ascii);
/* The key's JSON text from the image rendered last (key_spans), as bytes. */
PyObject *rj_key_text(ImageObject *self);

/* -- the module's parts ----------------------------------------------------------- */

int rj_add_mysql_image(PyObject *module);
int rj_add_mysql_scan(PyObject *module);
int rj_add_pg_scan(PyObject *module);

#endif
