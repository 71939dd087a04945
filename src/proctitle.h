/*
 * proctitle.h - what ps(1) shows of each process (proctitle.c).
 */
#ifndef MOLT_PROCTITLE_H
#define MOLT_PROCTITLE_H

/*
 * main, once its options are read and before the master starts: makes
 * argv's room (and the environment's, which it moves to the heap) the
 * title's.  Nothing may point into argv's strings afterwards.  Returns
 * 0, or -1 if the titles cannot be set (molt runs on without them).
 */
int         proctitle_init(int argc, char **argv);
/* The command line as it was, for the master's title. */
const char *proctitle_cmdline(void);
void        proctitle_set(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

#endif
