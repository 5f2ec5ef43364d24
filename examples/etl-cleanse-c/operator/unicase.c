#include "unicase.h"

#include <stdlib.h>
#include <string.h>
#include <wctype.h>

/* The next code point of `*s` (U+FFFD for a bad byte), advancing `*s`. */
static uint32_t next(const unsigned char **s) {
    const unsigned char *p = *s;
    uint32_t c = p[0];
    int n = c < 0x80 ? 0 : c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : -1;
    if (n < 0) {
        *s = p + 1;
        return 0xFFFD;
    }
    if (n) c &= 0x3F >> n;
    for (int i = 1; i <= n; i++) {
        if ((p[i] & 0xC0) != 0x80) {
            *s = p + i;
            return 0xFFFD;
        }
        c = (c << 6) | (p[i] & 0x3F);
    }
    *s = p + n + 1;
    return c;
}

static size_t put(char *out, uint32_t c) {
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | c >> 6);
        out[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | c >> 12);
        out[1] = (char)(0x80 | (c >> 6 & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | c >> 18);
    out[1] = (char)(0x80 | (c >> 12 & 0x3F));
    out[2] = (char)(0x80 | (c >> 6 & 0x3F));
    out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* Unicode's White_Space property, which Rust's `trim` uses. */
static int is_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

const char *unicase_trim(weir_call *c, const char *s) {
    const unsigned char *p = (const unsigned char *)s, *start = p, *end = p;
    int seen = 0;
    while (*p) {
        const unsigned char *at = p;
        uint32_t cp = next(&p);
        if (!is_space(cp)) {
            if (!seen) start = at;
            seen = 1;
            end = p;
        }
    }
    if (!seen) return "";
    return weir_strn(c, (const char *)start, (size_t)(end - start));
}

/* Upper-case mappings to more than one code point (Unicode SpecialCasing). */
static const struct {
    uint32_t from;
    uint32_t to[3];
} SPECIAL_UPPER[] = {
    {0x00DF, {0x53, 0x53, 0}},   {0x0149, {0x2BC, 0x4E, 0}},  {0x01F0, {0x4A, 0x30C, 0}},
    {0x0587, {0x535, 0x552, 0}}, {0xFB00, {0x46, 0x46, 0}},   {0xFB01, {0x46, 0x49, 0}},
    {0xFB02, {0x46, 0x4C, 0}},   {0xFB03, {0x46, 0x46, 0x49}}, {0xFB04, {0x46, 0x46, 0x4C}},
    {0xFB05, {0x53, 0x54, 0}},   {0xFB06, {0x53, 0x54, 0}},
};

static const char *map(weir_call *c, const char *s, int upper) {
    size_t len = strlen(s);
    char small[256];
    /* A bad byte becomes U+FFFD (3 bytes); no mapping grows text more. */
    char *out = len * 3 + 1 <= sizeof small ? small : malloc(len * 3 + 1);
    if (!out) abort();
    size_t n = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        if (*p < 0x80) { /* ASCII, the usual case */
            unsigned char ch = *p++;
            if (upper && ch >= 'a' && ch <= 'z') ch = (unsigned char)(ch - 32);
            if (!upper && ch >= 'A' && ch <= 'Z') ch = (unsigned char)(ch + 32);
            out[n++] = (char)ch;
            continue;
        }
        uint32_t cp = next(&p);
        if (upper) {
            int special = 0;
            for (size_t i = 0; i < sizeof SPECIAL_UPPER / sizeof SPECIAL_UPPER[0]; i++) {
                if (SPECIAL_UPPER[i].from == cp) {
                    for (int j = 0; j < 3 && SPECIAL_UPPER[i].to[j]; j++)
                        n += put(out + n, SPECIAL_UPPER[i].to[j]);
                    special = 1;
                    break;
                }
            }
            if (!special) n += put(out + n, (uint32_t)towupper((wint_t)cp));
        } else if (cp == 0x130) { /* İ → i̇ */
            n += put(out + n, 0x69);
            n += put(out + n, 0x307);
        } else {
            n += put(out + n, (uint32_t)towlower((wint_t)cp));
        }
    }
    const char *result = weir_strn(c, out, n);
    if (out != small) free(out);
    return result;
}

const char *unicase_lower(weir_call *c, const char *s) { return map(c, s, 0); }

const char *unicase_upper(weir_call *c, const char *s) { return map(c, s, 1); }
