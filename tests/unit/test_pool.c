/*
 * test_pool.c - request pools: alignment, big blocks, cleanups, reset, and
 * a pool on the caller's memory.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "pool.h"

static int passed, failed;

#define CHECK(cond) do { if (cond) passed++; else { failed++; \
	fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond); } } while (0)

#define ALIGNED(x) (((uintptr_t)(x) & 15) == 0)

static char order[8];
static int norder;

static void
cleanup_note(void *arg)
{
	if (norder < (int)sizeof(order))
		order[norder++] = *(char *)arg;
}

/* A cleanup that registers another one while the pool is being reset. */
static void
cleanup_chain(void *arg)
{
	static char c = 'c';
	molt_pool *p = arg;

	order[norder++] = 'x';
	molt_pool_cleanup(p, cleanup_note, &c);
}

static void
test_alloc(void)
{
	struct molt_pool *p = pool_create(4096);
	size_t base;
	char *a, *b, *s, *big, *big2;
	int i, ok = 1;

	CHECK(p != NULL);
	if (p == NULL)
		return;
	base = p->allocated;
	CHECK(base >= 4096);
	/* Every size, small or odd, comes back 16-byte aligned and distinct. */
	for (i = 0; i < 200; i++) {
		char *x = molt_palloc(p, (size_t)(i % 37));

		if (x == NULL || !ALIGNED(x))
			ok = 0;
		else
			memset(x, 0xa5, (size_t)(i % 37));
	}
	CHECK(ok);
	CHECK(p->allocated > base);     /* they overflow the first block */

	a = molt_palloc(p, 0);
	b = molt_palloc(p, 0);
	CHECK(a != NULL && b != NULL && a != b);

	/* Large allocations get their own block, counted and aligned. */
	base = p->allocated;
	big = molt_palloc(p, 1 << 20);
	CHECK(big != NULL && ALIGNED(big));
	CHECK(p->allocated >= base + (1 << 20));
	memset(big, 0x5a, 1 << 20);
	big2 = molt_palloc(p, 3000);    /* over block_size / 4: large too */
	CHECK(big2 != NULL && ALIGNED(big2));
	memset(big2, 0x11, 3000);
	CHECK(big[0] == 0x5a && big[(1 << 20) - 1] == 0x5a);

	s = molt_psprintf(p, "%s-%d", "req", 42);
	CHECK(s != NULL && strcmp(s, "req-42") == 0);
	/* A formatted string longer than a block. */
	s = molt_psprintf(p, "%5000d", 7);
	CHECK(s != NULL && strlen(s) == 5000 && s[4999] == '7');
	s = molt_pstrndup(p, "abcdef", 3);
	CHECK(s != NULL && strcmp(s, "abc") == 0);
	s = molt_pstrdup(p, "hello");
	CHECK(s != NULL && strcmp(s, "hello") == 0);
	a = molt_pcalloc(p, 64);
	CHECK(a != NULL && a[0] == 0 && a[63] == 0);
	pool_destroy(p);
}

static void
test_cleanups_and_reset(void)
{
	struct molt_pool *p = pool_create(1024);
	static char a = 'a', b = 'b';
	size_t base;
	char *first, *again, *z;
	int i;

	CHECK(p != NULL);
	if (p == NULL)
		return;
	base = p->allocated;
	first = molt_palloc(p, 100);
	memset(first, 0xff, 100);

	norder = 0;
	CHECK(molt_pool_cleanup(p, cleanup_note, &a) == 0);
	CHECK(molt_pool_cleanup(p, cleanup_note, &b) == 0);
	for (i = 0; i < 50; i++)        /* grow past the first block */
		CHECK(molt_palloc(p, 200) != NULL);
	CHECK(molt_palloc(p, 1 << 16) != NULL);
	CHECK(p->allocated > base);
	pool_reset(p);
	CHECK(norder == 2 && order[0] == 'b' && order[1] == 'a');   /* LIFO */

	/* Reset keeps the first block and frees the rest: the next request
	 * starts at the same address with nothing new from malloc. */
	CHECK(p->allocated == base);
	again = molt_palloc(p, 100);
	CHECK(again == first && p->allocated == base);
	memset(again, 0xff, 100);
	pool_reset(p);
	z = molt_pcalloc(p, 100);       /* reused memory still comes zeroed */
	CHECK(z == first && z[0] == 0 && z[99] == 0);
	CHECK(norder == 2);     /* cleanups ran once, and were dropped */

	/* A cleanup may register another while the pool is being reset. */
	norder = 0;
	CHECK(molt_pool_cleanup(p, cleanup_chain, p) == 0);
	pool_reset(p);
	CHECK(norder == 2 && order[0] == 'x' && order[1] == 'c');

	/* Destroy runs the cleanups too. */
	norder = 0;
	CHECK(molt_pool_cleanup(p, cleanup_note, &a) == 0);
	pool_destroy(p);
	CHECK(norder == 1 && order[0] == 'a');
	pool_destroy(NULL);
}

/* Sizes that would wrap, and strndup's stop at the end of the string. */
static void
test_limits(void)
{
	struct molt_pool *p = pool_create(4096);
	char *s;

	CHECK(p != NULL);
	if (p == NULL)
		return;
	CHECK(molt_palloc(p, SIZE_MAX) == NULL);
	CHECK(molt_palloc(p, SIZE_MAX - 15) == NULL);
	CHECK(molt_palloc(p, SIZE_MAX / 2 + 1) == NULL);
	CHECK(molt_pcalloc(p, SIZE_MAX) == NULL);
	/* the pool still works after a refusal */
	CHECK(molt_palloc(p, 100) != NULL);
	s = molt_pstrndup(p, "ab", 4096);
	CHECK(s != NULL && strcmp(s, "ab") == 0);
	s = molt_pstrndup(p, "abcdef", 3);
	CHECK(s != NULL && strcmp(s, "abc") == 0);
	pool_destroy(p);
}

/*
 * A pool on the caller's memory (a connection's): the first block is
 * carved from it, an overflow goes to the heap, and a reset frees the
 * overflow and starts over at the start of the caller's block.
 */
static void
test_embedded(void)
{
	static char mem[1024] __attribute__((aligned(16)));
	struct molt_pool p;
	char *a, *c = NULL, *big;
	int i, inside = 1;

	memset(mem, 0, sizeof(mem));
	pool_init(&p, mem, sizeof(mem));
	CHECK(p.allocated == sizeof(mem));
	a = molt_palloc(&p, 100);
	CHECK(a > mem && a + 100 <= mem + sizeof(mem) && ALIGNED(a));
	/* Fill the block: small allocations land inside mem (about 1000
	 * bytes after its header: 8 of 112, each 100 rounded up) until one
	 * no longer fits and goes to a heap block, which is counted. */
	for (i = 0; i < 20; i++) {
		c = molt_palloc(&p, 100);
		if (c == NULL || c < mem || c + 100 > mem + sizeof(mem))
			break;
		inside++;
	}
	CHECK(inside >= 8 && inside <= 9);
	CHECK(c != NULL && (c < mem || c >= mem + sizeof(mem)));
	CHECK(p.allocated > sizeof(mem));
	/* Over a quarter of the block size: a block of its own. */
	big = molt_palloc(&p, 600);
	CHECK(big != NULL && (big < mem || big >= mem + sizeof(mem)));
	memset(big, 1, 600);
	pool_reset(&p);
	CHECK(p.allocated == sizeof(mem));
	CHECK(molt_palloc(&p, 100) == a);
	pool_reset(&p);   /* nothing to destroy: mem is the caller's */
}

int
main(void)
{
	test_alloc();
	test_embedded();
	test_cleanups_and_reset();
	test_limits();
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
