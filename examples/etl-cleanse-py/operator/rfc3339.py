"""RFC 3339 timestamps to epoch milliseconds, with the same rules and error
messages as chrono's `DateTime::parse_from_rfc3339` (which the Rust version
of this operator uses), so both versions dead-letter the same records with
the same reasons."""

TOO_SHORT = "premature end of input"
INVALID = "input contains invalid characters"
OUT_OF_RANGE = "input is out of range"
TOO_LONG = "trailing input"


class ParseError(Exception):
    pass


def _digit(b, i):
    c = b[i]
    if 48 <= c <= 57:
        return c - 48
    raise ParseError(INVALID)


def _days_from_civil(y, m, d):
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _month_days(y, m):
    if m == 2:
        return 29 if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 else 28
    return 30 if m in (4, 6, 9, 11) else 31


def _offset(b):
    """(rest, seconds east of UTC) like chrono's `scan::timezone_offset` with
    a mandatory colon, `Z` allowed and minutes required."""
    if b[:1] in (b"Z", b"z"):
        return b[1:], 0
    if b[:1] == b"+":
        negative, b = False, b[1:]
    elif b[:1] == b"-":
        negative, b = True, b[1:]
    elif b[:3] == "\u2212".encode():
        negative, b = True, b[3:]
    elif not b:
        raise ParseError(TOO_SHORT)
    else:
        raise ParseError(INVALID)
    if len(b) < 2:
        raise ParseError(TOO_SHORT)
    if not (48 <= b[0] <= 57 and 48 <= b[1] <= 57):
        raise ParseError(INVALID)
    hours = (b[0] - 48) * 10 + b[1] - 48
    b = b[2:]
    if not b:
        raise ParseError(TOO_SHORT)
    if b[0] != 58:  # ':'
        raise ParseError(INVALID)
    b = b[1:]
    if len(b) < 2:
        raise ParseError(TOO_SHORT)
    m1, m2 = b[0], b[1]
    if 48 <= m1 <= 53 and 48 <= m2 <= 57:
        minutes = (m1 - 48) * 10 + m2 - 48
    elif 54 <= m1 <= 57 and 48 <= m2 <= 57:
        raise ParseError(OUT_OF_RANGE)
    else:
        raise ParseError(INVALID)
    seconds = hours * 3600 + minutes * 60
    return b[2:], -seconds if negative else seconds


def parse_millis(s):
    """Epoch milliseconds of an RFC 3339 timestamp; raises `ParseError`."""
    b = s.encode()
    if len(b) < 19:
        raise ParseError(TOO_SHORT)
    year = _digit(b, 0) * 1000 + _digit(b, 1) * 100 + _digit(b, 2) * 10 + _digit(b, 3)
    if b[4] != 45:
        raise ParseError(INVALID)
    month = _digit(b, 5) * 10 + _digit(b, 6)
    if b[7] != 45:
        raise ParseError(INVALID)
    day = _digit(b, 8) * 10 + _digit(b, 9)
    if not (1 <= month <= 12 and 1 <= day <= _month_days(year, month)):
        raise ParseError(OUT_OF_RANGE)
    if b[10] not in b"tT ":
        raise ParseError(INVALID)
    hour = _digit(b, 11) * 10 + _digit(b, 12)
    if b[13] != 58:
        raise ParseError(INVALID)
    minute = _digit(b, 14) * 10 + _digit(b, 15)
    if b[16] != 58:
        raise ParseError(INVALID)
    sec = _digit(b, 17) * 10 + _digit(b, 18)
    nano = 0
    if sec == 60:  # RFC 3339 allows leap seconds
        sec, nano = 59, 1_000_000_000
    rest = b[19:]
    if rest[:1] == b".":
        frac = rest[1:]
        n = 0
        while n < len(frac) and 48 <= frac[n] <= 57:
            n += 1
        if n == 0:
            raise ParseError(TOO_SHORT if not frac else INVALID)
        nano += int(frac[: min(n, 9)]) * 10 ** (9 - min(n, 9))
        rest = frac[n:]
    if hour >= 24 or minute >= 60 or sec >= 60 or (nano >= 1_000_000_000 and sec != 59):
        raise ParseError(OUT_OF_RANGE)
    rest, offset = _offset(rest)
    if rest:
        raise ParseError(TOO_LONG)
    if not -86_400 < offset < 86_400:
        raise ParseError(OUT_OF_RANGE)
    seconds = _days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + sec - offset
    return seconds * 1000 + nano // 1_000_000
