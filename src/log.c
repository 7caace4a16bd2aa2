/*
 * log: leveled lines on stderr, "2026-11-25T12:00:00.123Z kaproxy[pid] level: text".
 */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "kaproxy/log.h"

/*
 * Written by a reload on the main thread while every worker reads it: an
 * atomic with relaxed order (a line printed at the old level during the swap
 * is harmless; a torn or raced read is not allowed).
 */
static atomic_int log_level = LOG_LEVEL_INFO;

void
log_set_level(enum log_level level)
{
	atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
}

static int
level_now(void)
{
	return atomic_load_explicit(&log_level, memory_order_relaxed);
}

int
log_debug_enabled(void)
{
	return level_now() >= LOG_LEVEL_DEBUG;
}

static void
log_vline(const char *label, int errnum, const char *fmt, va_list ap)
{
	char line[1024];
	struct timeval tv;
	struct tm tm;
	size_t len;
	int n;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	len = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(line + len, sizeof(line) - len, ".%03ldZ kaproxy[%ld] %s: ",
	    (long)(tv.tv_usec / 1000), (long)getpid(), label);
	if (n > 0)
		len += (size_t)n < sizeof(line) - len ? (size_t)n : sizeof(line) - len - 1;
	n = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
	if (n > 0)
		len += (size_t)n < sizeof(line) - len ? (size_t)n : sizeof(line) - len - 1;
	if (errnum != 0 && len < sizeof(line) - 1) {
		n = snprintf(line + len, sizeof(line) - len, ": %s", strerror(errnum));
		if (n > 0)
			len += (size_t)n < sizeof(line) - len ? (size_t)n : sizeof(line) - len - 1;
	}
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	line[len++] = '\n';
	/* One write per line, so concurrent writers never interleave a line. */
	if (write(STDERR_FILENO, line, len) < 0) {
		/* stderr gone: nowhere left to report it. */
	}
}

#define LOG_BODY(level, label, errnum)                  \
	do {                                            \
		va_list ap;                             \
		if (level_now() < (level))              \
			return;                         \
		va_start(ap, fmt);                      \
		log_vline((label), (errnum), fmt, ap);  \
		va_end(ap);                             \
	} while (0)

void
log_warn(const char *fmt, ...)
{
	int saved = errno;

	LOG_BODY(LOG_LEVEL_WARN, "warn", saved);
	errno = saved;
}

void
log_warnx(const char *fmt, ...)
{
	LOG_BODY(LOG_LEVEL_WARN, "warn", 0);
}

void
log_errorx(const char *fmt, ...)
{
	LOG_BODY(LOG_LEVEL_ERROR, "error", 0);
}

void
log_info(const char *fmt, ...)
{
	LOG_BODY(LOG_LEVEL_INFO, "info", 0);
}

void
log_debug(const char *fmt, ...)
{
	LOG_BODY(LOG_LEVEL_DEBUG, "debug", 0);
}

void
log_fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vline("fatal", 0, fmt, ap);
	va_end(ap);
	exit(1);
}
