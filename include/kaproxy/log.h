/*
 * log: leveled, line-oriented diagnostics on stderr.  One line per event;
 * nothing here is called per byte.  log_warn adds the errno text.
 */
#ifndef KAPROXY_LOG_H
#define KAPROXY_LOG_H

#include "kaproxy/config.h"

/* Set the most verbose level that is printed (default info). */
void log_set_level(enum log_level level);

/* True when a debug line would be printed: guards costly argument building. */
int log_debug_enabled(void);

void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_errorx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Start-up only: print and exit(1). */
void log_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
