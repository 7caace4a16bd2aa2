/*
 * fuzz_duration: any text as a duration ("250ms", "1.5s", "5m", bare
 * seconds), as every duration key of the configuration is read.
 *
 * The status and value must be those a separate reading of the grammar,
 * in 128-bit arithmetic, allows (expected_status).  Beyond not crashing, an accepted duration must survive the round trips
 * the rest of kaproxy relies on: its exact form (range messages) parses back
 * to the same milliseconds, and each part of its human form ("1h 2m 3.5s",
 * as -t prints it) parses, the parts adding up to the same value.  The human
 * form is also written into every buffer size from 1 to 40 bytes, each one
 * allocated to its exact size, so that a write past it is caught.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kaproxy/duration.h"

#include "fuzz.h"

/* Sum of the space-separated parts of a human form, each parsed alone. */
static uint64_t
human_sum(const char *human)
{
	char copy[64], *save = NULL;
	uint64_t sum = 0, part;

	FUZZ_CHECK(strlen(human) < sizeof(copy));
	strcpy(copy, human);
	for (char *t = strtok_r(copy, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
		FUZZ_CHECK(duration_parse_status(t, &part) == DURATION_OK);
		FUZZ_CHECK(sum <= UINT64_MAX - part);
		sum += part;
	}
	return sum;
}

static void
check_formats(uint64_t ms)
{
	char exact[32], human[64];
	uint64_t again = 0;

	duration_format_exact(ms, exact, sizeof(exact));
	FUZZ_CHECK(duration_parse_status(exact, &again) == DURATION_OK);
	FUZZ_CHECK(again == ms);

	duration_format_human(ms, human, sizeof(human));
	FUZZ_CHECK(human[0] != '\0');
	FUZZ_CHECK(human_sum(human) == ms);

	for (size_t len = 1; len <= 40; len++) {
		char *small = malloc(len);

		FUZZ_CHECK(small != NULL);
		duration_format_human(ms, small, len);
		FUZZ_CHECK(memchr(small, '\0', len) != NULL);
		FUZZ_CHECK(strncmp(small, human, strlen(small)) == 0);
		free(small);
	}
}

/*
 * The statuses the spec's grammar and exact arithmetic allow, as a bit mask,
 * worked out apart from duration.c: DIGITS [ "." DIGITS ] UNIT, or bare
 * DIGITS (seconds); the value is number * unit in ms, refused when it is not
 * a whole number of ms (SUBMS) or above 64 bits (RANGE); either may be
 * reported when both hold.  128-bit sums: whole < 2^64, the fraction's
 * scale <= 10^12 and the unit < 2^22 keep every product below 2^128.
 */
static unsigned
expected_status(const char *text, uint64_t *ms)
{
	static const struct {
		const char *name;
		unsigned ms;
	} units[] = { { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 } };
	unsigned __int128 whole = 0, frac = 0, scale = 1, total;
	const char *c = text, *frac_end, *unit_text;
	unsigned unit = 0;
	bool overflow = false, has_frac = false, subms, range;

	for (; *c >= '0' && *c <= '9'; c++) {
		whole = overflow ? 0 : whole * 10 + (unsigned)(*c - '0');
		overflow |= whole > UINT64_MAX;
	}
	if (c == text)
		return 1u << DURATION_SYNTAX;
	if (*c == '.') {
		has_frac = true;
		if (*++c < '0' || *c > '9')
			return 1u << DURATION_SYNTAX;
	}
	for (unit_text = c; *unit_text >= '0' && *unit_text <= '9'; unit_text++)
		;
	if (*unit_text == '\0' && has_frac)
		return 1u << DURATION_SYNTAX;
	if (*unit_text == '\0')
		unit = 1000;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]) && unit == 0; i++)
		if (strcmp(unit_text, units[i].name) == 0)
			unit = units[i].ms;
	if (unit == 0)
		return 1u << DURATION_SYNTAX;

	/* Trailing zeros of the fraction change nothing; with more than 12
	 * digits left, no unit makes it a whole number of ms. */
	for (frac_end = unit_text; frac_end > c && frac_end[-1] == '0'; frac_end--)
		;
	subms = frac_end - c > 12;
	for (; !subms && c < frac_end; c++) {
		frac = frac * 10 + (unsigned)(*c - '0');
		scale *= 10;
	}
	subms = subms || (frac * unit) % scale != 0;
	total = overflow ? 0 : whole * unit + (subms ? 0 : frac * unit / scale);
	range = overflow || total > UINT64_MAX;
	if (subms || range)
		return (subms ? 1u << DURATION_SUBMS : 0) | (range ? 1u << DURATION_RANGE : 0);
	*ms = (uint64_t)total;
	return 1u << DURATION_OK;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_string(data, size);
	uint64_t ms = 0x5a5a5a5a5a5a5a5a, before = ms, expected_ms = 0;
	enum duration_status st = duration_parse_status(text, &ms);
	unsigned expected = expected_status(text, &expected_ms);

	FUZZ_CHECK(st == DURATION_OK || st == DURATION_SYNTAX || st == DURATION_RANGE ||
	    st == DURATION_SUBMS);
	if (!(expected & (1u << st)) || (st == DURATION_OK && ms != expected_ms)) {
		fprintf(stderr, "\"%s\": status %d (%llu ms), expected mask %#x (%llu ms)\n",
		    text, st, (unsigned long long)ms, expected, (unsigned long long)expected_ms);
		abort();
	}
	FUZZ_CHECK((duration_parse(text, &before) == 0) == (st == DURATION_OK));
	if (st == DURATION_OK) {
		FUZZ_CHECK(before == ms);
		check_formats(ms);
	} else {
		FUZZ_CHECK(ms == 0x5a5a5a5a5a5a5a5a); /* untouched on failure */
	}
	free(text);
	return 0;
}
