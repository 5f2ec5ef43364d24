// Cleanses raw orders for the warehouse: drops test and invalid orders,
// normalises the rest, and dead-letters orders whose timestamp is unusable.
// The JavaScript twin of `examples/etl-cleanse/operator` (Rust): same rules,
// same output, same dead-letter reasons.

import { Reject, filterMap, float, toJson } from "weir-operator";
import { ParseError, parseMillis } from "./rfc3339.js";

function text(order, field) {
  const value = order[field];
  if (typeof value === "string") return value;
  if (value === undefined || value === null) throw new Reject(`missing field \`${field}\``);
  throw new Reject(`field \`${field}\` must be a string, not ${toJson(value)}`);
}

function isU64(v) {
  return (
    (typeof v === "number" && Number.isInteger(v) && v >= 0) ||
    (typeof v === "bigint" && v >= 0n && v < 2n ** 64n)
  );
}

filterMap(function cleanse(order) {
  const orderId = order.order_id;
  if (orderId === undefined || orderId === null || orderId === "") return null;
  const cents = order.amount_cents;
  if (!isU64(cents)) return null;
  if (order.test === true) return null;
  const ts = text(order, "ts");
  let tsMs;
  try {
    tsMs = parseMillis(ts);
  } catch (e) {
    if (e instanceof ParseError) {
      throw new Reject(`field \`ts\`: \`${ts}\` is not an RFC 3339 timestamp: ${e.message}`);
    }
    throw e;
  }
  return {
    order_id: orderId,
    email: text(order, "user_email").trim().toLowerCase(),
    amount: float(Number(cents) / 100), // a float even when whole, as in Rust
    currency: text(order, "currency").toUpperCase(),
    country: text(order, "country").toUpperCase(),
    ts_ms: tsMs,
  };
});
