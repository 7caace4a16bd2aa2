/*
 * endpoint: a socket address as the configuration file writes it
 * ("host:port", "[v6]:port"), resolved once, compared by one rule and
 * written back by one formatter, for configured and accepted addresses alike.
 */
#ifndef KAPROXY_ENDPOINT_H
#define KAPROXY_ENDPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>

/* "[v6%zone]:port" text, bytes including NUL: address, zone, "[]:65535". */
#define ENDPOINT_TEXT_MAX (INET6_ADDRSTRLEN + IF_NAMESIZE + 8)

/* A resolved socket address and its normalised text. */
struct endpoint {
	struct sockaddr_storage addr;
	socklen_t len;
	char text[ENDPOINT_TEXT_MAX];
};

/*
 * Parse "host:port" or "[v6]:port" into ep.  Returns NULL, or why the text
 * is not an endpoint (ep is then unspecified).  Numeric addresses never touch
 * the resolver; a name is resolved once, here, to its first IPv4 address, or
 * its first IPv6 one if it has none.
 */
const char *endpoint_parse_why(const char *text, struct endpoint *ep);

/* As endpoint_parse_why: 0, or -1 with ep untouched. */
int endpoint_parse(const char *text, struct endpoint *ep);

/*
 * Same family, address, port (and IPv6 scope): two sockets bound to a and b
 * would share one address.
 */
bool endpoint_equal(const struct endpoint *a, const struct endpoint *b);

/* 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104. */
bool endpoint_is_loopback(const struct endpoint *ep);

/*
 * Write sa as "192.0.2.1:80" or "[2001:db8::1]:80" (a scoped IPv6 address
 * with its zone, "[fe80::1%eth0]:80") into buf, NUL-terminated whatever
 * happens.  Returns the length the text needs, as snprintf does, or -1 for an
 * address that has no such text (buf then says "unknown").  The text holds
 * only letters, digits and ".:%[]-_", so it goes into JSON as it is.
 */
int endpoint_format(const struct sockaddr *sa, char *buf, size_t size);

#endif
