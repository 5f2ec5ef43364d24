/* Rust's `str::trim`, `to_lowercase` and `to_uppercase` for UTF-8 text, so
 * the C operator normalises emails and codes like the Rust one. Case
 * mapping is wasi-libc's (`towlower`/`towupper`, one code point to one)
 * plus the special cases that map to several (`ß` → `SS`, `İ` → `i̇`, the
 * ligatures); Greek final sigma is not handled. */
#ifndef UNICASE_H
#define UNICASE_H

#include "weir_operator.h"

/* `s` without leading and trailing Unicode white space. */
const char *unicase_trim(weir_call *c, const char *s);
/* `s` in lower case. */
const char *unicase_lower(weir_call *c, const char *s);
/* `s` in upper case. */
const char *unicase_upper(weir_call *c, const char *s);

#endif
