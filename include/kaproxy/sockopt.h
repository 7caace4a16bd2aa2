/*
 * sockopt: the per-leg TCP socket options (keepalive, user timeout, nodelay),
 * RST-on-close, and a compact TCP_INFO snapshot.  Each setter returns 0 or
 * -1 after logging which option failed and why.
 */
#ifndef KAPROXY_SOCKOPT_H
#define KAPROXY_SOCKOPT_H

#include <stdint.h>

#include "kaproxy/config.h"

/* The TCP_INFO figures kaproxy reports for a leg. */
struct tcp_snapshot {
	uint8_t state;            /* TCP_ESTABLISHED, ... (0 when unavailable) */
	uint8_t probes;           /* keepalive/zero-window probes unanswered */
	uint8_t retransmits;      /* current retransmission count */
	uint8_t backoff;
	uint32_t rtt_us;
	uint32_t rttvar_us;
	uint32_t total_retrans;
	uint32_t unacked;
	uint32_t last_data_recv_ms;
	uint32_t last_ack_recv_ms;
	uint32_t last_data_sent_ms;   /* since the peer last accepted new data */
	uint32_t snd_wnd;             /* peer's receive window, TCP_SNAPSHOT_NO_WND if unknown */
};

#define TCP_SNAPSHOT_NO_WND UINT32_MAX

/*
 * Apply a leg policy to fd: SO_KEEPALIVE and, whether keepalive is on or not,
 * TCP_KEEPIDLE/KEEPINTVL/KEEPCNT and TCP_USER_TIMEOUT, plus TCP_NODELAY.
 * what names the socket in error messages ("listener demo", "upstream").
 */
int sockopt_apply_policy(int fd, const struct leg_policy *policy, const char *what);

/*
 * Read back the policy fd runs with now (SO_KEEPALIVE, TCP_KEEPIDLE/INTVL/CNT,
 * TCP_USER_TIMEOUT) into p; 0, or -1 when fd is closed or a read fails.
 */
int sockopt_read_policy(int fd, struct leg_policy *p);

/* Close fd so that the peer receives RST at once: SO_LINGER {1, 0} then close. */
void sockopt_close_rst(int fd);

/* Fill snap from TCP_INFO; returns 0, or -1 (snap zeroed) when unavailable. */
int sockopt_tcp_snapshot(int fd, struct tcp_snapshot *snap);

/* The name of a TCP state ("established", "close_wait", ...). */
const char *sockopt_state_name(uint8_t state);

#endif
