/*
 * stream.c - a test module for streamed and deferred replies.
 *
 *   /chunks?n=N&size=S&delay_ms=D
 *       a streamed reply of N chunks of S bytes; byte i of the whole body
 *       is 'a' + i % 26.  With D > 0 one chunk is written per D ms (a
 *       libevent timer); otherwise chunks are written until molt says
 *       MOLT_AGAIN, then again from the on_drain callback, so a slow
 *       client never makes the worker buffer the whole body.  With
 *       fail_after=K the stream fails after K chunks (molt_stream_abort).
 *   /deferred?ms=N
 *       "deferred N\n", N ms later, from a timer (MOLT_PENDING).
 *   /pid
 *       the worker's pid, "1234\n".
 *   /events?delay_ms=D
 *       server-sent events with no end: "data: K\n\n" every D [100] ms,
 *       until the worker drains (molt_worker_on_drain), which ends each
 *       with "event: bye\ndata: draining=1\n\n" (molt_worker_draining).
 *
 * If the client goes away first, the abort callback logs "stream aborted"
 * at info and cancels the timer.  The timer lives in the request pool; a
 * pool cleanup deletes it as well, so it can never fire on a request that
 * is gone, however the request ended.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include <molt/module.h>

#define MAX_N     100000000LL
#define MAX_SIZE  (16LL * 1024 * 1024)
#define MAX_MS    3600000LL

struct stream {
	molt_request *req;
	struct event *timer;    /* in the pool; NULL until needed */
	int           timer_set;
	long long     n, size, delay_ms, sent;
	long long     fail_after; /* abort the stream after so many, or 0 */
	long long     ms;       /* /deferred */
	char         *pattern;  /* size + 26 bytes of the alphabet */
	struct stream *next, **pprev;   /* in live_events (/events) */
};

/* The /events streams of this worker, for stream_drained to end. */
static struct stream *live_events;

static void
events_unlink(struct stream *st)
{
	if (st->pprev == NULL)
		return;
	*st->pprev = st->next;
	if (st->next != NULL)
		st->next->pprev = st->pprev;
	st->pprev = NULL;
}

static long long
param(molt_request *req, const char *name, long long def, long long max,
      int *bad)
{
	const char *s = molt_req_param(req, name);
	char *end;
	long long v;

	if (s == NULL || *s == '\0')
		return def;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (*s < '0' || *s > '9' || errno != 0 || *end != '\0' || v > max) {
		*bad = 1;
		return def;
	}
	return v;
}

static void
stream_cleanup(void *arg)
{
	struct stream *st = arg;

	if (st->timer_set) {
		event_del(st->timer);
		st->timer_set = 0;
	}
	events_unlink(st);
	st->req = NULL;
}

static void
stream_abort(molt_request *req, void *arg)
{
	struct stream *st = arg;

	(void)req;
	if (st->pattern != NULL)
		molt_log(MOLT_LOG_INFO, "stream aborted after %lld of %lld "
		    "chunks", st->sent, st->n);
	else if (st->delay_ms > 0)     /* /events */
		molt_log(MOLT_LOG_INFO, "event stream aborted after %lld "
		    "events", st->sent);
	else
		molt_log(MOLT_LOG_INFO, "stream aborted before its deferred "
		    "reply (%lld ms)", st->ms);
	stream_cleanup(st);
}

/* A timer in the pool: event_assign on storage sized at run time. */
static int
stream_timer(struct stream *st, event_callback_fn cb)
{
	molt_worker *w = molt_req_worker(st->req);

	if (st->timer == NULL) {
		st->timer = molt_palloc(molt_req_pool(st->req),
		    event_get_struct_event_size());
		if (st->timer == NULL)
			return -1;
	}
	if (event_assign(st->timer, molt_worker_base(w), -1, 0, cb, st) == -1)
		return -1;
	return 0;
}

static int
stream_arm(struct stream *st, long long ms)
{
	struct timeval tv;

	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000 * 1000);
	if (event_add(st->timer, &tv) == -1)
		return -1;
	st->timer_set = 1;
	return 0;
}

static void stream_more(struct stream *st);

static void
stream_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct stream *st = arg;

	(void)fd;
	(void)what;
	st->timer_set = 0;
	if (st->req != NULL)
		stream_more(st);
}

static void
stream_on_drain(molt_request *req, void *arg)
{
	(void)req;
	stream_more(arg);
}

/* Stops a stream that cannot go on: the client hears of it by a close. */
static void
stream_fail(struct stream *st, const char *why)
{
	molt_log(MOLT_LOG_WARN, "stream: %s", why);
	molt_stream_abort(st->req);
}

/*
 * Writes chunks until done, the pacing timer is due, or molt pushes back.
 * Every path out either ends the stream or leaves exactly one wake-up
 * armed (the timer or on_drain).
 */
static void
stream_more(struct stream *st)
{
	molt_request *req = st->req;
	int rc;

	while (st->sent < st->n) {
		rc = molt_stream_write(req,
		    st->pattern + (st->sent * st->size) % 26, (size_t)st->size);
		if (rc == -1)
			return;         /* the client is gone; abort follows */
		st->sent++;
		if (st->sent == st->fail_after) {
			stream_fail(st, "failing after fail_after chunks");
			return;
		}
		if (st->sent == st->n)
			break;
		if (rc == MOLT_AGAIN) {
			molt_stream_on_drain(req, stream_on_drain, st);
			return;
		}
		if (st->delay_ms > 0) {
			if (stream_arm(st, st->delay_ms) == -1)
				stream_fail(st, "cannot arm the chunk timer");
			return;
		}
	}
	molt_stream_end(req);
}

static int
stream_chunks(molt_request *req, struct stream *st)
{
	long long i;
	int bad = 0;

	st->n = param(req, "n", 10, MAX_N, &bad);
	st->size = param(req, "size", 100, MAX_SIZE, &bad);
	st->delay_ms = param(req, "delay_ms", 0, MAX_MS, &bad);
	st->fail_after = param(req, "fail_after", 0, MAX_N, &bad);
	if (bad || st->size == 0)
		return molt_reply_error(req, 400, "bad n, size or delay_ms");

	st->pattern = molt_palloc(molt_req_pool(req), (size_t)st->size + 26);
	if (st->pattern == NULL)
		return MOLT_ERROR;
	for (i = 0; i < st->size + 26; i++)
		st->pattern[i] = (char)('a' + i % 26);
	if (st->delay_ms > 0 && stream_timer(st, stream_on_timer) == -1)
		return MOLT_ERROR;

	if (molt_stream_start(req, 200, "text/plain") == -1)
		return MOLT_ERROR;
	molt_req_on_abort(req, stream_abort, st);
	stream_more(st);
	return MOLT_DONE;
}

static void
deferred_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct stream *st = arg;
	char *body;

	(void)fd;
	(void)what;
	st->timer_set = 0;
	if (st->req == NULL)
		return;
	body = molt_psprintf(molt_req_pool(st->req), "deferred %lld\n", st->ms);
	if (body == NULL) {
		molt_reply_error(st->req, 500, "out of memory");
		return;
	}
	molt_reply(st->req, 200, "text/plain", body, strlen(body));
}

static int
stream_deferred(molt_request *req, struct stream *st)
{
	int bad = 0;

	st->ms = param(req, "ms", 100, MAX_MS, &bad);
	if (bad)
		return molt_reply_error(req, 400, "bad ms");
	if (stream_timer(st, deferred_on_timer) == -1 ||
	    stream_arm(st, st->ms) == -1)
		return MOLT_ERROR;
	molt_req_on_abort(req, stream_abort, st);
	return MOLT_PENDING;
}

static void
events_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct stream *st = arg;
	char line[48];
	int n;

	(void)fd;
	(void)what;
	st->timer_set = 0;
	if (st->req == NULL)
		return;
	n = snprintf(line, sizeof(line), "data: %lld\n\n", st->sent++);
	if (molt_stream_write(st->req, line, (size_t)n) == -1)
		return;         /* the client is gone; abort follows */
	if (stream_arm(st, st->delay_ms) == -1)
		stream_fail(st, "cannot arm the event timer");
}

static int
stream_events(molt_request *req, struct stream *st)
{
	int bad = 0;

	st->delay_ms = param(req, "delay_ms", 100, MAX_MS, &bad);
	if (bad || st->delay_ms == 0)
		return molt_reply_error(req, 400, "bad delay_ms");
	if (stream_timer(st, events_on_timer) == -1 ||
	    molt_stream_start(req, 200, "text/event-stream") == -1 ||
	    stream_arm(st, st->delay_ms) == -1)
		return MOLT_ERROR;
	molt_req_on_abort(req, stream_abort, st);
	st->next = live_events;
	if (live_events != NULL)
		live_events->pprev = &st->next;
	st->pprev = &live_events;
	live_events = st;
	return MOLT_DONE;
}

/* The worker drains: each event stream says goodbye and ends. */
static void
stream_drained(molt_worker *w, void *arg)
{
	struct stream *st;
	char line[64];
	int n;

	(void)arg;
	n = snprintf(line, sizeof(line), "event: bye\ndata: draining=%d\n\n",
	    molt_worker_draining(w));
	while ((st = live_events) != NULL) {
		events_unlink(st);
		if (st->timer_set) {
			event_del(st->timer);
			st->timer_set = 0;
		}
		if (molt_stream_write(st->req, line, (size_t)n) != -1)
			molt_stream_end(st->req);
	}
}

static int
stream_worker_init(molt_worker *w)
{
	return molt_worker_on_drain(w, stream_drained, NULL);
}

static int
stream_handle(molt_request *req)
{
	const char *pi = molt_req_path_info(req);
	struct stream *st;
	char buf[32];
	int n;

	if (pi == NULL)
		pi = "";
	if (*pi == '/')
		pi++;
	if (strcmp(pi, "pid") == 0) {
		n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
		return molt_reply(req, 200, "text/plain", buf, (size_t)n);
	}

	st = molt_pcalloc(molt_req_pool(req), sizeof(*st));
	if (st == NULL)
		return MOLT_ERROR;
	st->req = req;
	/* Registered first, so it runs after everything else on the pool. */
	if (molt_pool_cleanup(molt_req_pool(req), stream_cleanup, st) == -1)
		return MOLT_ERROR;

	if (strcmp(pi, "chunks") == 0)
		return stream_chunks(req, st);
	if (strcmp(pi, "deferred") == 0)
		return stream_deferred(req, st);
	if (strcmp(pi, "events") == 0)
		return stream_events(req, st);
	return molt_reply_error(req, 404, "stream: unknown path");
}

MOLT_EXPORT const struct molt_module molt_module = {
	MOLT_MODULE_HEADER,
	.name        = "stream",
	.version     = "1.0",
	.description = "test: streamed and deferred replies",
	.worker_init = stream_worker_init,
	.handle      = stream_handle,
};
