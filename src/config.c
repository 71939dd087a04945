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

#define NAME_MAX_INIH 50    /* inih's section and key buffers */

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

struct parse_state {
	struct molt_config  *cfg;
	const char          *file;     /* owned by cfg->path */
	const char          *text;
	size_t               len, pos;
	int                  line;     /* line most recently handed to inih */
	int                  indented; /* that line starts with white space */
	struct conf_section *cur;
	struct conf_section **tail;
	struct conf_kv      *last_kv;
	struct conf_error   *err;
	int                  failed;
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
	if (*s == '\0')
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *conf_skip_ws(end) != '\0')
		return -1;
	*out = v;
	return 0;
}

/* A non-negative decimal number with an optional fraction, then a unit. */
static int
conf_parse_scaled(const char *s, const char **unit, double *out)
{
	char *end;
	double v;

	s = conf_skip_ws(s);
	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || v < 0)
		return -1;
	*unit = end;
	*out = v;
	return 0;
}

int
conf_parse_size(const char *s, long long *out)
{
	const char *u;
	double v, mul = 1;

	if (conf_parse_scaled(s, &u, &v) == -1)
		return -1;
	switch (tolower((unsigned char)*u)) {
	case 'k': mul = 1024.0; u++; break;
	case 'm': mul = 1024.0 * 1024; u++; break;
	case 'g': mul = 1024.0 * 1024 * 1024; u++; break;
	case 't': mul = 1024.0 * 1024 * 1024 * 1024; u++; break;
	}
	if (tolower((unsigned char)*u) == 'b')
		u++;
	if (*conf_skip_ws(u) != '\0')
		return -1;
	v *= mul;
	if (v > (double)LLONG_MAX / 2)
		return -1;
	*out = (long long)v;
	return 0;
}

int
conf_parse_duration(const char *s, long long *ms)
{
	const char *u;
	double v, mul;

	if (conf_parse_scaled(s, &u, &v) == -1)
		return -1;
	if (strncasecmp(u, "ms", 2) == 0) {
		mul = 1;
		u += 2;
	} else if (*u == 's' || *u == 'S') {
		mul = 1000;
		u++;
	} else if (*u == 'm' || *u == 'M') {
		mul = 60000;
		u++;
	} else if (*u == 'h' || *u == 'H') {
		mul = 3600000;
		u++;
	} else {
		mul = 1000;     /* a bare number is seconds */
	}
	if (*conf_skip_ws(u) != '\0')
		return -1;
	v *= mul;
	if (v > (double)LLONG_MAX / 2)
		return -1;
	*ms = (long long)v;
	return 0;
}

int
conf_parse_bool(const char *s, int *out)
{
	static const char *yes[] = { "on", "yes", "true", "1" };
	static const char *no[] = { "off", "no", "false", "0" };
	size_t i;

	for (i = 0; i < 4; i++) {
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
	char host[128];
	const char *colon, *h;
	char *end;
	long port;

	memset(la, 0, sizeof(*la));
	la->fd = -1;
	if (strlen(text) >= sizeof(la->text)) {
		snprintf(msg, msglen, "address too long");
		return -1;
	}
	snprintf(la->text, sizeof(la->text), "%s", text);
	if (strncmp(text, "unix:", 5) == 0) {
		struct sockaddr_un *sun = (struct sockaddr_un *)&la->ss;
		const char *path = text + 5;

		if (*path != '/' || strlen(path) >= sizeof(sun->sun_path)) {
			snprintf(msg, msglen, "unix:PATH needs an absolute path shorter "
			    "than %zu bytes", sizeof(sun->sun_path));
			return -1;
		}
		sun->sun_family = AF_UNIX;
		strcpy(sun->sun_path, path);
		la->sslen = sizeof(*sun);
		return 0;
	}
	if (text[0] == '[') {
		const char *rb = strchr(text, ']');

		if (rb == NULL || rb[1] != ':') {
			snprintf(msg, msglen, "expected [v6-address]:port");
			return -1;
		}
		snprintf(host, sizeof(host), "%.*s", (int)(rb - text - 1), text + 1);
		colon = rb + 1;
	} else {
		colon = strrchr(text, ':');
		if (colon == NULL) {
			snprintf(msg, msglen, "expected host:port, [v6]:port or unix:/path");
			return -1;
		}
		snprintf(host, sizeof(host), "%.*s", (int)(colon - text), text);
	}
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || errno != 0 || port < 0 ||
	    port > 65535) {
		snprintf(msg, msglen, "bad port '%s' (0-65535)", colon + 1);
		return -1;
	}
	h = host;
	if (strcmp(h, "localhost") == 0)
		h = "127.0.0.1";
	if (strcmp(h, "*") == 0 || *h == '\0')
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

static struct conf_section *config_new_section(struct parse_state *ps,
    const char *header);

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
	while (content > 0 && (start[content - 1] == '\n' ||
	    start[content - 1] == '\r'))
		content--;
	/* inih needs room for "\r\n\0"; a longer line it would split. */
	if (content + 3 > (size_t)num) {
		config_fail(ps, ps->line, "line too long (%zu characters, at most "
		    "%d); split the value over indented continuation lines",
		    content, num - 3);
		return NULL;
	}
	if (memchr(start, '\0', n) != NULL) {
		config_fail(ps, ps->line, "NUL byte in the file");
		return NULL;
	}
	memcpy(str, start, n);
	str[n] = '\0';
	ps->pos += n;
	ps->indented = (*start == ' ' || *start == '\t');

	/* Names inih would truncate to its 50-byte buffers. */
	{
		const char *p = start, *e;

		while (p < start + content && (*p == ' ' || *p == '\t'))
			p++;
		if (p < start + content && *p == '[') {
			char hdr[NAME_MAX_INIH + 1];

			e = memchr(p, ']', content - (size_t)(p - start));
			if (e == NULL) {
				config_fail(ps, ps->line, "section header without ']'");
				return NULL;
			}
			if (e - p - 1 >= NAME_MAX_INIH) {
				config_fail(ps, ps->line, "section header longer than "
				    "%d characters", NAME_MAX_INIH - 1);
				return NULL;
			}
			/* Sections are opened here: inih only reports keys. */
			snprintf(hdr, sizeof(hdr), "%.*s", (int)(e - p - 1), p + 1);
			ps->last_kv = NULL;
			if ((ps->cur = config_new_section(ps, hdr)) == NULL)
				return NULL;
		} else if (p < start + content && *p != ';' && *p != '#' &&
		    !ps->indented) {
			e = p;
			while (e < start + content && *e != '=' && *e != ':')
				e++;
			while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
				e--;
			if (e - p >= NAME_MAX_INIH) {
				config_fail(ps, ps->line, "key longer than %d characters",
				    NAME_MAX_INIH - 1);
				return NULL;
			}
		}
	}
	return str;
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

static struct conf_section *
config_new_section(struct parse_state *ps, const char *header)
{
	struct conf_section *s, *o;
	char kind[64], arg[64];
	const char *sp;

	header = conf_skip_ws(header);
	sp = strpbrk(header, " \t");
	snprintf(kind, sizeof(kind), "%.*s", sp ? (int)(sp - header) :
	    (int)strlen(header), header);
	snprintf(arg, sizeof(arg), "%s", sp ? conf_skip_ws(sp) : "");
	while (*arg && (arg[strlen(arg) - 1] == ' ' || arg[strlen(arg) - 1] == '\t'))
		arg[strlen(arg) - 1] = '\0';

	if (config_no_arg_kind(kind)) {
		if (*arg) {
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
	} else {
		config_fail(ps, ps->line, "unknown section [%s]", header);
		return NULL;
	}
	for (o = ps->cfg->sections; o != NULL; o = o->next)
		if (strcmp(o->kind, kind) == 0 && strcmp(o->arg, arg) == 0) {
			config_fail(ps, ps->line, "[%s%s%s] repeats the section at "
			    "line %d", kind, *arg ? " " : "", arg, o->line);
			return NULL;
		}
	s = calloc(1, sizeof(*s));
	if (s == NULL || (s->kind = strdup(kind)) == NULL ||
	    (s->arg = strdup(arg)) == NULL) {
		if (s)
			free(s->kind);
		free(s);
		config_fail(ps, ps->line, "out of memory");
		return NULL;
	}
	s->file = ps->file;
	s->line = ps->line;
	s->kv_tail = &s->kv;
	*ps->tail = s;
	ps->tail = &s->next;
	return s;
}

static int
config_handler(void *user, const char *section, const char *name,
    const char *value)
{
	struct parse_state *ps = user;
	struct conf_section *s = ps->cur;
	struct conf_kv *kv;

	(void)section;
	if (ps->failed)
		return 0;
	if (s == NULL) {
		config_fail(ps, ps->line, "'%s' is outside any section; start "
		    "with [server]", name);
		return 0;
	}
	/* An indented line continues the previous key (INI_ALLOW_MULTILINE). */
	if (ps->indented && ps->last_kv != NULL &&
	    strcmp(ps->last_kv->key, name) == 0) {
		size_t a = strlen(ps->last_kv->value), b = strlen(value);
		char *v = realloc(ps->last_kv->value, a + b + 2);

		if (v == NULL) {
			config_fail(ps, ps->line, "out of memory");
			return 0;
		}
		v[a] = ' ';
		memcpy(v + a + 1, value, b + 1);
		if (a == 0)
			memmove(v, v + 1, b + 1);
		ps->last_kv->value = v;
		return 1;
	}
	for (kv = s->kv; kv != NULL; kv = kv->next)
		if (strcmp(kv->key, name) == 0 && strcmp(name, "listen") != 0) {
			config_fail(ps, ps->line, "'%s' repeats the key at line %d",
			    name, kv->line);
			return 0;
		}
	kv = calloc(1, sizeof(*kv));
	if (kv == NULL || (kv->key = strdup(name)) == NULL ||
	    (kv->value = strdup(value)) == NULL) {
		if (kv)
			free(kv->key);
		free(kv);
		config_fail(ps, ps->line, "out of memory");
		return 0;
	}
	kv->line = ps->line;
	*s->kv_tail = kv;
	s->kv_tail = &kv->next;
	ps->last_kv = kv;
	return 1;
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

int
config_check_unused(struct molt_config *cfg, struct conf_error *err)
{
	struct conf_section *s;
	struct conf_kv *kv;

	for (s = cfg->sections; s != NULL; s = s->next)
		for (kv = s->kv; kv != NULL; kv = kv->next)
			if (!kv->used) {
				conf_errorf(err, s->file, kv->line, "unknown key '%s' in "
				    "[%s%s%s]", kv->key, s->kind, *s->arg ? " " : "",
				    s->arg);
				return -1;
			}
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

static void
check_fail(struct checker *ck, struct conf_kv *kv, const char *fmt, ...)
    MOLT_PRINTF(3, 4);

static void
check_fail(struct checker *ck, struct conf_kv *kv, const char *fmt, ...)
{
	va_list ap;
	char msg[400];

	if (ck->failed)
		return;
	ck->failed = 1;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	conf_errorf(ck->err, ck->s->file, kv ? kv->line : ck->s->line, "%s", msg);
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
get_size(struct checker *ck, const char *key, long long *out, long long min,
    long long max)
{
	struct conf_kv *kv = conf_get(ck->s, key);
	long long v;

	if (kv == NULL)
		return;
	if (conf_parse_size(kv->value, &v) == -1) {
		check_fail(ck, kv, "%s: expected a size such as 512k, 16m or 1g, "
		    "got '%s'", key, kv->value);
		return;
	}
	if (v != 0 && (v < min || v > max)) {
		check_fail(ck, kv, "%s: %s is out of range (%lld to %lld bytes)",
		    key, kv->value, min, max);
		return;
	}
	if (v == 0 && min > 0) {
		check_fail(ck, kv, "%s: must not be 0", key);
		return;
	}
	*out = v;
}

static void
get_duration(struct checker *ck, const char *key, long long *out,
    long long min, long long max)
{
	struct conf_kv *kv = conf_get(ck->s, key);
	long long v;

	if (kv == NULL)
		return;
	if (conf_parse_duration(kv->value, &v) == -1) {
		check_fail(ck, kv, "%s: expected a duration such as 250ms, 30s, 5m "
		    "or 1h, got '%s'", key, kv->value);
		return;
	}
	if (v < min || v > max) {
		check_fail(ck, kv, "%s: %s is out of range (%lld ms to %lld ms)",
		    key, kv->value, min, max);
		return;
	}
	*out = v;
}

static void
get_bool(struct checker *ck, const char *key, int *out)
{
	struct conf_kv *kv = conf_get(ck->s, key);

	if (kv != NULL && conf_parse_bool(kv->value, out) == -1)
		check_fail(ck, kv, "%s: expected on or off, got '%s'", key,
		    kv->value);
}

static void
get_str(struct checker *ck, const char *key, char **out)
{
	struct conf_kv *kv = conf_get(ck->s, key);

	if (kv == NULL)
		return;
	if (*kv->value == '\0') {
		check_fail(ck, kv, "%s: empty value", key);
		return;
	}
	free(*out);
	if ((*out = strdup(kv->value)) == NULL)
		check_fail(ck, kv, "out of memory");
}

static void
config_defaults(struct molt_config *cfg)
{
	struct server_conf *sc = &cfg->server;
	struct recycle_conf *rc = &cfg->recycle;
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	sc->workers = n > 0 ? (n > 256 ? 256 : (int)n) : 2;
	sc->log_level = MOLT_LOG_INFO;
	sc->max_header_size = 16 * 1024;
	sc->max_uri_size = 8 * 1024;
	sc->max_headers = 100;
	sc->max_body_size = 1024 * 1024;
	sc->header_timeout_ms = 10000;
	sc->body_timeout_ms = 30000;
	sc->keepalive_timeout_ms = 60000;
	sc->write_timeout_ms = 60000;
	sc->max_connections = 4096;
	sc->keepalive_requests = 10000;
	sc->backlog = 511;

	rc->fragmentation_min_rss = 64LL * 1024 * 1024;
	rc->trim = 1;
	rc->min_lifetime_ms = 10000;
	rc->max_concurrent_recycles = 1;
	rc->drain_timeout_ms = 30000;
	rc->sample_interval_ms = 1000;
	rc->samples_over = 2;
	rc->measure = MEASURE_USS;
}

static int
config_check_server(struct molt_config *cfg, struct conf_section *s,
    struct conf_error *err)
{
	struct server_conf *sc = &cfg->server;
	struct checker ck = { s, err, 0 };
	struct listen_addr **tail = &sc->listen;
	struct conf_kv *kv;
	long long v;

	for (kv = s->kv; kv != NULL; kv = kv->next) {
		struct listen_addr *la;
		char msg[200];

		if (strcmp(kv->key, "listen") != 0)
			continue;
		kv->used = 1;
		if ((la = calloc(1, sizeof(*la))) == NULL) {
			check_fail(&ck, kv, "out of memory");
			return -1;
		}
		if (listen_parse(kv->value, la, msg, sizeof(msg)) == -1) {
			free(la);
			check_fail(&ck, kv, "listen: %s: %s", kv->value, msg);
			return -1;
		}
		*tail = la;
		tail = &la->next;
	}
	v = sc->workers;
	get_int(&ck, "workers", &v, 1, 256);
	sc->workers = (int)v;
	get_str(&ck, "modules_dir", &sc->modules_dir);
	get_str(&ck, "pid_file", &sc->pid_file);
	get_str(&ck, "error_log", &sc->error_log);
	get_str(&ck, "access_log", &sc->access_log);
	if (sc->error_log && strcmp(sc->error_log, "stderr") == 0) {
		free(sc->error_log);
		sc->error_log = NULL;
	}
	if (sc->access_log && strcmp(sc->access_log, "off") == 0) {
		free(sc->access_log);
		sc->access_log = NULL;
	}
	if ((kv = conf_get(s, "log_level")) != NULL &&
	    (sc->log_level = log_parse_level(kv->value)) < 0)
		check_fail(&ck, kv, "log_level: expected error, warn, info or "
		    "debug, got '%s'", kv->value);
	get_str(&ck, "user", &sc->user);
	get_str(&ck, "group", &sc->group);
	get_size(&ck, "max_header_size", &sc->max_header_size, 1024, 1024 * 1024);
	get_size(&ck, "max_uri_size", &sc->max_uri_size, 256, 1024 * 1024);
	get_int(&ck, "max_headers", &sc->max_headers, 1, HTTP_MAX_HEADERS_HARD);
	get_size(&ck, "max_body_size", &sc->max_body_size, 0, 1LL << 40);
	get_duration(&ck, "header_timeout", &sc->header_timeout_ms, 100, 86400000);
	get_duration(&ck, "body_timeout", &sc->body_timeout_ms, 100, 86400000);
	get_duration(&ck, "keepalive_timeout", &sc->keepalive_timeout_ms, 100,
	    86400000);
	get_duration(&ck, "write_timeout", &sc->write_timeout_ms, 100, 86400000);
	get_int(&ck, "max_connections", &sc->max_connections, 1, 1000000);
	get_int(&ck, "keepalive_requests", &sc->keepalive_requests, 0, 1LL << 40);
	get_int(&ck, "backlog", &sc->backlog, 1, 65535);
	return ck.failed ? -1 : 0;
}

static int
config_check_recycle(struct molt_config *cfg, struct conf_section *s,
    struct conf_error *err)
{
	struct recycle_conf *rc = &cfg->recycle;
	struct checker ck = { s, err, 0 };
	struct conf_kv *kv;
	long long v;

	get_size(&ck, "max_rss", &rc->max_rss, 1024 * 1024, 1LL << 42);
	get_size(&ck, "hard_max_rss", &rc->hard_max_rss, 1024 * 1024, 1LL << 42);
	if ((kv = conf_get(s, "max_fragmentation")) != NULL) {
		char *end;
		double d = strtod(kv->value, &end);

		if (end == kv->value || *conf_skip_ws(end) != '\0' ||
		    (d != 0 && d < 1.5) || d > 1000)
			check_fail(&ck, kv, "max_fragmentation: expected 0 (off) or a "
			    "ratio from 1.5 to 1000, got '%s'", kv->value);
		rc->max_fragmentation = d;
	}
	get_size(&ck, "fragmentation_min_rss", &rc->fragmentation_min_rss, 0,
	    1LL << 42);
	get_bool(&ck, "trim", &rc->trim);
	get_int(&ck, "max_requests", &rc->max_requests, 0, 1LL << 50);
	get_int(&ck, "max_requests_jitter", &rc->max_requests_jitter, 0, 1LL << 50);
	get_duration(&ck, "max_lifetime", &rc->max_lifetime_ms, 0, 1LL << 40);
	get_duration(&ck, "max_lifetime_jitter", &rc->max_lifetime_jitter_ms, 0,
	    1LL << 40);
	get_duration(&ck, "min_lifetime", &rc->min_lifetime_ms, 0, 1LL << 40);
	v = rc->max_concurrent_recycles;
	get_int(&ck, "max_concurrent_recycles", &v, 1, 256);
	rc->max_concurrent_recycles = (int)v;
	get_duration(&ck, "drain_timeout", &rc->drain_timeout_ms, 100, 86400000);
	get_duration(&ck, "sample_interval", &rc->sample_interval_ms, 50, 3600000);
	v = rc->samples_over;
	get_int(&ck, "samples_over", &v, 1, 100);
	rc->samples_over = (int)v;
	if ((kv = conf_get(s, "measure")) != NULL) {
		if (strcmp(kv->value, "uss") == 0)
			rc->measure = MEASURE_USS;
		else if (strcmp(kv->value, "rss") == 0)
			rc->measure = MEASURE_RSS;
		else if (strcmp(kv->value, "pss") == 0)
			rc->measure = MEASURE_PSS;
		else
			check_fail(&ck, kv, "measure: expected uss, rss or pss, got "
			    "'%s'", kv->value);
	}
	if (ck.failed)
		return -1;
	if (rc->max_rss && rc->hard_max_rss && rc->hard_max_rss <= rc->max_rss) {
		check_fail(&ck, conf_get(s, "hard_max_rss"), "hard_max_rss must be "
		    "above max_rss");
		return -1;
	}
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

static int
config_parse_net(const char *text, struct allow_net *an)
{
	char buf[80], *slash;
	long bits, max;
	char *end;

	if (strlen(text) >= sizeof(buf))
		return -1;
	strcpy(buf, text);
	slash = strchr(buf, '/');
	if (slash != NULL)
		*slash = '\0';
	memset(an, 0, sizeof(*an));
	if (inet_pton(AF_INET, buf, &((struct sockaddr_in *)&an->net)->sin_addr) == 1) {
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
		errno = 0;
		bits = strtol(slash + 1, &end, 10);
		if (slash[1] == '\0' || *end != '\0' || errno || bits < 0 || bits > max)
			return -1;
	}
	an->prefix = (int)bits;
	return 0;
}

static int
config_set_allow(struct checker *ck, struct status_conf *st,
    struct conf_kv *kv, const char *text)
{
	char buf[1024], *tok, *save;
	struct allow_net **tail = &st->allow;

	snprintf(buf, sizeof(buf), "%s", text);
	for (tok = strtok_r(buf, ", \t", &save); tok != NULL;
	    tok = strtok_r(NULL, ", \t", &save)) {
		struct allow_net *an = malloc(sizeof(*an));

		if (an == NULL) {
			check_fail(ck, kv, "out of memory");
			return -1;
		}
		if (config_parse_net(tok, an) == -1) {
			free(an);
			check_fail(ck, kv, "allow: '%s' is not an IP address or "
			    "CIDR network", tok);
			return -1;
		}
		an->next = NULL;
		*tail = an;
		tail = &an->next;
	}
	return 0;
}

static int
config_check_status(struct molt_config *cfg, struct conf_section *s,
    struct conf_error *err)
{
	struct status_conf *st = &cfg->status;
	struct checker ck = { s, err, 0 };
	struct conf_kv *kv;

	get_str(&ck, "path", &st->path);
	if (st->path != NULL && st->path[0] != '/') {
		check_fail(&ck, conf_get(s, "path"), "path: must start with '/'");
		return -1;
	}
	if ((kv = conf_get(s, "allow")) != NULL &&
	    config_set_allow(&ck, st, kv, kv->value) == -1)
		return -1;
	get_bool(&ck, "route_stats", &st->route_stats);
	return ck.failed ? -1 : 0;
}

static int
config_check_route(struct molt_config *cfg, struct conf_section *s,
    struct conf_error *err)
{
	struct checker ck = { s, err, 0 };
	struct route_conf *r, **pp;
	struct conf_kv *kv;

	if ((r = calloc(1, sizeof(*r))) == NULL) {
		check_fail(&ck, NULL, "out of memory");
		return -1;
	}
	r->section = s;
	r->prefix = s->arg;
	r->prefix_len = strlen(s->arg);
	if ((kv = conf_get(s, "module")) == NULL) {
		free(r);
		check_fail(&ck, NULL, "[route %s] needs module = NAME", s->arg);
		return -1;
	}
	r->module = kv->value;
	if ((kv = conf_get(s, "methods")) != NULL) {
		char buf[256], *tok, *save;

		snprintf(buf, sizeof(buf), "%s", kv->value);
		for (tok = strtok_r(buf, ", \t", &save); tok != NULL;
		    tok = strtok_r(NULL, ", \t", &save)) {
			unsigned bit;
			char *c;

			for (c = tok; *c; c++)
				*c = (char)toupper((unsigned char)*c);
			bit = method_bit(tok, strlen(tok));
			if (bit == METHOD_OTHER) {
				free(r);
				check_fail(&ck, kv, "methods: unknown method '%s' (GET, "
				    "HEAD, POST, PUT, DELETE, PATCH, OPTIONS)", tok);
				return -1;
			}
			r->methods |= bit;
		}
		/* HEAD is GET without the body; never refuse it where GET works. */
		if (r->methods & METHOD_GET)
			r->methods |= METHOD_HEAD;
	}
	r->module_section = conf_find(cfg, "module", r->module);
	/* Longest prefix first: the worker takes the first match. */
	for (pp = &cfg->routes; *pp != NULL && (*pp)->prefix_len >= r->prefix_len;
	    pp = &(*pp)->next)
		;
	r->next = *pp;
	*pp = r;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Loading                                                             */

struct molt_config *
config_load_string(const char *name, const char *text, struct conf_error *err)
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
	memset(&ps, 0, sizeof(ps));
	ps.cfg = cfg;
	ps.file = cfg->path;
	ps.text = text;
	ps.len = strlen(text);
	ps.tail = &cfg->sections;
	ps.err = err;
	rc = ini_parse_stream(config_reader, &ps, config_handler, &ps);
	if (ps.failed)
		goto fail;
	if (rc != 0) {
		conf_errorf(err, cfg->path, rc > 0 ? rc : 0, rc > 0 ? "syntax error: "
		    "expected [section], key = value, or a ; comment" :
		    "cannot parse");
		goto fail;
	}
	for (s = cfg->sections; s != NULL; s = s->next) {
		if (strcmp(s->kind, "server") == 0)
			rc = config_check_server(cfg, s, err);
		else if (strcmp(s->kind, "recycle") == 0)
			rc = config_check_recycle(cfg, s, err);
		else if (strcmp(s->kind, "status") == 0)
			rc = config_check_status(cfg, s, err);
		else if (strcmp(s->kind, "route") == 0)
			rc = config_check_route(cfg, s, err);
		else
			rc = 0;     /* [module] and [database]: their owners check */
		if (rc == -1)
			goto fail;
	}
	if (cfg->server.listen == NULL) {
		char msg[100];

		cfg->server.listen = calloc(1, sizeof(*cfg->server.listen));
		if (cfg->server.listen == NULL ||
		    listen_parse("127.0.0.1:8080", cfg->server.listen, msg,
		    sizeof(msg)) == -1) {
			conf_errorf(err, cfg->path, 0, "out of memory");
			goto fail;
		}
	}
	if (cfg->status.path != NULL && cfg->status.allow == NULL) {
		struct checker ck = { conf_find(cfg, "status", NULL), err, 0 };

		if (config_set_allow(&ck, &cfg->status, NULL, "127.0.0.0/8 ::1") == -1)
			goto fail;
	}
	return cfg;
fail:
	config_free(cfg);
	return NULL;
}

struct molt_config *
config_load(const char *path, struct conf_error *err)
{
	struct molt_config *cfg;
	struct stat st;
	char *text;
	FILE *f;
	size_t n;

	if (path == NULL)
		return config_load_string("(embedded)", config_default_text, err);
	memset(err, 0, sizeof(*err));
	if ((f = fopen(path, "r")) == NULL) {
		conf_errorf(err, path, 0, "cannot open: %s", strerror(errno));
		return NULL;
	}
	if (fstat(fileno(f), &st) == -1 || !S_ISREG(st.st_mode) ||
	    st.st_size > 16 * 1024 * 1024) {
		conf_errorf(err, path, 0, "not a regular file of at most 16 MB");
		fclose(f);
		return NULL;
	}
	if ((text = malloc((size_t)st.st_size + 1)) == NULL) {
		conf_errorf(err, path, 0, "out of memory");
		fclose(f);
		return NULL;
	}
	n = fread(text, 1, (size_t)st.st_size, f);
	if (ferror(f)) {
		conf_errorf(err, path, 0, "read error: %s", strerror(errno));
		fclose(f);
		free(text);
		return NULL;
	}
	fclose(f);
	text[n] = '\0';
	cfg = config_load_string(path, text, err);
	free(text);
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
