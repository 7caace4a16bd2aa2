/*
 * policy: the TCP liveness policy of one leg (client or upstream side) and
 * what it implies: the auto user timeout, and the worst-case time the Linux
 * keepalive timer takes to declare a silent peer dead.
 */
#ifndef KAPROXY_POLICY_H
#define KAPROXY_POLICY_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* TCP_USER_TIMEOUT takes an int of milliseconds. */
#define POLICY_USER_TIMEOUT_MAX_MS INT_MAX

struct leg_policy {
	bool keepalive;           /* SO_KEEPALIVE */
	uint32_t idle_s;          /* TCP_KEEPIDLE, 1..32767 */
	uint32_t interval_s;      /* TCP_KEEPINTVL, 1..32767 */
	uint32_t count;           /* TCP_KEEPCNT, 1..127 */
	bool user_timeout_auto;   /* written as "auto" (for -t output only) */
	uint32_t user_timeout_ms; /* TCP_USER_TIMEOUT resolved; 0 = off */
	uint32_t nat_timeout_ms;  /* middlebox idle timeout on this leg; 0 = off */
};

/*
 * What "auto" stands for: idle + interval * count, in ms, computed from
 * these values even when keepalive is off, so a busy leg is still bounded.
 * It may exceed POLICY_USER_TIMEOUT_MAX_MS; the caller refuses it then.
 */
uint64_t policy_auto_user_timeout_ms(const struct leg_policy *p);

/*
 * Worst-case time from a peer's last segment to the leg being declared dead,
 * in ms, as the Linux keepalive timer decides it: on an idle leg (0 when
 * keepalive is off: never detected) and with data in flight (0 when no user
 * timeout is set: left to tcp_retries2, many minutes).
 */
uint64_t policy_idle_detect_ms(const struct leg_policy *p);
uint64_t policy_busy_detect_ms(const struct leg_policy *p);

/* a and b set the same options on a socket (nat_timeout is not one of them). */
bool policy_same_on_socket(const struct leg_policy *a, const struct leg_policy *b);

/* The `-t` line under a leg's settings: both detection times, in words. */
void policy_print_detection(const struct leg_policy *p, FILE *out);

#endif
