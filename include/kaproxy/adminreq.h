/*
 * adminreq: the admin endpoint's strict reading of one HTTP request head
 * (request line, header lines, blank line) from the raw bytes a client sent,
 * with no libevent in sight, so that it can be unit-tested and fuzzed.
 *
 * It decides everything the endpoint refuses before serving: the request
 * line (a token method, an origin-form target, HTTP/1.0 or HTTP/1.1, single
 * spaces, CRLF), the path (one of the routes), every query value of that
 * route, the header lines' syntax and the limits below.  admin.c routes by
 * what it returns and never by libevent's more lenient parse.
 */
#ifndef KAPROXY_ADMINREQ_H
#define KAPROXY_ADMINREQ_H

#include <stddef.h>
#include <stdint.h>

#define ADMINREQ_MAX_HEAD 4096     /* request line + headers + blank line: 431 beyond */
#define ADMINREQ_MAX_TARGET 1024   /* the request target: 414 beyond */
#define ADMINREQ_MAX_HEADERS 32    /* header lines: 431 beyond */
#define ADMINREQ_NAME_MAX 64       /* ?listener= value, bytes including NUL */
#define ADMINREQ_LIMIT_DEFAULT 1000
#define ADMINREQ_LIMIT_MAX 100000
#define ADMINREQ_CLOSED_MAX 64     /* GET /closed?limit=: the records a worker keeps */

/* adminreq_parse: the head has not ended yet (and is within the limits). */
#define ADMINREQ_INCOMPLETE (-1)

enum adminreq_method { ADMINREQ_GET, ADMINREQ_HEAD, ADMINREQ_POST, ADMINREQ_OTHER };

enum adminreq_route {
	ADMINREQ_NONE,               /* refused before the path was known */
	ADMINREQ_HEALTHZ,            /* GET /healthz */
	ADMINREQ_METRICS,            /* GET /metrics */
	ADMINREQ_CONNECTIONS,        /* GET /connections[?listener=NAME][&limit=N] */
	ADMINREQ_CONNECTION_CLOSE,   /* POST /connections/ID/close[?how=rst|fin] */
	ADMINREQ_PAGE,               /* GET / (no query) */
	ADMINREQ_CLOSED,             /* GET /closed[?limit=N], N from 1 to ADMINREQ_CLOSED_MAX */
};

enum adminreq_how { ADMINREQ_HOW_DEFAULT, ADMINREQ_HOW_RST, ADMINREQ_HOW_FIN };

/* Bytes inside the parsed buffer; len 0 when absent. */
struct adminreq_span {
	const char *at;
	size_t len;
};

struct adminreq {
	size_t head_len;             /* bytes of the head, its blank line included */
	enum adminreq_method method;
	enum adminreq_route route;
	int minor;                   /* HTTP/1.minor: 0 or 1 */
	uint64_t id;                 /* ADMINREQ_CONNECTION_CLOSE: the connection's id */
	char listener[ADMINREQ_NAME_MAX]; /* ?listener=, "" when absent */
	unsigned long limit;         /* ?limit=, ADMINREQ_LIMIT_DEFAULT when absent
	                              * (/closed: ADMINREQ_CLOSED_MAX) */
	enum adminreq_how how;       /* ?how= */
	const char *allow;           /* 405: the route's methods, for an Allow header */
	struct adminreq_span host;   /* the Host and Origin header values, for the */
	struct adminreq_span origin; /* endpoint's own checks; not judged here */
	const char *why;             /* a refusal's reason, one line of text for people */
};

/*
 * Read the head at the start of the len bytes at buf (which need not be
 * NUL-terminated; bytes after the head are left alone) into *req.
 * Returns 0 when it is complete and acceptable, ADMINREQ_INCOMPLETE when it
 * has not ended yet, or the HTTP status to refuse it with: 400 (malformed;
 * a version other than HTTP/1.0 and HTTP/1.1; a bad or unknown query
 * parameter; a body), 404 (no such path), 405 (a method the path does not
 * take; req->allow names the ones it does), 414 (target too long) or 431
 * (head too large, too many header lines).  req->why says why in words and
 * req->route is set as soon as the path is known.  Spans in *req point into
 * buf.  Never reads more than ADMINREQ_MAX_HEAD bytes of buf.
 */
int adminreq_parse(const char *buf, size_t len, struct adminreq *req);

/* "Bad Request" and the like for an adminreq_parse status, "Error" if unknown. */
const char *adminreq_status_text(int status);

#endif
