/*
 * fuzz.h: what the fuzz targets share.  A broken invariant aborts, which
 * libFuzzer reports as a crash and saves the input that broke it.
 */
#ifndef KAPROXY_FUZZ_H
#define KAPROXY_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Abort with the failed condition and where, whatever the build's NDEBUG. */
#define FUZZ_CHECK(cond) do {                                                \
	if (!(cond)) {                                                       \
		fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__,   \
		    __LINE__, #cond);                                        \
		abort();                                                     \
	}                                                                    \
} while (0)

/* The input as a C string: a NUL-terminated copy, which the caller frees.
 * An embedded NUL ends it, as it would end a value inih hands over. */
static inline char *
fuzz_string(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);

	if (text == NULL)
		abort();
	memcpy(text, data, size);
	text[size] = '\0';
	return text;
}

/* Where reports go to be written and forgotten: output code runs in full,
 * nothing reaches the terminal. */
static inline FILE *
fuzz_sink(void)
{
	static FILE *sink;

	if (sink == NULL && (sink = fopen("/dev/null", "w")) == NULL)
		abort();
	return sink;
}

#endif
