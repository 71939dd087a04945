/*
 * db.c - MariaDB connection pools on the worker's event loop.
 *
 * Every worker owns, per [database NAME], a pool of connections it opened
 * itself after fork (never the master: a child closing an inherited
 * connection would end the parent's session).  Each connection is driven
 * by Connector/C's non-blocking API: an operation is started with
 * *_start(); while it returns MYSQL_WAIT_* flags we wait for them with one
 * libevent event on the connection's socket, and call *_cont() when it
 * fires.  One worker therefore serves many DB-bound requests at once.
 *
 * Queries are prepared statements.  Results are read unbuffered (no
 * cursor, no store_result): each mysql_stmt_fetch pulls one row off the
 * socket into the connection's bind buffers, we turn it into text in
 * grow-once per-connection buffers and hand it to on_row.  Nothing is
 * allocated per row or per field, so memory is O(1) in the number of rows.
 * When on_row says MOLT_AGAIN we simply stop fetching: the server's rows
 * back up in its socket buffer, and TCP does the rest.
 *
 * A query that is cancelled mid-way (client gone, request ended, timeout)
 * discards its connection: draining a million unread rows to reuse it
 * would cost more than a reconnect.  The pool opens a fresh one at once.
 *
 * Request lifetime: molt_req_on_abort takes one callback per request and
 * belongs to the module, so this file learns that a request ended through
 * molt_pool_cleanup on the request's pool, which runs when the request
 * ends for any reason (finished, aborted, or worker drain timeout).
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <mysql.h>
#include <errmsg.h>
#include <mysqld_error.h>

#include "molt/module.h"
#include "config.h"
#include "db.h"
#include "scoreboard.h"
#include "db_conf.h"
#include "db_sql.h"
#include "dblib.h"
#include "worker.h"

#define DB_STMT_CACHE        32     /* prepared statements kept per connection */
#define DB_ROWS_PER_TURN     256    /* rows delivered before yielding to the loop */
#define DB_BACKOFF_MIN_MS    100
#define DB_BACKOFF_MAX_MS    2000
#define DB_STRBUF_MIN        256    /* first size of a column's text buffer */
#define DB_STRBUF_KEEP       (1024 * 1024)  /* larger ones go after the query */
#define DB_TEXT_SLOT         64     /* numbers, dates: fits any of them */
#define DB_ABORT_TRIES       16
#define DB_CONNECT_BURST     8      /* first connects in flight per pool */
#define DB_KILLS             32     /* abandoned queries waiting for a KILL */
/* Run at each connect: the server then flags a change of session in its
 * answer to the statement that made it (db_conn_session_changed). */
#define DB_TRACK_SESSION     "SET SESSION session_track_state_change = ON"

/* ------------------------------------------------------------------ */
/* Runtime                                                             */

enum db_cstate {
	DB_C_DOWN,        /* not connected; timer pending for the next attempt */
	DB_C_CONNECTING,
	DB_C_IDLE,
	DB_C_BUSY,        /* owns a query */
	DB_C_HELD,        /* a transaction's, between its queries */
	DB_C_DEAD,        /* could not be cleaned up; left alone */
};

enum db_op {
	DB_OP_NONE,
	DB_OP_CONNECT,
	DB_OP_PREPARE,
	DB_OP_EXECUTE,
	DB_OP_FETCH,
	DB_OP_KILL,       /* KILL QUERY for a query another connection left */
};

enum db_qstate {
	DB_Q_QUEUED,      /* waiting for a connection */
	DB_Q_FAILING,     /* an error is about to be delivered from the loop */
	DB_Q_RUNNING,     /* on a connection */
	DB_Q_FINISHED,    /* done, failed or cancelled */
};

struct db_stmt {
	char          *sql;
	size_t         len;
	MYSQL_STMT    *stmt;
	int            kind;       /* DB_SQL_* */
	unsigned long  used;       /* LRU tick */
};

/* One result column as the connection binds it. */
struct db_col {
	enum molt_db_type type;
	unsigned          decimals;
	union {
		long long          i;
		unsigned long long u;
		double             d;
		float              f;
		MYSQL_TIME         t;
	}                 fixed;
	char             *buf;     /* strings, blobs, decimals: grows, never shrinks */
	unsigned long     cap;
	unsigned long     len;
	my_bool           is_null;
	my_bool           error;
	char              text[DB_TEXT_SLOT];
};

struct db_pool;
struct molt_db_query;
struct molt_db_txn;

struct db_conn {
	struct db_pool  *pool;
	int              index;
	MYSQL           *mysql;
	enum db_cstate   state;
	enum db_op       op;           /* the operation suspended in the library */
	enum db_op       phase;        /* where the query is, for error handling */
	int              starting;     /* a query was assigned; runs from the loop */
	int              never_started;/* waits for its first connect (see db_pool_start_next) */
	int              lib_timeout;  /* the library asked for MYSQL_WAIT_TIMEOUT */
	int              connect_expired; /* this connect ran out of connect_timeout */
	int              in_cb;        /* inside a module callback */
	unsigned         failures;     /* connect attempts failed in a row */
	struct event     io;           /* the socket, re-assigned for each wait */
	struct event     timer;        /* reconnect backoff */
	struct event     kick;         /* continue from the loop (resume, fairness) */
	MYSQL           *ret_mysql;    /* results of _start/_cont */
	int              ret_int;
	char             kill_sql[48]; /* lives as long as DB_OP_KILL runs */

	struct molt_db_query *q;
	struct molt_db_txn *txn;       /* holding this connection */
	MYSQL_STMT      *stmt;         /* the query's statement */
	int              stmt_kind;    /* its DB_SQL_* */
	MYSQL_RES       *meta;
	unsigned long long rows;
	int              paused;
	int              slowed;       /* the query paused for its client for
	                                  DB_SLOW_PAUSE_MS or more at once */
	int64_t          paused_ms;    /* when the current pause began */
	int              lost;         /* the server ended the session */
	int              changed;      /* a statement changed the session */

	struct db_stmt   cache[DB_STMT_CACHE];
	int              ncache;
	unsigned long    tick;

	/* Grow-once buffers: never freed before the connection is. */
	MYSQL_BIND      *rbind;        /* result binds */
	struct db_col   *cols;
	struct molt_db_value  *vals;
	struct molt_db_column *mcols;
	size_t           ncols_cap;
	MYSQL_BIND      *pbind;        /* parameter binds */
	union { long long i; unsigned long long u; double d; } *pnum;
	unsigned long   *plen;
	size_t           nparams_cap;
};

struct db_pool {
	struct db_conf  *conf;
	struct db_conn  *conns;
	int              nconns;
	int              nlive;        /* IDLE, BUSY or HELD */
	int              down;         /* last attempt failed and nothing is up */
	char             last_error[256];
	struct molt_db_query *queue_head, **queue_tail;
	int              queued;
	unsigned long    kills[DB_KILLS]; /* server threads to KILL QUERY */
	int              nkills;
	int              index;        /* in the configuration's order */
	struct sb_db_stats st;         /* counters; db_publish adds the gauges */
	struct db_pool  *next;
};

struct molt_db_query {
	struct db_pool  *pool;
	struct db_conn  *conn;
	molt_request    *req;
	enum db_qstate   state;
	int              refs;          /* the request's and the database's */
	int              resume_early;  /* molt_db_resume during on_row */
	int              fail_status;
	char             fail_msg[320];
	struct molt_db_handler h;
	void            *arg;
	const char      *sql;
	size_t           sql_len;
	struct molt_db_param *params;
	size_t           nparams;
	struct event     timer;         /* query_timeout, and deferred errors */
	struct molt_db_query *next;          /* in the pool's queue */
	struct molt_db_txn *txn;        /* the transaction it runs in */
	int64_t          t0_us;         /* when it was asked for */
};

enum db_tstate {
	DB_T_BEGINNING,   /* START TRANSACTION queued or running */
	DB_T_OPEN,
	DB_T_ENDING,      /* COMMIT or ROLLBACK running */
	DB_T_OVER,
};

/*
 * A transaction holds one connection of its pool from START TRANSACTION
 * to COMMIT or ROLLBACK, and runs its queries there one at a time.  It
 * belongs to its request: one that ends with the transaction open has
 * it rolled back (autorb) before the connection serves anyone else.  A
 * connection lost under it took the transaction with it (the server
 * rolls back a session that ends): its next query fails with 503.
 */
struct molt_db_txn {
	struct db_pool  *pool;
	struct db_conn  *conn;          /* held while it lasts */
	molt_request    *req;           /* NULL once the request ended */
	enum db_tstate   state;
	int              refs;          /* the request's, and each query's */
	int              broken;        /* its connection went under it */
	int              autorb;        /* the rollback for a request that ended */
	struct molt_db_query *cur;      /* the query running in it */
	struct molt_db_handler h;       /* the module's, for begin/commit/rollback */
	void            *arg;
};

static struct event_base *db_base;
/* The last query in flight ended: a draining worker may be done. */
static struct event        db_settled_ev;
static int                db_lib_inited;   /* mysql_library_init was called */
static struct db_pool    *db_pools;
static int                db_inflight_count;

static void db_conn_connect(struct db_conn *c);
static void db_pool_start_next(struct db_pool *p);
static void db_conn_orphan(struct db_conn *c);
static void db_conn_discard(struct db_conn *c, int backoff);
static void db_conn_idle(struct db_conn *c);
static void db_conn_run(struct db_conn *c);
static void db_fetch_loop(struct db_conn *c);
static void db_prepare_done(struct db_conn *c);
static void db_query_fail(struct molt_db_query *q, int status, const char *msg);
static void db_query_unref(struct molt_db_query *q);
static void db_txn_hold(struct db_conn *c);
static void db_conn_assign(struct db_conn *c, struct molt_db_query *q);
static void db_conn_watch(struct db_conn *c);
static void db_txn_unref(struct molt_db_txn *t);

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */

/* The least net_write_timeout a server takes is 1 s: a pause shorter
 * than that cannot be why it dropped the session. */
#define DB_SLOW_PAUSE_MS 1000

static int64_t
db_clock_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* An error on its way to a module, counted by what it says. */
static void
db_count_error(struct db_pool *p, int status)
{
	if (status == 503)
		p->st.unavailable++;
	else if (status == 504)
		p->st.timeouts++;
	else
		p->st.errors++;
}

static int64_t
db_clock_ms(void)
{
	return db_clock_us() / 1000;
}

static void
db_ms_tv(long long ms, struct timeval *tv)
{
	tv->tv_sec = ms / 1000;
	tv->tv_usec = (ms % 1000) * 1000;
}

/* Errors after which the connection cannot be trusted. */
static int
db_errno_is_lost(unsigned e)
{
	switch (e) {
	case CR_CONNECTION_ERROR:
	case CR_CONN_HOST_ERROR:
	case CR_SERVER_GONE_ERROR:
	case CR_SERVER_LOST:
	case CR_SERVER_LOST_EXTENDED:
	case CR_COMMANDS_OUT_OF_SYNC:
	case CR_ERR_NET_READ:
	case CR_ERR_NET_WRITE:
	case ER_SERVER_SHUTDOWN:
	case ER_CONNECTION_KILLED:
		return 1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Driving one connection                                              */

/* _cont for whatever operation the connection is in. */
static int
db_op_cont(struct db_conn *c, int status)
{
	switch (c->op) {
	case DB_OP_CONNECT:
		return dblib.mysql_real_connect_cont(&c->ret_mysql, c->mysql, status);
	case DB_OP_PREPARE:
		return dblib.mysql_stmt_prepare_cont(&c->ret_int, c->stmt, status);
	case DB_OP_EXECUTE:
		return dblib.mysql_stmt_execute_cont(&c->ret_int, c->stmt, status);
	case DB_OP_FETCH:
		return dblib.mysql_stmt_fetch_cont(&c->ret_int, c->stmt, status);
	case DB_OP_KILL:
		return dblib.mysql_real_query_cont(&c->ret_int, c->mysql, status);
	case DB_OP_NONE:
		break;
	}
	return 0;
}

static void db_conn_io(evutil_socket_t fd, short what, void *arg);
static void db_op_done(struct db_conn *c);

/*
 * Wait for what the library asked for.  Without a library timeout we
 * impose our own (connect_timeout or read_timeout), since Connector/C
 * only reports MYSQL_WAIT_TIMEOUT when it was given its own timeouts.
 */
static void
db_wait(struct db_conn *c, int status)
{
	struct timeval tv;
	short ev = 0;
	int fd;

	if (status & MYSQL_WAIT_READ)
		ev |= EV_READ;
	if (status & MYSQL_WAIT_WRITE)
		ev |= EV_WRITE;
	c->lib_timeout = (status & MYSQL_WAIT_TIMEOUT) != 0;
	if (c->lib_timeout)
		db_ms_tv(dblib.mysql_get_timeout_value_ms(c->mysql), &tv);
	else if (c->op == DB_OP_CONNECT)
		db_ms_tv(c->pool->conf->connect_timeout_ms, &tv);
	else
		db_ms_tv(c->pool->conf->read_timeout_ms, &tv);

	/* The fd can change between steps (connect tries each address). */
	fd = dblib.mysql_get_socket(c->mysql);
	event_del(&c->io);
	event_assign(&c->io, db_base, fd, ev, db_conn_io, c);
	if (event_add(&c->io, &tv) == -1)
		molt_log(MOLT_LOG_ERROR, "database %s: connection %d: event_add failed",
		    c->pool->conf->name, c->index);
}

/* After a *_start call: wait for the socket, or take the result now. */
static void
db_started(struct db_conn *c, int st)
{
	if (st != 0)
		db_wait(c, st);
	else
		db_op_done(c);
}

/* Run _cont, then either wait again or move on. */
static void
db_step(struct db_conn *c, int status)
{
	int st;

	st = db_op_cont(c, status);
	db_started(c, st);
}

/* A connect that failed: said once when the pool goes down, not once per
 * connection per retry.  The library's text never holds the password. */
static void
db_connect_failed(struct db_conn *c, const char *why)
{
	struct db_pool *p = c->pool;

	snprintf(p->last_error, sizeof(p->last_error), "%s", why);
	p->st.connect_failures++;
	if (!p->down)
		molt_log(MOLT_LOG_ERROR, "database %s: cannot connect: %s",
		    p->conf->name, p->last_error);
	db_conn_discard(c, 1);
	db_pool_start_next(p);
}

static void
db_conn_timed_out(struct db_conn *c)
{
	struct db_conf *conf = c->pool->conf;
	char msg[160];

	if (c->op == DB_OP_CONNECT) {
		snprintf(msg, sizeof(msg), "connect timed out after %lld ms",
		    conf->connect_timeout_ms);
		db_connect_failed(c, msg);
		return;
	}
	snprintf(msg, sizeof(msg), "no answer from the database for %lld ms (read_timeout)",
	    conf->read_timeout_ms);
	molt_log(MOLT_LOG_ERROR, "database %s: connection %d: %s", conf->name, c->index, msg);
	if (c->q != NULL)
		db_query_fail(c->q, 504, msg);
	else
		db_conn_discard(c, 0);
}

static void
db_conn_io(evutil_socket_t fd, short what, void *arg)
{
	struct db_conn *c = arg;
	int status = 0;

	(void)fd;
	if (c->op == DB_OP_NONE) {
		/*
		 * An idle connection only becomes readable when the server
		 * closes it (shutdown, wait_timeout, KILL): reconnect now
		 * rather than fail the next query.  Info, not a warning: a
		 * short wait_timeout does this to every idle connection, and
		 * a server that went away fails the reconnect, loudly.
		 */
		molt_log(MOLT_LOG_INFO, "database %s: connection %d closed by the "
		    "server while idle (wait_timeout?); reconnecting",
		    c->pool->conf->name, c->index);
		db_conn_discard(c, 0);
		return;
	}
	if (what & EV_READ)
		status |= MYSQL_WAIT_READ;
	if (what & EV_WRITE)
		status |= MYSQL_WAIT_WRITE;
	if (what & EV_TIMEOUT) {
		if (!c->lib_timeout) {
			db_conn_timed_out(c);
			return;
		}
		/* The library then fails with its own words for it, "system
		 * error: 11" (EAGAIN); db_connect_done says what happened. */
		if (c->op == DB_OP_CONNECT)
			c->connect_expired = 1;
		status |= MYSQL_WAIT_TIMEOUT;
	}
	db_step(c, status);
}

/*
 * Finish a suspended operation so the connection can be closed: an
 * operation parked inside the library's coroutine must be run to its
 * end.  Shutting the socket down makes every further read or write fail
 * at once, and MYSQL_WAIT_TIMEOUT makes the pending wait fail.
 */
static int
db_conn_abort_op(struct db_conn *c)
{
	int fd, st = 1, i;

	if (c->op == DB_OP_NONE)
		return 0;
	event_del(&c->io);
	fd = dblib.mysql_get_socket(c->mysql);
	if (fd >= 0)
		shutdown(fd, SHUT_RDWR);
	for (i = 0; i < DB_ABORT_TRIES && st != 0; i++)
		st = db_op_cont(c, MYSQL_WAIT_READ | MYSQL_WAIT_WRITE | MYSQL_WAIT_TIMEOUT);
	c->op = DB_OP_NONE;
	if (st != 0) {
		molt_log(MOLT_LOG_ERROR, "database %s: connection %d: could not abort "
		    "an operation; leaving the connection unused", c->pool->conf->name, c->index);
		return -1;
	}
	return 0;
}

/* Close the MYSQL and its statements without waiting for the server. */
static void
db_conn_close(struct db_conn *c)
{
	int i;

	event_del(&c->io);
	event_del(&c->kick);
	if (c->meta != NULL) {
		dblib.mysql_free_result(c->meta);
		c->meta = NULL;
	}
	if (c->mysql == NULL)
		return;
	if (c->state == DB_C_IDLE || c->state == DB_C_BUSY ||
	    c->state == DB_C_HELD)
		c->pool->nlive--;
	/*
	 * mysql_close first: it detaches the statements, after which
	 * mysql_stmt_close only frees memory.  The other order would make
	 * mysql_stmt_close flush unread rows with blocking reads.  The
	 * COM_QUIT that mysql_close writes is a few bytes on a socket we
	 * are not writing to, so it does not block.
	 */
	dblib.mysql_close(c->mysql);
	c->mysql = NULL;
	for (i = 0; i < c->ncache; i++) {
		dblib.mysql_stmt_close(c->cache[i].stmt);
		free(c->cache[i].sql);
	}
	c->ncache = 0;
	if (c->stmt != NULL) {
		/* A statement that failed to prepare was not cached. */
		dblib.mysql_stmt_close(c->stmt);
		c->stmt = NULL;
	}
}

static int
db_stmt_is_cached(struct db_conn *c, MYSQL_STMT *st)
{
	int i;

	for (i = 0; i < c->ncache; i++)
		if (c->cache[i].stmt == st)
			return 1;
	return 0;
}

/*
 * Whether a down pool (its last connect failed) has nothing that can take
 * a query: no live connection, or only ones paused for a slow client,
 * which read again only when their client does and would find the server
 * gone only then.  Counted as up, they held every query behind them for
 * query_timeout (a 504) through an outage that the others' failed
 * connects had already shown.
 */
static int
db_pool_is_down(const struct db_pool *p)
{
	int i;

	if (!p->down)
		return 0;
	for (i = 0; i < p->nconns; i++)
		if ((p->conns[i].state == DB_C_IDLE ||
		    p->conns[i].state == DB_C_BUSY ||
		    p->conns[i].state == DB_C_HELD) && !p->conns[i].paused)
			return 0;
	return 1;
}

static void
db_pool_update_down(struct db_pool *p)
{
	struct molt_db_query *q;

	if (!db_pool_is_down(p))
		return;
	/* Nothing is up and the last attempt failed: fail the waiters now. */
	while ((q = p->queue_head) != NULL)
		db_query_fail(q, 503, NULL);
}

static void
db_conn_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	db_conn_connect(arg);
}

/*
 * The connection is going away under a query (the server closed it just
 * as a query was assigned).  A query not yet sent waits for another
 * connection; one that was sent fails, since running it twice might not
 * be safe.  Either way the module hears from the event loop.
 */
static void
db_conn_orphan(struct db_conn *c)
{
	struct molt_db_query *q = c->q;
	struct db_pool *p = c->pool;
	int sent = !c->starting;

	/* Only its START TRANSACTION may move to another connection. */
	if (q->txn != NULL && q->txn->state != DB_T_BEGINNING)
		sent = 1;
	c->q = NULL;
	c->starting = 0;
	q->conn = NULL;
	q->state = DB_Q_QUEUED;
	q->next = p->queue_head;
	p->queue_head = q;
	if (p->queue_tail == &p->queue_head)
		p->queue_tail = &q->next;
	p->queued++;
	if (sent)
		db_query_fail(q, 503, NULL);
}

static void
db_pool_add_kill(struct db_pool *p, unsigned long id)
{
	if (id == 0)
		return;
	if (p->nkills == DB_KILLS) {
		molt_log(MOLT_LOG_WARN, "database %s: %d abandoned queries already "
		    "wait for a KILL; thread %lu is left to the server",
		    p->conf->name, DB_KILLS, id);
		return;
	}
	p->kills[p->nkills++] = id;
}

/*
 * Throw the connection away and schedule a new one: at once after a
 * cancel (the server is fine), with exponential backoff after a failure.
 */
/*
 * Column buffers grow once to the longest value and are kept for the
 * next rows, but one huge value (a 12 MB BLOB) must not pin its buffer
 * for the connection's whole life, times the pool size, in the worker
 * the master polices.  Those are let go between queries; db_bind_result
 * gives the column a small one again.
 */
static void
db_conn_shrink(struct db_conn *c)
{
	size_t k;

	for (k = 0; k < c->ncols_cap; k++)
		if (c->cols[k].cap > DB_STRBUF_KEEP) {
			free(c->cols[k].buf);
			c->cols[k].buf = NULL;
			c->cols[k].cap = 0;
		}
}

static void
db_conn_discard(struct db_conn *c, int backoff)
{
	struct timeval tv;
	long long ms = 0;

	if (c->state == DB_C_DEAD)
		return;
	/*
	 * The server rolls back what a session that ends left open.  Cut
	 * before the callback case below: the transaction may be freed
	 * (its request ended) before the caller comes back here.
	 */
	if (c->txn != NULL) {
		if (c->txn->state != DB_T_BEGINNING)
			c->txn->broken = 1;
		c->txn->conn = NULL;
		c->txn = NULL;
	}
	if (c->in_cb) {
		/* The caller of the callback notices c->q changed and comes back. */
		return;
	}
	if (c->q != NULL)
		db_conn_orphan(c);
	/*
	 * A statement that was executing or sending rows goes on in the
	 * server after we hang up (SLEEP, a long scan: the server looks at
	 * the socket only when it writes).  Another connection of the pool
	 * kills it.  Not after a failure: then the session is gone anyway.
	 */
	if (!backoff && !c->lost && c->mysql != NULL && c->state == DB_C_BUSY &&
	    (c->phase == DB_OP_EXECUTE || c->phase == DB_OP_FETCH))
		db_pool_add_kill(c->pool, dblib.mysql_thread_id(c->mysql));
	/*
	 * A lost session or a failed connect: the server may be gone, and a
	 * new one numbers its sessions from 1 again, so a KILL QUERY still
	 * waiting would hit whoever has that number now (another worker's
	 * query, another application's under the same user).  Better to
	 * leave an abandoned query to run out on a server that lived.
	 */
	if ((backoff || c->lost) && c->pool->nkills > 0) {
		molt_log(MOLT_LOG_WARN, "database %s: %d abandoned quer%s not "
		    "killed: a connection was lost, and a restarted server's "
		    "thread ids name other sessions", c->pool->conf->name,
		    c->pool->nkills, c->pool->nkills == 1 ? "y is" : "ies are");
		c->pool->nkills = 0;
	}
	if (db_conn_abort_op(c) == -1) {
		c->state = DB_C_DEAD;
		return;
	}
	if (c->stmt != NULL && db_stmt_is_cached(c, c->stmt))
		c->stmt = NULL;
	db_conn_close(c);
	db_conn_shrink(c);
	c->state = DB_C_DOWN;
	c->paused = 0;
	c->lost = 0;
	c->starting = 0;
	if (backoff) {
		c->failures++;
		ms = DB_BACKOFF_MIN_MS << (c->failures < 6 ? c->failures - 1 : 5);
		if (ms > DB_BACKOFF_MAX_MS)
			ms = DB_BACKOFF_MAX_MS;
		/* Jitter, so the pools of many workers do not retry in step. */
		ms += random() % (ms / 4 + 1);
		c->pool->down = 1;
		db_pool_update_down(c->pool);
	}
	if (db_base == NULL)
		return;   /* worker exit */
	db_ms_tv(ms, &tv);
	evtimer_assign(&c->timer, db_base, db_conn_timer, c);
	evtimer_add(&c->timer, &tv);
}

static int
db_conn_setup(struct db_conn *c)
{
	struct db_conf *conf = c->pool->conf;
	unsigned timeout = (unsigned)((conf->connect_timeout_ms + 999) / 1000);
	my_bool on = 1, verify = conf->ssl_verify ? 1 : 0;
	unsigned proto = conf->socket ? MYSQL_PROTOCOL_SOCKET : MYSQL_PROTOCOL_TCP;

	if ((c->mysql = dblib.mysql_init(NULL)) == NULL) {
		molt_log(MOLT_LOG_ERROR, "database %s: mysql_init: out of memory", conf->name);
		return -1;
	}
	/* MYSQL_OPT_NONBLOCK must come before any _start call. */
	if (dblib.mysql_options(c->mysql, MYSQL_OPT_NONBLOCK, 0) != 0 ||
	    dblib.mysql_options(c->mysql, MYSQL_SET_CHARSET_NAME, "utf8mb4") != 0 ||
	    dblib.mysql_options(c->mysql, MYSQL_OPT_CONNECT_TIMEOUT, &timeout) != 0 ||
	    dblib.mysql_options(c->mysql, MYSQL_OPT_PROTOCOL, &proto) != 0 ||
	    (conf->track_session && dblib.mysql_options(c->mysql,
	    MYSQL_INIT_COMMAND, DB_TRACK_SESSION) != 0)) {
		molt_log(MOLT_LOG_ERROR, "database %s: mysql_options: %s", conf->name,
		    dblib.mysql_error(c->mysql));
		goto fail;
	}
	if (conf->ssl) {
		MYSQL *my = c->mysql;

		if (dblib.mysql_options(my, MYSQL_OPT_SSL_ENFORCE, &on) != 0 ||
		    dblib.mysql_options(my, MYSQL_OPT_SSL_VERIFY_SERVER_CERT,
		    &verify) != 0 ||
		    (conf->ssl_ca && dblib.mysql_options(my, MYSQL_OPT_SSL_CA,
		    conf->ssl_ca) != 0) ||
		    (conf->ssl_cert && dblib.mysql_options(my, MYSQL_OPT_SSL_CERT,
		    conf->ssl_cert) != 0) ||
		    (conf->ssl_key && dblib.mysql_options(my, MYSQL_OPT_SSL_KEY,
		    conf->ssl_key) != 0)) {
			molt_log(MOLT_LOG_ERROR, "database %s: TLS options: %s", conf->name,
			    dblib.mysql_error(c->mysql));
			goto fail;
		}
	}
	return 0;
fail:
	dblib.mysql_close(c->mysql);
	c->mysql = NULL;
	return -1;
}

static void
db_conn_connect(struct db_conn *c)
{
	struct db_conf *conf = c->pool->conf;
	int st;

	if (db_conn_setup(c) == -1) {
		c->state = DB_C_DOWN;
		db_conn_discard(c, 1);
		return;
	}
	c->state = DB_C_CONNECTING;
	c->op = DB_OP_CONNECT;
	c->connect_expired = 0;
	st = dblib.mysql_real_connect_start(&c->ret_mysql, c->mysql, conf->host,
	    conf->user, conf->password, conf->database,
	    conf->host ? conf->port : 0, conf->socket, CLIENT_MULTI_RESULTS);
	db_started(c, st);
}

/*
 * Opening a whole pool at once would hit the server with pool_size x
 * workers handshakes in the same millisecond, overflowing its accept
 * backlog.  Connections are first opened DB_CONNECT_BURST at a time, each
 * finished attempt starting the next.
 */
static void
db_pool_start_next(struct db_pool *p)
{
	int i;

	for (i = 0; i < p->nconns; i++) {
		if (p->conns[i].never_started) {
			p->conns[i].never_started = 0;
			db_conn_connect(&p->conns[i]);
			return;
		}
	}
}

static void
db_connect_done(struct db_conn *c)
{
	struct db_pool *p = c->pool;

	if (c->ret_mysql == NULL) {
		char msg[sizeof(p->last_error)];

		if (c->connect_expired)
			snprintf(msg, sizeof(msg), "connect timed out after %lld ms "
			    "(%s)", p->conf->connect_timeout_ms,
			    dblib.mysql_error(c->mysql));
		else
			snprintf(msg, sizeof(msg), "%s", dblib.mysql_error(c->mysql));
		db_connect_failed(c, msg);
		return;
	}
	if (p->conf->ssl && dblib.mysql_get_ssl_cipher(c->mysql) == NULL) {
		/*
		 * Connector/C 3.3 only refuses a server without TLS when the
		 * certificate is verified too; with ssl = on alone it falls
		 * back to plain text.  Refuse it here instead.
		 */
		c->state = DB_C_CONNECTING;   /* not counted as live */
		db_connect_failed(c, "ssl = on, but the server did not negotiate TLS");
		return;
	}
	if (p->down && p->nlive == 0)
		molt_log(MOLT_LOG_INFO, "database %s: connected again", p->conf->name);
	c->failures = 0;
	p->down = 0;
	p->nlive++;
	p->st.connects++;
	c->state = DB_C_IDLE;
	c->changed = 0;     /* the flag in DB_TRACK_SESSION's own answer */
	db_conn_idle(c);
	db_pool_start_next(p);
}

/* ------------------------------------------------------------------ */
/* Queries                                                             */

static void
db_query_unref(struct molt_db_query *q)
{
	struct molt_db_txn *t = q->txn;

	if (--q->refs > 0)
		return;
	free(q);
	if (t != NULL)
		db_txn_unref(t);
}

/* The query is over for the database side: no more callbacks. */
static void
db_query_finish(struct molt_db_query *q)
{
	if (q->state == DB_Q_FINISHED)
		return;
	if (q->state == DB_Q_QUEUED) {
		struct molt_db_query **pp;

		for (pp = &q->pool->queue_head; *pp != NULL; pp = &(*pp)->next) {
			if (*pp == q) {
				*pp = q->next;
				if (q->pool->queue_tail == &q->next)
					q->pool->queue_tail = pp;
				q->pool->queued--;
				break;
			}
		}
	}
	event_del(&q->timer);
	/* A failure owed from the loop was timed when it was decided. */
	if (q->state != DB_Q_FAILING)
		q->pool->st.query_us += (uint64_t)(db_clock_us() - q->t0_us);
	q->state = DB_Q_FINISHED;
	q->conn = NULL;
	if (q->txn != NULL && q->txn->cur == q)
		q->txn->cur = NULL;
	/*
	 * Looked at from the loop: db_query_fail takes the count back up at
	 * once.  Until molt rolled back a transaction for a request that had
	 * ended, no query outlived every request, and the drain's last
	 * connection closing was the last word.
	 */
	if (--db_inflight_count == 0 && db_base != NULL)
		event_active(&db_settled_ev, EV_TIMEOUT, 1);
}

static void
db_settled(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (db_inflight_count == 0)
		worker_db_settled();
}

static void
db_query_deferred(evutil_socket_t fd, short what, void *arg)
{
	struct molt_db_query *q = arg;
	char msg[320];
	int status;

	(void)fd;
	(void)what;
	if (q->state == DB_Q_FAILING) {
		status = q->fail_status;
		snprintf(msg, sizeof(msg), "%s", q->fail_msg);
		db_query_finish(q);
		db_count_error(q->pool, status);
		q->h.on_error(q->arg, status, msg);
		db_query_unref(q);
		return;
	}
	/* query_timeout: the database did not start answering in time. */
	snprintf(msg, sizeof(msg), "query timed out after %lld ms",
	    q->pool->conf->query_timeout_ms);
	molt_log(MOLT_LOG_WARN, "database %s: %s: %.200s", q->pool->conf->name, msg, q->sql);
	db_query_fail(q, 504, msg);
}

/*
 * Fail a query that has not finished.  On a connection, the connection
 * goes too.  The error reaches the module from the event loop when the
 * query is still queued, so molt_db_query_start never calls back
 * before it returns.
 */
static void
db_query_fail(struct molt_db_query *q, int status, const char *msg)
{
	struct db_pool *p = q->pool;
	struct db_conn *c = q->conn;
	struct timeval tv = { 0, 0 };
	char down[160], buf[320];

	if (msg == NULL) {
		/*
		 * The server's connect error stays in the log: it names
		 * hosts, sockets and users, which clients need not see.
		 */
		snprintf(down, sizeof(down), "database %s is unavailable", p->conf->name);
		msg = down;
	}
	if (q->state == DB_Q_QUEUED) {
		db_query_finish(q);       /* leaves the queue */
		db_inflight_count++;      /* still owed an error */
		q->state = DB_Q_FAILING;
		q->fail_status = status;
		snprintf(q->fail_msg, sizeof(q->fail_msg), "%s", msg);
		event_del(&q->timer);
		evtimer_assign(&q->timer, db_base, db_query_deferred, q);
		evtimer_add(&q->timer, &tv);
		return;
	}
	if (q->state != DB_Q_RUNNING)
		return;
	snprintf(buf, sizeof(buf), "%s", msg);  /* msg may live in the MYSQL */
	c->q = NULL;
	db_query_finish(q);
	/* Backoff after a failure of the database, not of one session. */
	db_conn_discard(c, status == 503 && !c->lost);
	db_count_error(p, status);
	q->h.on_error(q->arg, status, buf);
	db_query_unref(q);
}

/* The request ended (pool cleanup): cancel what is left, silently. */
static void
db_query_req_end(void *arg)
{
	struct molt_db_query *q = arg;

	q->req = NULL;
	molt_db_cancel(q);
	db_query_unref(q);
}

void
molt_db_cancel(molt_db_query *q)
{
	struct db_conn *c;

	if (q == NULL || q->state == DB_Q_FINISHED)
		return;
	c = q->state == DB_Q_RUNNING ? q->conn : NULL;
	db_query_finish(q);
	if (c != NULL) {
		c->q = NULL;
		if (c->starting) {
			/* Nothing was sent yet: the connection is still clean. */
			c->starting = 0;
			db_conn_idle(c);
		} else {
			db_conn_discard(c, 0);
		}
	}
	db_query_unref(q);
}

void
molt_db_resume(molt_db_query *q)
{
	struct db_conn *c;

	if (q == NULL || q->state != DB_Q_RUNNING || (c = q->conn) == NULL)
		return;
	if (!c->paused) {
		q->resume_early = 1;
		return;
	}
	c->paused = 0;
	if (db_clock_ms() - c->paused_ms >= DB_SLOW_PAUSE_MS)
		c->slowed = 1;
	/* From the loop: the caller may be deep inside the HTTP write path. */
	event_active(&c->kick, EV_TIMEOUT, 1);
}

static struct db_pool *
db_pool_find(const char *name)
{
	struct db_pool *p;

	for (p = db_pools; p != NULL; p = p->next)
		if (strcmp(p->conf->name, name) == 0)
			return p;
	return NULL;
}

int
molt_db_exists(const char *name)
{
	if (name == NULL)
		return 0;
	return db_pool_find(name) != NULL || db_conf_exists(name);
}

static int
db_param_valid(const struct molt_db_param *pr)
{
	char *end;

	switch (pr->type) {
	case MOLT_DB_NULL:
		return 1;
	case MOLT_DB_INT:
	case MOLT_DB_UINT:
	case MOLT_DB_DOUBLE: {
		char tmp[64];

		if (pr->data == NULL || pr->len == 0 || pr->len >= sizeof(tmp))
			return 0;
		memcpy(tmp, pr->data, pr->len);
		tmp[pr->len] = '\0';
		errno = 0;
		if (pr->type == MOLT_DB_INT)
			(void)strtoll(tmp, &end, 10);
		else if (pr->type == MOLT_DB_UINT)
			(void)strtoull(tmp, &end, 10);
		else
			(void)strtod(tmp, &end);
		return errno == 0 && *end == '\0';
	}
	default:
		return pr->data != NULL || pr->len == 0;
	}
}

/*
 * One allocation holds it all: the query, its SQL, its parameters.  A
 * query of a request is cancelled when the request ends; one without (a
 * transaction's rollback after its request) belongs to the database only.
 */
static struct molt_db_query *
db_query_new(struct db_pool *p, molt_request *req, const char *sql,
    const struct molt_db_param *params, size_t nparams,
    const struct molt_db_handler *h, void *arg)
{
	struct molt_db_query *q;
	size_t need, sql_len, i, off;
	char *mem;

	sql_len = strlen(sql);
	need = sizeof(*q) + nparams * sizeof(*params) + sql_len + 1;
	for (i = 0; i < nparams; i++)
		need += params[i].len + 1;
	if ((mem = calloc(1, need)) == NULL) {
		molt_log(MOLT_LOG_ERROR, "database %s: out of memory for a query",
		    p->conf->name);
		return NULL;
	}
	q = (struct molt_db_query *)mem;
	off = sizeof(*q);
	q->params = (struct molt_db_param *)(mem + off);
	off += nparams * sizeof(*params);
	for (i = 0; i < nparams; i++) {
		q->params[i].type = params[i].type;
		q->params[i].len = params[i].len;
		q->params[i].data = mem + off;
		if (params[i].len > 0)
			memcpy(mem + off, params[i].data, params[i].len);
		off += params[i].len + 1;
	}
	memcpy(mem + off, sql, sql_len + 1);
	q->sql = mem + off;
	q->sql_len = sql_len;
	q->nparams = nparams;
	q->pool = p;
	q->req = req;
	q->h = *h;
	q->arg = arg;
	q->refs = req != NULL ? 2 : 1;
	q->state = DB_Q_QUEUED;
	q->t0_us = db_clock_us();
	p->st.queries++;
	evtimer_assign(&q->timer, db_base, db_query_deferred, q);
	if (req != NULL &&
	    molt_pool_cleanup(molt_req_pool(req), db_query_req_end, q) == -1) {
		free(q);
		return NULL;
	}
	db_inflight_count++;
	return q;
}

/* Into the pool's queue, and onto an idle connection if there is one. */
static void
db_query_submit(struct db_pool *p, struct molt_db_query *q)
{
	struct db_conn *c;
	struct timeval tv;
	int i;

	/* In the queue first, so every path below is the same. */
	q->next = NULL;
	*p->queue_tail = q;
	p->queue_tail = &q->next;
	p->queued++;

	if (db_pool_is_down(p)) {
		db_query_fail(q, 503, NULL);
		return;
	}
	/*
	 * query_timeout runs from the call.  Armed before an idle
	 * connection is tried: one that owes a KILL QUERY sends that first,
	 * and the query waits in the queue until the KILL is answered (a
	 * stopped server: read_timeout, then a reconnect).
	 */
	db_ms_tv(p->conf->query_timeout_ms, &tv);
	evtimer_add(&q->timer, &tv);
	for (i = 0; i < p->nconns; i++) {
		c = &p->conns[i];
		if (c->state == DB_C_IDLE) {
			db_conn_idle(c);   /* takes the queue's head: this query */
			return;
		}
	}
	if (p->queued > p->conf->queue_size) {
		char msg[160];

		snprintf(msg, sizeof(msg), "database %s: all %d connections busy and %d "
		    "requests waiting", p->conf->name, p->conf->pool_size, p->conf->queue_size);
		db_query_fail(q, 503, msg);
	}
}

/* The checks every query of a module passes; the pool, or NULL. */
static struct db_pool *
db_query_args_ok(molt_request *req, const char *db, const char *sql,
    const struct molt_db_param *params, size_t nparams,
    const struct molt_db_handler *h, const char *caller)
{
	struct db_pool *p;
	size_t i;

	if (db_base == NULL || req == NULL || db == NULL || sql == NULL || h == NULL ||
	    h->on_done == NULL || h->on_error == NULL || (nparams > 0 && params == NULL))
		return NULL;
	if ((p = db_pool_find(db)) == NULL) {
		molt_log(MOLT_LOG_ERROR, "%s: no [database %s]", caller, db);
		return NULL;
	}
	for (i = 0; i < nparams; i++)
		if (!db_param_valid(&params[i]))
			return NULL;
	return p;
}

molt_db_query *
molt_db_query_start(molt_request *req, const char *db, const char *sql,
                    const struct molt_db_param *params, size_t nparams,
                    const struct molt_db_handler *h, void *arg)
{
	struct db_pool *p;
	struct molt_db_query *q;

	if ((p = db_query_args_ok(req, db, sql, params, nparams, h,
	    "molt_db_query_start")) == NULL)
		return NULL;
	if ((q = db_query_new(p, req, sql, params, nparams, h, arg)) == NULL)
		return NULL;
	db_query_submit(p, q);
	return q;
}

/* ------------------------------------------------------------------ */
/* Transactions                                                        */

static void
db_txn_unref(struct molt_db_txn *t)
{
	if (--t->refs == 0)
		free(t);
}

/*
 * The transaction is over: its connection goes back to the pool, or,
 * after a COMMIT or ROLLBACK that failed, is closed, so that nothing it
 * may have left open can reach the next query.
 */
static void
db_txn_release(struct molt_db_txn *t, int discard)
{
	struct db_conn *c = t->conn;

	t->state = DB_T_OVER;
	if (c == NULL)
		return;
	t->conn = NULL;
	c->txn = NULL;
	if (discard)
		db_conn_discard(c, 0);
	else
		db_conn_idle(c);
}

static void
db_txn_began(void *arg, unsigned long long n)
{
	struct molt_db_txn *t = arg;

	(void)n;
	if (t->state != DB_T_BEGINNING)
		return;         /* its request ended: db_txn_hold rolls it back */
	t->state = DB_T_OPEN;
	t->h.on_done(t->arg, 0);
}

static void
db_txn_ended(void *arg, unsigned long long n)
{
	struct molt_db_txn *t = arg;

	(void)n;
	db_txn_release(t, 0);
	if (t->h.on_done != NULL)
		t->h.on_done(t->arg, 0);
}

static void
db_txn_failed(void *arg, int status, const char *msg)
{
	struct molt_db_txn *t = arg;

	db_txn_release(t, 1);
	if (t->h.on_error != NULL)
		t->h.on_error(t->arg, status, msg);
}

/* START TRANSACTION, COMMIT or ROLLBACK, for t (h, arg: the module's). */
static struct molt_db_query *
db_txn_op(struct molt_db_txn *t, const char *sql,
    void (*on_done)(void *, unsigned long long),
    const struct molt_db_handler *h, void *arg)
{
	struct molt_db_handler own = { NULL, NULL, on_done, db_txn_failed };
	struct molt_db_query *q;

	if ((q = db_query_new(t->pool, t->req, sql, NULL, 0, &own, t)) == NULL)
		return NULL;
	q->txn = t;
	t->refs++;
	t->cur = q;
	if (h != NULL) {
		t->h = *h;
		t->arg = arg;
	} else {
		memset(&t->h, 0, sizeof(t->h));
		t->arg = NULL;
	}
	return q;
}

/*
 * Its connection is free between two of its queries.  If its request has
 * ended, what it left open is rolled back first; a ROLLBACK that cannot
 * even start closes the connection (the server rolls back then).
 */
static void
db_txn_hold(struct db_conn *c)
{
	struct molt_db_txn *t = c->txn;
	struct molt_db_query *q;

	c->state = DB_C_HELD;
	db_conn_watch(c);
	if (t->req != NULL || t->autorb || t->state == DB_T_OVER)
		return;
	t->autorb = 1;
	t->state = DB_T_ENDING;
	t->pool->st.txn_rollbacks++;
	if ((q = db_txn_op(t, "ROLLBACK", db_txn_ended, NULL, NULL)) == NULL) {
		db_txn_release(t, 1);
		return;
	}
	db_conn_assign(c, q);
}

/* The request ended (pool cleanup): an open transaction is rolled back. */
static void
db_txn_req_end(void *arg)
{
	struct molt_db_txn *t = arg;

	t->req = NULL;
	if (t->conn != NULL && t->conn->state == DB_C_HELD)
		db_txn_hold(t->conn);
	db_txn_unref(t);
}

molt_db_txn *
molt_db_txn_begin(molt_request *req, const char *db,
                  const struct molt_db_handler *h, void *arg)
{
	struct db_pool *p;
	struct molt_db_txn *t;
	struct molt_db_query *q;

	if ((p = db_query_args_ok(req, db, "", NULL, 0, h,
	    "molt_db_txn_begin")) == NULL)
		return NULL;
	if ((t = calloc(1, sizeof(*t))) == NULL) {
		molt_log(MOLT_LOG_ERROR, "database %s: out of memory for a "
		    "transaction", db);
		return NULL;
	}
	t->pool = p;
	t->req = req;
	t->refs = 1;
	t->state = DB_T_BEGINNING;
	if (molt_pool_cleanup(molt_req_pool(req), db_txn_req_end, t) == -1) {
		free(t);
		return NULL;
	}
	/* Its query's cleanup, registered after, runs before the txn's. */
	if ((q = db_txn_op(t, "START TRANSACTION", db_txn_began, h, arg)) == NULL) {
		t->state = DB_T_OVER;
		return NULL;
	}
	p->st.txns++;
	db_query_submit(p, q);
	return t;
}

/*
 * A query, COMMIT or ROLLBACK in t: NULL for a misuse (t not open, or a
 * query of it still running); a connection lost under t is a 503 from
 * the loop, as an outage is for any query.
 */
static struct molt_db_query *
db_txn_run(struct molt_db_txn *t, struct molt_db_query *q)
{
	if (t->broken || t->conn == NULL) {
		db_query_fail(q, 503, "the transaction's connection to the "
		    "database was lost; the server rolled the transaction back");
		return q;
	}
	db_conn_assign(t->conn, q);
	return q;
}

static int
db_txn_usable(molt_db_txn *t, const char *caller)
{
	if (t == NULL || t->req == NULL || db_base == NULL)
		return 0;
	if (t->state != DB_T_OPEN || t->cur != NULL) {
		molt_log(MOLT_LOG_ERROR, "%s: the transaction is %s", caller,
		    t->state == DB_T_BEGINNING ? "not begun yet" :
		    t->state == DB_T_OPEN ? "running a query already" : "over");
		return 0;
	}
	return 1;
}

molt_db_query *
molt_db_txn_query(molt_db_txn *t, const char *sql,
                  const struct molt_db_param *params, size_t nparams,
                  const struct molt_db_handler *h, void *arg)
{
	struct molt_db_query *q;

	if (!db_txn_usable(t, "molt_db_txn_query") ||
	    db_query_args_ok(t->req, t->pool->conf->name, sql, params, nparams,
	    h, "molt_db_txn_query") == NULL)
		return NULL;
	if ((q = db_query_new(t->pool, t->req, sql, params, nparams, h, arg)) == NULL)
		return NULL;
	q->txn = t;
	t->refs++;
	t->cur = q;
	return db_txn_run(t, q);
}

static int
db_txn_end(molt_db_txn *t, const char *sql, const struct molt_db_handler *h,
    void *arg, const char *caller)
{
	struct molt_db_query *q;

	if (!db_txn_usable(t, caller) || h == NULL || h->on_done == NULL ||
	    h->on_error == NULL)
		return -1;
	if ((q = db_txn_op(t, sql, db_txn_ended, h, arg)) == NULL)
		return -1;
	t->state = DB_T_ENDING;
	db_txn_run(t, q);
	return 0;
}

int
molt_db_txn_commit(molt_db_txn *t, const struct molt_db_handler *h, void *arg)
{
	return db_txn_end(t, "COMMIT", h, arg, "molt_db_txn_commit");
}

int
molt_db_txn_rollback(molt_db_txn *t, const struct molt_db_handler *h, void *arg)
{
	return db_txn_end(t, "ROLLBACK", h, arg, "molt_db_txn_rollback");
}

/* ------------------------------------------------------------------ */
/* Running a query on a connection                                     */

/* KILL QUERY on a free connection, before it takes queued work. */
static void
db_conn_kill(struct db_conn *c, unsigned long id)
{
	int n;

	n = snprintf(c->kill_sql, sizeof(c->kill_sql), "KILL QUERY %lu", id);
	c->state = DB_C_BUSY;
	c->op = c->phase = DB_OP_KILL;
	event_del(&c->io);     /* no longer idle-watching */
	db_started(c, dblib.mysql_real_query_start(&c->ret_int, c->mysql,
	    c->kill_sql, (unsigned long)n));
}

static void
db_kill_done(struct db_conn *c)
{
	unsigned e;

	if (c->ret_int == 0) {
		molt_log(MOLT_LOG_DEBUG, "database %s: %s", c->pool->conf->name,
		    c->kill_sql);
	} else {
		e = dblib.mysql_errno(c->mysql);
		if (db_errno_is_lost(e)) {
			db_conn_discard(c, 1);
			return;
		}
		/* ER_NO_SUCH_THREAD: the query ended on its own first. */
		if (e != ER_NO_SUCH_THREAD)
			molt_log(MOLT_LOG_WARN, "database %s: %s: %s",
			    c->pool->conf->name, c->kill_sql,
			    dblib.mysql_error(c->mysql));
	}
	db_conn_idle(c);
}

/* q runs on c, which is free. */
static void
db_conn_assign(struct db_conn *c, struct molt_db_query *q)
{
	struct timeval tv;

	q->state = DB_Q_RUNNING;
	q->conn = c;
	c->q = q;
	c->state = DB_C_BUSY;
	if (!evtimer_pending(&q->timer, NULL)) {
		db_ms_tv(c->pool->conf->query_timeout_ms, &tv);
		evtimer_add(&q->timer, &tv);
	}
	/*
	 * Start from the loop: molt_db_query_start must return before any
	 * callback, and a chain of queries failing at once must not recurse
	 * through the queue.
	 */
	c->starting = 1;
	event_active(&c->kick, EV_TIMEOUT, 1);
}

/* Watch a connection nothing runs on for the server closing it. */
static void
db_conn_watch(struct db_conn *c)
{
	event_del(&c->io);
	event_assign(&c->io, db_base, dblib.mysql_get_socket(c->mysql), EV_READ,
	    db_conn_io, c);
	event_add(&c->io, NULL);
}

/* The server status of the last answer on c (SERVER_STATUS_*), or 0. */
static unsigned int
db_conn_status(struct db_conn *c)
{
	unsigned int st = 0;

	if (c->mysql == NULL || dblib.mariadb_get_infov(c->mysql,
	    MARIADB_CONNECTION_SERVER_STATUS, &st) != 0)
		return 0;
	return st;
}

/*
 * A statement run outside molt_db_txn_* left a transaction open on the
 * session (a module's own START TRANSACTION or BEGIN): the next query of
 * anyone would run inside it.  Not judged with autocommit off for the
 * server (then every statement opens one, and that server's choice).
 */
static int
db_conn_in_foreign_txn(struct db_conn *c)
{
	static int told;

	if ((db_conn_status(c) & (SERVER_STATUS_IN_TRANS |
	    SERVER_STATUS_AUTOCOMMIT)) !=
	    (SERVER_STATUS_IN_TRANS | SERVER_STATUS_AUTOCOMMIT))
		return 0;
	if (!told) {
		told = 1;
		molt_log(MOLT_LOG_WARN, "database %s: a statement left a "
		    "transaction open outside molt_db_txn_begin; closing the "
		    "connection, so that the server rolls it back (once per "
		    "worker)", c->pool->conf->name);
	}
	return 1;
}

/*
 * Whether the statement just ended changed the session: a variable (SET
 * @v, SET autocommit, SET time_zone, SET NAMES), the default database
 * (USE), a temporary table, a PREPARE, a CALL that did any of these.
 * The server flags its answer so once DB_TRACK_SESSION has asked it to,
 * and says which tracker saw it.  Only these three count: a server set to
 * track transactions or GTIDs (session_track_transaction_info,
 * session_track_gtids) flags every transaction's start and end, molt's
 * own included, and would cost each one a connect.  Not flagged, and so
 * looked for in the statement itself (db_sql_kind): SET TRANSACTION,
 * LOCK TABLES, GET_LOCK(), and a user variable assigned outside SET
 * (SELECT @v := x, SELECT ... INTO @v).
 */
static int
db_conn_session_changed(struct db_conn *c)
{
	static const enum enum_session_state_type kinds[] = {
		SESSION_TRACK_STATE_CHANGE, SESSION_TRACK_SYSTEM_VARIABLES,
		SESSION_TRACK_SCHEMA,
	};
	const char *data;
	size_t i, len;

	if ((db_conn_status(c) & SERVER_SESSION_STATE_CHANGED) == 0)
		return 0;
	for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (dblib.mysql_session_track_get_first(c->mysql, kinds[i],
		    &data, &len) == 0)
			return 1;
	return 0;
}

/*
 * A statement changed the session, outside a transaction or in one that
 * is over: whoever the pool lends the connection to next would run in
 * that session (with autocommit off, its writes never committed and were
 * lost with the connection).  It is closed, and the pool opens another.
 * A reset (COM_RESET_CONNECTION) would save the connect, but turns the
 * tracking off with the rest, and needs a round trip more to turn it on:
 * not worth it for what is a module's mistake outside a transaction (its
 * next statement may get another connection anyway), and a connect per
 * transaction that sets something for its statements.
 */
static int
db_conn_changed_session(struct db_conn *c)
{
	static int told;

	if (!c->changed)
		return 0;
	if (!told) {
		told = 1;
		molt_log(MOLT_LOG_WARN, "database %s: a statement changed the "
		    "session (SET, USE, a temporary table) or took a lock "
		    "(LOCK TABLES, GET_LOCK); closing the connection, so that "
		    "the next query finds a fresh one (once per worker)",
		    c->pool->conf->name);
	}
	return 1;
}

/* A connection is free: watch it for a server-side close, or take work. */
static void
db_conn_idle(struct db_conn *c)
{
	struct db_pool *p = c->pool;
	struct molt_db_query *q;

	c->op = DB_OP_NONE;
	c->q = NULL;
	c->paused = 0;
	db_conn_shrink(c);
	if (c->txn != NULL) {
		db_txn_hold(c);
		return;
	}
	if (db_conn_in_foreign_txn(c) || db_conn_changed_session(c)) {
		p->st.sessions_closed++;
		c->phase = DB_OP_NONE;  /* its statement is over: nothing to KILL */
		db_conn_discard(c, 0);
		return;
	}
	if (p->nkills > 0) {
		db_conn_kill(c, p->kills[--p->nkills]);
		return;
	}
	if ((q = p->queue_head) != NULL) {
		p->queue_head = q->next;
		if (p->queue_head == NULL)
			p->queue_tail = &p->queue_head;
		p->queued--;
		q->next = NULL;
		/* A START TRANSACTION: the connection is the transaction's now. */
		if (q->txn != NULL && q->txn->conn == NULL) {
			q->txn->conn = c;
			c->txn = q->txn;
		}
		db_conn_assign(c, q);
		return;
	}
	c->state = DB_C_IDLE;
	db_conn_watch(c);
}

static void
db_conn_kick(evutil_socket_t fd, short what, void *arg)
{
	struct db_conn *c = arg;

	(void)fd;
	(void)what;
	if (c->starting) {
		c->starting = 0;
		if (c->q != NULL)
			db_conn_run(c);
		return;
	}
	if (c->q != NULL && c->op == DB_OP_NONE && !c->paused && c->stmt != NULL)
		db_fetch_loop(c);
}

/* The statement's part in q is over; a cached one stays for the next query. */
static void
db_query_release(struct db_conn *c, struct molt_db_query *q)
{
	if (!db_stmt_is_cached(c, c->stmt))
		dblib.mysql_stmt_close(c->stmt);
	c->stmt = NULL;
	c->q = NULL;
	db_query_finish(q);
}

/*
 * A statement error that leaves the connection in sync: the connection
 * stays, and the module gets a 500.  msg may be the statement's own
 * error text, which closing the statement frees: it is copied first.
 */
static void
db_query_error_in_sync(struct db_conn *c, struct molt_db_query *q,
    const char *msg)
{
	char buf[256];

	snprintf(buf, sizeof(buf), "%s", msg);
	if (c->stmt_kind & DB_SQL_CALL)
		c->changed = 1;
	db_query_release(c, q);
	db_conn_idle(c);
	db_count_error(q->pool, 500);
	q->h.on_error(q->arg, 500, buf);
	db_query_unref(q);
}

/* A query error: 503 if the connection broke, else 500 with the server's message. */
static void
db_stmt_failed(struct db_conn *c, MYSQL_STMT *st)
{
	unsigned e = st ? dblib.mysql_stmt_errno(st) :
	    dblib.mysql_errno(c->mysql);
	const char *msg = st ? dblib.mysql_stmt_error(st) :
	    dblib.mysql_error(c->mysql);
	struct molt_db_query *q = c->q;

	/* A failed fetch can leave its error on the connection only. */
	if (e == 0) {
		e = dblib.mysql_errno(c->mysql);
		msg = dblib.mysql_error(c->mysql);
	}
	if (e == 0 || db_errno_is_lost(e)) {
		char why[200];

		if (e == 0)
			msg = "lost the connection";
		/*
		 * One session ended, which says little about the database: a
		 * DBA's KILL CONNECTION reads the same as a server that died.
		 * So no backoff yet and the pool stays up, with its queue: the
		 * reconnect, at once, finds out, and only a failed connect
		 * marks the pool down and fails what waits.  Nor a KILL for a
		 * session that is gone.
		 */
		c->lost = 1;
		/*
		 * Blamed on the client only if the rows waited for it long
		 * enough for the server to give up on them: a result larger
		 * than the socket buffers pauses for any client a little, and
		 * a server that died then is an outage, not a slow reader.
		 */
		if (c->slowed || (c->paused &&
		    db_clock_ms() - c->paused_ms >= DB_SLOW_PAUSE_MS)) {
			/*
			 * While we wait for a slow client the server's writes
			 * block, and after its net_write_timeout (60 s by
			 * default) it drops the session: the client is told
			 * whose fault it was.
			 */
			molt_log(MOLT_LOG_WARN, "database %s: connection %d lost "
			    "while its rows waited for a slow client (the server's "
			    "net_write_timeout?): %s (%.200s)", c->pool->conf->name,
			    c->index, msg, q->sql);
			db_query_fail(q, 504, "the database gave up sending the "
			    "result while the client was slow to read it");
			return;
		}
		snprintf(c->pool->last_error, sizeof(c->pool->last_error), "%s", msg);
		molt_log(MOLT_LOG_ERROR, "database %s: connection %d lost: %s; "
		    "reconnecting", c->pool->conf->name, c->index, msg);
		snprintf(why, sizeof(why), "lost the connection to database %s "
		    "during the query", c->pool->conf->name);
		db_query_fail(q, 503, why);
		return;
	}
	if (e == CR_NEW_STMT_METADATA) {
		/*
		 * The table changed its number of columns (ALTER TABLE) under
		 * a cached statement.  Connector/C never takes the new columns
		 * for a prepared statement, so the statement would fail like
		 * this at every execute, and its unread result blocks the
		 * connection for any other statement.  Drop the connection and
		 * its cache: the next query prepares the SQL afresh.  Not run
		 * again here, as the server did run it once.
		 */
		molt_log(MOLT_LOG_WARN, "database %s: the result's columns changed "
		    "under a prepared statement; preparing it again (%.200s)",
		    c->pool->conf->name, q->sql);
		db_query_fail(q, 500, "the result's columns changed (an ALTER TABLE?) "
		    "while the statement was cached; it is prepared again for the "
		    "next query");
		return;
	}
	molt_log(MOLT_LOG_INFO, "database %s: query failed: %s (%.200s)",
	    c->pool->conf->name, msg, q->sql);
	if (c->phase == DB_OP_PREPARE || c->phase == DB_OP_EXECUTE) {
		db_query_error_in_sync(c, q, msg);
		return;
	}
	db_query_fail(q, 500, msg);
}

static MYSQL_STMT *
db_cache_find(struct db_conn *c, const char *sql, size_t len, int *kind)
{
	int i;

	for (i = 0; i < c->ncache; i++) {
		if (c->cache[i].len == len && memcmp(c->cache[i].sql, sql, len) == 0) {
			c->cache[i].used = ++c->tick;
			*kind = c->cache[i].kind;
			return c->cache[i].stmt;
		}
	}
	return NULL;
}

static void
db_cache_add(struct db_conn *c, const char *sql, size_t len, MYSQL_STMT *st,
    int kind)
{
	struct db_stmt *e;
	char *copy;
	int i, lru = 0;

	if ((copy = malloc(len + 1)) == NULL)
		return;   /* uncached: closed after the query */
	memcpy(copy, sql, len + 1);
	if (c->ncache < DB_STMT_CACHE) {
		e = &c->cache[c->ncache++];
	} else {
		for (i = 1; i < c->ncache; i++)
			if (c->cache[i].used < c->cache[lru].used)
				lru = i;
		e = &c->cache[lru];
		/* Idle connection: COM_STMT_CLOSE has no reply and is a few bytes. */
		dblib.mysql_stmt_close(e->stmt);
		free(e->sql);
	}
	e->sql = copy;
	e->len = len;
	e->stmt = st;
	e->kind = kind;
	e->used = ++c->tick;
}

static void
db_conn_run(struct db_conn *c)
{
	struct molt_db_query *q = c->q;
	int st;

	c->rows = 0;
	c->paused = 0;
	c->slowed = 0;
	q->resume_early = 0;
	event_del(&c->io);     /* no longer idle-watching */
	c->phase = DB_OP_PREPARE;
	if ((c->stmt = db_cache_find(c, q->sql, q->sql_len,
	    &c->stmt_kind)) != NULL) {
		c->ret_int = 0;
		db_prepare_done(c);    /* straight to execute */
		return;
	}
	c->stmt_kind = db_sql_kind(q->sql, q->sql_len);
	if ((c->stmt = dblib.mysql_stmt_init(c->mysql)) == NULL) {
		db_query_fail(q, 500, "out of memory");
		return;
	}
	c->op = DB_OP_PREPARE;
	st = dblib.mysql_stmt_prepare_start(&c->ret_int, c->stmt, q->sql,
	    (unsigned long)q->sql_len);
	db_started(c, st);
}

/* Grow the per-connection arrays; they never shrink. */
static int
db_grow_params(struct db_conn *c, size_t n)
{
	size_t cap = c->nparams_cap ? c->nparams_cap : 8;
	void *b, *v, *l;

	if (n <= c->nparams_cap)
		return 0;
	while (cap < n)
		cap *= 2;
	b = realloc(c->pbind, cap * sizeof(*c->pbind));
	if (b != NULL)
		c->pbind = b;
	v = realloc(c->pnum, cap * sizeof(*c->pnum));
	if (v != NULL)
		c->pnum = v;
	l = realloc(c->plen, cap * sizeof(*c->plen));
	if (l != NULL)
		c->plen = l;
	if (b == NULL || v == NULL || l == NULL)
		return -1;
	c->nparams_cap = cap;
	return 0;
}

static int
db_bind_params(struct db_conn *c, struct molt_db_query *q)
{
	size_t i;
	char tmp[64];

	if (q->nparams == 0)
		return 0;
	if (db_grow_params(c, q->nparams) == -1)
		return -1;
	memset(c->pbind, 0, q->nparams * sizeof(*c->pbind));
	for (i = 0; i < q->nparams; i++) {
		const struct molt_db_param *pr = &q->params[i];
		MYSQL_BIND *b = &c->pbind[i];

		switch (pr->type) {
		case MOLT_DB_NULL:
			b->buffer_type = MYSQL_TYPE_NULL;
			break;
		case MOLT_DB_INT:
		case MOLT_DB_UINT:
		case MOLT_DB_DOUBLE:
			/* Validated in molt_db_query_start. */
			memcpy(tmp, pr->data, pr->len);
			tmp[pr->len] = '\0';
			if (pr->type == MOLT_DB_INT) {
				c->pnum[i].i = strtoll(tmp, NULL, 10);
				b->buffer_type = MYSQL_TYPE_LONGLONG;
			} else if (pr->type == MOLT_DB_UINT) {
				c->pnum[i].u = strtoull(tmp, NULL, 10);
				b->buffer_type = MYSQL_TYPE_LONGLONG;
				b->is_unsigned = 1;
			} else {
				c->pnum[i].d = strtod(tmp, NULL);
				b->buffer_type = MYSQL_TYPE_DOUBLE;
			}
			b->buffer = &c->pnum[i];
			break;
		case MOLT_DB_BLOB:
			b->buffer_type = MYSQL_TYPE_BLOB;
			goto bytes;
		case MOLT_DB_DECIMAL:
			b->buffer_type = MYSQL_TYPE_NEWDECIMAL;
			goto bytes;
		default:
			b->buffer_type = MYSQL_TYPE_STRING;
		bytes:
			b->buffer = (void *)pr->data;
			c->plen[i] = (unsigned long)pr->len;
			b->buffer_length = (unsigned long)pr->len;
			b->length = &c->plen[i];
			break;
		}
	}
	return dblib.mysql_stmt_bind_param(c->stmt, c->pbind) ? -1 : 0;
}

static int
db_grow_cols(struct db_conn *c, size_t n)
{
	size_t cap = c->ncols_cap ? c->ncols_cap : 8, old = c->ncols_cap;
	void *b, *cl, *v, *m;

	if (n <= c->ncols_cap)
		return 0;
	while (cap < n)
		cap *= 2;
	if ((b = realloc(c->rbind, cap * sizeof(*c->rbind))) != NULL)
		c->rbind = b;
	if ((cl = realloc(c->cols, cap * sizeof(*c->cols))) != NULL) {
		c->cols = cl;
		memset(c->cols + old, 0, (cap - old) * sizeof(*c->cols));
	}
	if ((v = realloc(c->vals, cap * sizeof(*c->vals))) != NULL)
		c->vals = v;
	if ((m = realloc(c->mcols, cap * sizeof(*c->mcols))) != NULL)
		c->mcols = m;
	if (b == NULL || cl == NULL || v == NULL || m == NULL)
		return -1;
	c->ncols_cap = cap;
	return 0;
}

static int
db_col_reserve(struct db_col *col, unsigned long need)
{
	unsigned long cap = col->cap ? col->cap : DB_STRBUF_MIN;
	char *b;

	if (need <= col->cap)
		return 0;
	while (cap < need)
		cap *= 2;
	if ((b = realloc(col->buf, cap)) == NULL)
		return -1;
	col->buf = b;
	col->cap = cap;
	return 0;
}

/* Map the result's fields to binds, once per query. */
static int
db_bind_result(struct db_conn *c, unsigned n)
{
	MYSQL_FIELD *f;
	unsigned i;

	if ((c->meta = dblib.mysql_stmt_result_metadata(c->stmt)) == NULL)
		return -1;
	f = dblib.mysql_fetch_fields(c->meta);
	if (db_grow_cols(c, n) == -1)
		return -1;
	memset(c->rbind, 0, n * sizeof(*c->rbind));
	for (i = 0; i < n; i++) {
		struct db_col *col = &c->cols[i];
		MYSQL_BIND *b = &c->rbind[i];
		int uns = (f[i].flags & UNSIGNED_FLAG) != 0;

		col->decimals = f[i].decimals > 6 ? 6 : f[i].decimals;
		b->is_null = &col->is_null;
		b->error = &col->error;
		b->length = &col->len;
		switch (f[i].type) {
		case MYSQL_TYPE_TINY:
		case MYSQL_TYPE_SHORT:
		case MYSQL_TYPE_INT24:
		case MYSQL_TYPE_LONG:
		case MYSQL_TYPE_LONGLONG:
		case MYSQL_TYPE_YEAR:
			col->type = uns ? MOLT_DB_UINT : MOLT_DB_INT;
			b->buffer_type = MYSQL_TYPE_LONGLONG;
			b->is_unsigned = uns;
			b->buffer = &col->fixed.i;
			break;
		case MYSQL_TYPE_FLOAT:
			col->type = MOLT_DB_DOUBLE;
			b->buffer_type = MYSQL_TYPE_FLOAT;
			b->buffer = &col->fixed.f;
			break;
		case MYSQL_TYPE_DOUBLE:
			col->type = MOLT_DB_DOUBLE;
			b->buffer_type = MYSQL_TYPE_DOUBLE;
			b->buffer = &col->fixed.d;
			break;
		case MYSQL_TYPE_DATE:
		case MYSQL_TYPE_NEWDATE:
			col->type = MOLT_DB_DATE;
			goto tm;
		case MYSQL_TYPE_TIME:
			col->type = MOLT_DB_TIME;
			goto tm;
		case MYSQL_TYPE_DATETIME:
		case MYSQL_TYPE_TIMESTAMP:
			col->type = MOLT_DB_DATETIME;
		tm:
			b->buffer_type = f[i].type;
			b->buffer = &col->fixed.t;
			b->buffer_length = sizeof(col->fixed.t);
			break;
		case MYSQL_TYPE_NULL:
			col->type = MOLT_DB_NULL;
			b->buffer_type = MYSQL_TYPE_NULL;
			break;
		case MYSQL_TYPE_BIT:
			/* BIT(n) arrives as big-endian bytes; shown as an unsigned number. */
			col->type = MOLT_DB_UINT;
			goto bytes;
		case MYSQL_TYPE_DECIMAL:
		case MYSQL_TYPE_NEWDECIMAL:
			/* The server sends DECIMAL as text: exact, never via a double. */
			col->type = MOLT_DB_DECIMAL;
			goto bytes;
		default:
			/* Character set 63 is "binary": BLOB, VARBINARY, BINARY, GEOMETRY. */
			col->type = (f[i].charsetnr == 63 || f[i].type == MYSQL_TYPE_GEOMETRY) ?
			    MOLT_DB_BLOB : MOLT_DB_STRING;
		bytes:
			if (db_col_reserve(col, DB_STRBUF_MIN) == -1)
				return -1;
			b->buffer_type = MYSQL_TYPE_STRING;
			b->buffer = col->buf;
			b->buffer_length = col->cap;
			break;
		}
		c->mcols[i].name = f[i].name;
		c->mcols[i].type = col->type;
	}
	return dblib.mysql_stmt_bind_result(c->stmt, c->rbind) ? -1 : 0;
}

/* Shortest text that reads back as the same double (or float). */
static size_t
db_fmt_double(char *dst, size_t size, double v, int is_float)
{
	int prec, lo = is_float ? 6 : 15, hi = is_float ? 9 : 17, n = 0;

	for (prec = lo; prec <= hi; prec++) {
		n = snprintf(dst, size, "%.*g", prec, v);
		if (is_float ? strtof(dst, NULL) == (float)v : strtod(dst, NULL) == v)
			break;
	}
	return (size_t)n;
}

static size_t
db_fmt_time(char *dst, size_t size, const MYSQL_TIME *t, enum molt_db_type type,
            unsigned decimals)
{
	int n;

	if (type == MOLT_DB_DATE)
		return (size_t)snprintf(dst, size, "%04u-%02u-%02u", t->year, t->month, t->day);
	if (type == MOLT_DB_TIME)
		n = snprintf(dst, size, "%s%02u:%02u:%02u", t->neg ? "-" : "",
		    t->hour, t->minute, t->second);
	else
		n = snprintf(dst, size, "%04u-%02u-%02u %02u:%02u:%02u", t->year,
		    t->month, t->day, t->hour, t->minute, t->second);
	if (decimals > 0 && n > 0 && (size_t)n < size) {
		char frac[8];
		/* second_part is microseconds; show as many digits as the column has. */
		snprintf(frac, sizeof(frac), "%06lu", t->second_part % 1000000);
		n += snprintf(dst + n, size - (size_t)n, ".%.*s", (int)decimals, frac);
	}
	return (size_t)n;
}

/*
 * Re-read the columns that did not fit their buffers, grown once, from the
 * row still in the network buffer.  All of them before the one rebind:
 * mysql_stmt_bind_result copies our binds over the statement's, which
 * forgets where each column sits in the current row, so a column re-read
 * after a rebind comes back NULL (a row with two long values lost the
 * second one).  The rebind makes the next rows fit.
 */
static int
db_row_refetch(struct db_conn *c, unsigned n)
{
	unsigned i;
	int grown = 0;

	for (i = 0; i < n; i++) {
		struct db_col *col = &c->cols[i];
		MYSQL_BIND *b = &c->rbind[i], tmp;

		if (!col->error || b->buffer_type != MYSQL_TYPE_STRING ||
		    col->buf == NULL)
			continue;
		if (db_col_reserve(col, col->len + 1) == -1)
			return -1;
		b->buffer = col->buf;
		b->buffer_length = col->cap;
		tmp = *b;
		if (dblib.mysql_stmt_fetch_column(c->stmt, &tmp, i, 0) != 0)
			return -1;
		grown = 1;
	}
	if (grown && dblib.mysql_stmt_bind_result(c->stmt, c->rbind) != 0)
		return -1;
	return 0;
}

/* Turn the fetched row into values; returns -1 if a buffer cannot grow. */
static int
db_row_values(struct db_conn *c, unsigned n, int truncated)
{
	unsigned i;

	if (truncated && db_row_refetch(c, n) == -1)
		return -1;
	for (i = 0; i < n; i++) {
		struct db_col *col = &c->cols[i];
		struct molt_db_value *v = &c->vals[i];
		MYSQL_BIND *b = &c->rbind[i];

		v->type = col->type;
		if (col->is_null || col->type == MOLT_DB_NULL) {
			v->type = MOLT_DB_NULL;
			v->data = NULL;
			v->len = 0;
			continue;
		}
		v->data = col->text;
		switch (col->type) {
		case MOLT_DB_INT:
			v->len = (size_t)snprintf(col->text, sizeof(col->text), "%lld", col->fixed.i);
			break;
		case MOLT_DB_UINT:
			if (b->buffer_type == MYSQL_TYPE_STRING) {   /* BIT */
				unsigned long long u = 0;
				unsigned long k;

				for (k = 0; k < col->len && k < 8; k++)
					u = (u << 8) | (unsigned char)col->buf[k];
				col->fixed.u = u;
			}
			v->len = (size_t)snprintf(col->text, sizeof(col->text), "%llu", col->fixed.u);
			break;
		case MOLT_DB_DOUBLE:
			v->len = b->buffer_type == MYSQL_TYPE_FLOAT ?
			    db_fmt_double(col->text, sizeof(col->text), col->fixed.f, 1) :
			    db_fmt_double(col->text, sizeof(col->text), col->fixed.d, 0);
			break;
		case MOLT_DB_DATE:
		case MOLT_DB_TIME:
		case MOLT_DB_DATETIME:
			v->len = db_fmt_time(col->text, sizeof(col->text), &col->fixed.t,
			    col->type, col->decimals);
			break;
		default:
			v->data = col->buf;
			v->len = col->len;
			break;
		}
	}
	return 0;
}

static void
db_query_done(struct db_conn *c)
{
	struct molt_db_query *q = c->q;
	unsigned long long n;
	int more;

	n = dblib.mysql_stmt_field_count(c->stmt) > 0 ? c->rows :
	    (unsigned long long)dblib.mysql_stmt_affected_rows(c->stmt);
	more = dblib.mysql_stmt_more_results(c->stmt);
	c->changed |= (c->stmt_kind & DB_SQL_LEAVES) ||
	    db_conn_session_changed(c);
	if (c->meta != NULL) {
		dblib.mysql_free_result(c->meta);
		c->meta = NULL;
	}
	db_query_release(c, q);
	/*
	 * More results (a CALL): not worth reading through; a fresh
	 * connection is cheaper and certainly in sync.  In a transaction
	 * that ends it (the server rolls back), which the statement's own
	 * answer must say, not the next one's.
	 */
	if (more && q->txn != NULL) {
		db_conn_discard(c, 0);
		db_count_error(q->pool, 500);
		q->h.on_error(q->arg, 500, "a statement with more than one result "
		    "(a CALL) cannot run in a transaction; the transaction was "
		    "rolled back");
		db_query_unref(q);
		return;
	}
	if (more)
		db_conn_discard(c, 0);
	else
		db_conn_idle(c);
	q->h.on_done(q->arg, n);
	db_query_unref(q);
}

/* A fetch finished with ret; returns 1 to keep fetching. */
static int
db_fetch_result(struct db_conn *c, int ret)
{
	struct molt_db_query *q = c->q;
	unsigned n = dblib.mysql_stmt_field_count(c->stmt);
	int rc;

	if (ret == MYSQL_NO_DATA) {
		db_query_done(c);
		return 0;
	}
	if (ret != 0 && ret != MYSQL_DATA_TRUNCATED) {
		db_stmt_failed(c, c->stmt);
		return 0;
	}
	if (db_row_values(c, n, ret == MYSQL_DATA_TRUNCATED) == -1) {
		molt_log(MOLT_LOG_ERROR, "database %s: cannot hold a value of a row: %s",
		    c->pool->conf->name, dblib.mysql_stmt_error(c->stmt));
		db_query_fail(q, 500, "out of memory for a row value");
		return 0;
	}
	if (c->rows++ == 0)
		event_del(&q->timer);   /* answering: query_timeout is met */
	c->pool->st.rows++;
	c->in_cb = 1;
	rc = q->h.on_row ? q->h.on_row(q->arg, c->vals, n) : 0;
	c->in_cb = 0;
	if (c->q != q) {
		/* Cancelled during the callback: now it is safe to discard. */
		db_conn_discard(c, 0);
		return 0;
	}
	if (rc == -1) {
		c->q = NULL;
		db_query_finish(q);
		db_conn_discard(c, 0);
		db_query_unref(q);
		return 0;
	}
	if (rc == MOLT_AGAIN && !q->resume_early) {
		c->paused = 1;      /* stop reading: the server's rows wait in TCP */
		c->paused_ms = db_clock_ms();
		return 0;
	}
	q->resume_early = 0;
	return 1;
}

static void
db_fetch_loop(struct db_conn *c)
{
	int i, st;

	c->phase = DB_OP_FETCH;
	for (i = 0; i < DB_ROWS_PER_TURN; i++) {
		c->op = DB_OP_FETCH;
		st = dblib.mysql_stmt_fetch_start(&c->ret_int, c->stmt);
		if (st != 0) {
			db_wait(c, st);
			return;
		}
		c->op = DB_OP_NONE;
		if (!db_fetch_result(c, c->ret_int))
			return;
	}
	/* Rows were already buffered: let other connections and clients run. */
	event_active(&c->kick, EV_TIMEOUT, 1);
}

static void
db_execute_done(struct db_conn *c)
{
	struct molt_db_query *q = c->q;
	unsigned n;
	int rc;

	if (c->ret_int != 0) {
		db_stmt_failed(c, c->stmt);
		return;
	}
	if ((n = dblib.mysql_stmt_field_count(c->stmt)) == 0) {
		db_query_done(c);
		return;
	}
	if (db_bind_result(c, n) == -1) {
		molt_log(MOLT_LOG_ERROR, "database %s: binding the result: %s",
		    c->pool->conf->name, dblib.mysql_stmt_error(c->stmt));
		db_query_fail(q, 500, "cannot bind the result");
		return;
	}
	if (q->h.on_columns != NULL) {
		c->in_cb = 1;
		rc = q->h.on_columns(q->arg, c->mcols, n);
		c->in_cb = 0;
		if (c->q != q) {
			db_conn_discard(c, 0);
			return;
		}
		if (rc == -1) {
			c->q = NULL;
			db_query_finish(q);
			db_conn_discard(c, 0);
			db_query_unref(q);
			return;
		}
	}
	db_fetch_loop(c);
}

static void
db_prepare_done(struct db_conn *c)
{
	struct molt_db_query *q = c->q;
	unsigned long want;
	int st;

	if (c->ret_int != 0) {
		db_stmt_failed(c, c->stmt);
		return;
	}
	if (!db_stmt_is_cached(c, c->stmt))
		db_cache_add(c, q->sql, q->sql_len, c->stmt, c->stmt_kind);
	want = dblib.mysql_stmt_param_count(c->stmt);
	if (want != q->nparams) {
		char msg[128];

		snprintf(msg, sizeof(msg), "the statement has %lu placeholders but %zu "
		    "parameters were given", want, q->nparams);
		db_query_error_in_sync(c, q, msg);
		return;
	}
	if (db_bind_params(c, q) == -1) {
		molt_log(MOLT_LOG_ERROR, "database %s: binding parameters: %s",
		    c->pool->conf->name, dblib.mysql_stmt_error(c->stmt));
		db_query_fail(q, 500, "cannot bind the parameters");
		return;
	}
	c->op = c->phase = DB_OP_EXECUTE;
	st = dblib.mysql_stmt_execute_start(&c->ret_int, c->stmt);
	db_started(c, st);
}

/* An operation completed (ret_* hold its result). */
static void
db_op_done(struct db_conn *c)
{
	enum db_op op = c->op;

	event_del(&c->io);
	c->op = DB_OP_NONE;
	switch (op) {
	case DB_OP_CONNECT:
		db_connect_done(c);
		break;
	case DB_OP_PREPARE:
		db_prepare_done(c);
		break;
	case DB_OP_EXECUTE:
		db_execute_done(c);
		break;
	case DB_OP_FETCH:
		if (db_fetch_result(c, c->ret_int))
			db_fetch_loop(c);
		break;
	case DB_OP_KILL:
		db_kill_done(c);
		break;
	case DB_OP_NONE:
		break;
	}
}

/* ------------------------------------------------------------------ */
/* Worker start and exit                                               */


int
db_worker_init(const struct molt_config *cfg, struct event_base *base)
{
	struct db_conf *dbs, *d;
	struct db_pool *p;
	char msg[512];
	int i, nth = 0;

	if (conf_find((struct molt_config *)cfg, "database", NULL) == NULL)
		return 0;
	if ((dbs = db_conf_for(cfg)) == NULL)
		return -1;
	if (dblib_load(msg, sizeof(msg)) == -1) {
		molt_log(MOLT_LOG_ERROR, "database: %s", msg);
		return -1;
	}
	if (dblib.mysql_server_init(0, NULL, NULL) != 0) {
		molt_log(MOLT_LOG_ERROR, "database: mysql_library_init failed");
		return -1;
	}
	db_lib_inited = 1;
	db_base = base;
	evtimer_assign(&db_settled_ev, base, db_settled, NULL);
	srandom((unsigned)getpid() ^ (unsigned)time(NULL));
	for (d = dbs; d != NULL; d = d->next) {
		db_conf_resolve(d);
		if ((p = calloc(1, sizeof(*p))) == NULL ||
		    (p->conns = calloc((size_t)d->pool_size, sizeof(*p->conns))) == NULL) {
			free(p);
			molt_log(MOLT_LOG_ERROR, "database %s: out of memory for the pool", d->name);
			return -1;
		}
		p->conf = d;
		p->index = nth++;
		p->nconns = d->pool_size;
		p->queue_tail = &p->queue_head;
		p->next = db_pools;
		db_pools = p;
		for (i = 0; i < p->nconns; i++) {
			struct db_conn *c = &p->conns[i];

			c->pool = p;
			c->index = i;
			c->state = DB_C_DOWN;
			event_assign(&c->io, base, -1, 0, db_conn_io, c);
			evtimer_assign(&c->timer, base, db_conn_timer, c);
			event_assign(&c->kick, base, -1, 0, db_conn_kick, c);
			c->never_started = 1;
		}
		for (i = 0; i < p->nconns && i < DB_CONNECT_BURST; i++)
			db_pool_start_next(p);
	}
	return 0;
}

void
db_worker_exit(void)
{
	struct db_pool *p, *next;
	struct molt_db_query *q;
	int i;

	/* db_worker_init sets db_base and the pools only after this flag, so
	 * without it there is nothing to stop; and writing the globals below
	 * would cost the exiting worker a copy-on-write fault for nothing. */
	if (!db_lib_inited)
		return;
	db_base = NULL;   /* no reconnects from here on */
	event_del(&db_settled_ev);
	for (p = db_pools; p != NULL; p = next) {
		next = p->next;
		/* Requests are gone by now; anything left is dropped quietly. */
		while ((q = p->queue_head) != NULL)
			molt_db_cancel(q);
		for (i = 0; i < p->nconns; i++) {
			struct db_conn *c = &p->conns[i];

			/* First, so that the cancel below frees the connection
			 * to no transaction (a rollback needs the loop). */
			if (c->txn != NULL)
				c->txn->conn = NULL;
			c->txn = NULL;
			if (c->q != NULL)
				molt_db_cancel(c->q);
			if (c->state != DB_C_DEAD && db_conn_abort_op(c) == 0)
				db_conn_close(c);
			event_del(&c->timer);
			event_del(&c->kick);
			event_del(&c->io);
			for (size_t k = 0; k < c->ncols_cap; k++)
				free(c->cols[k].buf);
			free(c->rbind);
			free(c->cols);
			free(c->vals);
			free(c->mcols);
			free(c->pbind);
			free(c->pnum);
			free(c->plen);
		}
		free(p->conns);
		free(p);
	}
	/* Only if db_worker_init started it: without a [database] the
	 * library is never touched, not even to stop it. */
	if (db_lib_inited) {
		db_lib_inited = 0;
		dblib.mysql_server_end();
	}
	db_pools = NULL;
}

int
db_inflight(void)
{
	return db_inflight_count;
}

void
db_publish(struct sb_db_stats *out, int n)
{
	struct db_pool *p;
	struct sb_db_stats *o;
	int i;

	for (p = db_pools; p != NULL; p = p->next) {
		struct sb_db_stats v = p->st;

		if (p->index >= n)
			continue;
		v.queued = (uint32_t)p->queued;
		for (i = 0; i < p->nconns; i++) {
			switch (p->conns[i].state) {
			case DB_C_IDLE:
				v.live++;
				break;
			case DB_C_BUSY:
				v.live++;
				v.busy++;
				break;
			case DB_C_HELD:
				v.live++;
				v.held++;
				break;
			default:
				break;
			}
		}
		/* Each field one whole store: a page reads no half-counted
		 * gauge (status_add_db). */
		o = &out[p->index];
#define DB_PUT(f) __atomic_store_n(&o->f, v.f, __ATOMIC_RELAXED);
		SB_DB_COUNTERS(DB_PUT)
		SB_DB_GAUGES(DB_PUT)
#undef DB_PUT
	}
}

const char *
db_name(int i)
{
	struct db_pool *p;

	for (p = db_pools; p != NULL; p = p->next)
		if (p->index == i)
			return p->conf->name;
	return NULL;
}
