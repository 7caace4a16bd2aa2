/*
 * fuzz_admin_request: the admin endpoint's reading of a request head
 * (adminreq_parse) over arbitrary bytes.  It must never read past what it is
 * given, and what it returns must hold together: a status from its list, a
 * reason with every refusal, a complete head no longer than the input or the
 * limit, and spans inside the input.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kaproxy/adminreq.h"

static void
check_span(const struct adminreq_span *span, const uint8_t *data, size_t size)
{
	if (span->at == NULL)
		return;
	if ((const uint8_t *)span->at < data || (const uint8_t *)span->at + span->len > data + size)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct adminreq req;
	int rc;

	/* A copy of exactly size bytes, so that ASan sees any read past them. */
	char *buf = malloc(size ? size : 1);

	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	rc = adminreq_parse(buf, size, &req);
	switch (rc) {
	case 0:
		if (req.head_len < 4 || req.head_len > size || req.head_len > ADMINREQ_MAX_HEAD ||
		    req.route == ADMINREQ_NONE || req.limit < 1 || req.limit > ADMINREQ_LIMIT_MAX ||
		    (req.route == ADMINREQ_CLOSED && req.limit > ADMINREQ_CLOSED_MAX) ||
		    memchr(req.listener, '\0', sizeof(req.listener)) == NULL)
			abort();
		break;
	case ADMINREQ_INCOMPLETE:
		if (size >= ADMINREQ_MAX_HEAD)
			abort();
		break;
	case 400: case 404: case 405: case 414: case 431:
		if (req.why == NULL || (rc == 405 && req.allow == NULL))
			abort();
		break;
	default:
		abort();
	}
	check_span(&req.host, (const uint8_t *)buf, size);
	check_span(&req.origin, (const uint8_t *)buf, size);
	free(buf);
	return 0;
}
