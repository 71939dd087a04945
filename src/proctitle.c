/*
 * proctitle.c - what ps(1) shows of each process.
 *
 * The master, its workers and the module check were all "molt -c
 * /etc/molt.conf": an operator could not tell which pid to look at, nor
 * which workers were draining.  As nginx does, each process writes its
 * title over its argv, which is where the kernel reads /proc/PID/cmdline
 * from:
 *
 *	molt: master process /usr/sbin/molt -c /etc/molt.conf
 *	molt: worker process 0 (generation 2)
 *	molt: worker process 0 (generation 1), draining
 *	molt: module check
 *
 * The environment's strings follow argv's on the stack; they are copied
 * to the heap first, and their room goes to the title.  The name the
 * kernel keeps (comm, /proc/PID/comm) stays "molt", for pgrep and pkill.
 */
#include "autoconfig.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proctitle.h"

extern char **environ;

static char  *area;         /* argv[0] up to the end of the last string */
static size_t area_len;
static char  *cmdline;      /* the command line as it was */

/* The original command line, argv joined by spaces, or NULL. */
static char *
proctitle_join(int argc, char **argv)
{
	size_t len = 0;
	char *s;
	int i;

	for (i = 0; i < argc; i++)
		len += strlen(argv[i]) + 1;
	if ((s = malloc(len + 1)) == NULL)
		return NULL;
	s[0] = '\0';
	for (i = 0; i < argc; i++) {
		if (i > 0)
			strcat(s, " ");
		strcat(s, argv[i]);
	}
	return s;
}

int
proctitle_init(int argc, char **argv)
{
	char **env, *end, *name, *slash;
	size_t i, n;

	if (argc < 1 || argv[0] == NULL || (cmdline = proctitle_join(argc,
	    argv)) == NULL)
		return -1;
	/* glibc's own messages (assert, error) name the program from argv[0]. */
	if ((name = strdup(argv[0])) != NULL) {
		program_invocation_name = name;
		slash = strrchr(name, '/');
		program_invocation_short_name = slash != NULL ? slash + 1 : name;
	}
	/* Only what is one run of strings can be written over. */
	end = argv[0] + strlen(argv[0]) + 1;
	for (i = 1; i < (size_t)argc && argv[i] == end; i++)
		end = argv[i] + strlen(argv[i]) + 1;
	for (n = 0; environ[n] != NULL; n++)
		;
	if ((env = calloc(n + 1, sizeof(*env))) != NULL) {
		for (i = 0; i < n; i++)
			if ((env[i] = strdup(environ[i])) == NULL)
				break;
		if (i == n) {
			for (i = 0; i < n && environ[i] == end; i++)
				end = environ[i] + strlen(environ[i]) + 1;
			environ = env;
		} else {
			/* Short of memory: the title gets argv's room only. */
			while (i > 0)
				free(env[--i]);
			free(env);
		}
	}
	area = argv[0];
	area_len = (size_t)(end - argv[0]);
	return 0;
}

const char *
proctitle_cmdline(void)
{
	return cmdline != NULL ? cmdline : "molt";
}

void
proctitle_set(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	if (area == NULL || area_len < 2)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= area_len)
		n = (int)area_len - 1;
	if ((size_t)n >= sizeof(buf))
		n = sizeof(buf) - 1;
	memcpy(area, buf, (size_t)n);
	/* The rest NUL: ps would show what is left of the old strings. */
	memset(area + n, '\0', area_len - (size_t)n);
}
