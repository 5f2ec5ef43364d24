// Running sales totals per product, kept in keyed state: after every order it
// emits the product's units and revenue so far. The JavaScript twin of
// `examples/sales-by-product/operator` (Rust): same output, same dead letters.
//
// The totals are 64-bit integers as in Rust, so the arithmetic is BigInt:
// JavaScript numbers are exact only up to 2^53. The SDK hands integers as
// numbers when they fit and as BigInt when they do not, and writes either
// back as an int64 column or a JSON integer without loss.

import { Float, Reject, floatJson, keyed } from "weir-operator";

const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;
const OVERFLOW = "the totals overflow a 64-bit integer";

/** How serde names a value of the wrong type. */
function unexpected(value) {
  if (typeof value === "boolean") return `boolean \`${value}\``;
  if (typeof value === "number" || value instanceof Float) {
    return `floating point \`${floatJson(Number(value))}\``;
  }
  if (typeof value === "string") return `string ${JSON.stringify(value)}`;
  if (Array.isArray(value)) return "sequence";
  return "map";
}

/** The value as an i64 (a BigInt), or the reason serde gives for refusing it. */
function i64(value) {
  if (typeof value === "number" && Number.isInteger(value)) return BigInt(value);
  if (typeof value !== "bigint") return `invalid type: ${unexpected(value)}, expected i64`;
  if (value >= I64_MIN && value <= I64_MAX) return value;
  // serde_json reads an integer beyond i64 as a u64 if it fits, else as a float.
  if (value > 0n && value < 2n ** 64n) return `invalid value: integer \`${value}\`, expected i64`;
  return `invalid type: ${unexpected(Number(value))}, expected i64`;
}

/** `qty` and `price_cents` as BigInts, refused as serde refuses the order:
 * it reads the fields in the order `Order` declares them, so the first one
 * present with the wrong type is named, else the first missing one. */
function read(order) {
  const fields = {};
  for (const name of ["qty", "price_cents"]) {
    if (order[name] === undefined) continue;
    const n = i64(order[name]);
    if (typeof n === "string") throw new Reject(`field \`${name}\`: ${n}`);
    fields[name] = n;
  }
  for (const name of ["qty", "price_cents"]) {
    if (fields[name] === undefined) throw new Reject(`missing field \`${name}\``);
  }
  return fields;
}

function checked(n) {
  if (n < I64_MIN || n > I64_MAX) throw new Reject(OVERFLOW);
  return n;
}

keyed(
  function sales(order, ctx) {
    const { qty, price_cents: price } = read(order);
    const totals = ctx.state ?? { units: 0, revenue_cents: 0 };
    const revenue = checked(qty * price);
    const units = checked(BigInt(totals.units) + qty);
    const revenueCents = checked(BigInt(totals.revenue_cents) + revenue);
    ctx.state = { units, revenue_cents: revenueCents };
    return { product: order.product, units, revenue_cents: revenueCents };
  },
  { stateVersion: 1 },
);
