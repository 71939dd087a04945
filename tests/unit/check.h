/*
 * check.h - the counting CHECK of the unit tests: a failed check prints
 * its place and a printf-style message (the first 20 only) and the run
 * goes on, so one run shows every failure.
 */
#ifndef MOLT_TEST_CHECK_H
#define MOLT_TEST_CHECK_H

#include <stdio.h>

static unsigned passed, failed;

#define CHECK(cond, ...) do {                                              \
	if (cond) {                                                        \
		passed++;                                                  \
	} else {                                                           \
		failed++;                                                  \
		if (failed <= 20) {                                        \
			printf("FAIL %s:%d: ", __FILE__, __LINE__);        \
			printf(__VA_ARGS__);                               \
			putchar('\n');                                     \
		}                                                          \
	}                                                                  \
} while (0)

#endif
