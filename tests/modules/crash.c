/*
 * crash.c - a test module that kills its worker on request, so the tests
 * can watch the master notice and replace it, or stalls it.
 *
 *   /segv  SIGSEGV from a write through NULL
 *   /abort abort(), SIGABRT
 *   /exit  exit(3)
 *   /ok    "ok\n"
 *   /pid   the worker's pid, "1234\n"
 *   /block?ms=N  holds the whole worker for N ms (a blocking handler:
 *          nothing else on that worker runs meanwhile), then "ok\n"
 *   /later?ms=N  "ok\n" now, and SIGSEGV N ms later from a timer of its
 *          own, outside any handler
 *
 * And, as a careless C or C++ module would, it has an ELF destructor that
 * assumes worker_init ran: it crashes where that is not so (the master
 * unloading it at a reload) while a file "crash-at-unload" exists in the
 * current directory.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include <molt/module.h>

static void
crash_block(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static void
crash_segv(void)
{
	/*
	 * The default action, so the master sees "killed by signal 11"
	 * also in sanitizer builds, whose SEGV handler would turn the
	 * fault into a report and exit(1).
	 */
	signal(SIGSEGV, SIG_DFL);
	*(volatile int *)(volatile void *)0 = 1;
	raise(SIGSEGV);         /* if the write somehow did not fault */
	_exit(111);
}

static void
crash_later_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	crash_segv();
}

static int
crash_handle(molt_request *req)
{
	const char *pi = molt_req_path_info(req);
	char buf[32];
	int n;

	if (pi == NULL)
		pi = "";
	if (*pi == '/')
		pi++;

	if (strcmp(pi, "segv") == 0)
		crash_segv();
	if (strcmp(pi, "later") == 0) {
		const char *v = molt_req_param(req, "ms");
		long ms = v != NULL ? strtol(v, NULL, 10) : 0;
		struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

		if (ms < 0 || ms > 60000 ||
		    event_base_once(molt_worker_base(molt_req_worker(req)), -1,
		    EV_TIMEOUT, crash_later_cb, NULL, &tv) == -1)
			return molt_reply_error(req, 400, "crash: bad ms");
		return molt_reply(req, 200, "text/plain", "ok\n", 3);
	}
	if (strcmp(pi, "abort") == 0)
		abort();
	if (strcmp(pi, "exit") == 0)
		exit(3);
	if (strcmp(pi, "ok") == 0)
		return molt_reply(req, 200, "text/plain", "ok\n", 3);
	if (strcmp(pi, "block") == 0) {
		const char *v = molt_req_param(req, "ms");
		long ms = v != NULL ? strtol(v, NULL, 10) : 0;

		if (ms < 0 || ms > 60000)
			return molt_reply_error(req, 400, "crash: bad ms");
		crash_block(ms);
		return molt_reply(req, 200, "text/plain", "ok\n", 3);
	}
	if (strcmp(pi, "pid") == 0) {
		n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
		return molt_reply(req, 200, "text/plain", buf, (size_t)n);
	}
	return molt_reply_error(req, 404, "crash: unknown action");
}

static int crash_inited;

static int
crash_worker_init(molt_worker *w)
{
	(void)w;
	crash_inited = 1;
	return 0;
}

__attribute__((destructor)) static void
crash_at_unload(void)
{
	if (!crash_inited && access("crash-at-unload", F_OK) == 0)
		crash_segv();
}

MOLT_EXPORT const struct molt_module molt_module = {
	MOLT_MODULE_HEADER,
	.name        = "crash",
	.version     = "1.0",
	.description = "test: crashes its worker on request",
	.worker_init = crash_worker_init,
	.handle      = crash_handle,
};
