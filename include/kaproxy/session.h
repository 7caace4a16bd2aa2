/*
 * session: one proxied connection.  Two legs (client, upstream), the
 * upstream connect with failover, what the byte pump (pump.h) reports in
 * either direction, dead-peer teardown and the access-log record.
 */
#ifndef KAPROXY_SESSION_H
#define KAPROXY_SESSION_H

#include <sys/queue.h>
#include <sys/socket.h>

#include "kaproxy/reason.h"

struct proxy_listener;
struct session;
struct worker;

/*
 * Take ownership of an accepted client socket fd (nonblocking), already
 * counted in the shared active count, and start connecting upstream.  On
 * failure fd is reset and the refusal counted.
 */
void session_start(struct proxy_listener *pl, int fd, const struct sockaddr *addr,
    socklen_t addrlen);

/* Close every session of w with reason (drain deadline, exit). */
void session_close_all(struct worker *w, enum close_reason reason);

/*
 * A place in w's session list that stays valid while sessions end, so the
 * admin endpoint can walk a long list in steps with the loop running between
 * them.  Open, take sessions with next until NULL, close (also after a walk
 * that stopped early); all on w's thread.
 */
struct session_cursor {
	LIST_ENTRY(session_cursor) entry;
	struct session *next;
};

void session_cursor_open(struct worker *w, struct session_cursor *c);
struct session *session_cursor_next(struct session_cursor *c);
void session_cursor_close(struct session_cursor *c);

/* The name of the listener s was accepted on. */
const char *session_listener_name(const struct session *s);

/*
 * Render s as one JSON object for GET /connections, both legs' TCP_INFO read
 * now.  Returns the length written into buf (NUL-terminated).
 */
size_t session_render_json(struct session *s, char *buf, size_t size);

#endif
