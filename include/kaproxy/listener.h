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
 * Open every listener of gen's config on w, handing over the listening
 * sockets of w's current listeners whose address is unchanged, then retire
 * the old ones.  Each new listener takes a reference on gen.  All or
 * nothing: on failure returns -1, logs why, and w's listeners are as before.
 */
int listener_apply(struct worker *w, struct generation *gen);

/* Stop accepting on every listener and close the listening sockets. */
void listener_close_all(struct worker *w);

void listener_ref(struct proxy_listener *pl);
/* Drop a session's reference; frees a retired listener at zero. */
void listener_unref(struct proxy_listener *pl);

#endif
