/*
 * pump: the byte pump of one direction, socket -> pipe -> socket with
 * splice(2), and the pool of pipes it borrows from.
 *
 * A direction runs from a source end to a destination end.  The source end
 * holds, only while bytes are in flight, a pipe with what was read from its
 * socket and not yet written to the destination's.  Backpressure: a
 * direction reads its source only when that pipe is empty, so at most one
 * pipe per direction is buffered beyond the kernel's socket buffers.
 * Half-close: the source's FIN becomes shutdown(SHUT_WR) on the destination
 * once the pipe is drained; the other direction is not touched.
 *
 * The pump knows sockets, pipes and errno, nothing about sessions: it says
 * what happened (struct pump_result) and the caller decides what follows.
 * Nothing here allocates or logs per byte.
 */
#ifndef KAPROXY_PUMP_H
#define KAPROXY_PUMP_H

#include <stddef.h>
#include <stdint.h>

/* Pipes a pool keeps for reuse. */
#define PUMP_POOL_PIPES 64

/*
 * Bytes a pipe may hold: the most one splice moves, and the per-direction
 * buffer bound.  256 KiB moved 10-30 % more than the 64 KiB default in bulk
 * runs here; its pages exist only while bytes sit in it.  (An unprivileged
 * user past pipe-user-pages-soft gets smaller pipes: still correct.)
 */
#ifndef PUMP_PIPE_SIZE
#define PUMP_PIPE_SIZE (256 * 1024)
#endif

/*
 * Reads one direction may do per pump_run() before yielding to other
 * connections sharing the loop.
 */
#define PUMP_BUDGET 16

/*
 * Pipes kept for reuse by one event loop; a direction holds one only while
 * bytes are in it.
 */
struct pump_pool {
	unsigned pipe_size;             /* bytes a pipe holds, and the most one read takes */
	unsigned n;                     /* pipes in the pool */
	int pipes[PUMP_POOL_PIPES][2];
};

/* One socket of a connection, and the pipe holding what was read from it. */
struct pump_end {
	int fd;                 /* the socket, nonblocking; -1 once closed */
	int pipe[2];            /* read, write end; -1 while nothing is in flight */
	uint32_t pipe_len;      /* bytes in the pipe */
	uint8_t eof;            /* the socket's FIN has been read */
	uint8_t shut;           /* our FIN has been sent on the socket (SHUT_WR) */
};

/* How a pump_run() or pump_finish() call stopped. */
enum pump_status {
	PUMP_WAIT,          /* a socket would block: its readiness edge resumes the direction */
	PUMP_YIELDED,       /* budget spent, the source may hold more: run again soon */
	PUMP_DONE,          /* source at FIN, pipe drained, FIN sent on the destination */
	PUMP_SRC_FAILED,    /* reading the source failed: err */
	PUMP_DST_FAILED,    /* writing the destination failed: err (EPIPE for a zero write) */
	PUMP_NO_PIPE,       /* no pipe could be made for the source: err (EMFILE, ENFILE) */
};

struct pump_result {
	size_t moved;       /* bytes read from the source by this call */
	int err;            /* the errno behind a *_FAILED or NO_PIPE status, else 0 */
	uint8_t status;     /* enum pump_status */
	uint8_t fin;        /* this call read the source's FIN */
};

/*
 * Set up an empty pool (PUMP_PIPE_SIZE for the daemon).  pipe_size is what
 * new pipes are sized to (the kernel rounds up to a power-of-two number of
 * pages) and the most one read takes, so the most a direction buffers.  The
 * pool owns the pipes it keeps until pump_pool_release().
 */
void pump_pool_init(struct pump_pool *pool, unsigned pipe_size);

/* Close every pipe the pool keeps; pool may then be set up again. */
void pump_pool_release(struct pump_pool *pool);

/* Set up end for socket fd (owned by the caller, as it stays) with no pipe. */
void pump_end_init(struct pump_end *end, int fd);

/*
 * Give up end's pipe, if it holds one: back to pool when empty, closed (its
 * bytes discarded) when not.  The socket is not touched.
 */
void pump_end_release(struct pump_pool *pool, struct pump_end *end);

/*
 * Move bytes from src's socket to dst's socket until one would block, the
 * budget of PUMP_BUDGET reads is spent, the source's FIN has been forwarded
 * or a socket fails.  src borrows a pipe from pool while bytes are in
 * flight and returns it as soon as none are, so an idle direction holds
 * none.  On PUMP_YIELDED the caller must run the direction again (its
 * edge-triggered readiness will not fire for bytes already waiting).  After
 * a failure the ends are left as they are for the caller to close.
 */
struct pump_result pump_run(struct pump_pool *pool, struct pump_end *src, struct pump_end *dst);

/*
 * Deliver what src's pipe holds on dst, then send dst's FIN once, whatever
 * src's socket is doing (it may be closed): PUMP_DONE, PUMP_WAIT (dst would
 * block) or PUMP_DST_FAILED.  pump_run() ends a direction this way; a
 * caller tearing one down with FIN does too.
 */
struct pump_result pump_finish(struct pump_end *src, struct pump_end *dst);

#endif
