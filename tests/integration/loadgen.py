"""
Keep-alive load for the recycling tests (tests/integration/test_recycle.py).

A Client is a thread with one keep-alive connection at a time.  It sends a
request, reads the whole response, checks it, and sends the next one on the
same connection.  The rules of what counts as a failure are those of a
careful HTTP/1.1 client facing a server that recycles its workers:

  - a response that says `Connection: close` is a correct way for a
    draining worker to end the connection: the client closes and opens a
    new one, which is not a failure;
  - a request that was sent on an open connection and got no complete
    response (EOF, reset, timeout, a short body) is a failure, and so is
    any status other than the expected one, a body that is not the expected
    one, or a refused connection.

Every failure is recorded with its time, path and error, so a test can
report exactly what went wrong.
"""

import random
import socket
import threading
import time

from conftest import RawConn


class Client(threading.Thread):
    """next_request() returns (path, expected_body or None)."""

    def __init__(self, port, next_request, timeout=20.0, host="127.0.0.1",
                 name="client"):
        super().__init__(daemon=True, name=name)
        self.port, self.host = port, host
        self.next_request = next_request
        self.timeout = timeout
        self.halt = threading.Event()
        self.ok = 0
        self.connects = 0
        self.closes = 0          # responses with Connection: close
        self.ended_closed = 0    # 1: the stop came after a close, before
                                 # the reconnect that would have followed
        self.failures = []       # (monotonic time, path, error)
        self.pids = set()        # filled by callers that ask for /pid

    def fail(self, path, err):
        self.failures.append((time.monotonic(), path, err))

    def run(self):
        conn = None
        while not self.halt.is_set():
            if conn is None:
                try:
                    conn = RawConn(self.port, host=self.host, timeout=self.timeout)
                    self.connects += 1
                except OSError as e:
                    self.fail("(connect)", repr(e))
                    time.sleep(0.05)
                    continue
            path, expect = self.next_request()
            req = ("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path).encode()
            if not conn.send(req):
                self.fail(path, "send failed: reset on an open connection")
                conn.close()
                conn = None
                continue
            try:
                r = conn.read_response()
            except (AssertionError, OSError) as e:   # EOF, reset, timeout
                self.fail(path, "no complete response: %r" % (e,))
                conn.close()
                conn = None
                continue
            if r.status != 200:
                self.fail(path, "status %d %r" % (r.status, r.body[:200]))
            elif expect is not None and r.body != expect:
                self.fail(path, "body %r, expected %r" % (r.body[:200], expect))
            else:
                self.ok += 1
            if r.headers.get("connection", "").lower() == "close":
                self.closes += 1
                # Nothing may follow a response that closes the connection.
                try:
                    if not conn.is_closed(timeout=self.timeout):
                        self.fail(path, "Connection: close, but the server "
                                  "kept the connection open")
                except AssertionError as e:
                    self.fail(path, "bytes after Connection: close: %r" % (e,))
                conn.close()
                conn = None
        if conn is not None:
            conn.close()
        else:
            self.ended_closed = 1

    def stop(self):
        self.halt.set()

    def join_checked(self, timeout):
        self.join(timeout)
        if self.is_alive():
            self.fail("(stop)", "client thread still busy %.0fs after the stop"
                      % timeout)


def hello_requests():
    return ("/hello", None)


def deferred_requests(lo_ms=300, hi_ms=800, rnd=None):
    """Slow deferred replies: /stream/deferred?ms=N with N in [lo, hi]."""
    rnd = rnd or random.Random()

    def nxt():
        ms = rnd.randint(lo_ms, hi_ms)
        return ("/stream/deferred?ms=%d" % ms, b"deferred %d\n" % ms)
    return nxt


class Load:
    """A set of clients started and stopped together."""

    def __init__(self, port, hello=4, deferred=2, lo_ms=300, hi_ms=800,
                 timeout=20.0):
        self.clients = []
        for i in range(hello):
            self.clients.append(Client(port, hello_requests, timeout,
                                       name="hello%d" % i))
        for i in range(deferred):
            self.clients.append(Client(port, deferred_requests(lo_ms, hi_ms),
                                       timeout, name="deferred%d" % i))

    def start(self):
        self.t0 = time.monotonic()
        for c in self.clients:
            c.start()
        return self

    def stop(self, timeout=30.0):
        for c in self.clients:
            c.stop()
        for c in self.clients:
            c.join_checked(timeout)
        self.elapsed = time.monotonic() - self.t0

    @property
    def failures(self):
        out = []
        for c in self.clients:
            out.extend((t - self.t0, c.name, p, e) for t, p, e in c.failures)
        return sorted(out)

    def total(self, prefix=""):
        return sum(c.ok for c in self.clients if c.name.startswith(prefix))

    def closes(self):
        return sum(c.closes for c in self.clients)

    def connects(self):
        return sum(c.connects for c in self.clients)

    def ended_closed(self):
        return sum(c.ended_closed for c in self.clients)


def bound_conn(port, src, timeout=10.0):
    """A RawConn whose local address is src (e.g. 127.0.0.2)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    c = RawConn.__new__(RawConn)
    c.sock, c.buf, c.eof, c.timeout = s, b"", False, timeout
    return c
