/*
 * master.h - the master process: binds, forks, watches, recycles.
 */
#ifndef MOLT_MASTER_H
#define MOLT_MASTER_H

struct molt_config;
struct server_conf;

/* Messages from workers on the notify pipe (one atomic 8-byte write). */
enum { MSG_READY = 1, MSG_TRIMMED = 2, MSG_LIMIT = 3, MSG_GROWN = 4,
    MSG_REOPEN_FAILED = 5, MSG_RECYCLE = 6 };

void master_notify(int fd, int type, int slot);
void master_child_unblock(void);

/*
 * Runs the master until it is told to stop.  cfg was loaded and checked
 * (modules included) by the caller.  Returns the exit status.
 */
int  master_run(struct molt_config *cfg, const char *conf_path, int daemonize);

/* Gives the log files created from now on to sc's user and group. */
void master_log_owner(const struct server_conf *sc);
void master_warn_root(const struct server_conf *sc);

/*
 * Checks cfg completely, modules included, in a child process that runs
 * as [server] user and group, within check_timeout (start-up, molt -t).
 * Returns 0, or -1 with "FILE:LINE: message" or what went wrong in msg.
 */
int  master_validate(struct molt_config *cfg, char *msg, size_t msglen);



/* In main.c: fills in what a loaded config leaves to the binary
 * (modules_dir, the www dir of the embedded default). */
void main_fixup_config(struct molt_config *cfg);
#endif
