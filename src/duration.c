/*
 * duration.c: durations as the configuration file writes them, and as
 * kaproxy writes them back in `-t` reports and messages.
 *
 * Reading uses exact integer arithmetic, no floating point, so what an
 * operator writes is what the kernel gets, to the millisecond.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "kaproxy/duration.h"

/* The digits before an optional fraction; *overflow when they do not fit. */
static const char *
whole_part(const char *c, uint64_t *whole, bool *overflow)
{
	*whole = 0;
	*overflow = false;
	for (; isdigit((unsigned char)*c); c++) {
		unsigned d = (unsigned)(*c - '0');

		if (*whole > (UINT64_MAX - d) / 10)
			*overflow = true;
		else
			*whole = *whole * 10 + d;
	}
	return c;
}

/*
 * The digits after '.', as frac / den.  Nine digits are plenty for ms of
 * hours; beyond that only zeros can still be exact, so *finer says whether
 * any later digit is not zero.
 */
static const char *
fraction_part(const char *c, uint64_t *frac, uint64_t *den, bool *finer)
{
	*frac = 0;
	*den = 1;
	*finer = false;
	for (; isdigit((unsigned char)*c); c++) {
		if (*den < 1000000000) {
			*frac = *frac * 10 + (uint64_t)(*c - '0');
			*den *= 10;
		} else if (*c != '0') {
			*finer = true;
		}
	}
	return c;
}

/* Milliseconds per unit name, 0 for a name that is not a unit. */
static uint64_t
unit_ms(const char *name)
{
	static const struct {
		const char *name;
		uint64_t ms;
	} units[] = { { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 } };

	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcmp(name, units[i].name) == 0)
			return units[i].ms;
	return 0;
}

enum duration_status
duration_parse_status(const char *text, uint64_t *ms)
{
	uint64_t whole, frac = 0, den = 1, unit, total;
	bool has_frac = false, overflow, finer = false;
	const char *c = text;

	if (!isdigit((unsigned char)*c))
		return DURATION_SYNTAX;
	c = whole_part(c, &whole, &overflow);
	if (*c == '.') {
		has_frac = true;
		if (!isdigit((unsigned char)c[1]))
			return DURATION_SYNTAX;
		c = fraction_part(c + 1, &frac, &den, &finer);
	}
	if (*c == '\0' && has_frac)
		return DURATION_SYNTAX; /* "1.5" alone: seconds or minutes? */
	unit = *c == '\0' ? 1000 : unit_ms(c);
	if (unit == 0)
		return DURATION_SYNTAX;
	if (overflow || whole > UINT64_MAX / unit)
		return DURATION_RANGE;
	total = whole * unit;
	/* frac < 1e9 and unit <= 3.6e6: the product fits in 64 bits. */
	if (finer || (frac * unit) % den != 0)
		return DURATION_SUBMS;
	if (total > UINT64_MAX - frac * unit / den)
		return DURATION_RANGE;
	*ms = total + frac * unit / den;
	return DURATION_OK;
}

int
duration_parse(const char *text, uint64_t *ms)
{
	if (text == NULL || ms == NULL)
		return -1;
	return duration_parse_status(text, ms) == DURATION_OK ? 0 : -1;
}

/* Seconds with up to three decimals, trailing zeros dropped: "3", "3.5". */
static void
format_seconds(uint64_t s, unsigned frac, const char *sep, char *buf, size_t len)
{
	char digits[4];
	int n = 3;

	if (frac == 0) {
		snprintf(buf, len, "%s%llus", sep, (unsigned long long)s);
		return;
	}
	snprintf(digits, sizeof(digits), "%03u", frac);
	while (n > 1 && digits[n - 1] == '0')
		n--;
	snprintf(buf, len, "%s%llu.%.*ss", sep, (unsigned long long)s, n, digits);
}

void
duration_format_human(uint64_t ms, char *buf, size_t len)
{
	uint64_t h = ms / 3600000, m = ms / 60000 % 60, s = ms / 1000 % 60;
	unsigned frac = (unsigned)(ms % 1000);
	size_t used = 0;

	buf[0] = '\0';
	if (ms < 1000) {
		snprintf(buf, len, "%ums", frac);
		return;
	}
	if (h)
		used += snprintf(buf + used, len - used, "%lluh", (unsigned long long)h);
	if (m && used < len)
		used += snprintf(buf + used, len - used, "%s%llum", used ? " " : "",
		    (unsigned long long)m);
	if ((s || frac) && used < len)
		format_seconds(s, frac, used ? " " : "", buf + used, len - used);
}

void
duration_format_exact(uint64_t ms, char *buf, size_t len)
{
	if (ms != 0 && ms % 3600000 == 0)
		snprintf(buf, len, "%lluh", (unsigned long long)(ms / 3600000));
	else if (ms != 0 && ms % 60000 == 0)
		snprintf(buf, len, "%llum", (unsigned long long)(ms / 60000));
	else if (ms != 0 && ms % 1000 == 0)
		snprintf(buf, len, "%llus", (unsigned long long)(ms / 1000));
	else if (ms != 0)
		snprintf(buf, len, "%llums", (unsigned long long)ms);
	else
		snprintf(buf, len, "0");
}
