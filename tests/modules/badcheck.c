/*
 * badcheck.c - a test module whose configuration check misbehaves as
 * key `action` says, so the tests can watch the validator contain it:
 *
 *   none          accepts
 *   hang          never returns
 *   crash         SIGSEGV
 *   exit          exit(0): the process ends, as if all were well
 *   unterminated  refuses, filling the whole message buffer with 'A' and
 *                 no terminating NUL
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <molt/module.h>

static const struct molt_conf_key badcheck_keys[] = {
	{ "action", MOLT_CONF_STRING, MOLT_CONF_MODULE | MOLT_CONF_ROUTE, "none",
	  "none, hang, crash, exit or unterminated" },
	{ NULL, 0, 0, NULL, NULL },
};

static int
badcheck_check(const molt_conf *conf, char *err, size_t errlen)
{
	const char *action = molt_conf_str(conf, "action");

	if (strcmp(action, "hang") == 0)
		for (;;)
			pause();
	if (strcmp(action, "crash") == 0) {
		/* The default action, as in crash.c: a real signal 11 also in
		 * sanitizer builds. */
		signal(SIGSEGV, SIG_DFL);
		*(volatile int *)(volatile void *)0 = 1;
		raise(SIGSEGV);
		_exit(111);
	}
	if (strcmp(action, "exit") == 0)
		exit(0);
	if (strcmp(action, "unterminated") == 0) {
		memset(err, 'A', errlen);
		return -1;
	}
	return 0;
}

static int
badcheck_handle(molt_request *req)
{
	return molt_reply(req, 200, "text/plain", "badcheck ok\n", 12);
}

MOLT_EXPORT const struct molt_module molt_module = {
	MOLT_MODULE_HEADER,
	.name        = "badcheck",
	.version     = "1.0",
	.description = "test: a configuration check that hangs, crashes or "
	               "overflows its message",
	.conf_keys   = badcheck_keys,
	.check       = badcheck_check,
	.handle      = badcheck_handle,
};
