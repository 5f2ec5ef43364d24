// RFC 3339 timestamps to epoch milliseconds, with the same rules and error
// messages as chrono's `DateTime::parse_from_rfc3339` (which the Rust version
// of this operator uses), so both dead-letter the same records the same way.
//
// chrono reads bytes, and so does this parser: one `TextEncoder.encode` per
// timestamp, then indices into the bytes. StarlingMonkey interprets
// JavaScript without a JIT, so a sub-array, a destructuring or a
// `charCodeAt` call per byte costs more than the parsing itself.

const TOO_SHORT = "premature end of input";
const INVALID = "input contains invalid characters";
const OUT_OF_RANGE = "input is out of range";
const TOO_LONG = "trailing input";

export class ParseError extends Error {}

const utf8 = new TextEncoder();

/** The two-digit number at `i`. */
function two(b, i) {
  const hi = b[i];
  const lo = b[i + 1];
  if (hi >= 48 && hi <= 57 && lo >= 48 && lo <= 57) return hi * 10 + lo - 528;
  throw new ParseError(INVALID);
}

function isDigit(c) {
  return c >= 48 && c <= 57; // false for `undefined` (past the end)
}

function daysFromCivil(y, m, d) {
  y -= m <= 2 ? 1 : 0;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

function monthDays(y, m) {
  if (m === 2) return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0 ? 29 : 28;
  return m === 4 || m === 6 || m === 9 || m === 11 ? 30 : 31;
}

// Seconds east of UTC of the offset at `i`, like chrono's
// `scan::timezone_offset` with a mandatory colon, `Z` allowed and minutes
// required; throws unless the offset ends the text.
function offset(b, i) {
  const n = b.length;
  const c = b[i];
  let end;
  let seconds;
  let negative = false;
  if (c === 90 || c === 122) {
    end = i + 1;
    seconds = 0;
  } else {
    if (c === 43) i += 1;
    else if (c === 45) {
      negative = true;
      i += 1;
    }
    else if (c === 0xe2 && b[i + 1] === 0x88 && b[i + 2] === 0x92) {
      negative = true;
      i += 3;
    } else if (i >= n) throw new ParseError(TOO_SHORT);
    else throw new ParseError(INVALID);
    if (n - i < 2) throw new ParseError(TOO_SHORT);
    const h0 = b[i];
    const h1 = b[i + 1];
    if (!isDigit(h0) || !isDigit(h1)) throw new ParseError(INVALID);
    const hours = (h0 - 48) * 10 + h1 - 48;
    i += 2;
    if (i >= n) throw new ParseError(TOO_SHORT);
    if (b[i] !== 58) throw new ParseError(INVALID);
    i += 1;
    if (n - i < 2) throw new ParseError(TOO_SHORT);
    const m0 = b[i];
    const m1 = b[i + 1];
    let minutes;
    if (m0 >= 48 && m0 <= 53 && isDigit(m1)) minutes = (m0 - 48) * 10 + m1 - 48;
    else if (m0 >= 54 && m0 <= 57 && isDigit(m1)) throw new ParseError(OUT_OF_RANGE);
    else throw new ParseError(INVALID);
    end = i + 2;
    seconds = hours * 3600 + minutes * 60;
  }
  if (end < n) throw new ParseError(TOO_LONG);
  return negative ? -seconds : seconds;
}

/** Epoch milliseconds of an RFC 3339 timestamp; throws `ParseError`. */
export function parseMillis(s) {
  const b = utf8.encode(s);
  if (b.length < 19) throw new ParseError(TOO_SHORT);
  const year = two(b, 0) * 100 + two(b, 2);
  if (b[4] !== 45) throw new ParseError(INVALID);
  const month = two(b, 5);
  if (b[7] !== 45) throw new ParseError(INVALID);
  const day = two(b, 8);
  if (!(month >= 1 && month <= 12 && day >= 1 && day <= monthDays(year, month))) {
    throw new ParseError(OUT_OF_RANGE);
  }
  const t = b[10];
  if (t !== 116 && t !== 84 && t !== 32) throw new ParseError(INVALID);
  const hour = two(b, 11);
  if (b[13] !== 58) throw new ParseError(INVALID);
  const minute = two(b, 14);
  if (b[16] !== 58) throw new ParseError(INVALID);
  let sec = two(b, 17);
  let nano = 0;
  if (sec === 60) {
    // RFC 3339 allows leap seconds
    sec = 59;
    nano = 1_000_000_000;
  }
  let i = 19;
  if (b[i] === 46) {
    const start = i + 1;
    let n = start;
    while (isDigit(b[n])) n++;
    if (n === start) throw new ParseError(start >= b.length ? TOO_SHORT : INVALID);
    const used = Math.min(n - start, 9);
    let v = 0;
    for (let k = start; k < start + used; k++) v = v * 10 + b[k] - 48;
    nano += v * 10 ** (9 - used);
    i = n;
  }
  if (hour >= 24 || minute >= 60 || sec >= 60 || (nano >= 1_000_000_000 && sec !== 59)) {
    throw new ParseError(OUT_OF_RANGE);
  }
  const off = offset(b, i);
  if (!(off > -86_400 && off < 86_400)) throw new ParseError(OUT_OF_RANGE);
  const seconds = daysFromCivil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + sec - off;
  return seconds * 1000 + Math.floor(nano / 1_000_000);
}
