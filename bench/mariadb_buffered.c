/*
 * mariadb_buffered.c - BENCHMARK ONLY: the naive way to serve a query,
 * kept to measure what molt's streamed path (modules/mariadb.c) avoids.
 * Never install it.
 *
 * It does what the Vapor MySQL driver in the background note did, in C:
 * the whole result set is read into memory (mysql_store_result), the
 * whole JSON response is built in one growing buffer, and only then is
 * it handed to molt (which copies it once more).  Peak memory is
 * O(rows), and the worker blocks on the database (a plain blocking
 * connection), so it serves one such request at a time.
 *
 * The output is byte-for-byte what the mariadb module sends for the
 * same query in json format (numbers unquoted, strings escaped,
 * binary as base64), so both sides do the same work per row.
 *
 *   [route /bigbuf]
 *   module   = mariadb_buffered
 *   socket   = /tmp/.../mysql.sock
 *   user     = molt
 *   password = ...
 *   database = moltdb
 *   query    = SELECT id, name, amt FROM big ORDER BY id
 *
 * Build (bench/mariadb.sh does it):
 *   cc -shared -fPIC -Iinclude $(pkg-config --cflags libmariadb) \
 *      bench/mariadb_buffered.c -o mariadb_buffered.so $(pkg-config --libs libmariadb)
 */
#include <stdlib.h>
#include <string.h>

#include <mysql.h>

#include <molt/module.h>

static MYSQL *conn;        /* one blocking connection per worker */

static const struct molt_conf_key keys[] = {
	{ "socket", MOLT_CONF_STRING, MOLT_CONF_ROUTE | MOLT_CONF_REQUIRED, NULL, "server socket" },
	{ "user", MOLT_CONF_STRING, MOLT_CONF_ROUTE | MOLT_CONF_REQUIRED, NULL, "user" },
	{ "password", MOLT_CONF_STRING, MOLT_CONF_ROUTE, "", "password" },
	{ "database", MOLT_CONF_STRING, MOLT_CONF_ROUTE | MOLT_CONF_REQUIRED, NULL, "schema" },
	{ "query", MOLT_CONF_STRING, MOLT_CONF_ROUTE | MOLT_CONF_REQUIRED, NULL, "SQL" },
	{ NULL, 0, 0, NULL, NULL }
};

struct buf {
	char   *s;
	size_t  len, cap;
	int     failed;     /* out of memory: checked once at the end */
};

static int
reserve(struct buf *b, size_t n)
{
	size_t cap = b->cap ? b->cap : 4096;
	char *s;

	if (b->failed)
		return -1;
	if (b->cap - b->len >= n)
		return 0;
	while (cap - b->len < n)
		cap *= 2;
	if ((s = realloc(b->s, cap)) == NULL) {
		b->failed = 1;
		return -1;
	}
	b->s = s;
	b->cap = cap;
	return 0;
}

static int
put(struct buf *b, const char *s, size_t n)
{
	if (reserve(b, n) == -1)
		return -1;
	memcpy(b->s + b->len, s, n);
	b->len += n;
	return 0;
}

static int
is_number(enum enum_field_types t)
{
	switch (t) {
	case MYSQL_TYPE_TINY: case MYSQL_TYPE_SHORT: case MYSQL_TYPE_LONG:
	case MYSQL_TYPE_INT24: case MYSQL_TYPE_LONGLONG: case MYSQL_TYPE_YEAR:
	case MYSQL_TYPE_FLOAT: case MYSQL_TYPE_DOUBLE:
	case MYSQL_TYPE_DECIMAL: case MYSQL_TYPE_NEWDECIMAL:
		return 1;
	default:
		return 0;
	}
}

static int
route_init(molt_worker *w, const molt_conf *conf, void **data)
{
	(void)w;
	*data = (void *)molt_conf_str(conf, "query");
	if (conn != NULL)
		return 0;
	if ((conn = mysql_init(NULL)) == NULL ||
	    mysql_options(conn, MYSQL_SET_CHARSET_NAME, "utf8mb4") != 0 ||
	    mysql_real_connect(conn, NULL, molt_conf_str(conf, "user"),
	    molt_conf_str(conf, "password"), molt_conf_str(conf, "database"), 0,
	    molt_conf_str(conf, "socket"), 0) == NULL) {
		molt_log(MOLT_LOG_ERROR, "mariadb_buffered: connect: %s",
		    conn ? mysql_error(conn) : "out of memory");
		return -1;
	}
	return 0;
}

static void
worker_exit(molt_worker *w)
{
	(void)w;
	if (conn != NULL)
		mysql_close(conn);
	conn = NULL;
}

static int
handle(molt_request *req)
{
	const char *query = molt_req_route_data(req);
	struct buf b = { NULL, 0, 0, 0 };
	MYSQL_RES *res;
	MYSQL_FIELD *f;
	MYSQL_ROW row;
	unsigned long *len;
	unsigned i, n;
	char *esc = NULL;
	size_t esc_cap = 0;
	int first = 1, rc;

	if (mysql_query(conn, query) != 0 || (res = mysql_store_result(conn)) == NULL)
		return molt_reply_error(req, 500, mysql_error(conn));
	n = mysql_num_fields(res);
	f = mysql_fetch_fields(res);
	put(&b, "[", 1);
	while ((row = mysql_fetch_row(res)) != NULL) {
		len = mysql_fetch_lengths(res);
		put(&b, first ? "\n{" : ",\n{", first ? 2 : 3);
		first = 0;
		for (i = 0; i < n; i++) {
			size_t need = 6 * (len[i] > f[i].name_length ? len[i] : f[i].name_length) + 8;

			if (need > esc_cap) {
				free(esc);
				esc_cap = need;
				if ((esc = malloc(esc_cap)) == NULL)
					goto oom;
			}
			if (i > 0)
				put(&b, ",", 1);
			put(&b, "\"", 1);
			put(&b, esc, molt_json_escape(esc, f[i].name, f[i].name_length));
			put(&b, "\":", 2);
			if (row[i] == NULL) {
				put(&b, "null", 4);
			} else if (is_number(f[i].type)) {
				put(&b, row[i], len[i]);
			} else if (f[i].charsetnr == 63) {
				put(&b, "\"", 1);
				if (reserve(&b, 4 * ((len[i] + 2) / 3) + 2) == -1)
					goto oom;
				b.len += molt_base64(b.s + b.len, row[i], len[i]);
				put(&b, "\"", 1);
			} else {
				put(&b, "\"", 1);
				put(&b, esc, molt_json_escape(esc, row[i], len[i]));
				put(&b, "\"", 1);
			}
		}
		put(&b, "}", 1);
	}
	put(&b, "\n]\n", 3);
	if (b.failed)
		goto oom;
	mysql_free_result(res);
	rc = molt_reply(req, 200, "application/json", b.s, b.len);
	free(b.s);
	free(esc);
	return rc;
oom:
	mysql_free_result(res);
	free(b.s);
	free(esc);
	return MOLT_ERROR;
}

MOLT_EXPORT const struct molt_module molt_module = {
	MOLT_MODULE_HEADER,
	.name        = "mariadb_buffered",
	.version     = "bench",
	.description = "BENCHMARK ONLY: store_result + whole response in memory",
	.conf_keys   = keys,
	.route_init  = route_init,
	.worker_exit = worker_exit,
	.handle      = handle,
};
