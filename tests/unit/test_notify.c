/*
 * Goal: kaproxy's readiness datagrams reach a service manager's socket, at a
 * path or at an abstract '@' name, byte for byte as sd_notify(3) defines
 * them (READY, RELOADING with the monotonic clock, STOPPING, STATUS,
 * MAINPID); an unset or unusable NOTIFY_SOCKET means no notifier and no
 * effect; a status is sent again only when it changed; and a manager that
 * is gone or not reading costs one log line and never a blocked thread.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "kaproxy/notify.h"
#include "harness.h"

/* A bound datagram socket standing in for the service manager's. */
struct manager {
	int fd;
	char name[108];       /* what NOTIFY_SOCKET would say */
	char dir[64];         /* a path socket's directory, "" for abstract */
};

static void
manager_bind_path(struct manager *m)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	strcpy(m->dir, "/tmp/kaproxy-test-notify.XXXXXX");
	assert_non_null(mkdtemp(m->dir));
	snprintf(m->name, sizeof(m->name), "%s/notify", m->dir);
	strcpy(sa.sun_path, m->name);
	m->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(m->fd >= 0);
	assert_int_equal(bind(m->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
}

static void
manager_bind_abstract(struct manager *m)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len;

	m->dir[0] = '\0';
	snprintf(m->name, sizeof(m->name), "@kaproxy-test-notify-%ld-%d", (long)getpid(), rand());
	len = strlen(m->name);
	memcpy(sa.sun_path + 1, m->name + 1, len - 1);   /* sun_path[0] stays NUL */
	m->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(m->fd >= 0);
	assert_int_equal(bind(m->fd, (struct sockaddr *)&sa,
	    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)), 0);
}

/* As cmocka's setup and teardown, so a failed assertion leaves nothing behind. */
static int
manager_setup(void **state, void (*bind)(struct manager *))
{
	struct manager *m = calloc(1, sizeof(*m));

	assert_non_null(m);
	m->fd = -1;
	*state = m;
	bind(m);
	return 0;
}

static int
setup_path(void **state)
{
	return manager_setup(state, manager_bind_path);
}

static int
setup_abstract(void **state)
{
	return manager_setup(state, manager_bind_abstract);
}

static int
teardown(void **state)
{
	struct manager *m = *state;

	if (m == NULL)
		return 0;
	if (m->fd != -1)
		close(m->fd);
	if (m->dir[0] != '\0') {
		unlink(m->name);
		rmdir(m->dir);
	}
	free(m);
	return 0;
}

/* The next datagram, waiting at most 2 s; its text NUL-terminated in buf. */
static void
manager_recv(struct manager *m, char *buf, size_t size)
{
	struct timeval tv = { .tv_sec = 2 };
	ssize_t n;

	assert_int_equal(setsockopt(m->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	n = recv(m->fd, buf, size - 1, 0);
	assert_true(n >= 0);
	buf[n] = '\0';
}

static void
manager_expect(struct manager *m, const char *text)
{
	char buf[1024];

	manager_recv(m, buf, sizeof(buf));
	assert_string_equal(buf, text);
}

/* Nothing is waiting on m's socket. */
static void
manager_expect_nothing(struct manager *m)
{
	char buf[16];

	assert_int_equal(recv(m->fd, buf, sizeof(buf), MSG_DONTWAIT), -1);
	assert_int_equal(errno, EAGAIN);
}

static uint64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Every message kaproxy sends, in the form the manager parses. */
static void
check_every_message(struct manager *m)
{
	struct notify *n = notify_open(m->name);
	unsigned long long usec;
	uint64_t before, after;
	char buf[256];

	assert_non_null(n);
	assert_int_equal(notify_ready(n, "0 connections, 2 listeners"), 0);
	manager_expect(m, "READY=1\nSTATUS=0 connections, 2 listeners\n");
	assert_int_equal(notify_ready(n, NULL), 0);
	manager_expect(m, "READY=1\n");

	before = now_us();
	assert_int_equal(notify_reloading(n), 0);
	after = now_us();
	manager_recv(m, buf, sizeof(buf));
	assert_int_equal(sscanf(buf, "RELOADING=1\nMONOTONIC_USEC=%llu\n", &usec), 1);
	assert_true(usec >= before && usec <= after);
	assert_int_equal(buf[strlen(buf) - 1], '\n');

	assert_int_equal(notify_status(n, "1 connection, 2 listeners"), 0);
	manager_expect(m, "STATUS=1 connection, 2 listeners\n");
	assert_int_equal(notify_stopping(n, "draining"), 0);
	manager_expect(m, "STOPPING=1\nSTATUS=draining\n");
	assert_int_equal(notify_stopping(n, NULL), 0);
	manager_expect(m, "STOPPING=1\n");
	assert_int_equal(notify_mainpid(n, 4242, NULL), 0);
	manager_expect(m, "MAINPID=4242\nREADY=1\n");
	assert_int_equal(notify_mainpid(n, 4243, "handed over"), 0);
	manager_expect(m, "MAINPID=4243\nREADY=1\nSTATUS=handed over\n");
	manager_expect_nothing(m);
	notify_free(n);
}

static void
test_path_socket(void **state)
{
	check_every_message(*state);
}

static void
test_abstract_socket(void **state)
{
	check_every_message(*state);
}

/* No NOTIFY_SOCKET: no notifier, and every call is a harmless no-op. */
static void
test_unset(void **state)
{
	(void)state;
	assert_null(notify_open(NULL));
	assert_null(notify_open(""));
	assert_int_equal(notify_ready(NULL, "x"), 0);
	assert_int_equal(notify_reloading(NULL), 0);
	assert_int_equal(notify_stopping(NULL, "x"), 0);
	assert_int_equal(notify_status(NULL, "x"), 0);
	assert_int_equal(notify_mainpid(NULL, 1, "x"), 0);
	notify_free(NULL);
}

/* A name of size - 1 bytes starting with first ('/' or '@'). */
static char *
long_name(char *buf, size_t size, char first)
{
	memset(buf, 'x', size - 1);
	buf[0] = first;
	buf[size - 1] = '\0';
	return buf;
}

static const char *open_name;

static void
open_and_free(void)
{
	struct notify *n = notify_open(open_name);

	assert_null(n);
	notify_free(n);
}

/*
 * Names that cannot be a socket address are refused, each with its reason,
 * down to one byte too long: a path needs its NUL within sun_path's 108.
 */
static void
test_unusable_names(void **state)
{
	char path[200], abstract[200], path108[109], abstract109[110];

	(void)state;
	open_name = "run/notify";
	assert_int_equal(stderr_lines_with(open_and_free, "neither an absolute path"), 1);
	open_name = "@";
	assert_int_equal(stderr_lines_with(open_and_free, "neither an absolute path"), 1);
	open_name = long_name(path, sizeof(path), '/');
	assert_int_equal(stderr_lines_with(open_and_free, "does not fit"), 1);
	open_name = long_name(abstract, sizeof(abstract), '@');
	assert_int_equal(stderr_lines_with(open_and_free, "does not fit"), 1);
	open_name = long_name(path108, sizeof(path108), '/');
	assert_int_equal(stderr_lines_with(open_and_free, "does not fit"), 1);
	open_name = long_name(abstract109, sizeof(abstract109), '@');
	assert_int_equal(stderr_lines_with(open_and_free, "does not fit"), 1);
}

/* The longest names that fit: 107 bytes of path (and its NUL), 108 of abstract. */
static void
test_longest_names(void **state)
{
	char path[108], abstract[109];
	struct notify *n;

	(void)state;
	n = notify_open(long_name(path, sizeof(path), '/'));
	assert_non_null(n);
	notify_free(n);
	n = notify_open(long_name(abstract, sizeof(abstract), '@'));
	assert_non_null(n);
	notify_free(n);
}

/* A status goes out when it changed, as one line, at most NOTIFY_STATUS_MAX long. */
static void
test_status_only_when_changed(void **state)
{
	char longest[NOTIFY_STATUS_MAX + 20], expect[NOTIFY_STATUS_MAX + 20];
	struct manager *m = *state;
	struct notify *n;

	n = notify_open(m->name);
	assert_non_null(n);
	assert_int_equal(notify_status(n, "3 connections, 1 listener"), 0);
	manager_expect(m, "STATUS=3 connections, 1 listener\n");
	assert_int_equal(notify_status(n, "3 connections, 1 listener"), 0);
	manager_expect_nothing(m);
	/* READY's status counts as sent. */
	assert_int_equal(notify_ready(n, "4 connections, 1 listener"), 0);
	manager_expect(m, "READY=1\nSTATUS=4 connections, 1 listener\n");
	assert_int_equal(notify_status(n, "4 connections, 1 listener"), 0);
	manager_expect_nothing(m);
	/* A newline cannot start a variable of its own. */
	assert_int_equal(notify_status(n, "two\nREADY=1"), 0);
	manager_expect(m, "STATUS=two READY=1\n");
	assert_int_equal(notify_status(n, "two\nREADY=1"), 0);
	manager_expect_nothing(m);
	memset(longest, 's', sizeof(longest) - 1);
	longest[sizeof(longest) - 1] = '\0';
	snprintf(expect, sizeof(expect), "STATUS=%.*s\n", NOTIFY_STATUS_MAX, longest);
	assert_int_equal(notify_status(n, longest), 0);
	manager_expect(m, expect);
	assert_int_equal(notify_status(n, longest), 0);
	manager_expect_nothing(m);
	notify_free(n);
}

static struct notify *failing;

static void
send_three(void)
{
	assert_int_equal(notify_ready(failing, "a"), -1);
	assert_int_equal(notify_stopping(failing, "c"), -1);
	assert_int_equal(notify_status(failing, "b"), -1);   /* the last status tried */
}

/* A manager that is gone: each send fails, one line says so, and it recovers. */
static void
test_failure_logged_once(void **state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct manager *m = *state;

	failing = notify_open(m->name);
	assert_non_null(failing);
	close(m->fd);         /* the file stays: ECONNREFUSED */
	m->fd = -1;
	assert_int_equal(stderr_lines_with(send_three, "cannot tell the service manager"), 1);
	assert_int_equal(stderr_lines_with(send_three, "cannot tell the service manager"), 0);
	/* Back at the same path: sends work again, a failed status was not taken as sent. */
	unlink(m->name);
	strcpy(sa.sun_path, m->name);
	m->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(m->fd >= 0);
	assert_int_equal(bind(m->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(notify_status(failing, "b"), 0);
	manager_expect(m, "STATUS=b\n");
	notify_free(failing);
}

/* A manager that does not read: a send fails at once rather than block the loop. */
static void
test_full_socket_never_blocks(void **state)
{
	struct manager *m = *state;
	struct notify *n;
	char status[32];
	int i, failed = -1;

	n = notify_open(m->name);
	assert_non_null(n);
	alarm(10);            /* a blocking send would hang here: SIGALRM fails the test */
	for (i = 0; i < 10000 && failed == -1; i++) {
		snprintf(status, sizeof(status), "%d connections", i);
		if (notify_status(n, status) == -1)
			failed = i;
	}
	alarm(0);
	assert_true(failed > 0);   /* the first ones were queued, then one failed */
	manager_expect(m, "STATUS=0 connections\n");
	notify_free(n);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_path_socket, setup_path, teardown),
		cmocka_unit_test_setup_teardown(test_abstract_socket, setup_abstract, teardown),
		cmocka_unit_test(test_unset),
		cmocka_unit_test(test_unusable_names),
		cmocka_unit_test(test_longest_names),
		cmocka_unit_test_setup_teardown(test_status_only_when_changed, setup_path, teardown),
		cmocka_unit_test_setup_teardown(test_failure_logged_once, setup_path, teardown),
		cmocka_unit_test_setup_teardown(test_full_socket_never_blocks, setup_path, teardown),
	};

	srand((unsigned)getpid());
	return cmocka_run_group_tests(tests, NULL, NULL);
}
