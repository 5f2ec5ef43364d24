// Flink's fraud-detection walkthrough in JavaScript, the twin of
// `examples/fraud-detection/operator` (Rust): alert when an account's
// transaction under 1.00 is immediately followed by one over 500.00 less than
// a minute later (event time). The small transaction is remembered in keyed
// state, and an event-time timer forgets it once the minute has passed.
//
// `ts` is epoch milliseconds, an i64 in Rust: it is handled as a BigInt so
// that any i64 compares and adds exactly (numbers are exact up to 2^53).

import { Float, Reject, floatJson, keyed } from "weir-operator";

const SMALL = 1.0;
const LARGE = 500.0;
const ONE_MINUTE_MS = 60_000n;

/** How serde names a value of the wrong type. */
function unexpected(value) {
  if (typeof value === "boolean") return `boolean \`${value}\``;
  if (typeof value === "string") return `string ${JSON.stringify(value)}`;
  if (Array.isArray(value)) return "sequence";
  if (value instanceof Float || typeof value === "number") {
    return `floating point \`${floatJson(Number(value))}\``;
  }
  return "map";
}

/** A transaction's fields, refused as serde refuses a record: it reads them
 * in the order `Transaction` declares them, so the first one present with the
 * wrong type is named, else the first missing one. `f64` takes any number,
 * `i64` an integer, `any` any value. */
const FIELDS = { tx_id: "any", account_id: "any", amount: "f64", ts: "i64" };

function fits(value, expected) {
  const integer = typeof value === "bigint" || (typeof value === "number" && Number.isInteger(value));
  if (expected === "i64") return integer;
  return expected === "any" || integer || typeof value === "number" || value instanceof Float;
}

function read(tx) {
  for (const [name, expected] of Object.entries(FIELDS)) {
    const value = tx[name];
    if (value !== undefined && !fits(value, expected)) {
      throw new Reject(`field \`${name}\`: invalid type: ${unexpected(value)}, expected ${expected}`);
    }
  }
  for (const name of Object.keys(FIELDS)) {
    if (tx[name] === undefined) throw new Reject(`missing field \`${name}\``);
  }
  return tx;
}

/** A minute after a small transaction, it no longer flags the account. */
function forget(ctx) {
  ctx.clear();
}

keyed(
  function detect(tx, ctx) {
    const { tx_id: txId, account_id: accountId } = read(tx);
    const amount = Number(tx.amount);
    const ts = BigInt(tx.ts);
    let alert = null;
    const small = ctx.state;
    if (small !== null) {
      const smallTs = BigInt(small.ts);
      const later = ts - smallTs;
      if (amount > LARGE && later >= 0n && later < ONE_MINUTE_MS) {
        alert = {
          account_id: accountId,
          small_tx_id: small.tx_id,
          large_tx_id: txId,
        };
      }
      // Only the very next transaction counts.
      ctx.deleteEventTimer(smallTs + ONE_MINUTE_MS);
      ctx.clear();
    }
    if (amount < SMALL) {
      ctx.registerEventTimer(ts + ONE_MINUTE_MS);
      ctx.state = { tx_id: txId, ts };
    }
    return alert;
  },
  { onTimer: forget },
);
