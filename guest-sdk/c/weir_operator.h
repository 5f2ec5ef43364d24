/* Weir operators in C.
 *
 * Write one function, declare it with a macro, and `weir build` turns the
 * folder (an `app.c`, maybe with more `.c`/`.h` files) into a WebAssembly
 * component with clang and wasi-libc:
 *
 *     #include "weir_operator.h"
 *
 *     static weir_value *cleanse(weir_call *c, weir_value *order) {
 *         weir_value *ts = weir_get(order, "ts");
 *         if (weir_is_true(weir_get(order, "test"))) return NULL;     // dropped
 *         if (!ts) return weir_reject(c, "missing field `ts`");      // dead letter
 *         weir_value *out = weir_object(c);
 *         weir_set(c, out, "id", weir_get(order, "id"));
 *         weir_set(c, out, "ts", ts);
 *         return out;
 *     }
 *     WEIR_FILTER_MAP(cleanse);
 *
 * The vocabulary is the Rust SDK's (`weir-guest`) and the Python and
 * JavaScript SDKs': map, filter, filter-map, flat-map, and keyed process
 * functions with a JSON value state, map states, named outputs, timers and a
 * state version with a migration.
 *
 * Records are JSON objects: yyjson mutable values (`weir_value`, read them
 * with the `yyjson_mut_*` functions or the helpers below). A null field is an
 * absent one. Every value lives in the call's document (`weir_doc`) and is
 * freed when the call returns, so an operator never frees anything. The
 * canonical-ABI structures of the WIT bindings stay inside the SDK: batches
 * arrive as typed columns and are turned into records here, and emitted
 * records are turned back into columns with the Rust SDK's type rules, so a C
 * operator's output is the same as a Rust one's.
 */
#ifndef WEIR_OPERATOR_H
#define WEIR_OPERATOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "yyjson.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A JSON value: a record, a field, a state. */
typedef yyjson_mut_val weir_value;

/** One call of the operator: where records are made, emitted and rejected. */
typedef struct weir_call weir_call;

/** The time domain of a timer. */
typedef enum weir_time_domain {
    WEIR_EVENT_TIME = 0,
    WEIR_PROCESSING_TIME = 1,
} weir_time_domain;

/** The shape of an operator, as the `WEIR_*` macros declare it. */
typedef enum weir_kind {
    WEIR_KIND_MAP,
    WEIR_KIND_FILTER,
    WEIR_KIND_FILTER_MAP,
    WEIR_KIND_FLAT_MAP,
    WEIR_KIND_KEYED,
} weir_kind;

/** What an app declares: its function and, for a keyed one, its state
 *  version, migration and timer function. Use the macros below. */
typedef struct weir_operator {
    weir_kind kind;
    /** map: a record out; filter-map: a record or NULL (dropped). */
    weir_value *(*map)(weir_call *c, weir_value *record);
    /** filter: true keeps the record unchanged (it never crosses the
     *  boundary again). */
    bool (*filter)(weir_call *c, weir_value *record);
    /** flat-map and keyed: emit with `weir_emit`. */
    void (*each)(weir_call *c, weir_value *record);
    /** keyed: the layout version of the value state (0 means 1). */
    uint32_t state_version;
    /** keyed: `state` in layout `from_version` converted to this version's;
     *  NULL after `weir_reject` refuses the new version. */
    weir_value *(*migrate)(weir_call *c, weir_value *state, uint32_t from_version);
    /** keyed: runs when a timer registered through the call fires. */
    void (*on_timer)(weir_call *c, weir_time_domain domain, int64_t time);
} weir_operator;

/** The operator of the component; exactly one file defines it, with a macro. */
extern const weir_operator weir_declared_operator;

/** Declares a one-to-one operator `weir_value *fn(weir_call *, weir_value *)`. */
#define WEIR_MAP(fn) \
    const weir_operator weir_declared_operator = {.kind = WEIR_KIND_MAP, .map = (fn)}
/** Declares a filter `bool fn(weir_call *, weir_value *)`. */
#define WEIR_FILTER(fn) \
    const weir_operator weir_declared_operator = {.kind = WEIR_KIND_FILTER, .filter = (fn)}
/** Declares a filter-map `weir_value *fn(weir_call *, weir_value *)` (NULL drops). */
#define WEIR_FILTER_MAP(fn) \
    const weir_operator weir_declared_operator = {.kind = WEIR_KIND_FILTER_MAP, .map = (fn)}
/** Declares a flat-map `void fn(weir_call *, weir_value *)` that calls `weir_emit`. */
#define WEIR_FLAT_MAP(fn) \
    const weir_operator weir_declared_operator = {.kind = WEIR_KIND_FLAT_MAP, .each = (fn)}
/** Declares a keyed process function `void fn(weir_call *, weir_value *)`, run
 *  after `key_by`; options follow as designated initializers:
 *  `WEIR_KEYED(fn, .state_version = 2, .migrate = from_v1, .on_timer = t)`. */
#define WEIR_KEYED(fn, ...)                                                                   \
    const weir_operator weir_declared_operator = {.kind = WEIR_KIND_KEYED, .each = (fn), \
                                                  __VA_ARGS__}

/* ---- Values ------------------------------------------------------------ */

/** The call's document: make values with `yyjson_mut_*(weir_doc(c), ...)`. */
yyjson_mut_doc *weir_doc(weir_call *c);

/** Field `name` of `record`; NULL when absent or null (a null is an absent field). */
weir_value *weir_get(weir_value *record, const char *name);

/** A new empty object. */
weir_value *weir_object(weir_call *c);

/** Sets `object[name]` to a copy of `value` (NULL removes the field); the
 *  name is copied too, so any string will do. */
void weir_set(weir_call *c, weir_value *object, const char *name, weir_value *value);
/** Sets `object[name]` to an integer. */
void weir_set_int(weir_call *c, weir_value *object, const char *name, int64_t value);
/** Sets `object[name]` to a float. */
void weir_set_real(weir_call *c, weir_value *object, const char *name, double value);
/** Sets `object[name]` to a boolean. */
void weir_set_bool(weir_call *c, weir_value *object, const char *name, bool value);
/** Sets `object[name]` to a copy of the NUL-terminated `text`. */
void weir_set_str(weir_call *c, weir_value *object, const char *name, const char *text);
/** Sets `object[name]` to a copy of `len` bytes of UTF-8 at `text`. */
void weir_set_strn(weir_call *c, weir_value *object, const char *name, const char *text,
                   size_t len);

/** True when `value` is an integer that fits in 64 signed bits; it is then
 *  stored at `out`. Floats (`1.0`, `1e2`) are not integers, as in serde. */
bool weir_as_i64(weir_value *value, int64_t *out);
/** True when `value` is an integer from 0 to 2^64-1, stored at `out`. */
bool weir_as_u64(weir_value *value, uint64_t *out);
/** True when `value` is a number (integer or float), stored at `out`. */
bool weir_as_f64(weir_value *value, double *out);
/** The text of a string value (NUL-terminated), or NULL for anything else. */
const char *weir_as_str(weir_value *value);
/** True when `value` is the boolean `true`. */
bool weir_is_true(weir_value *value);

/** `value` as JSON text the way the Rust SDK writes it (serde_json: object
 *  keys sorted, floats in their shortest form); lives until the call returns. */
const char *weir_to_json(weir_call *c, weir_value *value);

/** A NUL-terminated copy of `len` bytes at `text`, living until the call
 *  returns: the cheap way to keep a string made in a scratch buffer. */
const char *weir_strn(weir_call *c, const char *text, size_t len);

/** Text formatted like `printf`, living until the call returns. */
const char *weir_format(weir_call *c, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- Outcomes ---------------------------------------------------------- */

/** Sends the current input record to the dead-letter output with this reason
 *  (printf-style); what the record emitted is dropped. Returns NULL, so
 *  `return weir_reject(c, ...)` ends a map. In `migrate` it refuses the new
 *  version; in a timer function it fails the call. */
weir_value *weir_reject(weir_call *c, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/** Emits `record` to the main output. */
void weir_emit(weir_call *c, weir_value *record);
/** Emits `record` to the named output (`"out"` is the main one). */
void weir_emit_to(weir_call *c, const char *output, weir_value *record);

/* ---- Keyed state and timers -------------------------------------------- */

/** The key of the current record (or fired timer), as text. */
const char *weir_key(weir_call *c);
/** The key's value state, NULL when it has none. Changing it in place is not
 *  kept: store it with `weir_set_state`. */
weir_value *weir_state(weir_call *c);
/** Stores `state` (copied) as the key's value state; NULL clears it. */
void weir_set_state(weir_call *c, weir_value *state);

/** Entry `entry` of the key's map state `name` (kept by the host), or NULL. */
weir_value *weir_map_get(weir_call *c, const char *name, weir_value *entry);
/** Sets entry `entry` of map state `name`; a NULL `value` removes it. Takes
 *  effect only if the call succeeds. */
void weir_map_set(weir_call *c, const char *name, weir_value *entry, weir_value *value);

/** Every entry of map state `name`, ordered by entry: an array of
 *  `[entry, value]` arrays. */
weir_value *weir_map_entries(weir_call *c, const char *name);

/** Calls `on_timer` for this key when the watermark passes `time_ms`. */
void weir_register_event_timer(weir_call *c, int64_t time_ms);
/** Deletes an event-time timer registered earlier. */
void weir_delete_event_timer(weir_call *c, int64_t time_ms);
/** Calls `on_timer` for this key when processing time passes `time_ms`. */
void weir_register_processing_timer(weir_call *c, int64_t time_ms);
/** Deletes a processing-time timer registered earlier. */
void weir_delete_processing_timer(weir_call *c, int64_t time_ms);
/** The current watermark, epoch milliseconds. */
int64_t weir_watermark(weir_call *c);
/** The current processing time, epoch milliseconds. */
int64_t weir_processing_time(weir_call *c);

/* ---- Host -------------------------------------------------------------- */

/** The operator's `config` table from the pipeline file (an object). */
weir_value *weir_config(void);

/** Log levels of `weir_log`. */
typedef enum weir_log_level {
    WEIR_TRACE = 0,
    WEIR_DEBUG = 1,
    WEIR_INFO = 2,
    WEIR_WARN = 3,
    WEIR_ERROR = 4,
} weir_log_level;

/** Writes a line to the host's log (printf-style). */
void weir_log(weir_log_level level, const char *format, ...) __attribute__((format(printf, 2, 3)));
/** Adds `delta` to the operator's counter `name` (shown by `weir status`). */
void weir_counter_add(const char *name, int64_t delta);

#ifdef __cplusplus
}
#endif

#endif /* WEIR_OPERATOR_H */
