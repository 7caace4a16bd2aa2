/*
 * json: the one JSON writer, for the access-log line and the admin
 * endpoint's /connections objects: bounded appends into a caller's fixed
 * buffer, never past its size, no allocation.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kaproxy/json.h"

void
json_append(char *buf, size_t size, size_t *len, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*len >= size)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf + *len, size - *len, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	*len += (size_t)n < size - *len ? (size_t)n : size - *len - 1;
}

void
json_escape(char *buf, size_t size, size_t *len, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p;

	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*len + 7 > size)
			return;
		if (*p == '"' || *p == '\\') {
			buf[(*len)++] = '\\';
			buf[(*len)++] = (char)*p;
		} else if (*p < 0x20 || *p == 0x7f) {
			buf[(*len)++] = '\\';
			buf[(*len)++] = 'u';
			buf[(*len)++] = '0';
			buf[(*len)++] = '0';
			buf[(*len)++] = hex[*p >> 4];
			buf[(*len)++] = hex[*p & 0xf];
		} else {
			buf[(*len)++] = (char)*p;
		}
	}
	buf[*len] = '\0';
}

void
json_leg_policy(char *buf, size_t size, size_t *len, const char *key, const struct leg_policy *p)
{
	if (p == NULL) {
		json_append(buf, size, len, ",\"%s\":null", key);
		return;
	}
	json_append(buf, size, len,
	    ",\"%s\":{\"keepalive\":%s,\"idle_s\":%" PRIu32 ",\"interval_s\":%" PRIu32
	    ",\"count\":%" PRIu32 ",\"user_timeout_ms\":%" PRIu32 "}",
	    key, p->keepalive ? "true" : "false", p->idle_s, p->interval_s, p->count,
	    p->user_timeout_ms);
}

void
json_tcp_snapshot(char *buf, size_t size, size_t *len, const char *key, const struct tcp_snapshot *t)
{
	if (t == NULL) {
		/* A leg that never existed (or whose figures could not be read): null, never missing. */
		json_append(buf, size, len, ",\"%s\":null", key);
		return;
	}
	json_append(buf, size, len,
	    ",\"%s\":{\"state\":\"%s\",\"rtt_us\":%" PRIu32 ",\"rttvar_us\":%" PRIu32
	    ",\"retrans\":%" PRIu32 ",\"probes\":%u,\"unacked\":%" PRIu32
	    ",\"last_data_recv_ms\":%" PRIu32 ",\"last_ack_recv_ms\":%" PRIu32
	    ",\"last_data_sent_ms\":%" PRIu32,
	    key, sockopt_state_name(t->state), t->rtt_us, t->rttvar_us, t->total_retrans,
	    (unsigned)t->probes, t->unacked, t->last_data_recv_ms, t->last_ack_recv_ms,
	    t->last_data_sent_ms);
	if (t->snd_wnd == TCP_SNAPSHOT_NO_WND)
		json_append(buf, size, len, ",\"snd_wnd\":null}");
	else
		json_append(buf, size, len, ",\"snd_wnd\":%" PRIu32 "}", t->snd_wnd);
}

