/*
 * fuzz_config: a whole INI text, byte for byte as a file would hold it,
 * through the reader (inifile.c over inih) and the validator (config.c,
 * option.c and the value parsers), then, when it loads, the -t report.
 * Everything is freed each time, so the leak checker sees what a reload
 * that loops on a config would leak.
 *
 * Checked beyond not crashing and not leaking: a refused text leaves *out
 * alone and gives one "fuzz.ini:..." message; a loaded one has every
 * listener complete, and each value within the range the table gives.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kaproxy/config.h"
#include "kaproxy/option.h"
#include "kaproxy/policy.h"

#include "fuzz.h"

static void
check_leg(const struct leg_policy *leg)
{
	FUZZ_CHECK(leg->idle_s >= 1 && leg->idle_s <= 32767);
	FUZZ_CHECK(leg->interval_s >= 1 && leg->interval_s <= 32767);
	FUZZ_CHECK(leg->count >= 1 && leg->count <= 127);
	FUZZ_CHECK(leg->user_timeout_ms <= POLICY_USER_TIMEOUT_MAX_MS);
	if (leg->user_timeout_auto)
		FUZZ_CHECK(leg->user_timeout_ms == policy_auto_user_timeout_ms(leg));
	if (leg->nat_timeout_ms != 0)
		FUZZ_CHECK(leg->keepalive && (uint64_t)leg->idle_s * 1000 < leg->nat_timeout_ms);
}

static void
check_loaded(const struct config *cfg)
{
	FUZZ_CHECK(strcmp(cfg->path, "fuzz.ini") == 0);
	FUZZ_CHECK(cfg->workers <= 256);
	FUZZ_CHECK(cfg->max_connections >= 1 && cfg->max_connections <= 1000000);
	FUZZ_CHECK(cfg->n_listeners >= 1);
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		const struct listener_config *lc = &cfg->listeners[i];

		FUZZ_CHECK(memchr(lc->name, '\0', sizeof(lc->name)) != NULL);
		FUZZ_CHECK(lc->listen.len != 0);
		FUZZ_CHECK(lc->n_upstreams >= 1 && lc->upstreams != NULL);
		for (size_t j = 0; j < lc->n_upstreams; j++)
			FUZZ_CHECK(lc->upstreams[j].len != 0);
		FUZZ_CHECK(lc->connect_timeout_ms >= 1);
		check_leg(&lc->client);
		check_leg(&lc->upstream);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *cfg = NULL;
	char err[CONFIG_ERR_MAX];

	memset(err, 'x', sizeof(err));
	if (config_load_buffer((const char *)data, size, "fuzz.ini", &cfg, err, sizeof(err)) == 0) {
		FUZZ_CHECK(cfg != NULL);
		check_loaded(cfg);
		config_print_check(cfg, fuzz_sink());
		config_free(cfg);
	} else {
		FUZZ_CHECK(cfg == NULL);
		FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL);
		FUZZ_CHECK(strncmp(err, "fuzz.ini:", 9) == 0 && err[9] != '\0');
	}
	return 0;
}
