/*
 * Goal: the access-log line is one valid JSON object with exactly the spec's
 * fields, escapes any listener name, and omits what does not apply.  A
 * reload that changes the file (or turns it off, or goes to stdout) closes
 * the file it replaces, an aborted or failed one opens nothing that stays,
 * a reopen keeps one descriptor; and lines written by other threads while
 * the file changes are all written whole, none to a closed descriptor.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "kaproxy/accesslog.h"
#include "harness.h"

static struct sockaddr_in client4;

static struct access_record
sample(void)
{
	struct access_record rec;

	memset(&client4, 0, sizeof(client4));
	client4.sin_family = AF_INET;
	client4.sin_port = htons(40112);
	inet_pton(AF_INET, "198.51.100.7", &client4.sin_addr);
	memset(&rec, 0, sizeof(rec));
	rec.ts_ms = 1795521600123ULL; /* 2026-11-24T12:00:00.123Z */
	rec.id = 42;
	rec.listener = "legacy";
	rec.client = (const struct sockaddr *)&client4;
	rec.upstream = "192.0.2.10:5432";
	rec.duration_ms = 1234;
	rec.bytes_from_client = 12;
	rec.bytes_to_client = 13;
	rec.reason = REASON_UPSTREAM_TIMEOUT;
	rec.teardown = TEARDOWN_RST;
	rec.err = ETIMEDOUT;
	rec.detect_ms = 4000;
	rec.peer_state = "silent";
	rec.stalled_ms = -1;
	return rec;
}

static void
test_full_line(void **state)
{
	struct access_record rec = sample();
	struct tcp_snapshot c = { .state = 1, .rtt_us = 50, .rttvar_us = 10, .total_retrans = 0,
		.probes = 0, .unacked = 0, .last_data_recv_ms = 5, .last_ack_recv_ms = 4,
		.last_data_sent_ms = 6, .snd_wnd = 65535 };
	struct tcp_snapshot u = { .state = 7, .probes = 3, .total_retrans = 2,
		.snd_wnd = TCP_SNAPSHOT_NO_WND };
	char buf[ACCESSLOG_LINE_MAX];
	size_t len;

	(void)state;
	rec.client_tcp = &c;
	rec.upstream_tcp = &u;
	len = accesslog_render(&rec, buf, sizeof(buf));
	assert_int_equal(len, strlen(buf));
	assert_string_equal(buf,
	    "{\"ts\":\"2026-11-24T12:00:00.123Z\",\"event\":\"close\",\"id\":42,\"listener\":\"legacy\","
	    "\"client\":\"198.51.100.7:40112\",\"upstream\":\"192.0.2.10:5432\","
	    "\"duration_ms\":1234,\"bytes_from_client\":12,\"bytes_to_client\":13,"
	    "\"close_reason\":\"upstream_timeout\",\"teardown\":\"rst\","
	    "\"detail\":\"Connection timed out\",\"detect_ms\":4000,\"peer_state\":\"silent\","
	    "\"client_tcp\":{\"state\":\"established\",\"rtt_us\":50,\"rttvar_us\":10,"
	    "\"retrans\":0,\"probes\":0,\"unacked\":0,\"last_data_recv_ms\":5,\"last_ack_recv_ms\":4,"
	    "\"last_data_sent_ms\":6,\"snd_wnd\":65535},"
	    "\"upstream_tcp\":{\"state\":\"close\",\"rtt_us\":0,\"rttvar_us\":0,"
	    "\"retrans\":2,\"probes\":3,\"unacked\":0,\"last_data_recv_ms\":0,\"last_ack_recv_ms\":0,"
	    "\"last_data_sent_ms\":0,\"snd_wnd\":null}}\n");
}

static void
test_progress_record(void **state)
{
	struct access_record rec = sample();
	struct tcp_snapshot c = { .state = 1, .snd_wnd = 1000 };
	char buf[ACCESSLOG_LINE_MAX];

	(void)state;
	rec.progress = true;
	rec.reason = REASON_NONE;
	rec.err = 0;
	rec.detect_ms = -1;
	rec.peer_state = NULL;
	rec.client_tcp = &c;
	rec.upstream_tcp = &c;
	accesslog_render(&rec, buf, sizeof(buf));
	assert_non_null(strstr(buf, "\"event\":\"progress\",\"id\":42,"));
	assert_non_null(strstr(buf, "\"bytes_to_client\":13,\"client_tcp\":{\"state\":\"established\""));
	/* Still open: no close_reason, no teardown. */
	assert_null(strstr(buf, "close_reason"));
	assert_null(strstr(buf, "teardown"));
	assert_null(strstr(buf, "\"close\""));
}

static void
test_not_reading_peer(void **state)
{
	struct access_record rec = sample();
	char buf[ACCESSLOG_LINE_MAX];

	(void)state;
	rec.detect_ms = 1024;
	rec.peer_state = "not_reading";
	rec.stalled_ms = 4260;
	accesslog_render(&rec, buf, sizeof(buf));
	assert_non_null(strstr(buf, ",\"detect_ms\":1024,\"peer_state\":\"not_reading\","
	    "\"stalled_ms\":4260,\"client_tcp\":null"));
}

static void
test_optional_fields_omitted(void **state)
{
	struct access_record rec = sample();
	char buf[ACCESSLOG_LINE_MAX];

	(void)state;
	rec.reason = REASON_CLIENT_FIN;
	rec.teardown = TEARDOWN_NONE;
	rec.err = 0;
	rec.detect_ms = -1;
	rec.peer_state = NULL;
	accesslog_render(&rec, buf, sizeof(buf));
	assert_null(strstr(buf, "detail"));
	assert_null(strstr(buf, "detect_ms"));
	assert_null(strstr(buf, "peer_state"));
	assert_null(strstr(buf, "stalled_ms"));
	/* Legs without figures are null, never missing. */
	assert_non_null(strstr(buf, "\"close_reason\":\"client_fin\",\"teardown\":\"none\","
	    "\"client_tcp\":null,\"upstream_tcp\":null}\n"));
}

static void
test_listener_name_escaped(void **state)
{
	struct access_record rec = sample();
	char buf[ACCESSLOG_LINE_MAX];

	(void)state;
	rec.listener = "a\"b\\c\td\x01";
	accesslog_render(&rec, buf, sizeof(buf));
	assert_non_null(strstr(buf, "\"listener\":\"a\\\"b\\\\c\\u0009d\\u0001\""));
}

static void
test_ipv6_client(void **state)
{
	struct access_record rec = sample();
	struct sockaddr_in6 c6;
	char buf[ACCESSLOG_LINE_MAX];

	(void)state;
	memset(&c6, 0, sizeof(c6));
	c6.sin6_family = AF_INET6;
	c6.sin6_port = htons(2000);
	inet_pton(AF_INET6, "2001:db8::1", &c6.sin6_addr);
	rec.client = (const struct sockaddr *)&c6;
	accesslog_render(&rec, buf, sizeof(buf));
	assert_non_null(strstr(buf, "\"client\":\"[2001:db8::1]:2000\""));
}

static void
test_small_buffer_still_one_closed_line(void **state)
{
	struct access_record rec = sample();
	char buf[64];
	size_t len;

	(void)state;
	len = accesslog_render(&rec, buf, sizeof(buf));
	assert_true(len < sizeof(buf));
	assert_int_equal(buf[len - 1], '\n');
	assert_int_equal(buf[len - 2], '}');
}

static void
write_three_lines(void)
{
	struct access_record rec = sample();
	int i;

	for (i = 0; i < 3; i++)
		accesslog_write(&rec);
}

/* A log that cannot be written (a full disk) is reported once, not per line. */
static void
test_failing_log_reported_once(void **state)
{
	(void)state;
	assert_int_equal(accesslog_open("/dev/full"), 0);
	assert_int_equal(stderr_lines_with(write_three_lines, "lines are lost"), 1);
	assert_int_equal(stderr_lines_with(write_three_lines, "lines are lost"), 0);
	accesslog_close();
	assert_int_equal(accesslog_open("/dev/null"), 0);
	assert_int_equal(stderr_lines_with(write_three_lines, "written again"), 1);
	accesslog_close();
}

/* Descriptors this process holds now. */
static int
fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	assert_non_null(d);
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n;
}

/* True when this process holds a descriptor on path. */
static bool
holds(const char *path)
{
	char link[300], target[4096];
	struct dirent *e;
	bool found = false;
	DIR *d = opendir("/proc/self/fd");
	ssize_t n;

	assert_non_null(d);
	while (!found && (e = readdir(d)) != NULL) {
		snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
		n = readlink(link, target, sizeof(target) - 1);
		if (n > 0) {
			target[n] = '\0';
			found = strcmp(target, path) == 0;
		}
	}
	closedir(d);
	return found;
}

/* Lines in path (0 when it does not exist); each must be a whole record. */
static long
lines_in(const char *path)
{
	char buf[ACCESSLOG_LINE_MAX];
	FILE *f = fopen(path, "r");
	long n = 0;

	if (f == NULL)
		return 0;
	while (fgets(buf, sizeof(buf), f) != NULL) {
		assert_int_equal(strncmp(buf, "{\"ts\":", 6), 0);
		assert_string_equal(buf + strlen(buf) - 2, "}\n");
		n++;
	}
	fclose(f);
	return n;
}

static char dir[] = "/tmp/kaproxy-test-accesslog.XXXXXX";
static char path_a[64], path_b[64], path_c[64];

static int
files_setup(void **state)
{
	(void)state;
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(path_a, sizeof(path_a), "%s/a.log", dir);
	snprintf(path_b, sizeof(path_b), "%s/b.log", dir);
	snprintf(path_c, sizeof(path_c), "%s/c.log", dir);
	return 0;
}

static int
files_teardown(void **state)
{
	char rotated[80];

	(void)state;
	snprintf(rotated, sizeof(rotated), "%s.1", path_a);
	unlink(path_a);
	unlink(rotated);
	unlink(path_b);
	unlink(path_c);
	return rmdir(dir);
}

static void
truncate_all(void)
{
	assert_int_equal(truncate(path_a, 0) == 0 || errno == ENOENT, 1);
	assert_int_equal(truncate(path_b, 0) == 0 || errno == ENOENT, 1);
	assert_int_equal(truncate(path_c, 0) == 0 || errno == ENOENT, 1);
}

/* What a reload does with the descriptor, for each kind of change. */
static void
test_reload_closes_the_replaced_file(void **state)
{
	struct access_record rec = sample();
	int before = fd_count();

	(void)state;
	truncate_all();
	assert_int_equal(accesslog_open(path_a), 0);
	assert_int_equal(fd_count(), before + 1);
	accesslog_write(&rec);

	/* Moved: the new file gets the lines, the old one is closed. */
	assert_int_equal(accesslog_prepare(path_b), 1);
	accesslog_commit();
	accesslog_write(&rec);
	assert_int_equal(fd_count(), before + 1);
	assert_false(holds(path_a));
	assert_true(holds(path_b));
	assert_int_equal(lines_in(path_a), 1);
	assert_int_equal(lines_in(path_b), 1);

	/* Unchanged: nothing opened. */
	assert_int_equal(accesslog_prepare(path_b), 0);
	accesslog_commit();
	assert_int_equal(fd_count(), before + 1);

	/* Prepared, then the reload failed elsewhere: nothing kept. */
	assert_int_equal(accesslog_prepare(path_c), 1);
	assert_int_equal(fd_count(), before + 2);
	accesslog_abort();
	assert_int_equal(fd_count(), before + 1);
	accesslog_write(&rec);
	assert_int_equal(lines_in(path_b), 2);

	/* A path that cannot be opened (a directory): refused, nothing kept. */
	assert_int_equal(accesslog_prepare(dir), -1);
	accesslog_commit();
	assert_int_equal(fd_count(), before + 1);
	assert_true(holds(path_b));

	/* To stdout, which is never closed, and off: no file held. */
	assert_int_equal(accesslog_prepare("-"), 1);
	accesslog_commit();
	assert_int_equal(fd_count(), before);
	assert_int_equal(accesslog_prepare(path_a), 1);
	accesslog_commit();
	assert_int_equal(accesslog_prepare(NULL), 1);
	accesslog_commit();
	assert_int_equal(fd_count(), before);
	assert_false(accesslog_enabled());
	assert_true(fcntl(STDOUT_FILENO, F_GETFD) != -1);

	accesslog_close();
	assert_int_equal(fd_count(), before);
}

/* SIGUSR1 after a rotation: the new file, still one descriptor. */
static void
test_reopen_keeps_one_descriptor(void **state)
{
	struct access_record rec = sample();
	char rotated[80];
	int before = fd_count();

	(void)state;
	truncate_all();
	snprintf(rotated, sizeof(rotated), "%s.1", path_a);
	assert_int_equal(accesslog_open(path_a), 0);
	accesslog_write(&rec);
	assert_int_equal(rename(path_a, rotated), 0);
	assert_int_equal(accesslog_reopen(), 0);
	accesslog_write(&rec);
	assert_int_equal(fd_count(), before + 1);
	assert_false(holds(rotated));
	assert_int_equal(lines_in(rotated), 1);
	assert_int_equal(lines_in(path_a), 1);
	accesslog_close();
	assert_int_equal(fd_count(), before);
}

#define WRITERS 2
#define LINES_PER_WRITER 20000

static atomic_int writers_done;

/* Writes arg's record (shared, read-only) LINES_PER_WRITER times. */
static void *
writer(void *arg)
{
	const struct access_record *rec = arg;
	int i;

	for (i = 0; i < LINES_PER_WRITER; i++)
		accesslog_write(rec);
	atomic_fetch_add(&writers_done, 1);
	return NULL;
}

/*
 * Workers write while the main thread moves the log from file to file, as
 * reloads do: every line is written whole to one of the files (none to a
 * closed or reused descriptor, none lost), and one descriptor is left.
 * Under ThreadSanitizer a close that could race a write is reported.
 */
static void
test_file_changes_while_threads_write(void **state)
{
	const char *paths[] = { path_a, path_b, path_c };
	struct access_record rec = sample();
	pthread_t threads[WRITERS];
	int before = fd_count(), i, changes = 0;

	(void)state;
	truncate_all();
	assert_int_equal(accesslog_open(path_a), 0);
	atomic_store(&writers_done, 0);
	for (i = 0; i < WRITERS; i++)
		assert_int_equal(pthread_create(&threads[i], NULL, writer, &rec), 0);
	while (atomic_load(&writers_done) < WRITERS || changes < 3) {
		changes++;
		assert_int_equal(accesslog_prepare(paths[changes % 3]), 1);
		accesslog_commit();
	}
	for (i = 0; i < WRITERS; i++)
		assert_int_equal(pthread_join(threads[i], NULL), 0);
	print_message("%d changes of file while %d threads wrote %d lines\n", changes, WRITERS,
	    WRITERS * LINES_PER_WRITER);
	assert_int_equal(fd_count(), before + 1);
	assert_int_equal(lines_in(path_a) + lines_in(path_b) + lines_in(path_c),
	    WRITERS * LINES_PER_WRITER);
	accesslog_close();
	assert_int_equal(fd_count(), before);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_line),
		cmocka_unit_test(test_not_reading_peer),
		cmocka_unit_test(test_progress_record),
		cmocka_unit_test(test_optional_fields_omitted),
		cmocka_unit_test(test_listener_name_escaped),
		cmocka_unit_test(test_ipv6_client),
		cmocka_unit_test(test_small_buffer_still_one_closed_line),
		cmocka_unit_test(test_failing_log_reported_once),
		cmocka_unit_test(test_reopen_keeps_one_descriptor),
		cmocka_unit_test(test_reload_closes_the_replaced_file),
		cmocka_unit_test(test_file_changes_while_threads_write),
	};

	return cmocka_run_group_tests(tests, files_setup, files_teardown);
}
