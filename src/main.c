/*
 * main.c - the command line: run, check (-t), signal (-s), version (-V).
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "config.h"
#include "db.h"
#include "listen.h"
#include "log.h"
#include "master.h"
#include "proctitle.h"

#ifndef MOLT_BUILD_DIR
#define MOLT_BUILD_DIR ""
#endif
#ifndef MOLT_SRC_DIR
#define MOLT_SRC_DIR ""
#endif

static int from_build_tree;

static void
main_usage(FILE *f)
{
	fprintf(f,
	    "usage: molt [-c FILE] [-t] [-d] [-s stop|quit|reload|reopen] [-V] [-h]\n"
	    "  -c FILE   configuration file (default: the embedded one, serving\n"
	    "            the bundled modules on 127.0.0.1:8080)\n"
	    "  -t        check the configuration and every module it uses, then exit\n"
	    "  -d        detach from the terminal once the sockets are bound\n"
	    "            (pid_file, if set, is written with or without -d)\n"
	    "  -s SIG    signal the running master (via pid_file): stop (fast),\n"
	    "            quit (graceful), reload, reopen (the logs)\n"
	    "  -V        print the version and the module ABI version\n"
	    "  -h        print this help\n");
}

/*
 * Running the binary the build just made: use the build's modules.  The
 * kernel gives the canonical path of the executable, while configure
 * recorded the build directory as it was reached, perhaps through a
 * symbolic link: both are resolved before they are compared.
 */
static void
main_detect_build_tree(void)
{
	char exe[PATH_MAX], want[PATH_MAX], built[PATH_MAX];

	if (MOLT_BUILD_DIR[0] == '\0')
		return;
	if (realpath("/proc/self/exe", exe) == NULL)
		return;
	if ((size_t)snprintf(want, sizeof(want), "%s/molt", MOLT_BUILD_DIR) >=
	    sizeof(want) || realpath(want, built) == NULL)
		return;
	from_build_tree = strcmp(exe, built) == 0;
}

static void
main_replace(char **value, const char *with)
{
	char *p = strdup(with);

	if (p == NULL)
		return;
	free(*value);
	*value = p;
}

void
main_fixup_config(struct molt_config *cfg)
{
	struct conf_section *s;
	struct conf_kv *kv;
	char www[PATH_MAX];

	if (cfg->server.modules_dir == NULL) {
		if (from_build_tree)
			cfg->server.modules_dir = strdup(MOLT_BUILD_DIR "/modules/.libs");
		else
			cfg->server.modules_dir = strdup(MOLT_MODULES_DIR);
	}
	snprintf(www, sizeof(www), "%s", from_build_tree ?
	    MOLT_SRC_DIR "/etc/www" : MOLT_WWW_DIR);
	/* The embedded config names the bundled web root symbolically. */
	for (s = cfg->sections; s != NULL; s = s->next)
		for (kv = s->kv; kv != NULL; kv = kv->next)
			if (strcmp(kv->value, "@WWW@") == 0)
				main_replace(&kv->value, www);
}

static struct molt_config *
main_load(const char *path, struct conf_error *err)
{
	struct molt_config *cfg;

	memset(err, 0, sizeof(*err));
	cfg = config_load(path, err);
	if (cfg == NULL)
		return NULL;
	main_fixup_config(cfg);
	/*
	 * [database] sections are plain data, so the master parses them (and
	 * reads password files while it is still root); workers inherit it.
	 */
	if (db_config_check(cfg, err) == -1) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

/*
 * Whether the pid in fd's file is a running master, judged by the file's
 * lock: the master holds it for its life (master_pid_take).  A file
 * nobody holds is stale, and its pid may have gone since to any process,
 * a worker of another molt among them, so its name proves nothing.  On a
 * file system without locks the master could take none either, and the
 * pid is believed.
 */
static int
main_pid_is_master(int fd)
{
	if (flock(fd, LOCK_SH | LOCK_NB) == 0)
		return 0;
	return errno == EWOULDBLOCK || errno == ENOLCK || errno == EOPNOTSUPP;
}

static int
main_signal(const char *path, const char *what)
{
	static const struct { const char *name; int sig; } sigs[] = {
		{ "stop", SIGTERM }, { "quit", SIGQUIT }, { "reload", SIGHUP },
		{ "reopen", SIGUSR1 },
	};
	struct molt_config *cfg;
	struct conf_error err;
	char buf[32], *end;
	ssize_t n;
	size_t i;
	long pid;
	int sig = 0, fd = -1, rc = 1;

	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		if (strcmp(what, sigs[i].name) == 0)
			sig = sigs[i].sig;
	if (sig == 0) {
		fprintf(stderr, "molt: -s takes stop, quit, reload or reopen, not '%s'\n",
		    what);
		return 1;
	}
	if ((cfg = main_load(path, &err)) == NULL) {
		fprintf(stderr, "%s:%d: %s\n", err.file, err.line, err.msg);
		return 1;
	}
	if (cfg->server.pid_file == NULL) {
		fprintf(stderr, "molt: %s sets no pid_file, so there is no master "
		    "to signal\n", cfg->path);
		goto out;
	}
	if ((fd = open(cfg->server.pid_file, O_RDONLY | O_CLOEXEC)) == -1) {
		fprintf(stderr, "molt: cannot read a pid from %s: %s\n",
		    cfg->server.pid_file, strerror(errno));
		goto out;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = '\0';
	errno = 0;
	pid = strtol(buf, &end, 10);
	if (n <= 0 || errno != 0 || end == buf || pid <= 1 ||
	    (*end != '\0' && strcmp(end, "\n") != 0)) {
		fprintf(stderr, "molt: cannot read a pid from %s: bad contents\n",
		    cfg->server.pid_file);
		goto out;
	}
	if (!main_pid_is_master(fd)) {
		fprintf(stderr, "molt: %s names pid %ld, but no molt master holds "
		    "it: a stale file; nothing signalled\n", cfg->server.pid_file,
		    pid);
		goto out;
	}
	if (kill((pid_t)pid, sig) == -1) {
		fprintf(stderr, "molt: kill(%ld, %s): %s\n", pid, what, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (fd != -1)
		close(fd);
	config_free(cfg);
	return rc;
}

/*
 * For molt -t: whether the master, which opens them as the user running
 * molt, will be able to write the log and pid files, so that a unit's
 * ExecStartPre check does not pass a start that then fails.  Nothing is
 * created: the file must be writable, or else its directory.
 */
static int
main_check_writable(struct molt_config *cfg, const char *key,
    const char *path, struct conf_error *err)
{
	char dir[PATH_MAX], *slash;

	if (path == NULL || strcmp(path, "stderr") == 0 ||
	    access(path, W_OK) == 0)
		return 0;
	if (errno == ENOENT) {
		snprintf(dir, sizeof(dir), "%s", path);
		if ((slash = strrchr(dir, '/')) == NULL)
			snprintf(dir, sizeof(dir), ".");
		else
			slash[slash == dir ? 1 : 0] = '\0';
		if (access(dir, W_OK | X_OK) == 0)
			return 0;
		path = dir;
	}
	conf_server_errorf(cfg, key, err, "cannot write %s: %s", path,
	    strerror(errno));
	return -1;
}

/*
 * Started with 0, 1 or 2 closed (some supervisors, `molt 2>&-`), the
 * first things molt opens would take those numbers, and stderr, the
 * default error log, would be one of them: with two listeners it was the
 * sending end of the connection handoff, so each log line became a
 * handoff message, which a worker refused with a log line, which became
 * another message, and the workers span.  So they are /dev/null before
 * anything else is opened.  Returns -1 if that cannot be done (nothing
 * can say so: stderr is one of them).
 */
static int
main_std_fds(void)
{
	int fd, got;

	/* Only what is closed: /dev/null may be missing from a sandbox. */
	for (fd = STDIN_FILENO; fd <= STDERR_FILENO; fd++) {
		if (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
			continue;
		/* The lowest free number: fd, as those below it are open. */
		if ((got = open("/dev/null", O_RDWR)) == -1)
			return -1;
		if (got != fd) {
			close(got);
			return -1;
		}
	}
	return 0;
}

int
main(int argc, char **argv)
{
	struct molt_config *cfg;
	struct conf_error err;
	const char *path = NULL, *sig = NULL;
	char msg[2048];
	int ch, test = 0, daemonize = 0, rc;

	if (main_std_fds() == -1)
		return 1;
	while ((ch = getopt(argc, argv, "c:tds:Vh")) != -1) {
		switch (ch) {
		case 'c': path = optarg; break;
		case 't': test = 1; break;
		case 'd': daemonize = 1; break;
		case 's': sig = optarg; break;
		case 'V':
			printf("molt %s (module ABI %d.%d)\n", PACKAGE_VERSION,
			    MOLT_ABI_MAJOR, MOLT_ABI_MINOR);
			return 0;
		case 'h':
			main_usage(stdout);
			return 0;
		default:
			main_usage(stderr);
			return 1;
		}
	}
	if (optind != argc) {
		main_usage(stderr);
		return 1;
	}
	/*
	 * -s acts on a running master and -t on a file: taken together, one
	 * of them would be ignored, and a check that stops the server is the
	 * worse surprise.  Refused, as an unknown option is.
	 */
	if (test && sig != NULL) {
		fprintf(stderr, "molt: -t and -s cannot be used together\n");
		main_usage(stderr);
		return 1;
	}
	main_detect_build_tree();
	if (sig != NULL)
		return main_signal(path, sig);

	if ((cfg = main_load(path, &err)) == NULL) {
		fprintf(stderr, "%s:%d: %s\n", err.file, err.line, err.msg);
		return 1;
	}
	if (test) {
		/*
		 * The check a start would run, in a child too: as the workers'
		 * user, within check_timeout, and a module that crashes in it
		 * is reported instead of taking molt -t down.
		 */
		memset(&err, 0, sizeof(err));
		rc = master_validate(cfg, msg, sizeof(msg));
		if (rc == -1)
			fprintf(stderr, "%s\n", msg);
		else if ((rc = main_check_writable(cfg, "error_log",
		    cfg->server.error_log, &err)) == -1 ||
		    (rc = main_check_writable(cfg, "access_log",
		    cfg->server.access_log, &err)) == -1 ||
		    (rc = main_check_writable(cfg, "pid_file",
		    cfg->server.pid_file, &err)) == -1)
			fprintf(stderr, "%s:%d: %s\n", err.file, err.line, err.msg);
		else {
			master_warn_root(&cfg->server);
			fprintf(stderr, "molt: %s: configuration ok\n", cfg->path);
		}
		config_free(cfg);
		return rc == -1 ? 1 : 0;
	}
	/* Before any fork, and while LISTEN_PID is still our pid. */
	if (listen_inherit() == -1) {
		config_free(cfg);
		return 1;
	}
	/* Module code runs only in a child, even for this first check. */
	if (master_validate(cfg, msg, sizeof(msg)) == -1) {
		fprintf(stderr, "%s\n", msg);
		config_free(cfg);
		return 1;
	}
	master_log_owner(&cfg->server);
	if (log_open(cfg->server.error_log, cfg->server.log_level,
	    cfg->server.access_log) == -1) {
		config_free(cfg);
		return 1;
	}
	log_startup_echo(1);
	master_warn_root(&cfg->server);
	/* path points into argv, which the process titles write over. */
	if (path != NULL && (path = strdup(path)) == NULL) {
		log_error("strdup: %s", strerror(errno));
		config_free(cfg);
		return 1;
	}
	if (proctitle_init(argc, argv) == -1)
		log_warn("no process titles: out of memory");
	rc = master_run(cfg, path, daemonize);
	log_access_flush();
	return rc;
}
