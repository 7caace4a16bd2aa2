/*
 * endpoint.c: socket addresses as the configuration file writes them.
 *
 * Owns the "host:port" / "[v6]:port" syntax, the one lookup a host name
 * gets (at load time, never later), the rule that says when two addresses
 * are the same, the loopback test, and the one formatter that turns any
 * IPv4 or IPv6 socket address into text, for configured and accepted
 * addresses alike.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <netdb.h>

#include "kaproxy/endpoint.h"

#define HOST_MAX 256 /* longest host text accepted, bytes including NUL */

/*
 * Split text into host (copied out, without brackets) and the port text
 * after the last ':'.  Returns NULL, or why the text has no such shape.
 */
static const char *
split_host_port(const char *text, char host[HOST_MAX], const char **port_text,
    bool *bracketed)
{
	size_t host_len;

	*bracketed = text[0] == '[';
	if (*bracketed) {
		const char *close = strchr(text, ']');

		if (close == NULL)
			return "missing ']' after the IPv6 address";
		if (close[1] == '\0')
			return "missing :port";
		if (close[1] != ':')
			return "expected ':' after ']'";
		host_len = (size_t)(close - text - 1);
		text++;
		*port_text = close + 2;
	} else {
		const char *colon = strrchr(text, ':');

		if (colon == NULL)
			return "missing :port";
		if (memchr(text, ':', (size_t)(colon - text)) != NULL)
			return "an IPv6 address needs brackets, e.g. [::1]:80";
		host_len = (size_t)(colon - text);
		*port_text = colon + 1;
	}
	if (host_len == 0)
		return "missing host (0.0.0.0 means every IPv4 address)";
	if (host_len >= HOST_MAX)
		return "host name too long";
	memcpy(host, text, host_len);
	host[host_len] = '\0';
	return NULL;
}

/* A port: decimal digits only, 1..65535; leading zeros are fine. */
static const char *
parse_port(const char *text, uint16_t *port)
{
	uint32_t value = 0;
	const char *c = text;

	if (*c == '\0')
		return "missing port after ':'";
	/* Saturate rather than overflow: any run of digits above 65535 is
	 * out of range, whatever its length. */
	for (; isdigit((unsigned char)*c); c++)
		value = value > 65535 ? value : value * 10 + (uint32_t)(*c - '0');
	if (c == text || *c != '\0')
		return "the port is not a number";
	if (value < 1 || value > 65535)
		return "the port is out of range (1..65535)";
	*port = (uint16_t)value;
	return NULL;
}

/* Host names as DNS allows them; anything else is refused before a lookup
 * can stall start-up on a typo. */
static bool
hostname_ok(const char *host)
{
	bool all_numeric = true;

	for (const char *c = host; *c; c++) {
		if (!isalnum((unsigned char)*c) && *c != '-' && *c != '.' && *c != '_')
			return false;
		if (!isdigit((unsigned char)*c) && *c != '.')
			all_numeric = false;
	}
	/* "10.0.0.256" is a mistyped address, not a name to look up. */
	return !all_numeric;
}

/* The first IPv4 answer, else the first answer; NULL when none is usable. */
static const struct addrinfo *
pick_address(const struct addrinfo *res)
{
	const struct addrinfo *pick = res;

	for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
		if (ai->ai_family == AF_INET) {
			pick = ai;
			break;
		}
	}
	if (pick == NULL || pick->ai_addrlen > sizeof(struct sockaddr_storage) ||
	    (pick->ai_family != AF_INET && pick->ai_family != AF_INET6))
		return NULL;
	return pick;
}

/*
 * Resolve host into ep->addr and ep->len (port not yet set).  A local
 * service behind "localhost" most often listens on 127.0.0.1 only, hence
 * IPv4 first.
 */
static const char *
resolve_host(const char *host, bool bracketed, struct endpoint *ep)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&ep->addr;
	struct addrinfo hints, *res = NULL;
	const struct addrinfo *pick;
	struct in_addr aton;
	int rc;

	/* inet_pton, not getaddrinfo, for IPv4: the latter also takes
	 * inet_aton forms, where "010.0.0.1" is 8.0.0.1 and "127.1" is valid. */
	if (!bracketed && inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		ep->len = sizeof(*sin);
		return NULL;
	}
	/* Nor may those forms pass as names: hexadecimal ones ("0x7f.1",
	 * "127.0.0x1") hold letters, and getaddrinfo would read them as an
	 * address before any lookup. */
	if (!bracketed && (!hostname_ok(host) || inet_aton(host, &aton) != 0))
		return "not an IPv4 address or host name";
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = bracketed ? AI_NUMERICHOST : 0;
	hints.ai_family = bracketed ? AF_INET6 : AF_UNSPEC;
	rc = getaddrinfo(host, NULL, &hints, &res);
	if (rc != 0 && bracketed)
		return "not an IPv6 address";
	if (rc != 0)
		return rc == EAI_SYSTEM ? "host name lookup failed" : gai_strerror(rc);
	if ((pick = pick_address(res)) == NULL) {
		freeaddrinfo(res);
		return "no usable address";
	}
	memcpy(&ep->addr, pick->ai_addr, pick->ai_addrlen);
	ep->len = (socklen_t)pick->ai_addrlen;
	freeaddrinfo(res);
	return NULL;
}

const char *
endpoint_parse_why(const char *text, struct endpoint *ep)
{
	char host[HOST_MAX];
	const char *port_text, *why;
	bool bracketed;
	uint16_t port;
	int n;

	if (text[0] == '\0')
		return "empty";
	if ((why = split_host_port(text, host, &port_text, &bracketed)) != NULL ||
	    (why = parse_port(port_text, &port)) != NULL)
		return why;
	memset(ep, 0, sizeof(*ep));
	if ((why = resolve_host(host, bracketed, ep)) != NULL)
		return why;
	if (ep->addr.ss_family == AF_INET)
		((struct sockaddr_in *)&ep->addr)->sin_port = htons(port);
	else
		((struct sockaddr_in6 *)&ep->addr)->sin6_port = htons(port);
	n = endpoint_format((const struct sockaddr *)&ep->addr, ep->text, sizeof(ep->text));
	if (n < 0)
		return "address cannot be printed";
	if ((size_t)n >= sizeof(ep->text))
		return "address text too long";
	return NULL;
}

int
endpoint_parse(const char *text, struct endpoint *ep)
{
	struct endpoint parsed;

	if (text == NULL || ep == NULL)
		return -1;
	if (endpoint_parse_why(text, &parsed) != NULL)
		return -1;
	*ep = parsed;
	return 0;
}

bool
endpoint_equal(const struct endpoint *a, const struct endpoint *b)
{
	if (a->addr.ss_family != b->addr.ss_family)
		return false;
	if (a->addr.ss_family == AF_INET) {
		const struct sockaddr_in *x = (const struct sockaddr_in *)&a->addr;
		const struct sockaddr_in *y = (const struct sockaddr_in *)&b->addr;

		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->addr.ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)&a->addr;
		const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)&b->addr;

		return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
		    memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
	}
	return false;
}

bool
endpoint_is_loopback(const struct endpoint *ep)
{
	if (ep->addr.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&ep->addr;

		return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
	}
	if (ep->addr.ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ep->addr;

		if (IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr))
			return true;
		return IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr) &&
		    sin6->sin6_addr.s6_addr[12] == 127;
	}
	return false;
}

/* Address text fit for JSON and log lines: an interface name in a zone may
 * hold any byte but '/' and blanks. */
static bool
host_text_plain(const char *host)
{
	for (const char *c = host; *c; c++)
		if (!isalnum((unsigned char)*c) && strchr(".:%-_", *c) == NULL)
			return false;
	return true;
}

int
endpoint_format(const struct sockaddr *sa, char *buf, size_t size)
{
	char host[NI_MAXHOST];
	socklen_t len;
	unsigned port;

	if (sa->sa_family == AF_INET) {
		len = sizeof(struct sockaddr_in);
		port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		len = sizeof(struct sockaddr_in6);
		port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	} else {
		goto unknown;
	}
	/* getnameinfo rather than inet_ntop: it writes an IPv6 zone too. */
	if (getnameinfo(sa, len, host, sizeof(host), NULL, 0, NI_NUMERICHOST) != 0 ||
	    !host_text_plain(host))
		goto unknown;
	if (sa->sa_family == AF_INET)
		return snprintf(buf, size, "%s:%u", host, port);
	return snprintf(buf, size, "[%s]:%u", host, port);
unknown:
	snprintf(buf, size, "unknown");
	return -1;
}
