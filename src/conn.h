/*
 * conn.h - one client connection and the request in flight on it.
 *
 * A connection reads into a fixed buffer, parses requests in place and
 * answers them through an output queue: a fixed buffer first, then heap
 * segments and files for whatever the socket would not take at once.  The
 * common small request therefore costs no malloc at all.
 */
#ifndef MOLT_CONN_H
#define MOLT_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "http_parse.h"
#include "molt/module.h"
#include "pool.h"

struct worker;
struct wroute;

/* Output queue element beyond the fixed buffer. */
struct alog_wait;

struct oseg {
	struct oseg *next;
	int          fd;        /* >= 0: a file to sendfile */
	off_t        off;       /* file: next offset */
	size_t       len;       /* bytes left to send (file or memory) */
	size_t       cap;       /* memory: capacity of data[] */
	size_t       pos;       /* memory: first unsent byte */
	char         data[];
};

struct resp_header {
	const char         *name;
	const char         *value;
	struct resp_header *next;
};

enum req_state {
	REQ_NONE,        /* between requests */
	REQ_BODY,        /* head parsed, reading the body */
	REQ_HANDLER,     /* module has it (running, pending or streaming) */
	REQ_DONE,        /* reply complete; waiting to be finished */
};

struct molt_request {
	struct conn       *conn;
	struct molt_pool  *pool;
	struct wroute     *route;
	struct http_head   head;      /* points into conn->in */
	char              *method;    /* NUL-terminated copies in the pool */
	char              *target;
	char              *path;
	char              *path_info;
	char              *query;
	char             **hnames, **hvalues;  /* NUL-terminated, lazily */
	char             **pnames, **pvalues;  /* decoded query, lazily */
	size_t             nparams;
	int                params_parsed;
	char              *body;
	size_t             body_len;
	size_t             body_cap;
	struct http_chunked chunked;

	int                status;
	unsigned           resp_flags;
	uint64_t           bytes_out;   /* body bytes, for the access log */
	struct resp_header *resp_headers;
	void             (*on_abort)(molt_request *, void *);
	void              *abort_arg;
	void             (*on_drain)(molt_request *, void *);
	void              *drain_arg;
	int64_t            start_ms;
	int64_t            start_us;    /* worker_clock_us(), for durations */
	uint64_t           alloc_mark;  /* allocator counters at start */
	uint64_t           alloc_count_mark;
	uint64_t           in_use_mark;
	/* The client a trusted proxy named (realip.c); NULL: the peer. */
	struct sockaddr_storage *client_sa;
	const char        *client_text;  /* molt_req_peer's, made on first use */
};

/* resp_flags */
#define RESP_STARTED   0x01   /* status line queued */
#define RESP_STREAM    0x02   /* streamed reply in progress */
#define RESP_CHUNKED   0x04   /* stream uses chunked coding */
#define RESP_CLOSE     0x08   /* Connection: close on this reply */
#define RESP_HEAD      0x10   /* no body bytes (HEAD; a 204 or 304 stream) */
#define RESP_DONE      0x20   /* whole reply queued */
#define RESP_BEGUN     0x40   /* counted as active by the worker */

#define CONN_OBUF_SIZE (16 * 1024)
/* The most one connection sends in one turn of the loop (conn_flush). */
#define CONN_FLUSH_TURN (2 * 1024 * 1024)
/* What a client must take in a write_timeout to keep a reply going. */
#define CONN_WRITE_PROGRESS (16 * 1024)
#define CONN_IN_SIZE   4096          /* first input buffer; heads may grow it */
#define CONN_POOL_SIZE 4096          /* the request pool's first block */

struct conn {
	struct worker     *w;
	int                fd;
	struct event       rev;       /* EV_READ | EV_PERSIST */
	struct event       wev;       /* EV_WRITE, added while output waits */
	struct event       tev;       /* state timer: header/body/keep-alive */
	struct event       post;      /* finish a reply given outside dispatch */
	char               peer[64];  /* conn_peer(): empty until first asked */
	struct sockaddr_storage peer_sa;

	char              *in;        /* read buffer: in0, or a bigger one */
	size_t             in_size;
	size_t             in_len;    /* bytes in the buffer */
	size_t             in_pos;    /* start of unparsed data */

	size_t             olen;      /* bytes in obuf */
	size_t             opos;      /* first unsent byte in obuf */
	struct oseg       *oq, **oq_tail;
	size_t             queued;    /* unsent bytes in obuf and the queue */
	uint64_t           sent;      /* bytes the socket took, ever */
	size_t             turn_sent; /* of them, in the loop's turn of turn_tv */
	struct timeval     turn_tv;
	int                wait_outq; /* bytes the socket held when the write wait began; -1: unknown */
	struct alog_wait  *alog, **alog_tail; /* access lines of replies not yet sent */

	molt_request       req;
	enum req_state     state;
	unsigned           nreq;      /* requests on this connection */
	uint64_t           idle_seq;  /* order it last went idle in; 0: not yet served */
	int64_t            idle_ms;   /* when: its accept, or the end of its
	                                 last request (conn_idle_clock); a
	                                 handoff carries it */
	int                timer_kind;
	unsigned           flags;
	int                away;      /* another CPU index its client was seen on */
	int                io_err;    /* errno of the read or write that failed */
	const char        *io_op;     /* ...and which: "read" or "write" */
	struct molt_pool   pool;      /* the request's memory; first block pool0 */
	struct conn       *next, *prev; /* worker's list of open connections */

	/*
	 * The buffers come last and in one slab slot with the rest: a new
	 * connection costs no malloc, and a small request touches only the
	 * first bytes of each, a few pages in all (a page fault is most of
	 * what a fresh worker spends on the connections handed to it).
	 */
	char               in0[CONN_IN_SIZE];
	char               pool0[CONN_POOL_SIZE] __attribute__((aligned(16)));
	char               obuf[CONN_OBUF_SIZE];
};

/* conn flags */
#define CONN_DISPATCH   0x01  /* inside the read/dispatch path */
#define CONN_CLOSING    0x02  /* close once the output is sent */
#define CONN_EOF        0x04  /* peer sent FIN */
#define CONN_READ_OFF   0x08  /* read event removed (buffer full / busy) */
#define CONN_WRITE_ON   0x10  /* write event pending */
#define CONN_DEAD       0x20  /* closed; waiting to be freed */
#define CONN_ERROR      0x40  /* write failed: peer is gone */
#define CONN_NOHANDOFF  0x80  /* draining, and the handoff refused it */
#define CONN_WROTE      0x100 /* something was written: see conn_nodelay */
#define CONN_NODELAY    0x200 /* TCP_NODELAY is set, or not a TCP socket */
#define CONN_RESET      0x400 /* close with RST: what is unsent is broken */
#define CONN_ZOMBIE     0x800 /* gone, its request still a module's (conn_abort) */
#define CONN_ZOMBIE_END 0x1000 /* ...until its answer: freed from the loop */
#define CONN_FOLLOW     0x2000 /* look where its client runs: conn_follow */
#define CONN_CUT        0x4000 /* its stream cut off: written on after MOLT_AGAIN */
#define CONN_LATE       0x8000 /* its handler_timeout passed */

/* listen_per_cpu: requests between two looks at a connection's CPU. */
#define CONN_FOLLOW_EVERY 32

/* Called by the worker for a new socket from accept4.  -1 (errno set, fd
 * closed, nothing logged): no memory for the connection. */
int  conn_accept(struct worker *w, int fd, const struct sockaddr *sa, socklen_t salen);
/* A connection handed over by a recycled worker (handoff.c); as above. */
struct handoff_conn;
int  conn_adopt(struct worker *w, const struct handoff_conn *hc);
/* "address:port" of the client, or "unix"; formatted on first use. */
const char *conn_peer(struct conn *c);
/* Drain mode: hand over or close idle connections, and the rest after
 * their reply. */
void conn_drain_all(struct worker *w);
/* At the limit: whether a connection is idle (0) or not (-1); with close,
 * the longest idle one is closed. */
int  conn_reclaim_idle(struct worker *w, int close);
/* Cut every connection now (drain timeout, fast stop); logs what was cut. */
void conn_close_all(struct worker *w, const char *why);

/* Used by request.c. */
int  conn_out(struct conn *c, const void *data, size_t len);
int  conn_out_file(struct conn *c, int fd, off_t off, size_t len);
int  conn_flush(struct conn *c);
/*
 * The access log counts the body bytes that were sent.  A reply still
 * queued beyond the connection's buffer when it ends has its line held
 * (conn_alog_hold) and written once the reply has left, or when the
 * connection closes, with the bytes that got out.
 */
int  conn_alog_held(const struct conn *c);
/* A gone connection's request got the module's answer (request.c). */
void conn_zombie_done(struct conn *c);
void conn_alog_hold(struct conn *c, const char *line, size_t split, size_t len,
    uint64_t bytes, int64_t start_us);
void conn_alog_release_all(struct worker *w);
void conn_reply_complete(struct conn *c);
void conn_error_reply(struct conn *c, int status, const char *msg, int close);

#endif /* MOLT_CONN_H */
