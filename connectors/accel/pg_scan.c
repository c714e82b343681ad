/* Whole PostgreSQL transactions (pgoutput messages) -> Kafka records.
 *
 * PgTable(program, keys, templates, topics, tombstones, id_header)
 *     One relation, as its latest Relation message describes it, whose every
 *     column is of a kind below: how its Insert, Update and Delete messages
 *     become records (records.c). program: (kind, prefix, scale) per column, in
 *     order, prefix the text before the value ('{"name":' or ',"name":'), scale
 *     a numeric's (0 for the other kinds); keys: the key
 *     columns' indexes, in the key's order (integers and text only). Each kind
 *     writes exactly what the format makes of the value's text (see
 *     connectors/postgres/pgoutput.py, compile_json_reader), or does not take
 *     it:
 *       PG_INT        an integer's text: a JSON number already
 *       PG_TEXT       text: a JSON string, as json.encoder.encode_basestring
 *                     writes it (strict UTF-8)
 *       PG_BOOL       t / f: true / false
 *       PG_NUMERIC    numeric(p, s >= 0), the `string` decimal mode: quoted as is
 *                     where its first digit (after a '-') is 1-9
 *                     (mappers.debezium._numeric_text) and it has s decimals
 *       PG_TIMESTAMPTZ 'YYYY-MM-DD HH:MM:SS[.f]+00' -> "YYYY-MM-DDTHH:MM:SS.ffffffZ"
 *                     (mappers.debezium._timestamptz6_text)
 *
 * PgScanner()
 *     Whole transactions from a burst of pgoutput messages: Begin, then
 *     Insert (new tuple), Update (new tuple only: the default replica
 *     identity with the key unchanged) and Delete messages of relations it was
 *     taught, then Commit. Any other shape (a Relation, Type, Truncate, logical
 *     message or Origin inside it, an old tuple on an update, an unchanged TOAST
 *     value, a value its kind does not take, a relation not taught, a
 *     transaction not whole in the burst) is left to the Python path, from its
 *     Begin on.
 *   .learn(oid, table)   the relation's rows rendered by `table`
 *   .forget(oid)         its transactions go to the Python path (a table not
 *                        captured, too: the decoder reads, then drops its rows)
 *   .changes(...)        the changes of a streamed transaction's replay (see
 *                        PgScanner_changes)
 *   .scan(messages, start, last_commit, max_rows)
 *         -> (next, stop, records, commit_times, rows, end_lsn, xid, last_commit)
 *     messages: [(wal_start, payload), ...]; the whole transactions from
 *     messages[start]: their records, each one's commit time (us since the Unix
 *     epoch), their rows, the last one's end LSN and xid, and its commit LSN
 *     (the `last_commit` of the next; last_commit: the one before, or None);
 *     `next` the first message not taken and why it stopped (SCAN_*). It stops
 *     before a transaction once max_rows rows are taken.
 */

#include <string.h>

#include "accel.h"

enum { PG_INT = 0, PG_TEXT = 1, PG_BOOL = 2, PG_NUMERIC = 3, PG_TIMESTAMPTZ = 4, PG_KINDS };

/* PostgreSQL counts microseconds from 2000-01-01, we from 1970-01-01. */
#define PG_EPOCH_OFFSET_US 946684800000000LL
/* Commit times past this do not fit the template's nanoseconds (year 2262). */
#define MAX_TS_US 9000000000000000LL

static uint32_t
be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t
be64(const unsigned char *p)
{
    return (uint64_t)be32(p) << 32 | be32(p + 4);
}

/* A pgoutput timestamp (microseconds since 2000-01-01, signed) as microseconds
 * since the Unix epoch, where it is between 1970 and MAX_TS_US; 0 otherwise. */
static int
commit_time(const unsigned char *p, int64_t *ts_us)
{
    int64_t pg = (int64_t)be64(p);
    if (pg < -PG_EPOCH_OFFSET_US || pg > MAX_TS_US - PG_EPOCH_OFFSET_US)
        return 0;
    *ts_us = pg + PG_EPOCH_OFFSET_US;
    return 1;
}

/* -- PgTable -------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    Py_ssize_t ncols;
    int *kinds;
    int *scales;          /* PG_NUMERIC: the column's scale */
    const char **prefix;
    Py_ssize_t *prefix_len;
    Py_ssize_t *slot_of;  /* per column: its place in the key, or -1 */
    Py_ssize_t nkeys;
    Py_ssize_t *key_spans; /* scratch: start and end of each key value's text in out */
    const char **key_prefix;
    Py_ssize_t *key_prefix_len;
    PyObject *program;    /* owns the prefix texts */
    RecordSpec spec;
    Buffer out;           /* NULL data until __init__ succeeds */
} PgTableObject;

static PyTypeObject PgTableType;

/* One value's text (n bytes at s) of a column's kind (and a numeric's scale),
 * as JSON at out (room for 6 * n + 32 bytes): how many bytes, or -2 where it is
 * not taken. */
static Py_ssize_t
put_value_text(int kind, int scale, const unsigned char *s, Py_ssize_t n, char *out)
{
    switch (kind) {
    case PG_INT: {
        /* canonical, as PostgreSQL writes integers: the text is int(text)'s JSON too
         * (a delete's key and old row go through int() on the general path) */
        Py_ssize_t first = n > 0 && s[0] == '-' ? 1 : 0;
        if (first >= n || (s[first] == '0' && (n > first + 1 || first)))
            return -2; /* empty, a leading zero, or -0 */
        for (Py_ssize_t i = first; i < n; i++)
            if (s[i] < '0' || s[i] > '9')
                return -2;
        memcpy(out, s, n);
        return n;
    }
    case PG_TEXT: {
        int ascii;
        if (!rj_valid_utf8(s, n, &ascii))
            return -2;
        return rj_put_json_string(out, s, n);
    }
    case PG_BOOL:
        if (n == 1 && s[0] == 't') {
            memcpy(out, "true", 4);
            return 4;
        }
        if (n == 1 && s[0] == 'f') {
            memcpy(out, "false", 5);
            return 5;
        }
        return -2;
    case PG_NUMERIC: {
        /* -?[1-9][0-9]*(.[0-9]{s})?: as PostgreSQL writes numeric(p, s), which the
         * general path (a delete's old row) parses back to the same text */
        Py_ssize_t first = n > 0 && s[0] == '-' ? 1 : 0, dot = -1;
        if (first >= n || s[first] < '1' || s[first] > '9')
            return -2;
        for (Py_ssize_t i = first; i < n; i++) {
            if (s[i] == '.' && dot < 0)
                dot = i;
            else if (s[i] < '0' || s[i] > '9')
                return -2;
        }
        if ((dot < 0 ? 0 : n - dot - 1) != scale || (dot >= 0 && scale == 0))
            return -2;
        out[0] = '"';
        memcpy(out + 1, s, n);
        out[n + 1] = '"';
        return n + 2;
    }
    case PG_TIMESTAMPTZ: {
        /* as _timestamptz6_text: the date, 'T', the time with 6 fraction digits, 'Z';
         * only PostgreSQL's own UTC text, 'YYYY-MM-DD HH:MM:SS[.f{1,6}]+00', which
         * the general path would parse to the same (a delete's old row) */
        static const char shape[] = "dddd-dd-dd dd:dd:dd";
        if (n < 22 || n > 29 || n == 23 || memcmp(s + n - 3, "+00", 3) != 0)
            return -2;
        for (Py_ssize_t i = 0; i < 19; i++)
            if (shape[i] == 'd' ? s[i] < '0' || s[i] > '9' : s[i] != shape[i])
                return -2;
        if (n > 22 && s[19] != '.')
            return -2;
        for (Py_ssize_t i = 20; i < n - 3; i++)
            if (s[i] < '0' || s[i] > '9')
                return -2;
        Py_ssize_t o = 0;
        out[o++] = '"';
        memcpy(out + o, s, 10);
        o += 10;
        out[o++] = 'T';
        if (n == 22) {
            memcpy(out + o, s + 11, 8);
            o += 8;
            memcpy(out + o, ".000000", 7);
            o += 7;
        }
        else {
            Py_ssize_t m = n - 3 - 11; /* 'HH:MM:SS.f...' */
            memcpy(out + o, s + 11, m);
            o += m;
            for (; m < 15; m++)
                out[o++] = '0';
        }
        out[o++] = 'Z';
        out[o++] = '"';
        for (Py_ssize_t i = 1; i < o - 1; i++) /* JSON-safe as it is: no quote, backslash, control */
            if (out[i] == '"' || out[i] == '\\' || (unsigned char)out[i] < 0x20)
                return -2;
        return o;
    }
    }
    return -2;
}

/* The TupleData at data[*pos] as the JSON object at out + o (moving *pos past
 * it): the offset after it, -1 on an error, -2 where it is not taken (an
 * unchanged TOAST value, a binary value, a NULL key, a value its kind does not
 * take, data cut short). Records where each key value's text lies. With
 * `keys_only` (an old key tuple) the other columns are null, whatever it holds,
 * as the general path keeps only the key's. */
static Py_ssize_t
render_tuple(PgTableObject *t, const unsigned char *data, Py_ssize_t size, Py_ssize_t *pos,
             Py_ssize_t o, int keys_only)
{
    Py_ssize_t p = *pos;
    if (p + 2 > size || (Py_ssize_t)(data[p] << 8 | data[p + 1]) != t->ncols)
        return -2;
    p += 2;
    if (t->ncols == 0) {
        if (rj_reserve(&t->out, o, 2) < 0)
            return -1;
        memcpy(t->out.data + o, "{}", 2);
        *pos = p;
        return o + 2;
    }
    for (Py_ssize_t k = 0; k < t->ncols; k++) {
        if (p >= size)
            return -2;
        unsigned char marker = data[p++];
        Py_ssize_t slot = t->slot_of[k];
        if (marker == 'n') {
            if (slot >= 0)
                return -2; /* a NULL key: the general path decides */
            if (rj_reserve(&t->out, o, t->prefix_len[k] + 4) < 0)
                return -1;
            memcpy(t->out.data + o, t->prefix[k], t->prefix_len[k]);
            o += t->prefix_len[k];
            memcpy(t->out.data + o, "null", 4);
            o += 4;
            continue;
        }
        if (marker != 't' || p + 4 > size)
            return -2;
        uint32_t len = be32(data + p);
        p += 4;
        if ((uint64_t)len > (uint64_t)(size - p) || (uint64_t)len * 6 + 64 > PY_SSIZE_T_MAX)
            return -2; /* past the message, or (32 bits) past what the buffer can hold */
        Py_ssize_t n = (Py_ssize_t)len;
        if (rj_reserve(&t->out, o, t->prefix_len[k] + 6 * n + 32) < 0)
            return -1;
        memcpy(t->out.data + o, t->prefix[k], t->prefix_len[k]);
        o += t->prefix_len[k];
        Py_ssize_t w;
        if (keys_only && slot < 0) {
            memcpy(t->out.data + o, "null", 4);
            w = 4;
        }
        else if ((w = put_value_text(t->kinds[k], t->scales[k], data + p, n,
                                     t->out.data + o)) < 0) {
            return -2;
        }
        if (slot >= 0) {
            t->key_spans[2 * slot] = o;
            t->key_spans[2 * slot + 1] = o + w;
        }
        o += w;
        p += n;
    }
    if (rj_reserve(&t->out, o, 1) < 0)
        return -1;
    t->out.data[o++] = '}';
    *pos = p;
    return o;
}

/* One Insert, Update or Delete message (payload[0] its type; its body at
 * payload[body]: 1, or 5 inside a stream block, after the xid) appended to
 * `out` as records: 0, -1 on an error, -2 where it is not taken. */
static int
render_change(PgTableObject *t, const Context *ctx, const unsigned char *payload, Py_ssize_t size,
              Py_ssize_t body, PyObject *out)
{
    if (size < body + 5)
        return -2;
    int op = payload[0] == 'I' ? OP_INSERT : payload[0] == 'U' ? OP_UPDATE : OP_DELETE;
    unsigned char marker = payload[body + 4];
    if (op == OP_DELETE ? marker != 'K' && marker != 'O' : marker != 'N')
        return -2; /* an update with the old tuple: the general path compares the keys */
    Py_ssize_t pos = body + 5;
    Py_ssize_t end = render_tuple(t, payload, size, &pos, 0, marker == 'K');
    if (end < 0)
        return (int)end;
    if (pos != size)
        return -2; /* more than one tuple, or trailing bytes: the general path reports it */
    PyObject *key = t->nkeys == 0 ? Py_NewRef(Py_None)
                                  : rj_key_json(t->out.data, t->nkeys, t->key_spans,
                                                t->key_prefix, t->key_prefix_len);
    if (key == NULL)
        return -1;
    int r = op == OP_DELETE ? rj_emit(&t->spec, &t->out, ctx, op, 0, 0, end, -1, 0, end, key, out)
                            : rj_emit(&t->spec, &t->out, ctx, op, 0, -1, 0, 0, end, end, key, out);
    Py_DECREF(key);
    return r;
}

static const int KEY_KINDS[PG_KINDS] = {1, 1, 0, 0, 0}; /* integers and text */

static int
PgTable_init(PgTableObject *self, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"program", "keys", "templates", "topics", "tombstones", "id_header",
                            NULL};
    PyObject *program, *keys, *templates, *topics, *id_header;
    int tombstones;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!O!O!pU", names, &PyTuple_Type, &program,
                                     &PyTuple_Type, &keys, &PyTuple_Type, &templates,
                                     &PyTuple_Type, &topics, &tombstones, &id_header))
        return -1;
    if (self->program != NULL) {
        PyErr_SetString(PyExc_TypeError, "PgTable is initialised once");
        return -1;
    }
    self->program = Py_NewRef(program);
    Py_ssize_t ncols = PyTuple_GET_SIZE(program), nkeys = PyTuple_GET_SIZE(keys);
    self->kinds = PyMem_Calloc(ncols ? ncols : 1, sizeof(int));
    self->scales = PyMem_Calloc(ncols ? ncols : 1, sizeof(int));
    self->prefix = PyMem_Calloc(ncols ? ncols : 1, sizeof(char *));
    self->prefix_len = PyMem_Calloc(ncols ? ncols : 1, sizeof(Py_ssize_t));
    self->slot_of = PyMem_Calloc(ncols ? ncols : 1, sizeof(Py_ssize_t));
    self->key_spans = PyMem_Calloc(nkeys ? 2 * nkeys : 1, sizeof(Py_ssize_t));
    self->key_prefix = PyMem_Calloc(nkeys ? nkeys : 1, sizeof(char *));
    self->key_prefix_len = PyMem_Calloc(nkeys ? nkeys : 1, sizeof(Py_ssize_t));
    if (self->kinds == NULL || self->scales == NULL || self->prefix == NULL ||
        self->prefix_len == NULL ||
        self->slot_of == NULL || self->key_spans == NULL || self->key_prefix == NULL ||
        self->key_prefix_len == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t k = 0; k < ncols; k++) {
        PyObject *spec = PyTuple_GET_ITEM(program, k), *prefix;
        int kind, scale;
        if (!PyTuple_Check(spec)) {
            PyErr_Format(PyExc_TypeError, "column %zd: (kind, prefix, scale) expected", k);
            return -1;
        }
        if (!PyArg_ParseTuple(spec, "iSi", &kind, &prefix, &scale))
            return -1;
        if (kind < 0 || kind >= PG_KINDS || PyBytes_GET_SIZE(prefix) < 2 || scale < 0 ||
            scale > 1000) {
            PyErr_Format(PyExc_ValueError, "column %zd: kind %d, prefix of %zd bytes, scale %d",
                         k, kind, PyBytes_GET_SIZE(prefix), scale);
            return -1;
        }
        self->kinds[k] = kind;
        self->scales[k] = scale;
        self->prefix[k] = PyBytes_AS_STRING(prefix);
        self->prefix_len[k] = PyBytes_GET_SIZE(prefix);
        self->slot_of[k] = -1;
    }
    self->ncols = ncols;
    for (Py_ssize_t j = 0; j < nkeys; j++) {
        Py_ssize_t index = PyLong_AsSsize_t(PyTuple_GET_ITEM(keys, j));
        if (index == -1 && PyErr_Occurred())
            return -1;
        if (index < 0 || index >= ncols || !KEY_KINDS[self->kinds[index]] ||
            self->slot_of[index] >= 0) {
            PyErr_Format(PyExc_ValueError, "key %zd: column %zd cannot be a key here", j, index);
            return -1;
        }
        self->slot_of[index] = j;
        self->key_prefix[j] = self->prefix[index];
        self->key_prefix_len[j] = self->prefix_len[index];
    }
    self->nkeys = nkeys;
    if (rj_spec_init(&self->spec, templates, topics, tombstones, id_header) < 0)
        return -1;
    return rj_buffer_init(&self->out); /* last: it marks the table as usable */
}

static void
PgTable_dealloc(PgTableObject *self)
{
    PyMem_Free(self->kinds);
    PyMem_Free(self->scales);
    PyMem_Free(self->prefix);
    PyMem_Free(self->prefix_len);
    PyMem_Free(self->slot_of);
    PyMem_Free(self->key_spans);
    PyMem_Free(self->key_prefix);
    PyMem_Free(self->key_prefix_len);
    rj_spec_clear(&self->spec);
    rj_buffer_free(&self->out);
    Py_XDECREF(self->program);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject PgTableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "connectors.accel._accel.PgTable",
    .tp_doc = PyDoc_STR("PgTable(program, keys, templates, topics, tombstones, id_header): how one\n"
                        "relation's changes become Kafka records; see the module's source."),
    .tp_basicsize = sizeof(PgTableObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)PgTable_init,
    .tp_dealloc = (destructor)PgTable_dealloc,
};

/* -- whole transactions ------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *tables; /* relation OID (int) -> PgTable, or None: rows skipped */
} PgScannerObject;

/* What one scan() collects. */
typedef struct {
    PyObject *records, *times;
    Py_ssize_t rows;
    uint64_t end_lsn, xid, last_commit;
    int have_last_commit;
} Scan;

/* What the changes of a transaction share: its commit time, xid, the commit
 * LSN before it (Debezium's sequence: \"n\" or null, written to last_commit,
 * 32 bytes) and the event ids' text before the index (format_position of its
 * commit LSN, written to id_prefix, 24 bytes). */
static void
transaction_context(Context *ctx, uint64_t commit_lsn, int64_t ts_us, uint64_t xid,
                    int have_last_commit, uint64_t last_commit_lsn, char *id_prefix,
                    char *last_commit)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->ts_us = ts_us;
    ctx->txid = (int64_t)xid;
    ctx->id_prefix = id_prefix;
    ctx->id_prefix_len = snprintf(id_prefix, 24, "%llX/", (unsigned long long)commit_lsn);
    ctx->last_commit = last_commit;
    ctx->last_commit_len =
        have_last_commit
            ? snprintf(last_commit, 32, "\\\"%llu\\\"", (unsigned long long)last_commit_lsn)
            : snprintf(last_commit, 32, "null");
}

/* messages[i] as (wal_start, payload, size), and a new reference to the item:
 * the caller holds it while it reads the payload, so that nothing an allocation
 * or a lookup runs can free it. NULL (no exception) where there is no such
 * item, or it is not an (int, non-empty bytes) pair. */
static PyObject *
message_at(PyObject *messages, Py_ssize_t i, uint64_t *lsn, const unsigned char **payload,
           Py_ssize_t *size)
{
    if (i >= PyList_GET_SIZE(messages))
        return NULL;
    PyObject *item = PyList_GET_ITEM(messages, i);
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2 ||
        !PyBytes_Check(PyTuple_GET_ITEM(item, 1)) || !PyLong_Check(PyTuple_GET_ITEM(item, 0)))
        return NULL;
    *lsn = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(item, 0));
    if (*lsn == (uint64_t)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return NULL;
    }
    *payload = (const unsigned char *)PyBytes_AS_STRING(PyTuple_GET_ITEM(item, 1));
    *size = PyBytes_GET_SIZE(PyTuple_GET_ITEM(item, 1));
    return *size > 0 ? Py_NewRef(item) : NULL;
}

/* The transaction whose Begin is messages[start]: its records appended to
 * s->records and its commit noted, TAKEN (*next: the message after its
 * Commit); DECLINED or INCOMPLETE (its Commit is not in the burst), s->records
 * as it was; or -1 on an error. */
static int
take_transaction(PgScannerObject *self, PyObject *messages, Py_ssize_t start, Scan *s,
                 Py_ssize_t *next)
{
    uint64_t lsn, final_lsn, xid, end_lsn;
    int64_t ts_us, commit_ts;
    const unsigned char *p;
    Py_ssize_t size, end = -1;
    PyObject *item = message_at(messages, start, &lsn, &p, &size);
    int begin_ok = item != NULL && size == 21 && commit_time(p + 9, &ts_us);
    if (begin_ok) {
        final_lsn = be64(p + 1);
        xid = be32(p + 17);
    }
    Py_XDECREF(item);
    if (!begin_ok)
        return DECLINED;
    /* its Commit, with nothing but changes before it */
    for (Py_ssize_t i = start + 1; end < 0; i++) {
        if (i >= PyList_GET_SIZE(messages))
            return INCOMPLETE;
        if ((item = message_at(messages, i, &lsn, &p, &size)) == NULL)
            return DECLINED;
        char kind = (char)p[0];
        Py_DECREF(item);
        if (kind == 'C')
            end = i;
        else if (kind != 'I' && kind != 'U' && kind != 'D')
            return DECLINED; /* a Relation, Type, Truncate, message, Origin, ... */
    }
    item = message_at(messages, end, &lsn, &p, &size);
    int commit_ok = item != NULL && size == 26 && be64(p + 2) == final_lsn &&
                    commit_time(p + 18, &commit_ts); /* else the general path reports it */
    if (commit_ok)
        end_lsn = be64(p + 10);
    Py_XDECREF(item);
    if (!commit_ok)
        return DECLINED;
    char id_prefix[24], last_commit[32];
    Context ctx;
    transaction_context(&ctx, final_lsn, ts_us, xid, s->have_last_commit, s->last_commit,
                        id_prefix, last_commit);
    Py_ssize_t mark = PyList_GET_SIZE(s->records), rows = 0;
    int r = TAKEN;
    for (Py_ssize_t i = start + 1; i < end; i++) {
        if ((item = message_at(messages, i, &lsn, &p, &size)) == NULL || size < 5) {
            Py_XDECREF(item);
            r = DECLINED; /* the list changed under us */
            break;
        }
        PyObject *oid = PyLong_FromUnsignedLong(be32(p + 1));
        PyObject *table = oid == NULL ? NULL : PyDict_GetItemWithError(self->tables, oid);
        Py_XDECREF(oid);
        if (table == NULL) {
            Py_DECREF(item);
            r = PyErr_Occurred() ? -1 : DECLINED; /* a relation not taught */
            break;
        }
        ctx.index = i - start - 1;
        ctx.pos = lsn;
        Py_INCREF(table); /* held while rendering: nothing below may drop it */
        int done = render_change((PgTableObject *)table, &ctx, p, size, 1, s->records);
        Py_DECREF(table);
        Py_DECREF(item);
        if (done < 0) {
            r = done == -2 ? DECLINED : -1;
            break;
        }
        rows++;
    }
    if (r == TAKEN) {
        PyObject *time_us = PyLong_FromLongLong(commit_ts);
        if (time_us == NULL || PyList_Append(s->times, time_us) < 0)
            r = -1;
        Py_XDECREF(time_us);
    }
    if (r == -1)
        return -1; /* the scan fails: its records are dropped */
    if (r != TAKEN)
        return PyList_SetSlice(s->records, mark, PyList_GET_SIZE(s->records), NULL) < 0 ? -1 : r;
    s->rows += rows;
    s->end_lsn = end_lsn;
    s->xid = xid;
    s->last_commit = final_lsn;
    s->have_last_commit = 1;
    *next = end + 1;
    return TAKEN;
}

static PyObject *
PgScanner_scan(PgScannerObject *self, PyObject *args)
{
    PyObject *messages, *last_commit;
    Py_ssize_t start, max_rows;
    Scan s = {0};
    if (self->tables == NULL)
        return rj_not_initialised("PgScanner");
    if (!PyArg_ParseTuple(args, "O!nOn", &PyList_Type, &messages, &start, &last_commit, &max_rows))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(messages);
    if (start < 0 || start > n) {
        PyErr_Format(PyExc_ValueError, "start %zd outside the messages", start);
        return NULL;
    }
    if (last_commit != Py_None) {
        s.last_commit = PyLong_AsUnsignedLongLong(last_commit);
        if (s.last_commit == (uint64_t)-1 && PyErr_Occurred())
            return NULL;
        s.have_last_commit = 1;
    }
    s.records = PyList_New(0);
    s.times = PyList_New(0);
    if (s.records == NULL || s.times == NULL)
        goto error;
    Py_INCREF(messages);
    int stop;
    for (;;) {
        uint64_t lsn;
        const unsigned char *p;
        Py_ssize_t size;
        if (start >= PyList_GET_SIZE(messages)) {
            stop = SCAN_END;
            break;
        }
        PyObject *item = message_at(messages, start, &lsn, &p, &size);
        int begin = item != NULL && p[0] == 'B';
        Py_XDECREF(item);
        if (!begin) {
            stop = SCAN_PYTHON;
            break;
        }
        if (s.rows >= max_rows) {
            stop = SCAN_FULL;
            break;
        }
        int r = take_transaction(self, messages, start, &s, &start);
        if (r < 0) {
            Py_DECREF(messages);
            goto error;
        }
        if (r != TAKEN) {
            stop = r == INCOMPLETE ? SCAN_INCOMPLETE : SCAN_PYTHON;
            break;
        }
    }
    Py_DECREF(messages);
    PyObject *last = s.have_last_commit ? PyLong_FromUnsignedLongLong(s.last_commit)
                                        : Py_NewRef(Py_None);
    if (last == NULL)
        goto error;
    return Py_BuildValue("(niNNnKKN)", start, stop, s.records, s.times, s.rows,
                         (unsigned long long)s.end_lsn, (unsigned long long)s.xid, last);
error:
    Py_XDECREF(s.records);
    Py_XDECREF(s.times);
    return NULL;
}

/* changes(items, start, aborted, commit_lsn, ts_us, xid, last_commit, index, max_rows)
 *     -> (next, records, rows, changes)
 * A streamed transaction's replay (pgoutput.py, _replay): the records of the
 * run of changes from items[start] (items: (subxid, wal_start, payload), the
 * payload's body after the type byte and the xid), up to the first item it
 * does not take, or max_rows rows; the index of the first change is `index`.
 * Items of an aborted subtransaction (in `aborted`) are passed over. `changes`
 * (the next index is index + changes) and `rows` are the same count. */
static PyObject *
PgScanner_changes(PgScannerObject *self, PyObject *args)
{
    PyObject *items, *aborted, *last_commit_obj;
    Py_ssize_t start, max_rows;
    unsigned long long commit_lsn, xid;
    long long ts_us, index;
    if (self->tables == NULL)
        return rj_not_initialised("PgScanner");
    if (!PyArg_ParseTuple(args, "O!nO!KLKOLn", &PyList_Type, &items, &start, &PySet_Type,
                          &aborted, &commit_lsn, &ts_us, &xid, &last_commit_obj, &index,
                          &max_rows))
        return NULL;
    if (start < 0 || start > PyList_GET_SIZE(items) || index < 0 || index > (1LL << 62)) {
        PyErr_SetString(PyExc_ValueError, "start or index out of range");
        return NULL;
    }
    if (ts_us < 0 || ts_us > MAX_TS_US) /* the decoder renders it */
        return Py_BuildValue("(n[]nn)", start, (Py_ssize_t)0, (Py_ssize_t)0);
    uint64_t last_commit_lsn = 0;
    if (last_commit_obj != Py_None) {
        last_commit_lsn = PyLong_AsUnsignedLongLong(last_commit_obj);
        if (last_commit_lsn == (uint64_t)-1 && PyErr_Occurred())
            return NULL;
    }
    char id_prefix[24], last_commit[32];
    Context ctx;
    transaction_context(&ctx, commit_lsn, ts_us, xid, last_commit_obj != Py_None,
                        last_commit_lsn, id_prefix, last_commit);
    PyObject *records = PyList_New(0);
    if (records == NULL)
        return NULL;
    Py_INCREF(items);
    Py_ssize_t i = start, rows = 0, changes = 0;
    int check_aborted = PySet_GET_SIZE(aborted) > 0;
    PyObject *item = NULL; /* the current one, held while it is read */
    for (; i < PyList_GET_SIZE(items) && rows < max_rows; i++) {
        Py_XSETREF(item, Py_NewRef(PyList_GET_ITEM(items, i)));
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3 ||
            !PyBytes_Check(PyTuple_GET_ITEM(item, 2)))
            break;
        const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(PyTuple_GET_ITEM(item, 2));
        Py_ssize_t size = PyBytes_GET_SIZE(PyTuple_GET_ITEM(item, 2));
        if (size < 9 || (p[0] != 'I' && p[0] != 'U' && p[0] != 'D'))
            break; /* a Relation, Type, Truncate, message: the decoder's */
        if (check_aborted) {
            int gone = PySet_Contains(aborted, PyTuple_GET_ITEM(item, 0));
            if (gone < 0)
                goto error;
            if (gone)
                continue; /* rolled back: no change, no index */
        }
        uint64_t lsn = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(item, 1));
        if (lsn == (uint64_t)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            break;
        }
        PyObject *oid = PyLong_FromUnsignedLong(be32(p + 5));
        PyObject *table = oid == NULL ? NULL : PyDict_GetItemWithError(self->tables, oid);
        Py_XDECREF(oid);
        if (table == NULL) {
            if (PyErr_Occurred())
                goto error;
            break; /* a relation not taught */
        }
        ctx.index = index + changes;
        ctx.pos = lsn;
        Py_INCREF(table);
        int done = render_change((PgTableObject *)table, &ctx, p, size, 5, records);
        Py_DECREF(table);
        if (done == -1)
            goto error;
        if (done == -2)
            break;
        rows++;
        changes++;
    }
    Py_XDECREF(item);
    Py_DECREF(items);
    return Py_BuildValue("(nNnn)", i, records, rows, changes);
error:
    Py_XDECREF(item);
    Py_DECREF(items);
    Py_DECREF(records);
    return NULL;
}

/* A relation OID as a plain int: the table's keys are, so that no lookup runs
 * Python code (an int subclass's __eq__). */
static PyObject *
exact_oid(PyObject *oid)
{
    unsigned long value = PyLong_Check(oid) ? PyLong_AsUnsignedLong(oid) : (unsigned long)-1;
    if (value == (unsigned long)-1 && (PyErr_Occurred() || !PyLong_Check(oid))) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "a relation OID (int) expected");
        return NULL;
    }
    if (value > 0xFFFFFFFFul) {
        PyErr_SetString(PyExc_ValueError, "a relation OID is 32 bits");
        return NULL;
    }
    return PyLong_FromUnsignedLong(value);
}

static PyObject *
PgScanner_learn(PgScannerObject *self, PyObject *args)
{
    PyObject *oid, *table;
    if (self->tables == NULL)
        return rj_not_initialised("PgScanner");
    if (!PyArg_ParseTuple(args, "O!O", &PyLong_Type, &oid, &table))
        return NULL;
    if (!PyObject_TypeCheck(table, &PgTableType)) {
        PyErr_SetString(PyExc_TypeError, "table: a PgTable expected");
        return NULL;
    }
    if (((PgTableObject *)table)->out.data == NULL)
        return rj_not_initialised("PgTable");
    PyObject *key = exact_oid(oid);
    int r = key == NULL ? -1 : PyDict_SetItem(self->tables, key, table);
    Py_XDECREF(key);
    if (r < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
PgScanner_forget(PgScannerObject *self, PyObject *oid)
{
    if (self->tables == NULL)
        return rj_not_initialised("PgScanner");
    PyObject *key = exact_oid(oid);
    if (key == NULL)
        return NULL;
    int known = PyDict_Contains(self->tables, key);
    int r = known < 0 || (known && PyDict_DelItem(self->tables, key) < 0) ? -1 : 0;
    Py_DECREF(key);
    if (r < 0)
        return NULL;
    Py_RETURN_NONE;
}

static int
PgScanner_init(PgScannerObject *self, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "", names))
        return -1;
    if (self->tables == NULL && (self->tables = PyDict_New()) == NULL)
        return -1;
    return 0;
}

static void
PgScanner_dealloc(PgScannerObject *self)
{
    Py_XDECREF(self->tables);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef PgScanner_methods[] = {
    {"scan", (PyCFunction)PgScanner_scan, METH_VARARGS,
     PyDoc_STR("scan(messages, start, last_commit, max_rows)\n"
               "-> (next, stop, records, commit_times, rows, end_lsn, xid, last_commit);\n"
               "see the module's source.")},
    {"changes", (PyCFunction)PgScanner_changes, METH_VARARGS,
     PyDoc_STR("changes(items, start, aborted, commit_lsn, ts_us, xid, last_commit, index,\n"
               "max_rows) -> (next, records, rows, changes); see the function's comment.")},
    {"learn", (PyCFunction)PgScanner_learn, METH_VARARGS,
     PyDoc_STR("learn(oid, table): the relation's rows rendered by table (a PgTable).")},
    {"forget", (PyCFunction)PgScanner_forget, METH_O,
     PyDoc_STR("forget(oid): the relation's transactions go to the Python path.")},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PgScannerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "connectors.accel._accel.PgScanner",
    .tp_doc = PyDoc_STR("PgScanner(): whole pgoutput transactions rendered as Kafka records;\n"
                        "see the module's source."),
    .tp_basicsize = sizeof(PgScannerObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)PgScanner_init,
    .tp_dealloc = (destructor)PgScanner_dealloc,
    .tp_methods = PgScanner_methods,
};

/* -- the module's part ------------------------------------------------------------- */

int
rj_add_pg_scan(PyObject *module)
{
    if (PyType_Ready(&PgTableType) < 0 || PyType_Ready(&PgScannerType) < 0)
        return -1;
    if (PyModule_AddObjectRef(module, "PgTable", (PyObject *)&PgTableType) < 0 ||
        PyModule_AddObjectRef(module, "PgScanner", (PyObject *)&PgScannerType) < 0)
        return -1;
    if (PyModule_AddIntConstant(module, "PG_INT", PG_INT) < 0 ||
        PyModule_AddIntConstant(module, "PG_TEXT", PG_TEXT) < 0 ||
        PyModule_AddIntConstant(module, "PG_BOOL", PG_BOOL) < 0 ||
        PyModule_AddIntConstant(module, "PG_NUMERIC", PG_NUMERIC) < 0 ||
        PyModule_AddIntConstant(module, "PG_TIMESTAMPTZ", PG_TIMESTAMPTZ) < 0)
        return -1;
    return 0;
}
