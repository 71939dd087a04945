/*
 * master.c - the master process.
 *
 * It binds the sockets, forks the workers and then only reacts: to a
 * signal (through a self-pipe), to a worker's message (through the notify
 * pipe), or to its next deadline (sampling, a respawn after backoff, a
 * drain backstop).  It never calls a module's hooks and never sleeps in a
 * loop.
 *
 * Recycling is graceful: the replacement is forked first, and the old
 * worker is asked to drain only once the replacement says it is ready, so
 * capacity never drops and no request is dropped.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "config.h"
#include "db.h"
#include "handoff.h"
#include "listen.h"
#include "log.h"
#include "master.h"
#include "memwatch.h"
#include "module.h"
#include "prefault.h"
#include "proctitle.h"
#include "scoreboard.h"
#include "worker.h"

#define MAX_IDS            256
#define OLD_GENS           4      /* generations whose routes are kept */
#define BACKOFF_FIRST_MS   100
#define BACKOFF_MAX_MS     30000
#define READY_TIMEOUT_MS   30000
#define STOP_BACKSTOP_MS   5000

enum mw_state { MW_FREE, MW_STARTING, MW_READY, MW_RETIRING, MW_KILLED };

/* The master's view of one worker slot. */
struct mworker {
	enum mw_state st;
	pid_t    pid;
	int      id;
	unsigned gen;
	int64_t  spawned_ms;
	int64_t  ready_ms;
	int64_t  retire_ms;
	int      reason;          /* recycle reason, -1 for none */
	char     detail[640];     /* "uss=300.0 MB > max_rss=256.0 MB" */
	uint64_t req_limit;
	int64_t  life_limit_ms;
	int      over_rss, over_frag;
	int      trim_pending;
	int      trimmed;         /* a trim was tried for the current episode */
	uint64_t trim_before;
	char     trim_why[120];   /* "reason=rss max_rss=256.0 MB" */
	int      replaced_by;     /* slot of the replacement being started */
	int      replaces;        /* slot this one will replace */
	int64_t  hint_ms;         /* last sample taken on its MSG_GROWN */
	int64_t  torn_ms;         /* its half first read torn, or 0 */
	uint32_t drain_conns;     /* its load when told to drain */
	uint32_t drain_active;
	/* Its slot's access-log counts as of the last look. */
	uint64_t acc_failed, acc_lost, acc_again;
	/* The last sample, judged from here: the scoreboard's copy is in
	 * memory the worker can write. */
	struct mem_sample ms;
};

/*
 * What the master writes while its workers run lives in a mapping that no
 * child inherits (master_state_create).  In .data and .bss it shared
 * pages with every new worker, which never reads it: each fork
 * write-protected those pages, and the master's next write to each paid a
 * copy-on-write fault (a page copy and a TLB-flush IPI to the other CPUs,
 * both dear on a virtual machine) while that worker lived.
 */
struct master_state {
	struct mworker            mw[SB_SLOTS];
	int                       fail_count[MAX_IDS];
	int64_t                   next_spawn[MAX_IDS];
	volatile sig_atomic_t     got_sig[NSIG];
	uint64_t                  rng;     /* master_jitter's xorshift state */
	/*
	 * Slots at or past this are free.  The header's copy is for the
	 * workers; it is in memory every worker can write, so the master
	 * never reads it back: a scribbled one had it index mw[] far out of
	 * bounds at the next reap.
	 */
	uint32_t                  slots_hi;
	/* The header's sequence, for the same reason: written, never read
	 * back, so a worker that scribbles it odd costs the status page a
	 * wait until the next sample, not a sequence odd for good. */
	uint32_t                  hdr_seq;
	/*
	 * The access log's failed writes, the fleet's (master_access_judge):
	 * new since the last judgement, and the episode they belong to.
	 */
	struct master_access {
		uint64_t new_failed, new_lost, new_again;
		int      err;           /* of the last failure */
		int      last_ok;       /* the last write heard of worked */
		int      failing;
		int64_t  logged_ms;
		uint64_t unsaid, failed, lost;
	}                         access;
	/*
	 * The routes of the last OLD_GENS generations before this one, by
	 * the index their workers publish: after a reload the scoreboard's
	 * names are the new generation's, and an old worker that crashes
	 * while it drains must still be named by its own module.
	 */
	struct old_gen {
		unsigned gen;             /* 0: unused */
		uint32_t nroutes;
		struct {
			char prefix[sizeof(((struct sb_header *)0)->route_names[0])];
			char module[128];
		} route[SB_ROUTES];
	}                         old_gens[OLD_GENS];
};
static struct master_state *mstate;
static struct mworker *mw;
static int *fail_count;
static int64_t *next_spawn;
static volatile sig_atomic_t *got_sig;
static struct molt_config *cfg;
static const char *conf_path;
static unsigned generation = 1;
static int sig_pipe[2] = { -1, -1 };
static int notify_pipe[2] = { -1, -1 };
static int stopping;              /* 0, SIGTERM (fast) or SIGQUIT */
static int detached;              /* molt -d */
static int64_t stop_deadline;
static int64_t stop_ms;           /* when the stop began, for its log */
/* What the validator writes when every check passed. */
#define MASTER_CHECK_OK "ok"

static pid_t validator_pid = -1;
static int pid_fd = -1;           /* the pid file, locked (master_pid_take) */
static int validator_fd = -1;
static int64_t validator_deadline;
static int validator_killed;      /* the master sent it SIGKILL */
/* Shared with the validators: what the check was doing when it died. */
static struct module_step *check_step;
/*
 * A SIGHUP came while a reload was being checked: the operator has
 * edited the file again, and that edit is checked next, not dropped
 * (one is enough: it reads the file as it is by then).
 */
static int reload_again;
static struct molt_config *pending_cfg;

static int64_t
master_now(void)
{
	return sb_clock_ms();
}

static int64_t
master_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------ */
/* Signals: the handler only records and wakes the loop                */

static void
master_sig_handler(int sig)
{
	int saved = errno;
	unsigned char c = (unsigned char)sig;

	got_sig[sig] = 1;
	/* A full pipe already holds a wake-up; losing this byte is fine. */
	(void)!write(sig_pipe[1], &c, 1);
	errno = saved;
}

/*
 * The signals the master handles; a child resets and unblocks them.
 * SIGUSR2 is the workers' (a trim): its default action would end the
 * master, and with it every worker, for a `pkill -USR2 molt`.
 */
static const int master_sigs[] = { SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1,
    SIGUSR2, SIGCHLD };
/* Ignored by the master alone (master_signals). */
static const int master_stray[] = { SIGALRM, SIGIO, SIGVTALRM, SIGPROF };

static int
master_signals(void)
{
	struct sigaction sa;
	size_t i;

	if (pipe2(sig_pipe, O_NONBLOCK | O_CLOEXEC) == -1 ||
	    pipe2(notify_pipe, O_NONBLOCK | O_CLOEXEC) == -1) {
		log_error("pipe2: %s", strerror(errno));
		return -1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = master_sig_handler;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	for (i = 0; i < sizeof(master_sigs) / sizeof(master_sigs[0]); i++)
		if (sigaction(master_sigs[i], &sa, NULL) == -1) {
			log_error("sigaction(%d): %s", master_sigs[i], strerror(errno));
			return -1;
		}
	/*
	 * Ignored here, so in every child too.  SIGXFSZ: a log that reaches
	 * RLIMIT_FSIZE (ulimit -f, systemd's LimitFSIZE=) raised it, and its
	 * default action killed a worker at its next access-log flush, then
	 * the master as it wrote out the lines the dead worker left: the
	 * whole server.  Ignored, the write fails with EFBIG and is logged.
	 */
	sa.sa_handler = SIG_IGN;
	if (sigaction(SIGPIPE, &sa, NULL) == -1) {
		log_error("sigaction(SIGPIPE): %s", strerror(errno));
		return -1;
	}
	if (sigaction(SIGXFSZ, &sa, NULL) == -1) {
		log_error("sigaction(SIGXFSZ): %s", strerror(errno));
		return -1;
	}
	/* Their default action ends the process, and a stray one (a kill
	 * with the wrong number, a profiler aimed at the wrong pid) would
	 * take the master, and with it every worker, down.  The master uses
	 * none of them; its children get them back (master_fork). */
	for (i = 0; i < sizeof(master_stray) / sizeof(master_stray[0]); i++)
		if (sigaction(master_stray[i], &sa, NULL) == -1) {
			log_error("sigaction(%d): %s", master_stray[i],
			    strerror(errno));
			return -1;
		}
	return 0;
}


/*
 * fork(2) with the master's signals blocked across it.  Without this a
 * stop signal aimed at a just-forked child can land before the child has
 * handlers of its own: it then runs the master's handler (writing to the
 * master's pipe, so the child never hears it) or the default action.
 * The child comes back with its handlers reset and the signals still
 * blocked; whoever runs in it unblocks them once it can take them
 * (worker_main after its signal events exist).  A signal that arrived
 * in between is pending, not lost.
 */
static pid_t
master_fork(const char *what)
{
	sigset_t block, saved;
	struct sigaction sa;
	size_t i;
	pid_t pid;
	int e;

	sigemptyset(&block);
	for (i = 0; i < sizeof(master_sigs) / sizeof(master_sigs[0]); i++)
		sigaddset(&block, master_sigs[i]);
	if (sigprocmask(SIG_BLOCK, &block, &saved) == -1) {
		log_error("sigprocmask (%s): %s", what, strerror(errno));
		return -1;
	}
	pid = fork();
	if (pid != 0) {
		e = errno;
		if (pid == -1)
			log_error("fork (%s): %s", what, strerror(e));
		if (sigprocmask(SIG_SETMASK, &saved, NULL) == -1)
			log_error("sigprocmask (%s): %s", what, strerror(errno));
		errno = e;
		return pid;
	}
	/* Before anything else runs here, so nothing else faults its way in. */
	prefault_run();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	for (i = 0; i < sizeof(master_sigs) / sizeof(master_sigs[0]); i++)
		sigaction(master_sigs[i], &sa, NULL);
	for (i = 0; i < sizeof(master_stray) / sizeof(master_stray[0]); i++)
		sigaction(master_stray[i], &sa, NULL);
	close(sig_pipe[0]);
	close(sig_pipe[1]);
	close(notify_pipe[0]);
	if (validator_fd >= 0)
		close(validator_fd);
	/* The lock stays the master's: a child's copy would not release it. */
	if (pid_fd >= 0)
		close(pid_fd);
	return 0;
}

/* Undo master_fork's blocking in a child that is ready for its signals. */
void
master_child_unblock(void)
{
	sigset_t none;

	sigemptyset(&none);
	if (sigprocmask(SIG_SETMASK, &none, NULL) == -1)
		log_error("sigprocmask: %s", strerror(errno));
}

void
master_notify(int fd, int type, int slot)
{
	int32_t msg[2] = { type, slot };

	/* 8 bytes < PIPE_BUF: atomic even with many workers writing. */
	if (write(fd, msg, sizeof(msg)) != (ssize_t)sizeof(msg))
		log_error("notify master (type %d): %s", type, strerror(errno));
}

/*
 * Log files the master creates belong to the workers' user, who must be
 * able to reopen them after a rotation (nginx does the same).  A name that
 * does not resolve is left to the workers, which refuse to start and say
 * why.
 */
void
master_log_owner(const struct server_conf *sc)
{
	struct passwd *pw;
	struct group *gr;
	uid_t uid = (uid_t)-1;
	gid_t gid = (gid_t)-1;

	/* Not root: the workers keep our uid (worker_drop_privileges). */
	if (geteuid() != 0) {
		log_set_owner(uid, gid);
		return;
	}
	if (sc->user != NULL && (pw = getpwnam(sc->user)) != NULL) {
		uid = pw->pw_uid;
		gid = pw->pw_gid;
	}
	if (sc->group != NULL && (gr = getgrnam(sc->group)) != NULL)
		gid = gr->gr_gid;
	log_set_owner(uid, gid);
}

/*
 * Started as root without [server] user, the workers keep uid 0, and so
 * does every module they load.  nginx falls back to nobody and Apache
 * refuses to start; molt keeps running as it was told (a container often
 * runs everything as root, in directories nobody could not read) but
 * says so at each start, check and reload, where an admin looks.
 */
void
master_warn_root(const struct server_conf *sc)
{
	if (geteuid() != 0 || sc->user != NULL)
		return;
	log_warn("started as root and [server] user is not set: the workers "
	    "run as root%s%s (set user, e.g. user = nobody)",
	    sc->group != NULL ? " with group " : "",
	    sc->group != NULL ? sc->group : "");
}

/*
 * Detached (-d), stderr is /dev/null: with error_log = stderr, which is
 * the default, every later line (a crash, a failed reload) would be lost
 * without a word.  Said at the start, while stderr is still the terminal,
 * and at a reload that sets it.
 */
static void
master_warn_detached(const struct server_conf *sc)
{
	if (!detached || sc->error_log != NULL)
		return;
	log_warn("molt -d with error_log = stderr: detached, stderr is "
	    "/dev/null, and the log is lost (set error_log to a file)");
}

/* ------------------------------------------------------------------ */
/* Validation in a child                                               */

/*
 * The validator child: everything a start or a reload needs of a config
 * that only running module code can tell.  The [database] sections and
 * the client library are checked as root, as the master reads and loads
 * them; the modules are loaded as the workers load them, as [server]
 * user and group, so that what the workers could not read is refused
 * here instead of by every worker.  The first error goes to fd as
 * "FILE:LINE: message".
 */
static void __attribute__((noreturn))
master_validator(struct molt_config *c, int fd, pid_t parent)
{
	struct conf_error err;
	struct module *mods = NULL;
	char msg[sizeof(err.msg) + sizeof(err.file) + 32];
	int n;

	master_child_unblock();
	proctitle_set("molt: module check");
	/*
	 * The running generation's sockets: module code must not accept on
	 * them, nor keep the port if it outlived the master.
	 */
	if (cfg != NULL)
		listen_drop(cfg->server.listen);
	/* At start-up, what systemd passed is not in cfg yet. */
	listen_drop(listen_inherited());
	/* Nor receive the connections of recycled workers, nor speak for
	 * a worker to the master. */
	handoff_leave();
	if (notify_pipe[1] >= 0 && close(notify_pipe[1]) == -1)
		log_error("close (notify pipe) in the module check: %s",
		    strerror(errno));
	/* Check the copies made for this check, not the ones the master
	 * keeps loaded for the running generation. */
	module_step_to(check_step);
	module_unpin_all();
	memset(&err, 0, sizeof(err));
	if (db_config_check(c, &err) == -1 || db_library_check(c, &err) == -1)
		goto fail;
	if (worker_drop_privileges(c, &err) == -1)
		goto fail;
	/*
	 * A check that hangs must not outlive the master that would kill it.
	 * Set after the switch of user, which clears it; and a master that
	 * died before it was set sent nothing, hence getppid.
	 */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1) {
		conf_errorf(&err, c->path, 0, "prctl(PR_SET_PDEATHSIG) in the "
		    "module check: %s", strerror(errno));
		goto fail;
	}
	if (getppid() != parent)
		_exit(1);
	if (module_check_all(c, &mods, &err) == -1)
		goto fail;
	if (worker_trial(c, mods, &err) == -1)
		goto fail;
	module_unload_all(mods);
	if (config_check_unused(c, &err) == -1)
		goto fail;
	/* Said, not only exited: a check that calls exit(0) passed before. */
	if (write(fd, MASTER_CHECK_OK, sizeof(MASTER_CHECK_OK) - 1) !=
	    (ssize_t)sizeof(MASTER_CHECK_OK) - 1)
		_exit(1);
	_exit(0);
fail:
	n = snprintf(msg, sizeof(msg), "%s:%d: %s", err.file, err.line, err.msg);
	if (n < 0)
		n = 0;
	else if ((size_t)n >= sizeof(msg))
		n = sizeof(msg) - 1;
	if (write(fd, msg, (size_t)n) != n)
		log_error("write (module check verdict): %s", strerror(errno));
	_exit(1);
}

static pid_t
master_validate_start(struct molt_config *c, int *fdout)
{
	int fds[2];
	pid_t pid, parent = getpid();

	/*
	 * Non-blocking: the verdict is read once the child is gone, but a
	 * process a module's check forked may still hold the write end.
	 */
	if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) == -1) {
		log_error("pipe2 (module check): %s", strerror(errno));
		return -1;
	}
	/*
	 * Without it a crash or a hang is reported without the module that
	 * caused it, which is worth a check, not a failed one.
	 */
	if (check_step == NULL) {
		void *p = mmap(NULL, sizeof(*check_step), PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED)
			log_error("mmap (module check progress): %s",
			    strerror(errno));
		else
			check_step = p;
	}
	if (check_step != NULL)
		memset(check_step, 0, sizeof(*check_step));
	/* The bytes checked are the bytes the generation runs. */
	module_stage_all(c);
	pid = master_fork("validator");
	if (pid == -1) {
		module_unstage_all();
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (pid == 0) {
		close(fds[0]);
		master_validator(c, fds[1], parent);
	}
	if (close(fds[1]) == -1)
		log_error("close (module check pipe): %s", strerror(errno));
	*fdout = fds[0];
	return pid;
}

/*
 * "FILE:LINE: " and " in the check hook of ..." for a check that died or
 * hung in module code, or two empty strings.  The validator wrote them,
 * and module code ran there: read within bounds, never past them.
 */
static void
master_check_step(char *where, size_t wlen, char *what, size_t tlen)
{
	where[0] = what[0] = '\0';
	if (check_step == NULL)
		return;
	if (check_step->where[0] != '\0')
		snprintf(where, wlen, "%.*s: ", (int)strnlen(check_step->where,
		    sizeof(check_step->where)), check_step->where);
	if (check_step->what[0] != '\0')
		snprintf(what, tlen, " %.*s", (int)strnlen(check_step->what,
		    sizeof(check_step->what)), check_step->what);
}

/*
 * Reads the verdict of a reaped validator: 0 if the config is good.
 * limit_ms: the time limit the validator was killed for, or 0.
 */
static int
master_validate_finish(int fd, int status, long long limit_ms, char *msg,
    size_t len)
{
	char where[sizeof(check_step->where) + 3];
	char what[sizeof(check_step->what) + 2];
	ssize_t n;

	n = read(fd, msg, len - 1);
	if (n == -1 && errno != EAGAIN)
		log_error("read (module check verdict): %s", strerror(errno));
	msg[n > 0 ? n : 0] = '\0';
	if (close(fd) == -1)
		log_error("close (module check pipe): %s", strerror(errno));
	master_check_step(where, sizeof(where), what, sizeof(what));
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		if (strcmp(msg, MASTER_CHECK_OK) == 0)
			return 0;
		snprintf(msg, len, "%sthe module check ended before it finished "
		    "(a module called exit?)%s", where, what);
		return -1;
	}
	if (limit_ms > 0 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
		snprintf(msg, len, "%sthe module check timed out after %lld %s%s",
		    where, limit_ms % 1000 == 0 ? limit_ms / 1000 : limit_ms,
		    limit_ms % 1000 == 0 ? "s" : "ms", what);
	else if (msg[0] == '\0')
		snprintf(msg, len, "%sthe module check crashed (%s %d)%s", where,
		    WIFSIGNALED(status) ? "signal" : "status",
		    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
		    what);
	return -1;
}

/*
 * Start-up and molt -t: nothing else runs yet, so the caller just waits,
 * for the verdict (or the end of the pipe, at the child's exit) or the
 * time limit.
 */
int
master_validate(struct molt_config *c, char *msg, size_t msglen)
{
	struct pollfd pfd;
	int64_t left, deadline = master_now() + c->server.check_timeout_ms;
	long long limit_ms = 0;
	int fd, n, status, e = 0;
	pid_t pid;

	if ((pid = master_validate_start(c, &fd)) == -1) {
		snprintf(msg, msglen, "cannot start the module check");
		return -1;
	}
	pfd.fd = fd;
	pfd.events = POLLIN;
	for (;;) {
		if ((left = deadline - master_now()) <= 0) {
			limit_ms = c->server.check_timeout_ms;
			break;
		}
		if ((n = poll(&pfd, 1, (int)left)) > 0)
			break;
		if (n == -1 && errno != EINTR) {
			e = errno;
			break;
		}
	}
	if ((limit_ms > 0 || e != 0) && kill(pid, SIGKILL) == -1)
		log_error("kill(%d, SIGKILL) (module check): %s", (int)pid,
		    strerror(errno));
	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR) {
			e = errno;
			snprintf(msg, msglen, "waitpid (module check): %s",
			    strerror(e));
			close(fd);
			return -1;
		}
	if (e != 0) {
		snprintf(msg, msglen, "poll (module check): %s", strerror(e));
		close(fd);
		return -1;
	}
	return master_validate_finish(fd, status, limit_ms, msg, msglen);
}

/*
 * What every worker would load the same way is loaded once, here, after a
 * validator accepted it: the modules (module_pin_all), and the MariaDB
 * client library with OpenSSL, which cost each new worker 4.5-6.8 ms of
 * CPU to map and relocate on the test guest (0.2-0.6 ms found loaded).
 * The library's code is left to fault in as it runs: megabytes of it, of
 * which a worker runs little.  Never unloaded (dblib.c says why).
 */
static void
master_preload(void)
{
	struct conf_error err;

	module_pin_all(cfg);
	prefault_plan();
	memset(&err, 0, sizeof(err));
	/* On failure the workers say so, as errors, and are not started. */
	if (db_master_preload(cfg, &err) == -1)
		log_warn("cannot load the MariaDB client library in the master: %s",
		    err.msg);
	prefault_skip_new();
}

/* ------------------------------------------------------------------ */
/* Workers                                                             */

/*
 * A worker may hold max_connections client sockets and as many files
 * being sent, besides its listeners, pool connections and logs.  A
 * shell's soft limit of 1024 is below what the default 4096 connections
 * need, and out of descriptors a worker pauses its accepts and answers
 * file requests 503, while slow clients hold what it has.  So the master
 * raises the limit its workers inherit (nginx: worker_rlimit_nofile), the
 * hard one too when it may (root), and says so when it cannot.
 */
static void
master_nofile(void)
{
	rlim_t need = (rlim_t)cfg->server.max_connections * 2 + 128;
	struct rlimit rl, up;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
		log_warn("getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
		return;
	}
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
		return;
	up.rlim_cur = need;
	up.rlim_max = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need ?
	    need : rl.rlim_max;
	/* Past the hard limit only with CAP_SYS_RESOURCE, and fs.nr_open. */
	if (setrlimit(RLIMIT_NOFILE, &up) == -1) {
		up.rlim_cur = rl.rlim_max;
		up.rlim_max = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &up) == -1) {
			log_warn("setrlimit(RLIMIT_NOFILE, %llu): %s",
			    (unsigned long long)up.rlim_cur, strerror(errno));
			up.rlim_cur = rl.rlim_cur;
		}
	}
	if (up.rlim_cur < need)
		log_warn("the open-file limit is %llu, below the %llu that "
		    "max_connections = %lld needs (two a connection): raise the hard "
		    "limit (LimitNOFILE= in the unit, ulimit -Hn) or lower "
		    "max_connections", (unsigned long long)up.rlim_cur,
		    (unsigned long long)need, (long long)cfg->server.max_connections);
	else
		log_info("open-file limit raised from %llu to %llu for "
		    "max_connections = %lld", (unsigned long long)rl.rlim_cur,
		    (unsigned long long)up.rlim_cur,
		    (long long)cfg->server.max_connections);
}

static int
master_free_slot(void)
{
	int i;

	for (i = 0; i < SB_SLOTS; i++)
		if (mw[i].st == MW_FREE)
			return i;
	return -1;
}

/*
 * Not random(): its state is in libc's .data, one more page to copy.
 * 64 bits end to end: the jitters go up to 2^50 (requests) and 2^40 ms,
 * and a draw cut to an int could come out negative, below the limit.
 */
static long long
master_jitter(long long jitter)
{
	uint64_t x = mstate->rng;

	if (jitter <= 0)
		return 0;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	mstate->rng = x;
	return (long long)(x % ((uint64_t)jitter + 1));
}

/*
 * Another failure to start worker id: the next try waits 100 ms, doubled
 * with each failure in a row up to 30 s, so that a worker that cannot
 * start, or a fork that keeps failing, costs the machine little and the
 * log a line per try.  Returns the wait.
 */
static int64_t
master_backoff(int id, int64_t now)
{
	int64_t delay = BACKOFF_FIRST_MS;

	fail_count[id]++;
	for (int k = 1; k < fail_count[id] && delay < BACKOFF_MAX_MS; k++)
		delay *= 2;
	if (delay > BACKOFF_MAX_MS)
		delay = BACKOFF_MAX_MS;
	next_spawn[id] = now + delay;
	return delay;
}

static int
master_spawn(int id, int replaces)
{
	struct mworker *m;
	struct sb_slot *s;
	uint64_t req_limit;
	char what[32];
	int slot;
	pid_t pid;

	if ((slot = master_free_slot()) == -1) {
		log_error("no free scoreboard slot for worker %d", id);
		return -1;
	}
	s = &sb.slots[slot];
	/* Drawn before the fork: the worker needs its own request limit. */
	req_limit = cfg->recycle.max_requests > 0 ?
	    (uint64_t)(cfg->recycle.max_requests +
	    master_jitter(cfg->recycle.max_requests_jitter)) : 0;
	/* Before the fork, so the new worker sees itself and its peers, and
	 * the status page has the slot's id before the pid (status_worker). */
	if ((uint32_t)slot >= mstate->slots_hi)
		mstate->slots_hi = (uint32_t)slot + 1;
	sb.hdr->slots_hi = mstate->slots_hi;
	sb_begin(&s->m.seq);
	s->m.pid = 0;
	s->m.generation = generation;
	s->m.id = id;
	s->m.retiring = 0;
	s->m.rss = s->m.uss = s->m.pss = s->m.rss_anon = 0;
	/* Not measured yet: not the slot's last worker's sample time. */
	s->m.measured_ms = 0;
	s->m.trims = 0;
	sb_end(&s->m.seq);
	snprintf(what, sizeof(what), "worker %d", id);
	if ((pid = master_fork(what)) == -1) {
		/* Out of processes (RLIMIT_NPROC) or memory: not every sample. */
		log_error("cannot start worker %d; next try in %lld ms", id,
		    (long long)master_backoff(id, master_now()));
		return -1;
	}
	if (pid == 0) {
		/* Modules that call random() must not all draw the same numbers. */
		srandom((unsigned)getpid() ^ (unsigned)master_now());
		worker_main(cfg, id, slot, generation, notify_pipe[1], req_limit);
	}
	m = &mw[slot];
	memset(m, 0, sizeof(*m));
	m->req_limit = req_limit;
	m->st = MW_STARTING;
	m->pid = pid;
	m->id = id;
	m->gen = generation;
	m->spawned_ms = master_now();
	m->reason = -1;
	m->replaced_by = -1;
	m->replaces = replaces;
	if (cfg->recycle.max_lifetime_ms > 0)
		m->life_limit_ms = cfg->recycle.max_lifetime_ms +
		    master_jitter(cfg->recycle.max_lifetime_jitter_ms);
	sb_begin(&s->m.seq);
	s->m.pid = pid;
	sb_end(&s->m.seq);
	log_info("spawned worker %d pid %d (generation %u)", id, (int)pid,
	    generation);
	/* The jittered limits this worker drew, 0 for none. */
	log_debug("worker %d pid %d limits: requests=%llu lifetime_ms=%lld", id,
	    (int)pid, (unsigned long long)req_limit, (long long)m->life_limit_ms);
	return slot;
}

/* Is there a worker serving id in the current generation (or starting)? */
static int
master_has_worker(int id)
{
	int i;

	for (i = 0; i < SB_SLOTS; i++)
		if ((mw[i].st == MW_STARTING || mw[i].st == MW_READY) &&
		    mw[i].gen == generation && mw[i].id == id &&
		    mw[i].replaces == -1)
			return 1;
	/* A replacement counts only once it is the one serving. */
	for (i = 0; i < SB_SLOTS; i++)
		if (mw[i].st == MW_READY && mw[i].gen == generation &&
		    mw[i].id == id)
			return 1;
	return 0;
}

static int
master_recycles_in_progress(void)
{
	int i, n = 0;

	for (i = 0; i < SB_SLOTS; i++)
		if (mw[i].st == MW_RETIRING ||
		    (mw[i].st == MW_READY && mw[i].replaced_by >= 0))
			n++;
	return n;
}

/* Starts whatever the current generation is missing. */
static void
master_reconcile(void)
{
	int64_t now = master_now();
	int id;

	if (stopping)
		return;
	for (id = 0; id < cfg->server.workers && id < MAX_IDS; id++) {
		if (master_has_worker(id) || now < next_spawn[id])
			continue;
		master_spawn(id, -1);
	}
}

/*
 * A worker's connections and requests in flight as it last wrote them
 * in its slot, so no more than it could hold: the connections up to
 * max_connections, the requests up to the connections.
 */
static uint32_t
master_slot_load(const struct sb_slot *snap, uint32_t *conns)
{
	*conns = snap->w.connections;
	if (*conns > (uint32_t)cfg->server.max_connections)
		*conns = (uint32_t)cfg->server.max_connections;
	return snap->w.active < *conns ? snap->w.active : *conns;
}

/*
 * The load a drain begins with, read before the signal: once signalled,
 * the worker passes its idle connections on at once, and a read after
 * it (the master is not always first to run) counted what was left.
 */
static void
master_mark_drain(int slot)
{
	struct sb_slot snap;

	mw[slot].drain_conns = mw[slot].drain_active = 0;
	if (scoreboard_read_worker(slot, &snap) == 0 &&
	    snap.w.pid == mw[slot].pid)
		mw[slot].drain_active = master_slot_load(&snap,
		    &mw[slot].drain_conns);
}

/*
 * The line a drain begins with, written here and not by the worker: a
 * new process's first log line costs it 0.15-0.2 ms of CPU on a
 * shadow-paged guest (every page of the formatting code is a first
 * touch there), once per recycle; the master's is warm.
 */
static void
master_log_drain(int slot)
{
	log_info("worker %d draining (pid %d): %u connection(s), %u request(s) "
	    "in flight", mw[slot].id, (int)mw[slot].pid,
	    (unsigned)mw[slot].drain_conns, (unsigned)mw[slot].drain_active);
}

static void
master_retire(int slot)
{
	struct mworker *m = &mw[slot];
	struct sb_slot *s = &sb.slots[slot];
	int starting = m->st == MW_STARTING;

	if (m->st != MW_READY && m->st != MW_STARTING)
		return;
	m->st = MW_RETIRING;
	m->retire_ms = master_now();
	sb_begin(&s->m.seq);
	/* A reload may change the listeners: its connections do not move. */
	s->m.retiring = m->reason == R_RELOAD ? SB_RETIRE_CLOSE : SB_RETIRE_HANDOFF;
	sb_end(&s->m.seq);
	master_mark_drain(slot);
	if (kill(m->pid, SIGQUIT) == -1)
		log_error("kill(%d, SIGQUIT): %s", (int)m->pid, strerror(errno));
	else if (!starting)     /* else after its ready line (master_ready) */
		master_log_drain(slot);
}

/*
 * Graceful recycle: fork the replacement now, drain the old worker when
 * the replacement is ready (MSG_READY).
 */
static int
master_recycle(int slot, int reason, const char *detail)
{
	struct mworker *m = &mw[slot];
	struct sb_slot *s = &sb.slots[slot];
	int32_t route;
	int r;

	if (m->st != MW_READY || m->replaced_by >= 0)
		return 0;
	/*
	 * A stop is under way: every worker is going, and a replacement
	 * forked now would get no signal (it was not there for the stop's)
	 * and no listener (the master closed its own), and hold the stop up
	 * until the backstop killed it.  A TRIMMED or GROWN message read
	 * after the stop began still ends up here through master_judge.
	 */
	if (stopping)
		return 0;
	/*
	 * A worker of an old generation is being replaced already: the new
	 * generation's worker with its id retires it when ready.  A
	 * replacement forked here would be a second worker of the new
	 * generation with that id, which master_reconcile does not count
	 * (it replaces), and which nothing would ever retire.
	 */
	if (m->gen != generation)
		return 0;
	if (master_recycles_in_progress() >= cfg->recycle.max_concurrent_recycles)
		return 0;       /* the next sample tries again */
	if (master_now() < next_spawn[m->id])
		return 0;       /* replacements keep failing: back off */
	m->reason = reason;
	snprintf(m->detail, sizeof(m->detail), "%s", detail);
	/*
	 * Charged to the route whose request grew the heap by a step, when
	 * memory is the reason and the worker said which; else to the one
	 * it is serving.  Read once: the worker may change it between a
	 * check and a use.
	 */
	route = -1;
	if (reason == R_RSS || reason == R_FRAGMENTATION)
		route = __atomic_load_n(&s->w.grew_route, __ATOMIC_RELAXED);
	if (route < 0 || route >= SB_ROUTES)
		route = __atomic_load_n(&s->w.req_route, __ATOMIC_RELAXED);
	r = master_spawn(m->id, slot);
	if (r == -1)
		return -1;      /* counted when a try succeeds */
	if (route >= 0 && route < SB_ROUTES)
		sb.hdr->retired_routes[route].recycles++;
	m->replaced_by = r;
	log_debug("recycling worker %d pid %d: %s %s; replacement pid %d",
	    m->id, (int)m->pid, sb_reason_names[reason], detail,
	    (int)mw[r].pid);
	return 1;
}

/* Around the master's moves of counts in the header (status_hdr_begin). */
static void
master_hdr_begin(void)
{
	sb.hdr->seq = ++mstate->hdr_seq;
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

static void
master_hdr_end(void)
{
	__atomic_thread_fence(__ATOMIC_RELEASE);
	sb.hdr->seq = ++mstate->hdr_seq;
}

/*
 * Adds what a worker's start cost to the fleet's count, which outlives
 * the worker: over the starts it is the price of a recycle's new process
 * on this machine.  The worker wrote the figure, so a slot it did not
 * write, or a start past a minute of CPU (its start times out long
 * before), counts as a start of unknown cost.
 */
#define MASTER_START_CPU_MAX_US  (60ULL * 1000000)

static uint64_t
master_count_start(int slot)
{
	struct sb_slot snap;
	uint64_t us = 0;

	if (scoreboard_read_worker(slot, &snap) == 0 &&
	    snap.w.pid == mw[slot].pid &&
	    snap.w.start_cpu_us <= MASTER_START_CPU_MAX_US)
		us = snap.w.start_cpu_us;
	master_hdr_begin();
	sb.hdr->starts++;
	sb.hdr->start_cpu_us += us;
	master_hdr_end();
	return us;
}

/* Written here, not by the worker, for the reason master_log_drain gives. */
static void
master_log_ready(int slot, uint64_t start_us)
{
	const struct mworker *m = &mw[slot];

	if (start_us > 0)
		log_info("worker %d ready (generation %u): pid %d, its start "
		    "took %.2f ms of CPU", m->id, m->gen, (int)m->pid,
		    (double)start_us / 1000.0);
	else
		log_info("worker %d ready (generation %u): pid %d", m->id,
		    m->gen, (int)m->pid);
}

static void
master_ready(int slot)
{
	struct mworker *m;
	int i;

	if (slot < 0 || slot >= SB_SLOTS)
		return;     /* untrusted: a bogus message */
	m = &mw[slot];
	/*
	 * Retired while starting (a reload came): it got ready all the same,
	 * and worker_starts counts every worker that did; once, as ready_ms
	 * is set only here.
	 */
	if (m->st == MW_RETIRING && m->ready_ms == 0) {
		m->ready_ms = master_now();
		master_log_ready(slot, master_count_start(slot));
		master_log_drain(slot);
		return;
	}
	if (m->st != MW_STARTING)
		return;     /* a stale message */
	m->st = MW_READY;
	m->ready_ms = master_now();
	fail_count[m->id] = 0;
	master_log_ready(slot, master_count_start(slot));
	/*
	 * A stop came while it started: it had the stop's signal, and so
	 * had the worker it was to replace, which is draining already; a
	 * retire would signal it twice.
	 */
	if (stopping) {
		if (stopping == SIGQUIT)
			master_log_drain(slot);
		return;
	}
	if (m->replaces >= 0) {
		int old = m->replaces;

		m->replaces = -1;
		if (mw[old].st == MW_READY && mw[old].replaced_by == slot) {
			mw[old].replaced_by = -1;
			master_retire(old);
		}
		return;
	}
	/* A new generation's worker takes over from the old one's id. */
	for (i = 0; i < SB_SLOTS; i++)
		if (mw[i].st == MW_READY && mw[i].gen != generation &&
		    mw[i].id == m->id && mw[i].replaced_by < 0) {
			mw[i].reason = R_RELOAD;
			snprintf(mw[i].detail, sizeof(mw[i].detail),
			    "generation %u replaced by %u", mw[i].gen, generation);
			master_retire(i);
			break;
		}
	/* Once the new generation is complete, nothing old keeps serving. */
	for (i = 0; i < cfg->server.workers && i < MAX_IDS; i++) {
		int j, ok = 0;
		for (j = 0; j < SB_SLOTS; j++)
			if (mw[j].st == MW_READY && mw[j].gen == generation &&
			    mw[j].id == i)
				ok = 1;
		if (!ok)
			return;
	}
	for (i = 0; i < SB_SLOTS; i++)
		if (mw[i].st == MW_READY && mw[i].gen != generation) {
			mw[i].reason = R_RELOAD;
			snprintf(mw[i].detail, sizeof(mw[i].detail),
			    "generation %u replaced by %u", mw[i].gen, generation);
			master_retire(i);
		}
}

/* A gone worker's counters for one database join the fleet's. */
static void
master_retire_db(struct sb_db_stats *to, const struct sb_db_stats *from)
{
#define ADD(f) to->f += from->f;
	SB_DB_COUNTERS(ADD)
#undef ADD
}

static void
master_retire_stats(int slot)
{
	struct sb_slot *s = &sb.slots[slot];
	uint64_t requests = s->w.requests, moved = s->w.moved;
	int i;

	sb.hdr->retired_requests += requests;
	/* A worker moves a connection at most once per request it served
	 * (conn_follow runs at a request's end): no more than that counts. */
	sb.hdr->moved += moved <= requests ? moved : requests;
	sb.hdr->covered += s->w.covered;
	for (i = 0; i < SB_LAT_BUCKETS; i++)
		sb.hdr->retired_lat.count[i] += s->lat.count[i];
	sb.hdr->retired_lat.sum_us += s->lat.sum_us;
	if (mw[slot].gen != generation)
		return;     /* route numbering belongs to another generation */
	for (i = 0; i < SB_DBS; i++)
		master_retire_db(&sb.hdr->retired_dbs[i], &s->dbs[i]);
	for (i = 0; i < SB_ROUTES; i++) {
		sb.hdr->retired_routes[i].requests += s->routes[i].requests;
		sb.hdr->retired_routes[i].time_us += s->routes[i].time_us;
		sb.hdr->retired_routes[i].allocs += s->routes[i].allocs;
		sb.hdr->retired_routes[i].alloc_bytes += s->routes[i].alloc_bytes;
		if (s->routes[i].max_growth > sb.hdr->retired_routes[i].max_growth)
			sb.hdr->retired_routes[i].max_growth = s->routes[i].max_growth;
	}
}

/* ' while serving "GET /x"' for a log line, or "" if the worker was idle. */
#define MASTER_SERVING_LEN (4 * SB_REQ_LEN + 48)
static const char *
master_serving(const struct sb_slot *snap, int culprit, char *buf, size_t len)
{
	char esc[4 * SB_REQ_LEN + 1];

	if (snap->w.req_start_ms == 0)
		return "";
	/* The worker wrote it: a newline in it would forge a log line. */
	log_escape(snap->w.req_line, esc, sizeof(esc));
	/*
	 * For a crash or a stall (culprit), which only the code running then
	 * caused: a request merely pending was not necessarily it (a module's
	 * own timer, another module's callback).  Memory is another matter:
	 * every request in flight holds some.
	 */
	if (!culprit || snap->w.in_handler)
		snprintf(buf, len, " while serving \"%s\"", esc);
	else
		snprintf(buf, len, " outside any handler, with \"%s\" pending", esc);
	return buf;
}

/* The routes kept for an old generation, or NULL. */
static const struct old_gen *
master_old_gen(unsigned gen)
{
	int k;

	for (k = 0; k < OLD_GENS; k++)
		if (gen != 0 && mstate->old_gens[k].gen == gen)
			return &mstate->old_gens[k];
	return NULL;
}

/*
 * At a reload, before the running configuration goes: its route index
 * (as its workers published it) to module and prefix, in the slot of the
 * oldest generation kept.
 */
static void
master_keep_routes(void)
{
	struct old_gen *og = &mstate->old_gens[generation % OLD_GENS];
	const struct route_conf *rc;
	char prefix[sizeof(sb.hdr->route_names[0])];
	uint32_t i, n = sb.hdr->nroutes;

	memset(og, 0, sizeof(*og));
	og->gen = generation;
	og->nroutes = n < SB_ROUTES ? n : SB_ROUTES;
	for (i = 0; i < og->nroutes; i++) {
		memcpy(prefix, sb.hdr->route_names[i], sizeof(prefix));
		prefix[sizeof(prefix) - 1] = '\0';
		for (rc = cfg->routes; rc != NULL; rc = rc->next)
			if (strcmp(rc->prefix, prefix) == 0)
				break;
		if (rc == NULL)
			continue;       /* the status page, or a scribbled name */
		snprintf(og->route[i].prefix, sizeof(og->route[i].prefix), "%s",
		    rc->prefix);
		snprintf(og->route[i].module, sizeof(og->route[i].module), "%s",
		    rc->module);
	}
}

/*
 * The current generation's route names, by the index its workers publish,
 * for the status page and the master's own lines; in the header, which
 * the workers can read and not write.
 */
static void
master_route_names(void)
{
	const char *names[SB_ROUTES];
	int i, n = worker_route_names(cfg, names, SB_ROUTES);

	memset(sb.hdr->route_names, 0, sizeof(sb.hdr->route_names));
	for (i = 0; i < n; i++)
		snprintf(sb.hdr->route_names[i], sizeof(sb.hdr->route_names[i]),
		    "%s", names[i]);
	sb.hdr->nroutes = (uint32_t)n;
}

/*
 * ' in module M (route /p)' for a crash in a handler (culprit), or for a
 * worker over hard_max_rss with a request in flight, in its handler or
 * not (master_serving says why): the module is what the operator will
 * move to an instance of its own or report.  From the
 * route index the worker wrote (untrusted: only looked up, never
 * printed), through the route names of this generation, to the master's
 * own configuration, or for an old generation's worker through what
 * master_keep_routes kept of it; "" when that chain cannot be followed.
 */
static const char *
master_module_of(const struct sb_slot *snap, int culprit, char *buf,
    size_t len)
{
	const struct route_conf *rc;
	const struct old_gen *og;
	char prefix[sizeof(sb.hdr->route_names[0])];
	int32_t i = snap->w.req_route;

	if (snap->w.req_start_ms == 0 || (culprit && !snap->w.in_handler) ||
	    i < 0 || i >= SB_ROUTES)
		return "";
	if (snap->w.generation != generation) {
		if ((og = master_old_gen(snap->w.generation)) == NULL ||
		    (uint32_t)i >= og->nroutes || og->route[i].module[0] == '\0')
			return "";
		snprintf(buf, len, " in module %s (route %s)",
		    og->route[i].module, og->route[i].prefix);
		return buf;
	}
	if ((uint32_t)i >= sb.hdr->nroutes)
		return "";
	memcpy(prefix, sb.hdr->route_names[i], sizeof(prefix));
	prefix[sizeof(prefix) - 1] = '\0';
	for (rc = cfg->routes; rc != NULL; rc = rc->next)
		if (strcmp(rc->prefix, prefix) == 0) {
			snprintf(buf, len, " in module %s (route %s)", rc->module,
			    rc->prefix);
			return buf;
		}
	return "";
}

/*
 * ", 3 in flight lost" for a worker that died with requests in its
 * handlers or on their way out: their clients got no reply, and the line
 * for the one that killed it would otherwise be all the log says.  The
 * worker wrote the count (master_slot_load).
 */
static const char *
master_lost(pid_t pid, const struct sb_slot *snap, char *buf, size_t len)
{
	uint32_t conns, n;

	if (snap->w.pid != pid || (n = master_slot_load(snap, &conns)) == 0)
		return "";
	snprintf(buf, len, ", %u in flight lost", (unsigned)n);
	return buf;
}

/*
 * ' in the worker_init hook of module M' for a worker that died starting
 * (worker_slot_step).  The worker wrote it: escaped, and only if the slot
 * is this worker's and still says it was starting.
 */
static const char *
master_start_step(pid_t pid, const struct sb_slot *snap, char *buf,
    size_t len)
{
	char esc[4 * SB_REQ_LEN + 1];

	if (snap->w.pid != pid || snap->w.state != SB_STARTING ||
	    snap->w.req_line[0] == '\0')
		return "";
	log_escape(snap->w.req_line, esc, sizeof(esc));
	snprintf(buf, len, " in %s", esc);
	return buf;
}

/*
 * What a worker's exit cost it: all the CPU the kernel says it used, less
 * what it had used when it called exit (it wrote that last, in its slot).
 * 0 for a worker that did not get there (killed, crashed, a fast stop) or
 * whose figure cannot be right.
 */
static uint64_t
master_exit_cpu(pid_t pid, const struct sb_slot *snap, const struct rusage *ru)
{
	uint64_t life = (uint64_t)ru->ru_utime.tv_sec * 1000000 +
	    (uint64_t)ru->ru_utime.tv_usec +
	    (uint64_t)ru->ru_stime.tv_sec * 1000000 +
	    (uint64_t)ru->ru_stime.tv_usec;

	if (snap->w.pid != pid || snap->w.state != SB_EXITED ||
	    snap->w.exit_cpu_us == 0 || snap->w.exit_cpu_us > life)
		return 0;
	return life - snap->w.exit_cpu_us;
}

/* ------------------------------------------------------------------ */
/* The access log's failures, said once for the fleet                  */

#define ACCESS_ERR_LOG_MS 10000   /* at most one line this often */

/* A failed write of the master's own (the lines a dead worker left). */
static void
master_access_report(int err, size_t lost)
{
	mstate->access.last_ok = err == 0;
	if (err == 0) {
		mstate->access.new_again++;
		return;
	}
	mstate->access.new_failed++;
	mstate->access.new_lost += lost;
	mstate->access.err = err;
}

/* What a worker's slot says failed, or worked again, since the last look. */
static void
master_access_collect(int slot, const struct sb_slot *snap)
{
	struct mworker *m = &mw[slot];

	/* Not yet its own, or torn: its predecessor's figures are counted. */
	if (snap->w.pid != m->pid)
		return;
	/* The worker's word: a count that went down is ignored. */
	if (snap->w.access_failed > m->acc_failed) {
		mstate->access.new_failed += snap->w.access_failed - m->acc_failed;
		if (snap->w.access_errno != 0)
			mstate->access.err = snap->w.access_errno;
	}
	if (snap->w.access_lost > m->acc_lost)
		mstate->access.new_lost += snap->w.access_lost - m->acc_lost;
	if (snap->w.access_again > m->acc_again)
		mstate->access.new_again += snap->w.access_again - m->acc_again;
	/* Failures and a success since the last look: which came last. */
	if (snap->w.access_failed > m->acc_failed ||
	    snap->w.access_again > m->acc_again)
		mstate->access.last_ok = snap->w.access_errno == 0;
	m->acc_failed = snap->w.access_failed;
	m->acc_lost = snap->w.access_lost;
	m->acc_again = snap->w.access_again;
}

/*
 * Each worker used to say its own failures: a full disk under recycling
 * wrote a line per new worker (45 a second at a recycle every 2,000
 * requests), into an error log often on the same disk.  Now the first
 * failure of the fleet is said at the next sample, then one line every
 * ACCESS_ERR_LOG_MS at most, and one when a write works again.
 */
static void
master_access_judge(int64_t now)
{
	struct master_access *a = &mstate->access;
	const char *path = log_access_path();

	if (path == NULL) {
		/* The log is off now: nothing will work again, nor fail. */
		memset(a, 0, sizeof(*a));
		return;
	}
	if (a->new_failed > 0) {
		a->failed += a->new_failed;
		a->lost += a->new_lost;
		if (!a->failing) {
			log_error("write access log %s: %s", path,
			    strerror(a->err));
			a->failing = 1;
			a->logged_ms = now;
			a->unsaid = a->new_failed - 1;
		} else if (now - a->logged_ms >= ACCESS_ERR_LOG_MS) {
			log_error("write access log %s: %s (%llu more failed "
			    "writes, %llu bytes of lines lost so far)", path,
			    strerror(a->err),
			    (unsigned long long)(a->unsaid + a->new_failed),
			    (unsigned long long)a->lost);
			a->logged_ms = now;
			a->unsaid = 0;
		} else {
			a->unsaid += a->new_failed;
		}
	}
	/* Not an else: a write that worked after this sample's failures. */
	if (a->failing && a->new_again > 0 && a->last_ok) {
		log_warn("access log %s: written again after %llu failed writes "
		    "(%llu bytes of lines lost)", path,
		    (unsigned long long)a->failed, (unsigned long long)a->lost);
		a->failing = 0;
		a->unsaid = a->failed = a->lost = 0;
	}
	a->new_failed = a->new_lost = a->new_again = 0;
}

/* Every worker's slot, then what the fleet's access log did. */
static void
master_access_sample(int64_t now)
{
	struct sb_slot snap;
	int i;

	for (i = 0; i < (int)mstate->slots_hi && i < SB_SLOTS; i++)
		if (mw[i].st != MW_FREE &&
		    scoreboard_read_worker(i, &snap) == 0)
			master_access_collect(i, &snap);
	master_access_judge(now);
}

static void
master_reaped(pid_t pid, int status, const struct rusage *ru)
{
	struct sb_slot snap;
	struct mworker *m = NULL;
	uint64_t exit_us;
	int slot, id;
	char why[64], req[MASTER_SERVING_LEN], mod[200], lost[48];
	int64_t now = master_now();

	for (slot = 0; slot < SB_SLOTS; slot++)
		if (mw[slot].st != MW_FREE && mw[slot].pid == pid) {
			m = &mw[slot];
			break;
		}
	if (m == NULL)
		return;
	id = m->id;
	if (scoreboard_read_worker(slot, &snap) == -1)
		memset(&snap, 0, sizeof(snap));
	exit_us = master_exit_cpu(pid, &snap, ru);
	/* The worker's own count, so no more than it could have held; and a
	 * slot this worker never wrote still holds its predecessor's. */
	if (snap.w.pid != pid)
		snap.w.handed_off = 0;
	else if (snap.w.handed_off > (uint64_t)cfg->server.max_connections)
		snap.w.handed_off = (uint32_t)cfg->server.max_connections;
	sb.hdr->handed_over += snap.w.handed_off;
	/* A worker that exited cleanly wrote its lines; one that crashed or
	 * was killed left them here. */
	if (snap.w.pid == pid && snap.w.access_len > 0)
		log_access_salvage(sb_access(slot), SB_ACCESS_BUF,
		    snap.w.access_len);
	master_access_collect(slot, &snap);
	if (WIFSIGNALED(status))
		snprintf(why, sizeof(why), "killed by signal %d (SIG%s)",
		    WTERMSIG(status), sigabbrev_np(WTERMSIG(status)) ?
		    sigabbrev_np(WTERMSIG(status)) : "?");
	else
		snprintf(why, sizeof(why), "exited with status %d",
		    WEXITSTATUS(status));

	if (m->st == MW_RETIRING && !(WIFSIGNALED(status))) {
		if (m->reason >= 0 && m->reason < R_MAX) {
			sb.hdr->recycles[m->reason]++;
			log_info("recycled worker %d pid %d: reason=%s %s requests=%llu "
			    "age=%.1fs drain=%lldms handed_over=%u exit_cpu=%.2fms",
			    id, (int)pid, sb_reason_names[m->reason], m->detail,
			    (unsigned long long)snap.w.requests,
			    (double)(now - m->spawned_ms) / 1000.0,
			    (long long)(now - m->retire_ms), snap.w.handed_off,
			    (double)exit_us / 1000.0);
		} else {
			log_info("worker %d pid %d stopped (%s)", id, (int)pid, why);
		}
	} else if (m->st == MW_KILLED) {
		/* master_kill set the reason. */
		sb.hdr->recycles[m->reason]++;
		log_error("worker %d pid %d killed: reason=%s %s requests=%llu%s",
		    id, (int)pid, sb_reason_names[m->reason], m->detail,
		    (unsigned long long)snap.w.requests,
		    master_lost(pid, &snap, lost, sizeof(lost)));
	} else if (stopping) {
		if (WIFSIGNALED(status) && WTERMSIG(status) != SIGTERM &&
		    WTERMSIG(status) != SIGKILL)
			log_error("worker %d pid %d %s while stopping", id, (int)pid, why);
	} else if (m->st == MW_STARTING) {
		int64_t delay;

		delay = master_backoff(id, now);
		log_error("worker %d pid %d %s during start-up%s", id, (int)pid,
		    why, master_start_step(pid, &snap, req, sizeof(req)));
		log_error("worker %d failed at start-up %d times in a row; next start "
		    "in %lld ms", id, fail_count[id], (long long)delay);
		/* A failed replacement leaves the old worker serving. */
		if (m->replaces >= 0 && mw[m->replaces].replaced_by == slot)
			mw[m->replaces].replaced_by = -1;
	} else if (WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
	    snap.w.pid == pid && (snap.w.exit_signal == SIGTERM ||
	    snap.w.exit_signal == SIGINT)) {
		/* An operator's fast stop of this one worker: no crash. */
		const char *l = master_lost(pid, &snap, lost, sizeof(lost));

		sb.hdr->recycles[R_SIGNAL]++;
		log_msg(*l ? MOLT_LOG_WARN : MOLT_LOG_INFO, "worker %d pid %d "
		    "exited on SIG%s, not from the master: reason=signal "
		    "requests=%llu%s",
		    id, (int)pid, sigabbrev_np(snap.w.exit_signal),
		    (unsigned long long)snap.w.requests, l);
		if (m->replaced_by >= 0)
			mw[m->replaced_by].replaces = -1;
	} else {
		/*
		 * A crash in service: the request it had is worth naming.
		 * reason= and requests= as in every other recycle's line, so
		 * that a grep counts what molt_recycles_total counts.
		 */
		sb.hdr->recycles[R_CRASH]++;
		log_error("worker %d pid %d %s: reason=%s%s%s requests=%llu%s", id,
		    (int)pid, why, sb_reason_names[R_CRASH],
		    master_serving(&snap, 1, req, sizeof(req)),
		    master_module_of(&snap, 1, mod, sizeof(mod)),
		    (unsigned long long)snap.w.requests,
		    master_lost(pid, &snap, lost, sizeof(lost)));
		if (m->replaced_by >= 0)
			mw[m->replaced_by].replaces = -1;
	}
	/*
	 * The slot's counts move to the fleet totals under the header's
	 * sequence, so that the status page, which adds the two, counts
	 * them once: read between the move and the freeing, they were
	 * counted twice, and the next read saw the totals go down.  They
	 * are zeroed here, not by the next worker in the slot: it is counted
	 * from its fork on, and one that dies before its first write would
	 * have its predecessor's counts added again.
	 */
	master_hdr_begin();
	master_retire_stats(slot);
	if (exit_us > 0) {
		sb.hdr->exits++;
		sb.hdr->exit_cpu_us += exit_us;
	}
	/* The worker's half first: a reader between the two sees SB_FREE,
	 * never a dead worker's pid (status_worker). */
	sb_begin(&sb.slots[slot].w.seq);
	sb.slots[slot].w.state = SB_FREE;
	sb.slots[slot].w.pid = 0;
	sb.slots[slot].w.access_len = 0;
	sb.slots[slot].w.requests = 0;
	sb.slots[slot].w.moved = 0;
	sb.slots[slot].w.covered = 0;
	sb.slots[slot].w.asked_recycle = 0;
	sb.slots[slot].w.exit_signal = 0;
	sb.slots[slot].w.access_failed = 0;
	sb.slots[slot].w.access_lost = 0;
	sb.slots[slot].w.access_again = 0;
	sb_end(&sb.slots[slot].w.seq);
	memset(sb.slots[slot].routes, 0, sizeof(sb.slots[slot].routes));
	memset(&sb.slots[slot].lat, 0, sizeof(sb.slots[slot].lat));
	memset(sb.slots[slot].dbs, 0, sizeof(sb.slots[slot].dbs));
	sb_begin(&sb.slots[slot].m.seq);
	sb.slots[slot].m.pid = 0;
	sb_end(&sb.slots[slot].m.seq);
	master_hdr_end();
	memset(m, 0, sizeof(*m));
	m->st = MW_FREE;
	while (mstate->slots_hi > 0 && mw[mstate->slots_hi - 1].st == MW_FREE)
		mstate->slots_hi--;
	sb.hdr->slots_hi = mstate->slots_hi;
}

/* ------------------------------------------------------------------ */
/* Memory policy                                                       */

static uint64_t
master_measure(const struct mworker *m)
{
	switch (cfg->recycle.measure) {
	case MEASURE_RSS: return m->ms.rss;
	case MEASURE_PSS: return m->ms.pss;
	default:          return m->ms.uss;
	}
}

static const char *
master_measure_name(void)
{
	return cfg->recycle.measure == MEASURE_RSS ? "rss" :
	    cfg->recycle.measure == MEASURE_PSS ? "pss" : "uss";
}

static int
master_sample_one(int slot)
{
	struct sb_slot *s = &sb.slots[slot];
	struct mem_sample ms;

	if (memwatch_read(mw[slot].pid, &ms, cfg->recycle.measure != MEASURE_RSS) == -1)
		return -1;
	mw[slot].ms = ms;
	sb_begin(&s->m.seq);
	s->m.rss = ms.rss;
	s->m.rss_anon = ms.rss_anon;
	s->m.uss = ms.uss;
	s->m.pss = ms.pss;
	s->m.measured_ms = master_wall_ms();
	sb_end(&s->m.seq);
	return 0;
}

static void
master_ask_trim(int slot)
{
	struct mworker *m = &mw[slot];
	struct sb_slot *s = &sb.slots[slot];

	m->trim_pending = 1;
	m->trimmed = 1;
	m->trim_before = master_measure(m);
	sb_begin(&s->m.seq);
	s->m.trim_request++;
	s->m.trims++;
	sb_end(&s->m.seq);
	if (kill(m->pid, SIGUSR2) == -1)
		log_error("kill(%d, SIGUSR2): %s", (int)m->pid, strerror(errno));
}

/* Kills a worker past saving (hard_max_rss, stall): no drain, no handoff. */
static void
master_kill(int slot, int reason)
{
	struct mworker *m = &mw[slot];

	m->st = MW_KILLED;
	m->reason = reason;
	if (m->replaced_by >= 0)
		mw[m->replaced_by].replaces = -1;
	if (kill(m->pid, SIGKILL) == -1)
		log_error("kill(%d, SIGKILL): %s", (int)m->pid, strerror(errno));
}

/*
 * A ratio or a time just over its limit must not print as the limit
 * itself ("4.0 > 4.0"): one decimal, or as many more as it takes.
 */
static const char *
master_fmt_over(double v, double limit, char *buf, size_t len)
{
	int prec;

	for (prec = 1; prec < 6; prec++) {
		snprintf(buf, len, "%.*f", prec, v);
		if (v <= limit || strtod(buf, NULL) > limit)
			break;
	}
	return buf;
}

/*
 * A worker whose loop has not turned for stall_timeout (a handler that
 * never returns, a call that hangs) serves none of its connections, will
 * not answer a trim and cannot drain: kill it, so that its id gets a
 * worker that serves.  The beat is the worker's word; one from the future
 * counts as fresh.  Returns 1 if it killed.
 */
static int
master_stalled(int slot, int64_t now)
{
	struct mworker *m = &mw[slot];
	long long limit = cfg->recycle.stall_timeout_ms;
	struct sb_slot snap;
	char how[96], req[MASTER_SERVING_LEN], secs[24], mod[200];
	int64_t held;

	if (limit == 0 || m->st != MW_READY)
		return 0;
	if (limit < 3 * cfg->recycle.sample_interval_ms)
		limit = 3 * cfg->recycle.sample_interval_ms;
	/*
	 * A worker writes its half in a few instructions; one that stays torn
	 * (or names another pid) for stall_timeout is not in its loop, or a
	 * stray write broke it, and it must not be exempt for that.
	 */
	if (scoreboard_read_worker(slot, &snap) == -1 || snap.w.pid != m->pid) {
		if (m->torn_ms == 0 || now < m->torn_ms) {
			m->torn_ms = now;
			return 0;
		}
		if (now - m->torn_ms <= limit)
			return 0;
		snprintf(m->detail, sizeof(m->detail), "slot unreadable for %ss > "
		    "stall_timeout=%.1fs", master_fmt_over((double)(now -
		    m->torn_ms) / 1000.0, (double)limit / 1000.0, secs,
		    sizeof(secs)), (double)limit / 1000.0);
		master_kill(slot, R_STALL);
		return 1;
	}
	m->torn_ms = 0;
	if (snap.w.beat_ms <= 0)
		return 0;
	/*
	 * Held for sure only since the next beat was due: the handler may
	 * have started just before it, so counting from the last beat would
	 * kill one that held the loop a sample_interval less than the limit.
	 */
	held = now - snap.w.beat_ms - cfg->recycle.sample_interval_ms;
	if (held <= limit)
		return 0;
	memwatch_state(m->pid, how, sizeof(how));
	snprintf(m->detail, sizeof(m->detail), "loop stalled for %ss > "
	    "stall_timeout=%.1fs%s%s, %s",
	    master_fmt_over((double)held / 1000.0, (double)limit / 1000.0,
	    secs, sizeof(secs)), (double)limit / 1000.0,
	    master_serving(&snap, 1, req, sizeof(req)),
	    master_module_of(&snap, 1, mod, sizeof(mod)), how);
	master_kill(slot, R_STALL);
	return 1;
}

/* Decides one ready worker's fate from its latest figures. */
/*
 * max_requests and max_lifetime: counted limits, not memory, so no
 * samples_over and no trim.  Returns 1 if the worker is past one (its
 * recycle may still wait for max_concurrent_recycles or a backoff).
 */
static int
master_limits(int slot, const struct sb_slot *snap, int64_t now)
{
	struct mworker *m = &mw[slot];
	char detail[200];

	if (m->req_limit > 0 && snap->w.requests >= m->req_limit) {
		/* The requests and age it reached end the recycled line. */
		snprintf(detail, sizeof(detail), "max_requests=%llu",
		    (unsigned long long)m->req_limit);
		master_recycle(slot, R_REQUESTS, detail);
		return 1;
	}
	if (m->life_limit_ms > 0 && now - m->spawned_ms >= m->life_limit_ms) {
		snprintf(detail, sizeof(detail), "max_lifetime=%.1fs",
		    m->life_limit_ms / 1000.0);
		master_recycle(slot, R_LIFETIME, detail);
		return 1;
	}
	return 0;
}

/*
 * The limits again, between samples: a worker's MSG_LIMIT, a lifetime
 * deadline, or a finished recycle that frees a max_concurrent_recycles
 * place wakes the master, and the recycle starts then.
 */
static void
master_check_limits(int64_t now)
{
	struct sb_slot snap;
	uint32_t asked;
	int i;

	if (stopping)
		return;
	for (i = 0; i < SB_SLOTS; i++) {
		struct mworker *m = &mw[i];

		if (m->st != MW_READY || m->replaced_by >= 0)
			continue;
		/* Any value the worker wrote asks; a recycle is all it can get.
		 * Asked again here until it happens (max_concurrent_recycles). */
		asked = __atomic_load_n(&sb.slots[i].w.asked_recycle,
		    __ATOMIC_RELAXED);
		if (asked != 0 && sb.slots[i].w.pid == m->pid &&
		    master_recycle(i, R_SIGNAL, asked == SIGXCPU ?
		    "SIGXCPU: over its soft CPU time limit (RLIMIT_CPU)" :
		    "SIGQUIT sent to the worker") != 0)
			continue;
		if (m->trim_pending ||
		    (m->req_limit == 0 && m->life_limit_ms == 0))
			continue;
		if (scoreboard_read_worker(i, &snap) == 0)
			master_limits(i, &snap, now);
	}
}

static void
master_judge(int slot, int after_trim)
{
	const struct recycle_conf *rc = &cfg->recycle;
	struct mworker *m = &mw[slot];
	struct sb_slot snap;
	char a[32], b[32], ratio[32], detail[200], req[MASTER_SERVING_LEN];
	char mod[200];
	int64_t now = master_now();
	uint64_t val;
	double frag = 0;
	int over_rss, over_frag;

	/*
	 * A worker half that never reads consistently (a sequence counter a
	 * stray write left odd) must not exempt the worker from the memory
	 * limits, which rest on the master's own measure: judge it as one
	 * that reports nothing.
	 */
	if (scoreboard_read_worker(slot, &snap) == -1)
		memset(&snap, 0, sizeof(snap));
	val = master_measure(m);

	if (rc->hard_max_rss > 0 && val > (uint64_t)rc->hard_max_rss) {
		snprintf(m->detail, sizeof(m->detail), "%s=%s > hard_max_rss=%s%s%s",
		    master_measure_name(),
		    memwatch_fmt_over(val, (uint64_t)rc->hard_max_rss, a, sizeof(a)),
		    memwatch_fmt((uint64_t)rc->hard_max_rss, b, sizeof(b)),
		    master_serving(&snap, 0, req, sizeof(req)),
		    master_module_of(&snap, 0, mod, sizeof(mod)));
		master_kill(slot, R_HARD_RSS);
		return;
	}
	/* A stop drains every worker anyway: only the hard limit holds. */
	if (stopping)
		return;
	if (m->st != MW_READY || m->replaced_by >= 0 || m->trim_pending)
		return;
	if (master_limits(slot, &snap, now))
		return;
	if (now - m->spawned_ms < rc->min_lifetime_ms)
		return;

	over_rss = rc->max_rss > 0 && val > (uint64_t)rc->max_rss;
	/*
	 * Fragmentation weighs this measure against the heap the worker last
	 * reported.  A request that began after that report may since have
	 * filled the heap with memory in use, and the old figure would make
	 * it look as if nothing were: a worker busy with a big request is
	 * judged by its own next report instead (the size limits still hold).
	 */
	if (rc->max_fragmentation > 0 && val >= (uint64_t)rc->fragmentation_min_rss &&
	    snap.w.heap_in_use > 0 && (snap.w.req_start_ms == 0 ||
	    snap.w.sampled_ms > snap.w.req_start_ms)) {
		frag = (double)val / (double)scoreboard_in_use(&snap, val);
		over_frag = frag > rc->max_fragmentation;
	} else {
		over_frag = 0;
	}
	m->over_rss = over_rss ? m->over_rss + 1 : 0;
	m->over_frag = over_frag ? m->over_frag + 1 : 0;
	if (!over_rss && !over_frag) {
		if (after_trim && m->trim_before > 0) {
			sb.hdr->trims++;
			sb.hdr->trim_reclaimed += m->trim_before > val ?
			    m->trim_before - val : 0;
			log_info("trimmed worker %d pid %d: %s %s %s -> %s, now under "
			    "the limits; requests=%llu", m->id, (int)m->pid,
			    m->trim_why, master_measure_name(),
			    memwatch_fmt(m->trim_before, a, sizeof(a)),
			    memwatch_fmt(val, b, sizeof(b)),
			    (unsigned long long)snap.w.requests);
		}
		m->trimmed = 0;
		return;
	}
	if (!after_trim && m->over_rss < rc->samples_over &&
	    m->over_frag < rc->samples_over)
		return;
	if (rc->trim && !m->trimmed) {
		if (over_rss)
			snprintf(m->trim_why, sizeof(m->trim_why), "reason=rss max_rss=%s",
			    memwatch_fmt((uint64_t)rc->max_rss, a, sizeof(a)));
		else
			snprintf(m->trim_why, sizeof(m->trim_why), "reason=fragmentation "
			    "fragmentation=%s max_fragmentation=%.1f",
			    master_fmt_over(frag, rc->max_fragmentation, a, sizeof(a)),
			    rc->max_fragmentation);
		master_ask_trim(slot);
		return;
	}
	if (after_trim) {
		sb.hdr->trims++;
		sb.hdr->trim_reclaimed += m->trim_before > val ? m->trim_before - val : 0;
		uint64_t lim = over_rss ? (uint64_t)rc->max_rss : UINT64_MAX;

		log_info("trimmed worker %d pid %d: %s %s %s -> %s, still over the "
		    "limit; recycling", m->id, (int)m->pid, m->trim_why,
		    master_measure_name(),
		    memwatch_fmt_over(m->trim_before, lim, a, sizeof(a)),
		    memwatch_fmt_over(val, lim, b, sizeof(b)));
	}
	if (over_rss) {
		snprintf(detail, sizeof(detail), "%s=%s > max_rss=%s",
		    master_measure_name(),
		    memwatch_fmt_over(val, (uint64_t)rc->max_rss, a, sizeof(a)),
		    memwatch_fmt((uint64_t)rc->max_rss, b, sizeof(b)));
		master_recycle(slot, R_RSS, detail);
	} else {
		snprintf(detail, sizeof(detail), "fragmentation=%s > "
		    "max_fragmentation=%.1f (%s=%s, in use %s)",
		    master_fmt_over(frag, rc->max_fragmentation, ratio,
		    sizeof(ratio)), rc->max_fragmentation, master_measure_name(),
		    memwatch_fmt(val, a, sizeof(a)),
		    memwatch_fmt(scoreboard_in_use(&snap, val), b, sizeof(b)));
		master_recycle(slot, R_FRAGMENTATION, detail);
	}
}

/*
 * Every worker is sampled first and then judged largest first: with
 * max_concurrent_recycles places fewer than the workers over a limit,
 * the ones judged first take them, and in slot order those were the
 * oldest slots, not the workers holding the most memory.
 */
static void
master_sample_all(void)
{
	int order[SB_SLOTS], n = 0, i, k;
	uint64_t val;

	/* A sequence a worker wrote odd would cost every status page a wait
	 * until the next reap; a fleet that never recycles has none. */
	sb.hdr->seq = mstate->hdr_seq;
	for (i = 0; i < SB_SLOTS; i++) {
		if (mw[i].st != MW_READY && mw[i].st != MW_RETIRING)
			continue;
		if (master_stalled(i, master_now()))
			continue;
		if (master_sample_one(i) == -1)
			continue;
		if (mw[i].st == MW_READY && !mw[i].trim_pending) {
			val = master_measure(&mw[i]);
			for (k = n; k > 0 &&
			    master_measure(&mw[order[k - 1]]) < val; k--)
				order[k] = order[k - 1];
			order[k] = i;
			n++;
		} else if (cfg->recycle.hard_max_rss > 0) {
			/* A worker stuck in a long request never answers the
			 * trim; the hard limit must still hold. */
			master_judge(i, 0);
		}
	}
	for (k = 0; k < n; k++)
		master_judge(order[k], 0);
	master_access_sample(master_now());
}

/*
 * A worker's heap grew by a step since it last said so: sample it now
 * instead of at the next sample_interval, so a burst of allocations is
 * judged while it is still near the limit.  The worker only hints; the
 * measurement and the decision are the master's.  At most one such sample
 * per worker per HINT_MIN_MS, whatever a worker writes.
 */
#define HINT_MIN_MS 20

static void
master_grown(int slot)
{
	struct mworker *m;
	int64_t now = master_now();

	if (slot < 0 || slot >= SB_SLOTS)
		return;
	m = &mw[slot];
	if (m->st != MW_READY || m->trim_pending || now - m->hint_ms < HINT_MIN_MS)
		return;
	m->hint_ms = now;
	if (master_sample_one(slot) == 0)
		master_judge(slot, 0);
}

static void
master_trimmed(int slot)
{
	if (slot < 0 || slot >= SB_SLOTS || !mw[slot].trim_pending)
		return;
	mw[slot].trim_pending = 0;
	if (master_sample_one(slot) == 0)
		master_judge(slot, 1);
}

/* ------------------------------------------------------------------ */
/* Reload                                                              */

static void
master_reload_start(void)
{
	struct conf_error err;
	struct molt_config *nc;

	log_info("reloading configuration from %s", conf_path ? conf_path :
	    "(embedded)");
	if (validator_pid != -1) {
		log_info("a reload is already being checked; this one follows it");
		reload_again = 1;
		return;
	}
	memset(&err, 0, sizeof(err));
	nc = config_load(conf_path, &err);
	if (nc == NULL) {
		log_error("reload failed: %s:%d: %s; still serving generation %u",
		    err.file, err.line, err.msg, generation);
		return;
	}
	main_fixup_config(nc);
	if (db_config_check(nc, &err) == -1) {
		log_error("reload failed: %s:%d: %s; still serving generation %u",
		    err.file, err.line, err.msg, generation);
		config_free(nc);
		return;
	}
	validator_pid = master_validate_start(nc, &validator_fd);
	if (validator_pid == -1) {
		/* Out of descriptors or processes: the line above says which,
		 * this one what it meant, as every failed reload does. */
		log_error("reload failed: cannot start the module check; still "
		    "serving generation %u", generation);
		config_free(nc);
		return;
	}
	validator_deadline = master_now() + nc->server.check_timeout_ms;
	validator_killed = 0;
	pending_cfg = nc;
}

/* Its reap (SIGCHLD, master_reload_finish) ends the reload. */
static void
master_validate_kill(void)
{
	if (kill(validator_pid, SIGKILL) == -1)
		log_error("kill(%d, SIGKILL) (module check): %s",
		    (int)validator_pid, strerror(errno));
	validator_killed = 1;
}

/*
 * A check that hangs would hold off every later reload, and a stop would
 * leave it behind: past check_timeout it is killed and the reload fails.
 */
static void
master_validate_expire(int64_t now)
{
	if (validator_pid != -1 && !validator_killed &&
	    now >= validator_deadline)
		master_validate_kill();
}

/*
 * Opens and locks the pid file for the master's life.  The lock is what
 * tells a live master from a stale file: a second molt with the same
 * pid_file refuses to start instead of taking the file over (molt -s would
 * then signal the wrong master), and molt -s refuses to signal a pid that
 * no molt holds the file for (main_signal).  Taken before the daemon's
 * fork, whose child keeps it, so that a pid file molt cannot have makes
 * molt -d fail, not its daemon.  Returns the descriptor, or -1.
 */
static int
master_pid_take(const char *path)
{
	char buf[32];
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) == -1) {
		log_error("cannot open pid file %s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) == 0)
		return fd;
	if (errno != EWOULDBLOCK) {
		/* A file system without locks: the file still says who we are. */
		log_warn("flock(%s): %s; the pid file is not locked", path,
		    strerror(errno));
		return fd;
	}
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	log_error("pid file %s is held by a running molt (pid %s); not starting "
	    "another", path, buf[0] != '\0' ? buf : "unknown");
	close(fd);
	return -1;
}

static int
master_pid_write(int fd, const char *path)
{
	char buf[32];
	int n;

	n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) == -1 || pwrite(fd, buf, (size_t)n, 0) != n) {
		log_error("cannot write pid file %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

static int
master_pid_same(const char *from, const char *to)
{
	return from == NULL ? to == NULL : to != NULL && strcmp(from, to) == 0;
}

/* A reload failed after master_pid_prepare took a new file: it goes. */
static void
master_pid_abandon(const char *to, int fd)
{
	if (fd == -1)
		return;
	if (unlink(to) == -1 && errno != ENOENT)
		log_warn("unlink(%s): %s", to, strerror(errno));
	close(fd);
}

/*
 * A reload that names another pid_file takes and writes it before the
 * reload is accepted, so that molt -s and the init system find the master
 * where the configuration says.  One it cannot have (another molt holds
 * it, its directory is missing) refuses the reload, as molt -t and a
 * start would: accepted, the master would have gone on with the old file
 * and removed the other master's at its exit.  *fd: the new file's, or -1
 * when there is none to take.
 */
static int
master_pid_prepare(const char *from, const char *to, int *fd)
{
	*fd = -1;
	if (master_pid_same(from, to) || to == NULL)
		return 0;
	if ((*fd = master_pid_take(to)) == -1)
		return -1;
	if (master_pid_write(*fd, to) == -1) {
		master_pid_abandon(to, *fd);
		*fd = -1;
		return -1;
	}
	return 0;
}

/* The reload is accepted: the old file goes, the new one is held. */
static void
master_pid_commit(const char *from, const char *to, int fd)
{
	if (master_pid_same(from, to))
		return;
	if (from != NULL && unlink(from) == -1 && errno != ENOENT)
		log_warn("unlink(%s): %s", from, strerror(errno));
	if (pid_fd != -1)
		close(pid_fd);
	pid_fd = fd;
}

static void
master_reload_apply(int status)
{
	struct molt_config *nc = pending_cfg, *old = cfg;
	char msg[1200];
	int i, rc, new_pid_fd;

	pending_cfg = NULL;
	rc = master_validate_finish(validator_fd, status, validator_killed ?
	    nc->server.check_timeout_ms : 0, msg, sizeof(msg));
	validator_pid = -1;
	validator_fd = -1;
	validator_killed = 0;
	if (stopping) {
		/* Checked, or cut short, while a stop began: nothing to start. */
		log_info("shutting down; the configuration being checked is not "
		    "used");
		module_unstage_all();
		config_free(nc);
		return;
	}
	if (rc == -1) {
		log_error("reload failed: %s; still serving generation %u", msg,
		    generation);
		module_unstage_all();
		config_free(nc);
		return;
	}
	if (listen_open(nc->server.listen, old->server.listen,
	    &nc->server) == -1) {
		log_error("reload failed: cannot bind the new listeners; still "
		    "serving generation %u", generation);
		module_unstage_all();
		listen_close(nc->server.listen);
		config_free(nc);
		return;
	}
	if (master_pid_prepare(old->server.pid_file, nc->server.pid_file,
	    &new_pid_fd) == -1) {
		log_error("reload failed: pid_file %s cannot be this master's; "
		    "still serving generation %u", nc->server.pid_file,
		    generation);
		goto undo_listen;
	}
	/* All or nothing: log_open keeps the old files if one fails. */
	master_log_owner(&nc->server);
	if (log_open(nc->server.error_log, nc->server.log_level,
	    nc->server.access_log) == -1) {
		log_error("reload failed: cannot open its logs; still serving "
		    "generation %u", generation);
		log_owner_undo();
		master_pid_abandon(nc->server.pid_file, new_pid_fd);
		goto undo_listen;
	}
	master_warn_root(&nc->server);
	master_warn_detached(&nc->server);
	/* Old workers keep their own copies of sockets that went away. */
	listen_close(old->server.listen);
	master_pid_commit(old->server.pid_file, nc->server.pid_file,
	    new_pid_fd);
	master_keep_routes();
	cfg = nc;
	config_free(old);
	/* The new generation gets the files just checked. */
	master_preload();
	master_nofile();
	generation++;
	master_hdr_begin();
	sb.hdr->generation = generation;
	memset(sb.hdr->retired_routes, 0, sizeof(sb.hdr->retired_routes));
	memset(sb.hdr->retired_dbs, 0, sizeof(sb.hdr->retired_dbs));
	master_route_names();
	master_hdr_end();
	for (i = 0; i < MAX_IDS; i++) {
		fail_count[i] = 0;
		next_spawn[i] = 0;
	}
	log_info("configuration accepted; starting generation %u", generation);
	/*
	 * Workers of the old generation that are still starting are useless,
	 * but "starting" is only what the master has read so far: one may
	 * have sent READY and be serving clients already.  So they drain like
	 * any old worker (SIGQUIT), and their READY, if it comes, is ignored.
	 */
	for (i = 0; i < SB_SLOTS; i++) {
		if (mw[i].st != MW_STARTING || mw[i].gen == generation)
			continue;
		/* A replacement that will never take over: its predecessor
		 * is retired with the rest of the old generation. */
		if (mw[i].replaces >= 0 &&
		    mw[mw[i].replaces].replaced_by == i)
			mw[mw[i].replaces].replaced_by = -1;
		mw[i].replaces = -1;
		mw[i].reason = R_RELOAD;
		snprintf(mw[i].detail, sizeof(mw[i].detail),
		    "generation %u replaced by %u while starting", mw[i].gen,
		    generation);
		master_retire(i);
	}
	master_reconcile();
	return;
undo_listen:
	listen_undo(nc->server.listen);
	module_unstage_all();
	config_free(nc);
}

static void
master_reload_finish(int status)
{
	master_reload_apply(status);
	if (reload_again && !stopping) {
		reload_again = 0;
		master_reload_start();
	}
}

/* ------------------------------------------------------------------ */
/* The loop                                                            */

static int
master_live_workers(void)
{
	int i, n = 0;

	for (i = 0; i < SB_SLOTS; i++)
		if (mw[i].st != MW_FREE)
			n++;
	return n;
}

static void
master_signal_all(int sig)
{
	int i;

	for (i = 0; i < SB_SLOTS; i++)
		if (mw[i].st != MW_FREE && kill(mw[i].pid, sig) == -1 &&
		    errno != ESRCH)
			log_error("kill(%d, %d): %s", (int)mw[i].pid, sig,
			    strerror(errno));
}

static void
master_stop(int how)
{
	int i;

	if (stopping == SIGTERM || stopping == how)
		return;
	stopping = how;
	sb.hdr->stopping = 1;   /* before the signals: no handoff from here */
	log_info("shutting down (%s)", how == SIGQUIT ? "graceful" : "fast");
	stop_ms = master_now();
	stop_deadline = stop_ms + STOP_BACKSTOP_MS +
	    (how == SIGQUIT ? cfg->recycle.drain_timeout_ms : 0);
	/* In the slots too: a worker whose module code ignores the signal
	 * drains when it sees this (worker_doorbell). */
	for (i = 0; i < SB_SLOTS; i++) {
		if (mw[i].st == MW_FREE)
			continue;
		sb_begin(&sb.slots[i].m.seq);
		sb.slots[i].m.retiring = SB_RETIRE_CLOSE;
		sb_end(&sb.slots[i].m.seq);
		if (mw[i].st != MW_RETIRING)    /* else marked at its retire */
			master_mark_drain(i);
	}
	master_signal_all(how == SIGQUIT ? SIGQUIT : SIGTERM);
	/* One still starting says so after its ready line (master_ready). */
	for (i = 0; how == SIGQUIT && i < SB_SLOTS; i++)
		if (mw[i].st == MW_READY)
			master_log_drain(i);
	/* The reload it checks will not be used; the loop waits for its reap. */
	if (validator_pid != -1 && !validator_killed)
		master_validate_kill();
	/*
	 * Draining workers close their copies; with ours closed too, the
	 * kernel refuses new clients at once.  Kept open, it would queue
	 * them for the whole drain and then reset them.
	 */
	listen_close(cfg->server.listen);
}

/*
 * The line before the stop's SIGKILL.  It says how long the stop really
 * took: a graceful one waits drain_timeout before its 5 s, and a fixed
 * "5000 ms after the stop" sent the operator looking for the wrong delay.
 */
static void
master_stop_backstop(int64_t now)
{
	if (stopping == SIGQUIT)
		log_error("workers still running %lld ms after the stop "
		    "(drain_timeout %lld ms, then %d ms more); killing them",
		    (long long)(now - stop_ms),
		    (long long)cfg->recycle.drain_timeout_ms, STOP_BACKSTOP_MS);
	else
		log_error("workers still running %lld ms after the stop; "
		    "killing them", (long long)(now - stop_ms));
}

static void master_handle_notify(void);

static void
master_handle_signals(void)
{
	unsigned char buf[64];
	int sig;

	while (read(sig_pipe[0], buf, sizeof(buf)) > 0)
		;
	for (sig = 1; sig < NSIG; sig++) {
		if (!got_sig[sig])
			continue;
		got_sig[sig] = 0;
		switch (sig) {
		case SIGTERM:
		case SIGINT:
			master_stop(SIGTERM);
			break;
		case SIGQUIT:
			master_stop(SIGQUIT);
			break;
		case SIGHUP:
			if (!stopping)
				master_reload_start();
			break;
		case SIGUSR1:
			/*
			 * The master first: it creates the new files (as root,
			 * for the workers' user), and only then can the
			 * workers, unprivileged, open them too.
			 */
			log_info("reopening logs");
			if (log_reopen() == -1)
				log_error("reopening the logs failed");
			master_signal_all(SIGUSR1);
			break;
		case SIGUSR2:
			log_info("SIGUSR2 is for workers (a trim); the master "
			    "ignores it");
			break;
		case SIGCHLD:
			for (;;) {
				struct rusage ru;
				int status;
				pid_t pid = wait4(-1, &status, WNOHANG, &ru);

				if (pid <= 0)
					break;
				/*
				 * Everything this child wrote to the notify
				 * pipe is there now that it is dead: read it
				 * while its slot is still its own.  Read after
				 * the reap, a worker a reload retired while it
				 * started, which got ready, drained and exited
				 * between two turns of the loop, found its
				 * slot free: its ready line was never logged
				 * and worker_starts fell behind worker_exits.
				 */
				master_handle_notify();
				if (pid == validator_pid)
					master_reload_finish(status);
				else
					master_reaped(pid, status, &ru);
			}
			break;
		}
	}
}

/*
 * The worker said why in its error log, which may be the rotated file the
 * operator no longer watches; this line is in the master's, the new one.
 */
static void
master_reopen_failed(int slot)
{
	if (slot < 0 || slot >= SB_SLOTS || mw[slot].st == MW_FREE)
		return;
	log_error("worker %d pid %d could not reopen the logs and still writes "
	    "to the old files; the user it runs as must be able to open them",
	    mw[slot].id, (int)mw[slot].pid);
}

static void
master_handle_notify(void)
{
	int32_t msg[2];

	while (read(notify_pipe[0], msg, sizeof(msg)) == (ssize_t)sizeof(msg)) {
		switch (msg[0]) {
		case MSG_READY:
			master_ready(msg[1]);
			break;
		case MSG_TRIMMED:
			master_trimmed(msg[1]);
			break;
		case MSG_LIMIT:
		case MSG_RECYCLE:
			/* Acted on by master_check_limits in this loop turn. */
			break;
		case MSG_GROWN:
			master_grown(msg[1]);
			break;
		case MSG_REOPEN_FAILED:
			master_reopen_failed(msg[1]);
			break;
		}
	}
}

/* Milliseconds until the next thing the master must do by itself. */
static int64_t
master_next_deadline(int64_t now, int64_t next_sample)
{
	int64_t t = next_sample;
	int i;

	for (i = 0; i < cfg->server.workers && i < MAX_IDS; i++)
		if (next_spawn[i] > now && next_spawn[i] < t)
			t = next_spawn[i];
	for (i = 0; i < SB_SLOTS; i++)
		if (mw[i].st == MW_READY && mw[i].replaced_by < 0 &&
		    mw[i].life_limit_ms > 0 &&
		    /* past and deferred: the next event retries, no spin */
		    mw[i].spawned_ms + mw[i].life_limit_ms > now &&
		    mw[i].spawned_ms + mw[i].life_limit_ms < t)
			t = mw[i].spawned_ms + mw[i].life_limit_ms;
	if (stopping && stop_deadline < t)
		t = stop_deadline;
	if (validator_pid != -1 && !validator_killed && validator_deadline < t)
		t = validator_deadline;
	return t > now ? t - now : 0;
}

static void
master_backstops(int64_t now)
{
	int i;

	for (i = 0; i < SB_SLOTS; i++) {
		struct mworker *m = &mw[i];

		/* The worker cuts off at drain_timeout; this is for a stuck one. */
		if (m->st == MW_RETIRING && now - m->retire_ms >
		    cfg->recycle.drain_timeout_ms + STOP_BACKSTOP_MS) {
			log_error("worker %d pid %d did not finish draining in %lld ms; "
			    "killing it", m->id, (int)m->pid,
			    (long long)(now - m->retire_ms));
			kill(m->pid, SIGKILL);
			m->retire_ms = now;
		}
		if (m->st == MW_STARTING && now - m->spawned_ms > READY_TIMEOUT_MS) {
			log_error("worker %d pid %d not ready after %d ms; killing it",
			    m->id, (int)m->pid, READY_TIMEOUT_MS);
			kill(m->pid, SIGKILL);
			m->spawned_ms = now;
		}
	}
}


static int
master_daemonize(void)
{
	pid_t pid;
	int fd;

	if ((pid = fork()) == -1) {
		log_error("fork: %s", strerror(errno));
		return -1;
	}
	if (pid > 0)
		_exit(0);
	if (setsid() == -1) {
		log_error("setsid: %s", strerror(errno));
		return -1;
	}
	if ((fd = open("/dev/null", O_RDWR)) == -1) {
		log_error("open(/dev/null): %s", strerror(errno));
		return -1;
	}
	if (dup2(fd, STDIN_FILENO) == -1 || dup2(fd, STDOUT_FILENO) == -1 ||
	    dup2(fd, STDERR_FILENO) == -1) {
		log_error("dup2(/dev/null): %s", strerror(errno));
		if (fd > STDERR_FILENO)
			close(fd);
		return -1;
	}
	if (fd > STDERR_FILENO)
		close(fd);
	/* Then the error log, if it is a file, in place of /dev/null. */
	return log_stderr_follow();
}

static int
master_state_create(void)
{
	size_t len = sizeof(*mstate);
	void *p;

	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
	    -1, 0);
	if (p == MAP_FAILED) {
		log_error("mmap of the master's %zu-byte state failed: %s", len,
		    strerror(errno));
		return -1;
	}
	if (madvise(p, len, MADV_DONTFORK) == -1) {
		log_error("madvise(MADV_DONTFORK) of the master's state failed: %s",
		    strerror(errno));
		munmap(p, len);
		return -1;
	}
	mstate = p;
	mw = mstate->mw;
	fail_count = mstate->fail_count;
	next_spawn = mstate->next_spawn;
	got_sig = mstate->got_sig;
	/* Any nonzero seed will do; jitter only spreads recycles apart. */
	mstate->rng = (((uint64_t)getpid() << 32) ^ (uint64_t)master_now() ^
	    0x9e3779b97f4a7c15ULL) | 1;
	return 0;
}

/*
 * listen_per_cpu: a handoff pair for each CPU index that has a socket
 * (listen_open bound them), so that a recycle keeps connections on their
 * CPU.  Made at start only: a reload that pins the workers hands over
 * through the shared pair.
 */
static int
master_handoff_cpus(const struct molt_config *c)
{
	const struct listen_addr *la;
	int n = 0;

	for (la = c->server.listen; la != NULL; la = la->next)
		if (la->ncpu > n)
			n = la->ncpu;
	return n;
}

int
master_run(struct molt_config *c, const char *path, int daemonize)
{
	int64_t now, next_sample;
	struct pollfd pfd[3];
	int n;

	cfg = c;
	conf_path = path;
	proctitle_set("molt: master process %s", proctitle_cmdline());
	/* Once, before any fork: a worker then starts without a dlsym, which
	 * allocates and walks ld.so's tables on every recycle. */
	alloc_init();
	/* main() had a child check the config. */
	master_preload();
	master_nofile();
	if (scoreboard_create() == -1)
		return 1;
	master_route_names();
	if (listen_inherited_check(cfg->server.listen, cfg->path) == -1)
		return 1;
	if (listen_open(cfg->server.listen, listen_inherited(),
	    &cfg->server) == -1)
		return 1;
	listen_inherited_free();        /* all taken: nothing to close */
	/* Without it recycles still work; clients just reconnect. */
	if (handoff_init(master_handoff_cpus(cfg)) == -1)
		log_warn("recycled workers will close their idle connections");
	if (cfg->server.pid_file != NULL &&
	    (pid_fd = master_pid_take(cfg->server.pid_file)) == -1)
		return 1;
	detached = daemonize;
	master_warn_detached(&cfg->server);
	if (daemonize && master_daemonize() == -1)
		return 1;
	/* After the daemon's fork, which would not carry it over. */
	if (master_state_create() == -1)
		return 1;
	if (pid_fd != -1 && master_pid_write(pid_fd, cfg->server.pid_file) == -1)
		return 1;
	if (master_signals() == -1)
		return 1;
	/* The master's own failed writes join the workers' (master_access_judge). */
	log_access_report(master_access_report);
	sb.hdr->master_pid = getpid();
	sb.hdr->master_start_ms = master_wall_ms();
	sb.hdr->generation = generation;
	log_info("molt %s started: %d worker%s, generation %u", PACKAGE_VERSION,
	    cfg->server.workers, cfg->server.workers == 1 ? "" : "s",
	    generation);
	/* Up: from here the error log alone, for the workers too. */
	log_startup_echo(0);

	master_reconcile();
	next_sample = master_now() + cfg->recycle.sample_interval_ms;
	for (;;) {
		now = master_now();
		if (stopping && master_live_workers() == 0 && validator_pid == -1)
			break;
		pfd[0].fd = sig_pipe[0];
		pfd[0].events = POLLIN;
		pfd[1].fd = notify_pipe[0];
		pfd[1].events = POLLIN;
		n = poll(pfd, 2, (int)master_next_deadline(now, next_sample));
		if (n == -1 && errno != EINTR) {
			log_error("poll: %s", strerror(errno));
			break;
		}
		if (n > 0 && (pfd[0].revents & POLLIN))
			master_handle_signals();
		if (n > 0 && (pfd[1].revents & POLLIN))
			master_handle_notify();
		now = master_now();
		if (now >= next_sample) {
			/*
			 * Also while a stop drains (master_judge then applies
			 * only hard_max_rss): a graceful stop's drain can last
			 * drain_timeout, and a runaway request still running
			 * in it must not take the machine down meanwhile.
			 */
			master_sample_all();
			next_sample = now + cfg->recycle.sample_interval_ms;
		}
		if (stopping && now >= stop_deadline) {
			master_stop_backstop(now);
			master_signal_all(SIGKILL);
			stop_deadline = now + STOP_BACKSTOP_MS;
		}
		master_backstops(now);
		master_validate_expire(now);
		master_check_limits(now);
		master_reconcile();
	}
	if (cfg->server.pid_file != NULL && unlink(cfg->server.pid_file) == -1)
		log_warn("unlink(%s): %s", cfg->server.pid_file, strerror(errno));
	if (pid_fd != -1)
		close(pid_fd);
	listen_close(cfg->server.listen);
	log_info("exiting");
	return 0;
}
