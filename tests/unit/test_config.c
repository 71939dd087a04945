/*
 * test_config.c - molt.conf parsing: values, defaults and FILE:LINE errors.
 *
 * Every config is written to a file in a mkdtemp directory and read with
 * config_load, the way molt reads it, so the tests go through inih and our
 * line reader exactly as a user's file does.
 */
#include <limits.h>
#include <netinet/in.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"

static int passed, failed;
static char dir[] = "/tmp/molt-test-config-XXXXXX";
static char conf_path[300];

#define CHECK(cond) do { if (cond) passed++; else { failed++; \
	fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond); } } while (0)

/* Writes len bytes (so a test can embed NUL bytes) and returns the path. */
static const char *
write_conf_len(const char *text, size_t len)
{
	FILE *f;

	f = fopen(conf_path, "wb");
	if (f == NULL || fwrite(text, 1, len, f) != len || fclose(f) != 0) {
		perror(conf_path);
		exit(2);
	}
	return conf_path;
}

static const char *
write_conf(const char *text)
{
	return write_conf_len(text, strlen(text));
}

static int
err_matches(const struct conf_error *err, int line, const char *frag)
{
	return err->line == line && strstr(err->msg, frag) != NULL &&
	    strcmp(err->file, conf_path) == 0;
}

/* config_load itself must fail at `line` with a message containing frag. */
static void
expect_load_error(const char *text, size_t len, int line, const char *frag,
    int srcline)
{
	struct conf_error err;
	struct molt_config *cfg = config_load(write_conf_len(text, len), &err);

	if (cfg != NULL) {
		config_free(cfg);
		failed++;
		fprintf(stderr, "%s:%d: FAILED: loaded; expected an error at line "
		    "%d\n", __FILE__, srcline, line);
		return;
	}
	if (err_matches(&err, line, frag)) {
		passed++;
	} else {
		failed++;
		fprintf(stderr, "%s:%d: FAILED: want line %d '%s', got %s:%d: %s\n",
		    __FILE__, srcline, line, frag, err.file, err.line, err.msg);
	}
}
#define EXPECT_ERROR(t, l, f) expect_load_error(t, strlen(t), l, f, __LINE__)
#define EXPECT_ERROR_LEN(t, n, l, f) expect_load_error(t, n, l, f, __LINE__)

/* Loads, but config_check_unused (run after every checker) must fail. */
static void
expect_unused(const char *text, int line, const char *frag, int srcline)
{
	struct conf_error err;
	struct molt_config *cfg = config_load(write_conf(text), &err);

	if (cfg == NULL) {
		failed++;
		fprintf(stderr, "%s:%d: FAILED: unexpected load error %s:%d: %s\n",
		    __FILE__, srcline, err.file, err.line, err.msg);
		return;
	}
	if (config_check_unused(cfg, &err) == -1 && err_matches(&err, line, frag)) {
		passed++;
	} else {
		failed++;
		fprintf(stderr, "%s:%d: FAILED: want unused key at line %d '%s', "
		    "got %d: %s\n", __FILE__, srcline, line, frag, err.line, err.msg);
	}
	config_free(cfg);
}
#define EXPECT_UNUSED(t, l, f) expect_unused(t, l, f, __LINE__)

static struct molt_config *
load_ok(const char *text, int srcline)
{
	struct conf_error err;
	struct molt_config *cfg = config_load(write_conf(text), &err);

	if (cfg == NULL) {
		failed++;
		fprintf(stderr, "%s:%d: FAILED: unexpected error %s:%d: %s\n",
		    __FILE__, srcline, err.file, err.line, err.msg);
	}
	return cfg;
}
#define LOAD_OK(t) load_ok(t, __LINE__)

/* Loads and frees; counts as one check. */
#define CHECK_LOADS(t) do { struct molt_config *c_ = LOAD_OK(t); \
	if (c_ != NULL) { passed++; config_free(c_); } } while (0)

static struct route_conf *
route(struct molt_config *cfg, const char *prefix)
{
	struct route_conf *r;

	for (r = cfg->routes; r != NULL; r = r->next)
		if (strcmp(r->prefix, prefix) == 0)
			return r;
	return NULL;
}

static uint32_t
v4(const struct sockaddr_storage *ss)
{
	return ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr);
}

static int
v4port(const struct sockaddr_storage *ss)
{
	return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

/* ------------------------------------------------------------------ */

static void
test_embedded(void)
{
	struct conf_error err;
	struct molt_config *cfg = config_load(NULL, &err);
	static const char *prefixes[] = { "/hello", "/echo", "/fragment",
	    "/leak", "/" };
	static const char *modules[] = { "hello", "echo", "fragment", "leak",
	    "static" };
	struct route_conf *r;
	struct conf_kv *kv;
	size_t i, last = (size_t)-1;

	CHECK(cfg != NULL);
	if (cfg == NULL) {
		fprintf(stderr, "embedded: %s:%d: %s\n", err.file, err.line, err.msg);
		return;
	}
	CHECK(strcmp(cfg->path, "(embedded)") == 0);
	CHECK(cfg->server.listen != NULL && cfg->server.listen->next == NULL &&
	    strcmp(cfg->server.listen->text, "127.0.0.1:8080") == 0 &&
	    cfg->server.listen->ss.ss_family == AF_INET &&
	    v4(&cfg->server.listen->ss) == 0x7f000001 &&
	    v4port(&cfg->server.listen->ss) == 8080);
	CHECK(cfg->status.path && strcmp(cfg->status.path, "/molt/status") == 0);
	CHECK(cfg->status.allow != NULL);
	CHECK(cfg->recycle.max_rss == 256LL * 1024 * 1024);
	CHECK(cfg->recycle.trim == 1);
	for (i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		r = route(cfg, prefixes[i]);
		CHECK(r != NULL && strcmp(r->module, modules[i]) == 0);
	}
	for (r = cfg->routes; r != NULL; r = r->next) {
		CHECK(r->prefix_len <= last);   /* longest prefix first */
		last = r->prefix_len;
	}
	r = route(cfg, "/");
	CHECK(r != NULL && r->module_section != NULL);
	kv = r ? conf_get(r->module_section, "root") : NULL;
	CHECK(kv != NULL && strcmp(kv->value, "@WWW@") == 0);
	/* With static's root claimed, nothing in the default is left over. */
	CHECK(config_check_unused(cfg, &err) == 0);
	config_free(cfg);

	/* config_load_string: the same text under another name. */
	cfg = config_load_string("inline", config_default_text, &err);
	CHECK(cfg != NULL && strcmp(cfg->path, "inline") == 0);
	config_free(cfg);
	cfg = config_load_string("inline", "[server]\nworkers = x\n", &err);
	CHECK(cfg == NULL && strcmp(err.file, "inline") == 0 && err.line == 2);
}

static void
test_defaults(void)
{
	struct molt_config *cfg = LOAD_OK("; nothing but a comment\n[server]\n");
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	if (cfg == NULL)
		return;
	CHECK(cfg->server.listen != NULL && cfg->server.listen->next == NULL &&
	    v4(&cfg->server.listen->ss) == 0x7f000001 &&
	    v4port(&cfg->server.listen->ss) == 8080 &&
	    cfg->server.listen->fd == -1);
	CHECK(cfg->server.workers == (cpus > 256 ? 256 : cpus > 0 ? cpus : 2));
	CHECK(cfg->server.modules_dir == NULL && cfg->server.pid_file == NULL &&
	    cfg->server.error_log == NULL && cfg->server.access_log == NULL &&
	    cfg->server.user == NULL && cfg->server.group == NULL);
	CHECK(cfg->server.log_level == MOLT_LOG_INFO);
	CHECK(cfg->server.max_header_size == 16384);
	CHECK(cfg->server.max_uri_size == 8192);
	CHECK(cfg->server.max_headers == 100);
	CHECK(cfg->server.max_body_size == 1048576);
	CHECK(cfg->server.header_timeout_ms == 10000);
	CHECK(cfg->server.body_timeout_ms == 30000);
	CHECK(cfg->server.keepalive_timeout_ms == 60000);
	CHECK(cfg->server.write_timeout_ms == 60000);
	CHECK(cfg->server.handler_timeout_ms == 60000);
	CHECK(cfg->server.max_connections == 4096);
	CHECK(cfg->server.keepalive_requests == 10000);
	CHECK(cfg->server.backlog == 511);
	CHECK(cfg->server.defer_accept == 1);
	CHECK(cfg->server.conn_hugepages == 1);

	CHECK(cfg->recycle.max_rss == 0 && cfg->recycle.hard_max_rss == 0);
	CHECK(cfg->recycle.max_fragmentation == 0);
	CHECK(cfg->recycle.fragmentation_min_rss == 64LL << 20);
	CHECK(cfg->recycle.trim == 1);
	CHECK(cfg->recycle.max_requests == 0 &&
	    cfg->recycle.max_requests_jitter == 0);
	CHECK(cfg->recycle.max_lifetime_ms == 0 &&
	    cfg->recycle.max_lifetime_jitter_ms == 0);
	CHECK(cfg->recycle.min_lifetime_ms == 10000);
	CHECK(cfg->recycle.max_concurrent_recycles == 1);
	CHECK(cfg->recycle.drain_timeout_ms == 30000);
	CHECK(cfg->recycle.sample_interval_ms == 1000);
	CHECK(cfg->recycle.samples_over == 2);
	CHECK(cfg->recycle.measure == MEASURE_USS);

	CHECK(cfg->status.path == NULL && cfg->status.route_stats == 0);
	/* Loopback and unix: sockets by default: 127.0.0.0/8, ::1, unix. */
	CHECK(cfg->status.allow != NULL &&
	    cfg->status.allow->net.ss_family == AF_INET &&
	    cfg->status.allow->prefix == 8 &&
	    v4(&cfg->status.allow->net) == 0x7f000000 &&
	    cfg->status.allow->next != NULL &&
	    cfg->status.allow->next->net.ss_family == AF_INET6 &&
	    cfg->status.allow->next->prefix == 128 &&
	    cfg->status.allow->next->next != NULL &&
	    cfg->status.allow->next->next->net.ss_family == AF_UNIX &&
	    cfg->status.allow->next->next->next == NULL);
	CHECK(cfg->routes == NULL);
	config_free(cfg);
}

static void
test_defer_accept(void)
{
	struct molt_config *cfg = LOAD_OK("[server]\ndefer_accept = off\n");

	if (cfg == NULL)
		return;
	CHECK(cfg->server.defer_accept == 0);
	config_free(cfg);
	cfg = LOAD_OK("[server]\nconn_hugepages = off\n");
	if (cfg == NULL)
		return;
	CHECK(cfg->server.conn_hugepages == 0);
	config_free(cfg);
}

static void
test_values(void)
{
	struct molt_config *cfg;
	struct listen_addr *la;
	struct route_conf *r;
	struct conf_kv *kv;
	struct conf_section *s;
	struct conf_error err;

	cfg = LOAD_OK(
	    "; comment\n"                                   /* 1 */
	    "[server]\n"
	    "listen = 127.0.0.1:0\n"
	    "listen = [::1]:8081   ; inline comment\n"
	    "listen = unix:/tmp/molt.sock\n"                /* 5 */
	    "listen = *:81\n"
	    "listen = localhost:82\n"
	    "workers = 3\n"
	    "max_body_size = 2m\n"
	    "header_timeout = 250ms\n"                      /* 10 */
	    "keepalive_timeout = 2m\n"
	    "log_level = debug\n"
	    "modules_dir = /a:/b\n"
	    "error_log = stderr\n"
	    "access_log = /var/log/molt/access.log\n"       /* 15 */
	    "max_header_size = 1m\n"
	    "max_headers = 128\n"
	    "backlog = 64\n"
	    "[recycle]\n"
	    "max_rss = 1.5g\n"                              /* 20 */
	    "hard_max_rss = 2g\n"
	    "max_fragmentation = 2.5\n"
	    "trim = off\n"
	    "measure = pss\n"
	    "max_requests = 1000\n"                         /* 25 */
	    "max_requests_jitter = 100\n"
	    "max_lifetime = 1h\n"
	    "max_lifetime_jitter = 5m\n"
	    "sample_interval = 50ms\n"
	    "samples_over = 100\n"                          /* 30 */
	    "max_concurrent_recycles = 2\n"
	    "[status]\n"
	    "path = /st\n"
	    "allow = 10.0.0.0/8, ::1 unix\n"
	    "route_stats = yes\n"                           /* 35 */
	    "[route /a]\n"
	    "module = hello\n"
	    "methods = get, post\n"
	    "[route /a/b]\n"
	    "module = echo\n"                               /* 40 */
	    "[module hello]\n"
	    "text = first part\n"
	    "  second part ; a comment inside the value\n"
	    "; a comment line does not end it\n"
	    "\n"                                            /* 45 */
	    "\tthird;not-a-comment\n"
	    "[database main]\n"
	    "host = 127.0.0.1\n");
	if (cfg == NULL)
		return;
	CHECK(cfg->server.workers == 3);
	CHECK(cfg->server.max_body_size == 2 * 1024 * 1024);
	CHECK(cfg->server.header_timeout_ms == 250);
	CHECK(cfg->server.keepalive_timeout_ms == 120000);
	CHECK(cfg->server.log_level == MOLT_LOG_DEBUG);
	CHECK(cfg->server.modules_dir && strcmp(cfg->server.modules_dir, "/a:/b") == 0);
	CHECK(cfg->server.error_log == NULL);
	CHECK(cfg->server.access_log &&
	    strcmp(cfg->server.access_log, "/var/log/molt/access.log") == 0);
	CHECK(cfg->server.max_header_size == 1048576);
	CHECK(cfg->server.max_headers == 128);
	CHECK(cfg->server.backlog == 64);

	la = cfg->server.listen;
	CHECK(la && la->ss.ss_family == AF_INET && v4port(&la->ss) == 0 &&
	    la->sslen == sizeof(struct sockaddr_in));
	la = la ? la->next : NULL;
	CHECK(la && la->ss.ss_family == AF_INET6 &&
	    ntohs(((struct sockaddr_in6 *)&la->ss)->sin6_port) == 8081 &&
	    strcmp(la->text, "[::1]:8081") == 0);
	la = la ? la->next : NULL;
	CHECK(la && la->ss.ss_family == AF_UNIX &&
	    strcmp(((struct sockaddr_un *)&la->ss)->sun_path, "/tmp/molt.sock") == 0);
	la = la ? la->next : NULL;
	CHECK(la && v4(&la->ss) == 0 && v4port(&la->ss) == 81);
	la = la ? la->next : NULL;
	CHECK(la && v4(&la->ss) == 0x7f000001 && v4port(&la->ss) == 82 &&
	    la->next == NULL);

	CHECK(cfg->recycle.max_rss == 1536LL * 1024 * 1024);
	CHECK(cfg->recycle.hard_max_rss == 2048LL * 1024 * 1024);
	CHECK(cfg->recycle.max_fragmentation == 2.5);
	CHECK(cfg->recycle.trim == 0);
	CHECK(cfg->recycle.measure == MEASURE_PSS);
	CHECK(cfg->recycle.max_requests == 1000);
	CHECK(cfg->recycle.max_requests_jitter == 100);
	CHECK(cfg->recycle.max_lifetime_ms == 3600000);
	CHECK(cfg->recycle.max_lifetime_jitter_ms == 300000);
	CHECK(cfg->recycle.sample_interval_ms == 50);
	CHECK(cfg->recycle.samples_over == 100);
	CHECK(cfg->recycle.max_concurrent_recycles == 2);

	CHECK(cfg->status.path && strcmp(cfg->status.path, "/st") == 0);
	CHECK(cfg->status.route_stats == 1);
	CHECK(cfg->status.allow && cfg->status.allow->prefix == 8 &&
	    cfg->status.allow->next && cfg->status.allow->next->prefix == 128 &&
	    cfg->status.allow->next->next &&
	    cfg->status.allow->next->next->net.ss_family == AF_UNIX);

	CHECK(cfg->routes && strcmp(cfg->routes->prefix, "/a/b") == 0);
	r = route(cfg, "/a");
	CHECK(r && r->methods == (METHOD_GET | METHOD_HEAD | METHOD_POST));
	CHECK(r && r->module_section != NULL && r->section != NULL &&
	    r->section->line == 36 && r->module_section->line == 41);
	r = route(cfg, "/a/b");
	CHECK(r && r->methods == 0 && r->module_section == NULL &&
	    r->prefix_len == 4 && strcmp(r->module, "echo") == 0);

	s = conf_find(cfg, "module", "hello");
	kv = conf_get(s, "text");
	CHECK(kv && strcmp(kv->value,
	    "first part second part third;not-a-comment") == 0);
	CHECK(kv && kv->line == 42);     /* the first line of the value */
	/* [database main] is db.c's: left unclaimed by config_load. */
	CHECK(config_check_unused(cfg, &err) == -1 && err.line == 48 &&
	    strstr(err.msg, "unknown key 'host' in [database main]") != NULL);
	kv = conf_get(conf_find(cfg, "database", "main"), "host");
	CHECK(kv != NULL);
	CHECK(config_check_unused(cfg, &err) == 0);
	config_free(cfg);
}

/* Keywords are read in any case (molt.conf(5), error_log): measure too. */
static void
test_keyword_case(void)
{
	struct molt_config *cfg = LOAD_OK("[server]\nlog_level = DEBUG\n"
	    "worker_cpu_affinity = AUTO\n[recycle]\nmeasure = PSS\n");

	if (cfg == NULL)
		return;
	CHECK(cfg->server.log_level == MOLT_LOG_DEBUG);
	CHECK(cfg->server.cpu_affinity == 1);
	CHECK(cfg->recycle.measure == MEASURE_PSS);
	config_free(cfg);
	cfg = LOAD_OK("[recycle]\nmeasure = Rss\n");
	if (cfg == NULL)
		return;
	CHECK(cfg->recycle.measure == MEASURE_RSS);
	config_free(cfg);
}

static void
test_syntax(void)
{
	struct molt_config *cfg;
	struct conf_kv *kv;
	char line[512], text[1024];
	size_t n;

	/* "key =" and then only indented lines: no leading space. */
	cfg = LOAD_OK("[module m]\nq =\n  SELECT 1\n  FROM t\n");
	kv = cfg ? conf_get(conf_find(cfg, "module", "m"), "q") : NULL;
	CHECK(kv && strcmp(kv->value, "SELECT 1 FROM t") == 0 && kv->line == 2);
	config_free(cfg);

	/* An indented "[x]" or "a = b" after a key is text of that key, as in
	 * inih; it must not open a section behind inih's back. */
	cfg = LOAD_OK("[module m]\nq = a\n  [route /x]\n  b = c\n");
	kv = cfg ? conf_get(conf_find(cfg, "module", "m"), "q") : NULL;
	CHECK(kv && strcmp(kv->value, "a [route /x] b = c") == 0);
	CHECK(cfg && conf_find(cfg, "route", NULL) == NULL);
	config_free(cfg);

	/* Indented first key of a section is a key, not a continuation. */
	cfg = LOAD_OK("[module m]\n  a = 1\n  b\n[module n]\n  c = 2\n");
	kv = cfg ? conf_get(conf_find(cfg, "module", "m"), "a") : NULL;
	CHECK(kv && strcmp(kv->value, "1 b") == 0);
	kv = cfg ? conf_get(conf_find(cfg, "module", "n"), "c") : NULL;
	CHECK(kv && strcmp(kv->value, "2") == 0 && kv->line == 5);
	config_free(cfg);

	/* ';' after white space is a comment, inside a value it is not;
	 * '#' only at the start of a line; ':' also separates. */
	cfg = LOAD_OK("# hash comment\n[module m]\na = x;y\nb = x ;y\n"
	    "c = x #y\nd: e\n[route /a;b] ; comment after the header\n"
	    "module = m\n");
	if (cfg != NULL) {
		struct conf_section *s = conf_find(cfg, "module", "m");

		CHECK((kv = conf_get(s, "a")) && strcmp(kv->value, "x;y") == 0);
		CHECK((kv = conf_get(s, "b")) && strcmp(kv->value, "x") == 0);
		CHECK((kv = conf_get(s, "c")) && strcmp(kv->value, "x #y") == 0);
		CHECK((kv = conf_get(s, "d")) && strcmp(kv->value, "e") == 0);
		CHECK(route(cfg, "/a;b") != NULL);
	}
	config_free(cfg);

	/* CRLF line endings and a UTF-8 byte order mark. */
	cfg = LOAD_OK("\xef\xbb\xbf[server]\r\nworkers = 5\r\n[module m]\r\n"
	    "q = a\r\n  b\r\n");
	CHECK(cfg && cfg->server.workers == 5);
	kv = cfg ? conf_get(conf_find(cfg, "module", "m"), "q") : NULL;
	CHECK(kv && strcmp(kv->value, "a b") == 0);
	config_free(cfg);
	EXPECT_ERROR("\xef\xbb\xbf[server]\r\nworkers = x\r\n", 2, "workers");

	/*
	 * inih r55 (Debian) reads into a 200-byte buffer that must hold
	 * "\r\n\0": 197 characters is the longest line it keeps whole for
	 * either line ending.  Exactly that must load, with correct line
	 * numbers after it; one more must be refused at its own line.
	 */
	n = 197;
	memset(line, 'v', sizeof(line));
	memcpy(line, "q = ", 4);
	line[n] = '\0';
	snprintf(text, sizeof(text), "[module m]\n%s\nbad key\n", line);
	EXPECT_ERROR(text, 3, "syntax");
	snprintf(text, sizeof(text), "[module m]\n%s\r\nbad key\n", line);
	EXPECT_ERROR(text, 3, "syntax");
	snprintf(text, sizeof(text), "[module m]\n%s\n", line);
	cfg = LOAD_OK(text);
	kv = cfg ? conf_get(conf_find(cfg, "module", "m"), "q") : NULL;
	CHECK(kv && strlen(kv->value) == n - 4);
	config_free(cfg);
	line[n] = 'v';
	line[n + 1] = '\0';
	snprintf(text, sizeof(text), "[module m]\n; fine\n%s\n", line);
	EXPECT_ERROR(text, 3, "line too long (max 197 characters); split the "
	    "value with indented continuation lines");
	/* Also a last line without a newline, and a comment line. */
	snprintf(text, sizeof(text), "[module m]\n%s", line);
	EXPECT_ERROR(text, 2, "line too long");
	line[0] = ';';
	snprintf(text, sizeof(text), "[module m]\n%s\n", line);
	EXPECT_ERROR(text, 2, "line too long");

	/* inih's 50-byte name buffers: 49 characters fit, 50 do not. */
	memset(line, 'k', 49);
	line[49] = '\0';
	snprintf(text, sizeof(text), "[module m]\n%s = 1\n  2\n", line);
	cfg = LOAD_OK(text);
	kv = cfg ? conf_get(conf_find(cfg, "module", "m"), line) : NULL;
	CHECK(kv && strcmp(kv->value, "1 2") == 0);
	config_free(cfg);
	snprintf(text, sizeof(text), "[module m]\nk%s = 1\n", line);
	EXPECT_ERROR(text, 2, "longer than 49");
	memcpy(line, "module ", 7);     /* a 49-character header */
	snprintf(text, sizeof(text), "[%s]\n", line);
	CHECK_LOADS(text);
	snprintf(text, sizeof(text), "[server]\n[%sx]\n", line);
	EXPECT_ERROR(text, 2, "longer than 49");

	/* A NUL byte would end the file early for a strlen-based reader. */
	EXPECT_ERROR_LEN("[server]\nworkers = 2\0\nbogus\n", 27, 2, "NUL");
}

static void
test_errors(void)
{
	/* Sections. */
	EXPECT_ERROR("[server]\nworkers = 2\n[bogus]\n", 3, "unknown section [bogus]");
	EXPECT_ERROR("[server]\n[recycle]\n[server]\n", 3,
	    "repeats the section at line 1");
	EXPECT_ERROR("[recycle]\n\n[recycle]\n", 3, "repeats");
	EXPECT_ERROR("[status]\n[status]\n", 2, "repeats");
	EXPECT_ERROR("[route /x]\nmodule = a\n[route /y]\nmodule = b\n"
	    "[route /x]\nmodule = c\n", 5, "[route /x] repeats the section at line 1");
	EXPECT_ERROR("[module m]\n[module n]\n[module m]\n", 3, "[module m] repeats");
	EXPECT_ERROR("[database d]\n[database d]\n", 2, "[database d] repeats");
	CHECK_LOADS("[module a]\n[database a]\n[route /a]\nmodule = a\n"
	    "[route /a/]\nmodule = a\n");
	EXPECT_ERROR("[server]\n\n[route /x]\nmethods = GET\n", 3,
	    "[route /x] needs module = NAME");
	EXPECT_ERROR("[route /x]\nmodule =\n", 2, "module: empty");
	EXPECT_ERROR("[route x]\nmodule = hello\n", 1, "must start with '/'");
	EXPECT_ERROR("[route]\nmodule = hello\n", 1, "needs one argument");
	EXPECT_ERROR("[route /a b]\nmodule = hello\n", 1, "needs one argument");
	EXPECT_ERROR("[module]\n", 1, "needs one argument");
	EXPECT_ERROR("[server main]\n", 1, "takes no argument");
	EXPECT_ERROR("[server\n", 1, "without ']'");
	EXPECT_ERROR("[server] x\n", 1, "after ']'");
	EXPECT_ERROR("[]\n", 1, "unknown section");

	/* Keys and syntax. */
	EXPECT_ERROR("[server]\nworkers = 2\nworkers = 3\n", 3,
	    "'workers' repeats the key at line 2");
	EXPECT_ERROR("[module m]\na = 1\n\na = 2\n", 4, "repeats");
	CHECK_LOADS("[server]\nlisten = 127.0.0.1:1\nlisten = 127.0.0.1:2\n");
	EXPECT_ERROR("workers = 2\n", 1, "outside any section");
	EXPECT_ERROR("[server]\nthis line has no equals sign\n", 2, "syntax");
	EXPECT_ERROR("[server]\n= 5\n", 2, "no key");
	EXPECT_ERROR("[server]\nworkers ; = 2\n", 2, "syntax");

	/* Unknown keys: [server], [recycle] and [status] are refused at load;
	 * [route], [module] and [database] keys wait for their owners. */
	EXPECT_ERROR("[server]\nworkers = 2\n\n\n; note\n\nbogus_key = 1\n", 7,
	    "unknown key 'bogus_key' in [server]");
	EXPECT_ERROR("[recycle]\nmax_rs = 1g\n", 2, "unknown key 'max_rs' in [recycle]");
	EXPECT_ERROR("[status]\npath = /s\nallowed = ::1\n", 3,
	    "unknown key 'allowed' in [status]");
	EXPECT_UNUSED("[route /x]\nmodule = hello\n\nroot = /srv\n", 4,
	    "unknown key 'root' in [route /x]");
	EXPECT_UNUSED("[route /x]\nmodule = hello\n[module hello]\nfoo = 1\n", 4,
	    "unknown key 'foo' in [module hello]");
	EXPECT_UNUSED("[database d]\nhost = x\n", 2, "in [database d]");

	/* [server] values: the message names the key, the range, the value. */
	EXPECT_ERROR("[server]\nworkers = x\n", 2,
	    "workers: expected an integer between 1 and 256, got 'x'");
	EXPECT_ERROR("[server]\nworkers = 0\n", 2, "between 1 and 256");
	EXPECT_ERROR("[server]\nworkers = 257\n", 2, "between 1 and 256");
	EXPECT_ERROR("[server]\nmax_headers = 129\n", 2, "between 1 and 128");
	EXPECT_ERROR("[server]\nmax_body_size = 12q\n", 2,
	    "max_body_size: expected a size");
	EXPECT_ERROR("[server]\nmax_header_size = 512\n", 2,
	    "max_header_size: expected a size between 1k and 1m, got '512'");
	EXPECT_ERROR("[server]\nmax_header_size = 2m\n", 2, "between 1k and 1m");
	EXPECT_ERROR("[server]\nheader_timeout = soon\n", 2,
	    "header_timeout: expected a duration");
	EXPECT_ERROR("[server]\nbody_timeout = 10ms\n", 2, "between 100ms and 24h");
	EXPECT_ERROR("[server]\nbody_timeout = 0.0001s\n", 2,
	    "body_timeout: '0.0001s' is less than 1 ms (write 0 to mean 0)");
	EXPECT_ERROR("[server]\nmax_body_size = 0.0001k\n", 2,
	    "max_body_size: '0.0001k' is less than 1 byte (write 0 to mean 0)");
	EXPECT_ERROR("[server]\nmax_body_size = 2000g\n", 2,
	    "max_body_size: expected a size between 0 and 1024g, got '2000g'");
	EXPECT_ERROR("[server]\nkeepalive_timeout = 2d\n", 2,
	    "keepalive_timeout: expected a duration between 100ms and");
	EXPECT_ERROR("[server]\nlog_level = loud\n", 2,
	    "log_level: expected error, warn, info or debug, got 'loud'");
	EXPECT_ERROR("[server]\npid_file =\n", 2, "pid_file: empty");
	EXPECT_ERROR("[server]\nbacklog = -1\n", 2, "backlog");
	EXPECT_ERROR("[server]\ndefer_accept = 1s\n", 2,
	    "defer_accept: expected on or off, got '1s'");

	/* listen. */
	EXPECT_ERROR("[server]\nlisten = 1.2.3:80\n", 2, "listen: 1.2.3:80: bad IPv4");
	EXPECT_ERROR("[server]\nlisten = 127.0.0.1:99999\n", 2, "bad port");
	EXPECT_ERROR("[server]\nlisten = 127.0.0.1:+80\n", 2, "bad port");
	EXPECT_ERROR("[server]\nlisten = 127.0.0.1:\n", 2, "bad port");
	EXPECT_ERROR("[server]\nlisten = :80\n", 2, "expected host:port");
	EXPECT_ERROR("[server]\nlisten = 8080\n", 2, "expected host:port");
	EXPECT_ERROR("[server]\nlisten = ::1:80\n", 2, "brackets");
	EXPECT_ERROR("[server]\nlisten = [::1]80\n", 2, "[v6-address]:port");
	EXPECT_ERROR("[server]\nlisten = [::g]:80\n", 2, "bad IPv6");
	EXPECT_ERROR("[server]\nlisten = example.com:80\n", 2, "no DNS");
	EXPECT_ERROR("[server]\nlisten = unix:relative.sock\n", 2, "absolute");

	/* [route] methods. */
	EXPECT_ERROR("[route /x]\nmodule = hello\nmethods = GET, FETCH\n", 3,
	    "unknown method 'FETCH'");
	EXPECT_ERROR("[route /x]\nmodule = hello\nmethods = ,\n", 3, "empty");

	/* [recycle]. */
	EXPECT_ERROR("[recycle]\nmax_rss = 100m\nhard_max_rss = 50m\n", 3,
	    "above max_rss");
	EXPECT_ERROR("[recycle]\nmax_rss = 100m\nhard_max_rss = 100m\n", 3,
	    "above max_rss");
	CHECK_LOADS("[recycle]\nmax_rss = 0\nhard_max_rss = 0\nmax_lifetime = 0\n"
	    "max_fragmentation = 0\n");
	CHECK_LOADS("[recycle]\nhard_max_rss = 50m\n");
	EXPECT_ERROR("[recycle]\nmeasure = vsz\n", 2, "uss, rss or pss");
	EXPECT_ERROR("[recycle]\nmax_fragmentation = 1.4\n", 2, "1.5");
	EXPECT_ERROR("[recycle]\nmax_fragmentation = nan\n", 2, "max_fragmentation");
	EXPECT_ERROR("[recycle]\nmax_fragmentation = 1e3\n", 2, "max_fragmentation");
	CHECK_LOADS("[recycle]\nmax_fragmentation = 4\n");
	CHECK_LOADS("[recycle]\nmax_fragmentation = 1.5\n");
	EXPECT_ERROR("[recycle]\nmax_requests = 100\nmax_requests_jitter = 100\n",
	    3, "below max_requests");
	EXPECT_ERROR("[recycle]\nmax_requests_jitter = 5\n", 2, "below max_requests");
	EXPECT_ERROR("[recycle]\nmax_lifetime = 1m\nmax_lifetime_jitter = 2m\n",
	    3, "below max_lifetime");
	EXPECT_ERROR("[recycle]\nsample_interval = 10ms\n", 2, "sample_interval");
	EXPECT_ERROR("[recycle]\nsamples_over = 0\n", 2, "between 1 and 100");
	EXPECT_ERROR("[recycle]\nsamples_over = 101\n", 2, "between 1 and 100");
	EXPECT_ERROR("[recycle]\nmax_concurrent_recycles = 0\n", 2,
	    "max_concurrent_recycles");
	EXPECT_ERROR("[recycle]\ntrim = maybe\n", 2, "trim: expected on or off");

	/* [status]. */
	EXPECT_ERROR("[status]\npath = status\n", 2, "must start with '/'");
	EXPECT_ERROR("[status]\npath = /a//s\n", 2,
	    "path: '/a//s' can never match: requests are routed with runs of "
	    "'/' merged into one");
	/* A route on the status path: at the route, naming the path's line. */
	EXPECT_ERROR("[route /x]\nmodule = hello\n\n[status]\npath = /x\n", 1,
	    "[route /x] takes a path of the status page ([status] path at ");
	EXPECT_ERROR("[status]\npath = /x\n\n[route /x]\nmodule = hello\n", 4,
	    ":2): move one of them");
	EXPECT_ERROR("[status]\npath = /x\n\n[route /x/metrics]\nmodule = hello\n",
	    4, "[route /x/metrics] takes a path of the status page");
	EXPECT_ERROR("[status]\npath = /x\n\n[route /x/]\nmodule = hello\n",
	    4, "[route /x/] takes a path of the status page");
	/* Below it, or beside it: a route like any other. */
	CHECK_LOADS("[status]\npath = /x\n\n[route /x/y]\nmodule = hello\n"
	    "[route /xy]\nmodule = hello\n[route /x/metricsy]\nmodule = hello\n");
	EXPECT_ERROR("[status]\npath = /s\nallow = 10.0.0.0/33\n", 3, "allow");
	EXPECT_ERROR("[status]\nallow = 10.0.0.0/\n", 2, "allow");
	EXPECT_ERROR("[status]\nallow = localhost\n", 2, "'localhost'");
	EXPECT_ERROR("[status]\nallow = ,\n", 2, "allow: empty");
	EXPECT_ERROR("[status]\nroute_stats = 2\n", 2, "route_stats");
	EXPECT_ERROR("[server]\nreal_ip_from = 10.0.0.0/8 proxy\n", 2,
	    "real_ip_from: 'proxy' is not an IP address");
	EXPECT_ERROR("[server]\nreal_ip_from = ,\n", 2, "real_ip_from: empty");
	EXPECT_ERROR("[server]\nreal_ip_header = X-Real-IP\n", 2,
	    "real_ip_header: no effect without real_ip_from");
	EXPECT_ERROR("[server]\nreal_ip_from = unix\nreal_ip_header = X Real\n",
	    3, "real_ip_header: 'X Real' is not a header name");
	{
		struct conf_error err;
		struct molt_config *cfg = config_load_string("t",
		    "[server]\nreal_ip_from = 127.0.0.1 ::1/128 unix\n"
		    "real_ip_header = X-Real-IP\n", &err);

		CHECK(cfg != NULL);
		CHECK(cfg && cfg->server.real_ip_from &&
		    cfg->server.real_ip_from->net.ss_family == AF_INET &&
		    cfg->server.real_ip_from->prefix == 32 &&
		    cfg->server.real_ip_from->next &&
		    cfg->server.real_ip_from->next->net.ss_family == AF_INET6 &&
		    cfg->server.real_ip_from->next->next &&
		    cfg->server.real_ip_from->next->next->net.ss_family == AF_UNIX);
		CHECK(cfg && cfg->server.real_ip_header &&
		    strcmp(cfg->server.real_ip_header, "X-Real-IP") == 0);
		config_free(cfg);
		cfg = config_load_string("t", "[server]\nworkers = 1\n", &err);
		CHECK(cfg && cfg->server.real_ip_from == NULL &&
		    cfg->server.real_ip_header == NULL);
		config_free(cfg);
	}

	/* An empty file (or only comments) is refused, not taken for the
	 * defaults: a reload that read a file being written dropped every
	 * listener and route. */
	EXPECT_ERROR("", 0, "no [section]");
	EXPECT_ERROR("; nothing yet\n\n   \n", 0, "no [section]");
	EXPECT_ERROR("\xef\xbb\xbf", 0, "no [section]");

	/* The first error wins, also across inih's own syntax errors. */
	EXPECT_ERROR("[server]\nworkers = 2\nbroken\n[nope]\n", 3, "syntax");

	/* A file that cannot be read. */
	{
		struct conf_error err;
		char missing[400];

		snprintf(missing, sizeof(missing), "%s/missing.conf", dir);
		CHECK(config_load(missing, &err) == NULL && err.line == 0 &&
		    strcmp(err.file, missing) == 0 && strstr(err.msg, "cannot open"));
		CHECK(config_load(dir, &err) == NULL && err.line == 0 &&
		    strstr(err.msg, "regular file"));
	}
}

static void
test_continuation_long_value(void)
{
	/* A value far beyond one line, the way a long SQL query is written. */
	char text[4096], *p = text;
	struct molt_config *cfg;
	struct conf_kv *kv;
	int i;

	p += sprintf(p, "[route /q]\nmodule = mariadb\nquery = SELECT\n");
	for (i = 0; i < 20; i++)
		p += sprintf(p, "    %0150d\n", i);
	sprintf(p, "[status]\nallow = 127.0.0.1\n  10.0.0.0/8 ::1\n");
	cfg = LOAD_OK(text);
	kv = cfg ? conf_get(route(cfg, "/q")->section, "query") : NULL;
	CHECK(kv && strlen(kv->value) == 6 + 20 * 151 && kv->line == 3);
	CHECK(cfg && cfg->status.allow && cfg->status.allow->next &&
	    cfg->status.allow->next->next && !cfg->status.allow->next->next->next);
	config_free(cfg);
}

static void
test_parsers(void)
{
	long long v;
	int b;

	CHECK(conf_parse_size("16k", &v) == 0 && v == 16384);
	CHECK(conf_parse_size("16K", &v) == 0 && v == 16384);
	CHECK(conf_parse_size("1M", &v) == 0 && v == 1048576);
	CHECK(conf_parse_size("3gb", &v) == 0 && v == 3LL << 30);
	CHECK(conf_parse_size("1.5g", &v) == 0 && v == 3LL << 29);
	CHECK(conf_parse_size("512", &v) == 0 && v == 512);
	CHECK(conf_parse_size("512b", &v) == 0 && v == 512);
	CHECK(conf_parse_size("0", &v) == 0 && v == 0);
	CHECK(conf_parse_size("-1", &v) == -1);
	CHECK(conf_parse_size("k", &v) == -1);
	CHECK(conf_parse_size("", &v) == -1);
	CHECK(conf_parse_size("1.5", &v) == -1);        /* half a byte */
	CHECK(conf_parse_size("1.k", &v) == -1);
	CHECK(conf_parse_size("1.2.3k", &v) == -1);
	CHECK(conf_parse_size("0x10", &v) == -1);
	CHECK(conf_parse_size("1e3", &v) == -1);
	CHECK(conf_parse_size("16kk", &v) == -1);
	CHECK(conf_parse_size("99999999999999999999", &v) == -1);
	CHECK(conf_parse_size("9999999999g", &v) == -1);
	CHECK(conf_parse_duration("250ms", &v) == 0 && v == 250);
	CHECK(conf_parse_duration("250MS", &v) == 0 && v == 250);
	CHECK(conf_parse_duration("1.5s", &v) == 0 && v == 1500);
	CHECK(conf_parse_duration("30", &v) == 0 && v == 30000);
	CHECK(conf_parse_duration("2m", &v) == 0 && v == 120000);
	CHECK(conf_parse_duration("1h", &v) == 0 && v == 3600000);
	CHECK(conf_parse_duration("0", &v) == 0 && v == 0);
	CHECK(conf_parse_duration("5 fortnights", &v) == -1);
	CHECK(conf_parse_duration("1.5.5s", &v) == -1);
	CHECK(conf_parse_duration("inf", &v) == -1);
	CHECK(conf_parse_duration("s", &v) == -1);
	CHECK(conf_parse_duration("-1s", &v) == -1);
	CHECK(conf_parse_duration("99999999999999999h", &v) == -1);
	/* Not zero, but less than one unit: refused, not rounded to 0. */
	errno = 0;
	CHECK(conf_parse_size("0.0001k", &v) == -1 && errno == ERANGE);
	CHECK(conf_parse_duration("0.0001s", &v) == -1 && errno == ERANGE);
	CHECK(conf_parse_duration("0.5ms", &v) == -1);
	CHECK(conf_parse_duration("0.0000000001s", &v) == -1);
	CHECK(conf_parse_size("0.0k", &v) == 0 && v == 0);
	CHECK(conf_parse_duration("0.000s", &v) == 0 && v == 0);
	CHECK(conf_parse_duration("0.001s", &v) == 0 && v == 1);
	CHECK(conf_parse_int("42", &v) == 0 && v == 42);
	CHECK(conf_parse_int("-3", &v) == 0 && v == -3);
	CHECK(conf_parse_int("9223372036854775807", &v) == 0 && v == LLONG_MAX);
	CHECK(conf_parse_int("4 2", &v) == -1);
	CHECK(conf_parse_int("", &v) == -1);
	CHECK(conf_parse_int("- 3", &v) == -1);
	CHECK(conf_parse_int("1k", &v) == -1);
	CHECK(conf_parse_int("99999999999999999999", &v) == -1);
	CHECK(conf_parse_bool("On", &b) == 0 && b == 1);
	CHECK(conf_parse_bool("yes", &b) == 0 && b == 1);
	CHECK(conf_parse_bool("TRUE", &b) == 0 && b == 1);
	CHECK(conf_parse_bool("1", &b) == 0 && b == 1);
	CHECK(conf_parse_bool("off", &b) == 0 && b == 0);
	CHECK(conf_parse_bool("no", &b) == 0 && b == 0);
	CHECK(conf_parse_bool("false", &b) == 0 && b == 0);
	CHECK(conf_parse_bool("0", &b) == 0 && b == 0);
	CHECK(conf_parse_bool("maybe", &b) == -1);
	CHECK(method_bit("GET", 3) == METHOD_GET);
	CHECK(method_bit("OPTIONS", 7) == METHOD_OPTIONS);
	CHECK(method_bit("GETX", 3) == METHOD_GET);    /* length-bounded */
	CHECK(method_bit("get", 3) == METHOD_OTHER);   /* methods are case-sensitive */
	CHECK(method_bit("BREW", 4) == METHOD_OTHER);
}

static void
test_listen_parse(void)
{
	struct listen_addr la;
	char msg[200], path[200];

	CHECK(listen_parse("[::]:0", &la, msg, sizeof(msg)) == 0 &&
	    la.ss.ss_family == AF_INET6 && la.fd == -1 &&
	    la.sslen == sizeof(struct sockaddr_in6));
	CHECK(listen_parse("0.0.0.0:65535", &la, msg, sizeof(msg)) == 0 &&
	    v4port(&la.ss) == 65535);
	CHECK(listen_parse("127.0.0.1:65536", &la, msg, sizeof(msg)) == -1);
	memset(path, 'p', sizeof(path));
	memcpy(path, "unix:/", 6);
	path[5 + sizeof(((struct sockaddr_un *)0)->sun_path)] = '\0';
	CHECK(listen_parse(path, &la, msg, sizeof(msg)) == -1 &&
	    strstr(msg, "shorter"));
	path[5 + sizeof(((struct sockaddr_un *)0)->sun_path) - 1] = '\0';
	CHECK(listen_parse(path, &la, msg, sizeof(msg)) == 0);
}

int
main(void)
{
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 2;
	}
	snprintf(conf_path, sizeof(conf_path), "%s/molt.conf", dir);
	test_embedded();
	test_defaults();
	test_values();
	test_defer_accept();
	test_keyword_case();
	test_syntax();
	test_errors();
	test_continuation_long_value();
	test_parsers();
	test_listen_parse();
	unlink(conf_path);
	rmdir(dir);
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
