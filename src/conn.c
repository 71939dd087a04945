/*
 * conn.c - HTTP/1.1 connections: reading, parsing, bodies, timeouts and
 * the output queue.
 *
 * The hot path is built so that a small keep-alive request costs one
 * recv(2), one send(2), one timer re-arm and no malloc: requests are parsed
 * in place, per-request memory comes from a pool that keeps its first block,
 * and replies are formatted straight into a fixed per-connection buffer.
 * Pipelined requests that arrive together are answered with one write.
 */
#include "autoconfig.h"

#include <errno.h>
#include <stddef.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "conn.h"
#include "handoff.h"
#include "log.h"
#include "pool.h"
#include "request.h"
#include "worker.h"

#define OSEG_MIN        (16 * 1024)
#define IOV_MAX_CONN    64
#define LINGER_MS       2000
#define DRAIN_IDLE_MS   2000

enum { T_NONE, T_HEADER, T_BODY, T_KEEPALIVE, T_LINGER, T_HANDLER };

/* An access log line waiting for its reply to leave: text[0..split) and
 * text[split..len) go either side of the body bytes sent. */
struct alog_wait {
	struct alog_wait *next;
	uint64_t          end;     /* conn->sent once the reply's last byte is out */
	uint64_t          bytes;   /* body bytes queued */
	int64_t           start_us; /* of the request, for access_log_time */
	size_t            split, len;
	char              text[];
};

static void conn_read_cb(evutil_socket_t fd, short what, void *arg);
static int  conn_read(struct conn *c);
static void conn_write_cb(evutil_socket_t fd, short what, void *arg);
static void conn_timer_cb(evutil_socket_t fd, short what, void *arg);
static void conn_timer(struct conn *c, int kind);
static void conn_post_cb(evutil_socket_t fd, short what, void *arg);
static int  conn_process(struct conn *c);
static void conn_close(struct conn *c);
static void conn_release(struct conn *c);
static void conn_abort(struct conn *c, const char *why);
static void conn_zombie(struct conn *c);
static void conn_handler_timeout(struct conn *c);
static void conn_discard_input(struct conn *c);
static void conn_alog_release(struct conn *c, int all);

/* ------------------------------------------------------------------ */
/* Timers                                                              */

static const struct timeval *
conn_timeout(struct conn *c, int kind)
{
	struct worker *w = c->w;

	switch (kind) {
	case T_HEADER:    return worker_timeout(w, WT_HEADER);
	case T_BODY:      return worker_timeout(w, WT_BODY);
	case T_KEEPALIVE: return worker_timeout(w, w->draining ? WT_DRAIN_IDLE
	                                                     : WT_KEEPALIVE);
	case T_LINGER:    return worker_timeout(w, WT_LINGER);
	case T_HANDLER:   return worker_timeout(w, WT_HANDLER);
	}
	return NULL;
}

/*
 * The clock of c->idle_ms: monotonic, the same in every worker, and
 * coarse (a few ms), which is all a timeout needs and a read of the vDSO's
 * last tick costs.  The loop's cached time is the wall clock: a step of
 * it between an idle start and a handoff counted as idle time.
 */
static int64_t
conn_idle_clock(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * T_HEADER or T_KEEPALIVE of a live worker, elapsed ms of it gone by
 * already.  (conn_timeout's are libevent's common timeouts, whose
 * microseconds hold a magic number: the length comes from the config.)
 */
static void
conn_timer_left(struct conn *c, int kind, int elapsed)
{
	const struct server_conf *sc = &c->w->cfg->server;
	long long ms = (kind == T_HEADER ? sc->header_timeout_ms :
	    sc->keepalive_timeout_ms) - elapsed;
	struct timeval tv;

	if (elapsed <= 0 || c->w->draining) {
		conn_timer(c, kind);
		return;
	}
	if (ms < 0)
		ms = 0;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	if (event_add(&c->tev, &tv) == -1)
		log_error("event_add(timer) failed for %s", conn_peer(c));
	c->timer_kind = kind;
}

static void
conn_timer(struct conn *c, int kind)
{
	if (kind == T_NONE) {
		if (c->timer_kind != T_NONE)
			event_del(&c->tev);
	} else if (event_add(&c->tev, conn_timeout(c, kind)) == -1) {
		log_error("event_add(timer) failed for %s", conn_peer(c));
	}
	c->timer_kind = kind;
}

/*
 * Input waits while a request is with its module, and while the client
 * is not taking its replies: pipelined requests are answered only as fast
 * as it reads them, so a client that sends and never reads costs at most
 * REQ_HIGH_WATER of output, not a reply for every request it sends.
 */
static int
conn_input_waits(const struct conn *c)
{
	return (c->state != REQ_NONE && c->state != REQ_BODY) ||
	    c->queued > REQ_HIGH_WATER;
}

/* ------------------------------------------------------------------ */
/* Accept and close                                                    */

/*
 * The peer's "address:port", made on first use: only an access log line,
 * an error message or a module asking for it needs the text, and for a
 * Connection: close client without an access log the inet_ntop and
 * snprintf were 1.5% of the worker's CPU (perf, 2026-12-05).
 */
const char *
conn_peer(struct conn *c)
{
	const struct sockaddr_storage *ss = &c->peer_sa;
	char host[INET6_ADDRSTRLEN];

	if (c->peer[0] != '\0')
		return c->peer;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)ss;
		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		snprintf(c->peer, sizeof(c->peer), "%s:%u", host,
		    ntohs(sin->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)ss;
		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		snprintf(c->peer, sizeof(c->peer), "[%s]:%u", host,
		    ntohs(sin6->sin6_port));
	} else {
		snprintf(c->peer, sizeof(c->peer), "unix");
	}
	return c->peer;
}

/* While a slot is free the slab keeps its link there; what comes after
 * (the buffers, the pool) survives for the next connection. */
_Static_assert(offsetof(struct conn, rev) >= SLAB_LINK,
    "struct conn: w and fd must cover the slab's link");

static struct conn *
conn_new(struct worker *w, int fd, const struct sockaddr *sa, socklen_t salen)
{
	struct conn *c;
	int fresh, e;

	/* The caller logs it and pauses: a line per client flooded the log,
	 * and a worker that took every client only to close it was a black
	 * hole for them. */
	if ((c = slab_alloc(&w->conn_slab, &fresh)) == NULL) {
		e = errno;
		if (close(fd) == -1)
			log_error("close (a connection without memory): %s",
			    strerror(errno));
		errno = e;
		return NULL;
	}
	if (fresh) {
		c->in = c->in0;
		c->in_size = sizeof(c->in0);
		pool_init(&c->pool, c->pool0, sizeof(c->pool0));
	}
	c->w = w;
	c->fd = fd;
	c->in_len = c->in_pos = 0;
	c->olen = c->opos = 0;
	c->oq = NULL;
	c->oq_tail = &c->oq;
	c->queued = 0;
	c->sent = 0;
	c->alog = NULL;
	c->alog_tail = &c->alog;
	c->state = REQ_NONE;
	c->nreq = 0;
	c->idle_seq = 0;
	c->away = -1;
	c->io_err = 0;
	c->io_op = NULL;
	c->timer_kind = T_NONE;
	c->flags = sa->sa_family == AF_UNIX ? CONN_NODELAY : 0;
	memset(&c->req, 0, sizeof(c->req));
	c->req.conn = c;
	c->req.pool = &c->pool;
	c->peer[0] = '\0';
	memset(&c->peer_sa, 0, sizeof(c->peer_sa));
	memcpy(&c->peer_sa, sa, salen <= sizeof(c->peer_sa) && salen > 0 ?
	    salen : sizeof(sa->sa_family));

	event_assign(&c->rev, w->base, fd, EV_READ | EV_PERSIST, conn_read_cb, c);
	event_assign(&c->wev, w->base, fd, EV_WRITE, conn_write_cb, c);
	event_assign(&c->tev, w->base, -1, 0, conn_timer_cb, c);
	event_assign(&c->post, w->base, -1, 0, conn_post_cb, c);
	worker_conn_opened(w, c);
	return c;
}

/*
 * A new connection is read before it is put in epoll: clients usually
 * send right after connecting, and a request answered with
 * "Connection: close" is then served without an epoll_ctl at all.  The
 * read event goes in only if the connection is still here and waiting.
 */
static void
conn_start(struct conn *c)
{
	if (conn_read(c) == -1 || (c->flags & CONN_READ_OFF))
		return;
	if (event_add(&c->rev, NULL) == -1) {
		log_error("event_add(read) failed for %s", conn_peer(c));
		conn_close(c);
	}
}

int
conn_accept(struct worker *w, int fd, const struct sockaddr *sa, socklen_t salen)
{
	struct conn *c;

	if ((c = conn_new(w, fd, sa, salen)) == NULL)
		return -1;
	c->idle_ms = conn_idle_clock();
	conn_timer(c, T_HEADER);
	conn_start(c);
	return 0;
}

int
conn_adopt(struct worker *w, const struct handoff_conn *hc)
{
	struct conn *c;

	if ((c = conn_new(w, hc->fd, (const struct sockaddr *)&hc->peer,
	    sizeof(hc->peer))) == NULL)
		return -1;
	/* Still the same keep-alive connection to its client. */
	c->nreq = hc->nreq;
	if (c->nreq > 0)
		c->idle_seq = ++w->idle_seq;
	c->away = hc->away;
	c->flags |= CONN_WROTE;
	if (hc->flags & HANDOFF_NODELAY)
		c->flags |= CONN_NODELAY;
	/* What is left of its timeout, not a new one: a connection that
	 * sent nothing kept clear of header_timeout for as long as workers
	 * were recycled under it. */
	c->idle_ms = conn_idle_clock() - hc->idle_ms;
	conn_timer_left(c, hc->nreq > 0 ? T_KEEPALIVE : T_HEADER, hc->idle_ms);
	/* Its next request may be waiting in the socket already; if the
	 * client left on the way, this read finds out. */
	conn_start(c);
	return 0;
}

/* Sends c, idle, to CPU index k's workers (-1: any worker's). */
static int
conn_pass(struct conn *c, int k)
{
	struct handoff_conn hc;
	int64_t idle;

	idle = conn_idle_clock() - c->idle_ms;
	hc.fd = c->fd;
	hc.nreq = c->nreq;
	hc.flags = (c->flags & CONN_NODELAY) ? HANDOFF_NODELAY : 0;
	hc.away = c->away;
	/* Past a day, longer than any timeout may be. */
	hc.idle_ms = idle < 0 ? 0 : idle > 86400000 ? 86400000 : (int)idle;
	hc.peer = c->peer_sa;
	return handoff_send(&hc, k);
}

/*
 * A recycled worker's idle connection goes to a live worker instead of
 * being closed (handoff.c).  Idle means at a request boundary with
 * nothing read and nothing to send.  Returns 0 if it went (and c is
 * gone), -1 if it stays here: until the pair has room again
 * (worker_handoff_wait), or to be closed when the drain says so.
 */
static int
conn_handoff(struct conn *c)
{
	int k;

	if (!c->w->handoff || (c->flags & (CONN_NOHANDOFF | CONN_CLOSING |
	    CONN_EOF | CONN_ERROR)) || c->state != REQ_NONE ||
	    c->in_len != c->in_pos || c->queued != 0)
		return -1;
	switch (conn_pass(c, k = worker_handoff_target(c->w))) {
	case 0:
		c->w->handed_off++;
		conn_close(c);
		return 0;
	case HANDOFF_FULL:
		worker_handoff_wait(c->w, k);
		return -1;
	case HANDOFF_REFS:
		worker_handoff_later(c->w);
		return -1;
	default:
		c->flags |= CONN_NOHANDOFF;
		return -1;
	}
}

/*
 * listen_per_cpu: a keep-alive connection stays on the worker that took
 * it, but its client may since have moved to another CPU (the scheduler
 * moves threads; a recycle's fork is often what makes it).  Then each
 * request wakes the client across CPUs, and the worker serves it at a
 * fraction of the rate it would on the client's CPU (doc/design.md).  So
 * every CONN_FOLLOW_EVERY requests, at a request boundary with nothing
 * read, the worker asks the socket where its packets arrive; seen on the
 * same other CPU twice in a row, it is passed to that CPU's workers like
 * a recycled worker's, if that does not leave them more than the balance
 * allows.  Returns 0 if it went (c is gone), -1 if it stays.
 */
static int
conn_follow(struct conn *c)
{
	int k;

	c->flags &= ~CONN_FOLLOW;
	/* Draining: a recycle hands it over anyway, a reload must close it.
	 * A unix socket's packets come from no CPU. */
	if (c->w->draining || c->in_len != c->in_pos ||
	    c->peer_sa.ss_family == AF_UNIX)
		return -1;
	k = worker_client_cpu(c->w, c->fd);
	if (k < 0 || k != c->away) {
		c->away = k;
		return -1;
	}
	if (!worker_cpu_room(c->w, k) || conn_pass(c, k) != 0)
		return -1;
	c->away = -1;
	worker_conn_moved(c->w);
	conn_close(c);
	return 0;
}

static void
conn_free_output(struct conn *c)
{
	struct oseg *s, *next;

	for (s = c->oq; s != NULL; s = next) {
		next = s->next;
		if (s->fd >= 0)
			close(s->fd);
		free(s);
	}
	c->oq = NULL;
	c->oq_tail = &c->oq;
	c->queued = 0;
	c->olen = c->opos = 0;
}

/*
 * A client that resets the connection (a closed browser tab, a killed
 * process) fails the next read or write with ECONNRESET or EPIPE, not
 * the FIN that conn_read reports: the request it cut off was logged with
 * the FIN's "client closed the connection" and not with these.  So the
 * failure is kept for conn_close's abort to name.
 */
static void
conn_io_failed(struct conn *c, const char *op, int err)
{
	if (c->io_err == 0) {
		c->io_err = err;
		c->io_op = op;
	}
}

/* Why a request in flight was cut off, if a read or write said; or NULL. */
static const char *
conn_io_why(const struct conn *c, char *buf, size_t len)
{
	if (c->io_err == 0)
		return NULL;
	snprintf(buf, len, "the %s failed: %s", c->io_op, strerror(c->io_err));
	return buf;
}

static void
conn_close(struct conn *c)
{
	struct worker *w = c->w;
	char why[128];

	if (c->state == REQ_HANDLER || c->state == REQ_BODY)
		conn_abort(c, conn_io_why(c, why, sizeof(why)));
	event_del(&c->rev);
	event_del(&c->wev);
	event_del(&c->tev);
	event_del(&c->post);
	if (c->flags & CONN_RESET) {
		struct linger lg = { 1, 0 };

		/* An RST, and the kernel drops what the socket still holds. */
		if (setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == -1)
			log_debug("setsockopt(SO_LINGER) on %s: %s", conn_peer(c),
			    strerror(errno));
	}
	if (close(c->fd) == -1)
		log_debug("close(%d) for %s: %s", c->fd, conn_peer(c), strerror(errno));
	c->fd = -1;
	if (c->alog != NULL)
		conn_alog_release(c, 1);
	conn_free_output(c);
	if (c->flags & CONN_ZOMBIE) {
		/* Kept, with its request, for the module (conn_abort). */
		c->flags = CONN_ZOMBIE | CONN_DEAD;
		worker_conn_closed(w, c);
		return;
	}
	conn_release(c);
	worker_conn_closed(w, c);
	slab_free(&w->conn_slab, c);
}

/* What a closed connection holds: its request's pool, a grown buffer. */
static void
conn_release(struct conn *c)
{
	pool_reset(&c->pool);
	/* One long head must not keep a big buffer in the cache. */
	if (c->in != c->in0) {
		free(c->in);
		c->in = c->in0;
		c->in_size = sizeof(c->in0);
	}
}

/*
 * The client went away (or we cut it off) while a request was in a
 * handler.  The module hears about it once; then the request's pool, and
 * everything registered on it, is released.
 */
static void
conn_abort(struct conn *c, const char *why)
{
	molt_request *req = &c->req;
	enum req_state st = c->state;

	c->state = REQ_NONE;
	if (st == REQ_HANDLER) {
		if (why != NULL)
			log_warn("%s %s from %s cut off: %s", req->method,
			    req->target, conn_peer(c), why);
		if (req->on_abort != NULL) {
			void (*cb)(molt_request *, void *) = req->on_abort;
			req->on_abort = NULL;
			cb(req, req->abort_arg);
		} else {
			conn_zombie(c);
		}
		req->status = req->status ? req->status : 499;
		worker_request_end(c->w, req);
	}
	if (!(c->flags & CONN_ZOMBIE))
		pool_reset(&c->pool);
}

/*
 * The module holds the request (its reply deferred, or a stream) and
 * registered no on_abort, so nothing tells it the client left: its late
 * answer would land on whatever connection next used this memory, which
 * is another client's.  The connection stays allocated, dead, with its
 * request and pool, until the module answers (conn_zombie_done); what it
 * calls until then does nothing.  A module that never answers keeps it
 * until its worker exits, as it would have kept the request.
 */
static void
conn_zombie(struct conn *c)
{
	static int told;
	const char *why = "whose client left";

	if (c->flags & CONN_CUT)
		why = "whose stream was cut off";
	else if (c->flags & CONN_LATE)
		why = "whose handler_timeout passed";
	c->flags |= CONN_ZOMBIE;
	if (!told) {
		told = 1;
		log_warn("module %s holds %s %s, %s, without an on_abort "
		    "callback: its answer will be dropped (once per worker)",
		    c->req.route->mod->name, c->req.method, c->req.target, why);
	}
}

void
conn_zombie_done(struct conn *c)
{
	if (c->flags & CONN_ZOMBIE_END)
		return;
	c->flags |= CONN_ZOMBIE_END;
	/* Freed from the loop: the module may read the request on its way
	 * out of the call that answered it. */
	event_active(&c->post, 0, 0);
}


/* ------------------------------------------------------------------ */
/* Output                                                              */

static struct oseg *
conn_seg_new(size_t cap)
{
	struct oseg *s;

	s = malloc(sizeof(*s) + cap);
	if (s == NULL)
		return NULL;
	s->next = NULL;
	s->fd = -1;
	s->off = 0;
	s->len = 0;
	s->pos = 0;
	s->cap = cap;
	return s;
}

/*
 * Sockets only, so send(2) and sendmsg(2) rather than write(2) and
 * writev(2): they skip the file layer (position lock, fsnotify), which
 * is measurable at two syscalls per request.
 */
static ssize_t
conn_send(struct conn *c, struct iovec *iov, int niov, int flags)
{
	struct msghdr mh;

	flags |= MSG_NOSIGNAL;
	if (niov == 1)
		return send(c->fd, iov[0].iov_base, iov[0].iov_len, flags);
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = iov;
	mh.msg_iovlen = (size_t)niov;
	return sendmsg(c->fd, &mh, flags);
}

static int
conn_queue_mem(struct conn *c, const char *data, size_t len)
{
	struct oseg *s = NULL;

	if (c->oq != NULL) {
		/* Find the tail to append into its spare room. */
		s = (struct oseg *)((char *)c->oq_tail - offsetof(struct oseg, next));
		if (s->fd >= 0 || s->cap - (s->pos + s->len) < len)
			s = NULL;
	}
	if (s == NULL) {
		s = conn_seg_new(len > OSEG_MIN ? len : OSEG_MIN);
		if (s == NULL) {
			worker_req_nomem(c->w, "out of memory queueing %zu bytes "
			    "for %s", len, conn_peer(c));
			return -1;
		}
		*c->oq_tail = s;
		c->oq_tail = &s->next;
	}
	memcpy(s->data + s->pos + s->len, data, len);
	s->len += len;
	c->queued += len;
	return 0;
}

/*
 * Nagle holds a small segment back while an earlier small one is not yet
 * acknowledged, and a client's delayed ACK turns that into 40 ms.  The
 * first write on a connection cannot be held, and a connection with
 * "Connection: close" seldom makes another, so TCP_NODELAY waits for the
 * second write (nginx waits for keep-alive the same way): one
 * setsockopt per keep-alive connection, none per short one.
 */
static void
conn_nodelay(struct conn *c)
{
	int one = 1;

	if (c->flags & CONN_NODELAY)
		return;
	if (!(c->flags & CONN_WROTE)) {
		c->flags |= CONN_WROTE;
		return;
	}
	c->flags |= CONN_NODELAY;
	if (setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == -1)
		log_debug("setsockopt(TCP_NODELAY) on %s: %s", conn_peer(c),
		    strerror(errno));
}

int
conn_out(struct conn *c, const void *data, size_t len)
{
	if (c->flags & (CONN_ERROR | CONN_DEAD))
		return -1;
	if (len == 0)
		return 0;
	if (c->oq == NULL && len <= CONN_OBUF_SIZE - c->olen) {
		memcpy(c->obuf + c->olen, data, len);
		c->olen += len;
		c->queued += len;
		return 0;
	}
	/*
	 * Too big for the buffer: write what we can right away so a large
	 * body is copied only for the part the socket would not take.
	 */
	if (c->oq == NULL) {
		struct iovec iov[2];
		ssize_t n;
		size_t first = c->olen - c->opos;

		iov[0].iov_base = c->obuf + c->opos;
		iov[0].iov_len = first;
		iov[1].iov_base = (void *)data;
		iov[1].iov_len = len;
		conn_nodelay(c);
		n = conn_send(c, iov, 2, 0);
		if (n == -1 && errno != EAGAIN && errno != EINTR) {
			c->flags |= CONN_ERROR;
			return -1;
		}
		if (n > 0) {
			c->sent += (uint64_t)n;
			if ((size_t)n < first) {
				c->opos += (size_t)n;
				c->queued -= (size_t)n;
			} else {
				c->queued -= first;
				c->olen = c->opos = 0;
				n -= (ssize_t)first;
				data = (const char *)data + n;
				len -= (size_t)n;
			}
		}
		if (len == 0)
			return 0;
		if (c->oq == NULL && c->olen == 0 && len <= CONN_OBUF_SIZE) {
			memcpy(c->obuf, data, len);
			c->olen = len;
			c->queued += len;
			return 0;
		}
	}
	return conn_queue_mem(c, data, len);
}

int
conn_out_file(struct conn *c, int fd, off_t off, size_t len)
{
	struct oseg *s;

	if (c->flags & (CONN_ERROR | CONN_DEAD)) {
		close(fd);
		return -1;
	}
	if ((s = conn_seg_new(0)) == NULL) {
		close(fd);
		return -1;
	}
	s->fd = fd;
	s->off = off;
	s->len = len;
	*c->oq_tail = s;
	c->oq_tail = &s->next;
	c->queued += len;
	return 0;
}

/*
 * A file reply that cannot keep the Content-Length it promised: the file
 * was truncated, or cannot be read.  What sendfile queued is references
 * to the file's pages, not copies, and a truncation zeroes them: the
 * socket holds up to its whole send buffer (megabytes) of zeros posing as
 * the file.  Closed with a FIN, all of it reached the client ahead of the
 * short body; a client that resumes with a plain Range kept them.  So
 * the connection is reset instead, which discards what is still unsent.
 */
static void
conn_file_broken(struct conn *c, const struct oseg *s, const char *why)
{
	char link[32], path[512];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", s->fd);
	if ((n = readlink(link, path, sizeof(path) - 1)) < 0)
		n = snprintf(path, sizeof(path), "(fd %d)", s->fd);
	path[n] = '\0';
	log_error("sending %s to %s: %s at offset %lld with %zu bytes still "
	    "promised; resetting the connection", path, conn_peer(c), why,
	    (long long)s->off, s->len);
	c->flags |= CONN_RESET;
}

/* Bytes the socket holds for the client, unsent or unacknowledged; -1
 * if it cannot say. */
static int
conn_outq(struct conn *c)
{
	int n;

	if (ioctl(c->fd, SIOCOUTQ, &n) == -1)
		return -1;
	return n;
}

/*
 * The write timer ran out.  A socket is writable again only once it has
 * room for a third of its buffer, which on a fast path is megabytes: a
 * client taking them slowly would wait for that longer than
 * write_timeout while it reads all along.  So the timer starts again if
 * the client took CONN_WRITE_PROGRESS bytes of what the socket held in
 * that time, or all of it; a client that reads less is cut, as one that
 * reads nothing is.
 */
static int
conn_write_moved(struct conn *c)
{
	int q = conn_outq(c), need;

	if (q < 0 || c->wait_outq <= q)
		return 0;
	need = c->wait_outq < CONN_WRITE_PROGRESS ? c->wait_outq :
	    CONN_WRITE_PROGRESS;
	if (c->wait_outq - q < need)
		return 0;
	c->wait_outq = q;
	return 1;
}

/* Writes as much as the socket takes.  0: all sent, 1: more left, -1: error. */
int
conn_flush(struct conn *c)
{
	struct iovec iov[IOV_MAX_CONN];
	struct oseg *s;
	struct timeval now;
	ssize_t n;
	int niov, budget;

	if (c->flags & CONN_ERROR)
		return -1;
	/*
	 * Only what overflowed the connection's buffer (c->oq: a file, a
	 * large body) can hold the loop; the rest, at most CONN_OBUF_SIZE, is
	 * sent without a look at the budget, so the hello path pays nothing.
	 * A turn of the loop is known by libevent's cached time, which it
	 * takes once a turn: the budget is per turn, not per call, or
	 * pipelined requests and a stream's writes (a flush each) would each
	 * get one.
	 */
	budget = c->oq != NULL;
	if (budget) {
		event_base_gettimeofday_cached(c->w->base, &now);
		if (now.tv_usec != c->turn_tv.tv_usec ||
		    now.tv_sec != c->turn_tv.tv_sec) {
			c->turn_tv = now;
			c->turn_sent = 0;
		}
	}
	while (c->queued > 0) {
		/*
		 * A client that reads as fast as a local disk sends kept the
		 * loop here until its file was out: 400 MB in one turn, while
		 * every other client of the worker waited up to a second.
		 * Past CONN_FLUSH_TURN the rest waits for the next turn, as
		 * nginx's sendfile_max_chunk does; the socket is still
		 * writable, so the next epoll_wait reports it with the others.
		 */
		if (budget && c->turn_sent >= CONN_FLUSH_TURN)
			goto again;
		s = c->oq;
		if (c->olen == c->opos && s != NULL && s->fd >= 0) {
			conn_nodelay(c);
			n = sendfile(c->fd, s->fd, &s->off,
			    s->len > (1 << 20) ? (1 << 20) : s->len);
			if (n == -1) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN)
					goto again;
				if (errno == EIO) {
					conn_file_broken(c, s, strerror(errno));
					goto fail;
				}
				log_debug("sendfile to %s: %s", conn_peer(c), strerror(errno));
				conn_io_failed(c, "write", errno);
				goto fail;
			}
			if (n == 0) {
				conn_file_broken(c, s, "the file ended early (truncated?)");
				goto fail;
			}
			s->len -= (size_t)n;
			c->queued -= (size_t)n;
			c->sent += (uint64_t)n;
			c->turn_sent += (size_t)n;
			if (s->len == 0) {
				c->oq = s->next;
				if (c->oq == NULL)
					c->oq_tail = &c->oq;
				close(s->fd);
				free(s);
			}
			continue;
		}
		niov = 0;
		if (c->olen > c->opos) {
			iov[0].iov_base = c->obuf + c->opos;
			iov[0].iov_len = c->olen - c->opos;
			niov = 1;
		}
		for (; s != NULL && s->fd < 0 && niov < IOV_MAX_CONN; s = s->next) {
			iov[niov].iov_base = s->data + s->pos;
			iov[niov].iov_len = s->len;
			niov++;
		}
		if (s != NULL && s->fd >= 0) {
			/*
			 * A file follows: the head leaves in the file's first
			 * segment (nginx corks for this).  Not a write of its own
			 * for conn_nodelay, which would push it out alone.
			 */
			n = conn_send(c, iov, niov, MSG_MORE);
		} else {
			conn_nodelay(c);
			n = conn_send(c, iov, niov, 0);
		}
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				goto again;
			log_debug("write to %s: %s", conn_peer(c), strerror(errno));
			conn_io_failed(c, "write", errno);
			goto fail;
		}
		c->queued -= (size_t)n;
		c->sent += (uint64_t)n;
		c->turn_sent += (size_t)n;
		if (c->olen > c->opos) {
			size_t k = c->olen - c->opos;
			if ((size_t)n < k) {
				c->opos += (size_t)n;
				continue;
			}
			c->olen = c->opos = 0;
			n -= (ssize_t)k;
		}
		while (n > 0 && (s = c->oq) != NULL && s->fd < 0) {
			if ((size_t)n < s->len) {
				s->pos += (size_t)n;
				s->len -= (size_t)n;
				n = 0;
				break;
			}
			n -= (ssize_t)s->len;
			c->oq = s->next;
			if (c->oq == NULL)
				c->oq_tail = &c->oq;
			free(s);
		}
	}
	if (c->flags & CONN_WRITE_ON) {
		event_del(&c->wev);
		c->flags &= ~CONN_WRITE_ON;
	}
	if (c->alog != NULL)
		conn_alog_release(c, 0);
	return 0;
again:
	if (c->alog != NULL)
		conn_alog_release(c, 0);
	if (!(c->flags & CONN_WRITE_ON)) {
		c->wait_outq = conn_outq(c);
		if (event_add(&c->wev, worker_timeout(c->w, WT_WRITE)) == -1) {
			log_error("event_add(write) failed for %s", conn_peer(c));
			goto fail;
		}
		c->flags |= CONN_WRITE_ON;
	}
	return 1;
fail:
	c->flags |= CONN_ERROR;
	return -1;
}

/* ------------------------------------------------------------------ */
/* Access log lines of replies still going out                         */

int
conn_alog_held(const struct conn *c)
{
	/* What fits the connection's buffer leaves at the end of this turn
	 * of the loop; only a reply queued beyond it is worth the wait. */
	return c->oq != NULL || c->alog != NULL;
}

void
conn_alog_hold(struct conn *c, const char *line, size_t split, size_t len,
    uint64_t bytes, int64_t start_us)
{
	struct alog_wait *a;

	if ((a = malloc(sizeof(*a) + len)) == NULL) {
		worker_req_nomem(c->w, "out of memory holding an access log "
		    "line for %s; writing it now", conn_peer(c));
		worker_access_emit(c->w, line, split, len, bytes, start_us);
		return;
	}
	a->next = NULL;
	a->end = c->sent + c->queued;
	a->bytes = bytes;
	a->start_us = start_us;
	a->split = split;
	a->len = len;
	memcpy(a->text, line, len);
	*c->alog_tail = a;
	c->alog_tail = &a->next;
}

/*
 * Writes the lines of the replies that have left; all: the connection
 * is closing, and a reply cut short is logged with the bytes that got
 * out (its unsent bytes are its last ones).
 */
static void
conn_alog_release(struct conn *c, int all)
{
	struct alog_wait *a;
	uint64_t unsent;

	while ((a = c->alog) != NULL) {
		unsent = a->end > c->sent ? a->end - c->sent : 0;
		if (unsent > 0 && !all)
			break;
		worker_access_emit(c->w, a->text, a->split, a->len,
		    a->bytes > unsent ? a->bytes - unsent : 0, a->start_us);
		c->alog = a->next;
		free(a);
	}
	if (c->alog == NULL)
		c->alog_tail = &c->alog;
}

/* A fast stop exits without closing the connections. */
void
conn_alog_release_all(struct worker *w)
{
	struct conn *c;

	for (c = w->conns; c != NULL; c = c->next)
		if (c->alog != NULL)
			conn_alog_release(c, 1);
}

/* ------------------------------------------------------------------ */
/* Errors answered by the core                                         */

void
conn_error_reply(struct conn *c, int status, const char *msg, int close_after)
{
	molt_request *req = &c->req;

	if (close_after)
		c->flags |= CONN_CLOSING;
	req_reply_core_error(req, status, msg, close_after);
}

/* ------------------------------------------------------------------ */
/* Request life cycle                                                  */

/* Reading goes on once what stopped it (conn_input_waits) is over. */
static void
conn_resume_input(struct conn *c)
{
	if ((c->flags & CONN_READ_OFF) && !(c->flags & (CONN_EOF | CONN_CLOSING)) &&
	    !conn_input_waits(c) && event_add(&c->rev, NULL) == 0)
		c->flags &= ~CONN_READ_OFF;
}

/*
 * The reply is complete.  The access log and statistics are written and
 * the pool is reset, so the next pipelined request starts clean.
 */
static void
conn_finish_request(struct conn *c)
{
	molt_request *req = &c->req;

	if (req->resp_flags & RESP_CLOSE)
		c->flags |= CONN_CLOSING;
	worker_request_end(c->w, req);
	c->state = REQ_NONE;
	c->nreq++;
	c->idle_ms = conn_idle_clock();
	if (c->w->follow && (c->nreq & (CONN_FOLLOW_EVERY - 1)) == 0)
		c->flags |= CONN_FOLLOW;
	pool_reset(&c->pool);
	req->on_abort = NULL;
	req->on_drain = NULL;
	/*
	 * Here and not only at the end of conn_process: the next pipelined
	 * request may go to a module that defers, and while it waits the
	 * socket must be read, or a client's FIN (an abort) goes unseen.
	 */
	conn_resume_input(c);
}

void
conn_reply_complete(struct conn *c)
{
	c->state = REQ_DONE;
	if (!(c->flags & CONN_DISPATCH))
		event_active(&c->post, 0, 0);
}

/* Runs the module's handler with the request fully read. */
static void
conn_dispatch(struct conn *c)
{
	molt_request *req = &c->req;
	int rc;

	/*
	 * The replies to the requests pipelined before this one go out
	 * first: if this handler crashes the worker, they were served, and
	 * a client told nothing would send them again.  Without pipelining
	 * nothing is queued here and this costs nothing.  A failure shows
	 * again at the flush after the batch, which closes.
	 */
	if (c->queued > 0)
		(void)conn_flush(c);
	c->state = REQ_HANDLER;
	/* A body or header deadline armed earlier no longer applies. */
	c->timer_kind = T_NONE;
	worker_request_begin(c->w, req);
	rc = req->route->mod->handle(req);
	worker_handler_returned(c->w);
	if (c->state != REQ_HANDLER)
		return;
	if (rc == MOLT_PENDING && !(req->resp_flags & RESP_STARTED) &&
	    c->w->cfg->server.handler_timeout_ms > 0)
		conn_timer(c, T_HANDLER);
	if (rc == MOLT_ERROR && (req->resp_flags & RESP_STREAM)) {
		/*
		 * Too late for a 500.  What the module wrote goes out and the
		 * close cuts the reply short (no last chunk): dropped with the
		 * connection, it left the client an empty reply, which clients
		 * retry, with a 200 in the access log and nothing said here.
		 */
		log_error("module %s returned MOLT_ERROR after starting its "
		    "reply to %s %s; cutting the reply short",
		    req->route->mod->name, req->method, req->target);
		molt_stream_abort(req);
	} else if (rc == MOLT_ERROR) {
		req_reply_core_error(req, 500, "internal server error", 0);
	} else if (rc != MOLT_PENDING && !(req->resp_flags & RESP_STREAM)) {
		log_error("module %s returned without a reply for %s",
		    req->route->mod->name, req->target);
		req_reply_core_error(req, 500, "internal server error", 0);
	}
}

/*
 * A head that was refused: its first line as the client sent it, for the
 * access log, which writes it whole in place of method, target and
 * version, as nginx's $request does (an operator looking into an attack
 * or a broken client needs the bytes).  At most 1 KB, from the pool.
 */
static char *
conn_raw_line(struct conn *c)
{
	const char *p = c->in + c->in_pos, *end = c->in + c->in_len, *nl;
	size_t len;

	while (p < end && (*p == '\r' || *p == '\n'))
		p++;
	nl = memchr(p, '\n', (size_t)(end - p));
	len = (size_t)((nl != NULL ? nl : end) - p);
	if (len > 0 && p[len - 1] == '\r')
		len--;
	if (len > 1024)
		len = 1024;
	return len > 0 ? molt_pstrndup(&c->pool, p, len) : NULL;
}

/* Copies the head out of the input buffer so the buffer can move. */
static int
conn_start_request(struct conn *c, size_t hl)
{
	struct worker *w = c->w;
	molt_request *req = &c->req;
	struct http_head *h = &req->head;
	const struct molt_config *cfg = w->cfg;
	char *copy;
	ptrdiff_t d;
	size_t i;

	copy = molt_palloc(&c->pool, hl);
	if (copy == NULL)
		return -1;
	memcpy(copy, c->in + c->in_pos, hl);
	d = copy - (c->in + c->in_pos);
#define REBASE(p) do { if ((p) != NULL) (p) += d; } while (0)
	REBASE(h->method);
	REBASE(h->target);
	REBASE(h->path);
	REBASE(h->query);
	REBASE(h->host);
	for (i = 0; i < h->nheaders; i++) {
		REBASE(h->headers[i].name);
		REBASE(h->headers[i].value);
	}
#undef REBASE
	c->in_pos += hl;
	if (c->in_pos == c->in_len)
		c->in_pos = c->in_len = 0;

	req->status = 0;
	req->resp_flags = (h->flags & HTTP_F_HEAD) ? RESP_HEAD : 0;
	req->bytes_out = 0;
	req->resp_headers = NULL;
	req->on_abort = NULL;
	req->on_drain = NULL;
	req->client_sa = NULL;      /* realip_resolve, in req_prepare below */
	req->client_text = NULL;
	req->hnames = req->hvalues = NULL;
	req->params_parsed = 0;
	req->nparams = 0;
	req->body = NULL;
	req->body_len = req->body_cap = 0;
	memset(&req->chunked, 0, sizeof(req->chunked));
	req->route = NULL;
	req->start_ms = worker_now_ms(w);
	req->start_us = worker_clock_us();
	/* Busy now: the keep-alive deadline no longer applies. */
	c->timer_kind = T_NONE;

	if (req_prepare(req) == -1)
		return -1;
	if (req->route == NULL)
		return 0;

	if (h->flags & HTTP_F_CHUNKED) {
		c->state = REQ_BODY;
	} else if ((h->flags & HTTP_F_HAS_LENGTH) && h->content_length > 0) {
		if (h->content_length > (uint64_t)cfg->server.max_body_size) {
			conn_error_reply(c, 413, "request body too large", 1);
			return 0;
		}
		req->body_cap = (size_t)h->content_length;
		req->body = molt_palloc(&c->pool, req->body_cap + 1);
		if (req->body == NULL) {
			worker_req_nomem(c->w, "out of memory for a %zu-byte body "
			    "from %s", req->body_cap, conn_peer(c));
			conn_error_reply(c, 500, "out of memory", 1);
			return 0;
		}
		c->state = REQ_BODY;
	} else {
		conn_dispatch(c);
		return 0;
	}
	if ((h->flags & HTTP_F_CONTINUE) && h->version == 11 &&
	    c->in_len == c->in_pos) {
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
		if (conn_out(c, cont, sizeof(cont) - 1) == -1)
			return -1;
	}
	conn_timer(c, T_BODY);
	return 0;
}

/* Moves body bytes from the input buffer into the request.  1 = complete. */
static int
conn_read_body(struct conn *c)
{
	molt_request *req = &c->req;
	size_t avail = c->in_len - c->in_pos;
	long long max = c->w->cfg->server.max_body_size;

	if (!(req->head.flags & HTTP_F_CHUNKED)) {
		size_t need = req->body_cap - req->body_len;
		size_t n = avail < need ? avail : need;

		memcpy(req->body + req->body_len, c->in + c->in_pos, n);
		req->body_len += n;
		c->in_pos += n;
		if (c->in_pos == c->in_len)
			c->in_pos = c->in_len = 0;
		if (req->body_len < req->body_cap)
			return 0;
		req->body[req->body_len] = '\0';
		return 1;
	}
	while (c->in_pos < c->in_len) {
		size_t consumed = 0, produced = 0;
		int r;

		r = http_chunked_decode(&req->chunked, c->in + c->in_pos,
		    c->in_len - c->in_pos, &consumed, &produced);
		if (r < 0) {
			conn_error_reply(c, 400, "malformed chunked body", 1);
			return -1;
		}
		/* At a chunk's size line, as nginx does: the client is told
		 * before it sends max_body_size bytes of a body refused anyway. */
		if ((uint64_t)req->body_len + produced +
		    http_chunked_owed(&req->chunked) > (uint64_t)max) {
			conn_error_reply(c, 413, "request body too large", 1);
			return -1;
		}
		if (produced > 0) {
			if (req->body_len + produced + 1 > req->body_cap) {
				size_t cap = req->body_cap ? req->body_cap * 2 : 4096;
				char *nb;

				while (cap < req->body_len + produced + 1)
					cap *= 2;
				if ((long long)cap > max + 1)
					cap = (size_t)max + 1;
				if ((nb = molt_palloc(&c->pool, cap)) == NULL) {
					worker_req_nomem(c->w, "out of memory for "
					    "a %zu-byte body from %s", cap,
					    conn_peer(c));
					conn_error_reply(c, 500, "out of memory", 1);
					return -1;
				}
				if (req->body_len)
					memcpy(nb, req->body, req->body_len);
				req->body = nb;
				req->body_cap = cap;
			}
			memcpy(req->body + req->body_len, c->in + c->in_pos, produced);
			req->body_len += produced;
		}
		c->in_pos += consumed;
		if (r == 1) {
			if (c->in_pos == c->in_len)
				c->in_pos = c->in_len = 0;
			if (req->body != NULL)
				req->body[req->body_len] = '\0';
			return 1;
		}
		if (consumed == 0)
			break;
	}
	if (c->in_pos == c->in_len)
		c->in_pos = c->in_len = 0;
	return 0;
}

/*
 * Parses and runs every complete request in the buffer.  Returns -1 if the
 * connection was closed (c is gone), else 0.
 */
static int
conn_process(struct conn *c)
{
	struct worker *w = c->w;
	const struct server_conf *sc = &w->cfg->server;
	struct http_limits lim;
	int r;

	lim.max_head = (size_t)sc->max_header_size;
	lim.max_uri = (size_t)sc->max_uri_size;
	lim.max_headers = (size_t)sc->max_headers;

	c->flags |= CONN_DISPATCH;
	for (;;) {
		if (c->state == REQ_DONE)
			conn_finish_request(c);
		if (c->flags & (CONN_CLOSING | CONN_ERROR))
			break;
		if (c->state == REQ_BODY) {
			r = conn_read_body(c);
			if (r == 0)
				break;
			if (r < 0)
				continue;
			conn_dispatch(c);
			continue;
		}
		if (c->state != REQ_NONE)
			break;
		if (c->in_len == c->in_pos)
			break;
		if (c->queued > REQ_HIGH_WATER &&
		    (conn_flush(c) == -1 || c->queued > REQ_HIGH_WATER))
			break;  /* the rest waits until the client reads */
		r = http_parse_head(c->in + c->in_pos, c->in_len - c->in_pos,
		    &lim, &c->req.head);
		if (r == 0) {
			if (c->timer_kind != T_HEADER)
				conn_timer(c, T_HEADER);
			break;
		}
		if (r < 0) {
			static const char *msgs[] = { "malformed request" };
			const char *m = msgs[0];

			switch (-r) {
			case 414: m = "request-target too long"; break;
			case 417: m = "unsupported expectation"; break;
			case 431: m = "request header fields too large"; break;
			case 501: m = "transfer coding not implemented"; break;
			case 505: m = "HTTP version not supported"; break;
			}
			req_clear(&c->req);
			c->req.target = conn_raw_line(c);
			conn_error_reply(c, -r, m, 1);
			continue;
		}
		if (conn_start_request(c, (size_t)r) == -1) {
			c->flags &= ~CONN_DISPATCH;
			conn_close(c);
			return -1;
		}
	}
	c->flags &= ~CONN_DISPATCH;

	if (conn_flush(c) == -1) {
		conn_close(c);      /* the module hears it there (conn_abort) */
		return -1;
	}
	/*
	 * A module waiting for room (molt_stream_on_drain) hears of it from
	 * conn_write_cb.  A flush here that took the queue under the low
	 * water mark (the client read meanwhile) leaves no write event to
	 * come, and the stream would wait forever; so it is told from the
	 * loop (conn_post_cb), as when it registers with the queue low.
	 */
	if (c->state == REQ_HANDLER && c->req.on_drain != NULL &&
	    c->queued <= REQ_LOW_WATER)
		event_active(&c->post, 0, 0);
	if (c->state == REQ_NONE && c->queued == 0) {
		if ((c->flags & CONN_CLOSING) && ((c->flags & CONN_EOF) ||
		    (c->req.status < 400 && c->in_len == c->in_pos))) {
			/* Nothing unread: a plain close cannot turn into a RST. */
			conn_close(c);
			return -1;
		} else if (c->flags & CONN_CLOSING) {
			/*
			 * Let the client read the reply before the FIN: a close
			 * with unread input would send RST and could destroy it.
			 */
			if (c->timer_kind != T_LINGER) {
				shutdown(c->fd, SHUT_WR);
				conn_timer(c, T_LINGER);
			}
		} else if (c->flags & CONN_EOF) {
			conn_close(c);
			return -1;
		} else if (c->w->draining && conn_handoff(c) == 0) {
			return -1;
		} else if ((c->flags & CONN_FOLLOW) && conn_follow(c) == 0) {
			return -1;
		} else if (c->in_len == c->in_pos && c->nreq > 0 &&
		    c->timer_kind != T_KEEPALIVE) {
			/*
			 * Not before the first request: a client that connects
			 * and sends nothing gets header_timeout, not the minute
			 * of keep-alive it has not earned.
			 */
			c->idle_seq = ++c->w->idle_seq;
			conn_timer(c, T_KEEPALIVE);
			worker_conn_idle(c->w);
		}
	}
	conn_resume_input(c);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Event callbacks                                                     */

/* Reads what the socket has and serves it.  -1: c is closed and gone. */
static int
conn_read(struct conn *c)
{
	int fd = c->fd;
	size_t space;
	ssize_t n;

	if (c->timer_kind == T_LINGER) {
		char junk[4096];

		/* Discard until EOF; the reply was sent already. */
		do
			n = recv(fd, junk, sizeof(junk), 0);
		while (n > 0);
		if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			conn_close(c);
			return -1;
		}
		return 0;
	}
	for (;;) {
		if (c->state == REQ_BODY && !(c->req.head.flags & HTTP_F_CHUNKED) &&
		    c->in_len == c->in_pos) {
			/* Large bodies go straight into the request. */
			molt_request *req = &c->req;
			n = recv(fd, req->body + req->body_len,
			    req->body_cap - req->body_len, 0);
			if (n > 0) {
				req->body_len += (size_t)n;
				if (req->body_len < req->body_cap)
					continue;
				req->body[req->body_len] = '\0';
				c->flags |= CONN_DISPATCH;
				conn_timer(c, T_NONE);
				conn_dispatch(c);
				c->flags &= ~CONN_DISPATCH;
				break;
			}
		} else {
			if (c->in_pos > 0 && c->in_len == c->in_size) {
				memmove(c->in, c->in + c->in_pos, c->in_len - c->in_pos);
				c->in_len -= c->in_pos;
				c->in_pos = 0;
			}
			space = c->in_size - c->in_len;
			if (space == 0) {
				size_t max = (size_t)c->w->cfg->server.max_header_size;
				char *nb;

				if (conn_input_waits(c)) {
					/* Pipelined input waits in a full buffer. */
					event_del(&c->rev);
					c->flags |= CONN_READ_OFF;
					break;
				}
				if (c->in_size >= max + 4096)
					break;  /* the parser answers 431 */
				if (c->in == c->in0) {
					if ((nb = malloc(c->in_size * 2)) != NULL)
						memcpy(nb, c->in, c->in_len);
				} else {
					nb = realloc(c->in, c->in_size * 2);
				}
				if (nb == NULL) {
					worker_req_nomem(c->w, "out of memory growing "
					    "the input buffer of %s", conn_peer(c));
					conn_close(c);
					return -1;
				}
				c->in = nb;
				c->in_size *= 2;
				space = c->in_size - c->in_len;
			}
			n = recv(fd, c->in + c->in_len, space, 0);
			if (n > 0) {
				c->in_len += (size_t)n;
				if ((size_t)n == space)
					continue;
				break;
			}
		}
		if (n == 0) {
			c->flags |= CONN_EOF;
			break;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN)
			break;
		log_debug("read from %s: %s", conn_peer(c), strerror(errno));
		conn_io_failed(c, "read", errno);
		conn_close(c);
		return -1;
	}

	if ((c->flags & CONN_EOF) && (c->state == REQ_HANDLER || c->state == REQ_BODY)) {
		/* nginx does the same: a FIN while waiting means an abort. */
		if (c->state == REQ_HANDLER)
			conn_abort(c, "client closed the connection");
		conn_close(c);
		return -1;
	}
	if (conn_process(c) == -1)
		return -1;
	if ((c->flags & CONN_EOF) && c->state == REQ_NONE && c->queued > 0) {
		/* Finish writing, then close; reading is over. */
		event_del(&c->rev);
		c->flags |= CONN_READ_OFF | CONN_CLOSING;
	}
	return 0;
}

static void
conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)conn_read(arg);
}

static void
conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	molt_request *req = &c->req;
	int r;

	(void)fd;
	c->flags &= ~CONN_WRITE_ON;
	if (what & EV_TIMEOUT) {
		if (conn_write_moved(c) &&
		    event_add(&c->wev, worker_timeout(c->w, WT_WRITE)) == 0) {
			c->flags |= CONN_WRITE_ON;
			return;
		}
		log_info("write timeout for %s", conn_peer(c));
		conn_io_failed(c, "write", ETIMEDOUT);
		conn_close(c);
		return;
	}
	r = conn_flush(c);
	if (r == -1) {
		conn_close(c);
		return;
	}
	if (c->state == REQ_HANDLER && req->on_drain != NULL &&
	    c->queued <= REQ_LOW_WATER) {
		void (*cb)(molt_request *, void *) = req->on_drain;

		/* One-shot: the module re-registers when it waits again. */
		req->on_drain = NULL;
		cb(req, req->drain_arg);
		return;
	}
	if (r == 0)
		conn_process(c);
}

static void
conn_post_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)what;
	if (c->flags & CONN_ZOMBIE) {
		if (c->flags & CONN_ZOMBIE_END) {
			conn_release(c);
			c->flags = 0;
			slab_free(&c->w->conn_slab, c);
		}
		return;
	}
	if (c->flags & CONN_ERROR) {
		conn_close(c);
		return;
	}
	if (c->state == REQ_HANDLER && c->req.on_drain != NULL &&
	    c->queued <= REQ_LOW_WATER) {
		void (*cb)(molt_request *, void *) = c->req.on_drain;

		c->req.on_drain = NULL;
		cb(&c->req, c->req.drain_arg);
		return;
	}
	conn_process(c);
}

static void
conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	int kind = c->timer_kind;

	(void)fd;
	(void)what;
	c->timer_kind = T_NONE;
	switch (kind) {
	case T_NONE:
		return;     /* a stale deadline from before the request began */
	case T_HEADER:
		if (c->in_len > c->in_pos) {
			req_clear(&c->req);
			/* Logged as sent, as a refused head is: "- - HTTP/1.1"
			 * hid what the slow client asked for. */
			c->req.target = conn_raw_line(c);
			conn_error_reply(c, 408, "request header timeout", 1);
			conn_process(c);
			return;
		}
		break;
	case T_BODY:
		if (c->state == REQ_BODY) {
			c->state = REQ_NONE;
			conn_error_reply(c, 408, "request body timeout", 1);
			conn_process(c);
			return;
		}
		break;
	case T_HANDLER:
		/* Answered, or a stream that began: the module's pace now. */
		if (c->state == REQ_HANDLER &&
		    !(c->req.resp_flags & RESP_STARTED))
			conn_handler_timeout(c);
		return;
	}
	conn_close(c);
}

/*
 * A deferred reply that never came held its client forever: nothing but
 * a drain ended it.  After handler_timeout the client gets a 504, as
 * nginx gives for an upstream that does not answer, and the module hears
 * of it through its on_abort, as if the client had left.  A module with
 * no on_abort may still answer later, into memory a new client would
 * have; so the connection closes and its request stays with the module
 * until then (conn_zombie), its answer dropped.
 */
static void
conn_handler_timeout(struct conn *c)
{
	molt_request *req = &c->req;
	void (*cb)(molt_request *, void *) = req->on_abort;

	c->flags |= CONN_LATE;
	log_warn("module %s did not answer %s %s from %s within "
	    "handler_timeout=%.1fs; answering 504", req->route->mod->name,
	    req->method, req->target, conn_peer(c),
	    (double)c->w->cfg->server.handler_timeout_ms / 1000.0);
	if (cb != NULL) {
		/* Not the module's to answer any more, as in conn_abort. */
		req->on_abort = NULL;
		c->state = REQ_NONE;
		cb(req, req->abort_arg);
		req_reply_core_error(req, 504, "the handler did not answer in "
		    "time", 1);
		(void)conn_process(c);
		return;
	}
	req_reply_core_error(req, 504, "the handler did not answer in time", 1);
	/* A few hundred bytes: out now, or lost with the close. */
	(void)conn_flush(c);
	/*
	 * No lingering here (the request must go with the connection), so
	 * what the client sent and we never read goes first: a close with
	 * unread input is a reset, which can destroy the 504 in flight.
	 */
	conn_discard_input(c);
	c->state = REQ_HANDLER;
	conn_abort(c, NULL);
	conn_close(c);
}

static void
conn_discard_input(struct conn *c)
{
	char junk[4096];
	int i;

	if (shutdown(c->fd, SHUT_WR) == -1)
		log_debug("shutdown(%s): %s", conn_peer(c), strerror(errno));
	for (i = 0; i < 64; i++)
		if (recv(c->fd, junk, sizeof(junk), MSG_DONTWAIT) <= 0)
			break;
}

/* ------------------------------------------------------------------ */
/* Draining                                                            */

/* Between requests, nothing read and nothing to send: keep-alive, or a new
 * connection that has not sent a byte yet. */
static int
conn_idle(const struct conn *c)
{
	return c->state == REQ_NONE && c->in_len == c->in_pos &&
	    c->queued == 0 && (c->timer_kind == T_KEEPALIVE ||
	    (c->timer_kind == T_HEADER && c->nreq == 0));
}

void
conn_drain_all(struct worker *w)
{
	struct conn *c, *next;

	for (c = w->conns; c != NULL; c = next) {
		next = c->next;
		/*
		 * An idle keep-alive connection gets a short grace period: its
		 * client may be sending the next request right now, and that
		 * request is answered (with Connection: close), not dropped.
		 */
		if (conn_idle(c) && conn_handoff(c) == -1)
			conn_timer(c, T_KEEPALIVE);
	}
}

/*
 * At max_connections a worker makes room by closing the connection that
 * has been idle longest, as nginx reuses them: else clients that merely
 * hold connections, between requests or before their first, lock every
 * new one out for keepalive_timeout or header_timeout.  RFC 9112 9.3
 * lets a server close an idle connection at any time; clients retry.
 * Idle since its last reply ended, not since its last request began: a
 * connection whose long stream has just finished is the newest idle one.
 * A sequence number orders them, not a clock: no ties, and no clock read
 * on the keep-alive path.  One that never sent a byte goes first (its
 * idle_seq is 0), and
 * connections in the middle of a request are never taken.  Returns 0 if
 * one is idle (and, with close, was closed), -1 if none is.
 */
int
conn_reclaim_idle(struct worker *w, int close)
{
	struct conn *c, *oldest = NULL;

	/* The list is newest first, so "<=" prefers the older of those
	 * that never sent a byte (idle_seq 0). */
	for (c = w->conns; c != NULL; c = c->next)
		if (conn_idle(c) && (oldest == NULL ||
		    c->idle_seq <= oldest->idle_seq))
			oldest = c;
	if (oldest == NULL)
		return -1;
	if (close)
		conn_close(oldest);
	return 0;
}

void
conn_close_all(struct worker *w, const char *why)
{
	struct conn *c;

	while ((c = w->conns) != NULL) {
		if (c->state == REQ_HANDLER)
			conn_abort(c, why);
		conn_close(c);
	}
}
