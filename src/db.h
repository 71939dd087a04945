/*
 * db.h - MariaDB connection pools on the worker's event loop.
 *
 * The module-facing half (molt_db_query_start and friends) is declared in
 * molt/module.h; this is what the core calls.
 */
#ifndef MOLT_DB_H
#define MOLT_DB_H

struct molt_config;
struct conf_error;
struct event_base;

/*
 * Checks every [database NAME] section (keys, types, files readable) and
 * marks its keys used.  Never connects.  Runs in every process that loads
 * a config, before modules are checked, so molt_db_exists() works there.
 */
int  db_config_check(struct molt_config *cfg, struct conf_error *err);
/*
 * Loads the MariaDB client library if cfg has a [database] (src/dblib.c);
 * -1 with the section's file:line if it cannot.
 */
int  db_library_check(struct molt_config *cfg, struct conf_error *err);
/*
 * The master, once a validator accepted cfg: loads the library and runs
 * its process-wide init (mysql_library_init), so that every worker forked
 * after inherits both.  Connects nowhere.
 */
int  db_master_preload(struct molt_config *cfg, struct conf_error *err);
/* In a worker after fork: start connecting each database's pool. */
int  db_worker_init(const struct molt_config *cfg, struct event_base *base);
/* In a worker at exit, after the last request: close connections cleanly. */
void db_worker_exit(void);
/* Queries in flight in this worker. */
int  db_inflight(void);
/*
 * This worker's figures for its first n databases, in the order of the
 * configuration (the status page's too), into out[0..n).
 */
struct sb_db_stats;
void db_publish(struct sb_db_stats *out, int n);
/* The name of the i-th database of this worker, or NULL. */
const char *db_name(int i);

#endif /* MOLT_DB_H */
