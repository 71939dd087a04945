/*
 * worker.h - a worker process: one libevent loop serving HTTP.
 */
#ifndef MOLT_WORKER_H
#define MOLT_WORKER_H

#include <stdint.h>
#include <sys/resource.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "molt/module.h"
#include "slab.h"

struct conf_error;
struct conn;
struct molt_config;
struct listen_addr;
struct sb_slot;
struct module;

/* A route as the worker serves it. */
struct wroute {
	const char                 *prefix;
	size_t                      prefix_len;
	unsigned                    methods;
	const struct molt_module   *mod;
	struct molt_conf           *conf;
	void                       *data;    /* from route_init */
	int                         index;   /* into the per-route stats */
	int                         inited;
};

/* Timeouts shared by many connections (libevent common timeouts: O(1)). */
enum { WT_HEADER, WT_BODY, WT_KEEPALIVE, WT_DRAIN_IDLE, WT_LINGER, WT_WRITE,
       WT_HANDLER, WT_MAX };

#define WORKER_NSIGS 7      /* worker_sigs in worker.c */

/* A module's molt_worker_on_drain. */
#define WORKER_DRAIN_HOOKS 32
struct worker_drain_hook {
	void               (*cb)(molt_worker *w, void *arg);
	void                *arg;
	int                  called;
};

struct worker {
	struct event_base   *base;
	rlim_t               nofile;      /* RLIMIT_NOFILE at its start */
	struct molt_config  *cfg;
	struct sb_slot      *slot;
	int                  id;          /* logical worker number */
	int                  slot_index;
	unsigned             generation;
	struct wroute       *routes;
	int                  nroutes;
	struct module       *modules;
	struct listen_sock {
		struct worker *w;
		int           fd;
		struct event  ev;
		int           on;
		int           cpu;      /* listen_per_cpu: its CPU index, or -1 */
		int           foreign;  /* another CPU's: see worker_foreign_update */
	}                   *ls;
	int                  nls;
	int                  ncpus;    /* pinned: the CPUs workers share, else 0 */
	int                  cpu_index; /* pinned: id mod ncpus, else -1 */
	int                  cpu;      /* pinned: the CPU, else -1 */
	const int16_t       *cpu_index_of; /* pinned: CPU -> index or -1 */
	int                  follow;   /* connections follow their client's CPU */
	int                  in_check; /* the module check's trial (worker_trial) */
	struct event        *foreign_ev;
	int                  epfd;     /* libevent's epoll set, or -1: see worker_listen_exclusive */
	struct event        *sig_ev[WORKER_NSIGS];
	const struct timeval *timeouts[WT_MAX];
	int                  notify_fd;
	int                  route_stats;
	struct event        *sample_ev;
	struct event        *drain_ev;
	struct event        *drain_hooks_ev;  /* runs the modules' on_drain */
	struct worker_drain_hook drain_hooks[WORKER_DRAIN_HOOKS];
	int                  ndrain_hooks;
	struct event        *accept_retry_ev;
	struct event        *accept_defer_ev;  /* balance: see worker_accept */
	struct event        *alog_ev;      /* writes buffered access log lines */
	int                  alog_armed;
	uintptr_t            brk_seen;     /* heap top when the master last heard */
	uintptr_t            brk_step;     /* growth worth a MSG_GROWN, or 0 */
	long                 defer_least;  /* least loaded peer when deferring */
	int64_t              defer_since_ms; /* ... had that count since, or 0 */
	long                 stuck_least;  /* ... when it was found stuck, or -1 */
	struct conn         *conns;        /* open connections */
	struct slab          conn_slab;    /* closed ones keep their buffers */
	int                  nconns;
	uint64_t             idle_seq;     /* last conn->idle_seq handed out */
	int                  nactive;      /* requests in a handler */
	int                  draining;
	/* What worker_doorbell saw unanswered at the last sample. */
	uint32_t             bell_trim;
	int                  bell_retire;
	int                  exiting;
	int64_t              drain_start_ms;
	char                 date[40];     /* "Date: ...\r\n" cache */
	int64_t              date_sec;
	uint64_t             requests;
	uint64_t             req_limit;    /* max_requests with jitter, or 0 */
	struct event        *adopt_ev;     /* handed-over connections */
	struct event        *adopt_cpu_ev; /* ... by a worker on this CPU */
	struct event        *adopt_defer_ev;  /* balance, and out of descriptors */
	int                  adopt_on;
	int                  handoff;      /* draining: hand idle conns over */
	struct event        *handoff_room_ev;  /* worker_handoff_wait */
	struct event        *handoff_later_ev; /* worker_handoff_later */
	unsigned             handed_off;
	uint64_t             moved;        /* passed to their client's CPU */
	uint64_t             covered;      /* taken from another CPU's socket */
};

extern struct worker *worker_self;
/* db.c: the last database query in flight ended (a drain may be over). */
void worker_db_settled(void);

const struct timeval *worker_timeout(struct worker *w, int kind);

/* Runs a worker; never returns. */
void worker_main(struct molt_config *cfg, int id, int slot_index,
                 unsigned generation, int notify_fd, uint64_t req_limit)
                 __attribute__((noreturn));

/* To [server] user and group; also for the validator (master.c). */
int  worker_drop_privileges(struct molt_config *cfg, struct conf_error *err);
int  worker_trial(struct molt_config *cfg, struct module *mods,
                  struct conf_error *err);

/* Called by conn.c. */
void worker_conn_opened(struct worker *w, struct conn *c);
void worker_conn_closed(struct worker *w, struct conn *c);
/* One was passed to the worker on its client's CPU (conn_follow). */
void worker_conn_moved(struct worker *w);
/* Out of memory serving a request: logged at most every 10 s, for the
 * fleet. */
void worker_req_nomem(struct worker *w, const char *fmt, ...)
    MOLT_PRINTF(2, 3);
/* A connection became an idle keep-alive one. */
void worker_conn_idle(struct worker *w);
/* The CPU index a recycled worker hands its connections to (its
 * replacement's, listen_per_cpu), or -1 for any worker. */
int  worker_handoff_target(struct worker *w);
int  worker_route_names(const struct molt_config *cfg, const char **out,
    int max);
void worker_handoff_wait(struct worker *w, int k);
void worker_handoff_later(struct worker *w);
/* listen_per_cpu: the other CPU index fd's packets arrive on, or -1; and
 * whether that index's workers have room for one more of ours. */
int  worker_client_cpu(struct worker *w, int fd);
int  worker_cpu_room(struct worker *w, int k);
void worker_request_begin(struct worker *w, molt_request *req);
void worker_request_end(struct worker *w, molt_request *req);
/* A module's handle() returned: the slot and the loop's clock catch up. */
void worker_handler_returned(struct worker *w);
/* An access log line held by conn_alog_hold, with the body bytes sent;
 * start_us: when its request began, for access_log_time. */
void worker_access_emit(struct worker *w, const char *text, size_t split,
    size_t len, uint64_t bytes, int64_t start_us);
int64_t worker_now_ms(struct worker *w);
int64_t worker_clock_us(void);
const char *worker_date_header(struct worker *w);
struct wroute *worker_route(struct worker *w, const char *path, size_t len);

#endif /* MOLT_WORKER_H */
