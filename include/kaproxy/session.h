/*
 * session: one proxied connection.  Two legs (client, upstream), the
 * upstream connect with failover, the byte pump in both directions (pump.h),
 * dead-peer teardown and the access-log record.
 *
 * A session knows nothing of listeners or workers: what it needs from the
 * listener that accepted it comes in a struct session_origin, and the
 * sessions of one loop are kept in a struct session_set, both owned here.
 */
#ifndef KAPROXY_SESSION_H
#define KAPROXY_SESSION_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "kaproxy/config.h"
#include "kaproxy/endpoint.h"
#include "kaproxy/reason.h"
#include "kaproxy/sockopt.h"

struct event_base;
struct listener_stats;
struct pump_pool;
struct recheck_table;
struct session;
struct session_cursor;
struct session_recheck;

/* Close records a set keeps for GET /closed, the newest overwriting the oldest. */
#define SESSION_CLOSED_MAX 64

/*
 * What GET /closed shows of an ended session: a copy made once, where
 * session_close writes the access-log record, into the set's fixed ring.
 */
struct session_closed {
	uint64_t id;
	uint64_t ts_ms;                      /* wall clock, when it closed */
	uint64_t duration_ms;
	uint64_t bytes_from_client;
	uint64_t bytes_to_client;
	int64_t detect_ms;                   /* -1 unless a *_timeout could be timed */
	struct sockaddr_in6 client;          /* also holds a sockaddr_in */
	uint8_t reason;                      /* enum close_reason */
	uint8_t teardown;                    /* enum teardown */
	uint16_t worker;
	char listener[CONFIG_NAME_MAX];
	char upstream[ENDPOINT_TEXT_MAX];    /* "" when none was tried */
};

/*
 * The sessions of one event loop: the list, its count and the admin walks in
 * progress.  Only session_start adds to it and only a session's end removes
 * from it; on_empty(arg) runs each time the last session of the set ends.
 */
struct session_set {
	LIST_HEAD(, session) head;
	LIST_HEAD(, session_cursor) cursors;
	uint32_t count;
	uint64_t progress_ms;       /* monotonic time of the last progress sweep */
	uint64_t closed_total;      /* sessions ended; the ring holds the last of them */
	struct session_closed closed[SESSION_CLOSED_MAX]; /* at closed_total % MAX next */
	void (*on_empty)(void *arg);
	void *on_empty_arg;
	/*
	 * upstream_recheck_on_death: the process's suspect table (NULL: no
	 * rechecks), and this loop's upstream legs being re-probed, kept here
	 * rather than in each session.
	 */
	struct recheck_table *suspects;
	struct session_recheck *rechecks;
	uint32_t n_rechecks;
	uint32_t cap_rechecks;
};

/*
 * What the listener that accepted a session lends it for the session's whole
 * life: the loop, the pipe pool and set it lives in, the listener's config and
 * counters.  The lender keeps all of it valid until release(origin) has been
 * called for each session it started; release runs once per session, last.
 */
struct session_origin {
	struct event_base *base;
	struct pump_pool *pool;
	struct session_set *set;
	const struct listener_config *cfg;
	struct listener_stats *stats;
	unsigned worker_index;
	void (*release)(struct session_origin *origin);
};

/* An empty set; on_empty may be NULL. */
void session_set_init(struct session_set *set, void (*on_empty)(void *), void *arg);

/*
 * Take ownership of an accepted client socket fd (nonblocking) and start
 * connecting to the upstreams of origin's config, the first try at index
 * upstream_first.  Returns 0, or -1 with errno set (ENOMEM) and fd untouched.
 */
int session_start(struct session_origin *origin, int fd, const struct sockaddr *addr,
    socklen_t addrlen, uint64_t id, unsigned upstream_first);

/*
 * upstream_recheck_on_death.  session_set_recheck_start: re-probe the idle
 * upstream leg of every running session of set whose upstream is one of the
 * n addresses suspects (listeners with the key on): a short keepalive and
 * user timeout, its own policy saved.  Returns how many started.
 * session_set_recheck_poll: one TCP_INFO read per leg under recheck; a leg
 * that has received something since its recheck started, with no probe out,
 * gets its policy back and counts as alive (one whose peer is dead closes as
 * upstream_timeout through its own event, and counts as dead).  Returns how
 * many are still under recheck; call it every SESSION_RECHECK_POLL_MS while that is
 * not 0.  session_set_free_rechecks frees the list (the set's end).  All on
 * set's loop thread.
 */
#define SESSION_RECHECK_POLL_MS 100
unsigned session_set_recheck_start(struct session_set *set, const struct endpoint *suspects,
    size_t n);
unsigned session_set_recheck_poll(struct session_set *set);
void session_set_free_rechecks(struct session_set *set);

/* Close every session of set with reason (drain deadline, exit). */
void session_close_all(struct session_set *set, enum close_reason reason);

/*
 * A place in a set's list that stays valid while sessions end, so the admin
 * endpoint can walk a long list in steps with the loop running between
 * them.  Open, take sessions with next until NULL, close (also after a walk
 * that stopped early); all on the set's loop thread.
 */
struct session_cursor {
	LIST_ENTRY(session_cursor) entry;
	struct session *next;
};

void session_cursor_open(struct session_set *set, struct session_cursor *c);
struct session *session_cursor_next(struct session_cursor *c);
void session_cursor_close(struct session_cursor *c);

/* The name of the listener s was accepted on. */
const char *session_listener_name(const struct session *s);

/*
 * What GET /connections shows of a session: a copy, with no pointer into the
 * session or its config, so it can be rendered on another thread after the
 * session has ended.  Taking it costs two TCP_INFO reads and a copy; the
 * formatting is left to whoever renders it.
 */
struct session_view {
	uint64_t id;
	uint64_t age_ms;
	uint64_t idle_ms;
	uint64_t bytes_from_client;
	uint64_t bytes_to_client;
	struct sockaddr_storage client;
	struct tcp_snapshot tcp[2];          /* by enum side */
	bool have_tcp[2];
	struct leg_policy policy[2];         /* read back from each leg's socket */
	bool have_policy[2];
	const char *state;                   /* a static string */
	unsigned worker;
	char listener[CONFIG_NAME_MAX];
	char upstream[ENDPOINT_TEXT_MAX];
};

/*
 * A reload changed the keepalive / user-timeout policy of the listener on
 * listen: set client and upstream on both legs of every live session of
 * set that came in on that address (under this or an earlier generation).
 * Returns how many sessions were changed.  On set's loop thread.
 */
unsigned session_set_apply_policy(struct session_set *set, const struct endpoint *listen,
    const struct leg_policy *client, const struct leg_policy *upstream);

/*
 * log_interval: write an "event":"progress" record for each running session
 * of set whose age passed a multiple of its listener's log_interval since the
 * last call.  Called about once a second from set's loop; no state per
 * session, so it costs an idle connection nothing.
 */
void session_set_progress(struct session_set *set);

/*
 * Close the session of set with this id on request (close_reason admin):
 * both peers get RST, or with fin a FIN.  Returns 1 when it was closed, 0
 * when set has no such session, -1 when it is already closing.  On set's
 * loop thread.
 */
int session_set_close_id(struct session_set *set, uint64_t id, bool fin);

/*
 * The i-th most recent close record of set (0 the newest), or NULL past the
 * ones it holds.  On set's loop thread.
 */
const struct session_closed *session_set_closed_at(const struct session_set *set, unsigned i);

/* Render c as one JSON object; returns the length written into buf (NUL-terminated). */
size_t session_closed_json(const struct session_closed *c, char *buf, size_t size);

/* Fill v from s, both legs' TCP_INFO read now; on s's loop thread. */
void session_view(struct session *s, struct session_view *v);

/* Render v as one JSON object; returns the length written into buf (NUL-terminated). */
size_t session_view_json(const struct session_view *v, char *buf, size_t size);

#endif
