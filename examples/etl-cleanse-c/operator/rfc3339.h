/* RFC 3339 timestamps to epoch milliseconds, with the same rules and error
 * messages as chrono's `DateTime::parse_from_rfc3339` (which the Rust version
 * of this operator uses), so every version dead-letters the same records
 * with the same reasons. */
#ifndef RFC3339_H
#define RFC3339_H

#include <stdint.h>

/* Epoch milliseconds of `s` at `*ms`; NULL, or chrono's error message. */
const char *rfc3339_millis(const char *s, int64_t *ms);

#endif
