/*
 * test_recheck: the table of suspect upstream addresses.
 *
 * Proves that marking an address wakes every attached worker once (not
 * again while it stays suspect), that each worker's cursor hands it each
 * mark exactly once, that a succeeded connect clears the address (and only
 * that one), that a full table refuses rather than overwrites, and that a
 * trial connect to an address that accepts clears it while one that is
 * refused leaves it suspect.  The trial runs on a real loop over loopback.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <event2/event.h>

#include "kaproxy/recheck.h"

static struct endpoint
ep(const char *text)
{
	struct endpoint e;

	assert_int_equal(endpoint_parse(text, &e), 0);
	return e;
}

static int woken[2];

static void
wake_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	woken[(int *)arg - woken]++;
}

static void
test_mark_wake_clear(void **state)
{
	static struct recheck_table table;   /* zeroed, as in process_shared */
	struct event_base *base = event_base_new();
	struct event wake[2];
	struct endpoint a = ep("192.0.2.1:80"), b = ep("192.0.2.2:80"), out[4];
	uint64_t seen0 = 0, seen1 = 0;

	(void)state;
	assert_non_null(base);
	memset(woken, 0, sizeof(woken));
	for (int i = 0; i < 2; i++) {
		event_assign(&wake[i], base, -1, 0, wake_cb, &woken[i]);
		recheck_attach(&table, (unsigned)i, &wake[i]);
	}
	assert_false(recheck_is_suspect(&table, &a));
	assert_true(recheck_mark(&table, &a, 1000, true));
	assert_false(recheck_mark(&table, &a, 1000, true));   /* already suspect: no second wake */
	assert_int_equal(recheck_count(&table), 1);
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(woken[0], 1);
	assert_int_equal(woken[1], 1);
	assert_true(recheck_is_suspect(&table, &a));
	assert_false(recheck_is_suspect(&table, &b));

	assert_int_equal(recheck_marked_since(&table, &seen0, out, 4), 1);
	assert_true(endpoint_equal(&out[0], &a));
	assert_int_equal(recheck_marked_since(&table, &seen0, out, 4), 0);   /* once each */
	assert_true(recheck_mark(&table, &b, 1000, true));
	assert_int_equal(recheck_marked_since(&table, &seen0, out, 4), 1);
	assert_true(endpoint_equal(&out[0], &b));
	assert_int_equal(recheck_marked_since(&table, &seen1, out, 4), 2);    /* its own cursor */

	recheck_clear(&table, &a);
	assert_false(recheck_is_suspect(&table, &a));
	assert_true(recheck_is_suspect(&table, &b));
	assert_int_equal(recheck_count(&table), 1);
	recheck_clear(&table, &a);                      /* not suspect: nothing */
	assert_int_equal(recheck_count(&table), 1);
	assert_true(recheck_mark(&table, &a, 1000, true));    /* suspect again: a new mark */
	assert_int_equal(recheck_marked_since(&table, &seen1, out, 4), 1);

	for (int i = 0; i < 2; i++)
		recheck_attach(&table, (unsigned)i, NULL);
	event_base_free(base);
}

static void
test_full_table(void **state)
{
	static struct recheck_table table;
	struct endpoint e;
	char text[32];
	int i;

	(void)state;
	for (i = 0; i < RECHECK_SUSPECTS_MAX; i++) {
		snprintf(text, sizeof(text), "192.0.2.%d:80", i + 1);
		e = ep(text);
		assert_true(recheck_mark(&table, &e, 1000, true));
	}
	e = ep("198.51.100.1:80");
	assert_false(recheck_mark(&table, &e, 1000, true));
	assert_false(recheck_is_suspect(&table, &e));
	assert_int_equal(recheck_count(&table), RECHECK_SUSPECTS_MAX);
	e = ep("192.0.2.1:80");
	assert_true(recheck_is_suspect(&table, &e));   /* the marked ones were kept */
}

/* A loopback listener's address, and a closed port's. */
static int
listening(struct endpoint *e, bool listen_on)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	if (listen_on)
		assert_int_equal(listen(fd, 4), 0);
	memset(e, 0, sizeof(*e));
	memcpy(&e->addr, &sin, sizeof(sin));
	e->len = sizeof(sin);
	snprintf(e->text, sizeof(e->text), "127.0.0.1:%u", ntohs(sin.sin_port));
	return fd;
}

/* Run base until the trial has ended (bounded: the connect is to loopback). */
static void
run_trial(struct recheck_trial *trial, struct event_base *base)
{
	int i;

	for (i = 0; i < 200 && trial->fd >= 0; i++)
		event_base_loop(base, EVLOOP_ONCE);
	assert_true(trial->fd < 0);
}

static void
test_trial_connect(void **state)
{
	static struct recheck_table table;
	struct event_base *base = event_base_new();
	struct recheck_trial trial;
	struct endpoint up, down;
	int up_fd = listening(&up, true), down_fd = listening(&down, false);

	(void)state;
	assert_non_null(base);
	recheck_trial_init(&trial, &table);
	assert_true(recheck_mark(&table, &down, 1000, true));
	recheck_trial_tick(&trial, base);
	assert_true(trial.fd < 0);           /* not due yet: the first trial waits a second */
	table.suspects[0].next_trial_ms = 0; /* make it due */
	recheck_trial_tick(&trial, base);
	if (trial.fd >= 0)
		run_trial(&trial, base);
	assert_true(recheck_is_suspect(&table, &down));   /* refused: still suspect */
	assert_false(table.suspects[0].trial_busy);

	assert_true(recheck_mark(&table, &up, 1000, true));
	table.suspects[1].next_trial_ms = 0;
	recheck_trial_tick(&trial, base);
	if (trial.fd >= 0)
		run_trial(&trial, base);
	assert_false(recheck_is_suspect(&table, &up));    /* accepted: cleared */
	assert_true(recheck_is_suspect(&table, &down));

	/* Marked by a listener with no other upstream: its clients clear it, no trial. */
	recheck_clear(&table, &down);
	assert_true(recheck_mark(&table, &down, 1000, false));
	table.suspects[0].next_trial_ms = 0;
	recheck_trial_tick(&trial, base);
	assert_true(trial.fd < 0);
	assert_true(recheck_avoid(&table, &down));   /* a listener with other upstreams avoids it */
	recheck_trial_tick(&trial, base);
	if (trial.fd >= 0)
		run_trial(&trial, base);
	else
		assert_false(table.suspects[0].trial_busy);
	assert_true(recheck_is_suspect(&table, &down));
	close(up_fd);
	close(down_fd);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mark_wake_clear),
		cmocka_unit_test(test_full_table),
		cmocka_unit_test(test_trial_connect),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
