/*
 * json.c - the encoding helpers modules use to emit JSON: string escaping
 * and base64.
 *
 * molt_json_escape validates UTF-8 strictly (RFC 3629): overlong forms,
 * UTF-16 surrogates and code points above U+10FFFF are invalid.  Each
 * maximal ill-formed subsequence becomes one U+FFFD, the practice Unicode
 * recommends (and WHATWG's decoder follows), so the output is always valid
 * JSON whatever bytes a client sent.  Every input byte yields at most six
 * output bytes, which is where the 6 * len + 1 in module.h comes from.
 *
 * Most of what modules escape is plain ASCII (paths, header values, ids),
 * so runs of bytes that need no escaping are found eight at a time and
 * copied with one memcpy.
 */
#include <stdint.h>
#include <string.h>

#include "molt/module.h"

#include "json.h"

static const char hexdig[] = "0123456789abcdef";

/*
 * 1 for the bytes that are copied as they are: printable ASCII except '"'
 * and '\\'.  Control characters and bytes >= 0x80 take the slow path.
 */
static const unsigned char plain[256] = {
	[0x20] = 1, [0x21] = 1, [0x23 ... 0x5b] = 1, [0x5d ... 0x7f] = 1,
};

#define ONES  0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/*
 * Word-at-a-time byte tests (Hacker's Delight / Sean Anderson's bit hacks).
 * As yes/no answers they are exact: a borrow can only add false hits in
 * bytes above a true one.
 */
#define HAS_ZERO(w)     (((w) - ONES) & ~(w) & HIGHS)
#define HAS_LESS(w, n)  (((w) - ONES * (n)) & ~(w) & HIGHS)

/*
 * Nonzero if one of the 8 bytes at p is a control character, '"', '\\' or
 * not ASCII.  DEL (0x7f) is legal in JSON strings and is left alone.
 */
static inline int
needs_care(const unsigned char *p)
{
	uint64_t w;

	memcpy(&w, p, sizeof(w));   /* an unaligned-safe load */
	return ((w & HIGHS) | HAS_LESS(w, 0x20) |
	    HAS_ZERO(w ^ (ONES * '"')) | HAS_ZERO(w ^ (ONES * '\\'))) != 0;
}

/*
 * Length of a well-formed UTF-8 sequence at s[0..len), or 0 if the bytes
 * there are ill-formed; then *skip is the length of the maximal
 * ill-formed subpart to replace with one U+FFFD (at least 1).
 */
static size_t
utf8_seq(const unsigned char *s, size_t len, size_t *skip)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t n, i;

	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0;          /* below: overlong */
		else if (c == 0xed)
			hi = 0x9f;          /* above: surrogates D800-DFFF */
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90;          /* below: overlong */
		else if (c == 0xf4)
			hi = 0x8f;          /* above: beyond U+10FFFF */
	} else {
		/* 0x80-0xc1 (continuation, overlong 2-byte lead), 0xf5-0xff */
		*skip = 1;
		return 0;
	}

	for (i = 1; i < n; i++) {
		if (i >= len || s[i] < lo || s[i] > hi) {
			*skip = i;
			return 0;
		}
		lo = 0x80;
		hi = 0xbf;
	}
	return n;
}

/*
 * For molt's own pages (status.c): the length of the well-formed UTF-8
 * character at s[0..len), 1 for an ASCII byte, 0 for bytes that are not
 * one.  The same rules as the escaping below, so both agree on a name.
 */
size_t
json_utf8_len(const char *s, size_t len)
{
	size_t skip;

	if (len == 0)
		return 0;
	if ((unsigned char)s[0] < 0x80)
		return 1;
	return utf8_seq((const unsigned char *)s, len, &skip);
}

size_t
molt_json_escape(char *dst, const char *src, size_t len)
{
	const unsigned char *s = (const unsigned char *)src;
	char *d = dst;
	size_t i = 0, start, n, skip;
	unsigned char c;

	while (i < len) {
		/* The fast path: a run of bytes that are copied unchanged. */
		start = i;
		while (len - i >= 8 && !needs_care(s + i))
			i += 8;
		while (i < len && plain[s[i]])
			i++;
		if (i > start) {
			memcpy(d, s + start, i - start);
			d += i - start;
		}
		if (i >= len)
			break;

		c = s[i];
		if (c < 0x80) {
			*d++ = '\\';
			switch (c) {
			case '"':  *d++ = '"';  break;
			case '\\': *d++ = '\\'; break;
			case '\b': *d++ = 'b';  break;
			case '\f': *d++ = 'f';  break;
			case '\n': *d++ = 'n';  break;
			case '\r': *d++ = 'r';  break;
			case '\t': *d++ = 't';  break;
			default:
				*d++ = 'u';
				*d++ = '0';
				*d++ = '0';
				*d++ = hexdig[c >> 4];
				*d++ = hexdig[c & 0xf];
				break;
			}
			i++;
			continue;
		}

		n = utf8_seq(s + i, len - i, &skip);
		if (n == 0) {
			memcpy(d, "\\ufffd", 6);
			d += 6;
			i += skip;
			continue;
		}
		/*
		 * U+2028 and U+2029 are valid in JSON but end a line in
		 * JavaScript before ES2019; escaping them keeps the output safe
		 * to embed in a script.  Three bytes in, six out: within bounds.
		 */
		if (n == 3 && c == 0xe2 && s[i + 1] == 0x80 &&
		    (s[i + 2] == 0xa8 || s[i + 2] == 0xa9)) {
			memcpy(d, s[i + 2] == 0xa8 ? "\\u2028" : "\\u2029", 6);
			d += 6;
		} else {
			memcpy(d, s + i, n);
			d += n;
		}
		i += n;
	}
	*d = '\0';
	return (size_t)(d - dst);
}

size_t
molt_base64(char *dst, const void *src, size_t len)
{
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *s = src;
	char *d = dst;
	uint32_t v;

	for (; len >= 3; s += 3, len -= 3) {
		v = (uint32_t)s[0] << 16 | (uint32_t)s[1] << 8 | s[2];
		*d++ = b64[v >> 18];
		*d++ = b64[(v >> 12) & 0x3f];
		*d++ = b64[(v >> 6) & 0x3f];
		*d++ = b64[v & 0x3f];
	}
	if (len > 0) {
		v = (uint32_t)s[0] << 16;
		if (len == 2)
			v |= (uint32_t)s[1] << 8;
		*d++ = b64[v >> 18];
		*d++ = b64[(v >> 12) & 0x3f];
		*d++ = len == 2 ? b64[(v >> 6) & 0x3f] : '=';
		*d++ = '=';
	}
	*d = '\0';
	return (size_t)(d - dst);
}
