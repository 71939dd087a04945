/*
 * pool.c - request memory pools.
 *
 * Every request's memory is carved from one pool and released in one go
 * when the request ends.  The pool keeps its first block across requests,
 * so a small request allocates nothing from malloc at all: molt must not
 * fragment the heap it is policing.
 */
#include "autoconfig.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"

#define POOL_ALIGN 16

struct pool_block {
	struct pool_block *next;
	char              *pos;
	char              *end;
	/* data follows, aligned */
};

struct pool_cleanup {
	void               (*fn)(void *);
	void                *arg;
	struct pool_cleanup *next;
};

#define BLOCK_HDR ((sizeof(struct pool_block) + POOL_ALIGN - 1) & \
	~(size_t)(POOL_ALIGN - 1))

/* A block of size bytes at mem, its header included. */
static struct pool_block *
pool_block_fill(void *mem, size_t size)
{
	struct pool_block *b = mem;

	b->next = NULL;
	b->pos = (char *)b + BLOCK_HDR;
	b->end = (char *)b + size;
	return b;
}

static struct pool_block *
pool_block_new(struct molt_pool *p, size_t size)
{
	void *mem;

	if ((mem = malloc(BLOCK_HDR + size)) == NULL)
		return NULL;
	p->allocated += BLOCK_HDR + size;
	return pool_block_fill(mem, BLOCK_HDR + size);
}

void
pool_init(struct molt_pool *p, void *mem, size_t size)
{
	memset(p, 0, sizeof(*p));
	p->block_size = size - BLOCK_HDR;
	p->first = p->cur = pool_block_fill(mem, size);
	p->allocated = size;
}

struct molt_pool *
pool_create(size_t block_size)
{
	struct molt_pool *p;
	size_t head = (sizeof(*p) + POOL_ALIGN - 1) & ~(size_t)(POOL_ALIGN - 1);

	/* The pool and its first block are one allocation. */
	p = malloc(head + BLOCK_HDR + block_size);
	if (p == NULL)
		return NULL;
	pool_init(p, (char *)p + head, BLOCK_HDR + block_size);
	return p;
}

static void
pool_run_cleanups(struct molt_pool *p)
{
	struct pool_cleanup *c;

	/* A cleanup may register another one (or allocate); keep popping. */
	while ((c = p->cleanups) != NULL) {
		p->cleanups = c->next;
		c->fn(c->arg);
	}
}

void
pool_reset(struct molt_pool *p)
{
	struct pool_block *b, *next;

	pool_run_cleanups(p);
	for (b = p->first->next; b != NULL; b = next) {
		next = b->next;
		free(b);
	}
	for (b = p->large; b != NULL; b = next) {
		next = b->next;
		free(b);
	}
	p->large = NULL;
	p->first->next = NULL;
	p->first->pos = (char *)p->first + BLOCK_HDR;
	p->cur = p->first;
	p->allocated = BLOCK_HDR + p->block_size;
}

void
pool_destroy(struct molt_pool *p)
{
	if (p == NULL)
		return;
	pool_reset(p);
	free(p);
}

void *
molt_palloc(molt_pool *p, size_t n)
{
	struct pool_block *b;
	char *r;

	/* A size near SIZE_MAX would wrap in the rounding or the header. */
	if (n > SIZE_MAX / 2)
		return NULL;
	n = (n + POOL_ALIGN - 1) & ~(size_t)(POOL_ALIGN - 1);
	if (n == 0)
		n = POOL_ALIGN;
	/* Big requests get their own block so they do not waste a chunk. */
	if (n > p->block_size / 4) {
		b = pool_block_new(p, n);
		if (b == NULL)
			return NULL;
		b->next = p->large;
		p->large = b;
		return b->pos;
	}
	if ((size_t)(p->cur->end - p->cur->pos) < n) {
		b = pool_block_new(p, p->block_size);
		if (b == NULL)
			return NULL;
		b->next = p->cur->next;
		p->cur->next = b;
		p->cur = b;
	}
	r = p->cur->pos;
	p->cur->pos += n;
	return r;
}

void *
molt_pcalloc(molt_pool *p, size_t n)
{
	void *r = molt_palloc(p, n);

	if (r != NULL)
		memset(r, 0, n);
	return r;
}

char *
molt_pstrndup(molt_pool *p, const char *s, size_t n)
{
	char *r;

	/* Like strndup(3): s need not be n bytes long if it ends before. */
	n = strnlen(s, n);
	r = molt_palloc(p, n + 1);

	if (r != NULL) {
		memcpy(r, s, n);
		r[n] = '\0';
	}
	return r;
}

char *
molt_pstrdup(molt_pool *p, const char *s)
{
	return molt_pstrndup(p, s, strlen(s));
}

char *
molt_psprintf(molt_pool *p, const char *fmt, ...)
{
	va_list ap;
	char *r;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || (r = molt_palloc(p, (size_t)n + 1)) == NULL)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(r, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return r;
}

int
molt_pool_cleanup(molt_pool *p, void (*fn)(void *), void *arg)
{
	struct pool_cleanup *c;

	c = molt_palloc(p, sizeof(*c));
	if (c == NULL)
		return -1;
	c->fn = fn;
	c->arg = arg;
	c->next = p->cleanups;
	p->cleanups = c;
	return 0;
}
