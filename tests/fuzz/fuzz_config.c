/*
 * fuzz_config: a whole INI text, byte for byte as a file would hold it,
 * through the reader (inifile.c over inih) and the validator (config.c,
 * option.c and the value parsers), then, when it loads, the -t report.
 * Everything is freed each time, so the leak checker sees what a reload
 * that loops on a config would leak.
 *
 * Checked beyond not crashing and not leaking: a refused text leaves *out
 * alone and gives one "fuzz.ini:LINE: ..." message naming a line it has; a
 * text with a NUL byte or an over-long line is never loaded; a loaded one
 * has every listener complete, and each value within the table's range.
 */
#include <stdbool.h>
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

/*
 * What the reader promises about the text as a whole: how many lines it
 * has (for "FILE:LINE"), and whether a line is one a file may not hold: one
 * with a NUL byte, or longer than INIFILE_LINE_MAX (196) without its line
 * end, or a first line's BOM, which inih would otherwise cut or misread.
 */
static unsigned
scan_lines(const uint8_t *data, size_t size, bool *refusable)
{
	unsigned lines = 0;
	size_t start = 0;

	*refusable = memchr(data, '\0', size) != NULL;
	while (start < size) {
		const uint8_t *nl = memchr(data + start, '\n', size - start);
		size_t end = nl ? (size_t)(nl - data) : size, len = end - start;

		if (len > 0 && data[end - 1] == '\r')
			len--;
		if (lines == 0 && len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0)
			len -= 3;
		*refusable |= len > 196;
		lines++;
		start = end + 1;
	}
	return lines;
}

/* "fuzz.ini:LINE: message" names a line the text has (line 1 for an
 * empty text), or "fuzz.ini: message" none. */
static void
check_error(const char *err, unsigned lines)
{
	const char *c = err + strlen("fuzz.ini:");
	unsigned long line = 0;

	FUZZ_CHECK(strncmp(err, "fuzz.ini:", strlen("fuzz.ini:")) == 0 && *c != '\0');
	if (*c == ' ')
		return;
	FUZZ_CHECK(*c >= '1' && *c <= '9');
	for (; *c >= '0' && *c <= '9' && line <= UINT32_MAX; c++)
		line = line * 10 + (unsigned long)(*c - '0');
	FUZZ_CHECK(c[0] == ':' && c[1] == ' ' && c[2] != '\0');
	if (line < 1 || line > (lines ? lines : 1)) {
		fprintf(stderr, "\"%s\" names a line the %u-line text does not have\n", err,
		    lines);
		abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *cfg = NULL;
	char err[CONFIG_ERR_MAX];
	bool refusable;
	unsigned lines = scan_lines(data, size, &refusable);

	memset(err, 'x', sizeof(err));
	if (config_load_buffer((const char *)data, size, "fuzz.ini", &cfg, err, sizeof(err)) == 0) {
		FUZZ_CHECK(cfg != NULL);
		if (refusable) {
			fprintf(stderr, "loaded a text with a NUL byte or a line over 196\n");
			abort();
		}
		check_loaded(cfg);
		config_print_check(cfg, fuzz_sink());
		config_free(cfg);
	} else {
		FUZZ_CHECK(cfg == NULL);
		FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL);
		check_error(err, lines);
	}
	return 0;
}
