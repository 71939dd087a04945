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
/* Undoes a listen_open that succeeded, for a reload refused after it:
 * the sockets taken from `old` go back, the ones bound are closed. */
void listen_undo(struct listen_addr *list);
void listen_close(struct listen_addr *list);
/* The CPUs this process may run on, in order, at most max: their count,
 * or -1.  Worker N is pinned to the (N mod count)th (worker_cpu_affinity),
 * and with listen_per_cpu its socket is that CPU's cpu_fd[N mod count]. */
int  listen_cpus(int *cpus, int max);
/*
 * Closes this process's copies of the sockets and nothing more: for a
 * child that must not accept on them, while the socket files of unix:
 * addresses stay for the master, which still listens there.
 */
void listen_drop(struct listen_addr *list);

/*
 * Socket activation: takes the sockets systemd passed (LISTEN_PID,
 * LISTEN_FDS), before anything forks, and clears the variables.  0 if
 * there were none; -1 after logging if one is not a listening stream
 * socket.  listen_open takes them as it takes a reload's old sockets,
 * given listen_inherited() as old; listen_inherited_check first refuses
 * one no listen line names; listen_inherited_free closes what is left.
 */
int  listen_inherit(void);
struct listen_addr *listen_inherited(void);
int  listen_inherited_check(const struct listen_addr *list, const char *path);
void listen_inherited_free(void);

#endif
