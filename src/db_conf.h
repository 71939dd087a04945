/*
 * db_conf.h - the [database NAME] sections, parsed once per config.
 *
 * src/db_conf.c reads and checks them (for molt -t, the validator and the
 * master); src/db.c opens each worker's pools from the result.
 */
#ifndef MOLT_DB_CONF_H
#define MOLT_DB_CONF_H

struct molt_config;

struct db_conf {
	char      *name;
	char      *host;           /* numeric address after db_worker_init */
	char      *socket;
	char      *user;
	char      *password;       /* from password or password_file; never logged */
	char      *database;
	unsigned   port;
	int        pool_size;
	int        queue_size;
	long long  connect_timeout_ms;
	long long  read_timeout_ms;
	long long  query_timeout_ms;
	int        ssl, ssl_verify;
	int        track_session;  /* session_track_state_change at connect */
	char      *ssl_ca, *ssl_cert, *ssl_key;
	struct db_conf *next;
};

/*
 * The parsed sections of cfg, parsed now if no process step did yet;
 * NULL (logged) if they do not parse.  The list belongs to this file.
 */
struct db_conf *db_conf_for(const struct molt_config *cfg);
/* A [database NAME] by that name in the last config checked here, or in
 * the calling worker's. */
int             db_conf_exists(const char *name);
/* Replaces a host name with its address, so connecting never resolves. */
void            db_conf_resolve(struct db_conf *d);

#endif /* MOLT_DB_CONF_H */
