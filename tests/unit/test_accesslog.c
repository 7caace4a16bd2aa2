/*
 * Goal: the access-log line is one valid JSON object with exactly the spec's
 * fields, escapes any listener name, and omits what does not apply.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kaproxy/accesslog.h"

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

/* Count the lines of stderr output that contain needle while fn runs. */
static int
stderr_lines_with(void (*fn)(void), const char *needle)
{
	char path[] = "/tmp/kaproxy-test-stderr.XXXXXX", buf[4096];
	int fd = mkstemp(path), saved = dup(STDERR_FILENO), count = 0;
	ssize_t n;
	char *p;

	assert_true(fd >= 0 && saved >= 0);
	assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	fn();
	assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
	close(saved);
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	assert_true(n >= 0);
	buf[n] = '\0';
	for (p = buf; (p = strstr(p, needle)) != NULL; p++)
		count++;
	close(fd);
	unlink(path);
	return count;
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_line),
		cmocka_unit_test(test_not_reading_peer),
		cmocka_unit_test(test_optional_fields_omitted),
		cmocka_unit_test(test_listener_name_escaped),
		cmocka_unit_test(test_ipv6_client),
		cmocka_unit_test(test_small_buffer_still_one_closed_line),
		cmocka_unit_test(test_failing_log_reported_once),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
