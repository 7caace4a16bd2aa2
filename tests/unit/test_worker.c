/*
 * Goal: a reload is all-or-nothing across workers.  When the second worker
 * cannot open a new listening socket, neither worker takes the new
 * configuration: no new port is listening, the running listeners keep
 * accepting, the handed-over socket keeps its running client policy, and the
 * new generation is released; the same configuration applies on both once
 * it can.  Loopback only, no root: the failure is a real EMFILE, forced with
 * RLIMIT_NOFILE so that exactly one more socket can be opened.
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(reload_is_all_or_nothing),
	};

	log_set_level(LOG_LEVEL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
