/*
 * worker: the event loop's shared state: config generations, the pipe pool.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kaproxy/listener.h"
#include "kaproxy/log.h"
#include "kaproxy/worker.h"

int
worker_init(struct worker *w, struct event_base *base)
{
	memset(w, 0, sizeof(*w));
	w->base = base;
	LIST_INIT(&w->sessions);
	LIST_INIT(&w->listeners);
	LIST_INIT(&w->stats);
	w->next_session_id = 1;
	return 0;
}

void
worker_release(struct worker *w)
{
	listener_close_all(w);
	while (w->n_pipes > 0)
		worker_pipe_discard(w->pipes[--w->n_pipes]);
	if (w->gen != NULL && w->gen->refs == 0) {
		config_free(w->gen->cfg);
		free(w->gen);
	}
	w->gen = NULL;
	stats_free_all(&w->stats);
}

struct generation *
generation_new(struct config *cfg)
{
	struct generation *gen = calloc(1, sizeof(*gen));

	if (gen != NULL)
		gen->cfg = cfg;
	return gen;
}

void
generation_ref(struct generation *gen)
{
	gen->refs++;
}

void
generation_unref(struct worker *w, struct generation *gen)
{
	if (--gen->refs > 0 || gen == w->gen)
		return;
	config_free(gen->cfg);
	free(gen);
}

int
worker_pipe_get(struct worker *w, int fds[2])
{
	if (w->n_pipes > 0) {
		w->n_pipes--;
		fds[0] = w->pipes[w->n_pipes][0];
		fds[1] = w->pipes[w->n_pipes][1];
		return 0;
	}
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) == -1)
		return -1;
	/*
	 * A larger pipe moves more per splice (fewer syscalls per GB).  Its
	 * pages are only used while bytes sit in it; failing to grow it (an
	 * unprivileged pipe-max-size) just leaves the default.
	 */
	if (WORKER_PIPE_SIZE != 65536 &&
	    fcntl(fds[0], F_SETPIPE_SZ, WORKER_PIPE_SIZE) == -1 && errno != EPERM)
		log_warn("fcntl F_SETPIPE_SZ %d", WORKER_PIPE_SIZE);
	return 0;
}

void
worker_pipe_put(struct worker *w, int fds[2])
{
	if (w->n_pipes < WORKER_PIPE_POOL) {
		w->pipes[w->n_pipes][0] = fds[0];
		w->pipes[w->n_pipes][1] = fds[1];
		w->n_pipes++;
	} else {
		worker_pipe_discard(fds);
	}
	fds[0] = fds[1] = -1;
}

void
worker_pipe_discard(int fds[2])
{
	if (fds[0] >= 0)
		close(fds[0]);
	if (fds[1] >= 0)
		close(fds[1]);
	fds[0] = fds[1] = -1;
}

void
worker_session_gone(struct worker *w)
{
	w->n_sessions--;
	if (w->draining && w->n_sessions == 0 && w->on_drained != NULL)
		w->on_drained(w);
}
