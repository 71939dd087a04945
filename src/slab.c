/*
 * slab.c - fixed-size objects in 2 MiB chunks that ask for huge pages.
 *
 * A worker is a fresh process, and each page it touches for the first
 * time costs it a page fault: 10-17 us each on the guests in
 * doc/benchmarks.md.  The connections a recycled worker hands over are
 * new memory in the worker that adopts them, about four pages each, so a
 * recycle that moved 32 connections paid some 50 faults for connection
 * structs alone.  A chunk marked MADV_HUGEPAGE is mapped whole by its
 * first fault when the kernel has a huge page free; where it has none, or
 * THP is off, the chunk is ordinary pages and costs what malloc did.
 *
 * The price is memory: a huge page is resident as a whole.  So at most
 * one empty chunk is kept for reuse, and slab_trim (run with the
 * allocator trim the master asks for) gives back the pages of free slots
 * in chunks still in use and unmaps empty ones.  A chunk is found from a
 * slot by masking its address, which is why chunks are aligned.
 */
#include "autoconfig.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifdef MOLT_SANITIZERS
#include <sanitizer/asan_interface.h>
#include <sanitizer/lsan_interface.h>
/* Objects in a chunk point at malloc'ed memory, and LSan scans no mmap'ed
 * region unless told: without this every pool block would be a "leak". */
#define SLAB_ROOT(p, n)   __lsan_register_root_region(p, n)
#define SLAB_UNROOT(p, n) __lsan_unregister_root_region(p, n)
#else
#define SLAB_ROOT(p, n)   ((void)(p), (void)(n))
#define SLAB_UNROOT(p, n) ((void)(p), (void)(n))
#endif
#ifndef ASAN_POISON_MEMORY_REGION
#define ASAN_POISON_MEMORY_REGION(p, n)   ((void)(p), (void)(n))
#define ASAN_UNPOISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#endif

#include "log.h"
#include "slab.h"

struct slab_chunk {
	struct slab_chunk *next, *prev;  /* in s->avail unless full */
	struct slab_free  *free;         /* freed slots */
	unsigned           nused;        /* slots handed out */
	unsigned           nbump;        /* slots ever handed out */
};

/* A free slot's first bytes. */
struct slab_free {
	struct slab_free *next;
	int               fresh;  /* its pages went back: build anew */
};

#define SLAB_HDR   ((sizeof(struct slab_chunk) + 63) & ~(size_t)63)

_Static_assert(sizeof(struct slab_free) <= SLAB_LINK, "SLAB_LINK too small");

void
slab_init(struct slab *s, size_t objsize, int huge)
{
	long ps = sysconf(_SC_PAGESIZE);

	memset(s, 0, sizeof(*s));
	s->size = ((objsize < SLAB_LINK ? SLAB_LINK : objsize) + 63) &
	    ~(size_t)63;
	s->per_chunk = (unsigned)((SLAB_CHUNK - SLAB_HDR) / s->size);
	s->pagesize = ps > 0 ? (size_t)ps : 4096;
	s->huge = huge;
}

static struct slab_chunk *
slab_chunk_of(const void *p)
{
	return (struct slab_chunk *)((uintptr_t)p & ~(uintptr_t)(SLAB_CHUNK - 1));
}

static void
slab_unmap(void *p, size_t len)
{
	if (len > 0 && munmap(p, len) == -1)
		log_error("munmap(%p, %zu): %s", p, len, strerror(errno));
}

static void
slab_list(struct slab *s, struct slab_chunk *ch)
{
	ch->prev = NULL;
	ch->next = s->avail;
	if (s->avail != NULL)
		s->avail->prev = ch;
	s->avail = ch;
}

static void
slab_unlist(struct slab *s, struct slab_chunk *ch)
{
	if (ch->prev != NULL)
		ch->prev->next = ch->next;
	else
		s->avail = ch->next;
	if (ch->next != NULL)
		ch->next->prev = ch->prev;
}

static struct slab_chunk *
slab_chunk_new(struct slab *s)
{
	char *m, *a;
	struct slab_chunk *ch;

	if (s->per_chunk == 0) {
		errno = EINVAL;
		return NULL;
	}
	/* Twice the size, so an aligned chunk fits; the rest goes back. */
	m = mmap(NULL, 2 * SLAB_CHUNK, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return NULL;
	a = (char *)(((uintptr_t)m + SLAB_CHUNK - 1) &
	    ~(uintptr_t)(SLAB_CHUNK - 1));
	slab_unmap(m, (size_t)(a - m));
	slab_unmap(a + SLAB_CHUNK, (size_t)(m + SLAB_CHUNK - a));
	/* EINVAL: a kernel without THP; the chunk is ordinary pages. */
	if (s->huge && madvise(a, SLAB_CHUNK, MADV_HUGEPAGE) == -1 &&
	    errno != EINVAL)
		log_error("madvise(MADV_HUGEPAGE, %zu bytes): %s", SLAB_CHUNK,
		    strerror(errno));
	ch = (struct slab_chunk *)a;
	memset(ch, 0, sizeof(*ch));
	s->nchunks++;
	s->nempty++;
	slab_list(s, ch);
	SLAB_ROOT(a, SLAB_CHUNK);
	ASAN_POISON_MEMORY_REGION(a + SLAB_HDR, SLAB_CHUNK - SLAB_HDR);
	return ch;
}

/* Only an empty chunk is released, and an empty chunk is on the list. */
static void
slab_chunk_release(struct slab *s, struct slab_chunk *ch)
{
	slab_unlist(s, ch);
	s->nchunks--;
	s->nempty--;
	ASAN_UNPOISON_MEMORY_REGION((char *)ch, SLAB_CHUNK);
	SLAB_UNROOT(ch, SLAB_CHUNK);
	slab_unmap(ch, SLAB_CHUNK);
}

void *
slab_alloc(struct slab *s, int *fresh)
{
	struct slab_chunk *ch = s->avail;
	struct slab_free *f;
	char *p;

	if (ch == NULL && (ch = slab_chunk_new(s)) == NULL)
		return NULL;
	if (ch->nused == 0)
		s->nempty--;
	if ((f = ch->free) != NULL) {
		ASAN_UNPOISON_MEMORY_REGION(f, s->size);
		ch->free = f->next;
		*fresh = f->fresh;
		p = (char *)f;
	} else {
		p = (char *)ch + SLAB_HDR + (size_t)ch->nbump++ * s->size;
		ASAN_UNPOISON_MEMORY_REGION(p, s->size);
		*fresh = 1;
	}
	if (++ch->nused == s->per_chunk)
		slab_unlist(s, ch);
	return p;
}

void
slab_free(struct slab *s, void *p)
{
	struct slab_chunk *ch = slab_chunk_of(p);
	struct slab_free *f = p;

	/* A chunk that was full goes first: filling it lets the sparse
	 * ones empty out. */
	if (ch->nused == s->per_chunk)
		slab_list(s, ch);
	f->next = ch->free;
	f->fresh = 0;
	ch->free = f;
	ASAN_POISON_MEMORY_REGION((char *)p, s->size);
	if (--ch->nused > 0)
		return;
	if (s->nempty++ > 0)
		slab_chunk_release(s, ch);
}

/* Resident bytes of [lo, hi), both page-aligned, by mincore: what a trim
 * reports is what it took back, not what was mapped. */
static size_t
slab_resident(struct slab *s, char *lo, char *hi)
{
	unsigned char vec[SLAB_CHUNK / 4096];
	size_t n, i, resident = 0;

	n = (size_t)(hi - lo) / s->pagesize;
	if (hi <= lo || n > sizeof(vec))
		return 0;
	if (mincore(lo, (size_t)(hi - lo), vec) == -1) {
		log_error("mincore(%p, %zu): %s", lo, (size_t)(hi - lo),
		    strerror(errno));
		return 0;
	}
	for (i = 0; i < n; i++)
		resident += vec[i] & 1;
	return resident * s->pagesize;
}

/* Gives back the pages in [lo, hi); returns the resident bytes among them. */
static size_t
slab_give_back(struct slab *s, char *lo, char *hi)
{
	size_t resident = slab_resident(s, lo, hi);

	if (hi <= lo)
		return 0;
	if (madvise(lo, (size_t)(hi - lo), MADV_DONTNEED) == -1) {
		log_error("madvise(MADV_DONTNEED, %p, %zu): %s", lo,
		    (size_t)(hi - lo), strerror(errno));
		return 0;
	}
	return resident;
}

static char *
slab_page_up(struct slab *s, const char *p)
{
	return (char *)(((uintptr_t)p + s->pagesize - 1) &
	    ~(uintptr_t)(s->pagesize - 1));
}

static char *
slab_page_down(struct slab *s, const char *p)
{
	return (char *)((uintptr_t)p & ~(uintptr_t)(s->pagesize - 1));
}

size_t
slab_trim(struct slab *s)
{
	struct slab_chunk *ch, *next;
	struct slab_free *f, *fnext;
	size_t back = 0, before;
	char *tail;

	/* A chunk off the list is full: no free slot, no unused tail. */
	for (ch = s->avail; ch != NULL; ch = next) {
		next = ch->next;
		if (ch->nused == 0) {
			back += slab_resident(s, (char *)ch, (char *)ch + SLAB_CHUNK);
			slab_chunk_release(s, ch);
			continue;
		}
		before = back;
		for (f = ch->free; f != NULL; f = fnext) {
			ASAN_UNPOISON_MEMORY_REGION(f, SLAB_LINK);
			fnext = f->next;
			if (!f->fresh)
				back += slab_give_back(s,
				    slab_page_up(s, (char *)f + SLAB_LINK),
				    slab_page_down(s, (char *)f + s->size));
			f->fresh = 1;
			ASAN_POISON_MEMORY_REGION(f, SLAB_LINK);
		}
		/* Slots never handed out: resident only as part of a huge page. */
		tail = (char *)ch + SLAB_HDR + (size_t)ch->nbump * s->size;
		back += slab_give_back(s, slab_page_up(s, tail),
		    (char *)ch + SLAB_CHUNK);
		/* Without this, khugepaged would fold the chunk back into a
		 * huge page and undo the trim; the chunk stays in small pages. */
		if (back > before && s->huge &&
		    madvise(ch, SLAB_CHUNK, MADV_NOHUGEPAGE) == -1 && errno != EINVAL)
			log_error("madvise(MADV_NOHUGEPAGE, %p): %s", (void *)ch,
			    strerror(errno));
	}
	return back;
}

size_t
slab_mapped(const struct slab *s)
{
	return (size_t)s->nchunks * SLAB_CHUNK;
}
