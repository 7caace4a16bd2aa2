/*
 * Goal: the admin endpoint's reading of a request head accepts what curl,
 * browsers and Prometheus send and refuses everything else with the right
 * 4xx, never 0 (served): bad request lines, versions other than HTTP/1.0 and
 * HTTP/1.1, targets that are not a plain path, unknown paths, methods a path
 * does not take, every bad or unknown query value of every route, malformed
 * header lines, bodies, and heads over the limits.  Pure bytes, no sockets.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kaproxy/adminreq.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static int
parse(const char *text, struct adminreq *req)
{
	return adminreq_parse(text, strlen(text), req);
}

static void
accepted_requests(void **state)
{
	struct adminreq req;
	const char *head = "GET /connections?listener=db-1.a_b&limit=25 HTTP/1.1\r\n"
	    "Host: 127.0.0.1:9901\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\nNEXT";

	(void)state;
	assert_int_equal(adminreq_parse(head, strlen(head), &req), 0);
	assert_int_equal(req.route, ADMINREQ_CONNECTIONS);
	assert_int_equal(req.method, ADMINREQ_GET);
	assert_int_equal(req.minor, 1);
	assert_string_equal(req.listener, "db-1.a_b");
	assert_int_equal(req.limit, 25);
	assert_int_equal(req.head_len, strlen(head) - 4);
	assert_int_equal(req.host.len, strlen("127.0.0.1:9901"));
	assert_memory_equal(req.host.at, "127.0.0.1:9901", req.host.len);
	assert_null(req.origin.at);

	assert_int_equal(parse("GET /healthz HTTP/1.0\r\n\r\n", &req), 0);
	assert_int_equal(req.route, ADMINREQ_HEALTHZ);
	assert_int_equal(req.minor, 0);
	assert_int_equal(parse("HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &req), 0);
	assert_int_equal(req.route, ADMINREQ_METRICS);
	assert_int_equal(req.method, ADMINREQ_HEAD);
	/* A lone '?', an escaped listener name, Content-Length: 0, tabs around a value. */
	assert_int_equal(parse("GET /metrics? HTTP/1.1\r\n\r\n", &req), 0);
	assert_int_equal(parse("GET /connections?listener=%64b HTTP/1.1\r\n\r\n", &req), 0);
	assert_string_equal(req.listener, "db");
	assert_int_equal(req.limit, ADMINREQ_LIMIT_DEFAULT);
	assert_int_equal(parse("GET /connections?limit=100000 HTTP/1.1\r\n"
	    "Content-Length: 0\r\nX-A:\t v \t\r\n\r\n", &req), 0);
	assert_int_equal(req.limit, 100000);
	/* The route another change will serve: method, id and how are read. */
	assert_int_equal(parse("POST /connections/18446744073709551615/close?how=fin HTTP/1.1\r\n"
	    "Origin: http://127.0.0.1:9901\r\n\r\n", &req), 0);
	assert_int_equal(req.route, ADMINREQ_CONNECTION_CLOSE);
	assert_true(req.id == UINT64_MAX);
	assert_int_equal(req.how, ADMINREQ_HOW_FIN);
	assert_memory_equal(req.origin.at, "http://127.0.0.1:9901", req.origin.len);
	assert_int_equal(parse("POST /connections/42/close HTTP/1.1\r\n\r\n", &req), 0);
	assert_true(req.id == 42 && req.how == ADMINREQ_HOW_DEFAULT);
	/* The page, and the recent closes: all a worker keeps, or fewer. */
	assert_int_equal(parse("GET / HTTP/1.1\r\nHost: localhost:9901\r\n\r\n", &req), 0);
	assert_int_equal(req.route, ADMINREQ_PAGE);
	assert_int_equal(parse("HEAD / HTTP/1.1\r\n\r\n", &req), 0);
	assert_int_equal(req.route, ADMINREQ_PAGE);
	assert_int_equal(parse("GET /closed HTTP/1.1\r\n\r\n", &req), 0);
	assert_int_equal(req.route, ADMINREQ_CLOSED);
	assert_int_equal(req.limit, ADMINREQ_CLOSED_MAX);
	assert_int_equal(parse("GET /closed?limit=64 HTTP/1.1\r\n\r\n", &req), 0);
	assert_int_equal(req.limit, 64);
	assert_int_equal(parse("GET /closed?limit=1 HTTP/1.1\r\n\r\n", &req), 0);
	assert_int_equal(req.limit, 1);
}

static void
incomplete_heads(void **state)
{
	static const char *const cases[] = {
		"", "G", "GET /healthz HTTP/1.1", "GET /healthz HTTP/1.1\r\n",
		"GET /healthz HTTP/1.1\r\nHost: x\r\n\r", "GET /healthz HTTP/1.1\n\n",
	};
	struct adminreq req;

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++)
		if (parse(cases[i], &req) != ADMINREQ_INCOMPLETE)
			fail_msg("\"%s\": expected incomplete", cases[i]);
}

static void
refused_requests(void **state)
{
	static const struct {
		const char *head;
		int status;
	} cases[] = {
		/* the request line */
		{ "GET /healthz\r\n\r\n", 400 },
		{ "GET  /healthz HTTP/1.1\r\n\r\n", 400 },
		{ "GET /healthz  HTTP/1.1\r\n\r\n", 400 },
		{ "GET /healthz HTTP/1.1 \r\n\r\n", 400 },
		{ " GET /healthz HTTP/1.1\r\n\r\n", 400 },
		{ "\r\nGET /healthz HTTP/1.1\r\n\r\n", 400 },
		{ "GET\t/healthz HTTP/1.1\r\n\r\n", 400 },
		{ "GET /healthz HTTP/1.1\nHost: x\r\n\r\n", 400 },
		{ "GET /health\rz HTTP/1.1\r\n\r\n", 400 },
		{ "G(T /healthz HTTP/1.1\r\n\r\n", 400 },
		{ "GETGETGETGETGETGET /healthz HTTP/1.1\r\n\r\n", 400 },
		{ "GET /healthz\x01 HTTP/1.1\r\n\r\n", 400 },
		{ "GET /h\xc3\xa9 HTTP/1.1\r\n\r\n", 400 },
		/* versions */
		{ "GET /healthz HTTP/1.2\r\n\r\n", 400 },
		{ "GET /healthz HTTP/2.0\r\n\r\n", 400 },
		{ "GET /healthz HTTP/0.9\r\n\r\n", 400 },
		{ "GET /healthz HTTP/1.01\r\n\r\n", 400 },
		{ "GET /healthz HTTP/01.1\r\n\r\n", 400 },
		{ "GET /healthz http/1.1\r\n\r\n", 400 },
		{ "GET /healthz HTTP/1\r\n\r\n", 400 },
		{ "GET /healthz HTTP/-1.1\r\n\r\n", 400 },
		/* targets */
		{ "GET http://127.0.0.1:9901/healthz HTTP/1.1\r\n\r\n", 400 },
		{ "OPTIONS * HTTP/1.1\r\n\r\n", 400 },
		{ "GET healthz HTTP/1.1\r\n\r\n", 400 },
		{ "GET /healthz#x HTTP/1.1\r\n\r\n", 400 },
		{ "GET /health%zz HTTP/1.1\r\n\r\n", 400 },
		{ "GET /healthz% HTTP/1.1\r\n\r\n", 400 },
		{ "GET /metrics?a=%4 HTTP/1.1\r\n\r\n", 400 },
		{ "GET /metrics?a=<b> HTTP/1.1\r\n\r\n", 400 },
		/* paths */
		{ "GET /%2f HTTP/1.1\r\n\r\n", 404 },
		{ "GET /closed/ HTTP/1.1\r\n\r\n", 404 },
		{ "GET /Closed HTTP/1.1\r\n\r\n", 404 },
		{ "GET /index.html HTTP/1.1\r\n\r\n", 404 },
		{ "GET /healthz/ HTTP/1.1\r\n\r\n", 404 },
		{ "GET //healthz HTTP/1.1\r\n\r\n", 404 },
		{ "GET /%68ealthz HTTP/1.1\r\n\r\n", 404 },
		{ "GET /HEALTHZ HTTP/1.1\r\n\r\n", 404 },
		{ "GET /connections/ HTTP/1.1\r\n\r\n", 404 },
		{ "POST /connections/0/close HTTP/1.1\r\n\r\n", 404 },
		{ "POST /connections/007/close HTTP/1.1\r\n\r\n", 404 },
		{ "POST /connections/18446744073709551616/close HTTP/1.1\r\n\r\n", 404 },
		{ "POST /connections/1x/close HTTP/1.1\r\n\r\n", 404 },
		/* methods */
		{ "POST /metrics HTTP/1.1\r\n\r\n", 405 },
		{ "DELETE /connections HTTP/1.1\r\n\r\n", 405 },
		{ "get /healthz HTTP/1.1\r\n\r\n", 405 },
		{ "BREW /healthz HTTP/1.1\r\n\r\n", 405 },
		{ "GET /connections/1/close HTTP/1.1\r\n\r\n", 405 },
		{ "POST / HTTP/1.1\r\n\r\n", 405 },
		{ "POST /closed HTTP/1.1\r\n\r\n", 405 },
		/* query values, every route */
		{ "GET /healthz?x=1 HTTP/1.1\r\n\r\n", 400 },
		{ "GET /metrics?name=x HTTP/1.1\r\n\r\n", 400 },
		{ "GET /connections?limit=0 HTTP/1.1\r\n\r\n", 400 },
		{ "GET /connections?limit=100001 HTTP/1.1\r\n\r\n", 400 },
		{ "GET /connections?limit=-1 HTTP/1.1\r\n\r\n", 400 },
		{ "GET /connections?limit=+5 HTTP/1.1\r\n\r\n", 400 },
		{ "GET /connections?limit=%205 HTTP/1.1\r\n\r\n", 400 },
		{ "GET /connections?limit=05 HTTP/1.1\r\n\r\n", 400 },
		{ "GET /connections?limit=5x HTTP/1.1\r\n\r\n", 400 },
		{ "GET /connections?limit=99999999999999999999999 HTTP/1.1\r\n\r\n", 400 },
		{ "GET /connections?limit= HTTP/1.1\r\n\r\n", 400 },
		{ "GET /connections?limit HTTP/1.1\r\n\r\n", 400 },
		{ "GET /connections?limit=5&limit=6 HTTP/1.1\r\n\r\n", 400 },
		{ "GET /connections?limit=5& HTTP/1.1\r\n\r\n", 400 },
		{ "GET /connections?&limit=5 HTTP/1.1\r\n\r\n", 400 },
		{ "GET /connections?listener= HTTP/1.1\r\n\r\n", 400 },
		{ "GET /connections?listener=a/b HTTP/1.1\r\n\r\n", 400 },
		{ "GET /connections?listener=a%00b HTTP/1.1\r\n\r\n", 400 },
		{ "GET /connections?listener=a+b HTTP/1.1\r\n\r\n", 400 },
		{ "GET /connections?listener=a&listener=b HTTP/1.1\r\n\r\n", 400 },
		{ "GET /connections?listener=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  " HTTP/1.1\r\n\r\n", 400 },
		{ "GET /connections?Limit=5 HTTP/1.1\r\n\r\n", 400 },
		{ "GET /connections?how=rst HTTP/1.1\r\n\r\n", 400 },
		{ "POST /connections/1/close?how=kill HTTP/1.1\r\n\r\n", 400 },
		{ "POST /connections/1/close?how=rst&how=fin HTTP/1.1\r\n\r\n", 400 },
		{ "POST /connections/1/close?limit=1 HTTP/1.1\r\n\r\n", 400 },
		{ "GET /?x=1 HTTP/1.1\r\n\r\n", 400 },
		{ "GET /?limit=5 HTTP/1.1\r\n\r\n", 400 },
		{ "GET /closed?limit=0 HTTP/1.1\r\n\r\n", 400 },
		{ "GET /closed?limit=65 HTTP/1.1\r\n\r\n", 400 },
		{ "GET /closed?limit=064 HTTP/1.1\r\n\r\n", 400 },
		{ "GET /closed?limit=5&limit=6 HTTP/1.1\r\n\r\n", 400 },
		{ "GET /closed?limit= HTTP/1.1\r\n\r\n", 400 },
		{ "GET /closed?listener=db HTTP/1.1\r\n\r\n", 400 },
		{ "GET /closed?how=rst HTTP/1.1\r\n\r\n", 400 },
		/* header lines */
		{ "GET /healthz HTTP/1.1\r\nHost x\r\n\r\n", 400 },
		{ "GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n", 400 },
		{ "GET /healthz HTTP/1.1\r\n: x\r\n\r\n", 400 },
		{ "GET /healthz HTTP/1.1\r\nA: b\r\n c\r\n\r\n", 400 },
		{ "GET /healthz HTTP/1.1\r\nA: b\x01\r\n\r\n", 400 },
		{ "GET /healthz HTTP/1.1\r\nA: b\rc\r\n\r\n", 400 },
		{ "GET /healthz HTTP/1.1\r\nA: \xff\r\n\r\n", 400 },
		{ "GET /healthz HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 400 },
		{ "GET /healthz HTTP/1.1\r\ncontent-length: -0\r\n\r\n", 400 },
		{ "GET /healthz HTTP/1.1\r\nContent-Length:\r\n\r\n", 400 },
		{ "GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400 },
	};
	struct adminreq req;
	int rc;

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		rc = parse(cases[i].head, &req);
		if (rc != cases[i].status)
			fail_msg("case %zu \"%s\": expected %d, got %d (%s)", i, cases[i].head,
			    cases[i].status, rc, req.why ? req.why : "-");
		if (req.why == NULL)
			fail_msg("case %zu: a refusal says why", i);
	}
}

/* A 405 names the methods the path takes; a 404 or 405 knows the route. */
static void
refusals_say_what_to_do(void **state)
{
	struct adminreq req;

	(void)state;
	assert_int_equal(parse("PUT /healthz HTTP/1.1\r\n\r\n", &req), 405);
	assert_string_equal(req.allow, "GET, HEAD");
	assert_int_equal(req.route, ADMINREQ_HEALTHZ);
	assert_int_equal(parse("GET /connections/9/close HTTP/1.1\r\n\r\n", &req), 405);
	assert_string_equal(req.allow, "POST");
	assert_string_equal(adminreq_status_text(431), "Request Header Fields Too Large");
}

static char *
repeat(const char *prefix, char c, size_t n, const char *suffix)
{
	size_t lp = strlen(prefix), ls = strlen(suffix);
	char *s = malloc(lp + n + ls + 1);

	assert_non_null(s);
	memcpy(s, prefix, lp);
	memset(s + lp, c, n);
	memcpy(s + lp + n, suffix, ls + 1);
	return s;
}

static void
limits(void **state)
{
	struct adminreq req;
	char *s;
	size_t i, len;

	(void)state;
	/* A target of exactly the limit is read (and 404), one more byte is 414. */
	s = repeat("GET /", 'a', ADMINREQ_MAX_TARGET - 1, " HTTP/1.1\r\n\r\n");
	assert_int_equal(parse(s, &req), 404);
	free(s);
	s = repeat("GET /", 'a', ADMINREQ_MAX_TARGET, " HTTP/1.1\r\n\r\n");
	assert_int_equal(parse(s, &req), 414);
	free(s);
	/* A request line that never ends within the head's limit: 414; shorter: wait. */
	s = repeat("GET /", 'a', ADMINREQ_MAX_HEAD, "");
	assert_int_equal(parse(s, &req), 414);
	assert_int_equal(adminreq_parse(s, ADMINREQ_MAX_HEAD - 1, &req), ADMINREQ_INCOMPLETE);
	free(s);
	/* Headers that never end: 431, whatever follows in the buffer. */
	s = repeat("GET /healthz HTTP/1.1\r\nX-Big: ", 'x', ADMINREQ_MAX_HEAD * 2, "\r\n\r\n");
	assert_int_equal(parse(s, &req), 431);
	free(s);
	/* A head of exactly the limit is read; one byte more is 431. */
	len = ADMINREQ_MAX_HEAD - strlen("GET /healthz HTTP/1.1\r\nX: \r\n\r\n");
	s = repeat("GET /healthz HTTP/1.1\r\nX: ", 'x', len, "\r\n\r\n");
	assert_int_equal(strlen(s), ADMINREQ_MAX_HEAD);
	assert_int_equal(parse(s, &req), 0);
	free(s);
	s = repeat("GET /healthz HTTP/1.1\r\nX: ", 'x', len + 1, "\r\n\r\n");
	assert_int_equal(parse(s, &req), 431);
	free(s);
	/* Header lines: the limit is taken, one more is 431. */
	for (i = ADMINREQ_MAX_HEADERS; i <= ADMINREQ_MAX_HEADERS + 1; i++) {
		char head[2048];
		size_t n = (size_t)snprintf(head, sizeof(head), "GET /healthz HTTP/1.1\r\n");

		for (size_t h = 0; h < i; h++)
			n += (size_t)snprintf(head + n, sizeof(head) - n, "X-%zu: y\r\n", h);
		snprintf(head + n, sizeof(head) - n, "\r\n");
		assert_int_equal(parse(head, &req), i > ADMINREQ_MAX_HEADERS ? 431 : 0);
	}
}

/* Nothing is read past the length given, even when the bytes after it would end the head. */
static void
reads_only_what_it_is_given(void **state)
{
	const char *head = "GET /healthz HTTP/1.1\r\n\r\n";
	struct adminreq req;
	size_t len;

	(void)state;
	for (len = 0; len < strlen(head); len++)
		assert_int_equal(adminreq_parse(head, len, &req), ADMINREQ_INCOMPLETE);
	assert_int_equal(adminreq_parse(head, len, &req), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(accepted_requests),
		cmocka_unit_test(incomplete_heads),
		cmocka_unit_test(refused_requests),
		cmocka_unit_test(refusals_say_what_to_do),
		cmocka_unit_test(limits),
		cmocka_unit_test(reads_only_what_it_is_given),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
