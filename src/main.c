/*
 * main: command line, configuration, the event loop and its signals.
 *
 * Signals are loop events, never handlers doing work: SIGHUP reloads (a new
 * config is parsed completely and swapped in only when valid and its
 * listeners are open), SIGTERM/SIGINT drain, SIGUSR1 reopens the access log.
 * A reload or a reopen is an event of its own that a signal makes active:
 * however many SIGHUPs (SIGUSR1s) arrive before it runs, it runs once, so a
 * burst of signals costs one reload per turn of the loop, not one each in a
 * row while worker 0's connections wait.  reload_on_change makes the same
 * event active when the file's directory says the file changed (confwatch).
 *
 * The service manager hears of each step (notify): READY once every listener
 * and the admin endpoint are open, RELOADING and READY around each reload
 * (done or refused), STOPPING when the drain starts, and a status line with
 * the live connections from a slow timer.
 *
 * SIGUSR2 is a binary upgrade (upgrade): the binary at the path this process
 * was started from (/proc/self/exe read at start-up, so a file replaced since
 * is the one started) runs with the same arguments and takes over every
 * listening socket and the admin socket.  Once it says it is ready, the
 * service manager is told its pid (MAINPID and READY in one datagram) and
 * this process, which tells the manager nothing more, drains as at SIGTERM.
 * If it fails, this process keeps serving and the log says why.
 */
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "kaproxy/accesslog.h"
#include "kaproxy/admin.h"
#include "kaproxy/config.h"
#include "kaproxy/confwatch.h"
#include "kaproxy/log.h"
#include "kaproxy/notify.h"
#include "kaproxy/upgrade.h"
#include "kaproxy/worker.h"

#define DEFAULT_CONFIG "/etc/kaproxy/kaproxy.ini"
/* How often the service manager's status line is brought up to date. */
#define STATUS_INTERVAL_S 5

struct daemon {
	const char *config_path;
	struct worker **workers;
	unsigned n_workers;
	struct process_shared shared;
	struct generation *current;     /* holds one reference */
	struct event *signals[5];       /* HUP, TERM, INT, USR1, USR2 */
	struct event *reload_ev;        /* made active by SIGHUP */
	struct event *reopen_ev;        /* made active by SIGUSR1 */
	struct confwatch *watch;        /* reload_on_change; NULL when off */
	struct confwatch_print loaded;  /* what the last reload (or start-up) read */
	struct admin *admin;
	struct stats_process proc;
	struct notify *notify;          /* NULL: no service manager to tell */
	struct event *status_ev;        /* every STATUS_INTERVAL_S, with a notify */
	bool reload_refused;            /* the last reload kept the old configuration */
	char exe[PATH_MAX];             /* what SIGUSR2 starts; "" if unknown */
	char **argv;                    /* ... and with which arguments */
	struct upgrade *upgrade;        /* created at the first SIGUSR2 */
	bool upgrade_failed;            /* hand-over incomplete: no upgrade this time */
	bool upgrade_refused;           /* the last binary upgrade failed */
	enum {
		DRAIN_NONE,
		DRAIN_UPGRADE,                  /* a new process serves: upgrade_drain_timeout */
		DRAIN_STOP,                     /* SIGTERM or SIGINT: shutdown_timeout */
	} drain;
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
	    "signals: HUP reload, TERM/INT drain and exit, USR1 reopen the access log,\n"
	    "         USR2 binary upgrade (start the binary again, hand it the sockets, drain)\n");
}

/* The service manager's one-line status: live connections from admission. */
static void
status_text(const struct daemon *d, char *buf, size_t size)
{
	unsigned active = atomic_load_explicit(&d->shared.admission.active, memory_order_relaxed);
	size_t listeners = d->current->cfg->n_listeners;

	if (atomic_load(&d->shared.draining))
		snprintf(buf, size, "draining, %u connection%s left", active, active == 1 ? "" : "s");
	else
		snprintf(buf, size, "%u connection%s, %zu listener%s%s%s", active,
		    active == 1 ? "" : "s", listeners, listeners == 1 ? "" : "s",
		    d->reload_refused ? "; the last reload failed, see the log" : "",
		    d->upgrade_refused ? "; the last binary upgrade failed, see the log" : "");
}

static void
status_cb(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	char status[NOTIFY_STATUS_MAX];

	(void)fd;
	(void)what;
	status_text(d, status, sizeof(status));
	notify_status(d->notify, status);
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

/* Every worker is drained: stop the admin endpoint, then every loop. */
static void
drained_cb(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	unsigned i;

	(void)fd;
	(void)what;
	if (atomic_load(&d->shared.drained) < d->n_workers)
		return;
	admin_free(d->admin);
	d->admin = NULL;
	for (i = 0; i < d->n_workers; i++)
		worker_exit(d->workers[i]);
}

static void
drain_one(struct worker *w, void *arg)
{
	worker_drain(w, (uint32_t)(uintptr_t)arg);
}

/* Tell every worker to drain, with timeout_ms (see worker_drain). */
static void
drain_workers(struct daemon *d, uint32_t timeout_ms)
{
	unsigned i;

	atomic_store(&d->shared.draining, true);
	for (i = 0; i < d->n_workers; i++)
		if (worker_post(d->workers[i], drain_one, (void *)(uintptr_t)timeout_ms) == -1)
			log_warnx("worker %u: cannot start its drain", i);
}

/*
 * SIGTERM or SIGINT: stop the service.  Live connections get shutdown_timeout
 * (also when an upgrade's drain already runs: it bounds what is left); asked
 * again, they are closed now.
 */
static void
drain_start(struct daemon *d)
{
	uint32_t timeout_ms = d->current->cfg->shutdown_timeout_ms;
	char status[NOTIFY_STATUS_MAX];

	atomic_store(&d->shared.draining, true);
	switch (d->drain) {
	case DRAIN_NONE:
		log_info("draining: stop accepting, closing what is left in %u ms", timeout_ms);
		status_text(d, status, sizeof(status));
		notify_stopping(d->notify, status);
		/* Stopping the service: a new process on its way must not outlive it. */
		if (upgrade_in_progress(d->upgrade)) {
			log_warnx("binary upgrade abandoned (draining): telling process %ld to stop",
			    (long)upgrade_child(d->upgrade));
			if (kill(upgrade_child(d->upgrade), SIGTERM) == -1)
				log_warn("binary upgrade: kill %ld", (long)upgrade_child(d->upgrade));
		}
		break;
	case DRAIN_UPGRADE:
		log_info("draining after the upgrade: closing what is left in %u ms", timeout_ms);
		break;
	case DRAIN_STOP:
		log_info("draining again: closing every connection now");
		timeout_ms = 0;
		break;
	}
	d->drain = DRAIN_STOP;
	drain_workers(d, timeout_ms);
}

/*
 * Put gen on every worker or on none (worker_apply_all), with the access log
 * as the process's part of the same transaction.  Returns 0 or -1 (logged).
 */
static int
apply_config(struct daemon *d, struct generation *gen)
{
	if (accesslog_prepare(gen->cfg->access_log) == -1)
		return -1;
	if (worker_apply_all(d->workers, d->n_workers, gen) == -1) {
		accesslog_abort();
		return -1;
	}
	accesslog_commit();
	return 0;
}

static void
changed_cb(void *arg)
{
	struct daemon *d = arg;

	event_active(d->reload_ev, EV_TIMEOUT, 0);
}

/*
 * Start or stop watching the file as reload_on_change now says.  A watch
 * that cannot start (or whose directory went away) is logged and leaves
 * kaproxy running; the next reload tries again.
 */
static void
watch_update(struct daemon *d)
{
	if (!d->current->cfg->reload_on_change) {
		if (d->watch != NULL)
			log_info("reload_on_change off: no longer watching %s", d->config_path);
		confwatch_free(d->watch);
		d->watch = NULL;
		return;
	}
	if (confwatch_watching(d->watch))
		return;
	confwatch_free(d->watch);
	d->watch = confwatch_new(worker_base(d->workers[0]), d->config_path, &d->loaded,
	    changed_cb, d);
}

static void
reload_failed(struct daemon *d, const char *why)
{
	log_errorx("reload failed, keeping the running configuration%s%s", *why ? ": " : "", why);
	STAT_ADD(d->proc.reloads_failed, 1);
}

/* Load the file and put it on every worker; 0, or -1 (logged, counted). */
static int
reload_apply(struct daemon *d)
{
	const struct config *old = d->current->cfg;
	char err[CONFIG_ERR_MAX];
	struct generation *gen;
	struct config *cfg;

	/* Before the file is read: a change from now on differs from this. */
	confwatch_print_file(d->config_path, &d->loaded);
	if (config_load(d->config_path, &cfg, err, sizeof(err)) == -1) {
		reload_failed(d, err);
		return -1;
	}
	gen = generation_new(cfg);
	if (gen == NULL) {
		config_free(cfg);
		reload_failed(d, strerror(ENOMEM));
		return -1;
	}
	if (cfg->admin_enabled != old->admin_enabled ||
	    (cfg->admin_enabled && strcmp(cfg->admin_listen.text, old->admin_listen.text) != 0))
		log_warnx("reload: admin_listen changes take effect at the next start");
	if (cfg->status_enabled != old->status_enabled ||
	    (cfg->status_enabled && strcmp(cfg->status_listen.text, old->status_listen.text) != 0))
		log_warnx("reload: status_listen changes take effect at the next start");
	if (cfg->admin_max_connections != old->admin_max_connections)
		log_warnx("reload: admin_max_connections changes take effect at the next start");
	if (cfg->workers != old->workers)
		log_warnx("reload: workers changes take effect at the next start");
	if (apply_config(d, gen) == -1) {
		generation_unref(gen);
		reload_failed(d, "");
		return -1;
	}
	atomic_store(&d->shared.admission.max_connections, cfg->max_connections);
	log_set_level(cfg->log_level);
	generation_unref(d->current);
	d->current = gen;
	STAT_ADD(d->proc.reloads_ok, 1);
	log_info("reloaded %s", d->config_path);
	watch_update(d);
	return 0;
}

/*
 * A reload, told to the service manager: RELOADING before, READY after,
 * whether the new configuration was taken or refused (the status says).
 * None once draining: the process is on its way out.
 */
static void
reload(struct daemon *d)
{
	char status[NOTIFY_STATUS_MAX];

	if (atomic_load(&d->shared.draining))
		return;
	notify_reloading(d->notify);
	d->reload_refused = reload_apply(d) == -1;
	status_text(d, status, sizeof(status));
	notify_ready(d->notify, status);
}

static void
reload_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	reload(arg);
}

static void
reopen_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	accesslog_reopen();
}

/* The new process is ready: it is the main process now, and this one drains. */
static void
upgrade_ready_cb(pid_t pid, void *arg)
{
	struct daemon *d = arg;
	char status[NOTIFY_STATUS_MAX];
	uint32_t timeout_ms;

	/*
	 * SIGTERM came while the new process started: the service is to stop,
	 * so it must not take over.  It drains what it may have accepted.
	 */
	if (atomic_load(&d->shared.draining)) {
		log_warnx("binary upgrade: draining already: telling process %ld to stop", (long)pid);
		if (kill(pid, SIGTERM) == -1)
			log_warn("binary upgrade: kill %ld", (long)pid);
		return;
	}
	timeout_ms = d->current->cfg->upgrade_drain_timeout_ms;
	if (timeout_ms == 0)
		log_info("binary upgrade: process %ld took over; draining: live connections run "
		    "until they end", (long)pid);
	else
		log_info("binary upgrade: process %ld took over; draining: closing what is left "
		    "in %u ms", (long)pid, timeout_ms);
	snprintf(status, sizeof(status), "upgraded: process %ld serves", (long)pid);
	notify_mainpid(d->notify, pid, status);
	/* Not the main process any more: the manager hears only the new one. */
	notify_free(d->notify);
	d->notify = NULL;
	/* The new process has the admin and status sockets: probes and scrapes go to it alone. */
	admin_stop_accepting(d->admin);
	d->drain = DRAIN_UPGRADE;
	drain_workers(d, timeout_ms == 0 ? WORKER_DRAIN_UNBOUNDED : timeout_ms);
}

/* Said in the status line until the next attempt (the log has the why). */
static void
upgrade_failed_cb(void *arg)
{
	struct daemon *d = arg;

	d->upgrade_refused = true;
}

static void
hand_socket(int fd, const struct endpoint *ep, void *arg)
{
	struct daemon *d = arg;

	if (upgrade_add_socket(d->upgrade, fd, ep->text) == -1)
		d->upgrade_failed = true;
}

/*
 * SIGUSR2: start the new process with every listening socket (each worker's,
 * so no accept queue is lost) and the admin socket.  Ignored, with a log
 * line, while one is in progress or while draining.
 */
static void
binary_upgrade(struct daemon *d)
{
	unsigned i;

	if (atomic_load(&d->shared.draining)) {
		log_warnx("SIGUSR2 ignored: draining%s", upgrade_child(d->upgrade) != 0 ?
		    " (already upgraded)" : "");
		return;
	}
	if (upgrade_in_progress(d->upgrade)) {
		log_warnx("SIGUSR2 ignored: a binary upgrade (process %ld) is in progress",
		    (long)upgrade_child(d->upgrade));
		return;
	}
	if (d->exe[0] == '\0') {
		log_errorx("binary upgrade failed: the path of this binary is unknown");
		return;
	}
	if (d->upgrade == NULL) {
		d->upgrade = upgrade_new(worker_base(d->workers[0]), upgrade_ready_cb,
		    upgrade_failed_cb, d);
		if (d->upgrade == NULL)
			return;
	}
	log_info("binary upgrade: starting %s", d->exe);
	d->upgrade_failed = false;
	d->upgrade_refused = false;
	for (i = 0; i < d->n_workers; i++)
		worker_each_socket(d->workers[i], hand_socket, d);
	if (d->admin != NULL && admin_fd(d->admin) != -1 && upgrade_add_socket(d->upgrade,
	    admin_fd(d->admin), d->current->cfg->admin_listen.text) == -1)
		d->upgrade_failed = true;
	if (d->admin != NULL && admin_status_fd(d->admin) != -1 && upgrade_add_socket(d->upgrade,
	    admin_status_fd(d->admin), d->current->cfg->status_listen.text) == -1)
		d->upgrade_failed = true;
	if (d->upgrade_failed) {
		log_errorx("binary upgrade failed: cannot list the sockets; this process keeps serving");
		upgrade_forget(d->upgrade);
		d->upgrade_refused = true;
		return;
	}
	if (upgrade_spawn(d->upgrade, d->exe, d->argv) == -1)
		d->upgrade_refused = true;
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;

	(void)what;
	switch (sig) {
	case SIGHUP:
		/* Already active: the pending reload will read the file as it is now. */
		event_active(d->reload_ev, EV_TIMEOUT, 0);
		break;
	case SIGTERM:
	case SIGINT:
		drain_start(d);
		break;
	case SIGUSR1:
		event_active(d->reopen_ev, EV_TIMEOUT, 0);
		break;
	case SIGUSR2:
		binary_upgrade(d);
		break;
	}
}

static unsigned
worker_count(const struct config *cfg)
{
	long cpus;

	if (cfg->workers != 0)
		return cfg->workers;
	cpus = sysconf(_SC_NPROCESSORS_ONLN);
	return cpus > 0 ? (unsigned)cpus : 1;
}

/* Signals and the drain notification, all on worker 0's loop (the main thread). */
static int
events_start(struct daemon *d)
{
	struct event_base *base = worker_base(d->workers[0]);
	const int signals[] = { SIGHUP, SIGTERM, SIGINT, SIGUSR1, SIGUSR2 };
	size_t i;

	d->shared.drained_notify = event_new(base, -1, 0, drained_cb, d);
	d->reload_ev = event_new(base, -1, 0, reload_cb, d);
	d->reopen_ev = event_new(base, -1, 0, reopen_cb, d);
	if (d->shared.drained_notify == NULL || d->reload_ev == NULL || d->reopen_ev == NULL)
		goto err;
	if (d->notify != NULL) {
		const struct timeval every = { .tv_sec = STATUS_INTERVAL_S };

		d->status_ev = event_new(base, -1, EV_PERSIST, status_cb, d);
		if (d->status_ev == NULL || event_add(d->status_ev, &every) == -1)
			goto err;
	}
	for (i = 0; i < sizeof(signals) / sizeof(signals[0]); i++) {
		d->signals[i] = evsignal_new(base, signals[i], signal_cb, d);
		if (d->signals[i] == NULL || evsignal_add(d->signals[i], NULL) == -1)
			goto err;
	}
	return 0;
err:
	log_warnx("cannot set up signal events");
	return -1;
}

static void
events_stop(struct daemon *d)
{
	size_t i;

	for (i = 0; i < sizeof(d->signals) / sizeof(d->signals[0]); i++)
		if (d->signals[i] != NULL)
			event_free(d->signals[i]);
	if (d->shared.drained_notify != NULL)
		event_free(d->shared.drained_notify);
	if (d->reload_ev != NULL)
		event_free(d->reload_ev);
	if (d->reopen_ev != NULL)
		event_free(d->reopen_ev);
	if (d->status_ev != NULL)
		event_free(d->status_ev);
}

/* Workers with their listeners open (not running yet); 0, or -1 (logged). */
static int
workers_create(struct daemon *d, const struct config *cfg)
{
	unsigned i;

	d->n_workers = worker_count(cfg);
	d->workers = calloc(d->n_workers, sizeof(*d->workers));
	if (d->workers == NULL) {
		log_warn("start-up");
		return -1;
	}
	atomic_init(&d->shared.admission.max_connections, cfg->max_connections);
	d->proc.upstreams_suspect = &d->shared.suspects.n_suspect;
	for (i = 0; i < d->n_workers; i++)
		if ((d->workers[i] = worker_new(&d->shared, i, d->n_workers > 1)) == NULL)
			return -1;
	return apply_config(d, d->current);
}

static void
workers_free(struct daemon *d)
{
	unsigned i;

	for (i = 0; d->workers != NULL && i < d->n_workers; i++)
		worker_free(d->workers[i]);
	free(d->workers);
}

/* Block or unblock the signals held during start-up (upgrade_startup_signals). */
static void
startup_signals(int how)
{
	sigset_t set;

	upgrade_startup_signals(&set);
	if (pthread_sigmask(how, &set, NULL) != 0)
		log_warnx("pthread_sigmask failed");
}

/* Run worker 0 on this thread and the others on theirs, until the drain ends. */
static int
workers_run(struct daemon *d)
{
	unsigned i, started;
	int rc = -1;

	for (started = 1; started < d->n_workers; started++)
		if (worker_start(d->workers[started]) == -1)
			break;
	if (started == d->n_workers) {
		char status[NOTIFY_STATUS_MAX];

		log_info("kaproxy %s running (%s, %u worker%s)", KAPROXY_VERSION, d->config_path,
		    d->n_workers, d->n_workers == 1 ? "" : "s");
		/* Every listener and the admin endpoint are open: connections queue from now on. */
		status_text(d, status, sizeof(status));
		/*
		 * Started by an upgrade: the old process tells the manager our pid
		 * and READY together, since it is the one the manager listens to.
		 */
		if (upgrade_inherited())
			upgrade_ready();
		else
			notify_ready(d->notify, status);
		/*
		 * Every handler is in place: what came during start-up is handled
		 * now.  The other threads keep them blocked, so they come here.
		 */
		startup_signals(SIG_UNBLOCK);
		rc = worker_run(d->workers[0]);
	}
	/* The admin thread goes first: it may have parts out on the workers. */
	admin_free(d->admin);
	d->admin = NULL;
	for (i = 1; i < started; i++) {
		worker_exit(d->workers[i]);
		worker_join(d->workers[i]);
	}
	return rc;
}

static int
run(struct daemon *d, struct config *cfg)
{
	int rc = 1;

	d->current = generation_new(cfg);
	if (d->current == NULL) {
		log_warn("start-up");
		config_free(cfg);
		return 1;
	}
	/* Read, not unset: a process this one starts (a binary upgrade) needs it too. */
	d->notify = notify_open(getenv("NOTIFY_SOCKET"));
	if (workers_create(d, cfg) == -1 || events_start(d) == -1)
		goto out;
	watch_update(d);
	if (cfg->admin_enabled || cfg->status_enabled) {
		d->admin = admin_start(d->workers, d->n_workers,
		    cfg->admin_enabled ? &cfg->admin_listen : NULL,
		    cfg->status_enabled ? &cfg->status_listen : NULL,
		    cfg->admin_max_connections, &d->proc, &d->shared.draining);
		if (d->admin == NULL)
			goto out;
	}
	/* Every listener is open: a socket handed over and not taken has no use. */
	upgrade_close_unused();
	if (workers_run(d) == 0)
		rc = 0;
	log_info("exiting");
out:
	admin_free(d->admin);
	confwatch_free(d->watch);
	upgrade_free(d->upgrade);
	events_stop(d);
	workers_free(d);
	generation_unref(d->current);
	accesslog_close();
	notify_free(d->notify);
	return rc;
}

/*
 * The path SIGUSR2 starts, read now: once the file is replaced (a package
 * upgrade renames a new one over it), /proc/self/exe names a deleted file.
 */
static void
exe_path(char *buf, size_t size)
{
	ssize_t n = readlink("/proc/self/exe", buf, size - 1);

	if (n == -1) {
		log_warn("readlink /proc/self/exe: SIGUSR2 cannot upgrade");
		buf[0] = '\0';
		return;
	}
	buf[n] = '\0';
}

int
main(int argc, char **argv)
{
	struct daemon d;
	char err[CONFIG_ERR_MAX];
	struct config *cfg;
	int opt, check = 0;

	/* Also clears what a parent left blocked, once start-up is done. */
	startup_signals(SIG_BLOCK);
	memset(&d, 0, sizeof(d));
	if (evthread_use_pthreads() == -1)
		log_fatal("evthread_use_pthreads failed");
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
	confwatch_print_file(d.config_path, &d.loaded);
	if (config_load(d.config_path, &cfg, err, sizeof(err)) == -1) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (check) {
		config_print_check(cfg, stdout);
		config_free(cfg);
		return 0;
	}
	if (upgrade_inherit() == -1) {
		config_free(cfg);
		return 1;
	}
	d.argv = argv;
	exe_path(d.exe, sizeof(d.exe));
	log_set_level(cfg->log_level);
	signal(SIGPIPE, SIG_IGN);   /* a write to a reset peer is an errno, not a death */
	raise_fd_limit();
	return run(&d, cfg);
}
