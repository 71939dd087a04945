/*
 * misuse.c - a test module that uses the reply API the way a careless
 * module author would, so the tests can check that molt answers with a
 * well-framed reply (or refuses) instead of desyncing a connection,
 * splitting a response or answering another client.
 *
 *   /reply?s=N&t=TYPE      molt_reply with status N and content type TYPE
 *   /stream?s=N&err=E      molt_stream_start(N), "abc", molt_stream_end,
 *                          or with E=1 returns MOLT_ERROR instead of
 *                          ending the stream
 *   /nostart?after=R       molt_stream_write and molt_stream_end with no
 *                          stream: none begun, or (R=1) after a plain
 *                          reply; then the reply "wrote: W end: E" with
 *                          what they returned (after R=1: the plain one)
 *   /file?s=N&path=P&fd=F&off=O&len=L
 *                          molt_reply_file(N) of L [4] bytes at O [0] of
 *                          file P [/etc/passwd], or of descriptor F as is
 *   /header?n=NAME&v=VAL   molt_resp_header(NAME, VAL), then a 200 whose
 *                          body is that call's return value, "0" or "-1"
 *   /log?m=TEXT            logs "misuse: said TEXT" as a warning, as a
 *                          module that logs what a client sent would
 *   /flood?mb=N            streams N MB in 64 kB writes without ever
 *                          looking at MOLT_AGAIN; logs "misuse: flood: K
 *                          kB taken" where the writes stopped succeeding
 *   /keep?ms=N             keeps the request pointer, registers no abort
 *                          callback, and N ms later replies through it,
 *                          whatever became of the request; logs the
 *                          return value as "misuse: late reply: RC"
 *   /close?fd=N            closes descriptor N in its worker, as a module
 *                          that closes "every descriptor" before it
 *                          starts a helper would; "closed"
 *   /signal?n=N            sets signal N to SIG_IGN in its worker, as a
 *                          module (or a library it uses) that installs
 *                          its own signal handlers would; "ignored"
 *   /nofile?n=N            lowers its worker's soft RLIMIT_NOFILE to N,
 *                          as a module that sets limits for a helper it
 *                          is about to start would; "lowered"
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include <molt/module.h>

static int
misuse_int(molt_request *req, const char *name, int def)
{
	const char *s = molt_req_param(req, name);

	return s != NULL && *s != '\0' ? atoi(s) : def;
}

static void
misuse_late(evutil_socket_t fd, short what, void *arg)
{
	molt_request *req = arg;
	int rc;

	(void)fd;
	(void)what;
	/* Wrong on purpose: the request may be over by now. */
	rc = molt_reply(req, 200, "text/plain", "LATE REPLY FOR SOMEONE ELSE\n", 28);
	molt_log(MOLT_LOG_INFO, "misuse: late reply: %d", rc);
}

static int
misuse_keep(molt_request *req)
{
	static struct event late;
	static int late_set;
	struct timeval tv;
	int ms = misuse_int(req, "ms", 300);

	if (late_set)
		event_del(&late);
	evtimer_assign(&late, molt_worker_base(molt_req_worker(req)),
	    misuse_late, req);
	late_set = 1;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(&late, &tv);
	return MOLT_PENDING;
}

static int
misuse_flood(molt_request *req)
{
	static char chunk[64 * 1024];
	int i, n = misuse_int(req, "mb", 64) * 16;

	memset(chunk, 'f', sizeof(chunk));
	if (molt_stream_start(req, 200, "application/octet-stream") == -1)
		return MOLT_DONE;
	/* Wrong on purpose: MOLT_AGAIN means stop until on_drain. */
	for (i = 0; i < n; i++)
		if (molt_stream_write(req, chunk, sizeof(chunk)) == -1)
			break;
	molt_log(MOLT_LOG_INFO, "misuse: flood: %d kB taken", i * 64);
	if (i == n)
		molt_stream_end(req);
	return MOLT_DONE;
}

static int
misuse_handle(molt_request *req)
{
	const char *what = molt_req_path_info(req);
	int status = misuse_int(req, "s", 200);
	char body[16];
	int fd, n;

	if (strcmp(what, "/reply") == 0) {
		const char *t = molt_req_param(req, "t");

		molt_reply(req, status, t ? t : "text/plain", "body\n", 5);
		return MOLT_DONE;
	}
	if (strcmp(what, "/stream") == 0) {
		if (molt_stream_start(req, status, "text/plain") == -1)
			return MOLT_DONE;
		molt_stream_write(req, "abc", 3);
		if (misuse_int(req, "err", 0))
			return MOLT_ERROR;      /* with the reply begun */
		molt_stream_end(req);
		return MOLT_DONE;
	}
	if (strcmp(what, "/nostart") == 0) {
		int after = misuse_int(req, "after", 0), w, e;
		char said[40];

		if (after)
			molt_reply(req, 200, "text/plain", "plain\n", 6);
		w = molt_stream_write(req, "abc", 3);
		e = molt_stream_end(req);
		if (!after) {
			n = snprintf(said, sizeof(said), "wrote: %d end: %d", w, e);
			molt_reply(req, 200, "text/plain", said, (size_t)n);
		}
		return MOLT_DONE;
	}
	if (strcmp(what, "/file") == 0) {
		const char *path = molt_req_param(req, "path");

		/* fd=-1: the descriptor of an open(2) nobody checked */
		fd = misuse_int(req, "fd", -2);
		if (fd == -2 && (fd = open(path ? path : "/etc/passwd",
		    O_RDONLY | O_CLOEXEC)) == -1)
			return molt_reply_error(req, 500, strerror(errno));
		molt_reply_file(req, status, "text/plain", fd,
		    misuse_int(req, "off", 0), misuse_int(req, "len", 4));
		return MOLT_DONE;
	}
	if (strcmp(what, "/header") == 0) {
		const char *name = molt_req_param(req, "n");
		const char *value = molt_req_param(req, "v");

		n = snprintf(body, sizeof(body), "%d",
		    molt_resp_header(req, name ? name : "", value ? value : ""));
		return molt_reply(req, 200, "text/plain", body, (size_t)n);
	}
	if (strcmp(what, "/log") == 0) {
		const char *said = molt_req_param(req, "m");

		molt_log(MOLT_LOG_WARN, "misuse: said %s", said ? said : "");
		return molt_reply(req, 200, "text/plain", "logged\n", 7);
	}
	if (strcmp(what, "/keep") == 0)
		return misuse_keep(req);
	if (strcmp(what, "/flood") == 0)
		return misuse_flood(req);
	if (strcmp(what, "/close") == 0) {
		if (close(misuse_int(req, "fd", -1)) == -1)
			return molt_reply_error(req, 400, strerror(errno));
		return molt_reply(req, 200, "text/plain", "closed", 6);
	}
	if (strcmp(what, "/signal") == 0) {
		if (signal(misuse_int(req, "n", 0), SIG_IGN) == SIG_ERR)
			return molt_reply_error(req, 400, strerror(errno));
		return molt_reply(req, 200, "text/plain", "ignored", 7);
	}
	if (strcmp(what, "/nofile") == 0) {
		struct rlimit rl;

		if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
			return molt_reply_error(req, 500, strerror(errno));
		rl.rlim_cur = (rlim_t)misuse_int(req, "n", 0);
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			return molt_reply_error(req, 400, strerror(errno));
		return molt_reply(req, 200, "text/plain", "lowered", 7);
	}
	return molt_reply_error(req, 404, "no such misuse");
}

MOLT_EXPORT const struct molt_module molt_module = {
	MOLT_MODULE_HEADER,
	.name        = "misuse",
	.version     = "1.0",
	.description = "test: the reply API used wrongly",
	.handle      = misuse_handle,
};
