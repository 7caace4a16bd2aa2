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
 * and an IPv4 address must have been written as a dotted quad.
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
 * Names fail here (offline.c), so an unbracketed host was accepted only as
 * an IPv4 address, and kaproxy takes those as written in dotted-quad
 * decimal (inet_pton), never in inet_aton's other forms ("127.1",
 * "010.0.0.1" for 8.0.0.1, "0x7f.1"), which are most likely typos.
 */
static void
check_ipv4_as_written(const char *text)
{
	const char *colon = strrchr(text, ':');
	char host[256];
	struct in_addr addr;

	if (text[0] == '[')
		return;
	FUZZ_CHECK(colon != NULL && (size_t)(colon - text) < sizeof(host));
	memcpy(host, text, (size_t)(colon - text));
	host[colon - text] = '\0';
	if (inet_pton(AF_INET, host, &addr) != 1) {
		fprintf(stderr, "\"%s\" accepted, but \"%s\" is not a dotted quad\n", text, host);
		abort();
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
		check_ipv4_as_written(text);
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
