/*
 * fuzz_option: any value for any key of the option table.  The first byte
 * picks the row (modulo the table's size), the rest is the value, as
 * option_set receives it from config.c for [global], [listener NAME] and
 * both legs.  Unlike fuzz_config, values are not bound to a 196-character
 * line here, so the list splitter and the messages meet long ones too.
 *
 * Checked beyond not crashing and not leaking: a refused value stores
 * nothing at all in its struct and says why; an accepted number lies in its
 * row's range; -t's formatting of whatever is stored ends inside its buffer.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kaproxy/config.h"
#include "kaproxy/option.h"
#include "kaproxy/policy.h"

#include "fuzz.h"

/* Bytes of the struct a row's scope stores into. */
static size_t
base_size(const struct option *o)
{
	switch (o->scope) {
	case OPTION_GLOBAL:
		return sizeof(struct config);
	case OPTION_LISTENER:
		return sizeof(struct listener_config);
	case OPTION_LEG:
		break;
	}
	return sizeof(struct leg_policy);
}

static void
check_range(const struct option *o, const void *base)
{
	uint32_t v;

	if (o->type != &option_uint && o->type != &option_duration &&
	    o->type != &option_seconds)
		return;
	memcpy(&v, (const char *)base + o->off, sizeof(v));
	FUZZ_CHECK(v == 0 ? o->accepts != 0 || o->min == 0 : v >= o->min && v <= o->max);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t n;
	const struct option *table = config_options(&n), *o;
	char *value, why[CONFIG_ERR_MAX], shown[8192];
	void *base, *before;
	enum option_result rc;

	if (size < 1)
		return 0;
	o = &table[data[0] % n];
	value = fuzz_string(data + 1, size - 1);
	base = calloc(1, base_size(o));
	before = malloc(base_size(o));
	FUZZ_CHECK(base != NULL && before != NULL);
	if (o->fallback != NULL)
		FUZZ_CHECK(option_set(o, base, o->fallback, why, sizeof(why)) == OPTION_OK);
	memcpy(before, base, base_size(o));

	why[0] = '\0';
	rc = option_set(o, base, value, why, sizeof(why));
	FUZZ_CHECK(rc == OPTION_OK || rc == OPTION_INVALID);
	if (rc == OPTION_INVALID) {
		FUZZ_CHECK(why[0] != '\0' && memchr(why, '\0', sizeof(why)) != NULL);
		FUZZ_CHECK(memcmp(before, base, base_size(o)) == 0);
	}
	check_range(o, base);
	option_format(o, base, shown, sizeof(shown));
	FUZZ_CHECK(memchr(shown, '\0', sizeof(shown)) != NULL);
	option_clear(o, base);
	free(before);
	free(base);
	free(value);
	return 0;
}
