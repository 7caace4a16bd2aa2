/*
 * test_endpoint: addresses as the file writes them and as kaproxy writes
 * them back.
 *
 * Proves that each malformed address is refused with its own reason, that
 * one rule decides when two addresses are the same, which addresses count as
 * loopback, and that the one formatter writes accepted (sockaddr) and
 * configured addresses alike, zone included.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "kaproxy/endpoint.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static struct endpoint
parsed(const char *text)
{
	struct endpoint ep;

	if (endpoint_parse(text, &ep) != 0)
		fail_msg("\"%s\" rejected", text);
	return ep;
}

static void
test_reasons(void **state)
{
	static const struct {
		const char *text, *why;
	} cases[] = {
		{ "", "empty" },
		{ "[::1", "missing ']' after the IPv6 address" },
		{ "[::1]", "missing :port" },
		{ "[::1]80", "expected ':' after ']'" },
		{ "127.0.0.1", "missing :port" },
		{ "::1:80", "an IPv6 address needs brackets, e.g. [::1]:80" },
		{ ":80", "missing host (0.0.0.0 means every IPv4 address)" },
		{ "127.0.0.1:", "missing port after ':'" },
		{ "127.0.0.1:http", "the port is not a number" },
		{ "127.0.0.1:99999999999999999999x", "the port is not a number" },
		{ "127.0.0.1:99999999999999999999", "the port is out of range (1..65535)" },
		{ "127.0.0.1:0", "the port is out of range (1..65535)" },
		{ "10.0.0.256:80", "not an IPv4 address or host name" },
		/* inet_aton's hexadecimal forms look like names (they hold
		 * letters), but getaddrinfo reads them as addresses: found by
		 * fuzz_endpoint (corpus/endpoint/crash-inet-aton-hex-octet). */
		{ "127.0.0x1:2000", "not an IPv4 address or host name" },
		{ "0x7f.1:80", "not an IPv4 address or host name" },
		{ "0x7f000001:80", "not an IPv4 address or host name" },
		{ "0xa:80", "not an IPv4 address or host name" },
		{ "[127.0.0.1]:80", "not an IPv6 address" },
	};
	struct endpoint ep;

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		const char *why = endpoint_parse_why(cases[i].text, &ep);

		if (why == NULL || strcmp(why, cases[i].why) != 0)
			fail_msg("\"%s\": expected \"%s\", got \"%s\"", cases[i].text, cases[i].why,
			    why ? why : "(accepted)");
	}
}

static void
test_equal(void **state)
{
	static const struct {
		const char *a, *b;
		bool equal;
	} cases[] = {
		{ "127.0.0.1:2000", "127.0.0.1:02000", true },
		{ "127.0.0.1:2000", "127.0.0.1:2001", false },
		{ "127.0.0.1:2000", "127.0.0.2:2000", false },
		/* Another family is another socket, whatever it maps to. */
		{ "127.0.0.1:2000", "[::ffff:127.0.0.1]:2000", false },
		{ "[::1]:2000", "[0::1]:2000", true },
		/* The zone is part of the address. */
		{ "[fe80::1%lo]:2000", "[fe80::1]:2000", false },
	};
	struct endpoint unix_ep = { .addr.ss_family = AF_UNIX };

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct endpoint a = parsed(cases[i].a), b = parsed(cases[i].b);

		if (endpoint_equal(&a, &b) != cases[i].equal || endpoint_equal(&b, &a) !=
		    cases[i].equal)
			fail_msg("%s ~ %s should be %d", cases[i].a, cases[i].b, cases[i].equal);
	}
	assert_false(endpoint_equal(&unix_ep, &unix_ep));
}

static void
test_loopback(void **state)
{
	static const struct {
		const char *text;
		bool loopback;
	} cases[] = {
		{ "127.0.0.1:1", true }, { "127.255.0.9:1", true }, { "[::1]:1", true },
		{ "[::ffff:127.0.0.1]:1", true }, { "0.0.0.0:1", false },
		{ "128.0.0.1:1", false }, { "[::]:1", false }, { "[::ffff:10.0.0.1]:1", false },
		{ "[2001:db8::1]:1", false },
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct endpoint ep = parsed(cases[i].text);

		if (endpoint_is_loopback(&ep) != cases[i].loopback)
			fail_msg("%s: loopback should be %d", cases[i].text, cases[i].loopback);
	}
}

static void
test_format(void **state)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(40112) };
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_port = htons(80) };
	struct sockaddr other = { .sa_family = AF_UNIX };
	struct endpoint h = parsed("[FE80::1%lo]:2000");
	char buf[ENDPOINT_TEXT_MAX], small[8];

	(void)state;
	inet_pton(AF_INET, "198.51.100.7", &sin.sin_addr);
	assert_int_equal(endpoint_format((struct sockaddr *)&sin, buf, sizeof(buf)), 18);
	assert_string_equal(buf, "198.51.100.7:40112");
	inet_pton(AF_INET6, "2001:db8::1", &sin6.sin6_addr);
	endpoint_format((struct sockaddr *)&sin6, buf, sizeof(buf));
	assert_string_equal(buf, "[2001:db8::1]:80");
	/* The configured text is the formatter's: a zone stays in it. */
	assert_string_equal(h.text, "[fe80::1%lo]:2000");
	endpoint_format((struct sockaddr *)&h.addr, buf, sizeof(buf));
	assert_string_equal(buf, h.text);
	assert_int_equal(endpoint_format(&other, buf, sizeof(buf)), -1);
	assert_string_equal(buf, "unknown");
	/* Cut short, but always a string, and the length it needed. */
	assert_int_equal(endpoint_format((struct sockaddr *)&sin, small, sizeof(small)), 18);
	assert_string_equal(small, "198.51.");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reasons),
		cmocka_unit_test(test_equal),
		cmocka_unit_test(test_loopback),
		cmocka_unit_test(test_format),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
