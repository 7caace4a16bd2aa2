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
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "kaproxy/admin.h"
#include "kaproxy/log.h"
#include "kaproxy/session.h"

#define ADMIN_MAX_HEADERS 8192
#define ADMIN_MAX_BODY 1024
#define ADMIN_TIMEOUT_S 10
#define ADMIN_WORKER_WAIT_MS 1000
#define CONNECTIONS_DEFAULT_LIMIT 1000
#define CONNECTIONS_MAX_LIMIT 100000

/*
 * Sessions rendered per step on a worker (two TCP_INFO reads each), and the
 * most a step looks at while filtering: a step stays in the tens of
 * microseconds however many connections there are.
 */
#define WALK_RENDER_STEP 16
#define WALK_VISIT_STEP 512

enum gather_kind { GATHER_METRICS, GATHER_CONNECTIONS };

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
	struct evbuffer *out;         /* connections: struct session_view, one after another */
	unsigned long shown, total;
	struct stats_list stats;      /* metrics: a copy of the worker's counters */
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
	atomic_ulong shown;           /* objects rendered over all workers */
	unsigned n_parts, outstanding;
	struct gather_part parts[];
};

struct admin {
	struct event_base *base;
	struct evhttp *http;
	pthread_t thread;
	bool running;
	struct worker *const *workers;
	unsigned n_workers;
	const struct stats_process *proc;
	const atomic_bool *draining;
	LIST_HEAD(, gather) pending;
};

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
	evhttp_send_reply(req, code, reason, out);
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

/* Append "(workers 1, 3 did not answer within N ms)" style text to out. */
static void
missing_text(const struct gather *g, char *buf, size_t size)
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

	missing_text(g, missing, sizeof(missing));
	if (missing[0] != '\0') {
		/* A scrape without a worker's counters would look like a counter reset. */
		snprintf(text, sizeof(text),
		    "worker(s) %s did not answer within %d ms; no partial scrape\n", missing,
		    ADMIN_WORKER_WAIT_MS);
		log_warnx("admin: /metrics: %.*s", (int)strlen(text) - 1, text);
		evhttp_add_header(evhttp_request_get_output_headers(req), "X-Kaproxy-Missing-Workers",
		    missing);
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
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	    "text/plain; version=0.0.4; charset=utf-8");
	evhttp_send_reply(req, HTTP_OK, "OK", out);
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
	missing_text(g, missing, sizeof(missing));
	if (missing[0] != '\0') {
		log_warnx("admin: /connections: worker(s) %s did not answer within %d ms",
		    missing, ADMIN_WORKER_WAIT_MS);
		evhttp_add_header(headers, "X-Kaproxy-Missing-Workers", missing);
	}
	snprintf(count, sizeof(count), "%lu", total);
	evhttp_add_header(headers, "X-Kaproxy-Connections", count);
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
		if (kind == GATHER_CONNECTIONS && (g->parts[i].out = evbuffer_new()) == NULL)
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
	    g->kind == GATHER_METRICS ? metrics_step : connections_step;
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

/* Parse ?listener= and ?limit=; on a bad value answer 400 and return -1. */
static int
connections_query(struct evhttp_request *req, const char *query, char **filter,
    unsigned long *limit)
{
	struct evkeyvalq params;
	const char *value;
	char *end;
	int rc = 0;

	*filter = NULL;
	*limit = CONNECTIONS_DEFAULT_LIMIT;
	TAILQ_INIT(&params);
	if (query == NULL || evhttp_parse_query_str(query, &params) != 0)
		return 0;
	if ((value = evhttp_find_header(&params, "listener")) != NULL &&
	    (*filter = strdup(value)) == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		rc = -1;
	}
	if (rc == 0 && (value = evhttp_find_header(&params, "limit")) != NULL) {
		errno = 0;
		*limit = strtoul(value, &end, 10);
		if (errno != 0 || *end != '\0' || *value == '\0' || *limit == 0 ||
		    *limit > CONNECTIONS_MAX_LIMIT) {
			reply_text(req, HTTP_BADREQUEST, "Bad Request",
			    "limit must be an integer from 1 to 100000\n");
			free(*filter);
			*filter = NULL;
			rc = -1;
		}
	}
	evhttp_clear_headers(&params);
	return rc;
}

static void
serve_gathered(struct admin *a, struct evhttp_request *req, enum gather_kind kind,
    const char *query)
{
	struct gather *g;
	unsigned long limit = 0;
	char *filter = NULL;

	if (kind == GATHER_CONNECTIONS && connections_query(req, query, &filter, &limit) == -1)
		return;
	g = gather_new(a, req, kind);
	if (g == NULL) {
		log_warn("admin: request");
		free(filter);
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	g->filter = filter;
	g->limit = limit;
	gather_start(g);
}

static void
admin_request(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);

	if (path == NULL) {
		reply_text(req, HTTP_BADREQUEST, "Bad Request", "bad request\n");
		return;
	}
	if (strcmp(path, "/healthz") != 0 && strcmp(path, "/metrics") != 0 &&
	    strcmp(path, "/connections") != 0) {
		reply_text(req, HTTP_NOTFOUND, "Not Found",
		    "not found: try /connections, /metrics or /healthz\n");
		return;
	}
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
		reply_text(req, 405, "Method Not Allowed", "method not allowed: use GET\n");
		return;
	}
	if (strcmp(path, "/healthz") == 0)
		serve_healthz(a, req);
	else if (strcmp(path, "/metrics") == 0)
		serve_gathered(a, req, GATHER_METRICS, NULL);
	else
		serve_gathered(a, req, GATHER_CONNECTIONS, evhttp_uri_get_query(uri));
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

	fd = socket(ep->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		log_warn("admin: socket");
		return -1;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    bind(fd, (const struct sockaddr *)&ep->addr, ep->len) == -1 || listen(fd, 64) == -1) {
		log_warn("admin: listen on %s", ep->text);
		close(fd);
		return -1;
	}
	return fd;
}

static struct evhttp *
admin_http(struct admin *a, int fd)
{
	struct evhttp *http = evhttp_new(a->base);

	if (http == NULL) {
		log_warnx("admin: evhttp_new failed");
		return NULL;
	}
	evhttp_set_max_headers_size(http, ADMIN_MAX_HEADERS);
	evhttp_set_max_body_size(http, ADMIN_MAX_BODY);
	evhttp_set_timeout(http, ADMIN_TIMEOUT_S);
	/* Every method reaches the callback, which answers 405 itself. */
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
	    EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(http, admin_request, a);
	if (evhttp_accept_socket_with_handle(http, fd) == NULL) {
		log_warnx("admin: evhttp_accept_socket failed");
		evhttp_free(http);
		return NULL;
	}
	return http;
}

struct admin *
admin_start(struct worker *const *workers, unsigned n, const struct endpoint *ep,
    const struct stats_process *proc, const atomic_bool *draining)
{
	struct admin *a;
	int fd;

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
	a->base = event_base_new();
	if (a->base == NULL) {
		log_warnx("admin: event_base_new failed");
		goto err;
	}
	fd = admin_socket(ep);
	if (fd == -1)
		goto err;
	a->http = admin_http(a, fd);
	if (a->http == NULL) {
		close(fd);
		goto err;
	}
	if (pthread_create(&a->thread, NULL, admin_thread, a) != 0) {
		log_warnx("admin: cannot start its thread");
		goto err;
	}
	a->running = true;
	log_info("admin: http://%s/ (/connections /metrics /healthz)", ep->text);
	return a;
err:
	admin_free(a);
	return NULL;
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

void
admin_free(struct admin *a)
{
	struct gather *g;

	if (a == NULL)
		return;
	if (a->running) {
		event_base_loopexit(a->base, NULL);
		pthread_join(a->thread, NULL);
	}
	while ((g = LIST_FIRST(&a->pending)) != NULL)
		gather_cancel(g);
	if (a->http != NULL)
		evhttp_free(a->http);
	if (a->base != NULL)
		event_base_free(a->base);
	free(a);
}
