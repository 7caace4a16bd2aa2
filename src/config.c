/*
 * config.c: the INI file turned into one immutable, validated struct config.
 *
 * Owns the option table (every key: its type, range, default, help, the
 * section it belongs to and where its value lands), the schema checks on
 * what inifile.c read (which sections and keys exist, where each may go),
 * resolution of [defaults] into every [listener NAME], the checks across
 * keys, and the `kaproxy -t` report, which the table lays out.
 *
 * Parsing happens in two passes on purpose: the reader only collects raw
 * entries, and resolution runs after the whole file is read, so [defaults]
 * applies to every listener wherever it appears and errors point at the line
 * that supplied the offending value.  Every error is recorded with its line;
 * the one with the lowest line number is reported, as "FILE:LINE: message".
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "kaproxy/config.h"
#include "kaproxy/duration.h"
#include "kaproxy/endpoint.h"
#include "kaproxy/inifile.h"
#include "kaproxy/option.h"
#include "kaproxy/policy.h"
#include "kaproxy/reason.h"

/* Refuse absurd files rather than read them into memory. */
#define FILE_LIMIT (1024 * 1024)

/* Durations are kept in uint32_t ms and handed to int-based APIs (libevent
 * timevals, TCP_USER_TIMEOUT), so they stay well below INT_MAX. */
#define DURATION_MAX_MS (500ULL * 3600 * 1000)

/* ------------------------------------------------------------------------ */
/* The option table                                                          */

static const char *const log_level_words[] = { "error", "warn", "info", "debug", NULL };
static const char *const balance_words[] = { "roundrobin", "first", NULL };
static const char *const teardown_words[] = { "rst", "fin", NULL };
static const char *const reload_live_words[] = { "apply", "keep", NULL };
/* Indexed by the PROXY protocol version written: 0 is off. */
static const char *const send_proxy_words[] = { "off", "v1", "v2", NULL };
_Static_assert(TEARDOWN_RST == 0 && TEARDOWN_FIN == 1, "teardown_words is indexed by the enum");

_Static_assert(sizeof(enum log_level) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(enum balance) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(enum teardown) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(unsigned) == sizeof(uint32_t), "workers is stored as uint32_t");

#define G(m) offsetof(struct config, m)
#define L(m) offsetof(struct listener_config, m)
#define P(m) offsetof(struct leg_policy, m)

/*
 * Every key, in the order the reference and -t list them.  Leg keys are
 * written once and exist as client_NAME and upstream_NAME.
 */
static const struct option options[] = {
	{ .name = "workers", .scope = OPTION_GLOBAL, .type = &option_uint,
	  .accepts = OPTION_AUTO, .min = 1, .max = 256, .fallback = "1",
	  .off = G(workers), .label = "workers",
	  .help = "Event-loop threads, or auto for one per CPU. Each worker accepts on "
	  "its own socket of every listener (SO_REUSEPORT)." },
	{ .name = "max_connections", .scope = OPTION_GLOBAL, .type = &option_uint,
	  .min = 1, .max = 1000000, .fallback = "10000", .off = G(max_connections),
	  .label = "max_connections",
	  .help = "Client connections over all listeners; one beyond this is reset at "
	  "once and counted in /metrics." },
	{ .name = "log_level", .scope = OPTION_GLOBAL, .type = &option_enum,
	  .words = log_level_words, .fallback = "info", .off = G(log_level),
	  .label = "log_level",
	  .help = "The least severe diagnostic written to stderr." },
	{ .name = "access_log", .scope = OPTION_GLOBAL, .type = &option_path,
	  .accepts = OPTION_OFF, .fallback = "-", .off = G(access_log), .label = "access_log",
	  .help = "Where one JSON object per closed connection goes: a file (reopened on "
	  "SIGUSR1), - for stdout, or off." },
	{ .name = "admin_listen", .scope = OPTION_GLOBAL, .type = &option_endpoint,
	  .accepts = OPTION_OFF, .fallback = "127.0.0.1:9901", .off = G(admin_listen),
	  .enabled_flag = OPTION_FLAG_AT(struct config, admin_enabled), .label = "admin",
	  .remote_note = " (remote allowed)",
	  .help = "Address of the HTTP endpoint serving /connections, /metrics and "
	  "/healthz, or off. It must be a loopback address unless admin_allow_remote "
	  "is on." },
	{ .name = "admin_allow_remote", .scope = OPTION_GLOBAL, .type = &option_bool,
	  .fallback = "off", .off = G(admin_allow_remote),
	  .help = "Allow a non-loopback admin_listen, which shows every client address "
	  "to other hosts." },
	{ .name = "admin_max_connections", .scope = OPTION_GLOBAL, .type = &option_uint,
	  .min = 1, .max = 1024, .fallback = "16", .off = G(admin_max_connections),
	  .label = "admin_max_connections",
	  .help = "Admin endpoint connections open at once; one beyond this is answered 503 "
	  "and closed (after draining what its client still sends, for a second at most, "
	  "8 such at a time), and counted in /metrics, so the endpoint never holds more "
	  "descriptors than this plus 8." },
	{ .name = "status_listen", .scope = OPTION_GLOBAL, .type = &option_endpoint,
	  .accepts = OPTION_OFF, .fallback = "off", .off = G(status_listen),
	  .enabled_flag = OPTION_FLAG_AT(struct config, status_enabled), .label = "status",
	  .help = "Address of a second, read-only HTTP listener serving only GET and HEAD "
	  "/healthz and /metrics (nothing that changes state, no client address), for load "
	  "balancer and Kubernetes probes and Prometheus on the host's or pod's address "
	  "while admin_listen stays on loopback; or off. Any address is allowed, and it "
	  "works with admin_listen off. Every other path is answered 404; the Host header "
	  "is not checked there. Same limits as the admin endpoint, with its own "
	  "admin_max_connections slots." },
	{ .name = "shutdown_timeout", .scope = OPTION_GLOBAL, .type = &option_duration,
	  .min = 0, .max = DURATION_MAX_MS, .fallback = "30s", .off = G(shutdown_timeout_ms),
	  .label = "shutdown_timeout",
	  .help = "On SIGTERM or SIGINT, how long live connections may go on before the "
	  "rest are closed (close_reason shutdown)." },
	{ .name = "upgrade_drain_timeout", .scope = OPTION_GLOBAL, .type = &option_duration,
	  .accepts = OPTION_OFF, .min = 1, .max = DURATION_MAX_MS, .fallback = "off",
	  .off = G(upgrade_drain_timeout_ms), .label = "upgrade_drain_timeout",
	  .help = "After a binary upgrade (SIGUSR2), how long the old process's live "
	  "connections may go on before the rest are closed (close_reason shutdown); off: "
	  "each runs until it ends, its dead peers still found by its keepalive policy. A "
	  "SIGTERM to the old process bounds what is left by shutdown_timeout." },
	{ .name = "reload_on_change", .scope = OPTION_GLOBAL, .type = &option_bool,
	  .fallback = "off", .off = G(reload_on_change), .label = "reload_on_change",
	  .help = "Watch the configuration file (its directory, so that an editor's rename "
	  "or a Kubernetes ConfigMap's ..data symlink swap is seen) and reload as SIGHUP "
	  "does once changes have been quiet for 300ms (at most 2s after the first), "
	  "only when the file's content differs from what the last reload read." },

	{ .name = "listen", .scope = OPTION_LISTENER, .type = &option_endpoint,
	  .off = L(listen),
	  .help = "Address to accept clients on." },
	{ .name = "upstream", .scope = OPTION_LISTENER, .type = &option_endpoint_list,
	  .off = L(upstreams), .count_off = L(n_upstreams),
	  .help = "Where to forward. With several, balance picks one and a failed "
	  "connect tries the next." },
	{ .name = "balance", .scope = OPTION_LISTENER, .type = &option_enum,
	  .words = balance_words, .fallback = "roundrobin", .off = L(balance),
	  .help = "roundrobin spreads connections over the upstreams; first tries them "
	  "in the order written." },
	{ .name = "teardown", .scope = OPTION_LISTENER, .type = &option_enum,
	  .words = teardown_words, .fallback = "rst", .off = L(teardown), .label = "teardown",
	  .help = "How the other leg is closed when one peer is found dead: rst at "
	  "once, or fin after flushing what that peer is still owed." },
	{ .name = "log_interval", .scope = OPTION_LISTENER, .type = &option_duration,
	  .accepts = OPTION_OFF, .min = 1000, .max = DURATION_MAX_MS, .fallback = "off",
	  .off = L(log_interval_ms), .label = "log_interval",
	  .help = "Also write an \"event\":\"progress\" access-log record for every "
	  "connection open longer than this, once per interval (at least 1s): bytes so "
	  "far and both legs' TCP_INFO, so long-lived connections are visible before "
	  "they end." },
	{ .name = "reload_live_connections", .scope = OPTION_LISTENER, .type = &option_enum,
	  .words = reload_live_words, .fallback = "apply", .off = L(reload_live_keep),
	  .label = "reload_live_connections",
	  .help = "On reload, when this listener's keepalive or user-timeout settings "
	  "changed: apply sets them on its live connections too (both legs, at once, "
	  "no reconnect), keep leaves them to new connections. A listener is the same "
	  "across a reload when its listen address is." },
	{ .name = "upstream_recheck_on_death", .scope = OPTION_LISTENER, .type = &option_bool,
	  .fallback = "on", .off = L(recheck_on_death), .label = "upstream_recheck_on_death",
	  .help = "When an upstream connection dies by timeout, or a connect to an upstream "
	  "fails, that address is suspect: every other idle connection to it, on every "
	  "worker, is re-probed at once (one keepalive probe within about a second, user "
	  "timeout 3s), and each gets its own policy back as soon as its probe is "
	  "answered; a dead one closes as upstream_timeout. While the address is suspect "
	  "new clients start on the listener's other upstreams, until a connect to it "
	  "succeeds again: a client's, or kaproxy's own trial connect, made about once a "
	  "second while a listener avoids the address." },
	{ .name = "send_proxy", .scope = OPTION_LISTENER, .type = &option_enum,
	  .words = send_proxy_words, .fallback = "off", .off = L(send_proxy),
	  .label = "send_proxy",
	  .help = "Write a PROXY protocol header (v1 text or v2 binary) naming the client "
	  "to the upstream right after connecting, before any client byte, so the "
	  "server learns the client's address." },
	{ .name = "accept_proxy", .scope = OPTION_LISTENER, .type = &option_bool,
	  .fallback = "off", .off = L(accept_proxy), .label = "accept_proxy",
	  .help = "Each client connection starts with a PROXY protocol v1 or v2 header "
	  "(from a load balancer in front); the logged and forwarded client is the "
	  "address it names. A missing, malformed or late header closes the "
	  "connection (close_reason bad_proxy_header). Only for listeners that "
	  "nothing but the balancer can reach: the header is trusted." },
	{ .name = "accept_proxy_timeout", .scope = OPTION_LISTENER, .type = &option_duration,
	  .min = 1, .max = DURATION_MAX_MS, .fallback = "5s",
	  .off = L(accept_proxy_timeout_ms),
	  .help = "With accept_proxy, how long a client may take to send its whole "
	  "PROXY header." },
	{ .name = "connect_timeout", .scope = OPTION_LISTENER, .type = &option_duration,
	  .min = 1, .max = DURATION_MAX_MS, .fallback = "5s", .off = L(connect_timeout_ms),
	  .label = "connect_timeout",
	  .help = "Give up on an upstream that has not completed the TCP handshake "
	  "within this time." },
	{ .name = "idle_timeout", .scope = OPTION_LISTENER, .type = &option_duration,
	  .accepts = OPTION_OFF, .min = 1, .max = DURATION_MAX_MS, .fallback = "off",
	  .off = L(idle_timeout_ms), .label = "idle_timeout",
	  .help = "Close a connection once both directions have been silent this long "
	  "(close_reason idle_timeout). Off: a healthy idle connection lives on, and "
	  "keepalive finds the dead ones." },

	{ .name = "keepalive", .scope = OPTION_LEG, .type = &option_bool,
	  .fallback = "on", .off = P(keepalive), .label = "keepalive",
	  .help = "SO_KEEPALIVE: probe the peer on this leg when it falls silent." },
	{ .name = "keepalive_idle", .scope = OPTION_LEG, .type = &option_seconds,
	  .min = 1, .max = 32767, .fallback = "60s", .off = P(idle_s), .label = "idle",
	  .sockopt = "TCP_KEEPIDLE",
	  .help = "TCP_KEEPIDLE: silence before the first probe. Keep it below the idle "
	  "timeout of any NAT, firewall or load balancer on the leg." },
	{ .name = "keepalive_interval", .scope = OPTION_LEG, .type = &option_seconds,
	  .min = 1, .max = 32767, .fallback = "10s", .off = P(interval_s),
	  .label = "interval", .sockopt = "TCP_KEEPINTVL",
	  .help = "TCP_KEEPINTVL: time between unanswered probes." },
	{ .name = "keepalive_count", .scope = OPTION_LEG, .type = &option_uint,
	  .min = 1, .max = 127, .fallback = "6", .off = P(count), .label = "count",
	  .help = "TCP_KEEPCNT: unanswered probes before the peer is declared dead." },
	{ .name = "user_timeout", .scope = OPTION_LEG, .type = &option_duration,
	  .accepts = OPTION_AUTO | OPTION_OFF, .min = 1, .max = POLICY_USER_TIMEOUT_MAX_MS,
	  .fallback = "auto", .off = P(user_timeout_ms), .label = "user_timeout",
	  .auto_flag = OPTION_FLAG_AT(struct leg_policy, user_timeout_auto),
	  .help = "TCP_USER_TIMEOUT: how long sent data may stay unacknowledged before "
	  "the peer is declared dead. auto is idle + interval x count, even with "
	  "keepalive off, so a busy leg is bounded like an idle one; off leaves it to "
	  "the kernel (tcp_retries2, 15 minutes or more)." },
	{ .name = "nat_timeout", .scope = OPTION_LEG, .type = &option_duration,
	  .accepts = OPTION_OFF, .min = 1, .max = DURATION_MAX_MS, .fallback = "off",
	  .off = P(nat_timeout_ms), .label = "nat_timeout",
	  .help = "Idle timeout of a NAT, firewall or load balancer known to sit on "
	  "this leg (e.g. 350s). A keepalive idle that is not below it is refused, "
	  "since probes would come too late to keep the middlebox's state." },
};

#undef G
#undef L
#undef P

#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

const struct option *
config_options(size_t *n)
{
	*n = N_OPTIONS;
	return options;
}

/* Where a side's leg policy sits in struct listener_config. */
static size_t
leg_offset(enum side side)
{
	return side == SIDE_CLIENT ? offsetof(struct listener_config, client)
	    : offsetof(struct listener_config, upstream);
}

/* A key's option; for a leg key (client_NAME, upstream_NAME) also its side. */
static const struct option *
option_find(const char *key, enum side *side)
{
	*side = SIDE_CLIENT;
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct option *o = &options[i];

		if (o->scope != OPTION_LEG) {
			if (strcmp(o->name, key) == 0)
				return o;
			continue;
		}
		for (int sd = SIDE_CLIENT; sd <= SIDE_UPSTREAM; sd++) {
			size_t n = strlen(reason_side_name((enum side)sd));

			if (strncmp(key, reason_side_name((enum side)sd), n) == 0 && key[n] == '_' &&
			    strcmp(o->name, key + n + 1) == 0) {
				*side = (enum side)sd;
				return o;
			}
		}
	}
	return NULL;
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

/* The reader's complaints are recorded like any other error. */
static void
on_reader_fail(void *user, unsigned line, const char *message)
{
	fail(user, line, "%s", message);
}

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

/* ------------------------------------------------------------------------ */
/* Accepting keys                                                            */

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

/* Keep candidate in buf when it is closer to key than *best. */
static void
consider(const char *key, const char *candidate, size_t *best, char *buf, size_t len)
{
	size_t d = edit_distance(key, candidate);

	if (d < *best) {
		*best = d;
		snprintf(buf, len, "%s", candidate);
	}
}

/* The closest key allowed in a section of this kind, if it is close: the
 * section's own keys first, then (where listener keys go) each side's. */
static void
suggest_key(const char *key, enum option_scope scope, char *buf, size_t len)
{
	char candidate[64];
	size_t best = 3;

	buf[0] = '\0';
	for (size_t i = 0; i < N_OPTIONS; i++)
		if (options[i].scope == scope)
			consider(key, options[i].name, &best, buf, len);
	if (scope != OPTION_LISTENER)
		return;
	for (int sd = SIDE_CLIENT; sd <= SIDE_UPSTREAM; sd++) {
		for (size_t i = 0; i < N_OPTIONS; i++) {
			if (options[i].scope != OPTION_LEG)
				continue;
			snprintf(candidate, sizeof(candidate), "%s_%s", reason_side_name((enum side)sd),
			    options[i].name);
			consider(key, candidate, &best, buf, len);
		}
	}
}

/* Check a key belongs in s and keep it for resolution. */
static void
accept_entry(struct parse *p, struct section *s, const struct inifile_entry *e)
{
	const struct inifile_entry *prev;
	enum option_scope scope = s->kind == SECTION_GLOBAL ? OPTION_GLOBAL : OPTION_LISTENER;
	enum side side;
	const struct option *o = option_find(e->key, &side);
	char label[CONFIG_NAME_MAX + 16], hint[64];

	section_label(s, label, sizeof(label));
	if (o == NULL) {
		suggest_key(e->key, scope, hint, sizeof(hint));
		fail(p, e->line, "%s: unknown key in %s%s%s%s", e->key, label,
		    hint[0] ? " (did you mean " : "", hint, hint[0] ? "?)" : "");
	} else if ((o->scope == OPTION_GLOBAL) != (scope == OPTION_GLOBAL)) {
		fail(p, e->line, "%s: not allowed in %s (%s)", e->key, label,
		    o->scope == OPTION_GLOBAL ? "it belongs in [global]"
		    : "it belongs in [defaults] or [listener NAME]");
	} else if ((prev = section_find(s, e->key)) != NULL) {
		fail(p, e->line, "%s: duplicate key in %s (first set on line %u)", e->key, label,
		    prev->line);
	} else {
		s->entries[s->n_entries++] = e;
	}
}

/* ------------------------------------------------------------------------ */
/* Accepting sections                                                        */

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

/*
 * Parse value as option o (named key in messages, which carries the side
 * prefix) and store it under base.  On error nothing is stored.
 */
static int
apply(struct parse *p, const struct option *o, const char *key, void *base,
    const char *value, unsigned line)
{
	char why[CONFIG_ERR_MAX];

	switch (option_set(o, base, value, why, sizeof(why))) {
	case OPTION_OK:
		return 0;
	case OPTION_INVALID:
		fail(p, line, "%s: %s", key, why);
		return -1;
	case OPTION_NO_MEMORY:
		break;
	}
	fail_oom(p);
	return -1;
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
	const struct inifile_entry *e = s->kind == SECTION_LISTENER
	    ? effective_entry(p, s, key) : section_find(s, key);

	if (e != NULL) {
		apply(p, o, key, base, e->value, e->line);
	} else if (o->fallback != NULL) {
		if (apply(p, o, key, base, o->fallback, 0) != 0)
			fail(p, 0, "%s: built-in default \"%s\" does not parse", key, o->fallback);
	} else if (s->kind == SECTION_LISTENER) {
		char allowed[128];

		option_allowed(o, allowed, sizeof(allowed));
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

/* "auto" becomes idle + interval * count, which TCP_USER_TIMEOUT must hold. */
static int
resolve_auto(struct parse *p, const struct section *s, enum side side,
    struct leg_policy *leg)
{
	uint64_t u = policy_auto_user_timeout_ms(leg);
	char key[64];

	snprintf(key, sizeof(key), "%s_user_timeout", reason_side_name(side));
	if (u > POLICY_USER_TIMEOUT_MAX_MS) {
		fail(p, key_line(p, s, key), "%s: auto would be %llums (idle + interval * "
		    "count), above the TCP_USER_TIMEOUT limit of %dms in [listener %s]; "
		    "set it explicitly or shorten the keepalive policy", key,
		    (unsigned long long)u, POLICY_USER_TIMEOUT_MAX_MS, s->name);
		return -1;
	}
	leg->user_timeout_ms = (uint32_t)u;
	return 0;
}

/* A middlebox idle timeout needs probes, and the first one before it. */
static void
check_nat(struct parse *p, const struct section *s, enum side side,
    const struct leg_policy *leg)
{
	const char *prefix = reason_side_name(side);
	char key[64], idle_text[32], nat_text[32];

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
		if (options[i].scope == OPTION_LISTENER)
			resolve_option(p, s, &options[i], options[i].name, lc);
	for (int sd = SIDE_CLIENT; sd <= SIDE_UPSTREAM; sd++) {
		for (size_t i = 0; i < N_OPTIONS; i++) {
			if (options[i].scope != OPTION_LEG)
				continue;
			snprintf(key, sizeof(key), "%s_%s", reason_side_name((enum side)sd),
			    options[i].name);
			resolve_option(p, s, &options[i], key,
			    (char *)lc + leg_offset((enum side)sd));
		}
	}
	/* Cross-key checks on a half-resolved listener would only report
	 * consequences of the error already found. */
	if (p->n_errors != errors_before)
		return;
	for (int sd = SIDE_CLIENT; sd <= SIDE_UPSTREAM; sd++) {
		struct leg_policy *leg = (struct leg_policy *)((char *)lc +
		    leg_offset((enum side)sd));

		if (leg->user_timeout_auto && resolve_auto(p, s, (enum side)sd, leg) != 0)
			continue;
		if (leg->nat_timeout_ms != 0)
			check_nat(p, s, (enum side)sd, leg);
	}
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

		if (o->scope == OPTION_LEG)
			base += leg_offset(side);
		apply(p, o, e->key, base, e->value, e->line);
	}
	free(scratch.upstreams);
}

/* Listen addresses must differ from each other and from the admin's and status's. */
static void
check_addresses(struct parse *p, const struct config *cfg, unsigned admin_line,
    unsigned status_line)
{
	if (cfg->admin_enabled && cfg->status_enabled &&
	    endpoint_equal(&cfg->status_listen, &cfg->admin_listen))
		fail(p, status_line, "status_listen: %s is also admin_listen",
		    cfg->status_listen.text);
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		const struct listener_config *a = &cfg->listeners[i];

		if (a->listen.len == 0)
			continue;
		if (cfg->admin_enabled && endpoint_equal(&a->listen, &cfg->admin_listen))
			fail(p, admin_line, "admin_listen: %s is also the listen address of "
			    "[listener %s] (line %u)", cfg->admin_listen.text, a->name, a->line);
		if (cfg->status_enabled && endpoint_equal(&a->listen, &cfg->status_listen))
			fail(p, status_line, "status_listen: %s is also the listen address of "
			    "[listener %s] (line %u)", cfg->status_listen.text, a->name, a->line);
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
check_global(struct parse *p, const struct config *cfg)
{
	const struct inifile_entry *admin = section_find(&p->sections[SEC_GLOBAL],
	    "admin_listen");
	const struct inifile_entry *status = section_find(&p->sections[SEC_GLOBAL],
	    "status_listen");
	unsigned admin_line = admin ? admin->line : 0;
	/* Any address: it shows no client address and changes nothing. */
	unsigned status_line = status ? status->line : 0;

	if (cfg->admin_enabled && !cfg->admin_allow_remote &&
	    !endpoint_is_loopback(&cfg->admin_listen)) {
		fail(p, admin_line, "admin_listen: %s is not a loopback address; /connections "
		    "and /metrics would be reachable from other hosts (set admin_allow_remote "
		    "= on to allow it)", cfg->admin_listen.text);
	}
	check_addresses(p, cfg, admin_line, status_line);
}

/* Resolve everything into cfg; errors are left in p. */
static void
resolve(struct parse *p, struct config *cfg)
{
	size_t n_listeners = p->n_sections - (SEC_DEFAULTS + 1);

	for (size_t i = 0; i < N_OPTIONS; i++)
		if (options[i].scope == OPTION_GLOBAL)
			resolve_option(p, &p->sections[SEC_GLOBAL], &options[i], options[i].name,
			    cfg);
	check_defaults(p);
	if (n_listeners == 0) {
		fail(p, p->file.lines ? p->file.lines : 1, "no [listener NAME] section; at "
		    "least one is needed");
	} else if ((cfg->listeners = calloc(n_listeners, sizeof(*cfg->listeners))) == NULL) {
		fail_oom(p);
		return;
	}
	cfg->n_listeners = cfg->listeners ? n_listeners : 0;
	for (size_t i = 0; i < cfg->n_listeners; i++)
		resolve_listener(p, &p->sections[SEC_DEFAULTS + 1 + i], &cfg->listeners[i]);
	check_global(p, cfg);
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                   */

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
		for (size_t j = 0; j < N_OPTIONS; j++)
			if (options[j].scope == OPTION_LISTENER)
				option_clear(&options[j], &cfg->listeners[i]);
	for (size_t j = 0; j < N_OPTIONS; j++)
		if (options[j].scope == OPTION_GLOBAL)
			option_clear(&options[j], cfg);
	free(cfg->listeners);
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

	memset(&p, 0, sizeof(p));
	p.name = name;
	if (inifile_read(text, len, &p.file, on_reader_fail, &p) != 0 ||
	    sections_alloc(&p) != 0 || (cfg = calloc(1, sizeof(*cfg))) == NULL ||
	    (cfg->path = strdup(name)) == NULL)
		fail_oom(&p);
	if (!p.oom)
		accept_file(&p);
	if (!p.oom)
		resolve(&p, cfg);
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
config_load_buffer(const char *text, size_t len, const char *name, struct config **out,
    char *err, size_t errlen)
{
	if (name == NULL)
		name = "(string)";
	if (text == NULL || out == NULL) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "%s: no text to parse", name);
		return -1;
	}
	return load_text(text, len, name, out, err, errlen);
}

int
config_load_string(const char *text, const char *name, struct config **out, char *err,
    size_t errlen)
{
	return config_load_buffer(text, text ? strlen(text) : 0, name, out, err, errlen);
}

int
config_load(const char *path, struct config **out, char *err, size_t errlen)
{
	FILE *f = NULL;
	char *text = NULL;
	size_t len = 0;
	const char *why = NULL;
	int rc;

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
	why = strerror(errno);
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

/* "label value, label value\n": the labelled options of a scope, in table
 * order, as -t lists them. */
static void
print_labelled(FILE *out, enum option_scope scope, const void *base)
{
	const char *sep = "";
	char value[ENDPOINT_TEXT_MAX + 256];

	for (size_t i = 0; i < N_OPTIONS; i++) {
		if (options[i].scope != scope || options[i].label == NULL)
			continue;
		option_format(&options[i], base, value, sizeof(value));
		fprintf(out, "%s%s %s", sep, options[i].label, value);
		sep = ", ";
	}
	fputc('\n', out);
}

/* One unlabelled value, as the listener's heading line shows it. */
static const char *
value_text(const char *key, const void *base, char *buf, size_t len)
{
	enum side side;

	option_format(option_find(key, &side), base, buf, len);
	return buf;
}

void
config_print_check(const struct config *cfg, FILE *out)
{
	char listen[ENDPOINT_TEXT_MAX], upstreams[4096], balance[32];

	if (cfg == NULL || out == NULL)
		return;
	fprintf(out, "%s: ok, %zu listener(s)\n", cfg->path, cfg->n_listeners);
	fprintf(out, "global: ");
	print_labelled(out, OPTION_GLOBAL, cfg);
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		const struct listener_config *lc = &cfg->listeners[i];

		fprintf(out, "\n[listener %s] %s -> %s (%s)\n", lc->name,
		    value_text("listen", lc, listen, sizeof(listen)),
		    value_text("upstream", lc, upstreams, sizeof(upstreams)),
		    value_text("balance", lc, balance, sizeof(balance)));
		fprintf(out, "  ");
		print_labelled(out, OPTION_LISTENER, lc);
		for (int sd = SIDE_CLIENT; sd <= SIDE_UPSTREAM; sd++) {
			const struct leg_policy *leg = (const struct leg_policy *)((const char *)lc +
			    leg_offset((enum side)sd));

			fprintf(out, "  %-9s ", reason_side_name((enum side)sd));
			print_labelled(out, OPTION_LEG, leg);
			policy_print_detection(leg, out);
		}
	}
}
