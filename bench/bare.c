/*
 * bare - a bare HTTP/1.1 responder for bench/run: what serving costs
 * with nothing but the syscalls, as a reference for scenario 1.
 *
 * N processes share one listening socket, each with its own epoll set
 * (EPOLLEXCLUSIVE on the listener), and answer every request on a
 * keep-alive connection with the same 120 bytes molt's hello module sends.
 * A request is whatever ends in an empty line: nothing is parsed, no
 * header is looked at, no Date is formatted, nothing is allocated.  Per
 * batch of pipelined requests it makes one recv and one send, as molt,
 * nginx and every event-driven server must.  It is not an upper bound:
 * it does not balance its connections between its processes (the kernel
 * wakes one, which takes what it finds), nor read a new connection before
 * epoll, as molt does; where molt serves more, that is why.
 *
 * usage: bare PORT [PROCESSES]     (127.0.0.1; SIGTERM/SIGINT stop it)
 */
#define _GNU_SOURCE
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BARE_CONNS   65536
#define BARE_BUF     16384

static const char bare_reply[] =
    "HTTP/1.1 200 OK\r\n"
    "Server: molt/0.1.0\r\n"
    "Date: Mon, 07 Dec 2026 00:00:00 GMT\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 13\r\n"
    "\r\n"
    "hello, world\n";

/* How far into "\r\n\r\n" each connection's last read ended. */
static unsigned char bare_state[BARE_CONNS];

/* Counts the requests that end in buf; state carries a split "\r\n\r\n". */
static int
bare_count(const char *buf, ssize_t n, unsigned char *state)
{
	static const char end[] = "\r\n\r\n";
	unsigned char s = *state;
	int reqs = 0;
	ssize_t i;

	for (i = 0; i < n; i++) {
		if (buf[i] == end[s])
			s++;
		else
			s = buf[i] == '\r' ? 1 : 0;
		if (s == 4) {
			reqs++;
			s = 0;
		}
	}
	*state = s;
	return reqs;
}

static void
bare_serve(int fd)
{
	static char in[BARE_BUF], out[BARE_BUF];
	ssize_t n;
	int reqs, k, len;

	for (;;) {
		n = recv(fd, in, sizeof(in), 0);
		if (n == -1 && errno == EAGAIN)
			return;
		if (n <= 0 || fd >= BARE_CONNS)
			break;
		reqs = bare_count(in, n, &bare_state[fd]);
		/* Pipelined beyond one buffer: a reference need not queue. */
		if (reqs * (int)(sizeof(bare_reply) - 1) > (int)sizeof(out))
			break;
		for (k = 0, len = 0; k < reqs; k++, len += sizeof(bare_reply) - 1)
			memcpy(out + len, bare_reply, sizeof(bare_reply) - 1);
		if (len > 0 && send(fd, out, len, MSG_NOSIGNAL) != len)
			break;
		if (n < (ssize_t)sizeof(in))
			return;
	}
	if (fd < BARE_CONNS)
		bare_state[fd] = 0;
	close(fd);
}

static void
bare_worker(int lfd)
{
	struct epoll_event ev, evs[256];
	int ep, n, i, fd, one = 1;

	if ((ep = epoll_create1(EPOLL_CLOEXEC)) == -1) {
		perror("bare: epoll_create1");
		_exit(1);
	}
	ev.events = EPOLLIN | EPOLLEXCLUSIVE;
	ev.data.fd = lfd;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) == -1) {
		perror("bare: epoll_ctl(listener)");
		_exit(1);
	}
	for (;;) {
		n = epoll_wait(ep, evs, 256, -1);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			perror("bare: epoll_wait");
			_exit(1);
		}
		for (i = 0; i < n; i++) {
			if (evs[i].data.fd != lfd) {
				bare_serve(evs[i].data.fd);
				continue;
			}
			while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK |
			    SOCK_CLOEXEC)) != -1) {
				(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY,
				    &one, sizeof(one));
				ev.events = EPOLLIN;
				ev.data.fd = fd;
				if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == -1)
					close(fd);
			}
		}
	}
}

static volatile sig_atomic_t bare_stop;

static void
bare_on_signal(int sig)
{
	(void)sig;
	bare_stop = 1;
}

int
main(int argc, char **argv)
{
	struct sockaddr_in sin;
	struct sigaction sa;
	sigset_t block, old;
	int lfd, i, nproc, one = 1;
	pid_t pids[64];

	if (argc < 2) {
		fprintf(stderr, "usage: bare PORT [PROCESSES]\n");
		return 2;
	}
	nproc = argc > 2 ? atoi(argv[2]) : 2;
	if (nproc < 1 || nproc > 64) {
		fprintf(stderr, "bare: PROCESSES is 1 to 64\n");
		return 2;
	}
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((unsigned short)atoi(argv[1]));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0)) == -1 ||
	    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    listen(lfd, 4096) == -1) {
		perror("bare: listening on 127.0.0.1");
		return 1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = bare_on_signal;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL) == -1 ||
	    sigaction(SIGINT, &sa, NULL) == -1) {
		perror("bare: sigaction");
		return 1;
	}
	/* Blocked until sigsuspend, so a stop cannot slip in before the wait. */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	if (sigprocmask(SIG_BLOCK, &block, &old) == -1) {
		perror("bare: sigprocmask");
		return 1;
	}
	for (i = 0; i < nproc; i++) {
		if ((pids[i] = fork()) == -1) {
			perror("bare: fork");
			nproc = i;
			bare_stop = 1;
			break;
		}
		if (pids[i] == 0) {
			signal(SIGTERM, SIG_DFL);
			signal(SIGINT, SIG_DFL);
			(void)sigprocmask(SIG_SETMASK, &old, NULL);
			bare_worker(lfd);
		}
	}
	/* The parent only waits: a signal ends the wait, then the children. */
	while (!bare_stop)
		sigsuspend(&old);
	for (i = 0; i < nproc; i++)
		(void)kill(pids[i], SIGTERM);
	while (wait(NULL) > 0 || errno == EINTR)
		;
	return 0;
}
