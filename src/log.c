/*
 * log.c - the error log and the access log.
 *
 * Each error-log line is formatted into a stack buffer and written with one
 * write(2) to an O_APPEND descriptor, so lines from the master and all
 * workers never interleave.  The access log is buffered per process because
 * a write per request would cost more than serving a small request.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define ACCESS_BUF_SIZE (64 * 1024)
#define ACCESS_ERR_LOG_SEC 10   /* at most one "write access log" line */

static int   error_fd = STDERR_FILENO;
static int   access_fd = -1;
static int   cur_level = MOLT_LOG_INFO;
static char *error_path;
static char *access_path;
static char  access_own[ACCESS_BUF_SIZE];
static uint32_t access_own_len;
static char  *access_buf = access_own;      /* see log_access_use */
static size_t access_size = sizeof(access_own);
static uint32_t *access_len = &access_own_len;

static uid_t  owner_uid = (uid_t)-1;  /* see log_set_owner */
static gid_t  owner_gid = (gid_t)-1;
static uid_t  prev_uid = (uid_t)-1;   /* the owner before the last change */
static gid_t  prev_gid = (gid_t)-1;
/* All four as they were before the last log_set_owner (log_owner_undo). */
static uid_t  undo_uid = (uid_t)-1, undo_prev_uid = (uid_t)-1;
static gid_t  undo_gid = (gid_t)-1, undo_prev_gid = (gid_t)-1;
static int    stderr_follows;       /* see log_stderr_follow */

static time_t stamp_sec = -1;      /* second that stamp shows */
static char   stamp[80];            /* "2026-12-05 02:30:06"; room for any int */

/*
 * A failing access log (a full disk, EFBIG at RLIMIT_FSIZE) fails every
 * flush: once a second, and every 64 kB under load.  A line each buried
 * the error log, which is often on the same full disk.  So the first
 * failure is logged, then a line every ACCESS_ERR_LOG_SEC at most, and
 * one when a write works again, with what was lost in between.
 */
static struct {
	int             failing;
	struct timespec logged;     /* CLOCK_MONOTONIC of the last line */
	unsigned        writes;     /* failed since the first failure */
	unsigned        unsaid;     /* failed since the last line */
	unsigned long long lost;    /* bytes of lines not written */
	int             torn;       /* the file ends in part of a line */
} access_err;

/* Where failed writes go instead of the error log (log_access_report). */
static log_access_report_fn *access_report;

static const char *level_names[] = { "error", "warn", "info", "debug" };
static int startup_echo;            /* log_startup_echo */

/*
 * A file that was there already keeps its owner, the administrator's
 * choice (logrotate's "create" names one), unless it is one molt gave to
 * the workers' user and a reload has changed that user: then it goes to
 * the new one, who could not reopen it otherwise ("Permission denied" at
 * every reopen until the next rotation).  nginx gives every log to its
 * worker user at each reopen.
 */
static void
log_follow_owner(int fd, int *chown_errno)
{
	struct stat st;

	if (prev_uid == (uid_t)-1 || owner_uid == (uid_t)-1 ||
	    prev_uid == owner_uid)
		return;
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) ||
	    st.st_uid != prev_uid)
		return;
	if (fchown(fd, owner_uid, st.st_gid == prev_gid ? owner_gid :
	    (gid_t)-1) == -1)
		*chown_errno = errno;
}

/*
 * Opens a log for appending.  A file made here goes to the owner set with
 * log_set_owner: the workers reopen the logs themselves after a rotation,
 * with their privileges dropped, and could not open a file that root made
 * 0644.  One that was there already: log_follow_owner, once every log
 * the caller opens has opened.  Returns the
 * descriptor, or -1 with errno set; *chown_errno is the errno of a
 * failed fchown, or 0, for the caller to log once the error log is
 * settled.
 */
static int
log_open_path(const char *path, int *chown_errno)
{
	int fd, flags = O_WRONLY | O_APPEND | O_CLOEXEC | O_NONBLOCK;

	*chown_errno = 0;
	if ((fd = open(path, flags)) != -1 || errno != ENOENT)
		return fd;
	if ((fd = open(path, flags | O_CREAT | O_EXCL, 0644)) != -1) {
		if ((owner_uid != (uid_t)-1 || owner_gid != (gid_t)-1) &&
		    fchown(fd, owner_uid, owner_gid) == -1)
			*chown_errno = errno;
		return fd;
	}
	if (errno != EEXIST)
		return -1;
	/* Made by someone else just now, or a dangling symlink: not ours. */
	return open(path, flags | O_CREAT, 0644);
}

/*
 * O_NONBLOCK for the open only.  A log may be a FIFO that a log shipper
 * reads, and opening one for writing waits for a reader: with the
 * reader gone, a reopen (USR1, a reload) held the master in open(2) for
 * good, where no signal reaches it (SA_RESTART), and a worker until the
 * stall kill.  Now that open fails with ENXIO.  The writes stay
 * blocking, as before: a line is written whole or not at all.
 */
static int
log_open_file(const char *path, int *chown_errno)
{
	int fd, fl, e;

	if ((fd = log_open_path(path, chown_errno)) == -1)
		return -1;
	if ((fl = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) == -1) {
		e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* What a failed open of a log means, for its error line. */
static const char *
log_open_hint(int e)
{
	return e == ENXIO ? " (a FIFO that nobody reads)" : "";
}

static void
log_chown_failed(const char *path, int e)
{
	if (e != 0)
		log_warn("fchown(%s, %ld, %ld): %s; the workers may not be able "
		    "to reopen it", path, (long)owner_uid, (long)owner_gid,
		    strerror(e));
}

/* fd 2 follows the error log when log_stderr_follow asked for it. */
static int
log_stderr_sync(void)
{
	if (!stderr_follows || error_fd == STDERR_FILENO)
		return 0;
	if (dup2(error_fd, STDERR_FILENO) == -1) {
		log_error("dup2(%s, 2): %s", error_path, strerror(errno));
		return -1;
	}
	return 0;
}

void
log_set_owner(uid_t uid, gid_t gid)
{
	undo_uid = owner_uid;
	undo_gid = owner_gid;
	undo_prev_uid = prev_uid;
	undo_prev_gid = prev_gid;
	if (uid != owner_uid || gid != owner_gid) {
		prev_uid = owner_uid;
		prev_gid = owner_gid;
	}
	owner_uid = uid;
	owner_gid = gid;
}

void
log_owner_undo(void)
{
	owner_uid = undo_uid;
	owner_gid = undo_gid;
	prev_uid = undo_prev_uid;
	prev_gid = undo_prev_gid;
}

void
log_startup_echo(int on)
{
	startup_echo = on;
}

int
log_stderr_follow(void)
{
	/* fd 2 is the error log from here on: no line twice. */
	startup_echo = 0;
	stderr_follows = 1;
	return log_stderr_sync();
}

int
log_parse_level(const char *s)
{
	size_t i;

	for (i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (strcasecmp(s, level_names[i]) == 0)
			return (int)i;
	return -1;
}

int
log_open(const char *error_log, int level, const char *access_log)
{
	int efd = STDERR_FILENO, afd = -1, echown = 0, achown = 0;

	if (error_log != NULL && strcmp(error_log, "stderr") != 0 &&
	    (efd = log_open_file(error_log, &echown)) == -1) {
		log_error("cannot open log %s: %s%s", error_log, strerror(errno),
		    log_open_hint(errno));
		return -1;
	}
	if (access_log != NULL &&
	    (afd = log_open_file(access_log, &achown)) == -1) {
		log_error("cannot open log %s: %s%s", access_log, strerror(errno),
		    log_open_hint(errno));
		if (efd != STDERR_FILENO)
			close(efd);
		return -1;
	}
	/* All opened: only now may a reload's new user take them over. */
	if (efd != STDERR_FILENO)
		log_follow_owner(efd, &echown);
	if (afd != -1)
		log_follow_owner(afd, &achown);
	log_access_flush();
	if (error_fd != STDERR_FILENO)
		close(error_fd);
	if (access_fd != -1)
		close(access_fd);
	error_fd = efd;
	access_fd = afd;
	access_err.torn = 0;
	cur_level = level;
	free(error_path);
	free(access_path);
	error_path = (error_log != NULL && efd != STDERR_FILENO) ?
	    strdup(error_log) : NULL;
	access_path = access_log != NULL ? strdup(access_log) : NULL;
	log_stderr_sync();
	log_chown_failed(error_log, echown);
	log_chown_failed(access_log, achown);
	return 0;
}

/*
 * Points fd (the number stays, the file changes) at a fresh open of path.
 * Returns 0, or the errno of what failed, with fd left as it was.
 */
static int
log_reopen_one(int fd, const char *path, int *chown_errno)
{
	int nfd, e = 0;

	if ((nfd = log_open_file(path, chown_errno)) == -1)
		return errno;
	log_follow_owner(nfd, chown_errno);
	if (dup2(nfd, fd) == -1)
		e = errno;
	close(nfd);
	return e;
}

/*
 * After logrotate has moved the files away (SIGUSR1).  A file that cannot
 * be opened keeps the old one, so its lines still go somewhere; what
 * failed is logged only once the error log is what it will be, so that
 * the reason is in the new file whenever that one could be opened.
 */
int
log_reopen(void)
{
	int eerr = 0, aerr = 0, echown = 0, achown = 0, rc = 0;

	log_access_flush();
	if (error_path != NULL)
		eerr = log_reopen_one(error_fd, error_path, &echown);
	if (access_path != NULL &&
	    (aerr = log_reopen_one(access_fd, access_path, &achown)) == 0)
		access_err.torn = 0;    /* a new file: no part line to end */
	if (eerr == 0 && log_stderr_sync() == -1)
		rc = -1;
	if (eerr != 0)
		log_error("reopening %s: %s%s; still writing to the old file",
		    error_path, strerror(eerr), log_open_hint(eerr));
	if (aerr != 0)
		log_error("reopening %s: %s%s; still writing to the old file",
		    access_path, strerror(aerr), log_open_hint(aerr));
	log_chown_failed(error_path, echown);
	log_chown_failed(access_path, achown);
	return eerr != 0 || aerr != 0 ? -1 : rc;
}

void
log_close(void)
{
	log_access_flush();
	if (access_fd != -1)
		close(access_fd);
	access_fd = -1;
}

void
log_set_level(int level)
{
	cur_level = level;
}

int
log_level(void)
{
	return cur_level;
}

void
log_msg(int level, const char *fmt, ...)
{
	char buf[2048];
	struct timeval tv;
	struct tm tm;
	va_list ap;
	int n, m;
	int saved = errno;

	if (level > cur_level)
		return;
	if (level < 0)
		level = 0;
	gettimeofday(&tv, NULL);
	/* localtime_r writes libc's time-zone state: in the master, a page
	 * copied again after every fork, so once a second is enough. */
	if (tv.tv_sec != stamp_sec) {
		localtime_r(&tv.tv_sec, &tm);
		snprintf(stamp, sizeof(stamp), "%04d-%02d-%02d %02d:%02d:%02d",
		    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		    tm.tm_min, tm.tm_sec);
		stamp_sec = tv.tv_sec;
	}
	n = snprintf(buf, sizeof(buf), "%s.%03d [%s] %ld: ", stamp,
	    (int)(tv.tv_usec / 1000),
	    level_names[level > MOLT_LOG_DEBUG ? MOLT_LOG_DEBUG : level],
	    (long)getpid());
	va_start(ap, fmt);
	m = vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += m;
	if (n > (int)sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	/* Nothing sensible to do if the log itself fails. */
	if (write(error_fd, buf, n) == -1)
		(void)0;
	if (startup_echo && level <= MOLT_LOG_WARN && error_fd != STDERR_FILENO &&
	    write(STDERR_FILENO, buf, n) == -1)
		(void)0;
	errno = saved;
}

void
molt_log(int level, const char *fmt, ...)
{
	char buf[1800], out[1800];
	size_t i, o = 0;
	va_list ap;

	if (level > cur_level)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	/*
	 * Modules log what clients sent: a newline in it would forge a log
	 * line, an escape sequence would drive the terminal of whoever tails
	 * the log.  Control bytes go out as \xHH, as Apache's error log
	 * writes them.
	 */
	for (i = 0; buf[i] != '\0' && o + 5 < sizeof(out); i++) {
		unsigned char ch = (unsigned char)buf[i];

		if ((ch < ' ' && ch != '\t') || ch == 0x7f)
			o += (size_t)snprintf(out + o, 5, "\\x%02x", ch);
		else
			out[o++] = (char)ch;
	}
	out[o] = '\0';
	log_msg(level, "%s", out);
}

int
log_access_enabled(void)
{
	return access_fd != -1;
}

static void log_access_write(const char *buf, size_t len);

void
log_access(const char *line, size_t len)
{
	if (access_fd == -1)
		return;
	if (*access_len + len > access_size)
		log_access_flush();
	if (len > access_size) {
		log_access_write(line, len);
		return;
	}
	memcpy(access_buf + *access_len, line, len);
	/* After the copy: a worker killed in between leaves no half line. */
	*access_len += (uint32_t)len;
}

/* A failed write of the access log: logged now and then (access_err). */
static void
log_access_failed(int err, size_t lost, int torn)
{
	struct timespec now;

	if (clock_gettime(CLOCK_MONOTONIC, &now) == -1)
		now.tv_sec = 0;
	if (torn)
		access_err.torn = 1;
	if (access_report != NULL) {
		access_err.failing = 1;     /* the next write that works says so */
		access_report(err, lost);
		return;
	}
	access_err.writes++;
	access_err.lost += lost;
	if (access_err.failing &&
	    now.tv_sec - access_err.logged.tv_sec < ACCESS_ERR_LOG_SEC) {
		access_err.unsaid++;
		return;
	}
	if (access_err.failing)
		log_error("write access log %s: %s (%u more failed writes, %llu "
		    "bytes of lines lost so far)", access_path, strerror(err),
		    access_err.unsaid, access_err.lost);
	else
		log_error("write access log %s: %s", access_path, strerror(err));
	access_err.failing = 1;
	access_err.logged = now;
	access_err.unsaid = 0;
}

/*
 * A write cut short before a failure left part of a line in the file: a
 * newline ends it before anything else goes in, so that the next line is
 * whole and the file stays parseable.  Returns -1 (errno set) if it
 * could not be written.
 */
static int
log_access_untear(void)
{
	ssize_t n;

	do
		n = write(access_fd, "\n", 1);
	while (n == -1 && errno == EINTR);
	if (n == -1)
		return -1;
	if (n == 1)
		access_err.torn = 0;
	return 0;
}

static void
log_access_write(const char *buf, size_t len)
{
	size_t off = 0;
	ssize_t n;

	if (access_fd == -1)
		return;
	if (access_err.torn && log_access_untear() == -1) {
		log_access_failed(errno, len, 0);
		return;
	}
	while (off < len) {
		n = write(access_fd, buf + off, len - off);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			log_access_failed(errno, len - off,
			    off > 0 && buf[off - 1] != '\n');
			return;
		}
		off += (size_t)n;
	}
	/* The first write that works after failures says so. */
	if (access_err.failing && access_report != NULL) {
		access_report(0, 0);
		access_err.failing = 0;
	} else if (access_err.failing) {
		log_warn("access log %s: written again after %u failed writes "
		    "(%llu bytes of lines lost)", access_path, access_err.writes,
		    access_err.lost);
		memset(&access_err, 0, sizeof(access_err));
	}
}

void
log_access_report(log_access_report_fn *fn)
{
	access_report = fn;
}

const char *
log_access_path(void)
{
	return access_path;
}

void
log_access_flush(void)
{
	/* Not even the store when empty: an exiting worker would pay a
	 * copy-on-write fault for it. */
	if (*access_len == 0)
		return;
	log_access_write(access_buf, *access_len);
	*access_len = 0;
}

void
log_access_use(char *buf, size_t size, uint32_t *len)
{
	log_access_flush();
	access_buf = buf;
	access_size = size;
	access_len = len;
	*len = 0;
}

void
log_access_salvage(const char *buf, size_t size, uint32_t len)
{
	size_t n = len < size ? len : size;

	/* Whole lines only: the tail may be what a crash cut off. */
	while (n > 0 && buf[n - 1] != '\n')
		n--;
	log_access_write(buf, n);
}

/* Quotes, backslashes and control bytes as \xHH, like nginx, so a
 * client (or a worker, for the master) cannot forge fields or lines. */
const char *
log_escape(const char *s, char *buf, size_t len)
{
	size_t o = 0;

	if (s == NULL)
		return "-";
	for (; *s != '\0' && o + 5 < len; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\' || ch < 0x20 || ch >= 0x7f) {
			snprintf(buf + o, len - o, "\\x%02X", ch);
			o += 4;
		} else {
			buf[o++] = (char)ch;
		}
	}
	buf[o] = '\0';
	return buf;
}
