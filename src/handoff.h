/*
 * handoff.h - passing idle keep-alive connections from a recycled worker
 * to the live ones.
 */
#ifndef MOLT_HANDOFF_H
#define MOLT_HANDOFF_H

#include <sys/socket.h>

/* Master, before the first fork, with a pair for each of ncpu CPU
 * indexes besides the shared one (listen_per_cpu).  Returns 0, or -1
 * after logging. */
int  handoff_init(int ncpu);
/* In a child that is no worker: closes both ends. */
void handoff_leave(void);
/* The end live workers watch for connections (-1 without handoff). */
int  handoff_fd(void);
/* The end CPU index k's workers watch, or -1 if it has none. */
int  handoff_fd_cpu(int k);
/*
 * A connection on its way.  The peer address and whether TCP_NODELAY is
 * set travel with it, so the adopter need not ask the socket again
 * (getpeername, setsockopt: two syscalls per connection per recycle).
 */
struct handoff_conn {
	int                     fd;
	unsigned                nreq;      /* requests it has carried */
	unsigned                flags;
	int                     away;      /* conn.h: CPU index seen, or -1 */
	int                     idle_ms;   /* how long it has been idle */
	struct sockaddr_storage peer;
};
#define HANDOFF_NODELAY 0x01           /* TCP_NODELAY is set on it */

/*
 * Worker: gives the connection (idle, at a request boundary, nothing of
 * it read) to whichever live worker takes it next, of CPU index k's if
 * k >= 0 and it has a pair.  Returns 0 if it is on its way (the caller
 * closes its own copy), HANDOFF_FULL if the pair has no room for now
 * (handoff_send_fd turns writable when it has), HANDOFF_REFS if the
 * kernel's limit of descriptors in flight is reached (no event says when
 * it is not: try again later), -1 if the caller must keep and close it
 * itself.
 */
#define HANDOFF_FULL 1
#define HANDOFF_REFS 2
int  handoff_send(const struct handoff_conn *hc, int k);
/* The end handoff_send(..., k) writes to, or -1. */
int  handoff_send_fd(int k);
/* Worker: the next connection waiting on fd (handoff_fd or
 * handoff_fd_cpu), if any.  1 with *hc filled in, 0 if none, -1 on error
 * (logged). */
int  handoff_recv(int fd, struct handoff_conn *hc);

#endif
