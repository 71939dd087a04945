/*
 * handoff.c - passing idle keep-alive connections from a recycled worker
 * to the live ones.
 *
 * A recycle used to cost every client of the old worker its connection:
 * the drain answered the next request with "Connection: close" and the
 * client had to reconnect.  At one recycle every thousand requests that
 * was a TCP handshake per client per recycle.  Instead, a draining worker
 * sends each connection that sits idle at a request boundary, with nothing
 * of it read, over one SOCK_SEQPACKET socketpair that the master makes
 * before the first fork.  Every live worker watches the other end, like a
 * second listening socket, and whichever is woken first adopts it.  Bytes
 * the client sent meanwhile wait in the socket and travel with it.
 *
 * With listen_per_cpu there is also a socketpair per CPU index: a worker
 * pinned to a CPU hands its connections to its replacement on that CPU
 * (worker_handoff_target), so that a recycle keeps each connection on
 * the CPU its packets arrive on instead of scattering them; and a live
 * worker passes a connection whose client has moved to another CPU to
 * that CPU's workers (conn_follow).
 *
 * SEQPACKET, not DGRAM: a datagram socketpair refuses a sender once ten
 * messages wait (net.unix.max_dgram_qlen), fewer than one worker's
 * connections; SEQPACKET queues up to the socket buffer and keeps one
 * message per connection.
 */
#include "autoconfig.h"

#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "handoff.h"
#include "log.h"

#define HANDOFF_MAGIC 0x6d6f6c74u      /* "molt" */

struct handoff_msg {
	uint32_t                magic;
	uint32_t                nreq;
	uint32_t                flags;
	int32_t                 away;
	int32_t                 idle_ms;
	struct sockaddr_storage peer;
};

static int hand_fds[2] = { -1, -1 };   /* [0] send, [1] receive */
static int (*cpu_fds)[2];              /* the same per CPU index */
static int ncpu_fds;

/* Room for one descriptor, aligned for struct cmsghdr. */
union handoff_cbuf {
	struct cmsghdr h;
	char buf[CMSG_SPACE(sizeof(int))];
};

/* One message: m as the payload, cb for the descriptor. */
static void
handoff_msghdr(struct msghdr *msg, struct iovec *iov, struct handoff_msg *m,
    union handoff_cbuf *cb)
{
	memset(msg, 0, sizeof(*msg));
	memset(cb, 0, sizeof(*cb));
	iov->iov_base = m;
	iov->iov_len = sizeof(*m);
	msg->msg_iov = iov;
	msg->msg_iovlen = 1;
	msg->msg_control = cb->buf;
	msg->msg_controllen = sizeof(cb->buf);
}

static int
handoff_pair(int fds[2])
{
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0, fds) == -1) {
		log_error("socketpair (connection handoff): %s", strerror(errno));
		fds[0] = fds[1] = -1;
		return -1;
	}
	return 0;
}

int
handoff_init(int ncpu)
{
	int k;

	if (handoff_pair(hand_fds) == -1)
		return -1;
	if (ncpu <= 0 || (cpu_fds = calloc((size_t)ncpu, sizeof(*cpu_fds))) == NULL)
		return 0;
	/* Short of descriptors, the CPUs without one use the shared pair. */
	for (k = 0; k < ncpu && handoff_pair(cpu_fds[k]) == 0; k++)
		ncpu_fds = k + 1;
	return 0;
}

/* A child that is not a worker (the validator) must not take part. */
void
handoff_leave(void)
{
	int i, k;

	for (i = 0; i < 2; i++) {
		if (hand_fds[i] >= 0 && close(hand_fds[i]) == -1)
			log_error("close (connection handoff): %s", strerror(errno));
		hand_fds[i] = -1;
		for (k = 0; k < ncpu_fds; k++)
			if (close(cpu_fds[k][i]) == -1)
				log_error("close (connection handoff, CPU %d): %s",
				    k, strerror(errno));
	}
	free(cpu_fds);
	cpu_fds = NULL;
	ncpu_fds = 0;
}

int
handoff_fd(void)
{
	return hand_fds[1];
}

int
handoff_fd_cpu(int k)
{
	return k >= 0 && k < ncpu_fds ? cpu_fds[k][1] : -1;
}

int
handoff_send_fd(int k)
{
	return k >= 0 && k < ncpu_fds ? cpu_fds[k][0] : hand_fds[0];
}

int
handoff_send(const struct handoff_conn *hc, int k)
{
	int to = handoff_send_fd(k);
	struct handoff_msg m;
	union handoff_cbuf cb;
	struct iovec iov;
	struct msghdr msg;
	struct cmsghdr *cm;
	ssize_t n;

	if (to == -1)
		return -1;
	/* Padding included: no byte of this process's stack leaves it. */
	memset(&m, 0, sizeof(m));
	m.magic = HANDOFF_MAGIC;
	m.nreq = hc->nreq;
	m.flags = hc->flags;
	m.away = hc->away;
	m.idle_ms = hc->idle_ms;
	m.peer = hc->peer;
	handoff_msghdr(&msg, &iov, &m, &cb);
	cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &hc->fd, sizeof(int));
	do
		n = sendmsg(to, &msg, MSG_NOSIGNAL);
	while (n == -1 && errno == EINTR);
	if (n == (ssize_t)sizeof(m))
		return 0;
	/*
	 * The live workers are behind: each message holds some 760 bytes of
	 * the pair's send buffer until one is adopted, so a default buffer
	 * (net.core.wmem_default, 208 kB) takes about 280 connections.
	 */
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return HANDOFF_FULL;
	/*
	 * Without CAP_SYS_RESOURCE a user may have no more descriptors in
	 * flight than the sender's RLIMIT_NOFILE, and those of a worker that
	 * exited stay charged until they are adopted.  As for a full pair,
	 * the adopters are behind: each connection was logged as an error
	 * and closed (52,361 lines in 15 s as nobody with ulimit -n 64).
	 */
	if (n == -1 && errno == ETOOMANYREFS)
		return HANDOFF_REFS;
	if (n == -1)
		log_error("sendmsg (connection handoff): %s", strerror(errno));
	else
		log_error("sendmsg (connection handoff): %zd of %zu bytes sent",
		    n, sizeof(m));
	return -1;
}

int
handoff_recv(int fd, struct handoff_conn *hc)
{
	struct handoff_msg m;
	union handoff_cbuf cb;
	struct iovec iov;
	struct msghdr msg;
	struct cmsghdr *cm;
	ssize_t n;
	int got = -1;

	handoff_msghdr(&msg, &iov, &m, &cb);
	do
		n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	while (n == -1 && errno == EINTR);
	if (n == -1) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		log_error("recvmsg (connection handoff): %s", strerror(errno));
		return -1;
	}
	for (cm = CMSG_FIRSTHDR(&msg); cm != NULL; cm = CMSG_NXTHDR(&msg, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
		    cm->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(&got, CMSG_DATA(cm), sizeof(int));
	/* A full descriptor table: the kernel closed the connection. */
	if ((msg.msg_flags & MSG_CTRUNC) && got == -1) {
		log_error("connection handoff: a connection was lost: its "
		    "descriptor did not fit (MSG_CTRUNC; out of descriptors?)");
		return -1;
	}
	/* Only molt's workers hold this socket, but check what came anyway. */
	if (n != (ssize_t)sizeof(m) || m.magic != HANDOFF_MAGIC || got == -1 ||
	    (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
	    (m.peer.ss_family != AF_INET && m.peer.ss_family != AF_INET6 &&
	    m.peer.ss_family != AF_UNIX)) {
		log_error("connection handoff: a malformed message (%zd bytes)", n);
		if (got != -1)
			close(got);
		return -1;
	}
	hc->fd = got;
	hc->nreq = m.nreq;
	hc->flags = m.flags;
	hc->away = m.away >= 0 && m.away < CPU_SETSIZE ? m.away : -1;
	hc->idle_ms = m.idle_ms > 0 ? m.idle_ms : 0;
	hc->peer = m.peer;
	return 1;
}
