/*
 * http_parse.c - strict, allocation-free HTTP/1.x request parsing.
 *
 * The head parser makes one pass over the buffer and keeps no state between
 * calls: when the head is incomplete it returns 0 and is simply run again
 * on the grown buffer.  Heads are small and usually arrive in one read, so
 * re-scanning is cheaper than carrying a resumable state machine, and the
 * caller's max_head bounds the worst case of a client trickling bytes.
 *
 * Strictness is deliberate: every place where two HTTP implementations
 * could disagree about where a message ends (bare CR or LF, obs-fold,
 * whitespace before the colon, CL with TE, duplicate lengths) is a request
 * smuggling vector, so those are rejected rather than repaired.
 *
 * The chunked decoder, in contrast, must resume anywhere because bodies are
 * large and arrive in arbitrary pieces, so it is a byte state machine with
 * a memmove fast path for chunk data.
 */
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "http_parse.h"

/* Character classes, one bit each in http_ctab. */
#define HTTP_C_TOKEN   0x01  /* tchar, RFC 9110 5.6.2 */
#define HTTP_C_VALUE   0x02  /* field-vchar, SP, HTAB, obs-text */
#define HTTP_C_TARGET  0x04  /* visible ASCII and obs-text: no CTL, no SP */
#define HTTP_C_HEX     0x08  /* HEXDIG */
#define HTTP_C_HOST    0x10  /* reg-name / IP-literal / port characters */

/* Generated, not hand-typed: one row per 16 code points. */
static const unsigned char http_ctab[256] = {
	 0,  0,  0,  0,  0,  0,  0,  0,  0,  2,  0,  0,  0,  0,  0,  0,  /* 0x00 */
	 0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 0x10 */
	 2, 23,  6,  7, 23, 23, 23, 23, 22, 22, 23, 23, 22, 23, 23,  6,  /* 0x20 */
	31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 22, 22,  6, 22,  6,  6,  /* 0x30 */
	 6, 31, 31, 31, 31, 31, 31, 23, 23, 23, 23, 23, 23, 23, 23, 23,  /* 0x40 */
	23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 22,  6, 22,  7, 23,  /* 0x50 */
	 7, 31, 31, 31, 31, 31, 31, 23, 23, 23, 23, 23, 23, 23, 23, 23,  /* 0x60 */
	23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23,  6,  7,  6, 23,  0,  /* 0x70 */
	 6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  /* 0x80 */
	 6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  /* 0x90 */
	 6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  /* 0xa0 */
	 6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  /* 0xb0 */
	 6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  /* 0xc0 */
	 6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  /* 0xd0 */
	 6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  /* 0xe0 */
	 6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  /* 0xf0 */
};

#define HTTP_IS(c, cls)  (http_ctab[(unsigned char)(c)] & (cls))

/* Internal "need more input" result; never escapes http_parse_head. */
#define HTTP_AGAIN       1

/* Content-Length beyond this is rejected so that callers may keep body
 * sizes in signed 64-bit types (off_t) without a second check. */
#define HTTP_CL_MAX      ((uint64_t)INT64_MAX)

#define HTTP_CHUNK_MAX       ((uint64_t)1 << 62)
#define HTTP_CHUNK_LINE_MAX  4096   /* chunk-size plus extensions */
#define HTTP_TRAILER_MAX     8192   /* all trailer lines together */

#define HTTP_ONES   0x0101010101010101ULL
#define HTTP_HIGHS  0x8080808080808080ULL

static uint64_t
http_load8(const char *p)
{
	uint64_t v;

	/* memcpy is how C spells an unaligned load; it compiles to one mov. */
	memcpy(&v, p, sizeof(v));
	return v;
}

/*
 * Nonzero if some byte of x is below n (n <= 128) or is DEL.  Bytes with
 * the high bit set (obs-text) never match, so UTF-8 stays on the fast path.
 * A borrow can only spread upwards from a byte that really matched, so the
 * answer is exact even though the marked positions may not be.
 */
static int
http_word_special(uint64_t x, uint64_t n)
{
	uint64_t lt, del, y;

	lt = (x - HTTP_ONES * n) & ~x & HTTP_HIGHS;
	y = x ^ (HTTP_ONES * 0x7f);
	del = (y - HTTP_ONES) & ~y & HTTP_HIGHS;
	return (lt | del) != 0;
}

/*
 * Skip bytes of class cls, eight at a time while no byte of a word is below
 * `below' or DEL (all such words are entirely in class), then bytewise.
 * Returns the first byte not in class, or end.
 */
static const char *
http_skip(const char *p, const char *end, uint64_t below, unsigned cls)
{
	const char *stop;

	for (;;) {
		while (end - p >= 8 && !http_word_special(http_load8(p), below))
			p += 8;
		stop = end - p > 8 ? p + 8 : end;
		while (p < stop && HTTP_IS(*p, cls))
			p++;
		/* A word that only tripped the fast check on HTAB continues. */
		if (p < stop || p == end)
			return p;
	}
}

/*
 * Skip bytes of class cls; for the irregular classes (tokens, host) that
 * have no word trick.  Unrolled so the table loads do not wait on one
 * bounds check each: names and hosts are short, so this is what they cost.
 */
static const char *
http_span(const char *p, const char *end, unsigned cls)
{
	while (end - p >= 4) {
		if (!HTTP_IS(p[0], cls))
			return p;
		if (!HTTP_IS(p[1], cls))
			return p + 1;
		if (!HTTP_IS(p[2], cls))
			return p + 2;
		if (!HTTP_IS(p[3], cls))
			return p + 3;
		p += 4;
	}
	while (p < end && HTTP_IS(*p, cls))
		p++;
	return p;
}

static int
http_hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static int
http_lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

int
http_name_eq(const char *name, size_t len, const char *lower)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (lower[i] == '\0' || http_lower((unsigned char)name[i]) !=
		    (unsigned char)lower[i])
			return 0;
	}
	return lower[len] == '\0';
}

/*
 * Next element of a comma-separated list (RFC 9110 5.6.1), OWS trimmed.
 * Empty elements are skipped, as recipients must.  Returns 0 at the end.
 */
static int
http_list_next(const char **pp, const char *end, const char **el,
    size_t *el_len)
{
	const char *p = *pp, *s, *e;

	for (;;) {
		while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
			p++;
		if (p == end) {
			*pp = p;
			return 0;
		}
		s = p;
		while (p < end && *p != ',')
			p++;
		e = p;
		while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if (e > s)
			break;
	}
	*pp = p;
	*el = s;
	*el_len = (size_t)(e - s);
	return 1;
}

/* ------------------------------------------------------------ the head */

/*
 * Inside the brackets of an IP-literal (RFC 3986 3.2.2): IPvFuture, or
 * what an IPv6 address is made of.  Its exact grammar is left to whoever
 * connects to it; what matters here is that the brackets hold an address
 * and not a second host or port.
 */
static int
http_ip_literal(const char *p, const char *end)
{
	const char *h;
	unsigned colons = 0;

	if (p < end && (*p | 0x20) == 'v') {
		h = ++p;
		while (p < end && HTTP_IS(*p, HTTP_C_HEX))
			p++;
		if (p == h || p == end || *p++ != '.' || p == end)
			return 0;
		for (; p < end; p++)
			if (!HTTP_IS(*p, HTTP_C_HOST) || *p == '[' || *p == ']' ||
			    *p == '%')
				return 0;
		return 1;
	}
	for (; p < end; p++) {
		if (*p == ':')
			colons++;
		else if (*p != '.' && !HTTP_IS(*p, HTTP_C_HEX))
			return 0;
	}
	return colons >= 2;
}

/*
 * uri-host [ ":" port ] (RFC 9110 7.2).  The character class alone let
 * "x:80:90", "x:abc" and "[::1" through, which a module splitting off the
 * port, or a proxy behind us, would read otherwise than we do.  A host
 * that is empty but has a port names nobody (9110 4.2.1: reject); an
 * empty value is allowed, and means the server's own name (9112 3.3).
 * "a..b" is refused, as nginx does: no DNS name has an empty label, and
 * a module may make a path of the host.
 */
static int
http_host_valid(const char *v, size_t len)
{
	const char *p = v, *end = v + len, *h;

	if (len == 0)
		return 1;
	if (http_span(v, end, HTTP_C_HOST) != end)
		return 0;
	if (*p == '[') {
		h = ++p;
		while (p < end && *p != ']')
			p++;
		if (p == end || !http_ip_literal(h, p))
			return 0;
		p++;
	} else {
		for (h = p; p < end && *p != ':'; p++)
			if (*p == '[' || *p == ']' ||
			    (*p == '.' && p > h && p[-1] == '.'))
				return 0;
		if (p == h)
			return 0;
	}
	if (p == end)
		return 1;
	if (*p++ != ':')
		return 0;
	while (p < end && *p >= '0' && *p <= '9')
		p++;
	return p == end;
}

/* What the header fields told us, judged once the head is complete. */
struct http_seen {
	unsigned    hosts;
	unsigned    te;            /* Transfer-Encoding lines */
	unsigned    te_chunked;    /* "chunked" seen (and is last so far) */
	unsigned    te_bad;        /* something after chunked: 400 */
	unsigned    te_other;      /* a coding we do not implement: 501 */
	unsigned    expect_bad;
	const char *authority;     /* absolute-form target, else NULL */
	size_t      authority_len;
};

/*
 * "HTTP/" DIGIT "." DIGIT CRLF, checked against whatever prefix is there,
 * so garbage is refused before the line is complete.
 */
static int
http_version(const char *p, const char *end, int *version)
{
	static const char pat[] = "HTTP/#.#\r\n";
	size_t i, n = (size_t)(end - p);

	if (n >= 10 && memcmp(p, "HTTP/1.1\r\n", 10) == 0) {
		*version = 11;
		return 0;
	}
	for (i = 0; i < 10 && i < n; i++) {
		if (pat[i] == '#' ? (p[i] < '0' || p[i] > '9') : p[i] != pat[i])
			return -400;
	}
	if (n < 10)
		return HTTP_AGAIN;
	/* Another major version: 505 tells the client to downgrade. */
	if (p[5] != '1')
		return -505;
	/* A later 1.x is read as 1.1, the highest we implement (9110 2.5),
	 * as nginx does; the reply says HTTP/1.1. */
	*version = p[7] >= '1' ? 11 : 10;
	return 0;
}

/*
 * Split the request-target into path and query, by form (RFC 9112 3.2).
 * Runs after the version check so "PRI * HTTP/2.0" gets a 505, not 400.
 */
static int
http_target(struct http_head *h, struct http_seen *s)
{
	const char *t = h->target, *end = t + h->target_len, *p, *a, *q;
	size_t scheme;

	/*
	 * A fragment is never sent (9112 3.2), and proxies disagree about
	 * one that is: nginx ends the path at '#', so "/x#/../admin" passes
	 * its "location /admin" rules as "/x", is forwarded as sent, and
	 * would be served here as "/admin".  9112 3: invalid, so 400.
	 */
	if (memchr(t, '#', h->target_len) != NULL)
		return -400;
	if (t[0] == '/') {
		p = t;
	} else if (t[0] == '*' && h->target_len == 1) {
		if (h->method_len != 7 || memcmp(h->method, "OPTIONS", 7) != 0)
			return -400;
		h->path = t;
		h->path_len = 1;
		return 0;
	} else {
		/* absolute-form; only the schemes an origin server serves */
		if (h->target_len >= 7 && http_name_eq(t, 7, "http://"))
			scheme = 4;
		else if (h->target_len >= 8 && http_name_eq(t, 8, "https://"))
			scheme = 5;
		else
			return -400;
		a = t + scheme + 3;
		for (p = a; p < end && *p != '/' && *p != '?'; p++)
			;
		/* An empty host: 9110 4.2.1 says reject.  userinfo ('@') is
		 * not a host character: deprecated and a phishing aid. */
		if (p == a || !http_host_valid(a, (size_t)(p - a)))
			return -400;
		s->authority = a;
		s->authority_len = (size_t)(p - a);
		if (p == end || *p == '?') {
			/*
			 * No path means "/".  Point at the second slash of
			 * "://" so the path still lies inside the buffer.
			 */
			h->path = t + scheme + 2;
			h->path_len = 1;
			if (p < end) {
				h->query = p + 1;
				h->query_len = (size_t)(end - p - 1);
			}
			return 0;
		}
	}
	q = memchr(p, '?', (size_t)(end - p));
	h->path = p;
	if (q == NULL) {
		h->path_len = (size_t)(end - p);
	} else {
		h->path_len = (size_t)(q - p);
		h->query = q + 1;
		h->query_len = (size_t)(end - q - 1);
	}
	return 0;
}

static int
http_request_line(const char **pp, const char *end, size_t max_uri,
    struct http_head *h)
{
	const char *p = *pp, *s;
	int r;

	s = p;
	p = http_span(p, end, HTTP_C_TOKEN);
	if (p == end)
		return HTTP_AGAIN;
	if (*p != ' ' || p == s)
		return -400;
	h->method = s;
	h->method_len = (size_t)(p - s);
	p++;

	s = p;
	p = http_skip(p, end, 0x21, HTTP_C_TARGET);
	/* Checked before completeness: an endless target is a 414 now. */
	if ((size_t)(p - s) > max_uri)
		return -414;
	if (p == end)
		return HTTP_AGAIN;
	if (*p != ' ' || p == s)
		return -400;
	h->target = s;
	h->target_len = (size_t)(p - s);
	p++;

	if ((r = http_version(p, end, &h->version)) != 0)
		return r;
	*pp = p + 10;
	return 0;
}

/* Content-Length = 1*DIGIT, or a list of identical ones (9110 8.6). */
static int
http_content_length(const char *p, size_t n, uint64_t *out)
{
	const char *end = p + n;
	uint64_t x, first = 0;
	unsigned d;
	int count = 0;

	/* Unlike other lists, an empty element here is an error. */
	for (;;) {
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		if (p == end || *p < '0' || *p > '9')
			return -400;
		x = 0;
		while (p < end && (d = (unsigned char)*p - '0') <= 9) {
			if (x > (HTTP_CL_MAX - d) / 10)
				return -400;
			x = x * 10 + d;
			p++;
		}
		if (count++ > 0 && x != first)
			return -400;
		first = x;
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		if (p == end)
			break;
		if (*p++ != ',')
			return -400;
	}
	*out = first;
	return 0;
}

/* Transfer-Encoding elements, accumulated across lines (9112 6.1). */
static int
http_transfer_encoding(const char *v, size_t n, struct http_seen *s)
{
	const char *p = v, *end = v + n, *el;
	size_t el_len, i, count = 0;

	s->te++;
	while (http_list_next(&p, end, &el, &el_len)) {
		count++;
		for (i = 0; i < el_len && HTTP_IS(el[i], HTTP_C_TOKEN); i++)
			;
		if (i == 0)
			return -400;
		if (i < el_len && el[i] != ';' && el[i] != ' ' && el[i] != '\t')
			return -400;
		/* Anything after chunked, even chunked again, hides the end. */
		if (s->te_chunked)
			s->te_bad = 1;
		if (i == 7 && http_name_eq(el, 7, "chunked")) {
			if (i < el_len)
				return -400;   /* chunked takes no parameters */
			s->te_chunked = 1;
		} else {
			s->te_other = 1;
		}
	}
	/*
	 * A line with no coding, even next to "chunked" on another line: a
	 * front end that keeps only the last Transfer-Encoding line would
	 * see none, frame the body by Content-Length (none: empty), and send
	 * the chunks on as a request of their own.
	 */
	return count == 0 ? -400 : 0;
}

static int
http_header(struct http_head *h, const struct http_header *f,
    struct http_seen *s)
{
	const char *p, *end, *el;
	size_t el_len, i;
	uint64_t cl;

	switch (f->name_len) {
	case 4:
		if (!http_name_eq(f->name, 4, "host"))
			break;
		/* Two Hosts let a proxy and us route differently. */
		if (++s->hosts > 1)
			return -400;
		if (!http_host_valid(f->value, f->value_len))
			return -400;
		h->host = f->value;
		h->host_len = f->value_len;
		break;
	case 6:
		if (!http_name_eq(f->name, 6, "expect"))
			break;
		p = f->value;
		end = p + f->value_len;
		i = 0;
		while (http_list_next(&p, end, &el, &el_len)) {
			if (el_len != 12 || !http_name_eq(el, 12, "100-continue"))
				s->expect_bad = 1;
			i++;
		}
		/* An empty field expects nothing (nginx ignores it too).
		 * 9110 10.1.1: ignore 100-continue from an HTTP/1.0 client. */
		if (i > 0 && h->version == 11)
			h->flags |= HTTP_F_CONTINUE;
		break;
	case 10:
		if (!http_name_eq(f->name, 10, "connection"))
			break;
		p = f->value;
		end = p + f->value_len;
		while (http_list_next(&p, end, &el, &el_len)) {
			if (el_len == 5 && http_name_eq(el, 5, "close"))
				h->flags |= HTTP_F_CLOSE;
			else if (el_len == 10 && http_name_eq(el, 10, "keep-alive"))
				h->flags |= HTTP_F_KEEPALIVE;
		}
		break;
	case 14:
		if (!http_name_eq(f->name, 14, "content-length"))
			break;
		if (http_content_length(f->value, f->value_len, &cl) != 0)
			return -400;
		if ((h->flags & HTTP_F_HAS_LENGTH) && cl != h->content_length)
			return -400;
		h->content_length = cl;
		h->flags |= HTTP_F_HAS_LENGTH;
		break;
	case 17:
		if (!http_name_eq(f->name, 17, "transfer-encoding"))
			break;
		return http_transfer_encoding(f->value, f->value_len, s);
	}
	return 0;
}

/* The checks that need the whole head, most severe first. */
static int
http_head_done(struct http_head *h, const struct http_seen *s)
{
	if (h->version == 11 && s->hosts == 0)
		return -400;
	if (s->te) {
		/* 9112 6.1: TE in 1.0 is unreliable; CL+TE is smuggling. */
		if (h->version == 10 || (h->flags & HTTP_F_HAS_LENGTH))
			return -400;
		if (s->te_bad || !(s->te_chunked || s->te_other))
			return -400;
		if (s->te_other)
			return -501;
		h->flags |= HTTP_F_CHUNKED;
	}
	if (s->expect_bad)
		return -417;
	if (h->version == 10 && !(h->flags & HTTP_F_KEEPALIVE))
		h->flags |= HTTP_F_CLOSE;
	/* 9112 3.2.2: the target's authority overrides the Host field
	 * (req_prepare gives the modules it as their Host header too). */
	if (s->authority != NULL) {
		h->host = s->authority;
		h->host_len = s->authority_len;
		h->flags |= HTTP_F_ABSOLUTE;
	}
	return 0;
}

static int
http_head(const char *buf, const char *end, size_t max_uri,
    size_t max_headers, struct http_head *h, const char **done)
{
	const char *p = buf, *s;
	struct http_header *f;
	struct http_seen seen;
	int r;

	memset(&seen, 0, sizeof(seen));

	/* 9112 2.2: skip empty lines left over from a previous body. */
	while (p < end && *p == '\r') {
		if (p + 1 == end)
			return HTTP_AGAIN;
		if (p[1] != '\n')
			return -400;
		p += 2;
	}

	if ((r = http_request_line(&p, end, max_uri, h)) != 0)
		return r;
	if (h->method_len == 4 && memcmp(h->method, "HEAD", 4) == 0)
		h->flags |= HTTP_F_HEAD;

	for (;;) {
		if (p == end)
			return HTTP_AGAIN;
		if (*p == '\r') {
			if (p + 1 == end)
				return HTTP_AGAIN;
			if (p[1] != '\n')
				return -400;
			p += 2;
			break;
		}
		if (h->nheaders == max_headers)
			return -431;
		f = &h->headers[h->nheaders];

		/*
		 * The name must run right up to the colon: this one test
		 * refuses obs-fold and whitespace at line start, space before
		 * the colon, bare LF, NUL and any other non-token byte.
		 */
		s = p;
		p = http_span(p, end, HTTP_C_TOKEN);
		if (p == end)
			return HTTP_AGAIN;
		if (*p != ':' || p == s)
			return -400;
		f->name = s;
		f->name_len = (size_t)(p - s);
		p++;

		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		s = p;
		p = http_skip(p, end, 0x20, HTTP_C_VALUE);
		if (p == end)
			return HTTP_AGAIN;
		if (*p != '\r')
			return -400;
		if (p + 1 == end)
			return HTTP_AGAIN;
		if (p[1] != '\n')
			return -400;
		f->value = s;
		f->value_len = (size_t)(p - s);
		while (f->value_len > 0 && (s[f->value_len - 1] == ' ' ||
		    s[f->value_len - 1] == '\t'))
			f->value_len--;
		p += 2;
		h->nheaders++;

		if ((r = http_header(h, f, &seen)) != 0)
			return r;
	}

	/* The target is only looked at once we know we will answer. */
	if ((r = http_target(h, &seen)) != 0)
		return r;
	if ((r = http_head_done(h, &seen)) != 0)
		return r;
	*done = p;
	return 0;
}

int
http_parse_head(const char *buf, size_t len, const struct http_limits *lim,
    struct http_head *h)
{
	size_t max_head, max_headers;
	const char *done = NULL;
	int r;

	/* Only what the caller could misread is reset; not 4 KB of headers. */
	h->method = h->target = h->path = h->query = h->host = NULL;
	h->method_len = h->target_len = h->path_len = h->query_len = 0;
	h->host_len = 0;
	h->version = 0;
	h->flags = 0;
	h->content_length = 0;
	h->nheaders = 0;

	max_head = lim->max_head < INT_MAX ? lim->max_head : INT_MAX;
	max_headers = lim->max_headers < HTTP_MAX_HEADERS_HARD ?
	    lim->max_headers : HTTP_MAX_HEADERS_HARD;

	/*
	 * Never look past max_head: if the head has not ended by then it is
	 * too big whatever follows, which also gives the early 431.
	 */
	r = http_head(buf, buf + (len < max_head ? len : max_head),
	    lim->max_uri, max_headers, h, &done);
	if (r == HTTP_AGAIN)
		return len >= max_head ? -431 : 0;
	if (r < 0)
		return r;
	return (int)(done - buf);
}

/* ------------------------------------------------------- chunked bodies */

enum {
	HTTP_CH_SIZE0 = 0,   /* first hex digit of a chunk-size */
	HTTP_CH_SIZE,        /* further hex digits */
	HTTP_CH_SIZE_WS,     /* BWS between chunk-size and ';' */
	HTTP_CH_EXT,         /* chunk extensions, up to CR */
	HTTP_CH_SIZE_LF,     /* LF ending the chunk-size line */
	HTTP_CH_DATA,
	HTTP_CH_DATA_CR,     /* CRLF after chunk data */
	HTTP_CH_DATA_LF,
	HTTP_CH_TR_LINE,     /* start of a trailer line or the final CRLF */
	HTTP_CH_TR_NAME,
	HTTP_CH_TR_VALUE,
	HTTP_CH_TR_LF,
	HTTP_CH_END_LF,      /* LF of the final CRLF */
	HTTP_CH_DONE,
	HTTP_CH_ERROR
};

/*
 * One framing byte.  Returns 0 to go on, 1 when the body is complete, or
 * -400.  trailer_len counts the bytes of the current chunk-size line, and
 * later of the whole trailer section, to bound both.
 */
static int
http_chunk_byte(struct http_chunked *c, unsigned char ch)
{
	int d;

	switch (c->state) {
	case HTTP_CH_SIZE0:
	case HTTP_CH_SIZE:
		if ((d = http_hexval(ch)) >= 0) {
			/* No "0x", no sign, no space inside: just HEXDIG. */
			if (c->remaining > (HTTP_CHUNK_MAX - (uint64_t)d) >> 4)
				return -400;
			c->remaining = (c->remaining << 4) | (uint64_t)d;
			c->state = HTTP_CH_SIZE;
			break;
		}
		if (c->state == HTTP_CH_SIZE0)
			return -400;
		/* FALLTHROUGH */
	case HTTP_CH_SIZE_WS:
		if (ch == ' ' || ch == '\t') {
			c->state = HTTP_CH_SIZE_WS;
		} else if (ch == ';') {
			c->state = HTTP_CH_EXT;
		} else if (ch == '\r' && c->state == HTTP_CH_SIZE) {
			c->state = HTTP_CH_SIZE_LF;
		} else {
			/* "1 0", "5 \r\n": whitespace must lead to an extension. */
			return -400;
		}
		break;
	case HTTP_CH_EXT:
		/* Extensions are ignored, so only what could end the line early
		 * (CR, LF, other CTLs) matters. */
		if (ch == '\r')
			c->state = HTTP_CH_SIZE_LF;
		else if (!HTTP_IS(ch, HTTP_C_VALUE))
			return -400;
		break;
	case HTTP_CH_SIZE_LF:
		if (ch != '\n')
			return -400;
		if (c->remaining == 0) {
			c->state = HTTP_CH_TR_LINE;
			c->trailer_len = 0;
			return 0;
		}
		c->state = HTTP_CH_DATA;
		return 0;
	case HTTP_CH_DATA_CR:
		if (ch != '\r')
			return -400;
		c->state = HTTP_CH_DATA_LF;
		return 0;
	case HTTP_CH_DATA_LF:
		if (ch != '\n')
			return -400;
		c->state = HTTP_CH_SIZE0;
		c->trailer_len = 0;
		return 0;
	case HTTP_CH_TR_LINE:
		if (ch == '\r') {
			c->state = HTTP_CH_END_LF;
		} else if (HTTP_IS(ch, HTTP_C_TOKEN)) {
			c->state = HTTP_CH_TR_NAME;
		} else {
			return -400;   /* obs-fold, bare LF, empty name */
		}
		break;
	case HTTP_CH_TR_NAME:
		if (ch == ':')
			c->state = HTTP_CH_TR_VALUE;
		else if (!HTTP_IS(ch, HTTP_C_TOKEN))
			return -400;
		break;
	case HTTP_CH_TR_VALUE:
		if (ch == '\r')
			c->state = HTTP_CH_TR_LF;
		else if (!HTTP_IS(ch, HTTP_C_VALUE))
			return -400;
		break;
	case HTTP_CH_TR_LF:
		if (ch != '\n')
			return -400;
		c->state = HTTP_CH_TR_LINE;
		break;
	case HTTP_CH_END_LF:
		if (ch != '\n')
			return -400;
		c->state = HTTP_CH_DONE;
		return 1;
	default:
		return -400;
	}
	/* Every path that lands here is inside a size line or the trailers. */
	if (++c->trailer_len > (c->state >= HTTP_CH_TR_LINE ?
	    HTTP_TRAILER_MAX : HTTP_CHUNK_LINE_MAX))
		return -400;
	return 0;
}

int
http_chunked_decode(struct http_chunked *c, char *buf, size_t len,
    size_t *consumed, size_t *produced)
{
	size_t in = 0, out = 0, n;
	int r = 0;

	if (c->state == HTTP_CH_DONE || c->state == HTTP_CH_ERROR) {
		*consumed = *produced = 0;
		return c->state == HTTP_CH_DONE ? 1 : -400;
	}
	while (in < len) {
		if (c->state == HTTP_CH_DATA) {
			n = len - in;
			if (n > c->remaining)
				n = (size_t)c->remaining;
			/* out <= in always: framing bytes are never output. */
			if (out != in)
				memmove(buf + out, buf + in, n);
			in += n;
			out += n;
			c->remaining -= n;
			if (c->remaining == 0)
				c->state = HTTP_CH_DATA_CR;
			continue;
		}
		r = http_chunk_byte(c, (unsigned char)buf[in++]);
		if (r != 0)
			break;
	}
	if (r < 0)
		c->state = HTTP_CH_ERROR;
	*consumed = in;
	*produced = out;
	return r;
}

uint64_t
http_chunked_owed(const struct http_chunked *c)
{
	/* SIZE0 .. DATA: remaining is the size, as far as it is read. */
	return c->state <= HTTP_CH_DATA ? c->remaining : 0;
}

/* ------------------------------------------------------------ the rest */

ssize_t
http_urldecode(char *dst, const char *src, size_t len, int plus_space)
{
	size_t i = 0, o = 0;
	int hi, lo;
	char ch;

	/* o never passes i, so decoding in place reads before it writes. */
	while (i < len) {
		ch = src[i];
		if (ch == '%') {
			if (len - i < 3)
				return -1;
			hi = http_hexval((unsigned char)src[i + 1]);
			lo = http_hexval((unsigned char)src[i + 2]);
			/* %00 would truncate any C string made from the result */
			if (hi < 0 || lo < 0 || (hi | lo) == 0)
				return -1;
			dst[o++] = (char)(hi << 4 | lo);
			i += 3;
		} else {
			dst[o++] = (plus_space && ch == '+') ? ' ' : ch;
			i++;
		}
	}
	return (ssize_t)o;
}

const char *
http_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 203: return "Non-Authoritative Information";
	case 204: return "No Content";
	case 205: return "Reset Content";
	case 206: return "Partial Content";
	case 300: return "Multiple Choices";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 303: return "See Other";
	case 304: return "Not Modified";
	case 305: return "Use Proxy";
	case 306: return "Unused";
	case 307: return "Temporary Redirect";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 402: return "Payment Required";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 406: return "Not Acceptable";
	case 407: return "Proxy Authentication Required";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 411: return "Length Required";
	case 412: return "Precondition Failed";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 416: return "Range Not Satisfiable";
	case 417: return "Expectation Failed";
	case 421: return "Misdirected Request";
	case 422: return "Unprocessable Content";
	case 425: return "Too Early";
	case 426: return "Upgrade Required";
	case 428: return "Precondition Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 451: return "Unavailable For Legal Reasons";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	case 511: return "Network Authentication Required";
	}
	return "Unknown";
}

/* -------------------------------------------------------------- dates */

static const char http_wdays[7][4] = {
	"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"
};
static const char http_months[12][4] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec"
};

/* 9999-12-31T23:59:59Z, the last instant with a four-digit year. */
#define HTTP_DATE_MAX  253402300799LL

/*
 * Days since 1970-01-01 from a proleptic Gregorian date and back, after
 * H. Hinnant's civil calendar algorithms.  Plain arithmetic: no locale,
 * no timezone lock, unlike gmtime_r + strftime.
 */
static long long
http_days_from_civil(long long y, unsigned m, unsigned d)
{
	long long era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (long long)doe - 719468;
}

static void
http_civil_from_days(long long z, long long *y, unsigned *m, unsigned *d)
{
	long long era;
	unsigned doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = (unsigned)(z - era * 146097);
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (long long)yoe + era * 400 + (*m <= 2);
}

static void
http_put2(char *p, unsigned v)
{
	p[0] = (char)('0' + v / 10);
	p[1] = (char)('0' + v % 10);
}

void
http_date(time_t t, char out[30])
{
	long long s = (long long)t, days, y;
	unsigned m, d, sec;

	/* Out-of-range times are clamped so the format stays 29 bytes. */
	if (s < 0)
		s = 0;
	if (s > HTTP_DATE_MAX)
		s = HTTP_DATE_MAX;
	days = s / 86400;
	sec = (unsigned)(s % 86400);
	http_civil_from_days(days, &y, &m, &d);

	memcpy(out, http_wdays[(days + 4) % 7], 3);   /* 1970-01-01: Thu */
	out[3] = ',';
	out[4] = ' ';
	http_put2(out + 5, d);
	out[7] = ' ';
	memcpy(out + 8, http_months[m - 1], 3);
	out[11] = ' ';
	http_put2(out + 12, (unsigned)(y / 100));
	http_put2(out + 14, (unsigned)(y % 100));
	out[16] = ' ';
	http_put2(out + 17, sec / 3600);
	out[19] = ':';
	http_put2(out + 20, sec / 60 % 60);
	out[22] = ':';
	http_put2(out + 23, sec % 60);
	memcpy(out + 25, " GMT", 5);
}

static int
http_get_num(const char *p, size_t n)
{
	int v = 0;

	while (n-- > 0) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (*p++ - '0');
	}
	return v;
}

static int
http_find(const char *p, const char (*names)[4], int n)
{
	int i;

	for (i = 0; i < n && memcmp(p, names[i], 3) != 0; i++)
		;
	return i;
}

/* The full day names of the rfc850-date, "Sunday" for "Sun". */
static const char *const http_wdays_long[7] = {
	"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday",
	"Saturday"
};

/*
 * The fields of one of the three forms RFC 9110 5.6.7 obliges a recipient
 * to accept: f = wday, mon, day, year, hh, mm, ss.  0, or -1 if s is none
 * of them.  Only the shape is checked here.
 */
static int
http_date_fields(const char *s, size_t len, int f[7])
{
	const char *t;
	size_t n = 0;

	if (len == 29 && s[3] == ',') {
		/* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
		if (s[4] != ' ' || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' ||
		    memcmp(s + 25, " GMT", 4) != 0)
			return -1;
		f[0] = http_find(s, http_wdays, 7);
		f[1] = http_find(s + 8, http_months, 12);
		f[2] = http_get_num(s + 5, 2);
		f[3] = http_get_num(s + 12, 4);
		t = s + 17;
	} else if (len == 24 && s[3] == ' ') {
		/* asctime: "Sun Nov  6 08:49:37 1994" */
		if (s[7] != ' ' || s[10] != ' ' || s[19] != ' ')
			return -1;
		f[0] = http_find(s, http_wdays, 7);
		f[1] = http_find(s + 4, http_months, 12);
		f[2] = s[8] == ' ' ? http_get_num(s + 9, 1) : http_get_num(s + 8, 2);
		f[3] = http_get_num(s + 20, 4);
		t = s + 11;
	} else {
		/* rfc850-date: "Sunday, 06-Nov-94 08:49:37 GMT" */
		for (f[0] = 0; f[0] < 7; f[0]++) {
			n = strlen(http_wdays_long[f[0]]);
			if (len == n + 24 && memcmp(s, http_wdays_long[f[0]], n) == 0)
				break;
		}
		if (f[0] == 7)
			return -1;
		s += n;
		if (s[0] != ',' || s[1] != ' ' || s[4] != '-' || s[8] != '-' ||
		    s[11] != ' ' || memcmp(s + 20, " GMT", 4) != 0)
			return -1;
		f[1] = http_find(s + 5, http_months, 12);
		f[2] = http_get_num(s + 2, 2);
		if ((f[3] = http_get_num(s + 9, 2)) >= 0) {
			/* A two-digit year more than 50 years ahead is in the
			 * past century (RFC 9110 5.6.7). */
			struct tm now;
			time_t clock = time(NULL);

			if (gmtime_r(&clock, &now) == NULL)
				return -1;
			f[3] += (now.tm_year + 1900) / 100 * 100;
			if (f[3] > now.tm_year + 1900 + 50)
				f[3] -= 100;
		}
		t = s + 12;
	}
	if (t[2] != ':' || t[5] != ':')
		return -1;
	f[4] = http_get_num(t, 2);
	f[5] = http_get_num(t + 3, 2);
	f[6] = http_get_num(t + 6, 2);
	return 0;
}

time_t
http_parse_date(const char *s, size_t len)
{
	static const unsigned char mdays[12] = {
		31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
	};
	int f[7], wday, mon, day, year, hh, mm, ss;
	long long days;

	if (http_date_fields(s, len, f) == -1)
		return -1;
	wday = f[0], mon = f[1], day = f[2], year = f[3];
	hh = f[4], mm = f[5], ss = f[6];
	/* Years before 1970 are refused so -1 stays unambiguous. */
	if (wday == 7 || mon == 12 || day < 1 || day > mdays[mon] ||
	    year < 1970 || hh > 23 || mm > 59 || ss > 60 || hh < 0 ||
	    mm < 0 || ss < 0)
		return -1;
	if (mon == 1 && day == 29 &&
	    !(year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)))
		return -1;
	days = http_days_from_civil(year, (unsigned)mon + 1, (unsigned)day);
	/* The day name is redundant; a wrong one means a broken date. */
	if ((days + 4) % 7 != wday)
		return -1;
	/* second 60 is a leap second (9110 5.6.7); time_t has none */
	return (time_t)(days * 86400 + hh * 3600 + mm * 60 + ss);
}
