/*
 * stats: counters per listener, updated by the worker that owns them with
 * plain adds (no locks on the hot path), read at scrape time.
 */
#ifndef KAPROXY_STATS_H
#define KAPROXY_STATS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "kaproxy/config.h"
#include "kaproxy/reason.h"

/*
 * Add n to a counter that only this worker writes and any thread may read:
 * a plain add on x86-64 and arm64, yet no torn or data-raced read at scrape.
 */
#define STAT_ADD(counter, n) \
	__atomic_store_n(&(counter), __atomic_load_n(&(counter), __ATOMIC_RELAXED) + (n), \
	    __ATOMIC_RELAXED)

enum refuse_reason { REFUSE_MAX_CONNECTIONS, REFUSE_DRAINING, REFUSE_ERROR, REFUSE_COUNT };

/* How a re-probed upstream leg (upstream_recheck_on_death) turned out. */
enum recheck_result { STATS_RECHECK_ALIVE, STATS_RECHECK_DEAD, STATS_RECHECK_RESULTS };

/* Upper bounds (seconds) of the histogram buckets; +Inf is implicit. */
#define STATS_CONNECT_BUCKETS 10
#define STATS_DETECT_BUCKETS 12
extern const double stats_connect_bounds[STATS_CONNECT_BUCKETS];
extern const double stats_detect_bounds[STATS_DETECT_BUCKETS];

struct histogram {
	uint64_t count;
	double sum;
	uint64_t buckets[STATS_DETECT_BUCKETS + 1]; /* cumulative at render time */
};

/*
 * One listener's counters.  Kept by name for the life of the process, so a
 * reload that keeps a listener keeps its counters monotonic.
 */
struct listener_stats {
	LIST_ENTRY(listener_stats) entry;
	char name[CONFIG_NAME_MAX];
	uint64_t active;
	uint64_t accepted;
	uint64_t closed[REASON_COUNT];
	uint64_t refused[REFUSE_COUNT];
	uint64_t bytes_from_client;
	uint64_t bytes_to_client;
	uint64_t rechecks[STATS_RECHECK_RESULTS];
	struct histogram connect_seconds;
	struct histogram detect_seconds[2]; /* by enum side */
};

LIST_HEAD(stats_list, listener_stats);

/* The counters of listener name, created zeroed on first use (NULL on ENOMEM). */
struct listener_stats *stats_for(struct stats_list *list, const char *name);

/* Free every entry of list. */
void stats_free_all(struct stats_list *list);

/* Record one observation in a histogram with the given bucket bounds. */
void stats_observe(struct histogram *h, const double *bounds, size_t n_bounds, double value);

const char *stats_refuse_name(enum refuse_reason reason);



struct evbuffer;

/*
 * Process-wide figures that sit beside the per-listener counters: written by
 * the main thread with STAT_ADD, read by the admin thread at each scrape.
 */
struct stats_process {
	const char *version;
	uint64_t reloads_ok;
	uint64_t reloads_failed;
	const uint32_t *upstreams_suspect;  /* read with __atomic; NULL: not shown */
};

/*
 * Add every counter of src (read with relaxed loads: another thread may be
 * writing them) into the same-named entries of dst.  Returns 0 or -1 (ENOMEM).
 */
int stats_merge(struct stats_list *dst, const struct stats_list *src);

/*
 * Append the Prometheus text exposition (format 0.0.4) of every listener's
 * counters and the process figures to out.  Returns 0, or -1 on ENOMEM.
 */
int stats_render_prometheus(const struct stats_list *list, const struct stats_process *proc,
    struct evbuffer *out);

/* Append s to out escaped as a Prometheus label value; 0, or -1 on ENOMEM. */
int stats_label_escape(struct evbuffer *out, const char *s);
#endif
