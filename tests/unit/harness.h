/*
 * harness: what several unit tests share: loopback sockets (127.0.0.1
 * only, no root), a monotonic clock, and counting what a call logs.
 * Include after <cmocka.h>.
 */
#ifndef KAPROXY_TEST_HARNESS_H
#define KAPROXY_TEST_HARNESS_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "kaproxy/clock.h"

/* Milliseconds on the monotonic clock, kaproxy's own. */
static inline uint64_t
now_ms(void)
{
	return clock_monotonic_ms();
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

/* Count the lines of stderr output that contain needle while fn runs. */
static inline int
stderr_lines_with(void (*fn)(void), const char *needle)
{
	char path[] = "/tmp/kaproxy-test-stderr.XXXXXX", buf[4096];
	int fd = mkstemp(path), saved = dup(STDERR_FILENO), count = 0;
	ssize_t n;
	char *p;

	assert_true(fd >= 0 && saved >= 0);
	assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	fn();
	assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
	close(saved);
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	assert_true(n >= 0);
	buf[n] = '\0';
	for (p = buf; (p = strstr(p, needle)) != NULL; p++)
		count++;
	close(fd);
	unlink(path);
	return count;
}

#endif
