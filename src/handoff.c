/*
 * handoff.c - passing idle keep-alive connections from a recycled worker
 * to the live ones.
 *
 * A recycle used to cost every client of the old worker its connection:
 * the drain answered the next request with "Connection: close" and the
 * client had to reconnect.  At one recycle every thousand requests that
 * was a TCP handshake per client per recycle.  Instead, a draining worker
 * sends the connections that sit idle at a request boundary, with nothing
 * of them read, over one SOCK_SEQPACKET socketpair that the master makes
 * before the first fork.  Every live worker watches the other end, like a
 * second listening socket, and whichever is woken first adopts them.
 * Bytes the client sent meanwhile wait in the socket and travel with it.
 * Those idle when the drain begins go in one message (up to HANDOFF_BATCH
 * descriptors): one wake-up of the watching workers, where a message per
 * connection woke each of them once per connection.
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
 * connections; SEQPACKET queues up to the socket buffer and keeps the
 * messages apart.
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

/* A message: the header, then one entry per descriptor, in order. */
struct handoff_hdr {
	uint32_t                magic;
	uint32_t                n;
};

struct handoff_ent {
	uint32_t                nreq;
	uint32_t                flags;
	int32_t                 away;
	uint32_t                pad;
	struct sockaddr_storage peer;
};

struct handoff_msg {
	struct handoff_hdr      h;
	struct handoff_ent      e[HANDOFF_BATCH];
};

static int hand_fds[2] = { -1, -1 };   /* [0] send, [1] receive */
static int (*cpu_fds)[2];              /* the same per CPU index */
static int ncpu_fds;

/* Room for HANDOFF_BATCH descriptors, aligned for struct cmsghdr. */
union handoff_cbuf {
	struct cmsghdr h;
	char buf[CMSG_SPACE(HANDOFF_BATCH * sizeof(int))];
};

/* One message: m as the payload (len bytes of it), cb for descriptors
 * (clen bytes of it). */
static void
handoff_msghdr(struct msghdr *msg, struct iovec *iov, struct handoff_msg *m,
    size_t len, union handoff_cbuf *cb, size_t clen)
{
	memset(msg, 0, sizeof(*msg));
	iov->iov_base = m;
	iov->iov_len = len;
	msg->msg_iov = iov;
	msg->msg_iovlen = 1;
	msg->msg_control = cb->buf;
	msg->msg_controllen = clen;
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
handoff_send(const struct handoff_conn *hc, int n, int k)
{
	int to = k >= 0 && k < ncpu_fds ? cpu_fds[k][0] : hand_fds[0];
	static struct handoff_msg m;
	union handoff_cbuf cb;
	struct iovec iov;
	struct msghdr msg;
	struct cmsghdr *cm;
	size_t len = sizeof(m.h) + (size_t)n * sizeof(m.e[0]);
	ssize_t r;
	int i;

	if (to == -1 || n < 1 || n > HANDOFF_BATCH)
		return -1;
	/* Padding included: no byte of this process's memory leaves it. */
	memset(&m, 0, len);
	memset(&cb, 0, sizeof(cb));
	m.h.magic = HANDOFF_MAGIC;
	m.h.n = (uint32_t)n;
	for (i = 0; i < n; i++) {
		m.e[i].nreq = hc[i].nreq;
		m.e[i].flags = hc[i].flags;
		m.e[i].away = hc[i].away;
		m.e[i].peer = hc[i].peer;
	}
	handoff_msghdr(&msg, &iov, &m, len, &cb, CMSG_SPACE((size_t)n * sizeof(int)));
	cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN((size_t)n * sizeof(int));
	for (i = 0; i < n; i++)
		memcpy(CMSG_DATA(cm) + (size_t)i * sizeof(int), &hc[i].fd, sizeof(int));
	do
		r = sendmsg(to, &msg, MSG_NOSIGNAL);
	while (r == -1 && errno == EINTR);
	if (r == (ssize_t)len)
		return 0;
	/* EAGAIN: the live workers are behind; the caller closes instead. */
	if (r == -1 && errno != EAGAIN)
		log_error("sendmsg (connection handoff, %d): %s", n, strerror(errno));
	return -1;
}

int
handoff_recv(int fd, struct handoff_conn *hc)
{
	static struct handoff_msg m;
	union handoff_cbuf cb;
	struct iovec iov;
	struct msghdr msg;
	struct cmsghdr *cm;
	int fds[HANDOFF_BATCH];
	ssize_t r;
	size_t nfd = 0, n = 0, i;

	handoff_msghdr(&msg, &iov, &m, sizeof(m), &cb, sizeof(cb.buf));
	do
		r = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	while (r == -1 && errno == EINTR);
	if (r == -1) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		log_error("recvmsg (connection handoff): %s", strerror(errno));
		return -1;
	}
	for (cm = CMSG_FIRSTHDR(&msg); cm != NULL; cm = CMSG_NXTHDR(&msg, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
		    nfd == 0 && cm->cmsg_len >= CMSG_LEN(0)) {
			nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			if (nfd > HANDOFF_BATCH)
				nfd = HANDOFF_BATCH;
			memcpy(fds, CMSG_DATA(cm), nfd * sizeof(int));
		}
	/* Only molt's workers hold this socket, but check what came anyway. */
	if (r >= (ssize_t)sizeof(m.h))
		n = ((size_t)r - sizeof(m.h)) / sizeof(m.e[0]);
	if (r < (ssize_t)sizeof(m.h) || m.h.magic != HANDOFF_MAGIC ||
	    m.h.n != n || n != nfd || n == 0 ||
	    (size_t)r != sizeof(m.h) + n * sizeof(m.e[0]) ||
	    (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)))
		goto bad;
	for (i = 0; i < n; i++)
		if (m.e[i].peer.ss_family != AF_INET &&
		    m.e[i].peer.ss_family != AF_INET6 &&
		    m.e[i].peer.ss_family != AF_UNIX)
			goto bad;
	for (i = 0; i < n; i++) {
		hc[i].fd = fds[i];
		hc[i].nreq = m.e[i].nreq;
		hc[i].flags = m.e[i].flags;
		hc[i].away = m.e[i].away >= 0 && m.e[i].away < CPU_SETSIZE ?
		    m.e[i].away : -1;
		hc[i].peer = m.e[i].peer;
	}
	return (int)n;
bad:
	log_error("connection handoff: a malformed message (%zd bytes, %zu "
	    "descriptors)", r, nfd);
	for (i = 0; i < nfd; i++)
		close(fds[i]);
	return -1;
}
