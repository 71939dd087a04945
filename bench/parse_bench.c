/*
 * parse_bench.c - nanoseconds per http_parse_head call.
 *
 *   gcc -O2 -Isrc bench/parse_bench.c src/http_parse.c -o /tmp/parse_bench
 *   /tmp/parse_bench [iterations]
 *
 * Parses the same buffer in a loop: that is the hot-cache best case, which
 * is what a keep-alive benchmark such as wrk exercises.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http_parse.h"

static const char wrk_req[] =
    "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";

static const char browser_req[] =
    "GET /static/app.js?v=1.4.2 HTTP/1.1\r\n"
    "Host: www.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
    "Accept: */*\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Referer: https://www.example.com/\r\n"
    "Connection: keep-alive\r\n"
    "\r\n";

static double
bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void
bench_one(const char *name, const char *req, size_t len, long iters)
{
	static struct http_head h;
	static const struct http_limits lim = { 8192, 4096, 100 };
	volatile unsigned long sink = 0;
	double t0, t1, best = 0;
	long i;
	int round;

	/* best of five rounds, to step around scheduler noise */
	for (round = 0; round < 5; round++) {
		t0 = bench_now();
		for (i = 0; i < iters; i++)
			sink += (unsigned long)http_parse_head(req, len, &lim, &h);
		t1 = bench_now();
		if (round == 0 || (t1 - t0) / (double)iters < best)
			best = (t1 - t0) / (double)iters;
	}
	if (sink != (unsigned long)len * (unsigned long)iters * 5)
		printf("%s: unexpected result %d\n", name, http_parse_head(req, len, &lim, &h));
	printf("%-8s %4zu bytes  %7.1f ns/parse  %6.2f GB/s\n", name, len, best,
	    (double)len / best);
}

int
main(int argc, char **argv)
{
	long iters = argc > 1 ? atol(argv[1]) : 2000000;

	bench_one("wrk", wrk_req, sizeof(wrk_req) - 1, iters);
	bench_one("browser", browser_req, sizeof(browser_req) - 1, iters);
	return 0;
}
