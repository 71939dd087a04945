/*
 * uWSGI symcall handler used by bench/run as the uWSGI peer of molt.
 *
 * Built by bench/run with:  cc -O2 -fPIC -shared -o uwsgi_hello.so uwsgi_hello.c
 * It treats struct wsgi_request as opaque and only calls exported uWSGI API
 * functions (declared below, as in `uwsgi --dot-h`), so it needs neither
 * uwsgi.h nor the -dev packages of every library uWSGI was built with.
 * and run as:  uwsgi --dlopen ./uwsgi_hello.so --symcall molt_bench_handler
 *              --http-socket 127.0.0.1:PORT --http-socket-modifier1 18
 *
 *   /hello                                   -> "hello, world\n" (text/plain)
 *   /fragment?objects=N&size=S&keep_every=K  -> mallocs N objects of S bytes,
 *        keeps every K-th one alive in a process-global list (the same work
 *        as molt's `fragment` demo module) and frees the rest, then answers
 *        a one-line text summary.
 *   anything else                            -> 404
 * Static files are served by uWSGI itself (--static-map), not here.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The uWSGI 2.0 API this handler uses (see `uwsgi --dot-h`). */
struct wsgi_request;
int uwsgi_parse_vars(struct wsgi_request *);
char *uwsgi_get_var(struct wsgi_request *, char *, uint16_t, uint16_t *);
int uwsgi_response_prepare_headers(struct wsgi_request *, char *, uint16_t);
int uwsgi_response_add_header(struct wsgi_request *, char *, uint16_t, char *, uint16_t);
int uwsgi_response_add_content_length(struct wsgi_request *, uint64_t);
int uwsgi_response_write_body_do(struct wsgi_request *, char *, size_t);
#define UWSGI_OK 0
#define uwsgi_response_add_content_type(x, y, z) \
	uwsgi_response_add_header(x, (char *)"Content-Type", 12, y, z)

static const char hello[] = "hello, world\n";

/* process-global cache of the objects we keep, like a driver's cache */
struct kept {
	struct kept *next;
};
static struct kept *kept_head;
static unsigned long long kept_count, kept_bytes;

static unsigned long qs_num(const char *qs, uint16_t qlen, const char *key,
			    unsigned long dflt)
{
	size_t klen = strlen(key);
	const char *p = qs, *end = qs + qlen;
	while (p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *stop = amp ? amp : end;
		if ((size_t)(stop - p) > klen && memcmp(p, key, klen) == 0 &&
		    p[klen] == '=') {
			unsigned long v = 0;
			const char *d = p + klen + 1;
			if (d == stop)
				return dflt;
			for (; d < stop; d++) {
				if (*d < '0' || *d > '9')
					return dflt;
				v = v * 10 + (unsigned long)(*d - '0');
				if (v > 100000000UL)
					return dflt;
			}
			return v;
		}
		p = stop + 1;
	}
	return dflt;
}

static int reply(struct wsgi_request *wsgi_req, char *status, char *body,
		 size_t len)
{
	if (uwsgi_response_prepare_headers(wsgi_req, status, (uint16_t)strlen(status)))
		return -1;
	if (uwsgi_response_add_content_type(wsgi_req, (char *)"text/plain", 10))
		return -1;
	if (uwsgi_response_add_content_length(wsgi_req, len))
		return -1;
	if (uwsgi_response_write_body_do(wsgi_req, body, len))
		return -1;
	return UWSGI_OK;
}

static int do_fragment(struct wsgi_request *wsgi_req)
{
	uint16_t qlen = 0;
	char *qs = uwsgi_get_var(wsgi_req, (char *)"QUERY_STRING", 12, &qlen);
	unsigned long n = qs ? qs_num(qs, qlen, "objects", 1000) : 1000;
	unsigned long size = qs ? qs_num(qs, qlen, "size", 64) : 64;
	unsigned long k = qs ? qs_num(qs, qlen, "keep_every", 64) : 64;
	char buf[160];
	void **objs;
	unsigned long i, kept = 0;
	int len;

	if (size < sizeof(struct kept))
		size = sizeof(struct kept);
	if (n > 10000000UL || size > 1048576UL)
		return reply(wsgi_req, (char *)"400 Bad Request", (char *)"bad\n", 4);
	objs = malloc((n ? n : 1) * sizeof(*objs));
	if (!objs)
		return reply(wsgi_req, (char *)"500 Internal Server Error", (char *)"oom\n", 4);
	/* allocate everything first, then free all but every K-th */
	for (i = 0; i < n; i++) {
		objs[i] = malloc(size);
		if (objs[i])
			memset(objs[i], (int)(i & 0xff), size);
	}
	for (i = 0; i < n; i++) {
		if (!objs[i])
			continue;
		if (k && i % k == 0) {
			struct kept *o = objs[i];
			o->next = kept_head;
			kept_head = o;
			kept++;
		} else {
			free(objs[i]);
		}
	}
	free(objs);
	kept_count += kept;
	kept_bytes += kept * size;
	len = snprintf(buf, sizeof buf,
		       "allocated %lu x %lu B, kept %lu; cache %llu objects, %llu B\n",
		       n, size, kept, kept_count, kept_bytes);
	return reply(wsgi_req, (char *)"200 OK", buf, (size_t)len);
}

int molt_bench_handler(struct wsgi_request *wsgi_req)
{
	uint16_t plen = 0;
	char *path;

	if (uwsgi_parse_vars(wsgi_req))
		return -1;
	path = uwsgi_get_var(wsgi_req, (char *)"PATH_INFO", 9, &plen);
	if (path && plen == 6 && memcmp(path, "/hello", 6) == 0)
		return reply(wsgi_req, (char *)"200 OK", (char *)hello, sizeof hello - 1);
	if (path && plen == 9 && memcmp(path, "/fragment", 9) == 0)
		return do_fragment(wsgi_req);
	return reply(wsgi_req, (char *)"404 Not Found", (char *)"not found\n", 10);
}
