/*
 * fragment.c - fragments the worker's heap on purpose, so that molt's
 * memory policing (fragmentation limits, malloc_trim, recycling) can be
 * demonstrated and tested.
 *
 *   GET /fragment?objects=N&size=S&keep_every=K
 *       mallocs N objects of S bytes and writes to each, keeps every K-th
 *       in a module-level cache that outlives the request, frees the rest.
 *       Replies {"allocated":N,"kept":..,"cache_objects":..,"cache_bytes":..}
 *       (kept: by this request; cache_*: this worker's whole cache).  Defaults:
 *       objects=1000, size=48, keep_every=64.  Bounds: N <= 10,000,000,
 *       1 <= S <= 1 MiB, N * S <= 4 GiB, K >= 0; else 400.  K = 0 keeps
 *       nothing: malloc churn that leaves the heap as it found it (what
 *       bench/ uses to price malloc counting).
 *   GET /fragment/reset
 *       frees the whole cache.
 *
 * It models what a long-lived cache does to a malloc heap, as in the Swift
 * forums thread "Memory leaking in Vapor app": a MySQL driver's burst of
 * small allocations left the few objects that stayed alive scattered over
 * the heap, and resident memory stayed near the peak long after the bytes
 * in use had dropped.  Two patterns:
 *
 *  - Trimmable: a large K (say 10000) with small objects.  Nearly every
 *    page ends up wholly free; glibc does not give them back by itself
 *    (they sit in its free lists, below the top of the heap), but
 *    malloc_trim(0) can release them with MADV_DONTNEED.
 *
 *  - Page-pinning: K = 64 with S = 48.  Chunks are 64 bytes, so 64 of them
 *    fill a 4 KiB page and every page keeps exactly one live object: no
 *    page is free, and no trim helps.  Only recycling the worker gets the
 *    memory back.
 *
 * Measured on glibc 2.36 (1,000,000 objects of 48 B, in a stand-alone
 * harness; a worker adds its own baseline, the issue reports ~72 MB):
 *    K = 64:     about 750 KB live, 64 MB RSS, still 64 MB after malloc_trim(0)
 *    K = 10000:  4.8 KB live,        64 MB RSS, 2.3 MB after malloc_trim(0)
 *
 * The memory is malloc'ed on purpose (not from the request pool): the
 * point is the process heap.  The cache itself is a growable array of
 * pointers, which also lives on the heap, as a real driver's would.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <molt/module.h>

#define MAX_OBJECTS 10000000LL
#define MAX_SIZE    (1024LL * 1024)
/*
 * The two bounds above allow 10 TB in one request; objects * size is
 * capped too, so a typo cannot drive the box into the OOM killer (which
 * might pick another process than this worker).
 */
#define MAX_TOTAL   (4LL * 1024 * 1024 * 1024)

/* The cache: survives requests, belongs to this worker process. */
static void  **cache;
static size_t  cache_len, cache_cap;
static size_t  cache_bytes;

static int
cache_add(void *p, size_t size)
{
	void **n;
	size_t cap;

	if (cache_len == cache_cap) {
		cap = cache_cap ? cache_cap * 2 : 1024;
		n = realloc(cache, cap * sizeof(*cache));
		if (n == NULL)
			return -1;
		cache = n;
		cache_cap = cap;
	}
	cache[cache_len++] = p;
	cache_bytes += size;
	return 0;
}

static void
cache_free(void)
{
	size_t i;

	for (i = 0; i < cache_len; i++)
		free(cache[i]);
	free(cache);
	cache = NULL;
	cache_len = cache_cap = 0;
	cache_bytes = 0;
}

/*
 * A whole-number query parameter in [lo, hi]; def if absent.  Returns -1
 * for junk, signs, overflow or out of range.
 */
static int
param_ll(molt_request *req, const char *name, long long def, long long lo,
         long long hi, long long *out)
{
	const char *s = molt_req_param(req, name);
	char *end;
	long long v;

	if (s == NULL || *s == '\0') {
		*out = def;
		return 0;
	}
	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

static int
reply_json(molt_request *req, long long allocated, long long kept)
{
	char *body;

	body = molt_psprintf(molt_req_pool(req),
	    "{\"allocated\":%lld,\"kept\":%lld,\"cache_objects\":%zu,"
	    "\"cache_bytes\":%zu}\n", allocated, kept, cache_len, cache_bytes);
	if (body == NULL)
		return MOLT_ERROR;
	return molt_reply(req, 200, "application/json", body, strlen(body));
}

static int
fragment_handle(molt_request *req)
{
	const char *pi = molt_req_path_info(req);
	long long n, size, keep, i, kept = 0;
	void **batch = NULL;
	size_t nbatch = 0, j;
	char *p;

	if (pi != NULL && (strcmp(pi, "/reset") == 0 ||
	    strcmp(pi, "reset") == 0)) {
		cache_free();
		return reply_json(req, 0, 0);
	}
	if (pi != NULL && pi[0] != '\0' && strcmp(pi, "/") != 0)
		return molt_reply_error(req, 404, "not found");
	if (strcmp(molt_req_method(req), "GET") != 0 &&
	    strcmp(molt_req_method(req), "HEAD") != 0) {
		if (molt_resp_header(req, "Allow", "GET, HEAD") == -1)
			return MOLT_ERROR;
		return molt_reply_error(req, 405, "method not allowed");
	}

	if (param_ll(req, "objects", 1000, 0, MAX_OBJECTS, &n) == -1)
		return molt_reply_error(req, 400,
		    "objects must be an integer from 0 to 10000000");
	if (param_ll(req, "size", 48, 1, MAX_SIZE, &size) == -1)
		return molt_reply_error(req, 400,
		    "size must be an integer from 1 to 1048576");
	if (param_ll(req, "keep_every", 64, 0, MAX_OBJECTS, &keep) == -1)
		return molt_reply_error(req, 400,
		    "keep_every must be an integer from 0 to 10000000");
	if (n * size > MAX_TOTAL)
		return molt_reply_error(req, 400,
		    "objects * size must be at most 4 GiB");

	/*
	 * Allocate everything first, then free the unkept ones, so the
	 * kept objects end up interleaved with freed chunks across the
	 * whole heap.  The batch of pointers is freed at once, in the same
	 * pass, so it leaves no hole of its own beyond the first request.
	 */
	if (n > 0) {
		batch = malloc((size_t)n * sizeof(*batch));
		if (batch == NULL)
			return molt_reply_error(req, 503, "out of memory");
	}
	for (i = 0; i < n; i++) {
		p = malloc((size_t)size);
		if (p == NULL)
			break;
		memset(p, (int)(i & 0xff), (size_t)size);  /* make it resident */
		batch[nbatch++] = p;
	}
	for (j = 0; j < nbatch; j++) {
		if (keep > 0 && j % (size_t)keep == 0 &&
		    cache_add(batch[j], (size_t)size) == 0)
			kept++;
		else
			free(batch[j]);
	}
	free(batch);
	if ((long long)nbatch < n) {
		molt_log(MOLT_LOG_WARN, "fragment: malloc failed after %zu of %lld "
		    "objects", nbatch, n);
		return molt_reply_error(req, 503, "out of memory");
	}
	return reply_json(req, (long long)nbatch, kept);
}

static void
fragment_worker_exit(molt_worker *w)
{
	(void)w;
	cache_free();
}

MOLT_EXPORT const struct molt_module molt_module = {
	MOLT_MODULE_HEADER,
	.name        = "fragment",
	.version     = "1.0",
	.description = "fragments the heap on purpose (a cache keeping 1 in K objects)",
	.worker_exit = fragment_worker_exit,
	.handle      = fragment_handle,
};
