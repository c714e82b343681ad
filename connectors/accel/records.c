/* Whole Kafka records from the format's templates, shared by the connectors'
 * parts; and the module connectors._accel itself.
 *
 * For a pipeline whose records are nothing but its format's rendering of each
 * row (no mappers, error policy `fail`; see cdc.model.RowRecords), a source
 * hands the pipeline finished records: (topic, key, value, headers) each. The
 * format gives, per table version and op, the record value as a template: a
 * tuple of bytes (text written as is) and ints (holes, cdc.model.Hole) filled
 * per row: the before and after images, the change's commit time (ms, us, ns),
 * MySQL's server_id, GTID and file (JSON text), the change's position (MySQL:
 * its row event's; PostgreSQL: its LSN), its row number in its event, the time
 * of rendering (ms, us, ns), PostgreSQL's xid and the commit LSN of the
 * transaction before (as Debezium's `sequence` holds it: \"n\" or null). The headers hold
 * the event id (cdc.model.event_id): the id prefix the source gives, then the
 * row's index in its transaction, "/1" added for a tombstone.
 */

#include <string.h>
#include <time.h>

#include "accel.h"

static const char *HOLE_NAMES[H_COUNT] = {
    "BEFORE", "AFTER", "TS_MS", "TS_US", "TS_NS", "SERVER_ID", "GTID", "FILE",
    "POS", "ROW", "NOW_MS", "NOW_US", "NOW_NS", "TXID", "LAST_COMMIT",
};

PyObject *
rj_not_initialised(const char *type)
{
    PyErr_Format(PyExc_TypeError, "%s.__init__ was not called", type);
    return NULL;
}

PyObject *
rj_key_json(const char *buf, Py_ssize_t nkeys, const Py_ssize_t *spans, const char *const *prefix,
            const Py_ssize_t *prefix_len)
{
    Py_ssize_t n = 1;
    for (Py_ssize_t j = 0; j < nkeys; j++)
        n += prefix_len[j] + spans[2 * j + 1] - spans[2 * j];
    PyObject *key = PyBytes_FromStringAndSize(NULL, n);
    if (key == NULL)
        return NULL;
    char *out = PyBytes_AS_STRING(key);
    for (Py_ssize_t j = 0; j < nkeys; j++) {
        *out++ = j == 0 ? '{' : ',';
        memcpy(out, prefix[j] + 1, prefix_len[j] - 1);
        out += prefix_len[j] - 1;
        Py_ssize_t len = spans[2 * j + 1] - spans[2 * j];
        memcpy(out, buf + spans[2 * j], len);
        out += len;
    }
    *out = '}';
    return key;
}

/* -- templates ------------------------------------------------------------------- */

static int
compile_template(Template *t, PyObject *spec, int op)
{
    if (!PyTuple_Check(spec)) {
        PyErr_Format(PyExc_TypeError, "template %d: a tuple of bytes and holes expected", op);
        return -1;
    }
    t->n = PyTuple_GET_SIZE(spec);
    t->pieces = PyMem_Calloc(t->n ? t->n : 1, sizeof(Piece));
    if (t->pieces == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < t->n; i++) {
        PyObject *item = PyTuple_GET_ITEM(spec, i);
        Piece *p = &t->pieces[i];
        if (PyBytes_Check(item)) {
            p->hole = H_TEXT;
            p->text = PyBytes_AS_STRING(item);
            p->len = PyBytes_GET_SIZE(item);
            continue;
        }
        long hole = PyLong_Check(item) ? PyLong_AsLong(item) : -1;
        if (hole < 0 || hole >= H_COUNT) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_ValueError, "template %d, item %zd: not text or a hole", op, i);
            return -1;
        }
        p->hole = (int)hole;
    }
    return 0;
}

int
rj_spec_init(RecordSpec *spec, PyObject *templates, PyObject *topics, int tombstones,
             PyObject *id_header)
{
    if (spec->templates != NULL) { /* also after a failed attempt: its parts are held */
        PyErr_SetString(PyExc_TypeError, "a record plan is initialised once");
        return -1;
    }
    if (!PyTuple_Check(templates) || !PyTuple_Check(topics) || PyTuple_GET_SIZE(templates) != 3 ||
        PyTuple_GET_SIZE(topics) != 3) {
        PyErr_SetString(PyExc_ValueError, "one template and one topic per op (insert, update, delete)");
        return -1;
    }
    spec->templates = Py_NewRef(templates);
    for (int op = 0; op < 3; op++) {
        if (compile_template(&spec->tpl[op], PyTuple_GET_ITEM(templates, op), op) < 0)
            return -1;
        PyObject *topic = PyTuple_GET_ITEM(topics, op);
        if (!PyUnicode_Check(topic)) {
            PyErr_Format(PyExc_TypeError, "topic %d: a str expected", op);
            return -1;
        }
        spec->topics[op] = Py_NewRef(topic);
    }
    spec->id_header = Py_NewRef(id_header);
    spec->tombstones = tombstones;
    return 0;
}

void
rj_spec_clear(RecordSpec *spec)
{
    for (int op = 0; op < 3; op++) {
        PyMem_Free(spec->tpl[op].pieces);
        spec->tpl[op].pieces = NULL;
        Py_CLEAR(spec->topics[op]);
    }
    Py_CLEAR(spec->templates);
    Py_CLEAR(spec->id_header);
}

/* -- one record ------------------------------------------------------------------ */

static int64_t
floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return q - ((a % b != 0) && ((a < 0) != (b < 0)));
}

/* A context's text (none where the connector does not fill it): its length. */
static Py_ssize_t
put_text(char *out, const char *text, Py_ssize_t n)
{
    if (n > 0)
        memcpy(out, text, n);
    return n;
}

/* The value of a row from its template, at buf + o (the images at [b0, b1) and
 * [a0, a1) of buf, or null where b0/a0 is -1): the offset after it, or -1. */
static Py_ssize_t
put_value(const Template *t, Buffer *buf, const Context *ctx, int64_t row, Py_ssize_t b0,
          Py_ssize_t b1, Py_ssize_t a0, Py_ssize_t a1, Py_ssize_t o)
{
    Py_ssize_t need = 0;
    for (Py_ssize_t i = 0; i < t->n; i++) {
        switch (t->pieces[i].hole) {
        case H_TEXT: need += t->pieces[i].len; break;
        case H_BEFORE: need += b0 < 0 ? 4 : b1 - b0; break;
        case H_AFTER: need += a0 < 0 ? 4 : a1 - a0; break;
        case H_GTID: need += ctx->gtid_len; break;
        case H_FILE: need += ctx->file_len; break;
        case H_LAST_COMMIT: need += ctx->last_commit_len; break;
        default: need += 21; /* a 64-bit integer's digits and sign */
        }
    }
    if (rj_reserve(buf, o, need) < 0)
        return -1;
    char *b = buf->data;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t now_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
    for (Py_ssize_t i = 0; i < t->n; i++) {
        const Piece *p = &t->pieces[i];
        switch (p->hole) {
        case H_TEXT:
            memcpy(b + o, p->text, p->len);
            o += p->len;
            break;
        case H_BEFORE:
        case H_AFTER: {
            Py_ssize_t from = p->hole == H_BEFORE ? b0 : a0;
            Py_ssize_t to = p->hole == H_BEFORE ? b1 : a1;
            if (from < 0) {
                memcpy(b + o, "null", 4);
                o += 4;
            }
            else {
                memcpy(b + o, b + from, to - from);
                o += to - from;
            }
            break;
        }
        case H_GTID:
            o += put_text(b + o, ctx->gtid, ctx->gtid_len);
            break;
        case H_FILE:
            o += put_text(b + o, ctx->file, ctx->file_len);
            break;
        case H_LAST_COMMIT:
            o += put_text(b + o, ctx->last_commit, ctx->last_commit_len);
            break;
        case H_TS_MS: o += rj_put_i64(b + o, floor_div(ctx->ts_us, 1000)); break;
        case H_TS_US: o += rj_put_i64(b + o, ctx->ts_us); break;
        case H_TS_NS: o += rj_put_i64(b + o, ctx->ts_us * 1000); break;
        case H_SERVER_ID: o += rj_put_i64(b + o, ctx->server_id); break;
        case H_POS: o += rj_put_u64(b + o, ctx->pos); break;
        case H_ROW: o += rj_put_i64(b + o, row); break;
        case H_NOW_MS: o += rj_put_i64(b + o, now_ns / 1000000); break;
        case H_NOW_US: o += rj_put_i64(b + o, now_ns / 1000); break;
        case H_NOW_NS: o += rj_put_i64(b + o, now_ns); break;
        case H_TXID: o += rj_put_i64(b + o, ctx->txid); break;
        }
    }
    return o;
}

/* [(id_header, id_prefix + index [+ "/1"])]: a record's headers. */
static PyObject *
id_headers(const RecordSpec *spec, const Context *ctx, int64_t index, int tombstone)
{
    char digits[24];
    Py_ssize_t n = rj_put_i64(digits, index);
    PyObject *id = PyBytes_FromStringAndSize(NULL, ctx->id_prefix_len + n + (tombstone ? 2 : 0));
    if (id == NULL)
        return NULL;
    char *out = PyBytes_AS_STRING(id);
    memcpy(out, ctx->id_prefix, ctx->id_prefix_len);
    memcpy(out + ctx->id_prefix_len, digits, n);
    if (tombstone)
        memcpy(out + ctx->id_prefix_len + n, "/1", 2);
    PyObject *header = PyTuple_Pack(2, spec->id_header, id);
    Py_DECREF(id);
    if (header == NULL)
        return NULL;
    PyObject *headers = PyList_New(1);
    if (headers == NULL) {
        Py_DECREF(header);
        return NULL;
    }
    PyList_SET_ITEM(headers, 0, header);
    return headers;
}

static int
append_record(PyObject *out, PyObject *topic, PyObject *key, PyObject *value, PyObject *headers)
{
    PyObject *record = PyTuple_Pack(4, topic, key, value, headers);
    if (record == NULL)
        return -1;
    int r = PyList_Append(out, record);
    Py_DECREF(record);
    return r;
}

int
rj_emit(const RecordSpec *spec, Buffer *buf, const Context *ctx, int op, int64_t row,
        Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t a0, Py_ssize_t a1, Py_ssize_t o, PyObject *key,
        PyObject *out)
{
    PyObject *value = NULL, *headers = NULL;
    int r = -1;
    Py_ssize_t end = put_value(&spec->tpl[op], buf, ctx, row, b0, b1, a0, a1, o);
    if (end < 0 || (value = PyBytes_FromStringAndSize(buf->data + o, end - o)) == NULL)
        goto done;
    int64_t index = ctx->index + row;
    PyObject *topic = spec->topics[op];
    if ((headers = id_headers(spec, ctx, index, 0)) == NULL ||
        append_record(out, topic, key, value, headers) < 0)
        goto done;
    if (op == OP_DELETE && spec->tombstones) {
        Py_SETREF(headers, id_headers(spec, ctx, index, 1));
        if (headers == NULL || append_record(out, topic, key, Py_None, headers) < 0)
            goto done;
    }
    r = 0;
done:
    Py_XDECREF(value);
    Py_XDECREF(headers);
    return r;
}

/* -- the module ------------------------------------------------------------------- */

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "connectors.accel._accel",
    .m_doc = "The connectors' optional C accelerator (see connectors/accel/accel.h).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__accel(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    for (int h = 0; h < H_COUNT; h++) {
        char name[32];
        snprintf(name, sizeof name, "HOLE_%s", HOLE_NAMES[h]);
        if (PyModule_AddIntConstant(m, name, h) < 0)
            goto error;
    }
    if (rj_add_mysql_image(m) < 0 || rj_add_mysql_scan(m) < 0 || rj_add_pg_scan(m) < 0)
        goto error;
    return m;
error:
    Py_DECREF(m);
    return NULL;
}
