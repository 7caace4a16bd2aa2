/*
 * policy.c: what a leg's keepalive and user-timeout settings add up to.
 *
 * Owns the arithmetic of the Linux keepalive timer (when a silent peer is
 * declared dead, idle or busy), the value "auto" gives TCP_USER_TIMEOUT, and
 * the `-t` line that shows both detection times to an operator.
 */
#include "kaproxy/duration.h"
#include "kaproxy/policy.h"

uint64_t
policy_auto_user_timeout_ms(const struct leg_policy *p)
{
	return ((uint64_t)p->idle_s + (uint64_t)p->interval_s * p->count) * 1000;
}

/*
 * Linux's tcp_keepalive_timer fires at idle, idle + intvl, idle + 2*intvl...
 * after the last received segment.  With a user timeout U it aborts at the
 * first firing at or after U that has at least one probe out (k >= 1); with
 * no user timeout, once count probes are out.
 */
uint64_t
policy_idle_detect_ms(const struct leg_policy *p)
{
	uint64_t idle, intvl, u, k;

	if (p == NULL || !p->keepalive)
		return 0;
	idle = (uint64_t)p->idle_s * 1000;
	intvl = (uint64_t)p->interval_s * 1000;
	u = p->user_timeout_ms;
	if (intvl == 0) /* never valid after config_load; avoid dividing by it */
		return idle;
	if (u == 0)
		return idle + intvl * p->count;
	k = u > idle ? (u - idle + intvl - 1) / intvl : 0;
	if (k < 1)
		k = 1;
	return idle + intvl * k;
}

/* With data in flight the retransmission timer, not keepalive, runs the
 * leg, and only TCP_USER_TIMEOUT bounds it. */
uint64_t
policy_busy_detect_ms(const struct leg_policy *p)
{
	return p == NULL ? 0 : p->user_timeout_ms;
}

void
policy_print_detection(const struct leg_policy *p, FILE *out)
{
	char when_idle[64], when_busy[80];
	uint64_t d;

	if ((d = policy_idle_detect_ms(p)) != 0)
		duration_format_human(d, when_idle, sizeof(when_idle));
	else
		snprintf(when_idle, sizeof(when_idle), "never (keepalive off)");
	if ((d = policy_busy_detect_ms(p)) != 0)
		duration_format_human(d, when_busy, sizeof(when_busy));
	else
		snprintf(when_busy, sizeof(when_busy),
		    "kernel retransmission limit (tcp_retries2, ~15 min+)");
	fprintf(out, "  %-9s worst-case dead-peer detection: when idle %s; with data in flight %s\n",
	    "", when_idle, when_busy);
}

bool
policy_same_on_socket(const struct leg_policy *a, const struct leg_policy *b)
{
	return a->keepalive == b->keepalive && a->idle_s == b->idle_s &&
	    a->interval_s == b->interval_s && a->count == b->count &&
	    a->user_timeout_ms == b->user_timeout_ms;
}
