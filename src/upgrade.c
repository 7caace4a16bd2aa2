/*
 * upgrade: the binary upgrade at SIGUSR2: the new process's inherited
 * sockets and ready pipe, and the old process's child (start, ready pipe,
 * deadline, reaping).  See kaproxy/upgrade.h for the protocol.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "kaproxy/log.h"
#include "kaproxy/upgrade.h"

#define ENV_LISTEN_FDS "KAPROXY_LISTEN_FDS"
#define ENV_READY_FD "KAPROXY_UPGRADE_FD"
#define UPGRADE_MAX_SOCKETS 1024

extern char **environ;

/* --- the new process: what the old one handed over --- */

struct inherited {
	int fd;
	bool taken;
	struct endpoint ep;   /* from getsockname, so the list's text is only a label */
};

static struct inherited *inherited;
static size_t n_inherited;
static int ready_fd = -1;
static bool started_by_upgrade;

/* Parse a non-negative descriptor number; -1 if text is not one. */
static int
parse_fd(const char *text, const char *end)
{
	long v = 0;

	if (text == end)
		return -1;
	for (; text < end; text++) {
		if (*text < '0' || *text > '9' || v > 65536)
			return -1;
		v = v * 10 + (*text - '0');
	}
	return v > 65536 ? -1 : (int)v;
}

static int
inherit_one(const char *item, const char *end)
{
	const char *eq = memchr(item, '=', (size_t)(end - item));
	struct inherited *in = &inherited[n_inherited];
	int fd, listening = 0;
	socklen_t len = sizeof(listening);

	fd = eq == NULL ? -1 : parse_fd(eq + 1, end);
	if (fd < 0) {
		log_warnx(ENV_LISTEN_FDS ": %.*s is not ADDR=FD", (int)(end - item), item);
		return -1;
	}
	memset(in, 0, sizeof(*in));
	in->fd = fd;
	in->ep.len = sizeof(in->ep.addr);
	if (getsockname(fd, (struct sockaddr *)&in->ep.addr, &in->ep.len) == -1 ||
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == -1) {
		log_warn(ENV_LISTEN_FDS ": descriptor %d (%.*s)", fd, (int)(eq - item), item);
		return -1;
	}
	if (!listening) {
		log_warnx(ENV_LISTEN_FDS ": descriptor %d (%.*s) is not listening", fd,
		    (int)(eq - item), item);
		return -1;
	}
	endpoint_format((struct sockaddr *)&in->ep.addr, in->ep.text, sizeof(in->ep.text));
	/* Ours from now on: a later upgrade hands it on explicitly, nothing else gets it. */
	if (fcntl(fd, F_SETFD, FD_CLOEXEC) == -1 ||
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == -1) {
		log_warn(ENV_LISTEN_FDS ": descriptor %d", fd);
		return -1;
	}
	n_inherited++;
	return 0;
}

int
upgrade_inherit(void)
{
	const char *list = getenv(ENV_LISTEN_FDS), *ready = getenv(ENV_READY_FD);
	const char *p, *comma;
	size_t count = 1;
	int rc = -1;

	if (ready == NULL && list == NULL)
		return 0;
	started_by_upgrade = true;
	if (ready == NULL || (ready_fd = parse_fd(ready, ready + strlen(ready))) < 0 ||
	    fcntl(ready_fd, F_SETFD, FD_CLOEXEC) == -1) {
		log_warnx(ENV_READY_FD ": not a descriptor; started by an upgrade without a pipe");
		ready_fd = -1;
		goto out;
	}
	if (list == NULL || *list == '\0') {
		rc = 0;
		goto out;
	}
	for (p = list; *p != '\0'; p++)
		count += *p == ',';
	if (count > UPGRADE_MAX_SOCKETS || (inherited = calloc(count, sizeof(*inherited))) == NULL) {
		log_warnx(ENV_LISTEN_FDS ": cannot take %zu sockets", count);
		goto out;
	}
	for (p = list;; p = comma + 1) {
		comma = strchr(p, ',');
		if (inherit_one(p, comma != NULL ? comma : p + strlen(p)) == -1)
			goto out;
		if (comma == NULL)
			break;
	}
	log_info("binary upgrade: took over %zu listening socket(s)", n_inherited);
	rc = 0;
out:
	if (rc == -1) {
		/* Start-up fails: the descriptors go with the process, the table now. */
		free(inherited);
		inherited = NULL;
		n_inherited = 0;
	}
	unsetenv(ENV_LISTEN_FDS);
	unsetenv(ENV_READY_FD);
	return rc;
}

bool
upgrade_inherited(void)
{
	return started_by_upgrade;
}

int
upgrade_take(const struct endpoint *ep)
{
	size_t i;

	for (i = 0; i < n_inherited; i++)
		if (!inherited[i].taken && endpoint_equal(&inherited[i].ep, ep)) {
			inherited[i].taken = true;
			return inherited[i].fd;
		}
	return -1;
}

void
upgrade_close_unused(void)
{
	size_t i;

	for (i = 0; i < n_inherited; i++)
		if (!inherited[i].taken) {
			log_info("binary upgrade: closing the inherited socket on %s (not in the "
			    "configuration, or more sockets than workers)", inherited[i].ep.text);
			close(inherited[i].fd);
		}
	free(inherited);
	inherited = NULL;
	n_inherited = 0;
}

int
upgrade_ready(void)
{
	ssize_t n;

	if (ready_fd == -1)
		return 0;
	do
		n = write(ready_fd, "R", 1);
	while (n == -1 && errno == EINTR);
	if (n != 1)
		log_warn("binary upgrade: cannot tell the old process we are ready");
	close(ready_fd);
	ready_fd = -1;
	return n == 1 ? 0 : -1;
}

/* --- the old process: the child --- */

enum upgrade_state {
	UPGRADE_IDLE,       /* no child, or one that was ready */
	UPGRADE_STARTED,    /* waiting for its byte */
	UPGRADE_FAILING,    /* it will never be ready: waiting to reap it */
};

struct upgrade {
	struct event_base *base;
	void (*ready)(pid_t, void *);
	void (*failed)(void *);
	void *arg;
	enum upgrade_state state;
	pid_t child;                 /* 0: none to reap */
	bool child_was_ready;
	int pipe_fd;                 /* read end; -1 when closed */
	struct event *pipe_ev;
	struct event *deadline;
	struct event *sigchld;
	int *fds;
	char **addrs;
	size_t n_fds;
	char why[96];                /* why it will not be ready, for the reap's log line */
};

struct upgrade *
upgrade_new(struct event_base *base, void (*ready)(pid_t, void *), void (*failed)(void *),
    void *arg)
{
	struct upgrade *u = calloc(1, sizeof(*u));

	if (u == NULL) {
		log_warn("binary upgrade");
		return NULL;
	}
	u->base = base;
	u->ready = ready;
	u->failed = failed;
	u->arg = arg;
	u->pipe_fd = -1;
	return u;
}

void
upgrade_forget(struct upgrade *u)
{
	size_t i;

	for (i = 0; i < u->n_fds; i++)
		free(u->addrs[i]);
	free(u->fds);
	free(u->addrs);
	u->fds = NULL;
	u->addrs = NULL;
	u->n_fds = 0;
}

static void
close_pipe(struct upgrade *u)
{
	if (u->pipe_ev != NULL) {
		event_free(u->pipe_ev);
		u->pipe_ev = NULL;
	}
	if (u->deadline != NULL) {
		event_free(u->deadline);
		u->deadline = NULL;
	}
	if (u->pipe_fd != -1) {
		close(u->pipe_fd);
		u->pipe_fd = -1;
	}
}

void
upgrade_free(struct upgrade *u)
{
	if (u == NULL)
		return;
	close_pipe(u);
	if (u->sigchld != NULL)
		event_free(u->sigchld);
	upgrade_forget(u);
	free(u);
}

int
upgrade_add_socket(struct upgrade *u, int fd, const char *addr)
{
	int *fds;
	char **addrs;

	if (u->n_fds == UPGRADE_MAX_SOCKETS)
		goto err;
	fds = realloc(u->fds, (u->n_fds + 1) * sizeof(*fds));
	if (fds == NULL)
		goto err;
	u->fds = fds;
	addrs = realloc(u->addrs, (u->n_fds + 1) * sizeof(*addrs));
	if (addrs == NULL)
		goto err;
	u->addrs = addrs;
	if ((u->addrs[u->n_fds] = strdup(addr)) == NULL)
		goto err;
	u->fds[u->n_fds++] = fd;
	return 0;
err:
	log_warnx("binary upgrade: cannot hand over more than %zu sockets", u->n_fds);
	return -1;
}

/* The child will not be ready: say why at the reap. */
static void
give_up(struct upgrade *u, const char *why)
{
	close_pipe(u);
	snprintf(u->why, sizeof(u->why), "%s", why);
	u->state = UPGRADE_FAILING;
}

static void
pipe_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upgrade *u = arg;
	char byte;
	ssize_t n;

	(void)what;
	n = read(fd, &byte, 1);
	if (n == -1 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n == 1) {
		pid_t pid = u->child;

		close_pipe(u);
		u->state = UPGRADE_IDLE;
		u->child_was_ready = true;
		log_info("binary upgrade: new process %ld is ready", (long)pid);
		u->ready(pid, u->arg);
		return;
	}
	if (n == -1)
		log_warn("binary upgrade: ready pipe");
	give_up(u, "it closed the ready pipe without being ready");
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upgrade *u = arg;

	(void)fd;
	(void)what;
	log_warnx("binary upgrade: new process %ld not ready within %d s: killing it",
	    (long)u->child, UPGRADE_READY_TIMEOUT_S);
	if (kill(u->child, SIGKILL) == -1)
		log_warn("binary upgrade: kill %ld", (long)u->child);
	give_up(u, "it was not ready in time");
}

static void
sigchld_cb(evutil_socket_t sig, short what, void *arg)
{
	struct upgrade *u = arg;
	pid_t pid = u->child;
	char status[48];
	int ws;

	(void)sig;
	(void)what;
	if (pid == 0 || waitpid(pid, &ws, WNOHANG) != pid)
		return;
	u->child = 0;
	if (WIFEXITED(ws))
		snprintf(status, sizeof(status), "exited with status %d", WEXITSTATUS(ws));
	else
		snprintf(status, sizeof(status), "was killed by signal %d", WTERMSIG(ws));
	if (u->child_was_ready) {
		u->child_was_ready = false;
		log_warnx("binary upgrade: the new process %ld %s", (long)pid, status);
		return;
	}
	if (u->state == UPGRADE_STARTED)
		give_up(u, "");
	log_errorx("binary upgrade failed: new process %ld %s%s%s; this process (%ld) keeps "
	    "serving", (long)pid, status, u->why[0] != '\0' ? ": " : "", u->why, (long)getpid());
	u->state = UPGRADE_IDLE;
	u->failed(u->arg);
}

/* environ without our two variables, plus them: NULL (logged) on failure. */
static char **
child_env(const struct upgrade *u, int write_fd)
{
	size_t n = 0, i, k = 0, len = sizeof(ENV_LISTEN_FDS "=");
	char **env, *list, *p;

	while (environ[n] != NULL)
		n++;
	for (i = 0; i < u->n_fds; i++)
		len += strlen(u->addrs[i]) + 16;
	env = calloc(n + 3, sizeof(*env));
	list = malloc(len);
	if (env == NULL || list == NULL)
		goto err;
	for (i = 0; i < n; i++)
		if (strncmp(environ[i], ENV_LISTEN_FDS "=", sizeof(ENV_LISTEN_FDS)) != 0 &&
		    strncmp(environ[i], ENV_READY_FD "=", sizeof(ENV_READY_FD)) != 0)
			env[k++] = environ[i];
	p = list + sprintf(list, ENV_LISTEN_FDS "=");
	for (i = 0; i < u->n_fds; i++)
		p += sprintf(p, "%s%s=%d", i == 0 ? "" : ",", u->addrs[i], u->fds[i]);
	env[k++] = list;
	if (asprintf(&env[k], ENV_READY_FD "=%d", write_fd) == -1)
		goto err;
	return env;
err:
	log_warn("binary upgrade: environment");
	free(list);
	free(env);
	return NULL;
}

static void
free_env(char **env)
{
	size_t n = 0;

	while (env[n] != NULL)
		n++;
	/* The last two are ours; the rest belong to environ. */
	free(env[n - 1]);
	free(env[n - 2]);
	free(env);
}

void
upgrade_startup_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGUSR1);
	sigaddset(set, SIGUSR2);
}

int
upgrade_spawn(struct upgrade *u, const char *exe, char *const argv[])
{
	const struct timeval deadline = { .tv_sec = UPGRADE_READY_TIMEOUT_S };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t held;
	char **env = NULL;
	int p[2] = { -1, -1 }, err;
	pid_t pid;
	size_t i;

	if (u->sigchld == NULL) {
		u->sigchld = evsignal_new(u->base, SIGCHLD, sigchld_cb, u);
		if (u->sigchld == NULL || evsignal_add(u->sigchld, NULL) == -1) {
			log_warnx("binary upgrade: cannot watch for SIGCHLD");
			goto err;
		}
	}
	if (pipe2(p, O_CLOEXEC) == -1) {
		log_warn("binary upgrade: pipe");
		goto err;
	}
	if ((env = child_env(u, p[1])) == NULL)
		goto err;
	if ((err = posix_spawn_file_actions_init(&fa)) != 0) {
		errno = err;
		log_warn("binary upgrade: posix_spawn_file_actions_init");
		goto err;
	}
	/* dup2 of a descriptor onto itself clears its FD_CLOEXEC in the child only. */
	err = posix_spawn_file_actions_adddup2(&fa, p[1], p[1]);
	for (i = 0; err == 0 && i < u->n_fds; i++)
		err = posix_spawn_file_actions_adddup2(&fa, u->fds[i], u->fds[i]);
	/* Held from its first instruction: a signal before its handlers waits for them. */
	upgrade_startup_signals(&held);
	if (err == 0 && (err = posix_spawnattr_init(&attr)) == 0) {
		err = posix_spawnattr_setsigmask(&attr, &held);
		if (err == 0)
			err = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
		if (err == 0)
			err = posix_spawn(&pid, exe, &fa, &attr, argv, env);
		posix_spawnattr_destroy(&attr);
	}
	posix_spawn_file_actions_destroy(&fa);
	if (err != 0) {
		errno = err;
		log_warn("binary upgrade failed: cannot start %s; this process keeps serving", exe);
		goto err;
	}
	close(p[1]);
	p[1] = -1;
	free_env(env);
	env = NULL;
	u->child = pid;
	u->pipe_fd = p[0];
	u->why[0] = '\0';
	u->state = UPGRADE_STARTED;
	u->pipe_ev = event_new(u->base, p[0], EV_READ | EV_PERSIST, pipe_cb, u);
	u->deadline = evtimer_new(u->base, deadline_cb, u);
	if (u->pipe_ev == NULL || u->deadline == NULL || event_add(u->pipe_ev, NULL) == -1 ||
	    evtimer_add(u->deadline, &deadline) == -1) {
		log_warnx("binary upgrade: cannot wait for the new process");
		if (kill(pid, SIGKILL) == -1)
			log_warn("binary upgrade: kill %ld", (long)pid);
		give_up(u, "this process could not wait for it");
	}
	log_info("binary upgrade: started %s as process %ld with %zu listening socket(s)", exe,
	    (long)pid, u->n_fds);
	upgrade_forget(u);
	return 0;
err:
	if (env != NULL)
		free_env(env);
	if (p[0] != -1)
		close(p[0]);
	if (p[1] != -1)
		close(p[1]);
	upgrade_forget(u);
	return -1;
}

bool
upgrade_in_progress(const struct upgrade *u)
{
	return u != NULL && u->state != UPGRADE_IDLE;
}

pid_t
upgrade_child(const struct upgrade *u)
{
	return u == NULL ? 0 : u->child;
}
