// RFC 3339 timestamps to epoch milliseconds, with the same rules and error
// messages as chrono's `DateTime::parse_from_rfc3339` (which the Rust version
// of this operator uses), so both dead-letter the same records the same way.

const TOO_SHORT = "premature end of input";
const INVALID = "input contains invalid characters";
const OUT_OF_RANGE = "input is out of range";
const TOO_LONG = "trailing input";

export class ParseError extends Error {}

const utf8 = new TextEncoder();

function digit(b, i) {
  const c = b[i];
  if (c >= 48 && c <= 57) return c - 48;
  throw new ParseError(INVALID);
}

function isDigit(c) {
  return c !== undefined && c >= 48 && c <= 57;
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
  return [4, 6, 9, 11].includes(m) ? 30 : 31;
}

// [rest, seconds east of UTC], like chrono's `scan::timezone_offset` with a
// mandatory colon, `Z` allowed and minutes required.
function offset(b) {
  if (b[0] === 90 || b[0] === 122) return [b.subarray(1), 0];
  let negative;
  if (b[0] === 43) [negative, b] = [false, b.subarray(1)];
  else if (b[0] === 45) [negative, b] = [true, b.subarray(1)];
  else if (b[0] === 0xe2 && b[1] === 0x88 && b[2] === 0x92) [negative, b] = [true, b.subarray(3)];
  else if (b.length === 0) throw new ParseError(TOO_SHORT);
  else throw new ParseError(INVALID);
  if (b.length < 2) throw new ParseError(TOO_SHORT);
  if (!isDigit(b[0]) || !isDigit(b[1])) throw new ParseError(INVALID);
  const hours = (b[0] - 48) * 10 + b[1] - 48;
  b = b.subarray(2);
  if (b.length === 0) throw new ParseError(TOO_SHORT);
  if (b[0] !== 58) throw new ParseError(INVALID);
  b = b.subarray(1);
  if (b.length < 2) throw new ParseError(TOO_SHORT);
  let minutes;
  if (b[0] >= 48 && b[0] <= 53 && isDigit(b[1])) minutes = (b[0] - 48) * 10 + b[1] - 48;
  else if (b[0] >= 54 && b[0] <= 57 && isDigit(b[1])) throw new ParseError(OUT_OF_RANGE);
  else throw new ParseError(INVALID);
  const seconds = hours * 3600 + minutes * 60;
  return [b.subarray(2), negative ? -seconds : seconds];
}

/** Epoch milliseconds of an RFC 3339 timestamp; throws `ParseError`. */
export function parseMillis(s) {
  const b = utf8.encode(s);
  if (b.length < 19) throw new ParseError(TOO_SHORT);
  const year = digit(b, 0) * 1000 + digit(b, 1) * 100 + digit(b, 2) * 10 + digit(b, 3);
  if (b[4] !== 45) throw new ParseError(INVALID);
  const month = digit(b, 5) * 10 + digit(b, 6);
  if (b[7] !== 45) throw new ParseError(INVALID);
  const day = digit(b, 8) * 10 + digit(b, 9);
  if (!(month >= 1 && month <= 12 && day >= 1 && day <= monthDays(year, month))) {
    throw new ParseError(OUT_OF_RANGE);
  }
  if (![116, 84, 32].includes(b[10])) throw new ParseError(INVALID);
  const hour = digit(b, 11) * 10 + digit(b, 12);
  if (b[13] !== 58) throw new ParseError(INVALID);
  const minute = digit(b, 14) * 10 + digit(b, 15);
  if (b[16] !== 58) throw new ParseError(INVALID);
  let sec = digit(b, 17) * 10 + digit(b, 18);
  let nano = 0;
  if (sec === 60) [sec, nano] = [59, 1_000_000_000]; // RFC 3339 allows leap seconds
  let rest = b.subarray(19);
  if (rest[0] === 46) {
    const frac = rest.subarray(1);
    let n = 0;
    while (isDigit(frac[n])) n++;
    if (n === 0) throw new ParseError(frac.length === 0 ? TOO_SHORT : INVALID);
    const used = Math.min(n, 9);
    let v = 0;
    for (let i = 0; i < used; i++) v = v * 10 + frac[i] - 48;
    nano += v * 10 ** (9 - used);
    rest = frac.subarray(n);
  }
  if (hour >= 24 || minute >= 60 || sec >= 60 || (nano >= 1_000_000_000 && sec !== 59)) {
    throw new ParseError(OUT_OF_RANGE);
  }
  const [tail, off] = offset(rest);
  if (tail.length > 0) throw new ParseError(TOO_LONG);
  if (!(off > -86_400 && off < 86_400)) throw new ParseError(OUT_OF_RANGE);
  const seconds = daysFromCivil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + sec - off;
  return seconds * 1000 + Math.floor(nano / 1_000_000);
}
