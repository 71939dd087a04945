/*
 * listen.h - the listening sockets, bound by the master before any fork.
 */
#ifndef MOLT_LISTEN_H
#define MOLT_LISTEN_H

struct listen_addr;

/*
 * Binds every address in the list that has no socket yet, taking an open
 * socket over from `old` when the same address was configured there (a
 * reload keeps its sockets).  Returns 0, or -1 after logging.
 */
int  listen_open(struct listen_addr *list, struct listen_addr *old, int backlog);
void listen_close(struct listen_addr *list);

#endif
