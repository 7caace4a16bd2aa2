/*
 * worker: one event loop and everything it owns: its listeners, sessions,
 * pipe pool and counters.  kaproxy runs one worker on the main thread.
 */
#ifndef KAPROXY_WORKER_H
#define KAPROXY_WORKER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "kaproxy/config.h"
#include "kaproxy/stats.h"

/* Pipes kept for reuse; a pipe is held by a direction only while bytes are in it. */
#define WORKER_PIPE_POOL 64

/* Bytes a pipe may hold: the most one splice moves, and the per-direction buffer bound. */
#ifndef WORKER_PIPE_SIZE
#define WORKER_PIPE_SIZE (64 * 1024)
#endif

struct session;
struct proxy_listener;

/*
 * A loaded config and how many listeners still use it; freed when the last
 * listener of an older generation has no session left.
 */
struct generation {
	struct config *cfg;
	unsigned refs;
};

struct worker {
	struct event_base *base;
	LIST_HEAD(, session) sessions;
	LIST_HEAD(, proxy_listener) listeners;
	uint32_t n_sessions;
	uint64_t next_session_id;
	struct generation *gen;      /* the current config */
	struct stats_list stats;
	int pipes[WORKER_PIPE_POOL][2];
	unsigned n_pipes;
	bool draining;
	void (*on_drained)(struct worker *); /* draining and no session left */
};

/* Set up w on base (zeroed first); returns 0 or -1. */
int worker_init(struct worker *w, struct event_base *base);

/* Close every listener and pooled pipe, free counters; sessions must be gone. */
void worker_release(struct worker *w);

/* A new generation owning cfg, with no reference yet (NULL on ENOMEM). */
struct generation *generation_new(struct config *cfg);
void generation_ref(struct generation *gen);
/* Drop a reference; frees gen and its config at zero unless it is current. */
void generation_unref(struct worker *w, struct generation *gen);

/*
 * Take a pipe from the pool or make one: fds[0] read end, fds[1] write end.
 * Returns 0, or -1 with errno set (EMFILE, ENFILE).
 */
int worker_pipe_get(struct worker *w, int fds[2]);

/* Return an empty pipe to the pool (or close it when the pool is full). */
void worker_pipe_put(struct worker *w, int fds[2]);

/* Close a pipe that may still hold bytes (they are discarded). */
void worker_pipe_discard(int fds[2]);

/* Called by session code when a session is freed. */
void worker_session_gone(struct worker *w);

#endif
