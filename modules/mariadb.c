/*
 * mariadb.c - serves the rows of one prepared SQL statement, streamed.
 *
 *   [database main]
 *   socket   = /run/mysqld/mysqld.sock
 *   user     = web
 *   password_file = /etc/molt/db.pass
 *   database = shop
 *
 *   [route /users]
 *   module   = mariadb
 *   database = main
 *   query    = SELECT id, name, email FROM users
 *              WHERE id > ? ORDER BY id LIMIT ?
 *   params   = after:int, limit:int ; query-string parameters, bound in order
 *   format   = json             ; json | ndjson | csv
 *
 * GET /users?after=10&limit=50 runs the statement with after and limit
 * bound as parameters (never pasted into the SQL).  A parameter named
 * NAME:int must be a canonical decimal integer ("42", "-7", not "007")
 * and is bound as one; any other is bound as a string (param_type says
 * why).  A missing or malformed parameter is a 400.
 *
 * The Accept header may pick another format: application/json,
 * application/x-ndjson (or application/ndjson), text/csv.  Anything else,
 * or none, gives the route's format.
 *
 * Output, byte for byte:
 *   json    "[\n" then the rows as objects separated by ",\n", then "\n]\n";
 *           no rows: "[\n]\n".
 *   ndjson  one object per row, each followed by "\n".
 *   csv     RFC 4180: a header line of column names, then the rows; lines
 *           end with CRLF; a field is quoted when it holds a comma, quote,
 *           CR or LF (quotes doubled), begins with '#' (the error line's
 *           mark) or is the empty string, so an unquoted empty field is
 *           NULL and "" is the empty string.
 * Values: NULL is null; integers, DECIMAL and floating point are JSON
 * numbers written exactly as the database's text (DECIMAL never goes
 * through a double, so no digit is lost; doubles are the shortest text
 * that reads back as the same double); strings, dates and times are JSON
 * strings; binary columns (BLOB, VARBINARY, BINARY) are standard base64
 * strings, in csv too.
 *
 * A statement that returns no result set (UPDATE ...) answers
 * {"affected_rows":N}.  Errors are JSON: 400 for a missing parameter, 500
 * with the server's message for a query error, 503 while the database is
 * unreachable, 504 when it does not answer within its timeouts.
 *
 * Rows are written as they arrive, in chunks of about 16 KiB.  When the
 * client's buffer is full, molt_stream_write says MOLT_AGAIN; on_row then
 * returns MOLT_AGAIN and molt stops reading from the database until the
 * client drains and we call molt_db_resume().  Memory per request is one
 * output buffer, whatever the number of rows.
 *
 * If the query fails after rows were sent, the status line is gone: the
 * body then ends with an error record instead of its normal end (json:
 * an {"error":..} element and no closing bracket, so a parser fails
 * rather than accept a truncated array; ndjson: a last {"error":..}
 * line; csv: a last line "#error: ...").  Then the connection closes
 * without the last chunk (molt_stream_abort), so an HTTP client reports a
 * truncated transfer whatever the format (curl: exit 18).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <molt/module.h>

#define OUT_FLUSH   (16 * 1024)   /* write a chunk once this much is ready */
#define OUT_INITIAL (32 * 1024)

enum fmt { FMT_JSON, FMT_NDJSON, FMT_CSV };

static const char *const fmt_names[] = { "json", "ndjson", "csv" };
static const char *const fmt_types[] = {
	"application/json", "application/x-ndjson", "text/csv; charset=utf-8"
};

/* A route's settings, parsed once per worker in route_init. */
struct route {
	char      *db;
	char      *query;
	char     **params;
	int       *ints;        /* params[i] was declared NAME:int */
	size_t     nparams;
	enum fmt   fmt;
};

/* One request's state, in the request pool. */
struct mreq {
	molt_request  *req;
	struct route  *rt;
	molt_db_query *q;
	enum fmt       fmt;
	int            columns;     /* on_columns ran: a result set, not a count */
	int            started;     /* status line sent */
	unsigned long long rows;
	size_t         ncols;
	char         **keys;        /* json: "\"name\":"; csv: the header field */
	size_t        *keylens;
	int           *blob;        /* column i is binary: base64 it */
	char          *out;
	size_t         len, cap;
	int            failed;      /* out of memory */
};

static const struct molt_conf_key mariadb_keys[] = {
	{ "database", MOLT_CONF_STRING, MOLT_CONF_ROUTE | MOLT_CONF_REQUIRED, NULL,
	  "the [database NAME] to query" },
	{ "query", MOLT_CONF_STRING, MOLT_CONF_ROUTE | MOLT_CONF_REQUIRED, NULL,
	  "the SQL statement, with ? placeholders" },
	{ "params", MOLT_CONF_STRING, MOLT_CONF_ROUTE, "",
	  "query-string parameters bound to the placeholders, in order" },
	{ "format", MOLT_CONF_STRING, MOLT_CONF_ROUTE | MOLT_CONF_MODULE, "json",
	  "json | ndjson | csv (the Accept header may choose)" },
	{ NULL, 0, 0, NULL, NULL }
};

/* ------------------------------------------------------------------ */
/* Settings                                                            */

static int
fmt_parse(const char *s, enum fmt *f)
{
	int i;

	/* Any case, as molt's own keywords take. */
	for (i = 0; i < 3; i++) {
		if (strcasecmp(s, fmt_names[i]) == 0) {
			*f = (enum fmt)i;
			return 0;
		}
	}
	return -1;
}

/*
 * Counts the ? placeholders the server will see: not inside quotes,
 * backquotes or comments.
 */
static size_t
count_placeholders(const char *s)
{
	size_t n = 0;
	char q;

	while (*s != '\0') {
		if (*s == '\'' || *s == '"' || *s == '`') {
			q = *s++;
			while (*s != '\0' && *s != q) {
				if (*s == '\\' && q != '`' && s[1] != '\0')
					s++;
				s++;
			}
			if (*s != '\0')
				s++;
		} else if (*s == '#' || (s[0] == '-' && s[1] == '-' &&
		    (s[2] == ' ' || s[2] == '\t'))) {
			while (*s != '\0' && *s != '\n')
				s++;
		} else if (s[0] == '/' && s[1] == '*') {
			s += 2;
			while (*s != '\0' && !(s[0] == '*' && s[1] == '/'))
				s++;
			if (*s != '\0')
				s += 2;
		} else {
			if (*s == '?')
				n++;
			s++;
		}
	}
	return n;
}

/* Splits "a, b,c" into names; returns the count, or -1 for an empty name. */
static int
split_params(const char *s, char ***out)
{
	char **v = NULL, **nv;
	const char *p, *end;
	size_t len;
	int n = 0;

	*out = NULL;
	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '\0')
		return 0;
	for (p = s; ; p = end + 1) {
		end = p + strcspn(p, ",");
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		len = (size_t)(end - p);
		while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (len == 0 || (nv = realloc(v, (size_t)(n + 1) * sizeof(*v))) == NULL)
			goto fail;
		v = nv;
		if ((v[n] = strndup(p, len)) == NULL)
			goto fail;
		n++;
		if (*end == '\0')
			break;
	}
	*out = v;
	return n;
fail:
	while (n > 0)
		free(v[--n]);
	free(v);
	return -1;
}

/*
 * A parameter is bound as a string unless its name says ":int".  Binding
 * whatever looked like a number as an integer let "?name=0" match every
 * row of "WHERE name = ?": MariaDB compares a string column with an
 * integer as numbers, and 'alice' is 0 as a number.  Strips the suffix;
 * returns 1 for int, 0 for string, -1 for another type.
 */
static int
param_type(char *name)
{
	char *colon = strrchr(name, ':');
	int t;

	if (colon == NULL)
		return 0;
	if (strcmp(colon + 1, "int") == 0)
		t = 1;
	else if (strcmp(colon + 1, "string") == 0)
		t = 0;
	else
		return -1;
	*colon = '\0';
	return colon == name ? -1 : t;
}

static void
free_params(char **v, size_t n)
{
	while (n > 0)
		free(v[--n]);
	free(v);
}

static int
mariadb_check(const molt_conf *conf, char *err, size_t errlen)
{
	const char *db = molt_conf_str(conf, "database");
	const char *query = molt_conf_str(conf, "query");
	enum fmt f;
	char **names;
	size_t want;
	int n;

	if (!molt_db_exists(db)) {
		snprintf(err, errlen, "database: no [database %s] section", db);
		return -1;
	}
	if (fmt_parse(molt_conf_str(conf, "format"), &f) == -1) {
		snprintf(err, errlen, "format: \"%s\" is not json, ndjson or csv",
		    molt_conf_str(conf, "format"));
		return -1;
	}
	if ((n = split_params(molt_conf_str(conf, "params"), &names)) == -1) {
		snprintf(err, errlen, "params: empty name in \"%s\"",
		    molt_conf_str(conf, "params"));
		return -1;
	}
	for (want = 0; want < (size_t)n; want++) {
		char name[64];

		snprintf(name, sizeof(name), "%s", names[want]);
		if (param_type(names[want]) == -1) {
			snprintf(err, errlen, "params: \"%s\": a type after ':' "
			    "is int or string", name);
			free_params(names, (size_t)n);
			return -1;
		}
	}
	free_params(names, (size_t)n);
	want = count_placeholders(query);
	if (want != (size_t)n) {
		snprintf(err, errlen, "query has %zu ? placeholder%s but params names %d",
		    want, want == 1 ? "" : "s", n);
		return -1;
	}
	return 0;
}

static int
mariadb_route_init(molt_worker *w, const molt_conf *conf, void **data)
{
	struct route *rt;
	int n, i;

	(void)w;
	if ((rt = calloc(1, sizeof(*rt))) == NULL)
		return -1;
	if ((rt->db = strdup(molt_conf_str(conf, "database"))) == NULL ||
	    (rt->query = strdup(molt_conf_str(conf, "query"))) == NULL ||
	    fmt_parse(molt_conf_str(conf, "format"), &rt->fmt) == -1 ||
	    (n = split_params(molt_conf_str(conf, "params"), &rt->params)) == -1)
		goto fail;
	rt->nparams = (size_t)n;
	if (n > 0 && (rt->ints = calloc((size_t)n, sizeof(*rt->ints))) == NULL)
		goto fail;
	for (i = 0; i < n; i++)
		if ((rt->ints[i] = param_type(rt->params[i])) == -1)
			goto fail;
	*data = rt;
	return 0;
fail:
	molt_log(MOLT_LOG_ERROR, "mariadb: route for %s: cannot set up", molt_conf_str(conf, "database"));
	free_params(rt->params, rt->nparams);
	free(rt->ints);
	free(rt->db);
	free(rt->query);
	free(rt);
	return -1;
}

static void
mariadb_route_exit(molt_worker *w, void *data)
{
	struct route *rt = data;

	(void)w;
	free_params(rt->params, rt->nparams);
	free(rt->ints);
	free(rt->db);
	free(rt->query);
	free(rt);
}

/* ------------------------------------------------------------------ */
/* Output buffer                                                       */

/*
 * The request's output buffer: grows only for a value bigger than any so
 * far, never per row.  Returns -1 when memory is exhausted.
 */
static int
out_reserve(struct mreq *m, size_t n)
{
	size_t cap;
	char *b;

	if (m->failed)
		return -1;
	if (m->cap - m->len >= n)
		return 0;
	cap = m->cap ? m->cap : OUT_INITIAL;
	while (cap - m->len < n) {
		if (cap > ((size_t)-1) / 2)
			goto fail;
		cap *= 2;
	}
	if ((b = molt_palloc(molt_req_pool(m->req), cap)) == NULL)
		goto fail;
	if (m->len > 0)
		memcpy(b, m->out, m->len);
	m->out = b;
	m->cap = cap;
	return 0;
fail:
	m->failed = 1;
	return -1;
}

static void
out_raw(struct mreq *m, const char *s, size_t n)
{
	if (out_reserve(m, n) == 0) {
		memcpy(m->out + m->len, s, n);
		m->len += n;
	}
}

#define out_lit(m, lit) out_raw((m), (lit), sizeof(lit) - 1)

static void
out_json_string(struct mreq *m, const char *s, size_t n)
{
	if (n > ((size_t)-1 - 3) / 6 || out_reserve(m, 6 * n + 3) == -1) {
		m->failed = 1;
		return;
	}
	m->out[m->len++] = '"';
	m->len += molt_json_escape(m->out + m->len, s, n);
	m->out[m->len++] = '"';
}

static void
out_base64(struct mreq *m, const char *s, size_t n, int quote)
{
	if (n > ((size_t)-1 - 3) / 2 || out_reserve(m, 4 * ((n + 2) / 3) + 3) == -1) {
		m->failed = 1;
		return;
	}
	if (quote)
		m->out[m->len++] = '"';
	m->len += molt_base64(m->out + m->len, s, n);
	if (quote)
		m->out[m->len++] = '"';
}

/*
 * RFC 4180: quote when needed, double the quotes.  A field that begins
 * with '#' is quoted too: unquoted at the start of a line, "#error: boom"
 * in a row would read as the line that says the result was cut off.
 */
static void
out_csv_field(struct mreq *m, const char *s, size_t n)
{
	size_t i;

	if (n > 0 && s[0] != '#' && strcspn(s, ",\"\r\n") >= n &&
	    memchr(s, '\0', n) == NULL) {
		out_raw(m, s, n);
		return;
	}
	if (out_reserve(m, 2 * n + 2) == -1)
		return;
	m->out[m->len++] = '"';
	for (i = 0; i < n; i++) {
		if (s[i] == '"')
			m->out[m->len++] = '"';
		m->out[m->len++] = s[i];
	}
	m->out[m->len++] = '"';
}

/* Sends what is buffered.  0, MOLT_AGAIN (client full) or -1 (client gone). */
static int
out_flush(struct mreq *m)
{
	int rc;

	if (m->len == 0)
		return 0;
	rc = molt_stream_write(m->req, m->out, m->len);
	m->len = 0;
	return rc;
}

/* ------------------------------------------------------------------ */
/* Query callbacks                                                     */

/*
 * Out of memory inside a callback: our -1 cancels the query, and no
 * on_done or on_error follows, so the request is ended here: a 500 if
 * nothing was sent, else a stream the client sees cut off.
 */
static int
give_up(struct mreq *m)
{
	molt_log(MOLT_LOG_ERROR, "mariadb: out of memory after %llu rows",
	    (unsigned long long)m->rows);
	if (!m->started)
		molt_reply_error(m->req, 500, "out of memory");
	else
		molt_stream_abort(m->req);
	return -1;
}

static void
on_drain(molt_request *req, void *arg)
{
	struct mreq *m = arg;

	(void)req;
	molt_db_resume(m->q);    /* on_drain is one-shot: on_row sets it again */
}

static int
on_columns(void *arg, const struct molt_db_column *cols, size_t n)
{
	struct mreq *m = arg;
	molt_pool *pool = molt_req_pool(m->req);
	size_t i, len;

	/* Column names are written once per row in json: escape them now. */
	m->ncols = n;
	m->keys = molt_palloc(pool, n * sizeof(*m->keys));
	m->keylens = molt_palloc(pool, n * sizeof(*m->keylens));
	m->blob = molt_palloc(pool, n * sizeof(*m->blob));
	if (m->keys == NULL || m->keylens == NULL || m->blob == NULL)
		return give_up(m);
	for (i = 0; i < n; i++) {
		len = strlen(cols[i].name);
		m->blob[i] = cols[i].type == MOLT_DB_BLOB;
		if ((m->keys[i] = molt_palloc(pool, 6 * len + 4)) == NULL)
			return give_up(m);
		if (m->fmt == FMT_CSV) {
			/* Reuse the row writer for the header field. */
			struct mreq tmp = *m;

			tmp.out = m->keys[i];
			tmp.len = 0;
			tmp.cap = 6 * len + 4;
			out_csv_field(&tmp, cols[i].name, len);
			m->keylens[i] = tmp.len;
		} else {
			m->keys[i][0] = '"';
			len = 1 + molt_json_escape(m->keys[i] + 1, cols[i].name, len);
			memcpy(m->keys[i] + len, "\":", 2);
			m->keylens[i] = len + 2;
		}
	}

	/*
	 * The status line waits for the first row (or the end): the server
	 * sends the columns before it runs into most errors (a killed query,
	 * a lock wait timeout, max_statement_time, a bad row), and those
	 * deserve their own status rather than a 200 with an error record.
	 */
	m->columns = 1;
	return 0;
}

/* The status line and what comes before the first row; -1 if it failed. */
static int
begin(struct mreq *m)
{
	size_t i;

	if (molt_stream_start(m->req, 200, fmt_types[m->fmt]) == -1)
		return -1;
	m->started = 1;
	if (m->fmt == FMT_JSON) {
		out_lit(m, "[");
	} else if (m->fmt == FMT_CSV) {
		for (i = 0; i < m->ncols; i++) {
			if (i > 0)
				out_lit(m, ",");
			out_raw(m, m->keys[i], m->keylens[i]);
		}
		out_lit(m, "\r\n");
	}
	return 0;
}

static int
on_row(void *arg, const struct molt_db_value *v, size_t n)
{
	struct mreq *m = arg;
	size_t i;
	int rc;

	if (!m->started && begin(m) == -1)
		return -1;      /* the client is gone: molt ends the request */
	if (m->fmt == FMT_CSV) {
		for (i = 0; i < n; i++) {
			if (i > 0)
				out_lit(m, ",");
			if (v[i].type == MOLT_DB_NULL)
				continue;
			if (v[i].type == MOLT_DB_BLOB)
				out_base64(m, v[i].data, v[i].len, 0);
			else
				out_csv_field(m, v[i].data, v[i].len);
		}
		out_lit(m, "\r\n");
	} else {
		if (m->fmt == FMT_JSON)
			out_raw(m, m->rows == 0 ? "\n{" : ",\n{", m->rows == 0 ? 2 : 3);
		else
			out_lit(m, "{");
		for (i = 0; i < n; i++) {
			if (i > 0)
				out_lit(m, ",");
			out_raw(m, m->keys[i], m->keylens[i]);
			switch (v[i].type) {
			case MOLT_DB_NULL:
				out_lit(m, "null");
				break;
			case MOLT_DB_INT:
			case MOLT_DB_UINT:
			case MOLT_DB_DECIMAL:
			case MOLT_DB_DOUBLE:
				/* Exact text from the database: valid JSON numbers. */
				out_raw(m, v[i].data, v[i].len);
				break;
			case MOLT_DB_BLOB:
				out_base64(m, v[i].data, v[i].len, 1);
				break;
			default:
				out_json_string(m, v[i].data, v[i].len);
				break;
			}
		}
		out_raw(m, m->fmt == FMT_JSON ? "}" : "}\n", m->fmt == FMT_JSON ? 1 : 2);
	}
	m->rows++;
	if (m->failed)
		return give_up(m);
	if (m->len < OUT_FLUSH)
		return 0;
	if ((rc = out_flush(m)) == MOLT_AGAIN) {
		/* The client is behind: pause the query until it drains. */
		molt_stream_on_drain(m->req, on_drain, m);
		return MOLT_AGAIN;
	}
	return rc;   /* 0, or -1: the client is gone and the query is cancelled */
}

static void
on_done(void *arg, unsigned long long affected)
{
	struct mreq *m = arg;
	char buf[64];
	int n;

	if (!m->columns) {
		/* No result set: an INSERT, UPDATE, ... */
		n = snprintf(buf, sizeof(buf), "{\"affected_rows\":%llu}\n", affected);
		molt_reply(m->req, 200, "application/json", buf, (size_t)n);
		return;
	}
	if (!m->started && begin(m) == -1)
		return;         /* no rows, and the client is gone */
	if (m->fmt == FMT_JSON)
		out_lit(m, "\n]\n");
	if (m->failed)
		molt_stream_abort(m->req);      /* the end did not fit */
	else if (out_flush(m) != -1)
		molt_stream_end(m->req);
}

static void
on_error(void *arg, int status, const char *msg)
{
	struct mreq *m = arg;

	if (!m->started) {
		molt_reply_error(m->req, status, msg);
		return;
	}
	/* Too late for a status: end the body with an error record. */
	if (m->fmt == FMT_CSV) {
		out_lit(m, "#error: ");
		out_raw(m, msg, strcspn(msg, "\r\n"));
		out_lit(m, "\r\n");
	} else {
		char st[48];
		int k = snprintf(st, sizeof(st), ",\"status\":%d}\n", status);

		if (m->fmt == FMT_JSON)
			out_lit(m, ",\n{\"error\":");
		else
			out_lit(m, "{\"error\":");
		out_json_string(m, msg, strlen(msg));
		out_raw(m, st, (size_t)k);
	}
	/* -1 from the flush: the client is gone, and molt ends the request. */
	if (m->failed || out_flush(m) != -1)
		molt_stream_abort(m->req);
}

static void
on_abort(molt_request *req, void *arg)
{
	struct mreq *m = arg;

	(void)req;
	/* Not strictly needed (molt cancels a request's queries when it
	 * ends), but it says what happens: stop the query now. */
	molt_db_cancel(m->q);
}

static const struct molt_db_handler handler = {
	.on_columns = on_columns,
	.on_row     = on_row,
	.on_done    = on_done,
	.on_error   = on_error,
};

/* ------------------------------------------------------------------ */
/* Requests                                                            */

/* The best of json/ndjson/csv by the Accept header's q-values; else dflt. */
static enum fmt
negotiate(const char *accept, enum fmt dflt)
{
	static const struct { const char *type; enum fmt f; } types[] = {
		{ "application/json", FMT_JSON },
		{ "application/x-ndjson", FMT_NDJSON },
		{ "application/ndjson", FMT_NDJSON },
		{ "text/csv", FMT_CSV },
	};
	enum fmt best = dflt;
	double bestq = 0;
	const char *p = accept, *end, *semi;
	size_t i, tlen;

	if (accept == NULL)
		return dflt;
	while (*p != '\0') {
		double q = 1;

		while (*p == ' ' || *p == ',')
			p++;
		end = p + strcspn(p, ",");
		semi = memchr(p, ';', (size_t)(end - p));
		tlen = (size_t)((semi ? semi : end) - p);
		while (tlen > 0 && p[tlen - 1] == ' ')
			tlen--;
		if (semi != NULL) {
			const char *qp = strstr(semi, "q=");

			if (qp != NULL && qp < end)
				q = strtod(qp + 2, NULL);
		}
		for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
			if (strlen(types[i].type) == tlen &&
			    strncasecmp(p, types[i].type, tlen) == 0 &&
			    (q > bestq || (q == bestq && types[i].f == dflt))) {
				best = types[i].f;
				bestq = q;
			}
		}
		p = end;
	}
	return best;
}

/* A canonical decimal integer that fits in 64 bits, for a NAME:int. */
static int
is_integer(const char *s)
{
	const char *d = s + (*s == '-');
	size_t n = strlen(d);

	if (n == 0 || n > 18 || (d[0] == '0' && n > 1) || (s[0] == '-' && d[0] == '0'))
		return 0;
	return strspn(d, "0123456789") == n;
}

static int
mariadb_handle(molt_request *req)
{
	struct route *rt = molt_req_route_data(req);
	struct molt_db_param *params = NULL;
	struct mreq *m;
	const char *v;
	size_t i;
	char msg[160];

	if ((m = molt_pcalloc(molt_req_pool(req), sizeof(*m))) == NULL)
		return MOLT_ERROR;
	m->req = req;
	m->rt = rt;
	m->fmt = negotiate(molt_req_header(req, "Accept"), rt->fmt);

	if (rt->nparams > 0 &&
	    (params = molt_palloc(molt_req_pool(req), rt->nparams * sizeof(*params))) == NULL)
		return MOLT_ERROR;
	for (i = 0; i < rt->nparams; i++) {
		if ((v = molt_req_param(req, rt->params[i])) == NULL) {
			snprintf(msg, sizeof(msg), "missing parameter: %s", rt->params[i]);
			return molt_reply_error(req, 400, msg);
		}
		if (rt->ints[i] && !is_integer(v)) {
			snprintf(msg, sizeof(msg), "parameter %s: not an integer",
			    rt->params[i]);
			return molt_reply_error(req, 400, msg);
		}
		params[i].type = rt->ints[i] ? MOLT_DB_INT : MOLT_DB_STRING;
		params[i].data = v;
		params[i].len = strlen(v);
	}

	m->q = molt_db_query_start(req, rt->db, rt->query, params, rt->nparams,
	    &handler, m);
	if (m->q == NULL)
		return MOLT_ERROR;
	molt_req_on_abort(req, on_abort, m);
	return MOLT_PENDING;
}

MOLT_EXPORT const struct molt_module molt_module = {
	MOLT_MODULE_HEADER,
	.name        = "mariadb",
	.version     = "1.1",
	.description = "streams the rows of a prepared MariaDB statement as JSON, NDJSON or CSV",
	.conf_keys   = mariadb_keys,
	.check       = mariadb_check,
	.route_init  = mariadb_route_init,
	.route_exit  = mariadb_route_exit,
	.handle      = mariadb_handle,
};
