/*
 * Goal: a reload is all-or-nothing across workers.  When the second worker
 * cannot open a new listening socket, neither worker takes the new
 * configuration: no new port is listening, the running listeners keep
 * accepting, the handed-over socket keeps its running client policy, and the
 * new generation is released; the same configuration applies on both once
 * it can.  Loopback only, no root: the failure is a real EMFILE, forced with
 * RLIMIT_NOFILE so that exactly one more socket can be opened.
 *
 * And a drain's deadline: none (a binary upgrade's default) keeps a live
 * connection for as long as it lives; asked again, the earlier deadline
 * stands, whichever order they come in, and the connection is closed then.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "kaproxy/log.h"
#include "kaproxy/worker.h"

#define N_WORKERS 2

static struct generation *
generation_from(const char *text)
{
	char err[CONFIG_ERR_MAX];
	struct config *cfg;
	struct generation *gen;

	if (config_load_string(text, "test.ini", &cfg, err, sizeof(err)) == -1)
		fail_msg("%s", err);
	gen = generation_new(cfg);
	assert_non_null(gen);
	return gen;
}

/* Whether something accepts TCP connections on 127.0.0.1:port. */
static bool
listening(unsigned port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bool ok;

	assert_true(fd >= 0);
	ok = connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
	close(fd);
	return ok;
}

/* The listening sockets of this process on port, and the TCP_KEEPIDLE of each. */
static int
listeners_on(unsigned port, int idle[], int max)
{
	struct sockaddr_in sin;
	socklen_t len;
	struct dirent *de;
	DIR *dir = opendir("/proc/self/fd");
	int n = 0, fd, on, value;

	assert_non_null(dir);
	while ((de = readdir(dir)) != NULL) {
		fd = atoi(de->d_name);
		len = sizeof(sin);
		if (de->d_name[0] == '.' || fd == dirfd(dir) ||
		    getsockname(fd, (struct sockaddr *)&sin, &len) == -1 ||
		    sin.sin_family != AF_INET || ntohs(sin.sin_port) != port)
			continue;
		len = sizeof(on);
		if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == -1 || !on)
			continue;
		len = sizeof(value);
		assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &value, &len), 0);
		if (n < max)
			idle[n] = value;
		n++;
	}
	closedir(dir);
	return n;
}

/* Lower the soft fd limit so that exactly `room` more descriptors can be opened. */
static void
leave_fd_room(struct rlimit *saved, int room)
{
	struct rlimit rl;
	int probe = dup(0);

	assert_true(probe >= 0);
	close(probe);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, saved), 0);
	rl = *saved;
	rl.rlim_cur = (rlim_t)(probe + room);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

static void
reload_is_all_or_nothing(void **state)
{
	struct process_shared shared = { 0 };
	struct worker *workers[N_WORKERS];
	struct generation *old, *fresh;
	struct rlimit saved;
	unsigned p1 = loopback_free_port(), p2 = loopback_free_port();
	char text[1024];
	int idle[4], i;

	(void)state;
	atomic_init(&shared.admission.max_connections, 100);
	for (i = 0; i < N_WORKERS; i++)
		assert_non_null(workers[i] = worker_new(&shared, (unsigned)i, true));

	snprintf(text, sizeof(text),
	    "[listener a]\nlisten = 127.0.0.1:%u\nupstream = 127.0.0.1:9\n"
	    "client_keepalive_idle = 40s\n", p1);
	old = generation_from(text);
	assert_int_equal(worker_apply_all(workers, N_WORKERS, old), 0);
	assert_int_equal(listeners_on(p1, idle, 4), N_WORKERS);
	assert_int_equal(idle[0], 40);
	assert_int_equal(idle[1], 40);

	/* New: a changes its client policy (applied to the handed-over socket
	 * at prepare) and b needs a new socket on each worker. */
	snprintf(text, sizeof(text),
	    "[listener a]\nlisten = 127.0.0.1:%u\nupstream = 127.0.0.1:9\n"
	    "client_keepalive_idle = 50s\n"
	    "[listener b]\nlisten = 127.0.0.1:%u\nupstream = 127.0.0.1:9\n", p1, p2);
	fresh = generation_from(text);

	/* Room for worker 0's new socket only: worker 1's socket() is EMFILE. */
	leave_fd_room(&saved, 1);
	assert_int_equal(worker_apply_all(workers, N_WORKERS, fresh), -1);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);

	assert_false(listening(p2));
	assert_true(listening(p1));
	assert_int_equal(listeners_on(p1, idle, 4), N_WORKERS);
	assert_int_equal(idle[0], 40);      /* the running policy, put back */
	assert_int_equal(idle[1], 40);
	assert_int_equal(atomic_load(&fresh->refs), 1);   /* only ours: nothing kept it */
	assert_int_equal(atomic_load(&old->refs), 1 + N_WORKERS);

	/* With room, the same configuration goes onto both workers. */
	assert_int_equal(worker_apply_all(workers, N_WORKERS, fresh), 0);
	assert_true(listening(p2));
	assert_int_equal(listeners_on(p2, idle, 4), N_WORKERS);
	assert_int_equal(listeners_on(p1, idle, 4), N_WORKERS);
	assert_int_equal(idle[0], 50);
	assert_int_equal(idle[1], 50);
	assert_int_equal(atomic_load(&old->refs), 1);     /* every old listener retired */
	assert_int_equal(atomic_load(&fresh->refs), 1 + 2 * N_WORKERS);

	for (i = 0; i < N_WORKERS; i++)
		worker_free(workers[i]);
	generation_unref(old);
	generation_unref(fresh);
}

/* The drain test, run on the worker's own loop. */
struct drain_run {
	struct worker *w;
	uint32_t second[2];        /* worker_drain timeouts at DRAIN_ASK_MS, in this order */
	bool open_when_asked;      /* the session was still there, not drained */
	uint64_t asked_ms, drained_ms;
};

#define DRAIN_ASK_MS 600
#define DRAIN_GIVE_UP_MS 8000

static void
drain_unbounded(evutil_socket_t fd, short what, void *arg)
{
	struct drain_run *r = arg;

	(void)fd;
	(void)what;
	worker_drain(r->w, WORKER_DRAIN_UNBOUNDED);
}

static void
drain_bounded(evutil_socket_t fd, short what, void *arg)
{
	struct drain_run *r = arg;

	(void)fd;
	(void)what;
	r->open_when_asked = r->drained_ms == 0 && worker_sessions(r->w)->count == 1;
	r->asked_ms = now_ms();
	worker_drain(r->w, r->second[0]);
	worker_drain(r->w, r->second[1]);
}

static void
drained(evutil_socket_t fd, short what, void *arg)
{
	struct drain_run *r = arg;

	(void)fd;
	(void)what;
	r->drained_ms = now_ms();
	worker_exit(r->w);
}

static void
drain_give_up(evutil_socket_t fd, short what, void *arg)
{
	struct drain_run *r = arg;

	(void)fd;
	(void)what;
	worker_exit(r->w);
}

/* One connection through a worker, drained as r says; the client's socket is returned. */
static int
drain_once(struct drain_run *r)
{
	static const struct timeval start = { 0, 100 * 1000 };
	static const struct timeval ask = { 0, DRAIN_ASK_MS * 1000 };
	static const struct timeval give_up = { DRAIN_GIVE_UP_MS / 1000, 0 };
	struct process_shared shared = { 0 };
	struct sockaddr_in up, front = { .sin_family = AF_INET,
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct generation *gen;
	struct event_base *base;
	char text[512];
	int upfd, client;

	upfd = loopback_bound(&up);
	assert_int_equal(listen(upfd, 8), 0);
	front.sin_port = htons((uint16_t)loopback_free_port());
	atomic_init(&shared.admission.max_connections, 10);
	assert_non_null(r->w = worker_new(&shared, 0, false));
	base = worker_base(r->w);
	assert_non_null(shared.drained_notify = event_new(base, -1, 0, drained, r));
	snprintf(text, sizeof(text), "[global]\naccess_log = off\n[listener a]\n"
	    "listen = 127.0.0.1:%u\nupstream = 127.0.0.1:%u\n",
	    ntohs(front.sin_port), ntohs(up.sin_port));
	gen = generation_from(text);
	assert_int_equal(worker_apply_all(&r->w, 1, gen), 0);
	client = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(client >= 0);
	assert_int_equal(connect(client, (struct sockaddr *)&front, sizeof(front)), 0);
	assert_int_equal(event_base_once(base, -1, EV_TIMEOUT, drain_unbounded, r, &start), 0);
	assert_int_equal(event_base_once(base, -1, EV_TIMEOUT, drain_bounded, r, &ask), 0);
	assert_int_equal(event_base_once(base, -1, EV_TIMEOUT, drain_give_up, r, &give_up), 0);
	assert_int_equal(worker_run(r->w), 0);
	worker_free(r->w);
	event_free(shared.drained_notify);
	generation_unref(gen);
	close(upfd);
	return client;
}

/* The connection's end as its client sees it: reset by the drain. */
static void
assert_reset(int client)
{
	char byte;

	assert_int_equal(recv(client, &byte, 1, 0), -1);
	assert_int_equal(errno, ECONNRESET);
	close(client);
}

static void
drain_deadline_only_moves_earlier(void **state)
{
	struct drain_run later_first = { .second = { 5000, 300 } };
	struct drain_run earlier_first = { .second = { 300, 5000 } };
	struct drain_run *runs[] = { &later_first, &earlier_first };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
		struct drain_run *r = runs[i];
		int client = drain_once(r);

		/* Unbounded, the connection was there half a second later. */
		assert_true(r->open_when_asked);
		/* Then closed 300 ms after the bounded asks, not 5 s. */
		assert_true(r->drained_ms != 0);
		assert_in_range(r->drained_ms - r->asked_ms, 250, 2000);
		assert_reset(client);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(reload_is_all_or_nothing),
		cmocka_unit_test(drain_deadline_only_moves_earlier),
	};

	log_set_level(LOG_LEVEL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
