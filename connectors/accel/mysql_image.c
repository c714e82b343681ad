/* Binlog row images -> the sink format's JSON object text, in C.
 *
 * The C reader standing in for connectors/mysql/rows.py's generated JSON image
 * reader (`_compile_json`): the same contract, byte for byte, for tables whose
 * every column is one of the kinds below; any other table keeps the generated
 * Python reader. An image this code does not take (a NULL, a DECIMAL whose text
 * the format's shortcut refuses, an impossible DATETIME, text that is not valid
 * in its charset, an image shorter than its columns) goes to `fallback`, the
 * generated Python reader, which renders or refuses it exactly as before.
 *
 * Kinds (the program is a tuple of (kind, prefix, a, b) per column, in order;
 * `prefix` is the UTF-8 text before the value: '{"name":' or ',"name":'):
 *   INT      a: the struct code (b B h H i I q Q); the value's digits
 *   STR      a: length prefix bytes (1, 2); b: 1 for UTF-8, 0 for ASCII;
 *            a JSON string escaped as json.encoder.encode_basestring does
 *   DECIMAL  a: precision, b: scale; MySQL's packed DECIMAL as plain text,
 *            quoted, where it starts with a non-zero digit (the `string`
 *            decimal mode's shortcut, mappers.debezium._numeric_text)
 *   EPOCH    a: unit (1: microseconds, 1000: milliseconds), b: fsp; a
 *            DATETIME2 as its count of units since 1970-01-01, floored
 *
 * Whole Kafka records around these images are made in mysql_scan.c.
 */

#include <string.h>

#include "accel.h"

/* `digits` digits of v, zero-padded on the left */
static void
put_padded(char *out, uint32_t v, int digits)
{
    for (int i = digits - 1; i >= 0; i--) {
        out[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

/* -- values ------------------------------------------------------------------- */

static uint32_t
big_endian(const unsigned char *p, int width)
{
    uint32_t v = 0;
    for (int i = 0; i < width; i++)
        v = v << 8 | p[i];
    return v;
}

static int
is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days from 1970-01-01 to a valid proleptic Gregorian date (Howard Hinnant's). */
static int64_t
days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static const int MONTH_DAYS[13] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

static PyObject *
not_initialised(void)
{
    PyErr_SetString(PyExc_TypeError, "Image.__init__ was not called");
    return NULL;
}

/* -- one image ------------------------------------------------------------------ */

/* Renders the image at data[pos] into self->out.data from offset `o`. Returns the
 * offset after the text and sets *next; -1 with an exception set on an error;
 * -2 where the image must go to the fallback. With `nulls`, NULL columns are
 * written as null (not in a key); without, an image with a NULL goes to the
 * fallback. Records where each key value's text lies (key_spans). */
Py_ssize_t
rj_render_image(ImageObject *self, const unsigned char *data, Py_ssize_t size, Py_ssize_t pos,
             Py_ssize_t o, int nulls, Py_ssize_t *next, int *ascii)
{
    int all_ascii = self->prefixes_ascii;
    if (pos < 0 || pos > size - self->nbitmap)
        return -2;
    const unsigned char *bitmap = data + pos;
    /* bits past the last column are padding, not NULLs */
    for (Py_ssize_t i = 0; i < self->nbitmap && !nulls; i++) {
        Py_ssize_t left = self->ncols - 8 * i;
        unsigned mask = left >= 8 ? 0xFF : (1u << left) - 1;
        if (bitmap[i] & mask)
            return -2;
    }
    pos += self->nbitmap;
    for (Py_ssize_t k = 0; k < self->ncols; k++) {
        Column *c = &self->cols[k];
        /* the longest value text: 64 bytes of digits, or an escaped string */
        if (rj_reserve(&self->out, o, c->prefix_len + 96) < 0)
            return -1;
        memcpy(self->out.data + o, c->prefix, c->prefix_len);
        o += c->prefix_len;
        Py_ssize_t slot = self->slot_of[k];
        if (nulls && bitmap[k >> 3] >> (k & 7) & 1) {
            if (slot >= 0)
                return -2; /* a NULL key: the general path decides */
            memcpy(self->out.data + o, "null", 4);
            o += 4;
            continue;
        }
        if (slot >= 0)
            self->key_spans[2 * slot] = o;
        switch (c->kind) {
        case K_INT: {
            if (pos + c->width > size)
                return -2;
            const unsigned char *p = data + pos;
            uint64_t u = 0;
            for (int i = c->width - 1; i >= 0; i--)
                u = u << 8 | p[i];
            if (c->is_signed && c->width < 8 && (u >> (8 * c->width - 1)) & 1)
                u |= ~(uint64_t)0 << (8 * c->width);
            o += c->is_signed ? rj_put_i64(self->out.data + o, (int64_t)u) : rj_put_u64(self->out.data + o, u);
            pos += c->width;
            break;
        }
        case K_STR: {
            if (pos + c->width > size)
                return -2;
            Py_ssize_t n = c->width == 1 ? data[pos] : (data[pos] | data[pos + 1] << 8);
            pos += c->width;
            if (pos + n > size)
                return -2;
            const unsigned char *s = data + pos;
            int str_ascii = 1;
            if (c->b) {
                if (!rj_valid_utf8(s, n, &str_ascii))
                    return -2;
            }
            else {
                for (Py_ssize_t i = 0; i < n; i++)
                    if (s[i] >= 0x80)
                        return -2;
            }
            all_ascii &= str_ascii;
            if (rj_reserve(&self->out, o, 6 * n + 2) < 0)
                return -1;
            o += rj_put_json_string(self->out.data + o, s, n);
            pos += n;
            break;
        }
        case K_DECIMAL: {
            if (pos + c->width > size)
                return -2;
            const unsigned char *p = data + pos;
            int positive = p[0] & 0x80;
            uint32_t flip_all = positive ? 0 : 0xFFFFFFFFu;
            char *out = self->out.data + o;
            Py_ssize_t n = 0;
            if (!positive)
                out[n++] = '-';
            int offset = 0, started = 0;
            for (int g = 0; g < c->ngroups; g++) {
                int w = c->gwidth[g];
                uint32_t mask = w == 4 ? 0xFFFFFFFFu : (1u << (8 * w)) - 1;
                uint32_t v = (big_endian(p + offset, w) ^ flip_all) & mask;
                if (g == 0)
                    v ^= 1u << (8 * w - 1); /* the sign bit, stored inverted */
                offset += w;
                uint32_t limit = 1;
                for (int i = 0; i < c->gdigits[g]; i++)
                    limit *= 10;
                if (v >= limit)
                    return -2; /* not a valid group: the fallback decides */
                if (g < c->nint) {
                    if (started) {
                        put_padded(out + n, v, c->gdigits[g]);
                        n += c->gdigits[g];
                    }
                    else if (v) {
                        n += rj_put_u64(out + n, v);
                        started = 1;
                    }
                }
                else {
                    if (g == c->nint) {
                        if (!started)
                            out[n++] = '0';
                        out[n++] = '.';
                        started = 1;
                    }
                    put_padded(out + n, v, c->gdigits[g]);
                    n += c->gdigits[g];
                }
            }
            if (!started)
                out[n++] = '0'; /* scale 0 and a zero value */
            /* the shortcut: a first digit 1-9 (after the sign) is quoted as is */
            char first = out[positive ? 0 : 1];
            if (first < '1' || first > '9')
                return -2;
            memmove(out + 1, out, n);
            out[0] = '"';
            out[n + 1] = '"';
            o += n + 2;
            pos += c->width;
            break;
        }
        case K_EPOCH: {
            if (pos + 5 + c->nfrac > size)
                return -2;
            const unsigned char *p = data + pos;
            uint32_t ymd = (uint32_t)(p[0] << 16 | p[1] << 8 | p[2]) >> 1;
            uint32_t hms = (uint32_t)(p[2] & 1) << 16 | p[3] << 8 | p[4];
            int hour = hms >> 12, minute = hms >> 6 & 63, second = hms & 63;
            if (hour > 23 || minute > 59 || second > 59 || !(ymd & 0x400000))
                return -2;
            uint32_t ym = (ymd & 0x3FFFFF) >> 5;
            int year = ym / 13, month = ym % 13, day = ymd & 31;
            if (year < 1 || year > 9999 || month < 1 || day < 1)
                return -2;
            int mdays = MONTH_DAYS[month] + (month == 2 && is_leap(year));
            if (day > mdays)
                return -2;
            int64_t seconds =
                days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second;
            int64_t us = c->nfrac ? (int64_t)big_endian(p + 5, c->nfrac) * c->mult : 0;
            if (us > 999999)
                return -2;
            int64_t count = c->a == 1 ? seconds * 1000000 + us : seconds * 1000 + us / 1000;
            o += rj_put_i64(self->out.data + o, count);
            pos += 5 + c->nfrac;
            break;
        }
        }
        if (slot >= 0)
            self->key_spans[2 * slot + 1] = o;
    }
    if (rj_reserve(&self->out, o, 1) < 0)
        return -1;
    self->out.data[o++] = '}';
    *next = pos;
    *ascii = all_ascii;
    return o;
}

/* The key columns of the image at data[pos] (already rendered, so valid), as a
 * dict in the key's order. */
static PyObject *
image_key(ImageObject *self, const unsigned char *data, Py_ssize_t pos)
{
    if (self->nkeys == 0)
        Py_RETURN_NONE;
    PyObject **values = self->key_values;
    Py_ssize_t found = 0;
    pos += self->nbitmap;
    for (Py_ssize_t k = 0; k < self->ncols && found < self->nkeys; k++) {
        Column *c = &self->cols[k];
        Py_ssize_t width;
        switch (c->kind) {
        case K_STR:
            width = c->width + (c->width == 1 ? data[pos] : (data[pos] | data[pos + 1] << 8));
            break;
        case K_EPOCH: width = 5 + c->nfrac; break;
        default: width = c->width; break; /* K_INT, K_DECIMAL */
        }
        Py_ssize_t slot = self->slot_of[k];
        if (slot >= 0) {
            PyObject *value;
            if (c->kind == K_INT) {
                uint64_t u = 0;
                for (int i = c->width - 1; i >= 0; i--)
                    u = u << 8 | data[pos + i];
                if (c->is_signed && c->width < 8 && (u >> (8 * c->width - 1)) & 1)
                    u |= ~(uint64_t)0 << (8 * c->width);
                value = c->is_signed ? PyLong_FromLongLong((long long)u)
                                     : PyLong_FromUnsignedLongLong(u);
            }
            else { /* K_STR in UTF-8: the only other kind a key may have (Image_init) */
                value = PyUnicode_DecodeUTF8((const char *)data + pos + c->width,
                                             width - c->width, "strict");
            }
            if (value == NULL)
                goto error;
            values[slot] = value;
            found++;
        }
        pos += width;
    }
    PyObject *key = PyDict_New();
    if (key == NULL)
        goto error;
    for (Py_ssize_t j = 0; j < self->nkeys; j++) {
        if (PyDict_SetItem(key, PyTuple_GET_ITEM(self->key_names, j), values[j]) < 0) {
            Py_DECREF(key);
            goto error;
        }
    }
    for (Py_ssize_t j = 0; j < self->nkeys; j++)
        Py_CLEAR(values[j]);
    return key;
error:
    for (Py_ssize_t j = 0; j < self->nkeys; j++)
        Py_CLEAR(values[j]);
    return NULL;
}

static PyObject *
Image_call(ImageObject *self, PyObject *args, PyObject *Py_UNUSED(kwargs))
{
    PyObject *data_obj;
    Py_ssize_t pos;
    if (self->out.data == NULL)
        return not_initialised();
    if (!PyArg_ParseTuple(args, "On", &data_obj, &pos))
        return NULL;
    if (!PyBytes_CheckExact(data_obj))
        return PyObject_Call(self->fallback, args, NULL);
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(data_obj);
    Py_ssize_t size = PyBytes_GET_SIZE(data_obj);
    Py_ssize_t next;
    int ascii;
    Py_ssize_t n = rj_render_image(self, data, size, pos, 0, 0, &next, &ascii);
    if (n == -1)
        return NULL;
    if (n == -2)
        return PyObject_Call(self->fallback, args, NULL);
    PyObject *text;
    if (ascii) {
        text = PyUnicode_New(n, 127);
        if (text == NULL)
            return NULL;
        memcpy(PyUnicode_DATA(text), self->out.data, n);
    }
    else {
        text = PyUnicode_DecodeUTF8(self->out.data, n, "strict");
        if (text == NULL)
            return NULL;
    }
    PyObject *rendered = PyObject_CallOneArg(self->rendered, text);
    Py_DECREF(text);
    if (rendered == NULL)
        return NULL;
    PyObject *key = image_key(self, data, pos);
    if (key == NULL) {
        Py_DECREF(rendered);
        return NULL;
    }
    PyObject *next_obj = PyLong_FromSsize_t(next);
    if (next_obj == NULL) {
        Py_DECREF(rendered);
        Py_DECREF(key);
        return NULL;
    }
    PyObject *out = PyTuple_New(3);
    if (out == NULL) {
        Py_DECREF(rendered);
        Py_DECREF(key);
        Py_DECREF(next_obj);
        return NULL;
    }
    PyTuple_SET_ITEM(out, 0, rendered);
    PyTuple_SET_ITEM(out, 1, key);
    PyTuple_SET_ITEM(out, 2, next_obj);
    return out;
}

/* -- the key of a rendered image -------------------------------------------------- */

/* The key's JSON text from the image just rendered into out (see key_spans):
 * '{"a":1,"b":"x"}', as the format writes a key of integers and text. */
PyObject *
rj_key_text(ImageObject *self)
{
    return rj_key_json(self->out.data, self->nkeys, self->key_spans, self->key_prefix,
                       self->key_prefix_len);
}

/* -- construction ------------------------------------------------------------- */

static const int DIG2BYTES[10] = {0, 1, 1, 2, 2, 3, 3, 4, 4, 4};

static int
setup_column(Column *c, PyObject *spec, Py_ssize_t k)
{
    PyObject *prefix;
    if (!PyArg_ParseTuple(spec, "iSii", &c->kind, &prefix, &c->a, &c->b))
        return -1;
    c->prefix = PyBytes_AS_STRING(prefix);
    c->prefix_len = PyBytes_GET_SIZE(prefix);
    switch (c->kind) {
    case K_INT: {
        const char *codes = "bBhHiIqQ";
        const char *at = c->a > 0 && c->a < 128 ? strchr(codes, c->a) : NULL;
        if (at == NULL) {
            PyErr_Format(PyExc_ValueError, "column %zd: no integer code %d", k, c->a);
            return -1;
        }
        int i = (int)(at - codes);
        c->width = 1 << (i / 2);
        c->is_signed = i % 2 == 0;
        return 0;
    }
    case K_STR:
        if (c->a != 1 && c->a != 2) {
            PyErr_Format(PyExc_ValueError, "column %zd: length prefix of %d bytes", k, c->a);
            return -1;
        }
        c->width = c->a;
        return 0;
    case K_DECIMAL: {
        int precision = c->a, scale = c->b;
        if (precision < 1 || precision > 65 || scale < 0 || scale > 30 || scale > precision) {
            PyErr_Format(PyExc_ValueError, "column %zd: DECIMAL(%d,%d)", k, precision, scale);
            return -1;
        }
        int intg = precision - scale;
        int n = 0;
        if (intg % 9) {
            c->gwidth[n] = DIG2BYTES[intg % 9];
            c->gdigits[n++] = intg % 9;
        }
        for (int i = 0; i < intg / 9; i++) {
            c->gwidth[n] = 4;
            c->gdigits[n++] = 9;
        }
        c->nint = n;
        for (int i = 0; i < scale / 9; i++) {
            c->gwidth[n] = 4;
            c->gdigits[n++] = 9;
        }
        if (scale % 9) {
            c->gwidth[n] = DIG2BYTES[scale % 9];
            c->gdigits[n++] = scale % 9;
        }
        c->ngroups = n;
        c->width = 0;
        for (int i = 0; i < n; i++)
            c->width += c->gwidth[i];
        return 0;
    }
    case K_EPOCH:
        if ((c->a != 1 && c->a != 1000) || c->b < 0 || c->b > 6) {
            PyErr_Format(PyExc_ValueError, "column %zd: epoch unit %d, fsp %d", k, c->a, c->b);
            return -1;
        }
        c->nfrac = (c->b + 1) / 2;
        c->mult = (int[]){1, 10000, 100, 1}[c->nfrac];
        return 0;
    }
    PyErr_Format(PyExc_ValueError, "column %zd: unknown kind %d", k, c->kind);
    return -1;
}

static void
Image_dealloc(ImageObject *self)
{
    PyMem_Free(self->cols);
    PyMem_Free(self->slot_of);
    PyMem_Free(self->key_cols);
    PyMem_Free(self->key_values);
    PyMem_Free(self->key_spans);
    PyMem_Free(self->key_prefix);
    PyMem_Free(self->key_prefix_len);
    rj_buffer_free(&self->out);
    Py_XDECREF(self->key_names);
    Py_XDECREF(self->prefixes);
    Py_XDECREF(self->rendered);
    Py_XDECREF(self->fallback);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
Image_init(ImageObject *self, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"program", "keys", "rendered", "fallback", NULL};
    PyObject *program, *keys, *rendered, *fallback;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!OO", names, &PyTuple_Type, &program,
                                     &PyTuple_Type, &keys, &rendered, &fallback))
        return -1;
    if (self->cols != NULL) {
        PyErr_SetString(PyExc_TypeError, "Image is initialised once");
        return -1;
    }
    Py_ssize_t ncols = PyTuple_GET_SIZE(program);
    self->cols = PyMem_Calloc(ncols ? ncols : 1, sizeof(Column));
    self->prefixes = PyTuple_New(ncols);
    if (self->cols == NULL || self->prefixes == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->ncols = ncols;
    self->nbitmap = (ncols + 7) / 8;
    self->prefixes_ascii = 1;
    for (Py_ssize_t k = 0; k < ncols; k++) {
        PyObject *spec = PyTuple_GET_ITEM(program, k);
        if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != 4) {
            PyErr_Format(PyExc_TypeError, "column %zd: (kind, prefix, a, b) expected", k);
            return -1;
        }
        if (setup_column(&self->cols[k], spec, k) < 0)
            return -1;
        PyObject *prefix = PyTuple_GET_ITEM(spec, 1);
        /* '{"name":' or ',"name":' (a key's text drops the first character) */
        if (PyBytes_GET_SIZE(prefix) < 2) {
            PyErr_Format(PyExc_ValueError, "column %zd: a prefix of 2 bytes or more expected", k);
            return -1;
        }
        for (Py_ssize_t i = 0; i < PyBytes_GET_SIZE(prefix); i++)
            if ((unsigned char)PyBytes_AS_STRING(prefix)[i] >= 0x80)
                self->prefixes_ascii = 0;
        Py_INCREF(prefix);
        PyTuple_SET_ITEM(self->prefixes, k, prefix);
    }
    Py_ssize_t nkeys = PyTuple_GET_SIZE(keys);
    self->key_values = PyMem_Calloc(nkeys ? nkeys : 1, sizeof(PyObject *));
    self->key_spans = PyMem_Calloc(nkeys ? 2 * nkeys : 1, sizeof(Py_ssize_t));
    self->slot_of = PyMem_Calloc(ncols ? ncols : 1, sizeof(Py_ssize_t));
    self->key_cols = PyMem_Calloc(nkeys ? nkeys : 1, sizeof(Py_ssize_t));
    self->key_prefix = PyMem_Calloc(nkeys ? nkeys : 1, sizeof(char *));
    self->key_prefix_len = PyMem_Calloc(nkeys ? nkeys : 1, sizeof(Py_ssize_t));
    self->key_names = PyTuple_New(nkeys);
    if (self->key_values == NULL || self->key_spans == NULL || self->slot_of == NULL ||
        self->key_cols == NULL || self->key_prefix == NULL || self->key_prefix_len == NULL ||
        self->key_names == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->nkeys = nkeys;
    for (Py_ssize_t k = 0; k < ncols; k++)
        self->slot_of[k] = -1;
    for (Py_ssize_t j = 0; j < nkeys; j++) {
        Py_ssize_t index;
        PyObject *name;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(keys, j), "nU", &index, &name))
            return -1;
        if (index < 0 || index >= ncols ||
            (self->cols[index].kind != K_INT && self->cols[index].kind != K_STR) ||
            (self->cols[index].kind == K_STR && !self->cols[index].b)) {
            PyErr_Format(PyExc_ValueError, "key %zd: column %zd cannot be a key here", j, index);
            return -1;
        }
        if (self->slot_of[index] >= 0) {
            PyErr_Format(PyExc_ValueError, "key %zd: column %zd named twice", j, index);
            return -1;
        }
        self->slot_of[index] = j;
        self->key_cols[j] = index;
        self->key_prefix[j] = self->cols[index].prefix;
        self->key_prefix_len[j] = self->cols[index].prefix_len;
        Py_INCREF(name);
        PyTuple_SET_ITEM(self->key_names, j, name);
    }
    if (rj_buffer_init(&self->out) < 0)
        return -1;
    Py_INCREF(rendered);
    self->rendered = rendered;
    Py_INCREF(fallback);
    self->fallback = fallback;
    return 0;
}

PyTypeObject rj_ImageType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "connectors.accel._accel.Image",
    .tp_doc = PyDoc_STR(
        "Image(program, keys, rendered, fallback)(data, pos) -> (rendered(text), key, next pos)\n"
        "or fallback(data, pos) for an image it does not take; see the module's source."),
    .tp_basicsize = sizeof(ImageObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Image_init,
    .tp_dealloc = (destructor)Image_dealloc,
    .tp_call = (ternaryfunc)Image_call,
};

int
rj_add_mysql_image(PyObject *module)
{
    if (PyType_Ready(&rj_ImageType) < 0 ||
        PyModule_AddObjectRef(module, "Image", (PyObject *)&rj_ImageType) < 0)
        return -1;
    if (PyModule_AddIntConstant(module, "INT", K_INT) < 0 ||
        PyModule_AddIntConstant(module, "STR", K_STR) < 0 ||
        PyModule_AddIntConstant(module, "DECIMAL", K_DECIMAL) < 0 ||
        PyModule_AddIntConstant(module, "EPOCH", K_EPOCH) < 0)
        return -1;
    return 0;
}
