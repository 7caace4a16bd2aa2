/*
 * fuzz_policy: a leg's six settings (keepalive, keepalive_idle,
 * keepalive_interval, keepalive_count, user_timeout, nat_timeout), one
 * value per line of the input, read through the option table's own rows as
 * a listener's client_* or upstream_* keys are, then the policy they add up
 * to: the auto user timeout and the worst-case detection times -t prints.
 *
 * Checked beyond not crashing: a refused value stores nothing and says why;
 * an accepted one lies in its row's range; and the idle detection time is
 * the Linux keepalive timer's, stated independently of policy.c's formula:
 * the first probe time idle + k * interval (k >= 1) at or past the user
 * timeout, or idle + count * interval without one.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kaproxy/config.h"
#include "kaproxy/option.h"
#include "kaproxy/policy.h"

#include "fuzz.h"

#define LEG_KEYS 6

/* The leg rows of the option table, in table order. */
static const struct option *
leg_rows(const struct option *rows[LEG_KEYS])
{
	size_t n, found = 0;
	const struct option *table = config_options(&n);

	for (size_t i = 0; i < n; i++)
		if (table[i].scope == OPTION_LEG && found < LEG_KEYS)
			rows[found++] = &table[i];
	FUZZ_CHECK(found == LEG_KEYS);
	return rows[0];
}

/* A stored value against its row's range (keywords store 0). */
static void
check_range(const struct option *o, const struct leg_policy *leg)
{
	uint32_t v;

	if (o->type == &option_bool)
		return;
	memcpy(&v, (const char *)leg + o->off, sizeof(v));
	FUZZ_CHECK(v == 0 ? o->accepts != 0 || o->min == 0 : v >= o->min && v <= o->max);
}

static void
check_detection(const struct leg_policy *leg)
{
	uint64_t idle = (uint64_t)leg->idle_s * 1000, intvl = (uint64_t)leg->interval_s * 1000;
	uint64_t u = leg->user_timeout_ms, d = policy_idle_detect_ms(leg);

	FUZZ_CHECK(policy_busy_detect_ms(leg) == u);
	if (!leg->keepalive) {
		FUZZ_CHECK(d == 0);
		return;
	}
	if (u == 0) {
		FUZZ_CHECK(d == idle + intvl * leg->count);
		return;
	}
	/* A probe time (idle + k * interval, k >= 1), at or past u, and the
	 * first one: the one before it was either no probe or before u. */
	FUZZ_CHECK(d >= idle + intvl && (d - idle) % intvl == 0);
	FUZZ_CHECK(d >= u);
	FUZZ_CHECK(d - intvl < idle + intvl || d - intvl < u);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct option *rows[LEG_KEYS];
	struct leg_policy leg, before;
	char *text = fuzz_string(data, size), *line = text, why[CONFIG_ERR_MAX], shown[256];

	leg_rows(rows);
	memset(&leg, 0, sizeof(leg));
	for (size_t i = 0; i < LEG_KEYS; i++)
		FUZZ_CHECK(option_set(rows[i], &leg, rows[i]->fallback, why, sizeof(why)) ==
		    OPTION_OK);
	for (size_t i = 0; i < LEG_KEYS && line != NULL; i++) {
		char *next = strchr(line, '\n');
		enum option_result rc;

		if (next != NULL)
			*next++ = '\0';
		memcpy(&before, &leg, sizeof(leg));
		why[0] = '\0';
		rc = option_set(rows[i], &leg, line, why, sizeof(why));
		FUZZ_CHECK(rc == OPTION_OK || rc == OPTION_INVALID);
		if (rc == OPTION_INVALID) {
			FUZZ_CHECK(why[0] != '\0');
			FUZZ_CHECK(memcmp(&before, &leg, sizeof(leg)) == 0);
		}
		check_range(rows[i], &leg);
		option_format(rows[i], &leg, shown, sizeof(shown));
		FUZZ_CHECK(memchr(shown, '\0', sizeof(shown)) != NULL);
		line = next;
	}
	if (leg.user_timeout_auto) {
		uint64_t u = policy_auto_user_timeout_ms(&leg);

		FUZZ_CHECK(u == ((uint64_t)leg.idle_s + (uint64_t)leg.interval_s * leg.count) * 1000);
		if (u > POLICY_USER_TIMEOUT_MAX_MS)
			goto out; /* config.c refuses it */
		leg.user_timeout_ms = (uint32_t)u;
	}
	check_detection(&leg);
	policy_print_detection(&leg, fuzz_sink());
out:
	free(text);
	return 0;
}
