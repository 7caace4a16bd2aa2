/*
 * fuzz_proxy_header: any bytes as the start of a connection on a listener
 * with accept_proxy = on, fed to the parser whole and split at every length
 * a read could return.
 *
 * The parser must keep the promises proxyproto.h makes: a header length
 * never past what was received nor past PROXYPROTO_HEADER_MAX; a prefix of
 * an accepted header asks for more, never refuses; a refusal says why; and
 * addresses it accepts, written back in the same version, parse to the same
 * addresses.
 */
#include <stdint.h>
#include <string.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include "kaproxy/proxyproto.h"

#include "fuzz.h"

/* a with an IPv4-mapped IPv6 address as the IPv4 one: how the writer sees it. */
static void
unmapped(const struct sockaddr_storage *a, struct sockaddr_storage *out)
{
	const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)a;
	struct sockaddr_in *v4 = (struct sockaddr_in *)out;

	memcpy(out, a, sizeof(*out));
	if (a->ss_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr))
		return;
	memset(out, 0, sizeof(*out));
	v4->sin_family = AF_INET;
	v4->sin_port = v6->sin6_port;
	memcpy(&v4->sin_addr, &v6->sin6_addr.s6_addr[12], 4);
}

static socklen_t
addr_len(const struct sockaddr_storage *a)
{
	return a->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
}

static void
check_round_trip(const struct proxyproto_header *h)
{
	struct sockaddr_storage src, dst;
	uint8_t out[PROXYPROTO_HEADER_MAX];
	struct proxyproto_header again;
	const char *why;
	size_t n;
	int r;

	n = proxyproto_write(h->version, (const struct sockaddr *)&h->src,
	    (const struct sockaddr *)&h->dst, out, sizeof(out));
	FUZZ_CHECK(n > 0);
	r = proxyproto_parse(out, n, &again, &why);
	FUZZ_CHECK(r == (int)n);
	FUZZ_CHECK(again.has_addresses == 1);
	unmapped(&h->src, &src);
	unmapped(&h->dst, &dst);
	if (src.ss_family != dst.ss_family) {
		/* One was mapped, the other not: both were written as IPv6. */
		FUZZ_CHECK(again.addrlen == sizeof(struct sockaddr_in6));
		FUZZ_CHECK(memcmp(&again.src, &h->src, again.addrlen) == 0);
		FUZZ_CHECK(memcmp(&again.dst, &h->dst, again.addrlen) == 0);
		return;
	}
	FUZZ_CHECK(again.addrlen == addr_len(&src));
	FUZZ_CHECK(memcmp(&again.src, &src, again.addrlen) == 0);
	FUZZ_CHECK(memcmp(&again.dst, &dst, again.addrlen) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxyproto_header h, part;
	const char *why;
	size_t cut;
	int r, p;

	r = proxyproto_parse(data, size, &h, &why);
	FUZZ_CHECK(r <= (int)size && r <= PROXYPROTO_HEADER_MAX);
	FUZZ_CHECK((r == -1) == (why != NULL));
	if (size >= PROXYPROTO_HEADER_MAX)
		FUZZ_CHECK(r != 0);
	for (cut = 0; cut < size && cut <= PROXYPROTO_HEADER_MAX; cut++) {
		p = proxyproto_parse(data, cut, &part, &why);
		if (r > 0 && cut < (size_t)r)
			FUZZ_CHECK(p == 0);
		if (r == 0)
			FUZZ_CHECK(p == 0);
	}
	if (r > 0 && h.has_addresses)
		check_round_trip(&h);
	return 0;
}
