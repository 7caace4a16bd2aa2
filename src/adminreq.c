/*
 * adminreq.c: the strict reading of an admin request head (see adminreq.h).
 *
 * The grammar is the narrow subset of RFC 9112 that the admin routes need:
 * what a curl, a browser or Prometheus sends passes, and anything looser
 * (other versions, absolute or asterisk targets, bare LF, folded header
 * lines, control or non-ASCII bytes, unknown query parameters, a body) is
 * refused with a 4xx rather than guessed at.  Every read is bounded by the
 * length given; nothing here allocates.
 */
#include <stdbool.h>
#include <string.h>

#include "kaproxy/adminreq.h"

#define METHOD_MAX 16
_Static_assert(ADMINREQ_CLOSED_MAX == 64, "the /closed limit's refusal names 64");

static int
refuse(struct adminreq *req, int status, const char *why)
{
	req->why = why;
	return status;
}

static bool
is_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/* RFC 9110 tchar: what a method or a header name is made of. */
static bool
is_tchar(unsigned char c)
{
	return is_alnum(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* RFC 3986 unreserved, sub-delims, ':' and '@': a pchar that needs no escape. */
static bool
is_pchar(unsigned char c)
{
	return is_alnum(c) || (c != '\0' && strchr("-._~!$&'()*+,;=:@", c) != NULL);
}

static int
hex_value(unsigned char c)
{
	if (is_digit(c))
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Offset of the first "\r\n" in [from, end), or end when there is none. */
static size_t
find_crlf(const char *buf, size_t from, size_t end)
{
	size_t i;

	for (i = from; i + 1 < end; i++)
		if (buf[i] == '\r' && buf[i + 1] == '\n')
			return i;
	return end;
}

/* Length of the head ("\r\n\r\n" included) within the first n bytes, or 0. */
static size_t
head_length(const char *buf, size_t n)
{
	size_t i;

	for (i = 0; i + 3 < n; i++)
		if (memcmp(buf + i, "\r\n\r\n", 4) == 0)
			return i + 4;
	return 0;
}

/* Whether [at, at + len) is made of pchars, '%' HEX HEX escapes and the extra bytes. */
static bool
escaped_text_ok(const char *at, size_t len, const char *extra)
{
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)at[i];

		if (c == '%') {
			if (i + 2 >= len || hex_value((unsigned char)at[i + 1]) < 0 ||
			    hex_value((unsigned char)at[i + 2]) < 0)
				return false;
			i += 2;
		} else if (!is_pchar(c) && (c == '\0' || strchr(extra, c) == NULL)) {
			return false;
		}
	}
	return true;
}

/* Case-insensitive comparison of a header name with a lower-case word. */
static bool
name_is(const char *at, size_t len, const char *word)
{
	size_t i;

	if (len != strlen(word))
		return false;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)at[i];

		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c - 'A' + 'a');
		if (c != (unsigned char)word[i])
			return false;
	}
	return true;
}

/*
 * One header line [at, at + len): "name:" OWS value OWS, visible ASCII,
 * spaces and tabs only.  The few names the endpoint cares about are noted.
 */
static int
header_line(const char *at, size_t len, struct adminreq *req)
{
	size_t n = 0, v, e;

	if (at[0] == ' ' || at[0] == '\t')
		return refuse(req, 400, "folded header lines are not accepted");
	while (n < len && is_tchar((unsigned char)at[n]))
		n++;
	if (n == 0 || n == len || at[n] != ':')
		return refuse(req, 400, "a header line is not NAME: VALUE");
	for (v = n + 1; v < len && (at[v] == ' ' || at[v] == '\t'); v++)
		;
	for (e = len; e > v && (at[e - 1] == ' ' || at[e - 1] == '\t'); e--)
		;
	for (size_t i = v; i < e; i++) {
		unsigned char c = (unsigned char)at[i];

		if ((c < 0x20 && c != '\t') || c >= 0x7f)
			return refuse(req, 400, "a header value holds a control or non-ASCII byte");
	}
	if (name_is(at, n, "transfer-encoding"))
		return refuse(req, 400, "the admin endpoint takes no request body");
	if (name_is(at, n, "content-length")) {
		if (v == e)
			return refuse(req, 400, "an empty Content-Length");
		for (size_t i = v; i < e; i++)
			if (at[i] != '0')
				return refuse(req, 400, "the admin endpoint takes no request body");
	}
	if (name_is(at, n, "host") && req->host.at == NULL) {
		req->host.at = at + v;
		req->host.len = e - v;
	}
	if (name_is(at, n, "origin") && req->origin.at == NULL) {
		req->origin.at = at + v;
		req->origin.len = e - v;
	}
	return 0;
}

/* Every header line between the request line and the blank line. */
static int
header_lines(const char *buf, size_t from, size_t end, struct adminreq *req)
{
	unsigned count = 0;
	size_t eol;
	int rc;

	while (from < end) {
		eol = find_crlf(buf, from, end + 2);
		if (++count > ADMINREQ_MAX_HEADERS)
			return refuse(req, 431, "too many header lines");
		if ((rc = header_line(buf + from, eol - from, req)) != 0)
			return rc;
		from = eol + 2;
	}
	return 0;
}

static enum adminreq_method
method_of(const char *at, size_t len)
{
	if (len == 3 && memcmp(at, "GET", 3) == 0)
		return ADMINREQ_GET;
	if (len == 4 && memcmp(at, "HEAD", 4) == 0)
		return ADMINREQ_HEAD;
	if (len == 4 && memcmp(at, "POST", 4) == 0)
		return ADMINREQ_POST;
	return ADMINREQ_OTHER;
}

/* Digits [at, at + len) without a leading zero, into *value; false past max. */
static bool
number_ok(const char *at, size_t len, uint64_t max, uint64_t *value)
{
	size_t i;

	if (len == 0 || (at[0] == '0'))
		return false;
	*value = 0;
	for (i = 0; i < len; i++) {
		unsigned d = (unsigned char)at[i] - '0';

		if (!is_digit((unsigned char)at[i]) || *value > (max - d) / 10)
			return false;
		*value = *value * 10 + d;
	}
	return true;
}

/* The route of a path, matched byte for byte (an escaped letter is another path). */
static enum adminreq_route
route_of(const char *at, size_t len, uint64_t *id)
{
	static const char prefix[] = "/connections/", suffix[] = "/close";
	const size_t np = sizeof(prefix) - 1, ns = sizeof(suffix) - 1;

	if (len == 1)
		return ADMINREQ_PAGE;      /* the target starts with '/' */
	if (len == 8 && memcmp(at, "/healthz", 8) == 0)
		return ADMINREQ_HEALTHZ;
	if (len == 7 && memcmp(at, "/closed", 7) == 0)
		return ADMINREQ_CLOSED;
	if (len == 8 && memcmp(at, "/metrics", 8) == 0)
		return ADMINREQ_METRICS;
	if (len == 12 && memcmp(at, "/connections", 12) == 0)
		return ADMINREQ_CONNECTIONS;
	if (len > np + ns && memcmp(at, prefix, np) == 0 &&
	    memcmp(at + len - ns, suffix, ns) == 0 &&
	    number_ok(at + np, len - np - ns, UINT64_MAX, id))
		return ADMINREQ_CONNECTION_CLOSE;
	return ADMINREQ_NONE;
}

/*
 * Decode a query value's %XX escapes into out (size bytes, NUL-terminated);
 * false if it is too long or holds a NUL, which would cut it short.
 */
static bool
decode_value(const char *at, size_t len, char *out, size_t size)
{
	size_t i, n = 0;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)at[i];

		if (c == '%') {
			/* escaped_text_ok has checked the two hex digits */
			c = (unsigned char)(hex_value((unsigned char)at[i + 1]) * 16 +
			    hex_value((unsigned char)at[i + 2]));
			i += 2;
		}
		if (n + 1 >= size || c == '\0')
			return false;
		out[n++] = (char)c;
	}
	out[n] = '\0';
	return true;
}

static bool
listener_name_ok(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (!is_alnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.')
			return false;
	return true;
}

/* One key=value of the query, checked against what req->route takes. */
static int
query_pair(const char *at, size_t len, unsigned *seen, struct adminreq *req)
{
	const char *eq = memchr(at, '=', len);
	char value[ADMINREQ_NAME_MAX];
	size_t klen;
	uint64_t n;

	if (len == 0)
		return refuse(req, 400, "an empty query parameter");
	if (eq == NULL)
		return refuse(req, 400, "a query parameter without a value");
	klen = (size_t)(eq - at);
	if (!decode_value(eq + 1, len - klen - 1, value, sizeof(value)))
		return refuse(req, 400, "a query value is too long or holds a NUL");
	if (value[0] == '\0')
		return refuse(req, 400, "an empty query value");
	if (req->route == ADMINREQ_CONNECTIONS && klen == 8 && memcmp(at, "listener", 8) == 0) {
		if (*seen & 1)
			return refuse(req, 400, "listener is given twice");
		*seen |= 1;
		if (!listener_name_ok(value))
			return refuse(req, 400, "listener must be a listener name");
		memcpy(req->listener, value, strlen(value) + 1);
		return 0;
	}
	if (req->route == ADMINREQ_CONNECTIONS && klen == 5 && memcmp(at, "limit", 5) == 0) {
		if (*seen & 2)
			return refuse(req, 400, "limit is given twice");
		*seen |= 2;
		if (!number_ok(value, strlen(value), ADMINREQ_LIMIT_MAX, &n))
			return refuse(req, 400, "limit must be an integer from 1 to 100000");
		req->limit = (unsigned long)n;
		return 0;
	}
	if (req->route == ADMINREQ_CLOSED && klen == 5 && memcmp(at, "limit", 5) == 0) {
		if (*seen & 2)
			return refuse(req, 400, "limit is given twice");
		*seen |= 2;
		if (!number_ok(value, strlen(value), ADMINREQ_CLOSED_MAX, &n))
			return refuse(req, 400, "limit must be an integer from 1 to 64");
		req->limit = (unsigned long)n;
		return 0;
	}
	if (req->route == ADMINREQ_CONNECTION_CLOSE && klen == 3 && memcmp(at, "how", 3) == 0) {
		if (*seen & 4)
			return refuse(req, 400, "how is given twice");
		*seen |= 4;
		if (strcmp(value, "rst") == 0)
			req->how = ADMINREQ_HOW_RST;
		else if (strcmp(value, "fin") == 0)
			req->how = ADMINREQ_HOW_FIN;
		else
			return refuse(req, 400, "how must be rst or fin");
		return 0;
	}
	return refuse(req, 400, "an unknown query parameter for this path");
}

/* The query after '?' (possibly empty): '&'-separated pairs, each known to the route. */
static int
query(const char *at, size_t len, struct adminreq *req)
{
	unsigned seen = 0;
	size_t from = 0, amp;
	int rc;

	if (len == 0)
		return 0;
	for (;;) {
		const char *next = memchr(at + from, '&', len - from);

		amp = next != NULL ? (size_t)(next - at) : len;
		if ((rc = query_pair(at + from, amp - from, &seen, req)) != 0)
			return rc;
		if (amp == len)
			return 0;
		from = amp + 1;
	}
}

/* The target: origin-form, its path one of the routes, the method one it takes, its query. */
static int
target(const char *at, size_t len, struct adminreq *req)
{
	const char *q = memchr(at, '?', len);
	size_t plen = q != NULL ? (size_t)(q - at) : len;

	if (at[0] != '/')
		return refuse(req, 400, "the target must be a path (origin-form)");
	if (!escaped_text_ok(at, plen, "/"))
		return refuse(req, 400, "the path holds a byte that must be escaped");
	if (q != NULL && !escaped_text_ok(q + 1, len - plen - 1, "/?"))
		return refuse(req, 400, "the query holds a byte that must be escaped");
	req->route = route_of(at, plen, &req->id);
	if (req->route == ADMINREQ_CLOSED)
		req->limit = ADMINREQ_CLOSED_MAX;
	switch (req->route) {
	case ADMINREQ_NONE:
		return refuse(req, 404, "not found: try /, /connections, /closed, /metrics or /healthz");
	case ADMINREQ_CONNECTION_CLOSE:
		req->allow = "POST";
		if (req->method != ADMINREQ_POST)
			return refuse(req, 405, "method not allowed: use POST");
		break;
	default:
		req->allow = "GET, HEAD";
		if (req->method != ADMINREQ_GET && req->method != ADMINREQ_HEAD)
			return refuse(req, 405, "method not allowed: use GET");
		break;
	}
	return q != NULL ? query(q + 1, len - plen - 1, req) : 0;
}

int
adminreq_parse(const char *buf, size_t len, struct adminreq *req)
{
	size_t n = len < ADMINREQ_MAX_HEAD ? len : ADMINREQ_MAX_HEAD;
	size_t line, m, t, tlen, i;
	int rc;

	memset(req, 0, sizeof(*req));
	req->limit = ADMINREQ_LIMIT_DEFAULT;
	req->head_len = head_length(buf, n);
	if (req->head_len == 0) {
		if (n < ADMINREQ_MAX_HEAD)
			return ADMINREQ_INCOMPLETE;
		if (find_crlf(buf, 0, n) == n)
			return refuse(req, 414, "the request line is too long");
		return refuse(req, 431, "the request head is too large");
	}

	/* METHOD SP TARGET SP HTTP/1.x, nothing more, no stray CR or LF */
	line = find_crlf(buf, 0, req->head_len);
	for (i = 0; i < line; i++)
		if (buf[i] == '\r' || buf[i] == '\n')
			return refuse(req, 400, "a line does not end with CRLF");
	for (m = 0; m < line && is_tchar((unsigned char)buf[m]); m++)
		;
	if (m == 0 || m > METHOD_MAX || m == line || buf[m] != ' ')
		return refuse(req, 400, "the request line is not METHOD TARGET HTTP/1.x");
	req->method = method_of(buf, m);
	t = m + 1;
	for (tlen = 0; t + tlen < line && buf[t + tlen] != ' '; tlen++) {
		unsigned char c = (unsigned char)buf[t + tlen];

		if (c <= 0x20 || c >= 0x7f)
			return refuse(req, 400, "the target holds a control or non-ASCII byte");
	}
	if (tlen > ADMINREQ_MAX_TARGET)
		return refuse(req, 414, "the request target is too long");
	if (tlen == 0 || t + tlen == line)
		return refuse(req, 400, "the request line is not METHOD TARGET HTTP/1.x");
	if (line - (t + tlen + 1) != 8 || memcmp(buf + t + tlen + 1, "HTTP/1.", 7) != 0 ||
	    (buf[line - 1] != '0' && buf[line - 1] != '1'))
		return refuse(req, 400, "the version must be HTTP/1.0 or HTTP/1.1");
	req->minor = buf[line - 1] - '0';

	if ((rc = header_lines(buf, line + 2, req->head_len - 2, req)) != 0)
		return rc;
	return target(buf + t, tlen, req);
}

const char *
adminreq_status_text(int status)
{
	switch (status) {
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 414: return "URI Too Long";
	case 431: return "Request Header Fields Too Large";
	default: return "Error";
	}
}
