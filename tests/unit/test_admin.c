/*
 * Goal: the admin endpoint never waits on a worker without bound.  With one
 * worker's loop running and the other's stuck (never dispatched), /metrics
 * and /connections answer within the bounded wait and name the worker that
 * did not answer, /healthz answers at once, and shutting the endpoint down
 * withdraws the parts still queued on the stuck worker.  And no client holds
 * it: one connection over the cap is answered 503 at once and a closed one
 * frees its slot; requests are routed by the strict reading of their raw
 * bytes (pipelined ones too) and refusals close the connection.  Loopback,
 * no root.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "kaproxy/admin.h"
#include "kaproxy/endpoint.h"
#include "kaproxy/log.h"
#include "kaproxy/page.h"
#include "kaproxy/worker.h"

struct fixture {
	struct process_shared shared;
	struct worker *workers[2];
	struct stats_process proc;
	struct endpoint ep;
	struct admin *admin;
};

/* GET path; returns the whole response (headers and body) in buf. */
static void
http_get(const struct fixture *f, const char *path, char *buf, size_t size)
{
	struct timeval tv = { 5, 0 };
	char req[256];
	size_t len = 0;
	ssize_t n;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	assert_int_equal(connect(fd, (const struct sockaddr *)&f->ep.addr, f->ep.len), 0);
	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
	    path, f->ep.text);
	assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	while (len < size - 1 && (n = read(fd, buf + len, size - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	close(fd);
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	int i;

	assert_non_null(f);
	for (i = 0; i < 2; i++)
		assert_non_null(f->workers[i] = worker_new(&f->shared, (unsigned)i, true));
	/* Worker 0 runs; worker 1's loop is never dispatched: a stuck worker. */
	assert_int_equal(worker_start(f->workers[0]), 0);
	f->proc.version = "test";
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	int i;

	admin_free(f->admin);
	for (i = 0; i < 2; i++) {
		worker_exit(f->workers[i]);
		worker_join(f->workers[i]);
		worker_free(f->workers[i]);
	}
	free(f);
	return 0;
}

#define CAP 4

/* Start the admin on a free loopback port. */
static void
start_admin(struct fixture *f)
{
	char text[64];

	snprintf(text, sizeof(text), "127.0.0.1:%u", loopback_free_port());
	assert_int_equal(endpoint_parse(text, &f->ep), 0);
	f->admin = admin_start(f->workers, 2, &f->ep, CAP, &f->proc, &f->shared.draining);
	assert_non_null(f->admin);
}

/* A connected socket to the admin with a 5 s receive timeout. */
static int
admin_connect(const struct fixture *f)
{
	struct timeval tv = { 5, 0 };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	assert_int_equal(connect(fd, (const struct sockaddr *)&f->ep.addr, f->ep.len), 0);
	return fd;
}

/* Send raw on a new connection; what came back until the server closed, in buf. */
static void
http_raw(const struct fixture *f, const char *raw, char *buf, size_t size)
{
	char req[8192];
	const char *at;
	size_t len = 0, used = 0;
	ssize_t n;
	int fd = admin_connect(f);

	/* "{HOST}" stands for the endpoint's own address. */
	while ((at = strstr(raw, "{HOST}")) != NULL) {
		used += (size_t)snprintf(req + used, sizeof(req) - used, "%.*s%s",
		    (int)(at - raw), raw, f->ep.text);
		raw = at + 6;
	}
	snprintf(req + used, sizeof(req) - used, "%s", raw);
	raw = req;
	assert_int_equal(write(fd, raw, strlen(raw)), (ssize_t)strlen(raw));
	while (len < size - 1 && (n = read(fd, buf + len, size - 1 - len)) > 0)
		len += (size_t)n;
	assert_int_equal(n, 0);   /* the server closed: no read timeout */
	buf[len] = '\0';
	close(fd);
}

static void
stuck_worker_is_named_not_waited_for(void **state)
{
	struct fixture *f = *state;
	char resp[8192];
	uint64_t t0, took;

	start_admin(f);

	t0 = now_ms();
	http_get(f, "/healthz", resp, sizeof(resp));
	assert_non_null(strstr(resp, "200 OK"));
	assert_true(now_ms() - t0 < 500);

	t0 = now_ms();
	http_get(f, "/metrics", resp, sizeof(resp));
	took = now_ms() - t0;
	assert_non_null(strstr(resp, " 503 "));
	assert_non_null(strstr(resp, "X-Kaproxy-Missing-Workers: 1\r\n"));
	assert_true(took >= 900 && took < 3000);

	t0 = now_ms();
	http_get(f, "/connections", resp, sizeof(resp));
	took = now_ms() - t0;
	assert_non_null(strstr(resp, " 200 OK"));
	assert_non_null(strstr(resp, "X-Kaproxy-Missing-Workers: 1\r\n"));
	assert_non_null(strstr(resp, "\r\n\r\n[]\n"));
	assert_true(took >= 900 && took < 3000);
	/* teardown: admin_free withdraws the two parts still queued on worker 1. */
}

static void
answering_workers_reply_at_once(void **state)
{
	struct fixture *f = *state;
	char resp[16384];
	uint64_t t0;
	int i;

	/* Both workers run now. */
	assert_int_equal(worker_start(f->workers[1]), 0);
	start_admin(f);
	t0 = now_ms();
	http_get(f, "/metrics", resp, sizeof(resp));
	assert_non_null(strstr(resp, " 200 OK"));
	assert_null(strstr(resp, "X-Kaproxy-Missing-Workers"));
	assert_non_null(strstr(resp, "kaproxy_build_info{version=\"test\"} 1"));
	http_get(f, "/connections", resp, sizeof(resp));
	assert_non_null(strstr(resp, "X-Kaproxy-Connections: 0\r\n"));
	assert_true(now_ms() - t0 < 900);
	/*
	 * Both parts come in at nearly the same moment, again and again: the
	 * reply and the freeing of a request must not race the second worker's
	 * report (a use after free that ASan caught here).
	 */
	for (i = 0; i < 200; i++) {
		http_get(f, i % 2 ? "/metrics" : "/connections", resp, sizeof(resp));
		assert_non_null(strstr(resp, " 200 OK"));
	}
}

static void
strict_reading_routes_and_refuses(void **state)
{
	struct fixture *f = *state;
	char resp[16384];

	start_admin(f);
	/* libevent would serve these three with 200 or 501. */
	http_raw(f, "GET /healthz HTTP/1.7\r\nHost: x\r\n\r\n", resp, sizeof(resp));
	assert_non_null(strstr(resp, " 400 Bad Request\r\n"));
	assert_non_null(strstr(resp, "the version must be HTTP/1.0 or HTTP/1.1"));
	assert_non_null(strstr(resp, "Connection: close\r\n"));
	http_raw(f, "GET /connections?limit=+5 HTTP/1.1\r\n\r\n", resp, sizeof(resp));
	assert_non_null(strstr(resp, " 400 Bad Request\r\n"));
	http_raw(f, "BREW /healthz HTTP/1.1\r\n\r\n", resp, sizeof(resp));
	assert_non_null(strstr(resp, " 405 Method Not Allowed\r\n"));
	assert_non_null(strstr(resp, "Allow: GET, HEAD\r\n"));
	http_raw(f, "GET /healthz HTTP/1.1\r\nX: " "0123456789abcdef0123456789abcdef0123456789"
	    "\r\nX-Bad: \x01\r\n\r\n", resp, sizeof(resp));
	assert_non_null(strstr(resp, " 400 Bad Request\r\n"));
	/* Pipelined: each request is read from where the previous one ended. */
	http_raw(f, "GET /healthz HTTP/1.1\r\nHost: {HOST}\r\n\r\nGET /nope HTTP/1.1\r\n\r\n"
	    "GET /healthz HTTP/1.1\r\nHost: {HOST}\r\n\r\n", resp, sizeof(resp));
	assert_non_null(strstr(resp, " 200 OK\r\n"));
	assert_non_null(strstr(strstr(resp, " 200 OK\r\n"), " 404 Not Found\r\n"));
	/* The refusal closed the connection: the third request was not served. */
	assert_null(strstr(strstr(resp, " 404 Not Found\r\n"), " 200 OK\r\n"));
}

/*
 * GET / is the page as embedded, whole, with headers that keep it
 * self-contained and unframed; GET /closed gathers both workers' (empty)
 * rings into one array; a foreign Host gets neither.
 */
static void
page_and_closed_served(void **state)
{
	struct fixture *f = *state;
	static char resp[256 * 1024];
	const char *body;

	assert_int_equal(worker_start(f->workers[1]), 0);
	start_admin(f);
	http_raw(f, "GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n", resp,
	    sizeof(resp));
	assert_non_null(strstr(resp, " 200 OK\r\n"));
	assert_non_null(strstr(resp, "Content-Type: text/html; charset=utf-8\r\n"));
	assert_non_null(strstr(resp, "Content-Security-Policy: default-src 'none';"));
	assert_non_null(strstr(resp, "connect-src 'self';"));
	body = strstr(resp, "\r\n\r\n");
	assert_non_null(body);
	body += 4;
	assert_int_equal(strlen(body), page_html_len);
	assert_memory_equal(body, page_html, page_html_len);
	assert_non_null(strstr(body, "fetch(path"));
	/* Nothing loaded from elsewhere. */
	assert_null(strstr(body, "src=\""));
	assert_null(strstr(body, "href=\"http"));
	assert_null(strstr(body, "url("));
	assert_null(strstr(body, "@import"));

	http_raw(f, "GET /closed?limit=5 HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n",
	    resp, sizeof(resp));
	assert_non_null(strstr(resp, " 200 OK\r\n"));
	assert_non_null(strstr(resp, "Content-Type: application/json\r\n"));
	assert_null(strstr(resp, "X-Kaproxy-Missing-Workers"));
	assert_non_null(strstr(resp, "\r\n\r\n[]\n"));
	http_raw(f, "GET / HTTP/1.1\r\nHost: evil.example:9901\r\nConnection: close\r\n\r\n",
	    resp, sizeof(resp));
	assert_non_null(strstr(resp, " 403 Forbidden\r\n"));
	http_raw(f, "GET /closed?limit=65 HTTP/1.1\r\nHost: {HOST}\r\n\r\n", resp, sizeof(resp));
	assert_non_null(strstr(resp, " 400 Bad Request\r\n"));
}

static void
foreign_host_and_origin_refused(void **state)
{
	struct fixture *f = *state;
	char resp[16384], raw[512];
	const char *port;

	assert_int_equal(worker_start(f->workers[1]), 0);
	start_admin(f);
	/* DNS rebinding: a page on evil.example reaches 127.0.0.1 under its own name. */
	http_raw(f, "GET /connections HTTP/1.1\r\nHost: evil.example:80\r\nConnection: close\r\n\r\n",
	    resp, sizeof(resp));
	assert_non_null(strstr(resp, " 403 Forbidden\r\n"));
	http_raw(f, "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", resp, sizeof(resp));
	assert_non_null(strstr(resp, " 403 Forbidden\r\n"));
	/* localhost with the endpoint's port is the endpoint too; 1.0 may omit Host. */
	port = strrchr(f->ep.text, ':');
	snprintf(raw, sizeof(raw), "GET /healthz HTTP/1.1\r\nHost: LocalHost%s\r\n"
	    "Connection: close\r\n\r\n", port);
	http_raw(f, raw, resp, sizeof(resp));
	assert_non_null(strstr(resp, " 200 OK\r\n"));
	http_raw(f, "GET /healthz HTTP/1.0\r\n\r\n", resp, sizeof(resp));
	assert_non_null(strstr(resp, " 200 OK\r\n"));
	/* Cross-site POST: refused before any worker is asked. */
	http_raw(f, "POST /connections/7/close HTTP/1.1\r\nHost: {HOST}\r\n"
	    "Origin: http://evil.example\r\nConnection: close\r\n\r\n", resp, sizeof(resp));
	assert_non_null(strstr(resp, " 403 Forbidden\r\n"));
	http_raw(f, "POST /connections/7/close HTTP/1.1\r\nHost: {HOST}\r\n"
	    "Origin: null\r\nConnection: close\r\n\r\n", resp, sizeof(resp));
	assert_non_null(strstr(resp, " 403 Forbidden\r\n"));
	/* Its own origin passes; no worker has connection 7. */
	http_raw(f, "POST /connections/7/close HTTP/1.1\r\nHost: {HOST}\r\n"
	    "Origin: http://{HOST}\r\nConnection: close\r\n\r\n", resp, sizeof(resp));
	assert_non_null(strstr(resp, " 404 Not Found\r\n"));
	assert_non_null(strstr(resp, "no such connection"));
	/* A GET on the close route is not a close. */
	http_raw(f, "GET /connections/7/close HTTP/1.1\r\nHost: {HOST}\r\n\r\n", resp, sizeof(resp));
	assert_non_null(strstr(resp, " 405 Method Not Allowed\r\n"));
}

static void
cap_refuses_at_once_and_frees_slots(void **state)
{
	struct fixture *f = *state;
	char resp[16384];
	int held[CAP], i;
	uint64_t t0;

	assert_int_equal(worker_start(f->workers[1]), 0);
	start_admin(f);
	for (i = 0; i < CAP; i++)
		held[i] = admin_connect(f);
	/* Accepted after the held ones (one queue): over the cap. */
	t0 = now_ms();
	http_raw(f, "GET /healthz HTTP/1.1\r\n\r\n", resp, sizeof(resp));
	assert_non_null(strstr(resp, " 503 Service Unavailable\r\n"));
	assert_non_null(strstr(resp, "too many admin connections\n"));
	assert_true(now_ms() - t0 < 1000);
	/* One held connection goes: its slot serves again. */
	close(held[0]);
	do {
		assert_true(now_ms() - t0 < 3000);
		http_raw(f, "GET /healthz HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n",
		    resp, sizeof(resp));
	} while (strstr(resp, " 503 ") != NULL);
	assert_non_null(strstr(resp, " 200 OK\r\n"));
	http_raw(f, "GET /metrics HTTP/1.0\r\n\r\n", resp, sizeof(resp));
	assert_non_null(strstr(resp, " 200 OK\r\n"));
	assert_non_null(strstr(resp, "\nkaproxy_admin_connections 4\n"));
	assert_null(strstr(resp, "\nkaproxy_admin_connections_refused_total 0\n"));
	for (i = 1; i < CAP; i++)
		close(held[i]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(stuck_worker_is_named_not_waited_for, setup, teardown),
		cmocka_unit_test_setup_teardown(answering_workers_reply_at_once, setup, teardown),
		cmocka_unit_test_setup_teardown(strict_reading_routes_and_refuses, setup, teardown),
		cmocka_unit_test_setup_teardown(foreign_host_and_origin_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(page_and_closed_served, setup, teardown),
		cmocka_unit_test_setup_teardown(cap_refuses_at_once_and_frees_slots, setup, teardown),
	};

	if (evthread_use_pthreads() == -1)
		return 1;
	log_set_level(LOG_LEVEL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
