/*
 * test_config: the INI contract of config.c.
 *
 * Proves that every value syntax in the spec parses (and near misses do
 * not), that [defaults] reaches every listener wherever it is written, that
 * each validation error names its key and the exact line, and that the
 * dead-peer detection times follow the Linux keepalive timer.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "kaproxy/config.h"
#include "kaproxy/duration.h"
#include "kaproxy/endpoint.h"
#include "kaproxy/option.h"
#include "kaproxy/policy.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* A complete minimal listener: three lines. */
#define LISTENER "[listener a]\nlisten = 127.0.0.1:2000\nupstream = 127.0.0.1:2001\n"

static struct config *
load_ok(const char *text)
{
	struct config *cfg = NULL;
	char err[CONFIG_ERR_MAX] = "";
	int rc = config_load_string(text, "t.ini", &cfg, err, sizeof(err));

	if (rc != 0)
		print_error("unexpected error: %s\n", err);
	assert_int_equal(rc, 0);
	assert_non_null(cfg);
	return cfg;
}

/* Loading text fails with "t.ini:LINE: " and the message holds each needle. */
static void
expect_error(const char *text, unsigned line, const char *needle, const char *needle2)
{
	struct config *cfg = (struct config *)(uintptr_t)0x1; /* must stay untouched */
	char err[CONFIG_ERR_MAX] = "", prefix[32];

	assert_int_equal(config_load_string(text, "t.ini", &cfg, err, sizeof(err)), -1);
	assert_ptr_equal(cfg, (struct config *)(uintptr_t)0x1);
	snprintf(prefix, sizeof(prefix), "t.ini:%u: ", line);
	if (strncmp(err, prefix, strlen(prefix)) != 0)
		fail_msg("expected prefix \"%s\", got \"%s\"", prefix, err);
	if (needle && strstr(err, needle) == NULL)
		fail_msg("\"%s\" not in \"%s\"", needle, err);
	if (needle2 && strstr(err, needle2) == NULL)
		fail_msg("\"%s\" not in \"%s\"", needle2, err);
}

/* ------------------------------------------------------------------ */
/* 1. Value syntax                                                     */

static void
test_durations(void **state)
{
	static const struct {
		const char *text;
		uint64_t ms;
	} good[] = {
		{ "0", 0 }, { "30", 30000 }, { "007", 7000 }, { "250ms", 250 },
		{ "30s", 30000 }, { "1.5s", 1500 }, { "1.001s", 1001 }, { "5m", 300000 },
		{ "0.5m", 30000 }, { "2h", 7200000 }, { "1.25h", 4500000 },
		{ "0.250s", 250 }, { "1.0000000000s", 1000 },
		{ "18446744073709551615ms", UINT64_MAX },
	};
	static const char *const bad[] = {
		"", " ", "-5", "-5s", "+5s", "5x", "70x", "5 s", " 5s", "5s ", "s", "ms",
		"1.5", "1.", ".5s", "1.s", "1.5ms", "0.0001s", "1.0000000001s", "5S", "5M",
		"5mm", "5sm", "1e3s", "5d", "1,5s", "0x10s",
		"18446744073709551616ms", "99999999999999999999", "18446744073709552s",
		"5124095576030432h",
	};
	uint64_t ms;

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(good); i++) {
		ms = 12345;
		if (duration_parse(good[i].text, &ms) != 0)
			fail_msg("\"%s\" rejected", good[i].text);
		if (ms != good[i].ms)
			fail_msg("\"%s\" gave %llu", good[i].text, (unsigned long long)ms);
	}
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		ms = 12345;
		if (duration_parse(bad[i], &ms) != -1)
			fail_msg("\"%s\" accepted as %llu", bad[i], (unsigned long long)ms);
		assert_int_equal(ms, 12345);
	}
}

static void
test_booleans(void **state)
{
	static const struct {
		const char *text;
		bool value;
	} good[] = {
		{ "on", true }, { "off", false }, { "yes", true }, { "no", false },
		{ "true", true }, { "false", false }, { "1", true }, { "0", false },
		{ "ON", true }, { "Off", false }, { "YES", true }, { "False", false },
	};
	static const char *const bad[] = { "", "2", "onn", "y", "n", "enable", " on", "01" };
	bool b;

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(good); i++) {
		b = !good[i].value;
		if (option_parse_bool(good[i].text, &b) != 0 || b != good[i].value)
			fail_msg("\"%s\" misparsed", good[i].text);
	}
	for (size_t i = 0; i < ARRAY_LEN(bad); i++)
		if (option_parse_bool(bad[i], &b) != -1)
			fail_msg("\"%s\" accepted", bad[i]);
}

static void
test_endpoints(void **state)
{
	static const struct {
		const char *text, *norm;
		int family;
		unsigned port;
	} good[] = {
		{ "127.0.0.1:2000", "127.0.0.1:2000", AF_INET, 2000 },
		{ "0.0.0.0:1", "0.0.0.0:1", AF_INET, 1 },
		{ "192.0.2.10:65535", "192.0.2.10:65535", AF_INET, 65535 },
		{ "10.0.0.1:080", "10.0.0.1:80", AF_INET, 80 },
		{ "[::1]:80", "[::1]:80", AF_INET6, 80 },
		{ "[::]:2000", "[::]:2000", AF_INET6, 2000 },
		{ "[2001:DB8:0:0::1]:5432", "[2001:db8::1]:5432", AF_INET6, 5432 },
	};
	static const char *const bad[] = {
		"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
		"127.0.0.1:99999999999999999999999", "127.0.0.1:http", "127.0.0.1:-1",
		"127.0.0.1:80x", ":80", "::1:80", "[::1]", "[::1", "[::1]80", "[]:80",
		"[127.0.0.1]:80", "[::1]:0", "256.1.1.1:80", "10.0.0.1.2:80", "127.1:80",
		"010.0.0.1:80", "bad host:80", "bad!host:80", "*:80",
	};
	struct endpoint ep;

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(good); i++) {
		memset(&ep, 0, sizeof(ep));
		if (endpoint_parse(good[i].text, &ep) != 0)
			fail_msg("\"%s\" rejected", good[i].text);
		assert_string_equal(ep.text, good[i].norm);
		assert_int_equal(ep.addr.ss_family, good[i].family);
		if (good[i].family == AF_INET) {
			assert_int_equal(ep.len, sizeof(struct sockaddr_in));
			assert_int_equal(ntohs(((struct sockaddr_in *)&ep.addr)->sin_port),
			    good[i].port);
		} else {
			assert_int_equal(ep.len, sizeof(struct sockaddr_in6));
			assert_int_equal(ntohs(((struct sockaddr_in6 *)&ep.addr)->sin6_port),
			    good[i].port);
		}
	}
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		memset(&ep, 0, sizeof(ep));
		if (endpoint_parse(bad[i], &ep) != -1)
			fail_msg("\"%s\" accepted as %s", bad[i], ep.text);
	}
}

/* A name goes through the resolver; localhost is in every /etc/hosts. */
static void
test_endpoint_hostname(void **state)
{
	struct endpoint ep;

	(void)state;
	assert_int_equal(endpoint_parse("localhost:2000", &ep), 0);
	if (ep.addr.ss_family == AF_INET) {
		assert_string_equal(ep.text, "127.0.0.1:2000");
		assert_int_equal(ntohs(((struct sockaddr_in *)&ep.addr)->sin_port), 2000);
	} else {
		assert_int_equal(ep.addr.ss_family, AF_INET6);
		assert_string_equal(ep.text, "[::1]:2000");
	}
}

/* ------------------------------------------------------------------ */
/* 2. Defaults and inheritance                                          */

static void
test_builtin_defaults(void **state)
{
	struct config *cfg = load_ok(LISTENER);
	const struct listener_config *lc = &cfg->listeners[0];
	const struct leg_policy *legs[] = { &lc->client, &lc->upstream };

	(void)state;
	assert_string_equal(cfg->path, "t.ini");
	assert_int_equal(cfg->workers, 1);
	assert_int_equal(cfg->max_connections, 10000);
	assert_int_equal(cfg->log_level, LOG_LEVEL_INFO);
	assert_string_equal(cfg->access_log, "-");
	assert_true(cfg->admin_enabled);
	assert_string_equal(cfg->admin_listen.text, "127.0.0.1:9901");
	assert_false(cfg->admin_allow_remote);
	assert_false(cfg->status_enabled);
	assert_int_equal(cfg->shutdown_timeout_ms, 30000);
	assert_false(cfg->reload_on_change);
	assert_int_equal(cfg->n_listeners, 1);
	assert_string_equal(lc->name, "a");
	assert_int_equal(lc->line, 1);
	assert_string_equal(lc->listen.text, "127.0.0.1:2000");
	assert_int_equal(lc->n_upstreams, 1);
	assert_string_equal(lc->upstreams[0].text, "127.0.0.1:2001");
	assert_int_equal(lc->balance, BALANCE_ROUNDROBIN);
	assert_int_equal(lc->connect_timeout_ms, 5000);
	assert_int_equal(lc->idle_timeout_ms, 0);
	assert_int_equal(lc->teardown, TEARDOWN_RST);
	assert_true(lc->recheck_on_death);
	for (size_t i = 0; i < ARRAY_LEN(legs); i++) {
		assert_true(legs[i]->keepalive);
		assert_int_equal(legs[i]->idle_s, 60);
		assert_int_equal(legs[i]->interval_s, 10);
		assert_int_equal(legs[i]->count, 6);
		assert_true(legs[i]->user_timeout_auto);
		assert_int_equal(legs[i]->user_timeout_ms, 120000);
		assert_int_equal(legs[i]->nat_timeout_ms, 0);
	}
	config_free(cfg);
}

static void
test_every_key_set(void **state)
{
	struct config *cfg = load_ok(
	    "[global]\n"
	    "workers = auto\n"
	    "max_connections = 1000000\n"
	    "log_level = DEBUG\n"
	    "access_log = off\n"
	    "admin_listen = off\n"
	    "admin_allow_remote = yes\n"
	    "shutdown_timeout = 0\n"
	    "reload_on_change = on\n"
	    "[listener x.y-z_1]\n"
	    "listen = [::1]:2000\n"
	    "upstream = 127.0.0.1:1 ,  [::1]:2,127.0.0.1:3\n"
	    "balance = first\n"
	    "connect_timeout = 250ms\n"
	    "idle_timeout = 2h\n"
	    "teardown = fin\n"
	    "upstream_recheck_on_death = off\n"
	    "client_keepalive = no\n"
	    "client_keepalive_idle = 1\n"
	    "client_keepalive_interval = 2000ms\n"
	    "client_keepalive_count = 127\n"
	    "client_user_timeout = 1ms\n"
	    "client_nat_timeout = off\n"
	    "upstream_keepalive = true\n"
	    "upstream_keepalive_idle = 9h\n"
	    "upstream_keepalive_interval = 32767\n"
	    "upstream_keepalive_count = 1\n"
	    "upstream_user_timeout = off\n"
	    "upstream_nat_timeout = 9.5h\n");
	const struct listener_config *lc = &cfg->listeners[0];

	(void)state;
	assert_int_equal(cfg->workers, 0);
	assert_int_equal(cfg->max_connections, 1000000);
	assert_int_equal(cfg->log_level, LOG_LEVEL_DEBUG);
	assert_null(cfg->access_log);
	assert_false(cfg->admin_enabled);
	assert_true(cfg->admin_allow_remote);
	assert_int_equal(cfg->shutdown_timeout_ms, 0);
	assert_true(cfg->reload_on_change);
	assert_string_equal(lc->name, "x.y-z_1");
	assert_string_equal(lc->listen.text, "[::1]:2000");
	assert_int_equal(lc->n_upstreams, 3);
	assert_string_equal(lc->upstreams[0].text, "127.0.0.1:1");
	assert_string_equal(lc->upstreams[1].text, "[::1]:2");
	assert_string_equal(lc->upstreams[2].text, "127.0.0.1:3");
	assert_int_equal(lc->balance, BALANCE_FIRST);
	assert_int_equal(lc->connect_timeout_ms, 250);
	assert_int_equal(lc->idle_timeout_ms, 7200000);
	assert_int_equal(lc->teardown, TEARDOWN_FIN);
	assert_false(lc->recheck_on_death);
	assert_false(lc->client.keepalive);
	assert_int_equal(lc->client.idle_s, 1);
	assert_int_equal(lc->client.interval_s, 2);
	assert_int_equal(lc->client.count, 127);
	assert_false(lc->client.user_timeout_auto);
	assert_int_equal(lc->client.user_timeout_ms, 1);
	assert_true(lc->upstream.keepalive);
	assert_int_equal(lc->upstream.idle_s, 32400);
	assert_int_equal(lc->upstream.interval_s, 32767);
	assert_int_equal(lc->upstream.count, 1);
	assert_false(lc->upstream.user_timeout_auto);
	assert_int_equal(lc->upstream.user_timeout_ms, 0);
	assert_int_equal(lc->upstream.nat_timeout_ms, 34200000);
	config_free(cfg);
}

/* [defaults] reaches every listener, before or after it; a listener's own
 * key wins. */
static void
test_defaults_inheritance(void **state)
{
	static const char *const texts[] = {
		"[defaults]\nclient_keepalive_idle = 30s\nteardown = fin\n"
		"[listener a]\nlisten = 127.0.0.1:2000\nupstream = 127.0.0.1:2001\n"
		"[listener b]\nlisten = 127.0.0.1:3000\nupstream = 127.0.0.1:3001\n"
		"client_keepalive_idle = 45s\n",

		"[listener a]\nlisten = 127.0.0.1:2000\nupstream = 127.0.0.1:2001\n"
		"[listener b]\nlisten = 127.0.0.1:3000\nupstream = 127.0.0.1:3001\n"
		"client_keepalive_idle = 45s\n"
		"[defaults]\nclient_keepalive_idle = 30s\nteardown = fin\n",
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(texts); i++) {
		struct config *cfg = load_ok(texts[i]);

		assert_int_equal(cfg->n_listeners, 2);
		assert_string_equal(cfg->listeners[0].name, "a");
		assert_int_equal(cfg->listeners[0].client.idle_s, 30);
		assert_int_equal(cfg->listeners[0].teardown, TEARDOWN_FIN);
		/* auto follows the inherited idle: 30 + 10 * 6 */
		assert_int_equal(cfg->listeners[0].client.user_timeout_ms, 90000);
		assert_string_equal(cfg->listeners[1].name, "b");
		assert_int_equal(cfg->listeners[1].client.idle_s, 45);
		assert_int_equal(cfg->listeners[1].teardown, TEARDOWN_FIN);
		assert_int_equal(cfg->listeners[1].upstream.idle_s, 60);
		config_free(cfg);
	}
}

/* Even listen and upstream may come from [defaults]. */
static void
test_defaults_endpoints(void **state)
{
	struct config *cfg = load_ok(
	    "[defaults]\nupstream = 127.0.0.1:9, 127.0.0.1:10\n"
	    "[listener a]\nlisten = 127.0.0.1:2000\n"
	    "[listener b]\nlisten = 127.0.0.1:3000\nupstream = 127.0.0.1:11\n");

	(void)state;
	assert_int_equal(cfg->listeners[0].n_upstreams, 2);
	assert_string_equal(cfg->listeners[0].upstreams[1].text, "127.0.0.1:10");
	assert_int_equal(cfg->listeners[1].n_upstreams, 1);
	assert_string_equal(cfg->listeners[1].upstreams[0].text, "127.0.0.1:11");
	config_free(cfg);
}

static void
test_user_timeout_auto_with_keepalive_off(void **state)
{
	struct config *cfg = load_ok(LISTENER
	    "client_keepalive = off\n"
	    "client_keepalive_idle = 20s\nclient_keepalive_interval = 5s\n"
	    "client_keepalive_count = 3\n");

	(void)state;
	assert_false(cfg->listeners[0].client.keepalive);
	assert_true(cfg->listeners[0].client.user_timeout_auto);
	assert_int_equal(cfg->listeners[0].client.user_timeout_ms, 35000);
	config_free(cfg);
}

/* ------------------------------------------------------------------ */
/* 3. Reader: lines, comments, indentation                               */

static void
test_indentation_and_comments(void **state)
{
	struct config *cfg = load_ok(
	    "\xEF\xBB\xBF# comment\r\n"
	    "  [global]   ; comment after a header\r\n"
	    "\tworkers = 3 # hash comment\r\n"
	    "    max_connections = 42 ; semicolon comment\r\n"
	    "access_log = /tmp/a#b\r\n"
	    "   # indented comment\r\n"
	    "; full-line comment\r\n"
	    "\r\n"
	    "[listener a] # comment\r\n"
	    "  listen = 127.0.0.1:2000\r\n"
	    "  upstream = 127.0.0.1:2001\r\n"
	    "      client_keepalive_idle = 30s\r\n"
	    "client_keepalive_interval=7s\r\n"
	    "upstream_keepalive_idle = 40s\t#\ttab before hash");

	(void)state;
	assert_int_equal(cfg->workers, 3);
	assert_int_equal(cfg->max_connections, 42);
	assert_string_equal(cfg->access_log, "/tmp/a#b");
	assert_int_equal(cfg->listeners[0].client.idle_s, 30);
	assert_int_equal(cfg->listeners[0].client.interval_s, 7);
	assert_int_equal(cfg->listeners[0].upstream.idle_s, 40);
	config_free(cfg);
}

/* 196 characters is the longest line; 197 is refused, naming the line and
 * the limit, whether it is a comment or a key. */
static void
test_long_lines(void **state)
{
	char text[1024], line[300];
	struct config *cfg;

	(void)state;
	memset(line, 'x', sizeof(line));
	line[0] = '#';
	line[196] = '\0';
	snprintf(text, sizeof(text), "[global]\n%s\n" LISTENER, line);
	cfg = load_ok(text);
	config_free(cfg);

	line[196] = 'x';
	line[197] = '\0';
	snprintf(text, sizeof(text), "[global]\n%s\n" LISTENER, line);
	expect_error(text, 2, "197 characters", "196");

	/* A long access_log path is cut by nothing: refused whole. */
	memset(line, 'p', sizeof(line));
	memcpy(line, "access_log = /", 14);
	line[250] = '\0';
	snprintf(text, sizeof(text), "[global]\nworkers = 2\n%s\n" LISTENER, line);
	expect_error(text, 3, "250 characters", "196");

	/* Leading blanks count: the limit is inih's buffer, not the key. */
	memset(line, ' ', sizeof(line));
	memcpy(line + 190, "a = b", 5);
	line[195] = '\0';
	snprintf(text, sizeof(text), LISTENER "%s\n", line);
	expect_error(text, 4, "a: unknown key", NULL);
	memmove(line + 10, line, 196);
	snprintf(text, sizeof(text), LISTENER "%s\n", line);
	expect_error(text, 4, "characters long", NULL);
}

/* ------------------------------------------------------------------ */
/* 4. Errors: each names its key and its line                           */

struct error_case {
	const char *what;
	const char *text;
	unsigned line;
	const char *needle, *needle2;
};

static const struct error_case error_cases[] = {
	{ "unknown section", "[global]\n[bogus]\n" LISTENER, 2, "[bogus]", "unknown section" },
	{ "section case", "[Global]\n" LISTENER, 1, "[Global]", "unknown section" },
	{ "header without ]", "[global\n" LISTENER, 1, "missing ']'", NULL },
	{ "text after header", "[global] x\n" LISTENER, 1, "after ']'", NULL },
	{ "named global", "[global x]\n" LISTENER, 1, "[global] takes no name", NULL },
	{ "listener without name", "[listener]\n" LISTENER, 1, "[listener NAME]", NULL },
	{ "listener name with space", "[listener a b]\n" LISTENER, 1, "[listener a b]",
	  "letters, digits" },
	{ "unknown key in listener", LISTENER "clinet_keepalive = on\n", 4,
	  "clinet_keepalive: unknown key in [listener a]", "did you mean client_keepalive?" },
	{ "unknown key in global", "[global]\nworker = 2\n" LISTENER, 2,
	  "worker: unknown key in [global]", "did you mean workers?" },
	{ "unknown key far from any", LISTENER "frobnicate = 1\n", 4,
	  "frobnicate: unknown key", NULL },
	{ "global key in listener", LISTENER "workers = 2\n", 4,
	  "workers: not allowed in [listener a]", "[global]" },
	{ "listener key in global", "[global]\nlisten = 127.0.0.1:1\n" LISTENER, 2,
	  "listen: not allowed in [global]", NULL },
	{ "leg key in defaults is fine, global key is not", "[defaults]\nlog_level = warn\n"
	  LISTENER, 2, "log_level: not allowed in [defaults]", NULL },
	{ "key before any section", "workers = 2\n" LISTENER, 1, "workers: key outside", NULL },
	{ "duplicate key", LISTENER "client_keepalive_idle = 30s\n"
	  "client_keepalive_idle = 40s\n", 5, "client_keepalive_idle: duplicate key",
	  "first set on line 4" },
	{ "duplicate key over repeated [global]", "[global]\nworkers = 1\n[global]\n"
	  "workers = 2\n" LISTENER, 4, "workers: duplicate key", "line 2" },
	{ "duplicate listener", LISTENER "[listener a]\nlisten = 127.0.0.1:3000\n"
	  "upstream = 127.0.0.1:3001\n", 4, "[listener a]: duplicate listener name",
	  "line 1" },
	{ "duplicate listen", LISTENER "[listener b]\nlisten = 127.0.0.1:2000\n"
	  "upstream = 127.0.0.1:3001\n", 5, "listen: 127.0.0.1:2000", "[listener a]" },
	{ "duplicate listen from [defaults]", "[defaults]\nlisten = 127.0.0.1:7\n"
	  "upstream = 127.0.0.1:8\n[listener a]\n[listener b]\n", 2, "listen:",
	  "[listener a]" },
	{ "missing listen", "[listener a]\nupstream = 127.0.0.1:2001\n", 1,
	  "listen: missing in [listener a]", NULL },
	{ "missing upstream", "[listener a]\nlisten = 127.0.0.1:2000\n", 1,
	  "upstream: missing in [listener a]", NULL },
	{ "no listener", "[global]\nworkers = 2\n", 2, "[listener NAME]", NULL },
	{ "empty file", "", 1, "[listener NAME]", NULL },
	{ "no '='", LISTENER "client_keepalive on\n", 4, "key = value", NULL },
	{ "':' separator", "[global]\nworkers: 2\n" LISTENER, 2, "key = value", NULL },
	{ "no key", LISTENER "= on\n", 4, "missing key name", NULL },
	{ "empty value", LISTENER "balance =\n", 4, "balance: empty value",
	  "roundrobin | first" },
	{ "bad duration", LISTENER "client_keepalive_idle = 70x\n", 4,
	  "client_keepalive_idle: \"70x\" is not a duration (integer seconds, or a number "
	  "with unit ms, s, m, h)", NULL },
	{ "'#' needs a blank before it", LISTENER "client_keepalive_idle = 30s#x\n", 4,
	  "\"30s#x\" is not a duration", NULL },
	{ "idle 0", LISTENER "client_keepalive_idle = 0\n", 4,
	  "client_keepalive_idle: 0 is out of range (1s..32767s)", NULL },
	{ "idle too big", LISTENER "upstream_keepalive_idle = 32768\n", 4,
	  "upstream_keepalive_idle: 32768 is out of range (1s..32767s)", NULL },
	{ "idle overflow", LISTENER "client_keepalive_idle = 99999999999999999999h\n", 4,
	  "client_keepalive_idle:", "out of range" },
	{ "interval 0", LISTENER "upstream_keepalive_interval = 0s\n", 4,
	  "upstream_keepalive_interval: 0s is out of range (1s..32767s)", NULL },
	{ "interval too big", LISTENER "client_keepalive_interval = 10h\n", 4,
	  "client_keepalive_interval: 10h is out of range", NULL },
	{ "count 0", LISTENER "client_keepalive_count = 0\n", 4,
	  "client_keepalive_count: 0 is out of range (1..127)", NULL },
	{ "count 128", LISTENER "upstream_keepalive_count = 128\n", 4,
	  "upstream_keepalive_count: 128 is out of range (1..127)", NULL },
	{ "count 200", LISTENER "client_keepalive_count = 200\n", 4,
	  "client_keepalive_count: 200 is out of range (1..127)", NULL },
	{ "count not a number", LISTENER "client_keepalive_count = six\n", 4,
	  "client_keepalive_count: \"six\" is not a whole number (1..127)", NULL },
	{ "count negative", LISTENER "client_keepalive_count = -1\n", 4,
	  "client_keepalive_count: \"-1\"", NULL },
	{ "sub-second idle", LISTENER "client_keepalive_idle = 500ms\n", 4,
	  "client_keepalive_idle: 500ms is sub-second", "TCP_KEEPIDLE counts whole seconds" },
	{ "fractional interval", LISTENER "upstream_keepalive_interval = 1.5s\n", 4,
	  "upstream_keepalive_interval: 1.5s is not a whole number of seconds",
	  "TCP_KEEPINTVL" },
	{ "sub-ms duration", LISTENER "connect_timeout = 1.5ms\n", 4,
	  "connect_timeout: 1.5ms is not a whole number of milliseconds", NULL },
	{ "connect_timeout 0", LISTENER "connect_timeout = 0\n", 4,
	  "connect_timeout: 0 is out of range (1ms..500h)", NULL },
	{ "idle_timeout 0", LISTENER "idle_timeout = 0s\n", 4,
	  "idle_timeout: 0s is out of range", "or off" },
	{ "user_timeout 0", LISTENER "client_user_timeout = 0\n", 4,
	  "client_user_timeout: 0 is out of range (1ms..2147483647ms", NULL },
	{ "user_timeout above INT_MAX ms", LISTENER "upstream_user_timeout = 2147484s\n", 4,
	  "upstream_user_timeout: 2147484s is out of range", NULL },
	{ "user_timeout word", LISTENER "client_user_timeout = never\n", 4,
	  "client_user_timeout: \"never\" is not a duration", "auto, or off" },
	{ "auto user timeout too long", LISTENER "client_keepalive_idle = 32767\n"
	  "client_keepalive_interval = 32767\nclient_keepalive_count = 127\n", 1,
	  "client_user_timeout: auto would be", "TCP_USER_TIMEOUT" },
	{ "nat_timeout below idle", LISTENER "client_nat_timeout = 30s\n", 4,
	  "client_nat_timeout: 30s is not above client_keepalive_idle 1m", "too late" },
	{ "nat_timeout equal to idle", LISTENER "upstream_keepalive_idle = 5m\n"
	  "upstream_nat_timeout = 300s\n", 5, "upstream_nat_timeout: 5m is not above "
	  "upstream_keepalive_idle 5m", NULL },
	{ "nat_timeout with keepalive off", LISTENER "client_keepalive = off\n"
	  "client_nat_timeout = 350s\n", 5, "client_nat_timeout: 5m 50s is set but "
	  "client_keepalive is off", NULL },
	{ "nat_timeout from [defaults] after the listener", LISTENER "[defaults]\n"
	  "client_keepalive_idle = 90s\nclient_nat_timeout = 1m\n", 6,
	  "client_nat_timeout: 1m is not above client_keepalive_idle 1m 30s", "[listener a]" },
	{ "bad [defaults] value although overridden", "[defaults]\n"
	  "client_keepalive_count = 0\n" LISTENER "client_keepalive_count = 3\n", 2,
	  "client_keepalive_count: 0 is out of range", NULL },
	{ "bad [defaults] value, no listener", "[defaults]\nteardown = close\n", 2,
	  "teardown: \"close\" is not one of rst | fin", NULL },
	{ "bad boolean", LISTENER "client_keepalive = maybe\n", 4,
	  "client_keepalive: \"maybe\" is not a boolean (on/off, yes/no, true/false, 1/0)",
	  NULL },
	{ "bad enum", LISTENER "balance = random\n", 4,
	  "balance: \"random\" is not one of roundrobin | first", NULL },
	{ "bad log_level", "[global]\nlog_level = verbose\n" LISTENER, 2,
	  "log_level: \"verbose\"", "error | warn | info | debug" },
	{ "workers 0", "[global]\nworkers = 0\n" LISTENER, 2,
	  "workers: 0 is out of range (1..256, or auto)", NULL },
	{ "workers 300", "[global]\nworkers = 300\n" LISTENER, 2,
	  "workers: 300 is out of range", NULL },
	{ "max_connections 0", "[global]\nmax_connections = 0\n" LISTENER, 2,
	  "max_connections: 0 is out of range (1..1000000)", NULL },
	{ "negative shutdown_timeout", "[global]\nshutdown_timeout = -1\n" LISTENER, 2,
	  "shutdown_timeout: \"-1\" is not a duration", NULL },
	{ "listen without port", "[listener a]\nlisten = 127.0.0.1\n"
	  "upstream = 127.0.0.1:2001\n", 2, "listen: \"127.0.0.1\" is not an endpoint",
	  "missing :port" },
	{ "listen port 0", "[listener a]\nlisten = 127.0.0.1:0\n"
	  "upstream = 127.0.0.1:2001\n", 2, "listen:", "1..65535" },
	{ "listen v6 without brackets", "[listener a]\nlisten = ::1:2000\n"
	  "upstream = 127.0.0.1:2001\n", 2, "listen:", "brackets" },
	{ "upstream empty entry", "[listener a]\nlisten = 127.0.0.1:2000\n"
	  "upstream = 127.0.0.1:1, ,127.0.0.1:2\n", 3, "upstream:", "empty entry" },
	{ "upstream trailing comma", "[listener a]\nlisten = 127.0.0.1:2000\n"
	  "upstream = 127.0.0.1:1,\n", 3, "upstream:", "empty entry" },
	{ "upstream bad port", "[listener a]\nlisten = 127.0.0.1:2000\n"
	  "upstream = 127.0.0.1:1, 127.0.0.1:70000\n", 3,
	  "upstream: \"127.0.0.1:70000\" is not an endpoint", "1..65535" },
	{ "non-loopback admin", "[global]\nadmin_listen = 0.0.0.0:9901\n" LISTENER, 2,
	  "admin_listen: 0.0.0.0:9901 is not a loopback address", "admin_allow_remote" },
	{ "non-loopback admin, allow off", "[global]\nadmin_allow_remote = off\n"
	  "admin_listen = [2001:db8::1]:9901\n" LISTENER, 3, "admin_listen:", NULL },
	{ "admin on a listen address", "[global]\nadmin_listen = 127.0.0.1:2000\n" LISTENER,
	  2, "admin_listen: 127.0.0.1:2000", "[listener a]" },
	{ "status on the admin address", "[global]\nadmin_listen = 127.0.0.1:9901\n"
	  "status_listen = 127.0.0.1:9901\n" LISTENER, 3,
	  "status_listen: 127.0.0.1:9901 is also admin_listen", NULL },
	{ "status on a listen address", "[global]\nstatus_listen = 127.0.0.1:2000\n" LISTENER,
	  2, "status_listen: 127.0.0.1:2000", "[listener a]" },
	{ "status without port", "[global]\nstatus_listen = 10.0.0.1\n" LISTENER, 2,
	  "status_listen:", "missing :port" },
	{ "empty access_log", "[global]\naccess_log =\n" LISTENER, 2,
	  "access_log: empty value", NULL },
	/* Resolution runs after collection, yet the earliest line wins. */
	{ "first error by line", "[global]\nworkers = 0\n[bogus]\n" LISTENER, 2,
	  "workers:", NULL },
	{ "first error by line, reversed", "[bogus]\n[global]\nworkers = 0\n" LISTENER, 1,
	  "[bogus]", NULL },
};

static void
test_errors(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(error_cases); i++) {
		const struct error_case *c = &error_cases[i];

		print_message("  error case: %s\n", c->what);
		expect_error(c->text, c->line, c->needle, c->needle2);
	}
}

/* Cases that look close to an error but are valid. */
static void
test_valid_edges(void **state)
{
	static const char *const texts[] = {
		LISTENER "client_keepalive_idle = 30s\nclient_nat_timeout = 350s\n",
		LISTENER "client_keepalive_idle = 349s\nclient_nat_timeout = 350s\n",
		"[global]\nadmin_listen = 0.0.0.0:9901\nadmin_allow_remote = on\n" LISTENER,
		"[global]\nadmin_listen = [::1]:9901\n" LISTENER,
		"[global]\nadmin_listen = 127.5.6.7:9901\n" LISTENER,
		/* status_listen shows no client address: any address, without admin_allow_remote */
		"[global]\nstatus_listen = 0.0.0.0:9902\n" LISTENER,
		"[global]\nadmin_listen = off\nstatus_listen = [2001:db8::1]:9902\n" LISTENER,
		"[global]\nstatus_listen = off\n" LISTENER,
		"[global]\nadmin_listen = off\n[listener a]\nlisten = 127.0.0.1:9901\n"
		"upstream = 127.0.0.1:1\n",
		/* same port, different address: not a duplicate */
		LISTENER "[listener b]\nlisten = 127.0.0.2:2000\nupstream = 127.0.0.1:1\n",
		"[listener a]\nlisten = localhost:2000\nupstream = localhost:2001\n",
		LISTENER "client_user_timeout = 2147483647ms\n",
		LISTENER "idle_timeout = OFF\nclient_user_timeout = Auto\n",
		LISTENER "[defaults]\n",
		"[global]\n[defaults]\n" LISTENER "[global]\nworkers = 4\n",
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(texts); i++)
		config_free(load_ok(texts[i]));
}

/* ------------------------------------------------------------------ */
/* 5. Detection arithmetic                                              */

static void
test_detection(void **state)
{
	static const struct {
		const char *what;
		bool keepalive;
		uint32_t idle, intvl, count, user_timeout_ms;
		uint64_t idle_detect, busy_detect;
	} cases[] = {
		{ "defaults, auto", true, 60, 10, 6, 120000, 120000, 120000 },
		{ "no user timeout: count probes", true, 60, 10, 6, 0, 120000, 0 },
		{ "no user timeout, one probe", true, 7200, 75, 1, 0, 7275000, 0 },
		{ "user timeout below idle: first probe", true, 60, 10, 6, 5000, 70000, 5000 },
		{ "user timeout equal to idle", true, 60, 10, 6, 60000, 70000, 60000 },
		{ "user timeout just past idle", true, 60, 10, 6, 61000, 70000, 61000 },
		{ "rounded up to a firing", true, 60, 10, 6, 75000, 80000, 75000 },
		{ "exactly on a firing", true, 60, 10, 6, 80000, 80000, 80000 },
		{ "user timeout overrides count", true, 60, 10, 1, 300000, 300000, 300000 },
		{ "user timeout shorter than count", true, 60, 10, 6, 90000, 90000, 90000 },
		{ "keepalive off", false, 60, 10, 6, 120000, 0, 120000 },
		{ "keepalive off, no user timeout", false, 60, 10, 6, 0, 0, 0 },
		{ "largest values", true, 32767, 32767, 127, 0, 4194176000ULL, 0 },
		{ "largest user timeout", true, 1, 1, 1, 2147483647, 2147484000ULL, 2147483647 },
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct leg_policy p = {
			.keepalive = cases[i].keepalive, .idle_s = cases[i].idle,
			.interval_s = cases[i].intvl, .count = cases[i].count,
			.user_timeout_ms = cases[i].user_timeout_ms,
		};

		print_message("  detection: %s\n", cases[i].what);
		assert_int_equal(policy_idle_detect_ms(&p), cases[i].idle_detect);
		assert_int_equal(policy_busy_detect_ms(&p), cases[i].busy_detect);
	}
}

/* ------------------------------------------------------------------ */
/* 6. Files, the report, ownership                                      */

static char *
print_to_string(const struct config *cfg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	config_print_check(cfg, f);
	assert_int_equal(fclose(f), 0);
	return buf;
}

static void
test_print_check(void **state)
{
	struct config *cfg = load_ok(
	    "[global]\nworkers = auto\naccess_log = off\n"
	    "[listener a]\nlisten = 127.0.0.1:2000\nupstream = 127.0.0.1:1, [::1]:2\n"
	    "client_keepalive_idle = 75s\nclient_keepalive_interval = 15s\n"
	    "client_keepalive_count = 2\nclient_nat_timeout = 90s\n"
	    "upstream_keepalive = off\nupstream_user_timeout = off\n"
	    "idle_timeout = 1.5s\n"
	    "[listener b]\nlisten = [::1]:2000\nupstream = 127.0.0.1:3\n"
	    "client_user_timeout = 250ms\n");
	char *text = print_to_string(cfg);
	static const char *const expected[] = {
		"t.ini: ok, 2 listener(s)\n",
		"workers auto,", "access_log off,", "admin 127.0.0.1:9901,",
		"shutdown_timeout 30s, upgrade_drain_timeout off, reload_on_change off\n",
		"[listener a] 127.0.0.1:2000 -> 127.0.0.1:1, [::1]:2 (roundrobin)\n",
		"  teardown rst, log_interval off, reload_live_connections apply, upstream_recheck_on_death on, send_proxy off, accept_proxy off, connect_timeout 5s, idle_timeout 1.5s\n",
		"  client    keepalive on, idle 1m 15s, interval 15s, count 2, "
		"user_timeout 1m 45s (auto), nat_timeout 1m 30s\n",
		"when idle 1m 45s; with data in flight 1m 45s\n",
		"  upstream  keepalive off, idle 1m, interval 10s, count 6, user_timeout off, "
		"nat_timeout off\n",
		"when idle never (keepalive off); with data in flight kernel retransmission "
		"limit (tcp_retries2, ~15 min+)\n",
		"[listener b] [::1]:2000 -> 127.0.0.1:3 (roundrobin)\n",
		"user_timeout 250ms, nat_timeout off\n",
		"when idle 1m 10s; with data in flight 250ms\n",
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(expected); i++)
		if (strstr(text, expected[i]) == NULL)
			fail_msg("\"%s\" not in report:\n%s", expected[i], text);
	free(text);
	config_free(cfg);
}

static void
test_load_file(void **state)
{
	char path[] = "/tmp/kaproxy-test-config-XXXXXX";
	char err[CONFIG_ERR_MAX] = "";
	struct config *cfg = NULL;
	int fd = mkstemp(path);
	static const char text[] = "[global]\nworkers = 2\n" LISTENER "\n\n"
	    "client_keepalive_idle = 5x\n";
	static const char with_nul[] = LISTENER "teardown = rst\0x\n";

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
	close(fd);
	assert_int_equal(config_load(path, &cfg, err, sizeof(err)), -1);
	assert_null(cfg);
	assert_true(strncmp(err, path, strlen(path)) == 0);
	assert_non_null(strstr(err, ":8: client_keepalive_idle: \"5x\""));

	/* A NUL byte cannot hide the rest of a line from the parser. */
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, with_nul, sizeof(with_nul) - 1),
	    (ssize_t)(sizeof(with_nul) - 1));
	close(fd);
	assert_int_equal(config_load(path, &cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, ":4: line contains a NUL byte"));

	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, LISTENER, sizeof(LISTENER) - 1),
	    (ssize_t)(sizeof(LISTENER) - 1));
	close(fd);
	assert_int_equal(config_load(path, &cfg, err, sizeof(err)), 0);
	assert_non_null(cfg);
	assert_string_equal(cfg->path, path);
	config_free(cfg);
	unlink(path);

	cfg = NULL;
	assert_int_equal(config_load("/nonexistent/kaproxy.ini", &cfg, err, sizeof(err)), -1);
	assert_null(cfg);
	assert_string_equal(err, "/nonexistent/kaproxy.ini: cannot read: No such file or "
	    "directory");
}

/* A buffer is read as a file holding the same bytes: a NUL byte is not
 * the end of the text, and the length, not a terminator, bounds it. */
static void
test_load_buffer(void **state)
{
	static const char with_nul[] = LISTENER "teardown = rst\0x\n";
	static const char bad_then_good[] = LISTENER "teardown = nope\n" LISTENER;
	char err[CONFIG_ERR_MAX] = "";
	struct config *cfg = NULL;

	(void)state;
	assert_int_equal(config_load_buffer(with_nul, sizeof(with_nul) - 1, "b.ini", &cfg, err,
	    sizeof(err)), -1);
	assert_null(cfg);
	assert_string_equal(err, "b.ini:4: line contains a NUL byte");

	/* Only the first len bytes count: the bad line just past them is unseen. */
	assert_int_equal(config_load_buffer(bad_then_good, sizeof(LISTENER) - 1, "b.ini", &cfg,
	    err, sizeof(err)), 0);
	assert_non_null(cfg);
	assert_int_equal(cfg->n_listeners, 1);
	assert_string_equal(cfg->path, "b.ini");
	config_free(cfg);
	cfg = NULL;
	assert_int_equal(config_load_buffer(bad_then_good, sizeof(bad_then_good) - 1, "b.ini",
	    &cfg, err, sizeof(err)), -1);
	assert_null(cfg);
	assert_non_null(strstr(err, "b.ini:4: teardown: \"nope\""));
	assert_int_equal(config_load_buffer(NULL, 0, "b.ini", &cfg, err, sizeof(err)), -1);
	assert_string_equal(err, "b.ini: no text to parse");
}

/* The example shipped in conf/ must load as it is. */
static void
test_shipped_example(void **state)
{
	static const char suffix[] = "tests/unit/test_config.c";
	char path[4096], err[CONFIG_ERR_MAX] = "";
	const char *file = __FILE__;
	size_t n = strlen(file);
	struct config *cfg = NULL;
	char *report;

	(void)state;
	if (n < strlen(suffix) || strcmp(file + n - strlen(suffix), suffix) != 0 ||
	    n - strlen(suffix) + sizeof("conf/kaproxy.ini") > sizeof(path))
		skip();
	snprintf(path, sizeof(path), "%.*sconf/kaproxy.ini", (int)(n - strlen(suffix)), file);
	if (access(path, R_OK) != 0)
		skip();
	if (config_load(path, &cfg, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(cfg->n_listeners, 1);
	assert_string_equal(cfg->listeners[0].name, "demo");
	assert_string_equal(cfg->listeners[0].listen.text, "127.0.0.1:2000");
	assert_string_equal(cfg->listeners[0].upstreams[0].text, "127.0.0.1:2001");
	assert_string_equal(cfg->access_log, "-");
	assert_string_equal(cfg->admin_listen.text, "127.0.0.1:9901");
	report = print_to_string(cfg);
	assert_non_null(strstr(report, ": ok, 1 listener(s)\n"));
	free(report);
	config_free(cfg);
}

static void
test_free_null_and_bad_args(void **state)
{
	char err[CONFIG_ERR_MAX];
	struct config *cfg = NULL;
	uint64_t ms;

	(void)state;
	config_free(NULL);
	config_print_check(NULL, stdout);
	assert_int_equal(config_load_string(NULL, "x", &cfg, err, sizeof(err)), -1);
	assert_int_equal(config_load_string("", "x", NULL, err, sizeof(err)), -1);
	assert_int_equal(config_load_string("", "x", &cfg, NULL, 0), -1);
	assert_int_equal(duration_parse(NULL, &ms), -1);
	assert_int_equal(policy_idle_detect_ms(NULL), 0);
	assert_null(cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_booleans),
		cmocka_unit_test(test_endpoints),
		cmocka_unit_test(test_endpoint_hostname),
		cmocka_unit_test(test_builtin_defaults),
		cmocka_unit_test(test_every_key_set),
		cmocka_unit_test(test_defaults_inheritance),
		cmocka_unit_test(test_defaults_endpoints),
		cmocka_unit_test(test_user_timeout_auto_with_keepalive_off),
		cmocka_unit_test(test_indentation_and_comments),
		cmocka_unit_test(test_long_lines),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_valid_edges),
		cmocka_unit_test(test_detection),
		cmocka_unit_test(test_print_check),
		cmocka_unit_test(test_load_file),
		cmocka_unit_test(test_load_buffer),
		cmocka_unit_test(test_shipped_example),
		cmocka_unit_test(test_free_null_and_bad_args),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
