/*
 * admin: the operator's view over HTTP, on a thread and event loop of its
 * own, so that serving it never runs on a worker's loop.
 *
 * What lives on the workers (sessions, counters) is gathered as a job per
 * worker (worker_job): each worker fills its own part on its own thread, in
 * short steps between which its loop goes on forwarding, and tells the admin
 * loop when it is done.  The reply goes out when every part is in, or at
 * ADMIN_WORKER_WAIT_MS with what arrived, saying which workers did not
 * answer.  A worker that never answers costs a late part, never a hang.
 *
 * No client of the endpoint can hold it either.  Each connection is tracked
 * from its accept (evhttp builds it on a bufferevent made here) to evhttp's
 * close callback: it must deliver a whole request head within
 * ADMIN_REQUEST_DEADLINE_MS of its accept or of the end of its previous
 * reply, and take its reply within ADMIN_REPLY_DEADLINE_MS, or it is closed,
 * however slowly it trickles bytes.  At most max_conns are open: at the cap
 * evhttp stops accepting and a plain accept answers 503 and closes at once.
 * The raw bytes of each head are copied as they arrive and read by
 * adminreq_parse, which decides the route and refuses with a 4xx whatever is
 * not plainly one of them; libevent's lenient parse only frames the request.
 *
 * The same machinery serves a second, read-only address when status_listen
 * is set (an admin_port each, with its own cap and slots, so that a flood on
 * the network-facing one cannot lock the operator out of the loopback one):
 * it answers /healthz and /metrics only, and 404 to every other path.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "kaproxy/admin.h"
#include "kaproxy/adminreq.h"
#include "kaproxy/endpoint.h"
#include "kaproxy/log.h"
#include "kaproxy/page.h"
#include "kaproxy/session.h"
#include "kaproxy/upgrade.h"

/*
 * libevent's own bounds, looser than adminreq's so that a head it frames is
 * judged by adminreq (431); a head beyond them libevent refuses itself with
 * 400 while it is still arriving, a body with 413.
 */
#define ADMIN_MAX_HEADERS (2 * ADMINREQ_MAX_HEAD)
#define ADMIN_MAX_BODY 1024
#define ADMIN_TIMEOUT_S 10            /* libevent's: no progress reading or writing */
#define ADMIN_WORKER_WAIT_MS 1000
/* A whole request head, from the accept or from the end of the previous reply. */
#define ADMIN_REQUEST_DEADLINE_MS 5000
/* A reply, from its request to its last byte taken: the workers' wait and the writing. */
#define ADMIN_REPLY_DEADLINE_MS 10000
_Static_assert(ADMIN_REPLY_DEADLINE_MS > ADMIN_WORKER_WAIT_MS,
    "a request is answered before its connection's deadline");
_Static_assert(ADMINREQ_NAME_MAX == CONFIG_NAME_MAX, "?listener= holds a listener name");
_Static_assert(ADMINREQ_CLOSED_MAX == SESSION_CLOSED_MAX, "/closed?limit= is at most a ring");

/* Sent as is to a connection over the cap, which is then closed. */
#define REFUSE_BODY "too many admin connections\n"
#define REFUSE_REPLY "HTTP/1.1 503 Service Unavailable\r\n" \
	"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 27\r\n" \
	"Connection: close\r\n\r\n" REFUSE_BODY
_Static_assert(sizeof(REFUSE_BODY) - 1 == 27, "Content-Length of REFUSE_BODY");
/* Connections refused per wake-up of the refusing accept, so others get a turn. */
#define REFUSE_STEP 32
/*
 * A refused connection whose request is still on its way would be reset by
 * a close (unread bytes), and the RST may overtake the 503.  So it is shut
 * for writing and drained until its client's FIN, for a second at most; a
 * few such at a time, the rest closed at once.
 */
#define REFUSE_LINGER 8
#define REFUSE_LINGER_MS 1000

/* The statuses adminreq refuses with, for their counters. */
static const int refused_codes[] = { 400, 403, 404, 405, 414, 431 };
#define N_REFUSED_CODES (sizeof(refused_codes) / sizeof(refused_codes[0]))

/*
 * Sessions rendered per step on a worker (two TCP_INFO reads each), and the
 * most a step looks at while filtering: a step stays in the tens of
 * microseconds however many connections there are.
 */
#define WALK_RENDER_STEP 16
#define WALK_VISIT_STEP 512

enum gather_kind { GATHER_METRICS, GATHER_CONNECTIONS, GATHER_CLOSE, GATHER_CLOSED };

struct gather;

/* One worker's share of a reply; written on that worker's thread until answered. */
struct gather_part {
	struct worker_job job;
	struct gather *g;
	struct event answered_ev;     /* on the admin loop; activated by the worker, last */
	bool started;                 /* the job was queued: wait for it or cancel it */
	bool seen;                    /* answered: the admin loop has counted it */
	bool walking;                 /* the cursor is open (worker's thread) */
	struct session_cursor cursor;
	struct evbuffer *out;         /* connections: struct session_view, one after another;
	                               * closed: struct session_closed, newest first */
	unsigned long shown, total;
	struct stats_list stats;      /* metrics: a copy of the worker's counters */
	int closed;                   /* close: session_set_close_id's answer */
	bool failed;                  /* out of memory on the worker */
};

/* One request waiting for the workers' parts (admin thread only, but parts). */
struct gather {
	LIST_ENTRY(gather) entry;
	struct admin *admin;
	struct evhttp_request *req;   /* NULL once answered */
	enum gather_kind kind;
	struct event deadline;
	char *filter;                 /* ?listener=, or NULL */
	unsigned long limit;
	uint64_t id;                  /* close: the connection, and how */
	bool fin;
	atomic_ulong shown;           /* objects rendered over all workers */
	unsigned n_parts, outstanding;
	struct gather_part parts[];
};

/*
 * One admin connection, from its accept to evhttp's close callback; a slot
 * of the pool made at start, so that an accept allocates nothing of ours.
 */
struct admin_conn {
	LIST_ENTRY(admin_conn) entry;  /* open, or free */
	struct admin_port *port;
	struct bufferevent *bev;       /* made here for evhttp; one reference is ours */
	struct evhttp_connection *evcon; /* once attached */
	struct evbuffer_cb_entry *copy_cb;
	struct event attach_ev;        /* right after the accept */
	struct event deadline;
	struct evhttp_request *serving; /* the request being answered, or NULL */
	bool dropped;                  /* bytes past head[] were not kept */
	size_t head_len;
	char head[ADMINREQ_MAX_HEAD];  /* what the client sent, from its current request on */
};

/* A refused connection waiting for its client's FIN (fd -1: a free slot). */
struct refused {
	struct event ev;
	int fd;
};

/* One listening address: admin_listen, or status_listen (/healthz and /metrics only). */
struct admin_port {
	struct admin *admin;
	bool status;                   /* status_listen: no other route, no Host check */
	const char *name;              /* "admin" or "status", for logs and metric names */
	struct evhttp *http;           /* NULL: this address is off */
	struct evhttp_bound_socket *bound; /* the listening socket; NULL once closed */
	struct evconnlistener *listener; /* evhttp's accept, off while at the cap */
	struct event refuse_ev;        /* the accept that answers 503, on while at the cap */
	struct event refuse_pause;     /* EMFILE: the refusing accept rests a second */
	struct refused lingering[REFUSE_LINGER];
	struct admin_conn *pool;
	LIST_HEAD(, admin_conn) open, free;
	unsigned n_open, max_conns;
	/* Read and written on the admin thread only. */
	uint64_t conns_refused, deadline_closed, requests_refused[N_REFUSED_CODES];
};

enum { PORT_ADMIN, PORT_STATUS, N_PORTS };

struct admin {
	struct event_base *base;
	pthread_t thread;
	bool running;
	struct worker *const *workers;
	unsigned n_workers;
	const struct stats_process *proc;
	const atomic_bool *draining;
	LIST_HEAD(, gather) pending;
	struct admin_port ports[N_PORTS];
};

/*
 * evhttp_send_reply, but a HEAD is answered with the headers alone: libevent
 * writes whatever body it is given, which a kept-alive client would read as
 * the start of its next reply.  Content-Length stays the GET's.
 */
static void
send_reply(struct evhttp_request *req, int code, const char *reason, struct evbuffer *body)
{
	char length[32];

	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
		snprintf(length, sizeof(length), "%zu", evbuffer_get_length(body));
		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Length", length);
		evbuffer_drain(body, evbuffer_get_length(body));
	}
	evhttp_send_reply(req, code, reason, body);
}

static void
reply_text(struct evhttp_request *req, int code, const char *reason, const char *body)
{
	struct evbuffer *out = evbuffer_new();

	if (out == NULL || evbuffer_add(out, body, strlen(body)) == -1) {
		if (out != NULL)
			evbuffer_free(out);
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	    "text/plain; charset=utf-8");
	send_reply(req, code, reason, out);
	evbuffer_free(out);
}

/*
 * GET /: the live page (page.h).  It runs its own inline script and style
 * and may fetch only from this endpoint; no other page may frame it.
 */
static void
serve_page(struct evhttp_request *req)
{
	struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
	struct evbuffer *out = evbuffer_new();

	if (out == NULL || evbuffer_add_reference(out, page_html, page_html_len, NULL, NULL) == -1) {
		if (out != NULL)
			evbuffer_free(out);
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	evhttp_add_header(headers, "Content-Type", "text/html; charset=utf-8");
	evhttp_add_header(headers, "Cache-Control", "no-store");
	evhttp_add_header(headers, "X-Content-Type-Options", "nosniff");
	evhttp_add_header(headers, "X-Frame-Options", "DENY");
	evhttp_add_header(headers, "Content-Security-Policy",
	    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
	    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
	    "frame-ancestors 'none'");
	evhttp_send_reply(req, HTTP_OK, "OK", out);
	evbuffer_free(out);
}

static void
serve_healthz(struct admin *a, struct evhttp_request *req)
{
	if (atomic_load(a->draining))
		reply_text(req, 503, "Service Unavailable", "draining\n");
	else
		reply_text(req, HTTP_OK, "OK", "ok\n");
}

/* ---- the workers' side: steps run on each worker's own thread ---------- */

static bool
metrics_step(struct worker *w, struct worker_job *job)
{
	struct gather_part *part = (struct gather_part *)job;

	if (stats_merge(&part->stats, worker_stats(w)) == -1)
		part->failed = true;
	return true;
}

/*
 * Copy s into part if the filter takes it and the limit allows.  Only the
 * copy is made here, on the worker; the JSON is written on the admin thread.
 */
static void
take_one(struct gather_part *part, struct session *s)
{
	struct gather *g = part->g;
	struct session_view view;

	part->total++;
	if (atomic_fetch_add_explicit(&g->shown, 1, memory_order_relaxed) >= g->limit)
		return;
	session_view(s, &view);
	part->shown++;
	if (evbuffer_add(part->out, &view, sizeof(view)) == -1)
		part->failed = true;
}

static bool
connections_step(struct worker *w, struct worker_job *job)
{
	struct gather_part *part = (struct gather_part *)job;
	const char *filter = part->g->filter;
	unsigned rendered = 0, visited = 0;
	struct session *s;

	if (!part->walking) {
		session_cursor_open(worker_sessions(w), &part->cursor);
		part->walking = true;
	}
	while (rendered < WALK_RENDER_STEP && visited++ < WALK_VISIT_STEP) {
		s = session_cursor_next(&part->cursor);
		if (s == NULL) {
			session_cursor_close(&part->cursor);
			part->walking = false;
			return true;
		}
		if (filter != NULL && strcmp(filter, session_listener_name(s)) != 0)
			continue;
		take_one(part, s);
		rendered++;
	}
	return false;
}

/* The worker's newest close records, copied in one step (a few kB at most). */
static bool
closed_step(struct worker *w, struct worker_job *job)
{
	struct gather_part *part = (struct gather_part *)job;
	const struct session_closed *c;
	unsigned i;

	for (i = 0; i < part->g->limit; i++) {
		if ((c = session_set_closed_at(worker_sessions(w), i)) == NULL)
			break;
		if (evbuffer_add(part->out, c, sizeof(*c)) == -1) {
			part->failed = true;
			break;
		}
	}
	return true;
}

static bool
close_step(struct worker *w, struct worker_job *job)
{
	struct gather_part *part = (struct gather_part *)job;

	part->closed = session_set_close_id(worker_sessions(w), part->g->id, part->g->fin);
	return true;
}

/*
 * The worker's last touch of the part: once the admin loop runs answered_cb
 * the gather may be freed, and it cannot run before event_active has
 * released the admin base's lock.
 */
static void
part_done(struct worker_job *job)
{
	struct gather_part *part = (struct gather_part *)job;

	event_active(&part->answered_ev, EV_READ, 0);
}

/* ---- the admin loop's side ---------------------------------------------- */

static void
gather_free(struct gather *g)
{
	unsigned i;

	LIST_REMOVE(g, entry);
	event_del(&g->deadline);
	for (i = 0; i < g->n_parts; i++) {
		event_del(&g->parts[i].answered_ev);
		if (g->parts[i].out != NULL)
			evbuffer_free(g->parts[i].out);
		stats_free_all(&g->parts[i].stats);
	}
	free(g->filter);
	free(g);
}

/*
 * The workers that did not answer g ("1,3") into buf, and into the reply's
 * X-Kaproxy-Missing-Workers header; false when every one answered.
 */
static bool
name_missing(const struct gather *g, char *buf, size_t size)
{
	size_t len = 0;
	unsigned i;
	int n;

	buf[0] = '\0';
	for (i = 0; i < g->n_parts && len < size; i++) {
		if (g->parts[i].seen)
			continue;
		n = snprintf(buf + len, size - len, "%s%u", len > 0 ? "," : "", i);
		if (n < 0)
			break;
		len += (size_t)n;
	}
	if (buf[0] == '\0')
		return false;
	evhttp_add_header(evhttp_request_get_output_headers(g->req), "X-Kaproxy-Missing-Workers",
	    buf);
	return true;
}

/*
 * One address's own figures, as kaproxy_admin_* or kaproxy_status_* (admin
 * thread: read where they are written).  Nothing for an address that is off.
 */
static int
render_port_metrics(const struct admin_port *port, struct evbuffer *out)
{
	const char *n = port->name;
	size_t i;

	if (port->http == NULL)
		return 0;
	if (evbuffer_add_printf(out,
	    "# HELP kaproxy_%s_connections Connections open now on %s_listen.\n"
	    "# TYPE kaproxy_%s_connections gauge\n"
	    "kaproxy_%s_connections %u\n"
	    "# HELP kaproxy_%s_connections_refused_total Connections to %s_listen answered 503 "
	    "and closed at their accept because admin_max_connections were open.\n"
	    "# TYPE kaproxy_%s_connections_refused_total counter\n"
	    "kaproxy_%s_connections_refused_total %llu\n"
	    "# HELP kaproxy_%s_deadline_closed_total Connections to %s_listen closed because a "
	    "whole request did not arrive, or its reply was not taken, in time.\n"
	    "# TYPE kaproxy_%s_deadline_closed_total counter\n"
	    "kaproxy_%s_deadline_closed_total %llu\n"
	    "# HELP kaproxy_%s_requests_refused_total Requests to %s_listen refused by the "
	    "strict reading of the request%s, by status.\n"
	    "# TYPE kaproxy_%s_requests_refused_total counter\n",
	    n, n, n, n, port->n_open, n, n, n, n, (unsigned long long)port->conns_refused,
	    n, n, n, n, (unsigned long long)port->deadline_closed,
	    n, n, port->status ? " or for a path served only on admin_listen" : "", n) == -1)
		return -1;
	for (i = 0; i < N_REFUSED_CODES; i++) {
		/* The status address checks no Host or Origin: it never answers 403. */
		if (port->status && refused_codes[i] == 403)
			continue;
		if (evbuffer_add_printf(out, "kaproxy_%s_requests_refused_total{code=\"%d\"} %llu\n",
		    n, refused_codes[i], (unsigned long long)port->requests_refused[i]) == -1)
			return -1;
	}
	return 0;
}

static int
render_admin_metrics(const struct admin *a, struct evbuffer *out)
{
	unsigned i;

	for (i = 0; i < N_PORTS; i++)
		if (render_port_metrics(&a->ports[i], out) == -1)
			return -1;
	return 0;
}

static void
reply_metrics(struct gather *g)
{
	struct stats_list merged = LIST_HEAD_INITIALIZER(merged);
	struct evhttp_request *req = g->req;
	struct evbuffer *out;
	char missing[128], text[256];
	unsigned i;
	int rc = 0;

	if (name_missing(g, missing, sizeof(missing))) {
		/* A scrape without a worker's counters would look like a counter reset. */
		snprintf(text, sizeof(text),
		    "worker(s) %s did not answer within %d ms; no partial scrape\n", missing,
		    ADMIN_WORKER_WAIT_MS);
		log_warnx("admin: /metrics: %.*s", (int)strlen(text) - 1, text);
		reply_text(req, 503, "Service Unavailable", text);
		return;
	}
	for (i = 0; i < g->n_parts && rc == 0; i++)
		rc = g->parts[i].failed ? -1 : stats_merge(&merged, &g->parts[i].stats);
	out = rc == 0 ? evbuffer_new() : NULL;
	if (out == NULL || stats_render_prometheus(&merged, g->admin->proc, out) == -1) {
		stats_free_all(&merged);
		if (out != NULL)
			evbuffer_free(out);
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	stats_free_all(&merged);
	if (render_admin_metrics(g->admin, out) == -1) {
		evbuffer_free(out);
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	    "text/plain; version=0.0.4; charset=utf-8");
	send_reply(req, HTTP_OK, "OK", out);
	evbuffer_free(out);
}

/* Append part's views to out as JSON array elements (opening it at the first); -1 on ENOMEM. */
static int
render_views(struct gather_part *part, struct evbuffer *out, bool *first)
{
	struct session_view view;
	char line[2048];
	size_t len;

	while (evbuffer_remove(part->out, &view, sizeof(view)) == (int)sizeof(view)) {
		len = session_view_json(&view, line, sizeof(line));
		if (evbuffer_add(out, *first ? "[" : ",\n", *first ? 1 : 2) == -1 ||
		    evbuffer_add(out, line, len) == -1)
			return -1;
		*first = false;
	}
	return 0;
}

static void
reply_connections(struct gather *g)
{
	struct evhttp_request *req = g->req;
	struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
	struct evbuffer *out = evbuffer_new();
	unsigned long total = 0;
	char missing[128], count[32];
	bool first = true, failed = out == NULL;
	unsigned i;

	for (i = 0; i < g->n_parts && !failed; i++) {
		struct gather_part *part = &g->parts[i];

		if (!part->seen)
			continue;
		total += part->total;
		failed = part->failed || render_views(part, out, &first) == -1;
	}
	if (failed || evbuffer_add(out, first ? "[]\n" : "]\n", first ? 3 : 2) == -1) {
		if (out != NULL)
			evbuffer_free(out);
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	/* The array stays an array; headers say when it was cut or is incomplete. */
	if (name_missing(g, missing, sizeof(missing)))
		log_warnx("admin: /connections: worker(s) %s did not answer within %d ms",
		    missing, ADMIN_WORKER_WAIT_MS);
	snprintf(count, sizeof(count), "%lu", total);
	evhttp_add_header(headers, "X-Kaproxy-Connections", count);
	evhttp_add_header(headers, "Content-Type", "application/json");
	send_reply(req, HTTP_OK, "OK", out);
	evbuffer_free(out);
}

/* 200 once a worker closed it; 404 only when every worker said it has no such id. */
static void
reply_close(struct gather *g)
{
	char body[96], missing[128];
	bool closing = false;
	unsigned i;

	for (i = 0; i < g->n_parts; i++) {
		if (!g->parts[i].seen)
			continue;
		if (g->parts[i].closed == 1) {
			snprintf(body, sizeof(body), "{\"id\":%llu,\"closed\":true,\"how\":\"%s\"}\n",
			    (unsigned long long)g->id, g->fin ? "fin" : "rst");
			evhttp_add_header(evhttp_request_get_output_headers(g->req), "Content-Type",
			    "application/json");
			reply_text(g->req, HTTP_OK, "OK", body);
			return;
		}
		closing |= g->parts[i].closed == -1;
	}
	if (closing) {
		reply_text(g->req, 409, "Conflict", "already closing\n");
		return;
	}
	if (name_missing(g, missing, sizeof(missing))) {
		reply_text(g->req, 503, "Service Unavailable", "a worker did not answer\n");
		return;
	}
	reply_text(g->req, HTTP_NOTFOUND, "Not Found", "no such connection\n");
}

/* Newest first: by close time, then by id (ids grow with accepts). */
static int
closed_newer_first(const void *a, const void *b)
{
	const struct session_closed *x = a, *y = b;

	if (x->ts_ms != y->ts_ms)
		return x->ts_ms < y->ts_ms ? 1 : -1;
	return x->id < y->id ? 1 : x->id > y->id ? -1 : 0;
}

/* Every worker's records in one array, newest first, at most g->limit of them. */
static void
reply_closed(struct gather *g)
{
	struct evhttp_request *req = g->req;
	struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
	struct session_closed *all = calloc((size_t)g->n_parts * ADMINREQ_CLOSED_MAX, sizeof(*all));
	struct evbuffer *out = evbuffer_new();
	size_t n = 0, i;
	char missing[128], line[1024];
	bool failed = all == NULL || out == NULL;
	unsigned p;

	for (p = 0; p < g->n_parts && !failed; p++) {
		struct gather_part *part = &g->parts[p];

		if (!part->seen)
			continue;
		failed = part->failed;
		/* closed_step gives at most limit <= ADMINREQ_CLOSED_MAX per worker */
		while (!failed && n < (size_t)(p + 1) * ADMINREQ_CLOSED_MAX &&
		    evbuffer_remove(part->out, &all[n], sizeof(all[n])) == (int)sizeof(all[n]))
			n++;
	}
	if (!failed) {
		qsort(all, n, sizeof(all[0]), closed_newer_first);
		if (n > g->limit)
			n = g->limit;
		failed = evbuffer_add(out, "[", 1) == -1;
	}
	for (i = 0; i < n && !failed; i++) {
		size_t len = session_closed_json(&all[i], line, sizeof(line));

		failed = (i > 0 && evbuffer_add(out, ",\n", 2) == -1) ||
		    evbuffer_add(out, line, len) == -1;
	}
	free(all);
	if (failed || evbuffer_add(out, "]\n", 2) == -1) {
		if (out != NULL)
			evbuffer_free(out);
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	if (name_missing(g, missing, sizeof(missing)))
		log_warnx("admin: /closed: worker(s) %s did not answer within %d ms",
		    missing, ADMIN_WORKER_WAIT_MS);
	evhttp_add_header(headers, "Content-Type", "application/json");
	evhttp_send_reply(req, HTTP_OK, "OK", out);
	evbuffer_free(out);
}

static void
gather_reply(struct gather *g)
{
	if (g->req == NULL)
		return;
	if (g->kind == GATHER_METRICS)
		reply_metrics(g);
	else if (g->kind == GATHER_CLOSE)
		reply_close(g);
	else if (g->kind == GATHER_CLOSED)
		reply_closed(g);
	else
		reply_connections(g);
	g->req = NULL;
}

/* A worker's part is in (admin loop): count it; answer and free when all are. */
static void
answered_cb(evutil_socket_t fd, short what, void *arg)
{
	struct gather_part *part = arg;
	struct gather *g = part->g;

	(void)fd;
	(void)what;
	part->seen = true;
	if (--g->outstanding > 0)
		return;
	gather_reply(g);
	gather_free(g);
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct gather *g = arg;

	(void)fd;
	(void)what;
	/* Late parts are still counted in as they come, then g is freed. */
	gather_reply(g);
}

static struct gather *
gather_new(struct admin *a, struct evhttp_request *req, enum gather_kind kind)
{
	struct timeval wait = { ADMIN_WORKER_WAIT_MS / 1000, (ADMIN_WORKER_WAIT_MS % 1000) * 1000 };
	struct gather *g;
	unsigned i;

	g = calloc(1, sizeof(*g) + a->n_workers * sizeof(g->parts[0]));
	if (g == NULL)
		return NULL;
	g->admin = a;
	g->req = req;
	g->kind = kind;
	g->n_parts = a->n_workers;
	LIST_INSERT_HEAD(&a->pending, g, entry);
	evtimer_assign(&g->deadline, a->base, deadline_cb, g);
	for (i = 0; i < g->n_parts; i++) {
		g->parts[i].g = g;
		event_assign(&g->parts[i].answered_ev, a->base, -1, 0, answered_cb, &g->parts[i]);
		LIST_INIT(&g->parts[i].stats);
		if ((kind == GATHER_CONNECTIONS || kind == GATHER_CLOSED) &&
		    (g->parts[i].out = evbuffer_new()) == NULL)
			goto err;
	}
	if (evtimer_add(&g->deadline, &wait) == -1)
		goto err;
	return g;
err:
	gather_free(g);
	return NULL;
}

/* Queue every worker's part; the reply follows from answered_cb or deadline_cb. */
static void
gather_start(struct gather *g)
{
	bool (*step)(struct worker *, struct worker_job *) =
	    g->kind == GATHER_METRICS ? metrics_step :
	    g->kind == GATHER_CLOSE ? close_step :
	    g->kind == GATHER_CLOSED ? closed_step : connections_step;
	unsigned i;

	for (i = 0; i < g->n_parts; i++) {
		struct gather_part *part = &g->parts[i];

		if (worker_job_start(g->admin->workers[i], &part->job, step, part_done) == 0) {
			part->started = true;
			g->outstanding++;
		}
	}
	if (g->outstanding == 0) {
		gather_reply(g);
		gather_free(g);
	}
}

static void
serve_gathered(struct admin *a, struct evhttp_request *req, enum gather_kind kind,
    const struct adminreq *r)
{
	struct gather *g;
	char *filter = NULL;

	if (kind == GATHER_CONNECTIONS && r->listener[0] != '\0' &&
	    (filter = strdup(r->listener)) == NULL) {
		log_warn("admin: request");
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	g = gather_new(a, req, kind);
	if (g == NULL) {
		log_warn("admin: request");
		free(filter);
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	g->filter = filter;
	g->limit = r->limit;
	g->id = r->id;
	g->fin = r->how == ADMINREQ_HOW_FIN;
	gather_start(g);
}

/* ---- connections: accept, deadline, cap --------------------------------- */

static void
conn_arm(struct admin_conn *c, unsigned ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(&c->deadline, &tv);
}

static void
refuse_start(struct admin_port *port)
{
	evconnlistener_disable(port->listener);
	event_add(&port->refuse_ev, NULL);
}

static void
refuse_stop(struct admin_port *port)
{
	event_del(&port->refuse_ev);
	event_del(&port->refuse_pause);
	if (port->listener != NULL)    /* NULL once evhttp_free has freed it */
		evconnlistener_enable(port->listener);
}

/*
 * The connection is gone, or evhttp never took it: free its slot and drop our
 * reference to its bufferevent (evhttp frees it, and closes the socket, itself).
 */
static void
conn_release(struct admin_conn *c)
{
	struct admin_port *port = c->port;

	event_del(&c->attach_ev);
	event_del(&c->deadline);
	evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->copy_cb);
	bufferevent_decref(c->bev);
	c->bev = NULL;
	c->evcon = NULL;
	LIST_REMOVE(c, entry);
	LIST_INSERT_HEAD(&port->free, c, entry);
	if (port->n_open-- == port->max_conns)
		refuse_stop(port);
}

/* evhttp is freeing the connection (closecb): every way it ends comes here. */
static void
conn_closed(struct evhttp_connection *evcon, void *arg)
{
	(void)evcon;
	conn_release(arg);
}

/*
 * Right after the accept, once evhttp has built its connection on our
 * bufferevent (whose callback argument it is): watch its close, start the
 * clock.  Runs before any read on it, queued during the accept.
 */
static void
conn_attach(evutil_socket_t fd, short what, void *arg)
{
	struct admin_conn *c = arg;
	bufferevent_event_cb eventcb;
	void *evcon;

	(void)fd;
	(void)what;
	bufferevent_getcb(c->bev, NULL, NULL, &eventcb, &evcon);
	if (eventcb == NULL) {
		/* evhttp failed to set it up (out of memory) and let it go */
		conn_release(c);
		return;
	}
	c->evcon = evcon;
	evhttp_connection_set_closecb(c->evcon, conn_closed, c);
	conn_arm(c, ADMIN_REQUEST_DEADLINE_MS);
}

static void
conn_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct admin_conn *c = arg;

	(void)fd;
	(void)what;
	if (c->serving != NULL && evhttp_request_get_response_code(c->serving) == 0) {
		/* Not answered yet: the gather's earlier deadline answers it first. */
		conn_arm(c, 100);
		return;
	}
	c->port->deadline_closed++;
	log_debug("%s: closing a connection that %s in time", c->port->name,
	    c->serving != NULL ? "did not take its reply" : "sent no whole request");
	evhttp_connection_free(c->evcon);   /* conn_closed follows */
}

/*
 * Keep a copy of every byte the client sends, from the start of its current
 * request, for adminreq.  An input buffer callback runs as the bytes are
 * read, before evhttp's read callback consumes them.
 */
static void
conn_copy(struct evbuffer *input, const struct evbuffer_cb_info *info, void *arg)
{
	struct admin_conn *c = arg;
	size_t len = evbuffer_get_length(input), room, n;
	struct evbuffer_ptr from;

	if (info->n_added == 0)
		return;
	if (info->n_added > len) {
		/* added and drained in one report: those bytes cannot be copied */
		c->dropped = true;
		return;
	}
	room = sizeof(c->head) - c->head_len;
	n = info->n_added < room ? info->n_added : room;
	if (n < info->n_added)
		c->dropped = true;
	if (n == 0 || evbuffer_ptr_set(input, &from, len - info->n_added, EVBUFFER_PTR_SET) == -1)
		return;
	if (evbuffer_copyout_from(input, &from, c->head + c->head_len, n) == (ev_ssize_t)n)
		c->head_len += n;
	else
		c->dropped = true;
}

/*
 * evhttp's bufferevent callback: each accepted connection is built on one
 * made here, so that it is tracked from its accept.  Reaching the cap turns
 * evhttp's accept off (the listener stops its accept loop at once).
 */
static struct bufferevent *
conn_new(struct event_base *base, void *arg)
{
	struct admin_port *port = arg;
	struct admin_conn *c = LIST_FIRST(&port->free);
	struct bufferevent *bev;

	if (c == NULL) {
		/* Cannot happen: the accept is off at the cap. */
		log_warnx("admin: no free connection slot");
		return NULL;
	}
	/* Without BEV_OPT_CLOSE_ON_FREE evhttp closes the socket itself. */
	bev = bufferevent_socket_new(base, -1, 0);
	if (bev == NULL || (c->copy_cb = evbuffer_add_cb(bufferevent_get_input(bev), conn_copy,
	    c)) == NULL) {
		/* evhttp then builds its own, which is not tracked */
		log_warnx("admin: cannot track a connection (out of memory)");
		if (bev != NULL)
			bufferevent_free(bev);
		return NULL;
	}
	bufferevent_incref(bev);
	c->bev = bev;
	c->evcon = NULL;
	c->serving = NULL;
	c->dropped = false;
	c->head_len = 0;
	LIST_REMOVE(c, entry);
	LIST_INSERT_HEAD(&port->open, c, entry);
	event_active(&c->attach_ev, EV_TIMEOUT, 1);
	if (++port->n_open == port->max_conns)
		refuse_start(port);
	return bev;
}

static void
refuse_resume(evutil_socket_t fd, short what, void *arg)
{
	struct admin_port *port = arg;

	(void)fd;
	(void)what;
	if (port->n_open >= port->max_conns)
		event_add(&port->refuse_ev, NULL);
}

static void
refused_close(struct refused *r)
{
	event_del(&r->ev);
	close(r->fd);
	r->fd = -1;
}

/* A lingering refused connection: read and drop until its FIN, an error or the second is up. */
static void
refused_drain(evutil_socket_t fd, short what, void *arg)
{
	struct refused *r = arg;
	char discard[1024];
	ssize_t n;

	if (what & EV_TIMEOUT) {
		refused_close(r);
		return;
	}
	while ((n = recv(fd, discard, sizeof(discard), MSG_DONTWAIT)) > 0)
		;
	if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
		refused_close(r);
}

/* After the 503: linger in a free slot (see REFUSE_LINGER), or close at once. */
static void
refused_linger(struct admin_port *port, int s)
{
	static const struct timeval linger = { REFUSE_LINGER_MS / 1000,
		(REFUSE_LINGER_MS % 1000) * 1000 };
	size_t i;

	for (i = 0; i < REFUSE_LINGER; i++) {
		struct refused *r = &port->lingering[i];

		if (r->fd != -1)
			continue;
		if (shutdown(s, SHUT_WR) == -1)
			break;
		event_assign(&r->ev, port->admin->base, s, EV_READ | EV_PERSIST, refused_drain, r);
		if (event_add(&r->ev, &linger) == -1)
			break;
		r->fd = s;
		return;
	}
	close(s);
}

/* At the cap: accept, answer 503, and close (lingering, see REFUSE_LINGER); no slot is taken. */
static void
refuse_accept(evutil_socket_t fd, short what, void *arg)
{
	static const struct timeval pause = { 1, 0 };
	struct admin_port *port = arg;
	char discard[1024];
	int s, i;

	(void)what;
	for (i = 0; i < REFUSE_STEP; i++) {
		s = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (s == -1) {
			if (errno == EMFILE || errno == ENFILE) {
				log_warn("%s: accept", port->name);
				event_del(&port->refuse_ev);
				evtimer_add(&port->refuse_pause, &pause);
			} else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED) {
				log_warn("%s: accept", port->name);
			}
			return;
		}
		port->conns_refused++;
		/* Read what already came, so that the close is a FIN the reply precedes. */
		if (recv(s, discard, sizeof(discard), MSG_DONTWAIT) == -1 && errno != EAGAIN &&
		    errno != EWOULDBLOCK)
			log_debug("admin: refused connection: recv: %s", strerror(errno));
		if (send(s, REFUSE_REPLY, sizeof(REFUSE_REPLY) - 1, MSG_DONTWAIT | MSG_NOSIGNAL) == -1)
			log_debug("admin: refused connection: send: %s", strerror(errno));
		refused_linger(port, s);
	}
}

static struct admin_conn *
conn_of(struct admin_port *port, struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct admin_conn *c;

	LIST_FOREACH(c, &port->open, entry)
		if (c->evcon != NULL && c->evcon == evcon)
			return c;
	return NULL;
}

/* The reply's last byte is taken: the next request's clock starts. */
static void
reply_done(struct evhttp_request *req, void *arg)
{
	struct admin_conn *c = arg;

	(void)req;
	c->serving = NULL;
	conn_arm(c, ADMIN_REQUEST_DEADLINE_MS);
}

static void
refuse_request(struct admin_port *port, struct evhttp_request *req, int status,
    const struct adminreq *r)
{
	struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
	char text[128];
	size_t i;

	for (i = 0; i < N_REFUSED_CODES; i++)
		if (refused_codes[i] == status)
			port->requests_refused[i]++;
	snprintf(text, sizeof(text), "%s\n", r->why != NULL ? r->why : "bad request");
	if (status == 405 && r->allow != NULL)
		evhttp_add_header(headers, "Allow", r->allow);
	/* What follows a refused request is not read: the connection ends with it. */
	evhttp_add_header(headers, "Connection", "close");
	reply_text(req, status, adminreq_status_text(status), text);
}

/*
 * The names a browser on this host uses for the endpoint: the address the
 * connection came in on ("127.0.0.1:9901", "[::1]:9901", or the host's own
 * address with admin_allow_remote), and localhost with its port.  A page
 * whose name was rebound to 127.0.0.1 still sends its own name as Host.
 */
static bool
host_is_own(const struct admin_conn *c, const char *at, size_t len)
{
	char self[ENDPOINT_TEXT_MAX], local[ENDPOINT_TEXT_MAX];
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	const char *port;

	if (getsockname(bufferevent_getfd(c->bev), (struct sockaddr *)&ss, &sslen) == -1)
		return false;
	endpoint_format((const struct sockaddr *)&ss, self, sizeof(self));
	port = strrchr(self, ':');
	snprintf(local, sizeof(local), "localhost%s", port != NULL ? port : "");
	return (len == strlen(self) && strncasecmp(at, self, len) == 0) ||
	    (len == strlen(local) && strncasecmp(at, local, len) == 0);
}

/* HTTP/1.1 must name a Host (RFC 9112); a 1.0 client without one is no browser. */
static bool
own_host(const struct admin_conn *c, const struct adminreq *r)
{
	if (r->host.len == 0)
		return r->minor == 0;
	return host_is_own(c, r->host.at, r->host.len);
}

/*
 * A browser names the page behind any cross-origin request (and behind
 * every POST) in Origin: it must be this endpoint's own.
 */
static bool
own_origin(const struct admin_conn *c, const struct adminreq *r)
{
	static const char scheme[] = "http://";
	size_t n = sizeof(scheme) - 1;

	return r->origin.len > n && strncasecmp(r->origin.at, scheme, n) == 0 &&
	    host_is_own(c, r->origin.at + n, r->origin.len - n);
}

/*
 * What status_listen serves: nothing that changes state or shows a client
 * address.  Every other route there is refused as an unknown path is.
 */
static bool
status_serves(enum adminreq_route route)
{
	return route == ADMINREQ_HEALTHZ || route == ADMINREQ_METRICS;
}

static void
admin_request(struct evhttp_request *req, void *arg)
{
	struct admin_port *port = arg;
	struct admin *a = port->admin;
	struct admin_conn *c = conn_of(port, req);
	struct adminreq r;
	int status;

	if (c == NULL) {
		/* An untracked connection (out of memory at its accept): serve nothing. */
		evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
		reply_text(req, 503, "Service Unavailable", "out of memory\n");
		return;
	}
	c->serving = req;
	evhttp_request_set_on_complete_cb(req, reply_done, c);
	conn_arm(c, ADMIN_REPLY_DEADLINE_MS);
	status = adminreq_parse(c->head, c->head_len, &r);
	if (status == ADMINREQ_INCOMPLETE) {
		/* libevent framed a head adminreq does not see ended: a bare LF */
		status = 400;
		r.why = "lines must end with CRLF";
	}
	if (port->status && (status == 404 ||
	    (r.route != ADMINREQ_NONE && !status_serves(r.route)))) {
		/*
		 * Whatever else is wrong with it (405, 400): no hint that the path
		 * exists, nor a list of the admin's paths in adminreq's 404 text.
		 */
		status = 404;
		r.why = "not found (status_listen serves /healthz and /metrics only)";
	}
	if (status != 0) {
		refuse_request(port, req, status, &r);
		return;
	}
	/*
	 * No Host check on status_listen: what it serves is readable by anyone
	 * who can reach its address anyway, so a rebound name gains a page
	 * nothing, and probes and scrapers name it in ways it cannot know (a
	 * Service's name, an address before NAT).
	 */
	if (!port->status && !own_host(c, &r)) {
		r.why = "Host is not this endpoint's address (DNS rebinding?)";
		refuse_request(port, req, 403, &r);
		return;
	}
	/*
	 * A GET from another page is refused too: CORS would keep the answer
	 * from that page, but the client addresses in it need not reach the
	 * browser at all.
	 */
	if (!port->status && r.origin.len > 0 && !own_origin(c, &r)) {
		r.why = "Origin is not this endpoint (cross-site request?)";
		refuse_request(port, req, 403, &r);
		return;
	}
	/* The next request starts after this head (no body is taken). */
	memmove(c->head, c->head + r.head_len, c->head_len - r.head_len);
	c->head_len -= r.head_len;
	if (c->dropped)
		evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
	switch (r.route) {
	case ADMINREQ_HEALTHZ:
		serve_healthz(a, req);
		break;
	case ADMINREQ_METRICS:
		serve_gathered(a, req, GATHER_METRICS, &r);
		break;
	case ADMINREQ_CONNECTIONS:
		serve_gathered(a, req, GATHER_CONNECTIONS, &r);
		break;
	case ADMINREQ_CONNECTION_CLOSE:
		serve_gathered(a, req, GATHER_CLOSE, &r);
		break;
	case ADMINREQ_PAGE:
		serve_page(req);
		break;
	case ADMINREQ_CLOSED:
		serve_gathered(a, req, GATHER_CLOSED, &r);
		break;
	default:
		reply_text(req, HTTP_NOTFOUND, "Not Found", "not found\n");
		break;
	}
}

static void *
admin_thread(void *arg)
{
	struct admin *a = arg;

	if (event_base_loop(a->base, EVLOOP_NO_EXIT_ON_EMPTY) == -1)
		log_warnx("admin: event loop failed");
	return NULL;
}

/* A bound, listening socket for ep; -1 (logged) on error. */
static int
admin_socket(const struct endpoint *ep)
{
	int fd, one = 1;

	/* Handed over by a binary upgrade: the old process still serves on it until it drains. */
	if ((fd = upgrade_take(ep)) != -1)
		return fd;
	fd = socket(ep->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		log_warn("admin: socket");
		return -1;
	}
	/*
	 * A burst of connections waits in a long accept queue, from which the
	 * cap's 503 drains it at once, rather than overflowing a short one and
	 * waiting a second for the kernel's SYN-ACK retransmission.  Queued
	 * connections are the kernel's, not descriptors of ours.
	 */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    bind(fd, (const struct sockaddr *)&ep->addr, ep->len) == -1 ||
	    listen(fd, SOMAXCONN) == -1) {
		log_warn("admin: listen on %s", ep->text);
		close(fd);
		return -1;
	}
	return fd;
}

static struct evhttp *
admin_http(struct admin_port *port, int fd)
{
	struct evhttp *http = evhttp_new(port->admin->base);
	struct evhttp_bound_socket *bound;
	size_t i;

	if (http == NULL) {
		log_warnx("%s: evhttp_new failed", port->name);
		return NULL;
	}
	evhttp_set_max_headers_size(http, ADMIN_MAX_HEADERS);
	evhttp_set_max_body_size(http, ADMIN_MAX_BODY);
	evhttp_set_timeout(http, ADMIN_TIMEOUT_S);
	/*
	 * Every method, even one libevent does not know (it gets a type bit of
	 * its own), reaches the callback, where adminreq answers 405 or 400
	 * rather than libevent's 501.
	 */
	evhttp_set_allowed_methods(http, (ev_uint16_t)~0);
	evhttp_set_gencb(http, admin_request, port);
	evhttp_set_bevcb(http, conn_new, port);
	bound = evhttp_accept_socket_with_handle(http, fd);
	if (bound == NULL) {
		log_warnx("%s: evhttp_accept_socket failed", port->name);
		evhttp_free(http);
		return NULL;
	}
	port->bound = bound;
	port->listener = evhttp_bound_socket_get_listener(bound);
	for (i = 0; i < REFUSE_LINGER; i++)
		port->lingering[i].fd = -1;
	event_assign(&port->refuse_ev, port->admin->base, fd, EV_READ | EV_PERSIST, refuse_accept,
	    port);
	evtimer_assign(&port->refuse_pause, port->admin->base, refuse_resume, port);
	return http;
}

/* The pool of max connection slots, all free. */
static int
admin_pool(struct admin_port *port, unsigned max)
{
	struct event_base *base = port->admin->base;
	unsigned i;

	port->pool = calloc(max, sizeof(*port->pool));
	if (port->pool == NULL) {
		log_warn("%s: %u connection slots", port->name, max);
		return -1;
	}
	port->max_conns = max;
	for (i = 0; i < max; i++) {
		struct admin_conn *c = &port->pool[i];

		c->port = port;
		event_assign(&c->attach_ev, base, -1, 0, conn_attach, c);
		evtimer_assign(&c->deadline, base, conn_deadline, c);
		LIST_INSERT_HEAD(&port->free, c, entry);
	}
	return 0;
}

/* Listen on ep with max slots of port's own; -1 (logged) on error. */
static int
port_open(struct admin_port *port, const struct endpoint *ep, unsigned max)
{
	int fd;

	if (admin_pool(port, max) == -1)
		return -1;
	fd = admin_socket(ep);
	if (fd == -1)
		return -1;
	port->http = admin_http(port, fd);
	if (port->http == NULL) {
		close(fd);
		return -1;
	}
	return 0;
}

/* Called with the loop stopped; port_free of a port never opened does nothing. */
static void
port_free(struct admin_port *port)
{
	struct admin_conn *c;
	size_t i;

	if (port->http != NULL) {
		/* evhttp_free frees the listener before the connections it closes. */
		event_del(&port->refuse_ev);
		event_del(&port->refuse_pause);
		for (i = 0; i < REFUSE_LINGER; i++)
			if (port->lingering[i].fd != -1)
				refused_close(&port->lingering[i]);
		port->listener = NULL;
		evhttp_free(port->http);
		port->http = NULL;
	}
	/* Connections evhttp freed before they were attached (loop stopped first). */
	while ((c = LIST_FIRST(&port->open)) != NULL)
		conn_release(c);
	free(port->pool);
	port->pool = NULL;
}

struct admin *
admin_start(struct worker *const *workers, unsigned n, const struct endpoint *ep,
    const struct endpoint *status_ep, unsigned max_conns, const struct stats_process *proc,
    const atomic_bool *draining)
{
	const struct endpoint *eps[N_PORTS] = { ep, status_ep };
	struct admin *a;
	unsigned i;

	a = calloc(1, sizeof(*a));
	if (a == NULL) {
		log_warn("admin");
		return NULL;
	}
	a->workers = workers;
	a->n_workers = n;
	a->proc = proc;
	a->draining = draining;
	LIST_INIT(&a->pending);
	for (i = 0; i < N_PORTS; i++) {
		a->ports[i].admin = a;
		a->ports[i].status = i == PORT_STATUS;
		a->ports[i].name = i == PORT_STATUS ? "status" : "admin";
		LIST_INIT(&a->ports[i].open);
		LIST_INIT(&a->ports[i].free);
	}
	a->base = event_base_new();
	if (a->base == NULL) {
		log_warnx("admin: event_base_new failed");
		goto err;
	}
	for (i = 0; i < N_PORTS; i++)
		if (eps[i] != NULL &&
		    port_open(&a->ports[i], eps[i], max_conns > 0 ? max_conns : 1) == -1)
			goto err;
	if (pthread_create(&a->thread, NULL, admin_thread, a) != 0) {
		log_warnx("admin: cannot start its thread");
		goto err;
	}
	a->running = true;
	if (ep != NULL)
		log_info("admin: http://%s/ (/ /connections /closed /metrics /healthz), at most %u "
		    "connections", ep->text, a->ports[PORT_ADMIN].max_conns);
	if (status_ep != NULL)
		log_info("status: http://%s/ (/metrics /healthz only), at most %u connections",
		    status_ep->text, a->ports[PORT_STATUS].max_conns);
	return a;
err:
	admin_free(a);
	return NULL;
}

/* On the admin thread: close each listening socket; what is open is served to its end. */
static void
stop_accepting(evutil_socket_t fd, short what, void *arg)
{
	struct admin *a = arg;
	unsigned i;

	(void)fd;
	(void)what;
	for (i = 0; i < N_PORTS; i++) {
		struct admin_port *port = &a->ports[i];

		if (port->bound == NULL)
			continue;
		event_del(&port->refuse_ev);
		event_del(&port->refuse_pause);
		port->listener = NULL;
		/* Frees its listener, which closes the socket (LEV_OPT_CLOSE_ON_FREE). */
		evhttp_del_accept_socket(port->http, port->bound);
		port->bound = NULL;
	}
}

void
admin_stop_accepting(struct admin *a)
{
	static const struct timeval now = { 0, 0 };

	if (a == NULL)
		return;
	if (event_base_once(a->base, -1, EV_TIMEOUT, stop_accepting, a, &now) == -1)
		log_warnx("admin: cannot stop accepting: this process answers until it exits");
}

/* Shutting down with parts still out: withdraw them from their workers. */
static void
close_cursor(struct worker *w, void *arg)
{
	struct gather_part *part = arg;

	(void)w;
	if (part->walking)
		session_cursor_close(&part->cursor);
	part->walking = false;
}

static void
gather_cancel(struct gather *g)
{
	unsigned i;

	for (i = 0; i < g->n_parts; i++) {
		struct gather_part *part = &g->parts[i];

		if (!part->started || part->seen)
			continue;
		worker_job_cancel(&part->job);
		/* Read after the cancel, which waited for any step in progress. */
		if (part->walking)
			worker_call(part->job.w, close_cursor, part);
	}
	gather_free(g);
}

static int
port_fd(const struct admin *a, unsigned which)
{
	const struct admin_port *port = a == NULL ? NULL : &a->ports[which];

	return port == NULL || port->listener == NULL ? -1 : evconnlistener_get_fd(port->listener);
}

int
admin_fd(const struct admin *a)
{
	return port_fd(a, PORT_ADMIN);
}

int
admin_status_fd(const struct admin *a)
{
	return port_fd(a, PORT_STATUS);
}

void
admin_free(struct admin *a)
{
	struct gather *g;
	unsigned i;

	if (a == NULL)
		return;
	if (a->running) {
		event_base_loopexit(a->base, NULL);
		pthread_join(a->thread, NULL);
	}
	while ((g = LIST_FIRST(&a->pending)) != NULL)
		gather_cancel(g);
	for (i = 0; i < N_PORTS; i++)
		port_free(&a->ports[i]);
	if (a->base != NULL)
		event_base_free(a->base);
	free(a);
}
