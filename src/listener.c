/*
 * listener: listening sockets on evconnlistener, max_connections, the
 * EMFILE back-off, and reload.
 *
 * The client leg's policy is set on the listening socket: Linux copies
 * SO_KEEPALIVE, the keepalive timings, TCP_USER_TIMEOUT and TCP_NODELAY into
 * every accepted socket, so an accept costs no setsockopt at all.  A reload
 * hands a listening socket whose address did not change to the new
 * generation (re-applying the new policy to it), so no queued connection is
 * lost and no port is ever unbound.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/listener.h>

#include "kaproxy/listener.h"
#include "kaproxy/log.h"
#include "kaproxy/session.h"
#include "kaproxy/sockopt.h"

#define LISTEN_BACKLOG 4096
#define ACCEPT_RETRY_MS 1000

static void
accept_cb(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *addr, int addrlen,
    void *arg)
{
	struct proxy_listener *pl = arg;
	struct worker *w = pl->worker;

	(void)evl;
	if (w->draining) {
		STAT_ADD(pl->stats->refused[REFUSE_DRAINING], 1);
		sockopt_close_rst(fd);
		return;
	}
	/* Counted before the check, so workers racing for the last slot cannot both win. */
	if (atomic_fetch_add_explicit(&w->shared->active, 1, memory_order_relaxed) >=
	    atomic_load_explicit(&w->shared->max_connections, memory_order_relaxed)) {
		atomic_fetch_sub_explicit(&w->shared->active, 1, memory_order_relaxed);
		STAT_ADD(pl->stats->refused[REFUSE_MAX_CONNECTIONS], 1);
		sockopt_close_rst(fd);
		return;
	}
	session_start(pl, fd, addr, (socklen_t)addrlen);
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct proxy_listener *pl = arg;

	(void)fd;
	(void)what;
	if (pl->evl != NULL && !pl->retired)
		evconnlistener_enable(pl->evl);
}

static void
accept_error_cb(struct evconnlistener *evl, void *arg)
{
	struct proxy_listener *pl = arg;
	struct timeval tv = { ACCEPT_RETRY_MS / 1000, (ACCEPT_RETRY_MS % 1000) * 1000 };
	int err = EVUTIL_SOCKET_ERROR();

	/*
	 * EMFILE/ENFILE/ENOBUFS leave the connection queued, so the listener
	 * would fire again at once: pause accepting for a second instead of
	 * spinning.
	 */
	errno = err;
	log_warn("listener %s: accept (pausing %d ms)", pl->cfg->name, ACCEPT_RETRY_MS);
	STAT_ADD(pl->stats->refused[REFUSE_ERROR], 1);
	evconnlistener_disable(evl);
	evtimer_add(&pl->retry, &tv);
}

static struct proxy_listener *
proxy_listener_new(struct worker *w, struct generation *gen, const struct listener_config *lc)
{
	struct proxy_listener *pl = calloc(1, sizeof(*pl));

	if (pl == NULL)
		return NULL;
	pl->worker = w;
	pl->gen = gen;
	pl->cfg = lc;
	pl->stats = stats_for(&w->stats, lc->name);
	if (pl->stats == NULL) {
		free(pl);
		return NULL;
	}
	evtimer_assign(&pl->retry, w->base, retry_cb, pl);
	generation_ref(gen);
	return pl;
}

static void
proxy_listener_free(struct proxy_listener *pl)
{
	evtimer_del(&pl->retry);
	if (pl->evl != NULL)
		evconnlistener_free(pl->evl);
	generation_unref(pl->gen);
	free(pl);
}

/* A bound, listening socket for lc with the client policy on it; -1 on error. */
static int
listen_socket(const struct listener_config *lc, bool reuseport)
{
	char what[CONFIG_NAME_MAX + 16];
	int fd, one = 1;

	snprintf(what, sizeof(what), "listener %s", lc->name);
	fd = socket(lc->listen.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		log_warn("%s: socket", what);
		return -1;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1) {
		log_warn("%s: setsockopt SO_REUSEADDR", what);
		goto err;
	}
	/*
	 * Only with several workers: each binds its own socket and the kernel
	 * spreads connections.  With one, a second kaproxy started by mistake
	 * must fail to bind rather than silently share the port.
	 */
	if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1) {
		log_warn("%s: setsockopt SO_REUSEPORT", what);
		goto err;
	}
	if (sockopt_apply_policy(fd, &lc->client, what) == -1)
		goto err;
	if (bind(fd, (const struct sockaddr *)&lc->listen.addr, lc->listen.len) == -1) {
		log_warn("%s: bind %s", what, lc->listen.text);
		goto err;
	}
	if (listen(fd, LISTEN_BACKLOG) == -1) {
		log_warn("%s: listen %s", what, lc->listen.text);
		goto err;
	}
	return fd;
err:
	close(fd);
	return -1;
}

static struct proxy_listener *
find_by_address(struct worker *w, const struct endpoint *ep)
{
	struct proxy_listener *pl;

	LIST_FOREACH(pl, &w->listeners, entry)
		if (endpoint_equal(&pl->cfg->listen, ep))
			return pl;
	return NULL;
}

static void
retire(struct proxy_listener *pl)
{
	LIST_REMOVE(pl, entry);
	pl->retired = true;
	evtimer_del(&pl->retry);
	if (pl->evl != NULL) {
		evconnlistener_free(pl->evl);
		pl->evl = NULL;
	}
	if (pl->refs == 0)
		proxy_listener_free(pl);
}

int
listener_apply(struct worker *w, struct generation *gen)
{
	const struct config *cfg = gen->cfg;
	struct proxy_listener **fresh;
	struct proxy_listener *old, *pl;
	size_t i;
	int fd;

	fresh = calloc(cfg->n_listeners, sizeof(*fresh));
	if (fresh == NULL) {
		log_warn("listeners");
		return -1;
	}
	/* First everything that can fail: new sockets, new objects. */
	for (i = 0; i < cfg->n_listeners; i++) {
		const struct listener_config *lc = &cfg->listeners[i];

		fresh[i] = proxy_listener_new(w, gen, lc);
		if (fresh[i] == NULL) {
			log_warn("listener %s", lc->name);
			goto err;
		}
		old = find_by_address(w, &lc->listen);
		if (old != NULL) {
			char what[CONFIG_NAME_MAX + 16];

			snprintf(what, sizeof(what), "listener %s", lc->name);
			if (sockopt_apply_policy(evconnlistener_get_fd(old->evl), &lc->client,
			    what) == -1)
				goto err;
			continue;
		}
		fd = listen_socket(lc, w->reuseport);
		if (fd == -1)
			goto err;
		fresh[i]->evl = evconnlistener_new(w->base, accept_cb, fresh[i],
		    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_DISABLED, 0, fd);
		if (fresh[i]->evl == NULL) {
			log_warn("listener %s: evconnlistener", lc->name);
			close(fd);
			goto err;
		}
		evconnlistener_set_error_cb(fresh[i]->evl, accept_error_cb);
	}
	/* Then the swap, which cannot fail. */
	for (i = 0; i < cfg->n_listeners; i++) {
		pl = fresh[i];
		old = find_by_address(w, &pl->cfg->listen);
		if (old != NULL) {
			pl->evl = old->evl;
			old->evl = NULL;
			evconnlistener_set_cb(pl->evl, accept_cb, pl);
			evconnlistener_set_error_cb(pl->evl, accept_error_cb);
			retire(old);
		}
	}
	while ((old = LIST_FIRST(&w->listeners)) != NULL)
		retire(old);
	for (i = 0; i < cfg->n_listeners; i++) {
		LIST_INSERT_HEAD(&w->listeners, fresh[i], entry);
		evconnlistener_enable(fresh[i]->evl);
		log_info("listener %s: %s -> %zu upstream(s)", fresh[i]->cfg->name,
		    fresh[i]->cfg->listen.text, fresh[i]->cfg->n_upstreams);
	}
	free(fresh);
	return 0;
err:
	for (i = 0; i < cfg->n_listeners; i++)
		if (fresh[i] != NULL)
			proxy_listener_free(fresh[i]);
	free(fresh);
	return -1;
}

void
listener_close_all(struct worker *w)
{
	struct proxy_listener *pl;

	while ((pl = LIST_FIRST(&w->listeners)) != NULL)
		retire(pl);
}

void
listener_ref(struct proxy_listener *pl)
{
	pl->refs++;
}

void
listener_unref(struct proxy_listener *pl)
{
	if (--pl->refs == 0 && pl->retired)
		proxy_listener_free(pl);
}
