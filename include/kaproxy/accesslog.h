/*
 * accesslog: one JSON object per line per closed connection, rendered into
 * a fixed buffer and written with a single write(2).
 */
#ifndef KAPROXY_ACCESSLOG_H
#define KAPROXY_ACCESSLOG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "kaproxy/reason.h"
#include "kaproxy/sockopt.h"

#define ACCESSLOG_LINE_MAX 2048

struct access_record {
	bool progress;                /* "event":"progress": still open, no close_reason */
	uint64_t ts_ms;               /* wall clock at close, ms since the epoch */
	uint64_t id;
	const char *listener;
	const struct sockaddr *client;
	const char *upstream;         /* endpoint text, "" when none was tried */
	uint64_t duration_ms;
	uint64_t bytes_from_client;
	uint64_t bytes_to_client;
	enum close_reason reason;
	enum teardown teardown;
	int err;                      /* errno behind the reason, 0 for none */
	int64_t detect_ms;            /* -1 when not a timeout */
	const char *peer_state;       /* with detect_ms: "silent" or "not_reading" */
	int64_t stalled_ms;           /* not_reading: how long its window stayed shut, else -1 */
	const struct tcp_snapshot *client_tcp;   /* NULL when the leg had no socket */
	const struct tcp_snapshot *upstream_tcp;
};

/*
 * Open the access log: NULL means off, "-" standard output, else a file
 * opened for append.  Returns 0 or -1 (logged).  Remembers the path for
 * accesslog_reopen.
 */
int accesslog_open(const char *path);

/*
 * accesslog_open in two steps, for a reload that must change everything or
 * nothing: prepare opens the new destination (0 when it is unchanged, 1 when
 * it will change, -1 logged), commit installs it, abort drops it.  Commit
 * closes the file it replaces (never standard output) once no thread can
 * still be writing a line to it: a reload keeps no descriptor.
 */
int accesslog_prepare(const char *path);
void accesslog_commit(void);
void accesslog_abort(void);

/*
 * Reopen the file at the same path (SIGUSR1, after rotation), under the same
 * descriptor number; returns 0 (logged at info) or -1 (logged, the old file
 * kept).
 */
int accesslog_reopen(void);

/* True when lines are being written (access_log is not off). */
int accesslog_enabled(void);

/* Close the log (at exit; lines written after it are dropped). */
void accesslog_close(void);

/* Write one record's line, if the log is on. */
void accesslog_write(const struct access_record *rec);

/*
 * Render rec as one JSON line (with the newline) into buf.  Returns the
 * length; a line that would not fit is cut at a field boundary and closed.
 */
size_t accesslog_render(const struct access_record *rec, char *buf, size_t size);

#endif
