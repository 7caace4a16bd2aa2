/*
 * admin: the loopback HTTP endpoint (libevent evhttp): GET /connections,
 * /metrics (Prometheus text 0.0.4) and /healthz.
 */
#ifndef KAPROXY_ADMIN_H
#define KAPROXY_ADMIN_H

#include "kaproxy/config.h"
#include "kaproxy/stats.h"
#include "kaproxy/worker.h"

struct admin;

/*
 * Listen on ep on the loop of workers[0] and serve the sessions and counters
 * of all n workers (each read on its own thread); proc's figures are read at
 * each scrape.  Returns NULL after logging why.
 */
struct admin *admin_start(struct worker *workers, unsigned n, const struct endpoint *ep,
    const struct stats_process *proc);

/* Stop serving; admin_free(NULL) does nothing. */
void admin_free(struct admin *admin);

#endif
