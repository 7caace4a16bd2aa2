/*
 * main: command line, configuration, the event loop and its signals.
 *
 * Signals are loop events, never handlers doing work: SIGHUP reloads (a new
 * config is parsed completely and swapped in only when valid and its
 * listeners are open), SIGTERM/SIGINT drain, SIGUSR1 reopens the access log.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/event.h>

#include "kaproxy/accesslog.h"
#include "kaproxy/admin.h"
#include "kaproxy/config.h"
#include "kaproxy/listener.h"
#include "kaproxy/log.h"
#include "kaproxy/session.h"
#include "kaproxy/worker.h"

#define DEFAULT_CONFIG "/etc/kaproxy/kaproxy.ini"

struct daemon {
	struct worker worker;
	const char *config_path;
	struct event *sig_hup, *sig_term, *sig_int, *sig_usr1;
	struct event *drain_deadline;
	struct admin *admin;
	struct stats_process proc;
};

static void
usage(FILE *out)
{
	fprintf(out,
	    "usage: kaproxy [-t] [-c FILE]\n"
	    "       kaproxy -V | -h\n"
	    "  -c FILE  configuration file (default " DEFAULT_CONFIG ")\n"
	    "  -t       check the configuration, print each listener's policy and\n"
	    "           worst-case dead-peer detection time, and exit (0 valid, 1 invalid)\n"
	    "  -V       print the version and exit\n"
	    "  -h       print this help and exit\n"
	    "signals: HUP reload, TERM/INT drain and exit, USR1 reopen the access log\n");
}

static void
raise_fd_limit(void)
{
	struct rlimit rl;

	/* Each session needs two sockets, and up to two pipes while busy. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			log_warn("setrlimit RLIMIT_NOFILE");
	}
}

static void
drained(struct worker *w)
{
	event_base_loopexit(w->base, NULL);
}

static void
drain_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;

	(void)fd;
	(void)what;
	log_info("shutdown_timeout reached: closing %u remaining connection(s)",
	    d->worker.n_sessions);
	session_close_all(&d->worker, REASON_SHUTDOWN);
	event_base_loopexit(d->worker.base, NULL);
}

static void
drain_start(struct daemon *d)
{
	struct worker *w = &d->worker;
	uint32_t ms = w->gen->cfg->shutdown_timeout_ms;
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };

	if (w->draining) {
		/* A second signal: do not wait any longer. */
		drain_deadline_cb(-1, 0, d);
		return;
	}
	w->draining = true;
	w->on_drained = drained;
	listener_close_all(w);
	log_info("draining: %u connection(s), waiting up to %u ms", w->n_sessions, ms);
	if (w->n_sessions == 0) {
		event_base_loopexit(w->base, NULL);
		return;
	}
	evtimer_add(d->drain_deadline, &tv);
}

static void
reload(struct daemon *d)
{
	struct worker *w = &d->worker;
	char err[CONFIG_ERR_MAX];
	struct config *cfg;
	struct generation *gen;

	if (w->draining)
		return;
	if (config_load(d->config_path, &cfg, err, sizeof(err)) == -1) {
		log_errorx("reload failed, keeping the running configuration: %s", err);
		d->proc.reloads_failed++;
		return;
	}
	gen = generation_new(cfg);
	if (gen == NULL) {
		log_warn("reload");
		config_free(cfg);
		d->proc.reloads_failed++;
		return;
	}
	if (cfg->admin_enabled != w->gen->cfg->admin_enabled ||
	    (cfg->admin_enabled && strcmp(cfg->admin_listen.text, w->gen->cfg->admin_listen.text) != 0))
		log_warnx("reload: admin_listen changes take effect at the next start");
	if (listener_apply(w, gen) == -1) {
		log_errorx("reload failed, keeping the running configuration");
		config_free(cfg);
		free(gen);
		d->proc.reloads_failed++;
		return;
	}
	log_set_level(cfg->log_level);
	accesslog_open(cfg->access_log);
	d->proc.reloads_ok++;
	log_info("reloaded %s", d->config_path);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;

	(void)what;
	switch (sig) {
	case SIGHUP:
		reload(d);
		break;
	case SIGTERM:
	case SIGINT:
		drain_start(d);
		break;
	case SIGUSR1:
		accesslog_reopen();
		break;
	}
}

static int
run(struct daemon *d, struct config *cfg)
{
	struct event_base *base;
	struct generation *gen;
	int rc = 1;

	if (cfg->workers != 1)
		log_warnx("workers = %u: this build runs one event loop; using 1",
		    cfg->workers);
	base = event_base_new();
	if (base == NULL) {
		log_warnx("event_base_new failed");
		config_free(cfg);
		return 1;
	}
	worker_init(&d->worker, base);
	gen = generation_new(cfg);
	if (gen == NULL) {
		config_free(cfg);
		goto out;
	}
	if (accesslog_open(cfg->access_log) == -1 || listener_apply(&d->worker, gen) == -1) {
		config_free(cfg);
		free(gen);
		goto out;
	}
	if (cfg->admin_enabled) {
		d->admin = admin_start(&d->worker, &cfg->admin_listen, &d->proc);
		if (d->admin == NULL)
			goto out;
	}
	d->sig_hup = evsignal_new(base, SIGHUP, signal_cb, d);
	d->sig_term = evsignal_new(base, SIGTERM, signal_cb, d);
	d->sig_int = evsignal_new(base, SIGINT, signal_cb, d);
	d->sig_usr1 = evsignal_new(base, SIGUSR1, signal_cb, d);
	d->drain_deadline = evtimer_new(base, drain_deadline_cb, d);
	if (d->sig_hup == NULL || d->sig_term == NULL || d->sig_int == NULL ||
	    d->sig_usr1 == NULL || d->drain_deadline == NULL) {
		log_warnx("cannot set up signal events");
		goto out;
	}
	evsignal_add(d->sig_hup, NULL);
	evsignal_add(d->sig_term, NULL);
	evsignal_add(d->sig_int, NULL);
	evsignal_add(d->sig_usr1, NULL);
	log_info("kaproxy %s running (%s)", KAPROXY_VERSION, d->config_path);
	if (event_base_dispatch(base) == -1)
		log_warnx("event loop failed");
	else
		rc = 0;
	session_close_all(&d->worker, REASON_SHUTDOWN);
	log_info("exiting");
out:
	admin_free(d->admin);
	if (d->sig_hup) event_free(d->sig_hup);
	if (d->sig_term) event_free(d->sig_term);
	if (d->sig_int) event_free(d->sig_int);
	if (d->sig_usr1) event_free(d->sig_usr1);
	if (d->drain_deadline) event_free(d->drain_deadline);
	worker_release(&d->worker);
	accesslog_close();
	event_base_free(base);
	return rc;
}

int
main(int argc, char **argv)
{
	struct daemon d;
	char err[CONFIG_ERR_MAX];
	struct config *cfg;
	int opt, check = 0;

	memset(&d, 0, sizeof(d));
	d.config_path = DEFAULT_CONFIG;
	d.proc.version = KAPROXY_VERSION;
	while ((opt = getopt(argc, argv, "c:thV")) != -1) {
		switch (opt) {
		case 'c':
			d.config_path = optarg;
			break;
		case 't':
			check = 1;
			break;
		case 'V':
			printf("kaproxy %s\n", KAPROXY_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 1;
	}
	if (config_load(d.config_path, &cfg, err, sizeof(err)) == -1) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (check) {
		config_print_check(cfg, stdout);
		config_free(cfg);
		return 0;
	}
	log_set_level(cfg->log_level);
	signal(SIGPIPE, SIG_IGN);   /* a write to a reset peer is an errno, not a death */
	raise_fd_limit();
	return run(&d, cfg);
}
