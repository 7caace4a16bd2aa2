/*
 * proxyproto: the PROXY protocol header (v1 text, v2 binary) that names the
 * original client of a connection: written to an upstream (send_proxy), and
 * read strictly from a load balancer in front (accept_proxy).  Pure functions
 * over byte buffers: no sockets, no allocation.
 */
#ifndef KAPROXY_PROXYPROTO_H
#define KAPROXY_PROXYPROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Longest v1 line, CRLF included (the specification's bound). */
#define PROXYPROTO_V1_MAX 107
/* Fixed part of a v2 header: signature, version/command, family, length. */
#define PROXYPROTO_V2_FIXED 16
/*
 * Longest header kaproxy accepts: a v2 header with the IPv6 address block and
 * TLVs up to this total.  Balancers send well under it (AWS and GCP TLVs are
 * tens of bytes); anything longer is refused rather than buffered.
 */
#define PROXYPROTO_HEADER_MAX 1024
/* Longest header kaproxy writes (v1 TCP6 is the longest of its own). */
#define PROXYPROTO_WRITE_MAX PROXYPROTO_V1_MAX

/* What a received header says about the connection. */
struct proxyproto_header {
	int version;                  /* 1 or 2 */
	/*
	 * 0: use the connection's own addresses (v1 UNKNOWN; v2 LOCAL, or an
	 * address family that carries no IP address).  1: src and dst are set.
	 */
	int has_addresses;
	struct sockaddr_storage src;  /* the original client */
	struct sockaddr_storage dst;  /* the address it connected to */
	socklen_t addrlen;            /* of src and dst when has_addresses */
};

/*
 * Parse the header at the start of buf (len bytes received so far).
 * Returns its length (> 0, the payload starts right after it) and fills h;
 * 0 when buf is a valid beginning that needs more bytes; or -1 when it is not
 * a header or not a valid one, with *why saying what is wrong.  Never reads
 * past len, never needs more than PROXYPROTO_HEADER_MAX bytes to decide.
 */
int proxyproto_parse(const uint8_t *buf, size_t len, struct proxyproto_header *h,
    const char **why);

/*
 * Write a v1 or v2 header (version 1 or 2) naming src (the client) and dst
 * (the address it connected to) into buf.  Returns the length, or 0 when
 * size is too small.  Two IPv4 addresses (IPv4-mapped IPv6 ones included)
 * are written as IPv4; an IPv6 one with an IPv4 one, both as IPv6.
 * Addresses other than IPv4 and IPv6 are written as
 * "PROXY UNKNOWN" or a v2 PROXY header of family UNSPEC: the server then uses
 * the connection's own addresses.
 */
size_t proxyproto_write(int version, const struct sockaddr *src, const struct sockaddr *dst,
    uint8_t *buf, size_t size);

#endif
