/*
 * test_config.c - molt.conf parsing: values, defaults and FILE:LINE errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static int passed, failed;
static char dir[] = "/tmp/molt-test-config-XXXXXX";

#define CHECK(cond) do { if (cond) passed++; else { failed++; \
	fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond); } } while (0)

static char *
write_conf(const char *text)
{
	static char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/molt.conf", dir);
	f = fopen(path, "w");
	if (f == NULL || fputs(text, f) == EOF || fclose(f) != 0) {
		perror(path);
		exit(2);
	}
	return path;
}

/* Expects a load error at `line` whose message contains `frag`. */
static void
expect_error(const char *text, int line, const char *frag, int srcline)
{
	struct conf_error err;
	struct molt_config *cfg = config_load(write_conf(text), &err);
	int ok;

	if (cfg != NULL) {
		/* Some errors are only found once every checker has run. */
		ok = config_check_unused(cfg, &err) == -1;
		config_free(cfg);
		if (!ok) {
			failed++;
			fprintf(stderr, "%s:%d: FAILED: expected an error at line %d\n",
			    __FILE__, srcline, line);
			return;
		}
	}
	ok = err.line == line && strstr(err.msg, frag) != NULL &&
	    strstr(err.file, "molt.conf") != NULL;
	if (ok) {
		passed++;
	} else {
		failed++;
		fprintf(stderr, "%s:%d: FAILED: want line %d '%s', got %s:%d: %s\n",
		    __FILE__, srcline, line, frag, err.file, err.line, err.msg);
	}
}
#define EXPECT_ERROR(t, l, f) expect_error(t, l, f, __LINE__)

static struct molt_config *
load_ok(const char *text)
{
	struct conf_error err;
	struct molt_config *cfg = config_load(write_conf(text), &err);

	if (cfg == NULL)
		fprintf(stderr, "unexpected error: %s:%d: %s\n", err.file, err.line,
		    err.msg);
	return cfg;
}

static void
test_embedded(void)
{
	struct conf_error err;
	struct molt_config *cfg = config_load(NULL, &err);
	struct route_conf *r;
	size_t last = (size_t)-1;

	CHECK(cfg != NULL);
	if (cfg == NULL)
		return;
	CHECK(strcmp(cfg->path, "(embedded)") == 0);
	CHECK(cfg->server.listen != NULL &&
	    strcmp(cfg->server.listen->text, "127.0.0.1:8080") == 0);
	CHECK(cfg->status.path && strcmp(cfg->status.path, "/molt/status") == 0);
	CHECK(cfg->status.allow != NULL);
	CHECK(cfg->recycle.max_rss == 256LL * 1024 * 1024);
	for (r = cfg->routes; r != NULL; r = r->next) {
		CHECK(r->prefix_len <= last);   /* longest prefix first */
		last = r->prefix_len;
	}
	CHECK(strstr(config_default_text, "@WWW@") != NULL);
	config_free(cfg);
}

static void
test_values(void)
{
	struct molt_config *cfg;
	struct conf_kv *kv;
	struct conf_section *s;

	cfg = load_ok(
	    "; comment\n"
	    "[server]\n"
	    "listen = 127.0.0.1:0\n"
	    "listen = [::1]:8081   ; inline comment\n"
	    "listen = unix:/tmp/molt.sock\n"
	    "workers = 3\n"
	    "max_body_size = 2m\n"
	    "header_timeout = 250ms\n"
	    "keepalive_timeout = 2m\n"
	    "log_level = debug\n"
	    "[recycle]\n"
	    "max_rss = 1.5g\n"
	    "hard_max_rss = 2g\n"
	    "max_fragmentation = 2.5\n"
	    "trim = off\n"
	    "measure = pss\n"
	    "max_requests = 1000\n"
	    "max_requests_jitter = 100\n"
	    "[status]\n"
	    "path = /st\n"
	    "allow = 10.0.0.0/8, ::1\n"
	    "[route /a]\n"
	    "module = hello\n"
	    "methods = get, post\n"
	    "[route /a/b]\n"
	    "module = echo\n"
	    "[module hello]\n"
	    "text = first part\n"
	    "  second part\n"
	    "\tthird\n");
	CHECK(cfg != NULL);
	if (cfg == NULL)
		return;
	CHECK(cfg->server.workers == 3);
	CHECK(cfg->server.max_body_size == 2 * 1024 * 1024);
	CHECK(cfg->server.header_timeout_ms == 250);
	CHECK(cfg->server.keepalive_timeout_ms == 120000);
	CHECK(cfg->server.log_level == MOLT_LOG_DEBUG);
	CHECK(cfg->server.listen && cfg->server.listen->next &&
	    cfg->server.listen->next->next &&
	    cfg->server.listen->next->ss.ss_family == AF_INET6 &&
	    cfg->server.listen->next->next->ss.ss_family == AF_UNIX);
	CHECK(cfg->recycle.max_rss == 1536LL * 1024 * 1024);
	CHECK(cfg->recycle.max_fragmentation == 2.5);
	CHECK(cfg->recycle.trim == 0);
	CHECK(cfg->recycle.measure == MEASURE_PSS);
	CHECK(cfg->recycle.max_requests_jitter == 100);
	CHECK(cfg->status.allow && cfg->status.allow->prefix == 8 &&
	    cfg->status.allow->next && cfg->status.allow->next->prefix == 128);
	CHECK(cfg->routes && strcmp(cfg->routes->prefix, "/a/b") == 0);
	CHECK(cfg->routes && cfg->routes->next &&
	    cfg->routes->next->methods == (METHOD_GET | METHOD_HEAD | METHOD_POST));
	CHECK(cfg->routes && cfg->routes->next &&
	    cfg->routes->next->module_section != NULL);
	s = conf_find(cfg, "module", "hello");
	kv = conf_get(s, "text");
	CHECK(kv && strcmp(kv->value, "first part second part third") == 0);
	CHECK(kv && kv->line == 28);
	/* conf_get above claimed the only module key: nothing is left over. */
	{
		struct conf_error err;
		CHECK(config_check_unused(cfg, &err) == 0);
	}
	config_free(cfg);
}

static void
test_errors(void)
{
	char longline[400];

	EXPECT_ERROR("[server]\nworkers = 2\n[bogus]\n", 3, "unknown section");
	EXPECT_ERROR("[server]\nworkers = 2\n\n\nbogus_key = 1\n", 5, "unknown key 'bogus_key'");
	EXPECT_ERROR("[server]\nworkers = lots\n", 2, "workers");
	EXPECT_ERROR("[server]\nworkers = 0\n", 2, "between 1 and 256");
	EXPECT_ERROR("[server]\nmax_body_size = 12q\n", 2, "size");
	EXPECT_ERROR("[server]\nheader_timeout = soon\n", 2, "duration");
	EXPECT_ERROR("[server]\nlisten = 1.2.3:80\n", 2, "listen");
	EXPECT_ERROR("[server]\nlisten = 127.0.0.1:99999\n", 2, "port");
	EXPECT_ERROR("[server]\nworkers = 2\nworkers = 3\n", 3, "repeats");
	EXPECT_ERROR("[server]\n[recycle]\n[server]\n", 3, "repeats the section at line 1");
	EXPECT_ERROR("[server]\n\n[route /x]\nmethods = GET\n", 3, "needs module");
	EXPECT_ERROR("[route x]\nmodule = hello\n", 1, "must start with '/'");
	EXPECT_ERROR("[route /x]\nmodule = hello\nmethods = GET, FETCH\n", 3, "FETCH");
	EXPECT_ERROR("[recycle]\nmax_rss = 100m\nhard_max_rss = 50m\n", 3, "above max_rss");
	EXPECT_ERROR("[recycle]\nmeasure = vsz\n", 2, "uss, rss or pss");
	EXPECT_ERROR("[recycle]\nmax_fragmentation = 1.1\n", 2, "1.5");
	EXPECT_ERROR("[status]\npath = /s\nallow = 10.0.0.0/33\n", 3, "allow");
	EXPECT_ERROR("[server]\nlog_level = loud\n", 2, "log_level");
	EXPECT_ERROR("workers = 2\n", 1, "outside any section");
	EXPECT_ERROR("[server]\nthis line has no equals sign\n", 2, "syntax");
	EXPECT_ERROR("[server\n", 1, "without ']'");
	EXPECT_ERROR("[server]\n[module averyveryveryveryveryveryveryveryveryverylongname]\n",
	    2, "longer than");

	/* A line inih would split: caught with its number and the fix. */
	memset(longline, 'x', sizeof(longline));
	memcpy(longline, "[route /q]\nmodule = mariadb\nquery = ", 36);
	longline[sizeof(longline) - 2] = '\n';
	longline[sizeof(longline) - 1] = '\0';
	EXPECT_ERROR(longline, 3, "continuation");
}

static void
test_parsers(void)
{
	long long v;
	int b;

	CHECK(conf_parse_size("16k", &v) == 0 && v == 16384);
	CHECK(conf_parse_size("1M", &v) == 0 && v == 1048576);
	CHECK(conf_parse_size("3gb", &v) == 0 && v == 3LL << 30);
	CHECK(conf_parse_size("-1", &v) == -1);
	CHECK(conf_parse_size("k", &v) == -1);
	CHECK(conf_parse_duration("1.5s", &v) == 0 && v == 1500);
	CHECK(conf_parse_duration("30", &v) == 0 && v == 30000);
	CHECK(conf_parse_duration("1h", &v) == 0 && v == 3600000);
	CHECK(conf_parse_duration("5 fortnights", &v) == -1);
	CHECK(conf_parse_int("42", &v) == 0 && v == 42);
	CHECK(conf_parse_int("4 2", &v) == -1);
	CHECK(conf_parse_int("99999999999999999999", &v) == -1);
	CHECK(conf_parse_bool("On", &b) == 0 && b == 1);
	CHECK(conf_parse_bool("false", &b) == 0 && b == 0);
	CHECK(conf_parse_bool("maybe", &b) == -1);
	CHECK(method_bit("GET", 3) == METHOD_GET);
	CHECK(method_bit("BREW", 4) == METHOD_OTHER);
}

int
main(void)
{
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 2;
	}
	test_embedded();
	test_values();
	test_errors();
	test_parsers();
	{
		char path[300];
		snprintf(path, sizeof(path), "%s/molt.conf", dir);
		unlink(path);
		rmdir(dir);
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
