/*
 * notify: the service manager's readiness protocol (sd_notify(3)) spoken
 * directly, without libsystemd: each message is one datagram of VAR=VALUE
 * lines, sent on an AF_UNIX SOCK_DGRAM socket to $NOTIFY_SOCKET (a path, or
 * an abstract name written with a leading '@').  The main thread calls it at
 * start-up, around a reload, at the drain and from a slow timer, never from
 * the data path.  A send that fails is logged once and otherwise ignored:
 * notifying never stops kaproxy.
 */
#ifndef KAPROXY_NOTIFY_H
#define KAPROXY_NOTIFY_H

#include <sys/types.h>

struct notify;

/* The longest STATUS= text sent; a longer one is cut there. */
#define NOTIFY_STATUS_MAX 256

/*
 * A notifier sending to socket_name (the value of $NOTIFY_SOCKET), or NULL
 * when there is nothing to notify: socket_name NULL or empty, or unusable
 * (neither an absolute path nor an '@' name, too long, no socket: logged).
 * Every other notify_* function takes NULL and then does nothing.  The
 * environment is left as it is.
 */
struct notify *notify_open(const char *socket_name);

/* Close n's socket; notify_free(NULL) does nothing. */
void notify_free(struct notify *n);

/*
 * Each sends one datagram and returns 0 (sent, or n is NULL) or -1 (not
 * sent; the first failure of n is logged with its errno text).  A status
 * is one line: a newline in it is sent as a space.
 */

/* READY=1, with STATUS=status unless status is NULL. */
int notify_ready(struct notify *n, const char *status);

/* RELOADING=1 and MONOTONIC_USEC=<CLOCK_MONOTONIC now, in microseconds>. */
int notify_reloading(struct notify *n);

/* STOPPING=1, with STATUS=status unless status is NULL. */
int notify_stopping(struct notify *n, const char *status);

/* STATUS=status, unless it is the status n sent last (then 0, nothing sent). */
int notify_status(struct notify *n, const char *status);

/*
 * MAINPID=pid and READY=1 (with STATUS=status unless NULL), in one datagram:
 * pid is the process the service manager is to watch from now on, and it is
 * ready.  One datagram, because a manager that hears only the main process
 * (NotifyAccess=main) would take nothing more from this one once MAINPID is
 * changed.
 */
int notify_mainpid(struct notify *n, pid_t pid, const char *status);

#endif
