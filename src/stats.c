/*
 * stats: the per-listener counter registry and histogram arithmetic.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "kaproxy/stats.h"

const double stats_connect_bounds[STATS_CONNECT_BUCKETS] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1,
};

const double stats_detect_bounds[STATS_DETECT_BUCKETS] = {
	0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 7200,
};

struct listener_stats *
stats_for(struct stats_list *list, const char *name)
{
	struct listener_stats *st;

	LIST_FOREACH(st, list, entry)
		if (strcmp(st->name, name) == 0)
			return st;
	st = calloc(1, sizeof(*st));
	if (st == NULL)
		return NULL;
	strncpy(st->name, name, sizeof(st->name) - 1);
	LIST_INSERT_HEAD(list, st, entry);
	return st;
}

void
stats_free_all(struct stats_list *list)
{
	struct listener_stats *st;

	while ((st = LIST_FIRST(list)) != NULL) {
		LIST_REMOVE(st, entry);
		free(st);
	}
}

void
stats_observe(struct histogram *h, const double *bounds, size_t n_bounds, double value)
{
	size_t i;

	double sum;

	/* Single writer (the owning worker); scrapes read with relaxed loads. */
	STAT_ADD(h->count, 1);
	__atomic_load(&h->sum, &sum, __ATOMIC_RELAXED);
	sum += value;
	__atomic_store(&h->sum, &sum, __ATOMIC_RELAXED);
	/* Stored per bucket (not cumulative) so observing stays O(buckets). */
	for (i = 0; i < n_bounds; i++)
		if (value <= bounds[i])
			break;
	STAT_ADD(h->buckets[i], 1);
}

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

static void
histogram_merge(struct histogram *dst, const struct histogram *src)
{
	double sum;
	size_t i;

	dst->count += LOAD(src->count);
	__atomic_load(&src->sum, &sum, __ATOMIC_RELAXED);
	dst->sum += sum;
	for (i = 0; i < sizeof(dst->buckets) / sizeof(dst->buckets[0]); i++)
		dst->buckets[i] += LOAD(src->buckets[i]);
}

int
stats_merge(struct stats_list *dst, const struct stats_list *src)
{
	const struct listener_stats *from;
	struct listener_stats *to;
	int i;

	LIST_FOREACH(from, src, entry) {
		to = stats_for(dst, from->name);
		if (to == NULL)
			return -1;
		to->active += LOAD(from->active);
		to->accepted += LOAD(from->accepted);
		for (i = 0; i < REASON_COUNT; i++)
			to->closed[i] += LOAD(from->closed[i]);
		for (i = 0; i < REFUSE_COUNT; i++)
			to->refused[i] += LOAD(from->refused[i]);
		to->bytes_from_client += LOAD(from->bytes_from_client);
		to->bytes_to_client += LOAD(from->bytes_to_client);
		for (i = 0; i < STATS_RECHECK_RESULTS; i++)
			to->rechecks[i] += LOAD(from->rechecks[i]);
		histogram_merge(&to->connect_seconds, &from->connect_seconds);
		histogram_merge(&to->detect_seconds[0], &from->detect_seconds[0]);
		histogram_merge(&to->detect_seconds[1], &from->detect_seconds[1]);
	}
	return 0;
}

const char *
stats_refuse_name(enum refuse_reason reason)
{
	switch (reason) {
	case REFUSE_MAX_CONNECTIONS:
		return "max_connections";
	case REFUSE_DRAINING:
		return "draining";
	default:
		return "error";
	}
}

/* Prometheus text being written; the first failed append is remembered. */
struct prom {
	struct evbuffer *out;
	int failed;
};

static void emit(struct prom *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
emit(struct prom *p, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (evbuffer_add_vprintf(p->out, fmt, ap) == -1)
		p->failed = 1;
	va_end(ap);
}

int
stats_label_escape(struct evbuffer *out, const char *s)
{
	const char *p;
	int rc = 0;

	for (p = s; *p != '\0' && rc == 0; p++) {
		switch (*p) {
		case '\\':
			rc = evbuffer_add(out, "\\\\", 2);
			break;
		case '"':
			rc = evbuffer_add(out, "\\\"", 2);
			break;
		case '\n':
			rc = evbuffer_add(out, "\\n", 2);
			break;
		default:
			rc = evbuffer_add(out, p, 1);
		}
	}
	return rc;
}

static void
label(struct prom *p, const char *value)
{
	if (stats_label_escape(p->out, value) == -1)
		p->failed = 1;
}

static void
family(struct prom *p, const char *name, const char *type, const char *help)
{
	emit(p, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{listener="L"<extra>} value */
static void
sample(struct prom *p, const char *name, const char *listener, const char *extra,
    uint64_t value)
{
	emit(p, "%s{listener=\"", name);
	label(p, listener);
	emit(p, "\"%s} %llu\n", extra, (unsigned long long)value);
}

static void
histogram(struct prom *p, const char *name, const char *listener, const char *extra,
    const struct histogram *h, const double *bounds, size_t n_bounds)
{
	uint64_t cumulative = 0;
	size_t i;

	for (i = 0; i <= n_bounds; i++) {
		cumulative += h->buckets[i];
		emit(p, "%s_bucket{listener=\"", name);
		label(p, listener);
		if (i < n_bounds)
			emit(p, "\"%s,le=\"%g\"} %llu\n", extra, bounds[i],
			    (unsigned long long)cumulative);
		else
			emit(p, "\"%s,le=\"+Inf\"} %llu\n", extra, (unsigned long long)cumulative);
	}
	emit(p, "%s_sum{listener=\"", name);
	label(p, listener);
	emit(p, "\"%s} %.6f\n", extra, h->sum);
	emit(p, "%s_count{listener=\"", name);
	label(p, listener);
	emit(p, "\"%s} %llu\n", extra, (unsigned long long)h->count);
}

int
stats_render_prometheus(const struct stats_list *list, const struct stats_process *proc,
    struct evbuffer *out)
{
	struct prom prom = { .out = out }, *p = &prom;
	const struct listener_stats *st;
	char extra[64];
	int r;

	family(p, "kaproxy_build_info", "gauge", "kaproxy version, value 1.");
	emit(p, "kaproxy_build_info{version=\"%s\"} 1\n", proc->version);
	family(p, "kaproxy_config_reloads_total", "counter",
	    "Configuration reloads (SIGHUP) by result.");
	emit(p, "kaproxy_config_reloads_total{result=\"success\"} %llu\n",
	    (unsigned long long)__atomic_load_n(&proc->reloads_ok, __ATOMIC_RELAXED));
	emit(p, "kaproxy_config_reloads_total{result=\"failure\"} %llu\n",
	    (unsigned long long)__atomic_load_n(&proc->reloads_failed, __ATOMIC_RELAXED));

	family(p, "kaproxy_connections_active", "gauge", "Client connections open now.");
	LIST_FOREACH(st, list, entry)
		sample(p, "kaproxy_connections_active", st->name, "", st->active);
	family(p, "kaproxy_connections_total", "counter", "Client connections accepted.");
	LIST_FOREACH(st, list, entry)
		sample(p, "kaproxy_connections_total", st->name, "", st->accepted);
	family(p, "kaproxy_connections_closed_total", "counter",
	    "Connections closed, by close_reason.");
	LIST_FOREACH(st, list, entry)
		for (r = REASON_NONE + 1; r < REASON_COUNT; r++) {
			snprintf(extra, sizeof(extra), ",reason=\"%s\"", reason_name(r));
			sample(p, "kaproxy_connections_closed_total", st->name, extra, st->closed[r]);
		}
	family(p, "kaproxy_connections_refused_total", "counter",
	    "Client connections reset at accept, by reason.");
	LIST_FOREACH(st, list, entry)
		for (r = 0; r < REFUSE_COUNT; r++) {
			snprintf(extra, sizeof(extra), ",reason=\"%s\"", stats_refuse_name(r));
			sample(p, "kaproxy_connections_refused_total", st->name, extra, st->refused[r]);
		}
	family(p, "kaproxy_bytes_total", "counter", "Bytes received from each peer and forwarded.");
	LIST_FOREACH(st, list, entry) {
		sample(p, "kaproxy_bytes_total", st->name, ",direction=\"from_client\"",
		    st->bytes_from_client);
		sample(p, "kaproxy_bytes_total", st->name, ",direction=\"to_client\"",
		    st->bytes_to_client);
	}
	family(p, "kaproxy_upstream_rechecks_total", "counter",
	    "Idle upstream legs re-probed because their address turned suspect, by result.");
	LIST_FOREACH(st, list, entry) {
		sample(p, "kaproxy_upstream_rechecks_total", st->name, ",result=\"alive\"",
		    st->rechecks[STATS_RECHECK_ALIVE]);
		sample(p, "kaproxy_upstream_rechecks_total", st->name, ",result=\"dead\"",
		    st->rechecks[STATS_RECHECK_DEAD]);
	}
	if (proc->upstreams_suspect != NULL) {
		family(p, "kaproxy_upstreams_suspect", "gauge",
		    "Upstream addresses suspect now (a connection died by timeout or a connect "
		    "failed, and no connect has succeeded since).");
		emit(p, "kaproxy_upstreams_suspect %u\n",
		    (unsigned)__atomic_load_n(proc->upstreams_suspect, __ATOMIC_RELAXED));
	}
	family(p, "kaproxy_upstream_connect_duration_seconds", "histogram",
	    "Time to establish the upstream connection.");
	LIST_FOREACH(st, list, entry)
		histogram(p, "kaproxy_upstream_connect_duration_seconds", st->name, "",
		    &st->connect_seconds, stats_connect_bounds, STATS_CONNECT_BUCKETS);
	family(p, "kaproxy_dead_peer_detection_seconds", "histogram",
	    "Time from a dead leg's last received segment to it being declared dead.");
	LIST_FOREACH(st, list, entry)
		for (r = SIDE_CLIENT; r <= SIDE_UPSTREAM; r++) {
			snprintf(extra, sizeof(extra), ",side=\"%s\"", reason_side_name(r));
			histogram(p, "kaproxy_dead_peer_detection_seconds", st->name, extra,
			    &st->detect_seconds[r], stats_detect_bounds, STATS_DETECT_BUCKETS);
		}
	return p->failed ? -1 : 0;
}
