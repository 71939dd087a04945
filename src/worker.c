/*
 * worker.c - a worker process: loads the modules, accepts connections on
 * the shared sockets and serves them on one libevent loop until the master
 * tells it to stop.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "config.h"
#include "conn.h"
#include "db.h"
#include "handoff.h"
#include "listen.h"
#include "log.h"
#include "master.h"
#include "module.h"
#include "pool.h"
#include "proctitle.h"
#include "realip.h"
#include "scoreboard.h"
#include "status.h"
#include "worker.h"

#define ACCEPT_BATCH      64
#define ACCEPT_RETRY_MS   100
#define ACCEPT_ERR_LOG_MS 10000 /* a line per kind, for the fleet */
#define BALANCE_SLACK     4     /* connections above the least loaded */
#define ADOPT_DEFER_MS    2
#define ACCEPT_DEFER_MS   2     /* looks again this often */
#define ACCEPT_STUCK_MS   20    /* least loaded took nothing for this long */
#define FOREIGN_CHECK_MS  100   /* looks at the other CPUs' sockets this often */

struct worker *worker_self;

static void worker_check_done(struct worker *w);
static void worker_start_drain(struct worker *w);
static void worker_publish_memory(struct worker *w);
static int  worker_listen_queued(struct worker *w);
static int  worker_often_due(enum sb_often_kind kind, unsigned *n);

/* ------------------------------------------------------------------ */
/* Module API: the worker                                              */

struct event_base *
molt_worker_base(molt_worker *mw)
{
	struct worker *w = (struct worker *)mw;

	return w ? w->base : worker_self->base;
}

int
molt_worker_id(const molt_worker *mw)
{
	const struct worker *w = (const struct worker *)mw;

	return w ? w->id : worker_self->id;
}

int
molt_worker_in_check(const molt_worker *mw)
{
	const struct worker *w = (const struct worker *)mw;

	return (w ? w : worker_self)->in_check;
}

int
molt_worker_draining(const molt_worker *mw)
{
	const struct worker *w = (const struct worker *)mw;

	return (w ? w : worker_self)->draining;
}

/*
 * From the loop, never from inside worker_start_drain: a module ending
 * its streams there would finish requests (and close connections) under
 * the feet of the drain that is walking them.  Indexed, as a callback
 * may register another.
 */
static void
worker_drain_hooks_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct worker_drain_hook *h;
	int i;

	(void)fd;
	(void)what;
	for (i = 0; i < w->ndrain_hooks; i++) {
		h = &w->drain_hooks[i];
		if (h->called)
			continue;
		h->called = 1;
		h->cb((molt_worker *)w, h->arg);
	}
}

int
molt_worker_on_drain(molt_worker *mw, void (*cb)(molt_worker *, void *),
    void *arg)
{
	struct worker *w = (struct worker *)mw;

	if (w == NULL)
		w = worker_self;
	if (cb == NULL)
		return -1;
	if (w->ndrain_hooks == WORKER_DRAIN_HOOKS) {
		log_error("molt_worker_on_drain: more than %d callbacks in "
		    "worker %d; this one will not run", WORKER_DRAIN_HOOKS,
		    w->id);
		return -1;
	}
	if (w->drain_hooks_ev == NULL &&
	    (w->drain_hooks_ev = event_new(w->base, -1, 0,
	    worker_drain_hooks_cb, w)) == NULL) {
		log_error("molt_worker_on_drain: worker %d: cannot make its "
		    "event", w->id);
		return -1;
	}
	w->drain_hooks[w->ndrain_hooks].cb = cb;
	w->drain_hooks[w->ndrain_hooks].arg = arg;
	w->drain_hooks[w->ndrain_hooks].called = 0;
	w->ndrain_hooks++;
	if (w->draining)
		event_active(w->drain_hooks_ev, 0, 0);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Time                                                                */

int64_t
worker_now_ms(struct worker *w)
{
	struct timeval tv;

	event_base_gettimeofday_cached(w->base, &tv);
	return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/*
 * The clock of durations, read afresh (about 16 ns, from the vDSO): the
 * loop's cached time stands still while a handler keeps the CPU, so a
 * request that took a second within one turn of the loop would measure
 * 0, the very request a duration is there to show; and libevent's wall
 * time is corrected against the real one only every few seconds, so the
 * two do not mix.
 */
int64_t
worker_clock_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* CPU time this process has used, user and system; 0 if unknown. */
static uint64_t
worker_cpu_us(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) == -1)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/*
 * The strings up to the NULL in a row into dst, cut to fit.  Not
 * snprintf on the way from a worker's fork to its requests: nothing
 * else in its usual life needs the printf code, and on a shadow-paged
 * guest each page of code a new process runs the first time costs it
 * about 4 us.
 */
static void
__attribute__((sentinel))
worker_join(char *dst, size_t size, const char *s, ...)
{
	va_list ap;
	size_t n = 0, k;

	va_start(ap, s);
	for (; s != NULL && n + 1 < size; s = va_arg(ap, const char *)) {
		k = strnlen(s, size - 1 - n);
		memcpy(dst + n, s, k);
		n += k;
	}
	va_end(ap);
	if (size > 0)
		dst[n] = '\0';
}

const char *
worker_date_header(struct worker *w)
{
	struct timeval tv;

	/* The loop's cached clock: no syscall per request. */
	event_base_gettimeofday_cached(w->base, &tv);
	if (tv.tv_sec != w->date_sec) {
		char d[30];

		http_date(tv.tv_sec, d);
		worker_join(w->date, sizeof(w->date), "Date: ", d, "\r\n", NULL);
		w->date_sec = tv.tv_sec;
	}
	return w->date;
}

const struct timeval *
worker_timeout(struct worker *w, int kind)
{
	return w->timeouts[kind];
}

static void
worker_init_timeouts(struct worker *w)
{
	const struct server_conf *sc = &w->cfg->server;
	long long ms[WT_MAX];
	int i;

	ms[WT_HEADER] = sc->header_timeout_ms;
	ms[WT_BODY] = sc->body_timeout_ms;
	ms[WT_KEEPALIVE] = sc->keepalive_timeout_ms;
	ms[WT_DRAIN_IDLE] = sc->keepalive_timeout_ms < 2000 ?
	    sc->keepalive_timeout_ms : 2000;
	ms[WT_LINGER] = 2000;
	ms[WT_WRITE] = sc->write_timeout_ms;
	ms[WT_HANDLER] = sc->handler_timeout_ms;    /* armed only if not 0 */
	for (i = 0; i < WT_MAX; i++) {
		struct timeval tv = { ms[i] / 1000, (ms[i] % 1000) * 1000 };
		const struct timeval *ct;

		/* Same-length timeouts go to a queue, not the heap. */
		ct = event_base_init_common_timeout(w->base, &tv);
		if (ct == NULL) {
			static struct timeval fallback[WT_MAX];
			fallback[i] = tv;
			ct = &fallback[i];
		}
		w->timeouts[i] = ct;
	}
}

/* ------------------------------------------------------------------ */
/* Routing                                                             */

struct wroute *
worker_route(struct worker *w, const char *path, size_t len)
{
	int i;

	/* Routes are sorted longest prefix first; the first match wins. */
	for (i = 0; i < w->nroutes; i++) {
		struct wroute *r = &w->routes[i];
		size_t pl = r->prefix_len;

		if (len < pl || memcmp(path, r->prefix, pl) != 0)
			continue;
		/* "/hello" matches "/hello" and "/hello/x", not "/helloworld". */
		if (len == pl || r->prefix[pl - 1] == '/' || path[pl] == '/')
			return r;
	}
	return NULL;
}

/* Longest prefix first, so the first match is the best one. */
static int
worker_prefix_cmp(const char *x, size_t xl, const char *y, size_t yl)
{
	if (xl != yl)
		return xl > yl ? -1 : 1;
	return strcmp(x, y);
}

static int
worker_route_cmp(const void *a, const void *b)
{
	const struct wroute *x = a, *y = b;

	return worker_prefix_cmp(x->prefix, x->prefix_len, y->prefix,
	    y->prefix_len);
}

static int
worker_name_cmp(const void *a, const void *b)
{
	const char *const *x = a, *const *y = b;

	return worker_prefix_cmp(*x, strlen(*x), *y, strlen(*y));
}

/*
 * The route prefixes of cfg, the status page's included, in the order
 * every worker of its generation routes by, which is the order of the
 * route indexes a worker publishes.  For the master, which writes them
 * into the scoreboard's header: the workers can no longer write there
 * (scoreboard_protect).  Returns how many, at most max.
 */
int
worker_route_names(const struct molt_config *cfg, const char **out, int max)
{
	const struct route_conf *rc;
	const char **all;
	int n = 0, i;

	for (rc = cfg->routes; rc != NULL; rc = rc->next)
		n++;
	/* All of them sorted, then the first max: as the workers index. */
	if ((all = calloc((size_t)n + 1, sizeof(*all))) == NULL)
		return 0;
	for (n = 0, rc = cfg->routes; rc != NULL; rc = rc->next)
		all[n++] = rc->prefix;
	if (cfg->status.path != NULL)
		all[n++] = cfg->status.path;
	qsort(all, (size_t)n, sizeof(*all), worker_name_cmp);
	for (i = 0; i < n && i < max; i++)
		out[i] = all[i];
	free(all);
	return i;
}

static int
worker_build_routes(struct worker *w)
{
	struct molt_config *cfg = w->cfg;
	struct route_conf *rc;
	int n = 0, i = 0;

	for (rc = cfg->routes; rc != NULL; rc = rc->next)
		n++;
	w->routes = calloc((size_t)n + 1, sizeof(*w->routes));
	if (w->routes == NULL)
		return -1;
	for (rc = cfg->routes; rc != NULL; rc = rc->next, i++) {
		struct wroute *r = &w->routes[i];

		r->prefix = rc->prefix;
		r->prefix_len = rc->prefix_len;
		r->methods = rc->methods;
		r->mod = module_find(w->modules, rc->module);
		r->conf = module_conf_for(w->modules, rc);
	}
	if (cfg->status.path != NULL)
		status_fill_route(w, &w->routes[i++]);
	w->nroutes = i;
	/* The order of worker_route_names, whose names the master wrote. */
	qsort(w->routes, (size_t)w->nroutes, sizeof(*w->routes), worker_route_cmp);
	for (i = 0; i < w->nroutes; i++)
		w->routes[i].index = i;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Accepting                                                           */

/*
 * Every worker sleeps on the same listening sockets.  Registered the
 * ordinary way, a new connection wakes all of them and all but one find
 * nothing to accept: on the bench guest that was 0.18 failed accept4 and
 * about 3.5 us of CPU per Connection: close request, all of molt's deficit
 * against nginx, which asks for EPOLLEXCLUSIVE (doc/benchmarks-history.md,
 * "Run of 2026-12-05 07:05").  libevent 2.1 cannot ask for that flag, so
 * once libevent has put a listener in its epoll set, the worker puts it
 * back with the flag: the same events and the same data.fd, which is
 * what libevent 2.1's epoll backend dispatches on; libevent's own
 * EPOLL_CTL_DEL, when the listener is turned off, is allowed on it.  The
 * set is the lowest free descriptor when the base is made
 * (worker_event_base), and EPOLL_CTL_DEL confirms it, since it succeeds
 * only on a set that holds this listener.  If anything fails the
 * listener stays as libevent left it, woken with the others as before,
 * and the worker stops trying.
 *
 * An exclusive wake-up reaches one sleeping worker, and the kernel wakes
 * nobody else for that connection.  So a worker that turns its listeners
 * off (it defers to a less loaded one, it is full, out of descriptors or
 * draining) kicks the least loaded live worker, which then looks at its
 * own: SIGURG, whose default action is to do nothing, so a kick that
 * reaches a process not yet (or no longer) watching for it, or a pid read
 * stale off the scoreboard, is lost and harms nothing.
 */
static void
worker_listen_exclusive(struct worker *w, int fd)
{
	struct epoll_event e;

	memset(&e, 0, sizeof(e));
	e.events = EPOLLIN | EPOLLEXCLUSIVE;
	e.data.fd = fd;
	if (epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, NULL) == -1) {
		log_info("worker %d: listener %d is not in epoll set %d (%s); "
		    "new connections wake every worker", w->id, fd, w->epfd,
		    strerror(errno));
		w->epfd = -1;
		return;
	}
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &e) == 0)
		return;
	log_error("worker %d: epoll_ctl(EPOLL_CTL_ADD, listener %d, "
	    "EPOLLEXCLUSIVE): %s", w->id, fd, strerror(errno));
	e.events = EPOLLIN;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &e) == -1)
		log_error("worker %d: epoll_ctl(EPOLL_CTL_ADD, listener %d): %s",
		    w->id, fd, strerror(errno));
	w->epfd = -1;
}

static long worker_least_loaded(struct worker *, int *, pid_t *);

static void
worker_kick(struct worker *w)
{
	pid_t who = 0;

	if (worker_least_loaded(w, NULL, &who) < 0 || who <= 0)
		return;
	if (kill(who, SIGURG) == -1 && errno != ESRCH)
		log_debug("worker %d: kill(%d, SIGURG): %s", w->id, (int)who,
		    strerror(errno));
}

static void
worker_listen_enable(struct worker *w, int on)
{
	int i, off = 0;

	for (i = 0; i < w->nls; i++) {
		if (w->ls[i].on == on || (on && w->ls[i].foreign))
			continue;
		if (on ? event_add(&w->ls[i].ev, NULL) : event_del(&w->ls[i].ev))
			log_error("cannot %s listener %d", on ? "enable" : "disable", i);
		else if (on && w->epfd >= 0)
			worker_listen_exclusive(w, w->ls[i].fd);
		else if (!on)
			off = 1;
		w->ls[i].on = on;
	}
	if (off && w->epfd >= 0)
		worker_kick(w);
}

/*
 * Connections handed over by recycled workers (handoff.c) are taken like
 * new ones, by every worker that is not itself handing its own over.
 */
static void
worker_adopt_enable(struct worker *w, int on)
{
	if (w->adopt_ev == NULL || w->adopt_on == on)
		return;
	if (on ? event_add(w->adopt_ev, NULL) : event_del(w->adopt_ev))
		log_error("worker %d: cannot %s the handoff socket", w->id,
		    on ? "watch" : "unwatch");
	if (w->adopt_cpu_ev != NULL && (on ? event_add(w->adopt_cpu_ev, NULL) :
	    event_del(w->adopt_cpu_ev)))
		log_error("worker %d: cannot %s its CPU's handoff socket", w->id,
		    on ? "watch" : "unwatch");
	w->adopt_on = on;
}

/*
 * The fewest connections another live worker has, or -1 if none; with
 * deferring, whether that worker is itself leaving new connections to
 * the others (so it is not stuck, only waiting on us).
 */
static long
worker_least_loaded(struct worker *w, int *deferring, pid_t *who)
{
	long least = -1;
	uint32_t n = sb.hdr->slots_hi;
	int i;

	/* Bounded by the master: the slots past it are free. */
	if (n > SB_SLOTS)
		n = SB_SLOTS;
	for (i = 0; i < (int)n; i++) {
		const struct sb_slot *s = &sb.slots[i];
		uint32_t st = s->w.state;

		/* Racy reads: a hint for balance, nothing depends on it. */
		if (s == w->slot || s->m.pid == 0 || s->m.retiring ||
		    s->w.pid != s->m.pid || (st != SB_IDLE && st != SB_BUSY))
			continue;
		/* Paused (worker_accept_pause): with no room for a client it
		 * looks the least loaded, and the others left clients to it.
		 * Nonzero only then: no clock read on the accept path. */
		if (s->w.paused_until_ms != 0 &&
		    s->w.paused_until_ms > worker_now_ms(w))
			continue;
		if (least == -1 || (long)s->w.connections < least) {
			least = (long)s->w.connections;
			if (who != NULL)
				*who = s->w.pid;
			/* Its timer overdue: its loop is stuck, not waiting. */
			if (deferring != NULL)
				*deferring = s->w.defer_until_ms != 0 &&
				    s->w.defer_until_ms + ACCEPT_STUCK_MS >=
				    worker_now_ms(w);
		}
	}
	return least;
}

/*
 * listen_per_cpu: the kernel queues a connection on the socket of the
 * CPU that processed its handshake, and only that CPU's workers wait on
 * it.  Whether one of them takes new connections now (1): one is live
 * and is not leaving them to others (full, deferring to a less loaded
 * worker: worker_accept_defer), nor stuck in a handler.  Otherwise (0)
 * the other workers take them, or they would wait on a worker that does
 * not come: a recycled one's replacement still starting, one that
 * crashed, a blocking module.  *most: the most connections a deferring
 * owner has, up to which another worker takes its share, so that the
 * two even out instead of trading the whole queue; -1 if there is none.
 * *conns (if not NULL): with 1, the taker's connections (0 while it starts).
 */
static int
worker_cpu_taken(struct worker *w, int k, long *most, long *conns)
{
	uint32_t n = sb.hdr->slots_hi;
	int64_t now = worker_now_ms(w);
	int i;

	*most = -1;
	if (w->ncpus <= 0)
		return 0;
	if (n > SB_SLOTS)
		n = SB_SLOTS;
	for (i = 0; i < (int)n; i++) {
		const struct sb_slot *s = &sb.slots[i];
		uint32_t st = s->w.state;
		int64_t began = s->w.req_start_ms;

		/* Racy reads of an untrusted half: a hint, as in least_loaded.
		 * One the master forked but that is not ready yet (its half
		 * not yet its own, or starting) takes within milliseconds, and
		 * the others watching its socket meanwhile would race it for
		 * its CPU's clients until their next look; one that never gets
		 * ready is killed by the master (READY_TIMEOUT_MS). */
		if (s->m.pid == 0 || s->m.retiring || s->m.id < 0 ||
		    s->m.id % w->ncpus != k)
			continue;
		if (s->w.pid != s->m.pid || st == SB_STARTING) {
			if (conns != NULL)
				*conns = 0;
			return 1;
		}
		if (st != SB_IDLE && st != SB_BUSY)
			continue;
		if (s->w.in_handler && began != 0 && now - began > ACCEPT_STUCK_MS)
			continue;
		if (s->w.connections >= (uint32_t)w->cfg->server.max_connections)
			continue;
		/* Short of descriptors or memory (worker_accept_pause). */
		if (s->w.paused_until_ms > now)
			continue;
		if (s->w.defer_until_ms != 0) {
			if ((long)s->w.connections > *most)
				*most = (long)s->w.connections;
			continue;
		}
		if (conns != NULL)
			*conns = (long)s->w.connections;
		return 1;
	}
	return 0;
}

/*
 * Watches the other CPUs' sockets that nobody there takes from, and stops
 * watching those that are taken again.  Run every FOREIGN_CHECK_MS and
 * when a worker that stopped taking kicks this one (worker_kick).  A
 * worker that is itself full, deferring or draining watches none.
 */
static void
worker_foreign_update(struct worker *w)
{
	int i, want, open = !w->draining && w->slot->w.defer_until_ms == 0 &&
	    w->nconns < w->cfg->server.max_connections &&
	    !evtimer_pending(w->accept_retry_ev, NULL);
	struct listen_sock *l;
	long most;

	for (i = 0; i < w->nls; i++) {
		l = &w->ls[i];
		if (!l->foreign || l->fd < 0)
			continue;
		want = open && !worker_cpu_taken(w, l->cpu, &most, NULL) &&
		    (most < 0 || w->nconns < most);
		if (want == l->on)
			continue;
		if (want ? event_add(&l->ev, NULL) : event_del(&l->ev)) {
			log_error("worker %d: cannot %s CPU socket %d", w->id,
			    want ? "watch" : "unwatch", l->cpu);
			continue;
		}
		if (want && w->epfd >= 0)
			worker_listen_exclusive(w, l->fd);
		l->on = want;
	}
}

static void
worker_foreign_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	worker_foreign_update(arg);
}

#define FD_ROOM_SLACK 256

/* The descriptor limit it starts with (the master raised it). */
static rlim_t
worker_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
		log_error("getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
		return 0;       /* always look */
	}
	return rl.rlim_cur;
}

/*
 * Whether this process has a free descriptor, for a connection that
 * comes over handoff socket fd.  One that does not must leave it there:
 * recvmsg takes the message either way, and the kernel drops a
 * descriptor it cannot install (MSG_CTRUNC), which closed the client's
 * connection.  So look first, with a dup and a close: a handed-over
 * connection is rare next to an accepted one, and accept4 needs no look
 * (it fails with EMFILE and leaves the connection queued).
 */
static int
worker_fd_room(struct worker *w, int fd)
{
	int probe;

	/*
	 * Far below the limit the look is two syscalls for nothing, in every
	 * adoption of every recycle.  FD_ROOM_SLACK stands for what is not a
	 * connection (listeners, handoff sockets, logs, database and module
	 * descriptors); with more than that, or a limit lowered from outside
	 * since the start, a connection can still be lost, and handoff_recv
	 * says so.
	 */
	if (w->nofile == RLIM_INFINITY ||
	    (rlim_t)w->nconns + FD_ROOM_SLACK < w->nofile)
		return 1;
	probe = fcntl(fd, F_DUPFD_CLOEXEC, 0);

	if (probe == -1) {
		if (errno != EMFILE)
			log_error("fcntl(F_DUPFD_CLOEXEC, handoff socket %d): %s",
			    fd, strerror(errno));
		return 0;
	}
	if (close(probe) == -1)
		log_error("close (descriptor probe %d): %s", probe, strerror(errno));
	return 1;
}

/*
 * Out of descriptors or of memory, a worker stops watching the handoff
 * sockets for ACCEPT_RETRY_MS, as it pauses its accepts, and its defer
 * timer takes up again: the connections wait in the socket, or go to a
 * worker with room.
 */
static void
worker_adopt_pause(struct worker *w)
{
	struct timeval tv = { 0, ACCEPT_RETRY_MS * 1000 };

	worker_adopt_enable(w, 0);
	if (evtimer_add(w->adopt_defer_ev, &tv) == -1) {
		log_error("worker %d: cannot arm the handoff retry timer", w->id);
		worker_adopt_enable(w, 1);
	}
}

/* Logged like an accept pause, at most every ACCEPT_ERR_LOG_MS. */
static void
worker_adopt_paused(struct worker *w)
{
	unsigned n;

	if (worker_often_due(SB_OFTEN_ADOPT_PAUSED, &n))
		log_error("connection handoff: %s; pausing adoption for %d ms at "
		    "a time (%d connections open here; %u pauses in all workers "
		    "since the last line)",
		    strerror(EMFILE), ACCEPT_RETRY_MS, w->nconns, n - 1);
	worker_adopt_pause(w);
}

/*
 * No memory for a connection: the one in hand is closed (there is no
 * memory to answer it with), and the worker pauses what brought it
 * (what: "accepts" or "adoption"), so that the next clients wait in the
 * queue or go to another worker instead of being taken and closed too.
 * At most one line every ACCEPT_ERR_LOG_MS.
 */
static void
worker_conn_nomem(struct worker *w, int err, const char *what)
{
	unsigned n;

	if (worker_often_due(SB_OFTEN_NOMEM, &n))
		log_error("out of memory for a connection (%s); closed it and "
		    "pausing %s for %d ms at a time (%d connections open here; "
		    "%u more in all workers since the last line)", strerror(err),
		    what, ACCEPT_RETRY_MS, w->nconns, n - 1);
}

/*
 * Every live worker is woken for a handed-over connection and the first
 * to read takes it: left alone, a recycled worker's connections pile up
 * on whichever worker happens to be idle at that instant.  So
 * a worker well above the least loaded one leaves them, and looks again
 * after ADOPT_DEFER_MS (then taking one regardless: the scoreboard is a
 * hint, and a connection must not wait on a worker that cannot come).
 */
static void
worker_adopt_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct timeval tv = { 0, ADOPT_DEFER_MS * 1000 };
	int force = fd == -1;   /* from the defer timer */
	struct handoff_conn hc;
	long least;
	int i;

	(void)what;
	for (i = 0; i < ACCEPT_BATCH; i++) {
		if (w->nconns >= w->cfg->server.max_connections) {
			worker_adopt_enable(w, 0);
			return;
		}
		if (!force && !w->draining &&
		    (least = worker_least_loaded(w, NULL, NULL)) >= 0 &&
		    w->nconns > least + BALANCE_SLACK) {
			worker_adopt_enable(w, 0);
			if (evtimer_add(w->adopt_defer_ev, &tv) == -1)
				worker_adopt_enable(w, 1);
			return;
		}
		force = 0;
		if (!worker_fd_room(w, handoff_fd())) {
			worker_adopt_paused(w);
			return;
		}
		if (handoff_recv(handoff_fd(), &hc) != 1)
			return;
		if (conn_adopt(w, &hc) == -1) {
			worker_conn_nomem(w, errno, "adoption");
			worker_adopt_pause(w);
			return;
		}
	}
}

/*
 * Connections a recycled worker on this CPU handed over (listen_per_cpu),
 * or another CPU's worker passed to the CPU their client runs on
 * (conn_follow): they are this CPU's, so no balancing here.
 */
static void
worker_adopt_cpu_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct handoff_conn hc;
	int i;

	(void)what;
	for (i = 0; i < ACCEPT_BATCH; i++) {
		if (!worker_fd_room(w, fd)) {
			worker_adopt_paused(w);
			return;
		}
		if (handoff_recv(fd, &hc) != 1)
			return;
		if (conn_adopt(w, &hc) == -1) {
			worker_conn_nomem(w, errno, "adoption");
			worker_adopt_pause(w);
			return;
		}
	}
}

int
worker_handoff_target(struct worker *w)
{
	long most;

	return w->cpu_index >= 0 && handoff_fd_cpu(w->cpu_index) >= 0 &&
	    worker_cpu_taken(w, w->cpu_index, &most, NULL) ? w->cpu_index : -1;
}

static void
worker_handoff_room_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	(void)fd;
	(void)what;
	conn_drain_all(w);
}

/*
 * The handoff pair was full: a recycle hands over its idle connections
 * at once, a few hundred of them faster than the live workers adopt
 * them, and the pair holds some 280 (handoff.c).  The rest wait here,
 * idle, and are offered again once it has room; closed, their clients
 * had to reconnect, and a request that crossed the close got a reset.
 */
void
worker_handoff_wait(struct worker *w, int k)
{
	int fd = handoff_send_fd(k);

	if (w->handoff_room_ev != NULL &&
	    event_get_fd(w->handoff_room_ev) != fd) {
		event_free(w->handoff_room_ev);
		w->handoff_room_ev = NULL;
	}
	if (w->handoff_room_ev == NULL &&
	    (w->handoff_room_ev = event_new(w->base, fd, EV_WRITE,
	    worker_handoff_room_cb, w)) == NULL) {
		log_error("worker %d: event_new (handoff room) failed", w->id);
		return;
	}
	if (!event_pending(w->handoff_room_ev, EV_WRITE, NULL) &&
	    event_add(w->handoff_room_ev, NULL) == -1)
		log_error("worker %d: event_add (handoff room) failed", w->id);
}

/*
 * The kernel refused more descriptors in flight (HANDOFF_REFS): they
 * leave as the live workers adopt those before them, which no event on
 * this side tells, so the idle connections are offered again every
 * HANDOFF_LATER_MS until the drain ends.
 */
#define HANDOFF_LATER_MS 20

void
worker_handoff_later(struct worker *w)
{
	struct timeval tv = { 0, HANDOFF_LATER_MS * 1000 };

	if (w->handoff_later_ev == NULL &&
	    (w->handoff_later_ev = evtimer_new(w->base,
	    worker_handoff_room_cb, w)) == NULL) {
		log_error("worker %d: evtimer_new (handoff retry) failed", w->id);
		return;
	}
	if (!evtimer_pending(w->handoff_later_ev, NULL) &&
	    evtimer_add(w->handoff_later_ev, &tv) == -1)
		log_error("worker %d: evtimer_add (handoff retry) failed", w->id);
}

/*
 * listen_per_cpu: the CPU index a connection's packets now arrive on, if
 * it is another one with workers to pass it to, else -1.  On loopback
 * that is the CPU the client last ran on, so a client thread the
 * scheduler moved is found here; from a NIC, its receive queue's CPU,
 * which stays put.  -1 too if the kernel cannot say (the socket has not
 * received since it was made, or the option is unknown).
 */
int
worker_client_cpu(struct worker *w, int fd)
{
	int cpu, k;
	socklen_t len = sizeof(cpu);

	if (getsockopt(fd, SOL_SOCKET, SO_INCOMING_CPU, &cpu, &len) == -1 ||
	    cpu < 0 || cpu >= CPU_SETSIZE)
		return -1;
	k = w->cpu_index_of[cpu];
	return k >= 0 && k != w->cpu_index && handoff_fd_cpu(k) >= 0 ? k : -1;
}

/*
 * Whether CPU index k has a worker that takes connections and, with one
 * more, would not be more than BALANCE_SLACK ahead of this one with one
 * fewer: clients crowded on one CPU must not crowd one worker.
 */
int
worker_cpu_room(struct worker *w, int k)
{
	long most, conns;

	return worker_cpu_taken(w, k, &most, &conns) &&
	    conns + 1 <= w->nconns - 1 + BALANCE_SLACK;
}

static void
worker_adopt_defer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	(void)fd;
	(void)what;
	if (w->handoff)
		return;
	worker_adopt_enable(w, 1);
	worker_adopt_cb(-1, EV_READ, w);
}

static void
worker_accept_retry(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	(void)fd;
	(void)what;
	w->slot->w.paused_until_ms = 0;
	if (!w->draining && w->nconns < w->cfg->server.max_connections)
		worker_listen_enable(w, 1);
}

/*
 * Every worker sleeps on the same listening socket, and the first one the
 * kernel wakes would take the whole queue: a burst of keep-alive clients
 * then lands 55/9 on two workers, and one core idles while the other
 * queues.  So a worker more than BALANCE_SLACK connections above the least
 * loaded one leaves new connections to it, and looks again every
 * ACCEPT_DEFER_MS.  If the least loaded worker takes nothing for
 * ACCEPT_STUCK_MS (a blocking handler, no CPU), it is stuck: what is
 * queued is taken without looking, and so is everything after, until its
 * count moves again.  A client must not wait on a worker that does not
 * come, and pays that wait once per stall, not once per connection.
 *
 * Two workers can each leave connections to the other on figures gone
 * stale in between, and with short connections the counts swing enough
 * for that to be common: then neither takes any.  So a worker does not
 * wait on one that is itself waiting (defer_until_ms in the scoreboard)
 * until it is BALANCE_SLACK further ahead; the other looks again within
 * ACCEPT_DEFER_MS.  Returns 1 if it deferred.  (With exclusive wake-ups
 * turning the listener off kicks the least loaded worker: see
 * worker_listen_exclusive.)
 */
static int
worker_accept_defer(struct worker *w, long least)
{
	struct timeval tv = { 0, ACCEPT_DEFER_MS * 1000 };
	int64_t now = worker_now_ms(w);
	int deferring = 0;

	if (w->nconns <= least + BALANCE_SLACK)
		return 0;
	least = worker_least_loaded(w, &deferring, NULL);
	if (least < 0 || (deferring && w->nconns <= least + 2 * BALANCE_SLACK) ||
	    evtimer_add(w->accept_defer_ev, &tv) == -1)
		return 0;
	w->slot->w.defer_until_ms = now + ACCEPT_DEFER_MS;
	if (w->defer_since_ms == 0 || least != w->defer_least) {
		w->defer_least = least;
		w->defer_since_ms = now;
	}
	worker_listen_enable(w, 0);
	return 1;
}

/*
 * Short connections finish well inside ACCEPT_DEFER_MS: a worker that
 * waited out the timer would sit idle with its listener off while the
 * other took every connection, and would then be far enough behind for
 * the other to defer to it in turn; in `Connection: close` load both
 * then idled a fifth of the time.  So a worker takes new connections
 * again as soon as it is back within BALANCE_SLACK.  The listener is only
 * re-armed here: the accept happens in the loop, not inside the close of
 * some connection.
 */
static void
worker_accept_undefer(struct worker *w)
{
	long least;

	if (w->draining || evtimer_pending(w->accept_retry_ev, NULL))
		return;
	least = worker_least_loaded(w, NULL, NULL);
	if (least >= 0 && w->nconns > least + BALANCE_SLACK)
		return;
	evtimer_del(w->accept_defer_ev);
	w->slot->w.defer_until_ms = 0;
	w->defer_since_ms = 0;
	worker_listen_enable(w, 1);
}

/*
 * Counts one more of an event that can come many times a second, and
 * says whether its line is due: the first time, then at most once every
 * ACCEPT_ERR_LOG_MS for the whole fleet (sb.often), so that a recycled
 * worker's replacement does not say again at once what the fleet said
 * a moment ago.  *n: the fleet's events since the last line, this one
 * too.  Of workers that find the line due at the same time, the one
 * whose compare-and-swap moves the time on logs it; the others count
 * and stay silent, and what they counted goes into its line or the
 * next.
 */
static int
worker_often_due(enum sb_often_kind kind, unsigned *n)
{
	struct sb_often *o;
	int64_t now, last;
	uint64_t got;

	/* No scoreboard (the module check before the master's start): no
	 * fleet to share with, and no client to make it come often. */
	if (sb.often == NULL) {
		*n = 1;
		return 1;
	}
	o = &sb.often[kind];
	__atomic_add_fetch(&o->count, 1, __ATOMIC_RELAXED);
	last = __atomic_load_n(&o->logged_ms, __ATOMIC_RELAXED);
	/*
	 * The clock after the load: a time another worker stored is then
	 * never ahead of ours (CLOCK_MONOTONIC is the machine's), so one
	 * that is came from a stray write, and compared unsigned it makes
	 * the line due instead of silencing the kind until the clock
	 * catches up.
	 */
	now = sb_clock_ms();
	if (last != 0 && (uint64_t)now - (uint64_t)last < ACCEPT_ERR_LOG_MS)
		return 0;
	if (!__atomic_compare_exchange_n(&o->logged_ms, &last, now, 0,
	    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		return 0;
	got = __atomic_exchange_n(&o->count, 0, __ATOMIC_RELAXED);
	/* Anything could be there (a module's stray write): the line
	 * counts this one at least, and a count prints as a count. */
	*n = got == 0 ? 1 : got > UINT_MAX ? UINT_MAX : (unsigned)got;
	return 1;
}

/*
 * Out of memory for a request's buffers (its head, its body, its reply):
 * that request fails, and under memory pressure so does the next, and
 * one error line per request buried the log when it was most needed.
 * The first is logged, then one line every ACCEPT_ERR_LOG_MS with how
 * many went unsaid.
 */
void
worker_req_nomem(struct worker *w, const char *fmt, ...)
{
	char what[200];
	unsigned n;
	va_list ap;

	(void)w;        /* the count is the fleet's, not this worker's */
	if (!worker_often_due(SB_OFTEN_REQ_NOMEM, &n))
		return;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	log_error("%s (%u more in all workers since the last line)", what,
	    n - 1);
}

/*
 * Out of descriptors, a worker pauses its accepts for ACCEPT_RETRY_MS and
 * tries again: ten lines a second for as long as it lasts, which buried
 * the log.  The first pause is logged, then one line every
 * ACCEPT_ERR_LOG_MS with how many went unsaid.
 */
static void
worker_accept_paused(struct worker *w, int err)
{
	unsigned n;

	if (worker_often_due(SB_OFTEN_ACCEPT_PAUSED, &n))
		log_error("accept4: %s; pausing accepts for %d ms at a time "
		    "(%d connections open here; %u pauses in all workers since "
		    "the last line)", strerror(err), ACCEPT_RETRY_MS, w->nconns,
		    n - 1);
}

/*
 * Out of descriptors (a hard limit the master could not raise: it warned
 * at start), the limit is the real max_connections, and as there
 * (worker_make_room) clients that merely hold connections between
 * requests locked every new one out, here for keepalive_timeout.  So a
 * client waiting takes the place of the connection idle longest.
 * Returns 1 if one was closed (accept again), 0 if none could be.  One
 * per accepted connection, and ACCEPT_BATCH bounds the loop.
 */
static int
worker_fd_reclaim(struct worker *w)
{
	unsigned n;

	if (w->draining || conn_reclaim_idle(w, 0) == -1 ||
	    !worker_listen_queued(w))
		return 0;
	conn_reclaim_idle(w, 1);
	if (worker_often_due(SB_OFTEN_FD_RECLAIMED, &n))
		log_warn("out of descriptors (%d connections open here); closed "
		    "an idle connection to make room (%u in all workers since "
		    "the last line)", w->nconns, n);
	return 1;
}

/*
 * Accepts off for ACCEPT_RETRY_MS, instead of spinning on a listener that
 * stays readable.  The scoreboard says so, for the others not to leave
 * new clients to this worker (worker_least_loaded).
 */
static void
worker_accept_pause(struct worker *w)
{
	struct timeval tv = { 0, ACCEPT_RETRY_MS * 1000 };

	w->slot->w.paused_until_ms = worker_now_ms(w) + ACCEPT_RETRY_MS;
	worker_listen_enable(w, 0);
	if (evtimer_add(w->accept_retry_ev, &tv) == -1)
		log_error("worker %d: cannot arm the accept retry timer", w->id);
}

/*
 * A listening descriptor that is no longer one: module code closed it
 * (a "close every descriptor" loop, say).  The worker's copy shares its
 * socket with the master's and the other workers', so the kernel keeps
 * the socket and its epoll registration, which can no longer be removed
 * by this process: every connection that arrives wakes this worker for
 * nothing, and it logged "accept4: Bad file descriptor" in a tight loop,
 * at full CPU, while serving no new client (all of them, with one
 * worker).  Only a new process has a clean epoll set: drain, so that
 * what is in flight is answered, and exit, and the master starts a new
 * worker in its place.
 */
static void
worker_listener_lost(struct worker *w, struct listen_sock *l, int err)
{
	int lfd = l->fd;

	/* Not closed later: the number may be another's now. */
	l->fd = -1;
	if (w->draining)
		return;
	log_error("worker %d: listening descriptor %d is unusable (accept4: "
	    "%s; module code closed it?); draining, a new worker takes its "
	    "place", w->id, lfd, strerror(err));
	worker_start_drain(w);
}

/*
 * Whether every other live worker is at max_connections too, so that
 * a new connection can only be served by making room here.
 */
static int
worker_all_full(struct worker *w)
{
	long least = worker_least_loaded(w, NULL, NULL);

	return least < 0 || least >= w->cfg->server.max_connections;
}

/*
 * At the limit, with nowhere else for a client to go: an idle connection
 * makes room (conn_reclaim_idle), but only once a client is
 * waiting.  Logged like an accept pause, at most one line every
 * ACCEPT_ERR_LOG_MS.  Returns 0 if there is room now, 1 if there would
 * be but no client waits (so the listener stays on), -1 if there is none.
 */
static int
worker_make_room(struct worker *w)
{
	unsigned n;

	if (w->draining || !worker_all_full(w) || conn_reclaim_idle(w, 0) == -1)
		return -1;
	if (!worker_listen_queued(w))
		return 1;
	conn_reclaim_idle(w, 1);
	if (worker_often_due(SB_OFTEN_RECLAIMED, &n))
		log_warn("max_connections (%lld) reached; closed an idle "
		    "connection to make room (%u in all workers since the last "
		    "line)", w->cfg->server.max_connections, n);
	return 0;
}

/*
 * A connection went idle.  A worker at the limit has its listener off,
 * and with every worker full no close may come for keepalive_timeout:
 * listening again lets the next client take this connection's place.
 */
void
worker_conn_idle(struct worker *w)
{
	if (w->nconns >= w->cfg->server.max_connections && !w->draining &&
	    !evtimer_pending(w->accept_retry_ev, NULL) && worker_all_full(w))
		worker_listen_enable(w, 1);
}

static void
worker_accept(struct listen_sock *l, int force)
{
	struct worker *w = l->w;
	struct sockaddr_storage ss;
	socklen_t sl;
	long least = -1;
	int fd, i, room, lfd = l->fd;

	/* Another CPU's socket, whose own worker does not take now: the
	 * balance there is worker_foreign_update's, looked at per accept. */
	if (l->foreign)
		force = 1;
	if (!force) {
		least = worker_least_loaded(w, NULL, NULL);
		if (least == w->stuck_least)
			least = -1;
		else
			w->stuck_least = -1;
	}
	/* Bounded, so one busy socket cannot starve the loop's other work. */
	for (i = 0; i < ACCEPT_BATCH; i++) {
		if (w->nconns >= w->cfg->server.max_connections &&
		    (room = worker_make_room(w)) != 0) {
			if (room == 1)
				return;
			/* Leave the rest in the queue for the other workers. */
			worker_listen_enable(w, 0);
			worker_adopt_enable(w, 0);
			return;
		}
		if (least >= 0 && worker_accept_defer(w, least))
			return;
		if (l->foreign && i > 0) {
			worker_foreign_update(w);
			if (!l->on)
				return;
		}
		sl = sizeof(ss);
		fd = accept4(lfd, (struct sockaddr *)&ss, &sl,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE && worker_fd_reclaim(w))
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				worker_accept_paused(w, errno);
				worker_accept_pause(w);
				return;
			}
			if (errno == EBADF || errno == ENOTSOCK || errno == EINVAL) {
				worker_listener_lost(w, l, errno);
				return;
			}
			log_error("accept4: %s", strerror(errno));
			return;
		}
		if (sl == 0)
			ss.ss_family = AF_UNIX;
		w->defer_since_ms = 0;
		if (conn_accept(w, fd, (struct sockaddr *)&ss, sl) == -1) {
			worker_conn_nomem(w, errno, "accepts");
			worker_accept_pause(w);
			return;
		}
		/* Counted: a worker that often covers for another CPU's says
		 * that one stalls (or its CPU takes most of the handshakes). */
		if (l->foreign)
			__atomic_store_n(&w->slot->w.covered, ++w->covered,
			    __ATOMIC_RELAXED);
		if (w->draining)
			return;
	}
}

static void
worker_accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	(void)lfd;
	(void)what;
	worker_accept(arg, 0);
}

/* Every listener that is on, outside of its event: after a deferral and
 * when another worker kicks this one. */
static void
worker_accept_all(struct worker *w, int force)
{
	int i;

	for (i = 0; i < w->nls && !w->draining; i++)
		if (w->ls[i].on)
			worker_accept(&w->ls[i], force);
}

/*
 * Whether a connection waits in a listener's queue.  When none does, the
 * worker deferred to took what was left to it (or the clients left), and
 * the deferral is over.  Without this look, a worker above the least
 * loaded deferred again every ACCEPT_DEFER_MS with nothing to leave, took
 * the other for stuck after ACCEPT_STUCK_MS, and then stopped balancing
 * until the other's count moved: the next client could go to the busy one.
 */
static int
worker_listen_queued(struct worker *w)
{
	struct pollfd p;
	int i;

	for (i = 0; i < w->nls; i++) {
		if (w->ls[i].foreign)
			continue;
		p.fd = w->ls[i].fd;
		p.events = POLLIN;
		p.revents = 0;
		/* An error says nothing: take it as queued, the old way. */
		if (poll(&p, 1, 0) != 0)
			return 1;
	}
	return 0;
}

static void
worker_accept_defer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	int64_t now = worker_now_ms(w);
	int force = 0, deferring = 0;
	long least;

	(void)fd;
	(void)what;
	w->slot->w.defer_until_ms = 0;
	if (w->draining || evtimer_pending(w->accept_retry_ev, NULL))
		return;
	if (!worker_listen_queued(w)) {
		w->defer_since_ms = 0;
		worker_listen_enable(w, 1);
		return;
	}
	least = worker_least_loaded(w, &deferring, NULL);
	if (least != w->defer_least) {
		w->defer_least = least;
		w->defer_since_ms = now;
	} else if (!deferring && now - w->defer_since_ms >= ACCEPT_STUCK_MS) {
		force = 1;
		w->stuck_least = least;
	}
	worker_listen_enable(w, 1);
	worker_accept_all(w, force);
}

/* ------------------------------------------------------------------ */
/* Bookkeeping for conn.c                                              */

static void
worker_slot_state(struct worker *w)
{
	struct sb_slot *s = w->slot;
	uint32_t st;

	st = w->draining ? SB_DRAINING : w->nactive > 0 ? SB_BUSY : SB_IDLE;
	if (s->w.state != st || s->w.connections != (uint32_t)w->nconns) {
		sb_begin(&s->w.seq);
		s->w.state = st;
		s->w.connections = (uint32_t)w->nconns;
		s->w.active = (uint32_t)w->nactive;
		sb_end(&s->w.seq);
	}
}

void
worker_conn_opened(struct worker *w, struct conn *c)
{
	c->prev = NULL;
	c->next = w->conns;
	if (w->conns != NULL)
		w->conns->prev = c;
	w->conns = c;
	w->nconns++;
	/* The other workers balance handed-over connections by this. */
	worker_slot_state(w);
}

void
worker_conn_closed(struct worker *w, struct conn *c)
{
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	w->nconns--;
	if (w->nconns == w->cfg->server.max_connections - 1) {
		if (!w->draining)
			worker_listen_enable(w, 1);
		worker_adopt_enable(w, !w->handoff);
	}
	worker_slot_state(w);
	if (w->slot->w.defer_until_ms != 0)
		worker_accept_undefer(w);
	if (w->draining)
		worker_check_done(w);
}

void
worker_conn_moved(struct worker *w)
{
	w->moved++;
	__atomic_store_n(&w->slot->w.moved, w->moved, __ATOMIC_RELAXED);
}

/* The request line survives a crash or a kill; the master logs it. */
static void
worker_slot_request(struct sb_slot *s, const molt_request *req)
{
	size_t ml = req->head.method_len, tl = req->head.target_len;

	s->w.req_start_ms = req->start_ms;
	s->w.req_route = req->route->index < SB_ROUTES ? req->route->index : -1;
	if (ml > 15)
		ml = 15;
	if (ml + 1 + tl > SB_REQ_LEN - 1)
		tl = SB_REQ_LEN - 2 - ml;
	memcpy(s->w.req_line, req->method, ml);
	s->w.req_line[ml] = ' ';
	memcpy(s->w.req_line + ml + 1, req->target, tl);
	s->w.req_line[ml + 1 + tl] = '\0';
}

void
worker_request_begin(struct worker *w, molt_request *req)
{
	struct sb_slot *s = w->slot;

	req->resp_flags |= RESP_BEGUN;
	w->nactive++;
	sb_begin(&s->w.seq);
	s->w.state = SB_BUSY;
	s->w.in_handler = 1;
	s->w.active = (uint32_t)w->nactive;     /* named if the worker dies */
	worker_slot_request(s, req);
	sb_end(&s->w.seq);
	if (w->route_stats) {
		uint64_t cnt, bytes;
		int64_t in_use;

		alloc_counters(&cnt, &bytes, &in_use);
		req->alloc_count_mark = cnt;
		req->alloc_mark = bytes;
		req->in_use_mark = (uint64_t)in_use;
	}
}

/*
 * Lines wait in a buffer so that a busy worker writes 64 KB at a time;
 * the timer bounds how late a line of a quiet one appears (an operator's
 * tail -f).  Armed by the first line after a write: one timer insertion
 * per interval, nothing per request.
 */
static void
worker_alog_arm(struct worker *w)
{
	if (!w->alog_armed && w->alog_ev != NULL) {
		long long ms = w->cfg->server.access_log_flush_ms;
		struct timeval iv = { ms / 1000, (ms % 1000) * 1000 };

		if (evtimer_add(w->alog_ev, &iv) == 0)
			w->alog_armed = 1;
	}
}

/* What snprintf put into room bytes (a cut one is what fits). */
static size_t
worker_fmt_len(int r, size_t room)
{
	if (r < 0)
		return 0;
	return (size_t)r < room ? (size_t)r : room - 1;
}

/*
 * With access_log_time, " 0.003\n" in place of the line's "\n": seconds
 * from the request's head to its last byte out, with milliseconds, as
 * nginx's $request_time.  Returns the line's new length.
 */
static size_t
worker_access_time(struct worker *w, char *line, size_t n, size_t size,
    int64_t start_us)
{
	int64_t d;

	if (!w->cfg->server.access_log_time || n == 0 || line[n - 1] != '\n')
		return n;
	d = (worker_clock_us() - start_us) / 1000;
	if (d < 0 || start_us <= 0)
		d = 0;
	return n - 1 + worker_fmt_len(snprintf(line + n - 1, size - n + 1,
	    " %lld.%03lld\n", (long long)(d / 1000), (long long)(d % 1000)),
	    size - n + 1);
}

/*
 * A failed access-log write goes to the slot, not the error log: the
 * master says it for the whole fleet (master_access_judge).  Each worker
 * said its own first failure, so a full disk logged a line per recycle.
 */
static void
worker_access_report(int err, size_t lost)
{
	struct sb_slot *s = worker_self->slot;

	sb_begin(&s->w.seq);
	/* The last write's errno, 0 if it worked: the master's verdict. */
	s->w.access_errno = err;
	if (err == 0) {
		s->w.access_again++;
	} else {
		s->w.access_failed++;
		s->w.access_lost += lost;
	}
	sb_end(&s->w.seq);
}

void
worker_access_emit(struct worker *w, const char *text, size_t split,
    size_t len, uint64_t bytes, int64_t start_us)
{
	char line[4096];
	size_t n;

	n = worker_fmt_len(snprintf(line, sizeof(line), "%.*s%llu%.*s",
	    (int)split, text, (unsigned long long)bytes, (int)(len - split),
	    text + split), sizeof(line));
	log_access(line, worker_access_time(w, line, n, sizeof(line), start_us));
	worker_alog_arm(w);
}

static void
worker_access_log(struct worker *w, molt_request *req)
{
	static char when[40];
	static time_t when_sec;
	struct timeval tv;
	const char *ref = NULL, *ua = NULL, *colon, *host;
	char line[4096], t[1100], r[300], u[300];
	size_t hl, n, k;
	int held;

	event_base_gettimeofday_cached(w->base, &tv);
	if (tv.tv_sec != when_sec) {
		struct tm tm;

		gmtime_r(&tv.tv_sec, &tm);
		strftime(when, sizeof(when), "%d/%b/%Y:%H:%M:%S +0000", &tm);
		when_sec = tv.tv_sec;
	}
	if (req->method != NULL) {
		ref = molt_req_header(req, "Referer");
		ua = molt_req_header(req, "User-Agent");
	}
	/* The address without the port, and an IPv6 one without its
	 * brackets, as nginx's $remote_addr and Apache's %h write it; the
	 * client a trusted proxy named has neither. */
	if ((host = realip_text(req, 0)) != NULL) {
		hl = strlen(host);
	} else {
		host = conn_peer(req->conn);
		colon = strrchr(host, ':');
		if (host[0] == '[' && colon != NULL) {
			host++;
			colon--;
		}
		hl = colon && host[0] != 'u' ? (size_t)(colon - host) :
		    strlen(host);
	}
	if (req->method == NULL && req->target != NULL)
		/* A refused head: its first line as sent (conn_raw_line). */
		n = worker_fmt_len(snprintf(line, sizeof(line),
		    "%.*s - - [%s] \"%s\" %d ", (int)hl, host, when,
		    log_escape(req->target, t, sizeof(t)), req->status),
		    sizeof(line));
	else
		n = worker_fmt_len(snprintf(line, sizeof(line),
		    "%.*s - - [%s] \"%s %s HTTP/1.%d\" %d ", (int)hl, host,
		    when, req->method ? req->method : "-",
		    log_escape(req->target, t, sizeof(t)),
		    req->head.version == 10 ? 0 : 1, req->status), sizeof(line));
	/* A reply still going out: the line waits for its byte count. */
	held = conn_alog_held(req->conn);
	if (!held)
		n += worker_fmt_len(snprintf(line + n, sizeof(line) - n, "%llu",
		    (unsigned long long)req->bytes_out), sizeof(line) - n);
	k = worker_fmt_len(snprintf(line + n, sizeof(line) - n,
	    " \"%s\" \"%s\"\n", log_escape(ref, r, sizeof(r)),
	    log_escape(ua, u, sizeof(u))), sizeof(line) - n);
	if (held) {
		conn_alog_hold(req->conn, line, n, n + k, req->bytes_out,
		    req->start_us);
	} else {
		log_access(line, worker_access_time(w, line, n + k, sizeof(line),
		    req->start_us));
		worker_alog_arm(w);
	}
}

static void
worker_alog_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	(void)fd;
	(void)what;
	w->alog_armed = 0;
	log_access_flush();
}

/*
 * An eighth of the tighter memory limit, at least 1 MiB; 0 without one.
 * With max_fragmentation alone, fragmentation_min_rss is the limit: the
 * master weighs a fresh measure against the heap last reported, and a
 * request that filled the heap with memory it keeps, reported only at
 * the next sample, looked like a heap holding nothing (a recycle for
 * "fragmentation=1240.5 ... in use 30.2 kB" just after it ended).
 */
static void
worker_heap_hint_init(struct worker *w)
{
	const struct recycle_conf *rc = &w->cfg->recycle;
	long long lim = rc->max_rss;

	if (rc->hard_max_rss > 0 && (lim == 0 || rc->hard_max_rss < lim))
		lim = rc->hard_max_rss;
	if (lim == 0 && rc->max_fragmentation > 0)
		lim = rc->fragmentation_min_rss;
	w->brk_step = lim > 0 ? (uintptr_t)(lim / 8 > (1LL << 20) ? lim / 8 :
	    (1LL << 20)) : 0;
	w->brk_seen = (uintptr_t)sbrk(0);
}

/*
 * The master samples memory every sample_interval, and a burst of small
 * allocations can outgrow max_rss long before that.  The main heap's top
 * (sbrk(0) reads a variable, no syscall) is a free early warning: after
 * each step of growth the master is told, and it measures and judges
 * this worker at once.  Large blocks are mmap'ed and not seen here (nor
 * under jemalloc); the regular samples still cover them.
 */
static void
worker_heap_hint(struct worker *w, int32_t route)
{
	uintptr_t top = (uintptr_t)sbrk(0);

	if (top < w->brk_seen) {
		w->brk_seen = top;               /* trimmed */
	} else if (top - w->brk_seen >= w->brk_step && !w->draining) {
		w->brk_seen = top;
		/* The master weighs its fresh measure against these: the
		 * figures of the last sample, from before the growth, would
		 * make a heap in use look like one that holds nothing. */
		worker_publish_memory(w);
		/* The route to charge if this growth ends in a recycle: the
		 * request in flight when the master decides may be another. */
		__atomic_store_n(&w->slot->w.grew_route, route, __ATOMIC_RELAXED);
		master_notify(w->notify_fd, MSG_GROWN, w->slot_index);
	}
}

/*
 * Into the duration histogram.  Each count is one aligned word that only
 * this worker writes, which the status page reads whole (status_count);
 * a page between two of them sees the sum one request behind the counts.
 */
static uint64_t
worker_latency(struct sb_slot *s, const molt_request *req)
{
	int64_t d = worker_clock_us() - req->start_us;
	int i;

	if (d < 0)
		d = 0;
	for (i = 0; i < SB_LAT_BUCKETS - 1 && d > sb_lat_le_us[i]; i++)
		;
	s->lat.count[i]++;
	s->lat.sum_us += (uint64_t)d;
	return (uint64_t)d;
}

void
worker_handler_returned(struct worker *w)
{
	/*
	 * A crash or a stall from here on is not this handler's: a deferred
	 * request may still be pending, but what runs next is some callback,
	 * maybe another module's timer (master_culprit says so).
	 */
	w->slot->w.in_handler = 0;
	/*
	 * libevent arms timers from the time it read when this turn of the
	 * loop began.  A handler that kept the CPU for 400 ms leaves that
	 * time 400 ms behind, and a timer the next request of this turn arms
	 * (a module's deferred reply, a connection's timeout) would fire that
	 * much early.  One clock read per request (vDSO).
	 */
	event_base_update_cache_time(w->base);
}

void
worker_request_end(struct worker *w, molt_request *req)
{
	struct sb_slot *s = w->slot;
	int begun = req->resp_flags & RESP_BEGUN;
	uint64_t took;

	if (log_access_enabled())
		worker_access_log(w, req);
	if (w->brk_step > 0)
		worker_heap_hint(w, req->route != NULL &&
		    req->route->index < SB_ROUTES ? req->route->index : -1);
	w->requests++;
	if (begun)
		w->nactive--;
	req->resp_flags &= ~RESP_BEGUN;
	sb_begin(&s->w.seq);
	s->w.requests = w->requests;
	if (w->nactive == 0) {
		s->w.req_start_ms = 0;
	} else if (begun) {
		/* Name a request that is still running (bounded search). */
		struct conn *c;
		int n = 0;

		for (c = w->conns; c != NULL && n < 64; c = c->next, n++)
			if (&c->req != req && c->state == REQ_HANDLER &&
			    (c->req.resp_flags & RESP_BEGUN)) {
				worker_slot_request(s, &c->req);
				break;
			}
	}
	s->w.active = (uint32_t)w->nactive;
	if (w->nactive == 0)
		s->w.state = w->draining ? SB_DRAINING : SB_IDLE;
	sb_end(&s->w.seq);
	took = worker_latency(s, req);
	/* max_requests is exact: the master hears it now, not at its next
	 * sample.  It still checks the count in the scoreboard itself. */
	if (w->requests == w->req_limit && !w->draining)
		master_notify(w->notify_fd, MSG_LIMIT, w->slot_index);
	if (begun && req->route != NULL && req->route->index < SB_ROUTES) {
		struct sb_route_stats *rs = &s->routes[req->route->index];

		rs->requests++;
		rs->time_us += took;
		if (w->route_stats) {
			uint64_t cnt, bytes;
			int64_t in_use, growth;

			alloc_counters(&cnt, &bytes, &in_use);
			rs->allocs += cnt - req->alloc_count_mark;
			rs->alloc_bytes += bytes - req->alloc_mark;
			growth = in_use - (int64_t)req->in_use_mark;
			if (growth > rs->max_growth)
				rs->max_growth = growth;
		}
	}
}

/* ------------------------------------------------------------------ */
/* Stopping                                                            */

static void
worker_check_done(struct worker *w)
{
	char c;

	/* The last close and worker_start_drain itself both ask. */
	if (w->nconns != 0 || db_inflight() != 0 ||
	    event_base_got_break(w->base))
		return;
	/*
	 * On a stop, connections a recycled worker handed over just before
	 * may still wait in the handoff socket: whoever leaves last takes
	 * them (answering with Connection: close), so none is dropped
	 * unanswered.  Peeking does not take the descriptor.
	 */
	if (!w->handoff && w->adopt_ev != NULL &&
	    recv(handoff_fd(), &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0) {
		event_active(w->adopt_ev, EV_READ, 0);
		return;
	}
	if (!w->handoff && w->adopt_cpu_ev != NULL &&
	    recv(handoff_fd_cpu(w->cpu_index), &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0) {
		event_active(w->adopt_cpu_ev, EV_READ, 0);
		return;
	}
	log_debug("worker %d drained: %u connection(s) handed over", w->id,
	    w->handed_off);
	sb_begin(&w->slot->w.seq);
	w->slot->w.handed_off = w->handed_off;
	sb_end(&w->slot->w.seq);
	event_base_loopbreak(w->base);
}

static void
worker_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	(void)fd;
	(void)what;
	log_warn("worker %d: drain timeout after %lld ms; cutting off %d "
	    "connection(s) and %d request(s) in flight", w->id,
	    w->cfg->recycle.drain_timeout_ms, w->nconns, w->nactive);
	conn_close_all(w, "drain timeout");
	event_base_loopbreak(w->base);
}

static void
worker_start_drain(struct worker *w)
{
	struct timeval tv;
	int i;

	/* Hand idle connections over only when the master recycles us and
	 * live workers stay; on a stop (even one that came mid-drain) and on
	 * a reload they are closed. */
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	w->handoff = w->adopt_ev != NULL && !sb.hdr->stopping &&
	    w->slot->m.retiring == SB_RETIRE_HANDOFF;
	worker_adopt_enable(w, !w->handoff);
	if (w->draining) {
		conn_drain_all(w);
		return;
	}
	w->draining = 1;
	w->drain_start_ms = worker_now_ms(w);
	proctitle_set("molt: worker process %d (generation %u), draining",
	    w->id, w->generation);
	/* The master writes this line when it asks (master_log_drain). */
	if (getppid() != sb.hdr->master_pid)
		log_info("worker %d draining, the master is gone: %d "
		    "connection(s), %d request(s) in flight", w->id, w->nconns,
		    w->nactive);
	/* Queued connections are taken by the other workers on the socket. */
	worker_listen_enable(w, 0);
	if (w->foreign_ev != NULL)
		event_del(w->foreign_ev);
	for (i = 0; i < w->nls; i++) {
		if (w->ls[i].fd != -1)
			close(w->ls[i].fd);
		w->ls[i].fd = -1;
	}
	worker_slot_state(w);
	conn_drain_all(w);
	if (w->drain_hooks_ev != NULL)
		event_active(w->drain_hooks_ev, 0, 0);
	tv.tv_sec = w->cfg->recycle.drain_timeout_ms / 1000;
	tv.tv_usec = (w->cfg->recycle.drain_timeout_ms % 1000) * 1000;
	w->drain_ev = evtimer_new(w->base, worker_drain_timeout, w);
	if (w->drain_ev == NULL || evtimer_add(w->drain_ev, &tv) == -1)
		log_error("worker %d: cannot arm the drain timer", w->id);
	worker_check_done(w);
}

/* The memory figures of this worker's slot; inside sb_begin/sb_end. */
static void
worker_put_memory(struct worker *w, uint64_t in_use, uint64_t held,
    uint64_t fr)
{
	w->slot->w.conn_memory = slab_mapped(&w->conn_slab);
	w->slot->w.heap_in_use = in_use;
	w->slot->w.heap_held = held;
	w->slot->w.heap_free = fr;
	w->slot->w.sampled_ms = worker_now_ms(w);
}

/* The master asks for a trim before it considers a recycle. */
static void
worker_trim(struct worker *w)
{
	uint64_t u0, h0, f0, u1, h1, f1, back;

	alloc_sample(&u0, &h0, &f0);
	alloc_trim();
	back = slab_trim(&w->conn_slab);
	alloc_sample(&u1, &h1, &f1);
	sb_begin(&w->slot->w.seq);
	w->slot->w.trims++;
	w->slot->w.trim_reclaimed += (h0 > h1 ? h0 - h1 : 0) + back;
	w->slot->w.trim_seen = w->slot->m.trim_request;
	worker_put_memory(w, u1, h1, f1);
	sb_end(&w->slot->w.seq);
	master_notify(w->notify_fd, MSG_TRIMMED, w->slot_index);
}

/*
 * The signals are only a doorbell: what the master asks is also in this
 * worker's slot (a trim request count, retiring), written before the
 * signal.  Module code can ignore, block or take over SIGUSR2 and SIGQUIT
 * (signal(2), sigprocmask(2), a library that installs its own handlers),
 * and then a trim went unanswered, which left the master waiting for it
 * with the worker exempt from max_rss and max_fragmentation for good, and
 * a recycle or a stop never started the drain: the worker went on
 * accepting until the master's backstop killed it with whatever it had in
 * flight.  So every sample_interval the worker also reads the slot, and
 * acts on a request it already saw unanswered at the previous sample: a
 * signal can be on its way (or caught and not yet dispatched, if this
 * timer runs first in the loop turn) when the slot already says so.
 */
static void
worker_doorbell(struct worker *w)
{
	uint32_t asked = __atomic_load_n(&w->slot->m.trim_request,
	    __ATOMIC_RELAXED);
	int retire = __atomic_load_n(&w->slot->m.retiring,
	    __ATOMIC_RELAXED) != 0 && !w->draining;

	if (asked == w->slot->w.trim_seen) {
		w->bell_trim = asked;
	} else if (asked != w->bell_trim) {
		w->bell_trim = asked;   /* new: the signal may be on its way */
	} else {
		log_warn("worker %d: a trim was asked for and no SIGUSR2 came "
		    "(module code ignores or blocks it?); trimming now", w->id);
		worker_trim(w);
	}
	if (retire && w->bell_retire) {
		log_warn("worker %d: asked to drain and no SIGQUIT came (module "
		    "code ignores or blocks it?); draining now", w->id);
		worker_start_drain(w);
	}
	w->bell_retire = retire;
}

/*
 * A SIGQUIT the master did not send (it writes retiring first, and sets
 * stopping before a stop): an operator recycling this worker by hand.
 * Draining at once would leave its share of the clients to the others
 * until the master noticed the exit and started another, so the master
 * is asked to recycle it as it does for a limit: the replacement first,
 * then the drain, idle connections handed over.  So for SIGXCPU: the
 * worker passed its soft CPU time limit (RLIMIT_CPU, systemd's
 * LimitCPU=soft:hard), whose default action killed it with whatever it
 * had in flight; a fresh process starts with none used.  Returns 1 if
 * asked; 0 if not: the master's own SIGQUIT, or the master is gone (the
 * parent-death signal is SIGQUIT too), or the worker is going already.
 */
static int
worker_ask_recycle(struct worker *w, int sig)
{
	uint32_t none = 0;

	if (w->draining || sb.hdr->stopping ||
	    __atomic_load_n(&w->slot->m.retiring, __ATOMIC_ACQUIRE) != 0 ||
	    getppid() != sb.hdr->master_pid)
		return 0;
	/* The first reason stays: it is the one logged. */
	if (__atomic_compare_exchange_n(&w->slot->w.asked_recycle, &none,
	    (uint32_t)sig, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		log_info("worker %d: %s: asking the master to recycle this "
		    "worker", w->id, sig == SIGXCPU ? "SIGXCPU, over its CPU "
		    "time limit (RLIMIT_CPU)" : "SIGQUIT, not from the master");
	master_notify(w->notify_fd, MSG_RECYCLE, w->slot_index);
	return 1;
}

/* What worker_signal_cb handles; one event each in struct worker. */
static const int worker_sigs[] = { SIGTERM, SIGINT, SIGQUIT, SIGUSR1,
    SIGUSR2, SIGURG, SIGXCPU };
_Static_assert(sizeof(worker_sigs) / sizeof(worker_sigs[0]) == WORKER_NSIGS,
    "struct worker has one sig_ev per signal");

static void
worker_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct worker *w = arg;

	(void)what;
	switch (sig) {
	case SIGTERM:
	case SIGINT:
		/* For the master's line when it reaps us: not a crash. */
		__atomic_store_n(&w->slot->w.exit_signal, (int32_t)sig,
		    __ATOMIC_RELAXED);
		w->exiting = 1;
		event_base_loopbreak(w->base);
		break;
	case SIGQUIT:
		if (worker_ask_recycle(w, SIGQUIT))
			break;
		worker_start_drain(w);
		break;
	case SIGUSR1:
		if (log_reopen() == -1) {
			log_error("worker %d: reopening the logs failed", w->id);
			master_notify(w->notify_fd, MSG_REOPEN_FAILED,
			    w->slot_index);
		} else {
			log_info("worker %d reopened the logs", w->id);
		}
		break;
	case SIGUSR2:
		worker_trim(w);
		break;
	case SIGURG:
		/* Another worker stopped listening: what is queued may be ours. */
		worker_foreign_update(w);
		worker_accept_all(w, 0);
		break;
	case SIGXCPU:
		/* Again every second past the soft limit: asked once. */
		worker_ask_recycle(w, SIGXCPU);
		break;
	}
}

/* The allocator's figures into the slot, for the master to judge by. */
static void
worker_publish_memory(struct worker *w)
{
	uint64_t in_use, held, fr;

	if (alloc_sample(&in_use, &held, &fr) == -1)
		return;
	sb_begin(&w->slot->w.seq);
	w->slot->w.allocator = (uint32_t)alloc_kind();
	w->slot->w.mallocs = -1;
	if (w->route_stats && alloc_kind() == SB_ALLOC_GLIBC) {
		uint64_t cnt, bytes;
		int64_t iu;

		alloc_counters(&cnt, &bytes, &iu);
		w->slot->w.mallocs = (int64_t)cnt;
	}
	worker_put_memory(w, in_use, held, fr);
	sb_end(&w->slot->w.seq);
}

static void
worker_sample_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	(void)fd;
	(void)what;
	/* The master's proof that this loop still turns (master_stalled). */
	w->slot->w.beat_ms = sb_clock_ms();
	worker_doorbell(w);
	worker_publish_memory(w);
	/* Not inside: that gives up where the allocator says nothing. */
	db_publish(w->slot->dbs, SB_DBS);
}

void
worker_db_settled(void)
{
	if (worker_self != NULL && worker_self->draining)
		worker_check_done(worker_self);
}

/* ------------------------------------------------------------------ */
/* Start-up                                                            */

/*
 * Switches to [server] user and group.  Workers do it before they load a
 * module, and so does the validator (master.c), so that a module file or
 * directory the workers cannot read is refused where the config is
 * checked, not by every worker in a crash loop.  Returns 0, or -1 with
 * the reason in err at the key's file:line.
 */
int
worker_drop_privileges(struct molt_config *cfg, struct conf_error *err)
{
	const struct server_conf *sc = &cfg->server;
	struct passwd *pw = NULL;
	struct group *gr = NULL;
	const char *key = sc->user != NULL ? "user" : "group";
	gid_t gid;

	if (sc->user == NULL && sc->group == NULL)
		return 0;
	if (geteuid() != 0) {
		log_warn("user/group set but molt is not running as root; "
		    "workers keep uid %d", (int)geteuid());
		return 0;
	}
	if (sc->user != NULL && (pw = getpwnam(sc->user)) == NULL) {
		conf_server_errorf(cfg, "user", err, "unknown user '%s'",
		    sc->user);
		return -1;
	}
	if (sc->group != NULL && (gr = getgrnam(sc->group)) == NULL) {
		conf_server_errorf(cfg, "group", err, "unknown group '%s'",
		    sc->group);
		return -1;
	}
	gid = gr ? gr->gr_gid : pw->pw_gid;
	if (setgroups(0, NULL) == -1 && (pw == NULL ||
	    initgroups(pw->pw_name, gid) == -1)) {
		conf_server_errorf(cfg, key, err, "setgroups: %s",
		    strerror(errno));
		return -1;
	}
	if (pw != NULL && initgroups(pw->pw_name, gid) == -1) {
		conf_server_errorf(cfg, key, err, "initgroups(%s): %s",
		    pw->pw_name, strerror(errno));
		return -1;
	}
	if (setresgid(gid, gid, gid) == -1) {
		conf_server_errorf(cfg, key, err, "setresgid(%d): %s",
		    (int)gid, strerror(errno));
		return -1;
	}
	if (pw != NULL && setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) == -1) {
		conf_server_errorf(cfg, key, err, "setresuid(%s): %s",
		    pw->pw_name, strerror(errno));
		return -1;
	}
	/*
	 * The switch leaves the process undumpable: no core, and /proc/PID
	 * owned by root, so that no other process of this user (nobody is
	 * shared by many daemons) can read the worker's memory, database
	 * passwords included.  core_dumps trades that for a core.
	 */
	if (sc->core_dumps && prctl(PR_SET_DUMPABLE, 1) == -1)
		log_warn("core_dumps: PR_SET_DUMPABLE: %s", strerror(errno));
	return 0;
}

/*
 * What a starting worker is doing in module code, in its slot, where the
 * master reads it if the worker dies there: "killed by signal 11 during
 * start-up" alone does not say which module to blame.  NULL: done.
 */
static void
worker_slot_step(struct worker *w, const char *hook, const char *module,
    const char *route)
{
	struct sb_slot *s = w->slot;

	if (s == NULL)
		return;             /* the check's trial has no slot */
	sb_begin(&s->w.seq);
	if (hook == NULL)
		s->w.req_line[0] = '\0';
	else if (route == NULL)
		worker_join(s->w.req_line, sizeof(s->w.req_line), "the ", hook,
		    " hook of module ", module, NULL);
	else
		worker_join(s->w.req_line, sizeof(s->w.req_line), "the ", hook,
		    " hook of module ", module, " for [route ", route, "]", NULL);
	sb_end(&s->w.seq);
}

static int
worker_init_modules(struct worker *w)
{
	struct conf_error err;
	struct module *m;
	int i;

	/* Copies of a reload being checked right now are not ours. */
	module_unstage_all();
	memset(&err, 0, sizeof(err));
	if (module_check_all(w->cfg, &w->modules, &err) == -1) {
		log_error("%s:%d: %s", err.file, err.line, err.msg);
		return -1;
	}
	for (m = w->modules; m != NULL; m = m->next) {
		if (m->m->worker_init == NULL)
			continue;
		worker_slot_step(w, "worker_init", m->name, NULL);
		if (m->m->worker_init((molt_worker *)w) != 0) {
			log_error("module %s: worker_init failed in worker %d",
			    m->name, w->id);
			return -1;
		}
	}
	if (worker_build_routes(w) == -1)
		return -1;
	for (i = 0; i < w->nroutes; i++) {
		struct wroute *r = &w->routes[i];

		if (r->mod->route_init != NULL) {
			worker_slot_step(w, "route_init", r->mod->name, r->prefix);
			if (r->mod->route_init((molt_worker *)w, r->conf,
			    &r->data) != 0) {
				log_error("module %s: route_init failed for route %s",
				    r->mod->name, r->prefix);
				return -1;
			}
		}
		r->inited = 1;
	}
	worker_slot_step(w, NULL, NULL, NULL);
	return 0;
}

static void
worker_exit_modules(struct worker *w)
{
	struct module *m;
	int i;

	for (i = 0; i < w->nroutes; i++)
		if (w->routes[i].inited && w->routes[i].mod->route_exit != NULL)
			w->routes[i].mod->route_exit((molt_worker *)w,
			    w->routes[i].data);
	for (m = w->modules; m != NULL; m = m->next)
		if (m->m->worker_exit != NULL)
			m->m->worker_exit((molt_worker *)w);
}

/*
 * A base that ignores libevent's EVENT_* environment variables: a worker
 * must not change its backend with its environment, and reading each one
 * costs four id syscalls (libevent's setuid check), sixteen per worker
 * start, which a recycle pays every time.
 */
static struct event_base *
worker_event_base(struct worker *w)
{
	struct event_config *ec;
	struct event_base *base;
	int probe;

	if ((ec = event_config_new()) == NULL)
		return NULL;
	if (event_config_set_flag(ec, EVENT_BASE_FLAG_IGNORE_ENV) == -1) {
		event_config_free(ec);
		return NULL;
	}
	/* The epoll backend's first descriptor will be the lowest free one
	 * (worker_listen_exclusive checks that before relying on it). */
	if ((probe = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 0)) != -1)
		close(probe);
	base = event_base_new_with_config(ec);
	event_config_free(ec);
	w->epfd = -1;
	if (base != NULL && probe != -1 &&
	    strcmp(event_base_get_method(base), "epoll") == 0 &&
	    (event_get_version_number() & 0xffff0000) == 0x02010000)
		w->epfd = probe;
	return base;
}

/* FILE and LINE of the first route of module (or with prefix) for a
 * message; the status route, which no section names, gets the file. */
static void
worker_trial_where(const struct molt_config *cfg, const char *module,
    const char *prefix, const char **file, int *line)
{
	const struct route_conf *rc;

	for (rc = cfg->routes; rc != NULL; rc = rc->next)
		if (module != NULL ? strcmp(rc->module, module) == 0 :
		    strcmp(rc->prefix, prefix) == 0)
			break;
	*file = rc != NULL ? rc->section->file : cfg->path;
	*line = rc != NULL ? rc->section->line : 0;
}

/*
 * The module check's trial of a start (master_validator): the init hooks
 * of the modules just checked, then their exit hooks, as a worker runs
 * them, in a worker of no generation that never accepts.  A check that
 * ran only the check hooks accepted a reload whose worker_init failed:
 * each old worker that ended was replaced by one that could not start,
 * until none served.  Runs as user, after the check hooks.
 */
int
worker_trial(struct molt_config *cfg, struct module *mods,
    struct conf_error *err)
{
	struct worker w;
	struct module *m;
	const char *file;
	int i, line;

	memset(&w, 0, sizeof(w));
	w.cfg = cfg;
	w.modules = mods;
	w.in_check = 1;
	w.slot_index = -1;
	w.cpu = w.cpu_index = w.epfd = -1;
	if ((w.base = worker_event_base(&w)) == NULL) {
		conf_errorf(err, cfg->path, 0, "event_base_new failed in the "
		    "module check");
		return -1;
	}
	worker_init_timeouts(&w);
	/* molt_worker_base(NULL) and the like mean this worker here too. */
	worker_self = &w;
	for (m = mods; m != NULL; m = m->next) {
		if (m->m->worker_init == NULL)
			continue;
		worker_trial_where(cfg, m->name, NULL, &file, &line);
		module_step(file, line, "in the worker_init hook of module %s "
		    "(run once in the check, as each worker runs it)", m->name);
		if (m->m->worker_init((molt_worker *)&w) != 0) {
			conf_errorf(err, file, line, "module %s: worker_init failed "
			    "(run once in the check): no worker could start",
			    m->name);
			goto fail;
		}
	}
	if (worker_build_routes(&w) == -1) {
		conf_errorf(err, cfg->path, 0, "out of memory in the module check");
		goto fail;
	}
	for (i = 0; i < w.nroutes; i++) {
		struct wroute *r = &w.routes[i];

		if (r->mod->route_init == NULL) {
			r->inited = 1;      /* its route_exit runs, as in a worker */
			continue;
		}
		worker_trial_where(cfg, NULL, r->prefix, &file, &line);
		module_step(file, line, "in the route_init hook of module %s for "
		    "[route %s] (run once in the check, as each worker runs it)",
		    r->mod->name, r->prefix);
		if (r->mod->route_init((molt_worker *)&w, r->conf, &r->data) != 0) {
			conf_errorf(err, file, line, "[route %s] module %s: "
			    "route_init failed (run once in the check): no worker "
			    "could start", r->prefix, r->mod->name);
			goto fail;
		}
		r->inited = 1;
	}
	module_step(NULL, 0, "in a route_exit or worker_exit hook (run once "
	    "in the check, as each draining worker runs them)");
	worker_exit_modules(&w);
	module_step_clear();
	worker_self = NULL;
	free(w.routes);
	if (w.drain_hooks_ev != NULL)   /* a module's molt_worker_on_drain */
		event_free(w.drain_hooks_ev);
	event_base_free(w.base);
	return 0;
fail:
	module_step_clear();
	worker_self = NULL;
	free(w.routes);
	if (w.drain_hooks_ev != NULL)   /* a module's molt_worker_on_drain */
		event_free(w.drain_hooks_ev);
	event_base_free(w.base);
	return -1;
}

static int
worker_listen(struct worker *w)
{
	struct listen_addr *la;
	struct listen_sock *l;
	int n = 0, i = 0, k, foreign = 0;

	for (la = w->cfg->server.listen; la != NULL; la = la->next)
		n += 1 + la->ncpu;
	w->ls = calloc((size_t)n, sizeof(*w->ls));
	if (w->ls == NULL)
		return -1;
	for (la = w->cfg->server.listen; la != NULL; la = la->next) {
		for (k = -1; k < la->ncpu; k++, i++) {
			l = &w->ls[i];
			l->fd = k < 0 ? la->fd : la->cpu_fd[k];
			l->cpu = k;
			l->foreign = k >= 0 && k != w->cpu_index;
			l->w = w;
			foreign |= l->foreign;
			event_assign(&l->ev, w->base, l->fd, EV_READ | EV_PERSIST,
			    worker_accept_cb, l);
		}
	}
	w->nls = n;
	if (foreign) {
		struct timeval tv = { 0, FOREIGN_CHECK_MS * 1000 };

		w->foreign_ev = event_new(w->base, -1, EV_PERSIST,
		    worker_foreign_cb, w);
		if (w->foreign_ev == NULL || event_add(w->foreign_ev, &tv) == -1) {
			log_error("worker %d: cannot create the CPU socket timer",
			    w->id);
			return -1;
		}
	}
	return 0;
}

/*
 * worker_cpu_affinity = auto: worker N runs on the Nth of the CPUs it may
 * use (modulo their count), as nginx's does.  Its loop then keeps its
 * caches, and it is not moved between CPUs hundreds of times a second
 * under load; a replacement takes its predecessor's CPU.  The CPUs are
 * those the master was allowed (taskset, a cgroup's cpuset), not all the
 * machine's: the same list listen.c gives each a socket from.
 */
static void
worker_pin(struct worker *w)
{
	static int cpus[CPU_SETSIZE];
	static int16_t index_of[CPU_SETSIZE];
	cpu_set_t one;
	int n, k;

	if ((n = listen_cpus(cpus, CPU_SETSIZE)) <= 0) {
		log_warn("worker %d: worker_cpu_affinity: sched_getaffinity: %s",
		    w->id, strerror(errno));
		return;
	}
	for (k = 0; k < CPU_SETSIZE; k++)
		index_of[k] = -1;
	for (k = 0; k < n; k++)
		if (cpus[k] >= 0 && cpus[k] < CPU_SETSIZE)
			index_of[cpus[k]] = (int16_t)k;
	w->cpu_index_of = index_of;
	k = w->id % n;
	w->ncpus = n;
	w->cpu_index = k;
	w->cpu = cpus[k];
	CPU_ZERO(&one);
	CPU_SET(cpus[k], &one);
	if (sched_setaffinity(0, sizeof(one), &one) == -1)
		log_warn("worker %d: worker_cpu_affinity: sched_setaffinity(CPU "
		    "%d): %s", w->id, cpus[k], strerror(errno));
	else
		log_debug("worker %d runs on CPU %d", w->id, cpus[k]);
}

void
worker_main(struct molt_config *cfg, int id, int slot_index,
    unsigned generation, int notify_fd, uint64_t req_limit)
{
	static struct worker wk;
	struct worker *w = &wk;
	struct sb_slot *s = &sb.slots[slot_index];
	struct conf_error err;
	struct timeval tv;
	uint64_t start_cpu_us;
	size_t i;
	int rc = 1;

	/* Before any module runs here; unprotected (logged), it still works. */
	(void)scoreboard_protect(slot_index);
	proctitle_set("molt: worker process %d (generation %u)", id, generation);
	w->cfg = cfg;
	w->id = id;
	w->stuck_least = -1;
	s->w.defer_until_ms = 0;
	w->slot_index = slot_index;
	w->generation = generation;
	w->slot = s;
	w->notify_fd = notify_fd;
	w->req_limit = req_limit;
	w->nofile = worker_nofile();
	/* Before the first allocation: memory comes from the CPU's node. */
	w->cpu_index = w->cpu = -1;
	if (cfg->server.cpu_affinity)
		worker_pin(w);
	slab_init(&w->conn_slab, sizeof(struct conn),
	    cfg->server.conn_hugepages);
	worker_self = w;

	/* A terminal hangup is for the master (reload), not for us. */
	signal(SIGHUP, SIG_IGN);

	sb_begin(&s->w.seq);
	memset((char *)&s->w + sizeof(s->w.seq), 0, sizeof(s->w) - sizeof(s->w.seq));
	s->w.state = SB_STARTING;
	s->w.pid = getpid();
	s->w.generation = generation;
	s->w.req_route = -1;
	s->w.grew_route = -1;
	s->w.cpu = w->cpu;
	/* The slot's count goes on from its last worker's. */
	s->w.trim_seen = s->m.trim_request;
	w->bell_trim = s->w.trim_seen;
	sb_end(&s->w.seq);
	memset(s->routes, 0, sizeof(s->routes));
	memset(&s->lat, 0, sizeof(s->lat));
	log_access_use(sb_access(slot_index), SB_ACCESS_BUF, &s->w.access_len);
	log_access_report(worker_access_report);

	memset(&err, 0, sizeof(err));
	if (worker_drop_privileges(cfg, &err) == -1) {
		log_error("%s:%d: %s", err.file, err.line, err.msg);
		goto out;
	}
	/*
	 * If the master dies, finish what is in flight and go.  Set after
	 * the switch of user, which clears it; a master that died before
	 * sent nothing, so the worker sends it itself (held until the
	 * signal events exist, like any stop signal since the fork).
	 */
	if (prctl(PR_SET_PDEATHSIG, SIGQUIT) == -1)
		log_warn("PR_SET_PDEATHSIG: %s", strerror(errno));
	if (getppid() != sb.hdr->master_pid && raise(SIGQUIT) != 0)
		log_warn("raise(SIGQUIT): %s", strerror(errno));
	/* jemalloc counts for free; with glibc our malloc wrapper counts. */
	if (cfg->status.route_stats && alloc_kind() == SB_ALLOC_GLIBC)
		alloc_count_enable(1);
	w->route_stats = cfg->status.route_stats && alloc_counting();
	if ((w->base = worker_event_base(w)) == NULL) {
		log_error("worker %d: event_base_new failed", id);
		goto out;
	}
	worker_init_timeouts(w);
	if (worker_init_modules(w) == -1)
		goto out;
	if (db_worker_init(cfg, w->base) == -1)
		goto out;
	if (worker_listen(w) == -1)
		goto out;
	for (i = 0; i < WORKER_NSIGS; i++) {
		w->sig_ev[i] = evsignal_new(w->base, worker_sigs[i],
		    worker_signal_cb, w);
		if (w->sig_ev[i] == NULL || evsignal_add(w->sig_ev[i], NULL) == -1) {
			log_error("worker %d: cannot watch signal %d", id,
			    worker_sigs[i]);
			goto out;
		}
	}
	/* Stop signals sent since the fork were held for us; take them now. */
	master_child_unblock();
	if (handoff_fd() >= 0 && ((w->adopt_ev = event_new(w->base, handoff_fd(),
	    EV_READ | EV_PERSIST, worker_adopt_cb, w)) == NULL ||
	    (w->adopt_defer_ev = evtimer_new(w->base, worker_adopt_defer_cb,
	    w)) == NULL)) {
		log_error("worker %d: cannot watch the handoff socket", w->id);
		goto out;
	}
	if (handoff_fd_cpu(w->cpu_index) >= 0 && (w->adopt_cpu_ev = event_new(
	    w->base, handoff_fd_cpu(w->cpu_index), EV_READ | EV_PERSIST,
	    worker_adopt_cpu_cb, w)) == NULL) {
		log_error("worker %d: cannot watch its CPU's handoff socket", w->id);
		goto out;
	}
	for (i = 0; w->adopt_cpu_ev != NULL && i < (size_t)w->ncpus; i++)
		if ((int)i != w->cpu_index && handoff_fd_cpu((int)i) >= 0)
			w->follow = 1;
	w->accept_retry_ev = evtimer_new(w->base, worker_accept_retry, w);
	w->accept_defer_ev = evtimer_new(w->base, worker_accept_defer_cb, w);
	worker_heap_hint_init(w);
	if (log_access_enabled() && cfg->server.access_log_flush_ms > 0 &&
	    (w->alog_ev = evtimer_new(w->base, worker_alog_cb, w)) == NULL) {
		log_error("worker %d: cannot create the access log timer", id);
		goto out;
	}
	w->sample_ev = event_new(w->base, -1, EV_PERSIST, worker_sample_cb, w);
	tv.tv_sec = cfg->recycle.sample_interval_ms / 1000;
	tv.tv_usec = (cfg->recycle.sample_interval_ms % 1000) * 1000;
	if (w->accept_retry_ev == NULL || w->accept_defer_ev == NULL ||
	    w->sample_ev == NULL ||
	    event_add(w->sample_ev, &tv) == -1) {
		log_error("worker %d: cannot create timers", id);
		goto out;
	}
	worker_sample_cb(-1, 0, w);
	worker_listen_enable(w, 1);
	worker_foreign_update(w);
	worker_adopt_enable(w, 1);

	/*
	 * What this start cost, for the operator weighing max_requests: a
	 * forked child's CPU clock starts at zero, so this is everything
	 * from the fork on, the kernel's share included.
	 */
	start_cpu_us = worker_cpu_us();
	sb_begin(&s->w.seq);
	s->w.state = SB_IDLE;
	s->w.start_ms = worker_now_ms(w);
	s->w.start_cpu_us = start_cpu_us;
	sb_end(&s->w.seq);
	/* The master says so in the log (master_log_ready). */
	master_notify(notify_fd, MSG_READY, slot_index);

	if (event_base_dispatch(w->base) == -1)
		log_error("worker %d: event loop failed", id);

	if (w->exiting) {
		/* Fast stop: no hooks, no waiting. */
		conn_alog_release_all(w);
		log_access_flush();
		_exit(0);
	}
	worker_exit_modules(w);
	/* The last figures, for the master's totals (master_retire_stats). */
	db_publish(s->dbs, SB_DBS);
	db_worker_exit();
	rc = 0;
out:
	log_access_flush();
	sb_begin(&s->w.seq);
	s->w.state = SB_EXITED;
	/* The master takes this from the CPU wait4 reports: what exit (the
	 * handlers, the destructors, the kernel's teardown) cost. */
	s->w.exit_cpu_us = worker_cpu_us();
	sb_end(&s->w.seq);
	exit(rc);
}
