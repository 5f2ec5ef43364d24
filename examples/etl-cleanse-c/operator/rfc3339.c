#include "rfc3339.h"

#include <stdbool.h>
#include <string.h>

static const char TOO_SHORT[] = "premature end of input";
static const char INVALID[] = "input contains invalid characters";
static const char OUT_OF_RANGE[] = "input is out of range";
static const char TOO_LONG[] = "trailing input";

static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* Days from 1970-01-01 to the civil date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int month_days(int64_t y, int64_t m) {
    if (m == 2) return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 ? 29 : 28;
    return m == 4 || m == 6 || m == 9 || m == 11 ? 30 : 31;
}

/* Like chrono's `scan::timezone_offset` with a mandatory colon, `Z` allowed
 * and minutes required: the rest of the input at `*rest`, seconds east of
 * UTC at `*seconds`. */
static const char *offset(const unsigned char **rest, int64_t *seconds) {
    const unsigned char *b = *rest;
    bool negative;
    if (*b == 'Z' || *b == 'z') {
        *rest = b + 1;
        *seconds = 0;
        return NULL;
    }
    if (*b == '+') {
        negative = false;
        b++;
    } else if (*b == '-') {
        negative = true;
        b++;
    } else if (b[0] == 0xE2 && b[1] == 0x88 && b[2] == 0x92) { /* U+2212 minus sign */
        negative = true;
        b += 3;
    } else if (!*b) {
        return TOO_SHORT;
    } else {
        return INVALID;
    }
    if (!b[0] || !b[1]) return TOO_SHORT;
    if (!is_digit(b[0]) || !is_digit(b[1])) return INVALID;
    int64_t hours = (b[0] - '0') * 10 + b[1] - '0';
    b += 2;
    if (!*b) return TOO_SHORT;
    if (*b != ':') return INVALID;
    b++;
    if (!b[0] || !b[1]) return TOO_SHORT;
    int64_t minutes;
    if (b[0] >= '0' && b[0] <= '5' && is_digit(b[1]))
        minutes = (b[0] - '0') * 10 + b[1] - '0';
    else if (b[0] >= '6' && b[0] <= '9' && is_digit(b[1]))
        return OUT_OF_RANGE;
    else
        return INVALID;
    int64_t s = hours * 3600 + minutes * 60;
    *seconds = negative ? -s : s;
    *rest = b + 2;
    return NULL;
}

const char *rfc3339_millis(const char *text, int64_t *ms) {
    const unsigned char *b = (const unsigned char *)text;
    if (strlen(text) < 19) return TOO_SHORT;
    static const int digits[] = {0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18};
    for (size_t i = 0; i < sizeof digits / sizeof digits[0]; i++) {
        /* chrono reads field by field; the first bad character decides. */
        int at = digits[i];
        if (at == 5 && b[4] != '-') return INVALID;
        if (at == 8 && b[7] != '-') return INVALID;
        if (!is_digit(b[at])) return INVALID;
        if (at == 9) {
            int64_t y = (b[0] - '0') * 1000 + (b[1] - '0') * 100 + (b[2] - '0') * 10 + b[3] - '0';
            int64_t m = (b[5] - '0') * 10 + b[6] - '0', d = (b[8] - '0') * 10 + b[9] - '0';
            if (m < 1 || m > 12 || d < 1 || d > month_days(y, m)) return OUT_OF_RANGE;
            if (b[10] != 'T' && b[10] != 't' && b[10] != ' ') return INVALID;
        }
        if (at == 14 && b[13] != ':') return INVALID;
        if (at == 17 && b[16] != ':') return INVALID;
    }
    int64_t year = (b[0] - '0') * 1000 + (b[1] - '0') * 100 + (b[2] - '0') * 10 + b[3] - '0';
    int64_t month = (b[5] - '0') * 10 + b[6] - '0', day = (b[8] - '0') * 10 + b[9] - '0';
    int64_t hour = (b[11] - '0') * 10 + b[12] - '0', minute = (b[14] - '0') * 10 + b[15] - '0';
    int64_t sec = (b[17] - '0') * 10 + b[18] - '0';
    int64_t nano = 0;
    if (sec == 60) { /* RFC 3339 allows leap seconds */
        sec = 59;
        nano = 1000000000;
    }
    const unsigned char *rest = b + 19;
    if (*rest == '.') {
        const unsigned char *frac = rest + 1;
        int n = 0;
        while (is_digit(frac[n])) n++;
        if (n == 0) return *frac ? INVALID : TOO_SHORT;
        int64_t value = 0;
        int used = n < 9 ? n : 9;
        for (int i = 0; i < used; i++) value = value * 10 + frac[i] - '0';
        for (int i = used; i < 9; i++) value *= 10;
        nano += value;
        rest = frac + n;
    }
    if (hour >= 24 || minute >= 60 || sec >= 60 || (nano >= 1000000000 && sec != 59))
        return OUT_OF_RANGE;
    int64_t off;
    const char *error = offset(&rest, &off);
    if (error) return error;
    if (*rest) return TOO_LONG;
    if (off <= -86400 || off >= 86400) return OUT_OF_RANGE;
    int64_t seconds =
        days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + sec - off;
    *ms = seconds * 1000 + nano / 1000000;
    return NULL;
}
