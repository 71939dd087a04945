/*
 * initfail.c - a test module whose worker start-up fails while key `fail`
 * is on (which the configuration check sees, as it runs the init hooks
 * once), or while the file named by `fail_while` exists (which it does
 * not see if the file appears later), or crashes while the file named
 * by `crash_while` exists, so the tests can watch the master
 * back off instead of forking in a tight loop; and takes `delay` first,
 * so they can act while a worker is still starting, and `check_delay` in
 * the configuration check, so they can act while a reload is being
 * checked.
 *
 * worker_init has no access to configuration in ABI 1.0 (it gets only
 * the worker), so the key is read in route_init, which runs right after
 * it during the same start-up and fails the worker in the same way.
 * worker_init itself only logs, to show the order.
 */
#include <errno.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <molt/module.h>

static const struct molt_conf_key initfail_keys[] = {
	{ "fail", MOLT_CONF_BOOL, MOLT_CONF_MODULE | MOLT_CONF_ROUTE, "on",
	  "fail every worker's start-up" },
	{ "fail_while", MOLT_CONF_STRING, MOLT_CONF_MODULE | MOLT_CONF_ROUTE, "",
	  "fail every worker's start-up while this file exists" },
	{ "crash_while", MOLT_CONF_STRING, MOLT_CONF_MODULE | MOLT_CONF_ROUTE, "",
	  "crash every worker's start-up while this file exists" },
	{ "delay", MOLT_CONF_DURATION, MOLT_CONF_MODULE | MOLT_CONF_ROUTE, "0",
	  "how long each worker's start-up takes" },
	{ "check_delay", MOLT_CONF_DURATION, MOLT_CONF_MODULE | MOLT_CONF_ROUTE, "0",
	  "how long the configuration check takes" },
	{ NULL, 0, 0, NULL, NULL },
};

static void
initfail_sleep(long long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static int
initfail_check(const molt_conf *conf, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	initfail_sleep(molt_conf_int(conf, "check_delay"));   /* in ms */
	return 0;
}

static int
initfail_worker_init(molt_worker *w)
{
	/* NULL is "this worker", in the check's run too. */
	molt_log(MOLT_LOG_INFO, "initfail: worker_init in worker %d%s",
	    molt_worker_id(NULL), molt_worker_in_check(w) ? " (the check)" : "");
	return 0;
}

static int
initfail_route_init(molt_worker *w, const molt_conf *conf, void **data)
{
	const char *flag = molt_conf_str(conf, "fail_while"), *crash;

	(void)data;
	initfail_sleep(molt_conf_int(conf, "delay"));   /* in ms */
	if (molt_conf_bool(conf, "fail")) {
		molt_log(MOLT_LOG_ERROR, "initfail: failing start-up of worker "
		    "%d on purpose (fail = on)", molt_worker_id(w));
		return -1;
	}
	if ((crash = molt_conf_str(conf, "crash_while")) != NULL &&
	    *crash != '\0' && access(crash, F_OK) == 0)
		raise(SIGSEGV);
	if (flag != NULL && *flag != '\0' && access(flag, F_OK) == 0) {
		molt_log(MOLT_LOG_ERROR, "initfail: failing start-up of worker "
		    "%d on purpose (%s exists)", molt_worker_id(w), flag);
		return -1;
	}
	return 0;
}

static int
initfail_handle(molt_request *req)
{
	return molt_reply(req, 200, "text/plain", "initfail ok\n", 12);
}

MOLT_EXPORT const struct molt_module molt_module = {
	MOLT_MODULE_HEADER,
	.name        = "initfail",
	.version     = "1.0",
	.description = "test: fails worker start-up while fail = on",
	.conf_keys   = initfail_keys,
	.check       = initfail_check,
	.worker_init = initfail_worker_init,
	.route_init  = initfail_route_init,
	.handle      = initfail_handle,
};
