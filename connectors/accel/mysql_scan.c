/* Whole Kafka records of binlog row events, and of whole MariaDB transactions.
 *
 * RecordPlan(image, templates, topics, tombstones, id_header)
 *     How the row events of one table version become records (records.c): its
 *     `Image` (mysql_image.c), a template of the record value per op (insert,
 *     update, delete), the topic per op, whether a delete is followed by a
 *     tombstone, and the name of the event-id header.
 *   .render(body, event_type, context) -> [(topic, key, value, headers), ...] or None
 *     Every row of one row event body. context: (timestamp, server_id, gtid
 *     JSON, file JSON, the event's position, the event ids' text before the
 *     index, the first row's index). None where the event is not taken (an
 *     image the Image does not take, partial images, an update of the key):
 *     the general path then decides about the whole event.
 *
 * Scanner(checksum)
 *     Whole MariaDB transactions, straight from the replication connection's
 *     buffer (packets: a 3-byte length, a sequence byte, the OK byte, the
 *     event): a GTID event, TABLE_MAPs of tables it was taught, their row
 *     events, the XID. Any other shape (a DDL, a COMMIT query, a table it does
 *     not know, an image not taken, a packet not whole in the buffer) is left
 *     to the Python path, from that transaction's GTID event on.
 *   .learn(table_id, table_map, plan)
 *     A TABLE_MAP body's table id (its first 6 bytes) and the bytes after it;
 *     its rows rendered by `plan`, or skipped where plan is None.
 *   .forget()
 *     Drops what it learnt (table ids are only valid within a binlog file).
 *   .scan(buf, pos, file, id_file, gtid_state, max_rows)
 *         -> (pos, stop, records, commit_times, rows, end, seq)
 *     The whole transactions from buf[pos]: their records, each one's commit
 *     time (us), their rows, the last one's end position and GTID sequence
 *     number; `pos` after them and why it stopped (SCAN_*). file: the binlog
 *     file's name as JSON text; id_file: the event ids' text before the
 *     transaction's position; gtid_state: {domain: "domain-server-seq"},
 *     updated for every transaction taken. It stops before a transaction once
 *     max_rows rows are taken.
 */

#include <string.h>
#include <time.h>

#include "accel.h"


/* Binlog event types (MySQL's binlog_event.h, MariaDB's log_event.h). */
enum {
    XID_EVENT = 16, TABLE_MAP_EVENT = 19,
    WRITE_ROWS_V1 = 23, UPDATE_ROWS_V1 = 24, DELETE_ROWS_V1 = 25,
    WRITE_ROWS_V2 = 30, UPDATE_ROWS_V2 = 31, DELETE_ROWS_V2 = 32,
    ANNOTATE_ROWS_EVENT = 160, MARIADB_GTID_EVENT = 162,
};
/* MariaDB GTID flags a plain transaction may carry; any other (standalone: a
 * DDL or a statement outside a transaction, DDL, XA) goes to the Python path. */
enum { FL_GROUP_COMMIT_ID = 2, FL_TRANSACTIONAL = 4, FL_ALLOW_PARALLEL = 8, FL_WAITED = 16 };
#define PLAIN_GTID_FLAGS (FL_GROUP_COMMIT_ID | FL_TRANSACTIONAL | FL_ALLOW_PARALLEL | FL_WAITED)

#define MAX_MAPPED 64   /* tables of one transaction; more: the Python path */
#define MAX_ID_TEXT 512 /* the event ids' text before the position; longer: the Python path */

static uint32_t
le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t
le_n(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* -- one row event ----------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    ImageObject *image; /* NULL until __init__ succeeds */
    RecordSpec spec;
} PlanObject;

static PyTypeObject PlanType;

/* The op and layout of a row event type; -1 for any other type. */
static int
event_op(int type, int *v2)
{
    *v2 = type >= WRITE_ROWS_V2;
    switch (type) {
    case WRITE_ROWS_V1: case WRITE_ROWS_V2: return OP_INSERT;
    case UPDATE_ROWS_V1: case UPDATE_ROWS_V2: return OP_UPDATE;
    case DELETE_ROWS_V1: case DELETE_ROWS_V2: return OP_DELETE;
    }
    return -1;
}

/* Where the first image of a row event body starts: past the table id and
 * flags, v2's extra data, the column count and the columns-present bitmap(s),
 * which must name every column (full images); -2 otherwise. */
static Py_ssize_t
first_image(ImageObject *image, const unsigned char *body, Py_ssize_t size, int op, int v2)
{
    Py_ssize_t pos = 8;
    if (v2) {
        if (pos + 2 > size)
            return -2;
        Py_ssize_t extra = body[pos] | body[pos + 1] << 8; /* counts its own 2 bytes */
        if (extra < 2)
            return -2;
        pos += extra;
    }
    if (pos >= size)
        return -2;
    uint64_t count = body[pos++];
    if (count >= 251) { /* a length-encoded integer */
        int n = count == 252 ? 2 : count == 253 ? 3 : count == 254 ? 8 : 0;
        if (n == 0 || pos + n > size)
            return -2;
        count = le_n(body + pos, n);
        pos += n;
    }
    if (count != (uint64_t)image->ncols)
        return -2;
    Py_ssize_t nbytes = (Py_ssize_t)(count + 7) / 8;
    for (int b = 0; b < (op == OP_UPDATE ? 2 : 1); b++) {
        if (pos + nbytes > size)
            return -2;
        for (Py_ssize_t i = 0; i < nbytes; i++) {
            Py_ssize_t left = (Py_ssize_t)count - 8 * i;
            unsigned mask = left >= 8 ? 0xFF : (1u << left) - 1;
            if ((body[pos + i] & mask) != mask) /* padding bits past the last column: ignored */
                return -2;
        }
        pos += nbytes;
    }
    return pos;
}

/* One row at body[*pos] (moved past it) appended to `out`: 0, -1 on an error,
 * -2 where it is not taken. */
static int
render_row(PlanObject *plan, const Context *ctx, const unsigned char *body, Py_ssize_t size,
           Py_ssize_t *pos, int op, int64_t row, PyObject *out)
{
    ImageObject *image = plan->image;
    Py_ssize_t b0 = -1, b1 = 0, a0 = -1, a1 = 0, o = 0;
    PyObject *before_key = NULL, *key = NULL;
    int ascii, r = -1;
    if (op != OP_INSERT) {
        Py_ssize_t end = rj_render_image(image, body, size, *pos, 0, 1, pos, &ascii);
        if (end < 0)
            return (int)end;
        b0 = 0;
        b1 = o = end;
        if (image->nkeys && (before_key = rj_key_text(image)) == NULL)
            return -1;
    }
    if (op != OP_DELETE) {
        Py_ssize_t end = rj_render_image(image, body, size, *pos, o, 1, pos, &ascii);
        if (end < 0) {
            r = (int)end;
            goto done;
        }
        a0 = o;
        a1 = o = end;
    }
    if (image->nkeys == 0) {
        key = Py_NewRef(Py_None);
    }
    else if (op == OP_DELETE) {
        key = before_key;
        before_key = NULL;
    }
    else {
        if ((key = rj_key_text(image)) == NULL)
            goto done;
        if (before_key != NULL &&
            (PyBytes_GET_SIZE(key) != PyBytes_GET_SIZE(before_key) ||
             memcmp(PyBytes_AS_STRING(key), PyBytes_AS_STRING(before_key), PyBytes_GET_SIZE(key)))) {
            r = -2; /* an update of the key: Debezium makes a delete and a create of it */
            goto done;
        }
    }
    if (rj_emit(&plan->spec, &image->out, ctx, op, row, b0, b1, a0, a1, o, key, out) < 0)
        goto done;
    r = 0;
done:
    Py_XDECREF(before_key);
    Py_XDECREF(key);
    return r;
}

/* Every row of a row event body appended to `out` (*rows: how many): 0, -1 on
 * an error, -2 where the event is not taken (`out` is then as it was). */
static int
render_event(PlanObject *plan, const Context *ctx, const unsigned char *body, Py_ssize_t size,
             int type, PyObject *out, int64_t *rows)
{
    int v2, op = event_op(type, &v2);
    if (op < 0)
        return -2;
    Py_ssize_t pos = first_image(plan->image, body, size, op, v2);
    if (pos < 0)
        return -2;
    Py_ssize_t mark = PyList_GET_SIZE(out);
    int64_t row = 0;
    while (pos < size) {
        Py_ssize_t before = pos;
        int r = render_row(plan, ctx, body, size, &pos, op, row, out);
        if (r == 0 && pos <= before)
            r = -2; /* an empty image (no columns): never taken, or this would not end */
        if (r == -1)
            return -1; /* the caller drops `out` */
        if (r < 0)
            return PyList_SetSlice(out, mark, PyList_GET_SIZE(out), NULL) < 0 ? -1 : r;
        row++;
    }
    *rows = row;
    return 0;
}

/* -- RecordPlan ---------------------------------------------------------------------- */

static PyObject *
Plan_render(PlanObject *self, PyObject *args)
{
    PyObject *body_obj;
    int type;
    long long ts, server_id, pos, index;
    Context ctx = {0};
    if (self->image == NULL)
        return rj_not_initialised("RecordPlan");
    if (!PyArg_ParseTuple(args, "O!i(LLy#y#Ly#L)", &PyBytes_Type, &body_obj, &type, &ts,
                          &server_id, &ctx.gtid, &ctx.gtid_len, &ctx.file, &ctx.file_len, &pos,
                          &ctx.id_prefix, &ctx.id_prefix_len, &index))
        return NULL;
    if (ts < 0 || ts > 0xFFFFFFFFLL) {
        PyErr_Format(PyExc_ValueError, "timestamp %lld is not a binlog event's", ts);
        return NULL;
    }
    if (index < 0 || index > (1LL << 62)) { /* index + row must not overflow */
        PyErr_Format(PyExc_ValueError, "index %lld out of range", index);
        return NULL;
    }
    if (pos < 0) /* an event header that lies: the general path reports it */
        Py_RETURN_NONE;
    ctx.ts_us = ts * 1000000;
    ctx.server_id = server_id;
    ctx.pos = (uint64_t)pos;
    ctx.index = index;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    int64_t rows;
    int r = render_event(self, &ctx, (const unsigned char *)PyBytes_AS_STRING(body_obj),
                         PyBytes_GET_SIZE(body_obj), type, out, &rows);
    if (r == 0)
        return out;
    Py_DECREF(out);
    if (r == -1)
        return NULL;
    Py_RETURN_NONE;
}

static int
Plan_init(PlanObject *self, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"image", "templates", "topics", "tombstones", "id_header", NULL};
    PyObject *image, *templates, *topics, *id_header;
    int tombstones;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!O!pU", names, &rj_ImageType, &image,
                                     &PyTuple_Type, &templates, &PyTuple_Type, &topics,
                                     &tombstones, &id_header))
        return -1;
    if (((ImageObject *)image)->out.data == NULL) {
        PyErr_SetString(PyExc_TypeError, "Image.__init__ was not called");
        return -1;
    }
    if (rj_spec_init(&self->spec, templates, topics, tombstones, id_header) < 0)
        return -1;
    self->image = (ImageObject *)Py_NewRef(image); /* last: it marks the plan as usable */
    return 0;
}

static void
Plan_dealloc(PlanObject *self)
{
    rj_spec_clear(&self->spec);
    Py_XDECREF(self->image);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Plan_methods[] = {
    {"render", (PyCFunction)Plan_render, METH_VARARGS,
     PyDoc_STR("render(body, event_type, context) -> [(topic, key, value, headers), ...] or None;"
               "\nsee the module's source.")},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PlanType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "connectors.accel._accel.RecordPlan",
    .tp_doc = PyDoc_STR("RecordPlan(image, templates, topics, tombstones, id_header): the Kafka\n"
                        "records of one table version's row events; see the module's source."),
    .tp_basicsize = sizeof(PlanObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Plan_init,
    .tp_dealloc = (destructor)Plan_dealloc,
    .tp_methods = Plan_methods,
};

/* -- whole transactions ------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    int checksum;
    PyObject *tables; /* table id (int) -> (TABLE_MAP bytes after the id, RecordPlan or None) */
} ScannerObject;

/* One replication packet holding one binlog event. */
typedef struct {
    int type;
    uint32_t timestamp, server_id, size, log_pos;
    const unsigned char *body;
    Py_ssize_t body_len;
    Py_ssize_t next; /* where the next packet starts in the buffer */
} Packet;

/* 1: a whole event packet at buf[pos]; 0: the packet is not whole in the buffer;
 * -1: a packet the Python path must read (an error or EOF packet, one continued
 * in the next packet, one too short for an event). */
static int
packet_at(const unsigned char *buf, Py_ssize_t size, Py_ssize_t pos, int checksum, Packet *p)
{
    if (pos + 4 > size)
        return 0;
    Py_ssize_t len = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16;
    if (len == 0xFFFFFF)
        return -1;
    if (pos + 4 + len > size)
        return 0;
    const unsigned char *d = buf + pos + 4;
    Py_ssize_t tail = checksum ? 4 : 0;
    if (len < 20 + tail || d[0] != 0)
        return -1;
    p->timestamp = le32(d + 1);
    p->type = d[5];
    p->server_id = le32(d + 6);
    p->size = le32(d + 10);
    p->log_pos = le32(d + 14);
    p->body = d + 20;
    p->body_len = len - 20 - tail;
    p->next = pos + 4 + len;
    return 1;
}

/* What one scan() collects. */
typedef struct {
    PyObject *records, *times;
    PyObject *gtids; /* domain -> the last GTID taken: the caller's gtid_state once all went well */
    Py_ssize_t rows;
    int64_t end;
    uint64_t seq;
    const char *file, *id_file;
    Py_ssize_t file_len, id_file_len;
} Scan;

typedef struct {
    uint64_t id;
    PyObject *plan; /* a strong reference; Py_None: rows skipped */
} Mapped;


/* Where the transaction whose first event after its GTID is at buf[pos] ends:
 * the offset after its XID event; 0 where the buffer ends first; -1 at the
 * first packet the scanner does not take (a query: e.g. the COMMIT that ends a
 * transaction of a non-transactional engine, which must not wait for an XID
 * that never comes). Only packet headers are read. */
static Py_ssize_t
transaction_end(const unsigned char *buf, Py_ssize_t size, Py_ssize_t pos, int checksum)
{
    Packet p;
    int v2;
    for (;;) {
        int got = packet_at(buf, size, pos, checksum, &p);
        if (got <= 0)
            return got;
        pos = p.next;
        if (p.type == XID_EVENT)
            return pos;
        if (p.type != TABLE_MAP_EVENT && p.type != ANNOTATE_ROWS_EVENT && event_op(p.type, &v2) < 0)
            return -1;
    }
}

/* A TABLE_MAP inside a transaction: its table, where it is known with these
 * exact bytes, added to `mapped`. TAKEN, DECLINED or -1. */
static int
map_table(ScannerObject *self, const Packet *p, Mapped *mapped, int *nmapped)
{
    if (p->body_len < 8)
        return DECLINED;
    uint64_t id = le_n(p->body, 6);
    PyObject *key = PyLong_FromUnsignedLongLong(id);
    if (key == NULL)
        return -1;
    PyObject *entry = PyDict_GetItemWithError(self->tables, key);
    Py_DECREF(key);
    if (entry == NULL)
        return PyErr_Occurred() ? -1 : DECLINED;
    PyObject *known = PyTuple_GET_ITEM(entry, 0);
    if (PyBytes_GET_SIZE(known) != p->body_len - 6 ||
        memcmp(PyBytes_AS_STRING(known), p->body + 6, p->body_len - 6) != 0)
        return DECLINED; /* another table version: the Python path learns it */
    PyObject *plan = PyTuple_GET_ITEM(entry, 1);
    for (int i = 0; i < *nmapped; i++) {
        if (mapped[i].id == id) {
            Py_SETREF(mapped[i].plan, Py_NewRef(plan));
            return TAKEN;
        }
    }
    if (*nmapped == MAX_MAPPED)
        return DECLINED;
    mapped[*nmapped].id = id;
    mapped[*nmapped].plan = Py_NewRef(plan);
    (*nmapped)++;
    return TAKEN;
}

/* The transaction whose GTID event is `gtid`: its records appended to
 * s->records and its commit noted, TAKEN (*next: where the next packet starts);
 * or DECLINED or INCOMPLETE (its XID is not in the buffer yet), s->records as
 * it was; or -1 on an error. */
static int
take_transaction(ScannerObject *self, const unsigned char *buf, Py_ssize_t size,
                 const Packet *gtid, Scan *s, Py_ssize_t *next)
{
    if (gtid->body_len < 13)
        return DECLINED;
    uint64_t seq = le_n(gtid->body, 8);
    uint32_t domain = le32(gtid->body + 8);
    if (gtid->body[12] & ~PLAIN_GTID_FLAGS)
        return DECLINED;
    /* the GTID as JSON text, and the event ids' text before the index */
    char gtid_json[64], id_prefix[MAX_ID_TEXT + 32];
    int gtid_len = snprintf(gtid_json, sizeof gtid_json, "\"%lu-%lu-%llu\"", (unsigned long)domain,
                            (unsigned long)gtid->server_id, (unsigned long long)seq);
    Py_ssize_t n = s->id_file_len;
    memcpy(id_prefix, s->id_file, n);
    n += rj_put_i64(id_prefix + n, (int64_t)gtid->log_pos - (int64_t)gtid->size);
    id_prefix[n++] = '/';
    Context ctx = {.gtid = gtid_json, .gtid_len = gtid_len, .file = s->file,
                   .file_len = s->file_len, .id_prefix = id_prefix, .id_prefix_len = n};
    Py_ssize_t end = transaction_end(buf, size, gtid->next, self->checksum);
    if (end <= 0)
        return end == 0 ? INCOMPLETE : DECLINED;
    Mapped mapped[MAX_MAPPED];
    int nmapped = 0, have_server = 0, r;
    int64_t index = 0;
    Py_ssize_t mark = PyList_GET_SIZE(s->records), pos = gtid->next;
    Packet p;
    for (;;) {
        packet_at(buf, size, pos, self->checksum, &p); /* whole: transaction_end read it */
        pos = p.next;
        if (p.type == XID_EVENT)
            break;
        if (p.type == ANNOTATE_ROWS_EVENT)
            continue; /* the statement's text: unused */
        if (p.type == TABLE_MAP_EVENT) {
            if ((r = map_table(self, &p, mapped, &nmapped)) != TAKEN)
                goto undo;
            continue;
        }
        int v2;
        if (event_op(p.type, &v2) < 0 || p.body_len < 6) {
            r = DECLINED; /* a query (COMMIT, SAVEPOINT, ...), or anything else */
            goto undo;
        }
        uint64_t id = le_n(p.body, 6);
        PyObject *plan = NULL;
        for (int i = 0; i < nmapped && plan == NULL; i++)
            if (mapped[i].id == id)
                plan = mapped[i].plan;
        if (plan == NULL) {
            r = DECLINED; /* no TABLE_MAP in this transaction: the Python path reports it */
            goto undo;
        }
        if (plan == Py_None)
            continue; /* a table not captured */
        if (!have_server) { /* as the Python path: the first row event's server */
            ctx.server_id = p.server_id;
            have_server = 1;
        }
        ctx.ts_us = (int64_t)p.timestamp * 1000000;
        if (p.log_pos < p.size) { /* an event header that lies: the general path reports it */
            r = DECLINED;
            goto undo;
        }
        ctx.pos = (uint64_t)p.log_pos - p.size;
        ctx.index = index;
        int64_t rows;
        r = render_event((PlanObject *)plan, &ctx, p.body, p.body_len, p.type, s->records, &rows);
        if (r < 0) {
            r = r == -2 ? DECLINED : -1;
            goto undo;
        }
        index += rows;
    }
    /* The XID: committed. The GTID state moves, the commit time is noted. */
    PyObject *domain_obj = PyLong_FromUnsignedLong(domain);
    PyObject *state = PyUnicode_FromStringAndSize(gtid_json + 1, gtid_len - 2);
    PyObject *time_us = PyLong_FromLongLong((long long)p.timestamp * 1000000);
    r = domain_obj == NULL || state == NULL || time_us == NULL ||
                PyDict_SetItem(s->gtids, domain_obj, state) < 0 ||
                PyList_Append(s->times, time_us) < 0
            ? -1
            : TAKEN;
    Py_XDECREF(domain_obj);
    Py_XDECREF(state);
    Py_XDECREF(time_us);
    for (int i = 0; i < nmapped; i++)
        Py_DECREF(mapped[i].plan);
    if (r == TAKEN) {
        s->rows += index;
        s->end = p.log_pos;
        s->seq = seq;
        *next = pos;
    }
    return r;
undo:
    for (int i = 0; i < nmapped; i++)
        Py_DECREF(mapped[i].plan);
    if (r == -1) /* the scan fails: its records are dropped */
        return -1;
    return PyList_SetSlice(s->records, mark, PyList_GET_SIZE(s->records), NULL) < 0 ? -1 : r;
}

static PyObject *
Scanner_scan(ScannerObject *self, PyObject *args)
{
    PyObject *buf_obj;
    Py_ssize_t pos, max_rows;
    PyObject *gtid_state;
    Scan s = {0};
    if (self->tables == NULL)
        return rj_not_initialised("Scanner");
    if (!PyArg_ParseTuple(args, "O!ny#y#O!n", &PyBytes_Type, &buf_obj, &pos, &s.file,
                          &s.file_len, &s.id_file, &s.id_file_len, &PyDict_Type, &gtid_state,
                          &max_rows))
        return NULL;
    const unsigned char *buf = (const unsigned char *)PyBytes_AS_STRING(buf_obj);
    Py_ssize_t size = PyBytes_GET_SIZE(buf_obj);
    if (pos < 0 || pos > size) {
        PyErr_Format(PyExc_ValueError, "pos %zd outside the buffer", pos);
        return NULL;
    }
    s.records = PyList_New(0);
    s.times = PyList_New(0);
    s.gtids = PyDict_New();
    if (s.records == NULL || s.times == NULL || s.gtids == NULL)
        goto error;
    int stop;
    for (;;) {
        Packet gtid;
        int got = packet_at(buf, size, pos, self->checksum, &gtid);
        if (got == 0) {
            stop = SCAN_END;
            break;
        }
        if (got < 0 || gtid.type != MARIADB_GTID_EVENT || s.id_file_len > MAX_ID_TEXT) {
            stop = SCAN_PYTHON;
            break;
        }
        if (s.rows >= max_rows) {
            stop = SCAN_FULL;
            break;
        }
        int r = take_transaction(self, buf, size, &gtid, &s, &pos);
        if (r < 0)
            goto error;
        if (r != TAKEN) {
            stop = r == INCOMPLETE ? SCAN_INCOMPLETE : SCAN_PYTHON;
            break;
        }
    }
    PyObject *result = Py_BuildValue("(niOOnLK)", pos, stop, s.records, s.times, s.rows,
                                     (long long)s.end, (unsigned long long)s.seq);
    if (result == NULL || PyDict_Update(gtid_state, s.gtids) < 0) { /* the last thing to fail */
        Py_XDECREF(result);
        goto error;
    }
    Py_DECREF(s.records);
    Py_DECREF(s.times);
    Py_DECREF(s.gtids);
    return result;
error:
    Py_XDECREF(s.records);
    Py_XDECREF(s.times);
    Py_XDECREF(s.gtids);
    return NULL;
}

static PyObject *
Scanner_learn(ScannerObject *self, PyObject *args)
{
    PyObject *table_map, *plan;
    const char *id;
    Py_ssize_t id_len;
    if (self->tables == NULL)
        return rj_not_initialised("Scanner");
    if (!PyArg_ParseTuple(args, "y#O!O", &id, &id_len, &PyBytes_Type, &table_map, &plan))
        return NULL;
    if (id_len != 6) {
        PyErr_SetString(PyExc_ValueError, "a table id is 6 bytes");
        return NULL;
    }
    if (plan != Py_None && !PyObject_TypeCheck(plan, &PlanType)) {
        PyErr_SetString(PyExc_TypeError, "plan: a RecordPlan or None expected");
        return NULL;
    }
    if (plan != Py_None && ((PlanObject *)plan)->image == NULL)
        return rj_not_initialised("RecordPlan");
    PyObject *key = PyLong_FromUnsignedLongLong(le_n((const unsigned char *)id, 6));
    PyObject *entry = key == NULL ? NULL : PyTuple_Pack(2, table_map, plan);
    int r = entry == NULL ? -1 : PyDict_SetItem(self->tables, key, entry);
    Py_XDECREF(key);
    Py_XDECREF(entry);
    if (r < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
Scanner_forget(ScannerObject *self, PyObject *Py_UNUSED(args))
{
    if (self->tables == NULL)
        return rj_not_initialised("Scanner");
    PyDict_Clear(self->tables);
    Py_RETURN_NONE;
}

static int
Scanner_init(ScannerObject *self, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"checksum", NULL};
    int checksum;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "p", names, &checksum))
        return -1;
    self->checksum = checksum;
    if (self->tables == NULL && (self->tables = PyDict_New()) == NULL)
        return -1;
    return 0;
}

static void
Scanner_dealloc(ScannerObject *self)
{
    Py_XDECREF(self->tables);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Scanner_methods[] = {
    {"scan", (PyCFunction)Scanner_scan, METH_VARARGS,
     PyDoc_STR("scan(buf, pos, file, id_file, gtid_state, max_rows)\n"
               "-> (pos, stop, records, commit_times, rows, end, seq); see the module's source.")},
    {"learn", (PyCFunction)Scanner_learn, METH_VARARGS,
     PyDoc_STR("learn(table_id, table_map, plan): rows of this table version rendered by plan\n"
               "(a RecordPlan), or skipped (None).")},
    {"forget", (PyCFunction)Scanner_forget, METH_NOARGS,
     PyDoc_STR("forget(): drop every table learnt (at a new binlog file).")},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ScannerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "connectors.accel._accel.Scanner",
    .tp_doc = PyDoc_STR("Scanner(checksum): whole MariaDB transactions rendered as Kafka records;\n"
                        "see the module's source."),
    .tp_basicsize = sizeof(ScannerObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Scanner_init,
    .tp_dealloc = (destructor)Scanner_dealloc,
    .tp_methods = Scanner_methods,
};

/* -- the module's part ------------------------------------------------------------- */

int
rj_add_mysql_scan(PyObject *module)
{
    if (PyType_Ready(&PlanType) < 0 || PyType_Ready(&ScannerType) < 0)
        return -1;
    if (PyModule_AddObjectRef(module, "RecordPlan", (PyObject *)&PlanType) < 0 ||
        PyModule_AddObjectRef(module, "Scanner", (PyObject *)&ScannerType) < 0)
        return -1;
    if (PyModule_AddIntConstant(module, "SCAN_END", SCAN_END) < 0 ||
        PyModule_AddIntConstant(module, "SCAN_PYTHON", SCAN_PYTHON) < 0 ||
        PyModule_AddIntConstant(module, "SCAN_INCOMPLETE", SCAN_INCOMPLETE) < 0 ||
        PyModule_AddIntConstant(module, "SCAN_FULL", SCAN_FULL) < 0)
        return -1;
    return 0;
}
