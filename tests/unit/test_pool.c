/*
 * test_pool.c - request pools: alignment, big blocks, cleanups, reset.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "pool.h"

static int passed, failed;

#define CHECK(cond) do { if (cond) passed++; else { failed++; \
	fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond); } } while (0)

static char order[8];
static int norder;

static void
cleanup_a(void *arg)
{
	(void)arg;
	order[norder++] = 'a';
}

static void
cleanup_b(void *arg)
{
	order[norder++] = *(char *)arg;
}

int
main(void)
{
	struct molt_pool *p = pool_create(4096);
	size_t base;
	char *s, *big;
	int i;

	CHECK(p != NULL);
	base = p->allocated;
	for (i = 1; i < 100; i++) {
		void *x = molt_palloc(p, (size_t)i);
		CHECK(x != NULL && ((uintptr_t)x & 15) == 0);
	}
	CHECK(p->allocated > base);     /* 100 small ones overflow one block */
	big = molt_palloc(p, 1 << 20);
	CHECK(big != NULL && ((uintptr_t)big & 15) == 0);
	memset(big, 0x5a, 1 << 20);
	s = molt_psprintf(p, "%s-%d", "req", 42);
	CHECK(s != NULL && strcmp(s, "req-42") == 0);
	CHECK(strcmp(molt_pstrndup(p, "abcdef", 3), "abc") == 0);
	CHECK(((char *)molt_pcalloc(p, 64))[63] == 0);

	static char b = 'b';
	CHECK(molt_pool_cleanup(p, cleanup_a, NULL) == 0);
	CHECK(molt_pool_cleanup(p, cleanup_b, &b) == 0);
	pool_reset(p);
	CHECK(norder == 2 && order[0] == 'b' && order[1] == 'a');   /* LIFO */
	/* Reset returns to the one kept block: no malloc for the next request. */
	CHECK(p->allocated == base);
	s = molt_palloc(p, 100);
	CHECK(s != NULL && p->allocated == base);
	pool_reset(p);
	CHECK(norder == 2);     /* cleanups ran once */
	pool_destroy(p);
	pool_destroy(NULL);

	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
