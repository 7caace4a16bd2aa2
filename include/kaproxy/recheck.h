/*
 * recheck: the upstream addresses that are suspect (upstream_recheck_on_death),
 * shared by every worker.
 *
 * A worker marks an address when one of its upstream legs dies by timeout
 * or a connect to it fails; every worker is then woken (its wake event made
 * active) to re-probe its own idle connections to that address (session.c),
 * and new clients start on other upstreams.  An address stops being suspect
 * when a connect to it succeeds: a client's, or, for an address that a
 * listener with other upstreams avoids (where no client would go), a trial
 * one that the workers' recheck ticks make about once a second
 * (recheck_trial_*).
 *
 * The table lives in struct process_shared and is usable zeroed, as tests
 * build that struct; it is guarded by a spinlock held only to copy a few
 * entries, and the suspect count is read without it, so a process with no
 * suspect pays one relaxed load per connect.
 */
#ifndef KAPROXY_RECHECK_H
#define KAPROXY_RECHECK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "kaproxy/endpoint.h"

#define RECHECK_SUSPECTS_MAX 32   /* addresses suspect at once; more are not marked */
#define RECHECK_WORKERS_MAX 256   /* as config's workers */
#define RECHECK_TRIAL_EVERY_MS 1000

struct recheck_suspect {
	struct endpoint ep;
	uint64_t seq;              /* 0: free slot; else when it was marked (table->seq) */
	uint64_t next_trial_ms;    /* monotonic */
	uint32_t connect_timeout_ms;
	bool trial;                /* avoided by some listener: trial connects clear it */
	bool trial_busy;           /* a worker is connecting to it now */
};

struct recheck_table {
	atomic_flag lock;
	uint32_t n_suspect;        /* __atomic: read without the lock */
	uint64_t seq;              /* marks so far */
	struct recheck_suspect suspects[RECHECK_SUSPECTS_MAX];
	struct event *wake[RECHECK_WORKERS_MAX];   /* by worker index; NULL: none */
};

/* Register (wake != NULL) or withdraw worker index's wake event; start-up and exit only. */
void recheck_attach(struct recheck_table *t, unsigned index, struct event *wake);

/* How many addresses are suspect now (any thread). */
unsigned recheck_count(const struct recheck_table *t);

/*
 * ep was found dead: mark it suspect and wake every worker.  Returns true
 * when it was not suspect yet (then the workers are woken), false when it
 * already was or the table is full.  trial: the marking listener has other
 * upstreams, so new clients will avoid ep and only trial connects can clear
 * it (sticks once set while ep stays suspect).  Any worker's thread.
 */
bool recheck_mark(struct recheck_table *t, const struct endpoint *ep, uint32_t connect_timeout_ms,
    bool trial);

/* A connect to ep succeeded: it is not suspect any more.  Cheap when nothing is. */
void recheck_clear(struct recheck_table *t, const struct endpoint *ep);

/* Whether ep is suspect now.  Cheap when nothing is. */
bool recheck_is_suspect(struct recheck_table *t, const struct endpoint *ep);

/*
 * As recheck_is_suspect, for a caller that sends a client elsewhere when it
 * is: from then on trial connects are what can clear ep.
 */
bool recheck_avoid(struct recheck_table *t, const struct endpoint *ep);

/*
 * The addresses marked since *seen (a worker's own cursor, 0 at first),
 * copied into out (at most max); *seen moves to the latest mark.  Returns
 * how many were copied.
 */
size_t recheck_marked_since(struct recheck_table *t, uint64_t *seen, struct endpoint *out,
    size_t max);

/*
 * A worker's trial connect to a suspect address: at most one in flight per
 * worker and one per address over all workers.  recheck_trial_tick starts one
 * when a suspect address is due (every RECHECK_TRIAL_EVERY_MS); its
 * completion clears the address or makes it due again later.  On the
 * worker's loop thread; recheck_trial_cancel at the worker's end.
 */
struct recheck_trial {
	struct event ev;
	struct recheck_table *table;
	int fd;                    /* -1: idle */
	unsigned slot;
	uint64_t seq;              /* the mark it tests: a slot reused meanwhile is left alone */
};

void recheck_trial_init(struct recheck_trial *trial, struct recheck_table *table);
void recheck_trial_tick(struct recheck_trial *trial, struct event_base *base);
void recheck_trial_cancel(struct recheck_trial *trial);

#endif
