/*
 * option.c: the value types of the option table, one row of operations
 * each, and what every type shares (empty values, the "auto" and "off"
 * keywords, the flags that remember them).
 *
 * Messages are built here because only the type knows what went wrong: the
 * caller puts "FILE:LINE: KEY: " in front of them.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kaproxy/duration.h"
#include "kaproxy/endpoint.h"
#include "kaproxy/option.h"

/* An upstream list's items come from one line, which is shorter than this. */
#define ITEM_MAX 256

static void *
field_of(const struct option *o, void *base)
{
	return (char *)base + o->off;
}

static const void *
const_field_of(const struct option *o, const void *base)
{
	return (const char *)base + o->off;
}

static void
set_flag(void *base, size_t flag, bool value)
{
	if (flag != 0)
		*(bool *)((char *)base + flag - 1) = value;
}

static bool
get_flag(const void *base, size_t flag)
{
	return flag != 0 && *(const bool *)((const char *)base + flag - 1);
}

/* "\"VALUE\" is not WHAT (what o accepts)": a value of the wrong shape. */
static enum option_result
refuse(const struct option *o, const char *value, const char *what, char *why, size_t len)
{
	char allowed[128];

	option_allowed(o, allowed, sizeof(allowed));
	snprintf(why, len, "\"%s\" is not %s (%s)", value, what, allowed);
	return OPTION_INVALID;
}

/* ------------------------------------------------------------------------ */
/* Numbers: uint, duration, seconds                                          */

enum number_status { NUM_OK, NUM_SYNTAX, NUM_RANGE };

/* Whole decimal number, digits only (no sign, no spaces). */
static enum number_status
number_parse(const char *text, uint64_t *value)
{
	uint64_t v = 0;
	const char *c = text;

	if (!isdigit((unsigned char)*c))
		return NUM_SYNTAX;
	for (; isdigit((unsigned char)*c); c++) {
		unsigned d = (unsigned)(*c - '0');

		if (v > (UINT64_MAX - d) / 10) {
			while (isdigit((unsigned char)*c))
				c++;
			return *c ? NUM_SYNTAX : NUM_RANGE;
		}
		v = v * 10 + d;
	}
	if (*c)
		return NUM_SYNTAX;
	*value = v;
	return NUM_OK;
}

/* o's range as messages give it: with the keyword that stands outside it. */
static void
range_text(const struct option *o, char *buf, size_t len)
{
	size_t used;

	o->type->range(o, buf, len);
	used = strlen(buf);
	snprintf(buf + used, len - used, "%s", (o->accepts & OPTION_OFF) ? ", or off to disable"
	    : (o->accepts & OPTION_AUTO) ? ", or auto" : "");
}

/* v checked against o's range and stored, or the out-of-range message. */
static enum option_result
store_in_range(const struct option *o, void *base, const char *value, bool ok, uint64_t v,
    char *why, size_t len)
{
	char range[128];

	if (!ok || v < o->min || v > o->max) {
		range_text(o, range, sizeof(range));
		snprintf(why, len, "%s is out of range (%s)", value, range);
		return OPTION_INVALID;
	}
	*(uint32_t *)field_of(o, base) = (uint32_t)v;
	return OPTION_OK;
}

static enum option_result
uint_parse(const struct option *o, void *base, const char *value, char *why, size_t len)
{
	uint64_t v = 0;
	enum number_status st = number_parse(value, &v);

	if (st == NUM_SYNTAX)
		return refuse(o, value, "a whole number", why, len);
	return store_in_range(o, base, value, st == NUM_OK, v, why, len);
}

/* "1..127", "1s..32767s": min and max, each with its unit. */
static void
counted_range(const struct option *o, const char *unit, char *buf, size_t len)
{
	snprintf(buf, len, "%llu%s..%llu%s", (unsigned long long)o->min, unit,
	    (unsigned long long)o->max, unit);
}

/* A whole number's range is also all it accepts. */
static void
uint_range(const struct option *o, char *buf, size_t len)
{
	counted_range(o, "", buf, len);
}

static void
uint_format(const struct option *o, const void *base, char *buf, size_t len)
{
	uint32_t v = *(const uint32_t *)const_field_of(o, base);

	if (v == 0 && (o->accepts & OPTION_AUTO))
		snprintf(buf, len, "auto");
	else
		snprintf(buf, len, "%u", v);
}

/* Durations and whole seconds share the syntax; seconds are what the
 * kernel's keepalive options count in, so a fraction is refused. */
static enum option_result
time_parse(const struct option *o, void *base, const char *value, char *why, size_t len)
{
	bool seconds = o->type == &option_seconds;
	uint64_t v = 0;
	enum duration_status st = duration_parse_status(value, &v);
	char range[128];

	if (st == DURATION_SYNTAX)
		return refuse(o, value, "a duration", why, len);
	if (st == DURATION_SUBMS) {
		snprintf(why, len, "%s is not a whole number of milliseconds", value);
		return OPTION_INVALID;
	}
	if (seconds && st == DURATION_OK && v % 1000 != 0) {
		range_text(o, range, sizeof(range));
		snprintf(why, len, "%s is %s; %s counts whole seconds (%s)", value,
		    v < 1000 ? "sub-second" : "not a whole number of seconds", o->sockopt, range);
		return OPTION_INVALID;
	}
	if (seconds)
		v /= 1000;
	return store_in_range(o, base, value, st == DURATION_OK, v, why, len);
}

static void
duration_range(const struct option *o, char *buf, size_t len)
{
	char lo[32], hi[32];

	duration_format_exact(o->min, lo, sizeof(lo));
	duration_format_exact(o->max, hi, sizeof(hi));
	snprintf(buf, len, "%s..%s", lo, hi);
}

static void
duration_format(const struct option *o, const void *base, char *buf, size_t len)
{
	uint32_t ms = *(const uint32_t *)const_field_of(o, base);

	if (ms == 0 && (o->accepts & OPTION_OFF))
		snprintf(buf, len, "off");
	else
		duration_format_human(ms, buf, len);
}

static void
seconds_range(const struct option *o, char *buf, size_t len)
{
	counted_range(o, "s", buf, len);
}

static void
seconds_format(const struct option *o, const void *base, char *buf, size_t len)
{
	duration_format_human((uint64_t)*(const uint32_t *)const_field_of(o, base) * 1000, buf,
	    len);
}

/* ------------------------------------------------------------------------ */
/* Words: bool, enum                                                         */

int
option_parse_bool(const char *text, bool *value)
{
	static const char *const yes[] = { "on", "yes", "true", "1" };
	static const char *const no[] = { "off", "no", "false", "0" };

	if (text == NULL || value == NULL)
		return -1;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(text, yes[i]) == 0) {
			*value = true;
			return 0;
		}
		if (strcasecmp(text, no[i]) == 0) {
			*value = false;
			return 0;
		}
	}
	return -1;
}

static enum option_result
bool_parse(const struct option *o, void *base, const char *value, char *why, size_t len)
{
	if (option_parse_bool(value, (bool *)field_of(o, base)) == 0)
		return OPTION_OK;
	return refuse(o, value, "a boolean", why, len);
}

static void
bool_format(const struct option *o, const void *base, char *buf, size_t len)
{
	snprintf(buf, len, "%s", *(const bool *)const_field_of(o, base) ? "on" : "off");
}

static enum option_result
enum_parse(const struct option *o, void *base, const char *value, char *why, size_t len)
{
	char allowed[128];

	for (int i = 0; o->words[i]; i++) {
		if (strcasecmp(value, o->words[i]) == 0) {
			*(int *)field_of(o, base) = i;
			return OPTION_OK;
		}
	}
	option_allowed(o, allowed, sizeof(allowed));
	snprintf(why, len, "\"%s\" is not one of %s", value, allowed);
	return OPTION_INVALID;
}

static void
enum_allowed(const struct option *o, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; o->words[i] && used < len; i++)
		used += snprintf(buf + used, len - used, "%s%s", i ? " | " : "", o->words[i]);
}

static void
enum_format(const struct option *o, const void *base, char *buf, size_t len)
{
	snprintf(buf, len, "%s", o->words[*(const int *)const_field_of(o, base)]);
}

/* ------------------------------------------------------------------------ */
/* Addresses: endpoint, endpoint list                                        */

static enum option_result
endpoint_value_parse(const struct option *o, void *base, const char *value, char *why,
    size_t len)
{
	struct endpoint ep;
	const char *reason = endpoint_parse_why(value, &ep);
	char what[128];

	if (reason != NULL) {
		snprintf(what, sizeof(what), "an endpoint: %s", reason);
		return refuse(o, value, what, why, len);
	}
	memcpy(field_of(o, base), &ep, sizeof(ep));
	return OPTION_OK;
}

static void
endpoint_value_format(const struct option *o, const void *base, char *buf, size_t len)
{
	const struct endpoint *ep = const_field_of(o, base);

	if (ep->len == 0)
		snprintf(buf, len, "off");
	else
		snprintf(buf, len, "%s%s", ep->text,
		    o->remote_note && !endpoint_is_loopback(ep) ? o->remote_note : "");
}

/* The next comma-separated item of a list, blanks trimmed, into item. */
static const char *
next_item(const char *c, char item[ITEM_MAX])
{
	const char *comma = strchr(c, ',');
	size_t len = comma ? (size_t)(comma - c) : strlen(c);

	while (len > 0 && isspace((unsigned char)*c)) {
		c++;
		len--;
	}
	while (len > 0 && isspace((unsigned char)c[len - 1]))
		len--;
	if (len >= ITEM_MAX)
		len = ITEM_MAX - 1;
	memcpy(item, c, len);
	item[len] = '\0';
	return comma ? comma + 1 : c + len;
}

static enum option_result
endpoint_list_parse(const struct option *o, void *base, const char *value, char *why,
    size_t len)
{
	struct endpoint *list;
	size_t n = 1;
	const char *c = value, *reason;
	char item[ITEM_MAX], what[128];

	for (const char *q = value; *q; q++)
		n += *q == ',';
	if ((list = calloc(n, sizeof(*list))) == NULL)
		return OPTION_NO_MEMORY;
	for (size_t i = 0; i < n; i++) {
		c = next_item(c, item);
		if (item[0] == '\0') {
			snprintf(why, len, "\"%s\" has an empty entry (%s)", value,
			    o->type->syntax);
			goto err;
		}
		if ((reason = endpoint_parse_why(item, &list[i])) != NULL) {
			snprintf(what, sizeof(what), "an endpoint: %s", reason);
			refuse(o, item, what, why, len);
			goto err;
		}
	}
	o->type->clear(o, base);
	*(struct endpoint **)field_of(o, base) = list;
	*(size_t *)((char *)base + o->count_off) = n;
	return OPTION_OK;
err:
	free(list);
	return OPTION_INVALID;
}

static void
endpoint_list_format(const struct option *o, const void *base, char *buf, size_t len)
{
	const struct endpoint *list = *(struct endpoint *const *)const_field_of(o, base);
	size_t n = *(const size_t *)((const char *)base + o->count_off), used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n && used < len; i++)
		used += snprintf(buf + used, len - used, "%s%s", i ? ", " : "", list[i].text);
}

static void
endpoint_list_clear(const struct option *o, void *base)
{
	struct endpoint **list = field_of(o, base);

	free(*list);
	*list = NULL;
	*(size_t *)((char *)base + o->count_off) = 0;
}

/* ------------------------------------------------------------------------ */
/* Paths                                                                     */

static enum option_result
path_parse(const struct option *o, void *base, const char *value, char *why, size_t len)
{
	char *copy = strdup(value);

	(void)why;
	(void)len;
	if (copy == NULL)
		return OPTION_NO_MEMORY;
	o->type->clear(o, base);
	*(char **)field_of(o, base) = copy;
	return OPTION_OK;
}

static void
path_format(const struct option *o, const void *base, char *buf, size_t len)
{
	const char *path = *(char *const *)const_field_of(o, base);

	snprintf(buf, len, "%s", path == NULL ? "off" : strcmp(path, "-") == 0 ? "stdout"
	    : path);
}

static void
path_clear(const struct option *o, void *base)
{
	char **path = field_of(o, base);

	free(*path);
	*path = NULL;
}

/* ------------------------------------------------------------------------ */
/* The types                                                                 */

/* A value that owns nothing: reset to zero bytes. */
static void
plain_clear(const struct option *o, void *base)
{
	memset(field_of(o, base), 0, o->type->size);
}

const struct option_type option_uint = {
	.parse = uint_parse, .allowed = uint_range, .range = uint_range,
	.format = uint_format, .clear = plain_clear, .size = sizeof(uint32_t),
};
static const char time_syntax[] = "integer seconds, or a number with unit ms, s, m, h";

const struct option_type option_duration = {
	.parse = time_parse, .syntax = time_syntax,
	.range = duration_range, .format = duration_format, .clear = plain_clear,
	.size = sizeof(uint32_t),
};
const struct option_type option_seconds = {
	.parse = time_parse, .syntax = time_syntax,
	.range = seconds_range, .format = seconds_format, .clear = plain_clear,
	.size = sizeof(uint32_t),
};
const struct option_type option_bool = {
	.parse = bool_parse, .syntax = "on/off, yes/no, true/false, 1/0",
	.format = bool_format, .clear = plain_clear, .size = sizeof(bool),
};
const struct option_type option_enum = {
	.parse = enum_parse, .allowed = enum_allowed, .format = enum_format,
	.clear = plain_clear, .size = sizeof(int),
};
const struct option_type option_endpoint = {
	.parse = endpoint_value_parse, .syntax = "host:port or [v6]:port",
	.format = endpoint_value_format, .clear = plain_clear, .size = sizeof(struct endpoint),
};
const struct option_type option_endpoint_list = {
	.parse = endpoint_list_parse, .syntax = "host:port or [v6]:port, comma separated",
	.format = endpoint_list_format, .clear = endpoint_list_clear,
};
const struct option_type option_path = {
	.parse = path_parse, .syntax = "a file path, or - for stdout",
	.format = path_format, .clear = path_clear,
};

/* ------------------------------------------------------------------------ */
/* What every type shares                                                    */

/* ", or auto" and the like: the keywords o accepts besides its syntax. */
static void
append_keywords(const struct option *o, char *buf, size_t len)
{
	const char *extra = "";
	size_t used = strlen(buf);

	if ((o->accepts & OPTION_AUTO) && (o->accepts & OPTION_OFF))
		extra = "; or auto, or off";
	else if (o->accepts & OPTION_AUTO)
		extra = ", or auto";
	else if (o->accepts & OPTION_OFF)
		extra = ", or off";
	snprintf(buf + used, len - used, "%s", extra);
}

/* What o's type accepts, keywords aside. */
static void
type_allowed(const struct option *o, char *buf, size_t len)
{
	if (o->type->syntax != NULL)
		snprintf(buf, len, "%s", o->type->syntax);
	else
		o->type->allowed(o, buf, len);
}

void
option_allowed(const struct option *o, char *buf, size_t len)
{
	type_allowed(o, buf, len);
	append_keywords(o, buf, len);
}

void
option_values(const struct option *o, char *buf, size_t len)
{
	if (o->type->range != NULL)
		o->type->range(o, buf, len);
	else
		type_allowed(o, buf, len);
	append_keywords(o, buf, len);
}

/* "auto" or "off" where o takes it: the value is cleared, the flags say
 * which word it was. */
static bool
set_keyword(const struct option *o, void *base, const char *value)
{
	bool is_auto = (o->accepts & OPTION_AUTO) && strcasecmp(value, "auto") == 0;
	bool is_off = (o->accepts & OPTION_OFF) && strcasecmp(value, "off") == 0;

	if (!is_auto && !is_off)
		return false;
	o->type->clear(o, base);
	set_flag(base, o->auto_flag, is_auto);
	set_flag(base, o->enabled_flag, is_auto); /* i.e. not "off" */
	return true;
}

enum option_result
option_set(const struct option *o, void *base, const char *value, char *why, size_t len)
{
	enum option_result rc;
	char allowed[128];

	if (*value == '\0') {
		option_allowed(o, allowed, sizeof(allowed));
		snprintf(why, len, "empty value (%s)", allowed);
		return OPTION_INVALID;
	}
	if (set_keyword(o, base, value))
		return OPTION_OK;
	if ((rc = o->type->parse(o, base, value, why, len)) != OPTION_OK)
		return rc;
	set_flag(base, o->auto_flag, false);
	set_flag(base, o->enabled_flag, true);
	return OPTION_OK;
}

void
option_format(const struct option *o, const void *base, char *buf, size_t len)
{
	size_t used;

	o->type->format(o, base, buf, len);
	used = strlen(buf);
	if (get_flag(base, o->auto_flag))
		snprintf(buf + used, len - used, " (auto)");
}

void
option_clear(const struct option *o, void *base)
{
	o->type->clear(o, base);
}
