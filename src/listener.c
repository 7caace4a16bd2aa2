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

#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/listener.h>

#include "kaproxy/endpoint.h"
#include "kaproxy/listener.h"
#include "kaproxy/log.h"
#include "kaproxy/sockopt.h"
#include "kaproxy/upgrade.h"

#define LISTEN_BACKLOG 4096
#define ACCEPT_RETRY_MS 1000

/*
 * One listener of one config generation.  Its sessions hold a reference, so
 * the config they started with stays valid however many reloads happen; a
 * retired listener is freed by its last session's release.
 */
struct proxy_listener {
	struct session_origin origin;  /* first: release() gets it back */
	LIST_ENTRY(proxy_listener) entry;
	struct listener_set *set;
	struct generation *gen;
	const struct listener_config *cfg;
	struct listener_stats *stats;
	struct evconnlistener *evl;    /* NULL once retired, or until commit for a hand-over */
	struct event retry;            /* re-enables accepting after EMFILE */
	unsigned refs;                 /* sessions started here and not yet ended */
	unsigned rr_next;              /* round-robin cursor */
	bool retired;
};

static void proxy_listener_free(struct proxy_listener *pl);

/* A session of pl has ended: the one place admission is given back. */
static void
session_released(struct session_origin *origin)
{
	struct proxy_listener *pl = (struct proxy_listener *)origin;

	atomic_fetch_sub_explicit(&pl->set->admission->active, 1, memory_order_relaxed);
	STAT_ADD(pl->stats->active, (uint64_t)-1);
	if (--pl->refs == 0 && pl->retired)
		proxy_listener_free(pl);
}

static void
refuse(struct proxy_listener *pl, int fd, enum refuse_reason why)
{
	STAT_ADD(pl->stats->refused[why], 1);
	sockopt_close_rst(fd);
}

static void
accept_cb(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *addr, int addrlen,
    void *arg)
{
	struct proxy_listener *pl = arg;
	struct admission *adm = pl->set->admission;
	unsigned first = 0;
	uint64_t id;

	(void)evl;
	if (pl->set->closed) {
		refuse(pl, fd, REFUSE_DRAINING);
		return;
	}
	/* Counted before the check, so loops racing for the last slot cannot both win. */
	if (atomic_fetch_add_explicit(&adm->active, 1, memory_order_relaxed) >=
	    atomic_load_explicit(&adm->max_connections, memory_order_relaxed)) {
		atomic_fetch_sub_explicit(&adm->active, 1, memory_order_relaxed);
		refuse(pl, fd, REFUSE_MAX_CONNECTIONS);
		return;
	}
	id = atomic_fetch_add_explicit(&adm->next_id, 1, memory_order_relaxed) + 1;
	if (pl->cfg->balance == BALANCE_ROUNDROBIN)
		first = pl->rr_next++ % (unsigned)pl->cfg->n_upstreams;
	pl->refs++;
	STAT_ADD(pl->stats->accepted, 1);
	STAT_ADD(pl->stats->active, 1);
	if (session_start(&pl->origin, fd, addr, (socklen_t)addrlen, id, first) == -1) {
		log_warn("listener %s: session", pl->cfg->name);
		refuse(pl, fd, REFUSE_ERROR);
		session_released(&pl->origin);
	}
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
proxy_listener_new(struct listener_set *ls, struct generation *gen, const struct listener_config *lc)
{
	struct proxy_listener *pl = calloc(1, sizeof(*pl));

	if (pl == NULL)
		return NULL;
	pl->set = ls;
	pl->gen = gen;
	pl->cfg = lc;
	pl->stats = stats_for(ls->stats, lc->name);
	if (pl->stats == NULL) {
		free(pl);
		return NULL;
	}
	pl->origin = (struct session_origin){ .base = ls->base, .pool = ls->pool,
		.set = ls->sessions, .cfg = lc, .stats = pl->stats,
		.worker_index = ls->worker_index, .release = session_released };
	evtimer_assign(&pl->retry, ls->base, retry_cb, pl);
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
find_by_address(struct listener_set *ls, const struct endpoint *ep)
{
	struct proxy_listener *pl;

	LIST_FOREACH(pl, &ls->live, entry)
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

/*
 * Prepare lc's listener: a new socket, or the policy re-applied to the
 * socket of the running listener with the same address (handed over at
 * commit).  Returns the listener, or NULL after logging why.
 */
static struct proxy_listener *
prepare_one(struct listener_set *ls, struct generation *gen, const struct listener_config *lc)
{
	char what[CONFIG_NAME_MAX + 16];
	struct proxy_listener *pl, *old;
	int fd;

	pl = proxy_listener_new(ls, gen, lc);
	if (pl == NULL) {
		log_warn("listener %s", lc->name);
		return NULL;
	}
	old = find_by_address(ls, &lc->listen);
	if (old != NULL) {
		snprintf(what, sizeof(what), "listener %s", lc->name);
		if (sockopt_apply_policy(evconnlistener_get_fd(old->evl), &lc->client, what) == -1) {
			/* Part of it may be set: put the running policy back. */
			(void)sockopt_apply_policy(evconnlistener_get_fd(old->evl), &old->cfg->client,
			    what);
			goto err;
		}
		return pl;
	}
	/* A socket handed over by a binary upgrade keeps its queue: adopt it. */
	fd = upgrade_take(&lc->listen);
	if (fd != -1) {
		snprintf(what, sizeof(what), "listener %s", lc->name);
		if (sockopt_apply_policy(fd, &lc->client, what) == -1) {
			close(fd);
			goto err;
		}
	} else if ((fd = listen_socket(lc, ls->reuseport)) == -1) {
		goto err;
	}
	pl->evl = evconnlistener_new(ls->base, accept_cb, pl,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_DISABLED, 0, fd);
	if (pl->evl == NULL) {
		log_warn("listener %s: evconnlistener", lc->name);
		close(fd);
		goto err;
	}
	evconnlistener_set_error_cb(pl->evl, accept_error_cb);
	return pl;
err:
	proxy_listener_free(pl);
	return NULL;
}

int
listener_prepare(struct listener_set *ls, struct generation *gen)
{
	const struct config *cfg = gen->cfg;
	size_t i;

	if (ls->closed) {
		log_warnx("worker %u: listeners are closed (draining)", ls->worker_index);
		return -1;
	}
	if (ls->pending != NULL)
		listener_abort(ls);
	/* One more slot than needed, so an empty config still gets an array. */
	ls->pending = calloc(cfg->n_listeners + 1, sizeof(*ls->pending));
	if (ls->pending == NULL) {
		log_warn("listeners");
		return -1;
	}
	ls->n_pending = cfg->n_listeners;
	for (i = 0; i < cfg->n_listeners; i++) {
		ls->pending[i] = prepare_one(ls, gen, &cfg->listeners[i]);
		if (ls->pending[i] == NULL) {
			listener_abort(ls);
			return -1;
		}
	}
	return 0;
}

void
listener_abort(struct listener_set *ls)
{
	struct proxy_listener *pl, *old;
	char what[CONFIG_NAME_MAX + 16];
	size_t i;

	for (i = 0; i < ls->n_pending; i++) {
		pl = ls->pending[i];
		if (pl == NULL)
			continue;
		/* A socket that was to be handed over gets its running policy back. */
		old = pl->evl == NULL ? find_by_address(ls, &pl->cfg->listen) : NULL;
		if (old != NULL) {
			snprintf(what, sizeof(what), "listener %s", old->cfg->name);
			if (sockopt_apply_policy(evconnlistener_get_fd(old->evl), &old->cfg->client,
			    what) == -1)
				log_warnx("%s: keeps the new client policy after the failed reload",
				    what);
		}
		proxy_listener_free(pl);
	}
	free(ls->pending);
	ls->pending = NULL;
	ls->n_pending = 0;
}

/*
 * reload_live_connections = apply: a changed leg policy reaches the live
 * connections of the listener too, not only the ones it accepts from now on.
 */
static void
live_policy(struct listener_set *ls, const struct listener_config *was,
    const struct listener_config *now)
{
	unsigned n;

	if (now->reload_live_keep || (policy_same_on_socket(&was->client, &now->client) &&
	    policy_same_on_socket(&was->upstream, &now->upstream)))
		return;
	n = session_set_apply_policy(ls->sessions, &now->listen, &now->client, &now->upstream);
	if (n > 0)
		log_info("listener %s: new keepalive policy set on %u live connection(s)",
		    now->name, n);
}

void
listener_commit(struct listener_set *ls)
{
	struct proxy_listener *old, *pl;
	size_t i;

	for (i = 0; i < ls->n_pending; i++) {
		pl = ls->pending[i];
		old = find_by_address(ls, &pl->cfg->listen);
		if (old != NULL) {
			pl->evl = old->evl;
			old->evl = NULL;
			evconnlistener_set_cb(pl->evl, accept_cb, pl);
			evconnlistener_set_error_cb(pl->evl, accept_error_cb);
			live_policy(ls, old->cfg, pl->cfg);
			retire(old);
		}
	}
	while ((old = LIST_FIRST(&ls->live)) != NULL)
		retire(old);
	for (i = 0; i < ls->n_pending; i++) {
		pl = ls->pending[i];
		LIST_INSERT_HEAD(&ls->live, pl, entry);
		evconnlistener_enable(pl->evl);
		log_info("listener %s: %s -> %zu upstream(s)", pl->cfg->name, pl->cfg->listen.text,
		    pl->cfg->n_upstreams);
	}
	free(ls->pending);
	ls->pending = NULL;
	ls->n_pending = 0;
}

void
listener_each_socket(struct listener_set *ls, void (*fn)(int fd, const struct endpoint *ep,
    void *arg), void *arg)
{
	struct proxy_listener *pl;

	LIST_FOREACH(pl, &ls->live, entry)
		if (pl->evl != NULL)
			fn(evconnlistener_get_fd(pl->evl), &pl->cfg->listen, arg);
}

void
listener_close_all(struct listener_set *ls)
{
	struct proxy_listener *pl;

	listener_abort(ls);
	ls->closed = true;
	while ((pl = LIST_FIRST(&ls->live)) != NULL)
		retire(pl);
}

void
listener_set_init(struct listener_set *ls, struct event_base *base, struct pump_pool *pool,
    struct session_set *sessions, struct stats_list *stats, struct admission *admission,
    unsigned worker_index, bool reuseport)
{
	memset(ls, 0, sizeof(*ls));
	LIST_INIT(&ls->live);
	ls->base = base;
	ls->pool = pool;
	ls->sessions = sessions;
	ls->stats = stats;
	ls->admission = admission;
	ls->worker_index = worker_index;
	ls->reuseport = reuseport;
}
