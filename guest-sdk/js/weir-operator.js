// Weir operators in JavaScript.
//
// Write one function, declare it, and `weir build` turns the folder into a
// WebAssembly component with componentize-js:
//
//   import { filterMap, Reject } from "weir-operator";
//
//   filterMap(function cleanse(order) {
//     if (order.test === true) return null;            // dropped
//     if (order.ts === undefined) throw new Reject("missing field `ts`"); // dead letter
//     return { id: order.id, ts: order.ts };
//   });
//
// Records are plain objects; a null field is an absent property. The
// vocabulary is the Rust SDK's (`weir-guest`):
//
// * `map(fn)`: one record in, one record out.
// * `filter(fn)`: return true to keep the record unchanged (it never crosses
//   the boundary again).
// * `filterMap(fn)`: return a record, or null/undefined to drop it.
// * `flatMap(fn)`: return an array (or any iterable) of records.
// * `keyed(fn, { stateVersion, migrate, onTimer })`: `fn(record, ctx)` after
//   `key_by`; `ctx.state` is the key's JSON value state, `ctx.map(name)` a map
//   state, `ctx.emit(record, output)` emits to a named output, and the return
//   value is emitted like `flatMap`'s (a single object is one record).
//
// Throwing `new Reject(reason)` (or any other error) sends the input record to
// the dead-letter output with that reason; what it emitted is dropped.
//
// Numbers: JavaScript has one number type, so an output column of numbers is
// int64 when every value is an integer and float64 as soon as one is not, or
// when a value is a `Float`: wrap values that must stay floats even when
// integral in `float(x)` (`float(500 / 100)` is written `5.0`, not `5`). An
// input float that is integral (`5.0`, `1e2`) arrives as a `Float` (it is not
// `Number.isInteger`, and `+x` or `Number(x)` gives the number), so it keeps
// its type on the way out.
//
// Integers: a number is exact only up to 2^53, so an integer beyond it
// arrives as a BigInt, from an int64 column as from JSON (a JSON column, the
// value state, a map state), and a BigInt is written back as an int64 value
// or a JSON integer with every digit. Arithmetic that may leave 2^53 must be
// BigInt arithmetic (`BigInt(x)` takes either form), as in
// `examples/sales-by-product-js`; a number result beyond 2^53 is written as a
// float, like any number that is not a safe integer.

import {
  log as hostLog,
  counterAdd as hostCounterAdd,
  mapGet,
  mapSet,
  mapEntries,
  currentTime,
} from "weir:operator/host@0.1.0";

const MAIN_OUTPUT = "out";

/** Throw to send the current input record to the dead-letter output. */
export class Reject extends Error {
  constructor(reason) {
    super(reason);
    this.name = "Reject";
  }
}

/** A number that is written as a float64 value even when it is integral. */
export class Float {
  constructor(value) {
    this.value = Number(value);
  }
  valueOf() {
    return this.value;
  }
  toJSON() {
    return this.value;
  }
}

/** Marks `x` as a float: `float(5)` is written `5.0`. */
export function float(x) {
  return new Float(x);
}

let declared = null;
let operatorConfig = {};

function declare(op) {
  if (declared !== null) {
    throw new Error(
      `one component holds one operator: \`${declared.name}\` and \`${op.name}\` are both declared`,
    );
  }
  declared = op;
}

/** The operator's `config` table from the pipeline file, as an object. */
export function config() {
  return operatorConfig;
}

/** Writes a line to the host's log; `level` is trace, debug, info, warn or error. */
export function log(level, message) {
  hostLog(level, String(message));
}

/** Adds `delta` to the operator's counter `name`. */
export function counterAdd(name, delta = 1) {
  hostCounterAdd(name, BigInt(delta));
}

function reason(e) {
  if (e instanceof Reject) return e.message;
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return String(e);
}

// ---- columns to records ----------------------------------------------------

const decoder = new TextDecoder();
const encoder = new TextEncoder();

function texts(tv, rows) {
  const offs = tv.offsets;
  const bytes = tv.bytes;
  const out = new Array(rows);
  if (rows === 0) return out;
  const all = decoder.decode(bytes);
  if (all.length === bytes.length) {
    for (let i = 0; i < rows; i++) out[i] = all.slice(offs[i], offs[i + 1]);
  } else {
    for (let i = 0; i < rows; i++) out[i] = decoder.decode(bytes.subarray(offs[i], offs[i + 1]));
  }
  return out;
}

function int(x) {
  const n = Number(x);
  return Number.isSafeInteger(n) ? n : x;
}

function decodeColumn(col, rows) {
  const v = col.values;
  switch (v.tag) {
    case "int64": {
      const out = new Array(rows);
      for (let i = 0; i < rows; i++) out[i] = int(v.val[i]);
      return out;
    }
    case "float64": {
      // Integral floats arrive as `Float`, so they stay floats on the way out.
      const out = new Array(rows);
      for (let i = 0; i < rows; i++) {
        const x = v.val[i];
        out[i] = Number.isInteger(x) ? new Float(x) : x;
      }
      return out;
    }
    case "boolean":
      return v.val;
    case "utf8":
      return texts(v.val, rows);
    case "json":
      return texts(v.val, rows).map((s) => (s === "" ? null : parseJson(s)));
    default:
      throw new Error(`column \`${col.name}\` has an unknown type \`${v.tag}\``);
  }
}

function decode(batch) {
  const rows = batch.rows;
  const cols = batch.columns.map((c) => ({
    name: c.name,
    values: decodeColumn(c, rows),
    validity: c.validity ?? null,
  }));
  for (const c of cols) {
    if (c.values.length < rows) throw new Error(`column \`${c.name}\` is shorter than the batch`);
  }
  const records = new Array(rows);
  const make = recordMaker(cols.map((c) => c.name));
  const values = cols.map((c) => c.values);
  for (let i = 0; i < rows; i++) records[i] = make(values, i);
  // Nulls are absent properties.
  for (const c of cols) {
    const bits = c.validity;
    if (bits === null) continue;
    for (let i = 0; i < rows; i++) {
      if (!((bits[i >> 3] >> (i & 7)) & 1)) delete records[i][c.name];
    }
  }
  return records;
}

// A function that builds one record of a batch as an object literal with the
// batch's field names, so every record of the batch has one shape; made once
// per set of names. Falls back to plain property stores where code cannot be
// generated.
const makers = new Map();
function recordMaker(names) {
  const id = JSON.stringify(names);
  let make = makers.get(id);
  if (make !== undefined) return make;
  try {
    // `__proto__:` in a literal would set the prototype: not generated.
    if (names.includes("__proto__")) throw new Error("__proto__");
    const fields = names.map((n, j) => `${JSON.stringify(n)}: v[${j}][i]`).join(", ");
    make = new Function("v", "i", `return { ${fields} };`);
  } catch (_e) {
    make = (v, i) => {
      const r = {};
      for (let j = 0; j < names.length; j++) {
        Object.defineProperty(r, names[j], {
          value: v[j][i],
          writable: true,
          enumerable: true,
          configurable: true,
        });
      }
      return r;
    };
  }
  if (makers.size > 64) makers.clear();
  makers.set(id, make);
  return make;
}

// ---- records to columns ----------------------------------------------------

const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

/** A float as serde_json writes it: shortest digits, `.0` when integral, an
 * exponent (`1e+20`, `1.5e-9`) outside 1e-5 ..< 1e16. */
export function floatJson(x) {
  if (!Number.isFinite(x)) return "null";
  if (Object.is(x, -0)) return "-0.0";
  let s = String(x);
  const e = s.indexOf("e");
  let mantissa = e < 0 ? s : s.slice(0, e);
  const exp = e < 0 ? 0 : Number(s.slice(e + 1));
  const negative = mantissa.startsWith("-");
  if (negative) mantissa = mantissa.slice(1);
  // digits d1 d2 ... with the decimal point after `point` of them
  const dot = mantissa.indexOf(".");
  let digits = dot < 0 ? mantissa : mantissa.slice(0, dot) + mantissa.slice(dot + 1);
  let point = (dot < 0 ? mantissa.length : dot) + exp;
  const lead = digits.length - digits.replace(/^0+/, "").length;
  digits = digits.slice(lead);
  point -= lead;
  digits = digits.replace(/0+$/, "") || "0";
  const sign = negative ? "-" : "";
  if (digits === "0") return `${sign}0.0`;
  if (point > 0 && point <= 16) {
    if (digits.length <= point) return `${sign}${digits}${"0".repeat(point - digits.length)}.0`;
    return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
  }
  if (point <= 0 && point > -5) return `${sign}0.${"0".repeat(-point)}${digits}`;
  const m = digits.length === 1 ? digits : `${digits[0]}.${digits.slice(1)}`;
  const e10 = point - 1;
  return `${sign}${m}e${e10 < 0 ? "-" : "+"}${Math.abs(e10)}`;
}

/** `value` as JSON text the way the Rust SDK writes it (sorted keys, `5.0` for a `Float`). */
export function toJson(value) {
  if (value instanceof Float) return floatJson(value.value);
  if (typeof value === "number" && !Number.isInteger(value)) return floatJson(value);
  return jsonDoc(value);
}

// Nested values are written with sorted keys, as serde_json writes a `Value`
// (the Rust SDK's untyped JSON), and floats as Rust writes them.
// A `Float`'s `toJSON` runs before the replacer, which therefore looks at the
// holder's own value.
function jsonDoc(v) {
  return JSON.stringify(v, function (k, x) {
    const own = this[k];
    if (own instanceof Float) return JSON.rawJSON ? JSON.rawJSON(floatJson(own.value)) : own.value;
    if (typeof x === "bigint") return JSON.rawJSON ? JSON.rawJSON(String(x)) : Number(x);
    if (typeof x === "number" && !Number.isInteger(x)) {
      return JSON.rawJSON ? JSON.rawJSON(floatJson(x)) : x;
    }
    if (x !== null && typeof x === "object" && !Array.isArray(x)) {
      const sorted = {};
      for (const k of Object.keys(x).sort()) sorted[k] = x[k];
      return sorted;
    }
    return x;
  });
}

// A JSON document as values; a number written with a fraction or exponent
// that is integral (`1.0`, `1e2`) arrives as a `Float`, so it stays a float,
// as in Rust and Python, and an integer beyond 2^53 as a BigInt, so it keeps
// every digit (state, map state and JSON columns alike).
function parseJson(text) {
  return JSON.parse(text, (_k, x, context) => {
    if (typeof x === "number" && Number.isInteger(x) && context) {
      const source = context.source;
      if (/[.eE]/.test(source)) return new Float(x);
      if (!Number.isSafeInteger(x)) return BigInt(source);
    }
    return x;
  });
}

class EncodeError extends Error {
  constructor(index, message) {
    super(message);
    this.index = index;
  }
}

const NON_ASCII = /[^\x00-\x7f]/;

function textValues(strings) {
  const n = strings.length;
  const offsets = new Int32Array(n + 1);
  const joined = strings.join("");
  let bytes;
  if (!NON_ASCII.test(joined)) {
    // ASCII: one encode for the column, offsets from string lengths.
    let total = 0;
    for (let i = 0; i < n; i++) {
      total += strings[i].length;
      offsets[i + 1] = total;
    }
    bytes = encoder.encode(joined);
  } else {
    const parts = strings.map((s) => encoder.encode(s));
    let total = 0;
    for (let i = 0; i < n; i++) {
      total += parts[i].length;
      offsets[i + 1] = total;
    }
    if (total > 0x7fffffff) throw new Error("a text column of an output batch exceeds 2 GiB");
    bytes = new Uint8Array(total);
    let at = 0;
    for (const p of parts) {
      bytes.set(p, at);
      at += p.length;
    }
  }
  return { offsets, bytes };
}

function column(name, values) {
  const n = values.length;
  let nulls = 0;
  let numbers = 0;
  let floats = 0;
  let bigints = 0;
  let bools = 0;
  let strings = 0;
  let others = 0;
  for (let i = 0; i < n; i++) {
    const v = values[i];
    const t = typeof v;
    if (t === "string") strings++;
    else if (t === "number") {
      numbers++;
      if (!Number.isSafeInteger(v)) floats++;
    } else if (v === null || v === undefined) nulls++;
    else if (t === "boolean") bools++;
    else if (t === "bigint") bigints++;
    else if (v instanceof Float) {
      numbers++;
      floats++;
    } else others++;
  }
  let validity;
  if (nulls > 0) {
    validity = new Uint8Array(Math.max(1, (n + 7) >> 3));
    for (let i = 0; i < n; i++) {
      const v = values[i];
      if (v !== null && v !== undefined) validity[i >> 3] |= 1 << (i & 7);
    }
  }
  const set = n - nulls;
  const only = (count) => count > 0 && count === set;
  let out;
  // Integers and floats together make a JSON column, as in the Rust SDK, so
  // an integer stays an integer (`1`, not `1.0`) whatever else its batch holds.
  if (only(numbers + bigints) && (floats === 0 || floats === numbers + bigints)) {
    if (floats > 0) {
      const a = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (v !== null && v !== undefined) a[i] = Number(v);
      }
      out = { tag: "float64", val: a };
    } else {
      const a = new BigInt64Array(n);
      let fits = true;
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (v === null || v === undefined) continue;
        if (typeof v === "number") {
          a[i] = BigInt(v); // a safe integer: always fits
        } else if (v < I64_MIN || v > I64_MAX) {
          fits = false;
          break;
        } else {
          a[i] = v;
        }
      }
      if (fits) out = { tag: "int64", val: a };
    }
  } else if (only(bools)) {
    const a = new Array(n);
    for (let i = 0; i < n; i++) a[i] = values[i] === true;
    out = { tag: "boolean", val: a };
  } else if (only(strings)) {
    if (nulls) {
      const a = new Array(n);
      for (let i = 0; i < n; i++) a[i] = values[i] ?? "";
      out = { tag: "utf8", val: textValues(a) };
    } else {
      out = { tag: "utf8", val: textValues(values) };
    }
  }
  if (out === undefined) {
    const docs = new Array(n);
    for (let i = 0; i < n; i++) {
      const v = values[i];
      try {
        if (v === null || v === undefined) docs[i] = "";
        else if (v instanceof Float) docs[i] = floatJson(v.value);
        else if (typeof v === "number") docs[i] = Number.isInteger(v) ? String(v) : floatJson(v);
        else if (typeof v === "bigint") docs[i] = String(v);
        else {
          const doc = jsonDoc(v);
          if (doc === undefined) throw new Error(`a ${typeof v} has no JSON form`);
          docs[i] = doc;
        }
      } catch (e) {
        throw new EncodeError(i, `field \`${name}\`: ${e.message}`);
      }
    }
    out = { tag: "json", val: textValues(docs) };
  }
  return { name, values: out, validity };
}

function encode(records, names) {
  const n = records.length;
  const columns = new Array(names.length);
  for (let j = 0; j < names.length; j++) {
    const name = names[j];
    const values = new Array(n);
    for (let i = 0; i < n; i++) values[i] = records[i][name];
    columns[j] = column(name, values);
  }
  return { rows: n, columns };
}

// ---- emitting ------------------------------------------------------------

class Sink {
  constructor() {
    this.records = [];
    this.origins = [];
    this.names = new Set();
    this.lastKeys = null;
  }
  add(record, row) {
    if (record === null || typeof record !== "object" || Array.isArray(record)) {
      throw new Reject(
        `an operator must emit an object, not ${Array.isArray(record) ? "an array" : typeof record}`,
      );
    }
    // Records of one batch mostly share their keys: compare with the last
    // record's before touching the set of names.
    const keys = Object.keys(record);
    const last = this.lastKeys;
    let same = last !== null && last.length === keys.length;
    for (let i = 0; same && i < keys.length; i++) same = keys[i] === last[i];
    if (!same) {
      for (const k of keys) this.names.add(k);
      this.lastKeys = keys;
    }
    this.records.push(record);
    this.origins.push(row);
  }
  truncate(n) {
    this.records.length = n;
    this.origins.length = n;
  }
}

class Emitter {
  constructor() {
    this.row = 0;
    this.main = new Sink();
    this.kept = [];
    this.sides = new Map();
  }
  emit(record, output = MAIN_OUTPUT) {
    if (output === MAIN_OUTPUT) return this.main.add(record, this.row);
    let sink = this.sides.get(output);
    if (sink === undefined) {
      sink = new Sink();
      this.sides.set(output, sink);
    }
    sink.add(record, this.row);
  }
  mark() {
    const sides = new Map();
    for (const [k, s] of this.sides) sides.set(k, s.records.length);
    return { main: this.main.records.length, kept: this.kept.length, sides };
  }
  rollback(m) {
    this.main.truncate(m.main);
    this.kept.length = m.kept;
    for (const [k, s] of this.sides) s.truncate(m.sides.get(k) ?? 0);
  }
  dropRow(row) {
    for (const sink of [this.main, ...this.sides.values()]) {
      const keep = sink.origins.map((o, i) => (o === row ? -1 : i)).filter((i) => i >= 0);
      sink.records = keep.map((i) => sink.records[i]);
      sink.origins = keep.map((i) => sink.origins[i]);
    }
    this.kept = this.kept.filter((o) => o !== row);
  }
  finish(rejected) {
    for (;;) {
      try {
        return this.finishOnce();
      } catch (e) {
        if (!(e instanceof EncodeError)) throw e;
        rejected.push({ row: e.origin, reason: e.message });
        this.dropRow(e.origin);
      }
    }
  }
  finishOnce() {
    const emitted = [];
    if (this.kept.length > 0) {
      emitted.push({
        output: MAIN_OUTPUT,
        batch: { rows: 0, columns: [] },
        origins: new Uint32Array(this.kept),
        unchanged: true,
      });
    }
    for (const [name, sink] of [[MAIN_OUTPUT, this.main], ...this.sides]) {
      if (sink.records.length === 0) continue;
      let batch;
      try {
        batch = encode(sink.records, [...sink.names]);
      } catch (e) {
        if (e instanceof EncodeError) e.origin = sink.origins[e.index];
        throw e;
      }
      emitted.push({ output: name, batch, origins: new Uint32Array(sink.origins), unchanged: false });
    }
    return emitted;
  }
}

function emitAll(result, emitter) {
  if (result === null || result === undefined) return;
  if (typeof result === "object" && !Array.isArray(result) && !(Symbol.iterator in result)) {
    emitter.emit(result);
    return;
  }
  for (const r of result) emitter.emit(r);
}

// ---- stateless operators ---------------------------------------------------

function stateless(name, perRow) {
  declare({
    name,
    kind: "stateless",
    stateVersion: 0,
    process(records, _groups, emitter, rejected) {
      const main = emitter.main;
      for (let row = 0; row < records.length; row++) {
        emitter.row = row;
        // Marks without allocating while there are no side outputs (most rows).
        const emitted = main.records.length;
        const kept = emitter.kept.length;
        const m = emitter.sides.size > 0 ? emitter.mark() : null;
        try {
          perRow(records[row], emitter);
        } catch (e) {
          if (m !== null) emitter.rollback(m);
          else {
            main.truncate(emitted);
            emitter.kept.length = kept;
            for (const sink of emitter.sides.values()) sink.truncate(0);
          }
          rejected.push({ row, reason: reason(e) });
        }
      }
      return { stateUpdates: [], timers: [] };
    },
  });
}

/** Declares a one-to-one operator: `fn(record) -> record`. */
export function map(fn) {
  stateless(fn.name, (r, em) => em.main.add(fn(r), em.row));
  return fn;
}

/** Declares a filter: `fn(record) -> boolean`; kept records pass unchanged. */
export function filter(fn) {
  stateless(fn.name, (r, em) => {
    if (fn(r)) em.kept.push(em.row);
  });
  return fn;
}

/** Declares a filter-map: `fn(record) -> record | null`. */
export function filterMap(fn) {
  stateless(fn.name, (r, em) => {
    const out = fn(r);
    if (out !== null && out !== undefined) em.main.add(out, em.row);
  });
  return fn;
}

/** Declares a flat-map: `fn(record) -> iterable of records`. */
export function flatMap(fn) {
  stateless(fn.name, (r, em) => emitAll(fn(r) ?? [], em));
  return fn;
}

// ---- keyed operators -----------------------------------------------------

function jsonBytes(v) {
  return encoder.encode(jsonDoc(v));
}

function fromJsonBytes(b) {
  return parseJson(decoder.decode(b));
}

/** A map state of the current key, kept by the host (JSON entries and values). */
export class MapState {
  constructor(group, name) {
    this.group = group;
    this.name = name;
  }
  /** The value of `entry`, or `fallback`. */
  get(entry, fallback = null) {
    const raw = mapGet(this.group, this.name, jsonBytes(entry));
    return raw === undefined || raw === null ? fallback : fromJsonBytes(raw);
  }
  /** Sets `entry` to `value`. */
  set(entry, value) {
    mapSet(this.group, this.name, jsonBytes(entry), jsonBytes(value));
  }
  /** Removes `entry`. */
  remove(entry) {
    mapSet(this.group, this.name, jsonBytes(entry), undefined);
  }
  /** Every `[entry, value]` pair, ordered by entry. */
  entries() {
    return mapEntries(this.group, this.name).map(([k, v]) => [fromJsonBytes(k), fromJsonBytes(v)]);
  }
}

/** What a keyed function gets besides the record. */
export class Context {
  constructor(key, group, slot, emitter, timers, timer) {
    this.key = key;
    this.group = group;
    this.slot = slot;
    this.emitter = emitter;
    this.timers = timers;
    /** `{ domain, time }` of the timer that fired, in `onTimer`. */
    this.timer = timer;
  }
  /** The key's value state (any JSON value), `null` when it has none. */
  get state() {
    return this.slot.value;
  }
  set state(value) {
    this.slot.value = value ?? null;
    this.slot.dirty = true;
  }
  /** Removes the key's value state. */
  clear() {
    this.state = null;
  }
  /** The map state `name` of this key. */
  map(name) {
    return new MapState(this.group, name);
  }
  /** Emits `record` to `output` ("out" is the main output). */
  emit(record, output = MAIN_OUTPUT) {
    this.emitter.emit(record, output);
  }
  timer_(domain, time, del) {
    this.timers.push({ group: this.group, domain, time: BigInt(time), delete: del });
  }
  /** Calls `onTimer` for this key when the watermark passes `timeMs`. */
  registerEventTimer(timeMs) {
    this.timer_("event-time", timeMs, false);
  }
  /** Deletes an event-time timer registered earlier. */
  deleteEventTimer(timeMs) {
    this.timer_("event-time", timeMs, true);
  }
  /** Calls `onTimer` for this key when processing time passes `timeMs`. */
  registerProcessingTimer(timeMs) {
    this.timer_("processing-time", timeMs, false);
  }
  /** Deletes a processing-time timer registered earlier. */
  deleteProcessingTimer(timeMs) {
    this.timer_("processing-time", timeMs, true);
  }
  /** The current watermark, epoch milliseconds. */
  watermark() {
    return Number(currentTime("event-time"));
  }
  /** The current processing time, epoch milliseconds. */
  processingTime() {
    return Number(currentTime("processing-time"));
  }
}

function loadStates(groups) {
  return groups.map((g) => {
    if (g.state === undefined || g.state === null) return { value: null, dirty: false };
    try {
      return { value: fromJsonBytes(g.state), dirty: false };
    } catch (e) {
      throw new Error(`state of key \`${g.key}\` is not JSON: ${e.message}`);
    }
  });
}

function stateUpdates(slots) {
  const out = [];
  slots.forEach((s, group) => {
    if (s.dirty) out.push({ group, state: s.value === null ? undefined : jsonBytes(s.value) });
  });
  return out;
}

/**
 * Declares a keyed process function `fn(record, ctx)`, run after `key_by`.
 * `stateVersion` numbers the layout of the value state; a version that
 * changes it passes `migrate(oldState, fromVersion) -> newState`.
 * `onTimer(ctx)` runs when a timer registered through `ctx` fires.
 */
export function keyed(fn, { stateVersion = 1, migrate = null, onTimer = null } = {}) {
  declare({
    name: fn.name,
    kind: "keyed",
    stateVersion,
    process(records, groups, emitter, rejected) {
      const slots = loadStates(groups);
      const rowGroup = new Array(records.length).fill(-1);
      groups.forEach((g, i) => {
        for (const row of g.rows) if (row < rowGroup.length) rowGroup[row] = i;
      });
      const timers = [];
      for (let row = 0; row < records.length; row++) {
        const g = rowGroup[row];
        if (g < 0) continue;
        emitter.row = row;
        const m = emitter.mark();
        const before = timers.length;
        const ctx = new Context(groups[g].key, g, slots[g], emitter, timers, null);
        try {
          emitAll(fn(records[row], ctx), emitter);
        } catch (e) {
          emitter.rollback(m);
          timers.length = before;
          rejected.push({ row, reason: reason(e) });
        }
      }
      return { stateUpdates: stateUpdates(slots), timers };
    },
    onTimer(fired, groups, emitter) {
      if (onTimer === null) throw new Error("this operator has no timer function");
      const slots = loadStates(groups);
      emitter.row = 0xffffffff;
      const timers = [];
      for (const t of fired) {
        const g = groups[t.group];
        if (g === undefined) throw new Error(`timer for unknown key group ${t.group}`);
        const ctx = new Context(g.key, t.group, slots[t.group], emitter, timers, {
          domain: t.domain,
          time: Number(t.time),
        });
        try {
          emitAll(onTimer(ctx), emitter);
        } catch (e) {
          throw new Error(`timer at ${t.time} for key \`${g.key}\`: ${reason(e)}`);
        }
      }
      return { stateUpdates: stateUpdates(slots), timers };
    },
    migrate(fromVersion, states) {
      if (fromVersion === stateVersion) return states;
      if (fromVersion > stateVersion) {
        throw {
          index: 0,
          reason: `this version reads state version ${stateVersion} and cannot convert the newer state version ${fromVersion} back`,
        };
      }
      if (migrate === null) {
        throw { index: 0, reason: `this version declares no migration from state version ${fromVersion}` };
      }
      return states.map((raw, index) => {
        try {
          return jsonBytes(migrate(fromJsonBytes(raw), fromVersion));
        } catch (e) {
          throw { index, reason: reason(e) };
        }
      });
    },
  });
  return fn;
}

// ---- the component export -------------------------------------------------

function current() {
  if (declared === null) {
    throw "the app declares no operator: declare a function with map, filter, filterMap, flatMap or keyed";
  }
  return declared;
}

function message(e) {
  return typeof e === "string" ? e : e instanceof Error ? e.message : String(e);
}

/** The `operator` interface the component exports. */
export const operator = {
  init(configText) {
    try {
      operatorConfig = configText ? JSON.parse(configText) : {};
    } catch (e) {
      throw `invalid operator config: ${message(e)}`;
    }
    const op = current();
    return { kind: op.kind, stateVersion: op.stateVersion };
  },
  process(input, groups) {
    const op = current();
    let records;
    try {
      records = decode(input);
    } catch (e) {
      throw `cannot read the batch: ${message(e)}`;
    }
    const emitter = new Emitter();
    const rejected = [];
    let result;
    try {
      result = op.process(records, groups, emitter, rejected);
    } catch (e) {
      throw message(e);
    }
    const emitted = emitter.finish(rejected);
    rejected.sort((a, b) => a.row - b.row);
    return { emitted, rejected, stateUpdates: result.stateUpdates, timers: result.timers };
  },
  onTimer(timers, groups) {
    const op = current();
    if (op.kind !== "keyed") throw "this operator registers no timers";
    const emitter = new Emitter();
    let result;
    try {
      result = op.onTimer(timers, groups, emitter);
    } catch (e) {
      throw message(e);
    }
    const rejected = [];
    const emitted = emitter.finish(rejected);
    return { emitted, rejected, stateUpdates: result.stateUpdates, timers: result.timers };
  },
  migrate(fromVersion, states) {
    const op = current();
    if (op.kind !== "keyed") {
      throw { index: 0, reason: `this version declares no migration from state version ${fromVersion}` };
    }
    return op.migrate(fromVersion, states);
  },
};
