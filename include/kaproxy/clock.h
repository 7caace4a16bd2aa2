/*
 * The monotonic clock in milliseconds, for deadlines and ages: a wall-clock
 * step must neither fire nor starve them.  A vDSO read, no syscall, so it may
 * be called on the per-splice path.
 */
#ifndef KAPROXY_CLOCK_H
#define KAPROXY_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t
clock_monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

#endif
