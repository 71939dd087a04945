/*
 * test_http_parse.c - table-driven tests for src/http_parse.c.
 *
 * No framework: each check that fails prints one line, and the last line is
 * "N passed, M failed".  The exit status is 0 only when nothing failed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http_parse.h"

static int passed, failed;

#define CHECK(cond, what, ...) do {					\
	if (cond) {							\
		passed++;						\
	} else {							\
		failed++;						\
		printf("FAIL %s:%d: " what "\n", __FILE__, __LINE__,	\
		    __VA_ARGS__);					\
	}								\
} while (0)

#define S(lit)  lit, sizeof(lit) - 1
#define OK      1       /* expect the whole input to be one head */
#define NOFLAGS 0x1000  /* flags not checked */

static const struct http_limits lim_default = { 8192, 2048, 64 };

struct head_case {
	const char *name;
	const char *in;
	size_t      len;
	int         want;   /* OK or -STATUS */
	unsigned    flags;  /* checked when want == OK unless NOFLAGS */
};

static const struct head_case head_cases[] = {
	/* --- accepted --- */
	{ "minimal 1.1", S("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), OK, 0 },
	{ "wrk", S("GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"), OK, 0 },
	{ "1.0 no host", S("GET / HTTP/1.0\r\n\r\n"), OK, HTTP_F_CLOSE },
	{ "1.0 keep-alive", S("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"),
	    OK, HTTP_F_KEEPALIVE },
	{ "1.1 close", S("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
	    OK, HTTP_F_CLOSE },
	{ "conn list", S("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, , CLOSE\r\n\r\n"),
	    OK, HTTP_F_CLOSE },
	{ "conn ka list", S("GET / HTTP/1.1\r\nHost: a\r\nConnection: foo,keep-alive\r\n\r\n"),
	    OK, HTTP_F_KEEPALIVE },
	{ "conn both", S("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n"),
	    OK, HTTP_F_KEEPALIVE | HTTP_F_CLOSE },
	{ "conn not token", S("GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n"),
	    OK, 0 },
	{ "HEAD", S("HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n"), OK, HTTP_F_HEAD },
	{ "head lowercase is not HEAD", S("head /x HTTP/1.1\r\nHost: a\r\n\r\n"), OK, 0 },
	{ "OPTIONS *", S("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), OK, 0 },
	{ "custom method", S("M-SEARCH /x HTTP/1.1\r\nHost: a\r\n\r\n"), OK, 0 },
	{ "absolute", S("GET http://ex.com/a?b HTTP/1.1\r\nHost: ex.com\r\n\r\n"), OK,
	    HTTP_F_ABSOLUTE },
	{ "absolute no path", S("GET http://ex.com HTTP/1.1\r\nHost: ex.com\r\n\r\n"), OK,
	    HTTP_F_ABSOLUTE },
	{ "absolute https query", S("GET HTTPS://ex.com:443?x=1 HTTP/1.1\r\nHost: ex.com\r\n\r\n"),
	    OK, HTTP_F_ABSOLUTE },
	{ "absolute ipv6", S("GET http://[::1]:80/x HTTP/1.1\r\nHost: a\r\n\r\n"), OK,
	    HTTP_F_ABSOLUTE },
	{ "leading CRLF", S("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), OK, 0 },
	{ "content-length", S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"),
	    OK, HTTP_F_HAS_LENGTH },
	{ "CL zero", S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"),
	    OK, HTTP_F_HAS_LENGTH },
	{ "CL list same", S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 , 5,5\r\n\r\n"),
	    OK, HTTP_F_HAS_LENGTH },
	{ "CL repeated same", S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 005\r\n\r\n"),
	    OK, HTTP_F_HAS_LENGTH },
	{ "CL int64 max", S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n"),
	    OK, HTTP_F_HAS_LENGTH },
	{ "chunked", S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
	    OK, HTTP_F_CHUNKED },
	{ "Chunked case", S("POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding:  CHUNKED \r\n\r\n"),
	    OK, HTTP_F_CHUNKED },
	{ "not TE name", S("POST / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: gzip\r\n\r\n"),
	    OK, 0 },
	{ "expect", S("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n"),
	    OK, HTTP_F_CONTINUE | HTTP_F_HAS_LENGTH },
	{ "expect in 1.0 ignored", S("PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n"),
	    OK, HTTP_F_CLOSE },
	{ "empty value", S("GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\n\r\n"), OK, 0 },
	{ "empty host", S("GET / HTTP/1.1\r\nHost:\r\n\r\n"), OK, 0 },
	{ "ipv6 host", S("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"), OK, 0 },
	{ "ipv4 mapped host", S("GET / HTTP/1.1\r\nHost: [::ffff:10.0.0.1]\r\n\r\n"), OK, 0 },
	{ "ipvfuture host", S("GET / HTTP/1.1\r\nHost: [v1.fe80::a+b]:80\r\n\r\n"), OK, 0 },
	{ "host empty port", S("GET / HTTP/1.1\r\nHost: a:\r\n\r\n"), OK, 0 },
	{ "host trailing dot", S("GET / HTTP/1.1\r\nHost: ex.com.:80\r\n\r\n"), OK, 0 },
	{ "host sub-delims", S("GET / HTTP/1.1\r\nHost: a,b;c=d\r\n\r\n"), OK, 0 },
	{ "expect empty", S("PUT / HTTP/1.1\r\nHost: a\r\nExpect:\r\nContent-Length: 1\r\n\r\n"),
	    OK, HTTP_F_HAS_LENGTH },
	{ "tab in value", S("GET / HTTP/1.1\r\nHost: a\r\nX: a\tb\r\n\r\n"), OK, 0 },
	{ "obs-text value", S("GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n"), OK, 0 },
	{ "utf-8 target", S("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n"), OK, 0 },
	{ "odd target chars", S("GET /a|b{c}\"<>^`\\ HTTP/1.1\r\nHost: a\r\n\r\n"), OK, 0 },
	{ "token chars name", S("GET / HTTP/1.1\r\nHost: a\r\n!#$%&'*+-.^_`|~09aZ: 1\r\n\r\n"),
	    OK, 0 },
	{ "long value", S("GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n\r\n"),
	    OK, 0 },
	{ "pipelined first", S("GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\n"), 28, 0 },

	/* --- request line --- */
	{ "empty method", S(" / HTTP/1.1\r\nHost: a\r\n\r\n"), -400, 0 },
	{ "bad method char", S("GE(T / HTTP/1.1\r\nHost: a\r\n\r\n"), -400, 0 },
	{ "double space", S("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), -400, 0 },
	{ "tab separator", S("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"), -400, 0 },
	{ "relative target", S("GET a HTTP/1.1\r\nHost: a\r\n\r\n"), -400, 0 },
	{ "star not options", S("GET * HTTP/1.1\r\nHost: a\r\n\r\n"), -400, 0 },
	{ "star path", S("OPTIONS */x HTTP/1.1\r\nHost: a\r\n\r\n"), -400, 0 },
	{ "ftp scheme", S("GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n"), -400, 0 },
	{ "empty authority", S("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n"), -400, 0 },
	{ "authority port only", S("GET http://:80/x HTTP/1.1\r\nHost: a\r\n\r\n"), -400, 0 },
	{ "authority two ports", S("GET http://a:1:2/x HTTP/1.1\r\nHost: a\r\n\r\n"), -400, 0 },
	{ "authority empty label", S("GET http://a..b/x HTTP/1.1\r\nHost: a\r\n\r\n"), -400, 0 },
	{ "userinfo", S("GET http://u@h/ HTTP/1.1\r\nHost: a\r\n\r\n"), -400, 0 },
	{ "authority-form", S("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n"), -400, 0 },
	{ "ctl in target", S("GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n"), -400, 0 },
	{ "del in target", S("GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n"), -400, 0 },
	{ "nul in target", S("GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n"), -400, 0 },
	{ "tab in target", S("GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n"), -400, 0 },
	{ "space in target", S("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"), -400, 0 },
	{ "fragment in path", S("GET /a#/../b HTTP/1.1\r\nHost: a\r\n\r\n"), -400, 0 },
	{ "fragment in query", S("GET /a?b#c HTTP/1.1\r\nHost: a\r\n\r\n"), -400, 0 },
	{ "fragment absolute", S("GET http://a/b#c HTTP/1.1\r\nHost: a\r\n\r\n"), -400, 0 },
	{ "http/0.9", S("GET /\r\n\r\n"), -400, 0 },
	{ "version 1.2 as 1.1", S("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), OK, 0 },
	{ "version 1.9 needs host", S("GET / HTTP/1.9\r\n\r\n"), -400, 0 },
	{ "version 2.0", S("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), -505, 0 },
	{ "version 0.9", S("GET / HTTP/0.9\r\n\r\n"), -505, 0 },
	{ "h2 preface", S("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), -505, 0 },
	{ "version lower", S("GET / http/1.1\r\nHost: a\r\n\r\n"), -400, 0 },
	{ "version x", S("GET / HTTP/1.x\r\nHost: a\r\n\r\n"), -400, 0 },
	{ "version 11", S("GET / HTTP/11\r\nHost: a\r\n\r\n"), -400, 0 },
	{ "version 1.10", S("GET / HTTP/1.10\r\nHost: a\r\n\r\n"), -400, 0 },
	{ "version trailing sp", S("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), -400, 0 },
	{ "request line bare LF", S("GET / HTTP/1.1\nHost: a\r\n\r\n"), -400, 0 },
	{ "request line bare CR", S("GET / HTTP/1.1\rHost: a\r\n\r\n"), -400, 0 },
	{ "leading bare LF", S("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), -400, 0 },
	{ "leading bare CR", S("\rGET / HTTP/1.1\r\nHost: a\r\n\r\n"), -400, 0 },
	{ "garbage", S("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), -400, 0 },

	/* --- Host: host[:port], RFC 9110 7.2 --- */
	{ "host two ports", S("GET / HTTP/1.1\r\nHost: x:80:90\r\n\r\n"), -400, 0 },
	{ "host port not digits", S("GET / HTTP/1.1\r\nHost: x:abc\r\n\r\n"), -400, 0 },
	{ "host port only", S("GET / HTTP/1.1\r\nHost: :80\r\n\r\n"), -400, 0 },
	{ "host bracket open", S("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n"), -400, 0 },
	{ "host bracket junk", S("GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n"), -400, 0 },
	{ "host bracket not ip", S("GET / HTTP/1.1\r\nHost: [example]\r\n\r\n"), -400, 0 },
	{ "host bracket inside", S("GET / HTTP/1.1\r\nHost: a[::1]\r\n\r\n"), -400, 0 },
	{ "host empty label", S("GET / HTTP/1.1\r\nHost: a..b\r\n\r\n"), -400, 0 },
	{ "host slash", S("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), -400, 0 },
	{ "host userinfo", S("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n"), -400, 0 },

	/* --- header syntax --- */
	{ "space before colon", S("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), -400, 0 },
	{ "tab before colon", S("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"), -400, 0 },
	{ "empty name", S("GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n"), -400, 0 },
	{ "no colon", S("GET / HTTP/1.1\r\nHost: a\r\nFoo\r\n\r\n"), -400, 0 },
	{ "bad name char", S("GET / HTTP/1.1\r\nHost: a\r\nX(y): 1\r\n\r\n"), -400, 0 },
	{ "name with slash", S("GET / HTTP/1.1\r\nHost: a\r\nX/y: 1\r\n\r\n"), -400, 0 },
	{ "nul in name", S("GET / HTTP/1.1\r\nHost: a\r\nX\0Y: 1\r\n\r\n"), -400, 0 },
	{ "8bit in name", S("GET / HTTP/1.1\r\nHost: a\r\nX\xc3\xa9: 1\r\n\r\n"), -400, 0 },
	{ "obs-fold", S("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"), -400, 0 },
	{ "obs-fold tab", S("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n"), -400, 0 },
	{ "ws before first header", S("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), -400, 0 },
	{ "bare CR in value", S("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n"), -400, 0 },
	{ "bare CR end value", S("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\r\n\r\n"), -400, 0 },
	{ "bare LF header", S("GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n"), -400, 0 },
	{ "bare LF end", S("GET / HTTP/1.1\r\nHost: a\r\n\n"), -400, 0 },
	{ "bare CR end", S("GET / HTTP/1.1\r\nHost: a\r\n\rX"), -400, 0 },
	{ "nul in value", S("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n"), -400, 0 },
	{ "ctl in value", S("GET / HTTP/1.1\r\nHost: a\r\nX: a\x0b" "b\r\n\r\n"), -400, 0 },
	{ "del in value", S("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n"), -400, 0 },
	{ "esc in long value", S("GET / HTTP/1.1\r\nHost: a\r\nX: aaaaaaaaaaaaaaaaaaaaaaa\x1b" "aaaaaaaaaaaaa\r\n\r\n"),
	    -400, 0 },

	/* --- Host --- */
	{ "missing host", S("GET / HTTP/1.1\r\n\r\n"), -400, 0 },
	{ "two hosts", S("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), -400, 0 },
	{ "two hosts 1.0", S("GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"), -400, 0 },
	{ "host with space", S("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), -400, 0 },
	{ "host with slash", S("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), -400, 0 },
	{ "host userinfo", S("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n"), -400, 0 },
	{ "absolute needs host", S("GET http://a/ HTTP/1.1\r\n\r\n"), -400, 0 },

	/* --- Content-Length --- */
	{ "CL alpha", S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n"), -400, 0 },
	{ "CL negative", S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"), -400, 0 },
	{ "CL plus", S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n"), -400, 0 },
	{ "CL hex", S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n"), -400, 0 },
	{ "CL empty", S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n"), -400, 0 },
	{ "CL space inside", S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 0\r\n\r\n"), -400, 0 },
	{ "CL list differ", S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n"), -400, 0 },
	{ "CL lines differ", S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
	    -400, 0 },
	{ "CL empty element", S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1,,1\r\n\r\n"), -400, 0 },
	{ "CL trailing comma", S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1,\r\n\r\n"), -400, 0 },
	{ "CL overflow", S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n"),
	    -400, 0 },
	{ "CL overflow 2^64", S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n"),
	    -400, 0 },
	{ "CL huge", S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999999\r\n\r\n"),
	    -400, 0 },

	/* --- Transfer-Encoding (smuggling corpus) --- */
	{ "CL then TE", S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"),
	    -400, 0 },
	{ "TE then CL", S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"),
	    -400, 0 },
	{ "TE in 1.0", S("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), -400, 0 },
	{ "TE chunked, identity", S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n"),
	    -400, 0 },
	{ "TE chunked then gzip line", S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n"),
	    -400, 0 },
	{ "TE chunked twice", S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
	    -400, 0 },
	{ "TE chunked two lines", S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
	    -400, 0 },
	{ "TE xchunked", S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n"), -501, 0 },
	{ "TE chunkedx", S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunkedx\r\n\r\n"), -501, 0 },
	{ "TE identity", S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n"), -501, 0 },
	{ "TE gzip, chunked", S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
	    -501, 0 },
	{ "TE params", S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n"), -400, 0 },
	{ "TE empty", S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n"), -400, 0 },
	{ "TE chunked then empty line", S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding:\r\n\r\n"),
	    -400, 0 },
	{ "TE commas then chunked line", S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , ,\r\nTransfer-Encoding: chunked\r\n\r\n"),
	    -400, 0 },
	{ "TE list with empty element", S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked\r\n\r\n"),
	    OK, HTTP_F_CHUNKED },
	{ "TE quoted", S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n"), -400, 0 },
	{ "TE vtab", S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\x0b\r\n\r\n"), -400, 0 },
	{ "TE space colon", S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n"), -400, 0 },
	{ "TE obs-fold", S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n"), -400, 0 },
	{ "TE bare LF", S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\n\r\n"), -400, 0 },

	/* --- Expect --- */
	{ "expect other", S("PUT / HTTP/1.1\r\nHost: a\r\nExpect: foo\r\n\r\n"), -417, 0 },
	{ "expect list", S("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue, foo\r\n\r\n"), -417, 0 },
	{ "expect 1.0 other", S("PUT / HTTP/1.0\r\nExpect: 200-ok\r\n\r\n"), -417, 0 },
	{ "400 beats 417", S("PUT / HTTP/1.1\r\nExpect: foo\r\n\r\n"), -400, 0 },
};

static int
in_buf(const char *p, size_t n, const char *buf, size_t len)
{
	return p == NULL || (p >= buf && p + n <= buf + len);
}

static void
test_head_cases(void)
{
	static struct http_head h;
	size_t i, k;
	int r, want, rp;

	for (i = 0; i < sizeof(head_cases) / sizeof(head_cases[0]); i++) {
		const struct head_case *c = &head_cases[i];

		want = c->want == OK ? (int)c->len : c->want;
		r = http_parse_head(c->in, c->len, &lim_default, &h);
		CHECK(r == want, "%s: got %d, want %d", c->name, r, want);
		if (r > 0 && want > 0 && !(c->flags & NOFLAGS))
			CHECK(h.flags == c->flags, "%s: flags %#x, want %#x",
			    c->name, h.flags, c->flags);
		if (r > 0) {
			int inside = in_buf(h.method, h.method_len, c->in, c->len) &&
			    in_buf(h.target, h.target_len, c->in, c->len) &&
			    in_buf(h.path, h.path_len, c->in, c->len) &&
			    in_buf(h.query, h.query_len, c->in, c->len) &&
			    in_buf(h.host, h.host_len, c->in, c->len);
			CHECK(inside, "%s: pointers outside buffer", c->name);
		}
		/*
		 * Every proper prefix must be "incomplete", or for a bad
		 * request the same error found early; never a success.
		 */
		for (k = 0; k < c->len && (r > 0 ? k < (size_t)r : 1); k++) {
			rp = http_parse_head(c->in, k, &lim_default, &h);
			if (!(rp == 0 || (want < 0 && rp == want))) {
				CHECK(0, "%s: prefix %zu got %d", c->name, k, rp);
				break;
			}
		}
		if (k == c->len || (r > 0 && k == (size_t)r))
			passed++;
	}
}

static int
eq(const char *p, size_t n, const char *want)
{
	if (p == NULL)
		return want == NULL;
	return want != NULL && strlen(want) == n && memcmp(p, want, n) == 0;
}

static void
test_head_fields(void)
{
	static struct http_head h;
	const char *req;
	int r;

	req = "POST /a/b%20c?x=1&y=2?z HTTP/1.1\r\n"
	    "Host:  example.com:8080 \t\r\n"
	    "X-Empty: \r\n"
	    "X-Pad:\t spaced  value\t \r\n"
	    "Content-Length: 12\r\n\r\nbody";
	r = http_parse_head(req, strlen(req), &lim_default, &h);
	CHECK(r == (int)strlen(req) - 4, "fields: r=%d", r);
	CHECK(eq(h.method, h.method_len, "POST"), "method %.*s",
	    (int)h.method_len, h.method);
	CHECK(eq(h.target, h.target_len, "/a/b%20c?x=1&y=2?z"), "target %s", "");
	CHECK(eq(h.path, h.path_len, "/a/b%20c"), "path %.*s", (int)h.path_len, h.path);
	CHECK(eq(h.query, h.query_len, "x=1&y=2?z"), "query %.*s",
	    (int)h.query_len, h.query);
	CHECK(eq(h.host, h.host_len, "example.com:8080"), "host %.*s",
	    (int)h.host_len, h.host);
	CHECK(h.version == 11, "version %d", h.version);
	CHECK(h.content_length == 12, "cl %llu", (unsigned long long)h.content_length);
	CHECK(h.nheaders == 4, "nheaders %zu", h.nheaders);
	CHECK(eq(h.headers[1].name, h.headers[1].name_len, "X-Empty") &&
	    h.headers[1].value_len == 0, "empty value %zu", h.headers[1].value_len);
	CHECK(eq(h.headers[2].value, h.headers[2].value_len, "spaced  value"),
	    "ows value '%.*s'", (int)h.headers[2].value_len, h.headers[2].value);

	req = "GET /nq HTTP/1.0\r\n\r\n";
	r = http_parse_head(req, strlen(req), &lim_default, &h);
	CHECK(r > 0 && eq(h.path, h.path_len, "/nq") && h.query == NULL &&
	    h.query_len == 0 && h.host == NULL && h.version == 10,
	    "no query: r=%d", r);

	req = "GET /q? HTTP/1.1\r\nHost: a\r\n\r\n";
	r = http_parse_head(req, strlen(req), &lim_default, &h);
	CHECK(r > 0 && eq(h.path, h.path_len, "/q") && h.query != NULL &&
	    h.query_len == 0, "empty query: r=%d", r);

	req = "GET http://Ex.com:81/p/q?s=1 HTTP/1.1\r\nHost: other\r\n\r\n";
	r = http_parse_head(req, strlen(req), &lim_default, &h);
	CHECK(r > 0 && eq(h.path, h.path_len, "/p/q") &&
	    eq(h.query, h.query_len, "s=1") && eq(h.host, h.host_len, "Ex.com:81"),
	    "absolute-form: r=%d host %.*s", r, (int)h.host_len, h.host);

	req = "GET http://ex.com?s=1 HTTP/1.1\r\nHost: ex.com\r\n\r\n";
	r = http_parse_head(req, strlen(req), &lim_default, &h);
	CHECK(r > 0 && eq(h.path, h.path_len, "/") && eq(h.query, h.query_len, "s=1") &&
	    h.path > req && h.path < req + r,
	    "absolute no path: r=%d path %.*s", r, (int)h.path_len, h.path);

	req = "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n";
	r = http_parse_head(req, strlen(req), &lim_default, &h);
	CHECK(r > 0 && eq(h.path, h.path_len, "*") && h.query == NULL,
	    "asterisk: r=%d", r);
}

static void
test_pipeline(void)
{
	static struct http_head h;
	const char *req =
	    "\r\nGET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
	    "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
	    "GET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
	size_t len = strlen(req), off = 0;
	int r;

	r = http_parse_head(req, len, &lim_default, &h);
	CHECK(r == 30 && eq(h.path, h.path_len, "/1"), "pipe 1: r=%d", r);
	off += (size_t)r;
	r = http_parse_head(req + off, len - off, &lim_default, &h);
	CHECK(r > 0 && eq(h.path, h.path_len, "/2") && h.content_length == 3,
	    "pipe 2: r=%d", r);
	off += (size_t)r;
	CHECK(memcmp(req + off, "abc", 3) == 0, "pipe body at %zu", off);
	off += 3;
	r = http_parse_head(req + off, len - off, &lim_default, &h);
	CHECK(r > 0 && eq(h.path, h.path_len, "/3") && (h.flags & HTTP_F_CLOSE) &&
	    off + (size_t)r == len, "pipe 3: r=%d", r);
}

static void
test_limits(void)
{
	static struct http_head h;
	static char buf[20000];
	struct http_limits lim = { 200, 50, 3 };
	const char *req;
	size_t n;
	int r;

	/* target exactly max_uri is fine, one more is 414 */
	n = (size_t)snprintf(buf, sizeof(buf), "GET /%049d HTTP/1.1\r\nHost: a\r\n\r\n", 0);
	r = http_parse_head(buf, n, &lim, &h);
	CHECK(r == (int)n, "uri at limit: %d", r);
	n = (size_t)snprintf(buf, sizeof(buf), "GET /%050d HTTP/1.1\r\nHost: a\r\n\r\n", 0);
	r = http_parse_head(buf, n, &lim, &h);
	CHECK(r == -414, "uri over limit: %d", r);
	/* incomplete and already too long: 414 without waiting */
	r = http_parse_head(buf, 4 + 51, &lim, &h);
	CHECK(r == -414, "incomplete long uri: %d", r);
	r = http_parse_head(buf, 4 + 50, &lim, &h);
	CHECK(r == 0, "incomplete uri at limit: %d", r);

	/* headers: 3 fine, 4 is 431, and that is known before the line ends */
	req = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
	r = http_parse_head(req, strlen(req), &lim, &h);
	CHECK(r == (int)strlen(req) && h.nheaders == 3, "3 headers: %d", r);
	req = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
	r = http_parse_head(req, strlen(req), &lim, &h);
	CHECK(r == -431, "4 headers: %d", r);
	r = http_parse_head(req, strlen(req) - 6, &lim, &h);
	CHECK(r == -431, "4 headers early: %d", r);

	/* head size: complete at exactly max_head is fine */
	n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\nX: %0*d\r\n\r\n",
	    200 - 32, 0);
	CHECK(n == 200, "setup %zu", n);
	r = http_parse_head(buf, n, &lim, &h);
	CHECK(r == 200, "head at limit: %d", r);
	/* one more byte of value: 431, complete or not */
	n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\nX: %0*d\r\n\r\n",
	    200 - 31, 0);
	r = http_parse_head(buf, n, &lim, &h);
	CHECK(r == -431, "head over limit: %d", r);
	r = http_parse_head(buf, 200, &lim, &h);
	CHECK(r == -431, "incomplete at max_head: %d", r);
	r = http_parse_head(buf, 199, &lim, &h);
	CHECK(r == 0, "incomplete below max_head: %d", r);
	/* endless leading CRLFs are bounded too */
	for (n = 0; n < 300; n += 2)
		memcpy(buf + n, "\r\n", 2);
	r = http_parse_head(buf, 300, &lim, &h);
	CHECK(r == -431, "endless CRLF: %d", r);
	/* a giant method with no space */
	memset(buf, 'A', 300);
	r = http_parse_head(buf, 300, &lim, &h);
	CHECK(r == -431, "endless method: %d", r);

	/* max_headers above the hard array size is clamped */
	lim.max_head = sizeof(buf);
	lim.max_uri = 100;
	lim.max_headers = 100000;
	n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\n");
	for (r = 0; r < HTTP_MAX_HEADERS_HARD; r++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X: %d\r\n", r);
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n");
	r = http_parse_head(buf, n, &lim, &h);
	CHECK(r == -431, "hard header limit: %d", r);

	/* no headers allowed at all still parses a bare 1.0 request */
	lim.max_headers = 0;
	req = "GET / HTTP/1.0\r\n\r\n";
	r = http_parse_head(req, strlen(req), &lim, &h);
	CHECK(r == (int)strlen(req), "zero headers: %d", r);
}

/* ------------------------------------------------------------ chunked */

struct chunk_case {
	const char *name;
	const char *in;
	size_t      len;
	int         want;     /* 1 or -400 */
	const char *body;     /* when want == 1 */
	size_t      used;     /* input consumed when want == 1 */
};

#define CH_OK(name, in, body, used)  { name, S(in), 1, body, used }
#define CH_BAD(name, in)             { name, S(in), -400, NULL, 0 }

static const struct chunk_case chunk_cases[] = {
	CH_OK("simple", "5\r\nhello\r\n0\r\n\r\n", "hello", 15),
	CH_OK("two", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world", 26),
	CH_OK("hex", "a\r\n0123456789\r\nA\r\nabcdefghij\r\n0\r\n\r\n",
	    "0123456789abcdefghij", 35),
	CH_OK("leading zeros", "0005\r\nhello\r\n000\r\n\r\n", "hello", 20),
	CH_OK("empty", "0\r\n\r\n", "", 5),
	CH_OK("ext", "5;foo=bar\r\nhello\r\n0;x=\"y z\"\r\n\r\n", "hello", 31),
	CH_OK("ext bws", "5 ;foo\r\nhello\r\n0\t; a = b\r\n\r\n", "hello", 28),
	CH_OK("trailer", "5\r\nhello\r\n0\r\nX-T: v\r\nY:\r\n\r\n", "hello", 27),
	CH_OK("stops at end", "1\r\na\r\n0\r\n\r\nGET / HTTP/1.1\r\n", "a", 11),
	CH_OK("crlf in data", "4\r\n\r\n\r\n\r\n0\r\n\r\n", "\r\n\r\n", 14),
	CH_BAD("0x prefix", "0x10\r\n"),
	CH_BAD("negative", "-1\r\n"),
	CH_BAD("plus", "+1\r\n"),
	CH_BAD("space inside", "1 0\r\n"),
	CH_BAD("trailing space", "5 \r\nhello\r\n0\r\n\r\n"),
	CH_BAD("leading space", " 5\r\nhello\r\n0\r\n\r\n"),
	CH_BAD("empty size", "\r\nhello\r\n"),
	CH_BAD("huge", "fffffffffffffffff\r\n"),
	CH_BAD("over 2^62", "4000000000000001\r\n"),
	CH_BAD("2^64", "10000000000000000\r\n"),
	CH_BAD("bare LF size", "5\nhello\r\n0\r\n\r\n"),
	CH_BAD("bare CR size", "5\rhello\r\n0\r\n\r\n"),
	CH_BAD("data too long", "5\r\nhelloX\r\n0\r\n\r\n"),
	CH_BAD("data bare LF", "5\r\nhello\n0\r\n\r\n"),
	CH_BAD("data no CRLF", "5\r\nhello0\r\n\r\n"),
	CH_BAD("ext bare LF", "5;a\nhello\r\n0\r\n\r\n"),
	CH_BAD("ext nul", "5;a\0b\r\nhello\r\n0\r\n\r\n"),
	CH_BAD("ext bare CR", "5;a\rb\r\nhello\r\n0\r\n\r\n"),
	CH_BAD("trailer obs-fold", "0\r\nA: b\r\n c\r\n\r\n"),
	CH_BAD("trailer no colon", "0\r\nAb\r\n\r\n"),
	CH_BAD("trailer space colon", "0\r\nA : b\r\n\r\n"),
	CH_BAD("trailer empty name", "0\r\n: b\r\n\r\n"),
	CH_BAD("trailer bare LF", "0\r\nA: b\n\r\n"),
	CH_BAD("trailer bare CR", "0\r\nA: b\rc\r\n\r\n"),
	CH_BAD("trailer nul", "0\r\nA: \0\r\n\r\n"),
	CH_BAD("final bare LF", "0\r\n\n"),
	CH_BAD("final bare CR", "0\r\n\rx"),
};

/*
 * Decode like a connection would: input arrives `step' bytes at a time
 * into a buffer that also holds what the last call left unconsumed, and
 * each call's output is appended to a body store.
 */
static int
chunk_feed(const char *in, size_t len, size_t step, char *body,
    size_t *body_len, size_t *used)
{
	struct http_chunked c;
	char buf[16384];
	size_t have = 0, pos = 0, cons, prod, n;
	int r = 0;

	memset(&c, 0, sizeof(c));
	*body_len = 0;
	*used = 0;
	while (pos < len || have > 0) {
		n = len - pos < step ? len - pos : step;
		memcpy(buf + have, in + pos, n);
		have += n;
		pos += n;
		r = http_chunked_decode(&c, buf, have, &cons, &prod);
		if (cons > have || prod > cons)
			return -1000;
		memcpy(body + *body_len, buf, prod);
		*body_len += prod;
		*used += cons;
		memmove(buf, buf + cons, have - cons);
		have -= cons;
		if (r != 0)
			return r;
		if (n == 0)
			break;
	}
	return r;
}

static void
test_chunked(void)
{
	static const size_t steps[] = { 100000, 1, 2, 3, 7 };
	char body[16384];
	size_t i, s, blen, used;
	int r;

	for (i = 0; i < sizeof(chunk_cases) / sizeof(chunk_cases[0]); i++) {
		const struct chunk_case *c = &chunk_cases[i];

		for (s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
			r = chunk_feed(c->in, c->len, steps[s], body, &blen, &used);
			CHECK(r == c->want, "chunked %s step %zu: got %d",
			    c->name, steps[s], r);
			if (r == 1 && c->want == 1) {
				CHECK(blen == strlen(c->body) &&
				    memcmp(body, c->body, blen) == 0 &&
				    used == c->used,
				    "chunked %s step %zu: body '%.*s' used %zu",
				    c->name, steps[s], (int)blen, body, used);
			}
		}
	}
}

static void
test_chunked_more(void)
{
	struct http_chunked c;
	static char in[40000], body[40000], buf[40000];
	size_t n, cons, prod, blen, used;
	int r, i;

	/* incomplete input: 0 and everything consumed */
	memset(&c, 0, sizeof(c));
	memcpy(buf, "5\r\nhel", 6);
	r = http_chunked_decode(&c, buf, 6, &cons, &prod);
	CHECK(r == 0 && cons == 6 && prod == 3 && memcmp(buf, "hel", 3) == 0,
	    "partial: r=%d cons=%zu prod=%zu", r, cons, prod);
	memcpy(buf, "lo\r\n0\r\n\r\nXY", 12);
	r = http_chunked_decode(&c, buf, 12, &cons, &prod);
	CHECK(r == 1 && cons == 9 && prod == 2, "rest: r=%d cons=%zu prod=%zu",
	    r, cons, prod);
	/* after the end: 1, nothing taken */
	r = http_chunked_decode(&c, buf, 12, &cons, &prod);
	CHECK(r == 1 && cons == 0 && prod == 0, "after end: r=%d", r);
	r = http_chunked_decode(&c, buf, 0, &cons, &prod);
	CHECK(r == 1 && cons == 0, "after end empty: r=%d", r);

	/* after an error: stays an error */
	memset(&c, 0, sizeof(c));
	memcpy(buf, "x\r\n", 3);
	r = http_chunked_decode(&c, buf, 3, &cons, &prod);
	CHECK(r == -400, "bad: r=%d", r);
	r = http_chunked_decode(&c, buf, 3, &cons, &prod);
	CHECK(r == -400 && cons == 0 && prod == 0, "still bad: r=%d", r);

	/* 2^62 exactly is a legal size; the decoder waits for data */
	memset(&c, 0, sizeof(c));
	memcpy(buf, "4000000000000000\r\nab", 20);
	r = http_chunked_decode(&c, buf, 20, &cons, &prod);
	CHECK(r == 0 && cons == 20 && prod == 2, "2^62: r=%d", r);

	/* extension bound: 4 KB of extension is refused */
	n = (size_t)snprintf(in, sizeof(in), "1;");
	memset(in + n, 'a', 5000);
	n += 5000;
	n += (size_t)snprintf(in + n, sizeof(in) - n, "\r\nx\r\n0\r\n\r\n");
	r = chunk_feed(in, n, 1000, body, &blen, &used);
	CHECK(r == -400, "long ext: r=%d", r);
	/* many leading zeros are a long size line, also bounded */
	memset(in, '0', 5000);
	memcpy(in + 5000, "1\r\nx\r\n0\r\n\r\n", 11);
	r = chunk_feed(in, 5011, 1000, body, &blen, &used);
	CHECK(r == -400, "long zeros: r=%d", r);
	/* trailer bound: 8 KB */
	n = (size_t)snprintf(in, sizeof(in), "0\r\n");
	for (i = 0; i < 1000; i++)
		n += (size_t)snprintf(in + n, sizeof(in) - n, "X-%04d: v\r\n", i);
	n += (size_t)snprintf(in + n, sizeof(in) - n, "\r\n");
	r = chunk_feed(in, n, 1000, body, &blen, &used);
	CHECK(r == -400, "long trailers: r=%d", r);
	/* but a modest extension and trailer are fine */
	n = (size_t)snprintf(in, sizeof(in), "1;");
	memset(in + n, 'a', 3000);
	n += 3000;
	n += (size_t)snprintf(in + n, sizeof(in) - n, "\r\nx\r\n0\r\nA: b\r\n\r\n");
	r = chunk_feed(in, n, 1, body, &blen, &used);
	CHECK(r == 1 && blen == 1 && body[0] == 'x', "ok ext: r=%d", r);

	/* a larger body, every chunk size from 1 to 200, fed 1 and 13 bytes */
	n = 0;
	blen = 0;
	for (i = 1; i <= 200; i++) {
		n += (size_t)snprintf(in + n, sizeof(in) - n, "%x\r\n", i);
		for (int k = 0; k < i; k++)
			in[n++] = (char)('a' + (blen++ + (size_t)k * 0) % 26);
		memcpy(in + n, "\r\n", 2);
		n += 2;
	}
	memcpy(in + n, "0\r\n\r\n", 5);
	n += 5;
	{
		size_t want = blen, s;

		for (s = 1; s <= 13; s += 12) {
			r = chunk_feed(in, n, s, body, &blen, &used);
			int same = r == 1 && blen == want && used == n;

			for (size_t k = 0; same && k < blen; k++)
				same = body[k] == (char)('a' + k % 26);
			CHECK(same, "big body step %zu: r=%d blen=%zu", s, r, blen);
		}
	}
}

/* What http_chunked_owed promises at each byte: a lower bound. */
static void
test_chunked_owed(void)
{
	static const struct {
		const char *in;
		uint64_t    owed;
	} steps[] = {
		{ "", 0 }, { "4", 4 }, { "0", 0x40 }, { "0", 0x400 },
		{ " ", 0x400 }, { ";x=1", 0x400 }, { "\r", 0x400 },
		{ "\n", 0x400 }, { "abc", 0x400 - 3 },
	};
	struct http_chunked c;
	static char buf[2048];
	size_t cons, prod, i, n;
	int r;

	memset(&c, 0, sizeof(c));
	for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		n = strlen(steps[i].in);
		memcpy(buf, steps[i].in, n);
		r = http_chunked_decode(&c, buf, n, &cons, &prod);
		CHECK(r == 0 && http_chunked_owed(&c) == steps[i].owed,
		    "after \"%s\": r=%d owed=%llu, want %llu", steps[i].in, r,
		    (unsigned long long)http_chunked_owed(&c),
		    (unsigned long long)steps[i].owed);
	}
	/* the rest of the chunk, its CRLF, the last chunk: nothing owed */
	memset(buf, 'x', 0x400 - 3);
	r = http_chunked_decode(&c, buf, 0x400 - 3, &cons, &prod);
	CHECK(r == 0 && http_chunked_owed(&c) == 0, "chunk read: owed=%llu",
	    (unsigned long long)http_chunked_owed(&c));
	memcpy(buf, "\r\n0\r\nA: b\r\n", 11);
	r = http_chunked_decode(&c, buf, 11, &cons, &prod);
	CHECK(r == 0 && http_chunked_owed(&c) == 0, "trailers: owed=%llu",
	    (unsigned long long)http_chunked_owed(&c));
	memcpy(buf, "\r\n", 2);
	r = http_chunked_decode(&c, buf, 2, &cons, &prod);
	CHECK(r == 1 && http_chunked_owed(&c) == 0, "done: r=%d", r);
	/* an error owes nothing either */
	memset(&c, 0, sizeof(c));
	memcpy(buf, "5x", 2);
	r = http_chunked_decode(&c, buf, 2, &cons, &prod);
	CHECK(r == -400 && http_chunked_owed(&c) == 0, "error: owed=%llu",
	    (unsigned long long)http_chunked_owed(&c));
}

/* ------------------------------------------------------------- others */

static void
test_urldecode(void)
{
	static const struct {
		const char *in;
		size_t      len;
		int         plus;
		ssize_t     want;
		const char *out;
	} cases[] = {
		{ S("abc"), 0, 3, "abc" },
		{ S(""), 0, 0, "" },
		{ S("a%20b"), 0, 3, "a b" },
		{ S("%41%42%43"), 0, 3, "ABC" },
		{ S("%2f%2F"), 0, 2, "//" },
		{ S("%ff"), 0, 1, "\xff" },
		{ S("a+b"), 0, 3, "a+b" },
		{ S("a+b"), 1, 3, "a b" },
		{ S("%2B+"), 1, 2, "+ " },
		{ S("%25zz"), 0, 3, "%zz" },
		{ S("%zz"), 0, -1, NULL },
		{ S("%g1"), 0, -1, NULL },
		{ S("%1g"), 0, -1, NULL },
		{ S("%0"), 0, -1, NULL },
		{ S("%"), 0, -1, NULL },
		{ S("abc%"), 0, -1, NULL },
		{ S("abc%4"), 0, -1, NULL },
		{ S("%00"), 0, -1, NULL },
		{ S("a%00b"), 1, -1, NULL },
		{ S("%%41"), 0, -1, NULL },
		{ S("%-1"), 0, -1, NULL },
		{ S("% 1"), 0, -1, NULL },
	};
	char buf[64], inplace[64];
	size_t i;
	ssize_t r;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		r = http_urldecode(buf, cases[i].in, cases[i].len, cases[i].plus);
		CHECK(r == cases[i].want && (r < 0 ||
		    memcmp(buf, cases[i].out, (size_t)r) == 0),
		    "urldecode '%s' plus=%d: got %zd", cases[i].in, cases[i].plus, r);
		memcpy(inplace, cases[i].in, cases[i].len);
		r = http_urldecode(inplace, inplace, cases[i].len, cases[i].plus);
		CHECK(r == cases[i].want && (r < 0 ||
		    memcmp(inplace, cases[i].out, (size_t)r) == 0),
		    "urldecode in place '%s': got %zd", cases[i].in, r);
	}
}

static void
test_name_eq(void)
{
	CHECK(http_name_eq("Host", 4, "host") == 1, "%s", "Host");
	CHECK(http_name_eq("HOST", 4, "host") == 1, "%s", "HOST");
	CHECK(http_name_eq("Hosts", 5, "host") == 0, "%s", "Hosts");
	CHECK(http_name_eq("Hos", 3, "host") == 0, "%s", "Hos");
	CHECK(http_name_eq("", 0, "") == 1, "%s", "empty");
	CHECK(http_name_eq("Content-Length", 14, "content-length") == 1, "%s", "CL");
	/* CR | 0x20 is '-': a lazy fold would call these equal */
	CHECK(http_name_eq("a\rb", 3, "a-b") == 0, "%s", "CR vs dash");
	CHECK(http_name_eq("\xc8ost", 4, "host") == 0, "%s", "high bit");
	CHECK(http_name_eq("[ost", 4, "{ost") == 0, "%s", "bracket");
}

static void
test_reason(void)
{
	static const int codes[] = {
		100, 101, 200, 201, 202, 203, 204, 205, 206,
		300, 301, 302, 303, 304, 305, 307, 308,
		400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411,
		412, 413, 414, 415, 416, 417, 422, 426, 429, 431,
		500, 501, 502, 503, 504, 505,
	};
	size_t i;

	for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		CHECK(strcmp(http_reason(codes[i]), "Unknown") != 0,
		    "reason %d", codes[i]);
	CHECK(strcmp(http_reason(200), "OK") == 0, "%s", http_reason(200));
	CHECK(strcmp(http_reason(404), "Not Found") == 0, "%s", http_reason(404));
	CHECK(strcmp(http_reason(431), "Request Header Fields Too Large") == 0,
	    "%s", http_reason(431));
	CHECK(strcmp(http_reason(999), "Unknown") == 0, "%s", http_reason(999));
	CHECK(strcmp(http_reason(0), "Unknown") == 0, "%s", http_reason(0));
}

static void
test_date(void)
{
	static const struct {
		const char *s;
		size_t      len;
	} bad[] = {
		{ S("Sun, 06 Nov 1994 08:49:37 gmt") },
		{ S("Sun, 6 Nov 1994 08:49:37 GMT") },
		{ S("Mon, 06 Nov 1994 08:49:37 GMT") },   /* wrong weekday */
		{ S("Sun, 06 Nov 1994 24:00:00 GMT") },
		{ S("Sun, 06 Nov 1994 08:60:37 GMT") },
		{ S("Sun, 06 Nov 1994 08:49:61 GMT") },
		{ S("Sun, 00 Nov 1994 08:49:37 GMT") },
		{ S("Thu, 31 Nov 1994 08:49:37 GMT") },
		{ S("Wed, 29 Feb 2023 00:00:00 GMT") },
		{ S("Sun, 06 Nov 1994 08:49:37 GMT ") },
		{ S("Sun, 06 Nov 1994 08:49:37 UTC") },
		{ S("Sun, 06 Xyz 1994 08:49:37 GMT") },
		{ S("Sun, 06 Nov 19a4 08:49:37 GMT") },
		{ S("Sun, 06 Nov 1994 08:-9:37 GMT") },
		{ S("Wed, 31 Dec 1969 23:59:59 GMT") },
		{ S("Sunday, 06-Nov-1994 08:49:37 GMT") },
		{ S("Sunday, 06-Nov-94 08:49:37 UTC") },
		{ S("Monday, 06-Nov-94 08:49:37 GMT") },
		{ S("Sun, 06-Nov-94 08:49:37 GMT") },
		{ S("Sundayy, 06-Nov-94 08:49:37 GMT") },
		{ S("Sun Nov 6 08:49:37 1994") },
		{ S("Sun Nov  6 08:49:37 94  ") },
		{ S("Sun Nov  6 08:49:37 1994 ") },
		{ S("Mon Nov  6 08:49:37 1994") },
		{ S("Sun Nov 06 08-49-37 1994") },
		{ S("") },
	};
	char out[30], ref[64];
	struct tm tm;
	time_t t, back;
	size_t i;
	int bad_rt = 0;

	http_date(0, out);
	CHECK(strcmp(out, "Thu, 01 Jan 1970 00:00:00 GMT") == 0, "epoch %s", out);
	http_date(784111777, out);
	CHECK(strcmp(out, "Sun, 06 Nov 1994 08:49:37 GMT") == 0, "rfc %s", out);
	http_date(951782400, out);
	CHECK(strcmp(out, "Tue, 29 Feb 2000 00:00:00 GMT") == 0, "leap %s", out);
	http_date(-5, out);
	CHECK(strcmp(out, "Thu, 01 Jan 1970 00:00:00 GMT") == 0, "negative %s", out);
	http_date((time_t)1 << 40, out);
	CHECK(strcmp(out, "Fri, 31 Dec 9999 23:59:59 GMT") == 0, "far %s", out);
	CHECK(strlen(out) == 29, "len %zu", strlen(out));

	CHECK(http_parse_date(S("Sun, 06 Nov 1994 08:49:37 GMT")) == 784111777,
	    "%s", "parse rfc");
	CHECK(http_parse_date(S("Tue, 29 Feb 2000 00:00:00 GMT")) == 951782400,
	    "%s", "parse leap");
	CHECK(http_parse_date(S("Thu, 01 Jan 1970 00:00:00 GMT")) == 0,
	    "%s", "parse epoch");
	CHECK(http_parse_date(S("Sun, 06 Nov 1994 08:49:60 GMT")) == 784111800,
	    "%s", "leap second");
	/* the two obsolete forms a recipient must still accept */
	CHECK(http_parse_date(S("Sunday, 06-Nov-94 08:49:37 GMT")) == 784111777,
	    "%s", "parse rfc850");
	CHECK(http_parse_date(S("Sun Nov  6 08:49:37 1994")) == 784111777,
	    "%s", "parse asctime");
	CHECK(http_parse_date(S("Tue Feb 29 00:00:00 2000")) == 951782400,
	    "%s", "parse asctime, two-digit day");
	CHECK(http_parse_date(S("Wednesday, 06-Nov-30 08:49:37 GMT")) == 1920185377,
	    "%s", "rfc850 year 30 is 2030, not 1930");
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(http_parse_date(bad[i].s, bad[i].len) == -1,
		    "parse_date accepted '%s'", bad[i].s);

	/* round trip, and agree with gmtime_r + strftime in the C locale */
	for (t = 0; t < (time_t)16000000000LL; t += 7777777 + t / 1000) {
		http_date(t, out);
		back = http_parse_date(out, strlen(out));
		gmtime_r(&t, &tm);
		strftime(ref, sizeof(ref), "%a, %d %b %Y %H:%M:%S GMT", &tm);
		if (back != t || strcmp(out, ref) != 0) {
			if (bad_rt++ < 5)
				CHECK(0, "round trip %lld: %s / %s -> %lld",
				    (long long)t, out, ref, (long long)back);
		}
	}
	CHECK(bad_rt == 0, "%d round trip failures", bad_rt);
}

int
main(void)
{
	test_head_cases();
	test_head_fields();
	test_pipeline();
	test_limits();
	test_chunked();
	test_chunked_more();
	test_chunked_owed();
	test_urldecode();
	test_name_eq();
	test_reason();
	test_date();
	printf("%d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
