/*
 * Goal: the pump moves every byte in order both ways, buffers at most one
 * pipe per direction when the destination stops reading (the rest stays in
 * the source socket), forwards a FIN only once its pipe has drained while
 * the other direction keeps flowing, yields after PUMP_BUDGET reads, holds
 * no pipe while a direction is idle, and reports which side failed with
 * the kernel's errno.  Over AF_UNIX socketpairs and loopback TCP; no root.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "harness.h"

#include "kaproxy/pump.h"

/* Small pipes make the budget reachable with the bytes a socket buffer holds. */
#define SMALL_PIPE 4096

/* Upper bound on loop rounds, so a pump that stops making progress fails instead of hanging. */
#define MAX_ROUNDS 1000000

/* Seeds of the two directions' byte patterns. */
#define UP 0x11
#define DOWN 0x77

/*
 * A proxied connection without a session: the test plays the client and the
 * upstream on the peer sockets; the pump ends hold the proxy's sockets.
 */
struct rig {
	int client_peer;
	int upstream_peer;
	struct pump_end client;
	struct pump_end upstream;
	struct pump_pool pool;
};

static void
nonblocking(int fd)
{
	assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
}

/* A connected stream pair: fds[0] for the test, fds[1] for the pump. */
static void
unix_pair(int fds[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
}

static void
tcp_pair(int fds[2])
{
	struct sockaddr_in addr;
	int listener = loopback_bound(&addr);

	assert_int_equal(listen(listener, 1), 0);
	fds[0] = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fds[0] >= 0);
	assert_int_equal(connect(fds[0], (struct sockaddr *)&addr, sizeof(addr)), 0);
	fds[1] = accept(listener, NULL, NULL);
	assert_true(fds[1] >= 0);
	close(listener);
	nonblocking(fds[0]);
	nonblocking(fds[1]);
}

static void
rig_init(struct rig *r, void (*pair)(int[2]), unsigned pipe_size)
{
	int client[2], upstream[2];

	pair(client);
	pair(upstream);
	r->client_peer = client[0];
	r->upstream_peer = upstream[0];
	pump_end_init(&r->client, client[1]);
	pump_end_init(&r->upstream, upstream[1]);
	pump_pool_init(&r->pool, pipe_size);
}

static void
rig_free(struct rig *r)
{
	pump_end_release(&r->pool, &r->client);
	pump_end_release(&r->pool, &r->upstream);
	pump_pool_release(&r->pool);
	if (r->client.fd >= 0)
		close(r->client.fd);
	close(r->upstream.fd);
	close(r->client_peer);
	close(r->upstream_peer);
}

/* The byte at offset i of a direction's stream: period 251, prime to every chunk size. */
static uint8_t
pattern(size_t i, uint8_t seed)
{
	return (uint8_t)(i % 251 + seed);
}

/* Send as much of the pattern from *sent up to total as fd takes now. */
static void
send_pattern(int fd, size_t *sent, size_t total, uint8_t seed)
{
	uint8_t buf[65536];
	size_t len, i;
	ssize_t n;

	while (*sent < total) {
		len = total - *sent < sizeof(buf) ? total - *sent : sizeof(buf);
		for (i = 0; i < len; i++)
			buf[i] = pattern(*sent + i, seed);
		n = send(fd, buf, len, MSG_DONTWAIT);
		if (n < 0) {
			assert_int_equal(errno, EAGAIN);
			return;
		}
		*sent += (size_t)n;
	}
}

/*
 * Receive what fd holds now, checking each byte against the pattern.
 * Returns 1 once fd reports end of stream, else 0.
 */
static int
recv_pattern(int fd, size_t *received, uint8_t seed)
{
	uint8_t buf[65536];
	ssize_t n, i;

	for (;;) {
		n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0)
			return 1;
		if (n < 0) {
			assert_int_equal(errno, EAGAIN);
			return 0;
		}
		for (i = 0; i < n; i++) {
			if (buf[i] != pattern(*received + (size_t)i, seed))
				fail_msg("byte %zu: %u, expected %u", *received + (size_t)i,
				    buf[i], pattern(*received + (size_t)i, seed));
		}
		*received += (size_t)n;
	}
}

/* Bytes queued in a socket, unread. */
static size_t
unread(int fd)
{
	int n = -1;

	assert_int_equal(ioctl(fd, SIOCINQ, &n), 0);
	assert_true(n >= 0);
	return (size_t)n;
}

/* Run src -> dst, expecting no failure, and add what was read to *moved. */
static struct pump_result
run_ok(struct rig *r, struct pump_end *src, struct pump_end *dst, size_t *moved)
{
	struct pump_result res = pump_run(&r->pool, src, dst);

	if (res.status == PUMP_SRC_FAILED || res.status == PUMP_DST_FAILED ||
	    res.status == PUMP_NO_PIPE)
		fail_msg("pump status %u: %s", res.status, strerror(res.err));
	*moved += res.moved;
	return res;
}

/*
 * The client sends while the upstream does not read, until the pump holds
 * a pipe it cannot deliver.  *sent and *moved grow by what the client sent
 * and what the pump read.
 */
static void
stall_upstream(struct rig *r, size_t *sent, size_t *moved)
{
	int rounds = 0;

	do {
		assert_true(++rounds < MAX_ROUNDS);
		send_pattern(r->client_peer, sent, *sent + 65536, UP);
		run_ok(r, &r->client, &r->upstream, moved);
	} while (r->client.pipe_len == 0);
}

/* 8 MiB each way at once, then a FIN each way: every byte arrives, in order. */
static void
bytes_exact_both_ways(void (*pair)(int[2]))
{
	const size_t total = 8u << 20;
	struct rig r;
	size_t up_sent = 0, up_recv = 0, up_moved = 0;
	size_t down_sent = 0, down_recv = 0, down_moved = 0;
	int up_eof = 0, down_eof = 0, rounds = 0;

	rig_init(&r, pair, PUMP_PIPE_SIZE);
	while (!up_eof || !down_eof) {
		assert_true(++rounds < MAX_ROUNDS);
		send_pattern(r.client_peer, &up_sent, total, UP);
		send_pattern(r.upstream_peer, &down_sent, total, DOWN);
		if (up_sent == total && !r.client.eof)
			shutdown(r.client_peer, SHUT_WR);
		if (down_sent == total && !r.upstream.eof)
			shutdown(r.upstream_peer, SHUT_WR);
		run_ok(&r, &r.client, &r.upstream, &up_moved);
		run_ok(&r, &r.upstream, &r.client, &down_moved);
		up_eof = recv_pattern(r.upstream_peer, &up_recv, UP);
		down_eof = recv_pattern(r.client_peer, &down_recv, DOWN);
	}
	assert_int_equal(up_recv, total);
	assert_int_equal(down_recv, total);
	assert_int_equal(up_moved, total);
	assert_int_equal(down_moved, total);
	assert_true(r.client.eof && r.upstream.eof && r.client.shut && r.upstream.shut);
	rig_free(&r);
}

static void
test_bytes_exact_unix(void **state)
{
	(void)state;
	bytes_exact_both_ways(unix_pair);
}

static void
test_bytes_exact_tcp(void **state)
{
	(void)state;
	bytes_exact_both_ways(tcp_pair);
}

/*
 * The upstream never reads: the pump fills the upstream socket, then holds
 * at most one pipe's worth and stops reading the client, whose bytes stay
 * queued in the client socket.  Once the upstream reads, everything
 * arrives.  exact: the sockets queue nothing behind our back (AF_UNIX), so
 * every byte can be accounted for and the stalled state is stable; TCP's
 * window updates and ACKs arrive on timers of their own.
 */
static void
backpressure(void (*pair)(int[2]), int exact)
{
	struct rig r;
	struct pump_result res;
	size_t sent = 0, moved = 0, received = 0, before;
	int rounds = 0, i;

	rig_init(&r, pair, PUMP_PIPE_SIZE);
	/* Offer more than the sockets and a pipe can hold, until nothing moves. */
	do {
		assert_true(++rounds < MAX_ROUNDS);
		before = sent;
		send_pattern(r.client_peer, &sent, SIZE_MAX, UP);
		res = run_ok(&r, &r.client, &r.upstream, &moved);
		assert_true(r.client.pipe_len <= r.pool.pipe_size);
	} while (res.moved > 0 || sent > before || res.status == PUMP_YIELDED);
	assert_int_equal(res.status, PUMP_WAIT);

	/* One pipe, holding at most what one read takes ... */
	assert_true(r.client.pipe_len > 0);
	assert_true(r.client.pipe_len <= r.pool.pipe_size);
	assert_int_equal(r.pool.n, 0);
	/* ... and the rest left to the kernel, queued in the client socket. */
	before = unread(r.client.fd);
	assert_true(before > 0);
	assert_true(moved + before <= sent);
	if (exact) {
		assert_int_equal(sent, before + moved);
		assert_int_equal(moved, r.client.pipe_len + unread(r.upstream_peer));
		/* More readiness changes nothing while the destination is full. */
		for (i = 0; i < 8; i++) {
			res = run_ok(&r, &r.client, &r.upstream, &moved);
			assert_int_equal(res.status, PUMP_WAIT);
			assert_int_equal(res.moved, 0);
		}
		assert_int_equal(unread(r.client.fd), before);
	}

	shutdown(r.client_peer, SHUT_WR);
	rounds = 0;
	while (!recv_pattern(r.upstream_peer, &received, UP)) {
		assert_true(++rounds < MAX_ROUNDS);
		run_ok(&r, &r.client, &r.upstream, &moved);
		assert_true(r.client.pipe_len <= r.pool.pipe_size);
	}
	assert_int_equal(received, sent);
	assert_int_equal(moved, sent);
	rig_free(&r);
}

static void
test_backpressure_unix(void **state)
{
	(void)state;
	backpressure(unix_pair, 1);
}

static void
test_backpressure_tcp(void **state)
{
	(void)state;
	backpressure(tcp_pair, 0);
}

/*
 * The client sends then half-closes while its bytes still wait in the pipe:
 * the FIN reaches the upstream only after them, and the upstream -> client
 * direction keeps flowing until the upstream half-closes in turn.
 */
static void
half_close(void (*pair)(int[2]))
{
	struct rig r;
	struct pump_result res;
	size_t up_sent = 0, up_moved = 0, up_recv = 0;
	size_t down_sent = 0, down_moved = 0, down_recv = 0;
	int rounds = 0, fin_seen = 0;

	rig_init(&r, pair, PUMP_PIPE_SIZE);
	stall_upstream(&r, &up_sent, &up_moved);
	assert_int_equal(shutdown(r.client_peer, SHUT_WR), 0);
	res = run_ok(&r, &r.client, &r.upstream, &up_moved);
	assert_int_equal(res.status, PUMP_WAIT);
	assert_false(res.fin);
	assert_false(r.upstream.shut);

	/* The other direction flows meanwhile. */
	send_pattern(r.upstream_peer, &down_sent, 100000, DOWN);
	while (down_recv < down_sent) {
		assert_true(++rounds < MAX_ROUNDS);
		run_ok(&r, &r.upstream, &r.client, &down_moved);
		assert_int_equal(recv_pattern(r.client_peer, &down_recv, DOWN), 0);
	}

	/* The upstream reads: the bytes, then the FIN. */
	rounds = 0;
	while (!recv_pattern(r.upstream_peer, &up_recv, UP)) {
		assert_true(++rounds < MAX_ROUNDS);
		res = run_ok(&r, &r.client, &r.upstream, &up_moved);
		if (res.fin) {
			assert_int_equal(res.status, PUMP_DONE);
			fin_seen++;
		}
	}
	assert_int_equal(fin_seen, 1);
	assert_int_equal(up_recv, up_sent);
	assert_true(r.client.eof && r.upstream.shut);
	assert_int_equal(r.client.pipe[0], -1);
	res = run_ok(&r, &r.client, &r.upstream, &up_moved);
	assert_int_equal(res.status, PUMP_DONE);
	assert_false(res.fin);

	/* Half-closed one way, the upstream still talks, then closes its way too. */
	send_pattern(r.upstream_peer, &down_sent, down_sent + 5000, DOWN);
	assert_int_equal(shutdown(r.upstream_peer, SHUT_WR), 0);
	rounds = 0;
	while (!recv_pattern(r.client_peer, &down_recv, DOWN)) {
		assert_true(++rounds < MAX_ROUNDS);
		run_ok(&r, &r.upstream, &r.client, &down_moved);
	}
	assert_int_equal(down_recv, down_sent);
	assert_int_equal(down_moved, down_sent);
	assert_true(r.upstream.eof && r.client.shut);
	rig_free(&r);
}

static void
test_half_close_unix(void **state)
{
	(void)state;
	half_close(unix_pair);
}

static void
test_half_close_tcp(void **state)
{
	(void)state;
	half_close(tcp_pair);
}

/*
 * With more waiting than PUMP_BUDGET reads take, a run yields with the rest
 * still in the source; runs again deliver it all.
 */
static void
test_budget_yields(void **state)
{
	const size_t total = 96 * 1024;
	struct rig r;
	struct pump_result res;
	size_t sent = 0, moved = 0, received = 0;
	int rounds = 0;

	(void)state;
	assert_true(total > PUMP_BUDGET * SMALL_PIPE);
	rig_init(&r, unix_pair, SMALL_PIPE);
	send_pattern(r.client_peer, &sent, total, UP);
	assert_int_equal(sent, total);

	res = run_ok(&r, &r.client, &r.upstream, &moved);
	assert_int_equal(res.status, PUMP_YIELDED);
	assert_true(res.moved > 0);
	assert_true(res.moved <= PUMP_BUDGET * SMALL_PIPE);
	assert_int_equal(unread(r.client.fd), total - res.moved);
	do {
		assert_true(++rounds < MAX_ROUNDS);
		res = run_ok(&r, &r.client, &r.upstream, &moved);
		assert_true(res.moved <= PUMP_BUDGET * SMALL_PIPE);
		recv_pattern(r.upstream_peer, &received, UP);
	} while (res.status != PUMP_WAIT);
	assert_int_equal(moved, total);
	assert_int_equal(received, total);
	rig_free(&r);
}

/* A direction with nothing in flight holds no pipe: it went back to the pool. */
static void
test_idle_holds_no_pipe(void **state)
{
	struct rig r;
	struct pump_result res;
	size_t sent = 0, moved = 0, received = 0;

	(void)state;
	rig_init(&r, unix_pair, PUMP_PIPE_SIZE);
	res = run_ok(&r, &r.client, &r.upstream, &moved);
	assert_int_equal(res.status, PUMP_WAIT);
	assert_int_equal(res.moved, 0);
	assert_int_equal(r.client.pipe[0], -1);
	assert_int_equal(r.pool.n, 1);

	send_pattern(r.client_peer, &sent, 1000, UP);
	res = run_ok(&r, &r.client, &r.upstream, &moved);
	assert_int_equal(res.status, PUMP_WAIT);
	assert_int_equal(res.moved, 1000);
	assert_int_equal(r.client.pipe[0], -1);
	assert_int_equal(r.client.pipe_len, 0);
	assert_int_equal(r.pool.n, 1);
	recv_pattern(r.upstream_peer, &received, UP);
	assert_int_equal(received, 1000);

	/* The other direction reuses the same pipe. */
	res = run_ok(&r, &r.upstream, &r.client, &moved);
	assert_int_equal(res.status, PUMP_WAIT);
	assert_int_equal(r.upstream.pipe[0], -1);
	assert_int_equal(r.pool.n, 1);
	rig_free(&r);
	assert_int_equal(r.pool.n, 0);
}

/* Releasing an end whose pipe still holds bytes closes that pipe instead of pooling it. */
static void
test_release_discards_full_pipe(void **state)
{
	struct rig r;
	size_t sent = 0, moved = 0;
	int rfd, wfd;

	(void)state;
	rig_init(&r, unix_pair, PUMP_PIPE_SIZE);
	stall_upstream(&r, &sent, &moved);
	rfd = r.client.pipe[0];
	wfd = r.client.pipe[1];
	pump_end_release(&r.pool, &r.client);
	assert_int_equal(r.client.pipe[0], -1);
	assert_int_equal(r.client.pipe_len, 0);
	assert_int_equal(r.pool.n, 0);
	assert_int_equal(fcntl(rfd, F_GETFD), -1);
	assert_int_equal(fcntl(wfd, F_GETFD), -1);
	rig_free(&r);
}

/*
 * The teardown = fin case: the source socket is gone, its pipe still holds
 * bytes; pump_finish delivers them, then the FIN.
 */
static void
test_finish_without_source(void **state)
{
	struct rig r;
	struct pump_result res;
	size_t sent = 0, moved = 0, received = 0;
	int rounds = 0;

	(void)state;
	rig_init(&r, unix_pair, PUMP_PIPE_SIZE);
	stall_upstream(&r, &sent, &moved);
	close(r.client.fd);
	r.client.fd = -1;
	res = pump_finish(&r.client, &r.upstream);
	assert_int_equal(res.status, PUMP_WAIT);
	assert_false(r.upstream.shut);

	do {
		assert_true(++rounds < MAX_ROUNDS);
		res = pump_finish(&r.client, &r.upstream);
		assert_true(res.status == PUMP_WAIT || res.status == PUMP_DONE);
	} while (!recv_pattern(r.upstream_peer, &received, UP));
	assert_int_equal(res.status, PUMP_DONE);
	assert_int_equal(received, moved);
	assert_true(r.upstream.shut);
	rig_free(&r);
}

/*
 * The test's end of one connection goes away, with RST when rst: the pump
 * runs client -> upstream, the client sending a byte per round while the
 * upstream is the one gone, until it stops on something other than WAIT (a
 * reset may take a moment to land).
 */
static struct pump_result
peer_gone(void (*pair)(int[2]), int upstream_gone, int rst)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	struct rig r;
	struct pump_result res;
	size_t sent = 0;
	int *gone, rounds = 0;

	rig_init(&r, pair, PUMP_PIPE_SIZE);
	gone = upstream_gone ? &r.upstream_peer : &r.client_peer;
	if (rst)
		assert_int_equal(setsockopt(*gone, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	close(*gone);
	*gone = open("/dev/null", O_RDONLY);    /* for rig_free to close */
	do {
		assert_true(++rounds < 1000);
		if (upstream_gone)
			send_pattern(r.client_peer, &sent, sent + 1, UP);
		res = pump_run(&r.pool, &r.client, &r.upstream);
		if (res.status == PUMP_WAIT)
			usleep(1000);
	} while (res.status == PUMP_WAIT);
	rig_free(&r);
	return res;
}

/* Who went away, how, and what the pump must report. */
struct gone_case {
	const char *what;
	void (*pair)(int[2]);
	int upstream_gone;
	int rst;
	enum pump_status status;
	int err, other_err;     /* either will do */
};

static const struct gone_case gone_cases[] = {
	{ "unix upstream closed", unix_pair, 1, 0, PUMP_DST_FAILED, EPIPE, EPIPE },
	/* The first write after a reset says ECONNRESET, later ones EPIPE. */
	{ "tcp upstream reset", tcp_pair, 1, 1, PUMP_DST_FAILED, ECONNRESET, EPIPE },
	{ "tcp client reset", tcp_pair, 0, 1, PUMP_SRC_FAILED, ECONNRESET, ECONNRESET },
};

/* A peer gone is a failure of its own side, with the kernel's errno. */
static void
test_peer_gone(void **state)
{
	const struct gone_case *c;
	struct pump_result res;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(gone_cases) / sizeof(gone_cases[0]); i++) {
		c = &gone_cases[i];
		res = peer_gone(c->pair, c->upstream_gone, c->rst);
		if (res.status != c->status || (res.err != c->err && res.err != c->other_err))
			fail_msg("%s: status %u, errno %d (%s); expected status %u, %s", c->what,
			    res.status, res.err, strerror(res.err), c->status, strerror(c->err));
	}
}

/* No pipe to be had (out of descriptors): NO_PIPE with EMFILE, nothing read. */
static void
test_no_pipe(void **state)
{
	struct rig r;
	struct pump_result res;
	struct rlimit saved, low;
	size_t sent = 0;
	int spare[64], n = 0;

	(void)state;
	rig_init(&r, unix_pair, PUMP_PIPE_SIZE);
	send_pattern(r.client_peer, &sent, 100, UP);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
	low = saved;
	low.rlim_cur = 64;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	while (n < 64 && (spare[n] = dup(0)) >= 0)
		n++;
	res = pump_run(&r.pool, &r.client, &r.upstream);
	while (n > 0)
		close(spare[--n]);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
	assert_int_equal(res.status, PUMP_NO_PIPE);
	assert_int_equal(res.err, EMFILE);
	assert_int_equal(res.moved, 0);
	assert_int_equal(unread(r.client.fd), 100);
	rig_free(&r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bytes_exact_unix),
		cmocka_unit_test(test_bytes_exact_tcp),
		cmocka_unit_test(test_backpressure_unix),
		cmocka_unit_test(test_backpressure_tcp),
		cmocka_unit_test(test_half_close_unix),
		cmocka_unit_test(test_half_close_tcp),
		cmocka_unit_test(test_budget_yields),
		cmocka_unit_test(test_idle_holds_no_pipe),
		cmocka_unit_test(test_release_discards_full_pipe),
		cmocka_unit_test(test_finish_without_source),
		cmocka_unit_test(test_peer_gone),
		cmocka_unit_test(test_no_pipe),
	};

	/* A write to a closed peer is an errno to report, not a death. */
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
