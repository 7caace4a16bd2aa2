/*
 * confwatch: reload_on_change, a watch on the configuration file's directory.
 *
 * The directory is watched, not the file: an editor writes a new file and
 * renames it over the old one, and a Kubernetes ConfigMap volume swaps its
 * `..data` symlink, so the file's inode changes with every update.  Events
 * for the file's name (and for `..data`) start a quiet period; when it ends,
 * the file is read and its fingerprint compared with that of the content the
 * last reload read, and only a different one calls back for a reload, so a
 * touch, or a rewrite with the same bytes, does not reload.
 *
 * Everything runs on one event loop (the main thread's); nothing here is on
 * a connection's path.
 */
#ifndef KAPROXY_CONFWATCH_H
#define KAPROXY_CONFWATCH_H

#include <stdbool.h>
#include <stdint.h>

struct event_base;

/* After the last event of a burst, how long the directory must stay quiet
 * before the file is read; and the longest a burst can put that off. */
#define CONFWATCH_QUIET_MS 300
#define CONFWATCH_MAX_DELAY_MS 2000

/* The name a Kubernetes ConfigMap (kubelet's atomic writer) renames over to
 * publish a new version: the config path resolves through it. */
#define CONFWATCH_K8S_DATA "..data"

/* What a file held, as far as a reload is concerned: equal prints mean the
 * same bytes (a 64-bit FNV-1a hash and the size), or the same error. */
struct confwatch_print {
	int err;          /* errno of opening or reading it, 0 when read */
	uint64_t size;
	uint64_t hash;
};

/* Take path's print as it is now (following symlinks); never fails: a file
 * that cannot be read has a print too (its errno). */
void confwatch_print_file(const char *path, struct confwatch_print *out);

bool confwatch_print_equal(const struct confwatch_print *a, const struct confwatch_print *b);

enum confwatch_event {
	CONFWATCH_IGNORE,   /* another file of the directory */
	CONFWATCH_CHANGE,   /* what the path resolves to may have changed */
	CONFWATCH_GONE,     /* the directory itself was removed or moved: the watch is over */
};

/*
 * Classify one inotify event (its mask, and name, NULL or empty for the
 * directory itself) for a config file called base in the watched directory.
 */
enum confwatch_event confwatch_classify(const char *base, const char *name, uint32_t mask);

/*
 * The debounce: a burst of events that started at first_ms is read once the
 * directory has been quiet for CONFWATCH_QUIET_MS, but no later than
 * CONFWATCH_MAX_DELAY_MS after first_ms.  Given the time of the latest event
 * (now_ms >= first_ms), how long to wait from now.
 */
uint32_t confwatch_delay_ms(uint64_t first_ms, uint64_t now_ms);

struct confwatch;

/*
 * Watch the directory of path (relative paths are taken from the working
 * directory, which kaproxy never changes) on base.  When a burst of events is
 * over and the file's print differs from *loaded, changed(arg) runs on base's
 * loop.  loaded stays the caller's: its record of the content the last reload
 * read, updated (confwatch_print_file) before each reload reads the file.
 * Returns NULL when the directory cannot be watched (logged, with the errno).
 */
struct confwatch *confwatch_new(struct event_base *base, const char *path,
    const struct confwatch_print *loaded, void (*changed)(void *arg), void *arg);

/* False once the directory has gone (removed, moved, unmounted): the watch
 * has stopped and said so; a new one is needed. */
bool confwatch_watching(const struct confwatch *w);

/* Stop watching and free; confwatch_free(NULL) does nothing. */
void confwatch_free(struct confwatch *w);

#endif
