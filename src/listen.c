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
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
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

static int
listen_bind(struct listen_addr *la, int backlog)
{
	int fd, one = 1;
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
		if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1)
			log_warn("SO_REUSEADDR on %s: %s", la->text, strerror(errno));
		if (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY,
		    &one, sizeof(one)) == -1)
			log_warn("IPV6_V6ONLY on %s: %s", la->text, strerror(errno));
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

	if (strcmp(want->text, have->text) == 0)
		return 1;
	if (want->ss.ss_family != have->ss.ss_family)
		return 0;
	if (want->ss.ss_family == AF_UNIX) {
		const char *path = ((const struct sockaddr_un *)&want->ss)->sun_path;
		struct stat st;

		/* Our own file under another spelling ("//", a symlinked
		 * directory): binding anew would find it in use, by us. */
		return have->sock_ino != 0 && lstat(path, &st) == 0 &&
		    st.st_dev == have->sock_dev && st.st_ino == have->sock_ino;
	}
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
	int secs = on ? 1 : 0;

	if (la->ss.ss_family == AF_UNIX)
		return;
	if (setsockopt(la->fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs,
	    sizeof(secs)) == -1)
		log_warn("TCP_DEFER_ACCEPT on %s: %s", la->text, strerror(errno));
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
				o->fd = -1;     /* moved, so closing old keeps it */
				listen_describe(la->fd, la, where, sizeof(where));
				log_info("listening on %s (kept)", where);
				break;
			}
		}
		if (la->fd < 0 && listen_bind(la, backlog) == -1)
			goto fail;
	}
	for (la = list; la != NULL; la = la->next)
		listen_set_defer(la, sc->defer_accept);
	return 0;
fail:
	/* The old generation goes on serving: give its sockets back. */
	for (la = list; la != NULL; la = la->next) {
		if (la->kept_from != NULL) {
			la->kept_from->fd = la->fd;
			la->kept_from = NULL;
			la->fd = -1;
		}
	}
	listen_close(list);
	return -1;
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

	if (la->fd < 0)
		return;
	if (close(la->fd) == -1)
		log_warn("close(%s): %s", la->text, strerror(errno));
	la->fd = -1;
	if (!unlink_file || la->ss.ss_family != AF_UNIX || la->sock_ino == 0)
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
