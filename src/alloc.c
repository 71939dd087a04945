/*
 * alloc.c - allocator statistics and trimming, for glibc and jemalloc.
 *
 * Which allocator is live is decided at run time: a jemalloc that was
 * preloaded (or linked) exports mallctl, which glibc does not.  The build
 * flag alone would be wrong for LD_PRELOAD users.
 */
#include "autoconfig.h"

#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "log.h"
#include "scoreboard.h"

typedef int (*mallctl_fn)(const char *, void *, size_t *, void *, size_t);

static int        kind = SB_ALLOC_UNKNOWN;
static mallctl_fn mallctl_p;
/* jemalloc's per-thread counters, read without a call. */
static uint64_t  *je_allocated, *je_deallocated;

void
alloc_init(void)
{
	size_t len = sizeof(uint64_t *);

	mallctl_p = (mallctl_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "mallctl");
	if (mallctl_p != NULL) {
		kind = SB_ALLOC_JEMALLOC;
		if (mallctl_p("thread.allocatedp", &je_allocated, &len, NULL, 0) != 0 ||
		    mallctl_p("thread.deallocatedp", &je_deallocated, &len, NULL, 0) != 0)
			je_allocated = je_deallocated = NULL;
	} else {
		kind = SB_ALLOC_GLIBC;
	}
}

int
alloc_kind(void)
{
	return kind;
}

const char *
alloc_name(void)
{
	return kind == SB_ALLOC_JEMALLOC ? "jemalloc" :
	    kind == SB_ALLOC_GLIBC ? "glibc" : "unknown";
}

static uint64_t
alloc_je_stat(const char *name)
{
	size_t v = 0, len = sizeof(v);

	if (mallctl_p(name, &v, &len, NULL, 0) != 0)
		return 0;
	return v;
}

int
alloc_sample(uint64_t *in_use, uint64_t *held, uint64_t *free_bytes)
{
	if (kind == SB_ALLOC_JEMALLOC) {
		uint64_t epoch = 1;
		size_t len = sizeof(epoch);

		/* jemalloc caches its stats until the epoch is advanced. */
		mallctl_p("epoch", &epoch, &len, &epoch, len);
		*in_use = alloc_je_stat("stats.allocated");
		*held = alloc_je_stat("stats.resident");
		*free_bytes = *held > *in_use ? *held - *in_use : 0;
		return 0;
	}
#ifdef HAVE_MALLINFO2
	{
		struct mallinfo2 mi = mallinfo2();

		/* Mapped chunks (hblkhd) are in use and held alike. */
		*in_use = mi.uordblks + mi.hblkhd;
		*held = mi.arena + mi.hblkhd;
		*free_bytes = mi.fordblks;
		return 0;
	}
#else
	*in_use = *held = *free_bytes = 0;
	return -1;
#endif
}

void
alloc_trim(void)
{
	if (kind == SB_ALLOC_JEMALLOC) {
		/* 4096 is MALLCTL_ARENAS_ALL: purge every arena. */
		if (mallctl_p("arena.4096.purge", NULL, NULL, NULL, 0) != 0)
			log_warn("jemalloc arena.4096.purge failed");
		return;
	}
#ifdef HAVE_MALLOC_TRIM
	malloc_trim(0);
#endif
}

/* ------------------------------------------------------------------ */
/* Counting malloc for per-route statistics (glibc)                    */

#if !defined(MOLT_WITH_JEMALLOC) && !defined(MOLT_SANITIZERS)
/*
 * molt interposes malloc and friends so that, when [status] route_stats is
 * on, each request's allocations can be counted without a call into the
 * allocator.  The real functions are found with dlsym(RTLD_NEXT), so a
 * preloaded jemalloc still does the allocating.  dlsym itself may allocate
 * while we look it up; that memory comes from a small static arena that is
 * never freed.
 */
typedef void *(*malloc_fn)(size_t);
typedef void  (*free_fn)(void *);
typedef void *(*calloc_fn)(size_t, size_t);
typedef void *(*realloc_fn)(void *, size_t);
typedef size_t (*usable_fn)(void *);
typedef int   (*pmemalign_fn)(void **, size_t, size_t);
typedef void *(*aligned_fn)(size_t, size_t);
typedef void *(*pagealloc_fn)(size_t);

static malloc_fn  real_malloc;
static free_fn    real_free;
static calloc_fn  real_calloc;
static realloc_fn real_realloc;
static usable_fn  real_usable;
/* The aligned allocators: glibc's own would serve them, right but unseen. */
static pmemalign_fn real_posix_memalign;
static aligned_fn   real_aligned_alloc, real_memalign;
static pagealloc_fn real_valloc, real_pvalloc;
static int        resolving;
static char       boot_arena[4096] __attribute__((aligned(16)));
static size_t     boot_used;

static int        counting;
static uint64_t   cnt_calls, cnt_bytes;
static int64_t    cnt_in_use;

static void *
alloc_boot(size_t n)
{
	void *p;

	n = (n + 15) & ~(size_t)15;
	if (boot_used + n > sizeof(boot_arena))
		return NULL;
	p = boot_arena + boot_used;
	boot_used += n;
	return p;
}

/* One unsigned compare: free() asks this of every pointer. */
static int
alloc_is_boot(const void *p)
{
	return (uintptr_t)p - (uintptr_t)boot_arena < sizeof(boot_arena);
}

static void
alloc_resolve(void)
{
	resolving = 1;
	real_malloc = (malloc_fn)(uintptr_t)dlsym(RTLD_NEXT, "malloc");
	real_free = (free_fn)(uintptr_t)dlsym(RTLD_NEXT, "free");
	real_calloc = (calloc_fn)(uintptr_t)dlsym(RTLD_NEXT, "calloc");
	real_realloc = (realloc_fn)(uintptr_t)dlsym(RTLD_NEXT, "realloc");
	real_usable = (usable_fn)(uintptr_t)dlsym(RTLD_NEXT, "malloc_usable_size");
	real_posix_memalign = (pmemalign_fn)(uintptr_t)dlsym(RTLD_NEXT,
	    "posix_memalign");
	real_aligned_alloc = (aligned_fn)(uintptr_t)dlsym(RTLD_NEXT, "aligned_alloc");
	real_memalign = (aligned_fn)(uintptr_t)dlsym(RTLD_NEXT, "memalign");
	real_valloc = (pagealloc_fn)(uintptr_t)dlsym(RTLD_NEXT, "valloc");
	real_pvalloc = (pagealloc_fn)(uintptr_t)dlsym(RTLD_NEXT, "pvalloc");
	resolving = 0;
}

void *malloc(size_t n);
void  free(void *p);
void *calloc(size_t a, size_t b);
void *realloc(void *p, size_t n);
int   posix_memalign(void **pp, size_t align, size_t n);
void *aligned_alloc(size_t align, size_t n);
void *memalign(size_t align, size_t n);
void *valloc(size_t n);
void *pvalloc(size_t n);

/* A block of n bytes asked for came back as p (NULL: nothing did). */
static void
alloc_count_new(void *p, size_t n)
{
	if (p == NULL)
		return;
	cnt_calls++;
	cnt_bytes += n;
	cnt_in_use += (int64_t)real_usable(p);
}

/*
 * Every malloc and free of a worker, its libraries and its modules comes
 * through these wrappers, and counting is off unless route_stats asks for
 * it: the common path is two tests and a tail call into the allocator
 * (it was 18 instructions a call, paid by every module that makes many
 * small allocations).  The rest - looking the allocator up, the boot
 * arena, counting - is out of line.
 */
#define ALLOC_PLAIN(fn) __builtin_expect((fn) != NULL && !counting, 1)

static __attribute__((noinline)) void *
alloc_malloc_slow(size_t n)
{
	void *p;

	if (real_malloc == NULL) {
		if (resolving)
			return alloc_boot(n);
		alloc_resolve();
	}
	p = real_malloc(n);
	if (counting)
		alloc_count_new(p, n);
	return p;
}

void *
malloc(size_t n)
{
	if (ALLOC_PLAIN(real_malloc))
		return real_malloc(n);
	return alloc_malloc_slow(n);
}

static __attribute__((noinline)) void
alloc_free_slow(void *p)
{
	if (p == NULL || alloc_is_boot(p))
		return;
	if (real_free == NULL)
		alloc_resolve();
	if (counting)
		cnt_in_use -= (int64_t)real_usable(p);
	real_free(p);
}

void
free(void *p)
{
	/* The allocator takes NULL itself; the boot arena is not its. */
	if (ALLOC_PLAIN(real_free) && !alloc_is_boot(p)) {
		real_free(p);
		return;
	}
	alloc_free_slow(p);
}

static __attribute__((noinline)) void *
alloc_calloc_slow(size_t a, size_t b)
{
	void *p;

	if (real_calloc == NULL) {
		if (resolving) {
			/* The static arena is zeroed and never reused. */
			if (b != 0 && a > SIZE_MAX / b)
				return NULL;
			return alloc_boot(a * b);
		}
		alloc_resolve();
	}
	p = real_calloc(a, b);
	if (counting)
		alloc_count_new(p, a * b);
	return p;
}

void *
calloc(size_t a, size_t b)
{
	if (ALLOC_PLAIN(real_calloc))
		return real_calloc(a, b);
	return alloc_calloc_slow(a, b);
}

static __attribute__((noinline)) void *
alloc_realloc_slow(void *p, size_t n)
{
	size_t old = 0;
	void *q;

	if (real_realloc == NULL)
		alloc_resolve();
	if (p != NULL && alloc_is_boot(p)) {
		/* Its old size is not kept: copy what the arena holds. */
		size_t left = (size_t)(boot_arena + sizeof(boot_arena) - (char *)p);

		q = malloc(n);
		if (q != NULL)
			memcpy(q, p, n < left ? n : left);
		return q;
	}
	if (counting && p != NULL)
		old = real_usable(p);
	q = real_realloc(p, n);
	if (counting && (q != NULL || n == 0)) {
		cnt_calls++;
		cnt_bytes += n;
		cnt_in_use += (int64_t)(q ? real_usable(q) : 0) - (int64_t)old;
	}
	return q;
}

void *
realloc(void *p, size_t n)
{
	if (ALLOC_PLAIN(real_realloc) && !alloc_is_boot(p))
		return real_realloc(p, n);
	return alloc_realloc_slow(p, n);
}

/*
 * The aligned allocators are rare (nothing in molt calls them; a module
 * or a library may), so one slow path serves them all.  Before the
 * allocator is found they fail: dlsym, the only caller then, does not
 * use them.
 */
enum { AL_POSIX, AL_ALIGNED, AL_MEMALIGN, AL_VALLOC, AL_PVALLOC };

/* rc: posix_memalign's result, for it alone (the others pass NULL). */
static __attribute__((noinline)) void *
alloc_aligned_slow(int which, size_t align, size_t n, int *rc)
{
	void *p = NULL;
	int r = 0;

	if (real_malloc == NULL) {
		if (resolving) {
			if (rc != NULL)
				*rc = ENOMEM;
			return NULL;
		}
		alloc_resolve();
	}
	switch (which) {
	case AL_POSIX:    r = real_posix_memalign(&p, align, n); break;
	case AL_ALIGNED:  p = real_aligned_alloc(align, n); break;
	case AL_MEMALIGN: p = real_memalign(align, n); break;
	case AL_VALLOC:   p = real_valloc(n); break;
	case AL_PVALLOC:  p = real_pvalloc(n); break;
	}
	if (counting && r == 0)
		alloc_count_new(p, n);
	if (rc != NULL)
		*rc = r;
	return p;
}

int
posix_memalign(void **pp, size_t align, size_t n)
{
	int rc;
	void *p;

	if (ALLOC_PLAIN(real_posix_memalign))
		return real_posix_memalign(pp, align, n);
	p = alloc_aligned_slow(AL_POSIX, align, n, &rc);
	if (rc == 0)
		*pp = p;
	return rc;
}

void *
aligned_alloc(size_t align, size_t n)
{
	if (ALLOC_PLAIN(real_aligned_alloc))
		return real_aligned_alloc(align, n);
	return alloc_aligned_slow(AL_ALIGNED, align, n, NULL);
}

void *
memalign(size_t align, size_t n)
{
	if (ALLOC_PLAIN(real_memalign))
		return real_memalign(align, n);
	return alloc_aligned_slow(AL_MEMALIGN, align, n, NULL);
}

void *
valloc(size_t n)
{
	if (ALLOC_PLAIN(real_valloc))
		return real_valloc(n);
	return alloc_aligned_slow(AL_VALLOC, 0, n, NULL);
}

void *
pvalloc(size_t n)
{
	if (ALLOC_PLAIN(real_pvalloc))
		return real_pvalloc(n);
	return alloc_aligned_slow(AL_PVALLOC, 0, n, NULL);
}

void
alloc_count_enable(int on)
{
	counting = on;
}

int
alloc_counting(void)
{
	return je_allocated != NULL || counting;
}

void
alloc_counters(uint64_t *count, uint64_t *bytes, int64_t *in_use)
{
	if (counting) {
		*count = cnt_calls;
		*bytes = cnt_bytes;
		*in_use = cnt_in_use;
		return;
	}
	if (je_allocated != NULL) {
		*count = 0;
		*bytes = *je_allocated;
		*in_use = (int64_t)(*je_allocated - *je_deallocated);
		return;
	}
	*count = *bytes = 0;
	*in_use = 0;
}
#else
void
alloc_count_enable(int on)
{
	(void)on;
}

int
alloc_counting(void)
{
	return je_allocated != NULL;
}

void
alloc_counters(uint64_t *count, uint64_t *bytes, int64_t *in_use)
{
	if (je_allocated != NULL) {
		*count = 0;
		*bytes = *je_allocated;
		*in_use = (int64_t)(*je_allocated - *je_deallocated);
		return;
	}
	*count = *bytes = 0;
	*in_use = 0;
}
#endif
