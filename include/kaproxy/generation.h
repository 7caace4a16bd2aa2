/*
 * generation: one loaded configuration and who still uses it.
 *
 * Every listener built from a config holds a reference, and so does the
 * daemon while it is the current one; the last reference frees the config.
 * References move only at start, reload and listener retirement, never per
 * connection, and from any thread.
 */
#ifndef KAPROXY_GENERATION_H
#define KAPROXY_GENERATION_H

#include <stdatomic.h>

#include "kaproxy/config.h"

struct generation {
	struct config *cfg;
	atomic_uint refs;
};

/* A new generation owning cfg, with one reference for the caller (NULL on ENOMEM). */
struct generation *generation_new(struct config *cfg);

void generation_ref(struct generation *gen);

/* Drop a reference; the last one frees gen and its config. */
void generation_unref(struct generation *gen);

#endif
