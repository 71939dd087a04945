/*
 * alloc.c - allocator statistics and trimming, for glibc and jemalloc.
 *
 * Which allocator is live is decided at run time: a jemalloc that was
 * preloaded (or linked) exports mallctl, which glibc does not.  The build
 * flag alone would be wrong for LD_PRELOAD users.
 */
#include "autoconfig.h"

#include <dlfcn.h>
#include <malloc.h>
#include <stddef.h>
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
