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
 * Everything is built in the request pool.  A reply up to STREAM_OVER
 * bytes of body is sent whole, with a Content-Length; a larger one is
 * streamed a slice at a time, so that a client that does not read holds
 * one slice and molt's high-water mark of output, not the whole reply (up
 * to six times the body: a control byte is written \u0000).
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
 * Bodies are escaped a slice at a time, so that a buffer grows with the
 * output instead of being sized for the 6x worst case up front.
 */
#define SLICE       16384
#define STREAM_OVER (64 * 1024)

/* The body's bytes from off on, escaped or encoded: one slice of them. */
struct body_out {
	const unsigned char *body;
	size_t               len;
	size_t               off;
	int                  utf8;
};

/* Appends the next slice of o's body to b; 0 once the body is done. */
static int
echo_slice(struct jbuf *b, struct body_out *o)
{
	size_t n = o->len - o->off;

	if (n == 0)
		return 0;
	if (o->utf8) {
		if (n > SLICE) {
			/* End the slice on a character boundary. */
			n = SLICE;
			while (n > 0 && (o->body[o->off + n] & 0xc0) == 0x80)
				n--;
		}
		jb_escape(b, (const char *)o->body + o->off, n);
	} else {
		if (n > SLICE)
			n = SLICE - SLICE % 3;  /* whole groups: no padding inside */
		if (jb_reserve(b, 4 * ((n + 2) / 3) + 1) == 0)
			b->len += molt_base64(b->s + b->len, o->body + o->off, n);
	}
	o->off += n;
	return 1;
}

/* What follows the body, whole or streamed. */
static void
echo_tail(struct jbuf *b, molt_request *req, const struct body_out *o)
{
	if (o->utf8)
		jb_lit(b, "\",\"body_encoding\":\"utf-8\",");
	else
		jb_lit(b, "\",\"body_encoding\":\"base64\",");
	jb_key(b, "peer");
	jb_str(b, molt_req_peer(req));
	jb_lit(b, ",");
	jb_key(b, "version");
	jb_str(b, molt_req_version(req) == 10 ? "HTTP/1.0" : "HTTP/1.1");
	jb_lit(b, "}\n");
}

/* A streamed reply: the request, one slice's buffer, the body left. */
struct echo_stream {
	struct jbuf     b;
	struct body_out o;
};

/*
 * Writes slices until the reply is done or molt pushes back.  Every way
 * out ends the stream or leaves on_drain armed; b holds the head on the
 * first call.
 */
static void
echo_pump(molt_request *req, void *arg)
{
	struct echo_stream *es = arg;
	int more, rc;

	do {
		if (!(more = echo_slice(&es->b, &es->o)))
			echo_tail(&es->b, req, &es->o);
		if (es->b.failed) {
			molt_log(MOLT_LOG_ERROR, "echo: out of memory streaming "
			    "the reply");
			molt_stream_abort(req);
			return;
		}
		rc = molt_stream_write(req, es->b.s, es->b.len);
		es->b.len = 0;
		if (rc == -1)
			return;         /* the client is gone; the abort follows */
		if (!more) {
			molt_stream_end(req);
			return;
		}
	} while (rc != MOLT_AGAIN);
	molt_stream_on_drain(req, echo_pump, es);
}

/* The state is in the request's pool, which goes with it. */
static void
echo_abort(molt_request *req, void *arg)
{
	(void)req;
	(void)arg;
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
	struct body_out o = { 0 };
	struct echo_stream *es;
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
	o.body = body;
	o.len = body != NULL ? blen : 0;
	o.utf8 = utf8_valid(o.body, o.len);
	jb_lit(&b, "\"body\":\"");
	if (b.failed)
		goto nomem;

	if (o.len > STREAM_OVER) {
		if ((es = molt_palloc(b.pool, sizeof(*es))) == NULL)
			goto nomem;
		es->b = b;
		es->o = o;
		if (molt_stream_start(req, 200, "application/json") == -1)
			return MOLT_ERROR;
		molt_req_on_abort(req, echo_abort, es);
		echo_pump(req, es);
		return MOLT_DONE;
	}
	while (echo_slice(&b, &o))
		;
	echo_tail(&b, req, &o);
	if (b.failed)
		goto nomem;
	return molt_reply(req, 200, "application/json", b.s, b.len);
nomem:
	molt_log(MOLT_LOG_ERROR, "echo: out of memory building the reply");
	return MOLT_ERROR;
}

MOLT_EXPORT const struct molt_module molt_module = {
	MOLT_MODULE_HEADER,
	.name        = "echo",
	.version     = "1.0",
	.description = "replies with the request as JSON",
	.handle      = echo_handle,
};
