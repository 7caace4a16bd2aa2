/*
 * Goal: the admin endpoint never waits on a worker without bound.  With one
 * worker's loop running and the other's stuck (never dispatched), /metrics
 * and /connections answer within the bounded wait and name the worker that
 * did not answer, /healthz answers at once, and shutting the endpoint down
 * withdraws the parts still queued on the stuck worker.  And no client holds
 * it: one connection over the cap is answered 503 at once and a closed one
 * frees its slot; requests are routed by the strict reading of their raw
 * bytes (pipelined ones too) and refusals close the connection.  The status
 * address serves /healthz and /metrics to any Host, refuses every other
 * route as an unknown path (counted), and has slots of its own.  Loopback,
 * no root.
 */
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#include <netinet/in.h>
#include <poll.h>
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
	struct endpoint status_ep;
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
	f->admin = admin_start(f->workers, 2, &f->ep, NULL, CAP, &f->proc, &f->shared.draining);
	assert_non_null(f->admin);
}

/* Start the admin on loopback with status_listen on another port, and admin_listen unless off. */
static void
start_with_status(struct fixture *f, bool admin_on)
{
	char text[64];

	snprintf(text, sizeof(text), "127.0.0.1:%u", loopback_free_port());
	assert_int_equal(endpoint_parse(text, &f->ep), 0);
	do
		snprintf(text, sizeof(text), "127.0.0.1:%u", loopback_free_port());
	while (strcmp(text, f->ep.text) == 0);
	assert_int_equal(endpoint_parse(text, &f->status_ep), 0);
	f->admin = admin_start(f->workers, 2, admin_on ? &f->ep : NULL, &f->status_ep, CAP,
	    &f->proc, &f->shared.draining);
	assert_non_null(f->admin);
}

/* A connected socket to ep with a 5 s receive timeout. */
static int
connect_to(const struct endpoint *ep)
{
	struct timeval tv = { 5, 0 };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	assert_int_equal(connect(fd, (const struct sockaddr *)&ep->addr, ep->len), 0);
	return fd;
}

/* A connected socket to the admin with a 5 s receive timeout. */
static int
admin_connect(const struct fixture *f)
{
	return connect_to(&f->ep);
}

/* Send raw to ep on a new connection; what came back until the server closed, in buf. */
static void
http_raw_to(const struct endpoint *ep, const char *raw, char *buf, size_t size)
{
	char req[8192];
	const char *at;
	size_t len = 0, used = 0;
	ssize_t n;
	int fd = connect_to(ep);

	/* "{HOST}" stands for the endpoint's own address. */
	while ((at = strstr(raw, "{HOST}")) != NULL) {
		used += (size_t)snprintf(req + used, sizeof(req) - used, "%.*s%s",
		    (int)(at - raw), raw, ep->text);
		raw = at + 6;
	}
	snprintf(req + used, sizeof(req) - used, "%s", raw);
	raw = req;
	assert_int_equal(write(fd, raw, strlen(raw)), (ssize_t)strlen(raw));
	while (len < size - 1 && (n = read(fd, buf + len, size - 1 - len)) > 0)
		len += (size_t)n;
	/*
	 * The server closed: no read timeout.  A connection refused at the cap
	 * is answered at its accept and lingers, draining, for a second; request
	 * bytes later than that (or with every lingering slot busy) turn the
	 * close into an RST, which may follow the answer.
	 */
	if (n == -1 && errno == ECONNRESET && len > 0)
		n = 0;
	assert_int_equal(n, 0);
	buf[len] = '\0';
	close(fd);
}

static void
http_raw(const struct fixture *f, const char *raw, char *buf, size_t size)
{
	http_raw_to(&f->ep, raw, buf, size);
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
	const char *second;

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
	/* HEAD: the GET's headers, no body, so a kept-alive client reads the next reply right. */
	http_raw(f, "HEAD /healthz HTTP/1.1\r\nHost: {HOST}\r\n\r\n"
	    "GET /healthz HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n",
	    resp, sizeof(resp));
	second = strstr(resp + 1, "HTTP/1.1 200 OK\r\n");
	assert_non_null(second);
	assert_memory_equal(second - 4, "\r\n\r\n", 4);
	assert_true(strstr(resp, "Content-Length: 3\r\n") < second);
	assert_non_null(strstr(second, "\r\n\r\nok\n"));
	assert_true(strstr(resp, "ok\n") > second);   /* the HEAD reply had no body */
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
	/* A cross-origin GET is refused as well: the list never reaches that browser. */
	http_raw(f, "GET /connections HTTP/1.1\r\nHost: {HOST}\r\n"
	    "Origin: http://evil.example\r\nConnection: close\r\n\r\n", resp, sizeof(resp));
	assert_non_null(strstr(resp, " 403 Forbidden\r\n"));
	http_raw(f, "GET /connections HTTP/1.1\r\nHost: {HOST}\r\n"
	    "Origin: http://{HOST}\r\nConnection: close\r\n\r\n", resp, sizeof(resp));
	assert_non_null(strstr(resp, " 200 OK\r\n"));
	/* Its own origin passes; no worker has connection 7. */
	http_raw(f, "POST /connections/7/close HTTP/1.1\r\nHost: {HOST}\r\n"
	    "Origin: http://{HOST}\r\nConnection: close\r\n\r\n", resp, sizeof(resp));
	assert_non_null(strstr(resp, " 404 Not Found\r\n"));
	assert_non_null(strstr(resp, "no such connection"));
	/* A GET on the close route is not a close. */
	http_raw(f, "GET /connections/7/close HTTP/1.1\r\nHost: {HOST}\r\n\r\n", resp, sizeof(resp));
	assert_non_null(strstr(resp, " 405 Method Not Allowed\r\n"));
}

/*
 * Over the cap, a client whose request leaves only after the 503 has
 * arrived (and the server's FIN after it) is not reset: the refused
 * connection lingers, draining, until the client's own FIN.  Several in a
 * row, more than there are lingering slots, since each client's close
 * frees its slot.
 */
static void
refused_request_drained(const struct fixture *f)
{
	static const char req[] = "GET /healthz HTTP/1.1\r\n\r\n";
	char resp[1024];
	size_t len;
	ssize_t n;
	int round, fd;

	for (round = 0; round < 12; round++) {
		struct pollfd p;

		fd = admin_connect(f);
		len = 0;
		while ((n = read(fd, resp + len, sizeof(resp) - 1 - len)) > 0)
			len += (size_t)n;
		assert_int_equal(n, 0);
		resp[len] = '\0';
		assert_non_null(strstr(resp, " 503 Service Unavailable\r\n"));
		assert_int_equal(write(fd, req, sizeof(req) - 1), (ssize_t)(sizeof(req) - 1));
		/* An RST would come within a round trip; 300 ms is plenty on loopback. */
		p = (struct pollfd){ .fd = fd, .events = 0 };
		assert_int_equal(poll(&p, 1, 300), 0);
		close(fd);
	}
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
	refused_request_drained(f);
	/* One held connection goes: its slot serves again. */
	t0 = now_ms();
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

static void
status_serves_probes_and_scrapes_only(void **state)
{
	/* Each admin-only route, and how a client might try to reach it. */
	static const char *const refused[] = {
		"GET /connections HTTP/1.1\r\nHost: {HOST}\r\n\r\n",
		"GET /connections?limit=+5 HTTP/1.1\r\nHost: {HOST}\r\n\r\n",
		"POST /connections/7/close HTTP/1.1\r\nHost: {HOST}\r\n\r\n",
		"GET /connections/7/close HTTP/1.1\r\nHost: {HOST}\r\n\r\n",
		"BREW /connections HTTP/1.1\r\nHost: {HOST}\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n",
		"GET /closed HTTP/1.1\r\nHost: {HOST}\r\n\r\n",
		"GET /nope HTTP/1.1\r\nHost: {HOST}\r\n\r\n",
	};
	struct fixture *f = *state;
	const struct endpoint *st = &f->status_ep;
	char resp[16384], line[128];
	size_t i;

	assert_int_equal(worker_start(f->workers[1]), 0);
	start_with_status(f, true);
	/* Probes and scrapers name it as they see it: any Host, or none, is served. */
	http_raw_to(st, "GET /healthz HTTP/1.1\r\nHost: kaproxy.example.svc:9902\r\n"
	    "Connection: close\r\n\r\n", resp, sizeof(resp));
	assert_non_null(strstr(resp, " 200 OK\r\n"));
	assert_non_null(strstr(resp, "\r\n\r\nok\n"));
	http_raw_to(st, "GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n", resp,
	    sizeof(resp));
	assert_non_null(strstr(resp, " 200 OK\r\n"));
	assert_non_null(strstr(resp, "kaproxy_build_info{version=\"test\"} 1"));
	assert_non_null(strstr(resp, "\nkaproxy_status_connections 1\n"));
	http_raw_to(st, "HEAD /metrics HTTP/1.1\r\nHost: 10.1.2.3:9902\r\n"
	    "Connection: close\r\n\r\n", resp, sizeof(resp));
	assert_non_null(strstr(resp, " 200 OK\r\n"));
	assert_null(strstr(resp, "kaproxy_build_info"));
	/* The GET's length, once: a HEAD's headers are the GET's. */
	assert_non_null(strstr(resp, "Content-Length: "));
	assert_null(strstr(resp, "Content-Length: 0\r\n"));
	assert_null(strstr(strstr(resp, "Content-Length: ") + 1, "Content-Length: "));
	/* Every other route is no route at all here, whatever else is wrong with it. */
	for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		http_raw_to(st, refused[i], resp, sizeof(resp));
		if (strstr(resp, " 404 Not Found\r\n") == NULL)
			fail_msg("%s answered: %.60s", refused[i], resp);
		assert_non_null(strstr(resp, "Connection: close\r\n"));
		assert_null(strstr(resp, "Allow:"));
		/* Nor does the text name the admin's paths. */
		assert_null(strstr(strstr(resp, "\r\n\r\n"), "/connections"));
	}
	/* Malformed is still 400: the strict reading is the same. */
	http_raw_to(st, "GET /healthz HTTP/1.7\r\n\r\n", resp, sizeof(resp));
	assert_non_null(strstr(resp, " 400 Bad Request\r\n"));
	/* Counted as the status address's, not the admin's; admin serves everything. */
	http_raw(f, "GET /metrics HTTP/1.0\r\n\r\n", resp, sizeof(resp));
	assert_non_null(strstr(resp, " 200 OK\r\n"));
	snprintf(line, sizeof(line), "\nkaproxy_status_requests_refused_total{code=\"404\"} %zu\n",
	    sizeof(refused) / sizeof(refused[0]));
	assert_non_null(strstr(resp, line));
	assert_non_null(strstr(resp, "\nkaproxy_status_requests_refused_total{code=\"400\"} 1\n"));
	assert_null(strstr(resp, "kaproxy_status_requests_refused_total{code=\"403\"}"));
	assert_non_null(strstr(resp, "\nkaproxy_admin_requests_refused_total{code=\"404\"} 0\n"));
	http_raw(f, "GET /connections HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n",
	    resp, sizeof(resp));
	assert_non_null(strstr(resp, " 200 OK\r\n"));
	/* A load balancer takes it out of rotation while draining. */
	atomic_store(&f->shared.draining, true);
	http_raw_to(st, "GET /healthz HTTP/1.0\r\n\r\n", resp, sizeof(resp));
	assert_non_null(strstr(resp, " 503 Service Unavailable\r\n"));
	assert_non_null(strstr(resp, "draining\n"));
}

static void
status_alone_with_slots_of_its_own(void **state)
{
	struct fixture *f = *state;
	char resp[16384];
	int held[CAP], i;

	assert_int_equal(worker_start(f->workers[1]), 0);
	/* A status flood does not take the admin's slots. */
	start_with_status(f, true);
	for (i = 0; i < CAP; i++)
		held[i] = connect_to(&f->status_ep);
	http_raw_to(&f->status_ep, "GET /healthz HTTP/1.0\r\n\r\n", resp, sizeof(resp));
	assert_non_null(strstr(resp, " 503 Service Unavailable\r\n"));
	http_raw(f, "GET /metrics HTTP/1.0\r\n\r\n", resp, sizeof(resp));
	assert_non_null(strstr(resp, " 200 OK\r\n"));
	assert_non_null(strstr(resp, "\nkaproxy_status_connections 4\n"));
	assert_non_null(strstr(resp, "\nkaproxy_status_connections_refused_total 1\n"));
	assert_non_null(strstr(resp, "\nkaproxy_admin_connections 1\n"));
	for (i = 0; i < CAP; i++)
		close(held[i]);
	admin_free(f->admin);
	/* Without admin_listen: the status address alone, and no admin series. */
	start_with_status(f, false);
	http_raw_to(&f->status_ep, "GET /metrics HTTP/1.0\r\n\r\n", resp, sizeof(resp));
	assert_non_null(strstr(resp, " 200 OK\r\n"));
	assert_non_null(strstr(resp, "\nkaproxy_status_connections 1\n"));
	assert_null(strstr(resp, "kaproxy_admin_connections"));
}

/*
 * Whether a connection to ep is refused (nothing listens); false when it was
 * accepted, or reset in its handshake by the listening socket closing then.
 */
static bool
refused(const struct endpoint *ep)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0), err;

	assert_true(fd >= 0);
	err = connect(fd, (const struct sockaddr *)&ep->addr, ep->len) == 0 ? 0 : errno;
	if (err != 0 && err != ECONNREFUSED && err != ECONNRESET)
		fail_msg("connect to %s: %s", ep->text, strerror(err));
	close(fd);
	return err == ECONNREFUSED;
}

/* The rest of a request begun on fd, and its answer, which must be 200. */
static void
finish_request(int fd)
{
	char resp[4096];
	size_t len = 0;
	ssize_t n;

	assert_int_equal(write(fd, "\r\n", 2), 2);
	while (len < sizeof(resp) - 1 && (n = read(fd, resp + len, sizeof(resp) - 1 - len)) > 0)
		len += (size_t)n;
	resp[len] = '\0';
	assert_non_null(strstr(resp, " 200 OK\r\n"));
	close(fd);
}

static void
stop_accepting_serves_what_is_open(void **state)
{
	static const char begun[] = "GET /healthz HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n";
	struct fixture *f = *state;
	char req[256], resp[4096];
	int fd_admin, fd_status, held[CAP], i;
	uint64_t until;

	start_with_status(f, true);
	/* A request begun on each address; the admin at its cap (refusing with 503). */
	fd_admin = connect_to(&f->ep);
	snprintf(req, sizeof(req), begun, f->ep.text);
	assert_int_equal(write(fd_admin, req, strlen(req)), (ssize_t)strlen(req));
	fd_status = connect_to(&f->status_ep);
	assert_int_equal(write(fd_status, req, strlen(req)), (ssize_t)strlen(req));
	for (i = 0; i < CAP - 1; i++)
		held[i] = connect_to(&f->ep);
	/*
	 * Accepted, all of them (the queue is first in, first out), before the
	 * listening sockets close: here no other process holds them, and the
	 * kernel resets what waits in the queue of a socket that closes.
	 */
	http_raw(f, "GET /healthz HTTP/1.0\r\n\r\n", resp, sizeof(resp));
	assert_non_null(strstr(resp, " 503 Service Unavailable\r\n"));
	http_raw_to(&f->status_ep, "GET /healthz HTTP/1.0\r\n\r\n", resp, sizeof(resp));
	assert_non_null(strstr(resp, " 200 OK\r\n"));

	admin_stop_accepting(f->admin);
	until = now_ms() + 2000;
	while (!(refused(&f->ep) && refused(&f->status_ep)) && now_ms() < until)
		usleep(10 * 1000);
	assert_true(refused(&f->ep));
	assert_true(refused(&f->status_ep));
	/* What was open is served to its end; freed slots do not start accepting again. */
	for (i = 0; i < CAP - 1; i++)
		close(held[i]);
	finish_request(fd_admin);
	finish_request(fd_status);
	assert_true(refused(&f->ep));
	admin_stop_accepting(NULL);
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
		cmocka_unit_test_setup_teardown(status_serves_probes_and_scrapes_only, setup, teardown),
		cmocka_unit_test_setup_teardown(status_alone_with_slots_of_its_own, setup, teardown),
		cmocka_unit_test_setup_teardown(stop_accepting_serves_what_is_open, setup, teardown),
	};

	if (evthread_use_pthreads() == -1)
		return 1;
	log_set_level(LOG_LEVEL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
