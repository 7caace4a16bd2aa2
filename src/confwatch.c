/*
 * confwatch.c: reload_on_change.  Owns the inotify descriptor on the
 * configuration file's directory, the debounce timer of a burst of events,
 * and the decision whether the file's content differs from what the last
 * reload read; the reload itself is the caller's (the same one as SIGHUP's).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "kaproxy/clock.h"
#include "kaproxy/confwatch.h"
#include "kaproxy/log.h"

/* config_load refuses a file larger than 1 MiB: hashing past that tells
 * nothing more. */
#define PRINT_LIMIT (1024 * 1024 + 1)

/* Reads of the inotify descriptor per wake-up: a flood of events cannot hold
 * the loop; the descriptor stays readable and the rest comes next turn. */
#define READS_PER_WAKEUP 16

#define FNV_OFFSET 14695981039346656037ULL
#define FNV_PRIME 1099511628211ULL

#define WATCH_MASK (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | \
	IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

struct confwatch {
	char *path;                /* as given to -c */
	char *dir;                 /* what is watched: path's directory */
	const char *base;          /* path's last component, inside path */
	const struct confwatch_print *loaded;
	void (*changed)(void *arg);
	void *arg;
	int fd;                    /* inotify; -1 once the directory has gone */
	struct event *read_ev;
	struct event *timer;       /* the end of a burst's quiet period */
	bool burst;                /* the timer is armed for a burst since first_ms */
	uint64_t first_ms;
};

void
confwatch_print_file(const char *path, struct confwatch_print *out)
{
	unsigned char buf[16384];
	uint64_t hash = FNV_OFFSET, size = 0;
	ssize_t n;
	int fd;

	memset(out, 0, sizeof(*out));
	/* O_NONBLOCK: a FIFO put at the path must not stall the loop. */
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) == -1) {
		out->err = errno;
		return;
	}
	while (size < PRINT_LIMIT) {
		n = read(fd, buf, sizeof(buf) < PRINT_LIMIT - size ? sizeof(buf) : PRINT_LIMIT - size);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			out->err = errno;
			break;
		}
		if (n == 0)
			break;
		for (ssize_t i = 0; i < n; i++)
			hash = (hash ^ buf[i]) * FNV_PRIME;
		size += (uint64_t)n;
	}
	close(fd);
	if (out->err == 0) {
		out->size = size;
		out->hash = hash;
	}
}

bool
confwatch_print_equal(const struct confwatch_print *a, const struct confwatch_print *b)
{
	return a->err == b->err && a->size == b->size && a->hash == b->hash;
}

enum confwatch_event
confwatch_classify(const char *base, const char *name, uint32_t mask)
{
	/* Events were lost: any of them may have been the file's. */
	if (mask & IN_Q_OVERFLOW)
		return CONFWATCH_CHANGE;
	if (mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT | IN_IGNORED))
		return CONFWATCH_GONE;
	if (name == NULL || *name == '\0')
		return CONFWATCH_IGNORE;
	if (!(mask & (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE |
	    IN_ATTRIB)))
		return CONFWATCH_IGNORE;
	if (strcmp(name, base) == 0 || strcmp(name, CONFWATCH_K8S_DATA) == 0)
		return CONFWATCH_CHANGE;
	return CONFWATCH_IGNORE;
}

uint32_t
confwatch_delay_ms(uint64_t first_ms, uint64_t now_ms)
{
	uint64_t deadline = first_ms + CONFWATCH_MAX_DELAY_MS;

	if (now_ms >= deadline)
		return 0;
	return deadline - now_ms < CONFWATCH_QUIET_MS ? (uint32_t)(deadline - now_ms)
	    : CONFWATCH_QUIET_MS;
}

/* The directory has gone, or its descriptor failed: no more events. */
static void
stop_watching(struct confwatch *w)
{
	if (w->read_ev != NULL)
		event_free(w->read_ev);
	w->read_ev = NULL;
	if (w->timer != NULL)
		evtimer_del(w->timer);
	w->burst = false;
	if (w->fd != -1)
		close(w->fd);
	w->fd = -1;
}

static void
quiet_cb(evutil_socket_t fd, short what, void *arg)
{
	struct confwatch *w = arg;
	struct confwatch_print now;

	(void)fd;
	(void)what;
	w->burst = false;
	confwatch_print_file(w->path, &now);
	if (confwatch_print_equal(&now, w->loaded)) {
		log_debug("%s: changed on disk, same content as the last reload read: no reload",
		    w->path);
		return;
	}
	log_info("%s changed on disk: reloading", w->path);
	w->changed(w->arg);
}

/* An event that matters: (re)start the quiet period, within the burst's bound. */
static void
burst_event(struct confwatch *w)
{
	uint64_t now = clock_monotonic_ms();
	uint32_t delay;
	struct timeval tv;

	if (!w->burst) {
		w->burst = true;
		w->first_ms = now;
	}
	delay = confwatch_delay_ms(w->first_ms, now);
	tv.tv_sec = delay / 1000;
	tv.tv_usec = (delay % 1000) * 1000;
	if (evtimer_add(w->timer, &tv) == -1)
		log_warnx("reload_on_change: cannot arm the timer for %s", w->path);
}

static void
read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct confwatch *w = arg;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	const struct inotify_event *ev;
	bool change = false, gone = false;
	ssize_t n;

	(void)what;
	for (int reads = 0; reads < READS_PER_WAKEUP && !gone; reads++) {
		n = read(fd, buf, sizeof(buf));
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			break;
		if (n <= 0) {
			log_warn("reload_on_change: reading the inotify events of %s", w->dir);
			gone = true;
			break;
		}
		for (char *p = buf; p < buf + n; p += sizeof(*ev) + ev->len) {
			ev = (const struct inotify_event *)p;
			switch (confwatch_classify(w->base, ev->len > 0 ? ev->name : NULL, ev->mask)) {
			case CONFWATCH_CHANGE:
				change = true;
				break;
			case CONFWATCH_GONE:
				gone = true;
				break;
			case CONFWATCH_IGNORE:
				break;
			}
		}
	}
	if (gone) {
		stop_watching(w);
		log_warnx("reload_on_change: %s is gone (removed, moved or unmounted): no longer "
		    "watching it; a reload (SIGHUP) watches it again", w->dir);
		return;
	}
	if (change)
		burst_event(w);
}

struct confwatch *
confwatch_new(struct event_base *base, const char *path, const struct confwatch_print *loaded,
    void (*changed)(void *arg), void *arg)
{
	struct confwatch *w;
	const char *slash;
	char *real = NULL;

	if ((w = calloc(1, sizeof(*w))) == NULL) {
		log_warn("reload_on_change: watching %s", path);
		return NULL;
	}
	w->fd = -1;
	w->loaded = loaded;
	w->changed = changed;
	w->arg = arg;
	if ((w->path = strdup(path)) == NULL)
		goto oom;
	slash = strrchr(w->path, '/');
	if (slash == NULL) {
		w->dir = strdup(".");
		w->base = w->path;
	} else {
		/* "/kaproxy.ini" is in "/", "a//b.ini" in "a" */
		size_t len = (size_t)(slash - w->path);

		while (len > 1 && w->path[len - 1] == '/')
			len--;
		w->dir = strndup(w->path, len == 0 ? 1 : len);
		w->base = slash + 1;
	}
	if (w->dir == NULL)
		goto oom;
	if ((w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) == -1) {
		log_warn("reload_on_change: inotify_init1 for %s", w->dir);
		goto err;
	}
	if (inotify_add_watch(w->fd, w->dir, WATCH_MASK) == -1) {
		log_warn("reload_on_change: cannot watch directory %s", w->dir);
		goto err;
	}
	w->read_ev = event_new(base, w->fd, EV_READ | EV_PERSIST, read_cb, w);
	w->timer = evtimer_new(base, quiet_cb, w);
	if (w->read_ev == NULL || w->timer == NULL || event_add(w->read_ev, NULL) == -1) {
		log_warnx("reload_on_change: cannot add the events watching %s", w->dir);
		goto err;
	}
	real = realpath(w->dir, NULL);
	log_info("reload_on_change: watching %s for changes to %s", real != NULL ? real : w->dir,
	    w->base);
	free(real);
	return w;
oom:
	log_warn("reload_on_change: watching %s", path);
err:
	confwatch_free(w);
	return NULL;
}

bool
confwatch_watching(const struct confwatch *w)
{
	return w != NULL && w->fd != -1;
}

void
confwatch_free(struct confwatch *w)
{
	if (w == NULL)
		return;
	stop_watching(w);
	if (w->timer != NULL)
		event_free(w->timer);
	free(w->dir);
	free(w->path);
	free(w);
}
