/*
 * fuzz_duration: any text as a duration ("250ms", "1.5s", "5m", bare
 * seconds), as every duration key of the configuration is read.
 *
 * Beyond not crashing, an accepted duration must survive the round trips
 * the rest of kaproxy relies on: its exact form (range messages) parses back
 * to the same milliseconds, and each part of its human form ("1h 2m 3.5s",
 * as -t prints it) parses, the parts adding up to the same value.  The human
 * form is also written into every buffer size from 1 to 40 bytes, each one
 * allocated to its exact size, so that a write past it is caught.
 */
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

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_string(data, size);
	uint64_t ms = 0x5a5a5a5a5a5a5a5a, before = ms;
	enum duration_status st = duration_parse_status(text, &ms);

	FUZZ_CHECK(st == DURATION_OK || st == DURATION_SYNTAX || st == DURATION_RANGE ||
	    st == DURATION_SUBMS);
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
