/*
 * Goal: the Prometheus exposition is well formed: label values escaped,
 * histogram buckets cumulative and ending in +Inf == _count, every family
 * the admin endpoint promises present.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "kaproxy/stats.h"

static const uint32_t two_suspect = 2;

static char *
render(struct stats_list *list)
{
	struct stats_process proc = { .version = "9.9.9", .reloads_ok = 2, .reloads_failed = 1,
		.upstreams_suspect = &two_suspect };
	struct evbuffer *out = evbuffer_new();
	size_t len;
	char *text;

	assert_non_null(out);
	assert_int_equal(stats_render_prometheus(list, &proc, out), 0);
	len = evbuffer_get_length(out);
	text = malloc(len + 1);
	assert_non_null(text);
	evbuffer_remove(out, text, len);
	text[len] = '\0';
	evbuffer_free(out);
	return text;
}

static void
test_label_escaping(void **state)
{
	struct evbuffer *out = evbuffer_new();
	char buf[64];
	size_t len;

	(void)state;
	stats_label_escape(out, "a\"b\\c\nd");
	len = evbuffer_get_length(out);
	evbuffer_remove(out, buf, len);
	buf[len] = '\0';
	assert_string_equal(buf, "a\\\"b\\\\c\\nd");
	evbuffer_free(out);
}

static void
test_histogram_cumulative(void **state)
{
	struct stats_list list = LIST_HEAD_INITIALIZER(list);
	struct listener_stats *st;
	char *text;

	(void)state;
	st = stats_for(&list, "legacy");
	assert_non_null(st);
	assert_ptr_equal(stats_for(&list, "legacy"), st);
	stats_observe(&st->detect_seconds[SIDE_UPSTREAM], stats_detect_bounds,
	    STATS_DETECT_BUCKETS, 0.3);
	stats_observe(&st->detect_seconds[SIDE_UPSTREAM], stats_detect_bounds,
	    STATS_DETECT_BUCKETS, 4.0);
	stats_observe(&st->detect_seconds[SIDE_UPSTREAM], stats_detect_bounds,
	    STATS_DETECT_BUCKETS, 99999.0);
	text = render(&list);
	assert_non_null(strstr(text,
	    "kaproxy_dead_peer_detection_seconds_bucket{listener=\"legacy\",side=\"upstream\",le=\"0.5\"} 1\n"));
	assert_non_null(strstr(text,
	    "kaproxy_dead_peer_detection_seconds_bucket{listener=\"legacy\",side=\"upstream\",le=\"2\"} 1\n"));
	assert_non_null(strstr(text,
	    "kaproxy_dead_peer_detection_seconds_bucket{listener=\"legacy\",side=\"upstream\",le=\"5\"} 2\n"));
	assert_non_null(strstr(text,
	    "kaproxy_dead_peer_detection_seconds_bucket{listener=\"legacy\",side=\"upstream\",le=\"7200\"} 2\n"));
	assert_non_null(strstr(text,
	    "kaproxy_dead_peer_detection_seconds_bucket{listener=\"legacy\",side=\"upstream\",le=\"+Inf\"} 3\n"));
	assert_non_null(strstr(text,
	    "kaproxy_dead_peer_detection_seconds_count{listener=\"legacy\",side=\"upstream\"} 3\n"));
	assert_non_null(strstr(text,
	    "kaproxy_dead_peer_detection_seconds_sum{listener=\"legacy\",side=\"upstream\"} 100003.300000\n"));
	assert_non_null(strstr(text,
	    "kaproxy_dead_peer_detection_seconds_count{listener=\"legacy\",side=\"client\"} 0\n"));
	free(text);
	stats_free_all(&list);
}

static void
test_required_families(void **state)
{
	static const char *const required[] = {
		"# TYPE kaproxy_connections_active gauge\n",
		"# TYPE kaproxy_connections_total counter\n",
		"# TYPE kaproxy_connections_closed_total counter\n",
		"# TYPE kaproxy_connections_refused_total counter\n",
		"# TYPE kaproxy_bytes_total counter\n",
		"# TYPE kaproxy_upstream_connect_duration_seconds histogram\n",
		"# TYPE kaproxy_dead_peer_detection_seconds histogram\n",
		"# TYPE kaproxy_config_reloads_total counter\n",
		"# TYPE kaproxy_upstream_rechecks_total counter\n",
		"# TYPE kaproxy_upstreams_suspect gauge\n",
		"kaproxy_upstream_rechecks_total{listener=\"x\",result=\"alive\"} 4\n",
		"kaproxy_upstream_rechecks_total{listener=\"x\",result=\"dead\"} 6\n",
		"kaproxy_upstreams_suspect 2\n",
		"kaproxy_config_reloads_total{result=\"success\"} 2\n",
		"kaproxy_config_reloads_total{result=\"failure\"} 1\n",
		"kaproxy_build_info{version=\"9.9.9\"} 1\n",
		"kaproxy_connections_closed_total{listener=\"x\",reason=\"upstream_timeout\"} 7\n",
		"kaproxy_connections_refused_total{listener=\"x\",reason=\"max_connections\"} 3\n",
		"kaproxy_bytes_total{listener=\"x\",direction=\"from_client\"} 100\n",
		"kaproxy_connections_active{listener=\"x\"} 5\n",
	};
	struct stats_list list = LIST_HEAD_INITIALIZER(list);
	struct listener_stats *st = stats_for(&list, "x");
	char *text;
	size_t i;

	(void)state;
	st->closed[REASON_UPSTREAM_TIMEOUT] = 7;
	st->refused[REFUSE_MAX_CONNECTIONS] = 3;
	st->bytes_from_client = 100;
	st->active = 5;
	st->rechecks[STATS_RECHECK_ALIVE] = 4;
	st->rechecks[STATS_RECHECK_DEAD] = 6;
	text = render(&list);
	for (i = 0; i < sizeof(required) / sizeof(required[0]); i++)
		if (strstr(text, required[i]) == NULL)
			fail_msg("missing: %s", required[i]);
	free(text);
	stats_free_all(&list);
}

/* A buffer that refuses every append stands for ENOMEM: the render says so. */
static void
test_render_reports_failure(void **state)
{
	struct stats_list list = LIST_HEAD_INITIALIZER(list);
	struct stats_process proc = { .version = "t" };
	struct evbuffer *out = evbuffer_new();

	(void)state;
	assert_non_null(stats_for(&list, "a"));
	assert_non_null(out);
	assert_int_equal(evbuffer_freeze(out, 0), 0);
	assert_int_equal(stats_render_prometheus(&list, &proc, out), -1);
	assert_int_equal(stats_label_escape(out, "x"), -1);
	evbuffer_free(out);
	stats_free_all(&list);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_label_escaping),
		cmocka_unit_test(test_histogram_cumulative),
		cmocka_unit_test(test_required_families),
		cmocka_unit_test(test_render_reports_failure),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
