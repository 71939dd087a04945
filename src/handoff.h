/*
 * handoff.h - passing idle keep-alive connections from a recycled worker
 * to the live ones.
 */
#ifndef MOLT_HANDOFF_H
#define MOLT_HANDOFF_H

/* Master, before the first fork.  Returns 0, or -1 after logging. */
int  handoff_init(void);
/* The end live workers watch for connections (-1 without handoff). */
int  handoff_fd(void);
/*
 * Worker: gives the connection fd (idle, at a request boundary, nothing
 * of it read) to whichever live worker takes it next.  nreq is how many
 * requests it has carried.  Returns 0 if it is on its way (the caller
 * closes its own copy), -1 if the caller must keep and close it itself.
 */
int  handoff_send(int fd, unsigned nreq);
/* Worker: the next connection, if one waits.  1 with *fd and *nreq, 0 if
 * none, -1 on error (logged). */
int  handoff_recv(int *fd, unsigned *nreq);

#endif
