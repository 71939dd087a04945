/*
 * prefault.c - mapping a new worker's code and read-only data in one go
 * instead of one page fault at a time.
 *
 * fork(2) copies no page-table entries of a file mapping nothing wrote
 * to, so a new worker faults on each 64 KB window of libc, libevent and
 * molt that it executes or reads: some 45 faults per recycle, at 10-13 us
 * each on the guests in doc/benchmarks.md.  MADV_POPULATE_READ (Linux
 * 5.14) maps a whole segment from the page cache for about 0.1 us a page,
 * with no trap per window.  Only read-only segments are mapped: a page the
 * worker may write would have to be copied, and most it never writes.
 *
 * The pages are the page cache's and shared: a worker's RSS grows by
 * about 0.7 MB, its USS not at all while another worker maps the same
 * code, and by about 0.2 MB (code only it maps) when it is the only one.
 */
#include "autoconfig.h"

#include <errno.h>
#include <link.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"
#include "prefault.h"

/* Linux's value; C libraries older than the call may not name it. */
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

#define PF_MAX_RANGES  64
#define PF_MAX_OBJECTS 32

struct pf_range {
	uintptr_t lo, hi;
};

/* Written by the master before it forks (again when a reload changes its
 * modules); workers only read them. */
static struct pf_range ranges[PF_MAX_RANGES];
static int nranges;
static uintptr_t planned[PF_MAX_OBJECTS];  /* load bases of those objects */
static int nplanned;
/* Objects never mapped up front, in any plan (prefault_skip_new). */
static uintptr_t skipped[PF_MAX_OBJECTS];
static int nskipped;
static uintptr_t pagesize;
static int unsupported;                    /* the kernel said EINVAL */

static int
prefault_listed(const uintptr_t *list, int n, uintptr_t base)
{
	int i;

	for (i = 0; i < n; i++)
		if (list[i] == base)
			return 1;
	return 0;
}

static int
prefault_object(struct dl_phdr_info *info, size_t size, void *arg)
{
	const ElfW(Phdr) *ph;
	uintptr_t page = pagesize;
	int i;

	(void)size;
	(void)arg;
	/* The vDSO is the kernel's and already mapped. */
	if (info->dlpi_name != NULL && strncmp(info->dlpi_name, "linux-vdso", 10) == 0)
		return 0;
	if (prefault_listed(skipped, nskipped, info->dlpi_addr))
		return 0;
	if (nplanned < PF_MAX_OBJECTS)
		planned[nplanned++] = info->dlpi_addr;
	for (i = 0; i < info->dlpi_phnum && nranges < PF_MAX_RANGES; i++) {
		ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD || (ph->p_flags & PF_W) || ph->p_memsz == 0)
			continue;
		ranges[nranges].lo = (info->dlpi_addr + ph->p_vaddr) & ~(page - 1);
		ranges[nranges].hi = (info->dlpi_addr + ph->p_vaddr + ph->p_memsz +
		    page - 1) & ~(page - 1);
		nranges++;
	}
	return 0;
}

void
prefault_run(void)
{
	const struct pf_range *r = ranges;
	int i;

	for (i = 0; i < nranges && !unsupported; i++) {
		if (madvise((void *)r[i].lo, r[i].hi - r[i].lo,
		    MADV_POPULATE_READ) == 0)
			continue;
		/* Only a speed-up: a kernel older than 5.14 says EINVAL, and
		 * the faults happen as before. */
		if (errno == EINVAL)
			unsupported = 1;
		log_debug("madvise(MADV_POPULATE_READ, %#lx, %lu): %s",
		    (unsigned long)r[i].lo, (unsigned long)(r[i].hi - r[i].lo),
		    strerror(errno));
	}
}

void
prefault_plan(void)
{
	long ps = sysconf(_SC_PAGESIZE);

	/* madvise wants page-aligned ranges: 16 or 64 KB pages elsewhere. */
	pagesize = ps > 0 ? (uintptr_t)ps : 4096;
	nplanned = 0;
	nranges = 0;
	dl_iterate_phdr(prefault_object, NULL);
}

static int
prefault_skip_object(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	(void)arg;
	if (nskipped < PF_MAX_OBJECTS &&
	    !prefault_listed(planned, nplanned, info->dlpi_addr) &&
	    !prefault_listed(skipped, nskipped, info->dlpi_addr))
		skipped[nskipped++] = info->dlpi_addr;
	return 0;
}

void
prefault_skip_new(void)
{
	dl_iterate_phdr(prefault_skip_object, NULL);
}
