/*
 * worker: one event loop and everything it owns: its listeners (one
 * SO_REUSEPORT socket per listener when there are several workers),
 * sessions, pipe pool and counters.  Worker 0 runs on the main thread, the
 * others on their own threads; they share only struct process_shared and
 * config generations, never a session.
 */
#ifndef KAPROXY_WORKER_H
#define KAPROXY_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "kaproxy/config.h"
#include "kaproxy/pump.h"
#include "kaproxy/stats.h"

struct session;
struct session_cursor;
struct proxy_listener;

/*
 * A loaded config.  Every listener of every worker built from it holds a
 * reference, and so does the daemon while it is the current one; the last
 * reference frees it.  References move only at start, reload and listener
 * retirement, never per connection.
 */
struct generation {
	struct config *cfg;
	atomic_uint refs;
};

/* What all workers share: the connection cap, session ids, drain state. */
struct process_shared {
	atomic_uint active;            /* client connections over all workers */
	atomic_uint max_connections;   /* from the current config */
	atomic_uint_fast64_t next_id;  /* session ids, unique over all workers */
	atomic_bool draining;
	atomic_uint drained;           /* workers done draining */
	struct event *drained_notify;  /* on the main loop: activated per drained worker */
};

struct worker {
	struct event_base *base;
	pthread_t thread;               /* the thread running base's loop */
	struct process_shared *shared;
	unsigned index;
	bool reuseport;                 /* several workers bind the same addresses */
	LIST_HEAD(, session) sessions;
	LIST_HEAD(, session_cursor) cursors; /* admin walks in progress */
	LIST_HEAD(, proxy_listener) listeners;
	struct proxy_listener **pending;  /* prepared by a reload, not yet committed */
	size_t n_pending;
	uint32_t n_sessions;
	struct stats_list stats;
	struct pump_pool pipes;         /* for this loop's sessions' pumps */
	bool draining;
	bool drained;
	struct event *drain_deadline;
};

/* Set up w on base (w is zeroed first); returns 0 or -1. */
int worker_init(struct worker *w, struct event_base *base, struct process_shared *shared,
    unsigned index, bool reuseport);

/* Close every listener and pooled pipe, free counters; sessions must be gone. */
void worker_release(struct worker *w);

/*
 * Stop accepting and close each session as it ends; when none is left (or
 * after timeout_ms, closing the rest with reason shutdown) leave the loop.
 */
void worker_drain(struct worker *w, uint32_t timeout_ms);

/*
 * Run fn(w, arg) on w's loop thread and wait for it to return (at once when
 * called from w's own thread).  It allocates nothing and cannot fail; it
 * waits as long as fn takes, so it is for the control plane (reload, drain,
 * shut-down), never for serving requests.  The loops run until the daemon
 * has stopped calling, so this cannot wait on a loop that is gone.
 */
void worker_call(struct worker *w, void (*fn)(struct worker *, void *), void *arg);

/*
 * A piece of work another thread (the admin endpoint) hands to a worker, run
 * on the worker's own loop in steps so that it never holds forwarding up for
 * long: step() runs on w's thread and returns true when the job is finished,
 * false to be called again once the loop has polled for I/O.  When it is
 * finished, done() runs on w's thread, right after the last step.  The caller
 * owns job and keeps it until done() has run or worker_job_cancel() returned.
 */
struct worker_job {
	struct event ev;              /* a zero timer on w's loop */
	struct worker *w;
	bool (*step)(struct worker *w, struct worker_job *job);
	void (*done)(struct worker_job *job);
};

/* Queue job's first step on w's loop; returns 0, or -1 (logged). */
int worker_job_start(struct worker *w, struct worker_job *job,
    bool (*step)(struct worker *, struct worker_job *), void (*done)(struct worker_job *));

/*
 * Withdraw a job that may not have finished: afterwards no step or done of it
 * runs or will run (a step running on w's thread now is waited for).  Never
 * call it from w's own thread.
 */
void worker_job_cancel(struct worker_job *job);

/* As worker_call without waiting (fn runs later, arg must outlive it). */
int worker_post(struct worker *w, void (*fn)(struct worker *, void *), void *arg);

/* True when called from w's loop thread. */
bool worker_is_current(const struct worker *w);

/*
 * Put gen's listeners on all n workers, or on none: every worker prepares
 * what can fail (listener_prepare, on its own thread), and only when all have
 * succeeded do they all commit; otherwise the prepared ones abort.  Returns
 * 0, or -1 (logged) with every worker as it was.  Control plane only (it
 * waits on each worker with worker_call).
 */
int worker_apply_all(struct worker *workers, unsigned n, struct generation *gen);

/* A new generation owning cfg, with one reference for the caller (NULL on ENOMEM). */
struct generation *generation_new(struct config *cfg);
void generation_ref(struct generation *gen);
/* Drop a reference; the last one frees gen and its config. */
void generation_unref(struct generation *gen);

/* Called by session code when a session is freed. */
void worker_session_gone(struct worker *w);

#endif
