/*
 * Goal: the admin endpoint never waits on a worker without bound.  With one
 * worker's loop running and the other's stuck (never dispatched), /metrics
 * and /connections answer within the bounded wait and name the worker that
 * did not answer, /healthz answers at once, and shutting the endpoint down
 * withdraws the parts still queued on the stuck worker.  Loopback, no root.
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
	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
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

/* Start the admin on a free loopback port. */
static void
start_admin(struct fixture *f)
{
	char text[64];

	snprintf(text, sizeof(text), "127.0.0.1:%u", loopback_free_port());
	assert_int_equal(endpoint_parse(text, &f->ep), 0);
	f->admin = admin_start(f->workers, 2, &f->ep, 4, &f->proc, &f->shared.draining);
	assert_non_null(f->admin);
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(stuck_worker_is_named_not_waited_for, setup, teardown),
		cmocka_unit_test_setup_teardown(answering_workers_reply_at_once, setup, teardown),
	};

	if (evthread_use_pthreads() == -1)
		return 1;
	log_set_level(LOG_LEVEL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
