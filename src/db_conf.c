/*
 * db_conf.c - the [database NAME] sections: keys, types, files, secrets.
 *
 * Checked wherever a config is loaded (molt -t, the validator child, the
 * master), before any module is, so that molt_db_exists() answers a
 * module's check.  Nothing here connects.  The master parses before it
 * forks, reading password files as the user that can read them; workers
 * find the result in the cache below.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netdb.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "molt/module.h"
#include "config.h"
#include "db.h"
#include "db_conf.h"
#include "dblib.h"
#include "worker.h"

#define DB_POOL_MAX          1024   /* pool_size upper bound */
#define DB_QUEUE_MAX         100000

/*
 * Parsed sections, keyed by the config they came from.  The master parses
 * (and reads password files, as the user that can read them) before it
 * forks, and workers find the result here; a failed reload does not
 * disturb the configs that workers were started with.
 */
#define DB_CONF_KEEP 4
static struct {
	const struct molt_config *cfg;
	struct db_conf           *dbs;
} db_confs[DB_CONF_KEEP];
static const struct db_conf *db_checked;  /* last checked list, for molt_db_exists */

static void
db_conf_free(struct db_conf *d)
{
	struct db_conf *next;

	for (; d != NULL; d = next) {
		next = d->next;
		free(d->name);
		free(d->host);
		free(d->socket);
		free(d->user);
		if (d->password != NULL) {
			/* Do not leave the secret in freed memory. */
			explicit_bzero(d->password, strlen(d->password));
			free(d->password);
		}
		free(d->database);
		free(d->ssl_ca);
		free(d->ssl_cert);
		free(d->ssl_key);
		free(d);
	}
}

static int
db_dup(char **dst, const char *s, struct conf_error *err, const char *file, int line)
{
	if ((*dst = strdup(s)) == NULL) {
		conf_errorf(err, file, line, "out of memory");
		return -1;
	}
	return 0;
}

/* A string key; *dst stays NULL when the key is absent. */
static int
db_key_str(struct conf_section *s, const char *key, char **dst,
           struct conf_error *err)
{
	struct conf_kv *kv;

	if ((kv = conf_get(s, key)) == NULL)
		return 0;
	if (kv->value[0] == '\0') {
		conf_errorf(err, s->file, kv->line, "%s: empty value", key);
		return -1;
	}
	return db_dup(dst, kv->value, err, s->file, kv->line);
}

static int
db_key_duration(struct conf_section *s, const char *key, long long def,
                long long *out, struct conf_error *err)
{
	struct conf_kv *kv;

	*out = def;
	if ((kv = conf_get(s, key)) == NULL)
		return 0;
	if (conf_parse_duration(kv->value, out) == -1 || *out <= 0 ||
	    *out > 24LL * 3600 * 1000) {
		conf_errorf(err, s->file, kv->line,
		    "%s: \"%s\" is not a duration between 1ms and 24h", key, kv->value);
		return -1;
	}
	return 0;
}

static int
db_key_int(struct conf_section *s, const char *key, long long def,
           long long min, long long max, long long *out, struct conf_error *err)
{
	struct conf_kv *kv;

	*out = def;
	if ((kv = conf_get(s, key)) == NULL)
		return 0;
	if (conf_parse_int(kv->value, out) == -1 || *out < min || *out > max) {
		conf_errorf(err, s->file, kv->line,
		    "%s: \"%s\" is not an integer in %lld..%lld", key, kv->value, min, max);
		return -1;
	}
	return 0;
}

static int
db_key_bool(struct conf_section *s, const char *key, int *out,
            struct conf_error *err)
{
	struct conf_kv *kv;

	*out = 0;
	if ((kv = conf_get(s, key)) == NULL)
		return 0;
	if (conf_parse_bool(kv->value, out) == -1) {
		conf_errorf(err, s->file, kv->line, "%s: \"%s\" is not on or off",
		    key, kv->value);
		return -1;
	}
	return 0;
}

/* A file key that must name a readable file (checked now, not at connect). */
static int
db_key_file(struct conf_section *s, const char *key, char **dst,
            struct conf_error *err)
{
	struct conf_kv *kv;

	if (db_key_str(s, key, dst, err) == -1)
		return -1;
	if (*dst == NULL)
		return 0;
	kv = conf_get(s, key);
	if (access(*dst, R_OK) == -1) {
		conf_errorf(err, s->file, kv->line, "%s: %s: %s", key, *dst,
		    strerror(errno));
		return -1;
	}
	return 0;
}

/* The password is the file's first line, without its line ending. */
static int
db_read_password(const char *path, char **out, struct conf_error *err,
                 const char *file, int line)
{
	char buf[1024];
	ssize_t n;
	size_t len;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		conf_errorf(err, file, line, "password_file: %s: %s", path, strerror(errno));
		return -1;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n == -1) {
		conf_errorf(err, file, line, "password_file: %s: %s", path, strerror(errno));
		return -1;
	}
	buf[n] = '\0';
	len = strcspn(buf, "\r\n");
	if (len == (size_t)n && (size_t)n == sizeof(buf) - 1) {
		conf_errorf(err, file, line, "password_file: %s: first line too long", path);
		goto fail;
	}
	buf[len] = '\0';
	if ((*out = strdup(buf)) == NULL) {
		conf_errorf(err, file, line, "out of memory");
		goto fail;
	}
	explicit_bzero(buf, sizeof(buf));
	return 0;
fail:
	explicit_bzero(buf, sizeof(buf));
	return -1;
}

static int
db_parse_section(struct conf_section *s, struct db_conf **out,
                 struct conf_error *err)
{
	struct db_conf *d;
	struct conf_kv *kv, *pw, *pwf;
	char *pwfile = NULL;
	long long v;

	if ((d = calloc(1, sizeof(*d))) == NULL) {
		conf_errorf(err, s->file, s->line, "out of memory");
		return -1;
	}
	if (s->arg == NULL || s->arg[0] == '\0') {
		conf_errorf(err, s->file, s->line, "[database] needs a name: [database NAME]");
		goto fail;
	}
	if (db_dup(&d->name, s->arg, err, s->file, s->line) == -1)
		goto fail;

	if (db_key_str(s, "host", &d->host, err) == -1 ||
	    db_key_str(s, "socket", &d->socket, err) == -1 ||
	    db_key_str(s, "user", &d->user, err) == -1 ||
	    db_key_str(s, "database", &d->database, err) == -1)
		goto fail;
	if (d->host != NULL && d->socket != NULL) {
		kv = conf_get(s, "socket");
		conf_errorf(err, s->file, kv->line, "socket: host and socket exclude each other");
		goto fail;
	}
	if (d->socket != NULL && strlen(d->socket) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		kv = conf_get(s, "socket");
		conf_errorf(err, s->file, kv->line, "socket: path too long");
		goto fail;
	}
	if (db_key_int(s, "port", 3306, 1, 65535, &v, err) == -1)
		goto fail;
	d->port = (unsigned)v;
	if ((kv = conf_get(s, "port")) != NULL && d->host == NULL) {
		conf_errorf(err, s->file, kv->line, "port: needs host");
		goto fail;
	}
	if (d->user == NULL) {
		conf_errorf(err, s->file, s->line, "[database %s]: user is required", d->name);
		goto fail;
	}

	pw = conf_get(s, "password");
	pwf = conf_get(s, "password_file");
	if (pw != NULL && pwf != NULL) {
		conf_errorf(err, s->file, pwf->line,
		    "password_file: password and password_file exclude each other");
		goto fail;
	}
	if (pw != NULL && db_dup(&d->password, pw->value, err, s->file, pw->line) == -1)
		goto fail;
	if (pwf != NULL) {
		if (db_key_file(s, "password_file", &pwfile, err) == -1 ||
		    db_read_password(pwfile, &d->password, err, s->file, pwf->line) == -1)
			goto fail;
		free(pwfile);
		pwfile = NULL;
	}

	if (db_key_int(s, "pool_size", 4, 1, DB_POOL_MAX, &v, err) == -1)
		goto fail;
	d->pool_size = (int)v;
	if (db_key_int(s, "queue_size", 1024, 0, DB_QUEUE_MAX, &v, err) == -1)
		goto fail;
	d->queue_size = (int)v;
	if (db_key_duration(s, "connect_timeout", 5000, &d->connect_timeout_ms, err) == -1 ||
	    db_key_duration(s, "read_timeout", 30000, &d->read_timeout_ms, err) == -1 ||
	    db_key_duration(s, "query_timeout", 30000, &d->query_timeout_ms, err) == -1)
		goto fail;

	if (db_key_bool(s, "track_session", &d->track_session, err) == -1)
		goto fail;
	if (conf_get(s, "track_session") == NULL)
		d->track_session = 1;
	if (db_key_bool(s, "ssl", &d->ssl, err) == -1 ||
	    db_key_bool(s, "ssl_verify_server_cert", &d->ssl_verify, err) == -1 ||
	    db_key_file(s, "ssl_ca", &d->ssl_ca, err) == -1 ||
	    db_key_file(s, "ssl_cert", &d->ssl_cert, err) == -1 ||
	    db_key_file(s, "ssl_key", &d->ssl_key, err) == -1)
		goto fail;
	if (!d->ssl) {
		/* TLS settings without ssl = on would silently do nothing. */
		static const char *const tls[] = { "ssl_ca", "ssl_cert", "ssl_key",
		    "ssl_verify_server_cert", NULL };
		int i;

		for (i = 0; tls[i] != NULL; i++) {
			if ((kv = conf_get(s, tls[i])) != NULL) {
				conf_errorf(err, s->file, kv->line, "%s: needs ssl = on", tls[i]);
				goto fail;
			}
		}
	}
	if ((d->ssl_cert == NULL) != (d->ssl_key == NULL)) {
		kv = conf_get(s, d->ssl_cert ? "ssl_cert" : "ssl_key");
		conf_errorf(err, s->file, kv->line, "ssl_cert and ssl_key go together");
		goto fail;
	}
	*out = d;
	return 0;
fail:
	free(pwfile);
	db_conf_free(d);
	return -1;
}

static int
db_name_ok(const char *name)
{
	size_t n = strlen(name);

	return n > 0 && n <= 64 && strspn(name, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") == n;
}

static int
db_parse_all(struct molt_config *cfg, struct db_conf **out, struct conf_error *err)
{
	struct conf_section *s;
	struct db_conf *head = NULL, **tail = &head, *d, *o;

	for (s = conf_find(cfg, "database", NULL); s != NULL; s = s->next) {
		if (strcmp(s->kind, "database") != 0)
			continue;
		if (db_parse_section(s, &d, err) == -1)
			goto fail;
		if (!db_name_ok(d->name)) {
			conf_errorf(err, s->file, s->line, "[database %s]: a database "
			    "name is 1 to 64 letters, digits, '_', '-' or '.' (it "
			    "names the pool to modules and in the metrics)", d->name);
			db_conf_free(d);
			goto fail;
		}
		for (o = head; o != NULL; o = o->next) {
			if (strcmp(o->name, d->name) == 0) {
				conf_errorf(err, s->file, s->line,
				    "[database %s] defined twice", d->name);
				db_conf_free(d);
				goto fail;
			}
		}
		*tail = d;
		tail = &d->next;
	}
	*out = head;
	return 0;
fail:
	db_conf_free(head);
	return -1;
}

int
db_config_check(struct molt_config *cfg, struct conf_error *err)
{
	struct db_conf *dbs;
	int i;

	if (db_parse_all(cfg, &dbs, err) == -1)
		return -1;
	/* Keep it for workers forked from this process; drop the oldest. */
	for (i = 0; i < DB_CONF_KEEP; i++)
		if (db_confs[i].cfg == cfg)
			break;
	if (i == DB_CONF_KEEP) {
		db_conf_free(db_confs[0].dbs);
		memmove(&db_confs[0], &db_confs[1], sizeof(db_confs[0]) * (DB_CONF_KEEP - 1));
		i = DB_CONF_KEEP - 1;
	} else {
		db_conf_free(db_confs[i].dbs);
	}
	db_confs[i].cfg = cfg;
	db_confs[i].dbs = dbs;
	db_checked = dbs;
	return 0;
}

/*
 * A config with a [database] needs the client library.  Checked where
 * module code may run (the validator child, molt -t), so that a missing
 * or incompatible library stops a start or a reload at the section that
 * needs it, instead of failing every worker's start-up.
 */
int
db_library_check(struct molt_config *cfg, struct conf_error *err)
{
	struct conf_section *sec;

	if ((sec = conf_find(cfg, "database", NULL)) == NULL)
		return 0;
	if (dblib_load(err->msg, sizeof(err->msg)) == 0)
		return 0;
	snprintf(err->file, sizeof(err->file), "%s", sec->file);
	err->line = sec->line;
	return -1;
}

int
db_master_preload(struct molt_config *cfg, struct conf_error *err)
{
	if (conf_find(cfg, "database", NULL) == NULL)
		return 0;
	if (db_library_check(cfg, err) == -1)
		return -1;
	/* Once per process, guarded by a pthread_once that a fork copies. */
	if (dblib.mysql_server_init(0, NULL, NULL) != 0) {
		snprintf(err->msg, sizeof(err->msg), "mysql_library_init failed");
		return -1;
	}
	return 0;
}

struct db_conf *
db_conf_for(const struct molt_config *cfg)
{
	struct conf_error err;
	int i;

	for (i = 0; i < DB_CONF_KEEP; i++)
		if (db_confs[i].cfg == cfg)
			return db_confs[i].dbs;
	memset(&err, 0, sizeof(err));
	if (db_config_check((struct molt_config *)cfg, &err) == -1) {
		molt_log(MOLT_LOG_ERROR, "%s:%d: %s", err.file, err.line, err.msg);
		return NULL;
	}
	return (struct db_conf *)db_checked;
}

int
db_conf_exists(const char *name)
{
	const struct db_conf *d = db_checked;

	/*
	 * A worker checks its modules again before db_worker_init, in a
	 * process where db_config_check may never have run (the master
	 * validates in a child): parse the worker's config here then.
	 */
	if (worker_self != NULL && worker_self->cfg != NULL)
		d = db_conf_for(worker_self->cfg);
	for (; d != NULL; d = d->next)
		if (strcmp(d->name, name) == 0)
			return 1;
	return 0;
}

/*
 * Connector/C resolves host names inside connect, which would block the
 * loop; resolve once here, before the worker accepts anything.
 */
void
db_conf_resolve(struct db_conf *d)
{
	struct addrinfo hints, *res = NULL;
	char addr[NI_MAXHOST];
	char *copy;
	int rc;

	if (d->host == NULL || strcmp(d->host, "localhost") == 0)
		return;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if ((rc = getaddrinfo(d->host, NULL, &hints, &res)) != 0) {
		molt_log(MOLT_LOG_WARN, "database %s: cannot resolve %s: %s; trying again "
		    "at each connect", d->name, d->host, gai_strerror(rc));
		return;
	}
	rc = getnameinfo(res->ai_addr, res->ai_addrlen, addr, sizeof(addr), NULL, 0,
	    NI_NUMERICHOST);
	freeaddrinfo(res);
	if (rc != 0 || (copy = strdup(addr)) == NULL)
		return;
	free(d->host);
	d->host = copy;
}
