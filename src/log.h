/*
 * log.h - the error log and the access log.
 */
#ifndef MOLT_LOG_H
#define MOLT_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "molt/module.h"

/* Opens (or reopens) the logs; NULL error_log means stderr. */
int  log_open(const char *error_log, int level, const char *access_log);
/*
 * After a rotation: opens the files at the same paths again, for the
 * caller's process.  Returns -1 if one could not be opened (logged, in the
 * new error log if that one could be); that one keeps its old file.
 */
int  log_reopen(void);
/*
 * Log files created from now on are given to uid:gid, the workers' user,
 * so that workers can reopen them; (uid_t)-1 and (gid_t)-1 for no change.
 */
void log_set_owner(uid_t uid, gid_t gid);
/* A reload that set the owner failed: as it was before that call. */
void log_owner_undo(void);
/*
 * Points fd 2 at the error log, now and after every log_open and
 * log_reopen: a daemon's stderr has nowhere else to go, and what libc,
 * libevent and modules write there belongs in the current file.
 */
int  log_stderr_follow(void);
/*
 * While on, errors and warnings also go to fd 2 when the error log is a
 * file: from the config's logs being opened until the master is up, so
 * that a start that fails (a port in use, a pid file held) says why where
 * it was started, as nginx does, and not only in a file.
 */
void log_startup_echo(int on);
void log_close(void);
void log_set_level(int level);
int  log_level(void);
int  log_parse_level(const char *s);

void log_msg(int level, const char *fmt, ...) MOLT_PRINTF(2, 3);
#define log_error(...) log_msg(MOLT_LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(MOLT_LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(MOLT_LOG_INFO, __VA_ARGS__)
#define log_debug(...) do { if (log_level() >= MOLT_LOG_DEBUG) \
	log_msg(MOLT_LOG_DEBUG, __VA_ARGS__); } while (0)

/* Access log: lines are buffered and written when the buffer fills or on flush. */
int  log_access_enabled(void);
void log_access(const char *line, size_t len);
void log_access_flush(void);
/*
 * Gather access lines in buf (size bytes, *len of them used) instead of
 * the process's own buffer: a worker's scoreboard slot.
 */
void log_access_use(char *buf, size_t size, uint32_t *len);
/* The master, for a worker that died: writes out the whole lines it left
 * in buf.  len is the worker's word, so it is clamped to size. */
void log_access_salvage(const char *buf, size_t size, uint32_t len);
/*
 * Hand the access log's failed writes to fn instead of the error log:
 * fn(errno, bytes lost) for each, fn(0, 0) for the first write that
 * works after them.  A process-local rate limit said it once per worker,
 * and every recycled worker anew; the master says it for the fleet.
 */
typedef void log_access_report_fn(int err, size_t lost);
void log_access_report(log_access_report_fn *fn);
/* The access log's path, or NULL. */
const char *log_access_path(void);

/* s with quotes, backslashes and control bytes as \xHH, in buf; "-" for
 * NULL.  Cut short (whole escapes only) when buf is full. */
const char *log_escape(const char *s, char *buf, size_t len);

#endif /* MOLT_LOG_H */
