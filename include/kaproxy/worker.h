/*
 * worker: one event loop and everything it owns: its listeners (one
 * SO_REUSEPORT socket per listener when there are several workers),
 * sessions, pipe pool and counters.  Worker 0 runs on the main thread, the
 * others on their own threads; they share only struct process_shared and
 * config generations, never a session.  struct worker is this file's alone.
 */
#ifndef KAPROXY_WORKER_H
#define KAPROXY_WORKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "kaproxy/generation.h"
#include "kaproxy/listener.h"
#include "kaproxy/recheck.h"
#include "kaproxy/stats.h"

struct session_set;
struct worker;

/*
 * What all workers share: admission over all listeners, drain state, and the
 * suspect upstream addresses (each worker's wake event registered there).
 */
struct process_shared {
	struct admission admission;
	struct recheck_table suspects;
	atomic_bool draining;
	atomic_uint drained;           /* workers done draining */
	struct event *drained_notify;  /* on the main loop: activated per drained worker */
};

/*
 * A worker with an event loop of its own, not yet running (worker_run or
 * worker_start run it).  Returns NULL after logging why.
 */
struct worker *worker_new(struct process_shared *shared, unsigned index, bool reuseport);

/*
 * Free w once its loop has stopped: listeners closed, any session left
 * closed with reason shutdown (and logged), pipes and counters freed.
 * worker_free(NULL) does nothing.
 */
void worker_free(struct worker *w);

/* Run w's loop on the calling thread until worker_exit; 0, or -1 (logged). */
int worker_run(struct worker *w);

/* Run w's loop on a new thread; 0, or -1 (logged). */
int worker_start(struct worker *w);

/* Ask w's loop to return (any thread); worker_join then waits for a started one. */
void worker_exit(struct worker *w);
void worker_join(struct worker *w);

struct event_base *worker_base(struct worker *w);
unsigned worker_index(const struct worker *w);

/* For the admin endpoint's steps, which run on w's own thread. */
struct session_set *worker_sessions(struct worker *w);
struct stats_list *worker_stats(struct worker *w);

/*
 * Stop accepting and close each session as it ends; when none is left (or
 * timeout_ms from now, closing the rest with reason shutdown) count w as
 * drained and activate shared->drained_notify.  WORKER_DRAIN_UNBOUNDED sets no
 * deadline.  Called again, it sets a deadline only if it comes earlier than
 * the one already set: 0 closes the rest now.
 */
#define WORKER_DRAIN_UNBOUNDED UINT32_MAX
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

/*
 * fn(fd, address, arg) for each of w's live listening sockets, run on w's
 * thread (worker_call): control plane only.
 */
void worker_each_socket(struct worker *w, void (*fn)(int fd, const struct endpoint *ep,
    void *arg), void *arg);

/* True when called from w's loop thread. */
bool worker_is_current(const struct worker *w);

/*
 * Put gen's listeners on all n workers, or on none: every worker prepares
 * what can fail (listener_prepare, on its own thread), and only when all have
 * succeeded do they all commit; otherwise the prepared ones abort.  Returns
 * 0, or -1 (logged) with every worker as it was.  Control plane only (it
 * waits on each worker with worker_call).
 */
int worker_apply_all(struct worker *const *workers, unsigned n, struct generation *gen);

#endif
