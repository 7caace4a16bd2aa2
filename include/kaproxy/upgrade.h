/*
 * upgrade: the binary upgrade at SIGUSR2, both halves.
 *
 * The running process (the old one) starts the binary at the path it was
 * started from, with the same arguments, as a child that inherits every
 * listening socket (all workers' SO_REUSEPORT sockets and the admin socket)
 * and the write end of a pipe.  The environment names them:
 *   KAPROXY_LISTEN_FDS="ADDR=FD,ADDR=FD,..."   (ADDR as the config writes it)
 *   KAPROXY_UPGRADE_FD=FD                       (write one byte when ready)
 * Handing the sockets over, rather than binding new ones alongside, is what
 * loses no queued connection: a socket is closed only when both processes
 * have closed it, so what waits in its accept queue when the old process
 * stops accepting is accepted by the new one.
 *
 * The new process (upgrade_inherit at start-up) adopts the sockets whose
 * address its configuration still has, closes the rest once its own
 * listeners are open (upgrade_close_unused), and says it is ready
 * (upgrade_ready) once every listener and the admin endpoint accept.
 */
#ifndef KAPROXY_UPGRADE_H
#define KAPROXY_UPGRADE_H

#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>

#include "kaproxy/endpoint.h"

struct event_base;
struct upgrade;

/* How long the new process has to report ready before it is killed. */
#define UPGRADE_READY_TIMEOUT_S 10

/* --- the new process --- */

/*
 * Take the sockets and the ready pipe named in the environment, and remove
 * the two variables from it.  Returns 0 (also when not started by an
 * upgrade), or -1 after logging why (a malformed list, a descriptor that is
 * not a listening socket): start-up then fails and the old process keeps
 * serving.  Start-up only, before any thread.
 */
int upgrade_inherit(void);

/*
 * The signals a starting process holds (blocked, so pending) until its
 * handlers are in place: SIGHUP, SIGUSR1 and SIGUSR2, whose default action
 * would end it, when an operator or logrotate meant a reload, a reopen or an
 * upgrade of whichever kaproxy processes the service has.  A binary upgrade
 * starts its new process with them blocked already.
 */
void upgrade_startup_signals(sigset_t *set);

/* True when this process was started by an upgrade. */
bool upgrade_inherited(void);

/*
 * An inherited listening socket bound to ep that nothing took yet, now
 * taken (close-on-exec, non-blocking), or -1 when there is none.  Called on
 * the loop threads one at a time (the control plane's worker_call order).
 */
int upgrade_take(const struct endpoint *ep);

/* Close every inherited socket nothing took (logged: its address is gone). */
void upgrade_close_unused(void);

/* Tell the old process we are ready, and close the pipe; 0, or -1 (logged). */
int upgrade_ready(void);

/* --- the old process --- */

/*
 * Called on base's loop: ready(pid, arg) once the new process has reported
 * ready (the caller then drains); failed(arg) once a new process that never
 * became ready is reaped (why is logged), after which another upgrade may
 * start.
 */
struct upgrade *upgrade_new(struct event_base *base, void (*ready)(pid_t pid, void *arg),
    void (*failed)(void *arg), void *arg);

/* upgrade_free(NULL) does nothing.  A child is not killed, only forgotten. */
void upgrade_free(struct upgrade *u);

/* Hand fd (listening on addr) to the next new process; 0, or -1 (logged). */
int upgrade_add_socket(struct upgrade *u, int fd, const char *addr);

/* Drop the sockets added so far (they stay open: they are the caller's). */
void upgrade_forget(struct upgrade *u);

/*
 * Start exe with argv (and this environment plus the two variables) holding
 * the sockets added; 0, or -1 after logging why (nothing started, the
 * sockets are forgotten).  The outcome comes through ready or failed.
 */
int upgrade_spawn(struct upgrade *u, const char *exe, char *const argv[]);

/* True from upgrade_spawn until ready or failed has been called. */
bool upgrade_in_progress(const struct upgrade *u);

/* The new process's pid while one is in progress or after it was ready, else 0. */
pid_t upgrade_child(const struct upgrade *u);

#endif
