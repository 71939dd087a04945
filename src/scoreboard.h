/*
 * scoreboard.h - shared memory between the master and its workers.
 *
 * Created before the first fork and never resized.  A slot is written by
 * one worker (the "w_" half) and by the master (the "m_" half), each half
 * on its own cache lines so neither side's writes bounce the other's
 * lines.  The master reads the worker half as untrusted input: a crashing
 * or hostile module can scribble anything there.  Slots start on pages of
 * their own, so that each worker keeps the others' read-only in its
 * process (scoreboard_protect).
 */
#ifndef MOLT_SCOREBOARD_H
#define MOLT_SCOREBOARD_H

#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define SB_SLOTS       512   /* 2 x the worker limit, for replacements */
#define SB_ROUTES      64    /* routes with their own statistics */
#define SB_DBS         8     /* [database] sections with their own statistics */
#define SB_REQ_LEN     80
#define SB_ACCESS_BUF  (64 * 1024)  /* a worker's unwritten access-log lines */
#define SB_PAGE        4096  /* slots and the header are a multiple of it */

enum sb_state { SB_FREE, SB_STARTING, SB_IDLE, SB_BUSY, SB_DRAINING, SB_EXITED };
enum sb_alloc { SB_ALLOC_UNKNOWN, SB_ALLOC_GLIBC, SB_ALLOC_JEMALLOC };

struct sb_route_stats {
	uint64_t requests;
	uint64_t time_us;        /* their durations added (sb_latency's) */
	uint64_t allocs;         /* malloc calls while serving (route_stats) */
	uint64_t alloc_bytes;    /* bytes asked for while serving */
	int64_t  max_growth;     /* largest heap growth one request left */
	uint64_t recycles;       /* recycles triggered while this route ran */
};

/*
 * A worker's figures for one [database] section, in the order of the
 * configuration, published at each sample tick and at exit (db_publish).
 * Counters since the worker started; the last four are gauges.
 */
struct sb_db_stats {
	uint64_t queries;           /* statements run, a transaction's included */
	uint64_t rows;              /* rows delivered to modules */
	uint64_t query_us;          /* their durations added, the wait included */
	uint64_t unavailable;       /* ended with 503 */
	uint64_t timeouts;          /* ended with 504 */
	uint64_t errors;            /* ended with 500 */
	uint64_t connects;          /* connections opened */
	uint64_t connect_failures;
	uint64_t txns;              /* transactions begun */
	uint64_t txn_rollbacks;     /* rolled back by molt: their request ended */
	uint64_t sessions_closed;   /* closed for what a statement left on them */
	uint32_t live, busy, held;  /* connections up; running a query; held */
	uint32_t queued;            /* queries waiting for a connection */
};
/* Its fields by kind, for the places that copy or add them all. */
#define SB_DB_COUNTERS(X) X(queries) X(rows) X(query_us) X(unavailable) \
	X(timeouts) X(errors) X(connects) X(connect_failures) X(txns) \
	X(txn_rollbacks) X(sessions_closed)
#define SB_DB_GAUGES(X) X(live) X(busy) X(held) X(queued)

/*
 * How long requests took, from the head read to the reply handed to the
 * connection (worker_request_end): count[i] holds those above bucket
 * i - 1's bound and within sb_lat_le_us[i]; the last bucket has no bound.
 * Per bucket, not cumulative, so that a request is one increment.
 */
#define SB_LAT_BUCKETS 14
struct sb_latency {
	uint64_t count[SB_LAT_BUCKETS];
	uint64_t sum_us;
};
extern const int64_t sb_lat_le_us[SB_LAT_BUCKETS - 1];

struct sb_slot {
	/* Worker half: written only by the worker in this slot. */
	struct {
		volatile uint32_t seq;      /* odd while being written */
		uint32_t state;
		pid_t    pid;
		uint32_t generation;
		int64_t  start_ms;
		uint64_t requests;
		uint32_t connections;
		uint32_t active;
		uint32_t in_handler;        /* 1 while a module's handle() runs */
		int64_t  req_start_ms;      /* 0 when idle */
		int32_t  req_route;         /* route index or -1 */
		int32_t  grew_route;        /* route of the last request whose end
		                               hinted heap growth, or -1 */
		char     req_line[SB_REQ_LEN]; /* "GET /x" of the last request */
		uint32_t allocator;
		int64_t  sampled_ms;
		uint64_t heap_in_use;
		uint64_t heap_held;
		uint64_t heap_free;
		uint64_t conn_memory;       /* mapped for connections (slab.c) */
		uint64_t trims;
		uint64_t trim_reclaimed;
		uint32_t trim_seen;         /* last trim request served */
		uint32_t handed_off;        /* keep-alive connections passed on */
		uint32_t asked_recycle;     /* SIGQUIT (not the master's) or
		                               SIGXCPU came: recycle it */
		int32_t  exit_signal;       /* SIGTERM/SIGINT it exits on, or 0 */
		int64_t  mallocs;           /* malloc calls so far; -1 if not counted */
		int64_t  defer_until_ms;    /* leaving new connections to others */
		int64_t  paused_until_ms;   /* accepts off: out of descriptors
		                               or of memory for a connection */
		uint32_t access_len;        /* bytes of lines in sb_access(slot) */
		int64_t  beat_ms;           /* sb_clock_ms() at the last sample tick */
		int32_t  cpu;               /* pinned to this CPU, or -1 */
		uint64_t moved;             /* connections passed to their client's CPU */
		uint64_t covered;           /* taken from another CPU's socket */
		uint64_t start_cpu_us;      /* CPU it used from its fork to ready */
		uint64_t exit_cpu_us;       /* CPU it had used when it called exit */
		/* Its access-log writes that failed, for the master to say
		 * (master_access_collect), and those that worked after. */
		uint64_t access_failed;
		uint64_t access_lost;       /* bytes of lines they lost */
		uint64_t access_again;      /* a write worked after failures */
		int32_t  access_errno;      /* of the last write; 0 if it worked */
	} w __attribute__((aligned(64)));
	/* Master half. */
	struct {
		volatile uint32_t seq;
		uint32_t trim_request;      /* bumped to ask for a trim */
		pid_t    pid;
		uint32_t generation;
		int      id;
		uint32_t retiring;          /* SB_RETIRE_*: why SIGQUIT came */
		uint64_t rss, uss, pss, rss_anon;
		int64_t  measured_ms;
		uint64_t trims;             /* trims the master asked for */
	} m __attribute__((aligned(64)));
	struct sb_latency lat __attribute__((aligned(64)));   /* worker's */
	struct sb_route_stats routes[SB_ROUTES] __attribute__((aligned(64)));
	struct sb_db_stats dbs[SB_DBS] __attribute__((aligned(64)));  /* worker's */
} __attribute__((aligned(SB_PAGE)));

/* Fleet totals, written by the master. */
enum sb_reason { R_RSS, R_HARD_RSS, R_FRAGMENTATION, R_REQUESTS, R_LIFETIME,
	R_CRASH, R_RELOAD, R_STALL, R_SIGNAL, R_MAX };

/* Set by the master before it sends a worker SIGQUIT to retire it. */
enum {
	SB_RETIRE_NONE = 0,
	SB_RETIRE_HANDOFF = 1,      /* recycled: idle connections move on */
	SB_RETIRE_CLOSE = 2         /* reload: they are closed */
};

struct sb_header {
	volatile uint32_t seq;
	uint32_t nslots;
	int64_t  master_start_ms;
	pid_t    master_pid;
	uint32_t generation;
	uint64_t recycles[R_MAX];
	uint64_t trims;
	uint64_t trim_reclaimed;
	uint64_t retired_requests;      /* requests by workers that are gone */
	struct sb_latency retired_lat;  /* their durations */
	uint64_t handed_over;           /* connections recycled workers passed on */
	uint64_t moved;                 /* ...live ones to their client's CPU (gone workers) */
	uint64_t covered;               /* taken from another CPU's socket (gone workers) */
	uint64_t starts;                /* workers that got ready */
	uint64_t start_cpu_us;          /* the CPU they used to get there */
	uint64_t exits;                 /* workers reaped after a clean exit */
	uint64_t exit_cpu_us;           /* the CPU exit took them, teardown included */
	struct sb_route_stats retired_routes[SB_ROUTES];
	struct sb_db_stats retired_dbs[SB_DBS];  /* counters only */
	char     route_names[SB_ROUTES][64];
	uint32_t nroutes;
	volatile uint32_t stopping;     /* the master is stopping: no handoff */
	volatile uint32_t slots_hi;     /* slots at or past this are free */
} __attribute__((aligned(SB_PAGE)));

/*
 * Warnings that can come many times a second (sb_often), each logged at
 * most once every 10 s for the whole fleet (worker_often_due).  A count
 * kept in each worker began afresh in every new one, so under a lasting
 * condition (out of descriptors, of memory) each recycle logged a line at
 * once: some 2,000 of each in 15 s with a recycle every 300 requests.
 */
enum sb_often_kind {
	SB_OFTEN_ACCEPT_PAUSED,     /* "pausing accepts" */
	SB_OFTEN_ADOPT_PAUSED,      /* "pausing adoption" */
	SB_OFTEN_NOMEM,             /* "out of memory for a connection" */
	SB_OFTEN_REQ_NOMEM,         /* ... for a request's buffers */
	SB_OFTEN_RECLAIMED,         /* "closed idle connections" at the limit */
	SB_OFTEN_FD_RECLAIMED,      /* ... when out of descriptors */
	SB_OFTEN_MAX
};

/* On a cache line of its own: a kind's events, from every worker at
 * once, do not bounce the other kinds' lines. */
struct sb_often {
	int64_t  logged_ms;     /* sb_clock_ms() of its last line; 0: none yet */
	uint64_t count;         /* events since that line, the fleet's */
} __attribute__((aligned(64)));

struct scoreboard {
	struct sb_header *hdr;
	struct sb_slot   *slots;
	char             *access;   /* SB_ACCESS_BUF bytes per slot */
	/*
	 * SB_OFTEN_MAX entries on a page of its own, writable in every
	 * worker (scoreboard_protect leaves it alone): each worker counts
	 * there.  The master reads nothing from it, so a module's stray
	 * write there can only change how often, and with what count, a
	 * warning is logged.
	 */
	struct sb_often  *often;
};

extern struct scoreboard sb;
extern const char *const sb_reason_names[R_MAX];
extern const char *const sb_state_names[];

int  scoreboard_create(void);
/*
 * Worker, first thing: the header, every slot but its own and every
 * access-log buffer but its own, read-only in this process.  A module's
 * stray write into another worker's slot (a pid, a heartbeat) got that
 * worker killed as stalled, and one into the header spoiled the fleet's
 * figures; now it faults here, in the module's own worker, which the
 * master logs as a crash in that module.  Returns 0, or -1 (logged).
 */
int  scoreboard_protect(int own);
/* Milliseconds on the clock of beat_ms: the master's, and the worker's when
 * it beats, so the two compare. */
static inline int64_t
sb_clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
/*
 * Where the worker in slot i gathers its access-log lines.  In shared
 * memory, so that what a worker that died (a crash, a kill) had not
 * written yet is written out by the master; a page is only resident once
 * a worker has logged into it.
 */
static inline char *sb_access(int i) { return sb.access + (size_t)i * SB_ACCESS_BUF; }
/* Worker side: seqlock-style updates so readers see consistent figures. */
static inline void sb_begin(volatile uint32_t *seq) { (*seq)++; __atomic_thread_fence(__ATOMIC_RELEASE); }
static inline void sb_end(volatile uint32_t *seq) { __atomic_thread_fence(__ATOMIC_RELEASE); (*seq)++; }
/* Copies a slot's worker half consistently; -1 if it kept changing. */
int  scoreboard_read_worker(int i, struct sb_slot *out);
/* What a worker's memory is for: its heap in use plus its connections,
 * the latter clamped to measure (the worker wrote it). */
uint64_t scoreboard_in_use(const struct sb_slot *s, uint64_t measure);

#endif
