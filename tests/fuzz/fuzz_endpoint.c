/*
 * fuzz_endpoint: any text as an address ("host:port", "[v6]:port", with or
 * without a zone), as listen, upstream and admin_listen are read; and the
 * same bytes as a socket address handed to the formatter, as an accepted
 * peer's address is written into the access log and /connections.
 *
 * An accepted address must keep the promises endpoint.h makes: its text
 * parses back to an equal address with the same text, it fits its buffer,
 * and it holds only characters that go into JSON as they are.  Host names
 * fail at once here (offline.c), so only the syntax and numeric paths run,
 * and what was accepted must be what libc's strict readers see written.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "kaproxy/endpoint.h"

#include "fuzz.h"

static void
check_text(const char *text)
{
	FUZZ_CHECK(strlen(text) < ENDPOINT_TEXT_MAX);
	FUZZ_CHECK(strspn(text, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789.:%[]-_") == strlen(text));
}

static void
check_parsed(const struct endpoint *ep)
{
	struct endpoint again;
	const char *why;

	FUZZ_CHECK((ep->addr.ss_family == AF_INET && ep->len == sizeof(struct sockaddr_in)) ||
	    (ep->addr.ss_family == AF_INET6 && ep->len == sizeof(struct sockaddr_in6)));
	check_text(ep->text);
	why = endpoint_parse_why(ep->text, &again);
	if (why != NULL) {
		fprintf(stderr, "\"%s\" does not parse back: %s\n", ep->text, why);
		abort();
	}
	FUZZ_CHECK(endpoint_equal(ep, &again));
	FUZZ_CHECK(endpoint_equal(&again, ep));
	FUZZ_CHECK(strcmp(ep->text, again.text) == 0);
	FUZZ_CHECK(endpoint_is_loopback(ep) == endpoint_is_loopback(&again));
}

/* The bytes as a raw IPv4 or IPv6 socket address, formatted into a buffer
 * of a size the input also picks, allocated to exactly that size. */
static void
check_format(const uint8_t *data, size_t size)
{
	struct sockaddr_storage ss;
	size_t len, bufsize;
	char *buf, full[ENDPOINT_TEXT_MAX + 16];
	int n;

	if (size < 2)
		return;
	memset(&ss, 0, sizeof(ss));
	len = (data[0] & 1) ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	bufsize = 1 + data[1] % (ENDPOINT_TEXT_MAX + 8);
	memcpy(&ss, data + 2, size - 2 < len ? size - 2 : len);
	ss.ss_family = (data[0] & 1) ? AF_INET6 : AF_INET;
	if (data[0] & 2)
		ss.ss_family = (sa_family_t)(data[0] >> 2); /* any family at all */

	n = endpoint_format((struct sockaddr *)&ss, full, sizeof(full));
	FUZZ_CHECK(n < (int)sizeof(full));
	if (n < 0) {
		FUZZ_CHECK(strcmp(full, "unknown") == 0);
		return;
	}
	FUZZ_CHECK((size_t)n == strlen(full));
	check_text(full);
	if ((buf = malloc(bufsize)) == NULL)
		abort();
	FUZZ_CHECK(endpoint_format((struct sockaddr *)&ss, buf, bufsize) == n);
	FUZZ_CHECK(memchr(buf, '\0', bufsize) != NULL);
	FUZZ_CHECK(strncmp(buf, full, bufsize - 1) == 0);
	free(buf);
}

/*
 * What was accepted is what was written, checked with libc's strict readers
 * rather than endpoint.c's code: the port after the last ':' is decimal
 * digits naming 1..65535, and the host is an address as inet_pton reads it:
 * "[v6]" or "[v6%zone]", or, since names fail here (offline.c), an IPv4
 * dotted quad, never one of inet_aton's other forms ("127.1", "010.0.0.1"
 * for 8.0.0.1, "0x7f.1"), which are most likely typos.
 */
static void
check_as_written(const char *text, const struct endpoint *ep)
{
	const char *colon = strrchr(text, ':'), *port_text;
	char host[256], *zone;
	unsigned long port = 0;
	size_t host_len;

	FUZZ_CHECK(colon != NULL);
	port_text = colon + 1;
	FUZZ_CHECK(*port_text != '\0' && strspn(port_text, "0123456789") == strlen(port_text));
	for (const char *c = port_text; *c && port <= 65535; c++)
		port = port * 10 + (unsigned long)(*c - '0');
	FUZZ_CHECK(port >= 1 && port <= 65535);

	host_len = (size_t)(colon - text);
	FUZZ_CHECK(host_len < sizeof(host));
	memcpy(host, text, host_len);
	host[host_len] = '\0';
	if (ep->addr.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&ep->addr;
		struct in_addr addr;

		if (inet_pton(AF_INET, host, &addr) != 1) {
			fprintf(stderr, "\"%s\" accepted, but \"%s\" is not a dotted quad\n",
			    text, host);
			abort();
		}
		FUZZ_CHECK(addr.s_addr == sin->sin_addr.s_addr);
		FUZZ_CHECK(ntohs(sin->sin_port) == port);
	} else {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ep->addr;
		struct in6_addr addr;

		FUZZ_CHECK(host_len >= 2 && host[0] == '[' && host[host_len - 1] == ']');
		host[host_len - 1] = '\0';
		if ((zone = strchr(host, '%')) != NULL)
			*zone = '\0';
		FUZZ_CHECK(inet_pton(AF_INET6, host + 1, &addr) == 1);
		FUZZ_CHECK(memcmp(&addr, &sin6->sin6_addr, sizeof(addr)) == 0);
		FUZZ_CHECK(ntohs(sin6->sin6_port) == port);
		FUZZ_CHECK(zone != NULL || sin6->sin6_scope_id == 0);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_string(data, size);
	struct endpoint ep, kept;
	const char *why = endpoint_parse_why(text, &ep);

	if (why == NULL) {
		check_parsed(&ep);
		check_as_written(text, &ep);
	}
	else
		FUZZ_CHECK(why[0] != '\0');
	memset(&kept, 0xa5, sizeof(kept));
	ep = kept;
	FUZZ_CHECK((endpoint_parse(text, &ep) == 0) == (why == NULL));
	if (why != NULL)
		FUZZ_CHECK(memcmp(&ep, &kept, sizeof(ep)) == 0); /* untouched on failure */
	free(text);
	check_format(data, size);
	return 0;
}
