/*
 * fuzz_http.c - libFuzzer target for src/http_parse.c.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
 *       tests/fuzz/fuzz_http.c src/http_parse.c -o fuzz_http
 *
 * Beyond "does not crash", it checks what callers rely on: results stay
 * inside the buffer, a parsed head parses the same when cut at its end and
 * is incomplete one byte earlier, and the chunked decoder gives the same
 * body and verdict however the input is split.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)  do { if (!(c)) abort(); } while (0)

static int
fuzz_inside(const char *p, size_t n, const char *buf, size_t len)
{
	return p == NULL ? n == 0 : (p >= buf && n <= len && p - buf <= (ptrdiff_t)(len - n));
}

/* xorshift, seeded from the input so runs are reproducible */
static uint64_t
fuzz_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/*
 * Decode in[0..len) delivered in pieces, as a connection would: unconsumed
 * bytes stay at the front of the buffer and new ones are appended.  The
 * decoded body goes to out; returns the final verdict.
 */
static int
fuzz_chunked(const char *in, size_t len, uint64_t seed, size_t max_piece,
    char *out, size_t *out_len, size_t *used)
{
	struct http_chunked c;
	char *buf;
	size_t have = 0, pos = 0, n, cons, prod;
	int r = 0;

	buf = malloc(len + 1);
	CHECK(buf != NULL);
	memset(&c, 0, sizeof(c));
	*out_len = 0;
	*used = 0;
	for (;;) {
		n = max_piece == 0 ? len - pos : (size_t)(fuzz_next(&seed) % max_piece) + 1;
		if (n > len - pos)
			n = len - pos;
		memcpy(buf + have, in + pos, n);
		have += n;
		pos += n;
		r = http_chunked_decode(&c, buf, have, &cons, &prod);
		CHECK(cons <= have);
		CHECK(prod <= cons);
		CHECK(r == 1 || r == 0 || r == -400);
		/* while it wants more it must have taken everything */
		CHECK(r != 0 || cons == have);
		memcpy(out + *out_len, buf, prod);
		*out_len += prod;
		*used += cons;
		memmove(buf, buf + cons, have - cons);
		have -= cons;
		if (r != 0 || pos == len)
			break;
	}
	free(buf);
	return r;
}

static void
fuzz_body(const char *in, size_t len, uint64_t seed)
{
	char *a, *b;
	size_t alen, blen, aused, bused;
	int ra, rb;

	a = malloc(len + 1);
	b = malloc(len + 1);
	CHECK(a != NULL && b != NULL);
	ra = fuzz_chunked(in, len, seed, 0, a, &alen, &aused);
	rb = fuzz_chunked(in, len, seed, (size_t)(seed % 17) + 1, b, &blen, &bused);
	CHECK(ra == rb);
	CHECK(alen <= len && aused <= len);
	if (ra != -400) {
		/* where an error is noticed may differ with the split; data not */
		CHECK(alen == blen && memcmp(a, b, alen) == 0);
		CHECK(aused == bused);
	}
	free(a);
	free(b);
}

static void
fuzz_head(const char *buf, size_t len, const struct http_limits *lim,
    uint64_t seed)
{
	static struct http_head h, h2;
	size_t i, j;
	int r;

	r = http_parse_head(buf, len, lim, &h);
	CHECK(r == 0 || r == -400 || r == -414 || r == -417 || r == -431 ||
	    r == -501 || r == -505 || r > 0);
	if (r <= 0)
		return;
	CHECK((size_t)r <= len);
	CHECK((size_t)r <= lim->max_head);
	CHECK(h.nheaders <= lim->max_headers && h.nheaders <= HTTP_MAX_HEADERS_HARD);
	CHECK(h.version == 10 || h.version == 11);
	CHECK(h.method_len > 0 && fuzz_inside(h.method, h.method_len, buf, (size_t)r));
	CHECK(h.target_len > 0 && h.target_len <= lim->max_uri);
	CHECK(fuzz_inside(h.target, h.target_len, buf, (size_t)r));
	CHECK(h.path_len > 0 && fuzz_inside(h.path, h.path_len, buf, (size_t)r));
	CHECK(fuzz_inside(h.query, h.query_len, buf, (size_t)r));
	CHECK(fuzz_inside(h.host, h.host_len, buf, (size_t)r));
	CHECK(h.version == 10 || h.host != NULL);
	CHECK(!((h.flags & HTTP_F_CHUNKED) && (h.flags & HTTP_F_HAS_LENGTH)));
	for (i = 0; i < h.nheaders; i++) {
		const struct http_header *f = &h.headers[i];

		CHECK(f->name_len > 0 && fuzz_inside(f->name, f->name_len, buf, (size_t)r));
		CHECK(fuzz_inside(f->value, f->value_len, buf, (size_t)r) ||
		    f->value_len == 0);
		for (j = 0; j < f->value_len; j++)
			CHECK(f->value[j] != '\r' && f->value[j] != '\n' && f->value[j] != '\0');
		CHECK(memchr(f->name, ':', f->name_len) == NULL);
	}

	/* The head alone parses the same; one byte less is incomplete. */
	CHECK(http_parse_head(buf, (size_t)r, lim, &h2) == r);
	CHECK(h2.flags == h.flags && h2.nheaders == h.nheaders);
	CHECK(http_parse_head(buf, (size_t)r - 1, lim, &h2) == 0);

	if (h.flags & HTTP_F_CHUNKED)
		fuzz_body(buf + r, len - (size_t)r, seed);
}

static void
fuzz_urldecode(const char *s, size_t len, int plus)
{
	char *a, *b;
	ssize_t ra, rb;

	a = malloc(len + 1);
	b = malloc(len + 1);
	CHECK(a != NULL && b != NULL);
	memcpy(b, s, len);
	ra = http_urldecode(a, s, len, plus);
	rb = http_urldecode(b, b, len, plus);
	CHECK(ra == rb);
	CHECK(ra >= -1 && ra <= (ssize_t)len);
	if (ra >= 0) {
		CHECK(memcmp(a, b, (size_t)ra) == 0);
		CHECK(memchr(a, '\0', (size_t)ra) == NULL || memchr(s, '\0', len) != NULL);
	}
	free(a);
	free(b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct http_limits wide = { 8192, 2048, 64 };
	struct http_limits tight;
	const char *buf = (const char *)data;
	uint64_t seed = 0x9e3779b97f4a7c15ULL;
	char out[30];
	time_t t;
	size_t i;

	for (i = 0; i < size && i < 64; i++)
		seed = (seed ^ data[i]) * 0x100000001b3ULL;
	seed |= 1;

	fuzz_head(buf, size, &wide, seed);
	/* small limits reach the 414/431 edges with short inputs */
	tight.max_head = (size_t)(seed % 256);
	tight.max_uri = (size_t)(seed >> 8) % 64;
	tight.max_headers = (size_t)(seed >> 16) % 8;
	fuzz_head(buf, size, &tight, seed);

	/* The decoder also sees raw input, not only bodies behind a head. */
	fuzz_body(buf, size, seed);

	fuzz_urldecode(buf, size, (int)(seed & 2));

	t = http_parse_date(buf, size);
	if (t != -1) {
		CHECK(t >= 0);
		http_date(t, out);
		/* formatting gives back the input, except a leap second */
		CHECK(memcmp(buf + 23, "60", 2) == 0 || memcmp(out, buf, 29) == 0);
	}
	return 0;
}
