/*
 * test_json.c - unit tests for molt_json_escape, molt_base64 and
 * json_utf8_len (src/json.c).
 *
 * The escaper is checked three ways: fixed vectors, an exhaustive run over
 * short inputs, and random inputs, each compared with a slow reference
 * written differently (code point ranges instead of byte tables), and each
 * output checked to be a valid JSON string body that stays inside the
 * 6 * len + 1 bytes module.h promises.
 *
 * Build: cc -Iinclude -Isrc tests/unit/test_json.c src/json.c -o test_json
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "molt/module.h"
#include "check.h"
#include "json.h"

/* ------------------------------------------------------------------ */
/* The reference                                                       */

/*
 * Decodes one sequence.  Returns 1 and the code point if well-formed; else
 * 0 and in *used the length of the maximal prefix that could still have
 * been completed to a well-formed sequence (at least 1).
 */
static int
ref_decode(const unsigned char *s, size_t len, uint32_t *cp, size_t *used)
{
	static const uint32_t minv[5] = { 0, 0, 0x80, 0x800, 0x10000 };
	static const uint32_t maxv[5] = { 0, 0x7f, 0x7ff, 0xffff, 0x10ffff };
	size_t n, k;
	uint32_t v, lo, hi;
	int bits;

	if (s[0] < 0x80) {
		*cp = s[0];
		*used = 1;
		return 1;
	}
	if ((s[0] & 0xe0) == 0xc0)
		n = 2, v = s[0] & 0x1f;
	else if ((s[0] & 0xf0) == 0xe0)
		n = 3, v = s[0] & 0x0f;
	else if ((s[0] & 0xf8) == 0xf0)
		n = 4, v = s[0] & 0x07;
	else {
		*used = 1;
		return 0;
	}
	for (k = 1; k <= n; k++) {
		if (k > 1) {
			if (k - 1 >= len || (s[k - 1] & 0xc0) != 0x80) {
				*used = k - 1;
				return 0;
			}
			v = v << 6 | (s[k - 1] & 0x3f);
		}
		/* The code points this prefix can still complete to. */
		bits = 6 * (int)(n - k);
		lo = v << bits;
		hi = lo | ((1u << bits) - 1);
		if (hi < minv[n] || lo > maxv[n] ||
		    (lo >= 0xd800 && hi <= 0xdfff)) {
			*used = k > 1 ? k - 1 : 1;
			return 0;
		}
	}
	*cp = v;
	*used = n;
	return 1;
}

static size_t
ref_escape(char *dst, const unsigned char *s, size_t len)
{
	char *d = dst;
	size_t i = 0, used;
	uint32_t cp;

	while (i < len) {
		if (!ref_decode(s + i, len - i, &cp, &used)) {
			d += sprintf(d, "\\ufffd");
		} else if (cp == '"') {
			d += sprintf(d, "\\\"");
		} else if (cp == '\\') {
			d += sprintf(d, "\\\\");
		} else if (cp == '\n') {
			d += sprintf(d, "\\n");
		} else if (cp == '\r') {
			d += sprintf(d, "\\r");
		} else if (cp == '\t') {
			d += sprintf(d, "\\t");
		} else if (cp == '\b') {
			d += sprintf(d, "\\b");
		} else if (cp == '\f') {
			d += sprintf(d, "\\f");
		} else if (cp < 0x20 || cp == 0x2028 || cp == 0x2029) {
			d += sprintf(d, "\\u%04x", (unsigned)cp);
		} else {
			memcpy(d, s + i, used);
			d += used;
		}
		i += used;
	}
	*d = '\0';
	return (size_t)(d - dst);
}

/* 1 if s is a valid JSON string body (RFC 8259) in valid UTF-8. */
static int
valid_json_body(const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, used, k;
	uint32_t cp;

	while (i < len) {
		if (s[i] < 0x20 || s[i] == '"')
			return 0;
		if (s[i] == '\\') {
			if (i + 1 >= len)
				return 0;
			if (strchr("\"\\/bfnrt", s[i + 1]) != NULL && s[i + 1]) {
				i += 2;
				continue;
			}
			if (s[i + 1] != 'u' || i + 6 > len)
				return 0;
			for (k = 2; k < 6; k++)
				if (strchr("0123456789abcdefABCDEF", s[i + k]) == NULL ||
				    s[i + k] == '\0')
					return 0;
			i += 6;
			continue;
		}
		if (!ref_decode(s + i, len - i, &cp, &used))
			return 0;
		i += used;
	}
	return 1;
}

/* ------------------------------------------------------------------ */
/* Running one input                                                   */

#define CANARY 0xa5

static char *outbuf, *refbuf;
static size_t bufcap;

static void
grow(size_t len)
{
	size_t need = 6 * len + 1 + 16;

	if (need <= bufcap)
		return;
	free(outbuf);
	free(refbuf);
	outbuf = malloc(need);
	refbuf = malloc(need);
	if (outbuf == NULL || refbuf == NULL) {
		perror("malloc");
		exit(2);
	}
	bufcap = need;
}

/* Escapes s and compares with the reference; quiet unless it fails. */
static int
run_escape(const unsigned char *s, size_t len, const char *what)
{
	size_t n, rn, k;
	int ok = 1;

	grow(len);
	memset(outbuf, CANARY, 6 * len + 1 + 16);
	n = molt_json_escape(outbuf, (const char *)s, len);
	rn = ref_escape(refbuf, s, len);

	for (k = 6 * len + 1; k < 6 * len + 1 + 16; k++)
		if ((unsigned char)outbuf[k] != CANARY)
			ok = 0;
	if (!ok) {
		CHECK(0, "%s: wrote past 6 * len + 1 (len %zu)", what, len);
		return 0;
	}
	if (n != rn || memcmp(outbuf, refbuf, rn + 1) != 0) {
		CHECK(0, "%s: len %zu: got \"%s\" (%zu), want \"%s\" (%zu)",
		    what, len, outbuf, n, refbuf, rn);
		return 0;
	}
	if (strlen(outbuf) != n || !valid_json_body(outbuf, n)) {
		CHECK(0, "%s: output is not a valid JSON string: \"%s\"",
		    what, outbuf);
		return 0;
	}
	return 1;
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */

static void
expect(const char *in, size_t len, const char *want)
{
	char buf[1024];
	size_t n;

	n = molt_json_escape(buf, in, len);
	CHECK(n == strlen(want) && strcmp(buf, want) == 0,
	    "escape: got \"%s\", want \"%s\"", buf, want);
	run_escape((const unsigned char *)in, len, want);
}

#define EXPECT(lit, want) expect(lit, sizeof(lit) - 1, want)

static void
test_vectors(void)
{
	EXPECT("", "");
	EXPECT("hello, world", "hello, world");
	EXPECT("a\"b\\c/d", "a\\\"b\\\\c/d");
	EXPECT("\b\f\n\r\t", "\\b\\f\\n\\r\\t");
	EXPECT("\x00\x01\x1f\x7f", "\\u0000\\u0001\\u001f\x7f");
	EXPECT("0123456789abcdef\"0123456789", "0123456789abcdef\\\"0123456789");
	EXPECT("0123456789abcdef\n", "0123456789abcdef\\n");
	/* Valid UTF-8 at every length is copied. */
	EXPECT("\xc3\xa9", "\xc3\xa9");                          /* é */
	EXPECT("\xe2\x82\xac", "\xe2\x82\xac");                  /* € */
	EXPECT("\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80");          /* 😀 */
	EXPECT("\xef\xbf\xbd", "\xef\xbf\xbd");                  /* U+FFFD */
	EXPECT("\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf");          /* U+10FFFF */
	EXPECT("\xed\x9f\xbf", "\xed\x9f\xbf");                  /* U+D7FF */
	EXPECT("\xee\x80\x80", "\xee\x80\x80");                  /* U+E000 */
	EXPECT("\xe2\x80\xa8\xe2\x80\xa9", "\\u2028\\u2029");
	/* Overlongs. */
	EXPECT("\xc0\x80", "\\ufffd\\ufffd");
	EXPECT("\xc1\xbf", "\\ufffd\\ufffd");
	EXPECT("\xe0\x80\x80", "\\ufffd\\ufffd\\ufffd");
	EXPECT("\xe0\x9f\xbf", "\\ufffd\\ufffd\\ufffd");
	EXPECT("\xf0\x80\x80\x80", "\\ufffd\\ufffd\\ufffd\\ufffd");
	EXPECT("\xf0\x8f\xbf\xbf", "\\ufffd\\ufffd\\ufffd\\ufffd");
	/* Surrogates, alone and paired (CESU-8). */
	EXPECT("\xed\xa0\x80", "\\ufffd\\ufffd\\ufffd");
	EXPECT("\xed\xbf\xbf", "\\ufffd\\ufffd\\ufffd");
	EXPECT("\xed\xa0\xbd\xed\xb8\x80",
	    "\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd");
	/* Beyond U+10FFFF, and bytes that never occur. */
	EXPECT("\xf4\x90\x80\x80", "\\ufffd\\ufffd\\ufffd\\ufffd");
	EXPECT("\xf5\x80\x80\x80", "\\ufffd\\ufffd\\ufffd\\ufffd");
	EXPECT("\xf8\x88\x80\x80\x80", "\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd");
	EXPECT("\xfe\xff", "\\ufffd\\ufffd");
	/* Stray continuation bytes. */
	EXPECT("\x80", "\\ufffd");
	EXPECT("a\xbf" "b", "a\\ufffdb");
	/* Truncated sequences: one U+FFFD for the maximal subpart. */
	EXPECT("\xc3", "\\ufffd");
	EXPECT("\xe2\x82", "\\ufffd");
	EXPECT("\xf0\x9f\x98", "\\ufffd");
	EXPECT("\xe2\x82" "a", "\\ufffda");
	EXPECT("\xf0\x9f\x98" "\"", "\\ufffd\\\"");
	EXPECT("\xe2\x82\xe2\x82\xac", "\\ufffd\xe2\x82\xac");
	/* The Unicode 6.0 table 3-8 example: 61 F1 80 80 E1 80 C2 62 80 63 80 BF 64 */
	EXPECT("\x61\xf1\x80\x80\xe1\x80\xc2\x62\x80\x63\x80\xbf\x64",
	    "a\\ufffd\\ufffd\\ufffdb\\ufffdc\\ufffd\\ufffdd");
	/* Embedded NUL is escaped, not a terminator. */
	EXPECT("a\0b", "a\\u0000b");
}

/* Every input of one and two bytes, and three bytes starting >= 0x80. */
static void
test_exhaustive(void)
{
	unsigned char s[4];
	unsigned a, b, c, bad = 0;

	for (a = 0; a < 256; a++) {
		s[0] = (unsigned char)a;
		bad += !run_escape(s, 1, "1 byte");
		for (b = 0; b < 256; b++) {
			s[1] = (unsigned char)b;
			bad += !run_escape(s, 2, "2 bytes");
		}
	}
	for (a = 0x80; a < 256; a++) {
		s[0] = (unsigned char)a;
		for (b = 0; b < 256; b++) {
			s[1] = (unsigned char)b;
			for (c = 0; c < 256; c++) {
				s[2] = (unsigned char)c;
				bad += !run_escape(s, 3, "3 bytes");
			}
		}
	}
	CHECK(bad == 0, "exhaustive: %u inputs differ", bad);
}

/* Four-byte leads against the boundary values of each continuation byte. */
static void
test_four(void)
{
	static const unsigned char edge[] = {
		0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0,
		0xc2, 0xe0, 0xf0, 0xff,
	};
	unsigned char s[4];
	unsigned a, b, c, d, bad = 0;

	for (a = 0xf0; a < 256; a++)
		for (b = 0; b < 256; b++)
			for (c = 0; c < sizeof(edge); c++)
				for (d = 0; d < sizeof(edge); d++) {
					s[0] = (unsigned char)a;
					s[1] = (unsigned char)b;
					s[2] = edge[c];
					s[3] = edge[d];
					bad += !run_escape(s, 4, "4 bytes");
				}
	CHECK(bad == 0, "four-byte: %u inputs differ", bad);
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint32_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 16);
}

/* Random mixes of runs of ASCII, escapes, valid and broken UTF-8. */
static void
test_random(void)
{
	static const char *const pieces[] = {
		"\"", "\\", "\n", "\x01", "\x7f", "\xc3\xa9", "\xe2\x82\xac",
		"\xf0\x9f\x98\x80", "\xe2\x80\xa8", "\xc0\xaf", "\xed\xa0\x80",
		"\xf4\x90\x80\x80", "\xe2\x82", "\xf0\x9f", "\x80", "\xff",
	};
	unsigned char buf[600];
	size_t len, want, k;
	unsigned iter, bad = 0;

	for (iter = 0; iter < 200000; iter++) {
		want = rnd() % (iter % 10 == 0 ? 590 : 40);
		len = 0;
		while (len < want) {
			switch (rnd() % 4) {
			case 0:     /* a run of plain ASCII */
				for (k = rnd() % 24; k > 0 && len < want; k--)
					buf[len++] = (unsigned char)(0x20 + rnd() % 95);
				break;
			case 1: {   /* a special piece */
				const char *p = pieces[rnd() % (sizeof(pieces) /
				    sizeof(pieces[0]))];
				for (; *p && len < sizeof(buf); p++)
					buf[len++] = (unsigned char)*p;
				break;
			}
			default:    /* one random byte */
				buf[len++] = (unsigned char)rnd();
				break;
			}
		}
		bad += !run_escape(buf, len, "random");
	}
	CHECK(bad == 0, "random: %u inputs differ", bad);
}

/* Every offset of a special byte within a long run, for the word path. */
static void
test_word_path(void)
{
	unsigned char buf[64];
	static const unsigned char specials[] = {
		'"', '\\', 0x00, 0x1f, 0x20, 0x7f, 0x80, 0xc3, 0xff,
	};
	size_t len, pos, k;
	unsigned bad = 0;

	for (k = 0; k < sizeof(specials); k++)
		for (len = 1; len <= sizeof(buf); len++)
			for (pos = 0; pos < len; pos++) {
				memset(buf, 'x', len);
				buf[pos] = specials[k];
				bad += !run_escape(buf, len, "word path");
			}
	CHECK(bad == 0, "word path: %u inputs differ", bad);
}

static int
b64val(int c)
{
	const char *abc =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *p = c ? strchr(abc, c) : NULL;

	return p ? (int)(p - abc) : -1;
}

/* A plain decoder to round-trip against. */
static size_t
b64decode(unsigned char *dst, const char *s, size_t len)
{
	size_t i, n = 0;
	int a, b, c, d;

	for (i = 0; i + 4 <= len; i += 4) {
		a = b64val(s[i]);
		b = b64val(s[i + 1]);
		c = s[i + 2] == '=' ? 0 : b64val(s[i + 2]);
		d = s[i + 3] == '=' ? 0 : b64val(s[i + 3]);
		if (a < 0 || b < 0 || c < 0 || d < 0)
			return (size_t)-1;
		dst[n++] = (unsigned char)(a << 2 | b >> 4);
		if (s[i + 2] != '=')
			dst[n++] = (unsigned char)(b << 4 | c >> 2);
		if (s[i + 3] != '=')
			dst[n++] = (unsigned char)(c << 6 | d);
	}
	return n;
}

static void
test_base64(void)
{
	static const char *const rfc[][2] = {   /* RFC 4648, section 10 */
		{ "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
		{ "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" },
		{ "foobar", "Zm9vYmFy" },
	};
	unsigned char in[300], back[300];
	char out[4 * ((sizeof(in) + 2) / 3) + 1 + 8];
	size_t i, len, n;

	for (i = 0; i < sizeof(rfc) / sizeof(rfc[0]); i++) {
		n = molt_base64(out, rfc[i][0], strlen(rfc[i][0]));
		CHECK(n == strlen(rfc[i][1]) && strcmp(out, rfc[i][1]) == 0,
		    "base64(\"%s\") = \"%s\", want \"%s\"", rfc[i][0], out,
		    rfc[i][1]);
	}
	for (i = 0; i < sizeof(in); i++)
		in[i] = (unsigned char)(i * 7 + 3);
	for (len = 0; len <= sizeof(in); len++) {
		memset(out, CANARY, sizeof(out));
		n = molt_base64(out, in, len);
		CHECK(n == 4 * ((len + 2) / 3) && out[n] == '\0' &&
		    (unsigned char)out[n + 1] == CANARY,
		    "base64 length %zu: wrote %zu", len, n);
		CHECK(b64decode(back, out, n) == len && memcmp(back, in, len) == 0,
		    "base64 round trip of %zu bytes", len);
	}
}

/*
 * json_utf8_len (status.c's route names) against the reference, over
 * every input of up to three bytes and the four-byte boundaries.
 */
static void
test_utf8_len(void)
{
	static const unsigned char four[][4] = {
		{ 0xf0, 0x90, 0x80, 0x80 }, { 0xf4, 0x8f, 0xbf, 0xbf },
		{ 0xf0, 0x8f, 0xbf, 0xbf }, { 0xf4, 0x90, 0x80, 0x80 },
		{ 0xf5, 0x80, 0x80, 0x80 },
	};
	unsigned char s[4];
	unsigned a, b, c, bad = 0;
	size_t len, used, i;
	uint32_t cp;

	CHECK(json_utf8_len("", 0) == 0, "json_utf8_len of nothing");
	for (a = 0; a < 1u << 24; a++) {
		s[0] = (unsigned char)(a >> 16);
		s[1] = (unsigned char)(a >> 8);
		s[2] = (unsigned char)a;
		for (len = 1; len <= 3; len++) {
			if (len < 3 && (a & ((1u << (8 * (3 - len))) - 1)) != 0)
				continue;   /* each shorter input once */
			if (ref_decode(s, len, &cp, &used))
				bad += json_utf8_len((const char *)s, len) != used;
			else
				bad += json_utf8_len((const char *)s, len) != 0;
		}
	}
	CHECK(bad == 0, "json_utf8_len: %u inputs of 1-3 bytes differ", bad);
	for (i = 0; i < sizeof(four) / sizeof(four[0]); i++) {
		memcpy(s, four[i], 4);
		b = ref_decode(s, 4, &cp, &used) ? (unsigned)used : 0;
		c = (unsigned)json_utf8_len((const char *)s, 4);
		CHECK(b == c, "json_utf8_len of %02x %02x %02x %02x: %u, not %u",
		    s[0], s[1], s[2], s[3], c, b);
	}
}

int
main(void)
{
	test_vectors();
	test_word_path();
	test_exhaustive();
	test_four();
	test_random();
	test_base64();
	test_utf8_len();
	free(outbuf);
	free(refbuf);
	printf("%u passed, %u failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
