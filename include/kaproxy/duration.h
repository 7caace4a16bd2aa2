/*
 * duration: the durations the configuration file is written in ("250ms",
 * "1.5s", "5m", "2h", or bare whole seconds) read exactly into milliseconds,
 * and milliseconds written back for people.
 */
#ifndef KAPROXY_DURATION_H
#define KAPROXY_DURATION_H

#include <stddef.h>
#include <stdint.h>

enum duration_status {
	DURATION_OK,
	DURATION_SYNTAX, /* not a duration at all */
	DURATION_RANGE,  /* more milliseconds than 64 bits hold */
	DURATION_SUBMS,  /* finer than a millisecond */
};

/*
 * Read text as a duration into *ms.  Bare digits are seconds; a number with
 * a unit (ms, s, m, h) may have decimals, read exactly: "1.001s" is 1001 ms,
 * and anything finer than a millisecond is refused, not rounded.  On any
 * status but DURATION_OK *ms is untouched.
 */
enum duration_status duration_parse_status(const char *text, uint64_t *ms);

/* As duration_parse_status: 0, or -1 for any failure (or a NULL argument). */
int duration_parse(const char *text, uint64_t *ms);

/* "1h 2m 3.5s", "1m 30s", "250ms": compact, for operators. */
void duration_format_human(uint64_t ms, char *buf, size_t len);

/* One exact unit, for range limits: "0", "1ms", "500h", "2147483647ms". */
void duration_format_exact(uint64_t ms, char *buf, size_t len);

#endif
