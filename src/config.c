/*
 * config.c: the INI file turned into one immutable, validated struct config.
 *
 * Owns: the option tables (every key, its type, range, default and the
 * section it belongs to), the line reader that sits between the file and
 * inih, collection of raw (section, key, value, line) entries, resolution of
 * [defaults] into every [listener NAME], cross-key checks, the value parsers
 * and the `kaproxy -t` report.
 *
 * Parsing happens in two passes on purpose: inih only collects raw entries,
 * and resolution runs after the whole file is read, so [defaults] applies to
 * every listener wherever it appears and errors point at the line that
 * supplied the offending value.  Every error is recorded with its line; the
 * one with the lowest line number is reported, as "FILE:LINE: message".
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "kaproxy/config.h"
#include "kaproxy/duration.h"
#include "kaproxy/endpoint.h"
#include "kaproxy/inifile.h"
#include "kaproxy/policy.h"
#include "kaproxy/reason.h"

/*
 * inih reads into a 200-byte buffer (INI_MAX_LINE) and silently cuts longer
 * lines, parsing the rest as a new line; a line of up to 196 characters plus
 * "\n" and NUL always fits, with room to spare, so anything longer is
 * refused here instead.
 */
#define LINE_LIMIT 197

/* Refuse absurd files rather than read them into memory. */
#define FILE_LIMIT (1024 * 1024)

/* Durations are kept in uint32_t ms and handed to int-based APIs (libevent
 * timevals, TCP_USER_TIMEOUT), so they stay well below INT_MAX. */
#define DURATION_MAX_MS (500ULL * 3600 * 1000)

/* ------------------------------------------------------------------------ */
/* The option tables                                                         */

enum opt_type {
	OPT_UINT,          /* whole number in min..max, stored as uint32_t */
	OPT_DURATION,      /* duration in min..max ms, stored as uint32_t ms */
	OPT_SECONDS,       /* whole seconds in min..max s, stored as uint32_t s */
	OPT_BOOL,          /* stored as bool */
	OPT_ENUM,          /* one of words[], stored as the enum (index) */
	OPT_ENDPOINT,      /* stored as struct endpoint */
	OPT_ENDPOINT_LIST, /* struct endpoint * at off, its size_t count at count_off */
	OPT_PATH,          /* heap string; "-" stands for stdout */
};

enum scope {
	SCOPE_GLOBAL,      /* [global] only */
	SCOPE_LISTENER,    /* [defaults] and [listener NAME] */
};

/* Keywords an option accepts besides its type's syntax; both store 0/NULL. */
#define ACCEPT_AUTO 1u
#define ACCEPT_OFF 2u

/*
 * Flag fields are stored as offset + 1 so that 0 (the value designated
 * initializers leave) means "no flag": offset 0 is a real field in
 * struct leg_policy.
 */
#define FLAG_AT(type, member) (offsetof(type, member) + 1)

struct option {
	const char *name;
	enum scope scope;
	enum opt_type type;
	unsigned accepts;          /* ACCEPT_AUTO | ACCEPT_OFF */
	uint64_t min, max;         /* OPT_UINT: value; OPT_DURATION: ms; OPT_SECONDS: s */
	const char *fallback;      /* default as written in the file; NULL = required */
	size_t off;                /* where the value is stored */
	size_t auto_flag;          /* FLAG_AT bool: set iff the value was "auto" */
	size_t enabled_flag;       /* FLAG_AT bool: set iff the value was not "off" */
	size_t count_off;          /* OPT_ENDPOINT_LIST: the size_t count */
	const char *const *words;  /* OPT_ENUM: names in enum order, NULL-terminated */
	const char *sockopt;       /* OPT_SECONDS: kernel option, for messages */
};

static const char *const log_level_words[] = { "error", "warn", "info", "debug", NULL };
static const char *const balance_words[] = { "roundrobin", "first", NULL };
static const char *const teardown_words[] = { "rst", "fin", NULL };

_Static_assert(sizeof(enum log_level) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(enum balance) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(enum teardown) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(unsigned) == sizeof(uint32_t), "workers is stored as uint32_t");

#define G(m) offsetof(struct config, m)
#define L(m) offsetof(struct listener_config, m)

/* [global] keys and the listener-wide keys; values land in struct config or
 * struct listener_config. */
static const struct option options[] = {
	{ .name = "workers", .scope = SCOPE_GLOBAL, .type = OPT_UINT,
	  .accepts = ACCEPT_AUTO, .min = 1, .max = 256, .fallback = "1",
	  .off = G(workers) },
	{ .name = "max_connections", .scope = SCOPE_GLOBAL, .type = OPT_UINT,
	  .min = 1, .max = 1000000, .fallback = "10000", .off = G(max_connections) },
	{ .name = "log_level", .scope = SCOPE_GLOBAL, .type = OPT_ENUM,
	  .words = log_level_words, .fallback = "info", .off = G(log_level) },
	{ .name = "access_log", .scope = SCOPE_GLOBAL, .type = OPT_PATH,
	  .accepts = ACCEPT_OFF, .fallback = "-", .off = G(access_log) },
	{ .name = "admin_listen", .scope = SCOPE_GLOBAL, .type = OPT_ENDPOINT,
	  .accepts = ACCEPT_OFF, .fallback = "127.0.0.1:9901", .off = G(admin_listen),
	  .enabled_flag = FLAG_AT(struct config, admin_enabled) },
	{ .name = "admin_allow_remote", .scope = SCOPE_GLOBAL, .type = OPT_BOOL,
	  .fallback = "off", .off = G(admin_allow_remote) },
	{ .name = "shutdown_timeout", .scope = SCOPE_GLOBAL, .type = OPT_DURATION,
	  .min = 0, .max = DURATION_MAX_MS, .fallback = "30s", .off = G(shutdown_timeout_ms) },

	{ .name = "listen", .scope = SCOPE_LISTENER, .type = OPT_ENDPOINT,
	  .off = L(listen) },
	{ .name = "upstream", .scope = SCOPE_LISTENER, .type = OPT_ENDPOINT_LIST,
	  .off = L(upstreams), .count_off = L(n_upstreams) },
	{ .name = "balance", .scope = SCOPE_LISTENER, .type = OPT_ENUM,
	  .words = balance_words, .fallback = "roundrobin", .off = L(balance) },
	{ .name = "connect_timeout", .scope = SCOPE_LISTENER, .type = OPT_DURATION,
	  .min = 1, .max = DURATION_MAX_MS, .fallback = "5s", .off = L(connect_timeout_ms) },
	{ .name = "idle_timeout", .scope = SCOPE_LISTENER, .type = OPT_DURATION,
	  .accepts = ACCEPT_OFF, .min = 1, .max = DURATION_MAX_MS, .fallback = "off",
	  .off = L(idle_timeout_ms) },
	{ .name = "teardown", .scope = SCOPE_LISTENER, .type = OPT_ENUM,
	  .words = teardown_words, .fallback = "rst", .off = L(teardown) },
};

#define P(m) offsetof(struct leg_policy, m)

/* The per-leg keys, written once: each exists as client_NAME and
 * upstream_NAME and lands in the matching struct leg_policy. */
static const struct option leg_options[] = {
	{ .name = "keepalive", .scope = SCOPE_LISTENER, .type = OPT_BOOL,
	  .fallback = "on", .off = P(keepalive) },
	{ .name = "keepalive_idle", .scope = SCOPE_LISTENER, .type = OPT_SECONDS,
	  .min = 1, .max = 32767, .fallback = "60s", .off = P(idle_s),
	  .sockopt = "TCP_KEEPIDLE" },
	{ .name = "keepalive_interval", .scope = SCOPE_LISTENER, .type = OPT_SECONDS,
	  .min = 1, .max = 32767, .fallback = "10s", .off = P(interval_s),
	  .sockopt = "TCP_KEEPINTVL" },
	{ .name = "keepalive_count", .scope = SCOPE_LISTENER, .type = OPT_UINT,
	  .min = 1, .max = 127, .fallback = "6", .off = P(count) },
	{ .name = "user_timeout", .scope = SCOPE_LISTENER, .type = OPT_DURATION,
	  .accepts = ACCEPT_AUTO | ACCEPT_OFF, .min = 1, .max = POLICY_USER_TIMEOUT_MAX_MS,
	  .fallback = "auto", .off = P(user_timeout_ms),
	  .auto_flag = FLAG_AT(struct leg_policy, user_timeout_auto) },
	{ .name = "nat_timeout", .scope = SCOPE_LISTENER, .type = OPT_DURATION,
	  .accepts = ACCEPT_OFF, .min = 1, .max = DURATION_MAX_MS, .fallback = "off",
	  .off = P(nat_timeout_ms) },
};

#undef G
#undef L
#undef P

#define N_OPTIONS (sizeof(options) / sizeof(options[0]))
#define N_LEG_OPTIONS (sizeof(leg_options) / sizeof(leg_options[0]))

/* Where a side's leg policy sits in struct listener_config. */
static size_t
leg_offset(enum side side)
{
	return side == SIDE_CLIENT ? offsetof(struct listener_config, client)
	    : offsetof(struct listener_config, upstream);
}

static bool
is_leg_option(const struct option *o)
{
	return o >= leg_options && o < leg_options + N_LEG_OPTIONS;
}

/* ------------------------------------------------------------------------ */
/* Parse state                                                               */

enum section_kind { SECTION_GLOBAL, SECTION_DEFAULTS, SECTION_LISTENER };

static const char *const section_kind_names[] = { "global", "defaults", "listener" };

/* A section as kaproxy understands it, with the entries it accepted.  A
 * repeated [global] or [defaults] continues the first one. */
struct section {
	enum section_kind kind;
	const char *name;                      /* listener name; "" otherwise */
	unsigned line;                         /* header line; 0 when never written */
	const struct inifile_entry **entries;  /* in file order */
	size_t n_entries;
};

/* Sections 0 and 1 are always [global] and [defaults]; listeners follow. */
#define SEC_GLOBAL 0
#define SEC_DEFAULTS 1

struct parse {
	const char *name;           /* FILE in messages */
	struct inifile file;        /* what was read, raw */
	struct section *sections;
	size_t n_sections;
	unsigned n_errors;
	unsigned err_line;          /* of the reported error; 0 = no line */
	bool oom;
	char err[CONFIG_ERR_MAX];
};

static void fail(struct parse *p, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Record an error.  All are counted (so callers can tell whether a step
 * failed) but only the earliest line's message is kept: that is the one an
 * operator fixes first, and later ones may be consequences of it.
 */
static void
fail(struct parse *p, unsigned line, const char *fmt, ...)
{
	va_list ap;

	p->n_errors++;
	if (p->n_errors > 1 && (p->oom || line >= p->err_line))
		return;
	p->err_line = line;
	va_start(ap, fmt);
	vsnprintf(p->err, sizeof(p->err), fmt, ap);
	va_end(ap);
}

static void
fail_oom(struct parse *p)
{
	fail(p, 0, "out of memory");
	p->oom = true;
	p->err_line = 0;
}

/* ------------------------------------------------------------------------ */
/* Formatting helpers                                                        */

/* What an option accepts, for "is not ..." messages. */
static void
describe_allowed(const struct option *o, char *buf, size_t len)
{
	const char *extra = "";
	size_t used;

	switch (o->type) {
	case OPT_UINT:
		snprintf(buf, len, "%llu..%llu", (unsigned long long)o->min,
		    (unsigned long long)o->max);
		break;
	case OPT_DURATION:
	case OPT_SECONDS:
		snprintf(buf, len, "integer seconds, or a number with unit ms, s, m, h");
		break;
	case OPT_BOOL:
		snprintf(buf, len, "on/off, yes/no, true/false, 1/0");
		break;
	case OPT_ENUM:
		buf[0] = '\0';
		used = 0;
		for (size_t i = 0; o->words[i] && used < len; i++)
			used += snprintf(buf + used, len - used, "%s%s", i ? " | " : "",
			    o->words[i]);
		break;
	case OPT_ENDPOINT:
		snprintf(buf, len, "host:port or [v6]:port");
		break;
	case OPT_ENDPOINT_LIST:
		snprintf(buf, len, "host:port or [v6]:port, comma separated");
		break;
	case OPT_PATH:
		snprintf(buf, len, "a file path, or - for stdout");
		break;
	}
	if ((o->accepts & ACCEPT_AUTO) && (o->accepts & ACCEPT_OFF))
		extra = "; or auto, or off";
	else if (o->accepts & ACCEPT_AUTO)
		extra = ", or auto";
	else if (o->accepts & ACCEPT_OFF)
		extra = ", or off";
	used = strlen(buf);
	snprintf(buf + used, len - used, "%s", extra);
}

/* The range of a numeric option, as "1..127", "1s..32767s", "1ms..500h". */
static void
describe_range(const struct option *o, char *buf, size_t len)
{
	char lo[32], hi[32];

	switch (o->type) {
	case OPT_SECONDS:
		snprintf(buf, len, "%llus..%llus", (unsigned long long)o->min,
		    (unsigned long long)o->max);
		return;
	case OPT_DURATION:
		duration_format_exact(o->min, lo, sizeof(lo));
		duration_format_exact(o->max, hi, sizeof(hi));
		snprintf(buf, len, "%s..%s%s", lo, hi,
		    (o->accepts & ACCEPT_OFF) ? ", or off to disable" : "");
		return;
	default:
		snprintf(buf, len, "%llu..%llu%s", (unsigned long long)o->min,
		    (unsigned long long)o->max,
		    (o->accepts & ACCEPT_AUTO) ? ", or auto" : "");
		return;
	}
}

/* ------------------------------------------------------------------------ */
/* Value parsers                                                             */

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

int
config_parse_bool(const char *text, bool *value)
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

/* ------------------------------------------------------------------------ */
/* Accepting what was read                                                   */

static const struct inifile_entry *
section_find(const struct section *s, const char *key)
{
	for (size_t i = 0; i < s->n_entries; i++)
		if (strcmp(s->entries[i]->key, key) == 0)
			return s->entries[i];
	return NULL;
}

/* "[global]", "[listener demo]": how messages name a section. */
static void
section_label(const struct section *s, char *buf, size_t len)
{
	if (s->kind == SECTION_LISTENER)
		snprintf(buf, len, "[listener %s]", s->name);
	else
		snprintf(buf, len, "[%s]", section_kind_names[s->kind]);
}

/* Look a key up in the tables; leg keys are found by their side prefix. */
static const struct option *
option_find(const char *key, enum side *side)
{
	*side = SIDE_CLIENT;
	for (size_t i = 0; i < N_OPTIONS; i++)
		if (strcmp(options[i].name, key) == 0)
			return &options[i];
	for (int sd = SIDE_CLIENT; sd <= SIDE_UPSTREAM; sd++) {
		size_t n = strlen(side_name((enum side)sd));

		if (strncmp(key, side_name((enum side)sd), n) != 0 || key[n] != '_')
			continue;
		for (size_t i = 0; i < N_LEG_OPTIONS; i++) {
			if (strcmp(leg_options[i].name, key + n + 1) == 0) {
				*side = (enum side)sd;
				return &leg_options[i];
			}
		}
	}
	return NULL;
}

/* Edit distance of two short strings, for "did you mean" hints. */
static size_t
edit_distance(const char *a, const char *b)
{
	size_t row[64], nb = strlen(b);

	if (nb >= sizeof(row) / sizeof(row[0]))
		return SIZE_MAX;
	for (size_t j = 0; j <= nb; j++)
		row[j] = j;
	for (size_t i = 1; a[i - 1]; i++) {
		size_t diag = row[0];

		row[0] = i;
		for (size_t j = 1; j <= nb; j++) {
			size_t up = row[j];
			size_t best = diag + (a[i - 1] != b[j - 1]);

			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[nb];
}

/* The closest key allowed in a section of this kind, if it is close. */
static void
suggest_key(const char *key, enum scope scope, char *buf, size_t len)
{
	char candidate[64];
	size_t best = 3;

	buf[0] = '\0';
	for (size_t i = 0; i < N_OPTIONS; i++) {
		size_t d;

		if (options[i].scope != scope)
			continue;
		d = edit_distance(key, options[i].name);
		if (d < best) {
			best = d;
			snprintf(buf, len, "%s", options[i].name);
		}
	}
	if (scope != SCOPE_LISTENER)
		return;
	for (int sd = SIDE_CLIENT; sd <= SIDE_UPSTREAM; sd++) {
		for (size_t i = 0; i < N_LEG_OPTIONS; i++) {
			size_t d;

			snprintf(candidate, sizeof(candidate), "%s_%s", side_name((enum side)sd),
			    leg_options[i].name);
			d = edit_distance(key, candidate);
			if (d < best) {
				best = d;
				snprintf(buf, len, "%s", candidate);
			}
		}
	}
}

/* The reader's complaints are recorded like any other error. */
static void
on_reader_fail(void *user, unsigned line, const char *message)
{
	fail(user, line, "%s", message);
}

/* Check a key belongs in s and keep it for resolution. */
static void
accept_entry(struct parse *p, struct section *s, const struct inifile_entry *e)
{
	const struct inifile_entry *prev;
	const struct option *o;
	enum side side;
	enum scope scope = s->kind == SECTION_GLOBAL ? SCOPE_GLOBAL : SCOPE_LISTENER;
	char label[CONFIG_NAME_MAX + 16];

	section_label(s, label, sizeof(label));
	o = option_find(e->key, &side);
	if (o == NULL) {
		char hint[64];

		suggest_key(e->key, scope, hint, sizeof(hint));
		fail(p, e->line, "%s: unknown key in %s%s%s%s", e->key, label,
		    hint[0] ? " (did you mean " : "", hint, hint[0] ? "?)" : "");
	} else if (o->scope != scope) {
		fail(p, e->line, "%s: not allowed in %s (%s)", e->key, label,
		    o->scope == SCOPE_GLOBAL ? "it belongs in [global]"
		    : "it belongs in [defaults] or [listener NAME]");
	} else if ((prev = section_find(s, e->key)) != NULL) {
		fail(p, e->line, "%s: duplicate key in %s (first set on line %u)", e->key, label,
		    prev->line);
	} else {
		s->entries[s->n_entries++] = e;
	}
}

static bool
listener_name_ok(const char *name)
{
	if (*name == '\0' || strlen(name) >= CONFIG_NAME_MAX)
		return false;
	/* Names end up in JSON log lines and Prometheus labels unescaped. */
	for (const char *c = name; *c; c++)
		if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_' && *c != '.')
			return false;
	return true;
}

/* [global] or [defaults]: a repeated one continues the first, so duplicate
 * keys are still caught across both. */
static struct section *
accept_fixed(struct parse *p, const struct inifile_section *raw)
{
	struct section *s = &p->sections[strcmp(raw->word, "global") == 0 ? SEC_GLOBAL
	    : SEC_DEFAULTS];

	if (raw->name[0] != '\0') {
		fail(p, raw->line, "[%s] takes no name", raw->word);
		return NULL;
	}
	if (s->line == 0)
		s->line = raw->line;
	return s;
}

static struct section *
accept_listener(struct parse *p, const struct inifile_section *raw)
{
	struct section *s;

	if (raw->name[0] == '\0') {
		fail(p, raw->line, "[listener] needs a name: [listener NAME]");
		return NULL;
	}
	if (!listener_name_ok(raw->name)) {
		fail(p, raw->line, "[listener %s]: a listener name is 1..%d letters, digits, "
		    "'-', '_' or '.'", raw->name, CONFIG_NAME_MAX - 1);
		return NULL;
	}
	for (size_t i = SEC_DEFAULTS + 1; i < p->n_sections; i++) {
		if (strcmp(p->sections[i].name, raw->name) == 0) {
			fail(p, raw->line, "[listener %s]: duplicate listener name (first "
			    "defined on line %u)", raw->name, p->sections[i].line);
			return NULL;
		}
	}
	s = &p->sections[p->n_sections];
	s->entries = calloc(raw->n_entries + 1, sizeof(*s->entries));
	if (s->entries == NULL) {
		fail_oom(p);
		return NULL;
	}
	s->kind = SECTION_LISTENER;
	s->name = raw->name;
	s->line = raw->line;
	p->n_sections++;
	return s;
}

/* The section a header stands for; NULL when it is refused. */
static struct section *
accept_section(struct parse *p, const struct inifile_section *raw)
{
	if (strcmp(raw->word, "global") == 0 || strcmp(raw->word, "defaults") == 0)
		return accept_fixed(p, raw);
	if (strcmp(raw->word, "listener") == 0)
		return accept_listener(p, raw);
	fail(p, raw->line, "[%s]: unknown section (allowed: [global], [defaults], "
	    "[listener NAME])", raw->text);
	return NULL;
}

/*
 * Room for every section: [global] and [defaults] may gather entries from
 * anywhere in the file, a listener only from its own header on.
 */
static int
sections_alloc(struct parse *p)
{
	size_t n_entries = 0;

	for (size_t i = 0; i < p->file.n_sections; i++)
		n_entries += p->file.sections[i].n_entries;
	p->sections = calloc(SEC_DEFAULTS + 1 + p->file.n_sections, sizeof(*p->sections));
	if (p->sections == NULL)
		return -1;
	p->n_sections = SEC_DEFAULTS + 1;
	p->sections[SEC_GLOBAL].kind = SECTION_GLOBAL;
	p->sections[SEC_DEFAULTS].kind = SECTION_DEFAULTS;
	for (size_t i = SEC_GLOBAL; i <= SEC_DEFAULTS; i++) {
		p->sections[i].name = "";
		p->sections[i].entries = calloc(n_entries + 1, sizeof(*p->sections[i].entries));
		if (p->sections[i].entries == NULL)
			return -1;
	}
	return 0;
}

/* Sort what was read into kaproxy's sections, in file order, so "first
 * set on line N" and "first defined on line N" name the earlier one. */
static void
accept_file(struct parse *p)
{
	for (size_t i = 0; i < p->file.n_sections && !p->oom; i++) {
		const struct inifile_section *raw = &p->file.sections[i];
		struct section *s = NULL;

		if (raw->line != 0 && (s = accept_section(p, raw)) == NULL)
			continue;
		for (size_t j = 0; j < raw->n_entries; j++) {
			const struct inifile_entry *e = &raw->entries[j];

			if (s == NULL)
				fail(p, e->line, "%s: key outside any section (put it under "
				    "[global], [defaults] or [listener NAME])", e->key);
			else
				accept_entry(p, s, e);
		}
	}
}

/* ------------------------------------------------------------------------ */
/* Resolution                                                                */

static void
set_flag(void *base, size_t flag, bool value)
{
	if (flag != 0)
		*(bool *)((char *)base + flag - 1) = value;
}

static void
free_endpoint_list(void *base, const struct option *o)
{
	struct endpoint **list = (struct endpoint **)((char *)base + o->off);

	free(*list);
	*list = NULL;
	*(size_t *)((char *)base + o->count_off) = 0;
}

static int
apply_endpoint_list(struct parse *p, const struct option *o, const char *key, void *base,
    const char *value, unsigned line)
{
	struct endpoint *list = NULL;
	size_t n = 1, i = 0;
	const char *c = value;

	for (const char *q = value; *q; q++)
		n += *q == ',';
	list = calloc(n, sizeof(*list));
	if (list == NULL) {
		fail_oom(p);
		return -1;
	}
	for (i = 0; i < n; i++) {
		const char *comma = strchr(c, ',');
		size_t len = comma ? (size_t)(comma - c) : strlen(c);
		char item[LINE_LIMIT];
		const char *why;

		while (len > 0 && isspace((unsigned char)*c)) {
			c++;
			len--;
		}
		while (len > 0 && isspace((unsigned char)c[len - 1]))
			len--;
		if (len == 0) {
			fail(p, line, "%s: \"%s\" has an empty entry (host:port or [v6]:port, "
			    "comma separated)", key, value);
			goto err;
		}
		if (len >= sizeof(item))
			len = sizeof(item) - 1;
		memcpy(item, c, len);
		item[len] = '\0';
		if ((why = endpoint_parse_why(item, &list[i])) != NULL) {
			fail(p, line, "%s: \"%s\" is not an endpoint: %s (host:port or "
			    "[v6]:port, comma separated)", key, item, why);
			goto err;
		}
		c = comma ? comma + 1 : c + len;
	}
	free_endpoint_list(base, o);
	*(struct endpoint **)((char *)base + o->off) = list;
	*(size_t *)((char *)base + o->count_off) = n;
	return 0;
err:
	free(list);
	return -1;
}

/*
 * Parse value as option o (named key in messages, which carries the side
 * prefix) and store it under base.  On error nothing is stored.
 */
static int
apply(struct parse *p, const struct option *o, const char *key, void *base,
    const char *value, unsigned line)
{
	char *field = (char *)base + o->off;
	char allowed[128], range[128];
	enum number_status st;
	enum duration_status dst;
	uint64_t v = 0;

	describe_allowed(o, allowed, sizeof(allowed));
	if (*value == '\0') {
		fail(p, line, "%s: empty value (%s)", key, allowed);
		return -1;
	}
	if (((o->accepts & ACCEPT_AUTO) && strcasecmp(value, "auto") == 0) ||
	    ((o->accepts & ACCEPT_OFF) && strcasecmp(value, "off") == 0)) {
		bool is_auto = strcasecmp(value, "auto") == 0;

		switch (o->type) {
		case OPT_PATH:
			free(*(char **)field);
			*(char **)field = NULL;
			break;
		case OPT_ENDPOINT:
			memset(field, 0, sizeof(struct endpoint));
			break;
		default:
			*(uint32_t *)field = 0;
			break;
		}
		set_flag(base, o->auto_flag, is_auto);
		set_flag(base, o->enabled_flag, is_auto); /* i.e. not "off" */
		return 0;
	}

	describe_range(o, range, sizeof(range));
	switch (o->type) {
	case OPT_UINT:
		st = number_parse(value, &v);
		if (st == NUM_SYNTAX) {
			fail(p, line, "%s: \"%s\" is not a whole number (%s)", key, value, allowed);
			return -1;
		}
		if (st != NUM_OK || v < o->min || v > o->max) {
			fail(p, line, "%s: %s is out of range (%s)", key, value, range);
			return -1;
		}
		*(uint32_t *)field = (uint32_t)v;
		break;
	case OPT_DURATION:
	case OPT_SECONDS:
		dst = duration_parse_status(value, &v);
		if (dst == DURATION_SYNTAX) {
			fail(p, line, "%s: \"%s\" is not a duration (%s)", key, value, allowed);
			return -1;
		}
		if (dst == DURATION_SUBMS) {
			fail(p, line, "%s: %s is not a whole number of milliseconds", key, value);
			return -1;
		}
		if (o->type == OPT_SECONDS && dst == DURATION_OK && v % 1000 != 0) {
			fail(p, line, "%s: %s is %s; %s counts whole seconds (%s)", key, value,
			    v < 1000 ? "sub-second" : "not a whole number of seconds",
			    o->sockopt, range);
			return -1;
		}
		if (o->type == OPT_SECONDS && dst == DURATION_OK)
			v /= 1000;
		if (dst != DURATION_OK || v < o->min || v > o->max) {
			fail(p, line, "%s: %s is out of range (%s)", key, value, range);
			return -1;
		}
		*(uint32_t *)field = (uint32_t)v;
		break;
	case OPT_BOOL: {
		bool b;

		if (config_parse_bool(value, &b) != 0) {
			fail(p, line, "%s: \"%s\" is not a boolean (%s)", key, value, allowed);
			return -1;
		}
		*(bool *)field = b;
		break;
	}
	case OPT_ENUM:
		for (int i = 0; o->words[i]; i++) {
			if (strcasecmp(value, o->words[i]) == 0) {
				*(int *)field = i;
				goto stored;
			}
		}
		fail(p, line, "%s: \"%s\" is not one of %s", key, value, allowed);
		return -1;
	case OPT_ENDPOINT: {
		struct endpoint ep;
		const char *why = endpoint_parse_why(value, &ep);

		if (why != NULL) {
			fail(p, line, "%s: \"%s\" is not an endpoint: %s (%s)", key, value, why,
			    allowed);
			return -1;
		}
		memcpy(field, &ep, sizeof(ep));
		break;
	}
	case OPT_ENDPOINT_LIST:
		return apply_endpoint_list(p, o, key, base, value, line);
	case OPT_PATH: {
		char *copy = strdup(value);

		if (copy == NULL) {
			fail_oom(p);
			return -1;
		}
		free(*(char **)field);
		*(char **)field = copy;
		break;
	}
	}
stored:
	set_flag(base, o->auto_flag, false);
	set_flag(base, o->enabled_flag, true);
	return 0;
}

/* The entry that sets key for a listener: its own, else [defaults]'. */
static const struct inifile_entry *
effective_entry(const struct parse *p, const struct section *s, const char *key)
{
	const struct inifile_entry *e = section_find(s, key);

	return e ? e : section_find(&p->sections[SEC_DEFAULTS], key);
}

/* Apply one option to base from the section's entry, else (for a
 * listener) the [defaults] entry, else the option's default text. */
static void
resolve_option(struct parse *p, const struct section *s, const struct option *o,
    const char *key, void *base)
{
	const struct inifile_entry *e = s->kind == SECTION_LISTENER ? effective_entry(p, s, key)
	    : section_find(s, key);

	if (e != NULL) {
		apply(p, o, key, base, e->value, e->line);
	} else if (o->fallback != NULL) {
		if (apply(p, o, key, base, o->fallback, 0) != 0)
			fail(p, 0, "%s: built-in default \"%s\" does not parse", key, o->fallback);
	} else if (s->kind == SECTION_LISTENER) {
		char allowed[128];

		describe_allowed(o, allowed, sizeof(allowed));
		fail(p, s->line, "%s: missing in [listener %s] (%s)", key, s->name, allowed);
	}
}

/* Line of the entry that set key for a listener; its header if defaulted. */
static unsigned
key_line(const struct parse *p, const struct section *s, const char *key)
{
	const struct inifile_entry *e = effective_entry(p, s, key);

	return e ? e->line : s->line;
}

/* Checks across the keys of one side of one listener. */
static void
check_leg(struct parse *p, const struct section *s, enum side side, struct leg_policy *leg)
{
	const char *prefix = side_name(side);
	char key[64], idle_text[32], nat_text[32];

	if (leg->user_timeout_auto) {
		uint64_t u = policy_auto_user_timeout_ms(leg);

		snprintf(key, sizeof(key), "%s_user_timeout", prefix);
		if (u > POLICY_USER_TIMEOUT_MAX_MS) {
			fail(p, key_line(p, s, key), "%s: auto would be %llums (idle + interval * "
			    "count), above the TCP_USER_TIMEOUT limit of %dms in [listener %s]; "
			    "set it explicitly or shorten the keepalive policy", key,
			    (unsigned long long)u, POLICY_USER_TIMEOUT_MAX_MS, s->name);
			return;
		}
		leg->user_timeout_ms = (uint32_t)u;
	}
	if (leg->nat_timeout_ms == 0)
		return;
	snprintf(key, sizeof(key), "%s_nat_timeout", prefix);
	duration_format_human(leg->nat_timeout_ms, nat_text, sizeof(nat_text));
	duration_format_human((uint64_t)leg->idle_s * 1000, idle_text, sizeof(idle_text));
	if (!leg->keepalive) {
		fail(p, key_line(p, s, key), "%s: %s is set but %s_keepalive is off in "
		    "[listener %s]; without probes the middlebox drops an idle connection's "
		    "state after %s (turn %s_keepalive on with %s_keepalive_idle below %s)",
		    key, nat_text, prefix, s->name, nat_text, prefix, prefix, nat_text);
	} else if ((uint64_t)leg->idle_s * 1000 >= leg->nat_timeout_ms) {
		fail(p, key_line(p, s, key), "%s: %s is not above %s_keepalive_idle %s in "
		    "[listener %s]; the first probe would come too late to keep the "
		    "middlebox state (set %s_keepalive_idle below %s)", key, nat_text,
		    prefix, idle_text, s->name, prefix, nat_text);
	}
}

static void
resolve_listener(struct parse *p, const struct section *s, struct listener_config *lc)
{
	unsigned errors_before = p->n_errors;
	char key[64];

	snprintf(lc->name, sizeof(lc->name), "%s", s->name);
	lc->line = s->line;
	for (size_t i = 0; i < N_OPTIONS; i++)
		if (options[i].scope == SCOPE_LISTENER)
			resolve_option(p, s, &options[i], options[i].name, lc);
	for (int sd = SIDE_CLIENT; sd <= SIDE_UPSTREAM; sd++) {
		for (size_t i = 0; i < N_LEG_OPTIONS; i++) {
			snprintf(key, sizeof(key), "%s_%s", side_name((enum side)sd), leg_options[i].name);
			resolve_option(p, s, &leg_options[i], key, (char *)lc + leg_offset((enum side)sd));
		}
	}
	/* Cross-key checks on a half-resolved listener would only report
	 * consequences of the error already found. */
	if (p->n_errors != errors_before)
		return;
	check_leg(p, s, SIDE_CLIENT, &lc->client);
	check_leg(p, s, SIDE_UPSTREAM, &lc->upstream);
}

/* [defaults] values are checked on their own too, so a bad one is reported
 * even where every listener overrides it, or there is no listener. */
static void
check_defaults(struct parse *p)
{
	const struct section *s = &p->sections[SEC_DEFAULTS];
	struct listener_config scratch;

	memset(&scratch, 0, sizeof(scratch));
	for (size_t i = 0; i < s->n_entries; i++) {
		const struct inifile_entry *e = s->entries[i];
		enum side side;
		const struct option *o = option_find(e->key, &side);
		char *base = (char *)&scratch;

		if (o == NULL)
			continue;
		if (is_leg_option(o))
			base += leg_offset(side);
		apply(p, o, e->key, base, e->value, e->line);
	}
	free(scratch.upstreams);
}

static void
check_global(struct parse *p, struct config *cfg)
{
	const struct section *g = &p->sections[SEC_GLOBAL];
	const struct inifile_entry *admin = section_find(g, "admin_listen");
	unsigned admin_line = admin ? admin->line : 0;

	if (cfg->admin_enabled && !cfg->admin_allow_remote &&
	    !endpoint_is_loopback(&cfg->admin_listen)) {
		fail(p, admin_line, "admin_listen: %s is not a loopback address; /connections "
		    "and /metrics would be reachable from other hosts (set admin_allow_remote "
		    "= on to allow it)", cfg->admin_listen.text);
	}
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		const struct listener_config *a = &cfg->listeners[i];

		if (a->listen.len == 0)
			continue;
		if (cfg->admin_enabled && endpoint_equal(&a->listen, &cfg->admin_listen))
			fail(p, admin_line, "admin_listen: %s is also the listen address of "
			    "[listener %s] (line %u)", cfg->admin_listen.text, a->name, a->line);
		for (size_t j = 0; j < i; j++) {
			const struct listener_config *b = &cfg->listeners[j];

			if (b->listen.len != 0 && endpoint_equal(&a->listen, &b->listen))
				fail(p, key_line(p, &p->sections[SEC_DEFAULTS + 1 + i], "listen"),
				    "listen: %s is already the listen address of [listener %s] "
				    "(line %u)", a->listen.text, b->name, b->line);
		}
	}
}

static void
parse_free(struct parse *p)
{
	for (size_t i = 0; p->sections != NULL && i < p->n_sections; i++)
		free(p->sections[i].entries);
	free(p->sections);
	inifile_free(&p->file);
}

void
config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < cfg->n_listeners; i++)
		free(cfg->listeners[i].upstreams);
	free(cfg->listeners);
	free(cfg->access_log);
	free(cfg->path);
	free(cfg);
}

/* Parse len bytes of text; name stands for the file in messages. */
static int
load_text(const char *text, size_t len, const char *name, struct config **out, char *err,
    size_t errlen)
{
	struct parse p;
	struct config *cfg = NULL;
	size_t n_listeners;

	memset(&p, 0, sizeof(p));
	p.name = name;
	if (inifile_read(text, len, &p.file, on_reader_fail, &p) != 0 ||
	    sections_alloc(&p) != 0) {
		fail_oom(&p);
		goto err;
	}
	accept_file(&p);
	if (p.oom)
		goto err;

	if ((cfg = calloc(1, sizeof(*cfg))) == NULL || (cfg->path = strdup(name)) == NULL) {
		fail_oom(&p);
		goto err;
	}
	for (size_t i = 0; i < N_OPTIONS; i++)
		if (options[i].scope == SCOPE_GLOBAL)
			resolve_option(&p, &p.sections[SEC_GLOBAL], &options[i], options[i].name,
			    cfg);
	check_defaults(&p);

	n_listeners = p.n_sections - (SEC_DEFAULTS + 1);
	if (n_listeners == 0) {
		fail(&p, p.file.lines ? p.file.lines : 1, "no [listener NAME] section; at least one is "
		    "needed");
	} else if ((cfg->listeners = calloc(n_listeners, sizeof(*cfg->listeners))) == NULL) {
		fail_oom(&p);
		goto err;
	}
	cfg->n_listeners = cfg->listeners ? n_listeners : 0;
	for (size_t i = 0; i < cfg->n_listeners; i++)
		resolve_listener(&p, &p.sections[SEC_DEFAULTS + 1 + i], &cfg->listeners[i]);
	check_global(&p, cfg);
	if (p.n_errors != 0)
		goto err;

	parse_free(&p);
	*out = cfg;
	return 0;
err:
	if (err != NULL && errlen > 0) {
		if (p.err_line != 0)
			snprintf(err, errlen, "%s:%u: %s", name, p.err_line, p.err);
		else
			snprintf(err, errlen, "%s: %s", name, p.err);
	}
	config_free(cfg);
	parse_free(&p);
	return -1;
}

int
config_load_string(const char *text, const char *name, struct config **out, char *err,
    size_t errlen)
{
	if (name == NULL)
		name = "(string)";
	if (text == NULL || out == NULL) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "%s: no text to parse", name);
		return -1;
	}
	return load_text(text, strlen(text), name, out, err, errlen);
}

int
config_load(const char *path, struct config **out, char *err, size_t errlen)
{
	FILE *f = NULL;
	char *text = NULL;
	size_t len = 0;
	const char *why = NULL;
	int saved, rc;

	if (path == NULL || out == NULL) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "(null): no file to load");
		return -1;
	}
	if ((f = fopen(path, "r")) == NULL)
		goto sys_err;
	if ((text = malloc(FILE_LIMIT + 1)) == NULL)
		goto sys_err;
	len = fread(text, 1, FILE_LIMIT + 1, f);
	if (ferror(f))
		goto sys_err;
	if (len > FILE_LIMIT) {
		why = "file is larger than 1 MiB";
		goto err;
	}
	fclose(f);
	rc = load_text(text, len, path, out, err, errlen);
	free(text);
	return rc;
sys_err:
	saved = errno;
	why = strerror(saved);
err:
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s: cannot read: %s", path, why);
	if (f != NULL)
		fclose(f);
	free(text);
	return -1;
}

/* ------------------------------------------------------------------------ */
/* The -t report                                                             */

static void
print_leg(FILE *out, const char *side, const struct leg_policy *leg)
{
	char idle[32], intvl[32], ut[32], nat[32];

	duration_format_human((uint64_t)leg->idle_s * 1000, idle, sizeof(idle));
	duration_format_human((uint64_t)leg->interval_s * 1000, intvl, sizeof(intvl));
	if (leg->user_timeout_ms)
		duration_format_human(leg->user_timeout_ms, ut, sizeof(ut));
	else
		snprintf(ut, sizeof(ut), "off");
	if (leg->nat_timeout_ms)
		duration_format_human(leg->nat_timeout_ms, nat, sizeof(nat));
	else
		snprintf(nat, sizeof(nat), "off");
	fprintf(out, "  %-9s keepalive %s, idle %s, interval %s, count %u, user_timeout %s%s, "
	    "nat_timeout %s\n", side, leg->keepalive ? "on" : "off", idle, intvl, leg->count,
	    ut, leg->user_timeout_auto ? " (auto)" : "", nat);
	policy_print_detection(leg, out);
}

void
config_print_check(const struct config *cfg, FILE *out)
{
	char workers[16], shutdown[32], connect[32], idle[32];

	if (cfg == NULL || out == NULL)
		return;
	if (cfg->workers)
		snprintf(workers, sizeof(workers), "%u", cfg->workers);
	else
		snprintf(workers, sizeof(workers), "auto");
	duration_format_human(cfg->shutdown_timeout_ms, shutdown, sizeof(shutdown));
	fprintf(out, "%s: ok, %zu listener(s)\n", cfg->path, cfg->n_listeners);
	fprintf(out, "global: workers %s, max_connections %u, log_level %s, access_log %s, "
	    "admin %s%s, shutdown_timeout %s\n", workers, cfg->max_connections,
	    log_level_words[cfg->log_level],
	    cfg->access_log == NULL ? "off"
	    : strcmp(cfg->access_log, "-") == 0 ? "stdout" : cfg->access_log,
	    cfg->admin_enabled ? cfg->admin_listen.text : "off",
	    cfg->admin_enabled && !endpoint_is_loopback(&cfg->admin_listen)
	    ? " (remote allowed)" : "", shutdown);

	for (size_t i = 0; i < cfg->n_listeners; i++) {
		const struct listener_config *lc = &cfg->listeners[i];

		fprintf(out, "\n[listener %s] %s ->", lc->name, lc->listen.text);
		for (size_t j = 0; j < lc->n_upstreams; j++)
			fprintf(out, "%s %s", j ? "," : "", lc->upstreams[j].text);
		fprintf(out, " (%s)\n", balance_words[lc->balance]);
		duration_format_human(lc->connect_timeout_ms, connect, sizeof(connect));
		if (lc->idle_timeout_ms)
			duration_format_human(lc->idle_timeout_ms, idle, sizeof(idle));
		else
			snprintf(idle, sizeof(idle), "off");
		fprintf(out, "  teardown %s, connect_timeout %s, idle_timeout %s\n",
		    teardown_words[lc->teardown], connect, idle);
		print_leg(out, "client", &lc->client);
		print_leg(out, "upstream", &lc->upstream);
	}
}
