/*
 * echo.c - replies with the request it got, as JSON:
 *
 *   {"method":"POST","target":"/echo/x?a=1&a=2","path":"/echo/x",
 *    "path_info":"/x","query":"a=1&a=2","params":{"a":["1","2"]},
 *    "headers":[["Host","localhost"],...],"body":"...",
 *    "body_encoding":"utf-8","peer":"127.0.0.1:4711","version":"HTTP/1.1"}
 *
 * params: every name maps to an array of its values in request order, even
 * a name that occurs once, so clients never have to test the type.  The
 * names appear in order of first occurrence.
 * headers: a list of [name, value] pairs in request order, as sent.
 * body: the body as a string when it is valid UTF-8 ("body_encoding":
 * "utf-8"), else standard base64 ("body_encoding":"base64").  No body
 * gives "".
 *
 * Everything is built in the request pool.
 */
#include <string.h>

#include <molt/module.h>

/* ------------------------------------------------------------------ */
/* A growable string in the request pool                               */

struct jbuf {
	molt_pool *pool;
	char      *s;
	size_t     len;
	size_t     cap;
	int        failed;      /* out of memory: later calls do nothing */
};

/* Makes room for n more bytes; doubling keeps the waste below 2x. */
static int
jb_reserve(struct jbuf *b, size_t n)
{
	size_t cap;
	char *s;

	if (b->failed)
		return -1;
	if (b->cap - b->len >= n)
		return 0;
	cap = b->cap ? b->cap : 1024;
	while (cap - b->len < n) {
		if (cap > ((size_t)-1) / 2)
			goto fail;
		cap *= 2;
	}
	s = molt_palloc(b->pool, cap);
	if (s == NULL)
		goto fail;
	if (b->len > 0)
		memcpy(s, b->s, b->len);
	b->s = s;
	b->cap = cap;
	return 0;
fail:
	b->failed = 1;
	return -1;
}

static void
jb_raw(struct jbuf *b, const char *s, size_t n)
{
	if (jb_reserve(b, n) == -1)
		return;
	memcpy(b->s + b->len, s, n);
	b->len += n;
}

#define jb_lit(b, lit) jb_raw((b), (lit), sizeof(lit) - 1)

/* Appends s[0..n) escaped, without quotes. */
static void
jb_escape(struct jbuf *b, const char *s, size_t n)
{
	if (n > ((size_t)-1 - 1) / 6 || jb_reserve(b, 6 * n + 1) == -1) {
		b->failed = 1;
		return;
	}
	b->len += molt_json_escape(b->s + b->len, s, n);
}

/* Appends "s" as a JSON string; NULL becomes "". */
static void
jb_str(struct jbuf *b, const char *s)
{
	jb_lit(b, "\"");
	if (s != NULL)
		jb_escape(b, s, strlen(s));
	jb_lit(b, "\"");
}

/* Appends "key": */
static void
jb_key(struct jbuf *b, const char *key)
{
	jb_str(b, key);
	jb_lit(b, ":");
}

/* ------------------------------------------------------------------ */

/* 1 if s[0..n) is well-formed UTF-8 (RFC 3629). */
static int
utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0, k, len;
	unsigned char c, lo, hi;

	while (i < n) {
		c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		lo = 0x80;
		hi = 0xbf;
		if (c >= 0xc2 && c <= 0xdf)
			len = 2;
		else if (c >= 0xe0 && c <= 0xef) {
			len = 3;
			if (c == 0xe0)
				lo = 0xa0;
			else if (c == 0xed)
				hi = 0x9f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4;
			if (c == 0xf0)
				lo = 0x90;
			else if (c == 0xf4)
				hi = 0x8f;
		} else
			return 0;
		if (n - i < len)
			return 0;
		for (k = 1; k < len; k++) {
			if (s[i + k] < lo || s[i + k] > hi)
				return 0;
			lo = 0x80;
			hi = 0xbf;
		}
		i += len;
	}
	return 1;
}

/*
 * Large bodies are escaped a slice at a time so the buffer grows with the
 * output instead of being sized for the 6x worst case up front.
 */
#define SLICE 16384

static void
echo_body(struct jbuf *b, const unsigned char *body, size_t len)
{
	size_t off, n;

	if (body == NULL || len == 0) {
		jb_lit(b, "\"body\":\"\",\"body_encoding\":\"utf-8\"");
		return;
	}
	if (utf8_valid(body, len)) {
		jb_lit(b, "\"body\":\"");
		for (off = 0; off < len; off += n) {
			n = len - off;
			if (n > SLICE) {
				/* End the slice on a character boundary. */
				n = SLICE;
				while (n > 0 && (body[off + n] & 0xc0) == 0x80)
					n--;
			}
			jb_escape(b, (const char *)body + off, n);
		}
		jb_lit(b, "\",\"body_encoding\":\"utf-8\"");
		return;
	}
	jb_lit(b, "\"body\":\"");
	for (off = 0; off < len; off += n) {
		n = len - off;
		if (n > SLICE)
			n = SLICE - SLICE % 3;  /* whole groups: no padding inside */
		if (jb_reserve(b, 4 * ((n + 2) / 3) + 1) == -1)
			return;
		b->len += molt_base64(b->s + b->len, body + off, n);
	}
	jb_lit(b, "\",\"body_encoding\":\"base64\"");
}

/*
 * params as {"name":[values...]}.  A hash on the names, chained through
 * next[], groups repeated names in O(n) without sorting; the table and
 * the chains live in the pool.
 */
static int
echo_params(struct jbuf *b, molt_request *req)
{
	molt_pool *pool = molt_req_pool(req);
	size_t n, i, j, k, mask, h;
	const char **names, **values;
	size_t *head, *tail, *next;   /* head/tail: per slot; next: per param */
	const unsigned char *p;
	int first = 1;

	jb_lit(b, "\"params\":{");
	n = molt_req_param_count(req);
	if (n == 0)
		goto done;

	for (mask = 1; mask < 2 * n; mask <<= 1)
		;
	names = molt_palloc(pool, n * sizeof(*names));
	values = molt_palloc(pool, n * sizeof(*values));
	next = molt_palloc(pool, n * sizeof(*next));
	head = molt_palloc(pool, mask * sizeof(*head));
	tail = molt_palloc(pool, mask * sizeof(*tail));
	if (names == NULL || values == NULL || next == NULL || head == NULL ||
	    tail == NULL)
		return -1;
	mask--;
	for (h = 0; h <= mask; h++)
		head[h] = (size_t)-1;

	for (i = 0; i < n; i++) {
		if (molt_req_param_at(req, i, &names[i], &values[i]) == -1)
			return -1;
		next[i] = (size_t)-1;
		h = 5381;               /* djb2 */
		for (p = (const unsigned char *)names[i]; *p != '\0'; p++)
			h = h * 33 + *p;
		for (h &= mask; head[h] != (size_t)-1; h = (h + 1) & mask)
			if (strcmp(names[head[h]], names[i]) == 0)
				break;
		if (head[h] == (size_t)-1)
			head[h] = i;
		else
			next[tail[h]] = i;
		tail[h] = i;
	}

	/* Each name once, at its first occurrence, followed by all its values. */
	for (i = 0; i < n; i++) {
		h = 5381;
		for (p = (const unsigned char *)names[i]; *p != '\0'; p++)
			h = h * 33 + *p;
		for (h &= mask; strcmp(names[head[h]], names[i]) != 0;
		    h = (h + 1) & mask)
			;
		if (head[h] != i)
			continue;
		if (!first)
			jb_lit(b, ",");
		first = 0;
		jb_key(b, names[i]);
		jb_lit(b, "[");
		for (j = i, k = 0; j != (size_t)-1; j = next[j], k++) {
			if (k > 0)
				jb_lit(b, ",");
			jb_str(b, values[j]);
		}
		jb_lit(b, "]");
	}
done:
	jb_lit(b, "},");
	return 0;
}

static int
echo_handle(molt_request *req)
{
	struct jbuf b = { .pool = molt_req_pool(req) };
	const char *name, *value;
	const void *body;
	size_t i, n, blen;

	jb_lit(&b, "{");
	jb_key(&b, "method");
	jb_str(&b, molt_req_method(req));
	jb_lit(&b, ",");
	jb_key(&b, "target");
	jb_str(&b, molt_req_target(req));
	jb_lit(&b, ",");
	jb_key(&b, "path");
	jb_str(&b, molt_req_path(req));
	jb_lit(&b, ",");
	jb_key(&b, "path_info");
	jb_str(&b, molt_req_path_info(req));
	jb_lit(&b, ",");
	jb_key(&b, "query");
	jb_str(&b, molt_req_query(req));
	jb_lit(&b, ",");

	if (echo_params(&b, req) == -1)
		return MOLT_ERROR;

	jb_lit(&b, "\"headers\":[");
	n = molt_req_header_count(req);
	for (i = 0; i < n; i++) {
		if (molt_req_header_at(req, i, &name, &value) == -1)
			return MOLT_ERROR;
		if (i > 0)
			jb_lit(&b, ",");
		jb_lit(&b, "[");
		jb_str(&b, name);
		jb_lit(&b, ",");
		jb_str(&b, value);
		jb_lit(&b, "]");
	}
	jb_lit(&b, "],");

	body = molt_req_body(req, &blen);
	echo_body(&b, body, blen);
	jb_lit(&b, ",");

	jb_key(&b, "peer");
	jb_str(&b, molt_req_peer(req));
	jb_lit(&b, ",");
	jb_key(&b, "version");
	jb_str(&b, molt_req_version(req) == 10 ? "HTTP/1.0" : "HTTP/1.1");
	jb_lit(&b, "}\n");

	if (b.failed) {
		molt_log(MOLT_LOG_ERROR, "echo: out of memory building the reply");
		return MOLT_ERROR;
	}
	return molt_reply(req, 200, "application/json", b.s, b.len);
}

MOLT_EXPORT const struct molt_module molt_module = {
	MOLT_MODULE_HEADER,
	.name        = "echo",
	.version     = "1.0",
	.description = "replies with the request as JSON",
	.handle      = echo_handle,
};
