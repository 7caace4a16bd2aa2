/*
 * Goal: what the kernel reports on a leg maps to the spec's close_reason
 * vocabulary, on both sides, and the names are the spec's spelling.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "kaproxy/reason.h"

struct classify_case {
	int err;
	const char *client;
	const char *upstream;
};

static const struct classify_case cases[] = {
	{ 0, "client_fin", "upstream_fin" },
	{ ETIMEDOUT, "client_timeout", "upstream_timeout" },
	/* A timeout after an ICMP error surfaces as the soft error (tcp_write_err). */
	{ EHOSTUNREACH, "client_timeout", "upstream_timeout" },
	{ ENETUNREACH, "client_timeout", "upstream_timeout" },
	{ ECONNRESET, "client_reset", "upstream_reset" },
	{ EPIPE, "client_reset", "upstream_reset" },
	{ ECONNREFUSED, "client_reset", "upstream_reset" },
	{ ENOMEM, "client_error", "upstream_error" },
	{ EBADF, "client_error", "upstream_error" },
	{ EPROTO, "client_error", "upstream_error" },
};

static void
test_classify_table(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_string_equal(reason_name(reason_classify(SIDE_CLIENT, cases[i].err)),
		    cases[i].client);
		assert_string_equal(reason_name(reason_classify(SIDE_UPSTREAM, cases[i].err)),
		    cases[i].upstream);
	}
}

static void
test_names_are_the_spec_vocabulary(void **state)
{
	static const char *const spec[] = {
		"client_fin", "upstream_fin", "client_reset", "upstream_reset",
		"client_timeout", "upstream_timeout", "client_error", "upstream_error",
		"connect_failed", "connect_timeout", "idle_timeout", "shutdown",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(spec) / sizeof(spec[0]); i++)
		assert_string_equal(reason_name((enum close_reason)(REASON_CLIENT_FIN + i)), spec[i]);
	assert_string_equal(reason_name(REASON_COUNT), "none");
	assert_string_equal(reason_teardown_name(TEARDOWN_RST), "rst");
	assert_string_equal(reason_teardown_name(TEARDOWN_FIN), "fin");
	assert_string_equal(reason_teardown_name(TEARDOWN_NONE), "none");
}

static void
test_dead_peer_and_timeout_predicates(void **state)
{
	(void)state;
	assert_true(reason_is_dead_peer(REASON_CLIENT_TIMEOUT));
	assert_true(reason_is_dead_peer(REASON_UPSTREAM_RESET));
	assert_true(reason_is_dead_peer(REASON_UPSTREAM_ERROR));
	assert_false(reason_is_dead_peer(REASON_CLIENT_FIN));
	assert_false(reason_is_dead_peer(REASON_CONNECT_FAILED));
	assert_false(reason_is_dead_peer(REASON_IDLE_TIMEOUT));
	assert_true(reason_is_timeout(REASON_UPSTREAM_TIMEOUT));
	assert_false(reason_is_timeout(REASON_CONNECT_TIMEOUT));
	assert_false(reason_is_timeout(REASON_IDLE_TIMEOUT));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classify_table),
		cmocka_unit_test(test_names_are_the_spec_vocabulary),
		cmocka_unit_test(test_dead_peer_and_timeout_predicates),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
