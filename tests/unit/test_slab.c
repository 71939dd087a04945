/*
 * test_slab.c - the connection slab: slots that do not overlap, chunks that
 * are aligned and ask for huge pages, a freed slot that keeps its bytes,
 * chunks given back when they empty, and a trim that returns free slots'
 * pages.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "slab.h"

static int passed, failed;

#define CHECK(cond) do { if (cond) passed++; else { failed++; \
	fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond); } } while (0)

#define OBJ 25000      /* about a struct conn */
#define N   200        /* three chunks' worth */

static char *
chunk_of(void *p)
{
	return (char *)((uintptr_t)p & ~(uintptr_t)(SLAB_CHUNK - 1));
}

static void
test_slots(void)
{
	struct slab s;
	char *p[N];
	size_t back;
	int fresh, i, j, ok = 1, in_chunk = 1;

	slab_init(&s, OBJ, 1);
	CHECK(s.size >= OBJ && s.size % 64 == 0);
	CHECK(s.per_chunk + 1 >= SLAB_CHUNK / s.size &&
	    s.per_chunk <= SLAB_CHUNK / s.size);
	CHECK(slab_mapped(&s) == 0);
	{
		/* An object smaller than the link still gets a whole slot. */
		struct slab t;

		slab_init(&t, 8, 0);
		CHECK(t.size == 64 && t.per_chunk > 0);
	}
	for (i = 0; i < N; i++) {
		p[i] = slab_alloc(&s, &fresh);
		if (p[i] == NULL || !fresh || ((uintptr_t)p[i] & 63) != 0)
			ok = 0;
		else
			memset(p[i], i & 0xff, OBJ);
		if (p[i] != NULL && (p[i] < chunk_of(p[i]) + 64 ||
		    p[i] + OBJ > chunk_of(p[i]) + SLAB_CHUNK))
			in_chunk = 0;
	}
	CHECK(ok);
	CHECK(in_chunk);
	CHECK(slab_mapped(&s) == ((N + s.per_chunk - 1) / s.per_chunk) * SLAB_CHUNK);
	/* No slot wrote over another. */
	for (i = 0; ok && i < N; i++)
		for (j = 0; j < OBJ; j++)
			if (p[i][j] != (char)(i & 0xff)) {
				ok = 0;
				break;
			}
	CHECK(ok);

	/* A freed slot comes back as the caller left it, past the link. */
	memcpy(p[7] + SLAB_LINK, "kept", 4);
	slab_free(&s, p[7]);
	CHECK(slab_alloc(&s, &fresh) == p[7]);
	CHECK(fresh == 0);
	CHECK(memcmp(p[7] + SLAB_LINK, "kept", 4) == 0);

	/* Emptied chunks go back to the kernel, but for one kept for reuse. */
	for (i = 0; i < N; i++)
		slab_free(&s, p[i]);
	CHECK(slab_mapped(&s) == SLAB_CHUNK);
	p[0] = slab_alloc(&s, &fresh);
	CHECK(p[0] != NULL && slab_mapped(&s) == SLAB_CHUNK);
	slab_free(&s, p[0]);
	back = slab_trim(&s);
	CHECK(back > 0 && back <= SLAB_CHUNK);
	CHECK(slab_mapped(&s) == 0);
}

/* 1 if the mapping that holds p has flag (" hg": MADV_HUGEPAGE, " nh":
 * MADV_NOHUGEPAGE) in its smaps VmFlags, 0 if not, -1 if not found. */
static int
vmflag(const void *p, const char *flag)
{
	char line[512];
	int found = 0, hg = -1;
	FILE *f;

	if ((f = fopen("/proc/self/smaps", "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned long lo, hi;

		if (!found && sscanf(line, "%lx-%lx ", &lo, &hi) == 2 &&
		    lo <= (unsigned long)p && (unsigned long)p < hi)
			found = 1;
		else if (found && strncmp(line, "VmFlags:", 8) == 0) {
			hg = strstr(line, flag) != NULL;
			break;
		}
	}
	fclose(f);
	return hg;
}

/* Pages of [p, p + len) resident, by mincore. */
static int
resident(char *p, size_t len)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE), i, n = 0;
	char *lo = (char *)((uintptr_t)p & ~(uintptr_t)(ps - 1));
	unsigned char vec[64];
	size_t pages = (size_t)(p + len - lo + ps - 1) / ps;

	if (pages > sizeof(vec) || mincore(lo, pages * ps, vec) == -1)
		return -1;
	for (i = 0; i < pages; i++)
		n += vec[i] & 1;
	return (int)n;
}

static void
test_trim(void)
{
	struct slab s;
	char *a, *b, *lo, *hi, *q;
	size_t back, ps = (size_t)sysconf(_SC_PAGESIZE);
	int fresh, zero = 1, before, after;

	slab_init(&s, OBJ, 1);
	a = slab_alloc(&s, &fresh);
	b = slab_alloc(&s, &fresh);
	CHECK(a != NULL && b != NULL);
	if (a == NULL || b == NULL)
		return;
	memset(a, 'a', OBJ);
	memset(b, 'b', OBJ);
	slab_free(&s, b);
	before = resident(b, OBJ);
	back = slab_trim(&s);
	after = resident(b, OBJ);
	/* A 25,000-byte slot holds at least five whole pages; what is left of
	 * it is the page with the link and the partial last one. */
	CHECK(back >= 5 * ps);
	CHECK(before >= 7 && after >= 0 && after <= 2);
	/* The slots never handed out went back too (resident, if the chunk
	 * was a huge page), and the chunk stays out of huge pages. */
	CHECK(resident(b + s.size + ps, OBJ - ps) == 0);
	if (access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) == 0)
		CHECK(vmflag(a, " nh") == 1);
	CHECK(slab_mapped(&s) == SLAB_CHUNK);        /* a is still in use */
	CHECK(a[0] == 'a' && a[OBJ - 1] == 'a');
	/* The trimmed slot must be built anew; its inner pages read zero. */
	CHECK(slab_alloc(&s, &fresh) == b);
	CHECK(fresh == 1);
	lo = (char *)(((uintptr_t)b + SLAB_LINK + ps - 1) & ~(uintptr_t)(ps - 1));
	hi = (char *)(((uintptr_t)b + OBJ) & ~(uintptr_t)(ps - 1));
	for (q = lo; q < hi; q++)
		if (*q != 0) {
			zero = 0;
			break;
		}
	CHECK(zero);
	/* A trim with nothing free gives nothing back. */
	CHECK(slab_trim(&s) == 0);
	slab_free(&s, a);
	slab_free(&s, b);
	CHECK(slab_trim(&s) > 0);
	CHECK(slab_mapped(&s) == 0);
}

/* Chunks ask for huge pages where the kernel has THP, and only if told. */
static void
test_hugepage_advice(void)
{
	struct slab s;
	char *p;
	int fresh, huge;

	if (access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) != 0) {
		printf("test_slab: no THP in this kernel, advice not checked\n");
		return;
	}
	for (huge = 1; huge >= 0; huge--) {
		slab_init(&s, OBJ, huge);
		p = slab_alloc(&s, &fresh);
		CHECK(p != NULL);
		if (p == NULL)
			return;
		CHECK(vmflag(p, " hg") == huge);
		slab_free(&s, p);
		(void)slab_trim(&s);
	}
}

int
main(void)
{
	test_slots();
	test_trim();
	test_hugepage_advice();
	printf("test_slab: %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
