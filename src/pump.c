/*
 * pump: one direction's bytes, socket -> pipe -> socket with splice(2), so
 * they never enter user space; backpressure, half-close, the per-call read
 * budget, and the pool the pipes come from.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kaproxy/log.h"
#include "kaproxy/pump.h"

/* The default pipe capacity: a pipe of this size needs no F_SETPIPE_SZ. */
#define PIPE_DEFAULT_SIZE 65536

void
pump_pool_init(struct pump_pool *pool, unsigned pipe_size)
{
	pool->pipe_size = pipe_size;
	pool->n = 0;
}

static void
pipe_close(int fds[2])
{
	if (fds[0] >= 0)
		close(fds[0]);
	if (fds[1] >= 0)
		close(fds[1]);
	fds[0] = fds[1] = -1;
}

void
pump_pool_release(struct pump_pool *pool)
{
	while (pool->n > 0)
		pipe_close(pool->pipes[--pool->n]);
}

/* Take a pipe from the pool or make one; 0, or -1 with errno (EMFILE, ENFILE). */
static int
pool_get(struct pump_pool *pool, int fds[2])
{
	if (pool->n > 0) {
		pool->n--;
		fds[0] = pool->pipes[pool->n][0];
		fds[1] = pool->pipes[pool->n][1];
		return 0;
	}
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) == -1)
		return -1;
	/*
	 * A larger pipe moves more per splice (fewer syscalls per GB).  Its
	 * pages are only used while bytes sit in it; failing to grow it (an
	 * unprivileged pipe-max-size) just leaves the default.
	 */
	if (pool->pipe_size != PIPE_DEFAULT_SIZE &&
	    fcntl(fds[0], F_SETPIPE_SZ, (int)pool->pipe_size) == -1 && errno != EPERM)
		log_warn("fcntl F_SETPIPE_SZ %u", pool->pipe_size);
	return 0;
}

/* Keep an empty pipe for reuse, or close it when the pool is full. */
static void
pool_put(struct pump_pool *pool, int fds[2])
{
	if (pool->n < PUMP_POOL_PIPES) {
		pool->pipes[pool->n][0] = fds[0];
		pool->pipes[pool->n][1] = fds[1];
		pool->n++;
		fds[0] = fds[1] = -1;
	} else {
		pipe_close(fds);
	}
}

void
pump_end_init(struct pump_end *end, int fd)
{
	end->fd = fd;
	end->pipe[0] = end->pipe[1] = -1;
	end->pipe_len = 0;
	end->eof = 0;
	end->shut = 0;
}

void
pump_end_release(struct pump_pool *pool, struct pump_end *end)
{
	if (end->pipe[0] < 0)
		return;
	if (end->pipe_len == 0)
		pool_put(pool, end->pipe);
	else
		pipe_close(end->pipe);
	end->pipe_len = 0;
}

static struct pump_result
stopped(struct pump_result r, enum pump_status status, int err)
{
	r.status = (uint8_t)status;
	r.err = err;
	return r;
}

/*
 * Send what src's pipe holds on dst until it is empty (0) or dst would
 * block (1); -1 with errno set when dst failed.
 */
static int
pipe_flush(struct pump_end *src, struct pump_end *dst)
{
	ssize_t n;

	while (src->pipe_len > 0) {
		n = splice(src->pipe[0], NULL, dst->fd, NULL, src->pipe_len,
		    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n > 0) {
			src->pipe_len -= (uint32_t)n;
			continue;
		}
		if (n < 0 && errno == EAGAIN)
			return 1;
		if (n == 0)
			errno = EPIPE;
		return -1;
	}
	return 0;
}

/* pump_finish() continuing r, the result so far. */
static struct pump_result
finish(struct pump_result r, struct pump_end *src, struct pump_end *dst)
{
	switch (pipe_flush(src, dst)) {
	case 1:
		return stopped(r, PUMP_WAIT, 0);   /* dst's write edge resumes us */
	case -1:
		return stopped(r, PUMP_DST_FAILED, errno);
	}
	if (!dst->shut) {
		dst->shut = 1;
		/* ENOTCONN: the peer is already gone, and reading it will say how. */
		if (shutdown(dst->fd, SHUT_WR) == -1 && errno != ENOTCONN)
			return stopped(r, PUMP_DST_FAILED, errno);
	}
	return stopped(r, PUMP_DONE, 0);
}

struct pump_result
pump_finish(struct pump_end *src, struct pump_end *dst)
{
	struct pump_result r = { 0 };

	return finish(r, src, dst);
}

struct pump_result
pump_run(struct pump_pool *pool, struct pump_end *src, struct pump_end *dst)
{
	struct pump_result r = { 0 };
	unsigned budget = PUMP_BUDGET;
	ssize_t n;

	for (;;) {
		switch (pipe_flush(src, dst)) {
		case 1:
			return stopped(r, PUMP_WAIT, 0);
		case -1:
			return stopped(r, PUMP_DST_FAILED, errno);
		}
		if (src->eof)
			return finish(r, src, dst);
		/*
		 * Edge-triggered readiness does not fire again for bytes already
		 * waiting: the caller re-runs a direction that yields.
		 */
		if (budget-- == 0)
			return stopped(r, PUMP_YIELDED, 0);
		if (src->pipe[0] < 0 && pool_get(pool, src->pipe) == -1)
			return stopped(r, PUMP_NO_PIPE, errno);
		n = splice(src->fd, NULL, src->pipe[1], NULL, pool->pipe_size,
		    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n > 0) {
			src->pipe_len = (uint32_t)n;
			r.moved += (size_t)n;
			continue;
		}
		if (n == 0) {
			src->eof = 1;
			r.fin = 1;
			pool_put(pool, src->pipe);
			continue;
		}
		if (errno == EAGAIN) {
			/* Nothing in flight: the pipe goes back, idle costs no buffer. */
			pool_put(pool, src->pipe);
			return stopped(r, PUMP_WAIT, 0);
		}
		return stopped(r, PUMP_SRC_FAILED, errno);
	}
}
