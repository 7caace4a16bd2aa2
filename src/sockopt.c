/*
 * sockopt: one small helper per socket option, each naming the option in
 * its error, in the manner of a leg's policy.
 */
#include <errno.h>
#include <netinet/in.h>
#include <linux/tcp.h>          /* struct tcp_info with tcpi_snd_wnd (glibc's lacks it) */
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kaproxy/log.h"
#include "kaproxy/sockopt.h"

static int
set_int(int fd, int level, int name, int value, const char *optname, const char *what)
{
	if (setsockopt(fd, level, name, &value, sizeof(value)) == -1) {
		log_warn("%s: setsockopt %s = %d", what, optname, value);
		return -1;
	}
	return 0;
}

int
sockopt_apply_policy(int fd, const struct leg_policy *policy, const char *what)
{
	/*
	 * The keepalive timings are set even when SO_KEEPALIVE is off: they
	 * cost nothing, and a reload or an operator turning keepalive on with
	 * setsockopt gets the configured values rather than the system's.
	 *
	 * On a live socket, TCP_KEEPIDLE re-arms the keepalive timer from the
	 * last segment received, and turning SO_KEEPALIVE on arms it: both come
	 * after the interval and the user timeout, so a timer that fires at
	 * once (a leg silent for longer than the new idle) already runs with
	 * them, not with the old ones.
	 */
	if (set_int(fd, IPPROTO_TCP, TCP_KEEPINTVL, (int)policy->interval_s, "TCP_KEEPINTVL", what) == -1 ||
	    set_int(fd, IPPROTO_TCP, TCP_KEEPCNT, (int)policy->count, "TCP_KEEPCNT", what) == -1 ||
	    set_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, (int)policy->user_timeout_ms,
		"TCP_USER_TIMEOUT", what) == -1 ||
	    set_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, (int)policy->idle_s, "TCP_KEEPIDLE", what) == -1 ||
	    set_int(fd, SOL_SOCKET, SO_KEEPALIVE, policy->keepalive, "SO_KEEPALIVE", what) == -1 ||
	    set_int(fd, IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY", what) == -1)
		return -1;
	return 0;
}

static int
get_int(int fd, int level, int name, int *value)
{
	socklen_t len = sizeof(*value);

	return getsockopt(fd, level, name, value, &len);
}

int
sockopt_read_policy(int fd, struct leg_policy *p)
{
	int keepalive, idle, interval, count, user_timeout;

	memset(p, 0, sizeof(*p));
	if (fd < 0 || get_int(fd, SOL_SOCKET, SO_KEEPALIVE, &keepalive) == -1 ||
	    get_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle) == -1 ||
	    get_int(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval) == -1 ||
	    get_int(fd, IPPROTO_TCP, TCP_KEEPCNT, &count) == -1 ||
	    get_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout) == -1)
		return -1;
	p->keepalive = keepalive != 0;
	p->idle_s = (uint32_t)idle;
	p->interval_s = (uint32_t)interval;
	p->count = (uint32_t)count;
	p->user_timeout_ms = (uint32_t)user_timeout;
	return 0;
}

void
sockopt_close_rst(int fd)
{
	/* A zeroed linger would mean "off", which sends FIN: onoff must be 1. */
	struct linger linger = { .l_onoff = 1, .l_linger = 0 };

	if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, sizeof(linger)) == -1)
		log_warn("setsockopt SO_LINGER {1, 0} on fd %d", fd);
	close(fd);
}

int
sockopt_tcp_snapshot(int fd, struct tcp_snapshot *snap)
{
	struct tcp_info info;
	socklen_t len = sizeof(info);

	memset(snap, 0, sizeof(*snap));
	if (fd < 0)
		return -1;
	memset(&info, 0, sizeof(info));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) == -1)
		return -1;
	snap->state = info.tcpi_state;
	snap->probes = info.tcpi_probes;
	snap->retransmits = info.tcpi_retransmits;
	snap->backoff = info.tcpi_backoff;
	snap->rtt_us = info.tcpi_rtt;
	snap->rttvar_us = info.tcpi_rttvar;
	snap->total_retrans = info.tcpi_total_retrans;
	snap->unacked = info.tcpi_unacked;
	snap->last_data_recv_ms = info.tcpi_last_data_recv;
	snap->last_ack_recv_ms = info.tcpi_last_ack_recv;
	snap->last_data_sent_ms = info.tcpi_last_data_sent;
	/* A kernel older than the field returns a shorter struct. */
	snap->snd_wnd = len >= offsetof(struct tcp_info, tcpi_snd_wnd) + sizeof(info.tcpi_snd_wnd) ?
	    info.tcpi_snd_wnd : TCP_SNAPSHOT_NO_WND;
	return 0;
}

const char *
sockopt_state_name(uint8_t state)
{
	static const char *const names[] = {
		"unknown", "established", "syn_sent", "syn_recv", "fin_wait1",
		"fin_wait2", "time_wait", "close", "close_wait", "last_ack",
		"listen", "closing",
	};

	if (state >= sizeof(names) / sizeof(names[0]))
		return "unknown";
	return names[state];
}
