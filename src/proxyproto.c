/*
 * proxyproto: PROXY protocol v1 and v2 headers, parsed strictly and written
 * exactly as the specification (HAProxy's doc/proxy-protocol.txt) says.
 *
 * A receiver that trusts a header lets its sender claim any address, so the
 * parser refuses anything the specification does not allow rather than
 * guessing: extra spaces, leading zeros, signs, out-of-range ports, an IPv6
 * address in a TCP4 line, unknown versions, commands, families or
 * transports, address blocks too short for their family, and TLVs that do
 * not exactly fill the declared length.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "kaproxy/proxyproto.h"

static const uint8_t v2_signature[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};
static const char v1_prefix[] = "PROXY ";

#define V1_PREFIX_LEN (sizeof(v1_prefix) - 1)

/* v2 byte 13 and 14. */
#define V2_VERSION 0x20
#define V2_CMD_LOCAL 0x0
#define V2_CMD_PROXY 0x1
#define V2_FAM_UNSPEC 0x0
#define V2_FAM_INET 0x1
#define V2_FAM_INET6 0x2
#define V2_FAM_UNIX 0x3
#define V2_TRANS_UNSPEC 0x0
#define V2_TRANS_STREAM 0x1
#define V2_INET_LEN 12
#define V2_INET6_LEN 36
#define V2_UNIX_LEN 216

static int
fail(const char **why, const char *text)
{
	*why = text;
	return -1;
}

/* Is the whole of buf[0..len) a beginning of prefix (of plen bytes)? */
static int
starts(const uint8_t *buf, size_t len, const void *prefix, size_t plen)
{
	return memcmp(buf, prefix, len < plen ? len : plen) == 0;
}

/* --- v1 -------------------------------------------------------------------- */

/*
 * One space-terminated (or end-terminated) field of a v1 line: copies it to
 * out (NUL-terminated) and advances *p past it and its one separator.
 */
static int
v1_field(const char **p, const char *end, char *out, size_t size, int last)
{
	const char *start = *p, *q = start;

	while (q < end && *q != ' ')
		q++;
	if (q == start || (size_t)(q - start) >= size)
		return -1;
	if (last ? q != end : (q == end || q + 1 == end))
		return -1;
	memcpy(out, start, (size_t)(q - start));
	out[q - start] = '\0';
	*p = last ? q : q + 1;
	return 0;
}

/* A decimal port, 0..65535, no sign, no leading zero (but "0" itself). */
static int
v1_port(const char *text, uint16_t *port)
{
	unsigned long v = 0;
	const char *c;

	if (text[0] == '0' && text[1] != '\0')
		return -1;
	for (c = text; *c != '\0'; c++) {
		if (*c < '0' || *c > '9' || c - text >= 5)
			return -1;
		v = v * 10 + (unsigned long)(*c - '0');
	}
	if (v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

static int
v1_address(int family, const char *ip, const char *port, struct sockaddr_storage *ss)
{
	uint16_t p;

	memset(ss, 0, sizeof(*ss));
	if (v1_port(port, &p) == -1)
		return -1;
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(p);
		return inet_pton(AF_INET, ip, &sin->sin_addr) == 1 ? 0 : -1;
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(p);
		return inet_pton(AF_INET6, ip, &sin6->sin6_addr) == 1 ? 0 : -1;
	}
}

static int
v1_parse(const uint8_t *buf, size_t len, struct proxyproto_header *h, const char **why)
{
	char proto[8], src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN], sport[8], dport[8];
	const uint8_t *cr;
	const char *p, *end;
	/* The CR of a 107-byte line is its byte 106 (index 105). */
	size_t scan = len < PROXYPROTO_V1_MAX - 1 ? len : PROXYPROTO_V1_MAX - 1;
	int family;

	cr = memchr(buf, '\r', scan);
	if (memchr(buf, '\n', cr != NULL ? (size_t)(cr - buf) : scan) != NULL)
		return fail(why, "v1 line ended by LF without CR");
	if (cr == NULL)
		return len < PROXYPROTO_V1_MAX - 1 ? 0 : fail(why, "v1 line longer than 107 bytes");
	if ((size_t)(cr - buf) + 1 >= len)
		return 0;
	if (cr[1] != '\n')
		return fail(why, "v1 line not ended by CRLF");
	if (memchr(buf, '\0', (size_t)(cr - buf)) != NULL)
		return fail(why, "v1 line holds a NUL");
	p = (const char *)buf + V1_PREFIX_LEN;
	end = (const char *)cr;
	h->version = 1;
	if (end - p >= 7 && memcmp(p, "UNKNOWN", 7) == 0 && (end - p == 7 || p[7] == ' ')) {
		/* The specification: whatever follows UNKNOWN is ignored. */
		h->has_addresses = 0;
		return (int)(cr - buf) + 2;
	}
	if (v1_field(&p, end, proto, sizeof(proto), 0) == -1)
		return fail(why, "v1 protocol missing");
	if (strcmp(proto, "TCP4") == 0)
		family = AF_INET;
	else if (strcmp(proto, "TCP6") == 0)
		family = AF_INET6;
	else
		return fail(why, "v1 protocol is not TCP4, TCP6 or UNKNOWN");
	if (v1_field(&p, end, src, sizeof(src), 0) == -1 ||
	    v1_field(&p, end, dst, sizeof(dst), 0) == -1 ||
	    v1_field(&p, end, sport, sizeof(sport), 0) == -1 ||
	    v1_field(&p, end, dport, sizeof(dport), 1) == -1)
		return fail(why, "v1 line is not four single-space separated fields");
	if (v1_address(family, src, sport, &h->src) == -1 ||
	    v1_address(family, dst, dport, &h->dst) == -1)
		return fail(why, "v1 address or port malformed");
	h->has_addresses = 1;
	h->addrlen = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	return (int)(cr - buf) + 2;
}

/* --- v2 -------------------------------------------------------------------- */

/* The TLVs must exactly fill what the header's length leaves after addresses. */
static int
v2_tlvs_fit(const uint8_t *p, size_t len)
{
	while (len > 0) {
		size_t vlen;

		if (len < 3)
			return -1;
		vlen = (size_t)p[1] << 8 | p[2];
		if (vlen > len - 3)
			return -1;
		p += 3 + vlen;
		len -= 3 + vlen;
	}
	return 0;
}

static int
v2_parse(const uint8_t *buf, size_t len, struct proxyproto_header *h, const char **why)
{
	const uint8_t *a = buf + PROXYPROTO_V2_FIXED;
	size_t body, need;
	unsigned command, family, transport;

	if (len < PROXYPROTO_V2_FIXED)
		return 0;
	if ((buf[12] & 0xf0) != V2_VERSION)
		return fail(why, "v2 version is not 2");
	command = buf[12] & 0x0f;
	if (command != V2_CMD_LOCAL && command != V2_CMD_PROXY)
		return fail(why, "v2 command is neither LOCAL nor PROXY");
	family = buf[13] >> 4;
	transport = buf[13] & 0x0f;
	if (family > V2_FAM_UNIX || transport > 0x2)
		return fail(why, "v2 family or transport unknown");
	body = (size_t)buf[14] << 8 | buf[15];
	if (PROXYPROTO_V2_FIXED + body > PROXYPROTO_HEADER_MAX)
		return fail(why, "v2 header longer than kaproxy accepts");
	if (len < PROXYPROTO_V2_FIXED + body)
		return 0;
	h->version = 2;
	h->has_addresses = 0;
	if (command == V2_CMD_LOCAL)
		/* The balancer's own connection (a health check): no addresses to trust. */
		return (int)(PROXYPROTO_V2_FIXED + body);
	if (transport != V2_TRANS_STREAM && !(family == V2_FAM_UNSPEC && transport == V2_TRANS_UNSPEC))
		return fail(why, "v2 PROXY over a transport other than STREAM");
	need = family == V2_FAM_INET ? V2_INET_LEN : family == V2_FAM_INET6 ? V2_INET6_LEN :
	    family == V2_FAM_UNIX ? V2_UNIX_LEN : 0;
	if (body < need)
		return fail(why, "v2 address block shorter than its family needs");
	/* UNSPEC addresses are to be ignored, whatever the body holds. */
	if (family != V2_FAM_UNSPEC && v2_tlvs_fit(a + need, body - need) == -1)
		return fail(why, "v2 TLVs do not fill the header's length");
	memset(&h->src, 0, sizeof(h->src));
	memset(&h->dst, 0, sizeof(h->dst));
	if (family == V2_FAM_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)&h->src, *d = (struct sockaddr_in *)&h->dst;

		s->sin_family = d->sin_family = AF_INET;
		memcpy(&s->sin_addr, a, 4);
		memcpy(&d->sin_addr, a + 4, 4);
		memcpy(&s->sin_port, a + 8, 2);
		memcpy(&d->sin_port, a + 10, 2);
		h->addrlen = sizeof(struct sockaddr_in);
		h->has_addresses = 1;
	} else if (family == V2_FAM_INET6) {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&h->src, *d = (struct sockaddr_in6 *)&h->dst;

		s->sin6_family = d->sin6_family = AF_INET6;
		memcpy(&s->sin6_addr, a, 16);
		memcpy(&d->sin6_addr, a + 16, 16);
		memcpy(&s->sin6_port, a + 32, 2);
		memcpy(&d->sin6_port, a + 34, 2);
		h->addrlen = sizeof(struct sockaddr_in6);
		h->has_addresses = 1;
	}
	/* UNSPEC and UNIX name no IP client: the connection's own addresses stand. */
	return (int)(PROXYPROTO_V2_FIXED + body);
}

int
proxyproto_parse(const uint8_t *buf, size_t len, struct proxyproto_header *h, const char **why)
{
	*why = NULL;
	if (len == 0)
		return 0;
	if (starts(buf, len, v2_signature, sizeof(v2_signature)))
		return len < sizeof(v2_signature) ? 0 : v2_parse(buf, len, h, why);
	if (starts(buf, len, v1_prefix, V1_PREFIX_LEN))
		return len < V1_PREFIX_LEN ? 0 : v1_parse(buf, len, h, why);
	return fail(why, "no PROXY protocol header");
}

/* --- writing ----------------------------------------------------------------- */

static int
is_v4(const struct sockaddr *a)
{
	return a->sa_family == AF_INET || (a->sa_family == AF_INET6 &&
	    IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)a)->sin6_addr));
}

/* a (AF_INET, or AF_INET6 holding an IPv4-mapped address) as AF_INET. */
static void
as_v4(const struct sockaddr *a, struct sockaddr_storage *out)
{
	struct sockaddr_in *v4 = (struct sockaddr_in *)out;

	memset(out, 0, sizeof(*out));
	if (a->sa_family == AF_INET) {
		memcpy(v4, a, sizeof(*v4));
		return;
	}
	v4->sin_family = AF_INET;
	v4->sin_port = ((const struct sockaddr_in6 *)a)->sin6_port;
	memcpy(&v4->sin_addr, &((const struct sockaddr_in6 *)a)->sin6_addr.s6_addr[12], 4);
}

/* a as AF_INET6, an IPv4 address mapped. */
static void
as_v6(const struct sockaddr *a, struct sockaddr_storage *out)
{
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;

	memset(out, 0, sizeof(*out));
	if (a->sa_family == AF_INET6) {
		memcpy(v6, a, sizeof(*v6));
		return;
	}
	v6->sin6_family = AF_INET6;
	v6->sin6_port = ((const struct sockaddr_in *)a)->sin_port;
	v6->sin6_addr.s6_addr[10] = 0xff;
	v6->sin6_addr.s6_addr[11] = 0xff;
	memcpy(&v6->sin6_addr.s6_addr[12], &((const struct sockaddr_in *)a)->sin_addr, 4);
}

/*
 * src and dst in one family: AF_INET when both are IPv4 (mapped or not),
 * else AF_INET6 (an IPv4 one mapped); 0 when either is neither.
 */
static int
common_family(const struct sockaddr *src, const struct sockaddr *dst,
    struct sockaddr_storage *s, struct sockaddr_storage *d)
{
	if ((src->sa_family != AF_INET && src->sa_family != AF_INET6) ||
	    (dst->sa_family != AF_INET && dst->sa_family != AF_INET6))
		return 0;
	if (is_v4(src) && is_v4(dst)) {
		as_v4(src, s);
		as_v4(dst, d);
		return AF_INET;
	}
	as_v6(src, s);
	as_v6(dst, d);
	return AF_INET6;
}

static size_t
write_v1(int family, const struct sockaddr_storage *s, const struct sockaddr_storage *d,
    uint8_t *buf, size_t size)
{
	char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];
	unsigned sport, dport;
	int n;

	if (family == AF_INET) {
		const struct sockaddr_in *a = (const void *)s, *b = (const void *)d;

		inet_ntop(AF_INET, &a->sin_addr, src, sizeof(src));
		inet_ntop(AF_INET, &b->sin_addr, dst, sizeof(dst));
		sport = ntohs(a->sin_port);
		dport = ntohs(b->sin_port);
	} else if (family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)s, *b = (const void *)d;

		inet_ntop(AF_INET6, &a->sin6_addr, src, sizeof(src));
		inet_ntop(AF_INET6, &b->sin6_addr, dst, sizeof(dst));
		sport = ntohs(a->sin6_port);
		dport = ntohs(b->sin6_port);
	} else {
		n = snprintf((char *)buf, size, "PROXY UNKNOWN\r\n");
		return n > 0 && (size_t)n < size ? (size_t)n : 0;
	}
	n = snprintf((char *)buf, size, "PROXY %s %s %s %u %u\r\n",
	    family == AF_INET ? "TCP4" : "TCP6", src, dst, sport, dport);
	return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

static size_t
write_v2(int family, const struct sockaddr_storage *s, const struct sockaddr_storage *d,
    uint8_t *buf, size_t size)
{
	size_t body = family == AF_INET ? V2_INET_LEN : family == AF_INET6 ? V2_INET6_LEN : 0;
	uint8_t *a = buf + PROXYPROTO_V2_FIXED;

	if (size < PROXYPROTO_V2_FIXED + body)
		return 0;
	memcpy(buf, v2_signature, sizeof(v2_signature));
	buf[12] = V2_VERSION | V2_CMD_PROXY;
	buf[13] = family == AF_INET ? (V2_FAM_INET << 4 | V2_TRANS_STREAM) :
	    family == AF_INET6 ? (V2_FAM_INET6 << 4 | V2_TRANS_STREAM) : 0;
	buf[14] = (uint8_t)(body >> 8);
	buf[15] = (uint8_t)body;
	if (family == AF_INET) {
		const struct sockaddr_in *x = (const void *)s, *y = (const void *)d;

		memcpy(a, &x->sin_addr, 4);
		memcpy(a + 4, &y->sin_addr, 4);
		memcpy(a + 8, &x->sin_port, 2);
		memcpy(a + 10, &y->sin_port, 2);
	} else if (family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)s, *y = (const void *)d;

		memcpy(a, &x->sin6_addr, 16);
		memcpy(a + 16, &y->sin6_addr, 16);
		memcpy(a + 32, &x->sin6_port, 2);
		memcpy(a + 34, &y->sin6_port, 2);
	}
	return PROXYPROTO_V2_FIXED + body;
}

size_t
proxyproto_write(int version, const struct sockaddr *src, const struct sockaddr *dst,
    uint8_t *buf, size_t size)
{
	struct sockaddr_storage s, d;
	int family = common_family(src, dst, &s, &d);

	return version == 2 ? write_v2(family, &s, &d, buf, size) :
	    write_v1(family, &s, &d, buf, size);
}
