/*
 * listen.c - binding the listening sockets.
 *
 * The sockets are non-blocking before the first fork (platform facts): every
 * worker waits on the same socket, and a worker woken for a connection that
 * another worker took must get EAGAIN, not block in accept(2).
 */
#include "autoconfig.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "listen.h"
#include "log.h"

static void
listen_describe(int fd, const struct listen_addr *la, char *out, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN];

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == -1) {
		snprintf(out, len, "%s", la->text);
		return;
	}
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		snprintf(out, len, "%s:%u", host, ntohs(sin->sin_port));
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		snprintf(out, len, "[%s]:%u", host, ntohs(sin6->sin6_port));
	} else {
		snprintf(out, len, "%s", la->text);
	}
}

/*
 * Whether a server listens on the unix socket file at the address.  A
 * file left by a server that is gone refuses a connection; one a running
 * server listens on takes it (or, its backlog full, would make us wait),
 * and removing that file would take the address from that server for
 * good: it would run on, unreachable, and remove our file when it stops.
 * Returns 1 if in use, 0 if not, -1 if it cannot tell (logged).
 */
static int
listen_unix_in_use(const struct listen_addr *la)
{
	int fd, rc;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		log_error("socket() to probe %s: %s", la->text, strerror(errno));
		return -1;
	}
	if (connect(fd, (const struct sockaddr *)&la->ss, la->sslen) == 0 ||
	    errno == EAGAIN || errno == EINPROGRESS)
		rc = 1;
	else if (errno == ECONNREFUSED || errno == ENOENT)
		rc = 0;
	else {
		log_error("%s: cannot tell whether a server listens there: "
		    "connect: %s", la->text, strerror(errno));
		rc = -1;
	}
	close(fd);
	return rc;
}

/*
 * The options every inet listening socket gets (and the bind probe, so
 * that it binds where the socket would): the address again at once after
 * a restart, v6 apart from v4, and with `reuseport` a SO_REUSEPORT group.
 * Returns -1 after logging if one was refused.
 */
static int
listen_inet_opts(int fd, int family, int reuseport, const char *text)
{
	int one = 1, rc = 0;

	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1) {
		log_warn("SO_REUSEADDR on %s: %s", text, strerror(errno));
		rc = -1;
	}
	if (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY,
	    &one, sizeof(one)) == -1) {
		log_warn("IPV6_V6ONLY on %s: %s", text, strerror(errno));
		rc = -1;
	}
	if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one,
	    sizeof(one)) == -1) {
		log_warn("SO_REUSEPORT on %s: %s", text, strerror(errno));
		rc = -1;
	}
	return rc;
}

/*
 * SO_REUSEPORT lets any socket of the same user join the port, so a
 * second server started on it by mistake would take half the
 * connections instead of failing.  A plain bind first tells whether the
 * port is in use, as it would be without listen_per_cpu.
 */
static int
listen_port_free(const struct listen_addr *la)
{
	int fd;

	if ((la->ss.ss_family == AF_INET &&
	    ((const struct sockaddr_in *)&la->ss)->sin_port == 0) ||
	    (la->ss.ss_family == AF_INET6 &&
	    ((const struct sockaddr_in6 *)&la->ss)->sin6_port == 0))
		return 0;   /* an ephemeral port is free by definition */
	fd = socket(la->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		log_error("socket() for %s: %s", la->text, strerror(errno));
		return -1;
	}
	(void)listen_inet_opts(fd, la->ss.ss_family, 0, la->text);
	if (bind(fd, (const struct sockaddr *)&la->ss, la->sslen) == -1) {
		log_error("bind(%s): %s", la->text, strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

static int
listen_bind(struct listen_addr *la, int backlog, int reuseport)
{
	int fd;
	int family = la->ss.ss_family;
	char where[160];

	fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		log_error("socket() for %s: %s", la->text, strerror(errno));
		return -1;
	}
	if (family == AF_UNIX) {
		struct sockaddr_un *sun = (struct sockaddr_un *)&la->ss;
		struct stat st;

		/* A stale socket from a previous run; never remove anything else. */
		if (lstat(sun->sun_path, &st) == 0 && S_ISSOCK(st.st_mode)) {
			switch (listen_unix_in_use(la)) {
			case 1:
				log_error("%s: address in use (another server is "
				    "listening)", la->text);
				goto fail;
			case -1:
				goto fail;
			}
			if (unlink(sun->sun_path) == -1 && errno != ENOENT)
				log_warn("unlink(%s): %s", sun->sun_path,
				    strerror(errno));
		}
	} else {
		if (reuseport && listen_port_free(la) == -1)
			goto fail;
		(void)listen_inet_opts(fd, family, reuseport, la->text);
	}
	if (bind(fd, (struct sockaddr *)&la->ss, la->sslen) == -1) {
		log_error("bind(%s): %s", la->text, strerror(errno));
		goto fail;
	}
	if (family == AF_UNIX) {
		const char *path = ((struct sockaddr_un *)&la->ss)->sun_path;
		struct stat st;

		if (chmod(path, 0666) == -1)
			log_warn("chmod(%s): %s", la->text, strerror(errno));
		if (lstat(path, &st) == 0) {
			la->sock_dev = st.st_dev;
			la->sock_ino = st.st_ino;
		}
	}
	if (listen(fd, backlog) == -1) {
		log_error("listen(%s): %s", la->text, strerror(errno));
		goto fail;
	}
	listen_describe(fd, la, where, sizeof(where));
	log_info("listening on %s", where);
	la->fd = fd;
	return 0;
fail:
	close(fd);
	return -1;
}

/*
 * Whether a configured address is the one an open socket is bound to.
 * The bound address counts, so "127.0.0.1:0" in the old config matches
 * the ephemeral port it got, which is what a rewritten config names.
 */
static int
listen_same(const struct listen_addr *want, const struct listen_addr *have)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (want->ss.ss_family == AF_UNIX && have->ss.ss_family == AF_UNIX &&
	    have->sock_ino != 0) {
		const char *path = ((const struct sockaddr_un *)&want->ss)->sun_path;
		struct stat st;

		/*
		 * The path must still name the file bound there, under any
		 * spelling ("//", a symlinked directory: binding anew would
		 * find it in use, by us).  One removed under us (a tmp
		 * cleaner, a stray rm) leaves the socket unreachable: a
		 * reload that kept it said "kept" and served nobody there;
		 * now it binds the address anew.
		 */
		return lstat(path, &st) == 0 && st.st_dev == have->sock_dev &&
		    st.st_ino == have->sock_ino;
	}
	if (strcmp(want->text, have->text) == 0)
		return 1;
	if (want->ss.ss_family != have->ss.ss_family ||
	    want->ss.ss_family == AF_UNIX)
		return 0;
	if (getsockname(have->fd, (struct sockaddr *)&ss, &sl) == -1)
		return 0;
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)&want->ss, *b = (const void *)&ss;
		return a->sin_port == b->sin_port &&
		    a->sin_addr.s_addr == b->sin_addr.s_addr;
	}
	if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)&want->ss, *b = (const void *)&ss;
		return a->sin6_port == b->sin6_port &&
		    memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(a->sin6_addr)) == 0;
	}
	return 0;
}

/*
 * With TCP_DEFER_ACCEPT the kernel queues a connection for accept only
 * once its first bytes are in, so the read right after accept finds the
 * request: a `Connection: close` request is then accept, recv, send,
 * close.  Without it three in four of those reads came back EAGAIN under
 * wrk on loopback, and the connection went through epoll_ctl twice (ADD,
 * then DEL at close): 7.4 syscalls a request instead of 4.7.  A client
 * that connects and sends nothing is accepted after about a second, and
 * only then does header_timeout run.  Apache's AcceptFilter does the same.
 */
static void
listen_set_defer(const struct listen_addr *la, int on)
{
	int secs = on ? 1 : 0, k;

	if (la->ss.ss_family == AF_UNIX)
		return;
	if (setsockopt(la->fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs,
	    sizeof(secs)) == -1)
		log_warn("TCP_DEFER_ACCEPT on %s: %s", la->text, strerror(errno));
	for (k = 0; k < la->ncpu; k++)
		if (setsockopt(la->cpu_fd[k], IPPROTO_TCP, TCP_DEFER_ACCEPT,
		    &secs, sizeof(secs)) == -1)
			log_warn("TCP_DEFER_ACCEPT on %s, CPU socket %d: %s",
			    la->text, k, strerror(errno));
}

/* ------------------------------------------------------------------ */
/* A socket per CPU                                                    */

int
listen_cpus(int *cpus, int max)
{
	cpu_set_t allowed;
	int cpu, n = 0;

	if (sched_getaffinity(0, sizeof(allowed), &allowed) == -1)
		return -1;
	for (cpu = 0; cpu < CPU_SETSIZE && n < max; cpu++)
		if (CPU_ISSET(cpu, &allowed))
			cpus[n++] = cpu;
	return n;
}

static int
listen_wants_cpus(const struct listen_addr *la, const struct server_conf *sc)
{
	return sc->cpu_affinity && sc->listen_per_cpu &&
	    la->ss.ss_family != AF_UNIX && !la->inherited;
}

/*
 * One more member of the address's SO_REUSEPORT group, for the workers
 * pinned to `cpu`.  With SO_INCOMING_CPU set, the kernel (6.1 and
 * later; before, it hashes) queues a connection on the member whose CPU
 * processed its handshake, which is where the connection's packets will
 * be processed too: its worker then runs where its data arrives, and on
 * loopback beside its client.  Bound to the address the main socket got,
 * so that port 0 means the same port.
 */
static int
listen_bind_cpu(const struct listen_addr *la, int cpu, int backlog)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd;

	if (getsockname(la->fd, (struct sockaddr *)&ss, &sl) == -1) {
		log_warn("getsockname(%s): %s", la->text, strerror(errno));
		return -1;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		log_warn("socket() for %s, CPU %d: %s", la->text, cpu,
		    strerror(errno));
		return -1;
	}
	if (listen_inet_opts(fd, ss.ss_family, 1, la->text) == -1)
		goto fail;
	if (setsockopt(fd, SOL_SOCKET, SO_INCOMING_CPU, &cpu, sizeof(cpu)) == -1) {
		log_warn("SO_INCOMING_CPU on %s, CPU %d: %s", la->text, cpu,
		    strerror(errno));
		goto fail;
	}
	if (bind(fd, (struct sockaddr *)&ss, sl) == -1) {
		log_warn("bind(%s) for CPU %d: %s", la->text, cpu, strerror(errno));
		goto fail;
	}
	if (listen(fd, backlog) == -1) {
		log_warn("listen(%s) for CPU %d: %s", la->text, cpu, strerror(errno));
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return -1;
}

/*
 * listen_per_cpu: a socket for each CPU a worker is pinned to, beside
 * the main one, which takes what comes from the other CPUs.  Sockets are
 * only ever added: closing one would reset the connections queued on it
 * (platform facts), so those a reload no longer needs stay open, and the
 * workers take from them as from any CPU's whose worker is missing.
 * Failing here costs locality, not service: a CPU without its socket
 * has its connections spread over the others.
 */
static void
listen_cpu_open(struct listen_addr *la, const struct server_conf *sc)
{
	int cpus[CPU_SETSIZE];
	int *nf, n, want, k, on = 0;
	socklen_t ol = sizeof(on);

	if (!listen_wants_cpus(la, sc) || (n = listen_cpus(cpus, CPU_SETSIZE)) <= 0)
		return;
	want = sc->workers < n ? sc->workers : n;
	if (getsockopt(la->fd, SOL_SOCKET, SO_REUSEPORT, &on, &ol) == -1 || !on) {
		log_warn("%s: listen_per_cpu needs the socket bound anew; it "
		    "takes effect at the next start", la->text);
		return;
	}
	if (want > la->ncpu) {
		if ((nf = realloc(la->cpu_fd, (size_t)want * sizeof(*nf))) == NULL) {
			log_warn("%s: listen_per_cpu: out of memory", la->text);
			return;
		}
		la->cpu_fd = nf;
	}
	for (k = 0; k < want; k++) {
		if (k < la->ncpu) {
			/* The CPUs may have changed since (taskset). */
			if (setsockopt(la->cpu_fd[k], SOL_SOCKET, SO_INCOMING_CPU,
			    &cpus[k], sizeof(cpus[k])) == -1)
				log_warn("SO_INCOMING_CPU on %s, CPU %d: %s",
				    la->text, cpus[k], strerror(errno));
			continue;
		}
		if ((la->cpu_fd[k] = listen_bind_cpu(la, cpus[k],
		    (int)sc->backlog)) == -1)
			break;
		la->ncpu = k + 1;
	}
	log_info("%s: a socket for each of %d CPU%s", la->text, la->ncpu,
	    la->ncpu == 1 ? "" : "s");
}

int
listen_open(struct listen_addr *list, struct listen_addr *old,
    const struct server_conf *sc)
{
	struct listen_addr *la, *o;
	int backlog = (int)sc->backlog;

	for (la = list; la != NULL; la = la->next) {
		for (o = old; o != NULL && la->fd < 0; o = o->next) {
			if (o->fd >= 0 && listen_same(la, o)) {
				char where[160];

				la->fd = o->fd;
				la->kept_from = o;
				la->sock_dev = o->sock_dev;
				la->sock_ino = o->sock_ino;
				la->inherited = o->inherited;
				la->cpu_fd = o->cpu_fd;
				la->ncpu = o->ncpu;
				o->fd = -1;     /* moved, so closing old keeps it */
				o->cpu_fd = NULL;
				o->ncpu = 0;
				listen_describe(la->fd, la, where, sizeof(where));
				log_info("listening on %s (%s)", where,
				    o->inherited ? "from systemd" : "kept");
				break;
			}
		}
		if (la->fd < 0 && listen_bind(la, backlog,
		    listen_wants_cpus(la, sc)) == -1)
			goto fail;
	}
	for (la = list; la != NULL; la = la->next) {
		listen_cpu_open(la, sc);
		listen_set_defer(la, sc->defer_accept);
	}
	return 0;
fail:
	listen_undo(list);
	return -1;
}

void
listen_undo(struct listen_addr *list)
{
	struct listen_addr *la;

	/* The old generation goes on serving: give its sockets back. */
	for (la = list; la != NULL; la = la->next) {
		if (la->kept_from != NULL) {
			la->kept_from->fd = la->fd;
			la->kept_from->cpu_fd = la->cpu_fd;
			la->kept_from->ncpu = la->ncpu;
			la->kept_from = NULL;
			la->fd = -1;
			la->cpu_fd = NULL;
			la->ncpu = 0;
		}
	}
	listen_close(list);
}

/*
 * Closes one socket.  With unlink_file, a unix socket's file goes too,
 * if it is still ours and not one a newer server put at the path.
 */
static void
listen_shut(struct listen_addr *la, int unlink_file)
{
	struct stat st;
	const char *path;
	int k;

	for (k = 0; k < la->ncpu; k++)
		if (close(la->cpu_fd[k]) == -1)
			log_warn("close(%s, CPU socket %d): %s", la->text, k,
			    strerror(errno));
	la->ncpu = 0;
	if (la->fd < 0)
		return;
	if (close(la->fd) == -1)
		log_warn("close(%s): %s", la->text, strerror(errno));
	la->fd = -1;
	/* systemd made the file and listens there for the next start. */
	if (!unlink_file || la->ss.ss_family != AF_UNIX || la->sock_ino == 0 ||
	    la->inherited)
		return;
	path = ((struct sockaddr_un *)&la->ss)->sun_path;
	if (lstat(path, &st) == 0 && st.st_dev == la->sock_dev &&
	    st.st_ino == la->sock_ino && unlink(path) == -1)
		log_warn("unlink(%s): %s", path, strerror(errno));
}

void
listen_close(struct listen_addr *list)
{
	for (; list != NULL; list = list->next)
		listen_shut(list, 1);
}

void
listen_drop(struct listen_addr *list)
{
	for (; list != NULL; list = list->next)
		listen_shut(list, 0);
}

/* ------------------------------------------------------------------ */
/* Sockets from systemd                                                */

/*
 * Socket activation (sd_listen_fds(3)): systemd binds the addresses of
 * a .socket unit and passes them as fds 3, 4, ... with LISTEN_PID and
 * LISTEN_FDS set.  The socket outlives molt, so a restart or an upgrade
 * of the binary refuses no connection: they wait in the backlog until
 * the new master's workers accept them.  Each inherited socket stands in
 * for the listen line that names its address (listen_same), as an open
 * socket does on reload.
 */
static struct listen_addr *inherited;

static int
listen_inherit_one(int fd, struct listen_addr **out)
{
	struct listen_addr *la;
	int v, flags;
	socklen_t sl = sizeof(v);

	if (fcntl(fd, F_SETFD, FD_CLOEXEC) == -1) {
		log_error("socket activation: fd %d: %s", fd, strerror(errno));
		return -1;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &sl) == -1 || !v) {
		log_error("socket activation: fd %d is not a listening socket "
		    "(molt takes ListenStream= sockets only)", fd);
		return -1;
	}
	sl = sizeof(v);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &sl) == -1 ||
	    v != SOCK_STREAM) {
		log_error("socket activation: fd %d is not a stream socket", fd);
		return -1;
	}
	/* Every worker waits on it: one that loses the race gets EAGAIN. */
	if ((flags = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1) {
		log_error("socket activation: fd %d: O_NONBLOCK: %s", fd,
		    strerror(errno));
		return -1;
	}
	if ((la = calloc(1, sizeof(*la))) == NULL) {
		log_error("socket activation: out of memory");
		return -1;
	}
	la->fd = fd;
	la->inherited = 1;
	la->sslen = sizeof(la->ss);
	if (getsockname(fd, (struct sockaddr *)&la->ss, &la->sslen) == -1) {
		log_error("socket activation: fd %d: getsockname: %s", fd,
		    strerror(errno));
		free(la);
		return -1;
	}
	if (la->ss.ss_family == AF_UNIX) {
		struct sockaddr_un *sun = (struct sockaddr_un *)&la->ss;
		struct stat st;

		/* An abstract or unnamed one has no path a listen line names. */
		if (la->sslen <= offsetof(struct sockaddr_un, sun_path) ||
		    sun->sun_path[0] == '\0') {
			log_error("socket activation: fd %d is a unix socket "
			    "without a path", fd);
			free(la);
			return -1;
		}
		snprintf(la->text, sizeof(la->text), "unix:%.*s",
		    (int)(la->sslen - offsetof(struct sockaddr_un, sun_path)),
		    sun->sun_path);
		if (lstat(sun->sun_path, &st) == 0) {
			la->sock_dev = st.st_dev;
			la->sock_ino = st.st_ino;
		}
	} else if (la->ss.ss_family == AF_INET ||
	    la->ss.ss_family == AF_INET6) {
		listen_describe(fd, la, la->text, sizeof(la->text));
	} else {
		log_error("socket activation: fd %d is of address family %d, "
		    "not inet, inet6 or unix", fd, (int)la->ss.ss_family);
		free(la);
		return -1;
	}
	*out = la;
	return 0;
}

int
listen_inherit(void)
{
	const char *pid = getenv("LISTEN_PID"), *nfds = getenv("LISTEN_FDS");
	struct listen_addr **tail = &inherited, *la;
	char *end;
	long p, n, i;
	int rc = 0;

	if (pid == NULL || nfds == NULL)
		return 0;
	errno = 0;
	p = strtol(pid, &end, 10);
	if (errno != 0 || *end != '\0' || p != (long)getpid())
		goto out;       /* meant for a process that exec'd us: not ours */
	n = strtol(nfds, &end, 10);
	if (errno != 0 || *end != '\0' || n < 0 || n > INT_MAX - 3) {
		log_error("socket activation: LISTEN_FDS=%s is not a count", nfds);
		rc = -1;
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (listen_inherit_one(3 + (int)i, &la) == -1) {
			rc = -1;
			goto out;
		}
		*tail = la;
		tail = &la->next;
	}
out:
	/* Nothing molt starts is the process they were passed to. */
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (rc == -1)
		listen_inherited_free();
	return rc;
}

struct listen_addr *
listen_inherited(void)
{
	return inherited;
}

int
listen_inherited_check(const struct listen_addr *list, const char *path)
{
	struct listen_addr *o;
	const struct listen_addr *la;

	for (o = inherited; o != NULL; o = o->next) {
		for (la = list; la != NULL; la = la->next)
			if (listen_same(la, o))
				break;
		if (la == NULL) {
			log_error("socket activation: systemd passed %s (fd %d), "
			    "which no listen line of %s names", o->text, o->fd,
			    path);
			return -1;
		}
	}
	return 0;
}

void
listen_inherited_free(void)
{
	struct listen_addr *la, *next;

	for (la = inherited; la != NULL; la = next) {
		next = la->next;
		if (la->fd >= 0 && close(la->fd) == -1)
			log_warn("close(%s): %s", la->text, strerror(errno));
		free(la);
	}
	inherited = NULL;
}
