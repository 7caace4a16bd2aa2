/*
 * loopback: what the unit tests that need real TCP share, on 127.0.0.1
 * only and without root.  Include after <cmocka.h>.
 */
#ifndef KAPROXY_TEST_LOOPBACK_H
#define KAPROXY_TEST_LOOPBACK_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

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
