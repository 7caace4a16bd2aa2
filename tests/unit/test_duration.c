/*
 * test_duration: why a text is not a duration, and durations written back.
 *
 * Proves that each refusal has its own status (what config.c turns into
 * "not a duration", "out of range" or "not a whole number of
 * milliseconds"), and that the human and exact forms -t and messages use
 * read as intended.  Which texts parse to what is proved in test_config.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include "kaproxy/duration.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static void
test_status(void **state)
{
	static const struct {
		const char *text;
		enum duration_status status;
	} cases[] = {
		{ "30s", DURATION_OK }, { "1.5", DURATION_SYNTAX }, { "5d", DURATION_SYNTAX },
		{ "1.s", DURATION_SYNTAX }, { "18446744073709551616ms", DURATION_RANGE },
		{ "5124095576030432h", DURATION_RANGE }, { "99999999999999999999h", DURATION_RANGE },
		{ "1.5ms", DURATION_SUBMS }, { "0.0001s", DURATION_SUBMS },
		{ "1.0000000001s", DURATION_SUBMS },
	};
	uint64_t ms;

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++)
		if (duration_parse_status(cases[i].text, &ms) != cases[i].status)
			fail_msg("\"%s\": expected status %d", cases[i].text, cases[i].status);
}

static void
test_format(void **state)
{
	static const struct {
		uint64_t ms;
		const char *human, *exact;
	} cases[] = {
		{ 0, "0ms", "0" },
		{ 250, "250ms", "250ms" },
		{ 1000, "1s", "1s" },
		{ 1500, "1.5s", "1500ms" },
		{ 1001, "1.001s", "1001ms" },
		{ 90000, "1m 30s", "90s" },
		{ 350000, "5m 50s", "350s" },
		{ 3600000, "1h", "1h" },
		{ 3723500, "1h 2m 3.5s", "3723500ms" },
		{ 7260000, "2h 1m", "121m" },
		{ 1800000000, "500h", "500h" },
		{ 2147483647, "596h 31m 23.647s", "2147483647ms" },
	};
	char buf[64];

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		duration_format_human(cases[i].ms, buf, sizeof(buf));
		assert_string_equal(buf, cases[i].human);
		duration_format_exact(cases[i].ms, buf, sizeof(buf));
		assert_string_equal(buf, cases[i].exact);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status),
		cmocka_unit_test(test_format),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
