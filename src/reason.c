/*
 * reason: close-reason names and the classification of kernel errors.
 * Pure functions, no state; unit tested in tests/unit/test_reason.c.
 */
#include <errno.h>

#include "kaproxy/reason.h"

static const char *const reason_names[REASON_COUNT] = {
	[REASON_NONE] = "none",
	[REASON_CLIENT_FIN] = "client_fin",
	[REASON_UPSTREAM_FIN] = "upstream_fin",
	[REASON_CLIENT_RESET] = "client_reset",
	[REASON_UPSTREAM_RESET] = "upstream_reset",
	[REASON_CLIENT_TIMEOUT] = "client_timeout",
	[REASON_UPSTREAM_TIMEOUT] = "upstream_timeout",
	[REASON_CLIENT_ERROR] = "client_error",
	[REASON_UPSTREAM_ERROR] = "upstream_error",
	[REASON_CONNECT_FAILED] = "connect_failed",
	[REASON_CONNECT_TIMEOUT] = "connect_timeout",
	[REASON_IDLE_TIMEOUT] = "idle_timeout",
	[REASON_SHUTDOWN] = "shutdown",
	[REASON_BAD_PROXY_HEADER] = "bad_proxy_header",
	[REASON_ADMIN] = "admin",
};

const char *
reason_name(enum close_reason reason)
{
	if ((unsigned)reason >= REASON_COUNT)
		return "none";
	return reason_names[reason];
}

const char *
reason_teardown_name(enum teardown teardown)
{
	switch (teardown) {
	case TEARDOWN_RST:
		return "rst";
	case TEARDOWN_FIN:
		return "fin";
	default:
		return "none";
	}
}

const char *
reason_side_name(enum side side)
{
	return side == SIDE_CLIENT ? "client" : "upstream";
}

enum close_reason
reason_classify(enum side side, int err)
{
	/* The enum pairs client/upstream variants, client first. */
	int upstream = side == SIDE_UPSTREAM;

	switch (err) {
	case 0:
		return REASON_CLIENT_FIN + upstream;
	case ETIMEDOUT:
	case EHOSTUNREACH:
	case ENETUNREACH:
	case EHOSTDOWN:
		return REASON_CLIENT_TIMEOUT + upstream;
	case ECONNRESET:
	case EPIPE:
	case ECONNREFUSED:
	case ECONNABORTED:
		return REASON_CLIENT_RESET + upstream;
	default:
		return REASON_CLIENT_ERROR + upstream;
	}
}

bool
reason_is_dead_peer(enum close_reason reason)
{
	return reason >= REASON_CLIENT_RESET && reason <= REASON_UPSTREAM_ERROR;
}

bool
reason_is_timeout(enum close_reason reason)
{
	return reason == REASON_CLIENT_TIMEOUT || reason == REASON_UPSTREAM_TIMEOUT;
}
