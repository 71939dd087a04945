/*
 * molt/module.h - the public ABI between molt and its handler modules.
 *
 * A module is a shared object that exports exactly one symbol, a const
 * struct molt_module named `molt_module`:
 *
 *     #include <molt/module.h>
 *
 *     static int hello_handle(molt_request *req)
 *     {
 *         return molt_reply(req, 200, "text/plain", "hello\n", 6);
 *     }
 *
 *     MOLT_EXPORT const struct molt_module molt_module = {
 *         MOLT_MODULE_HEADER,
 *         .name   = "hello",
 *         .handle = hello_handle,
 *     };
 *
 * Build it out of tree with
 *     cc -shared -fPIC $(pkg-config --cflags molt-module) mymod.c -o mymod.so
 * The functions below are resolved against the molt binary at load time, so
 * the module links against nothing.
 *
 * Everything here runs in a worker process on its single-threaded libevent
 * loop.  A handler must never block: wait for I/O with events on
 * molt_worker_base() and finish the reply later (MOLT_PENDING).
 *
 * ABI changelog (major changes break modules, minor ones only add):
 *   2026-11-25  1.0  First release: module struct, config keys, request
 *                    accessors, whole/streamed/deferred/file replies,
 *                    request pools and cleanups, JSON and HTTP-date helpers,
 *                    MariaDB async queries.
 *   2026-12-03  1.1  molt_stream_abort: end a failed stream so that the
 *                    client sees the truncation.
 *   2026-12-05  1.1  No change to the ABI: the master now keeps each checked
 *                    module loaded, so its ELF constructors run there too
 *                    (molt-module(3)); per-process setup is worker_init's.
 *   2026-12-05  1.1  No change to the ABI: workers now handle SIGURG (they
 *                    kick each other to accept); a module must not take it.
 *   2026-12-05  1.1  No change to the ABI: replies are checked.  A status
 *                    outside 200-599 or a content type with a control byte
 *                    is answered 500 (the call returns -1); a 204 or 304
 *                    stream or file sends no body; molt_resp_header refuses
 *                    control bytes, non-token names and the headers molt
 *                    writes (Content-Length, Transfer-Encoding, Date, ...),
 *                    but honours "Connection: close"; a call on a request
 *                    that is over is refused while its connection is idle;
 *                    a stream that writes on after MOLT_AGAIN until 1 MB
 *                    waits is cut off (molt_stream_write returns -1).
 *   2026-12-05  1.1  No change to the ABI: molt_http_parse_date also takes
 *                    the rfc850 and asctime forms, as RFC 9110 requires.
 *   2026-12-05  1.1  No change to the ABI: a request whose client left while
 *                    a module held it without molt_req_on_abort is kept
 *                    until the module answers; the answer is dropped (the
 *                    call returns -1) and can no longer reach another client.
 *   2026-12-06  1.1  No change to the ABI: a Host that is not host[:port]
 *                    is refused with 400 before any module runs, and with
 *                    an absolute-form target the Host header a module
 *                    reads is the target's authority.
 *   2026-12-06  1.2  molt_worker_in_check: the configuration check now runs
 *                    worker_init and route_init once (then the exit hooks),
 *                    as worker 0 of no generation; a module that names an
 *                    outside resource by worker id skips it there.
 *   2026-12-06  1.2  No change to the ABI: MOLT_EXPORT declares extern "C"
 *                    in C++; molt_resp_header refuses Content-Type; a
 *                    deferred reply not begun within handler_timeout is
 *                    answered 504 and aborted; molt_reply_file
 *                    refuses a bad descriptor or range (500); MOLT_ERROR
 *                    after a stream began sends what was written, then
 *                    closes; molt_log writes control bytes as \xHH.
 *   2026-12-06  1.3  Transactions: molt_db_txn_begin, molt_db_txn_query,
 *                    molt_db_txn_commit, molt_db_txn_rollback hold one
 *                    pooled connection from START TRANSACTION to its end.
 *   2026-12-07  1.4  molt_worker_on_drain, molt_worker_draining: a worker's
 *                    drain (recycle, reload, graceful stop) is told to its
 *                    modules, so that a stream with no end of its own
 *                    (server-sent events, a feed) can be ended cleanly
 *                    instead of cut off at drain_timeout.
 */
#ifndef MOLT_MODULE_H
#define MOLT_MODULE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MOLT_ABI_MAJOR 1
#define MOLT_ABI_MINOR 4
/* "MOLT" read as a little-endian word; catches a .so that is not a module. */
#define MOLT_MODULE_MAGIC 0x544c4f4dU

/*
 * In C++ a const object at namespace scope has internal linkage: without
 * extern "C" the module would export nothing under the name molt looks up.
 */
#ifdef __cplusplus
#define MOLT_EXPORT extern "C" __attribute__((visibility("default")))
#else
#define MOLT_EXPORT __attribute__((visibility("default")))
#endif

/* The first fields of every module, like Apache's STANDARD20_MODULE_STUFF. */
#define MOLT_MODULE_HEADER                                                   \
	.abi_major = MOLT_ABI_MAJOR, .abi_minor = MOLT_ABI_MINOR,            \
	.magic = MOLT_MODULE_MAGIC

#if defined(__GNUC__)
#define MOLT_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define MOLT_PRINTF(f, a)
#endif

typedef struct molt_request molt_request;
typedef struct molt_worker  molt_worker;
typedef struct molt_pool    molt_pool;
typedef struct molt_conf    molt_conf;
struct event_base;

/* Handler results. */
#define MOLT_DONE     0   /* a reply was given (or will be, see streams) */
#define MOLT_PENDING  1   /* the reply comes later, from an event callback */
#define MOLT_ERROR   (-1) /* molt answers 500 if nothing was sent yet */
#define MOLT_AGAIN    2   /* stream: accepted, but wait for on_drain */

/* ------------------------------------------------------------------ */
/* Configuration keys                                                  */

enum molt_conf_type {
	MOLT_CONF_STRING = 1,
	MOLT_CONF_INT,       /* signed decimal */
	MOLT_CONF_SIZE,      /* bytes, with optional k/m/g suffix (1024-based) */
	MOLT_CONF_DURATION,  /* milliseconds; suffix ms, s, m or h (default s) */
	MOLT_CONF_BOOL,      /* on|off|yes|no|true|false|1|0 */
};

/* Where a key may appear. */
#define MOLT_CONF_MODULE   0x1  /* in [module NAME] */
#define MOLT_CONF_ROUTE    0x2  /* in [route PATH] using this module */
#define MOLT_CONF_REQUIRED 0x4  /* must be set somewhere */

struct molt_conf_key {
	const char          *name;
	enum molt_conf_type  type;
	unsigned             flags;
	const char          *def;   /* default as config text, or NULL */
	const char          *help;  /* one line, quoted when a required key is missing */
};

/*
 * A route's effective settings: the [route] section first, then the
 * module's [module NAME] section, then the key's default.  Values were
 * validated against their type before any module code runs.
 */
const char *molt_conf_str(const molt_conf *conf, const char *key);
long long   molt_conf_int(const molt_conf *conf, const char *key);
int         molt_conf_bool(const molt_conf *conf, const char *key);
/* The file and line a key was set at, for error messages ("" / 0 if default). */
const char *molt_conf_where(const molt_conf *conf, const char *key, int *line);

/* ------------------------------------------------------------------ */
/* The module                                                          */

struct molt_module {
	uint16_t abi_major;
	uint16_t abi_minor;
	uint32_t magic;

	const char *name;         /* must match the file name, NAME.so */
	const char *version;
	const char *description;
	const struct molt_conf_key *conf_keys; /* ends with a {NULL} entry */

	/*
	 * Optional.  Cross-key validation of one route's settings.  Runs in
	 * the validating process (molt -t, start-up, reload), never in the
	 * master.  Write a message into err and return -1 to refuse.
	 */
	int  (*check)(const molt_conf *conf, char *err, size_t errlen);

	/* Optional.  In each worker after fork, before it accepts. */
	int  (*worker_init)(molt_worker *w);
	/* Optional.  In each worker after the last request has finished. */
	void (*worker_exit)(molt_worker *w);

	/*
	 * Optional.  In each worker, once per route using this module, after
	 * worker_init.  Store parsed settings in *data; handle() gets it back
	 * from molt_req_route_data().  Return -1 to fail the worker's start.
	 */
	int  (*route_init)(molt_worker *w, const molt_conf *conf, void **data);
	void (*route_exit)(molt_worker *w, void *data);

	/* Required.  Returns MOLT_DONE, MOLT_PENDING or MOLT_ERROR. */
	int  (*handle)(molt_request *req);
};

/* ------------------------------------------------------------------ */
/* Workers, logging                                                    */

struct event_base *molt_worker_base(molt_worker *w);
int                molt_worker_id(const molt_worker *w);
/* 1 in the configuration check's run of the init hooks (ABI 1.2). */
int                molt_worker_in_check(const molt_worker *w);
/*
 * A draining worker (recycled, reloaded, stopped gracefully) takes no new
 * connections and exits once its requests are done, or cuts them off at
 * drain_timeout.  A stream that has no end of its own (server-sent events,
 * a feed) would hold the worker that long and then be cut: cb(w, arg)
 * runs once, from the event loop, when the worker begins to drain, for
 * the module to end such streams (its clients then reconnect, to a live
 * worker).  Register in worker_init; at most 32 per worker, -1 beyond.
 * Registered while the worker drains already, cb runs at the loop's next
 * turn.  A fast stop (SIGTERM) runs none.  (ABI 1.4)
 */
int                molt_worker_on_drain(molt_worker *w,
                       void (*cb)(molt_worker *w, void *arg), void *arg);
/* 1 once the worker has begun to drain (ABI 1.4). */
int                molt_worker_draining(const molt_worker *w);

enum molt_log_level { MOLT_LOG_ERROR, MOLT_LOG_WARN, MOLT_LOG_INFO, MOLT_LOG_DEBUG };
void molt_log(int level, const char *fmt, ...) MOLT_PRINTF(2, 3);

/* ------------------------------------------------------------------ */
/* Memory: one pool per request, freed in one go when it ends          */

/* All return NULL only when memory is exhausted (or n > SIZE_MAX / 2).
 * Blocks are 16-byte aligned. */
void *molt_palloc(molt_pool *p, size_t n);
void *molt_pcalloc(molt_pool *p, size_t n);
char *molt_pstrdup(molt_pool *p, const char *s);
/* At most n bytes of s, which may end sooner (as strndup(3)). */
char *molt_pstrndup(molt_pool *p, const char *s, size_t n);
char *molt_psprintf(molt_pool *p, const char *fmt, ...) MOLT_PRINTF(2, 3);
/* fn(arg) runs when the pool is destroyed, last registered first. */
int   molt_pool_cleanup(molt_pool *p, void (*fn)(void *arg), void *arg);

/* ------------------------------------------------------------------ */
/* The request                                                         */

molt_pool   *molt_req_pool(molt_request *req);
molt_worker *molt_req_worker(molt_request *req);
const molt_conf *molt_req_conf(const molt_request *req);
void        *molt_req_route_data(const molt_request *req);

const char *molt_req_method(const molt_request *req);   /* "GET" */
const char *molt_req_target(const molt_request *req);   /* as sent: "/a%20b?x=1" */
const char *molt_req_path(const molt_request *req);     /* percent-decoded, no query */
const char *molt_req_path_info(const molt_request *req);/* path after the route prefix */
const char *molt_req_query(const molt_request *req);    /* raw, without '?'; "" if none */
int         molt_req_version(const molt_request *req);  /* 10 or 11 */
/* "127.0.0.1:4711", "[::1]:80", "unix"; through a proxy of [server]
 * real_ip_from, the client it named, without a port: "203.0.113.7". */
const char *molt_req_peer(const molt_request *req);

/* Decoded query parameters ('+' is a space).  First match, or NULL. */
const char *molt_req_param(molt_request *req, const char *name);
size_t      molt_req_param_count(molt_request *req);
int         molt_req_param_at(molt_request *req, size_t i,
                              const char **name, const char **value);

/* Request headers, case-insensitive names.  First match, or NULL.
 * "Host" is always a valid host[:port] (or empty); with an absolute-form
 * target ("GET http://a.example/ HTTP/1.1") it is the target's authority,
 * whatever Host field was sent (RFC 9112 3.2.2). */
const char *molt_req_header(const molt_request *req, const char *name);
size_t      molt_req_header_count(const molt_request *req);
int         molt_req_header_at(const molt_request *req, size_t i,
                               const char **name, const char **value);

/* The whole request body (de-chunked); NULL/0 when there is none. */
const void *molt_req_body(const molt_request *req, size_t *len);

/* ------------------------------------------------------------------ */
/* Replies                                                             */

/*
 * Add a response header; before molt_reply/molt_stream_start.  -1 for
 * control bytes, a non-token name, or a header molt writes itself
 * (Content-Length, Transfer-Encoding, Connection, Date, Server, ...);
 * "Connection: close" closes the connection after the reply.
 */
int molt_resp_header(molt_request *req, const char *name, const char *value);

/*
 * A whole reply.  body is copied; HEAD requests get the headers only.
 * status must be 200-599: anything else is answered 500 and returns -1.
 */
int molt_reply(molt_request *req, int status, const char *content_type,
               const void *body, size_t len);
/* A short JSON error: {"error": msg, "status": N}. */
int molt_reply_error(molt_request *req, int status, const char *msg);
/*
 * A reply from a file with sendfile(2).  molt takes ownership of fd and
 * closes it, also on failure.
 */
int molt_reply_file(molt_request *req, int status, const char *content_type,
                    int fd, off_t offset, off_t len);

/*
 * Streamed replies: chunked for HTTP/1.1, close-delimited for HTTP/1.0.
 * molt_stream_write copies data and returns 0, or MOLT_AGAIN once the
 * connection's output passes its high-water mark: stop producing until
 * the on_drain callback runs.  -1 means the client is gone; the abort
 * callback (if any) follows from the event loop.
 */
int  molt_stream_start(molt_request *req, int status, const char *content_type);
int  molt_stream_write(molt_request *req, const void *data, size_t len);
int  molt_stream_end(molt_request *req);
/*
 * Since 1.1.  Ends a streamed reply that cannot be finished: what was
 * written is sent, then the connection is closed without the last chunk,
 * so the client sees a truncated transfer, not a shorter whole body.
 * Write an error record first if the format has one.  The request ends as
 * with molt_stream_end.
 */
int  molt_stream_abort(molt_request *req);
void molt_stream_on_drain(molt_request *req,
                          void (*cb)(molt_request *req, void *arg), void *arg);

/*
 * Called once if the client goes away (or the worker's drain times out)
 * before a pending or streamed reply was finished.  After the callback the
 * request and its pool are gone: drop every pointer to them.  Without a
 * callback, molt keeps the request until the module's answer, which it
 * drops (molt-module(3), Aborts).
 */
void molt_req_on_abort(molt_request *req,
                       void (*cb)(molt_request *req, void *arg), void *arg);

/* ------------------------------------------------------------------ */
/* Encoding helpers for modules that emit JSON                         */

/*
 * Escapes src[0..len) as the inside of a JSON string (no quotes added).
 * Invalid UTF-8 becomes U+FFFD, so the output is always valid JSON.
 * dst needs room for 6 * len + 1 bytes.  Returns the bytes written (dst is
 * NUL-terminated).
 */
size_t molt_json_escape(char *dst, const char *src, size_t len);
/* Standard base64 with padding; dst needs 4 * ((len + 2) / 3) + 1 bytes. */
size_t molt_base64(char *dst, const void *src, size_t len);

/* HTTP dates (IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT"), as molt's own
 * Date header: out gets 29 characters and a NUL. */
void   molt_http_date(time_t t, char out[30]);
/* Parses an HTTP date in any of the three forms RFC 9110 5.6.7 has a
 * recipient accept (IMF-fixdate, rfc850, asctime); (time_t)-1 if s is none. */
time_t molt_http_parse_date(const char *s, size_t len);

/* ------------------------------------------------------------------ */
/* MariaDB: asynchronous prepared statements on the worker's loop      */

enum molt_db_type {
	MOLT_DB_NULL = 0,
	MOLT_DB_INT,       /* text holds a signed decimal (64-bit safe) */
	MOLT_DB_UINT,      /* unsigned decimal */
	MOLT_DB_DOUBLE,    /* shortest round-trip decimal text */
	MOLT_DB_DECIMAL,   /* exact decimal text, never through a double */
	MOLT_DB_STRING,    /* UTF-8 text */
	MOLT_DB_BLOB,      /* raw bytes */
	MOLT_DB_DATE,      /* "YYYY-MM-DD" */
	MOLT_DB_TIME,      /* "[-]HH:MM:SS[.ffffff]" */
	MOLT_DB_DATETIME,  /* "YYYY-MM-DD HH:MM:SS[.ffffff]" */
};

struct molt_db_column {
	const char        *name;
	enum molt_db_type  type;
};

/* A value in a row: valid only during the on_row call. */
struct molt_db_value {
	enum molt_db_type  type;
	const char        *data;  /* NULL for MOLT_DB_NULL */
	size_t             len;
};

/* A bound parameter.  MOLT_DB_STRING or MOLT_DB_INT text, or MOLT_DB_NULL. */
struct molt_db_param {
	enum molt_db_type  type;
	const char        *data;
	size_t             len;
};

typedef struct molt_db_query molt_db_query;

struct molt_db_handler {
	/* Optional.  Once, before the first row. Return -1 to cancel. */
	int  (*on_columns)(void *arg, const struct molt_db_column *cols, size_t n);
	/* Each row.  Return 0 for more, MOLT_AGAIN to pause until
	 * molt_db_resume(), -1 to cancel (on_error is not called then). */
	int  (*on_row)(void *arg, const struct molt_db_value *vals, size_t n);
	/* Exactly one of these ends every query that was not cancelled.
	 * on_done gets the rows delivered (SELECT) or the affected rows. */
	void (*on_done)(void *arg, unsigned long long rows);
	/* status: 503 if the database is unreachable (or the wait queue is
	 * full), 504 if query_timeout or read_timeout expired, 500 for a
	 * query error.  msg is the server's message; never credentials. */
	void (*on_error)(void *arg, int status, const char *msg);
};

/*
 * Runs sql (with '?' placeholders) on a pooled connection of [database NAME].
 * Rows are streamed as they arrive; nothing is buffered.  The query belongs
 * to req: if the request ends or is aborted first, the query is cancelled
 * and its connection reset.  Returns NULL (after calling nothing) only if
 * the arguments are invalid; a down database is reported via on_error.
 * Each statement starts from a fresh session's state: a connection whose
 * session a statement changed (SET, USE, a lock, an open transaction) is
 * closed, not lent on (molt-module(3)).
 */
molt_db_query *molt_db_query_start(molt_request *req, const char *db,
                                   const char *sql,
                                   const struct molt_db_param *params,
                                   size_t nparams,
                                   const struct molt_db_handler *h, void *arg);
void molt_db_resume(molt_db_query *q);
/* 1 if a [database NAME] section exists (usable from check()), else 0. */
int  molt_db_exists(const char *name);
void molt_db_cancel(molt_db_query *q);

/*
 * Transactions (ABI 1.3).  molt_db_txn_begin takes a connection of
 * [database NAME] for req and runs START TRANSACTION on it; h->on_done(arg,
 * 0) says it has begun (h->on_error as for a query).  Then its queries run
 * on that connection, one at a time, through molt_db_txn_query (NULL if one
 * is still running, or the transaction is not open).  molt_db_txn_commit
 * and molt_db_txn_rollback end it (-1 for the same misuse) and give the
 * connection back; an error from COMMIT other than 500 leaves the outcome
 * unknown.  A query error (500) leaves the transaction open; a lost
 * connection, a query_timeout or molt_db_cancel ends it, and the server
 * rolls it back.  A request that ends with its transaction open has it
 * rolled back.  The transaction belongs to the request: no call to free.
 */
typedef struct molt_db_txn molt_db_txn;
molt_db_txn   *molt_db_txn_begin(molt_request *req, const char *db,
                                 const struct molt_db_handler *h, void *arg);
molt_db_query *molt_db_txn_query(molt_db_txn *t, const char *sql,
                                 const struct molt_db_param *params,
                                 size_t nparams,
                                 const struct molt_db_handler *h, void *arg);
int            molt_db_txn_commit(molt_db_txn *t,
                                  const struct molt_db_handler *h, void *arg);
int            molt_db_txn_rollback(molt_db_txn *t,
                                    const struct molt_db_handler *h, void *arg);

#ifdef __cplusplus
}
#endif

#endif /* MOLT_MODULE_H */
