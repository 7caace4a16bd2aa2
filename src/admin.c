/*
 * admin: the operator's view over HTTP.  Requests are small and bounded by
 * evhttp limits; /connections is capped by ?limit= so it answers however
 * many connections are open.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "kaproxy/admin.h"
#include "kaproxy/log.h"
#include "kaproxy/session.h"

#define ADMIN_MAX_HEADERS 8192
#define ADMIN_MAX_BODY 1024
#define ADMIN_TIMEOUT_S 10
#define CONNECTIONS_DEFAULT_LIMIT 1000
#define CONNECTIONS_MAX_LIMIT 100000

struct admin {
	struct evhttp *http;
	struct worker *workers;
	unsigned n_workers;
	const struct stats_process *proc;
};

/* GET /connections, gathered worker by worker on each one's own thread. */
struct connections_walk {
	struct evbuffer *out;
	const char *filter;
	unsigned long limit, shown, total;
};

static void
reply_text(struct evhttp_request *req, int code, const char *reason, const char *body)
{
	struct evbuffer *out = evbuffer_new();

	if (out == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	    "text/plain; charset=utf-8");
	evbuffer_add(out, body, strlen(body));
	evhttp_send_reply(req, code, reason, out);
	evbuffer_free(out);
}

static void
serve_healthz(struct admin *a, struct evhttp_request *req)
{
	if (atomic_load(&a->workers[0].shared->draining))
		reply_text(req, 503, "Service Unavailable", "draining\n");
	else
		reply_text(req, HTTP_OK, "OK", "ok\n");
}

static void
merge_worker_stats(struct worker *w, void *arg)
{
	struct stats_list *merged = arg;

	if (stats_merge(merged, &w->stats) == -1)
		log_warn("admin: merging worker %u's counters", w->index);
}

static void
serve_metrics(struct admin *a, struct evhttp_request *req)
{
	struct stats_list merged = LIST_HEAD_INITIALIZER(merged);
	struct evbuffer *out = evbuffer_new();
	unsigned i;
	int rc = out == NULL ? -1 : 0;

	for (i = 0; i < a->n_workers && rc == 0; i++)
		rc = worker_call(&a->workers[i], merge_worker_stats, &merged);
	if (rc == 0)
		rc = stats_render_prometheus(&merged, a->proc, out);
	stats_free_all(&merged);
	if (rc == -1) {
		if (out != NULL)
			evbuffer_free(out);
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	    "text/plain; version=0.0.4; charset=utf-8");
	evhttp_send_reply(req, HTTP_OK, "OK", out);
	evbuffer_free(out);
}

static void
walk_worker_sessions(struct worker *w, void *arg)
{
	struct connections_walk *walk = arg;
	struct session *s;
	char line[2048];

	for (s = session_first(w); s != NULL; s = session_next(s)) {
		if (walk->filter != NULL && strcmp(walk->filter, session_listener_name(s)) != 0)
			continue;
		walk->total++;
		if (walk->shown == walk->limit)
			continue;
		if (walk->shown++ > 0)
			evbuffer_add(walk->out, ",\n", 2);
		evbuffer_add(walk->out, line, session_render_json(s, line, sizeof(line)));
	}
}

static void
serve_connections(struct admin *a, struct evhttp_request *req, const char *query)
{
	struct evkeyvalq params;
	const char *filter = NULL, *limit_text = NULL;
	char count[32];
	struct evbuffer *out;
	struct connections_walk walk;
	unsigned long limit = CONNECTIONS_DEFAULT_LIMIT;
	unsigned i;
	char *end;

	TAILQ_INIT(&params);
	if (query != NULL && evhttp_parse_query_str(query, &params) == 0) {
		filter = evhttp_find_header(&params, "listener");
		limit_text = evhttp_find_header(&params, "limit");
	}
	if (limit_text != NULL) {
		errno = 0;
		limit = strtoul(limit_text, &end, 10);
		if (errno != 0 || *end != '\0' || *limit_text == '\0' || limit == 0 ||
		    limit > CONNECTIONS_MAX_LIMIT) {
			evhttp_clear_headers(&params);
			reply_text(req, HTTP_BADREQUEST, "Bad Request",
			    "limit must be an integer from 1 to 100000\n");
			return;
		}
	}
	out = evbuffer_new();
	if (out == NULL) {
		evhttp_clear_headers(&params);
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	evbuffer_add(out, "[", 1);
	walk = (struct connections_walk){ .out = out, .filter = filter, .limit = limit };
	for (i = 0; i < a->n_workers; i++)
		worker_call(&a->workers[i], walk_worker_sessions, &walk);
	evbuffer_add(out, "]\n", 2);
	evhttp_clear_headers(&params);
	/* The array stays an array; the header says when it was cut. */
	snprintf(count, sizeof(count), "%lu", walk.total);
	evhttp_add_header(evhttp_request_get_output_headers(req), "X-Kaproxy-Connections", count);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	    "application/json");
	evhttp_send_reply(req, HTTP_OK, "OK", out);
	evbuffer_free(out);
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
		serve_metrics(a, req);
	else
		serve_connections(a, req, evhttp_uri_get_query(uri));
}

struct admin *
admin_start(struct worker *workers, unsigned n, const struct endpoint *ep,
    const struct stats_process *proc)
{
	struct admin *a;
	int fd = -1, one = 1;

	a = calloc(1, sizeof(*a));
	if (a == NULL) {
		log_warn("admin");
		return NULL;
	}
	a->workers = workers;
	a->n_workers = n;
	a->proc = proc;
	a->http = evhttp_new(workers[0].base);
	if (a->http == NULL) {
		log_warnx("admin: evhttp_new failed");
		goto err;
	}
	evhttp_set_max_headers_size(a->http, ADMIN_MAX_HEADERS);
	evhttp_set_max_body_size(a->http, ADMIN_MAX_BODY);
	evhttp_set_timeout(a->http, ADMIN_TIMEOUT_S);
	/* Every method reaches the callback, which answers 405 itself. */
	evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
	    EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(a->http, admin_request, a);

	fd = socket(ep->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		log_warn("admin: socket");
		goto err;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    bind(fd, (const struct sockaddr *)&ep->addr, ep->len) == -1 || listen(fd, 64) == -1) {
		log_warn("admin: listen on %s", ep->text);
		goto err;
	}
	if (evhttp_accept_socket_with_handle(a->http, fd) == NULL) {
		log_warnx("admin: evhttp_accept_socket failed");
		goto err;
	}
	log_info("admin: http://%s/ (/connections /metrics /healthz)", ep->text);
	return a;
err:
	if (fd != -1)
		close(fd);
	admin_free(a);
	return NULL;
}

void
admin_free(struct admin *a)
{
	if (a == NULL)
		return;
	if (a->http != NULL)
		evhttp_free(a->http);
	free(a);
}
