/*
 * reason: why a session ended, and how what the kernel reported on a leg
 * maps onto the close_reason vocabulary of the access log and metrics.
 */
#ifndef KAPROXY_REASON_H
#define KAPROXY_REASON_H

#include <stdbool.h>

enum side { SIDE_CLIENT, SIDE_UPSTREAM };

enum close_reason {
	REASON_NONE = 0,
	REASON_CLIENT_FIN,
	REASON_UPSTREAM_FIN,
	REASON_CLIENT_RESET,
	REASON_UPSTREAM_RESET,
	REASON_CLIENT_TIMEOUT,
	REASON_UPSTREAM_TIMEOUT,
	REASON_CLIENT_ERROR,
	REASON_UPSTREAM_ERROR,
	REASON_CONNECT_FAILED,
	REASON_CONNECT_TIMEOUT,
	REASON_IDLE_TIMEOUT,
	REASON_SHUTDOWN,
	REASON_BAD_PROXY_HEADER,    /* accept_proxy: missing, malformed or late header */
	REASON_ADMIN,               /* closed on request through the admin endpoint */
	REASON_COUNT
};

/*
 * What is done to the live peer's leg when a session ends: both the
 * listener's teardown setting (rst or fin) and, in the access log, what was
 * actually done (none when both peers had already closed in order).  The
 * setting's words in config.c are indexed by the first two values.
 */
enum teardown { TEARDOWN_RST, TEARDOWN_FIN, TEARDOWN_NONE };

/* The access-log spelling of a reason ("upstream_timeout"); "none" for NONE. */
const char *reason_name(enum close_reason reason);

/* "rst", "fin" or "none". */
const char *reason_teardown_name(enum teardown teardown);

/* "client" or "upstream". */
const char *reason_side_name(enum side side);

/*
 * Classify what an established leg reported: err 0 is an orderly end of
 * stream (read of 0 bytes), otherwise the errno of the failed read or write
 * (or SO_ERROR).  ETIMEDOUT, and the EHOSTUNREACH/ENETUNREACH a timeout
 * surfaces as after an ICMP error (Linux keeps those soft until it gives up),
 * are *_timeout; ECONNRESET, EPIPE and ECONNREFUSED are *_reset; anything
 * else is *_error.
 */
enum close_reason reason_classify(enum side side, int err);

/* True for the reasons that mean a peer was found dead (timeout, reset, error). */
bool reason_is_dead_peer(enum close_reason reason);

/* True for *_timeout, whose log line carries detect_ms. */
bool reason_is_timeout(enum close_reason reason);

#endif
