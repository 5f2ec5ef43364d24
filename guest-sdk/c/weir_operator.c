/* The `operator` export of the `operator-component` world, over whatever the
 * app declared with a `WEIR_*` macro (see `weir_operator.h`).
 *
 * Input: each column of a batch is read once and every row becomes a yyjson
 * object (nulls are absent fields). Output: emitted records are gathered per
 * output and turned into columns at the end of the call, with the Rust SDK's
 * rule: a column whose non-null values are all integers (within 64 signed
 * bits) is int64, all floats float64, all booleans boolean, all strings utf8;
 * anything else is a JSON column, written as serde_json writes a `Value`.
 *
 * Memory: the WIT bindings hand the export its arguments to own, and free
 * what it returns after the host has copied it (`cabi_post_*`), so every
 * returned buffer is `malloc`ed here and every argument is freed here. */
#include "weir_operator.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator_component.h"

typedef operator_component_string_t wstring;
typedef weir_operator_types_batch_t wbatch;
typedef weir_operator_types_column_t wcolumn;
typedef weir_operator_types_emitted_t wemitted;
typedef weir_operator_types_key_group_t wgroup;
typedef exports_weir_operator_operator_list_key_group_t wgroups;

#define MAIN_OUTPUT "out"
#define NO_ROW UINT32_MAX

/* ---- Small helpers ------------------------------------------------------ */

/* Every allocation failure ends the call with a trap: the host replays or
 * dead-letters the batch, which is all an operator can do without memory. */
static void *xrealloc(void *ptr, size_t size) {
    void *p = realloc(ptr, size ? size : 1);
    if (!p) abort();
    return p;
}

/* A growable array of `T`, as `struct { T *items; size_t len, cap; }`. */
#define VEC(T) \
    struct {   \
        T *items;  \
        size_t len, cap; \
    }
#define VEC_PUSH(v, x)                                                                 \
    do {                                                                               \
        if ((v).len == (v).cap) {                                                      \
            (v).cap = (v).cap ? (v).cap * 2 : 8;                                       \
            (v).items = xrealloc((v).items, (v).cap * sizeof(*(v).items));             \
        }                                                                              \
        (v).items[(v).len++] = (x);                                                    \
    } while (0)

typedef struct {
    char *ptr;
    size_t len, cap;
} buf;

static void buf_reserve(buf *b, size_t more) {
    if (b->len + more > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->len + more) cap *= 2;
        b->ptr = xrealloc(b->ptr, cap);
        b->cap = cap;
    }
}

static void buf_put(buf *b, const char *s, size_t n) {
    buf_reserve(b, n);
    memcpy(b->ptr + b->len, s, n);
    b->len += n;
}

static void buf_puts(buf *b, const char *s) { buf_put(b, s, strlen(s)); }

/* A malloc'ed WIT string copy of `s`, for a returned error. */
static wstring owned_string(const char *s) {
    wstring out;
    operator_component_string_dup(&out, s);
    return out;
}

static char *vformat(const char *format, va_list args) {
    va_list again;
    va_copy(again, args);
    int n = vsnprintf(NULL, 0, format, args);
    if (n < 0) n = 0;
    char *out = xrealloc(NULL, (size_t)n + 1);
    vsnprintf(out, (size_t)n + 1, format, again);
    va_end(again);
    return out;
}

/* ---- JSON text in serde_json's form ------------------------------------ */

/* A finite double as serde_json 1.0.154 writes it (its formatter, zmij):
 * the shortest digits that read back as the same double, plain from 1e-5 up
 * to below 1e16 (`1000000000000000.0`), otherwise with a signed exponent
 * (`1e+16`, `1e-7`). `tests/e2e/conformance.rs` checks the forms. */
static void write_f64(buf *b, double x) {
    if (!isfinite(x)) {
        buf_puts(b, "null");
        return;
    }
    char sci[40];
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(sci, sizeof sci, "%.*e", precision - 1, x);
        if (strtod(sci, NULL) == x) break;
    }
    /* sci is "[-]d[.ddd]e±XX" */
    const char *p = sci;
    if (*p == '-') {
        buf_put(b, "-", 1);
        p++;
    }
    char digits[24];
    int length = 0;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') digits[length++] = *p;
    int exponent = atoi(p + 1);
    while (length > 1 && digits[length - 1] == '0') length--;
    int kk = exponent + 1; /* 10^(kk-1) <= |x| < 10^kk */
    int k = kk - length;
    char out[64];
    int n = 0;
    if (0 <= k && kk <= 16) {
        memcpy(out, digits, (size_t)length);
        n = length;
        for (int i = length; i < kk; i++) out[n++] = '0';
        out[n++] = '.';
        out[n++] = '0';
    } else if (0 < kk && kk <= 16) {
        memcpy(out, digits, (size_t)kk);
        n = kk;
        out[n++] = '.';
        memcpy(out + n, digits + kk, (size_t)(length - kk));
        n += length - kk;
    } else if (-5 < kk && kk <= 0) {
        out[n++] = '0';
        out[n++] = '.';
        for (int i = kk; i < 0; i++) out[n++] = '0';
        memcpy(out + n, digits, (size_t)length);
        n += length;
    } else if (length == 1) {
        out[n++] = digits[0];
        n += snprintf(out + n, sizeof out - (size_t)n, "e%+d", kk - 1);
    } else {
        out[n++] = digits[0];
        out[n++] = '.';
        memcpy(out + n, digits + 1, (size_t)(length - 1));
        n += length - 1;
        n += snprintf(out + n, sizeof out - (size_t)n, "e%+d", kk - 1);
    }
    buf_put(b, out, (size_t)n);
}

static void write_str(buf *b, const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    buf_reserve(b, len + 2);
    buf_put(b, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        switch (ch) {
            case '"': buf_put(b, "\\\"", 2); break;
            case '\\': buf_put(b, "\\\\", 2); break;
            case '\b': buf_put(b, "\\b", 2); break;
            case '\f': buf_put(b, "\\f", 2); break;
            case '\n': buf_put(b, "\\n", 2); break;
            case '\r': buf_put(b, "\\r", 2); break;
            case '\t': buf_put(b, "\\t", 2); break;
            default:
                if (ch < 0x20) {
                    char esc[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
                    buf_put(b, esc, 6);
                } else {
                    buf_put(b, (const char *)&s[i], 1);
                }
        }
    }
    buf_put(b, "\"", 1);
}

typedef struct {
    yyjson_mut_val *key, *val;
} member;

static int member_cmp(const void *a, const void *b) {
    yyjson_mut_val *x = ((const member *)a)->key, *y = ((const member *)b)->key;
    size_t xl = yyjson_mut_get_len(x), yl = yyjson_mut_get_len(y);
    int c = memcmp(yyjson_mut_get_str(x), yyjson_mut_get_str(y), xl < yl ? xl : yl);
    if (c) return c;
    return xl < yl ? -1 : xl > yl;
}

/* `v` as serde_json writes a `Value`: no spaces, object keys sorted. */
static void write_json(buf *b, yyjson_mut_val *v) {
    char num[32];
    switch (yyjson_mut_get_type(v)) {
        case YYJSON_TYPE_BOOL: buf_puts(b, yyjson_mut_get_bool(v) ? "true" : "false"); return;
        case YYJSON_TYPE_NUM:
            switch (yyjson_mut_get_subtype(v)) {
                case YYJSON_SUBTYPE_SINT:
                    buf_put(b, num, (size_t)snprintf(num, sizeof num, "%lld",
                                                     (long long)yyjson_mut_get_sint(v)));
                    return;
                case YYJSON_SUBTYPE_UINT:
                    buf_put(b, num, (size_t)snprintf(num, sizeof num, "%llu",
                                                     (unsigned long long)yyjson_mut_get_uint(v)));
                    return;
                default: write_f64(b, yyjson_mut_get_real(v)); return;
            }
        case YYJSON_TYPE_STR:
        case YYJSON_TYPE_RAW: write_str(b, yyjson_mut_get_str(v), yyjson_mut_get_len(v)); return;
        case YYJSON_TYPE_ARR: {
            buf_put(b, "[", 1);
            size_t idx, max;
            yyjson_mut_val *item;
            yyjson_mut_arr_foreach(v, idx, max, item) {
                if (idx) buf_put(b, ",", 1);
                write_json(b, item);
            }
            buf_put(b, "]", 1);
            return;
        }
        case YYJSON_TYPE_OBJ: {
            size_t n = yyjson_mut_obj_size(v);
            member *members = xrealloc(NULL, n * sizeof(member));
            size_t idx, max;
            yyjson_mut_val *key, *val;
            yyjson_mut_obj_foreach(v, idx, max, key, val) {
                members[idx].key = key;
                members[idx].val = val;
            }
            qsort(members, n, sizeof(member), member_cmp);
            buf_put(b, "{", 1);
            for (size_t i = 0; i < n; i++) {
                if (i) buf_put(b, ",", 1);
                write_str(b, yyjson_mut_get_str(members[i].key), yyjson_mut_get_len(members[i].key));
                buf_put(b, ":", 1);
                write_json(b, members[i].val);
            }
            buf_put(b, "}", 1);
            free(members);
            return;
        }
        default: buf_puts(b, "null"); return;
    }
}

/* `len` bytes of JSON as a value of `doc`, or NULL with `*error` set. */
static yyjson_mut_val *read_json(yyjson_mut_doc *doc, const uint8_t *ptr, size_t len,
                                 const char **error) {
    yyjson_read_err err;
    yyjson_doc *parsed = yyjson_read_opts((char *)(uintptr_t)ptr, len, 0, NULL, &err);
    if (!parsed) {
        *error = err.msg;
        return NULL;
    }
    yyjson_mut_val *v = yyjson_val_mut_copy(doc, yyjson_doc_get_root(parsed));
    yyjson_doc_free(parsed);
    if (!v) abort();
    return v;
}

/* ---- The call ---------------------------------------------------------- */

typedef struct {
    yyjson_mut_val *record;
    uint32_t origin;
} emitted_record;

typedef struct {
    char *name;
    VEC(emitted_record) records;
} sink;

typedef struct {
    yyjson_mut_val *value;
    bool dirty;
} slot;

struct weir_call {
    yyjson_mut_doc *doc;
    /* The first reason given to `weir_reject` for the current row. */
    char *reason;
    uint32_t row;
    /* The key group of the current row or timer, `NO_ROW` outside one. */
    uint32_t group;
    const wgroups *groups;
    slot *slots;
    const char **keys;
    sink main;
    VEC(sink) sides;
    VEC(uint32_t) kept;
    VEC(weir_operator_types_timer_request_t) timers;
};

static void call_init(weir_call *c) {
    memset(c, 0, sizeof *c);
    c->doc = yyjson_mut_doc_new(NULL);
    if (!c->doc) abort();
    c->group = NO_ROW;
}

static void call_free(weir_call *c) {
    free(c->reason);
    free(c->slots);
    free(c->keys);
    free(c->main.records.items);
    for (size_t i = 0; i < c->sides.len; i++) {
        free(c->sides.items[i].name);
        free(c->sides.items[i].records.items);
    }
    free(c->sides.items);
    free(c->kept.items);
    free(c->timers.items);
    yyjson_mut_doc_free(c->doc);
}

yyjson_mut_doc *weir_doc(weir_call *c) { return c->doc; }

weir_value *weir_get(weir_value *record, const char *name) {
    weir_value *v = yyjson_mut_obj_get(record, name);
    return v && !yyjson_mut_is_null(v) ? v : NULL;
}

weir_value *weir_object(weir_call *c) {
    weir_value *v = yyjson_mut_obj(c->doc);
    if (!v) abort();
    return v;
}

static void put(weir_call *c, weir_value *object, const char *name, weir_value *value) {
    if (!yyjson_mut_is_obj(object)) return;
    weir_value *key = yyjson_mut_strcpy(c->doc, name);
    if (!key) abort();
    yyjson_mut_obj_put(object, key, value);
}

void weir_set(weir_call *c, weir_value *object, const char *name, weir_value *value) {
    put(c, object, name, value ? yyjson_mut_val_mut_copy(c->doc, value) : NULL);
}

void weir_set_int(weir_call *c, weir_value *object, const char *name, int64_t value) {
    put(c, object, name, yyjson_mut_sint(c->doc, value));
}

void weir_set_real(weir_call *c, weir_value *object, const char *name, double value) {
    put(c, object, name, yyjson_mut_real(c->doc, value));
}

void weir_set_bool(weir_call *c, weir_value *object, const char *name, bool value) {
    put(c, object, name, yyjson_mut_bool(c->doc, value));
}

void weir_set_str(weir_call *c, weir_value *object, const char *name, const char *text) {
    put(c, object, name, yyjson_mut_strcpy(c->doc, text));
}

void weir_set_strn(weir_call *c, weir_value *object, const char *name, const char *text,
                   size_t len) {
    put(c, object, name, yyjson_mut_strncpy(c->doc, text, len));
}

bool weir_as_i64(weir_value *value, int64_t *out) {
    if (!value || !yyjson_mut_is_num(value)) return false;
    if (yyjson_mut_is_sint(value)) {
        *out = yyjson_mut_get_sint(value);
        return true;
    }
    if (yyjson_mut_is_uint(value) && yyjson_mut_get_uint(value) <= (uint64_t)INT64_MAX) {
        *out = (int64_t)yyjson_mut_get_uint(value);
        return true;
    }
    return false;
}

bool weir_as_u64(weir_value *value, uint64_t *out) {
    if (!value) return false;
    if (yyjson_mut_is_uint(value)) {
        *out = yyjson_mut_get_uint(value);
        return true;
    }
    if (yyjson_mut_is_sint(value) && yyjson_mut_get_sint(value) >= 0) {
        *out = (uint64_t)yyjson_mut_get_sint(value);
        return true;
    }
    return false;
}

bool weir_as_f64(weir_value *value, double *out) {
    if (!value || !yyjson_mut_is_num(value)) return false;
    *out = yyjson_mut_get_num(value);
    return true;
}

const char *weir_as_str(weir_value *value) {
    return value && yyjson_mut_is_str(value) ? yyjson_mut_get_str(value) : NULL;
}

bool weir_is_true(weir_value *value) { return value && yyjson_mut_is_true(value); }

const char *weir_to_json(weir_call *c, weir_value *value) {
    buf b = {0};
    if (value)
        write_json(&b, value);
    else
        buf_puts(&b, "null");
    weir_value *text = yyjson_mut_strncpy(c->doc, b.ptr, b.len);
    free(b.ptr);
    if (!text) abort();
    return yyjson_mut_get_str(text);
}

const char *weir_strn(weir_call *c, const char *text, size_t len) {
    weir_value *v = yyjson_mut_strncpy(c->doc, text, len);
    if (!v) abort();
    return yyjson_mut_get_str(v);
}

const char *weir_format(weir_call *c, const char *format, ...) {
    va_list args;
    va_start(args, format);
    char *text = vformat(format, args);
    va_end(args);
    weir_value *v = yyjson_mut_strcpy(c->doc, text);
    free(text);
    if (!v) abort();
    return yyjson_mut_get_str(v);
}

weir_value *weir_reject(weir_call *c, const char *format, ...) {
    if (!c->reason) {
        va_list args;
        va_start(args, format);
        c->reason = vformat(format, args);
        va_end(args);
    }
    return NULL;
}

static void sink_add(sink *s, weir_value *record, uint32_t row) {
    emitted_record e = {record, row};
    VEC_PUSH(s->records, e);
}

void weir_emit(weir_call *c, weir_value *record) { weir_emit_to(c, MAIN_OUTPUT, record); }

void weir_emit_to(weir_call *c, const char *output, weir_value *record) {
    if (!yyjson_mut_is_obj(record)) {
        weir_reject(c, "an operator must emit a JSON object, not %s",
                    record ? yyjson_mut_get_type_desc(record) : "NULL");
        return;
    }
    if (strcmp(output, MAIN_OUTPUT) == 0) {
        sink_add(&c->main, record, c->row);
        return;
    }
    for (size_t i = 0; i < c->sides.len; i++) {
        if (strcmp(c->sides.items[i].name, output) == 0) {
            sink_add(&c->sides.items[i], record, c->row);
            return;
        }
    }
    sink side = {0};
    side.name = strdup(output);
    if (!side.name) abort();
    VEC_PUSH(c->sides, side);
    sink_add(&c->sides.items[c->sides.len - 1], record, c->row);
}

/* Drops what the current row emitted and asked for: it is being rejected. */
static void rollback_row(weir_call *c, size_t timers_before) {
    sink *sinks[1] = {&c->main};
    for (size_t i = 0; i < 1 + c->sides.len; i++) {
        sink *s = i == 0 ? sinks[0] : &c->sides.items[i - 1];
        while (s->records.len && s->records.items[s->records.len - 1].origin == c->row)
            s->records.len--;
    }
    while (c->kept.len && c->kept.items[c->kept.len - 1] == c->row) c->kept.len--;
    c->timers.len = timers_before;
}

const char *weir_key(weir_call *c) { return c->group == NO_ROW ? NULL : c->keys[c->group]; }

weir_value *weir_state(weir_call *c) {
    return c->group == NO_ROW ? NULL : c->slots[c->group].value;
}

void weir_set_state(weir_call *c, weir_value *state) {
    if (c->group == NO_ROW) return;
    c->slots[c->group].value = state ? yyjson_mut_val_mut_copy(c->doc, state) : NULL;
    c->slots[c->group].dirty = true;
}

static void timer(weir_call *c, weir_time_domain domain, int64_t time, bool delete) {
    if (c->group == NO_ROW) return;
    weir_operator_types_timer_request_t t = {
        .group = c->group, .domain = (uint8_t)domain, .time = time, .delete_ = delete};
    VEC_PUSH(c->timers, t);
}

void weir_register_event_timer(weir_call *c, int64_t t) { timer(c, WEIR_EVENT_TIME, t, false); }
void weir_delete_event_timer(weir_call *c, int64_t t) { timer(c, WEIR_EVENT_TIME, t, true); }
void weir_register_processing_timer(weir_call *c, int64_t t) {
    timer(c, WEIR_PROCESSING_TIME, t, false);
}
void weir_delete_processing_timer(weir_call *c, int64_t t) {
    timer(c, WEIR_PROCESSING_TIME, t, true);
}

int64_t weir_watermark(weir_call *c) {
    (void)c;
    return weir_operator_host_current_time(WEIR_OPERATOR_TYPES_TIME_DOMAIN_EVENT_TIME);
}

int64_t weir_processing_time(weir_call *c) {
    (void)c;
    return weir_operator_host_current_time(WEIR_OPERATOR_TYPES_TIME_DOMAIN_PROCESSING_TIME);
}

static wstring borrowed_string(const char *s) {
    wstring out;
    operator_component_string_set(&out, s);
    return out;
}

weir_value *weir_map_get(weir_call *c, const char *name, weir_value *entry) {
    if (c->group == NO_ROW) return NULL;
    wstring n = borrowed_string(name);
    buf key = {0};
    write_json(&key, entry);
    operator_component_list_u8_t k = {(uint8_t *)key.ptr, key.len}, got;
    bool some = weir_operator_host_map_get(c->group, &n, &k, &got);
    free(key.ptr);
    if (!some) return NULL;
    const char *error = NULL;
    weir_value *v = read_json(c->doc, got.ptr, got.len, &error);
    operator_component_list_u8_free(&got);
    return v;
}

void weir_map_set(weir_call *c, const char *name, weir_value *entry, weir_value *value) {
    if (c->group == NO_ROW) return;
    wstring n = borrowed_string(name);
    buf key = {0}, val = {0};
    write_json(&key, entry);
    operator_component_list_u8_t k = {(uint8_t *)key.ptr, key.len};
    operator_component_list_u8_t v = {NULL, 0};
    if (value) {
        write_json(&val, value);
        v.ptr = (uint8_t *)val.ptr;
        v.len = val.len;
    }
    weir_operator_host_map_set(c->group, &n, &k, value ? &v : NULL);
    free(key.ptr);
    free(val.ptr);
}

weir_value *weir_map_entries(weir_call *c, const char *name) {
    weir_value *out = yyjson_mut_arr(c->doc);
    if (!out) abort();
    if (c->group == NO_ROW) return out;
    wstring n = borrowed_string(name);
    operator_component_list_tuple2_list_u8_list_u8_t entries;
    weir_operator_host_map_entries(c->group, &n, &entries);
    for (size_t i = 0; i < entries.len; i++) {
        const char *error = NULL;
        weir_value *entry = read_json(c->doc, entries.ptr[i].f0.ptr, entries.ptr[i].f0.len, &error);
        weir_value *value = read_json(c->doc, entries.ptr[i].f1.ptr, entries.ptr[i].f1.len, &error);
        if (!entry || !value) continue; /* the host stores what the SDK wrote: JSON */
        weir_value *pair = yyjson_mut_arr(c->doc);
        if (!pair || !yyjson_mut_arr_append(pair, entry) || !yyjson_mut_arr_append(pair, value) ||
            !yyjson_mut_arr_append(out, pair))
            abort();
    }
    operator_component_list_tuple2_list_u8_list_u8_free(&entries);
    return out;
}

static yyjson_mut_doc *config_doc;

weir_value *weir_config(void) { return config_doc ? yyjson_mut_doc_get_root(config_doc) : NULL; }

void weir_log(weir_log_level level, const char *format, ...) {
    va_list args;
    va_start(args, format);
    char *text = vformat(format, args);
    va_end(args);
    wstring message = borrowed_string(text);
    weir_operator_host_log((weir_operator_host_log_level_t)level, &message);
    free(text);
}

void weir_counter_add(const char *name, int64_t delta) {
    wstring n = borrowed_string(name);
    weir_operator_host_counter_add(&n, delta);
}

/* ---- Columns to records ------------------------------------------------ */

static bool valid(const operator_component_option_list_u8_t *validity, uint32_t row) {
    if (!validity->is_some) return true;
    size_t byte = row >> 3;
    return byte < validity->val.len && (validity->val.ptr[byte] >> (row & 7)) & 1;
}

static bool text_at(const weir_operator_types_text_values_t *t, uint32_t row, const uint8_t **ptr,
                    size_t *len) {
    if ((size_t)row + 1 >= t->offsets.len) return false;
    int32_t a = t->offsets.ptr[row], b = t->offsets.ptr[row + 1];
    if (a < 0 || b < a || (size_t)b > t->bytes.len) return false;
    *ptr = t->bytes.ptr + a;
    *len = (size_t)(b - a);
    return true;
}

/* The rows of `batch` as objects of the call's document; an error message
 * (static) when a column is malformed. */
static const char *decode(weir_call *c, const wbatch *batch, yyjson_mut_val ***out) {
    uint32_t rows = batch->rows;
    yyjson_mut_val **records = xrealloc(NULL, rows * sizeof(*records));
    for (uint32_t r = 0; r < rows; r++) records[r] = weir_object(c);
    *out = records;
    for (size_t i = 0; i < batch->columns.len; i++) {
        const wcolumn *col = &batch->columns.ptr[i];
        const weir_operator_types_values_t *v = &col->values;
        size_t have;
        switch (v->tag) {
            case WEIR_OPERATOR_TYPES_VALUES_INT64: have = v->val.int64.len; break;
            case WEIR_OPERATOR_TYPES_VALUES_FLOAT64: have = v->val.float64.len; break;
            case WEIR_OPERATOR_TYPES_VALUES_BOOLEAN: have = v->val.boolean.len; break;
            case WEIR_OPERATOR_TYPES_VALUES_UTF8: have = v->val.utf8.offsets.len ? v->val.utf8.offsets.len - 1 : 0; break;
            default: have = v->val.json.offsets.len ? v->val.json.offsets.len - 1 : 0; break;
        }
        if (have < rows) return "a column is shorter than the batch";
        yyjson_mut_val *key = yyjson_mut_strncpy(c->doc, (const char *)col->name.ptr, col->name.len);
        if (!key) abort();
        for (uint32_t r = 0; r < rows; r++) {
            if (!valid(&col->validity, r)) continue;
            yyjson_mut_val *value;
            const uint8_t *ptr;
            size_t len;
            switch (v->tag) {
                case WEIR_OPERATOR_TYPES_VALUES_INT64: value = yyjson_mut_sint(c->doc, v->val.int64.ptr[r]); break;
                case WEIR_OPERATOR_TYPES_VALUES_FLOAT64: value = yyjson_mut_real(c->doc, v->val.float64.ptr[r]); break;
                case WEIR_OPERATOR_TYPES_VALUES_BOOLEAN: value = yyjson_mut_bool(c->doc, v->val.boolean.ptr[r]); break;
                case WEIR_OPERATOR_TYPES_VALUES_UTF8:
                    if (!text_at(&v->val.utf8, r, &ptr, &len)) return "a text column has bad offsets";
                    value = yyjson_mut_strncpy(c->doc, (const char *)ptr, len);
                    break;
                default: {
                    if (!text_at(&v->val.json, r, &ptr, &len)) return "a JSON column has bad offsets";
                    if (len == 0) continue;
                    const char *error = NULL;
                    value = read_json(c->doc, ptr, len, &error);
                    if (!value) return "a JSON column holds invalid JSON";
                    break;
                }
            }
            if (!value) abort();
            /* Column names are unique within a batch: append, no lookup.
             * Each object needs a key node of its own, over the one copy
             * of the name. */
            yyjson_mut_val *row_key = yyjson_mut_strn(c->doc, yyjson_mut_get_str(key), col->name.len);
            if (!row_key) abort();
            yyjson_mut_obj_add(records[r], row_key, value);
        }
    }
    return NULL;
}

/* ---- Records to columns ------------------------------------------------ */

enum col_kind { K_NONE, K_INT, K_REAL, K_BOOL, K_STR, K_JSON };

static enum col_kind kind_of(yyjson_mut_val *v) {
    switch (yyjson_mut_get_type(v)) {
        case YYJSON_TYPE_BOOL: return K_BOOL;
        case YYJSON_TYPE_STR: return K_STR;
        case YYJSON_TYPE_NUM:
            if (yyjson_mut_is_sint(v)) return K_INT;
            if (yyjson_mut_is_uint(v)) return yyjson_mut_get_uint(v) <= (uint64_t)INT64_MAX ? K_INT : K_JSON;
            return K_REAL;
        default: return K_JSON;
    }
}

static operator_component_list_u8_t copy_bytes(const char *ptr, size_t len) {
    operator_component_list_u8_t out = {NULL, len};
    if (len) {
        out.ptr = xrealloc(NULL, len);
        memcpy(out.ptr, ptr, len);
    }
    return out;
}

/* Column `name` of the records of `s`; false when a text column would pass
 * Arrow's 2 GiB offset limit. */
static bool encode_column(const sink *s, yyjson_mut_val *name, wcolumn *col) {
    size_t n = s->records.len;
    const char *key = yyjson_mut_get_str(name);
    size_t key_len = yyjson_mut_get_len(name);
    yyjson_mut_val **values = xrealloc(NULL, n * sizeof(*values));
    enum col_kind kind = K_NONE;
    bool has_null = false;
    for (size_t i = 0; i < n; i++) {
        yyjson_mut_val *v = yyjson_mut_obj_getn(s->records.items[i].record, key, key_len);
        if (v && yyjson_mut_is_null(v)) v = NULL;
        values[i] = v;
        if (!v) {
            has_null = true;
            continue;
        }
        enum col_kind k = kind_of(v);
        kind = kind == K_NONE ? k : kind == k ? kind : K_JSON;
    }
    if (kind == K_NONE) kind = K_JSON;
    operator_component_list_u8_t copied = copy_bytes(key, key_len);
    col->name = (wstring){copied.ptr, copied.len};
    col->validity.is_some = has_null;
    if (has_null) {
        size_t bytes = (n + 7) / 8 ? (n + 7) / 8 : 1;
        uint8_t *bits = calloc(bytes, 1);
        if (!bits) abort();
        for (size_t i = 0; i < n; i++)
            if (values[i]) bits[i >> 3] |= (uint8_t)(1u << (i & 7));
        col->validity.val = (operator_component_list_u8_t){bits, bytes};
    }
    weir_operator_types_values_t *out = &col->values;
    bool ok = true;
    switch (kind) {
        case K_INT: {
            int64_t *xs = xrealloc(NULL, n * sizeof(int64_t));
            for (size_t i = 0; i < n; i++) {
                int64_t x = 0;
                if (values[i]) weir_as_i64(values[i], &x);
                xs[i] = x;
            }
            out->tag = WEIR_OPERATOR_TYPES_VALUES_INT64;
            out->val.int64 = (operator_component_list_s64_t){xs, n};
            break;
        }
        case K_REAL: {
            double *xs = xrealloc(NULL, n * sizeof(double));
            for (size_t i = 0; i < n; i++) xs[i] = values[i] ? yyjson_mut_get_real(values[i]) : 0.0;
            out->tag = WEIR_OPERATOR_TYPES_VALUES_FLOAT64;
            out->val.float64 = (operator_component_list_f64_t){xs, n};
            break;
        }
        case K_BOOL: {
            bool *xs = xrealloc(NULL, n * sizeof(bool));
            for (size_t i = 0; i < n; i++) xs[i] = values[i] && yyjson_mut_get_bool(values[i]);
            out->tag = WEIR_OPERATOR_TYPES_VALUES_BOOLEAN;
            out->val.boolean = (operator_component_list_bool_t){xs, n};
            break;
        }
        default: {
            int32_t *offsets = xrealloc(NULL, (n + 1) * sizeof(int32_t));
            buf text = {0};
            offsets[0] = 0;
            for (size_t i = 0; i < n; i++) {
                if (values[i]) {
                    if (kind == K_STR)
                        buf_put(&text, yyjson_mut_get_str(values[i]), yyjson_mut_get_len(values[i]));
                    else
                        write_json(&text, values[i]);
                }
                if (text.len > (size_t)INT32_MAX) ok = false;
                offsets[i + 1] = (int32_t)text.len;
            }
            weir_operator_types_text_values_t tv = {{offsets, n + 1}, {(uint8_t *)text.ptr, text.len}};
            if (!text.ptr) tv.bytes.len = 0;
            out->tag = kind == K_STR ? WEIR_OPERATOR_TYPES_VALUES_UTF8 : WEIR_OPERATOR_TYPES_VALUES_JSON;
            if (kind == K_STR)
                out->val.utf8 = tv;
            else
                out->val.json = tv;
            break;
        }
    }
    free(values);
    return ok;
}

static bool encode_sink(const sink *s, const char *output, wemitted *e) {
    /* Field names in order of first appearance. */
    VEC(yyjson_mut_val *) names = {0};
    for (size_t i = 0; i < s->records.len; i++) {
        size_t idx, max;
        yyjson_mut_val *key, *val;
        yyjson_mut_obj_foreach(s->records.items[i].record, idx, max, key, val) {
            (void)val;
            bool seen = false;
            for (size_t j = 0; j < names.len && !seen; j++)
                seen = yyjson_mut_equals(names.items[j], key);
            if (!seen) VEC_PUSH(names, key);
        }
    }
    e->output = owned_string(output);
    e->unchanged = false;
    e->batch.rows = (uint32_t)s->records.len;
    e->batch.columns.len = names.len;
    e->batch.columns.ptr = calloc(names.len ? names.len : 1, sizeof(wcolumn));
    if (!e->batch.columns.ptr) abort();
    bool ok = true;
    for (size_t j = 0; j < names.len; j++) ok &= encode_column(s, names.items[j], &e->batch.columns.ptr[j]);
    uint32_t *origins = xrealloc(NULL, s->records.len * sizeof(uint32_t));
    for (size_t i = 0; i < s->records.len; i++) origins[i] = s->records.items[i].origin;
    e->origins = (operator_component_list_u32_t){origins, s->records.len};
    free(names.items);
    return ok;
}

/* The call's `emitted` list: rows kept unchanged first, then the main
 * output's records, then each named output's, in the order first used. */
static bool finish(weir_call *c, weir_operator_types_list_emitted_t *out) {
    size_t cap = 2 + c->sides.len, n = 0;
    wemitted *list = calloc(cap, sizeof(wemitted));
    if (!list) abort();
    bool ok = true;
    if (c->kept.len) {
        wemitted *e = &list[n++];
        e->output = owned_string(MAIN_OUTPUT);
        e->origins = (operator_component_list_u32_t){c->kept.items, c->kept.len};
        c->kept.items = NULL;
        c->kept.len = c->kept.cap = 0;
        e->unchanged = true;
    }
    if (c->main.records.len) ok &= encode_sink(&c->main, MAIN_OUTPUT, &list[n++]);
    for (size_t i = 0; i < c->sides.len; i++)
        if (c->sides.items[i].records.len)
            ok &= encode_sink(&c->sides.items[i], c->sides.items[i].name, &list[n++]);
    *out = (weir_operator_types_list_emitted_t){list, n};
    return ok;
}

/* ---- Keyed state ------------------------------------------------------- */

static const char *load_groups(weir_call *c, const wgroups *groups) {
    c->groups = groups;
    c->slots = calloc(groups->len ? groups->len : 1, sizeof(slot));
    c->keys = calloc(groups->len ? groups->len : 1, sizeof(char *));
    if (!c->slots || !c->keys) abort();
    for (size_t g = 0; g < groups->len; g++) {
        const wgroup *group = &groups->ptr[g];
        yyjson_mut_val *key = yyjson_mut_strncpy(c->doc, (const char *)group->key.ptr, group->key.len);
        if (!key) abort();
        c->keys[g] = yyjson_mut_get_str(key);
        if (group->state.is_some) {
            const char *error = NULL;
            c->slots[g].value = read_json(c->doc, group->state.val.ptr, group->state.val.len, &error);
            if (!c->slots[g].value)
                return weir_format(c, "state of key `%s` is not JSON: %s", c->keys[g], error);
        }
    }
    return NULL;
}

static weir_operator_types_list_state_update_t state_updates(weir_call *c) {
    size_t n = 0;
    for (size_t g = 0; g < c->groups->len; g++) n += c->slots[g].dirty;
    weir_operator_types_state_update_t *updates = calloc(n ? n : 1, sizeof(*updates));
    if (!updates) abort();
    size_t i = 0;
    for (size_t g = 0; g < c->groups->len; g++) {
        if (!c->slots[g].dirty) continue;
        updates[i].group = (uint32_t)g;
        if (c->slots[g].value) {
            buf b = {0};
            write_json(&b, c->slots[g].value);
            updates[i].state.is_some = true;
            updates[i].state.val = (operator_component_list_u8_t){(uint8_t *)b.ptr, b.len};
        }
        i++;
    }
    return (weir_operator_types_list_state_update_t){updates, n};
}

static weir_operator_types_list_timer_request_t take_timers(weir_call *c) {
    weir_operator_types_list_timer_request_t out = {c->timers.items, c->timers.len};
    c->timers.items = NULL;
    c->timers.len = c->timers.cap = 0;
    return out;
}

/* ---- Exports ----------------------------------------------------------- */

/* The bindings reference this symbol to pull in the object file that holds
 * the world's type. `weir build` embeds that type after linking instead
 * (with the same WIT), so the symbol only has to exist. */
void __component_type_object_force_link_operator_component(void) {}

static const weir_operator *op(void) { return &weir_declared_operator; }

bool exports_weir_operator_operator_init(wstring *config,
                                         exports_weir_operator_operator_operator_info_t *ret,
                                         wstring *err) {
    if (config_doc) yyjson_mut_doc_free(config_doc);
    config_doc = yyjson_mut_doc_new(NULL);
    if (!config_doc) abort();
    yyjson_mut_val *root = NULL;
    if (config->len) {
        const char *error = NULL;
        root = read_json(config_doc, config->ptr, config->len, &error);
        if (!root) {
            char text[200];
            snprintf(text, sizeof text, "invalid operator config: %s", error ? error : "not JSON");
            *err = owned_string(text);
            operator_component_string_free(config);
            return false;
        }
    } else {
        root = yyjson_mut_obj(config_doc);
    }
    yyjson_mut_doc_set_root(config_doc, root);
    operator_component_string_free(config);
    bool keyed = op()->kind == WEIR_KIND_KEYED;
    ret->kind = keyed ? WEIR_OPERATOR_TYPES_OPERATOR_KIND_KEYED
                      : WEIR_OPERATOR_TYPES_OPERATOR_KIND_STATELESS;
    ret->state_version = keyed ? (op()->state_version ? op()->state_version : 1) : 0;
    return true;
}

bool exports_weir_operator_operator_process(exports_weir_operator_operator_batch_t *input,
                                            wgroups *groups,
                                            exports_weir_operator_operator_output_t *ret,
                                            wstring *err) {
    weir_call call, *c = &call;
    call_init(c);
    VEC(weir_operator_types_rejected_t) rejected = {0};
    yyjson_mut_val **records = NULL;
    const char *error = decode(c, input, &records);
    const weir_operator *o = op();
    uint32_t *row_group = NULL;
    if (!error && o->kind == WEIR_KIND_KEYED) {
        error = load_groups(c, groups);
        row_group = xrealloc(NULL, input->rows * sizeof(uint32_t));
        for (uint32_t r = 0; r < input->rows; r++) row_group[r] = NO_ROW;
        for (size_t g = 0; g < groups->len; g++)
            for (size_t i = 0; i < groups->ptr[g].rows.len; i++) {
                uint32_t r = groups->ptr[g].rows.ptr[i];
                if (r < input->rows) row_group[r] = (uint32_t)g;
            }
    }
    if (error) {
        *err = owned_string(weir_format(c, "cannot read the batch: %s", error));
        goto fail;
    }
    for (uint32_t r = 0; r < input->rows; r++) {
        c->row = r;
        size_t timers_before = c->timers.len;
        weir_value *record = records[r];
        switch (o->kind) {
            case WEIR_KIND_MAP:
            case WEIR_KIND_FILTER_MAP: {
                weir_value *out = o->map(c, record);
                if (!c->reason) {
                    if (out)
                        weir_emit(c, out);
                    else if (o->kind == WEIR_KIND_MAP)
                        weir_reject(c, "the map function returned no record");
                }
                break;
            }
            case WEIR_KIND_FILTER:
                if (o->filter(c, record) && !c->reason) VEC_PUSH(c->kept, r);
                break;
            case WEIR_KIND_FLAT_MAP: o->each(c, record); break;
            case WEIR_KIND_KEYED:
                if (row_group[r] == NO_ROW) continue;
                c->group = row_group[r];
                o->each(c, record);
                c->group = NO_ROW;
                break;
        }
        if (c->reason) {
            rollback_row(c, timers_before);
            weir_operator_types_rejected_t rej = {r, {(uint8_t *)c->reason, strlen(c->reason)}};
            VEC_PUSH(rejected, rej);
            c->reason = NULL;
        }
    }
    if (!finish(c, &ret->emitted)) {
        exports_weir_operator_operator_output_t partial = {.emitted = ret->emitted};
        exports_weir_operator_operator_output_free(&partial);
        *err = owned_string("a text column of an output batch exceeds 2 GiB");
        goto fail;
    }
    ret->rejected = (weir_operator_types_list_rejected_t){rejected.items, rejected.len};
    rejected.items = NULL;
    if (o->kind == WEIR_KIND_KEYED) {
        ret->state_updates = state_updates(c);
        ret->timers = take_timers(c);
    } else {
        ret->state_updates = (weir_operator_types_list_state_update_t){NULL, 0};
        ret->timers = (weir_operator_types_list_timer_request_t){NULL, 0};
    }
    free(records);
    free(row_group);
    call_free(c);
    exports_weir_operator_operator_batch_free(input);
    exports_weir_operator_operator_list_key_group_free(groups);
    return true;
fail:
    for (size_t i = 0; i < rejected.len; i++) free(rejected.items[i].reason.ptr);
    free(rejected.items);
    free(records);
    free(row_group);
    call_free(c);
    exports_weir_operator_operator_batch_free(input);
    exports_weir_operator_operator_list_key_group_free(groups);
    return false;
}

bool exports_weir_operator_operator_on_timer(exports_weir_operator_operator_list_fired_timer_t *timers,
                                             wgroups *groups,
                                             exports_weir_operator_operator_output_t *ret,
                                             wstring *err) {
    weir_call call, *c = &call;
    call_init(c);
    const weir_operator *o = op();
    const char *error = NULL;
    if (o->kind != WEIR_KIND_KEYED)
        error = "this operator registers no timers";
    else if (!o->on_timer)
        error = "this operator has no timer function";
    else
        error = load_groups(c, groups);
    c->row = NO_ROW;
    for (size_t i = 0; !error && i < timers->len; i++) {
        const weir_operator_types_fired_timer_t *t = &timers->ptr[i];
        if (t->group >= groups->len) {
            error = weir_format(c, "timer for unknown key group %u", (unsigned)t->group);
            break;
        }
        c->group = t->group;
        o->on_timer(c, (weir_time_domain)t->domain, t->time);
        if (c->reason)
            error = weir_format(c, "timer at %lld for key `%s`: %s", (long long)t->time,
                                c->keys[t->group], c->reason);
        c->group = NO_ROW;
    }
    bool ok = !error;
    if (ok && !finish(c, &ret->emitted)) {
        exports_weir_operator_operator_output_t partial = {.emitted = ret->emitted};
        exports_weir_operator_operator_output_free(&partial);
        error = "a text column of an output batch exceeds 2 GiB";
        ok = false;
    }
    if (ok) {
        ret->rejected = (weir_operator_types_list_rejected_t){NULL, 0};
        ret->state_updates = state_updates(c);
        ret->timers = take_timers(c);
    } else {
        *err = owned_string(error);
    }
    call_free(c);
    exports_weir_operator_operator_list_fired_timer_free(timers);
    exports_weir_operator_operator_list_key_group_free(groups);
    return ok;
}

static bool migration_error(exports_weir_operator_operator_migration_error_t *err, uint32_t index,
                            const char *reason) {
    err->index = index;
    err->reason = owned_string(reason);
    return false;
}

bool exports_weir_operator_operator_migrate(uint32_t from_version,
                                            operator_component_list_list_u8_t *states,
                                            operator_component_list_list_u8_t *ret,
                                            exports_weir_operator_operator_migration_error_t *err) {
    const weir_operator *o = op();
    uint32_t version = o->kind == WEIR_KIND_KEYED ? (o->state_version ? o->state_version : 1) : 0;
    char reason[160];
    if (o->kind == WEIR_KIND_KEYED && from_version == version) {
        *ret = *states; /* ownership passes back to the host */
        return true;
    }
    bool ok = false;
    if (o->kind == WEIR_KIND_KEYED && from_version > version) {
        snprintf(reason, sizeof reason,
                 "this version reads state version %u and cannot convert the newer state "
                 "version %u back",
                 (unsigned)version, (unsigned)from_version);
        migration_error(err, 0, reason);
    } else if (o->kind != WEIR_KIND_KEYED || !o->migrate) {
        snprintf(reason, sizeof reason,
                 "this version declares no migration from state version %u",
                 (unsigned)from_version);
        migration_error(err, 0, reason);
    } else {
        operator_component_list_u8_t *out = calloc(states->len ? states->len : 1, sizeof(*out));
        if (!out) abort();
        size_t done = 0;
        ok = true;
        for (size_t i = 0; i < states->len && ok; i++) {
            /* A document per state keeps memory flat over a large migration. */
            weir_call call, *c = &call;
            call_init(c);
            const char *error = NULL;
            weir_value *state = read_json(c->doc, states->ptr[i].ptr, states->ptr[i].len, &error);
            weir_value *migrated = NULL;
            if (!state)
                weir_reject(c, "the state is not JSON: %s", error);
            else
                migrated = o->migrate(c, state, from_version);
            if (!migrated && !c->reason) weir_reject(c, "the migration returned no state");
            if (c->reason) {
                migration_error(err, (uint32_t)i, c->reason);
                ok = false;
            } else {
                buf b = {0};
                write_json(&b, migrated);
                out[done++] = (operator_component_list_u8_t){(uint8_t *)b.ptr, b.len};
            }
            call_free(c);
        }
        if (ok) {
            *ret = (operator_component_list_list_u8_t){out, states->len};
        } else {
            for (size_t i = 0; i < done; i++) free(out[i].ptr);
            free(out);
        }
    }
    operator_component_list_list_u8_free(states);
    return ok;
}
