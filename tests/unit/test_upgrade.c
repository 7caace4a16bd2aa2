/*
 * Goal: the two ends of a binary upgrade keep their word.  The new process
 * takes exactly the listening sockets the environment names, matched by the
 * address the socket is bound to, each one once, refuses a list it cannot
 * trust (not ADDR=FD, not a socket, not listening) so that start-up fails
 * and the old process keeps serving, closes what it did not take, and says
 * ready with one byte.  The old process's child gets the sockets and the
 * pipe under the numbers the environment says, and a child that says ready,
 * exits first, or cannot be started is reported as such.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "kaproxy/endpoint.h"
#include "kaproxy/upgrade.h"
#include "harness.h"

/* A listening socket on an ephemeral loopback port, and its endpoint. */
static int
listening(struct endpoint *ep)
{
	struct sockaddr_in sa;
	int fd = loopback_bound(&sa);

	assert_int_equal(listen(fd, 8), 0);
	/* As kaproxy opens its own: not to be inherited unless handed over. */
	assert_int_equal(fcntl(fd, F_SETFD, FD_CLOEXEC), 0);
	memset(ep, 0, sizeof(*ep));
	memcpy(&ep->addr, &sa, sizeof(sa));
	ep->len = sizeof(sa);
	return fd;
}

static bool
is_open(int fd)
{
	return fcntl(fd, F_GETFD) != -1;
}

static void
test_not_an_upgrade(void **state)
{
	struct endpoint ep;
	int fd = listening(&ep);

	(void)state;
	unsetenv("KAPROXY_LISTEN_FDS");
	unsetenv("KAPROXY_UPGRADE_FD");
	assert_int_equal(upgrade_inherit(), 0);
	assert_false(upgrade_inherited());
	assert_int_equal(upgrade_take(&ep), -1);
	assert_int_equal(upgrade_ready(), 0);
	close(fd);
}

static void
test_takes_by_address_once_and_closes_the_rest(void **state)
{
	struct endpoint a, b;
	int fa = listening(&a), fb = listening(&b), p[2];
	char list[128], num[16], byte = 0;

	(void)state;
	assert_int_equal(pipe(p), 0);
	/* The labels are only labels: the bound address decides. */
	snprintf(list, sizeof(list), "first=%d,second=%d", fb, fa);
	snprintf(num, sizeof(num), "%d", p[1]);
	setenv("KAPROXY_LISTEN_FDS", list, 1);
	setenv("KAPROXY_UPGRADE_FD", num, 1);
	assert_int_equal(upgrade_inherit(), 0);
	assert_true(upgrade_inherited());
	assert_null(getenv("KAPROXY_LISTEN_FDS"));
	assert_null(getenv("KAPROXY_UPGRADE_FD"));
	assert_true(fcntl(fa, F_GETFD) & FD_CLOEXEC);
	assert_true(fcntl(fa, F_GETFL) & O_NONBLOCK);
	assert_int_equal(upgrade_take(&a), fa);
	assert_int_equal(upgrade_take(&a), -1);
	upgrade_close_unused();
	assert_true(is_open(fa));
	assert_false(is_open(fb));
	assert_int_equal(upgrade_take(&b), -1);
	assert_int_equal(upgrade_ready(), 0);
	assert_false(is_open(p[1]));
	assert_int_equal(read(p[0], &byte, 1), 1);
	assert_int_equal(byte, 'R');
	assert_int_equal(read(p[0], &byte, 1), 0);
	close(p[0]);
	close(fa);
}

/* list (with %d for a fd of the given kind) is refused, and nothing is taken. */
static void
refused(const char *list_fmt, int fd)
{
	struct endpoint ep;
	char list[128];
	int p[2], lfd = listening(&ep);

	assert_int_equal(pipe(p), 0);
	snprintf(list, sizeof(list), list_fmt, fd, lfd);
	setenv("KAPROXY_LISTEN_FDS", list, 1);
	setenv("KAPROXY_UPGRADE_FD", "1", 1);
	assert_int_equal(upgrade_inherit(), -1);
	assert_null(getenv("KAPROXY_LISTEN_FDS"));
	assert_int_equal(upgrade_take(&ep), -1);
	close(lfd);
	close(p[0]);
	close(p[1]);
}

static void
test_refuses_what_it_cannot_trust(void **state)
{
	int p[2], unbound;

	(void)state;
	assert_int_equal(pipe(p), 0);
	refused("nofd%d,a=%d", 0);                /* not ADDR=FD */
	refused("a=x%d,b=%d", 0);                 /* not a number */
	refused("a=%d,b=%d", p[0]);               /* a pipe, not a socket */
	unbound = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(unbound >= 0);
	refused("a=%d,b=%d", unbound);            /* a socket, not listening */
	close(unbound);
	close(p[0]);
	close(p[1]);
	/* No pipe to say ready on: refused too. */
	setenv("KAPROXY_LISTEN_FDS", "", 1);
	unsetenv("KAPROXY_UPGRADE_FD");
	assert_int_equal(upgrade_inherit(), -1);
}

/* --- the old process's side --- */

struct outcome {
	struct event_base *base;
	pid_t ready_pid;
	int failed;
};

static void
on_ready(pid_t pid, void *arg)
{
	struct outcome *o = arg;

	o->ready_pid = pid;
	event_base_loopbreak(o->base);
}

static void
on_failed(void *arg)
{
	struct outcome *o = arg;

	o->failed++;
	event_base_loopbreak(o->base);
}

/* Run until ready or failed, at most 5 s. */
static void
wait_outcome(struct outcome *o)
{
	struct timeval bound = { .tv_sec = 5 };

	event_base_loopexit(o->base, &bound);
	event_base_dispatch(o->base);
	assert_true(o->ready_pid != 0 || o->failed != 0);
}

static void
test_child_ready_with_the_sockets(void **state)
{
	struct outcome o = { .base = event_base_new() };
	struct upgrade *u;
	struct endpoint ep;
	char addr[ENDPOINT_TEXT_MAX], script[256];
	int fd = listening(&ep);
	char *argv[] = { "sh", "-c", script, NULL };

	(void)state;
	assert_non_null(o.base);
	endpoint_format((struct sockaddr *)&ep.addr, addr, sizeof(addr));
	/* Ready only if the list names the socket under its number and the fd is open there. */
	snprintf(script, sizeof(script),
	    "[ \"$KAPROXY_LISTEN_FDS\" = \"%s=%d\" ] && [ -e /proc/self/fd/%d ] && "
	    "printf R >&\"$KAPROXY_UPGRADE_FD\"", addr, fd, fd);
	u = upgrade_new(o.base, on_ready, on_failed, &o);
	assert_non_null(u);
	assert_int_equal(upgrade_add_socket(u, fd, addr), 0);
	assert_int_equal(upgrade_spawn(u, "/bin/sh", argv), 0);
	assert_true(upgrade_in_progress(u));
	wait_outcome(&o);
	assert_int_equal(o.failed, 0);
	assert_true(o.ready_pid > 0);
	assert_int_equal(upgrade_child(u), o.ready_pid);
	assert_false(upgrade_in_progress(u));
	/* The socket stays this process's: close-on-exec is cleared in the child only. */
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	upgrade_free(u);
	close(fd);
	event_base_free(o.base);
}

static void
test_child_that_exits_first_has_failed(void **state)
{
	struct outcome o = { .base = event_base_new() };
	char *argv[] = { "sh", "-c", "exit 3", NULL };
	struct upgrade *u;

	(void)state;
	u = upgrade_new(o.base, on_ready, on_failed, &o);
	assert_int_equal(upgrade_spawn(u, "/bin/sh", argv), 0);
	wait_outcome(&o);
	assert_int_equal(o.failed, 1);
	assert_int_equal(o.ready_pid, 0);
	assert_false(upgrade_in_progress(u));
	assert_int_equal(upgrade_child(u), 0);   /* reaped */
	upgrade_free(u);
	event_base_free(o.base);
}

static void
test_missing_binary_is_refused_at_once(void **state)
{
	struct outcome o = { .base = event_base_new() };
	char *argv[] = { "kaproxy", NULL };
	struct upgrade *u;

	(void)state;
	u = upgrade_new(o.base, on_ready, on_failed, &o);
	assert_int_equal(upgrade_spawn(u, "/nonexistent/kaproxy", argv), -1);
	assert_false(upgrade_in_progress(u));
	assert_int_equal(upgrade_child(u), 0);
	upgrade_free(u);
	upgrade_free(NULL);
	event_base_free(o.base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_not_an_upgrade),
		cmocka_unit_test(test_takes_by_address_once_and_closes_the_rest),
		cmocka_unit_test(test_refuses_what_it_cannot_trust),
		cmocka_unit_test(test_child_ready_with_the_sockets),
		cmocka_unit_test(test_child_that_exits_first_has_failed),
		cmocka_unit_test(test_missing_binary_is_refused_at_once),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
