/*
 * request.c - the module API over a connection's current request.
 *
 * Strings handed to modules are NUL-terminated in the request's own copy
 * of the head, so the accessors cost no allocation.  Replies are formatted
 * straight into the connection's output buffer.
 */
#include "autoconfig.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <sys/stat.h>

#include "config.h"
#include "conn.h"
#include "log.h"
#include "pool.h"
#include "realip.h"
#include "request.h"
#include "worker.h"

#define SERVER_HEADER "Server: molt/" PACKAGE_VERSION "\r\n"

static int req_send_head(molt_request *, int, const char *, long long);

static struct conn *
req_conn(const molt_request *req)
{
	return req->conn;
}

/* ------------------------------------------------------------------ */
/* Preparing a parsed request                                          */

/*
 * RFC 3986 5.2.4 on an already decoded path, in place, and runs of '/'
 * merged into one (nginx's merge_slashes).  Routing happens on the result,
 * so "/public/../admin" and "//admin" are both routed as "/admin", never
 * to a catch-all route that the "/admin" route was meant to shadow.
 * Returns the new length, or -1 if the path climbs above the root.
 */
static ssize_t
req_normalize_path(char *p, size_t len)
{
	size_t in = 0, out = 0;

	while (in < len) {
		/* p[in] is '/' here: every segment starts with one. */
		size_t end = in + 1;

		while (end < len && p[end] != '/')
			end++;
		if (end - in == 1) {
			/* An empty segment; only a trailing one leaves its '/'. */
			if (end == len && (out == 0 || p[out - 1] != '/'))
				p[out++] = '/';
		} else if (end - in == 2 && p[in + 1] == '.') {
			if (end == len)
				p[out++] = '/';
		} else if (end - in == 3 && p[in + 1] == '.' && p[in + 2] == '.') {
			if (out == 0)
				return -1;
			while (out > 0 && p[--out] != '/')
				;
			if (end == len)
				p[out++] = '/';
		} else {
			memmove(p + out, p + in, end - in);
			out += end - in;
		}
		in = end;
	}
	if (out == 0)
		p[out++] = '/';
	p[out] = '\0';
	return (ssize_t)out;
}

/* 0 if req_normalize_path has work to do: a "/." or a "//". */
static int
req_path_is_normal(const char *p, size_t len)
{
	size_t i;

	for (i = 0; i + 1 < len; i++)
		if (p[i] == '/' && (p[i + 1] == '.' || p[i + 1] == '/'))
			return 0;
	return 1;
}

void
req_clear(molt_request *req)
{
	req->method = req->target = req->path = req->path_info = NULL;
	req->query = NULL;
	req->route = NULL;
	req->status = 0;
	req->resp_flags = 0;
	req->resp_headers = NULL;
	req->bytes_out = 0;
	req->head.nheaders = 0;
	req->head.version = 11;
	req->head.flags = 0;
	req->on_abort = NULL;
	req->on_drain = NULL;
	req->client_sa = NULL;
	req->client_text = NULL;
	req->start_ms = worker_now_ms(req->conn->w);
	req->start_us = worker_clock_us();
}

/* An early error reply leaves an unread body behind: the connection
 * cannot be reused, since the body would be parsed as a request. */
static int
req_has_body(const molt_request *req)
{
	return (req->head.flags & HTTP_F_CHUNKED) ||
	    ((req->head.flags & HTTP_F_HAS_LENGTH) && req->head.content_length > 0);
}

/*
 * With an absolute-form target the host is the target's authority, and
 * the Host field is ignored (RFC 9112 3.2.2).  Modules read the host as
 * their Host header, so that is what the header says from here on; an
 * HTTP/1.0 request, which may have sent none, gets one unless its head
 * already holds as many fields as a head can.
 */
static int
req_absolute_host(molt_request *req)
{
	struct http_head *h = &req->head;
	struct http_header *f = NULL;
	char *v;
	size_t i;

	if ((v = molt_pstrndup(req->pool, h->host, h->host_len)) == NULL)
		return -1;
	for (i = 0; i < h->nheaders && f == NULL; i++)
		if (http_name_eq(h->headers[i].name, h->headers[i].name_len,
		    "host"))
			f = &h->headers[i];
	if (f == NULL) {
		if (h->nheaders == HTTP_MAX_HEADERS_HARD)
			return 0;
		f = &h->headers[h->nheaders++];
		f->name = "Host";
		f->name_len = 4;
	}
	f->value = v;
	f->value_len = h->host_len;
	return 0;
}

/*
 * "OPTIONS *" asks about the server, not a resource (9110 9.3.7; the
 * parser lets "*" through for OPTIONS only).  Load balancers send it as
 * a health check (HAProxy's "option httpchk OPTIONS *"), so it succeeds,
 * as Apache's does, with no content: which methods a route takes is the
 * route's to say.
 */
static void
req_reply_server_options(molt_request *req)
{
	struct conn *c = req->conn;

	/*
	 * A body would have to be read or the connection closed under it,
	 * which can reset the reply; nginx refuses every OPTIONS *.
	 */
	if (req_has_body(req)) {
		conn_error_reply(c, 400, "OPTIONS * takes no body", 1);
		return;
	}
	req->resp_headers = NULL;
	if (req_send_head(req, 200, NULL, 0) == -1)
		c->flags |= CONN_CLOSING | CONN_ERROR;
	req->resp_flags |= RESP_DONE;
	c->state = REQ_DONE;
}

int
req_prepare(molt_request *req)
{
	struct http_head *h = &req->head;
	struct conn *c = req_conn(req);
	struct wroute *r;
	ssize_t n;
	size_t i;

	/* The copy of the head is ours: terminate strings in place. */
	req->method = (char *)h->method;
	req->method[h->method_len] = '\0';
	req->target = (char *)h->target;
	req->target[h->target_len] = '\0';
	req->query = h->query_len ? (char *)h->query : (char *)"";
	for (i = 0; i < h->nheaders; i++) {
		((char *)h->headers[i].name)[h->headers[i].name_len] = '\0';
		((char *)h->headers[i].value)[h->headers[i].value_len] = '\0';
	}
	if ((h->flags & HTTP_F_ABSOLUTE) && req_absolute_host(req) == -1)
		return -1;
	if (c->w->cfg->server.real_ip_from != NULL)
		realip_resolve(req, &c->w->cfg->server);

	req->path = molt_pstrndup(req->pool, h->path, h->path_len);
	if (req->path == NULL)
		return -1;
	n = (ssize_t)h->path_len;
	if (memchr(h->path, '%', h->path_len) != NULL) {
		n = http_urldecode(req->path, h->path, h->path_len, 0);
		if (n < 0) {
			conn_error_reply(c, 400, "malformed percent-encoding in path", 1);
			return 0;
		}
		req->path[n] = '\0';
	}
	if (n == 1 && req->path[0] == '*') {
		req_reply_server_options(req);
		return 0;
	}
	if (n == 0 || req->path[0] != '/') {
		conn_error_reply(c, 404, "not found", req_has_body(req));
		return 0;
	}
	if (!req_path_is_normal(req->path, (size_t)n) &&
	    (n = req_normalize_path(req->path, (size_t)n)) < 0) {
		conn_error_reply(c, 400, "path climbs above the root", 1);
		return 0;
	}

	r = worker_route(c->w, req->path, (size_t)n);
	if (r == NULL) {
		conn_error_reply(c, 404, "not found", req_has_body(req));
		return 0;
	}
	req->route = r;
	if (r->prefix_len == 1 || r->prefix[r->prefix_len - 1] == '/')
		req->path_info = req->path + r->prefix_len - 1;
	else
		req->path_info = req->path + r->prefix_len;
	if (r->methods != 0 &&
	    !(r->methods & method_bit(h->method, h->method_len))) {
		req_reply_core_error(req, 405, "method not allowed", req_has_body(req));
		req->route = NULL;
		return 0;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Accessors                                                           */

molt_pool *molt_req_pool(molt_request *req) { return req->pool; }
molt_worker *molt_req_worker(molt_request *req) { return (molt_worker *)req->conn->w; }
const molt_conf *molt_req_conf(const molt_request *req) { return req->route->conf; }
void *molt_req_route_data(const molt_request *req) { return req->route->data; }
const char *molt_req_method(const molt_request *req) { return req->method; }
const char *molt_req_target(const molt_request *req) { return req->target; }
const char *molt_req_path(const molt_request *req) { return req->path; }
const char *molt_req_path_info(const molt_request *req) { return req->path_info; }
const char *molt_req_query(const molt_request *req) { return req->query; }
int molt_req_version(const molt_request *req) { return req->head.version; }

const char *
molt_req_peer(const molt_request *req)
{
	molt_request *r = (molt_request *)req;

	if (req->client_sa == NULL)
		return conn_peer(req->conn);
	/* Formatted on first use, as conn_peer does; in the request's pool. */
	if (r->client_text == NULL)
		r->client_text = realip_text(r, 1);
	return r->client_text != NULL ? r->client_text : conn_peer(req->conn);
}

const char *
molt_req_header(const molt_request *req, const char *name)
{
	size_t i, len = strlen(name);

	for (i = 0; i < req->head.nheaders; i++) {
		const struct http_header *hd = &req->head.headers[i];
		if (hd->name_len == len && strcasecmp(hd->name, name) == 0)
			return hd->value;
	}
	return NULL;
}

size_t
molt_req_header_count(const molt_request *req)
{
	return req->head.nheaders;
}

int
molt_req_header_at(const molt_request *req, size_t i, const char **name,
    const char **value)
{
	if (i >= req->head.nheaders)
		return -1;
	*name = req->head.headers[i].name;
	*value = req->head.headers[i].value;
	return 0;
}

const void *
molt_req_body(const molt_request *req, size_t *len)
{
	if (len != NULL)
		*len = req->body_len;
	return req->body_len ? req->body : NULL;
}

/* Splits and decodes the query string into the pool, once. */
static int
req_parse_params(molt_request *req)
{
	const char *q = req->query, *p, *amp, *eq;
	size_t n = 0, i = 0;

	req->params_parsed = 1;
	if (*q == '\0')
		return 0;
	for (p = q; *p; p++)
		if (*p == '&')
			n++;
	n++;
	req->pnames = molt_palloc(req->pool, n * sizeof(char *));
	req->pvalues = molt_palloc(req->pool, n * sizeof(char *));
	if (req->pnames == NULL || req->pvalues == NULL)
		return -1;
	for (p = q; *p != '\0'; p = *amp ? amp + 1 : amp) {
		size_t len, nlen;
		ssize_t d;
		char *name, *val;

		amp = strchr(p, '&');
		if (amp == NULL)
			amp = p + strlen(p);
		len = (size_t)(amp - p);
		if (len == 0)
			continue;
		eq = memchr(p, '=', len);
		nlen = eq ? (size_t)(eq - p) : len;
		name = molt_palloc(req->pool, nlen + 1);
		val = molt_palloc(req->pool, eq ? len - nlen : 1);
		if (name == NULL || val == NULL)
			return -1;
		/* A malformed escape is kept literally rather than failing. */
		if ((d = http_urldecode(name, p, nlen, 1)) < 0) {
			memcpy(name, p, nlen);
			d = (ssize_t)nlen;
		}
		name[d] = '\0';
		if (eq != NULL) {
			if ((d = http_urldecode(val, eq + 1, len - nlen - 1, 1)) < 0) {
				memcpy(val, eq + 1, len - nlen - 1);
				d = (ssize_t)(len - nlen - 1);
			}
			val[d] = '\0';
		} else {
			val[0] = '\0';
		}
		req->pnames[i] = name;
		req->pvalues[i] = val;
		i++;
	}
	req->nparams = i;
	return 0;
}

const char *
molt_req_param(molt_request *req, const char *name)
{
	size_t i;

	if (!req->params_parsed && req_parse_params(req) == -1)
		return NULL;
	for (i = 0; i < req->nparams; i++)
		if (strcmp(req->pnames[i], name) == 0)
			return req->pvalues[i];
	return NULL;
}

size_t
molt_req_param_count(molt_request *req)
{
	if (!req->params_parsed)
		req_parse_params(req);
	return req->nparams;
}

int
molt_req_param_at(molt_request *req, size_t i, const char **name,
    const char **value)
{
	if (!req->params_parsed)
		req_parse_params(req);
	if (i >= req->nparams)
		return -1;
	*name = req->pnames[i];
	*value = req->pvalues[i];
	return 0;
}

/* ------------------------------------------------------------------ */
/* Response heads                                                      */

/* RFC 9110 tchar: what a header name is made of. */
static int
req_tchar(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	    (ch >= '0' && ch <= '9') ||
	    (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/*
 * A CR or LF from a module would let a client split the response, and
 * other control bytes are refused by RFC 9110 (a value is visible
 * characters, obs-text, spaces and tabs).
 */
static int
req_header_ok(const char *s, int is_name)
{
	if (is_name && *s == '\0')
		return 0;
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (is_name ? !req_tchar(ch) : (ch < ' ' && ch != '\t') || ch == 0x7f)
			return 0;
	}
	return 1;
}

/*
 * Headers molt writes itself.  A module's copy would frame the reply a
 * second way (Content-Length next to chunked coding: a desync behind any
 * proxy) or contradict molt's (two Content-Types, which caches and
 * browsers resolve differently: a MIME confusion); "Connection: close" is
 * honoured instead.
 */
static const char *const req_owned_headers[] = {
	"Content-Length", "Transfer-Encoding", "Connection", "Date", "Server",
	"Keep-Alive", "Trailer", "Upgrade", "Content-Type", NULL
};

/*
 * Whether the client left while the module held the request without an
 * on_abort (conn_zombie): then what the module calls is dropped, without
 * a word, since it could not know; and its answer, a reply or a stream's
 * end, ends the request's life.
 */
static int
req_gone(molt_request *req, int answer)
{
	if (!(req->conn->flags & CONN_ZOMBIE))
		return 0;
	if (answer)
		conn_zombie_done(req->conn);
	return 1;
}

/* 0 if the request is still the module's to answer; see req_reply_ok. */
static int
req_live(molt_request *req, const char *fn)
{
	if (req->conn->state == REQ_HANDLER)
		return 0;
	if (req_gone(req, 0))
		return -1;
	/*
	 * The request is embedded in its connection, which serves the next
	 * request in the same memory: a pointer kept past the end must not
	 * answer someone else.  This catches it while the connection is
	 * between requests; a module must drop the pointer in its on_abort.
	 */
	molt_log(MOLT_LOG_ERROR, "%s: the request is over (a molt_request "
	    "used after its end?)", fn);
	return -1;
}

static int
req_add_header(molt_request *req, const char *name, const char *value)
{
	struct resp_header *h;

	h = molt_palloc(req->pool, sizeof(*h));
	if (h == NULL)
		return -1;
	h->name = molt_pstrdup(req->pool, name);
	h->value = molt_pstrdup(req->pool, value);
	if (h->name == NULL || h->value == NULL)
		return -1;
	h->next = req->resp_headers;
	req->resp_headers = h;
	return 0;
}

int
molt_resp_header(molt_request *req, const char *name, const char *value)
{
	size_t i;

	if (req_live(req, "molt_resp_header") == -1)
		return -1;
	if (req->resp_flags & RESP_STARTED) {
		molt_log(MOLT_LOG_ERROR, "molt_resp_header(%s) after the reply "
		    "started, for %s", name, req->target);
		return -1;
	}
	if (!req_header_ok(name, 1) || !req_header_ok(value, 0)) {
		molt_log(MOLT_LOG_ERROR, "refusing invalid response header "
		    "'%s' for %s", name, req->target);
		return -1;
	}
	for (i = 0; req_owned_headers[i] != NULL; i++) {
		if (strcasecmp(name, req_owned_headers[i]) != 0)
			continue;
		if (strcasecmp(name, "Connection") == 0 &&
		    strcasecmp(value, "close") == 0) {
			req->conn->flags |= CONN_CLOSING;
			return 0;
		}
		molt_log(MOLT_LOG_ERROR, "refusing response header '%s' for %s: "
		    "molt writes it", name, req->target);
		return -1;
	}
	return req_add_header(req, name, value);
}

static int
req_must_close(molt_request *req)
{
	struct conn *c = req->conn;
	const struct server_conf *sc = &c->w->cfg->server;

	/*
	 * A draining worker closes keep-alive connections, but only after
	 * answering what the client already sent: pipelined requests in the
	 * buffer are served first.  A recycled one hands them over instead,
	 * unless the handoff already refused this one.
	 */
	return (c->flags & CONN_CLOSING) || (req->head.flags & HTTP_F_CLOSE) ||
	    (c->w->draining && c->in_len == c->in_pos &&
	     (!c->w->handoff || (c->flags & CONN_NOHANDOFF))) ||
	    (sc->keepalive_requests > 0 &&
	     c->nreq + 1 >= (unsigned long long)sc->keepalive_requests);
}

static size_t
req_put(char *p, const char *s, size_t n)
{
	memcpy(p, s, n);
	return n;
}

static size_t
req_put_uint(char *p, unsigned long long v)
{
	char tmp[24];
	size_t n = 0, i;

	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10) != 0);
	for (i = 0; i < n; i++)
		p[i] = tmp[n - 1 - i];
	return n;
}

static int
req_no_body(int status)
{
	return status < 200 || status == 204 || status == 304;
}

/*
 * Queues the status line and headers.  clen >= 0 sends Content-Length,
 * -1 means chunked, -2 means close-delimited, -3 means no length at all.
 * A status that has no body (1xx, 204, 304) gets no type and no length,
 * whatever was asked, and what would follow is dropped as for HEAD.
 */
static int
req_send_head(molt_request *req, int status, const char *ctype, long long clen)
{
	struct conn *c = req->conn;
	struct resp_header *rh;
	const char *reason, *date = worker_date_header(c->w);
	size_t need, off = 0;
	char *p;

	if (status < 100 || status > 999)
		status = 500;
	/* "" is no type: "Content-Type: " names none and is not valid. */
	if (ctype != NULL && *ctype == '\0')
		ctype = NULL;
	if (req_no_body(status)) {
		ctype = NULL;
		clen = -3;
		req->resp_flags |= RESP_HEAD;
	}
	reason = http_reason(status);
	if (req_must_close(req) || clen == -2)
		req->resp_flags |= RESP_CLOSE;
	need = 64 + strlen(reason) + strlen(date) + sizeof(SERVER_HEADER) +
	    (ctype ? strlen(ctype) + 16 : 0);
	for (rh = req->resp_headers; rh != NULL; rh = rh->next)
		need += strlen(rh->name) + strlen(rh->value) + 4;

	/* Straight into the output buffer when it fits; it nearly always does. */
	if (c->oq == NULL && need <= CONN_OBUF_SIZE - c->olen)
		p = c->obuf + c->olen;
	else if ((p = molt_palloc(req->pool, need)) == NULL)
		return -1;

	off += req_put(p + off, "HTTP/1.1 ", 9);
	p[off++] = (char)('0' + status / 100);
	p[off++] = (char)('0' + status / 10 % 10);
	p[off++] = (char)('0' + status % 10);
	p[off++] = ' ';
	off += req_put(p + off, reason, strlen(reason));
	off += req_put(p + off, "\r\n" SERVER_HEADER, 2 + sizeof(SERVER_HEADER) - 1);
	off += req_put(p + off, date, strlen(date));
	if (ctype != NULL) {
		off += req_put(p + off, "Content-Type: ", 14);
		off += req_put(p + off, ctype, strlen(ctype));
		off += req_put(p + off, "\r\n", 2);
	}
	if (clen >= 0) {
		off += req_put(p + off, "Content-Length: ", 16);
		off += req_put_uint(p + off, (unsigned long long)clen);
		off += req_put(p + off, "\r\n", 2);
	} else if (clen == -1) {
		off += req_put(p + off, "Transfer-Encoding: chunked\r\n", 28);
	}
	if (req->resp_flags & RESP_CLOSE)
		off += req_put(p + off, "Connection: close\r\n", 19);
	else if (req->head.version == 10)
		off += req_put(p + off, "Connection: keep-alive\r\n", 24);
	for (rh = req->resp_headers; rh != NULL; rh = rh->next) {
		off += req_put(p + off, rh->name, strlen(rh->name));
		off += req_put(p + off, ": ", 2);
		off += req_put(p + off, rh->value, strlen(rh->value));
		off += req_put(p + off, "\r\n", 2);
	}
	off += req_put(p + off, "\r\n", 2);

	req->status = status;
	req->resp_flags |= RESP_STARTED;
	if (p == c->obuf + c->olen) {
		c->olen += off;
		c->queued += off;
		return 0;
	}
	return conn_out(c, p, off);
}

static int
req_check_fresh(molt_request *req, const char *fn)
{
	if (req->resp_flags & RESP_STARTED) {
		molt_log(MOLT_LOG_ERROR, "%s: a reply was already given for %s %s",
		    fn, req->method ? req->method : "-",
		    req->target ? req->target : "-");
		return -1;
	}
	return 0;
}

/* The reply is queued; push it out now if nothing else will. */
static void
req_complete(molt_request *req)
{
	struct conn *c = req->conn;

	req->resp_flags |= RESP_DONE;
	conn_reply_complete(c);
	if (!(c->flags & CONN_DISPATCH))
		conn_flush(c);
}

/*
 * Before any reply from a module: the request must be live and not yet
 * answered, and what is asked for must make a well-framed reply.  An
 * interim status (1xx) sent as the answer makes the client take the next
 * reply on the connection for this one, and a control byte in the
 * content type splits the response; the client gets a 500 instead.
 */
static int
req_reply_ok(molt_request *req, const char *fn, int status, const char *ctype)
{
	const char *why;

	if (req_live(req, fn) == -1 || req_check_fresh(req, fn) == -1)
		return -1;
	if (status < 200 || status > 599)
		why = "is not a final status (200-599)";
	else if (ctype != NULL && !req_header_ok(ctype, 0))
		why = "has a content type with a control character";
	else
		return 0;
	molt_log(MOLT_LOG_ERROR, "%s: the reply %d for %s %s; answering 500",
	    fn, status, req->target, why);
	req_reply_core_error(req, 500, "internal server error", 0);
	req_complete(req);
	return -1;
}

int
molt_reply(molt_request *req, int status, const char *content_type,
    const void *body, size_t len)
{
	int rc;

	if (req_gone(req, 1))
		return -1;
	if (req_reply_ok(req, "molt_reply", status, content_type) == -1)
		return -1;
	rc = req_send_head(req, status, content_type, (long long)len);
	if (rc == 0 && !(req->resp_flags & RESP_HEAD) && len > 0) {
		rc = conn_out(req->conn, body, len);
		req->bytes_out = len;
	}
	req_complete(req);
	return rc == -1 ? -1 : MOLT_DONE;
}

/* JSON-escapes msg into the pool. */
static int
req_error_body(molt_request *req, int status, const char *msg, char **out)
{
	size_t len = strlen(msg);
	char *esc = molt_palloc(req->pool, 6 * len + 1);
	char *b;

	if (esc == NULL)
		return -1;
	molt_json_escape(esc, msg, len);
	b = molt_psprintf(req->pool, "{\"error\":\"%s\",\"status\":%d}\n", esc,
	    status);
	if (b == NULL)
		return -1;
	*out = b;
	return (int)strlen(b);
}

int
molt_reply_error(molt_request *req, int status, const char *msg)
{
	char *body;
	int n;

	if ((n = req_error_body(req, status, msg, &body)) < 0)
		return molt_reply(req, 500, "text/plain", "out of memory\n", 14);
	return molt_reply(req, status, "application/json", body, (size_t)n);
}

void
req_reply_core_error(molt_request *req, int status, const char *msg, int close)
{
	struct conn *c = req->conn;
	char buf[256];
	int n;

	if (close)
		c->flags |= CONN_CLOSING;
	if (req->resp_flags & RESP_STARTED) {
		/* Too late for a status: only closing can tell the client. */
		c->flags |= CONN_CLOSING | CONN_ERROR;
		c->state = REQ_DONE;
		return;
	}
	req->resp_headers = NULL;
	if (status == 405 && req->route != NULL) {
		static const char *names[] = { "GET", "HEAD", "POST", "PUT",
		    "DELETE", "PATCH", "OPTIONS" };
		char allow[64];
		size_t i, off = 0;

		allow[0] = '\0';
		for (i = 0; i < 7; i++)
			if (req->route->methods & (1u << i))
				off += (size_t)snprintf(allow + off, sizeof(allow) - off,
				    "%s%s", off ? ", " : "", names[i]);
		if (req->pool != NULL)
			req_add_header(req, "Allow", allow);
	}
	n = snprintf(buf, sizeof(buf), "{\"error\":\"%s\",\"status\":%d}\n", msg,
	    status);
	if (req_send_head(req, status, "application/json", n) == 0 &&
	    !(req->resp_flags & RESP_HEAD)) {
		conn_out(c, buf, (size_t)n);
		req->bytes_out = (uint64_t)n;
	}
	req->resp_flags |= RESP_DONE;
	c->state = REQ_DONE;
}

int
molt_reply_file(molt_request *req, int status, const char *content_type,
    int fd, off_t offset, off_t len)
{
	struct stat st;
	const char *why = NULL;
	int rc;

	if (req_gone(req, 1) ||
	    req_reply_ok(req, "molt_reply_file", status, content_type) == -1) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	/*
	 * A module that did not check open(2) passes -1, which the output
	 * queue would take for a memory segment: a 200 with the worker's heap
	 * as its body.  sendfile(2) reads only regular files, and a range
	 * outside the file is a bug the client would see as a cut reply.
	 */
	if (fd < 0 || fstat(fd, &st) == -1)
		why = "is not an open file";
	else if (!S_ISREG(st.st_mode))
		why = "is not a regular file";
	else if (offset < 0 || len < 0 || offset > st.st_size ||
	    len > st.st_size - offset)
		why = "is smaller than the range asked for";
	if (why != NULL) {
		molt_log(MOLT_LOG_ERROR, "molt_reply_file: the reply %d for %s %s: "
		    "fd %d %s (offset %lld, length %lld); answering 500", status,
		    req->method, req->target, fd, why, (long long)offset,
		    (long long)len);
		if (fd >= 0)
			close(fd);
		req_reply_core_error(req, 500, "internal server error", 0);
		req_complete(req);
		return -1;
	}
	rc = req_send_head(req, status, content_type, (long long)len);
	if (rc == 0 && !(req->resp_flags & RESP_HEAD) && len > 0) {
		rc = conn_out_file(req->conn, fd, offset, (size_t)len);
		req->bytes_out = (uint64_t)len;
	} else {
		close(fd);
	}
	req_complete(req);
	return rc == -1 ? -1 : MOLT_DONE;
}

/* ------------------------------------------------------------------ */
/* Streams                                                             */

/* A streamed reply that was started and not yet ended or aborted. */
static int
req_streaming(const molt_request *req)
{
	return (req->resp_flags & RESP_STREAM) && !(req->resp_flags & RESP_DONE);
}

int
molt_stream_start(molt_request *req, int status, const char *content_type)
{
	int chunked = req->head.version >= 11;

	if (req_reply_ok(req, "molt_stream_start", status, content_type) == -1)
		return -1;
	if (req_send_head(req, status, content_type, chunked ? -1 : -2) == -1)
		return -1;
	/* No body (204, 304): the writes that follow are dropped, as for
	 * HEAD, and so is the last chunk. */
	if (req_no_body(req->status))
		chunked = 0;
	req->resp_flags |= RESP_STREAM | (chunked ? RESP_CHUNKED : 0);
	if (!(req->conn->flags & CONN_DISPATCH) && conn_flush(req->conn) == -1)
		return -1;
	return 0;
}

static int
req_stream_pushed(molt_request *req)
{
	struct conn *c = req->conn;

	if (!(c->flags & CONN_DISPATCH) && c->queued > REQ_LOW_WATER &&
	    conn_flush(c) == -1) {
		/* The abort callback follows from the loop, not from in here. */
		event_active(&c->post, 0, 0);
		return -1;
	}
	/*
	 * A write from the module's own event (a timer, a query's row) that
	 * leaves less than that queued goes out once the callback returns
	 * (conn_post_cb flushes): the writes of one callback make one send,
	 * and a small chunk (an event, a progress line) does not wait for
	 * the next write or the end of the stream, which may be minutes off.
	 */
	if (!(c->flags & CONN_DISPATCH) && c->queued > 0)
		event_active(&c->post, 0, 0);
	return c->queued > REQ_HIGH_WATER ? MOLT_AGAIN : 0;
}

/*
 * A stream call on a request with no stream: -1, as for a client gone,
 * but a module that forgot molt_stream_start is told why, or it looks
 * like every client leaving at once.  (After the reply, req_live says
 * the request is over.)
 */
static int
req_not_streaming(molt_request *req, const char *fn)
{
	if (req_live(req, fn) == 0)
		molt_log(MOLT_LOG_ERROR, "module %s: %s on %s %s, which has no "
		    "stream (molt_stream_start first)", req->route->mod->name, fn,
		    req->method, req->target);
	return -1;
}

int
molt_stream_write(molt_request *req, const void *data, size_t len)
{
	struct conn *c = req->conn;
	char hdr[24];
	int n;

	if (req_gone(req, 0))
		return -1;
	if (!req_streaming(req))
		return req_not_streaming(req, "molt_stream_write");
	if (c->flags & CONN_ERROR)
		return -1;
	if (len == 0 || (req->resp_flags & RESP_HEAD))
		return req_stream_pushed(req);
	if (c->queued > REQ_STREAM_LIMIT) {
		/*
		 * The module was told MOLT_AGAIN long ago and writes on: all of
		 * it would wait in this worker's heap for as long as the client
		 * does not read.  The client gets a cut-off transfer instead.
		 */
		molt_log(MOLT_LOG_ERROR, "module %s wrote on after MOLT_AGAIN "
		    "(%zu bytes queued) for %s %s; cutting the reply off",
		    req->route->mod->name, c->queued, req->method, req->target);
		c->flags |= CONN_ERROR | CONN_CUT;
		goto gone;
	}
	if (req->resp_flags & RESP_CHUNKED) {
		n = snprintf(hdr, sizeof(hdr), "%zx\r\n", len);
		if (conn_out(c, hdr, (size_t)n) == -1 ||
		    conn_out(c, data, len) == -1 ||
		    conn_out(c, "\r\n", 2) == -1)
			goto gone;
	} else if (conn_out(c, data, len) == -1) {
		goto gone;
	}
	req->bytes_out += len;
	return req_stream_pushed(req);
gone:
	event_active(&c->post, 0, 0);
	return -1;
}

int
molt_stream_end(molt_request *req)
{
	struct conn *c = req->conn;

	if (req_gone(req, 1))
		return -1;
	if (!req_streaming(req))
		return req_not_streaming(req, "molt_stream_end");
	if ((req->resp_flags & RESP_CHUNKED) && !(req->resp_flags & RESP_HEAD) &&
	    conn_out(c, "0\r\n\r\n", 5) == -1) {
		event_active(&c->post, 0, 0);
		return -1;
	}
	req_complete(req);
	return 0;
}

/*
 * A streamed reply that cannot be finished (its source failed): what was
 * written is still sent, then the connection closes without the last
 * chunk, so the client sees a truncated transfer (curl: exit 18; an HTTP
 * library: an incomplete read) instead of a whole body that merely ends
 * early.  A close-delimited HTTP/1.0 body has no way to say it; there the
 * close looks like the normal end, as it would from nginx.
 */
int
molt_stream_abort(molt_request *req)
{
	struct conn *c = req->conn;

	if (req_gone(req, 1) || !req_streaming(req))
		return -1;
	c->flags |= CONN_CLOSING;
	req_complete(req);
	return 0;
}

void
molt_stream_on_drain(molt_request *req, void (*cb)(molt_request *, void *),
    void *arg)
{
	struct conn *c = req->conn;

	if (req_gone(req, 0))
		return;
	req->on_drain = cb;
	req->drain_arg = arg;
	/* Already drained: tell the module from the loop, never re-entrantly. */
	if (cb != NULL && c->queued <= REQ_LOW_WATER)
		event_active(&c->post, 0, 0);
}

void
molt_req_on_abort(molt_request *req, void (*cb)(molt_request *, void *),
    void *arg)
{
	req->on_abort = cb;
	req->abort_arg = arg;
}

/* ------------------------------------------------------------------ */
/* HTTP dates for modules: the parser's own routines                   */

void
molt_http_date(time_t t, char out[30])
{
	http_date(t, out);
}

time_t
molt_http_parse_date(const char *s, size_t len)
{
	return http_parse_date(s, len);
}
