/*
 * dbtxn.c - a test module for MariaDB transactions (molt_db_txn_*), on
 * the tables the tests create: acct (id INT PRIMARY KEY, bal INT) and
 * tlog (v INT).  Key: database = the [database NAME] to use.
 *
 *   /transfer?from=A&to=B&amount=N
 *         one transaction: take N from A if it has them, give them to B,
 *         commit; 409 (rolled back) if A has less, 404 if B is missing.
 *         A database error is answered with its status and no rollback:
 *         the request's end rolls the transaction back.
 *   /insert?v=N&then=WHAT[&ms=M]
 *         INSERT v in a transaction, then
 *           commit    COMMIT: "committed"
 *           rollback  ROLLBACK: "rolled back"
 *           error     a failing query (500), then INSERT v+1 and COMMIT:
 *                     "committed after STATUS"
 *           abandon   answer "abandoned" without ending it
 *           hold      wait M ms, INSERT v+1, COMMIT: "committed"; on a
 *                     failure "failed STATUS: MSG"
 *           call      CALL tproc() (which returns rows): its error
 *           set       SET @leak = 42, then COMMIT: "committed"
 *   /twice  a second molt_db_txn_query while the first (SLEEP(0.2)) runs:
 *           "refused" if it returned NULL, then COMMIT
 *   /intx   outside any transaction: SELECT @@in_transaction
 *   /begin  outside molt_db_txn_*: START TRANSACTION, then "begun"
 *   /set?what=var|autocommit|tz|use|readonly|callfail|getlock|locktables
 *           |selectvar|intovar|intovar2|readonlyc|lockc|intovarc|readonlyc2
 *           |lockc2|lockc3|selectvarq
 *           outside molt_db_txn_*: a statement that changes the session
 *           (@leak = 42, autocommit = 0, time_zone = '+03:00', USE
 *           information_schema, SET TRANSACTION READ ONLY, CALL pfail()
 *           which sets autocommit = 0 and fails, GET_LOCK('molt_t', 0),
 *           LOCK TABLES tlog READ, SELECT @leak := 42, SELECT 42 INTO
 *           @leak (spaced, and not), SET TRANSACTION READ ONLY and LOCK
 *           TABLES in executable comments or after one (one for a
 *           server version to come, a comment to this one), an INTO @leak
 *           right after an executable comment's version, and SELECT 'a\'
 *           ..., @leak := 42 (a string ending in a backslash, which ends
 *           it only with NO_BACKSLASH_ESCAPES), then "set"
 *   /session  the session as a statement finds it: @leak, @@autocommit,
 *           @@time_zone, DATABASE(), comma-separated
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include <molt/module.h>

static const struct molt_conf_key dbtxn_keys[] = {
	{ "database", MOLT_CONF_STRING, MOLT_CONF_ROUTE | MOLT_CONF_REQUIRED,
	  NULL, "the [database NAME] the transactions run in" },
	{ NULL, 0, 0, NULL, NULL },
};

struct tx {
	molt_request *req;
	molt_db_txn  *t;
	const char   *then;
	const char   *from, *to, *amount, *v, *v1;
	int           step;
	int           gone;        /* the client left: req is not ours */
	int           err_status;
	struct event  timer;
	int           timer_set;
	char          answer[64];  /* one row's first value */
};

static void dbtxn_next(struct tx *x, unsigned long long rows);
static void dbtxn_done(void *arg, unsigned long long rows);
static void dbtxn_error(void *arg, int status, const char *msg);
static int  dbtxn_row(void *arg, const struct molt_db_value *v, size_t n);

static const struct molt_db_handler dbtxn_h = {
	.on_row = dbtxn_row, .on_done = dbtxn_done, .on_error = dbtxn_error,
};

static int
dbtxn_row(void *arg, const struct molt_db_value *v, size_t n)
{
	struct tx *x = arg;

	if (n > 0)
		snprintf(x->answer, sizeof(x->answer), "%.*s",
		    v[0].data ? (int)v[0].len : 4, v[0].data ? v[0].data : "NULL");
	return 0;
}

static void
dbtxn_say(struct tx *x, int status, const char *text)
{
	if (!x->gone)
		molt_reply(x->req, status, "text/plain", text, strlen(text));
}

static int
dbtxn_query(struct tx *x, const char *sql, const char *a, const char *b,
    const char *c)
{
	struct molt_db_param p[3];
	const char *v[3] = { a, b, c };
	size_t n = 0;

	for (n = 0; n < 3 && v[n] != NULL; n++) {
		p[n].type = MOLT_DB_INT;
		p[n].data = v[n];
		p[n].len = strlen(v[n]);
	}
	if (molt_db_txn_query(x->t, sql, p, n, &dbtxn_h, x) == NULL) {
		dbtxn_say(x, 500, "molt_db_txn_query refused\n");
		return -1;
	}
	return 0;
}

static void
dbtxn_end(struct tx *x, int commit)
{
	int rc = commit ? molt_db_txn_commit(x->t, &dbtxn_h, x) :
	    molt_db_txn_rollback(x->t, &dbtxn_h, x);

	if (rc == -1)
		dbtxn_say(x, 500, "commit/rollback refused\n");
}

static void
dbtxn_timer(evutil_socket_t fd, short what, void *arg)
{
	struct tx *x = arg;

	(void)fd;
	(void)what;
	x->timer_set = 0;
	dbtxn_query(x, "INSERT INTO tlog (v) VALUES (?)", x->v1, NULL, NULL);
}

static void
dbtxn_abort(molt_request *req, void *arg)
{
	struct tx *x = arg;

	(void)req;
	x->gone = 1;
	if (x->timer_set)
		event_del(&x->timer);
	x->timer_set = 0;
}

/* Each step of each route, in order; rows: what the last one reported. */
static void
dbtxn_next(struct tx *x, unsigned long long rows)
{
	const char *path = molt_req_path_info(x->req);
	int s = x->step++;

	if (strcmp(path, "/transfer") == 0) {
		if (x->err_status != 0) {       /* rolled back */
			dbtxn_say(x, x->err_status, "rolled back\n");
		} else if (s == 0) {            /* begun */
			dbtxn_query(x, "UPDATE acct SET bal = bal - ? WHERE id = ? "
			    "AND bal >= ?", x->amount, x->from, x->amount);
		} else if (s == 1) {
			if (rows == 0) {
				x->err_status = 409;
				dbtxn_end(x, 0);
				return;
			}
			dbtxn_query(x, "UPDATE acct SET bal = bal + ? WHERE id = ?",
			    x->amount, x->to, NULL);
		} else if (s == 2) {
			if (rows == 0) {
				x->err_status = 404;
				dbtxn_end(x, 0);
				return;
			}
			dbtxn_end(x, 1);
		} else {
			dbtxn_say(x, 200, "ok\n");
		}
		return;
	}
	if (strcmp(path, "/twice") == 0) {
		if (s == 0) {
			dbtxn_query(x, "SELECT SLEEP(0.2)", NULL, NULL, NULL);
			x->err_status = molt_db_txn_query(x->t, "SELECT 1", NULL, 0,
			    &dbtxn_h, x) == NULL ? 1 : 2;
		} else if (s == 1) {
			dbtxn_end(x, 1);
		} else {
			dbtxn_say(x, 200, x->err_status == 1 ? "refused\n" :
			    "accepted\n");
		}
		return;
	}
	/* /insert */
	if (s == 0) {
		dbtxn_query(x, "INSERT INTO tlog (v) VALUES (?)", x->v, NULL, NULL);
	} else if (s == 1) {
		if (strcmp(x->then, "commit") == 0) {
			dbtxn_end(x, 1);
		} else if (strcmp(x->then, "rollback") == 0) {
			dbtxn_end(x, 0);
		} else if (strcmp(x->then, "error") == 0) {
			dbtxn_query(x, "SELECT nope FROM nowhere", NULL, NULL, NULL);
		} else if (strcmp(x->then, "abandon") == 0) {
			dbtxn_say(x, 200, "abandoned\n");
		} else if (strcmp(x->then, "call") == 0) {
			dbtxn_query(x, "CALL tproc()", NULL, NULL, NULL);
		} else if (strcmp(x->then, "set") == 0) {
			dbtxn_query(x, "SET @leak = 42", NULL, NULL, NULL);
		} else {                /* hold */
			const char *ms = molt_req_param(x->req, "ms");
			long n = ms ? atol(ms) : 500;
			struct timeval tv = { n / 1000, (n % 1000) * 1000 };

			evtimer_assign(&x->timer,
			    molt_worker_base(molt_req_worker(x->req)), dbtxn_timer, x);
			evtimer_add(&x->timer, &tv);
			x->timer_set = 1;
		}
	} else if (s == 2 && strcmp(x->then, "error") == 0) {
		dbtxn_query(x, "INSERT INTO tlog (v) VALUES (?)", x->v1, NULL, NULL);
	} else if ((s == 2 && (strcmp(x->then, "hold") == 0 ||
	    strcmp(x->then, "set") == 0)) ||
	    (s == 3 && strcmp(x->then, "error") == 0)) {
		dbtxn_end(x, 1);
	} else {
		char buf[64];

		if (x->err_status != 0)
			snprintf(buf, sizeof(buf), "committed after %d\n",
			    x->err_status);
		else
			snprintf(buf, sizeof(buf), "%s\n", strcmp(x->then,
			    "rollback") == 0 ? "rolled back" : "committed");
		dbtxn_say(x, 200, buf);
	}
}

static void
dbtxn_done(void *arg, unsigned long long rows)
{
	struct tx *x = arg;

	if (x->gone)
		return;
	if (strcmp(molt_req_path_info(x->req), "/begin") == 0) {
		dbtxn_say(x, 200, "begun\n");
		return;
	}
	if (strcmp(molt_req_path_info(x->req), "/set") == 0) {
		dbtxn_say(x, 200, "set\n");
		return;
	}
	if (strcmp(molt_req_path_info(x->req), "/intx") == 0 ||
	    strcmp(molt_req_path_info(x->req), "/session") == 0) {
		char buf[80];

		snprintf(buf, sizeof(buf), "%s\n", x->answer);
		dbtxn_say(x, 200, buf);
		return;
	}
	dbtxn_next(x, rows);
}

static void
dbtxn_error(void *arg, int status, const char *msg)
{
	struct tx *x = arg;
	char buf[400];

	if (x->gone)
		return;
	if (strcmp(molt_req_path_info(x->req), "/insert") == 0 &&
	    strcmp(x->then, "error") == 0 && status == 500 && x->step == 2) {
		/* the failing query did fail: the transaction goes on */
		x->err_status = status;
		dbtxn_next(x, 0);
		return;
	}
	molt_log(MOLT_LOG_INFO, "dbtxn: %s: %d %s", molt_req_path_info(x->req),
	    status, msg);
	snprintf(buf, sizeof(buf), "failed %d: %s\n", status, msg);
	dbtxn_say(x, strcmp(x->then, "hold") == 0 ? 200 : status, buf);
}

static char *
dbtxn_plus1(molt_pool *pool, const char *v)
{
	return molt_psprintf(pool, "%lld", atoll(v) + 1);
}

/* The statements run outside a transaction, by path (and what=). */
static const char *
dbtxn_plain(const char *path, const char *what)
{
	static const struct { const char *path, *what, *sql; } plain[] = {
		{ "/intx", NULL, "SELECT @@in_transaction" },
		{ "/begin", NULL, "START TRANSACTION" },
		{ "/session", NULL, "SELECT CONCAT_WS(',', IFNULL(@leak, '-'), "
		  "@@autocommit, @@time_zone, DATABASE())" },
		{ "/set", "var", "SET @leak = 42" },
		{ "/set", "autocommit", "SET autocommit = 0" },
		{ "/set", "tz", "SET time_zone = '+03:00'" },
		{ "/set", "use", "USE information_schema" },
		{ "/set", "readonly", "/* next */ SET\tTRANSACTION READ ONLY" },
		{ "/set", "callfail", "CALL pfail()" },
		{ "/set", "getlock", "SELECT get_lock('molt_t', 0)" },
		{ "/set", "locktables", "lock tables tlog READ" },
		{ "/set", "selectvar", "SELECT 'a := b', @leak := 42" },
		{ "/set", "intovar", "SELECT 42 INTO\n  @leak" },
		{ "/set", "intovar2", "SELECT 42 INTO@leak" },
		{ "/set", "readonlyc", "/*!40101 SET TRANSACTION READ ONLY */" },
		{ "/set", "lockc", "/*M!100000 LOCK TABLES tlog READ */" },
		{ "/set", "intovarc", "SELECT 42 /*!50000INTO @leak */" },
		{ "/set", "readonlyc2", "/*!40101 */ SET TRANSACTION READ ONLY" },
		{ "/set", "lockc2", "/*M!*/LOCK TABLES tlog READ" },
		{ "/set", "lockc3", "/*!999999 not for this server */ LOCK TABLES tlog READ" },
		{ "/set", "selectvarq", "SELECT 'a\\' AS c, @leak := 42 AS d, '' AS e" },
	};
	size_t i;

	for (i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
		if (strcmp(path, plain[i].path) == 0 && (plain[i].what == NULL ||
		    (what != NULL && strcmp(what, plain[i].what) == 0)))
			return plain[i].sql;
	return NULL;
}

static int
dbtxn_handle(molt_request *req)
{
	const char *db = molt_conf_str(molt_req_conf(req), "database");
	const char *path = molt_req_path_info(req);
	molt_pool *pool = molt_req_pool(req);
	const char *sql;
	struct tx *x;

	if ((x = molt_pcalloc(pool, sizeof(*x))) == NULL)
		return MOLT_ERROR;
	x->req = req;
	x->then = molt_req_param(req, "then");
	x->then = x->then ? x->then : "commit";
	x->from = molt_req_param(req, "from");
	x->to = molt_req_param(req, "to");
	x->amount = molt_req_param(req, "amount");
	x->v = molt_req_param(req, "v");
	x->v = x->v ? x->v : "1";
	x->v1 = dbtxn_plus1(pool, x->v);
	molt_req_on_abort(req, dbtxn_abort, x);
	if ((sql = dbtxn_plain(path, molt_req_param(req, "what"))) != NULL) {
		if (molt_db_query_start(req, db, sql, NULL, 0, &dbtxn_h, x) == NULL)
			return MOLT_ERROR;
		return MOLT_PENDING;
	}
	if (strcmp(path, "/transfer") == 0 &&
	    (x->from == NULL || x->to == NULL || x->amount == NULL))
		return molt_reply_error(req, 400, "from, to and amount");
	if (strcmp(path, "/transfer") != 0 && strcmp(path, "/insert") != 0 &&
	    strcmp(path, "/twice") != 0)
		return molt_reply_error(req, 404, "no such test");
	if ((x->t = molt_db_txn_begin(req, db, &dbtxn_h, x)) == NULL)
		return MOLT_ERROR;
	return MOLT_PENDING;
}

MOLT_EXPORT const struct molt_module molt_module = {
	MOLT_MODULE_HEADER,
	.name        = "dbtxn",
	.version     = "1.0",
	.description = "test: MariaDB transactions",
	.conf_keys   = dbtxn_keys,
	.handle      = dbtxn_handle,
};
