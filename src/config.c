/*
 * config.c - reading molt.conf.
 *
 * inih does the INI syntax; this file does everything inih cannot say:
 * which line an error is on (Debian's inih is built without handler line
 * numbers), lines longer than inih's fixed buffer (which it would silently
 * split), names longer than its 50-byte section/key buffers (silently
 * truncated), and the joining of indented continuation lines.  The whole
 * file is read into memory and fed to ini_parse_stream line by line by our
 * own reader, which therefore always knows the current line.
 *
 * The reader also classifies each line exactly as inih r55 will (comment,
 * section header, key, continuation) because inih tells its handler only
 * about keys: sections are opened here, and the handler learns from the
 * reader whether a call is a new key or a continuation.
 *
 * Parsing builds a generic list of sections and keys with line numbers.
 * Checkers for each kind of section then claim the keys they know;
 * config_check_unused() reports whatever nobody claimed.
 */
#include "autoconfig.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "http_parse.h"
#include "log.h"

/* inih's section and key buffers (MAX_SECTION, MAX_NAME in ini.c). */
#define NAME_MAX_INIH 50
/* Largest config file we read; a bigger one is a mistake, not a config. */
#define CONFIG_MAX_FILE (16 * 1024 * 1024)

#define KIB 1024LL
#define MIB (1024LL * 1024)
#define GIB (1024LL * 1024 * 1024)
#define SEC 1000LL
#define HOUR (3600LL * 1000)

const char config_default_text[] =
	"; the embedded default configuration (molt without -c)\n"
	"[server]\n"
	"listen = 127.0.0.1:8080\n"
	"\n"
	"[recycle]\n"
	"max_rss = 256m\n"
	"trim = on\n"
	"\n"
	"[status]\n"
	"path = /molt/status\n"
	"\n"
	"[route /hello]\n"
	"module = hello\n"
	"\n"
	"[route /echo]\n"
	"module = echo\n"
	"\n"
	"[route /fragment]\n"
	"module = fragment\n"
	"\n"
	"[route /leak]\n"
	"module = leak\n"
	"\n"
	"[route /]\n"
	"module = static\n"
	"methods = GET, HEAD\n"
	"\n"
	"[module static]\n"
	"root = @WWW@\n";

/* What the reader decided the line it just handed to inih is. */
enum line_kind { LINE_BLANK, LINE_SECTION, LINE_KEY, LINE_CONT };

struct parse_state {
	struct molt_config   *cfg;
	const char           *file;     /* owned by cfg->path */
	const char           *text;
	size_t                len, pos;
	int                   line;     /* line most recently handed to inih */
	enum line_kind        kind;     /* ... and what it is */
	int                   have_prev; /* inih's prev_name is set */
	struct conf_section  *cur;
	struct conf_section **tail;
	struct conf_kv       *last_kv;
	struct conf_error    *err;
	int                   failed;
};

/* ------------------------------------------------------------------ */
/* Errors                                                              */

void
conf_errorf(struct conf_error *err, const char *file, int line,
    const char *fmt, ...)
{
	va_list ap;

	snprintf(err->file, sizeof(err->file), "%s", file ? file : "");
	err->line = line;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
}

void
conf_server_errorf(struct molt_config *cfg, const char *key,
    struct conf_error *err, const char *fmt, ...)
{
	struct conf_section *s = conf_find(cfg, "server", NULL);
	struct conf_kv *kv = s != NULL ? conf_get(s, key) : NULL;
	va_list ap;
	int n;

	snprintf(err->file, sizeof(err->file), "%s", s != NULL ? s->file :
	    cfg->path);
	err->line = kv != NULL ? kv->line : 0;
	n = snprintf(err->msg, sizeof(err->msg), "%s: ", key);
	if (n < 0 || (size_t)n >= sizeof(err->msg))
		return;
	va_start(ap, fmt);
	vsnprintf(err->msg + n, sizeof(err->msg) - (size_t)n, fmt, ap);
	va_end(ap);
}

static void
config_fail(struct parse_state *ps, int line, const char *fmt, ...)
    MOLT_PRINTF(3, 4);

static void
config_fail(struct parse_state *ps, int line, const char *fmt, ...)
{
	va_list ap;

	if (ps->failed)
		return;     /* the first error is the one worth reading */
	ps->failed = 1;
	snprintf(ps->err->file, sizeof(ps->err->file), "%s", ps->file);
	ps->err->line = line;
	va_start(ap, fmt);
	vsnprintf(ps->err->msg, sizeof(ps->err->msg), fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------------ */
/* Typed values                                                        */

static const char *
conf_skip_ws(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

int
conf_parse_int(const char *s, long long *out)
{
	char *end;
	long long v;

	s = conf_skip_ws(s);
	/* strtoll alone would take leading white space after a sign. */
	if (!isdigit((unsigned char)*s) &&
	    !((*s == '-' || *s == '+') && isdigit((unsigned char)s[1])))
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *conf_skip_ws(end) != '\0')
		return -1;
	*out = v;
	return 0;
}

/*
 * A non-negative decimal, "12" or "1.5", scaled by mul.  Written by hand
 * because strtod would also take "0x10", "1e3", "inf" and "nan", none of
 * which belongs in a size or a timeout.  *end is left after the number.
 * A number that is not zero but scales to less than one unit fails with
 * errno ERANGE: 0 means "off" or "nothing" for many keys, and
 * "0.0001k" is not a way to say that.
 */
static int
conf_parse_scaled(const char *s, long long mul, const char **end,
    long long *out)
{
	long long ip = 0, num = 0, den = 1, frac;
	int nonzero = 0;

	s = conf_skip_ws(s);
	if (!isdigit((unsigned char)*s))
		return -1;
	for (; isdigit((unsigned char)*s); s++) {
		if (ip > (LLONG_MAX - (*s - '0')) / 10)
			return -1;
		ip = ip * 10 + (*s - '0');
		nonzero |= *s != '0';
	}
	if (*s == '.') {
		s++;
		if (!isdigit((unsigned char)*s))
			return -1;
		/* Nine digits are finer than any unit here; ignore the rest. */
		for (; isdigit((unsigned char)*s); s++) {
			nonzero |= *s != '0';
			if (den < 1000000000LL) {
				num = num * 10 + (*s - '0');
				den *= 10;
			}
		}
	}
	if (ip > LLONG_MAX / mul)
		return -1;
	/* num < den <= 1e9, so the fraction fits a double exactly enough. */
	frac = (long long)((double)num * (double)mul / (double)den);
	if (ip * mul > LLONG_MAX - frac)
		return -1;
	if (nonzero && ip * mul + frac == 0) {
		errno = ERANGE;
		return -1;
	}
	*out = ip * mul + frac;
	*end = s;
	return 0;
}

int
conf_parse_size(const char *s, long long *out)
{
	static const struct { char c; long long mul; } units[] = {
		{ 'k', KIB }, { 'm', MIB }, { 'g', GIB }, { 't', GIB * 1024 },
	};
	const char *p = conf_skip_ws(s), *unit, *u;
	long long mul = 1;
	size_t i;

	/* Find the unit first: it decides the scale of a fraction. */
	for (unit = p; isdigit((unsigned char)*unit) || *unit == '.'; unit++)
		;
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (tolower((unsigned char)*unit) == units[i].c)
			mul = units[i].mul;
	if (conf_parse_scaled(p, mul, &u, out) == -1 || u != unit)
		return -1;
	if (mul != 1)
		u++;
	if (tolower((unsigned char)*u) == 'b')
		u++;
	if (*conf_skip_ws(u) != '\0')
		return -1;
	/* "1.5" bytes has no meaning. */
	if (mul == 1 && strchr(p, '.') != NULL)
		return -1;
	return 0;
}

int
conf_parse_duration(const char *s, long long *ms)
{
	const char *p = conf_skip_ws(s), *unit, *u;
	long long mul;
	size_t ulen;

	for (unit = p; isdigit((unsigned char)*unit) || *unit == '.'; unit++)
		;
	u = unit;
	if (strncasecmp(u, "ms", 2) == 0) {
		mul = 1;
		ulen = 2;
	} else if (*u == 's' || *u == 'S') {
		mul = SEC;
		ulen = 1;
	} else if (*u == 'm' || *u == 'M') {
		mul = 60 * SEC;
		ulen = 1;
	} else if (*u == 'h' || *u == 'H') {
		mul = HOUR;
		ulen = 1;
	} else {
		mul = SEC;      /* a bare number is seconds */
		ulen = 0;
	}
	if (conf_parse_scaled(p, mul, &u, ms) == -1 || u != unit)
		return -1;
	if (*conf_skip_ws(u + ulen) != '\0')
		return -1;
	return 0;
}

int
conf_parse_bool(const char *s, int *out)
{
	static const char *yes[] = { "on", "yes", "true", "1" };
	static const char *no[] = { "off", "no", "false", "0" };
	size_t i;

	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return -1;
}

/* For messages: 16384 -> "16k", 100 -> "100"; durations 1500 -> "1500ms". */
static const char *
conf_fmt_size(long long v, char *buf, size_t len)
{
	if (v >= GIB && v % GIB == 0)
		snprintf(buf, len, "%lldg", v / GIB);
	else if (v >= MIB && v % MIB == 0)
		snprintf(buf, len, "%lldm", v / MIB);
	else if (v >= KIB && v % KIB == 0)
		snprintf(buf, len, "%lldk", v / KIB);
	else
		snprintf(buf, len, "%lld", v);
	return buf;
}

static const char *
conf_fmt_ms(long long v, char *buf, size_t len)
{
	if (v >= HOUR && v % HOUR == 0)
		snprintf(buf, len, "%lldh", v / HOUR);
	else if (v >= 60 * SEC && v % (60 * SEC) == 0)
		snprintf(buf, len, "%lldm", v / (60 * SEC));
	else if (v >= SEC && v % SEC == 0)
		snprintf(buf, len, "%llds", v / SEC);
	else
		snprintf(buf, len, "%lldms", v);
	return buf;
}

unsigned
method_bit(const char *m, size_t len)
{
	static const struct { const char *name; unsigned bit; } t[] = {
		{ "GET", METHOD_GET }, { "HEAD", METHOD_HEAD },
		{ "POST", METHOD_POST }, { "PUT", METHOD_PUT },
		{ "DELETE", METHOD_DELETE }, { "PATCH", METHOD_PATCH },
		{ "OPTIONS", METHOD_OPTIONS },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (strlen(t[i].name) == len && memcmp(t[i].name, m, len) == 0)
			return t[i].bit;
	return METHOD_OTHER;
}

int
listen_parse(const char *text, struct listen_addr *la, char *msg, size_t msglen)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *colon, *h, *p;
	long port;

	memset(la, 0, sizeof(*la));
	la->fd = -1;
	if (strlen(text) >= sizeof(la->text)) {
		snprintf(msg, msglen, "address longer than %zu characters",
		    sizeof(la->text) - 1);
		return -1;
	}
	snprintf(la->text, sizeof(la->text), "%s", text);
	if (strncmp(text, "unix:", 5) == 0) {
		struct sockaddr_un *sun = (struct sockaddr_un *)&la->ss;
		const char *path = text + 5;

		if (*path != '/' || strlen(path) >= sizeof(sun->sun_path)) {
			snprintf(msg, msglen, "unix:PATH needs an absolute path "
			    "shorter than %zu bytes", sizeof(sun->sun_path));
			return -1;
		}
		sun->sun_family = AF_UNIX;
		memcpy(sun->sun_path, path, strlen(path) + 1);
		la->sslen = sizeof(*sun);
		return 0;
	}
	if (text[0] == '[') {
		const char *rb = strchr(text, ']');

		if (rb == NULL || rb[1] != ':') {
			snprintf(msg, msglen, "expected [v6-address]:port");
			return -1;
		}
		if ((size_t)(rb - text - 1) >= sizeof(host)) {
			snprintf(msg, msglen, "bad IPv6 address");
			return -1;
		}
		snprintf(host, sizeof(host), "%.*s", (int)(rb - text - 1), text + 1);
		colon = rb + 1;
	} else {
		colon = strrchr(text, ':');
		if (colon == NULL || colon == text) {
			snprintf(msg, msglen, "expected host:port, *:port, "
			    "[v6-address]:port or unix:/path");
			return -1;
		}
		if (memchr(text, ':', (size_t)(colon - text)) != NULL) {
			snprintf(msg, msglen, "write an IPv6 address in brackets, "
			    "as in [::1]:8080");
			return -1;
		}
		if ((size_t)(colon - text) >= sizeof(host)) {
			snprintf(msg, msglen, "bad IPv4 address (numeric addresses "
			    "only)");
			return -1;
		}
		snprintf(host, sizeof(host), "%.*s", (int)(colon - text), text);
	}
	/* Digits only: strtol would also take " +80". */
	port = 0;
	for (p = colon + 1; isdigit((unsigned char)*p) && port <= 65535; p++)
		port = port * 10 + (*p - '0');
	if (p == colon + 1 || *p != '\0' || port > 65535) {
		snprintf(msg, msglen, "bad port '%s' (0-65535; 0 picks a free one)",
		    colon + 1);
		return -1;
	}
	h = host;
	/* The one name we know without DNS, which start-up must not need. */
	if (strcmp(h, "localhost") == 0)
		h = "127.0.0.1";
	if (strcmp(h, "*") == 0)
		h = "0.0.0.0";
	if (text[0] == '[') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&la->ss;

		if (inet_pton(AF_INET6, h, &s6->sin6_addr) != 1) {
			snprintf(msg, msglen, "bad IPv6 address '%s'", h);
			return -1;
		}
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		la->sslen = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&la->ss;

		if (inet_pton(AF_INET, h, &s4->sin_addr) != 1) {
			snprintf(msg, msglen, "bad IPv4 address '%s' (numeric "
			    "addresses only; no DNS at start-up)", host);
			return -1;
		}
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		la->sslen = sizeof(*s4);
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Reading: our line reader and inih's handler                         */

/*
 * inih's rule for where a match or an inline comment starts: ';' begins a
 * comment only after white space, so "a;b" is a value.  Returns e if
 * neither was found.
 */
static const char *
conf_find_chars_or_comment(const char *s, const char *e, const char *chars)
{
	int was_space = 0;

	while (s < e && (chars == NULL || strchr(chars, *s) == NULL) &&
	    !(was_space && *s == ';')) {
		was_space = isspace((unsigned char)*s);
		s++;
	}
	return s;
}

static int
config_one_arg_kind(const char *kind)
{
	return strcmp(kind, "route") == 0 || strcmp(kind, "module") == 0 ||
	    strcmp(kind, "database") == 0;
}

static int
config_no_arg_kind(const char *kind)
{
	return strcmp(kind, "server") == 0 || strcmp(kind, "recycle") == 0 ||
	    strcmp(kind, "status") == 0;
}

/*
 * Why a route prefix could never match, or NULL.  A request's path is
 * percent-decoded, its dot segments resolved and its runs of '/' merged
 * before it is routed (ROUTING in molt.conf(5)), so a prefix that is not
 * in that form matches nothing.  It is refused rather than normalised: an
 * admin who wrote /a/../b meant something, and should see what molt will
 * route instead of a silent rewrite.
 */
static const char *
config_route_prefix_problem(const char *p)
{
	const char *seg, *end;
	size_t len;

	for (seg = p + 1; ; seg = end + 1) {
		end = strchr(seg, '/');
		len = end != NULL ? (size_t)(end - seg) : strlen(seg);
		if (len == 0 && end != NULL)
			return "requests are routed with runs of '/' merged into one";
		if ((len == 1 && seg[0] == '.') ||
		    (len == 2 && seg[0] == '.' && seg[1] == '.'))
			return "requests are routed with their '.' and '..' "
			    "segments resolved";
		if (end == NULL)
			break;
	}
	for (; (p = strchr(p, '%')) != NULL; p++)
		if (isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2]))
			return "requests are routed by their percent-decoded path: "
			    "write the character itself";
	return NULL;
}

/* Opens the section of header h[0..len), the text between '[' and ']'. */
static struct conf_section *
config_new_section(struct parse_state *ps, const char *h, size_t len)
{
	struct conf_section *s, *o;
	char kind[NAME_MAX_INIH], arg[NAME_MAX_INIH];
	const char *e = h + len, *k, *a, *why;

	/* The reader bounds len below NAME_MAX_INIH, so these cannot cut. */
	while (h < e && isspace((unsigned char)*h))
		h++;
	while (e > h && isspace((unsigned char)e[-1]))
		e--;
	for (k = h; k < e && !isspace((unsigned char)*k); k++)
		;
	for (a = k; a < e && isspace((unsigned char)*a); a++)
		;
	snprintf(kind, sizeof(kind), "%.*s", (int)(k - h), h);
	snprintf(arg, sizeof(arg), "%.*s", (int)(e - a), a);

	if (config_no_arg_kind(kind)) {
		if (*arg != '\0') {
			config_fail(ps, ps->line, "[%s] takes no argument", kind);
			return NULL;
		}
	} else if (config_one_arg_kind(kind)) {
		if (*arg == '\0' || strpbrk(arg, " \t") != NULL) {
			config_fail(ps, ps->line, "[%s] needs one argument, as in "
			    "[%s %s]", kind, kind, strcmp(kind, "route") == 0 ?
			    "/path" : "NAME");
			return NULL;
		}
		if (strcmp(kind, "route") == 0 && arg[0] != '/') {
			config_fail(ps, ps->line, "route prefix '%s' must start with "
			    "'/'", arg);
			return NULL;
		}
		if (strcmp(kind, "route") == 0 &&
		    (why = config_route_prefix_problem(arg)) != NULL) {
			config_fail(ps, ps->line, "route prefix '%s' can never "
			    "match: %s", arg, why);
			return NULL;
		}
	} else {
		config_fail(ps, ps->line, "unknown section [%.*s]", (int)(e - h), h);
		return NULL;
	}
	for (o = ps->cfg->sections; o != NULL; o = o->next)
		if (strcmp(o->kind, kind) == 0 && strcmp(o->arg, arg) == 0) {
			config_fail(ps, ps->line, "[%s%s%s] repeats the section at "
			    "line %d", kind, *arg ? " " : "", arg, o->line);
			return NULL;
		}
	if ((s = calloc(1, sizeof(*s))) == NULL)
		goto fail;
	if ((s->kind = strdup(kind)) == NULL || (s->arg = strdup(arg)) == NULL)
		goto fail;
	s->file = ps->file;
	s->line = ps->line;
	s->kv_tail = &s->kv;
	*ps->tail = s;
	ps->tail = &s->next;
	return s;
fail:
	if (s != NULL)
		free(s->kind);
	free(s);
	config_fail(ps, ps->line, "out of memory");
	return NULL;
}

/*
 * Decides what inih will make of line[0..len) (no line ending), in inih
 * r55's order: comments first, then an indented line after a key is a
 * continuation (even "  [x]" or "  a = b"), then a section, then a key.
 * Opens sections, and catches what inih would mangle or only call a
 * syntax error without saying why.
 */
static int
config_classify(struct parse_state *ps, const char *line, size_t len)
{
	const char *p = line, *e = line + len, *q, *n;

	while (p < e && isspace((unsigned char)*p))
		p++;
	while (e > p && isspace((unsigned char)e[-1]))
		e--;
	if (p == e || *p == ';' || *p == '#') {
		ps->kind = LINE_BLANK;
		return 0;
	}
	if (p > line && ps->have_prev) {
		ps->kind = LINE_CONT;
		return 0;
	}
	if (*p == '[') {
		q = conf_find_chars_or_comment(p + 1, e, "]");
		if (q == e || *q != ']') {
			config_fail(ps, ps->line, "section header without ']'");
			return -1;
		}
		/* inih ignores text after ']'; a typo there should not vanish. */
		n = q + 1;
		while (n < e && isspace((unsigned char)*n))
			n++;
		if (n < e && *n != ';') {
			config_fail(ps, ps->line, "unexpected text after ']': '%.*s'",
			    (int)(e - n), n);
			return -1;
		}
		if (q - (p + 1) >= NAME_MAX_INIH) {
			config_fail(ps, ps->line, "section header longer than %d "
			    "characters", NAME_MAX_INIH - 1);
			return -1;
		}
		ps->kind = LINE_SECTION;
		ps->have_prev = 0;
		ps->last_kv = NULL;
		ps->cur = config_new_section(ps, p + 1, (size_t)(q - (p + 1)));
		return ps->cur == NULL ? -1 : 0;
	}
	q = conf_find_chars_or_comment(p, e, "=:");
	if (q == e || (*q != '=' && *q != ':')) {
		config_fail(ps, ps->line, "syntax error: expected key = value, "
		    "[section] or a ; comment");
		return -1;
	}
	for (n = q; n > p && isspace((unsigned char)n[-1]); n--)
		;
	if (n == p) {
		config_fail(ps, ps->line, "syntax error: no key before '%c'", *q);
		return -1;
	}
	/* inih would cut the name it keeps for continuation lines. */
	if (n - p >= NAME_MAX_INIH) {
		config_fail(ps, ps->line, "key '%.*s...' is longer than %d "
		    "characters", 20, p, NAME_MAX_INIH - 1);
		return -1;
	}
	ps->kind = LINE_KEY;
	ps->have_prev = 1;
	return 0;
}

/* fgets() for inih, over the in-memory file, with line accounting. */
static char *
config_reader(char *str, int num, void *stream)
{
	struct parse_state *ps = stream;
	const char *start, *nl;
	size_t n, content;

	if (ps->failed || ps->pos >= ps->len)
		return NULL;
	start = ps->text + ps->pos;
	nl = memchr(start, '\n', ps->len - ps->pos);
	n = nl ? (size_t)(nl - start) + 1 : ps->len - ps->pos;
	ps->line++;
	content = n;
	if (content > 0 && start[content - 1] == '\n')
		content--;
	if (content > 0 && start[content - 1] == '\r')
		content--;
	if (memchr(start, '\0', n) != NULL) {
		config_fail(ps, ps->line, "NUL byte in the file");
		return NULL;
	}
	/*
	 * inih reads into a num-byte buffer that must also hold "\r\n\0".
	 * A longer line it would split: the value cut short, the rest parsed
	 * as a line of its own, and every line number after it off by one.
	 */
	if (content + 3 > (size_t)num) {
		config_fail(ps, ps->line, "line too long (max %d characters); "
		    "split the value with indented continuation lines", num - 3);
		return NULL;
	}
	if (config_classify(ps, start, content) == -1)
		return NULL;
	memcpy(str, start, n);
	str[n] = '\0';
	ps->pos += n;
	return str;
}

/* Cuts an inline comment off a continuation line (inih r55 does not). */
static void
config_strip_comment(char *v)
{
	char *e = (char *)conf_find_chars_or_comment(v, v + strlen(v), NULL);

	while (e > v && isspace((unsigned char)e[-1]))
		e--;
	*e = '\0';
}

static int
config_continue(struct parse_state *ps, const char *value)
{
	struct conf_kv *kv = ps->last_kv;
	char *piece, *v;
	size_t a, b;

	if ((piece = strdup(value)) == NULL) {
		config_fail(ps, ps->line, "out of memory");
		return 0;
	}
	config_strip_comment(piece);
	a = strlen(kv->value);
	b = strlen(piece);
	if (b == 0) {
		free(piece);
		return 1;
	}
	if ((v = realloc(kv->value, a + b + 2)) == NULL) {
		free(piece);
		config_fail(ps, ps->line, "out of memory");
		return 0;
	}
	/* "key =" followed by indented lines: no leading space. */
	if (a > 0)
		v[a++] = ' ';
	memcpy(v + a, piece, b + 1);
	kv->value = v;
	free(piece);
	return 1;
}

static int
config_handler(void *user, const char *section, const char *name,
    const char *value)
{
	struct parse_state *ps = user;
	struct conf_section *s = ps->cur;
	struct conf_kv *kv;

	(void)section;      /* cut to 49 bytes by inih; we keep our own */
	if (ps->failed)
		return 0;
	if (ps->kind == LINE_CONT && ps->last_kv != NULL)
		return config_continue(ps, value);
	if (ps->kind != LINE_KEY) {
		/* Only if inih changed how it reads lines under us. */
		config_fail(ps, ps->line, "cannot parse this line (inih and molt "
		    "disagree about it)");
		return 0;
	}
	if (s == NULL) {
		config_fail(ps, ps->line, "'%s' is outside any section; start "
		    "with [server]", name);
		return 0;
	}
	for (kv = s->kv; kv != NULL; kv = kv->next)
		if (strcmp(kv->key, name) == 0 && strcmp(name, "listen") != 0) {
			config_fail(ps, ps->line, "'%s' repeats the key at line %d",
			    name, kv->line);
			return 0;
		}
	if ((kv = calloc(1, sizeof(*kv))) == NULL)
		goto fail;
	if ((kv->key = strdup(name)) == NULL ||
	    (kv->value = strdup(value)) == NULL)
		goto fail;
	kv->line = ps->line;
	*s->kv_tail = kv;
	s->kv_tail = &kv->next;
	ps->last_kv = kv;
	return 1;
fail:
	if (kv != NULL)
		free(kv->key);
	free(kv);
	config_fail(ps, ps->line, "out of memory");
	return 0;
}

/* ------------------------------------------------------------------ */
/* Lookups                                                             */

struct conf_kv *
conf_get(struct conf_section *s, const char *key)
{
	struct conf_kv *kv;

	if (s == NULL)
		return NULL;
	for (kv = s->kv; kv != NULL; kv = kv->next)
		if (strcmp(kv->key, key) == 0) {
			kv->used = 1;
			return kv;
		}
	return NULL;
}

struct conf_section *
conf_find(struct molt_config *cfg, const char *kind, const char *arg)
{
	struct conf_section *s;

	for (s = cfg->sections; s != NULL; s = s->next)
		if (strcmp(s->kind, kind) == 0 &&
		    (arg == NULL || strcmp(s->arg, arg) == 0))
			return s;
	return NULL;
}

static int
config_first_unused(struct conf_section *s, struct conf_error *err)
{
	struct conf_kv *kv;

	for (kv = s->kv; kv != NULL; kv = kv->next)
		if (!kv->used) {
			conf_errorf(err, s->file, kv->line, "unknown key '%s' in "
			    "[%s%s%s]", kv->key, s->kind, *s->arg ? " " : "",
			    s->arg);
			return -1;
		}
	return 0;
}

int
config_check_unused(struct molt_config *cfg, struct conf_error *err)
{
	struct conf_section *s;

	for (s = cfg->sections; s != NULL; s = s->next)
		if (config_first_unused(s, err) == -1)
			return -1;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Checkers                                                            */

/* Typed getters that report FILE:LINE through err. */
struct checker {
	struct conf_section *s;
	struct conf_error   *err;
	int                  failed;
};

/* How a size or duration key treats 0. */
#define ZERO_NO  0      /* 0 must also be within min..max */
#define ZERO_OFF 1      /* 0 means off and is always accepted */

static void
check_fail(struct checker *ck, struct conf_kv *kv, const char *fmt, ...)
    MOLT_PRINTF(3, 4);

static void
check_fail(struct checker *ck, struct conf_kv *kv, const char *fmt, ...)
{
	va_list ap;
	char msg[sizeof(ck->err->msg)];

	if (ck->failed)
		return;
	ck->failed = 1;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	conf_errorf(ck->err, ck->s ? ck->s->file : "", kv ? kv->line :
	    ck->s ? ck->s->line : 0, "%s", msg);
}

static void
get_int(struct checker *ck, const char *key, long long *out, long long min,
    long long max)
{
	struct conf_kv *kv = conf_get(ck->s, key);
	long long v;

	if (kv == NULL)
		return;
	if (conf_parse_int(kv->value, &v) == -1 || v < min || v > max) {
		check_fail(ck, kv, "%s: expected an integer between %lld and %lld, "
		    "got '%s'", key, min, max, kv->value);
		return;
	}
	*out = v;
}

static void
get_int32(struct checker *ck, const char *key, int *out, int min, int max)
{
	long long v = *out;

	get_int(ck, key, &v, min, max);
	*out = (int)v;
}

/* A number with a unit: a size in bytes, or a duration in ms. */
struct conf_unit {
	const char  *kind;        /* "size", "duration" */
	const char  *least;       /* what a value rounds to nothing below */
	int        (*parse)(const char *, long long *);
	const char *(*fmt)(long long, char *, size_t);
};

static const struct conf_unit unit_size = {
	"size", "1 byte", conf_parse_size, conf_fmt_size,
};
static const struct conf_unit unit_ms = {
	"duration", "1 ms", conf_parse_duration, conf_fmt_ms,
};

static void
get_quantity(struct checker *ck, const struct conf_unit *u, const char *key,
    long long *out, long long min, long long max, int zero)
{
	struct conf_kv *kv = conf_get(ck->s, key);
	char a[32], b[32];
	long long v;

	if (kv == NULL)
		return;
	errno = 0;
	if (u->parse(kv->value, &v) == -1 && errno == ERANGE) {
		check_fail(ck, kv, "%s: '%s' is less than %s (write 0 to "
		    "mean 0)", key, kv->value, u->least);
		return;
	}
	if (u->parse(kv->value, &v) == -1 ||
	    ((v < min || v > max) && !(v == 0 && zero == ZERO_OFF))) {
		check_fail(ck, kv, "%s: expected a %s between %s and %s%s, "
		    "got '%s'", key, u->kind, u->fmt(min, a, sizeof(a)),
		    u->fmt(max, b, sizeof(b)), zero == ZERO_OFF ?
		    " (or 0 for off)" : "", kv->value);
		return;
	}
	*out = v;
}

static void
get_size(struct checker *ck, const char *key, long long *out, long long min,
    long long max, int zero)
{
	get_quantity(ck, &unit_size, key, out, min, max, zero);
}

static void
get_duration(struct checker *ck, const char *key, long long *out,
    long long min, long long max, int zero)
{
	get_quantity(ck, &unit_ms, key, out, min, max, zero);
}

static void
get_bool(struct checker *ck, const char *key, int *out)
{
	struct conf_kv *kv = conf_get(ck->s, key);

	if (kv != NULL && conf_parse_bool(kv->value, out) == -1)
		check_fail(ck, kv, "%s: expected on or off, got '%s'", key,
		    kv->value);
}

/* "auto" (1) or "off" (0). */
static void
get_auto(struct checker *ck, const char *key, int *out)
{
	struct conf_kv *kv = conf_get(ck->s, key);

	if (kv == NULL)
		return;
	if (strcasecmp(kv->value, "auto") == 0)
		*out = 1;
	else if (strcasecmp(kv->value, "off") == 0)
		*out = 0;
	else
		check_fail(ck, kv, "%s: expected auto or off, got '%s'", key,
		    kv->value);
}

static void
get_str(struct checker *ck, const char *key, char **out)
{
	struct conf_kv *kv = conf_get(ck->s, key);
	char *v;

	if (kv == NULL)
		return;
	if (*kv->value == '\0') {
		check_fail(ck, kv, "%s: empty value", key);
		return;
	}
	if ((v = strdup(kv->value)) == NULL) {
		check_fail(ck, kv, "out of memory");
		return;
	}
	free(*out);
	*out = v;
}

static void
config_defaults(struct molt_config *cfg)
{
	struct server_conf *sc = &cfg->server;
	struct recycle_conf *rc = &cfg->recycle;
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	sc->workers = n > 0 ? (n > 256 ? 256 : (int)n) : 2;
	sc->log_level = MOLT_LOG_INFO;
	sc->max_header_size = 16 * KIB;
	sc->max_uri_size = 8 * KIB;
	sc->max_headers = 100;
	sc->max_body_size = 1 * MIB;
	sc->header_timeout_ms = 10 * SEC;
	sc->body_timeout_ms = 30 * SEC;
	sc->keepalive_timeout_ms = 60 * SEC;
	sc->access_log_flush_ms = 1 * SEC;
	sc->write_timeout_ms = 60 * SEC;
	sc->handler_timeout_ms = 60 * SEC;
	sc->check_timeout_ms = 30 * SEC;
	sc->max_connections = 4096;
	sc->keepalive_requests = 10000;
	sc->backlog = 511;
	sc->defer_accept = 1;
	sc->conn_hugepages = 1;
	sc->listen_per_cpu = 1;

	rc->fragmentation_min_rss = 64 * MIB;
	rc->trim = 1;
	rc->min_lifetime_ms = 10 * SEC;
	rc->max_concurrent_recycles = 1;
	rc->drain_timeout_ms = 30 * SEC;
	rc->sample_interval_ms = 1 * SEC;
	rc->stall_timeout_ms = 60 * SEC;
	rc->samples_over = 2;
	rc->measure = MEASURE_USS;
}

/*
 * Whether two listen lines name one address; port 0 (any free port) is
 * never the same twice.  The second bind would fail, and for a unix
 * socket it would look like another server on the path.
 */
static int
config_same_listen(const struct listen_addr *a, const struct listen_addr *b)
{
	const struct sockaddr_in *in = (const struct sockaddr_in *)&a->ss;
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->ss;

	if (a->sslen != b->sslen || memcmp(&a->ss, &b->ss, a->sslen) != 0)
		return 0;
	if (a->ss.ss_family == AF_INET)
		return in->sin_port != 0;
	if (a->ss.ss_family == AF_INET6)
		return in6->sin6_port != 0;
	return 1;
}

static int
config_check_listen(struct checker *ck, struct server_conf *sc)
{
	struct listen_addr **tail = &sc->listen, *la, *p;
	struct conf_kv *kv;
	char msg[200];

	for (kv = ck->s->kv; kv != NULL; kv = kv->next) {
		if (strcmp(kv->key, "listen") != 0)
			continue;
		kv->used = 1;
		if ((la = calloc(1, sizeof(*la))) == NULL) {
			check_fail(ck, kv, "out of memory");
			return -1;
		}
		if (listen_parse(kv->value, la, msg, sizeof(msg)) == -1) {
			free(la);
			check_fail(ck, kv, "listen: %s: %s", kv->value, msg);
			return -1;
		}
		for (p = sc->listen; p != NULL; p = p->next)
			if (config_same_listen(p, la)) {
				check_fail(ck, kv, "listen: %s is the address of an "
				    "earlier listen line (%s)", kv->value, p->text);
				free(la);
				return -1;
			}
		*tail = la;
		tail = &la->next;
	}
	return 0;
}

/* A header name is a token (RFC 9110 5.1, 5.6.2). */
static int
config_is_token(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && strchr("!#$%&'*+-.^_`|~", *s) == NULL)
			return 0;
	return 1;
}

static int config_set_nets(struct checker *, struct allow_net **, const char *,
    struct conf_kv *, const char *);

/* real_ip_from and real_ip_header: the proxies whose word is believed. */
static void
config_check_real_ip(struct checker *ck, struct server_conf *sc)
{
	struct conf_kv *from = conf_get(ck->s, "real_ip_from");
	struct conf_kv *hdr = conf_get(ck->s, "real_ip_header");

	if (from != NULL && config_set_nets(ck, &sc->real_ip_from,
	    "real_ip_from", from, from->value) == -1)
		return;
	if (hdr == NULL)
		return;
	if (from == NULL) {
		check_fail(ck, hdr, "real_ip_header: no effect without "
		    "real_ip_from (the proxies whose header is believed)");
		return;
	}
	if (!config_is_token(hdr->value)) {
		check_fail(ck, hdr, "real_ip_header: '%s' is not a header name",
		    hdr->value);
		return;
	}
	get_str(ck, "real_ip_header", &sc->real_ip_header);
}

static int
config_check_server(struct molt_config *cfg, struct conf_section *s,
    struct conf_error *err)
{
	struct server_conf *sc = &cfg->server;
	struct checker ck = { s, err, 0 };
	struct conf_kv *kv;

	if (config_check_listen(&ck, sc) == -1)
		return -1;
	get_int32(&ck, "workers", &sc->workers, 1, 256);
	get_str(&ck, "modules_dir", &sc->modules_dir);
	get_str(&ck, "pid_file", &sc->pid_file);
	get_str(&ck, "error_log", &sc->error_log);
	get_str(&ck, "access_log", &sc->access_log);
	get_duration(&ck, "access_log_flush", &sc->access_log_flush_ms, 10,
	    1 * HOUR, ZERO_OFF);
	get_bool(&ck, "access_log_time", &sc->access_log_time);
	/*
	 * Both mean "the default" and are spelled out so a file can say so.
	 * In any case, as every other keyword: "OFF" was taken for a file
	 * name, and the access log written to ./OFF.
	 */
	if (sc->error_log && strcasecmp(sc->error_log, "stderr") == 0) {
		free(sc->error_log);
		sc->error_log = NULL;
	}
	if (sc->access_log && strcasecmp(sc->access_log, "off") == 0) {
		free(sc->access_log);
		sc->access_log = NULL;
	}
	if ((kv = conf_get(s, "log_level")) != NULL) {
		int level = log_parse_level(kv->value);

		if (level < 0)
			check_fail(&ck, kv, "log_level: expected error, warn, info "
			    "or debug, got '%s'", kv->value);
		else
			sc->log_level = level;
	}
	get_str(&ck, "user", &sc->user);
	get_str(&ck, "group", &sc->group);
	get_duration(&ck, "check_timeout", &sc->check_timeout_ms, 1 * SEC,
	    1 * HOUR, ZERO_NO);
	get_size(&ck, "max_header_size", &sc->max_header_size, 1 * KIB, 1 * MIB,
	    ZERO_NO);
	get_size(&ck, "max_uri_size", &sc->max_uri_size, 256, 1 * MIB, ZERO_NO);
	get_int(&ck, "max_headers", &sc->max_headers, 1, HTTP_MAX_HEADERS_HARD);
	get_size(&ck, "max_body_size", &sc->max_body_size, 0, 1024 * GIB,
	    ZERO_NO);
	get_duration(&ck, "header_timeout", &sc->header_timeout_ms, 100,
	    24 * HOUR, ZERO_NO);
	get_duration(&ck, "body_timeout", &sc->body_timeout_ms, 100, 24 * HOUR,
	    ZERO_NO);
	get_duration(&ck, "keepalive_timeout", &sc->keepalive_timeout_ms, 100,
	    24 * HOUR, ZERO_NO);
	get_duration(&ck, "write_timeout", &sc->write_timeout_ms, 100,
	    24 * HOUR, ZERO_NO);
	get_duration(&ck, "handler_timeout", &sc->handler_timeout_ms, 100,
	    24 * HOUR, ZERO_OFF);
	get_int(&ck, "max_connections", &sc->max_connections, 1, 1000000);
	get_int(&ck, "keepalive_requests", &sc->keepalive_requests, 0,
	    1LL << 40);
	get_int(&ck, "backlog", &sc->backlog, 1, 65535);
	get_bool(&ck, "defer_accept", &sc->defer_accept);
	get_bool(&ck, "conn_hugepages", &sc->conn_hugepages);
	get_bool(&ck, "core_dumps", &sc->core_dumps);
	get_auto(&ck, "worker_cpu_affinity", &sc->cpu_affinity);
	get_auto(&ck, "listen_per_cpu", &sc->listen_per_cpu);
	config_check_real_ip(&ck, sc);
	return ck.failed ? -1 : 0;
}

/* "2.5": a ratio, with the same strictness as sizes (no "nan", no "1e3"). */
static int
config_parse_ratio(const char *s, double *out)
{
	const char *end;
	long long milli;

	if (conf_parse_scaled(s, 1000, &end, &milli) == -1 ||
	    *conf_skip_ws(end) != '\0')
		return -1;
	*out = (double)milli / 1000.0;
	return 0;
}

static int
config_check_recycle(struct molt_config *cfg, struct conf_section *s,
    struct conf_error *err)
{
	struct recycle_conf *rc = &cfg->recycle;
	struct checker ck = { s, err, 0 };
	struct conf_kv *kv;

	get_size(&ck, "max_rss", &rc->max_rss, 1 * MIB, 4096 * GIB, ZERO_OFF);
	get_size(&ck, "hard_max_rss", &rc->hard_max_rss, 1 * MIB, 4096 * GIB,
	    ZERO_OFF);
	if ((kv = conf_get(s, "max_fragmentation")) != NULL) {
		double d;

		if (config_parse_ratio(kv->value, &d) == -1 ||
		    (d != 0 && d < 1.5) || d > 1000)
			check_fail(&ck, kv, "max_fragmentation: expected a ratio "
			    "from 1.5 to 1000 (measure / bytes in use), or 0 for "
			    "off, got '%s'", kv->value);
		else
			rc->max_fragmentation = d;
	}
	get_size(&ck, "fragmentation_min_rss", &rc->fragmentation_min_rss, 0,
	    4096 * GIB, ZERO_NO);
	get_bool(&ck, "trim", &rc->trim);
	get_int(&ck, "max_requests", &rc->max_requests, 0, 1LL << 50);
	get_int(&ck, "max_requests_jitter", &rc->max_requests_jitter, 0,
	    1LL << 50);
	get_duration(&ck, "max_lifetime", &rc->max_lifetime_ms, 100, 1LL << 40,
	    ZERO_OFF);
	get_duration(&ck, "max_lifetime_jitter", &rc->max_lifetime_jitter_ms, 0,
	    1LL << 40, ZERO_NO);
	get_duration(&ck, "min_lifetime", &rc->min_lifetime_ms, 0, 1LL << 40,
	    ZERO_NO);
	get_int32(&ck, "max_concurrent_recycles", &rc->max_concurrent_recycles,
	    1, 256);
	get_duration(&ck, "drain_timeout", &rc->drain_timeout_ms, 100,
	    24 * HOUR, ZERO_NO);
	get_duration(&ck, "sample_interval", &rc->sample_interval_ms, 50,
	    1 * HOUR, ZERO_NO);
	get_int32(&ck, "samples_over", &rc->samples_over, 1, 100);
	get_duration(&ck, "stall_timeout", &rc->stall_timeout_ms, 1 * SEC,
	    24 * HOUR, ZERO_OFF);
	/* In any case, as log_level, the bools and auto/off are. */
	if ((kv = conf_get(s, "measure")) != NULL) {
		if (strcasecmp(kv->value, "uss") == 0)
			rc->measure = MEASURE_USS;
		else if (strcasecmp(kv->value, "rss") == 0)
			rc->measure = MEASURE_RSS;
		else if (strcasecmp(kv->value, "pss") == 0)
			rc->measure = MEASURE_PSS;
		else
			check_fail(&ck, kv, "measure: expected uss, rss or pss, got "
			    "'%s'", kv->value);
	}
	if (ck.failed)
		return -1;
	/* A hard limit at or below the soft one would kill before draining. */
	if (rc->max_rss && rc->hard_max_rss && rc->hard_max_rss <= rc->max_rss) {
		check_fail(&ck, conf_get(s, "hard_max_rss"), "hard_max_rss must be "
		    "above max_rss");
		return -1;
	}
	/* A worker beats once a sample_interval: a shorter stall is noise. */
	if ((kv = conf_get(s, "stall_timeout")) != NULL && rc->stall_timeout_ms &&
	    rc->stall_timeout_ms < 3 * rc->sample_interval_ms) {
		check_fail(&ck, kv, "stall_timeout must be at least three "
		    "sample_interval (%lld ms)", 3 * rc->sample_interval_ms);
		return -1;
	}
	/* Jitter is added to the limit (master_jitter) to spread recycles
	 * apart; one as large as the limit would up to double a worker's
	 * life, which is a second limit, not a spread. */
	if (rc->max_requests_jitter && rc->max_requests_jitter >= rc->max_requests) {
		check_fail(&ck, conf_get(s, "max_requests_jitter"),
		    "max_requests_jitter must be below max_requests");
		return -1;
	}
	if (rc->max_lifetime_jitter_ms &&
	    rc->max_lifetime_jitter_ms >= rc->max_lifetime_ms) {
		check_fail(&ck, conf_get(s, "max_lifetime_jitter"),
		    "max_lifetime_jitter must be below max_lifetime");
		return -1;
	}
	return 0;
}

/* "10.0.0.0/8", "::1", "unix": one entry of [status] allow or
 * [server] real_ip_from. */
static int
config_parse_net(const char *text, struct allow_net *an)
{
	char buf[INET6_ADDRSTRLEN + 8], *slash, *end;
	long bits, max;

	memset(an, 0, sizeof(*an));
	/* The clients of unix: sockets, which have no address to match
	 * (status_allowed). */
	if (strcmp(text, "unix") == 0) {
		an->net.ss_family = AF_UNIX;
		return 0;
	}
	if (strlen(text) >= sizeof(buf))
		return -1;
	memcpy(buf, text, strlen(text) + 1);
	if ((slash = strchr(buf, '/')) != NULL)
		*slash = '\0';
	if (inet_pton(AF_INET, buf,
	    &((struct sockaddr_in *)&an->net)->sin_addr) == 1) {
		an->net.ss_family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, buf,
	    &((struct sockaddr_in6 *)&an->net)->sin6_addr) == 1) {
		an->net.ss_family = AF_INET6;
		max = 128;
	} else {
		return -1;
	}
	bits = max;
	if (slash != NULL) {
		if (!isdigit((unsigned char)slash[1]))
			return -1;
		errno = 0;
		bits = strtol(slash + 1, &end, 10);
		if (*end != '\0' || errno != 0 || bits > max)
			return -1;
	}
	an->prefix = (int)bits;
	return 0;
}

static int
config_set_nets(struct checker *ck, struct allow_net **list, const char *key,
    struct conf_kv *kv, const char *text)
{
	struct allow_net **tail = list, *an;
	char *buf, *tok, *save;

	/* A copy as long as the value: continuation lines make it any size. */
	if ((buf = strdup(text)) == NULL) {
		check_fail(ck, kv, "out of memory");
		return -1;
	}
	for (tok = strtok_r(buf, ", \t", &save); tok != NULL;
	    tok = strtok_r(NULL, ", \t", &save)) {
		if ((an = malloc(sizeof(*an))) == NULL) {
			check_fail(ck, kv, "out of memory");
			goto fail;
		}
		if (config_parse_net(tok, an) == -1) {
			free(an);
			check_fail(ck, kv, "%s: '%s' is not an IP address, a "
			    "CIDR network or 'unix'", key, tok);
			goto fail;
		}
		an->next = NULL;
		*tail = an;
		tail = &an->next;
	}
	free(buf);
	if (*list == NULL) {
		check_fail(ck, kv, "%s: empty list", key);
		return -1;
	}
	return 0;
fail:
	free(buf);
	return -1;
}

static int
config_check_status(struct molt_config *cfg, struct conf_section *s,
    struct conf_error *err)
{
	struct status_conf *st = &cfg->status;
	struct checker ck = { s, err, 0 };
	struct conf_kv *kv;
	const char *why;

	get_str(&ck, "path", &st->path);
	if (st->path != NULL && st->path[0] != '/') {
		check_fail(&ck, conf_get(s, "path"), "path: must start with '/', "
		    "got '%s'", st->path);
		return -1;
	}
	if (st->path != NULL &&
	    (why = config_route_prefix_problem(st->path)) != NULL) {
		check_fail(&ck, conf_get(s, "path"), "path: '%s' can never "
		    "match: %s", st->path, why);
		return -1;
	}
	if ((kv = conf_get(s, "allow")) != NULL &&
	    config_set_nets(&ck, &st->allow, "allow", kv, kv->value) == -1)
		return -1;
	get_bool(&ck, "route_stats", &st->route_stats);
	return ck.failed ? -1 : 0;
}

static int
config_route_methods(struct checker *ck, struct conf_kv *kv, unsigned *out)
{
	char *buf, *tok, *save, *c;
	unsigned bit, m = 0;

	if ((buf = strdup(kv->value)) == NULL) {
		check_fail(ck, kv, "out of memory");
		return -1;
	}
	for (tok = strtok_r(buf, ", \t", &save); tok != NULL;
	    tok = strtok_r(NULL, ", \t", &save)) {
		for (c = tok; *c; c++)
			*c = (char)toupper((unsigned char)*c);
		bit = method_bit(tok, strlen(tok));
		if (bit == METHOD_OTHER) {
			check_fail(ck, kv, "methods: unknown method '%s' (GET, HEAD, "
			    "POST, PUT, DELETE, PATCH, OPTIONS)", tok);
			free(buf);
			return -1;
		}
		m |= bit;
	}
	free(buf);
	/* 0 would mean "any method": an empty list must not widen a route. */
	if (m == 0) {
		check_fail(ck, kv, "methods: empty list");
		return -1;
	}
	/* HEAD is GET without the body; never refuse it where GET works. */
	if (m & METHOD_GET)
		m |= METHOD_HEAD;
	*out = m;
	return 0;
}

static int
config_check_route(struct molt_config *cfg, struct conf_section *s,
    struct conf_error *err)
{
	struct checker ck = { s, err, 0 };
	struct route_conf *r, **pp;
	struct conf_kv *kv;
	unsigned methods = 0;

	if ((kv = conf_get(s, "module")) == NULL) {
		check_fail(&ck, NULL, "[route %s] needs module = NAME", s->arg);
		return -1;
	}
	if (*kv->value == '\0') {
		check_fail(&ck, kv, "module: empty value");
		return -1;
	}
	if ((kv = conf_get(s, "methods")) != NULL &&
	    config_route_methods(&ck, kv, &methods) == -1)
		return -1;
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		check_fail(&ck, NULL, "out of memory");
		return -1;
	}
	/* Strings stay owned by the section, which lives as long as cfg. */
	r->section = s;
	r->prefix = s->arg;
	r->prefix_len = strlen(s->arg);
	r->module = conf_get(s, "module")->value;
	r->methods = methods;
	r->module_section = conf_find(cfg, "module", r->module);
	/* Longest prefix first, so the worker takes the first match; equal
	 * lengths (never equal prefixes) keep file order. */
	for (pp = &cfg->routes; *pp != NULL && (*pp)->prefix_len >= r->prefix_len;
	    pp = &(*pp)->next)
		;
	r->next = *pp;
	*pp = r;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Loading                                                             */

/* The core sections are ours alone: an unknown key there is an error now. */
static int
config_check_section(struct molt_config *cfg, struct conf_section *s,
    struct conf_error *err)
{
	int rc;

	if (strcmp(s->kind, "server") == 0)
		rc = config_check_server(cfg, s, err);
	else if (strcmp(s->kind, "recycle") == 0)
		rc = config_check_recycle(cfg, s, err);
	else if (strcmp(s->kind, "status") == 0)
		rc = config_check_status(cfg, s, err);
	else if (strcmp(s->kind, "route") == 0)
		return config_check_route(cfg, s, err);
	else
		return 0;   /* [module] and [database]: their owners check */
	if (rc == -1)
		return -1;
	return config_first_unused(s, err);
}

/*
 * A route on one of the status page's own paths (PATH, PATH/ and
 * PATH/metrics): on PATH, which of the two a worker takes is the order of
 * a sort; on the others the route wins, as the longer prefix, and the
 * page or the metrics are never reached, without a word.  Refused at the
 * route, naming where the path was set.
 */
static int
config_status_clash(struct molt_config *cfg, struct conf_error *err)
{
	static const char *const tails[] = { "", "/", "/metrics" };
	struct conf_section *st = conf_find(cfg, "status", NULL);
	struct conf_kv *kv = st != NULL ? conf_get(st, "path") : NULL;
	size_t n, i;
	struct route_conf *r;

	if (cfg->status.path == NULL || kv == NULL)
		return 0;
	n = strlen(cfg->status.path);
	for (r = cfg->routes; r != NULL; r = r->next)
		for (i = 0; i < sizeof(tails) / sizeof(tails[0]); i++) {
			if (strncmp(r->prefix, cfg->status.path, n) != 0 ||
			    strcmp(r->prefix + n, tails[i]) != 0)
				continue;
			conf_errorf(err, r->section->file, r->section->line,
			    "[route %s] takes a path of the status page "
			    "([status] path at %s:%d): move one of them",
			    r->prefix, st->file, kv->line);
			return -1;
		}
	return 0;
}

static int
config_finish(struct molt_config *cfg, struct conf_error *err)
{
	struct checker ck = { conf_find(cfg, "status", NULL), err, 0 };
	char msg[100];

	if (cfg->server.listen == NULL) {
		if ((cfg->server.listen = calloc(1, sizeof(*cfg->server.listen)))
		    == NULL) {
			conf_errorf(err, cfg->path, 0, "out of memory");
			return -1;
		}
		if (listen_parse("127.0.0.1:8080", cfg->server.listen, msg,
		    sizeof(msg)) == -1) {
			conf_errorf(err, cfg->path, 0, "default listen: %s", msg);
			return -1;
		}
	}
	if (cfg->status.allow == NULL &&
	    config_set_nets(&ck, &cfg->status.allow, "allow", NULL,
	    "127.0.0.0/8 ::1 unix") == -1)
		return -1;
	if (config_status_clash(cfg, err) == -1)
		return -1;
	return 0;
}

static struct molt_config *
config_load_mem(const char *name, const char *text, size_t len,
    struct conf_error *err)
{
	struct parse_state ps;
	struct molt_config *cfg;
	struct conf_section *s;
	int rc;

	memset(err, 0, sizeof(*err));
	if ((cfg = calloc(1, sizeof(*cfg))) == NULL ||
	    (cfg->path = strdup(name)) == NULL) {
		free(cfg);
		conf_errorf(err, name, 0, "out of memory");
		return NULL;
	}
	config_defaults(cfg);
	/* A UTF-8 BOM: skipped here, so line 1 is classified like any other. */
	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) {
		text += 3;
		len -= 3;
	}
	memset(&ps, 0, sizeof(ps));
	ps.cfg = cfg;
	ps.file = cfg->path;
	ps.text = text;
	ps.len = len;
	ps.tail = &cfg->sections;
	ps.err = err;
	rc = ini_parse_stream(config_reader, &ps, config_handler, &ps);
	/*
	 * inih goes on after an error it finds itself, so a later one of ours
	 * may be recorded too: report whichever line comes first.
	 */
	if (rc > 0 && (!ps.failed || rc < err->line)) {
		conf_errorf(err, cfg->path, rc, "syntax error: expected [section], "
		    "key = value, or a ; comment");
		goto fail;
	}
	if (ps.failed)
		goto fail;
	if (rc != 0) {
		conf_errorf(err, cfg->path, 0, "cannot parse (inih error %d)", rc);
		goto fail;
	}
	/*
	 * Every setting has a default, so a file with nothing in it would be
	 * a valid configuration: no routes, 127.0.0.1:8080.  It is never
	 * what was meant, but what a reload reads when it catches an editor or
	 * a deploy between truncating the file and writing it (`> molt.conf`
	 * does the same), and accepted, it replaced every listener and route
	 * of a running server: its clients were refused.
	 */
	if (cfg->sections == NULL) {
		conf_errorf(err, cfg->path, 0, "the file has no [section]: an "
		    "empty configuration is refused (a file being written?)");
		goto fail;
	}
	for (s = cfg->sections; s != NULL; s = s->next)
		if (config_check_section(cfg, s, err) == -1)
			goto fail;
	if (config_finish(cfg, err) == -1)
		goto fail;
	return cfg;
fail:
	config_free(cfg);
	return NULL;
}

struct molt_config *
config_load_string(const char *name, const char *text, struct conf_error *err)
{
	return config_load_mem(name, text, strlen(text), err);
}

struct molt_config *
config_load(const char *path, struct conf_error *err)
{
	struct molt_config *cfg = NULL;
	struct stat st;
	char *text = NULL;
	FILE *f;
	size_t n;

	if (path == NULL)
		return config_load_string("(embedded)", config_default_text, err);
	memset(err, 0, sizeof(*err));
	if ((f = fopen(path, "r")) == NULL) {
		conf_errorf(err, path, 0, "cannot open: %s", strerror(errno));
		return NULL;
	}
	if (fstat(fileno(f), &st) == -1) {
		conf_errorf(err, path, 0, "cannot stat: %s", strerror(errno));
		goto done;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > CONFIG_MAX_FILE) {
		conf_errorf(err, path, 0, "not a regular file of at most %d MB",
		    CONFIG_MAX_FILE / (1024 * 1024));
		goto done;
	}
	if ((text = malloc((size_t)st.st_size + 1)) == NULL) {
		conf_errorf(err, path, 0, "out of memory");
		goto done;
	}
	n = fread(text, 1, (size_t)st.st_size, f);
	if (ferror(f)) {
		conf_errorf(err, path, 0, "read error: %s", strerror(errno));
		goto done;
	}
	text[n] = '\0';
	/* With the length, so a NUL byte is reported instead of ending it. */
	cfg = config_load_mem(path, text, n, err);
done:
	free(text);
	fclose(f);
	return cfg;
}

void
config_free(struct molt_config *cfg)
{
	struct conf_section *s, *sn;
	struct conf_kv *kv, *kn;
	struct listen_addr *la, *ln;
	struct route_conf *r, *rn;
	struct allow_net *a, *an;

	if (cfg == NULL)
		return;
	for (s = cfg->sections; s != NULL; s = sn) {
		sn = s->next;
		for (kv = s->kv; kv != NULL; kv = kn) {
			kn = kv->next;
			free(kv->key);
			free(kv->value);
			free(kv);
		}
		free(s->kind);
		free(s->arg);
		free(s);
	}
	for (la = cfg->server.listen; la != NULL; la = ln) {
		ln = la->next;
		free(la->cpu_fd);
		free(la);
	}
	for (r = cfg->routes; r != NULL; r = rn) {
		rn = r->next;
		free(r);
	}
	for (a = cfg->status.allow; a != NULL; a = an) {
		an = a->next;
		free(a);
	}
	for (a = cfg->server.real_ip_from; a != NULL; a = an) {
		an = a->next;
		free(a);
	}
	free(cfg->server.real_ip_header);
	free(cfg->server.modules_dir);
	free(cfg->server.pid_file);
	free(cfg->server.error_log);
	free(cfg->server.access_log);
	free(cfg->server.user);
	free(cfg->server.group);
	free(cfg->status.path);
	free(cfg->path);
	free(cfg);
}
