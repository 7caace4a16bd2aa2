/*
 * listener: the listening sockets, max_connections, the EMFILE back-off and
 * the hand-over of a listening socket across a reload.
 */
#ifndef KAPROXY_LISTENER_H
#define KAPROXY_LISTENER_H

#include <stdbool.h>
#include <sys/queue.h>

#include <event2/event_struct.h>

#include "kaproxy/config.h"
#include "kaproxy/stats.h"
#include "kaproxy/worker.h"

struct evconnlistener;

/*
 * One listener of one config generation.  Sessions hold a reference, so the
 * config they started with stays valid however many reloads happen.
 */
struct proxy_listener {
	LIST_ENTRY(proxy_listener) entry;
	struct worker *worker;
	struct generation *gen;
	const struct listener_config *cfg;
	struct listener_stats *stats;
	struct evconnlistener *evl;  /* NULL once retired */
	struct event retry;          /* re-enables accepting after EMFILE */
	unsigned refs;               /* sessions using this listener */
	unsigned rr_next;            /* round-robin cursor */
	bool retired;
};

/*
 * A reload in two phases, so that across all workers either every one runs
 * the new listeners or none does.  listener_prepare does all that can fail
 * on w: opens the new listening sockets and re-applies the client policy to
 * the sockets that will be handed over (same address), each new listener
 * taking a reference on gen; it returns 0, or -1 after logging why, with w
 * as it was.  listener_commit then swaps them in and cannot fail: handed-over
 * sockets move to their new listener, the old listeners are retired.
 * listener_abort drops what prepare made.  All on w's thread.
 */
int listener_prepare(struct worker *w, struct generation *gen);
void listener_commit(struct worker *w);
void listener_abort(struct worker *w);

/* Stop accepting on every listener and close the listening sockets. */
void listener_close_all(struct worker *w);

void listener_ref(struct proxy_listener *pl);
/* Drop a session's reference; frees a retired listener at zero. */
void listener_unref(struct proxy_listener *pl);

#endif
