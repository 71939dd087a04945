/*
 * config.h - molt.conf: an INI file read with inih into a list of
 * sections, then checked section by section.
 */
#ifndef MOLT_CONFIG_H
#define MOLT_CONFIG_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "molt/module.h"

struct conf_kv {
	char           *key;
	char           *value;   /* continuation lines joined with one space */
	int             line;
	int             used;    /* set by the checker that accepted the key */
	struct conf_kv *next;
};

struct conf_section {
	char                *kind;  /* "server", "route", "module", ... */
	char                *arg;   /* "/hello" in [route /hello]; "" if none */
	const char          *file;
	int                  line;
	struct conf_kv      *kv;
	struct conf_kv     **kv_tail;
	struct conf_section *next;
};

struct conf_error {
	char file[512];
	int  line;
	char msg[512];
};

struct listen_addr {
	char                    text[128];   /* as written, for logs */
	struct sockaddr_storage ss;
	socklen_t               sslen;
	int                     fd;          /* bound socket, -1 until bound */
	struct listen_addr     *kept_from;   /* listen_open took fd from it */
	dev_t                   sock_dev;    /* a unix socket's file, as bound, */
	ino_t                   sock_ino;    /* so only that file is removed */
	int                     inherited;   /* from systemd: its file stays */
	int                    *cpu_fd;      /* listen_per_cpu: CPU index -> socket */
	int                     ncpu;        /* entries in cpu_fd */
	struct listen_addr     *next;
};

struct route_conf {
	char              *prefix;
	size_t             prefix_len;
	char              *module;        /* module name */
	unsigned           methods;       /* bit set of METHOD_*; 0 = any */
	struct conf_section *section;
	struct conf_section *module_section; /* [module NAME], may be NULL */
	struct route_conf *next;
};

enum recycle_measure { MEASURE_USS, MEASURE_RSS, MEASURE_PSS };

struct recycle_conf {
	long long max_rss;               /* bytes, 0 = off */
	long long hard_max_rss;          /* bytes, 0 = off */
	double    max_fragmentation;     /* 0 = off */
	long long fragmentation_min_rss; /* bytes */
	int       trim;
	long long max_requests, max_requests_jitter;
	long long max_lifetime_ms, max_lifetime_jitter_ms;
	long long min_lifetime_ms;
	int       max_concurrent_recycles;
	long long drain_timeout_ms;
	long long sample_interval_ms;
	long long stall_timeout_ms;      /* 0 = off; see master_stalled */
	int       samples_over;          /* consecutive samples over a limit */
	enum recycle_measure measure;
};

/* A network of [status] allow or [server] real_ip_from (realip_match). */
struct allow_net {
	struct sockaddr_storage net;     /* AF_UNIX: every unix: socket client */
	int prefix;
	struct allow_net *next;
};

struct status_conf {
	char  *path;                     /* NULL = off */
	struct allow_net *allow;
	int    route_stats;              /* per-route allocation accounting */
};

struct server_conf {
	struct listen_addr *listen;
	int       workers;
	char     *modules_dir;
	char     *pid_file;
	char     *error_log;
	int       log_level;
	char     *access_log;
	long long access_log_flush_ms;  /* 0: when the buffer fills */
	int       access_log_time;      /* each line ends with its duration */
	char     *user, *group;
	long long check_timeout_ms;     /* for the module check of a config */
	long long max_header_size;
	long long max_uri_size;
	long long max_headers;
	long long max_body_size;
	long long header_timeout_ms;
	long long body_timeout_ms;
	long long keepalive_timeout_ms;
	long long write_timeout_ms;
	long long handler_timeout_ms;    /* a deferred reply's limit; 0 = off */
	long long max_connections;
	long long keepalive_requests;
	long long backlog;
	int       defer_accept;
	int       conn_hugepages;
	int       core_dumps;           /* workers that switched user stay dumpable */
	int       cpu_affinity;         /* worker_cpu_affinity = auto: pinned */
	int       listen_per_cpu;       /* listen_per_cpu = auto: with cpu_affinity */
	struct allow_net *real_ip_from; /* trusted proxies; NULL = off */
	char     *real_ip_header;       /* NULL: X-Forwarded-For */
};

struct molt_config {
	char                *path;      /* file, or "(embedded)" */
	struct conf_section *sections;
	struct server_conf   server;
	struct recycle_conf  recycle;
	struct status_conf   status;
	struct route_conf   *routes;    /* longest prefix first */
};

/* Method bits for route_conf.methods. */
#define METHOD_GET     0x001
#define METHOD_HEAD    0x002
#define METHOD_POST    0x004
#define METHOD_PUT     0x008
#define METHOD_DELETE  0x010
#define METHOD_PATCH   0x020
#define METHOD_OPTIONS 0x040
#define METHOD_OTHER   0x080

/*
 * Read and check the core sections of a file (path NULL: the embedded
 * default).  Module keys are checked later by module_check_all(), in a
 * process that may load modules.  Returns NULL and fills err on failure.
 */
struct molt_config *config_load(const char *path, struct conf_error *err);
void config_free(struct molt_config *cfg);
/* The same from text in memory; name is used in messages. */
struct molt_config *config_load_string(const char *name, const char *text,
                                       struct conf_error *err);
/* The embedded default; "@WWW@" stands for the bundled web root. */
extern const char config_default_text[];

/*
 * After every checker ran (core, databases, modules): the first key no one
 * claimed is an error at its file:line.  Returns 0 or -1.
 */
int config_check_unused(struct molt_config *cfg, struct conf_error *err);

/* Sections of one kind, e.g. every [database NAME]: iterate with next. */
struct conf_section *conf_find(struct molt_config *cfg, const char *kind,
                               const char *arg);

/* Lookup inside a section; marks the key used. NULL if absent. */
struct conf_kv *conf_get(struct conf_section *s, const char *key);

/* Typed parsing of config text; 0 on success, -1 with a message. */
int conf_parse_int(const char *s, long long *out);
int conf_parse_size(const char *s, long long *out);
int conf_parse_duration(const char *s, long long *ms);
int conf_parse_bool(const char *s, int *out);

/* printf into err with file:line of a section or key. */
void conf_errorf(struct conf_error *err, const char *file, int line,
                 const char *fmt, ...) MOLT_PRINTF(4, 5);
/* "KEY: message" at the file:line where a [server] key was set (line 0 if
 * it was not), for an error found after the config was read. */
void conf_server_errorf(struct molt_config *cfg, const char *key,
                        struct conf_error *err, const char *fmt, ...)
                        MOLT_PRINTF(4, 5);

/* Parse "host:port", "[v6]:port" or "unix:/path". */
int listen_parse(const char *text, struct listen_addr *la, char *msg, size_t msglen);

unsigned method_bit(const char *m, size_t len);

#endif /* MOLT_CONFIG_H */
