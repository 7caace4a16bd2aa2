/*
 * harness: what the unit tests that need real TCP and real time share:
 * loopback sockets (127.0.0.1 only, no root) and a monotonic clock.
 * Include after <cmocka.h>.
 */
#ifndef KAPROXY_TEST_HARNESS_H
#define KAPROXY_TEST_HARNESS_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Milliseconds on the monotonic clock. */
static inline uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A TCP socket bound to an ephemeral port of 127.0.0.1; *addr says which. */
static inline int
loopback_bound(struct sockaddr_in *addr)
{
	socklen_t len = sizeof(*addr);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	*addr = (struct sockaddr_in){ .sin_family = AF_INET,
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)addr, sizeof(*addr)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)addr, &len), 0);
	return fd;
}

/* A port of 127.0.0.1 that was free a moment ago (bound, then released). */
static inline unsigned
loopback_free_port(void)
{
	struct sockaddr_in addr;

	close(loopback_bound(&addr));
	return ntohs(addr.sin_port);
}

#endif
