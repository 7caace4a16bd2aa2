/*
 * recheck: the process-wide table of suspect upstream addresses, the wake-up
 * of every worker when one is marked, and the trial connects that clear it.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "kaproxy/clock.h"
#include "kaproxy/log.h"
#include "kaproxy/recheck.h"

/*
 * A spinlock, not a mutex: the table is zero-initialised with its
 * process_shared, and each holder only copies a few entries.
 */
static void
table_lock(struct recheck_table *t)
{
	while (atomic_flag_test_and_set_explicit(&t->lock, memory_order_acquire))
		;
}

static void
table_unlock(struct recheck_table *t)
{
	atomic_flag_clear_explicit(&t->lock, memory_order_release);
}

static struct recheck_suspect *
find(struct recheck_table *t, const struct endpoint *ep)
{
	size_t i;

	for (i = 0; i < RECHECK_SUSPECTS_MAX; i++)
		if (t->suspects[i].seq != 0 && endpoint_equal(&t->suspects[i].ep, ep))
			return &t->suspects[i];
	return NULL;
}

void
recheck_attach(struct recheck_table *t, unsigned index, struct event *wake)
{
	if (index >= RECHECK_WORKERS_MAX)
		return;
	table_lock(t);
	t->wake[index] = wake;
	table_unlock(t);
}

unsigned
recheck_count(const struct recheck_table *t)
{
	return __atomic_load_n(&t->n_suspect, __ATOMIC_RELAXED);
}

bool
recheck_mark(struct recheck_table *t, const struct endpoint *ep, uint32_t connect_timeout_ms,
    bool trial)
{
	struct recheck_suspect *slot;
	size_t i;

	table_lock(t);
	if ((slot = find(t, ep)) != NULL) {
		slot->trial = slot->trial || trial;
		table_unlock(t);
		return false;
	}
	for (i = 0; i < RECHECK_SUSPECTS_MAX && slot == NULL; i++)
		if (t->suspects[i].seq == 0)
			slot = &t->suspects[i];
	if (slot == NULL) {
		table_unlock(t);
		log_warnx("upstream %s: not marked suspect: %d addresses already are", ep->text,
		    RECHECK_SUSPECTS_MAX);
		return false;
	}
	slot->ep = *ep;
	slot->seq = ++t->seq;
	slot->next_trial_ms = clock_monotonic_ms() + RECHECK_TRIAL_EVERY_MS;
	slot->connect_timeout_ms = connect_timeout_ms;
	slot->trial = trial;
	slot->trial_busy = false;
	__atomic_add_fetch(&t->n_suspect, 1, __ATOMIC_RELAXED);
	/*
	 * Under the lock, so a worker withdrawing its event waits for this.
	 * event_active takes each base's own lock; no worker holds a base lock
	 * while taking this one (callbacks run with the base unlocked).
	 */
	for (i = 0; i < RECHECK_WORKERS_MAX; i++)
		if (t->wake[i] != NULL)
			event_active(t->wake[i], EV_READ, 0);
	table_unlock(t);
	log_info("upstream %s: suspect: re-probing its idle connections", ep->text);
	return true;
}

static void
clear_slot(struct recheck_table *t, struct recheck_suspect *s)
{
	s->seq = 0;
	__atomic_sub_fetch(&t->n_suspect, 1, __ATOMIC_RELAXED);
}

void
recheck_clear(struct recheck_table *t, const struct endpoint *ep)
{
	struct recheck_suspect *s;

	if (recheck_count(t) == 0)
		return;
	table_lock(t);
	s = find(t, ep);
	if (s != NULL)
		clear_slot(t, s);
	table_unlock(t);
	if (s != NULL)
		log_info("upstream %s: a connect succeeded: no longer suspect", ep->text);
}

bool
recheck_is_suspect(struct recheck_table *t, const struct endpoint *ep)
{
	bool suspect;

	if (recheck_count(t) == 0)
		return false;
	table_lock(t);
	suspect = find(t, ep) != NULL;
	table_unlock(t);
	return suspect;
}

bool
recheck_avoid(struct recheck_table *t, const struct endpoint *ep)
{
	struct recheck_suspect *s;

	if (recheck_count(t) == 0)
		return false;
	table_lock(t);
	s = find(t, ep);
	if (s != NULL)
		s->trial = true;
	table_unlock(t);
	return s != NULL;
}

size_t
recheck_marked_since(struct recheck_table *t, uint64_t *seen, struct endpoint *out, size_t max)
{
	size_t i, n = 0;

	table_lock(t);
	for (i = 0; i < RECHECK_SUSPECTS_MAX && n < max; i++)
		if (t->suspects[i].seq > *seen)
			out[n++] = t->suspects[i].ep;
	*seen = t->seq;
	table_unlock(t);
	return n;
}

void
recheck_trial_init(struct recheck_trial *trial, struct recheck_table *table)
{
	memset(trial, 0, sizeof(*trial));
	trial->table = table;
	trial->fd = -1;
}

/* The trial connect ended: ok clears the address, else it is due again later. */
static void
trial_end(struct recheck_trial *trial, bool ok)
{
	struct recheck_table *t = trial->table;
	struct recheck_suspect *s = &t->suspects[trial->slot];
	char text[ENDPOINT_TEXT_MAX];
	bool cleared = false;

	event_del(&trial->ev);
	close(trial->fd);
	trial->fd = -1;
	table_lock(t);
	if (s->seq == trial->seq) {
		s->trial_busy = false;
		s->next_trial_ms = clock_monotonic_ms() + RECHECK_TRIAL_EVERY_MS;
		if (ok) {
			memcpy(text, s->ep.text, sizeof(text));
			clear_slot(t, s);
			cleared = true;
		}
	}
	table_unlock(t);
	if (cleared)
		log_info("upstream %s: a trial connect succeeded: no longer suspect", text);
}

static void
trial_event(evutil_socket_t fd, short what, void *arg)
{
	struct recheck_trial *trial = arg;
	int err = ETIMEDOUT;
	socklen_t len = sizeof(err);

	if (!(what & EV_TIMEOUT) && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	trial_end(trial, err == 0);
}

void
recheck_trial_tick(struct recheck_trial *trial, struct event_base *base)
{
	struct recheck_table *t = trial->table;
	struct recheck_suspect *s = NULL;
	struct endpoint ep;
	struct timeval tv;
	uint64_t now;
	size_t i;
	int fd;

	if (trial->fd >= 0 || recheck_count(t) == 0)
		return;
	now = clock_monotonic_ms();
	table_lock(t);
	for (i = 0; i < RECHECK_SUSPECTS_MAX && s == NULL; i++)
		if (t->suspects[i].seq != 0 && t->suspects[i].trial && !t->suspects[i].trial_busy &&
		    t->suspects[i].next_trial_ms <= now)
			s = &t->suspects[i];
	if (s != NULL) {
		s->trial_busy = true;
		trial->slot = (unsigned)(s - t->suspects);
		trial->seq = s->seq;
		ep = s->ep;
		tv.tv_sec = (time_t)(s->connect_timeout_ms / 1000);
		tv.tv_usec = (suseconds_t)(s->connect_timeout_ms % 1000) * 1000;
	}
	table_unlock(t);
	if (s == NULL)
		return;
	fd = socket(ep.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		log_warn("upstream %s: trial connect: socket", ep.text);
		goto fail;
	}
	trial->fd = fd;
	/* Assigned first: trial_end deletes it whichever way the connect ends. */
	event_assign(&trial->ev, base, fd, EV_WRITE, trial_event, trial);
	if (connect(fd, (const struct sockaddr *)&ep.addr, ep.len) == 0) {
		trial_end(trial, true);
		return;
	}
	if (errno != EINPROGRESS) {
		log_debug("upstream %s: trial connect: %s", ep.text, strerror(errno));
		goto fail_fd;
	}
	if (event_add(&trial->ev, &tv) == 0)
		return;
	log_warn("upstream %s: trial connect: event", ep.text);
fail_fd:
	/* trial_end closes fd and makes the address due again. */
	trial_end(trial, false);
	return;
fail:
	table_lock(t);
	if (t->suspects[trial->slot].seq == trial->seq) {
		t->suspects[trial->slot].trial_busy = false;
		t->suspects[trial->slot].next_trial_ms = now + RECHECK_TRIAL_EVERY_MS;
	}
	table_unlock(t);
}

void
recheck_trial_cancel(struct recheck_trial *trial)
{
	if (trial->fd < 0)
		return;
	trial_end(trial, false);
}
