/*
 * loadgen.c: kaproxy's benchmark load generator and upstream server.
 *
 * One binary, one subcommand per role, so the same code drives every target
 * (direct, kaproxy, HAProxy, socat) and the upstream is never the bottleneck:
 *
 *   loadgen server   -p PORT [-t THREADS]         epoll sink/echo upstream
 *   loadgen wait     -p PORT [-T MS]              until PORT echoes a probe
 *   loadgen bulk     -p PORT -c STREAMS -d SECS [-P PID]
 *   loadgen pingpong -p PORT -d SECS [-s SIZE] [-A PID,PID...]
 *   loadgen connrate -p PORT -c CONC -d SECS [-s SIZE]
 *   loadgen idle     -p PORT -n COUNT [-P PID] [-S SETTLE_MS] [-x]
 *
 * -x (wait, idle): each connection first says a PROXY v1 header, as a load
 * balancer in front of a proxy with accept_proxy does.
 *
 * Wire protocol with the server: the first byte a client sends picks the
 * connection's mode: 'S' = sink (read and discard), 'E' = echo (every later
 * byte is sent back). The server closes a connection when it reads EOF, so a
 * client that shuts down its write side and reads until EOF knows the server
 * has consumed everything it sent, whatever proxy sits in between.
 *
 * Measuring subcommands print one line of name=value pairs on stdout and exit
 * 0; run.sh collects them. -P PID names a proxy process whose CPU time (bulk)
 * or memory (idle) is measured, summed over PID and its descendants so that a
 * forking proxy (socat fork) is charged for its children too.
 *
 * pingpong -A pins itself and every thread of the listed process trees to
 * one CPU for the test, then restores their affinity. On a small VM a wakeup
 * across CPUs costs tens of microseconds and which hops cross depends on the
 * scheduler's placement; on one CPU the figure is the software path alone.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define MODE_SINK 'S'
#define MODE_ECHO 'E'
#define BULK_CHUNK (128 * 1024)
#define SERVER_BUF (256 * 1024)
#define MAX_THREADS 64

struct opts {
	int port;
	int threads;     /* server threads, or client streams / concurrency */
	double secs;     /* test duration */
	int size;        /* message size for pingpong / connrate */
	int count;       /* idle connections */
	pid_t pid;       /* proxy to measure, 0 = none */
	char *pin;       /* pingpong: comma-separated pids to pin with us */
	int settle_ms;   /* idle: wait before reading memory */
	int timeout_ms;  /* wait: give up after */
	int proxy_v1;    /* idle: say a PROXY v1 header first (accept_proxy) */
};

static void unpin_all(void);

static void
die(const char *fmt, ...)
{
	va_list ap;
	int saved = errno;

	va_start(ap, fmt);
	fprintf(stderr, "loadgen: ");
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (saved != 0)
		fprintf(stderr, ": %s", strerror(saved));
	fputc('\n', stderr);
	unpin_all();
	exit(2);
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static void
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static struct sockaddr_in
loopback(int port)
{
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return sin;
}

/*
 * A blocking connected socket, or -1 with errno set. A src of 0 lets the
 * kernel pick 127.0.0.1; otherwise the connection comes from 127.0.0.src,
 * with the port chosen at connect() time so the whole 4-tuple counts.
 */
static int
dial_from(int port, int src)
{
	struct sockaddr_in sin = loopback(port), from;
	int fd, saved, one = 1;

	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	if (src != 0) {
		memset(&from, 0, sizeof(from));
		from.sin_family = AF_INET;
		from.sin_addr.s_addr = htonl(0x7f000000u | (uint32_t)src);
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&from, sizeof(from)) == -1) {
			saved = errno;
			close(fd);
			errno = saved;
			return -1;
		}
	}
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

static int
dial(int port)
{
	return dial_from(port, 0);
}

static int
write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = send(fd, p, len, MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* 0 once len bytes are read; -1 on error or early EOF (errno 0 on EOF). */
static int
read_all(int fd, void *buf, size_t len)
{
	char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = recv(fd, p, len, 0);
		if (n == 0) {
			errno = 0;
			return -1;
		}
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* ---- process accounting (CPU time, memory) over a process tree ---- */

/* Parent pid from /proc/PID/stat; -1 if unreadable. */
static pid_t
proc_ppid(pid_t pid, unsigned long long *ticks)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	long long cut, cst;
	int ppid;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* comm may contain spaces and parentheses: fields resume after the last ')' */
	if ((p = strrchr(buf, ')')) == NULL)
		return -1;
	/* state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime */
	if (sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld",
	    &ppid, &ut, &st, &cut, &cst) != 5)
		return -1;
	if (ticks != NULL)
		*ticks = ut + st + (unsigned long long)cut + (unsigned long long)cst;
	return ppid;
}

/*
 * The pids of root and all its live descendants, into out (at most max).
 * Returns how many; 0 if root is gone.
 */
static int
proc_tree(pid_t root, pid_t *out, int max)
{
	struct { pid_t pid, ppid; } *all = NULL;
	int nall = 0, cap = 0, n = 0, i, grew;
	struct dirent *de;
	DIR *d;

	if (proc_ppid(root, NULL) == -1)
		return 0;
	out[n++] = root;
	if ((d = opendir("/proc")) == NULL)
		return n;
	while ((de = readdir(d)) != NULL) {
		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		if (nall == cap) {
			cap = cap ? cap * 2 : 1024;
			if ((all = realloc(all, (size_t)cap * sizeof(*all))) == NULL)
				die("realloc");
		}
		all[nall].pid = (pid_t)atoi(de->d_name);
		all[nall].ppid = proc_ppid(all[nall].pid, NULL);
		nall++;
	}
	closedir(d);
	/* Repeat until no new child is found: the list is not in tree order. */
	do {
		grew = 0;
		for (i = 0; i < nall && n < max; i++) {
			int j, in = 0, parent = 0;

			for (j = 0; j < n; j++) {
				if (out[j] == all[i].pid)
					in = 1;
				if (out[j] == all[i].ppid)
					parent = 1;
			}
			if (!in && parent) {
				out[n++] = all[i].pid;
				grew = 1;
			}
		}
	} while (grew);
	free(all);
	return n;
}

/*
 * CPU seconds (user+system) used by pid and its descendants, including
 * children already reaped (cutime/cstime). -1 if pid is 0 or gone.
 */
static double
tree_cpu_seconds(pid_t pid)
{
	static pid_t tree[32768];
	unsigned long long t, sum = 0;
	int i, n;

	if (pid <= 0 || (n = proc_tree(pid, tree, 32768)) == 0)
		return -1;
	for (i = 0; i < n; i++)
		if (proc_ppid(tree[i], &t) != -1)
			sum += t;
	return (double)sum / (double)sysconf(_SC_CLK_TCK);
}

/* Rss and Pss in KiB summed over pid and its descendants. -1 if gone. */
static int
tree_memory_kib(pid_t pid, long long *rss, long long *pss)
{
	static pid_t tree[32768];
	char path[64], line[256];
	long long v;
	int i, n;
	FILE *f;

	*rss = *pss = 0;
	if (pid <= 0 || (n = proc_tree(pid, tree, 32768)) == 0)
		return -1;
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)tree[i]);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		while (fgets(line, sizeof(line), f) != NULL) {
			if (sscanf(line, "Rss: %lld", &v) == 1)
				*rss += v;
			else if (sscanf(line, "Pss: %lld", &v) == 1)
				*pss += v;
		}
		fclose(f);
	}
	return n;
}

/* ---- server ---- */

struct conn {
	int fd;
	char mode;        /* 0 until the first byte arrives */
	char *pending;    /* echo bytes the socket would not take yet */
	size_t plen, poff;
};

static void
conn_free(int ep, struct conn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->pending);
	free(c);
}

/* Send what the echo owes; 0 when all is out, 1 when blocked, -1 on error. */
static int
conn_flush(int ep, struct conn *c)
{
	struct epoll_event ev;
	ssize_t n;

	while (c->poff < c->plen) {
		n = send(c->fd, c->pending + c->poff, c->plen - c->poff, MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 1;
			return -1;
		}
		c->poff += (size_t)n;
	}
	free(c->pending);
	c->pending = NULL;
	c->plen = c->poff = 0;
	ev.events = EPOLLIN;
	ev.data.ptr = c;
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
	return 0;
}

/* Echo buf back; what does not fit is kept and reading pauses. */
static int
conn_echo(int ep, struct conn *c, const char *buf, size_t len)
{
	struct epoll_event ev;
	ssize_t n = 0;

	while (len > 0) {
		n = send(c->fd, buf, len, MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return -1;
			break;
		}
		buf += n;
		len -= (size_t)n;
	}
	if (len == 0)
		return 0;
	if ((c->pending = malloc(len)) == NULL)
		return -1;
	memcpy(c->pending, buf, len);
	c->plen = len;
	c->poff = 0;
	ev.events = EPOLLOUT;
	ev.data.ptr = c;
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
	return 0;
}

static void
conn_readable(int ep, struct conn *c, char *buf)
{
	ssize_t n;
	size_t off;

	for (;;) {
		n = recv(c->fd, buf, SERVER_BUF, 0);
		if (n == 0) {
			conn_free(ep, c);
			return;
		}
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				conn_free(ep, c);
			return;
		}
		off = 0;
		if (c->mode == 0) {
			c->mode = buf[0];
			off = 1;
		}
		if (c->mode == MODE_ECHO && (size_t)n > off) {
			if (conn_echo(ep, c, buf + off, (size_t)n - off) == -1) {
				conn_free(ep, c);
				return;
			}
			if (c->pending != NULL)
				return;
		}
		if (n < SERVER_BUF)
			return;   /* drained; level-triggered epoll calls again */
	}
}

static void *
server_thread(void *arg)
{
	const struct opts *o = arg;
	struct sockaddr_in sin = loopback(o->port);
	struct epoll_event ev, evs[256];
	int lfd, ep, one = 1, i, n;
	char *buf;

	if ((buf = malloc(SERVER_BUF)) == NULL)
		die("malloc");
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd == -1)
		die("socket");
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) == -1)
		die("bind 127.0.0.1:%d", o->port);
	if (listen(lfd, 4096) == -1)
		die("listen");
	if ((ep = epoll_create1(EPOLL_CLOEXEC)) == -1)
		die("epoll_create1");
	ev.events = EPOLLIN;
	ev.data.ptr = NULL;   /* NULL marks the listener */
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);

	for (;;) {
		n = epoll_wait(ep, evs, 256, -1);
		for (i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;

			if (c == NULL) {
				int fd;

				while ((fd = accept4(lfd, NULL, NULL,
				    SOCK_NONBLOCK | SOCK_CLOEXEC)) != -1) {
					if ((c = calloc(1, sizeof(*c))) == NULL) {
						close(fd);
						continue;
					}
					c->fd = fd;
					setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
					ev.events = EPOLLIN;
					ev.data.ptr = c;
					epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
				}
				continue;
			}
			if (c->pending != NULL) {
				if (evs[i].events & (EPOLLERR | EPOLLHUP)) {
					conn_free(ep, c);
				} else {
					int r = conn_flush(ep, c);

					if (r == -1)
						conn_free(ep, c);
					else if (r == 0)
						conn_readable(ep, c, buf);
				}
				continue;
			}
			conn_readable(ep, c, buf);
		}
	}
	return NULL;
}

static int
cmd_server(struct opts *o)
{
	pthread_t t[MAX_THREADS];
	int i;

	signal(SIGPIPE, SIG_IGN);
	for (i = 0; i < o->threads; i++)
		if (pthread_create(&t[i], NULL, server_thread, o) != 0)
			die("pthread_create");
	for (i = 0; i < o->threads; i++)
		pthread_join(t[i], NULL);
	return 0;
}

/* ---- wait: the target accepts and echoes end to end ---- */

/* The header a load balancer in front would send, naming this connection. */
static int
say_proxy_v1(int fd, int port)
{
	struct sockaddr_in me;
	socklen_t len = sizeof(me);
	char hdr[64];
	int n;

	if (getsockname(fd, (struct sockaddr *)&me, &len) == -1)
		return -1;
	n = snprintf(hdr, sizeof(hdr), "PROXY TCP4 127.0.0.1 127.0.0.1 %u %d\r\n",
	    ntohs(me.sin_port), port);
	return write_all(fd, hdr, (size_t)n);
}

static int
probe(int port, int proxy_v1)
{
	char out[5] = { MODE_ECHO, 'p', 'i', 'n', 'g' }, in[4];
	struct timeval tv = { 2, 0 };
	int fd, ok;

	if ((fd = dial(port)) == -1)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ok = (!proxy_v1 || say_proxy_v1(fd, port) == 0) &&
	    write_all(fd, out, sizeof(out)) == 0 &&
	    read_all(fd, in, sizeof(in)) == 0 && memcmp(in, out + 1, 4) == 0;
	close(fd);
	return ok ? 0 : -1;
}

static int
cmd_wait(struct opts *o)
{
	double end = now() + o->timeout_ms / 1000.0;

	while (probe(o->port, o->proxy_v1) == -1) {
		if (now() > end) {
			fprintf(stderr, "loadgen: nothing echoes on 127.0.0.1:%d\n", o->port);
			return 1;
		}
		sleep_ms(50);
	}
	return 0;
}

/* ---- bulk: one-way throughput into the sink ---- */

struct bulk_stream {
	const struct opts *o;
	pthread_barrier_t *ready;
	double *start;
	double end;
	unsigned long long bytes;
	int fd;
	int failed;
};

static void *
bulk_thread(void *arg)
{
	struct bulk_stream *s = arg;
	char *buf, mode = MODE_SINK, sink[4096];
	double deadline;
	ssize_t n;

	if ((buf = malloc(BULK_CHUNK)) == NULL)
		die("malloc");
	memset(buf, 'x', BULK_CHUNK);
	if (write_all(s->fd, &mode, 1) == -1)
		s->failed = 1;
	pthread_barrier_wait(s->ready);   /* every stream connected */
	pthread_barrier_wait(s->ready);   /* main thread took the start time */
	deadline = *s->start + s->o->secs;
	while (!s->failed && now() < deadline) {
		n = send(s->fd, buf, BULK_CHUNK, MSG_NOSIGNAL);
		if (n == -1) {
			if (errno != EINTR)
				s->failed = 1;
			continue;
		}
		s->bytes += (unsigned long long)n;
	}
	/* The sink closes on EOF: its close tells us everything arrived. */
	shutdown(s->fd, SHUT_WR);
	while ((n = recv(s->fd, sink, sizeof(sink), 0)) > 0 || (n == -1 && errno == EINTR))
		;
	s->end = now();
	close(s->fd);
	free(buf);
	return NULL;
}

static int
cmd_bulk(struct opts *o)
{
	struct bulk_stream s[MAX_THREADS];
	pthread_t t[MAX_THREADS];
	pthread_barrier_t ready;
	double start = 0, end = 0, cpu0, cpu1;
	unsigned long long bytes = 0;
	int i, failed = 0;

	pthread_barrier_init(&ready, NULL, (unsigned)o->threads + 1);
	for (i = 0; i < o->threads; i++) {
		memset(&s[i], 0, sizeof(s[i]));
		s[i].o = o;
		s[i].ready = &ready;
		s[i].start = &start;
		if ((s[i].fd = dial(o->port)) == -1)
			die("connect 127.0.0.1:%d", o->port);
		if (pthread_create(&t[i], NULL, bulk_thread, &s[i]) != 0)
			die("pthread_create");
	}
	pthread_barrier_wait(&ready);
	cpu0 = tree_cpu_seconds(o->pid);
	start = now();
	pthread_barrier_wait(&ready);
	for (i = 0; i < o->threads; i++) {
		pthread_join(t[i], NULL);
		bytes += s[i].bytes;
		failed |= s[i].failed;
		if (s[i].end > end)
			end = s[i].end;
	}
	/* A forking proxy's children are charged once their parent reaps them. */
	if (o->pid > 0)
		sleep_ms(200);
	cpu1 = tree_cpu_seconds(o->pid);
	printf("gbps=%.3f bytes=%llu secs=%.3f streams=%d failed=%d",
	    bytes * 8 / (end - start) / 1e9, bytes, end - start, o->threads, failed);
	if (cpu0 >= 0 && cpu1 >= 0)
		printf(" cpu_s=%.2f cpu_s_per_gb=%.3f", cpu1 - cpu0,
		    bytes ? (cpu1 - cpu0) / (bytes / 1e9) : 0);
	printf("\n");
	return failed ? 1 : 0;
}

/* ---- CPU pinning for pingpong -A ---- */

struct pinned {
	pid_t tid;
	cpu_set_t saved;
};

static struct pinned pins[4096];
static int npins;

static void
pin_task(pid_t tid, int cpu)
{
	cpu_set_t set;

	if (npins == (int)(sizeof(pins) / sizeof(pins[0])))
		return;
	if (sched_getaffinity(tid, sizeof(cpu_set_t), &pins[npins].saved) == -1)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(tid, sizeof(set), &set) == -1) {
		fprintf(stderr, "loadgen: pin %d: %s\n", (int)tid, strerror(errno));
		return;
	}
	pins[npins++].tid = tid;
}

/* Pin us and every thread of each listed pid's tree to cpu. */
static void
pin_all(char *list, int cpu)
{
	static pid_t tree[32768];
	char path[64], *tok, *save = NULL;
	struct dirent *de;
	int i, n;
	DIR *d;

	pin_task(0, cpu);
	for (tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if ((n = proc_tree((pid_t)atoi(tok), tree, 32768)) == 0)
			continue;
		for (i = 0; i < n; i++) {
			snprintf(path, sizeof(path), "/proc/%d/task", (int)tree[i]);
			if ((d = opendir(path)) == NULL)
				continue;
			while ((de = readdir(d)) != NULL)
				if (isdigit((unsigned char)de->d_name[0]))
					pin_task((pid_t)atoi(de->d_name), cpu);
			closedir(d);
		}
	}
}

static void
unpin_all(void)
{
	while (npins > 0) {
		npins--;
		(void)sched_setaffinity(pins[npins].tid, sizeof(cpu_set_t), &pins[npins].saved);
	}
}

/* run.sh's time limit sends SIGTERM: leave nobody pinned behind. */
static void
unpin_and_exit(int sig)
{
	unpin_all();
	_exit(128 + sig);
}

/* ---- pingpong: request/response latency over one connection ---- */

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static int
cmd_pingpong(struct opts *o)
{
	size_t cap = 4 * 1000 * 1000, n = 0;
	double *lat, deadline, t0, t1, sum = 0;
	char *buf, *in, mode = MODE_ECHO;
	int fd, one = 1, i, pinned;

	if ((lat = malloc(cap * sizeof(*lat))) == NULL ||
	    (buf = malloc((size_t)o->size)) == NULL ||
	    (in = malloc((size_t)o->size)) == NULL)
		die("malloc");
	memset(buf, 'q', (size_t)o->size);
	if (o->pin != NULL) {
		signal(SIGTERM, unpin_and_exit);
		signal(SIGINT, unpin_and_exit);
		pin_all(o->pin, 0);
	}
	if ((fd = dial(o->port)) == -1)
		die("connect 127.0.0.1:%d", o->port);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (write_all(fd, &mode, 1) == -1)
		die("send");
	for (i = 0; i < 200; i++)   /* warm up caches, TCP state, the proxy */
		if (write_all(fd, buf, (size_t)o->size) == -1 ||
		    read_all(fd, in, (size_t)o->size) == -1)
			die("warm-up exchange");
	deadline = now() + o->secs;
	do {
		t0 = now();
		if (write_all(fd, buf, (size_t)o->size) == -1 ||
		    read_all(fd, in, (size_t)o->size) == -1)
			die("exchange");
		t1 = now();
		lat[n++] = (t1 - t0) * 1e6;
		sum += (t1 - t0) * 1e6;
	} while (t1 < deadline && n < cap);
	close(fd);
	pinned = npins;
	unpin_all();
	qsort(lat, n, sizeof(*lat), cmp_double);
	printf("p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f mean_us=%.1f samples=%zu pinned=%d\n",
	    lat[n / 2], lat[(size_t)(n * 0.99)], lat[(size_t)(n * 0.999)], lat[n - 1], sum / n, n,
	    pinned);
	free(lat);
	free(buf);
	free(in);
	return 0;
}

/* ---- connrate: connect, SIZE bytes each way, close ---- */

struct rate_worker {
	const struct opts *o;
	double deadline;
	unsigned long ok, errors;
	int last_errno;
};

static void *
rate_thread(void *arg)
{
	struct rate_worker *w = arg;
	size_t size = (size_t)w->o->size;
	char *out, *in;
	int fd, src = 0;

	if ((out = malloc(size + 1)) == NULL || (in = malloc(size)) == NULL)
		die("malloc");
	memset(out, 'c', size + 1);
	out[0] = MODE_ECHO;
	while (now() < w->deadline) {
		/*
		 * Spread the client side over 127.0.0.2-254: tens of thousands
		 * of TIME_WAIT sockets from 127.0.0.1 to one port would make
		 * each connect() search for a free port, and the rate would
		 * depend on what ran before. A proxy's own upstream leg still
		 * bears that cost, as it would in production.
		 */
		src = src % 253 + 2;
		if ((fd = dial_from(w->o->port, src)) == -1) {
			w->errors++;
			w->last_errno = errno;
			sleep_ms(1);
			continue;
		}
		if (write_all(fd, out, size + 1) == 0 && read_all(fd, in, size) == 0) {
			w->ok++;
		} else {
			w->errors++;
			w->last_errno = errno;
		}
		close(fd);
	}
	free(out);
	free(in);
	return NULL;
}

static int
cmd_connrate(struct opts *o)
{
	struct rate_worker w[MAX_THREADS];
	pthread_t t[MAX_THREADS];
	unsigned long ok = 0, errors = 0;
	double start, end;
	int i, last_errno = 0;

	start = now();
	for (i = 0; i < o->threads; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].o = o;
		w[i].deadline = start + o->secs;
		if (pthread_create(&t[i], NULL, rate_thread, &w[i]) != 0)
			die("pthread_create");
	}
	for (i = 0; i < o->threads; i++) {
		pthread_join(t[i], NULL);
		ok += w[i].ok;
		errors += w[i].errors;
		if (w[i].last_errno)
			last_errno = w[i].last_errno;
	}
	end = now();
	printf("conn_per_s=%.0f ok=%lu errors=%lu concurrency=%d",
	    ok / (end - start), ok, errors, o->threads);
	if (errors)
		printf(" last_error=%s", last_errno ? strerror(last_errno) : "EOF");
	printf("\n");
	return 0;
}

/* ---- idle: memory the proxy spends per held-open connection ---- */

static int
cmd_idle(struct opts *o)
{
	long long rss0, pss0, rss1, pss1;
	char out[2] = { MODE_ECHO, 'i' }, in[1];
	struct timeval tv = { 5, 0 };
	int *fds, n = 0, i, procs0 = 0, procs1 = 0;
	const char *stopped = "";

	if ((fds = malloc((size_t)o->count * sizeof(*fds))) == NULL)
		die("malloc");
	if (o->pid > 0 && (procs0 = tree_memory_kib(o->pid, &rss0, &pss0)) <= 0)
		die("no process %d to measure", (int)o->pid);
	for (i = 0; i < o->count; i++) {
		/* A round trip proves the proxy also holds the upstream leg. */
		if ((fds[n] = dial(o->port)) == -1) {
			stopped = strerror(errno);
			break;
		}
		setsockopt(fds[n], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		if ((o->proxy_v1 && say_proxy_v1(fds[n], o->port) == -1) ||
		    write_all(fds[n], out, 2) == -1 || read_all(fds[n], in, 1) == -1) {
			stopped = errno ? strerror(errno) : "EOF";
			close(fds[n]);
			break;
		}
		n++;
	}
	sleep_ms(o->settle_ms);
	if (o->pid > 0)
		procs1 = tree_memory_kib(o->pid, &rss1, &pss1);
	printf("opened=%d wanted=%d", n, o->count);
	if (o->pid > 0 && procs1 > 0 && n > 0)
		printf(" rss_kib_per_conn=%.3f pss_kib_per_conn=%.3f rss0_kib=%lld rss1_kib=%lld procs0=%d procs1=%d",
		    (double)(rss1 - rss0) / n, (double)(pss1 - pss0) / n,
		    rss0, rss1, procs0, procs1);
	if (*stopped)
		printf(" stopped=\"%s\"", stopped);
	printf("\n");
	for (i = 0; i < n; i++)
		close(fds[i]);
	free(fds);
	return n == o->count ? 0 : 1;
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: loadgen server   -p PORT [-t THREADS]\n"
	    "       loadgen wait     -p PORT [-T MS] [-x]\n"
	    "       loadgen bulk     -p PORT [-c STREAMS] [-d SECS] [-P PID]\n"
	    "       loadgen pingpong -p PORT [-d SECS] [-s SIZE] [-A PID,PID...]\n"
	    "       loadgen connrate -p PORT [-c CONC] [-d SECS] [-s SIZE]\n"
	    "       loadgen idle     -p PORT [-n COUNT] [-P PID] [-S SETTLE_MS] [-x]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	struct opts o = { 0, 2, 1.0, 64, 1000, 0, NULL, 1000, 5000, 0 };
	const char *cmd;
	int ch;

	if (argc < 2)
		usage();
	cmd = argv[1];
	optind = 2;
	while ((ch = getopt(argc, argv, "p:t:c:d:s:n:P:S:T:A:x")) != -1) {
		switch (ch) {
		case 'p': o.port = atoi(optarg); break;
		case 't': case 'c': o.threads = atoi(optarg); break;
		case 'd': o.secs = atof(optarg); break;
		case 's': o.size = atoi(optarg); break;
		case 'n': o.count = atoi(optarg); break;
		case 'P': o.pid = (pid_t)atoi(optarg); break;
		case 'S': o.settle_ms = atoi(optarg); break;
		case 'T': o.timeout_ms = atoi(optarg); break;
		case 'A': o.pin = optarg; break;
		case 'x': o.proxy_v1 = 1; break;
		default: usage();
		}
	}
	if (o.port <= 0 || o.port > 65535 || o.threads < 1 || o.threads > MAX_THREADS ||
	    o.size < 1 || o.count < 1 || o.secs <= 0)
		usage();
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(cmd, "server") == 0)
		return cmd_server(&o);
	if (strcmp(cmd, "wait") == 0)
		return cmd_wait(&o);
	if (strcmp(cmd, "bulk") == 0)
		return cmd_bulk(&o);
	if (strcmp(cmd, "pingpong") == 0)
		return cmd_pingpong(&o);
	if (strcmp(cmd, "connrate") == 0)
		return cmd_connrate(&o);
	if (strcmp(cmd, "idle") == 0)
		return cmd_idle(&o);
	usage();
	return 2;
}
