/*
 * Goal: a real session, between loopback sockets the test plays as client
 * and upstream, keeps the promises of the interface: every byte arrives in
 * order and a FIN is forwarded as a half-close while the other direction
 * keeps flowing; a client that does not read makes the upstream's writes
 * block once the socket buffers and one pipe are full; the live peer of a
 * session that ends sees RST, or FIN after every byte it is owed, as the
 * reason and the teardown setting say (a table), and the access log says
 * the same with exact byte counts; a teardown = fin gives up on a peer that
 * never takes its bytes after the linger time; idle_timeout closes a quiet
 * session on time and never a busy one.
 *
 * Black-box: only the process-level API (config_load_string, generation,
 * worker_new, worker_apply_all, session_close_all, worker_free, the
 * access log) and what the kernel shows of the sockets; never a field of a
 * session or a listener.  The test thread runs the worker's loop in short
 * slices between its own socket calls.  Loopback, ephemeral ports, no root.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <event2/event.h>

#include "kaproxy/accesslog.h"
#include "kaproxy/log.h"
#include "kaproxy/pump.h"
#include "kaproxy/reason.h"
#include "kaproxy/session.h"
#include "kaproxy/worker.h"

/* One slice of the worker's loop between the test's own socket calls. */
#define STEP_MS 2

/*
 * How late something that should happen at once may be on a loaded, shared
 * machine; a wait that runs past it fails the test instead of hanging.
 */
#define SLACK_MS 2000

/* The longest a bulk transfer may take. */
#define TRANSFER_MS 20000

/* FIN_LINGER_MS in session.c: how long a teardown = fin waits for the live peer. */
#define LINGER_MS 10000

/* Writes that make no progress for this long mean the writer is blocked. */
#define STALL_MS 300

/* More than any Linux socket buffers can hold: a writer still going here is unbounded. */
#define FILL_CAP ((size_t)256 << 20)

/* SO_RCVBUF / SO_SNDBUF asked for on the test's own sockets (Linux doubles it). */
#define SMALL_BUF (64 * 1024)

/* Bytes the side that ends a session sends first: the live peer is owed them. */
#define OWED 70001

/* Room for a few access-log lines: more than one record is an error to show. */
#define LOG_BUF (4 * ACCESSLOG_LINE_MAX)

/* What a peer saw on its socket. */
enum outcome { SEEN_NOTHING, SEEN_FIN, SEEN_RST, SEEN_GONE /* the test closed it */ };

static const char *const outcome_names[] = { "nothing", "FIN", "RST", "(closed by the test)" };

/* The bytes sent toward one side and received there. */
struct flow {
	uint8_t seed;
	size_t sent;
	size_t received;
};

/* One test's proxy and its two peers; fd[] and into[] are indexed by enum side. */
struct rig {
	void *row;                   /* the table row a test runs, or NULL */
	struct process_shared shared;
	struct worker *worker;
	struct generation *gen;
	int upstream_listener;       /* bound; listening unless connects must fail */
	unsigned port, upstream_port;
	int fd[2];                   /* the test's client and upstream sockets, -1 once closed */
	struct flow into[2];         /* bytes toward the client, toward the upstream */
	char log_path[64];
};

static enum side
other(enum side side)
{
	return side == SIDE_CLIENT ? SIDE_UPSTREAM : SIDE_CLIENT;
}

static struct sockaddr_in
loopback(unsigned port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

	return sin;
}

/* A nonblocking loopback socket bound to an ephemeral port, listening or not. */
static int
upstream_socket(bool listens, unsigned *port)
{
	struct sockaddr_in sin;
	int fd = loopback_bound(&sin);

	assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
	if (listens)
		assert_int_equal(listen(fd, 16), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

static int
rig_setup(void **state)
{
	struct rig *r = calloc(1, sizeof(*r));
	int fd;

	assert_non_null(r);
	r->row = *state;
	r->fd[SIDE_CLIENT] = r->fd[SIDE_UPSTREAM] = r->upstream_listener = -1;
	r->into[SIDE_CLIENT].seed = 0x5a;
	r->into[SIDE_UPSTREAM].seed = 0xc3;
	snprintf(r->log_path, sizeof(r->log_path), "/tmp/kaproxy-test-session-XXXXXX");
	fd = mkstemp(r->log_path);
	assert_true(fd >= 0);
	close(fd);
	*state = r;
	return 0;
}

/* Also after a failed test: whatever is still open goes, lingering sessions too. */
static int
rig_teardown(void **state)
{
	struct rig *r = *state;
	int side;

	for (side = SIDE_CLIENT; side <= SIDE_UPSTREAM; side++)
		if (r->fd[side] >= 0)
			close(r->fd[side]);
	worker_free(r->worker);     /* closes what is left, lingering sessions too */
	if (r->gen != NULL)
		generation_unref(r->gen);
	accesslog_close();
	unlink(r->log_path);
	if (r->upstream_listener >= 0)
		close(r->upstream_listener);
	free(r);
	return 0;
}

/*
 * One listener from 127.0.0.1:port to the test's upstream socket, with the
 * extra listener keys given, on one worker; the access log to the rig's file.
 */
static void
proxy_start(struct rig *r, bool upstream_listens, const char *keys)
{
	char text[512], err[CONFIG_ERR_MAX];
	struct config *cfg;

	r->upstream_listener = upstream_socket(upstream_listens, &r->upstream_port);
	r->port = loopback_free_port();

	snprintf(text, sizeof(text), "[listener t]\nlisten = 127.0.0.1:%u\nupstream = 127.0.0.1:%u\n%s",
	    r->port, r->upstream_port, keys);
	if (config_load_string(text, "session.ini", &cfg, err, sizeof(err)) == -1)
		fail_msg("%s", err);
	r->gen = generation_new(cfg);
	assert_non_null(r->gen);
	atomic_init(&r->shared.admission.max_connections, 100);
	assert_non_null(r->worker = worker_new(&r->shared, 0, false));
	assert_int_equal(worker_apply_all(&r->worker, 1, r->gen), 0);
	assert_int_equal(accesslog_open(r->log_path), 0);
}

/* Run the worker's loop for ms. */
static void
run_loop(struct rig *r, unsigned ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };

	assert_int_equal(event_base_loopexit(worker_base(r->worker), &tv), 0);
	assert_int_not_equal(event_base_dispatch(worker_base(r->worker)), -1);
}

/* One slice of the loop, or a failure once deadline has passed. */
static void
step(struct rig *r, uint64_t deadline, const char *waiting_for)
{
	if (now_ms() > deadline)
		fail_msg("timed out waiting for %s", waiting_for);
	run_loop(r, STEP_MS);
}

/* The client connects to the proxy, its receive buffer set first when rcvbuf > 0. */
static void
connect_client(struct rig *r, int rcvbuf)
{
	struct sockaddr_in sin = loopback(r->port);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	if (rcvbuf > 0)
		assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
	/* The kernel completes the handshake; accepting waits for the loop. */
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
	r->fd[SIDE_CLIENT] = fd;
}

/* A client through the proxy to the test's upstream: both sockets, nonblocking. */
static void
open_session(struct rig *r, int client_rcvbuf)
{
	uint64_t deadline;

	connect_client(r, client_rcvbuf);
	deadline = now_ms() + SLACK_MS;
	while ((r->fd[SIDE_UPSTREAM] = accept4(r->upstream_listener, NULL, NULL, SOCK_NONBLOCK)) < 0) {
		assert_int_equal(errno, EAGAIN);
		step(r, deadline, "the proxy to connect upstream");
	}
}

/* The byte at offset at of a flow: no period short enough to hide a lost or repeated chunk. */
static uint8_t
flow_byte(const struct flow *f, size_t at)
{
	return (uint8_t)(f->seed ^ (at * 131u + at / 65521u));
}

/* Side from sends toward its peer what its socket takes now, up to upto bytes of the flow. */
static void
push(struct rig *r, enum side from, size_t upto)
{
	struct flow *f = &r->into[other(from)];
	uint8_t chunk[65536];
	size_t i, len;
	ssize_t n;

	while (f->sent < upto) {
		len = upto - f->sent < sizeof(chunk) ? upto - f->sent : sizeof(chunk);
		for (i = 0; i < len; i++)
			chunk[i] = flow_byte(f, f->sent + i);
		n = send(r->fd[from], chunk, len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0)
			fail_msg("%s: send: %s", reason_side_name(from), strerror(errno));
		f->sent += (size_t)n;
	}
}

/* Side reads what has arrived, each byte checked; what its socket then reports. */
static enum outcome
pull(struct rig *r, enum side side)
{
	struct flow *f = &r->into[side];
	uint8_t chunk[65536];
	ssize_t n, i;

	for (;;) {
		n = recv(r->fd[side], chunk, sizeof(chunk), MSG_DONTWAIT);
		if (n == 0)
			return SEEN_FIN;
		if (n < 0 && errno == EAGAIN)
			return SEEN_NOTHING;
		if (n < 0 && errno == ECONNRESET)
			return SEEN_RST;
		if (n < 0)
			fail_msg("%s: recv: %s", reason_side_name(side), strerror(errno));
		for (i = 0; i < n; i++)
			if (chunk[i] != flow_byte(f, f->received + (size_t)i))
				fail_msg("%s: byte %zu is wrong", reason_side_name(side), f->received + (size_t)i);
		f->received += (size_t)n;
	}
}

/* Move the flow toward side up to total bytes, all of them received there. */
static void
transfer(struct rig *r, enum side to, size_t total)
{
	uint64_t deadline = now_ms() + TRANSFER_MS;
	enum outcome seen;

	while (r->into[to].received < total) {
		push(r, other(to), total);
		step(r, deadline, "a transfer");
		seen = pull(r, to);
		if (seen != SEEN_NOTHING)
			fail_msg("%s saw %s after %zu of %zu bytes", reason_side_name(to), outcome_names[seen],
			    r->into[to].received, total);
	}
}

/* Run the loop until side's socket reports FIN or RST, or for ms at most. */
static enum outcome
observe(struct rig *r, enum side side, unsigned ms)
{
	uint64_t until = now_ms() + ms;
	enum outcome seen;

	while ((seen = pull(r, side)) == SEEN_NOTHING && now_ms() < until)
		run_loop(r, STEP_MS);
	return seen;
}

static void
expect_outcome(enum side side, enum outcome seen, enum outcome want)
{
	if (seen != want)
		fail_msg("%s saw %s, expected %s", reason_side_name(side), outcome_names[seen],
		    outcome_names[want]);
}

/* observe(), and fail unless side saw want. */
static void
expect_seen(struct rig *r, enum side side, unsigned ms, enum outcome want)
{
	expect_outcome(side, observe(r, side, ms), want);
}

/* Close side's socket: a FIN, or a RST after what it was sent is all read. */
static void
close_side(struct rig *r, enum side side)
{
	close(r->fd[side]);
	r->fd[side] = -1;
}

/* Close side's socket with RST (SO_LINGER {1, 0}). */
static void
close_rst(struct rig *r, enum side side)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	assert_int_equal(setsockopt(r->fd[side], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	close_side(r, side);
}

static int
sock_int(int fd, int level, int name)
{
	int value = -1;
	socklen_t len = sizeof(value);

	assert_int_equal(getsockopt(fd, level, name, &value, &len), 0);
	return value;
}

/* Bytes queued in fd: SIOCINQ (received, unread) or SIOCOUTQ (written, unacknowledged). */
static size_t
queued(int fd, unsigned long which)
{
	int n = -1;

	assert_int_equal(ioctl(fd, which, &n), 0);
	assert_true(n >= 0);
	return (size_t)n;
}

static int
tcp_state(int fd)
{
	struct tcp_info info;
	socklen_t len = sizeof(info);

	assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len), 0);
	return info.tcpi_state;
}

static bool
same_address(const struct sockaddr_storage *a, const struct sockaddr_in *b)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)a;

	return a->ss_family == AF_INET && sin->sin_port == b->sin_port &&
	    sin->sin_addr.s_addr == b->sin_addr.s_addr;
}

/*
 * The proxy's socket at the other end of the test's socket fd, found among
 * this process's descriptors by its addresses (no look inside a session).
 */
static int
proxy_end(int fd)
{
	struct sockaddr_in mine, theirs;
	struct sockaddr_storage local, peer;
	socklen_t len = sizeof(mine);
	struct dirent *de;
	DIR *dir = opendir("/proc/self/fd");
	int found = -1, cand;

	assert_non_null(dir);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&mine, &len), 0);
	len = sizeof(theirs);
	assert_int_equal(getpeername(fd, (struct sockaddr *)&theirs, &len), 0);
	while (found < 0 && (de = readdir(dir)) != NULL) {
		cand = atoi(de->d_name);
		if (de->d_name[0] == '.' || cand == dirfd(dir))
			continue;
		len = sizeof(local);
		if (getsockname(cand, (struct sockaddr *)&local, &len) == -1)
			continue;
		len = sizeof(peer);
		if (getpeername(cand, (struct sockaddr *)&peer, &len) == -1)
			continue;
		if (same_address(&local, &theirs) && same_address(&peer, &mine))
			found = cand;
	}
	closedir(dir);
	if (found < 0)
		fail_msg("no proxy socket at the other end of fd %d", fd);
	return found;
}

/*
 * The upstream writes and the client reads nothing until the upstream's
 * writes have made no progress for STALL_MS.  FILL_CAP bytes past what the
 * client has read would mean no backpressure at all.
 */
static void
fill_until_stalled(struct rig *r)
{
	struct flow *f = &r->into[SIDE_CLIENT];
	uint64_t deadline = now_ms() + TRANSFER_MS, quiet_since = now_ms();
	size_t last = f->sent;

	while (now_ms() - quiet_since < STALL_MS) {
		push(r, SIDE_UPSTREAM, f->received + FILL_CAP);
		if (f->sent >= f->received + FILL_CAP)
			fail_msg("the upstream wrote %zu bytes to a client that read %zu", f->sent,
			    f->received);
		if (f->sent != last) {
			last = f->sent;
			quiet_since = now_ms();
		}
		step(r, deadline, "the upstream's writes to block");
	}
}

/* A stalled session, both test sockets' buffers small; returns the bytes written. */
static size_t
open_stalled_session(struct rig *r)
{
	int small = SMALL_BUF;

	open_session(r, SMALL_BUF);
	assert_int_equal(setsockopt(r->fd[SIDE_UPSTREAM], SOL_SOCKET, SO_SNDBUF, &small,
	    sizeof(small)), 0);
	fill_until_stalled(r);
	return r->into[SIDE_CLIENT].sent;
}

/* The access log so far into buf; returns its number of lines. */
static int
read_log(struct rig *r, char *buf, size_t size)
{
	int fd = open(r->log_path, O_RDONLY), lines = 0;
	ssize_t n;
	char *p;

	assert_true(fd >= 0);
	n = read(fd, buf, size - 1);
	assert_true(n >= 0);
	close(fd);
	buf[n] = '\0';
	for (p = buf; (p = strchr(p, '\n')) != NULL; p++)
		lines++;
	return lines;
}

/* Wait for the session's access-log record and return its line, the only one. */
static void
wait_record(struct rig *r, char *line, size_t size)
{
	uint64_t deadline = now_ms() + SLACK_MS;
	int lines;

	while ((lines = read_log(r, line, size)) == 0)
		step(r, deadline, "the access-log record");
	if (lines != 1)
		fail_msg("%d records, expected 1:\n%s", lines, line);
}

static void
expect_no_record(struct rig *r)
{
	char buf[LOG_BUF];

	if (read_log(r, buf, sizeof(buf)) != 0)
		fail_msg("the session was closed early: %s", buf);
}

/* The value of "key" in a record: a string's text or a number's digits. */
static const char *
field(const char *line, const char *key, char *out, size_t size)
{
	char name[64];
	const char *p;
	size_t n;

	snprintf(name, sizeof(name), "\"%s\":", key);
	p = strstr(line, name);
	if (p == NULL)
		fail_msg("no %s in %s", key, line);
	p += strlen(name);
	if (*p == '"')
		p++;
	n = strcspn(p, "\",}");
	assert_true(n < size);
	memcpy(out, p, n);
	out[n] = '\0';
	return out;
}

static void
expect_record(const char *line, const char *reason, const char *teardown, size_t from_client,
    size_t to_client)
{
	char value[128], count[32];

	assert_string_equal(field(line, "close_reason", value, sizeof(value)), reason);
	assert_string_equal(field(line, "teardown", value, sizeof(value)), teardown);
	snprintf(count, sizeof(count), "%zu", from_client);
	assert_string_equal(field(line, "bytes_from_client", value, sizeof(value)), count);
	snprintf(count, sizeof(count), "%zu", to_client);
	assert_string_equal(field(line, "bytes_to_client", value, sizeof(value)), count);
}

/*
 * The record of the rig's session, with the byte counts of its two flows
 * and "detail" the text of err (no detail for err 0).
 */
static void
expect_session_record(struct rig *r, const char *reason, const char *teardown, int err)
{
	char line[LOG_BUF], value[512];
	const struct session_closed *closed;

	wait_record(r, line, sizeof(line));
	expect_record(line, reason, teardown, r->into[SIDE_UPSTREAM].sent, r->into[SIDE_CLIENT].sent);
	/* GET /closed's ring kept the same close, and only it. */
	closed = session_set_closed_at(worker_sessions(r->worker), 0);
	assert_non_null(closed);
	assert_null(session_set_closed_at(worker_sessions(r->worker), 1));
	session_closed_json(closed, value, sizeof(value));
	expect_record(value, reason, teardown, r->into[SIDE_UPSTREAM].sent, r->into[SIDE_CLIENT].sent);
	if (err != 0)
		assert_string_equal(field(line, "detail", value, sizeof(value)), strerror(err));
	else if (strstr(line, "\"detail\":") != NULL)
		fail_msg("a detail where none was expected: %s", line);
}

/*
 * Half-close: side first sends n bytes and its FIN; the other side gets
 * exactly those, then EOF, and its reply of m bytes still reaches first;
 * only when the other side closes too does the session end, logged with
 * first's FIN as the reason and no teardown.
 */
static void
half_close(struct rig *r, enum side first, const char *reason)
{
	enum side second = other(first);
	size_t n = 1024 * 1024 + 17, m = 300 * 1024 + 5;

	proxy_start(r, true, "");
	open_session(r, 0);
	transfer(r, second, n);
	assert_int_equal(shutdown(r->fd[first], SHUT_WR), 0);
	expect_seen(r, second, SLACK_MS, SEEN_FIN);
	assert_int_equal(r->into[second].received, n);

	transfer(r, first, m);
	expect_no_record(r);
	close_side(r, second);
	expect_seen(r, first, SLACK_MS, SEEN_FIN);
	assert_int_equal(r->into[first].received, m);
	expect_session_record(r, reason, "none", 0);
}

static void
half_close_client_first(void **state)
{
	half_close(*state, SIDE_CLIENT, "client_fin");
}

static void
half_close_upstream_first(void **state)
{
	half_close(*state, SIDE_UPSTREAM, "upstream_fin");
}

/*
 * In a stalled session, what the proxy holds of the upstream's bytes: those
 * written, less those the client read and those queued in the four sockets
 * on the way (SIOCINQ / SIOCOUTQ; exact once stalled, every segment
 * acknowledged).  Fails unless it holds some (it stops reading the upstream
 * only with a pipe it cannot deliver) and at most one pipe.
 */
static void
expect_one_pipe(struct rig *r, int client_leg, int upstream_leg)
{
	const struct flow *f = &r->into[SIDE_CLIENT];
	size_t elsewhere = f->received + queued(r->fd[SIDE_CLIENT], SIOCINQ) +
	    queued(client_leg, SIOCOUTQ) + queued(upstream_leg, SIOCINQ) +
	    queued(r->fd[SIDE_UPSTREAM], SIOCOUTQ);

	if (elsewhere >= f->sent || f->sent - elsewhere > PUMP_PIPE_SIZE)
		fail_msg("written %zu, read or queued in sockets %zu: the proxy holds %zd, not 1..%u",
		    f->sent, elsewhere, (ssize_t)(f->sent - elsewhere), PUMP_PIPE_SIZE);
}

/*
 * A client that reads nothing: the upstream's writes block once the bytes
 * fill the kernel's buffers on the way (client receive, proxy client-leg
 * send, proxy upstream-leg receive, upstream send: SO_RCVBUF / SO_SNDBUF as
 * the kernel reports them, already doubled and autotuned) plus at most one
 * pipe of PUMP_PIPE_SIZE; counting what the sockets queue, the proxy holds
 * one pipe at most.  Then the client takes what has reached it and stops
 * again, a few times: each time the proxy refills its pipe with one large
 * read while its client leg has room for only part of it, the most a pipe
 * ever holds.  Once the client reads on, every byte arrives in order.
 */
static void
backpressure_bounded(void **state)
{
	enum { ROUNDS = 2 };
	struct rig *r = *state;
	int client, upstream, client_leg, upstream_leg, round;
	size_t written, buffers, total;

	proxy_start(r, true, "");
	written = open_stalled_session(r);
	client = r->fd[SIDE_CLIENT];
	upstream = r->fd[SIDE_UPSTREAM];
	client_leg = proxy_end(client);
	upstream_leg = proxy_end(upstream);
	buffers = (size_t)sock_int(client, SOL_SOCKET, SO_RCVBUF) +
	    (size_t)sock_int(client_leg, SOL_SOCKET, SO_SNDBUF) +
	    (size_t)sock_int(upstream_leg, SOL_SOCKET, SO_RCVBUF) +
	    (size_t)sock_int(upstream, SOL_SOCKET, SO_SNDBUF);
	if (written > buffers + PUMP_PIPE_SIZE)
		fail_msg("the upstream wrote %zu bytes, past socket buffers %zu + one pipe %u",
		    written, buffers, PUMP_PIPE_SIZE);
	expect_one_pipe(r, client_leg, upstream_leg);
	for (round = 0; round < ROUNDS; round++) {
		/* Without the loop running: the proxy sees the room only afterwards. */
		assert_int_equal(pull(r, SIDE_CLIENT), SEEN_NOTHING);
		fill_until_stalled(r);
		expect_one_pipe(r, client_leg, upstream_leg);
	}

	total = r->into[SIDE_CLIENT].sent + 1024 * 1024;
	transfer(r, SIDE_CLIENT, total);
	assert_int_equal(shutdown(upstream, SHUT_WR), 0);
	expect_seen(r, SIDE_CLIENT, SLACK_MS, SEEN_FIN);
	assert_int_equal(r->into[SIDE_CLIENT].received, total);
	close_side(r, SIDE_CLIENT);
	expect_session_record(r, "upstream_fin", "none", 0);
}

/*
 * The record counts what reached the client, not what the proxy read: a
 * client that does not read holds a pipe of the upstream's bytes in the
 * proxy; when the upstream then dies with RST, that pipe is dropped with
 * the session and bytes_to_client is exactly what was written to the
 * client leg (read by the client, or still queued in its two sockets).
 */
static void
dropped_pipe_not_counted(void **state)
{
	struct rig *r = *state;
	int client, client_leg;
	size_t delivered;

	proxy_start(r, true, "");
	open_stalled_session(r);
	client = r->fd[SIDE_CLIENT];
	client_leg = proxy_end(client);
	expect_one_pipe(r, client_leg, proxy_end(r->fd[SIDE_UPSTREAM]));
	delivered = r->into[SIDE_CLIENT].received + queued(client, SIOCINQ) +
	    queued(client_leg, SIOCOUTQ);
	/* The client reads nothing until the record is out: nothing else moves. */
	close_rst(r, SIDE_UPSTREAM);
	r->into[SIDE_CLIENT].sent = delivered;
	expect_session_record(r, "upstream_reset", "rst", ECONNRESET);
	expect_seen(r, SIDE_CLIENT, SLACK_MS, SEEN_RST);
}

/* How a table row's session ends. */
enum ending {
	END_UPSTREAM_RESET,   /* the upstream sends OWED bytes, then RST */
	END_CLIENT_RESET,     /* the client does */
	END_IDLE,             /* nothing moves for idle_timeout */
	END_SHUTDOWN,         /* session_close_all(REASON_SHUTDOWN) */
	END_CONNECT_FAILED,   /* nothing listens upstream */
	END_CLIENT_FIN,       /* the client sends OWED and FIN; the upstream closes when it sees it */
	END_UPSTREAM_FIN,     /* the other way round */
};

/* idle_timeout of the END_IDLE rows (ms). */
#define ROW_IDLE_MS 300

struct teardown_row {
	enum ending ending;
	const char *setting;          /* the listener's teardown */
	enum outcome seen[2];         /* what the client and the upstream saw */
	const char *reason;           /* the record's close_reason and teardown */
	const char *teardown;
	int err;                      /* the errno its detail names, 0 for none */
};

#define GONE SEEN_GONE
#define FIN SEEN_FIN
#define RST SEEN_RST
static struct teardown_row teardown_rows[] = {
	/* ending, teardown =, client and upstream saw, close_reason, teardown, detail */
	{ END_UPSTREAM_RESET, "rst", { RST, GONE }, "upstream_reset", "rst", ECONNRESET },
	{ END_UPSTREAM_RESET, "fin", { FIN, GONE }, "upstream_reset", "fin", ECONNRESET },
	{ END_CLIENT_RESET, "rst", { GONE, RST }, "client_reset", "rst", ECONNRESET },
	{ END_CLIENT_RESET, "fin", { GONE, FIN }, "client_reset", "fin", ECONNRESET },
	{ END_IDLE, "rst", { RST, RST }, "idle_timeout", "rst", 0 },
	{ END_IDLE, "fin", { FIN, FIN }, "idle_timeout", "fin", 0 },
	{ END_SHUTDOWN, "rst", { RST, RST }, "shutdown", "rst", 0 },
	{ END_SHUTDOWN, "fin", { FIN, FIN }, "shutdown", "fin", 0 },
	{ END_CONNECT_FAILED, "rst", { RST, GONE }, "connect_failed", "rst", ECONNREFUSED },
	{ END_CONNECT_FAILED, "fin", { RST, GONE }, "connect_failed", "rst", ECONNREFUSED },
	{ END_CLIENT_FIN, "rst", { FIN, FIN }, "client_fin", "none", 0 },
	{ END_CLIENT_FIN, "fin", { FIN, FIN }, "client_fin", "none", 0 },
	{ END_UPSTREAM_FIN, "rst", { FIN, FIN }, "upstream_fin", "none", 0 },
	{ END_UPSTREAM_FIN, "fin", { FIN, FIN }, "upstream_fin", "none", 0 },
};
#undef GONE
#undef FIN
#undef RST
#define N_ROWS (sizeof(teardown_rows) / sizeof(teardown_rows[0]))

/*
 * Side sends OWED bytes, waits until the proxy's kernel has them all
 * (nothing left unacknowledged), then dies with RST.
 */
static void
die_with_rst(struct rig *r, enum side side)
{
	uint64_t deadline = now_ms() + SLACK_MS;

	push(r, side, OWED);
	while (r->into[other(side)].sent < OWED || queued(r->fd[side], SIOCOUTQ) > 0) {
		push(r, side, OWED);
		step(r, deadline, "the bytes before the RST to be acknowledged");
	}
	close_rst(r, side);
}

/* End the session as the row says; fill seen[] with what each peer saw. */
static void
end_session(struct rig *r, enum ending how, enum outcome seen[2])
{
	enum side first = how == END_CLIENT_FIN || how == END_CLIENT_RESET ? SIDE_CLIENT : SIDE_UPSTREAM;

	switch (how) {
	case END_UPSTREAM_RESET:
	case END_CLIENT_RESET:
		die_with_rst(r, first);
		seen[first] = SEEN_GONE;
		seen[other(first)] = observe(r, other(first), SLACK_MS);
		break;
	case END_CLIENT_FIN:
	case END_UPSTREAM_FIN:
		transfer(r, other(first), OWED);
		assert_int_equal(shutdown(r->fd[first], SHUT_WR), 0);
		seen[other(first)] = observe(r, other(first), SLACK_MS);
		close_side(r, other(first));
		seen[first] = observe(r, first, SLACK_MS);
		break;
	case END_IDLE:
	case END_SHUTDOWN:
		if (how == END_SHUTDOWN)
			session_close_all(worker_sessions(r->worker), REASON_SHUTDOWN);
		seen[SIDE_CLIENT] = observe(r, SIDE_CLIENT, ROW_IDLE_MS + SLACK_MS);
		seen[SIDE_UPSTREAM] = observe(r, SIDE_UPSTREAM, SLACK_MS);
		break;
	case END_CONNECT_FAILED:
		seen[SIDE_CLIENT] = observe(r, SIDE_CLIENT, SLACK_MS);
		seen[SIDE_UPSTREAM] = SEEN_GONE;
		break;
	}
}

/*
 * One row of the teardown table: each live peer sees RST, or FIN after
 * every byte it is owed, and the record names the reason and the teardown.
 */
static void
teardown_row(void **state)
{
	struct rig *r = *state;
	const struct teardown_row *row = r->row;
	enum outcome seen[2];
	char keys[128];
	int side;

	if (row->ending == END_IDLE)
		snprintf(keys, sizeof(keys), "teardown = %s\nidle_timeout = %dms\n", row->setting,
		    ROW_IDLE_MS);
	else
		snprintf(keys, sizeof(keys), "teardown = %s\n", row->setting);
	proxy_start(r, row->ending != END_CONNECT_FAILED, keys);
	if (row->ending == END_CONNECT_FAILED)
		connect_client(r, 0);
	else
		open_session(r, 0);
	end_session(r, row->ending, seen);

	for (side = SIDE_CLIENT; side <= SIDE_UPSTREAM; side++) {
		expect_outcome((enum side)side, seen[side], row->seen[side]);
		if (seen[side] == SEEN_FIN && r->into[side].received != r->into[side].sent)
			fail_msg("%s saw FIN after %zu of the %zu bytes it is owed",
			    reason_side_name((enum side)side), r->into[side].received, r->into[side].sent);
	}
	expect_session_record(r, row->reason, row->teardown, row->err);
}

/*
 * teardown = fin: a stalled session (the client reading nothing) whose
 * upstream dies with RST.  Returns the bytes the proxy had read from the
 * upstream: those written, less those the RST throws away, still queued in
 * the upstream's socket and in the proxy's upstream leg.  The session's
 * record is written within SLACK_MS of the RST, sent at *reset_at.
 */
static size_t
stalled_upstream_resets(struct rig *r, uint64_t *reset_at)
{
	char line[LOG_BUF];
	size_t written, taken;

	proxy_start(r, true, "teardown = fin\n");
	written = open_stalled_session(r);
	taken = written - queued(r->fd[SIDE_UPSTREAM], SIOCOUTQ) -
	    queued(proxy_end(r->fd[SIDE_UPSTREAM]), SIOCINQ);
	*reset_at = now_ms();
	close_rst(r, SIDE_UPSTREAM);
	wait_record(r, line, sizeof(line));
	expect_record(line, "upstream_reset", "fin", 0, taken);
	return taken;
}

/*
 * teardown = fin delivers what the live peer is owed: every byte the proxy
 * had taken from the upstream before its RST, even those waiting in a pipe
 * for the client to read again, then FIN.
 */
static void
fin_delivers_owed(void **state)
{
	struct rig *r = *state;
	uint64_t reset_at;
	size_t taken = stalled_upstream_resets(r, &reset_at);

	expect_seen(r, SIDE_CLIENT, TRANSFER_MS, SEEN_FIN);
	assert_int_equal(r->into[SIDE_CLIENT].received, taken);
}

/*
 * stalled_upstream_resets(), then the client never reads and never closes;
 * it sends nothing when every_ms < 0, else a byte at once and, when
 * every_ms > 0, another every every_ms.  The proxy leaves those unread
 * while it waits to deliver its own bytes, so giving up is a close with
 * unread data, a RST the client sees at once without reading (a FIN would
 * do as well).  Fails unless the client's connection is closed LINGER_MS
 * after the reset, not before and not more than SLACK_MS later.
 */
static void
expect_given_up(struct rig *r, int every_ms)
{
	uint64_t reset_at, deadline, next;
	size_t sent = 0;
	int client;

	stalled_upstream_resets(r, &reset_at);
	client = r->fd[SIDE_CLIENT];
	deadline = now_ms() + LINGER_MS + SLACK_MS;
	next = now_ms();

	while (tcp_state(client) == TCP_ESTABLISHED) {
		if (every_ms >= 0 && now_ms() >= next && (sent == 0 || every_ms > 0)) {
			push(r, SIDE_CLIENT, ++sent);
			assert_int_equal(r->into[SIDE_UPSTREAM].sent, sent);
			next += (unsigned)every_ms;
		}
		step(r, deadline, "the proxy to give up on the client");
	}
	/*
	 * The proxy started lingering after the reset; libevent's coarse clock
	 * may fire a timer a few ms early.
	 */
	if (now_ms() + 10 < reset_at + LINGER_MS)
		fail_msg("the client's connection ended %llu ms after the reset, before the linger",
		    (unsigned long long)(now_ms() - reset_at));
	if (tcp_state(client) != TCP_CLOSE && tcp_state(client) != TCP_CLOSE_WAIT)
		fail_msg("client in TCP state %d, expected closed (RST) or close_wait (FIN)",
		    tcp_state(client));
}

/*
 * teardown = fin gives up on a live peer that never takes its bytes and
 * never closes: the record was written at the reset, and LINGER_MS later
 * (not before) the client's connection is closed.  Takes LINGER_MS.
 */
static void
linger_gives_up(void **state)
{
	expect_given_up(*state, 0);
}

/*
 * The same client sending a byte every 2 s is given up on as well, on time:
 * libevent restarts a persistent event's timeout whenever it fires for I/O,
 * so a linger measured from the last event would never end.  Takes
 * LINGER_MS + SLACK_MS at most.
 */
static void
linger_not_extended_by_peer_bytes(void **state)
{
	expect_given_up(*state, 2000);
}

/*
 * Giving up on a client that sends nothing either is seen by it at once:
 * the live leg is reset, not closed with a FIN that would queue behind the
 * megabytes of unsent data the client will never read (its connection
 * would stay established, and the proxy's side would live on as an orphaned
 * FIN-WAIT-1 socket holding that data).  Takes LINGER_MS + SLACK_MS.
 */
static void
linger_give_up_seen_by_silent_peer(void **state)
{
	expect_given_up(*state, -1);
}

/*
 * idle_timeout: with nothing moving after one byte, the session closes no
 * sooner than idle_timeout after that byte was sent, and within SLACK_MS of
 * it arriving (ms clocks: 2 ms of rounding allowed below).
 */
static void
idle_closes_quiet(void **state)
{
	enum { IDLE_MS = 500 };
	struct rig *r = *state;
	uint64_t sent_at, moved_at, closed_at;
	char keys[64];

	snprintf(keys, sizeof(keys), "idle_timeout = %dms\n", IDLE_MS);
	proxy_start(r, true, keys);
	open_session(r, 0);
	sent_at = now_ms();
	transfer(r, SIDE_UPSTREAM, 1);
	moved_at = now_ms();
	expect_seen(r, SIDE_CLIENT, IDLE_MS + SLACK_MS, SEEN_RST);
	closed_at = now_ms();
	if (closed_at + 2 < sent_at + IDLE_MS)
		fail_msg("closed %llu ms after the last byte, idle_timeout is %d ms",
		    (unsigned long long)(closed_at - sent_at), IDLE_MS);
	assert_true(closed_at - moved_at <= IDLE_MS + SLACK_MS);
	expect_session_record(r, "idle_timeout", "rst", 0);
}

/*
 * A byte from the upstream every idle_timeout / 3 keeps the session open
 * for three idle_timeouts: the idle timer counts bytes in either direction.
 */
static void
idle_spares_traffic(void **state)
{
	enum { IDLE_MS = 1200, ROUNDS = 9 };
	struct rig *r = *state;
	char keys[64];
	int round;

	snprintf(keys, sizeof(keys), "idle_timeout = %dms\n", IDLE_MS);
	proxy_start(r, true, keys);
	open_session(r, 0);
	for (round = 1; round <= ROUNDS; round++) {
		push(r, SIDE_UPSTREAM, (size_t)round);
		expect_seen(r, SIDE_CLIENT, IDLE_MS / 3, SEEN_NOTHING);
		assert_int_equal(r->into[SIDE_CLIENT].received, (size_t)round);
	}
	assert_int_equal(pull(r, SIDE_UPSTREAM), SEEN_NOTHING);
	expect_no_record(r);
}

/*
 * GET /closed's ring, newest first: empty at the start, and past
 * SESSION_CLOSED_MAX closes the oldest ones are the ones overwritten.
 */
static void
closed_ring_order(void **state)
{
	static struct session_set set;
	uint64_t t;

	(void)state;
	session_set_init(&set, NULL, NULL);
	assert_null(session_set_closed_at(&set, 0));
	for (t = 0; t < SESSION_CLOSED_MAX + 6; t++)
		set.closed[set.closed_total++ % SESSION_CLOSED_MAX].id = t;
	assert_int_equal(session_set_closed_at(&set, 0)->id, SESSION_CLOSED_MAX + 5);
	assert_int_equal(session_set_closed_at(&set, 1)->id, SESSION_CLOSED_MAX + 4);
	assert_int_equal(session_set_closed_at(&set, SESSION_CLOSED_MAX - 1)->id, 6);
	assert_null(session_set_closed_at(&set, SESSION_CLOSED_MAX));
}

int
main(void)
{
	static const struct CMUnitTest fixed[] = {
		cmocka_unit_test(closed_ring_order),
		cmocka_unit_test_setup_teardown(half_close_client_first, rig_setup, rig_teardown),
		cmocka_unit_test_setup_teardown(half_close_upstream_first, rig_setup, rig_teardown),
		cmocka_unit_test_setup_teardown(backpressure_bounded, rig_setup, rig_teardown),
		cmocka_unit_test_setup_teardown(dropped_pipe_not_counted, rig_setup, rig_teardown),
		cmocka_unit_test_setup_teardown(idle_closes_quiet, rig_setup, rig_teardown),
		cmocka_unit_test_setup_teardown(idle_spares_traffic, rig_setup, rig_teardown),
		cmocka_unit_test_setup_teardown(fin_delivers_owed, rig_setup, rig_teardown),
		cmocka_unit_test_setup_teardown(linger_gives_up, rig_setup, rig_teardown),
		cmocka_unit_test_setup_teardown(linger_not_extended_by_peer_bytes, rig_setup,
		    rig_teardown),
		cmocka_unit_test_setup_teardown(linger_give_up_seen_by_silent_peer,
		    rig_setup, rig_teardown),
	};
	enum { N_FIXED = sizeof(fixed) / sizeof(fixed[0]) };
	struct CMUnitTest tests[N_FIXED + N_ROWS];
	static char names[N_ROWS][64];
	size_t i;

	memcpy(tests, fixed, sizeof(fixed));
	for (i = 0; i < N_ROWS; i++) {
		snprintf(names[i], sizeof(names[i]), "teardown = %s, %s", teardown_rows[i].setting,
		    teardown_rows[i].reason);
		tests[N_FIXED + i] = (struct CMUnitTest){ .name = names[i],
			.test_func = teardown_row, .setup_func = rig_setup,
			.teardown_func = rig_teardown, .initial_state = &teardown_rows[i] };
	}
	signal(SIGPIPE, SIG_IGN);   /* a write to a reset peer is an errno, as in the daemon */
	log_set_level(LOG_LEVEL_ERROR);
	return _cmocka_run_group_tests("session", tests, N_FIXED + N_ROWS, NULL, NULL);
}
