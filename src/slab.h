/*
 * slab.h - fixed-size objects in 2 MiB chunks that ask for huge pages.
 */
#ifndef MOLT_SLAB_H
#define MOLT_SLAB_H

#include <stddef.h>
#include <stdint.h>

#define SLAB_CHUNK ((size_t)2 << 20)   /* one x86-64 huge page */

struct slab_chunk;

struct slab {
	size_t             size;       /* slot size, a multiple of 64 */
	unsigned           per_chunk;  /* slots in a chunk */
	struct slab_chunk *avail;      /* chunks with a free slot; the rest are full */
	unsigned           nchunks;
	unsigned           nempty;     /* chunks with no slot in use (<= 1 kept) */
	size_t             pagesize;
	int                huge;       /* chunks ask for huge pages */
};

/* Slots are objsize (at least SLAB_LINK) rounded up to 64 bytes.  huge:
 * the chunks ask for transparent huge pages (MADV_HUGEPAGE). */
void  slab_init(struct slab *s, size_t objsize, int huge);

/*
 * Returns a slot, or NULL with errno set if no chunk can be mapped (not
 * logged: the caller says what it gave up, as often as it likes).  *fresh is 1
 * when the caller must build the object from nothing (a new slot, or one
 * whose pages slab_trim gave back); 0 when it is a slot the caller freed,
 * and every byte after the first SLAB_LINK is as the caller left it.
 */
void *slab_alloc(struct slab *s, int *fresh);
void  slab_free(struct slab *s, void *p);

/* Gives back the pages of free slots and of slots never used, unmaps
 * empty chunks, and keeps a trimmed chunk out of huge pages from then on;
 * returns the resident bytes given back. */
size_t slab_trim(struct slab *s);

/* Bytes mapped for chunks. */
size_t slab_mapped(const struct slab *s);

#define SLAB_LINK 16   /* bytes of a free slot the slab uses */

#endif
