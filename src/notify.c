/*
 * notify: the readiness datagrams to the service manager: the socket and
 * address taken from $NOTIFY_SOCKET, the message texts, the send, and the
 * one log line about a failed send.
 *
 * The protocol is small enough to speak here rather than link libsystemd
 * (and its compression libraries) into a network daemon: a datagram of
 * "VAR=VALUE" lines to an AF_UNIX address.  The service manager learns the
 * sender from the kernel's credentials on its socket, so nothing else is
 * attached.  Sends never wait: a full socket is a failed send, not a stall
 * of the main thread, which is also worker 0's loop.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "kaproxy/log.h"
#include "kaproxy/notify.h"

/* The longest message: two short lines and a status. */
#define NOTIFY_MESSAGE_MAX (64 + NOTIFY_STATUS_MAX)

struct notify {
	int fd;
	struct sockaddr_un addr;
	socklen_t addr_len;
	bool failure_logged;
	char last_status[NOTIFY_STATUS_MAX + 1];   /* as last sent; "" before */
	char name[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];  /* for the log */
};

/* Fill n's address from name ('/path' or '@abstract'); 0, or -1 (logged). */
static int
notify_address(struct notify *n, const char *name)
{
	size_t len = strlen(name);

	n->addr.sun_family = AF_UNIX;
	if (name[0] == '/') {
		/* A path needs its terminating NUL inside sun_path. */
		if (len >= sizeof(n->addr.sun_path))
			goto too_long;
		memcpy(n->addr.sun_path, name, len + 1);
		n->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
	} else if (name[0] == '@' && len > 1) {
		/* Abstract: a NUL, then the name's bytes, no terminator. */
		if (len > sizeof(n->addr.sun_path))
			goto too_long;
		n->addr.sun_path[0] = '\0';
		memcpy(n->addr.sun_path + 1, name + 1, len - 1);
		n->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	} else {
		log_warnx("NOTIFY_SOCKET %s: neither an absolute path nor an @name, not notifying",
		    name);
		return -1;
	}
	memcpy(n->name, name, len + 1);
	return 0;
too_long:
	log_warnx("NOTIFY_SOCKET: a name of %zu bytes does not fit a socket address, not notifying",
	    len);
	return -1;
}

struct notify *
notify_open(const char *socket_name)
{
	struct notify *n;

	if (socket_name == NULL || socket_name[0] == '\0')
		return NULL;
	n = calloc(1, sizeof(*n));
	if (n == NULL) {
		log_warn("NOTIFY_SOCKET %s: not notifying", socket_name);
		return NULL;
	}
	n->fd = -1;
	if (notify_address(n, socket_name) == -1)
		goto err;
	n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (n->fd == -1) {
		log_warn("NOTIFY_SOCKET %s: socket, not notifying", socket_name);
		goto err;
	}
	return n;
err:
	notify_free(n);
	return NULL;
}

void
notify_free(struct notify *n)
{
	if (n == NULL)
		return;
	if (n->fd != -1)
		close(n->fd);
	free(n);
}

static int
notify_send(struct notify *n, const char *msg, size_t len)
{
	ssize_t sent;

	do
		sent = sendto(n->fd, msg, len, MSG_NOSIGNAL | MSG_DONTWAIT,
		    (const struct sockaddr *)&n->addr, n->addr_len);
	while (sent == -1 && errno == EINTR);
	if (sent == (ssize_t)len)
		return 0;
	if (sent >= 0)
		errno = EMSGSIZE;   /* a datagram goes whole or not at all */
	if (!n->failure_logged) {
		n->failure_logged = true;
		log_warn("NOTIFY_SOCKET %s: cannot tell the service manager (logged once)",
		    n->name);
	}
	return -1;
}

/* status as the one line sent: a newline becomes a space, cut at NOTIFY_STATUS_MAX. */
static void
status_line(char line[NOTIFY_STATUS_MAX + 1], const char *status)
{
	size_t i;

	for (i = 0; status[i] != '\0' && i < NOTIFY_STATUS_MAX; i++)
		line[i] = status[i] == '\n' ? ' ' : status[i];
	line[i] = '\0';
}

/*
 * Send head (VAR=VALUE lines, each ending in a newline), then STATUS=status
 * when status is not NULL.
 */
static int
notify_message(struct notify *n, const char *head, const char *status)
{
	char msg[NOTIFY_MESSAGE_MAX], line[NOTIFY_STATUS_MAX + 1];
	int len;

	if (n == NULL)
		return 0;
	if (status != NULL) {
		status_line(line, status);
		len = snprintf(msg, sizeof(msg), "%sSTATUS=%s\n", head, line);
	} else {
		len = snprintf(msg, sizeof(msg), "%s", head);
	}
	if (len < 0 || (size_t)len >= sizeof(msg)) {
		log_warnx("NOTIFY_SOCKET %s: message too long", n->name);
		return -1;
	}
	if (notify_send(n, msg, (size_t)len) == -1)
		return -1;
	if (status != NULL)
		memcpy(n->last_status, line, strlen(line) + 1);
	return 0;
}

int
notify_ready(struct notify *n, const char *status)
{
	return notify_message(n, "READY=1\n", status);
}

int
notify_reloading(struct notify *n)
{
	char head[64];
	struct timespec ts;

	if (n == NULL)
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(head, sizeof(head), "RELOADING=1\nMONOTONIC_USEC=%llu\n",
	    (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
	return notify_message(n, head, NULL);
}

int
notify_stopping(struct notify *n, const char *status)
{
	return notify_message(n, "STOPPING=1\n", status);
}

int
notify_status(struct notify *n, const char *status)
{
	char line[NOTIFY_STATUS_MAX + 1];

	if (n == NULL)
		return 0;
	status_line(line, status);
	if (strcmp(line, n->last_status) == 0)
		return 0;
	return notify_message(n, "", line);
}

int
notify_mainpid(struct notify *n, pid_t pid, const char *status)
{
	char head[48];

	snprintf(head, sizeof(head), "MAINPID=%ld\nREADY=1\n", (long)pid);
	return notify_message(n, head, status);
}
