/*
 * static.c - serves files from a directory.
 *
 * [route /files]
 * module = static
 * root = /srv/www          ; required
 * index = index.html       ; for a request ending in '/'
 * dotfiles = off           ; serve names starting with '.'? (.well-known always)
 *
 * The request's path_info (already percent-decoded by the core) is mapped
 * into root.  Nothing outside root is ever opened:
 *  - ".." segments are refused (400), and so are an encoded NUL or
 *    backslash in the target's path (400) and a backslash in the path;
 *  - files are opened with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)
 *    relative to a descriptor for root, so the kernel refuses any
 *    resolution that leaves it, also through symlinks and races;
 *  - where openat2 is missing (kernel < 5.6, or a seccomp filter says
 *    ENOSYS/EPERM when the worker starts) the path is walked one
 *    component at a time with O_NOFOLLOW, so no symlink is followed at
 *    all.
 * A symlink that leads outside root, or any symlink in the fallback mode,
 * answers 404, as if the file did not exist: its existence is not
 * revealed.  Symlinks that stay inside root work with openat2, absolute
 * ones included (see open_resolved).
 *
 * GET and HEAD only (else 405 with Allow).  Replies carry ETag
 * ("<mtime-hex>-<size-hex>"), Last-Modified and Accept-Ranges: bytes, and
 * honour If-Match, If-Unmodified-Since (412), If-None-Match,
 * If-Modified-Since (304), If-Range and a single
 * Range (206, or 416 with "Content-Range: bytes *" "/SIZE" when it cannot
 * be satisfied).
 * A request with several ranges gets the whole file (200), which RFC 9110
 * allows, and so does any Range on an empty file.  A directory without a
 * trailing slash is redirected (301); a directory with one serves its
 * index, else 404 (there is no listing).
 *
 * The file goes out with sendfile through molt_reply_file.  Everything
 * else per request comes from the request pool.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE             /* O_PATH */
#endif

#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#ifdef __linux__
#include <linux/openat2.h>
#endif

#include <molt/module.h>

struct static_route {
	int    rootfd;          /* O_PATH descriptor for root, -1 if unusable */
	char  *root;
	char  *realroot;        /* root with every symlink resolved, or NULL */
	char  *index;
	int    dotfiles;
	dev_t  root_dev;        /* what rootfd is, to notice a new root */
	ino_t  root_ino;
	time_t checked;         /* when root was last looked up, seconds */
};

static const struct molt_conf_key static_keys[] = {
	{ "root", MOLT_CONF_STRING,
	  MOLT_CONF_MODULE | MOLT_CONF_ROUTE | MOLT_CONF_REQUIRED, NULL,
	  "directory the files are served from" },
	{ "index", MOLT_CONF_STRING, MOLT_CONF_MODULE | MOLT_CONF_ROUTE,
	  "index.html", "file served for a request ending in '/'" },
	{ "dotfiles", MOLT_CONF_BOOL, MOLT_CONF_MODULE | MOLT_CONF_ROUTE,
	  "off", "serve names starting with '.' (.well-known is always served)" },
	{ NULL, 0, 0, NULL, NULL },
};

/* ------------------------------------------------------------------ */
/* Content types                                                       */

/*
 * The types nginx's mime.types has for the web, and the few it lacks
 * (ttf, otf, csv, md, vtt, ...) with their IANA names.  Sorted by
 * extension in ASCII order, lower case: bsearch with strcasecmp, so
 * "PHOTO.JPG" is found too.  Text types say UTF-8, as a browser would
 * otherwise guess.
 */
struct content_type {
	const char *ext;
	const char *type;
};

static const struct content_type types[] = {
	{ "3gp",   "video/3gpp" },
	{ "7z",    "application/x-7z-compressed" },
	{ "aac",   "audio/aac" },
	{ "apng",  "image/apng" },
	{ "atom",  "application/atom+xml" },
	{ "avi",   "video/x-msvideo" },
	{ "avif",  "image/avif" },
	{ "bmp",   "image/bmp" },
	{ "bz2",   "application/x-bzip2" },
	{ "css",   "text/css; charset=utf-8" },
	{ "csv",   "text/csv; charset=utf-8" },
	{ "doc",   "application/msword" },
	{ "docx",
	  "application/vnd.openxmlformats-officedocument."
	  "wordprocessingml.document" },
	{ "eot",   "application/vnd.ms-fontobject" },
	{ "epub",  "application/epub+zip" },
	{ "flac",  "audio/flac" },
	{ "gif",   "image/gif" },
	{ "gz",    "application/gzip" },
	{ "htm",   "text/html; charset=utf-8" },
	{ "html",  "text/html; charset=utf-8" },
	{ "ico",   "image/x-icon" },
	{ "ics",   "text/calendar; charset=utf-8" },
	{ "jar",   "application/java-archive" },
	{ "jpeg",  "image/jpeg" },
	{ "jpg",   "image/jpeg" },
	{ "js",    "text/javascript; charset=utf-8" },
	{ "json",  "application/json" },
	{ "jsonld", "application/ld+json" },
	{ "m3u8",  "application/vnd.apple.mpegurl" },
	{ "m4a",   "audio/mp4" },
	{ "m4v",   "video/mp4" },
	{ "map",   "application/json" },
	{ "md",    "text/markdown; charset=utf-8" },
	{ "mid",   "audio/midi" },
	{ "midi",  "audio/midi" },
	{ "mjs",   "text/javascript; charset=utf-8" },
	{ "mov",   "video/quicktime" },
	{ "mp3",   "audio/mpeg" },
	{ "mp4",   "video/mp4" },
	{ "mpeg",  "video/mpeg" },
	{ "mpg",   "video/mpeg" },
	{ "odp",   "application/vnd.oasis.opendocument.presentation" },
	{ "ods",   "application/vnd.oasis.opendocument.spreadsheet" },
	{ "odt",   "application/vnd.oasis.opendocument.text" },
	{ "oga",   "audio/ogg" },
	{ "ogg",   "audio/ogg" },
	{ "ogv",   "video/ogg" },
	{ "opus",  "audio/ogg" },
	{ "otf",   "font/otf" },
	{ "pdf",   "application/pdf" },
	{ "png",   "image/png" },
	{ "ppt",   "application/vnd.ms-powerpoint" },
	{ "pptx",
	  "application/vnd.openxmlformats-officedocument."
	  "presentationml.presentation" },
	{ "rar",   "application/vnd.rar" },
	{ "rss",   "application/rss+xml" },
	{ "rtf",   "application/rtf" },
	{ "svg",   "image/svg+xml" },
	{ "tar",   "application/x-tar" },
	{ "tif",   "image/tiff" },
	{ "tiff",  "image/tiff" },
	{ "ts",    "video/mp2t" },
	{ "ttf",   "font/ttf" },
	{ "txt",   "text/plain; charset=utf-8" },
	{ "vtt",   "text/vtt; charset=utf-8" },
	{ "wasm",  "application/wasm" },
	{ "wav",   "audio/wav" },
	{ "weba",  "audio/webm" },
	{ "webm",  "video/webm" },
	{ "webmanifest", "application/manifest+json" },
	{ "webp",  "image/webp" },
	{ "woff",  "font/woff" },
	{ "woff2", "font/woff2" },
	{ "xhtml", "application/xhtml+xml" },
	{ "xls",   "application/vnd.ms-excel" },
	{ "xlsx",
	  "application/vnd.openxmlformats-officedocument."
	  "spreadsheetml.sheet" },
	{ "xml",   "application/xml" },
	{ "xz",    "application/x-xz" },
	{ "zip",   "application/zip" },
	{ "zst",   "application/zstd" },
};

static int
type_cmp(const void *key, const void *elem)
{
	return strcasecmp(key, ((const struct content_type *)elem)->ext);
}

static const char *
content_type(const char *name)
{
	const char *dot = strrchr(name, '.');
	const struct content_type *t;

	if (dot == NULL || strchr(dot, '/') != NULL)
		return "application/octet-stream";
	t = bsearch(dot + 1, types, sizeof(types) / sizeof(types[0]),
	    sizeof(types[0]), type_cmp);
	return t != NULL ? t->type : "application/octet-stream";
}

/*
 * molt_http_parse_date takes the three forms RFC 9110 5.6.7 has a
 * recipient accept (IMF-fixdate, rfc850, asctime).  A date it cannot
 * read makes the condition false, which is what RFC 9110 13.1.3 and
 * 13.1.4 ask for an invalid date: the header is ignored.
 */
static int
parse_http_date(const char *s, time_t *out)
{
	time_t t = molt_http_parse_date(s, strlen(s));

	if (t == (time_t)-1)
		return -1;
	*out = t;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Conditional requests and ranges                                     */

/*
 * 1 if the list of entity-tags in hdr contains etag, or is "*" (any
 * current representation: the file exists).  weak: compare with W/
 * stripped from both (If-None-Match); else W/ tags never match (If-Match
 * and If-Range need the strong comparison).
 */
static int
etag_match(const char *hdr, const char *etag, int weak)
{
	const char *p = hdr, *q;
	size_t elen = strlen(etag);
	int is_weak;

	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (*p == '\0')
			return 0;
		if (*p == '*')
			return 1;
		is_weak = 0;
		if (p[0] == 'W' && p[1] == '/') {
			is_weak = 1;
			p += 2;
		}
		if (*p != '"')
			return 0;       /* malformed: treat as no match */
		q = strchr(p + 1, '"');
		if (q == NULL)
			return 0;
		if ((weak || !is_weak) && (size_t)(q + 1 - p) == elen &&
		    memcmp(p, etag, elen) == 0)
			return 1;
		p = q + 1;
	}
}

/*
 * etag_match over every field line named name: RFC 9110 5.3 combines them
 * into one list, and an intermediary may have split one.  -1 if there is
 * none.
 */
static int
etag_header_match(molt_request *req, const char *name, const char *etag,
                  int weak)
{
	const char *n, *v;
	size_t i, count = molt_req_header_count(req);
	int found = -1;

	for (i = 0; i < count; i++) {
		if (molt_req_header_at(req, i, &n, &v) == -1 ||
		    strcasecmp(n, name) != 0)
			continue;
		if (etag_match(v, etag, weak))
			return 1;
		found = 0;
	}
	return found;
}

/*
 * Parses a decimal off_t; returns the end, or NULL on no digits.  A number
 * too large for an off_t is INT64_MAX, which is past the end of any file:
 * RFC 9110 14.1.1 has a recipient anticipate such positions, and they
 * mean "to the end" (last-pos, suffix) or "beyond it" (first-pos).
 */
static const char *
parse_off(const char *p, off_t *v)
{
	off_t n = 0;
	const char *start = p;

	for (; *p >= '0' && *p <= '9'; p++) {
		if (n > (INT64_MAX - (*p - '0')) / 10)
			n = INT64_MAX;
		else
			n = n * 10 + (*p - '0');
	}
	if (p == start)
		return NULL;
	*v = n;
	return p;
}

/*
 * If-Range (RFC 9110 13.1.5): the range applies only if the validator
 * names the current representation: a strong ETag match or the exact
 * Last-Modified date.
 */
static int
if_range_ok(const char *ir, const char *etag, time_t mtime)
{
	time_t t;

	if (ir == NULL)
		return 1;
	if (ir[0] == '"' || (ir[0] == 'W' && ir[1] == '/'))
		return etag_match(ir, etag, 0);
	return parse_http_date(ir, &t) == 0 && t == mtime;
}

/*
 * The preconditions in the order of RFC 9110 13.2.2: 412 if If-Match
 * fails, or in its absence If-Unmodified-Since; then 304 if If-None-Match
 * matches, or in its absence If-Modified-Since holds; else 0.  If-Range
 * is the caller's, with the Range.  Only GET and HEAD get here, so a
 * failed If-None-Match is always 304.
 */
static int
preconditions(molt_request *req, const char *etag, time_t mtime)
{
	const char *h;
	time_t t;
	int m;

	if ((m = etag_header_match(req, "If-Match", etag, 0)) != -1) {
		if (m == 0)
			return 412;
	} else if ((h = molt_req_header(req, "If-Unmodified-Since")) != NULL &&
	    parse_http_date(h, &t) == 0 && mtime > t)
		return 412;

	if ((m = etag_header_match(req, "If-None-Match", etag, 1)) != -1) {
		if (m == 1)
			return 304;
	} else if ((h = molt_req_header(req, "If-Modified-Since")) != NULL &&
	    parse_http_date(h, &t) == 0 && mtime <= t)
		return 304;
	return 0;
}

enum range_result { RANGE_NONE, RANGE_OK, RANGE_UNSATISFIABLE };

/*
 * A single "bytes=a-b", "bytes=a-" or "bytes=-n" against a file of size.
 * Syntax errors and multiple ranges give RANGE_NONE: the header is
 * ignored and the whole file sent, as RFC 9110 section 14.2 allows.  So
 * does any range on an empty file, as with nginx: no range can be
 * satisfied there, but a 416 for "bytes=0-" makes a browser's media
 * element fail on a file it could have had.
 */
static enum range_result
parse_range(const char *h, off_t size, off_t *start, off_t *end)
{
	const char *p;
	off_t a, b;

	if (size == 0 || strncasecmp(h, "bytes", 5) != 0)
		return RANGE_NONE;
	for (p = h + 5; *p == ' ' || *p == '\t'; p++)
		;
	if (*p++ != '=')
		return RANGE_NONE;
	while (*p == ' ' || *p == '\t')
		p++;

	if (*p == '-') {                        /* suffix: the last n bytes */
		p = parse_off(p + 1, &b);
		if (p == NULL)
			return RANGE_NONE;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p != '\0')
			return RANGE_NONE;
		if (b == 0)
			return RANGE_UNSATISFIABLE;
		*start = b >= size ? 0 : size - b;
		*end = size - 1;
		return RANGE_OK;
	}

	p = parse_off(p, &a);
	if (p == NULL || *p++ != '-')
		return RANGE_NONE;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '\0' || *p == ',') {          /* "a-": from a to the end */
		b = -1;
	} else {
		p = parse_off(p, &b);
		if (p == NULL || b < a)
			return RANGE_NONE;
	}
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p != '\0')
		return RANGE_NONE;              /* several ranges: whole file */
	if (a >= size)
		return RANGE_UNSATISFIABLE;
	*start = a;
	*end = b < 0 || b >= size ? size - 1 : b;
	return RANGE_OK;
}

/* ------------------------------------------------------------------ */
/* Opening a file beneath root                                         */

/*
 * Whether openat2 works is the worker's to find out once, at its start
 * (static_worker_init), never from a request: EPERM for one file is
 * that file's policy (fanotify, an LSM), not a seccomp filter.
 */
static int have_openat2;

#if defined(SYS_openat2) && defined(RESOLVE_BENEATH)
static int
open_beneath2(int rootfd, const char *rel, int flags)
{
	struct open_how how;

	memset(&how, 0, sizeof(how));
	how.flags = (uint64_t)flags;
	how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
	return (int)syscall(SYS_openat2, rootfd, rel, &how, sizeof(how));
}
#else
static int
open_beneath2(int rootfd, const char *rel, int flags)
{
	(void)rootfd;
	(void)rel;
	(void)flags;
	errno = ENOSYS;
	return -1;
}
#endif

/*
 * The fallback: one component at a time, never following a symlink.  rel
 * has no "..", "." or empty segments (static_handle made sure).
 */
static int
open_walk(int rootfd, char *rel, int flags)
{
	char *seg, *slash;
	int dirfd = rootfd, fd, saved;

	if (strcmp(rel, ".") == 0)
		return openat(rootfd, ".", flags);

	for (seg = rel;; seg = slash + 1) {
		slash = strchr(seg, '/');
		if (slash == NULL)
			break;
		*slash = '\0';
		fd = openat(dirfd, seg,
		    O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		saved = errno;
		*slash = '/';
		if (dirfd != rootfd)
			close(dirfd);
		if (fd == -1) {
			errno = saved;
			return -1;
		}
		dirfd = fd;
	}
	fd = openat(dirfd, seg, flags | O_NOFOLLOW);
	saved = errno;
	if (dirfd != rootfd)
		close(dirfd);
	errno = saved;
	return fd;
}

/* 1 if the resolved path p (n bytes) is root or lies beneath it. */
static int
path_beneath(const char *root, const char *p, size_t n)
{
	size_t rl = strlen(root);

	if (rl == 1)                    /* root is "/" */
		return p[0] == '/';
	return n >= rl && memcmp(p, root, rl) == 0 && (n == rl || p[rl] == '/');
}

/*
 * RESOLVE_BENEATH refuses every absolute symlink with EXDEV, also one that
 * leads back into root (ln -s /srv/www/v2/index.html index.html).  Such a
 * path is resolved for real, but first with O_PATH, which opens nothing: no
 * FIFO blocks and no device hears an open.  The kernel names what that
 * descriptor refers to, not the name used to reach it, so when that lies
 * beneath root the object is opened through the descriptor itself, and a
 * symlink swapped in between cannot redirect it.
 */
static int
open_resolved(const struct static_route *r, const char *rel, int flags)
{
	char link[32], real[4096];
	ssize_t n;
	int pfd, fd, saved;

	if (r->realroot == NULL) {
		errno = EXDEV;
		return -1;
	}
	if ((pfd = openat(r->rootfd, rel, O_PATH | O_CLOEXEC)) == -1)
		return -1;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", pfd);
	n = readlink(link, real, sizeof(real));
	if (n <= 0 || (size_t)n == sizeof(real) ||
	    !path_beneath(r->realroot, real, (size_t)n)) {
		close(pfd);
		errno = EXDEV;
		return -1;
	}
	fd = open(link, flags);
	saved = errno;
	close(pfd);
	errno = saved;
	return fd;
}

static int
open_beneath(const struct static_route *r, char *rel, int flags)
{
	int fd;

	if (have_openat2) {
		fd = open_beneath2(r->rootfd, rel, flags);
		if (fd == -1 && errno == EXDEV)
			return open_resolved(r, rel, flags);
		return fd;
	}
	return open_walk(r->rootfd, rel, flags);
}

/*
 * name for the log: it comes from the request, so control bytes (and
 * quotes, backslashes and non-ASCII, as the core's log does) become
 * \xHH and a client cannot forge a line.
 */
static const char *
log_name(molt_request *req, const char *name)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *s;
	char *buf, *o;

	if ((buf = molt_palloc(molt_req_pool(req), 4 * strlen(name) + 1)) == NULL)
		return "(out of memory)";
	for (s = (const unsigned char *)name, o = buf; *s != '\0'; s++) {
		if (*s < 0x20 || *s >= 0x7f || *s == '"' || *s == '\\') {
			*o++ = '\\';
			*o++ = 'x';
			*o++ = hex[*s >> 4];
			*o++ = hex[*s & 0xf];
		} else {
			*o++ = (char)*s;
		}
	}
	*o = '\0';
	return buf;
}

/*
 * Out of descriptors or memory, every file request fails the same way
 * for as long as it lasts: a line each filled the disk of a server that
 * was already short.  The first is logged, then at most one every
 * SHORT_LOG_SEC, with how many went unsaid (per worker: each has its own
 * copy of these).
 */
#define SHORT_LOG_SEC 10

static struct {
	int             logged;
	struct timespec at;         /* CLOCK_MONOTONIC of the last line */
	unsigned        unsaid;
} short_of;

static void
open_short(molt_request *req, const char *rel, int err)
{
	struct timespec now;

	if (clock_gettime(CLOCK_MONOTONIC, &now) == -1)
		now.tv_sec = 0;
	if (short_of.logged && now.tv_sec - short_of.at.tv_sec < SHORT_LOG_SEC) {
		short_of.unsaid++;
		return;
	}
	molt_log(MOLT_LOG_WARN, "static: open %s: %s; answering 503 (%u more "
	    "since the last line)", log_name(req, rel), strerror(err),
	    short_of.unsaid);
	short_of.logged = 1;
	short_of.at = now;
	short_of.unsaid = 0;
}

/* The reply for a failed open of rel (relative to root, for the log). */
static int
open_error(molt_request *req, const char *rel, int err)
{
	switch (err) {
	case ENOENT:
	case ENOTDIR:
	case ELOOP:             /* a symlink in the fallback walk */
	case EXDEV:             /* openat2: the path would leave root */
	case ENAMETOOLONG:
		return molt_reply_error(req, 404, "not found");
	case EACCES:
	case EPERM:
		return molt_reply_error(req, 403, "forbidden");
	case EMFILE:
	case ENFILE:
	case ENOMEM:
		open_short(req, rel, err);
		return molt_reply_error(req, 503, "out of resources");
	default:
		molt_log(MOLT_LOG_ERROR, "static: open %s: %s",
		    log_name(req, rel), strerror(err));
		return molt_reply_error(req, 500, "cannot open file");
	}
}

/* ------------------------------------------------------------------ */
/* The request                                                         */

/*
 * Builds the path relative to root from path_info: segments joined by
 * '/', empty and "." segments dropped.  Returns NULL and sets *status
 * to refuse the request.
 */
static char *
map_path(molt_request *req, const struct static_route *r, const char *pi,
         int *status)
{
	char *rel, *d;
	const char *seg, *end;
	size_t n;

	rel = molt_palloc(molt_req_pool(req), strlen(pi) + 2);
	if (rel == NULL) {
		*status = 500;
		return NULL;
	}
	d = rel;
	for (seg = pi; *seg != '\0'; seg = end) {
		while (*seg == '/')
			seg++;
		end = strchrnul(seg, '/');
		n = (size_t)(end - seg);
		if (n == 0 || (n == 1 && seg[0] == '.'))
			continue;
		if (n == 2 && seg[0] == '.' && seg[1] == '.') {
			*status = 400;
			return NULL;
		}
		/*
		 * The request's names only, as nginx's "location ~ /\."
		 * (molt.conf(5)): a symlink in the root is the owner's
		 * doing, and where it leads is not looked up again.
		 */
		if (seg[0] == '.' && !r->dotfiles &&
		    !(n == 11 && memcmp(seg, ".well-known", 11) == 0)) {
			*status = 404;
			return NULL;
		}
		if (d != rel)
			*d++ = '/';
		memcpy(d, seg, n);
		d += n;
	}
	if (d == rel)
		*d++ = '.';
	*d = '\0';
	return rel;
}

/*
 * 1 if the raw target's path smuggles a NUL or a backslash in
 * percent-encoding.  The query is the application's: "?q=a%5Cb" is a
 * search, not a path.
 */
static int
bad_encoding(const char *target)
{
	const char *p, *end = strchrnul(target, '?');

	for (p = target; (p = memchr(p, '%', (size_t)(end - p))) != NULL; p++) {
		if (p[1] == '0' && p[2] == '0')
			return 1;
		if (p[1] == '5' && (p[2] == 'c' || p[2] == 'C'))
			return 1;
	}
	return 0;
}

/* 301 to the same path with a '/' added, keeping the query. */
static int
redirect_slash(molt_request *req)
{
	const char *target = molt_req_target(req), *q, *lead = "";
	char *loc;
	size_t plen;

	/*
	 * Use the target as sent, so percent-encoding survives.  "//host/x"
	 * would be a protocol-relative URL for another site, and so would
	 * "/\host/x": browsers read a backslash there as a slash (WHATWG
	 * URL).  The leading run of both becomes one '/'.
	 */
	if (target[0] == '/') {
		lead = "/";
		while (*target == '/' || *target == '\\')
			target++;
	}
	q = strchr(target, '?');
	plen = q != NULL ? (size_t)(q - target) : strlen(target);
	loc = molt_psprintf(molt_req_pool(req), "%s%.*s/%s", plen ? lead : "",
	    (int)plen, target, q != NULL ? q : "");
	if (loc == NULL || molt_resp_header(req, "Location", loc) == -1)
		return MOLT_ERROR;
	return molt_reply(req, 301, "text/plain", "moved permanently\n", 18);
}

/*
 * Opens root (again).  Quiet is for the checks after the first: a root
 * that is still missing was already reported.
 */
static void
static_root_open(struct static_route *r, int quiet)
{
	struct stat st;
	char *real;
	int fd;

	if ((fd = open(r->root, O_PATH | O_DIRECTORY | O_CLOEXEC)) == -1 ||
	    fstat(fd, &st) == -1) {
		if (!quiet)
			molt_log(MOLT_LOG_ERROR, "static: root %s: %s; serving 404",
			    r->root, strerror(errno));
		if (fd != -1)
			close(fd);
		return;
	}
	if ((real = realpath(r->root, NULL)) == NULL)
		molt_log(MOLT_LOG_WARN, "static: root %s: realpath: %s; absolute "
		    "symlinks will answer 404", r->root, strerror(errno));
	if (r->rootfd != -1) {
		close(r->rootfd);
		molt_log(MOLT_LOG_INFO, "static: root %s is another directory "
		    "now; serving from it", r->root);
	} else if (quiet) {
		molt_log(MOLT_LOG_INFO, "static: root %s is there now; serving "
		    "from it", r->root);
	}
	free(r->realroot);
	r->rootfd = fd;
	r->realroot = real;
	r->root_dev = st.st_dev;
	r->root_ino = st.st_ino;
}

/*
 * A deploy that swaps a symlink (root = /srv/current -> releases/N) must
 * take effect in every worker, as it does for nginx, which resolves root
 * per request: once a second a stat tells whether root is another
 * directory now.  A root that vanished keeps the one open; a missing one
 * is picked up when it appears.
 */
static void
static_root_check(struct static_route *r)
{
	struct stat st;
	time_t now = time(NULL);

	if (now == r->checked)
		return;
	r->checked = now;
	if (stat(r->root, &st) == -1 || !S_ISDIR(st.st_mode))
		return;
	if (r->rootfd == -1 || st.st_dev != r->root_dev || st.st_ino != r->root_ino)
		static_root_open(r, 1);
}

static int
static_handle(molt_request *req)
{
	struct static_route *r = molt_req_route_data(req);
	molt_pool *pool = molt_req_pool(req);
	const char *method = molt_req_method(req);
	const char *path = molt_req_path(req);
	const char *pi = molt_req_path_info(req);
	const char *h, *type;
	char *rel, *full, *cr, etag[64], lastmod[40];
	struct stat st;
	off_t start = 0, end = 0, len;
	int fd = -1, status = 200, trailing, err;
	size_t plen;

	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		if (molt_resp_header(req, "Allow", "GET, HEAD") == -1)
			return MOLT_ERROR;
		return molt_reply_error(req, 405, "method not allowed");
	}
	if (r != NULL)
		static_root_check(r);
	if (r == NULL || r->rootfd == -1)
		return molt_reply_error(req, 404, "not found");
	if (pi == NULL)
		pi = "";
	if (bad_encoding(molt_req_target(req)) || strchr(pi, '\\') != NULL)
		return molt_reply_error(req, 400, "bad path");

	rel = map_path(req, r, pi, &status);
	if (rel == NULL)
		return molt_reply_error(req, status,
		    status == 400 ? "bad path" : status == 404 ? "not found" :
		    "out of memory");
	plen = strlen(path);
	trailing = plen > 0 && path[plen - 1] == '/';

	fd = open_beneath(r, rel,
	    O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd == -1)
		return open_error(req, rel, errno);
	if (fstat(fd, &st) == -1)
		goto fail_stat;

	if (S_ISDIR(st.st_mode)) {
		close(fd);
		fd = -1;
		if (!trailing)
			return redirect_slash(req);
		full = molt_psprintf(pool, "%s/%s", rel, r->index);
		if (full == NULL)
			return MOLT_ERROR;
		fd = open_beneath(r, full,
		    O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
		if (fd == -1)
			return open_error(req, full, errno);
		rel = full;
		if (fstat(fd, &st) == -1)
			goto fail_stat;
		trailing = 0;
	}
	/*
	 * O_NONBLOCK above keeps a FIFO from hanging the worker in open();
	 * devices, sockets and FIFOs are never served.  "file.txt/" is not a
	 * file either (as with nginx and open(2) itself).
	 */
	if (!S_ISREG(st.st_mode) || trailing) {
		close(fd);
		return molt_reply_error(req, 404, "not found");
	}

	/* Validators, sent with 200, 206 and 304 alike. */
	snprintf(etag, sizeof(etag), "\"%" PRIx64 "-%" PRIx64 "\"",
	    (uint64_t)st.st_mtime, (uint64_t)st.st_size);
	molt_http_date(st.st_mtime, lastmod);
	if (molt_resp_header(req, "ETag", etag) == -1 ||
	    molt_resp_header(req, "Last-Modified", lastmod) == -1 ||
	    molt_resp_header(req, "Accept-Ranges", "bytes") == -1)
		goto fail;

	switch (preconditions(req, etag, st.st_mtime)) {
	case 412:
		close(fd);
		return molt_reply_error(req, 412, "precondition failed");
	case 304:
		close(fd);
		return molt_reply(req, 304, NULL, NULL, 0);
	}

	type = content_type(rel);
	len = st.st_size;
	h = molt_req_header(req, "Range");
	if (h != NULL &&
	    if_range_ok(molt_req_header(req, "If-Range"), etag, st.st_mtime)) {
		switch (parse_range(h, st.st_size, &start, &end)) {
		case RANGE_OK:
			status = 206;
			len = end - start + 1;
			cr = molt_psprintf(pool, "bytes %" PRId64 "-%" PRId64
			    "/%" PRId64, (int64_t)start, (int64_t)end,
			    (int64_t)st.st_size);
			if (cr == NULL ||
			    molt_resp_header(req, "Content-Range", cr) == -1)
				goto fail;
			break;
		case RANGE_UNSATISFIABLE:
			close(fd);
			cr = molt_psprintf(pool, "bytes */%" PRId64,
			    (int64_t)st.st_size);
			if (cr == NULL ||
			    molt_resp_header(req, "Content-Range", cr) == -1)
				return MOLT_ERROR;
			return molt_reply_error(req, 416,
			    "range not satisfiable");
		case RANGE_NONE:
			break;
		}
	}
	/* molt_reply_file owns fd from here, also when it fails. */
	return molt_reply_file(req, status, type, fd, start, len);

fail_stat:
	err = errno;            /* log_name may allocate */
	molt_log(MOLT_LOG_ERROR, "static: fstat %s: %s", log_name(req, rel),
	    strerror(err));
fail:
	if (fd != -1)
		close(fd);
	return MOLT_ERROR;
}

/* ------------------------------------------------------------------ */
/* Set-up                                                              */

static int
static_check(const molt_conf *conf, char *err, size_t errlen)
{
	const char *index = molt_conf_str(conf, "index");

	if (index == NULL || index[0] == '\0' || strchr(index, '/') != NULL ||
	    strcmp(index, ".") == 0 || strcmp(index, "..") == 0) {
		snprintf(err, errlen, "index must be a plain file name");
		return -1;
	}
	return 0;
}

/*
 * Tries openat2 as every request calls it, on "." beneath "/", which any
 * process may open with O_PATH whatever the roots are: ENOSYS is a kernel
 * before 5.6, EPERM or ENOSYS a seccomp filter (container runtimes older
 * than openat2), and either way the worker walks paths instead.
 */
static int
static_worker_init(molt_worker *w)
{
	int dfd, fd = -1;

	(void)w;
	have_openat2 = 0;
	if ((dfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC)) == -1 ||
	    (fd = open_beneath2(dfd, ".", O_PATH | O_CLOEXEC)) == -1)
		molt_log(MOLT_LOG_INFO, "static: openat2 unavailable (%s); "
		    "walking paths without following symlinks",
		    strerror(errno));
	else
		have_openat2 = 1;
	if (fd != -1)
		close(fd);
	if (dfd != -1)
		close(dfd);
	return 0;
}

static int
static_route_init(molt_worker *w, const molt_conf *conf, void **data)
{
	struct static_route *r;
	const char *root, *index;

	(void)w;
	root = molt_conf_str(conf, "root");
	index = molt_conf_str(conf, "index");
	if (index == NULL)
		index = "index.html";

	/* Once per route and worker: kept for the worker's life. */
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		goto fail;
	r->rootfd = -1;
	r->root = strdup(root != NULL ? root : "");
	r->index = strdup(index);
	if (r->root == NULL || r->index == NULL)
		goto fail;
	r->dotfiles = molt_conf_bool(conf, "dotfiles");

	/*
	 * A missing root is logged, not fatal: the worker would only be
	 * restarted in a loop, and the other routes would go down with it.
	 * Every request to this route answers 404 instead.
	 */
	static_root_open(r, 0);
	r->checked = time(NULL);
	*data = r;
	return 0;

fail:
	molt_log(MOLT_LOG_ERROR, "static: out of memory");
	if (r != NULL) {
		free(r->root);
		free(r->realroot);
		free(r->index);
		free(r);
	}
	return -1;
}

static void
static_route_exit(molt_worker *w, void *data)
{
	struct static_route *r = data;

	(void)w;
	if (r == NULL)
		return;
	if (r->rootfd != -1)
		close(r->rootfd);
	free(r->root);
	free(r->realroot);
	free(r->index);
	free(r);
}

MOLT_EXPORT const struct molt_module molt_module = {
	MOLT_MODULE_HEADER,
	.name        = "static",
	.version     = "1.0",
	.description = "serves files beneath a root directory",
	.conf_keys   = static_keys,
	.check       = static_check,
	.worker_init = static_worker_init,
	.route_init  = static_route_init,
	.route_exit  = static_route_exit,
	.handle      = static_handle,
};
