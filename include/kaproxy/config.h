/*
 * config: the INI file parsed into one immutable, fully validated struct.
 *
 * Nothing listens before config_load() has returned a complete config; a
 * reload builds a new one and swaps it in only on success.  Every value is
 * resolved here (auto user timeouts, inherited [defaults], addresses), so the
 * rest of kaproxy never interprets a string from the file.
 */
#ifndef KAPROXY_CONFIG_H
#define KAPROXY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kaproxy/endpoint.h"
#include "kaproxy/policy.h"
#include "kaproxy/reason.h"

#define CONFIG_NAME_MAX 64   /* listener name, bytes including NUL */
#define CONFIG_ERR_MAX 512   /* "FILE:LINE: message", bytes including NUL */

enum balance { BALANCE_ROUNDROBIN, BALANCE_FIRST };
enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

struct listener_config {
	char name[CONFIG_NAME_MAX];
	unsigned line;            /* line of the [listener NAME] header */
	struct endpoint listen;
	struct endpoint *upstreams;
	size_t n_upstreams;
	enum balance balance;
	uint32_t connect_timeout_ms;
	uint32_t idle_timeout_ms; /* 0 = off */
	enum teardown teardown;
	unsigned send_proxy;      /* PROXY protocol version written upstream, 0 = off */
	bool accept_proxy;        /* clients start with a PROXY header */
	uint32_t accept_proxy_timeout_ms;
	unsigned reload_live_keep;  /* reload_live_connections: 0 apply, 1 keep */
	uint32_t log_interval_ms;   /* progress records every this long, 0 = off */
	bool recheck_on_death;      /* upstream_recheck_on_death */
	struct leg_policy client;
	struct leg_policy upstream;
};

struct config {
	char *path;
	unsigned workers;          /* 0 = auto (one per CPU) */
	uint32_t max_connections;
	enum log_level log_level;
	char *access_log;          /* NULL = off, "-" = stdout, else a path */
	bool admin_enabled;        /* admin_listen not "off" */
	struct endpoint admin_listen;
	bool admin_allow_remote;
	uint32_t admin_max_connections;
	bool status_enabled;       /* status_listen not "off" */
	struct endpoint status_listen; /* /healthz and /metrics only */
	uint32_t shutdown_timeout_ms;
	uint32_t upgrade_drain_timeout_ms; /* 0 = off: until the last connection ends */
	bool reload_on_change;     /* watch the file's directory, reload on a change */
	struct listener_config *listeners;
	size_t n_listeners;
};

/*
 * Parse and validate FILE.  On success returns 0 and *out owns a new config
 * (free with config_free).  On failure returns -1, *out is untouched and err
 * holds "FILE:LINE: message" naming the key and what is allowed.
 */
int config_load(const char *path, struct config **out, char *err, size_t errlen);

/* As config_load, from a string; name stands for FILE in messages. */
int config_load_string(const char *text, const char *name, struct config **out,
    char *err, size_t errlen);

/*
 * As config_load, from len bytes of text exactly as a file would hold them
 * (NUL bytes are read as a file's would be); name stands for FILE in
 * messages.  The fuzz target reads through this, so it sees what a file sees.
 */
int config_load_buffer(const char *text, size_t len, const char *name,
    struct config **out, char *err, size_t errlen);

/* Free a config; config_free(NULL) does nothing. */
void config_free(struct config *cfg);

/*
 * Write the `-t` report: per listener and side the effective policy and the
 * worst-case dead-peer detection time.
 */
void config_print_check(const struct config *cfg, FILE *out);

struct option;

/*
 * The option table: every key with its type, range, default and help, in
 * the order the reference lists them.  Sets *n to the number of rows.
 */
const struct option *config_options(size_t *n);

#endif
