/*
 * worker: one event loop and what it owns: its listener set, session set,
 * pipe pool and counters; its thread; its drain.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kaproxy/clock.h"
#include "kaproxy/log.h"
#include "kaproxy/pump.h"
#include "kaproxy/session.h"
#include "kaproxy/worker.h"

struct worker {
	struct event_base *base;
	pthread_t thread;               /* the thread running base's loop */
	bool own_thread;                /* started by worker_start: join it */
	struct process_shared *shared;
	unsigned index;
	struct listener_set listeners;
	struct session_set sessions;
	struct stats_list stats;
	struct pump_pool pipes;
	bool draining;
	bool drained;
	struct event *drain_deadline;
	uint64_t drain_until;           /* CLOCK_MONOTONIC ms of drain_deadline; 0: none */
	struct event progress;          /* once a second: log_interval records */
	/* upstream_recheck_on_death */
	struct event recheck_wake;      /* made active by any worker marking an address */
	struct event recheck_tick;      /* armed while legs are rechecked or addresses suspect */
	struct recheck_trial trial;
	uint64_t recheck_seen;          /* the last mark taken from shared->suspects */
};

static void sessions_empty(void *arg);

/*
 * One timer per worker, not one per connection: every 100 ms while legs
 * are under recheck (how soon an answer gives a leg its policy back), every
 * 250 ms while an address is only suspect (its trial connects), else off.
 */
static void
recheck_arm(struct worker *w)
{
	struct timeval tv = { 0, 0 };

	if (w->sessions.n_rechecks > 0)
		tv.tv_usec = SESSION_RECHECK_POLL_MS * 1000;
	else if (recheck_count(&w->shared->suspects) > 0 || w->trial.fd >= 0)
		tv.tv_usec = 250 * 1000;
	else
		return;
	if (evtimer_add(&w->recheck_tick, &tv) == -1)
		log_warnx("worker %u: recheck timer", w->index);
}

static void
recheck_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	(void)fd;
	(void)what;
	session_set_recheck_poll(&w->sessions);
	if (!w->draining)
		recheck_trial_tick(&w->trial, w->base);
	recheck_arm(w);
}

/* An address was marked suspect (by any worker): re-probe this loop's legs to it. */
static void
recheck_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct endpoint marked[RECHECK_SUSPECTS_MAX];
	struct worker *w = arg;
	unsigned started;
	size_t n;

	(void)fd;
	(void)what;
	n = recheck_marked_since(&w->shared->suspects, &w->recheck_seen, marked,
	    RECHECK_SUSPECTS_MAX);
	if (n > 0) {
		started = session_set_recheck_start(&w->sessions, marked, n);
		if (started > 0)
			log_info("worker %u: re-probing %u idle upstream connection(s)", w->index,
			    started);
	}
	/* Re-armed: a 250 ms tick pending for trials becomes the 100 ms poll. */
	recheck_arm(w);
}

static void
progress_tick(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	(void)fd;
	(void)what;
	session_set_progress(&w->sessions);
}

struct worker *
worker_new(struct process_shared *shared, unsigned index, bool reuseport)
{
	struct worker *w = calloc(1, sizeof(*w));

	if (w == NULL) {
		log_warn("worker %u", index);
		return NULL;
	}
	w->base = event_base_new();
	if (w->base == NULL) {
		log_warnx("worker %u: event_base_new failed", index);
		free(w);
		return NULL;
	}
	w->shared = shared;
	w->index = index;
	w->thread = pthread_self();
	LIST_INIT(&w->stats);
	pump_pool_init(&w->pipes, PUMP_PIPE_SIZE);
	session_set_init(&w->sessions, sessions_empty, w);
	w->sessions.suspects = &shared->suspects;
	recheck_trial_init(&w->trial, &shared->suspects);
	evtimer_assign(&w->recheck_tick, w->base, recheck_tick_cb, w);
	event_assign(&w->recheck_wake, w->base, -1, 0, recheck_wake_cb, w);
	listener_set_init(&w->listeners, w->base, &w->pipes, &w->sessions, &w->stats,
	    &shared->admission, index, reuseport);
	event_assign(&w->progress, w->base, -1, EV_PERSIST, progress_tick, w);
	if (event_add(&w->progress, &(struct timeval){ .tv_sec = 1 }) == -1) {
		log_warnx("worker %u: progress timer", index);
		event_base_free(w->base);
		free(w);
		return NULL;
	}
	/* Last: from here other workers may activate it. */
	recheck_attach(&shared->suspects, index, &w->recheck_wake);
	return w;
}

void
worker_free(struct worker *w)
{
	if (w == NULL)
		return;
	event_del(&w->progress);
	recheck_attach(&w->shared->suspects, w->index, NULL);
	event_del(&w->recheck_wake);
	event_del(&w->recheck_tick);
	recheck_trial_cancel(&w->trial);
	listener_close_all(&w->listeners);
	session_close_all(&w->sessions, REASON_SHUTDOWN);
	session_set_free_rechecks(&w->sessions);
	pump_pool_release(&w->pipes);
	if (w->drain_deadline != NULL)
		event_free(w->drain_deadline);
	stats_free_all(&w->stats);
	event_base_free(w->base);
	free(w);
}

int
worker_run(struct worker *w)
{
	w->thread = pthread_self();
	if (event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY) == -1) {
		log_warnx("worker %u: event loop failed", w->index);
		return -1;
	}
	return 0;
}

static void *
worker_thread(void *arg)
{
	struct worker *w = arg;

	if (event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY) == -1)
		log_warnx("worker %u: event loop failed", w->index);
	return NULL;
}

int
worker_start(struct worker *w)
{
	int err = pthread_create(&w->thread, NULL, worker_thread, w);

	if (err != 0) {
		errno = err;
		log_warn("worker %u: thread", w->index);
		w->thread = pthread_self();
		return -1;
	}
	w->own_thread = true;
	return 0;
}

void
worker_exit(struct worker *w)
{
	event_base_loopexit(w->base, NULL);
}

void
worker_join(struct worker *w)
{
	if (!w->own_thread)
		return;
	pthread_join(w->thread, NULL);
	w->own_thread = false;
	w->thread = pthread_self();
}

struct event_base *
worker_base(struct worker *w)
{
	return w->base;
}

unsigned
worker_index(const struct worker *w)
{
	return w->index;
}

struct session_set *
worker_sessions(struct worker *w)
{
	return &w->sessions;
}

struct stats_list *
worker_stats(struct worker *w)
{
	return &w->stats;
}

/* This worker has no session left while draining: tell the main loop, once. */
static void
worker_drained(struct worker *w)
{
	if (w->drained)
		return;
	w->drained = true;
	atomic_fetch_add_explicit(&w->shared->drained, 1, memory_order_acq_rel);
	event_active(w->shared->drained_notify, EV_READ, 0);
}

static void
sessions_empty(void *arg)
{
	struct worker *w = arg;

	if (w->draining)
		worker_drained(w);
}

static void
drain_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	(void)fd;
	(void)what;
	if (w->sessions.count > 0)
		log_info("worker %u: drain deadline reached: closing %u connection(s)",
		    w->index, w->sessions.count);
	session_close_all(&w->sessions, REASON_SHUTDOWN);
	worker_drained(w);
}

void
worker_drain(struct worker *w, uint32_t timeout_ms)
{
	struct timeval tv = { (time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000 };
	uint64_t until;

	if (!w->draining) {
		w->draining = true;
		listener_close_all(&w->listeners);
	}
	if (w->drained)
		return;
	if (w->sessions.count == 0) {
		worker_drained(w);
		return;
	}
	if (timeout_ms == WORKER_DRAIN_UNBOUNDED)
		return;
	/* Asked again: an earlier deadline stands. */
	until = clock_monotonic_ms() + timeout_ms;
	if (w->drain_until != 0 && w->drain_until <= until)
		return;
	w->drain_until = until;
	if (w->drain_deadline == NULL)
		w->drain_deadline = evtimer_new(w->base, drain_deadline_cb, w);
	if (w->drain_deadline == NULL || evtimer_add(w->drain_deadline, &tv) == -1) {
		log_warnx("worker %u: cannot arm the drain deadline: closing now", w->index);
		drain_deadline_cb(-1, 0, w);
	}
}

bool
worker_is_current(const struct worker *w)
{
	return pthread_equal(pthread_self(), w->thread);
}

struct call {
	struct event ev;
	struct worker *w;
	void (*fn)(struct worker *, void *);
	void *arg;
	bool wait;
	bool done;
	pthread_mutex_t mu;
	pthread_cond_t cv;
};

static void
call_cb(evutil_socket_t fd, short what, void *arg)
{
	struct call *c = arg;

	(void)fd;
	(void)what;
	c->fn(c->w, c->arg);
	if (!c->wait) {
		free(c);
		return;
	}
	pthread_mutex_lock(&c->mu);
	c->done = true;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

void
worker_call(struct worker *w, void (*fn)(struct worker *, void *), void *arg)
{
	struct call c = { .w = w, .fn = fn, .arg = arg, .wait = true };

	if (worker_is_current(w)) {
		fn(w, arg);
		return;
	}
	pthread_mutex_init(&c.mu, NULL);
	pthread_cond_init(&c.cv, NULL);
	/*
	 * The event lives on this stack frame and activating it allocates
	 * nothing, so a call cannot fail half-way through a reload.  (event_assign
	 * fails only for invalid flags.)
	 */
	event_assign(&c.ev, w->base, -1, 0, call_cb, &c);
	event_active(&c.ev, EV_TIMEOUT, 0);
	pthread_mutex_lock(&c.mu);
	while (!c.done)
		pthread_cond_wait(&c.cv, &c.mu);
	pthread_mutex_unlock(&c.mu);
	pthread_cond_destroy(&c.cv);
	pthread_mutex_destroy(&c.mu);
}

int
worker_post(struct worker *w, void (*fn)(struct worker *, void *), void *arg)
{
	struct call *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return -1;
	c->w = w;
	c->fn = fn;
	c->arg = arg;
	if (event_base_once(w->base, -1, EV_TIMEOUT, call_cb, c, NULL) == -1) {
		free(c);
		return -1;
	}
	return 0;
}

static void
job_cb(evutil_socket_t fd, short what, void *arg)
{
	static const struct timeval now = { 0, 0 };
	struct worker_job *job = arg;

	(void)fd;
	(void)what;
	if (job->step(job->w, job)) {
		job->done(job);
		return;
	}
	/*
	 * A zero timer, not event_active: expired timers are taken after the
	 * loop has polled, so the I/O that became ready meanwhile runs first.
	 */
	if (evtimer_add(&job->ev, &now) == -1) {
		log_warnx("worker %u: cannot re-arm a job: ending it early", job->w->index);
		job->done(job);
	}
}

int
worker_job_start(struct worker *w, struct worker_job *job,
    bool (*step)(struct worker *, struct worker_job *), void (*done)(struct worker_job *))
{
	static const struct timeval now = { 0, 0 };

	job->w = w;
	job->step = step;
	job->done = done;
	if (evtimer_assign(&job->ev, w->base, job_cb, job) == -1 ||
	    evtimer_add(&job->ev, &now) == -1) {
		log_warnx("worker %u: cannot queue a job", w->index);
		return -1;
	}
	return 0;
}

void
worker_job_cancel(struct worker_job *job)
{
	/* From another thread, event_del waits for a running callback to return. */
	if (event_initialized(&job->ev))
		event_del(&job->ev);
}

/* One phase of worker_apply_all, run on a worker's own thread. */
struct apply_phase {
	struct generation *gen;
	int result;
};

static void
prepare_on(struct worker *w, void *arg)
{
	struct apply_phase *phase = arg;

	phase->result = listener_prepare(&w->listeners, phase->gen);
}

static void
commit_on(struct worker *w, void *arg)
{
	(void)arg;
	listener_commit(&w->listeners);
}

static void
abort_on(struct worker *w, void *arg)
{
	(void)arg;
	listener_abort(&w->listeners);
}

int
worker_apply_all(struct worker *const *workers, unsigned n, struct generation *gen)
{
	struct apply_phase phase = { .gen = gen };
	unsigned i, prepared;

	for (prepared = 0; prepared < n; prepared++) {
		worker_call(workers[prepared], prepare_on, &phase);
		if (phase.result == -1) {
			log_errorx("worker %u cannot apply the configuration: no worker takes it",
			    prepared);
			for (i = 0; i < prepared; i++)
				worker_call(workers[i], abort_on, NULL);
			return -1;
		}
	}
	/* Every worker is ready: the swap, which cannot fail. */
	for (i = 0; i < n; i++)
		worker_call(workers[i], commit_on, NULL);
	return 0;
}

struct each_socket {
	void (*fn)(int, const struct endpoint *, void *);
	void *arg;
};

static void
each_socket_on(struct worker *w, void *arg)
{
	struct each_socket *each = arg;

	listener_each_socket(&w->listeners, each->fn, each->arg);
}

void
worker_each_socket(struct worker *w, void (*fn)(int fd, const struct endpoint *ep, void *arg),
    void *arg)
{
	struct each_socket each = { .fn = fn, .arg = arg };

	worker_call(w, each_socket_on, &each);
}
