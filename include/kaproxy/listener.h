/*
 * listener: the listening sockets of one event loop, admission
 * (max_connections over all loops, session ids), the EMFILE back-off, and
 * the two-phase hand-over of listening sockets across a reload.
 */
#ifndef KAPROXY_LISTENER_H
#define KAPROXY_LISTENER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/queue.h>

#include "kaproxy/generation.h"
#include "kaproxy/session.h"
#include "kaproxy/stats.h"

struct event_base;
struct proxy_listener;
struct pump_pool;

/*
 * What every loop's listeners share: the count of client connections over
 * all of them, its cap, and session ids.  Changed only by listener.c: one
 * up at admission, one down when the session ends.
 */
struct admission {
	atomic_uint active;
	atomic_uint max_connections;
	atomic_uint_fast64_t next_id;
};

/* The listeners of one event loop; its fields are listener.c's alone. */
struct listener_set {
	LIST_HEAD(, proxy_listener) live;
	struct proxy_listener **pending;  /* prepared by a reload, not yet committed */
	size_t n_pending;
	bool closed;                      /* draining or shut down: accept nothing */
	/* Lent by the loop's owner for the set's life. */
	struct event_base *base;
	struct pump_pool *pool;
	struct session_set *sessions;
	struct stats_list *stats;
	struct admission *admission;
	unsigned worker_index;
	bool reuseport;                   /* several loops bind the same addresses */
};

/* An empty set on base; the pointers are kept, not owned. */
void listener_set_init(struct listener_set *ls, struct event_base *base, struct pump_pool *pool,
    struct session_set *sessions, struct stats_list *stats, struct admission *admission,
    unsigned worker_index, bool reuseport);

/*
 * A reload in two phases, so that across all loops either every one runs
 * the new listeners or none does.  listener_prepare does all that can fail:
 * opens the new listening sockets and re-applies the client policy to the
 * sockets that will be handed over (same address), each new listener taking
 * a reference on gen; it returns 0, or -1 after logging why, with ls as it
 * was.  listener_commit then swaps them in and cannot fail: handed-over
 * sockets move to their new listener, the old listeners are retired (each is
 * freed when its last session ends).  listener_abort drops what prepare
 * made and gives handed-over sockets their running policy back.  All on the
 * set's loop thread.
 */
int listener_prepare(struct listener_set *ls, struct generation *gen);
void listener_commit(struct listener_set *ls);
void listener_abort(struct listener_set *ls);

/* fn(fd, address) for each live listening socket of ls; on the set's loop thread. */
void listener_each_socket(struct listener_set *ls, void (*fn)(int fd, const struct endpoint *ep,
    void *arg), void *arg);

/* Stop accepting for good (drain, exit): close every listening socket. */
void listener_close_all(struct listener_set *ls);

#endif
