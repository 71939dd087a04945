/*
 * pool.h - request memory pools.
 */
#ifndef MOLT_POOL_H
#define MOLT_POOL_H

#include <stddef.h>

#include "molt/module.h"

struct pool_block;
struct pool_cleanup;

struct molt_pool {
	struct pool_block   *cur;      /* block being carved */
	struct pool_block   *first;    /* kept across pool_reset */
	struct pool_block   *large;    /* big allocations, freed on reset */
	struct pool_cleanup *cleanups;
	size_t               block_size;
	size_t               allocated; /* bytes obtained from malloc, for stats */
};

struct molt_pool *pool_create(size_t block_size);
/*
 * A pool whose first block is the caller's memory (size bytes, 16-byte
 * aligned): a connection keeps its pool inside itself.  Release it with
 * pool_reset; there is nothing to destroy.
 */
void pool_init(struct molt_pool *p, void *mem, size_t size);
/* Runs the cleanups and frees everything but the first block. */
void pool_reset(struct molt_pool *p);
/* Only for pool_create's pools. */
void pool_destroy(struct molt_pool *p);

#endif /* MOLT_POOL_H */
