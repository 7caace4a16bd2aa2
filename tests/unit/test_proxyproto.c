/*
 * Goal: the PROXY protocol headers kaproxy writes are byte for byte what the
 * specification defines, every one parses back to the same addresses, a
 * header split anywhere asks for more bytes instead of failing, and every
 * malformed header is refused with a reason.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kaproxy/proxyproto.h"

static const uint8_t sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};

static struct sockaddr_in
v4(const char *ip, uint16_t port)
{
	struct sockaddr_in a;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons(port);
	assert_int_equal(inet_pton(AF_INET, ip, &a.sin_addr), 1);
	return a;
}

static struct sockaddr_in6
v6(const char *ip, uint16_t port)
{
	struct sockaddr_in6 a;

	memset(&a, 0, sizeof(a));
	a.sin6_family = AF_INET6;
	a.sin6_port = htons(port);
	assert_int_equal(inet_pton(AF_INET6, ip, &a.sin6_addr), 1);
	return a;
}

static int
parse_text(const char *text, struct proxyproto_header *h, const char **why)
{
	return proxyproto_parse((const uint8_t *)text, strlen(text), h, why);
}

/* Every strict prefix of a complete header asks for more bytes. */
static void
assert_prefixes_need_more(const uint8_t *buf, size_t len)
{
	struct proxyproto_header h;
	const char *why;
	size_t i;

	for (i = 0; i < len; i++)
		assert_int_equal(proxyproto_parse(buf, i, &h, &why), 0);
}

static void
test_v1_tcp4_written_and_parsed(void **state)
{
	struct sockaddr_in src = v4("198.51.100.7", 40112), dst = v4("192.0.2.1", 7000);
	const char *want = "PROXY TCP4 198.51.100.7 192.0.2.1 40112 7000\r\n";
	uint8_t buf[PROXYPROTO_WRITE_MAX + 8];
	struct proxyproto_header h;
	const char *why;
	size_t n;

	(void)state;
	n = proxyproto_write(1, (struct sockaddr *)&src, (struct sockaddr *)&dst, buf, sizeof(buf));
	assert_int_equal(n, strlen(want));
	assert_memory_equal(buf, want, n);
	/* The payload right after the header is not part of it. */
	memcpy(buf + n, "HELO", 4);
	assert_int_equal(proxyproto_parse(buf, n + 4, &h, &why), (int)n);
	assert_int_equal(h.version, 1);
	assert_int_equal(h.has_addresses, 1);
	assert_int_equal(h.addrlen, sizeof(struct sockaddr_in));
	assert_memory_equal(&h.src, &src, sizeof(src));
	assert_memory_equal(&h.dst, &dst, sizeof(dst));
	assert_prefixes_need_more(buf, n);
}

static void
test_v1_tcp6_written_and_parsed(void **state)
{
	struct sockaddr_in6 src = v6("2001:db8::7", 65535), dst = v6("2001:db8::1", 0);
	const char *want = "PROXY TCP6 2001:db8::7 2001:db8::1 65535 0\r\n";
	uint8_t buf[PROXYPROTO_WRITE_MAX];
	struct proxyproto_header h;
	const char *why;
	size_t n;

	(void)state;
	n = proxyproto_write(1, (struct sockaddr *)&src, (struct sockaddr *)&dst, buf, sizeof(buf));
	assert_int_equal(n, strlen(want));
	assert_memory_equal(buf, want, n);
	assert_int_equal(proxyproto_parse(buf, n, &h, &why), (int)n);
	assert_int_equal(h.addrlen, sizeof(struct sockaddr_in6));
	assert_memory_equal(&h.src, &src, sizeof(src));
	assert_memory_equal(&h.dst, &dst, sizeof(dst));
}

static void
test_v1_longest_tcp6_line(void **state)
{
	struct sockaddr_in6 src = v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535);
	struct sockaddr_in6 dst = v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
	uint8_t buf[PROXYPROTO_WRITE_MAX];
	struct proxyproto_header h;
	const char *why;
	size_t n;

	(void)state;
	n = proxyproto_write(1, (struct sockaddr *)&src, (struct sockaddr *)&dst, buf, sizeof(buf));
	/* 104 bytes: the specification's 107 is for UNKNOWN followed by the same. */
	assert_int_equal(n, 104);
	assert_int_equal(proxyproto_parse(buf, n, &h, &why), (int)n);
	/* One byte short of room: nothing is written. */
	assert_int_equal(proxyproto_write(1, (struct sockaddr *)&src, (struct sockaddr *)&dst,
	    buf, n), 0);
}

static void
test_mapped_and_unknown_families(void **state)
{
	struct sockaddr_in6 src = v6("::ffff:198.51.100.7", 1234), dst = v6("::ffff:192.0.2.1", 80);
	struct sockaddr_in plain = v4("192.0.2.1", 80);
	struct sockaddr unix_addr = { .sa_family = AF_UNIX };
	uint8_t buf[64];
	size_t n;

	(void)state;
	n = proxyproto_write(1, (struct sockaddr *)&src, (struct sockaddr *)&dst, buf, sizeof(buf));
	assert_memory_equal(buf, "PROXY TCP4 198.51.100.7 192.0.2.1 1234 80\r\n", n);
	/* A mapped client and a plain IPv4 local address are one family too. */
	n = proxyproto_write(1, (struct sockaddr *)&src, (struct sockaddr *)&plain, buf, sizeof(buf));
	assert_memory_equal(buf, "PROXY TCP4 198.51.100.7 192.0.2.1 1234 80\r\n", n);
	/* An IPv6 client and an IPv4 local address: both as IPv6 (found by fuzzing). */
	struct sockaddr_in6 pure = v6("2001:db8::7", 1234);
	n = proxyproto_write(1, (struct sockaddr *)&pure, (struct sockaddr *)&plain, buf, sizeof(buf));
	assert_memory_equal(buf, "PROXY TCP6 2001:db8::7 ::ffff:192.0.2.1 1234 80\r\n", n);
	n = proxyproto_write(1, &unix_addr, (struct sockaddr *)&plain, buf, sizeof(buf));
	assert_int_equal(n, strlen("PROXY UNKNOWN\r\n"));
	assert_memory_equal(buf, "PROXY UNKNOWN\r\n", n);
	n = proxyproto_write(2, &unix_addr, (struct sockaddr *)&plain, buf, sizeof(buf));
	assert_int_equal(n, 16);
	assert_int_equal(buf[12], 0x21);
	assert_int_equal(buf[13], 0x00);
	assert_int_equal(buf[14], 0);
	assert_int_equal(buf[15], 0);
}

static void
test_v2_tcp4_written_and_parsed(void **state)
{
	struct sockaddr_in src = v4("198.51.100.7", 40112), dst = v4("192.0.2.1", 7000);
	const uint8_t want[28] = {
		0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
		0x21, 0x11, 0x00, 0x0c,
		198, 51, 100, 7, 192, 0, 2, 1, 0x9c, 0xb0, 0x1b, 0x58,
	};
	uint8_t buf[64];
	struct proxyproto_header h;
	const char *why;
	size_t n;

	(void)state;
	n = proxyproto_write(2, (struct sockaddr *)&src, (struct sockaddr *)&dst, buf, sizeof(buf));
	assert_int_equal(n, sizeof(want));
	assert_memory_equal(buf, want, n);
	buf[n] = 'X';
	assert_int_equal(proxyproto_parse(buf, n + 1, &h, &why), (int)n);
	assert_int_equal(h.version, 2);
	assert_int_equal(h.has_addresses, 1);
	assert_memory_equal(&h.src, &src, sizeof(src));
	assert_memory_equal(&h.dst, &dst, sizeof(dst));
	assert_prefixes_need_more(buf, n);
	assert_int_equal(proxyproto_write(2, (struct sockaddr *)&src, (struct sockaddr *)&dst,
	    buf, n - 1), 0);
}

static void
test_v2_tcp6_with_tlvs(void **state)
{
	struct sockaddr_in6 src = v6("2001:db8::7", 443), dst = v6("2001:db8::1", 8443);
	uint8_t buf[128];
	struct proxyproto_header h;
	const char *why;
	size_t n;

	(void)state;
	n = proxyproto_write(2, (struct sockaddr *)&src, (struct sockaddr *)&dst, buf, sizeof(buf));
	assert_int_equal(n, 16 + 36);
	assert_int_equal(buf[13], 0x21);
	/* A balancer's TLVs (here an AWS-style type 0xEA and a NOOP) follow the addresses. */
	memcpy(buf + n, "\xea\x00\x04vpce\x04\x00\x00", 10);
	buf[15] = 36 + 10;
	assert_int_equal(proxyproto_parse(buf, n + 10, &h, &why), (int)n + 10);
	assert_memory_equal(&h.src, &src, sizeof(src));
	assert_memory_equal(&h.dst, &dst, sizeof(dst));
	assert_prefixes_need_more(buf, n + 10);
	/* A TLV running past the declared length. */
	buf[15] = 36 + 9;
	assert_int_equal(proxyproto_parse(buf, n + 10, &h, &why), -1);
	assert_non_null(why);
}

static void
test_v2_local_and_unspec_use_own_addresses(void **state)
{
	uint8_t buf[64];
	struct proxyproto_header h;
	const char *why;

	(void)state;
	memcpy(buf, sig, 12);
	/* LOCAL: a health check from the balancer; its body is skipped whatever it holds. */
	buf[12] = 0x20;
	buf[13] = 0x11;
	buf[14] = 0;
	buf[15] = 3;
	memcpy(buf + 16, "abc", 3);
	assert_int_equal(proxyproto_parse(buf, 19, &h, &why), 19);
	assert_int_equal(h.has_addresses, 0);
	/* PROXY with UNSPEC: the connection's own addresses stand. */
	buf[12] = 0x21;
	buf[13] = 0x00;
	buf[15] = 0;
	assert_int_equal(proxyproto_parse(buf, 16, &h, &why), 16);
	assert_int_equal(h.has_addresses, 0);
	/* PROXY over UNIX STREAM: no IP client either. */
	buf[13] = 0x31;
	buf[14] = 0;
	buf[15] = 216;
	memset(buf + 16, 0, 48);
	assert_int_equal(proxyproto_parse(buf, 16, &h, &why), 0);
	assert_int_equal(parse_text("PROXY UNKNOWN\r\n", &h, &why), 15);
	assert_int_equal(h.has_addresses, 0);
	assert_int_equal(parse_text("PROXY UNKNOWN 1.2.3.4 whatever\r\n", &h, &why), 32);
	assert_int_equal(h.has_addresses, 0);
}

static void
test_v1_malformed_refused(void **state)
{
	static const char *const bad[] = {
		"GET / HTTP/1.1\r\n",                                /* no header at all */
		"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",                /* case matters */
		"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",               /* double space */
		"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",               /* trailing space */
		"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",                  /* a field missing */
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",              /* one too many */
		"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY UNKNOWNX\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",                  /* LF alone */
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",                 /* CR not followed by LF */
		"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
		"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",               /* leading zero in an octet */
		"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",                    /* IPv6 in TCP4 */
		"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",                    /* IPv4 in TCP6 */
		"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",               /* zones are not addresses */
		"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 0x2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2a\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 123456 2\r\n",
		"PROXY \r\n",
		"PROXY TCP4\r\n",
	};
	struct proxyproto_header h;
	const char *why;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		if (parse_text(bad[i], &h, &why) != -1)
			fail_msg("accepted: %s", bad[i]);
		assert_non_null(why);
	}
}

static void
test_v1_nul_inside_refused(void **state)
{
	const uint8_t line[] = "PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n";
	struct proxyproto_header h;
	const char *why;

	(void)state;
	assert_int_equal(proxyproto_parse(line, sizeof(line) - 1, &h, &why), -1);
}

static void
test_v1_too_long_refused_without_crlf(void **state)
{
	char line[200];
	struct proxyproto_header h;
	const char *why;

	(void)state;
	memset(line, '1', sizeof(line));
	memcpy(line, "PROXY TCP6 ", 11);
	/* 105 bytes without CR: still undecided.  106: a 107-byte bound is broken. */
	assert_int_equal(proxyproto_parse((uint8_t *)line, 105, &h, &why), 0);
	assert_int_equal(proxyproto_parse((uint8_t *)line, 106, &h, &why), -1);
	assert_int_equal(proxyproto_parse((uint8_t *)line, sizeof(line), &h, &why), -1);
}

static void
test_v2_malformed_refused(void **state)
{
	struct sockaddr_in src = v4("198.51.100.7", 40112), dst = v4("192.0.2.1", 7000);
	uint8_t good[64], buf[64];
	struct proxyproto_header h;
	const char *why;
	size_t n;

	(void)state;
	n = proxyproto_write(2, (struct sockaddr *)&src, (struct sockaddr *)&dst, good, sizeof(good));
	struct {
		size_t at;
		uint8_t value;
		const char *what;
	} cases[] = {
		{ 11, 0x0b, "signature" },
		{ 12, 0x11, "version 1" },
		{ 12, 0x31, "version 3" },
		{ 12, 0x22, "command 2" },
		{ 12, 0x2f, "command 15" },
		{ 13, 0x41, "family 4" },
		{ 13, 0x13, "transport 3" },
		{ 13, 0x12, "INET over DGRAM" },
		{ 13, 0x10, "INET with UNSPEC transport" },
		{ 13, 0x21, "INET6 with a 12-byte block" },
		{ 15, 0x0b, "INET block of 11 bytes" },
		{ 15, 0x0d, "a 1-byte TLV fragment" },
		{ 14, 0x04, "longer than kaproxy accepts" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memcpy(buf, good, n);
		memset(buf + n, 0, sizeof(buf) - n);
		buf[cases[i].at] = cases[i].value;
		why = NULL;
		if (proxyproto_parse(buf, sizeof(buf), &h, &why) != -1)
			fail_msg("accepted v2 with %s", cases[i].what);
		assert_non_null(why);
	}
}

static void
test_decided_within_the_bound(void **state)
{
	uint8_t buf[PROXYPROTO_HEADER_MAX + 1];
	struct proxyproto_header h;
	const char *why;

	(void)state;
	/* The longest v2 kaproxy accepts parses; a byte more is refused up front. */
	memset(buf, 0, sizeof(buf));
	memcpy(buf, sig, 12);
	buf[12] = 0x21;
	buf[13] = 0x11;
	buf[14] = (uint8_t)((PROXYPROTO_HEADER_MAX - 16) >> 8);
	buf[15] = (uint8_t)(PROXYPROTO_HEADER_MAX - 16);
	buf[16 + 12] = 0x04;                       /* one NOOP TLV fills the rest */
	buf[16 + 13] = (uint8_t)((PROXYPROTO_HEADER_MAX - 16 - 12 - 3) >> 8);
	buf[16 + 14] = (uint8_t)(PROXYPROTO_HEADER_MAX - 16 - 12 - 3);
	assert_int_equal(proxyproto_parse(buf, PROXYPROTO_HEADER_MAX, &h, &why),
	    PROXYPROTO_HEADER_MAX);
	buf[15]++;
	assert_int_equal(proxyproto_parse(buf, 16, &h, &why), -1);
	/* Nothing at all yet: undecided, not refused. */
	assert_int_equal(proxyproto_parse(buf, 0, &h, &why), 0);
	assert_int_equal(parse_text("PRO", &h, &why), 0);
	assert_int_equal(parse_text("PROXY", &h, &why), 0);
	assert_int_equal(parse_text("PRX", &h, &why), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v1_tcp4_written_and_parsed),
		cmocka_unit_test(test_v1_tcp6_written_and_parsed),
		cmocka_unit_test(test_v1_longest_tcp6_line),
		cmocka_unit_test(test_mapped_and_unknown_families),
		cmocka_unit_test(test_v2_tcp4_written_and_parsed),
		cmocka_unit_test(test_v2_tcp6_with_tlvs),
		cmocka_unit_test(test_v2_local_and_unspec_use_own_addresses),
		cmocka_unit_test(test_v1_malformed_refused),
		cmocka_unit_test(test_v1_nul_inside_refused),
		cmocka_unit_test(test_v1_too_long_refused_without_crlf),
		cmocka_unit_test(test_v2_malformed_refused),
		cmocka_unit_test(test_decided_within_the_bound),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
