/*
 * generation: a loaded configuration, reference counted across threads.
 */
#include <stdlib.h>

#include "kaproxy/generation.h"

struct generation *
generation_new(struct config *cfg)
{
	struct generation *gen = calloc(1, sizeof(*gen));

	if (gen != NULL) {
		gen->cfg = cfg;
		atomic_init(&gen->refs, 1);
	}
	return gen;
}

void
generation_ref(struct generation *gen)
{
	atomic_fetch_add_explicit(&gen->refs, 1, memory_order_relaxed);
}

void
generation_unref(struct generation *gen)
{
	if (atomic_fetch_sub_explicit(&gen->refs, 1, memory_order_acq_rel) != 1)
		return;
	config_free(gen->cfg);
	free(gen);
}
