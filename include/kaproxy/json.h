/*
 * json: the one JSON writer (access log, /connections).  Each function
 * appends at *len into buf of size bytes, keeps buf NUL-terminated and never
 * writes past size: on overflow buf holds what fit.
 */
#ifndef KAPROXY_JSON_H
#define KAPROXY_JSON_H

#include <stddef.h>

#include "kaproxy/sockopt.h"

/* Append s as a JSON string body (no quotes) to buf at *len, never past size. */
void json_escape(char *buf, size_t size, size_t *len, const char *s);

/* Append formatted text at *len; on overflow buf keeps what fit, NUL-terminated. */
void json_append(char *buf, size_t size, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Append ,"key":{...TCP_INFO figures...}, or ,"key":null when t is NULL. */
/* ,"key":{keepalive, idle_s, interval_s, count, user_timeout_ms} or ,"key":null. */
void json_leg_policy(char *buf, size_t size, size_t *len, const char *key,
    const struct leg_policy *p);

void json_tcp_snapshot(char *buf, size_t size, size_t *len, const char *key,
    const struct tcp_snapshot *t);

#endif
