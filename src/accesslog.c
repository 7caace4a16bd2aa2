/*
 * accesslog: the JSON line per closed connection.  Rendered with a handful
 * of bounded appends into a fixed buffer; no allocation.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kaproxy/accesslog.h"
#include "kaproxy/endpoint.h"
#include "kaproxy/json.h"
#include "kaproxy/log.h"

/*
 * Workers write lines from their own threads.  Each line is written under
 * the read side of log_lock, with log_fd read inside it; installing another
 * file takes the write side to swap log_fd, and the file it replaces is
 * closed only after that: no thread can then be writing to the old number,
 * or about to (once closed, the number may be reused by a socket, and a line
 * must never land there).  Readers share the lock, so workers never wait for
 * one another, only for the instant the swap holds it.
 */
static pthread_rwlock_t log_lock = PTHREAD_RWLOCK_INITIALIZER;
static atomic_int log_fd = -1;
static atomic_bool log_failing;  /* the last write failed or was cut short */
static char *log_path;      /* NULL for stdout or off */
static char *log_spec;      /* as configured: NULL (off), "-" or a path */

static int
same_spec(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/*
 * Make fd (or -1) the log's, and close the file it replaces: no descriptor
 * is kept per change.  Standard output is never closed.
 */
static void
install(int fd)
{
	int old;

	/* Cannot fail: a default lock, never taken twice by one thread. */
	pthread_rwlock_wrlock(&log_lock);
	old = atomic_exchange(&log_fd, fd);
	pthread_rwlock_unlock(&log_lock);
	if (old > STDERR_FILENO && old != fd)
		close(old);
}

/* Opened by accesslog_prepare, installed by accesslog_commit. */
static struct {
	bool ready;
	int fd;
	char *path, *spec;
} pending = { .fd = -1 };

int
accesslog_prepare(const char *path)
{
	accesslog_abort();
	if (same_spec(path, log_spec))
		return 0;       /* nothing to install */
	if (path != NULL && (pending.spec = strdup(path)) == NULL) {
		log_warn("access_log");
		return -1;
	}
	if (path != NULL && strcmp(path, "-") == 0) {
		pending.fd = STDOUT_FILENO;
	} else if (path != NULL) {
		pending.fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (pending.fd == -1 || (pending.path = strdup(path)) == NULL) {
			log_warn("access_log %s", path);
			accesslog_abort();
			return -1;
		}
	}
	pending.ready = true;
	return 1;
}

void
accesslog_commit(void)
{
	if (!pending.ready)
		return;
	install(pending.fd);
	free(log_path);
	free(log_spec);
	log_path = pending.path;
	log_spec = pending.spec;
	pending.fd = -1;
	pending.path = pending.spec = NULL;
	pending.ready = false;
}

void
accesslog_abort(void)
{
	if (pending.fd > STDERR_FILENO)
		close(pending.fd);
	free(pending.path);
	free(pending.spec);
	pending.fd = -1;
	pending.path = pending.spec = NULL;
	pending.ready = false;
}

int
accesslog_open(const char *path)
{
	if (accesslog_prepare(path) == -1)
		return -1;
	accesslog_commit();
	return 0;
}

int
accesslog_reopen(void)
{
	int fd;

	if (log_path == NULL)
		return 0;
	fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd == -1) {
		log_warn("access_log %s: reopen (keeping the old file)", log_path);
		return -1;
	}
	/*
	 * dup2 swaps the file behind the same number atomically: a line being
	 * written goes whole to the old file or the new, never to a closed fd.
	 */
	if (dup2(fd, atomic_load(&log_fd)) == -1) {
		log_warn("access_log %s: dup2", log_path);
		close(fd);
		return -1;
	}
	close(fd);
	log_info("access_log %s: reopened", log_path);
	return 0;
}

int
accesslog_enabled(void)
{
	return atomic_load_explicit(&log_fd, memory_order_relaxed) >= 0;
}

void
accesslog_close(void)
{
	install(-1);
	free(log_path);
	free(log_spec);
	log_path = log_spec = NULL;
}

void
accesslog_write(const struct access_record *rec)
{
	char line[ACCESSLOG_LINE_MAX];
	size_t len;
	ssize_t n = -1;
	int fd, err = 0;

	if (!accesslog_enabled())
		return;
	len = accesslog_render(rec, line, sizeof(line));
	/*
	 * O_APPEND and one write per line: lines from several workers never
	 * mix.  So the rest of a short write (a full disk) is not retried: it
	 * could land after another worker's line.  A failing log is reported
	 * once when it starts failing and once when it works again, not per line.
	 * (The read lock cannot fail: a default lock, never taken twice.)
	 */
	pthread_rwlock_rdlock(&log_lock);
	fd = atomic_load_explicit(&log_fd, memory_order_relaxed);
	if (fd >= 0 && (n = write(fd, line, len)) == -1)
		err = errno;
	pthread_rwlock_unlock(&log_lock);
	if (fd < 0)
		return;         /* turned off since the check above */
	errno = err;
	if (n == (ssize_t)len) {
		if (atomic_exchange_explicit(&log_failing, false, memory_order_relaxed))
			log_info("access_log: lines are written again");
		return;
	}
	if (n >= 0)
		errno = ENOSPC;
	if (!atomic_exchange_explicit(&log_failing, true, memory_order_relaxed))
		log_warn("access_log: write of %zu bytes %s; lines are lost until it works again",
		    len, n >= 0 ? "cut short" : "failed");
}

size_t
accesslog_render(const struct access_record *rec, char *buf, size_t size)
{
	char addr[ENDPOINT_TEXT_MAX];
	time_t secs = (time_t)(rec->ts_ms / 1000);
	struct tm tm;
	size_t len = 0;

	/* Leave room for the closing "}\n" whatever happens. */
	size -= 2;
	gmtime_r(&secs, &tm);
	json_append(buf, size, &len,
	    "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03uZ\",\"event\":\"%s\",\"id\":%" PRIu64,
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	    (unsigned)(rec->ts_ms % 1000), rec->progress ? "progress" : "close", rec->id);
	json_append(buf, size, &len, ",\"listener\":\"");
	json_escape(buf, size, &len, rec->listener);
	endpoint_format(rec->client, addr, sizeof(addr));
	json_append(buf, size, &len, "\",\"client\":\"%s\"", addr);
	json_append(buf, size, &len, ",\"upstream\":\"");
	json_escape(buf, size, &len, rec->upstream);
	json_append(buf, size, &len,
	    "\",\"duration_ms\":%" PRIu64 ",\"bytes_from_client\":%" PRIu64
	    ",\"bytes_to_client\":%" PRIu64,
	    rec->duration_ms, rec->bytes_from_client, rec->bytes_to_client);
	if (!rec->progress)
		json_append(buf, size, &len, ",\"close_reason\":\"%s\",\"teardown\":\"%s\"",
		    reason_name(rec->reason), reason_teardown_name(rec->teardown));
	if (rec->err != 0) {
		json_append(buf, size, &len, ",\"detail\":\"");
		json_escape(buf, size, &len, strerror(rec->err));
		json_append(buf, size, &len, "\"");
	}
	if (rec->detect_ms >= 0)
		json_append(buf, size, &len, ",\"detect_ms\":%" PRId64 ",\"peer_state\":\"%s\"",
		    rec->detect_ms, rec->peer_state);
	if (rec->stalled_ms >= 0)
		json_append(buf, size, &len, ",\"stalled_ms\":%" PRId64, rec->stalled_ms);
	json_tcp_snapshot(buf, size, &len, "client_tcp", rec->client_tcp);
	json_tcp_snapshot(buf, size, &len, "upstream_tcp", rec->upstream_tcp);
	buf[len++] = '}';
	buf[len++] = '\n';
	buf[len] = '\0';
	return len;
}
