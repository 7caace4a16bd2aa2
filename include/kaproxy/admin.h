/*
 * admin: the loopback HTTP endpoint (libevent evhttp) on its own thread:
 * GET /connections, /metrics (Prometheus text 0.0.4) and /healthz; and the
 * read-only status address (status_listen): /metrics and /healthz only.
 */
#ifndef KAPROXY_ADMIN_H
#define KAPROXY_ADMIN_H

#include <stdatomic.h>

#include "kaproxy/config.h"
#include "kaproxy/stats.h"
#include "kaproxy/worker.h"

struct admin;

/*
 * Listen on ep (the admin endpoint: every route) and on status_ep (GET and
 * HEAD /healthz and /metrics only, 404 to anything else, no Host check),
 * either of them NULL when off but not both, and serve them from a thread
 * and event loop of the endpoint's own.  The sessions and counters of the n
 * workers are gathered on each worker's own thread, in steps, with a
 * bounded wait; proc's figures are read at each scrape; /healthz answers 503
 * while *draining.  At most max_conns connections are open at once on each
 * address (one more is answered 503 and closed); each must send a whole
 * request within a fixed deadline, and requests are read strictly
 * (adminreq).  Returns NULL after logging why.
 */
struct admin *admin_start(struct worker *const *workers, unsigned n, const struct endpoint *ep,
    const struct endpoint *status_ep, unsigned max_conns, const struct stats_process *proc,
    const atomic_bool *draining);

/*
 * Stop the admin thread and withdraw any gathering still out on a worker
 * (the workers' loops must still be running); admin_free(NULL) does nothing.
 */
void admin_free(struct admin *admin);

/*
 * After a binary upgrade, whose new process has the same listening sockets:
 * close this process's, so that every new request goes to the new process;
 * requests already open here are served.  Asynchronous (on the admin's
 * thread); admin_stop_accepting(NULL) does nothing.
 */
void admin_stop_accepting(struct admin *admin);

/* The admin's listening socket (for a binary upgrade to hand over), or -1. */
int admin_fd(const struct admin *admin);

/* status_listen's listening socket (likewise), or -1 when it is off. */
int admin_status_fd(const struct admin *admin);

#endif
