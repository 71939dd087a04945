/*
 * listen.h - the listening sockets, bound by the master before any fork.
 */
#ifndef MOLT_LISTEN_H
#define MOLT_LISTEN_H

struct listen_addr;
struct server_conf;

/*
 * Binds every address in the list that has no socket yet, taking an open
 * socket over from `old` when the same address was configured there (a
 * reload keeps its sockets, and gets sc's defer_accept).  Returns 0, or
 * -1 after logging, with the sockets it took given back to `old` and the
 * ones it bound closed.
 */
int  listen_open(struct listen_addr *list, struct listen_addr *old,
         const struct server_conf *sc);
void listen_close(struct listen_addr *list);
/*
 * Closes this process's copies of the sockets and nothing more: for a
 * child that must not accept on them, while the socket files of unix:
 * addresses stay for the master, which still listens there.
 */
void listen_drop(struct listen_addr *list);

#endif
