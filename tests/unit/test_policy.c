/*
 * test_policy: what a leg's settings add up to.
 *
 * Proves that "auto" is idle + interval * count whatever keepalive says,
 * and that the -t detection line words both cases an operator must not
 * misread: keepalive off (never found idle) and no user timeout (left to
 * the kernel's retransmission limit).  The timer arithmetic itself is
 * proved case by case in test_config.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "kaproxy/policy.h"

static void
test_auto_user_timeout(void **state)
{
	struct leg_policy p = { .keepalive = false, .idle_s = 20, .interval_s = 5, .count = 3 };
	struct leg_policy largest = { .idle_s = 32767, .interval_s = 32767, .count = 127 };

	(void)state;
	assert_int_equal(policy_auto_user_timeout_ms(&p), 35000);
	/* Above what TCP_USER_TIMEOUT takes: the caller must refuse it. */
	assert_int_equal(policy_auto_user_timeout_ms(&largest), 4194176000ULL);
	assert_true(policy_auto_user_timeout_ms(&largest) > POLICY_USER_TIMEOUT_MAX_MS);
}

static void
test_detection_line(void **state)
{
	static const struct {
		struct leg_policy policy;
		const char *line;
	} cases[] = {
		{ { .keepalive = true, .idle_s = 60, .interval_s = 10, .count = 6,
		    .user_timeout_ms = 75000 },
		  "            worst-case dead-peer detection: when idle 1m 20s; with data in "
		  "flight 1m 15s\n" },
		{ { .keepalive = false, .idle_s = 60, .interval_s = 10, .count = 6 },
		  "            worst-case dead-peer detection: when idle never (keepalive off); "
		  "with data in flight kernel retransmission limit (tcp_retries2, ~15 min+)\n" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char line[256] = "";
		FILE *f = fmemopen(line, sizeof(line) - 1, "w");

		assert_non_null(f);
		policy_print_detection(&cases[i].policy, f);
		fclose(f);
		assert_string_equal(line, cases[i].line);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_auto_user_timeout),
		cmocka_unit_test(test_detection_line),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
