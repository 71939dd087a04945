/*
 * memwatch.h - reading a worker's memory from /proc.
 */
#ifndef MOLT_MEMWATCH_H
#define MOLT_MEMWATCH_H

#include <stdint.h>
#include <sys/types.h>

struct mem_sample {
	uint64_t rss;        /* VmRSS */
	uint64_t rss_anon;   /* RssAnon */
	uint64_t uss;        /* Private_Clean + Private_Dirty */
	uint64_t pss;
};

/*
 * /proc/PID/status is cheap (~20 us); smaps_rollup (USS, PSS) costs about
 * 1 ms for a 70 MB process, so it is read only when with_smaps is set.
 * Returns -1 if the process is gone.
 */
int memwatch_read(pid_t pid, struct mem_sample *out, int with_smaps);

/*
 * What the kernel says a process is doing, for a log line: "running", or
 * "sleeping in do_nanosleep" (its state letter and wchan).  Not memory,
 * but the same /proc reading.
 */
void memwatch_state(pid_t pid, char *buf, size_t len);

/* "91.7 MB" */
const char *memwatch_fmt(uint64_t bytes, char *buf, size_t len);
const char *memwatch_fmt_over(uint64_t bytes, uint64_t limit, char *buf,
    size_t len);

#endif
