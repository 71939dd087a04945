/*
 * test_memwatch.c - unit tests for the sizes the master writes into its
 * recycle and kill lines (memwatch_fmt, memwatch_fmt_over in
 * src/memwatch.c).
 *
 * An operator reads "uss=X > max_rss=Y" and the tests parse X back, so a
 * value over its limit must never print as the limit itself; CI once saw
 * "uss=64.0 MB > hard_max_rss=64.0 MB".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memwatch.h"
#include "check.h"

/* What a reader of the log gets back from "64.004 MB". */
static double
parse(const char *s)
{
	char *end;
	double v = strtod(s, &end);

	if (strcmp(end, " kB") == 0)
		return v * 1024;
	if (strcmp(end, " MB") == 0)
		return v * 1024 * 1024;
	if (strcmp(end, " GB") == 0)
		return v * 1024 * 1024 * 1024;
	return -1;
}

static void
fixed(void)
{
	static const struct {
		uint64_t val, limit;
		const char *want;
	} v[] = {
		{ 64ULL << 20, UINT64_MAX, "64.0 MB" },
		{ 512ULL << 10, UINT64_MAX, "512.0 kB" },
		{ 5ULL << 29, UINT64_MAX, "2.50 GB" },
		{ (64ULL << 20) + 4096, 64ULL << 20, "64.004 MB" },
		{ (64ULL << 20) + 200 * 1024, 64ULL << 20, "64.2 MB" },
		{ (1ULL << 30) + 1, 1ULL << 30, "1.000000001 GB" },
		/* at or under the limit: the plain form */
		{ 64ULL << 20, 64ULL << 20, "64.0 MB" },
		{ (64ULL << 20) - 4096, 64ULL << 20, "64.0 MB" },
	};
	char buf[32];
	size_t i;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		memwatch_fmt_over(v[i].val, v[i].limit, buf, sizeof(buf));
		CHECK(strcmp(buf, v[i].want) == 0, "%llu over %llu: \"%s\", want \"%s\"",
		    (unsigned long long)v[i].val, (unsigned long long)v[i].limit,
		    buf, v[i].want);
	}
	CHECK(strcmp(memwatch_fmt(64ULL << 20, buf, sizeof(buf)), "64.0 MB") == 0,
	    "memwatch_fmt: \"%s\"", buf);
}

/* Every value just over a limit reads as over it, in every unit. */
static void
sweep(void)
{
	static const uint64_t limits[] = {
		1000, 512ULL << 10, 1000001, 40ULL << 20, 64ULL << 20,
		(1ULL << 30) - 1, 1ULL << 30, 3ULL << 40,
	};
	static const uint64_t deltas[] = {
		1, 2, 1023, 1024, 4096, 51199, 51200, 52429, 1ULL << 20,
		(1ULL << 20) + 1, 1ULL << 30,
	};
	char buf[32], plain[32];
	size_t i, j;

	for (i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		for (j = 0; j < sizeof(deltas) / sizeof(deltas[0]); j++) {
			uint64_t l = limits[i], v = l + deltas[j];

			memwatch_fmt_over(v, l, buf, sizeof(buf));
			CHECK(parse(buf) > (double)l, "%llu over %llu: \"%s\"",
			    (unsigned long long)v, (unsigned long long)l, buf);
			memwatch_fmt_over(l - deltas[j] % l, l, buf, sizeof(buf));
			memwatch_fmt(l - deltas[j] % l, plain, sizeof(plain));
			CHECK(strcmp(buf, plain) == 0, "%llu under %llu: \"%s\" vs \"%s\"",
			    (unsigned long long)(l - deltas[j] % l),
			    (unsigned long long)l, buf, plain);
		}
	}
}

int
main(void)
{
	fixed();
	sweep();
	printf("test_memwatch: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
