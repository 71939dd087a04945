/*
 * leak.c - leaks memory on purpose, to exercise molt's memory limits and
 * worker recycling.
 *
 *   GET /leak?bytes=N[&align=A]   (N <= 1 GiB; default 1 MiB)
 *       mallocs N bytes, writes every byte so the pages are really
 *       resident (untouched malloc memory costs no RSS), and drops the
 *       pointer.  Replies {"leaked":N,"total":T}, T being everything this
 *       worker process has leaked so far.  With align=A (a power of two
 *       from 8 to 1 MiB) the block comes from posix_memalign instead,
 *       which route_stats must see as well.
 *
 * The memory is lost for good: only recycling the worker gets it back,
 * which is exactly what the tests want to see.  The blocks are chained
 * through their first word into a list nothing ever frees, so that a
 * sanitizer build's LeakSanitizer does not report this deliberate leak
 * as a bug at exit.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <molt/module.h>

#define LEAK_MAX     (1024LL * 1024 * 1024)
#define LEAK_DEFAULT (1024LL * 1024)

static unsigned long long leaked_total;    /* this worker process */
static void *leaked;                       /* the chain, never freed */

static int
leak_handle(molt_request *req)
{
	const char *s = molt_req_param(req, "bytes");
	const char *a = molt_req_param(req, "align");
	long long n = LEAK_DEFAULT, align = 0;
	char *end, *p, *body;
	void *v;
	size_t alloc;

	if (strcmp(molt_req_method(req), "GET") != 0 &&
	    strcmp(molt_req_method(req), "HEAD") != 0) {
		if (molt_resp_header(req, "Allow", "GET, HEAD") == -1)
			return MOLT_ERROR;
		return molt_reply_error(req, 405, "method not allowed");
	}
	if (s != NULL && *s != '\0') {
		errno = 0;
		n = strtoll(s, &end, 10);
		if (*s < '0' || *s > '9' || errno != 0 || *end != '\0' ||
		    n > LEAK_MAX)
			return molt_reply_error(req, 400,
			    "bytes must be an integer from 0 to 1073741824");
	}
	if (a != NULL) {
		errno = 0;
		align = strtoll(a, &end, 10);
		if (*a < '0' || *a > '9' || errno != 0 || *end != '\0' ||
		    align < 8 || align > 1024 * 1024 || (align & (align - 1)) != 0)
			return molt_reply_error(req, 400,
			    "align must be a power of two from 8 to 1048576");
	}

	if (n > 0) {
		/* Deliberately malloc, not the pool: this must outlive us. */
		alloc = (size_t)n < sizeof(void *) ? sizeof(void *) : (size_t)n;
		if (align > 0)
			p = posix_memalign(&v, (size_t)align, alloc) == 0 ? v : NULL;
		else
			p = malloc(alloc);
		if (p == NULL)
			return molt_reply_error(req, 503, "out of memory");
		memset(p, 0x5a, alloc);
		memcpy(p, &leaked, sizeof(leaked));
		leaked = p;
		leaked_total += (unsigned long long)n;
	}

	body = molt_psprintf(molt_req_pool(req),
	    "{\"leaked\":%lld,\"total\":%llu}\n", n, leaked_total);
	if (body == NULL)
		return MOLT_ERROR;
	return molt_reply(req, 200, "application/json", body, strlen(body));
}

MOLT_EXPORT const struct molt_module molt_module = {
	MOLT_MODULE_HEADER,
	.name        = "leak",
	.version     = "1.0",
	.description = "leaks memory on purpose (for recycling tests)",
	.handle      = leak_handle,
};
