/*
 * session: one proxied connection, from accept to its access-log line.
 *
 * A session holds two legs.  Each leg owns its socket, one edge-triggered
 * event (read and write readiness, registered once) and the pump end of its
 * direction (pump.c): only while bytes are in flight, a pipe holding what
 * was received on it and not yet sent on the other leg, so an idle session
 * holds no buffer at all.  The pump moves the bytes, with backpressure and
 * half-close; this file decides what its results mean for the session.
 *
 * session_close() is the only way a session ends: it decides the teardown,
 * writes the access-log line and counts the reason.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "kaproxy/accesslog.h"
#include "kaproxy/clock.h"
#include "kaproxy/json.h"
#include "kaproxy/log.h"
#include "kaproxy/proxyproto.h"
#include "kaproxy/pump.h"
#include "kaproxy/recheck.h"
#include "kaproxy/session.h"
#include "kaproxy/sockopt.h"
#include "kaproxy/stats.h"

/* How long a teardown = fin waits for the live peer to take its bytes and close. */
#define FIN_LINGER_MS 10000

/*
 * upstream_recheck_on_death: the policy a suspect upstream's idle legs run
 * while they are re-probed.  Set with the idle last, which re-arms the
 * keepalive timer from the last segment received: a leg silent for 1 s or
 * more probes at once.  The user timeout is what decides (Linux aborts once
 * a probe is out and the leg has been silent that long), so a leg silent
 * for over 3 s has one interval, 1 s, to answer; one silent for less gets
 * probes until 3 s of silence.
 */
static const struct leg_policy recheck_policy = {
	.keepalive = true, .idle_s = 1, .interval_s = 1, .count = 2, .user_timeout_ms = 3000,
};
/* A recheck neither answered nor ended by then gives the leg its policy back. */
#define RECHECK_GIVE_UP_MS 10000

/* A leg under recheck: kept in its set, not in the session. */
struct session_recheck {
	struct session *s;
	uint64_t start_ms;          /* monotonic */
	struct leg_policy saved;    /* the leg's own policy, read from its socket */
};

enum session_state {
	STATE_HEADER,       /* accept_proxy: reading the client's PROXY header */
	STATE_CONNECTING,   /* upstream connect in progress, client not read yet */
	STATE_RUNNING,      /* both legs up, pumping */
	STATE_LINGER,       /* logged; flushing and closing the live leg with FIN */
};

struct leg {
	struct event ev;        /* read/write readiness, edge-triggered */
	struct session *session;
	struct pump_end pump;   /* the socket, and what was read from it not yet sent on the peer */
	uint8_t side;           /* enum side */
	uint8_t rechecking;     /* upstream leg: in its set's recheck list (padding, no growth) */
	uint64_t bytes_in;      /* bytes read from this leg */
};

struct session {
	struct leg client;
	struct leg upstream;
	LIST_ENTRY(session) entry;
	struct session_origin *origin;
	uint64_t id;
	uint64_t start_ms;          /* monotonic */
	uint64_t last_active_ms;    /* monotonic, when bytes last moved */
	struct sockaddr_in6 client_addr; /* also holds a sockaddr_in */
	uint16_t upstream_first;    /* index of the first upstream tried */
	uint16_t attempts;          /* connects started; the current one is the last */
	uint8_t state;
	uint8_t reason;             /* enum close_reason, set once */
	uint8_t first_fin;          /* reason of the first orderly FIN seen */
	uint8_t all_timed_out : 1;  /* every connect attempt so far timed out */
	uint8_t admin_fin : 1;      /* closed through the admin endpoint with how=fin */
	int err;                    /* errno behind the reason */
};

/*
 * An idle connection costs this struct plus libevent's per-fd bookkeeping:
 * 424 bytes on x86_64 (README, Data path and memory).  Count the bytes
 * before letting it grow.
 */
_Static_assert(sizeof(struct session) <= 424, "struct session grew past 424 bytes");
/* calloc() leaves reason and first_fin unset; each is kept in a byte. */
_Static_assert(REASON_NONE == 0 && REASON_COUNT <= 256, "close_reason must fit a byte, NONE = 0");
/* detect_seconds[] is indexed by a leg's side. */
_Static_assert(SIDE_CLIENT == 0 && SIDE_UPSTREAM == 1, "enum side indexes two-element arrays");

static uint64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct leg *
leg_peer(struct leg *leg)
{
	struct session *s = leg->session;

	return leg == &s->client ? &s->upstream : &s->client;
}

/* The upstream being connected to, or the last one tried. */
static const struct endpoint *
current_upstream(const struct session *s)
{
	const struct listener_config *lc = s->origin->cfg;
	unsigned tried = s->attempts > 0 ? s->attempts - 1u : 0u;

	return &lc->upstreams[(s->upstream_first + tried) % lc->n_upstreams];
}

/* The suspect table, when this session's listener takes part in rechecks. */
static struct recheck_table *
suspects_of(const struct session *s)
{
	return s->origin->cfg->recheck_on_death ? s->origin->set->suspects : NULL;
}

/* The upstream being connected to, or whose leg died, is suspect. */
static void
suspect_mark(struct session *s)
{
	struct recheck_table *t = suspects_of(s);

	if (t != NULL)
		(void)recheck_mark(t, current_upstream(s), s->origin->cfg->connect_timeout_ms,
		    s->origin->cfg->n_upstreams > 1);
}

/*
 * The first upstream a new client tries: the balance's pick, or, while that
 * one is suspect, the next one in order that is not (all suspect: the pick).
 */
static void
avoid_suspects(struct session *s)
{
	const struct listener_config *lc = s->origin->cfg;
	struct recheck_table *t = suspects_of(s);
	size_t i;

	if (t == NULL || lc->n_upstreams < 2 || recheck_count(t) == 0)
		return;
	for (i = 0; i < lc->n_upstreams; i++) {
		unsigned k = (unsigned)((s->upstream_first + i) % lc->n_upstreams);

		if (!recheck_avoid(t, &lc->upstreams[k])) {
			s->upstream_first = (uint16_t)k;
			return;
		}
	}
}

static struct timeval
ms_to_tv(uint64_t ms)
{
	struct timeval tv = { .tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000 };

	return tv;
}

static void leg_event(evutil_socket_t fd, short what, void *arg);
static void session_close(struct session *s, enum close_reason reason, struct leg *dead, int err);
static void session_free(struct session *s);
static void upstream_connect_next(struct session *s);

static void
leg_init(struct session *s, struct leg *leg, enum side side)
{
	leg->session = s;
	pump_end_init(&leg->pump, -1);
	leg->side = (uint8_t)side;
}

/*
 * Close a leg's socket: with rst its peer gets RST at once, otherwise a plain
 * close (a FIN, or nothing at all for a leg whose peer is already dead).
 */
static void
leg_close(struct leg *leg, bool rst)
{
	if (leg->pump.fd < 0)
		return;
	if (event_initialized(&leg->ev))
		event_del(&leg->ev);
	if (rst)
		sockopt_close_rst(leg->pump.fd);
	else
		close(leg->pump.fd);
	leg->pump.fd = -1;
}

/* A leg reported err (0 = FIN handled elsewhere): the session ends. */
static int
leg_failed(struct leg *leg, int err)
{
	session_close(leg->session, reason_classify(leg->side, err), leg, err);
	return -1;
}

/*
 * Run the direction from src to its peer leg (pump_run) and act on what
 * happened.  Returns 0 while the session lives, -1 once it has been closed.
 */
static int
leg_pump(struct leg *src)
{
	struct session *s = src->session;
	struct leg *dst = leg_peer(src);
	struct listener_stats *st = s->origin->stats;
	struct pump_result r = pump_run(s->origin->pool, &src->pump, &dst->pump);

	if (r.moved > 0) {
		/* Activity is bytes moving, not readiness (idle_timeout). */
		s->last_active_ms = clock_monotonic_ms();
		src->bytes_in += r.moved;
		if (src->side == SIDE_CLIENT)
			STAT_ADD(st->bytes_from_client, (uint64_t)r.moved);
		else
			STAT_ADD(st->bytes_to_client, (uint64_t)r.moved);
	}
	if (r.fin && s->first_fin == REASON_NONE)
		s->first_fin = (uint8_t)reason_classify(src->side, 0);
	switch ((enum pump_status)r.status) {
	case PUMP_WAIT:
	case PUMP_DONE:
		break;
	case PUMP_YIELDED:
		/* Its edge will not fire again for bytes already waiting. */
		event_active(&src->ev, EV_READ, 0);
		break;
	case PUMP_SRC_FAILED:
		return leg_failed(src, r.err);
	case PUMP_DST_FAILED:
		return leg_failed(dst, r.err);
	case PUMP_NO_PIPE:
		errno = r.err;
		log_warn("session %llu: pipe", (unsigned long long)s->id);
		return leg_failed(src, r.err);
	}
	return 0;
}

static int
session_finished(const struct session *s)
{
	return s->client.pump.eof && s->upstream.pump.eof && s->client.pump.shut &&
	    s->upstream.pump.shut && s->client.pump.pipe_len == 0 && s->upstream.pump.pipe_len == 0;
}

/* A leg that is not being read reports a later error only in SO_ERROR. */
static int
leg_check_error(struct leg *leg)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(leg->pump.fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	if (err != 0)
		return leg_failed(leg, err);
	return 0;
}

static void
idle_check(struct session *s)
{
	uint64_t idle = s->origin->cfg->idle_timeout_ms;
	uint64_t quiet = clock_monotonic_ms() - s->last_active_ms;
	struct timeval tv;

	if (quiet >= idle) {
		session_close(s, REASON_IDLE_TIMEOUT, NULL, 0);
		return;
	}
	/*
	 * Activity on the other leg does not re-arm this timer: wait the rest.
	 * The persistent event is already re-armed for a full idle_timeout
	 * before this callback runs, so if shortening it fails the check comes
	 * late, never not at all.
	 */
	tv = ms_to_tv(idle - quiet);
	if (event_add(&s->client.ev, &tv) == -1)
		log_warn("session %llu: idle timer", (unsigned long long)s->id);
}

static void
running_event(struct leg *leg, short what)
{
	struct session *s = leg->session;
	struct leg *peer = leg_peer(leg);

	if (what & EV_TIMEOUT) {
		idle_check(s);
		return;
	}
	if (what & EV_READ) {
		if (leg_pump(leg) == -1)
			return;
		/*
		 * The leg is not being read (its FIN was read, or its pipe waits
		 * on a slow peer), so a readiness here may be an error (EPOLLERR
		 * looks like read+write): look, or a dead leg would go unnoticed
		 * until the other side drains.
		 */
		if ((leg->pump.eof || leg->pump.pipe_len > 0) && leg_check_error(leg) == -1)
			return;
	}
	if ((what & EV_WRITE) && peer->pump.pipe_len > 0 && leg_pump(peer) == -1)
		return;
	if (session_finished(s))
		session_close(s, (enum close_reason)s->first_fin, NULL, 0);
}

/*
 * send_proxy: the PROXY header naming the client, written to the upstream
 * before any client byte (the client leg is not read yet).  It names the
 * address the client connected to on kaproxy.  Returns 0, or -1 once the
 * session has been closed.  A fresh connection's send buffer takes the
 * header whole; anything else is the upstream's error.
 */
static int
send_proxy_header(struct session *s)
{
	uint8_t header[PROXYPROTO_WRITE_MAX];
	struct sockaddr_storage local;
	socklen_t len = sizeof(local);
	size_t n;
	ssize_t sent;

	if (getsockname(s->client.pump.fd, (struct sockaddr *)&local, &len) == -1) {
		session_close(s, REASON_CLIENT_ERROR, &s->client, errno);
		return -1;
	}
	n = proxyproto_write((int)s->origin->cfg->send_proxy,
	    (const struct sockaddr *)&s->client_addr, (const struct sockaddr *)&local,
	    header, sizeof(header));
	sent = send(s->upstream.pump.fd, header, n, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (sent == (ssize_t)n)
		return 0;
	return leg_failed(&s->upstream, sent == -1 ? errno : EAGAIN);
}

static void
session_running(struct session *s, short what)
{
	const struct listener_config *lc = s->origin->cfg;
	struct timeval idle, *timeout = NULL;
	int err;

	if (lc->send_proxy != 0 && send_proxy_header(s) == -1)
		return;
	s->state = STATE_RUNNING;
	s->last_active_ms = clock_monotonic_ms();
	if (suspects_of(s) != NULL)
		recheck_clear(suspects_of(s), current_upstream(s));
	stats_observe(&s->origin->stats->connect_seconds, stats_connect_bounds,
	    STATS_CONNECT_BUCKETS, (double)(s->last_active_ms - s->start_ms) / 1000.0);

	/*
	 * The upstream event was registered edge-triggered for the connect and
	 * stays as it is: only its connect timeout goes.  Each event is
	 * registered once for the session's life: no epoll_ctl per event.  A
	 * readiness pending on the client (bytes sent while we connected) is
	 * reported when its event is added.
	 */
	event_remove_timer(&s->upstream.ev);
	event_assign(&s->client.ev, s->origin->base, s->client.pump.fd,
	    EV_READ | EV_WRITE | EV_ET | EV_PERSIST, leg_event, &s->client);
	if (lc->idle_timeout_ms > 0) {
		idle = ms_to_tv(lc->idle_timeout_ms);
		timeout = &idle;
	}
	if (event_add(&s->client.ev, timeout) == -1) {
		/* A client nobody watches would hang until its peer gave up. */
		err = errno;
		log_warn("session %llu: client event", (unsigned long long)s->id);
		session_close(s, REASON_CLIENT_ERROR, NULL, err);
		return;
	}
	/* The edge that reported the connect may also have said "readable" (a banner). */
	if (what & EV_READ)
		running_event(&s->upstream, EV_READ);
}

static void
connecting_event(struct session *s, short what)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (what & EV_TIMEOUT) {
		s->err = ETIMEDOUT;
	} else {
		/*
		 * epoll reports an error or hang-up as read+write readiness; write
		 * readiness alone is a completed connect, with no syscall to ask.
		 */
		if ((what & EV_READ) &&
		    getsockopt(s->upstream.pump.fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
			err = errno;
		if (err == 0) {
			session_running(s, what);
			return;
		}
		s->err = err;
		s->all_timed_out = 0;
	}
	log_debug("session %llu: upstream %s: %s", (unsigned long long)s->id,
	    current_upstream(s)->text, strerror(s->err));
	suspect_mark(s);
	leg_close(&s->upstream, false);
	upstream_connect_next(s);
}

/* Finish a teardown = fin: deliver what the live peer is owed, FIN, await its close. */
/*
 * The linger's deadline is FIN_LINGER_MS after it started (last_active_ms,
 * set by linger_start), not after the last event: libevent restarts a
 * persistent event's timeout whenever it fires for I/O, so a peer sending a
 * byte now and then would otherwise keep the linger alive for ever.  Returns
 * false when the deadline has passed or cannot be re-armed.
 */
static bool
linger_rearm(struct leg *leg)
{
	struct session *s = leg->session;
	uint64_t spent = clock_monotonic_ms() - s->last_active_ms;
	struct timeval rest;

	if (spent >= FIN_LINGER_MS)
		return false;
	rest = ms_to_tv(FIN_LINGER_MS - spent);
	return event_add(&leg->ev, &rest) == 0;
}

/* Finish a teardown = fin: deliver what the live peer is owed, FIN, await its close. */
static void
linger_event(struct leg *leg, short what)
{
	struct session *s = leg->session;
	struct leg *dead = leg_peer(leg);
	struct pump_result r;
	ssize_t n;

	if ((what & EV_TIMEOUT) || !linger_rearm(leg))
		goto give_up;
	r = pump_finish(&dead->pump, &leg->pump);
	if (r.status == PUMP_WAIT)
		return;
	if (r.status != PUMP_DONE) {
		/* Logged already: a live peer failing now only ends the linger early. */
		log_debug("session %llu: linger: %s", (unsigned long long)s->id, strerror(r.err));
		goto give_up;
	}
	/*
	 * Closing with unread bytes would send RST (RFC 2525 2.17): read and
	 * discard until the peer's FIN.  MSG_TRUNC discards in the kernel.
	 */
	for (;;) {
		n = recv(leg->pump.fd, NULL, 1 << 20, MSG_TRUNC | MSG_DONTWAIT);
		if (n > 0)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		break;
	}
	session_free(s);
	return;
give_up:
	/*
	 * A FIN now would queue behind what the peer never took: its
	 * connection would stay open and ours would live on, orphaned, holding
	 * those bytes.  A reset ends both at once.
	 */
	leg_close(leg, true);
	session_free(s);
}

/* accept_proxy refused the client's header: log why, reset the client. */
static void
header_refused(struct session *s, int err, const char *why)
{
	log_debug("session %llu: PROXY header refused: %s", (unsigned long long)s->id, why);
	session_close(s, REASON_BAD_PROXY_HEADER, NULL, err);
}

/*
 * accept_proxy: peek at what the client has sent until it holds a whole
 * header, consume exactly that (the payload after it stays queued for the
 * pump), take the client's address from it, then connect upstream.
 */
static void
header_event(struct session *s, short what)
{
	uint8_t buf[PROXYPROTO_HEADER_MAX];
	struct proxyproto_header h;
	const char *why;
	ssize_t n;
	int r;

	if (what & EV_TIMEOUT) {
		header_refused(s, ETIMEDOUT, "no complete header in time");
		return;
	}
	n = recv(s->client.pump.fd, buf, sizeof(buf), MSG_PEEK);
	if (n == -1) {
		if (errno != EAGAIN && errno != EINTR)
			leg_failed(&s->client, errno);
		return;
	}
	if (n == 0) {
		header_refused(s, ENODATA, "the client closed before a whole header");
		return;
	}
	r = proxyproto_parse(buf, (size_t)n, &h, &why);
	if (r == 0)
		return;     /* the next edge brings more */
	if (r == -1) {
		header_refused(s, EPROTO, why);
		return;
	}
	if (recv(s->client.pump.fd, buf, (size_t)r, 0) != r) {
		header_refused(s, EIO, "the peeked header could not be read");
		return;
	}
	if (h.has_addresses)
		memcpy(&s->client_addr, &h.src, h.addrlen);
	event_del(&s->client.ev);
	s->state = STATE_CONNECTING;
	upstream_connect_next(s);
}

static void
leg_event(evutil_socket_t fd, short what, void *arg)
{
	struct leg *leg = arg;
	struct session *s = leg->session;

	(void)fd;
	switch (s->state) {
	case STATE_HEADER:
		header_event(s, what);
		break;
	case STATE_CONNECTING:
		connecting_event(s, what);
		break;
	case STATE_RUNNING:
		running_event(leg, what);
		break;
	case STATE_LINGER:
		linger_event(leg, what);
		break;
	}
}

static void
upstream_connect_next(struct session *s)
{
	const struct listener_config *lc = s->origin->cfg;
	const struct endpoint *ep;
	struct timeval tv = ms_to_tv(lc->connect_timeout_ms);
	int fd;

	if (s->attempts == 0)
		avoid_suspects(s);
	while (s->attempts < lc->n_upstreams) {
		s->attempts++;
		ep = current_upstream(s);
		fd = socket(ep->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd == -1) {
			s->err = errno;
			s->all_timed_out = 0;
			log_warn("session %llu: socket for upstream %s",
			    (unsigned long long)s->id, ep->text);
			break;
		}
		if (sockopt_apply_policy(fd, &lc->upstream, "upstream") == -1) {
			s->err = errno;
			s->all_timed_out = 0;
			close(fd);
			break;
		}
		if (connect(fd, (const struct sockaddr *)&ep->addr, ep->len) == 0 ||
		    errno == EINPROGRESS) {
			s->upstream.pump.fd = fd;
			event_assign(&s->upstream.ev, s->origin->base, fd,
			    EV_READ | EV_WRITE | EV_ET | EV_PERSIST, leg_event, &s->upstream);
			if (event_add(&s->upstream.ev, &tv) == 0)
				return;
			/* Our resources, not the upstream's fault: like socket() failing. */
			s->err = errno;
			s->all_timed_out = 0;
			log_warn("session %llu: event for upstream %s",
			    (unsigned long long)s->id, ep->text);
			leg_close(&s->upstream, false);
			break;
		}
		s->err = errno;
		s->all_timed_out = 0;
		log_debug("session %llu: upstream %s: %s", (unsigned long long)s->id,
		    ep->text, strerror(s->err));
		close(fd);
		suspect_mark(s);
	}
	session_close(s, s->all_timed_out ? REASON_CONNECT_TIMEOUT : REASON_CONNECT_FAILED, NULL, s->err);
}

int
session_start(struct session_origin *origin, int fd, const struct sockaddr *addr,
    socklen_t addrlen, uint64_t id, unsigned upstream_first)
{
	struct session *s;

	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -1;
	leg_init(s, &s->client, SIDE_CLIENT);
	leg_init(s, &s->upstream, SIDE_UPSTREAM);
	s->client.pump.fd = fd;
	s->origin = origin;
	s->id = id;
	s->start_ms = clock_monotonic_ms();
	s->last_active_ms = s->start_ms;
	if (addrlen > sizeof(s->client_addr))
		addrlen = sizeof(s->client_addr);
	memcpy(&s->client_addr, addr, addrlen);
	s->upstream_first = (uint16_t)upstream_first;
	s->all_timed_out = 1;
	s->state = STATE_CONNECTING;
	LIST_INSERT_HEAD(&origin->set->head, s, entry);
	origin->set->count++;
	if (origin->cfg->accept_proxy) {
		struct timeval tv = ms_to_tv(origin->cfg->accept_proxy_timeout_ms);

		s->state = STATE_HEADER;
		event_assign(&s->client.ev, origin->base, fd, EV_READ | EV_ET | EV_PERSIST,
		    leg_event, &s->client);
		if (event_add(&s->client.ev, &tv) == -1) {
			log_warn("session %llu: client event", (unsigned long long)id);
			session_close(s, REASON_CLIENT_ERROR, NULL, errno);
		}
		return 0;
	}
	upstream_connect_next(s);
	return 0;
}

static int64_t
detect_ms(const struct tcp_snapshot *snap)
{
	/* ms since the last segment of any kind arrived on the dead leg. */
	return snap->last_ack_recv_ms < snap->last_data_recv_ms ?
	    snap->last_ack_recv_ms : snap->last_data_recv_ms;
}

/*
 * Whether a leg the kernel gave up on (*_timeout) was alive but not reading.
 * Its window is shut and the last window probe was answered (the kernel
 * clears tcpi_probes on each answer); with TCP_USER_TIMEOUT set, Linux
 * aborts such a leg once the window has stayed shut that long.  A silent
 * peer leaves its probes or retransmissions unanswered, whatever its window.
 */
static bool
not_reading(const struct tcp_snapshot *snap)
{
	return snap->snd_wnd == 0 && snap->probes == 0;
}

/* s's entry in its set's recheck list, or NULL. */
static struct session_recheck *
recheck_find(struct session_set *set, const struct session *s)
{
	uint32_t i;

	if (!s->upstream.rechecking)
		return NULL;
	for (i = 0; i < set->n_rechecks; i++)
		if (set->rechecks[i].s == s)
			return &set->rechecks[i];
	return NULL;
}

/* Take r out of its set's list; restore: give the leg its own policy back. */
static void
recheck_end(struct session_set *set, struct session_recheck *r, bool restore)
{
	struct session *s = r->s;

	if (restore && s->upstream.pump.fd >= 0)
		(void)sockopt_apply_policy(s->upstream.pump.fd, &r->saved, "rechecked upstream");
	s->upstream.rechecking = 0;
	*r = set->rechecks[--set->n_rechecks];
	/* The list lasts as long as a wave of rechecks, not for the loop's life. */
	if (set->n_rechecks == 0)
		session_set_free_rechecks(set);
}

/* s ends while its upstream is rechecked: count a death that answers it. */
static void
recheck_forget(struct session *s, enum close_reason reason)
{
	struct session_set *set = s->origin->set;
	struct session_recheck *r = recheck_find(set, s);

	if (r == NULL)
		return;
	if (reason == REASON_UPSTREAM_TIMEOUT || reason == REASON_UPSTREAM_RESET ||
	    reason == REASON_UPSTREAM_ERROR)
		STAT_ADD(s->origin->stats->rechecks[STATS_RECHECK_DEAD], 1);
	recheck_end(set, r, false);
}

/* What the close of a session learned from the kernel, for its log line. */
struct close_facts {
	struct tcp_snapshot tcp[2];   /* by enum side */
	bool have[2];
	int64_t detect_ms;            /* -1 unless a *_timeout could be timed */
	const char *peer_state;       /* with detect_ms: silent or not_reading */
	int64_t stalled_ms;           /* not_reading: since the peer last took data */
};

/*
 * Read TCP_INFO where it is needed (a syscall per leg): for the log line, or
 * to time a death; observe the detection time of a timeout.
 */
static void
close_facts(struct session *s, enum close_reason reason, const struct leg *dead, bool logging,
    struct close_facts *f)
{
	const struct leg *legs[2] = { &s->client, &s->upstream };
	int side;

	f->detect_ms = -1;
	f->stalled_ms = -1;
	f->peer_state = NULL;
	for (side = SIDE_CLIENT; side <= SIDE_UPSTREAM; side++)
		f->have[side] = (logging || (dead == legs[side] && reason_is_timeout(reason))) &&
		    sockopt_tcp_snapshot(legs[side]->pump.fd, &f->tcp[side]) == 0;
	if (dead == NULL || !reason_is_timeout(reason) || !f->have[dead->side])
		return;
	f->detect_ms = detect_ms(&f->tcp[dead->side]);
	f->peer_state = "silent";
	if (not_reading(&f->tcp[dead->side])) {
		f->peer_state = "not_reading";
		f->stalled_ms = f->tcp[dead->side].last_data_sent_ms;
	}
	stats_observe(&s->origin->stats->detect_seconds[dead->side], stats_detect_bounds,
	    STATS_DETECT_BUCKETS, (double)f->detect_ms / 1000.0);
}

static void
session_log(struct session *s, enum teardown teardown, const struct close_facts *f)
{
	const struct listener_config *lc = s->origin->cfg;
	struct access_record rec = {
		.progress = s->reason == REASON_NONE,
		.ts_ms = wall_ms(),
		.id = s->id,
		.listener = lc->name,
		.client = (const struct sockaddr *)&s->client_addr,
		.upstream = s->attempts > 0 ? current_upstream(s)->text : "",
		.duration_ms = clock_monotonic_ms() - s->start_ms,
		.bytes_from_client = s->client.bytes_in,
		.bytes_to_client = s->upstream.bytes_in,
		.reason = (enum close_reason)s->reason,
		.teardown = teardown,
		.err = s->reason == REASON_NONE ? 0 : s->err,  /* a progress record has no cause */
		.detect_ms = f->detect_ms,
		.peer_state = f->peer_state,
		.stalled_ms = f->stalled_ms,
		.client_tcp = f->have[SIDE_CLIENT] ? &f->tcp[SIDE_CLIENT] : NULL,
		.upstream_tcp = f->have[SIDE_UPSTREAM] ? &f->tcp[SIDE_UPSTREAM] : NULL,
	};

	accesslog_write(&rec);
}

/*
 * Keep what GET /closed shows of s in its set's ring: a copy into a slot
 * that was there from the start, once per session, never per byte.
 */
static void
closed_record(struct session *s, enum teardown teardown, const struct close_facts *f)
{
	struct session_set *set = s->origin->set;
	struct session_closed *c = &set->closed[set->closed_total++ % SESSION_CLOSED_MAX];

	c->id = s->id;
	c->ts_ms = wall_ms();
	c->duration_ms = clock_monotonic_ms() - s->start_ms;
	c->bytes_from_client = s->client.bytes_in;
	c->bytes_to_client = s->upstream.bytes_in;
	c->detect_ms = f->detect_ms;
	c->client = s->client_addr;
	c->reason = s->reason;
	c->teardown = (uint8_t)teardown;
	c->worker = (uint16_t)s->origin->worker_index;
	snprintf(c->listener, sizeof(c->listener), "%s", s->origin->cfg->name);
	snprintf(c->upstream, sizeof(c->upstream), "%s",
	    s->attempts > 0 ? current_upstream(s)->text : "");
}

/*
 * Close the legs as reason and the listener's teardown setting say, and
 * return what was done to the live peer.  A live leg left open is the one a
 * teardown = fin still has to flush and close (see linger_start).
 */
static enum teardown
teardown_legs(struct session *s, enum close_reason reason, struct leg *dead, bool fin)
{
	struct leg *live;

	if (dead != NULL) {
		/* The dead peer's kernel state is gone or already reset by ours. */
		leg_close(dead, false);
		live = leg_peer(dead);
		if (live->pump.fd < 0)
			return TEARDOWN_NONE;
		if (!fin)
			leg_close(live, true);
		return fin ? TEARDOWN_FIN : TEARDOWN_RST;
	}
	if (reason == REASON_CONNECT_FAILED || reason == REASON_CONNECT_TIMEOUT ||
	    reason == REASON_BAD_PROXY_HEADER) {
		leg_close(&s->upstream, false);
		leg_close(&s->client, true);
		return TEARDOWN_RST;
	}
	if (reason == REASON_CLIENT_FIN || reason == REASON_UPSTREAM_FIN) {
		leg_close(&s->client, false);
		leg_close(&s->upstream, false);
		return TEARDOWN_NONE;
	}
	/* idle_timeout, shutdown: both peers alive, both told the same way. */
	leg_close(&s->client, !fin);
	leg_close(&s->upstream, !fin);
	return fin ? TEARDOWN_FIN : TEARDOWN_RST;
}

/*
 * teardown = fin with a live peer: deliver what it is owed, FIN, and wait
 * (FIN_LINGER_MS at most) for its close.  Returns false when the linger could
 * not be armed: the caller frees the session at once.
 */
static bool
linger_start(struct session *s, struct leg *live)
{
	struct timeval linger = ms_to_tv(FIN_LINGER_MS);

	s->state = STATE_LINGER;
	s->last_active_ms = clock_monotonic_ms();      /* from here: when the linger started */
	pump_end_release(s->origin->pool, &live->pump);    /* owed to the dead peer: dropped */
	event_del(&live->ev);
	event_assign(&live->ev, s->origin->base, live->pump.fd,
	    EV_READ | EV_WRITE | EV_ET | EV_PERSIST, leg_event, live);
	if (event_add(&live->ev, &linger) == 0)
		return true;
	/* Unwatched, the linger would never end: close the live leg now. */
	log_warn("session %llu: linger event", (unsigned long long)s->id);
	return false;
}

/*
 * The access log counts bytes delivered, not read: what a leg's pipe still
 * holds is dropped with the session, unless a fin teardown is about to flush
 * the dead peer's last bytes to the live one (linger_start).
 */
static void
uncount_dropped(struct session *s, const struct leg *dead, bool fin)
{
	struct leg *legs[] = { &s->client, &s->upstream };
	size_t i;

	for (i = 0; i < sizeof(legs) / sizeof(legs[0]); i++) {
		struct leg *l = legs[i];

		if (!(fin && l == dead && leg_peer(l)->pump.fd >= 0))
			l->bytes_in -= l->pump.pipe_len;
	}
}

/*
 * End a session: reason is why, dead the leg whose peer was found dead (or
 * NULL), err the errno behind it.  Tears the other leg down per the
 * listener's teardown, logs, counts, frees (or lingers for teardown = fin).
 */
static void
session_close(struct session *s, enum close_reason reason, struct leg *dead, int err)
{
	bool logging = accesslog_enabled();
	struct close_facts facts;
	enum teardown teardown;
	struct leg *live = dead != NULL ? leg_peer(dead) : NULL;
	bool fin = reason == REASON_ADMIN ? s->admin_fin : s->origin->cfg->teardown == TEARDOWN_FIN;

	if (s->state == STATE_LINGER)
		return;
	s->reason = (uint8_t)reason;
	if (err != 0)
		s->err = err;
	recheck_forget(s, reason);
	close_facts(s, reason, dead, logging, &facts);
	/*
	 * A silent upstream may be a dead host; one that stopped reading (its
	 * window shut, its probes answered) is alive, and so are its neighbours.
	 */
	if (reason == REASON_UPSTREAM_TIMEOUT &&
	    (facts.peer_state == NULL || strcmp(facts.peer_state, "not_reading") != 0))
		suspect_mark(s);
	uncount_dropped(s, dead, fin);
	teardown = teardown_legs(s, reason, dead, fin);
	if (logging)
		session_log(s, teardown, &facts);
	closed_record(s, teardown, &facts);
	STAT_ADD(s->origin->stats->closed[reason], 1);
	if (log_debug_enabled())
		log_debug("session %llu: closed: %s%s%s, teardown %s", (unsigned long long)s->id,
		    reason_name(reason), s->err ? ": " : "", s->err ? strerror(s->err) : "",
		    reason_teardown_name(teardown));
	if (teardown == TEARDOWN_FIN && live != NULL && live->pump.fd >= 0 &&
	    linger_start(s, live))
		return;
	session_free(s);
}

static void
session_free(struct session *s)
{
	struct session_origin *origin = s->origin;
	struct session_set *set = origin->set;
	struct session_cursor *c;

	recheck_forget(s, REASON_NONE);
	leg_close(&s->client, false);
	leg_close(&s->upstream, false);
	pump_end_release(origin->pool, &s->client.pump);
	pump_end_release(origin->pool, &s->upstream.pump);
	/* A walk about to visit s moves on to the session after it. */
	LIST_FOREACH(c, &set->cursors, entry)
		if (c->next == s)
			c->next = LIST_NEXT(s, entry);
	LIST_REMOVE(s, entry);
	set->count--;
	free(s);
	/* Last: the origin may go away with it (a retired listener). */
	origin->release(origin);
	if (set->count == 0 && set->on_empty != NULL)
		set->on_empty(set->on_empty_arg);
}

void
session_set_init(struct session_set *set, void (*on_empty)(void *), void *arg)
{
	LIST_INIT(&set->head);
	LIST_INIT(&set->cursors);
	set->count = 0;
	set->progress_ms = clock_monotonic_ms();
	set->closed_total = 0;
	set->on_empty = on_empty;
	set->on_empty_arg = arg;
	set->suspects = NULL;
	set->rechecks = NULL;
	set->n_rechecks = 0;
	set->cap_rechecks = 0;
}

void
session_set_free_rechecks(struct session_set *set)
{
	free(set->rechecks);
	set->rechecks = NULL;
	set->n_rechecks = 0;
	set->cap_rechecks = 0;
}

/*
 * Re-probe s's upstream leg: its policy saved, the short one set.  Only an
 * idle leg: with data unacknowledged keepalive does not run, and the leg's
 * own user timeout already bounds it.  Nor one with bytes waiting to go to a
 * shut window: a 3 s user timeout would end a server that is alive but not
 * reading.  Returns true when it started.
 */
static bool
recheck_begin(struct session_set *set, struct session *s)
{
	int fd = s->upstream.pump.fd;
	struct tcp_snapshot snap;
	struct session_recheck *r;

	if (sockopt_tcp_snapshot(fd, &snap) == -1 || snap.state != TCP_ESTABLISHED ||
	    snap.unacked > 0 || snap.snd_wnd == 0 || s->client.pump.pipe_len > 0)
		return false;
	if (set->n_rechecks == set->cap_rechecks) {
		/* Grown only when an address turns suspect, never per event. */
		uint32_t cap = set->cap_rechecks ? set->cap_rechecks * 2 : 16;
		struct session_recheck *grown = realloc(set->rechecks, cap * sizeof(*grown));

		if (grown == NULL) {
			log_warn("session %llu: recheck", (unsigned long long)s->id);
			return false;
		}
		set->rechecks = grown;
		set->cap_rechecks = cap;
	}
	r = &set->rechecks[set->n_rechecks];
	if (sockopt_read_policy(fd, &r->saved) == -1)
		return false;
	if (sockopt_apply_policy(fd, &recheck_policy, "rechecked upstream") == -1) {
		/* Part of it may be set. */
		(void)sockopt_apply_policy(fd, &r->saved, "rechecked upstream");
		return false;
	}
	r->s = s;
	r->start_ms = clock_monotonic_ms();
	s->upstream.rechecking = 1;
	set->n_rechecks++;
	return true;
}

unsigned
session_set_recheck_start(struct session_set *set, const struct endpoint *suspects, size_t n)
{
	struct session *s;
	unsigned started = 0;
	size_t i;

	LIST_FOREACH(s, &set->head, entry) {
		if (s->state != STATE_RUNNING || s->upstream.rechecking || suspects_of(s) == NULL)
			continue;
		for (i = 0; i < n; i++)
			if (endpoint_equal(current_upstream(s), &suspects[i]))
				break;
		if (i < n && recheck_begin(set, s))
			started++;
	}
	return started;
}

unsigned
session_set_recheck_poll(struct session_set *set)
{
	uint64_t now = clock_monotonic_ms();
	struct tcp_snapshot snap;
	uint32_t i = 0;

	while (i < set->n_rechecks) {
		struct session_recheck *r = &set->rechecks[i];
		struct session *s = r->s;
		uint64_t elapsed = now - r->start_ms;

		/*
		 * Answered: something arrived after the recheck started (a probe's
		 * ACK refreshes last_ack_recv; data does too) and no probe is out.
		 */
		if (sockopt_tcp_snapshot(s->upstream.pump.fd, &snap) == 0 &&
		    snap.state != TCP_CLOSE && snap.probes == 0 &&
		    (uint64_t)detect_ms(&snap) < elapsed) {
			STAT_ADD(s->origin->stats->rechecks[STATS_RECHECK_ALIVE], 1);
			log_debug("session %llu: upstream %s answered its recheck in %llu ms",
			    (unsigned long long)s->id, current_upstream(s)->text,
			    (unsigned long long)(elapsed - (uint64_t)detect_ms(&snap)));
			recheck_end(set, r, true);
			continue;
		}
		if (elapsed >= RECHECK_GIVE_UP_MS) {
			log_info("session %llu: upstream %s: recheck neither answered nor ended "
			    "in %d ms: its own policy is back", (unsigned long long)s->id,
			    current_upstream(s)->text, RECHECK_GIVE_UP_MS);
			recheck_end(set, r, true);
			continue;
		}
		i++;
	}
	return set->n_rechecks;
}

void
session_close_all(struct session_set *set, enum close_reason reason)
{
	struct session *s;

	while ((s = LIST_FIRST(&set->head)) != NULL) {
		if (s->state == STATE_LINGER)
			session_free(s);
		else
			session_close(s, reason, NULL, 0);
	}
}

unsigned
session_set_apply_policy(struct session_set *set, const struct endpoint *listen,
    const struct leg_policy *client, const struct leg_policy *upstream)
{
	struct session *s;
	unsigned n = 0;

	LIST_FOREACH(s, &set->head, entry) {
		if (s->state == STATE_LINGER || !endpoint_equal(&s->origin->cfg->listen, listen))
			continue;
		/* A failure is logged; the leg keeps what it had, nothing else to do. */
		struct session_recheck *r = recheck_find(set, s);

		if (s->client.pump.fd >= 0)
			(void)sockopt_apply_policy(s->client.pump.fd, client, "live client");
		/* Under recheck, the new policy is the one its end restores. */
		if (r != NULL)
			r->saved = *upstream;
		else if (s->upstream.pump.fd >= 0)
			(void)sockopt_apply_policy(s->upstream.pump.fd, upstream, "live upstream");
		n++;
	}
	return n;
}

/* Has the session's age crossed a multiple of every since the last sweep? */
static bool
progress_due(const struct session *s, uint32_t every, uint64_t since, uint64_t now)
{
	uint64_t before = since > s->start_ms ? since - s->start_ms : 0;

	return (now - s->start_ms) / every > before / every;
}

void
session_set_progress(struct session_set *set)
{
	uint64_t now = clock_monotonic_ms();
	struct close_facts facts;
	struct session *s;

	if (!accesslog_enabled()) {
		set->progress_ms = now;
		return;
	}
	LIST_FOREACH(s, &set->head, entry) {
		uint32_t every = s->origin->cfg->log_interval_ms;

		if (every == 0 || s->state != STATE_RUNNING ||
		    !progress_due(s, every, set->progress_ms, now))
			continue;
		close_facts(s, REASON_NONE, NULL, true, &facts);
		session_log(s, TEARDOWN_NONE, &facts);
	}
	set->progress_ms = now;
}

int
session_set_close_id(struct session_set *set, uint64_t id, bool fin)
{
	struct session *s;

	LIST_FOREACH(s, &set->head, entry) {
		if (s->id != id)
			continue;
		if (s->state == STATE_LINGER)
			return -1;
		s->admin_fin = fin;
		session_close(s, REASON_ADMIN, NULL, 0);
		return 1;
	}
	return 0;
}

void
session_cursor_open(struct session_set *set, struct session_cursor *c)
{
	c->next = LIST_FIRST(&set->head);
	LIST_INSERT_HEAD(&set->cursors, c, entry);
}

struct session *
session_cursor_next(struct session_cursor *c)
{
	struct session *s = c->next;

	if (s != NULL)
		c->next = LIST_NEXT(s, entry);
	return s;
}

void
session_cursor_close(struct session_cursor *c)
{
	LIST_REMOVE(c, entry);
	c->next = NULL;
}

const char *
session_listener_name(const struct session *s)
{
	return s->origin->cfg->name;
}

void
session_view(struct session *s, struct session_view *v)
{
	static const char *const states[] = {
		[STATE_HEADER] = "proxy_header",
		[STATE_CONNECTING] = "connecting",
		[STATE_RUNNING] = "running",
		[STATE_LINGER] = "closing",
	};
	uint64_t now = clock_monotonic_ms();
	int side;

	_Static_assert(sizeof(states) / sizeof(states[0]) == STATE_LINGER + 1,
	    "one name per session state");
	v->id = s->id;
	v->age_ms = now - s->start_ms;
	v->idle_ms = now - s->last_active_ms;
	v->bytes_from_client = s->client.bytes_in;
	v->bytes_to_client = s->upstream.bytes_in;
	memset(&v->client, 0, sizeof(v->client));
	memcpy(&v->client, &s->client_addr, sizeof(s->client_addr));
	for (side = SIDE_CLIENT; side <= SIDE_UPSTREAM; side++) {
		int fd = (side == SIDE_CLIENT ? &s->client : &s->upstream)->pump.fd;

		v->have_tcp[side] = sockopt_tcp_snapshot(fd, &v->tcp[side]) == 0;
		v->have_policy[side] = sockopt_read_policy(fd, &v->policy[side]) == 0;
	}
	v->state = states[s->state];
	v->worker = s->origin->worker_index;
	snprintf(v->listener, sizeof(v->listener), "%s", s->origin->cfg->name);
	snprintf(v->upstream, sizeof(v->upstream), "%s", current_upstream(s)->text);
}

size_t
session_view_json(const struct session_view *v, char *buf, size_t size)
{
	char addr[ENDPOINT_TEXT_MAX];
	size_t len = 0;

	buf[0] = '\0';
	endpoint_format((const struct sockaddr *)&v->client, addr, sizeof(addr));
	json_append(buf, size, &len, "{\"id\":%llu,\"worker\":%u,\"listener\":\"",
	    (unsigned long long)v->id, v->worker);
	json_escape(buf, size, &len, v->listener);
	json_append(buf, size, &len, "\",\"state\":\"%s\",\"age_ms\":%llu,\"client\":\"%s\",\"upstream\":\"",
	    v->state, (unsigned long long)v->age_ms, addr);
	json_escape(buf, size, &len, v->upstream);
	json_append(buf, size, &len,
	    "\",\"bytes_from_client\":%llu,\"bytes_to_client\":%llu,\"idle_ms\":%llu",
	    (unsigned long long)v->bytes_from_client, (unsigned long long)v->bytes_to_client,
	    (unsigned long long)v->idle_ms);
	json_tcp_snapshot(buf, size, &len, "client_tcp",
	    v->have_tcp[SIDE_CLIENT] ? &v->tcp[SIDE_CLIENT] : NULL);
	json_tcp_snapshot(buf, size, &len, "upstream_tcp",
	    v->have_tcp[SIDE_UPSTREAM] ? &v->tcp[SIDE_UPSTREAM] : NULL);
	json_leg_policy(buf, size, &len, "client_policy",
	    v->have_policy[SIDE_CLIENT] ? &v->policy[SIDE_CLIENT] : NULL);
	json_leg_policy(buf, size, &len, "upstream_policy",
	    v->have_policy[SIDE_UPSTREAM] ? &v->policy[SIDE_UPSTREAM] : NULL);
	json_append(buf, size, &len, "}");
	return len;
}

const struct session_closed *
session_set_closed_at(const struct session_set *set, unsigned i)
{
	if (i >= SESSION_CLOSED_MAX || i >= set->closed_total)
		return NULL;
	return &set->closed[(set->closed_total - 1 - i) % SESSION_CLOSED_MAX];
}

size_t
session_closed_json(const struct session_closed *c, char *buf, size_t size)
{
	char addr[ENDPOINT_TEXT_MAX];
	size_t len = 0;

	buf[0] = '\0';
	endpoint_format((const struct sockaddr *)&c->client, addr, sizeof(addr));
	json_append(buf, size, &len, "{\"id\":%llu,\"worker\":%u,\"listener\":\"",
	    (unsigned long long)c->id, (unsigned)c->worker);
	json_escape(buf, size, &len, c->listener);
	json_append(buf, size, &len, "\",\"ts_ms\":%llu,\"client\":\"%s\",\"upstream\":\"",
	    (unsigned long long)c->ts_ms, addr);
	json_escape(buf, size, &len, c->upstream);
	json_append(buf, size, &len,
	    "\",\"duration_ms\":%llu,\"bytes_from_client\":%llu,\"bytes_to_client\":%llu,"
	    "\"close_reason\":\"%s\",\"teardown\":\"%s\"",
	    (unsigned long long)c->duration_ms, (unsigned long long)c->bytes_from_client,
	    (unsigned long long)c->bytes_to_client, reason_name((enum close_reason)c->reason),
	    reason_teardown_name((enum teardown)c->teardown));
	if (c->detect_ms >= 0)
		json_append(buf, size, &len, ",\"detect_ms\":%lld", (long long)c->detect_ms);
	json_append(buf, size, &len, "}");
	return len;
}
