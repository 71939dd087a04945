/*
 * http_parse.h - strict, allocation-free HTTP/1.x request parsing.
 *
 * Everything here works on caller-owned memory and never allocates, so the
 * parser can run per request on the hot path and under libFuzzer.
 */
#ifndef MOLT_HTTP_PARSE_H
#define MOLT_HTTP_PARSE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define HTTP_MAX_HEADERS_HARD 128   /* size of the caller's header array */

struct http_header {
	const char *name;
	size_t      name_len;
	const char *value;      /* leading/trailing OWS stripped */
	size_t      value_len;
};

/* flags in struct http_head */
#define HTTP_F_CHUNKED      0x01  /* Transfer-Encoding: chunked */
#define HTTP_F_CLOSE        0x02  /* Connection: close (or 1.0 without keep-alive) */
#define HTTP_F_KEEPALIVE    0x04  /* Connection: keep-alive was sent */
#define HTTP_F_CONTINUE     0x08  /* Expect: 100-continue */
#define HTTP_F_HAS_LENGTH   0x10  /* Content-Length present */
#define HTTP_F_HEAD         0x20  /* method is HEAD */
#define HTTP_F_ABSOLUTE     0x40  /* absolute-form target: host is its authority */

struct http_limits {
	size_t max_head;      /* request line + headers + final CRLF; else 431 */
	size_t max_uri;       /* request-target length; else 414 */
	size_t max_headers;   /* header count, <= HTTP_MAX_HEADERS_HARD; else 431 */
};

struct http_head {
	const char *method;   size_t method_len;
	const char *target;   size_t target_len;   /* as sent */
	const char *path;     size_t path_len;     /* origin path, no query; for
	                                              absolute-form the path part
	                                              ("/" if empty) */
	const char *query;    size_t query_len;    /* after '?', may be 0 */
	int         version;                       /* 10 or 11 */
	unsigned    flags;
	uint64_t    content_length;                /* valid with HTTP_F_HAS_LENGTH */
	const char *host;     size_t host_len;     /* NULL if absent */
	size_t      nheaders;
	struct http_header headers[HTTP_MAX_HEADERS_HARD];
};

/*
 * Parse the request head at buf[0..len).
 * Returns:
 *   > 0   the head is complete; the value is its length including the
 *         blank line.  h is filled in and points into buf.
 *   0     incomplete: read more and call again with the grown buffer.
 *   < 0   -STATUS to answer with, then close:
 *           -400 malformed (bare CR or LF, obs-fold, bad token, bad
 *                Content-Length, CL together with TE, differing CLs,
 *                missing or repeated Host in 1.1, a Host that is not
 *                host[:port], TE in 1.0, ...)
 *           -414 request-target longer than max_uri
 *           -417 Expect other than 100-continue (an empty one is
 *                ignored)
 *           -431 head longer than max_head, or too many headers
 *           -501 Transfer-Encoding other than chunked / unknown coding
 *           -505 HTTP major version other than 1 (1.2 and on are
 *                read as 1.1)
 * A request line that is still incomplete but already longer than max_uri
 * plus the method and version gets -414 without waiting for more data;
 * a head that is incomplete and already max_head long gets -431.
 * Leading empty lines (CRLF) before the request line are skipped, as RFC
 * 9112 2.2 allows; they count towards the returned length.
 */
int http_parse_head(const char *buf, size_t len, const struct http_limits *lim,
                    struct http_head *h);

/*
 * Incremental chunked-body decoder that works in place.
 * Call with the bytes after the head; decoded data is moved down to the
 * start of buf.  Chunk extensions and trailer fields are validated and
 * dropped.
 */
struct http_chunked {
	int      state;       /* private; zero-initialise */
	uint64_t remaining;   /* private */
	size_t   trailer_len; /* private */
};

/*
 * Returns 1 when the final chunk and trailers are complete, 0 if more
 * input is needed, -400 on a malformed chunk (bad hex, size overflow,
 * missing CRLF, bare CR/LF, over-long extension or trailer).
 * *consumed: input bytes used (the caller drops them).
 * *produced: decoded bytes now at buf[0..*produced).
 * Because decoding is in place, the caller appends decoded data to its
 * body store before the next call.
 */
int http_chunked_decode(struct http_chunked *c, char *buf, size_t len,
                        size_t *consumed, size_t *produced);

/*
 * The bytes of chunk data the decoder knows are still to come: the rest
 * of the chunk being read, or the size read so far of the size line
 * being read (more digits only make it larger).  So the body will be at
 * least what has been produced plus this, and one over the limit can be
 * refused before its data is sent.
 */
uint64_t http_chunked_owed(const struct http_chunked *c);

/*
 * Percent-decode src[0..len) into dst (which may equal src).  With
 * plus_space, '+' becomes ' ' (query strings).  Returns the decoded
 * length, or -1 for a malformed escape or an encoded NUL.
 */
ssize_t http_urldecode(char *dst, const char *src, size_t len, int plus_space);

/* Case-insensitive compare of a header name against a lowercase literal. */
int http_name_eq(const char *name, size_t len, const char *lower);

/* Reason phrase for a status code ("OK"), or "Unknown". */
const char *http_reason(int status);

/* "Sun, 06 Nov 1994 08:49:37 GMT" into out[30], NUL-terminated; 29 chars. */
void http_date(time_t t, char out[30]);

/* Parses an IMF-fixdate (the only form molt emits), or the rfc850 or asctime
 * form a recipient must also accept (RFC 9110 5.6.7); -1 if invalid. */
time_t http_parse_date(const char *s, size_t len);

#endif /* MOLT_HTTP_PARSE_H */
