/*
 * prefault.h - mapping a new worker's code and read-only data in one go
 * instead of one page fault at a time.
 */
#ifndef MOLT_PREFAULT_H
#define MOLT_PREFAULT_H

/* Master, before the first fork and again when a reload changed what it
 * holds loaded: notes the objects loaded now. */
void prefault_plan(void);
/* Master: the objects loaded since the plan are never to be mapped up
 * front, in this plan or a later one. */
void prefault_skip_new(void);
/* A child, first thing after fork: maps what the plan noted, which covers
 * the modules the master holds loaded. */
void prefault_run(void);

#endif
