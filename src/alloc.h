/*
 * alloc.h - what the live allocator says about this process's heap.
 */
#ifndef MOLT_ALLOC_H
#define MOLT_ALLOC_H

#include <stdint.h>

/* Detects glibc or jemalloc at run time (not from the build flags). */
void alloc_init(void);
int  alloc_kind(void);                /* SB_ALLOC_* */
const char *alloc_name(void);
/*
 * in_use: bytes handed out; held: bytes the allocator keeps from the OS
 * for the heap; free: held but unused.  Costs up to milliseconds on a
 * fragmented glibc heap (mallinfo2 walks the free lists): timer only.
 */
int  alloc_sample(uint64_t *in_use, uint64_t *held, uint64_t *free_bytes);
/* Returns memory to the OS: malloc_trim(0), or a jemalloc purge. */
void alloc_trim(void);

/*
 * Per-request accounting (route_stats): cumulative allocation calls and
 * bytes, and bytes currently in use, as cheap counters.  0 when the
 * allocator offers no cheap counters.
 */
void alloc_counters(uint64_t *count, uint64_t *bytes, int64_t *in_use);
int  alloc_counting(void);
/* Turns the counting malloc on (route_stats); glibc builds only. */
void alloc_count_enable(int on);

#endif
