"""
HTTP/1.1 behaviour of molt's workers (issue #2), against a real molt on a
real socket: keep-alive, pipelining, request bodies, streamed and deferred
replies, HEAD, 100-continue, Date/Server, limits (431/414/413/408),
malformed requests and request-smuggling defences, routing.
"""

import base64
import email.utils
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import (DEFAULT_ROUTES, RawConn, has_ipv6_loopback, proc_rss_kb,
                      read_text, wait_for)

# ------------------------------------------------------------------ helpers


def pattern(n):
    """The stream module's body: byte i is 'a' + i % 26."""
    alpha = b"abcdefghijklmnopqrstuvwxyz"
    return (alpha * (n // 26 + 1))[:n]


def echo_body(data):
    """The request body as the echo module reports it."""
    j = json.loads(data)
    if j["body_encoding"] == "base64":
        return base64.b64decode(j["body"])
    assert j["body_encoding"] == "utf-8", j
    return j["body"].encode("utf-8")


def echo_json(data):
    return json.loads(data)


def echo_header(j, name):
    """A request header as echoed (a list of [name, value] pairs)."""
    for k, v in j["headers"]:
        if k.lower() == name.lower():
            return v
    return None


def assert_core_error(resp, status):
    """A core error reply: status (or one of a tuple of them), JSON
    {"error":..., "status":N}."""
    allowed = status if isinstance(status, tuple) else (status,)
    assert resp.status in allowed, resp
    assert resp.headers.get("content-type", "").startswith("application/json"), resp
    j = json.loads(resp.body)
    assert j["status"] == resp.status, j
    assert isinstance(j["error"], str) and j["error"], j


def assert_rejected(m, request, status=400):
    """Send request bytes on a new connection: expect exactly one response,
    `status` with Connection: close and a JSON error, then the close.  Then
    check that another client on another connection is still served."""
    with m.raw_conn(timeout=10) as c:
        c.send(request)
        r = c.read_response()
        assert_core_error(r, status)
        assert "close" in r.headers.get("connection", "").lower(), r
        rest = c.read_all(timeout=10)
        assert b"HTTP/1." not in rest, \
            "a second response after a rejected request: %r" % rest[:300]
    st, _, body = m.get("/hello")
    assert st == 200 and b"hello" in body.lower()


REQ = b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"


# ---------------------------------------------------------------- basics

def test_hello_date_server(molt):
    m = molt()
    st, h, body = m.get("/hello")
    assert st == 200
    assert h["content-type"].startswith("text/plain")
    assert b"hello" in body.lower()
    assert int(h["content-length"]) == len(body)
    assert h["server"] == "molt/0.1.0"
    assert re.match(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|"
                    r"Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$", h["date"]), h["date"]
    d = email.utils.parsedate_to_datetime(h["date"]).timestamp()
    assert abs(d - time.time()) < 60


def test_date_and_server_on_error_replies(molt):
    m = molt()
    st, h, body = m.get("/no/such/route")
    assert st == 404
    assert h["server"] == "molt/0.1.0"
    assert "date" in h
    with m.raw_conn() as c:
        c.send(b"GET /hello HTTP/1.1\r\n\r\n")   # no Host: 400
        r = c.read_response()
        assert r.status == 400
        assert r.headers["server"] == "molt/0.1.0"
        assert "date" in r.headers


def test_keepalive_many_requests_one_connection(molt):
    m = molt()
    c = m.conn()
    c.connect()
    sock = c.sock
    for i in range(10):
        c.request("GET", "/echo/k%d?i=%d" % (i, i))
        r = c.getresponse()
        body = r.read()
        assert r.status == 200
        assert not r.will_close, "server closed a keep-alive connection"
        j = echo_json(body)
        assert j["path"] == "/echo/k%d" % i
        assert j["query"] == "i=%d" % i
    assert c.sock is sock, "http.client had to reconnect"
    c.close()


def test_http10_keepalive_and_close(molt):
    m = molt()
    with m.raw_conn() as c:
        c.send(b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert "keep-alive" in r.headers.get("connection", "").lower()
        c.send(b"GET /hello HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert c.is_closed(), "HTTP/1.0 without keep-alive must be closed"


def test_connection_close_honoured(molt):
    m = molt()
    with m.raw_conn() as c:
        c.send(b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert "close" in r.headers.get("connection", "").lower()
        assert c.is_closed()


def test_pipelining_three_requests_in_order(molt):
    m = molt()
    reqs = (b"GET /echo/one HTTP/1.1\r\nHost: t\r\n\r\n"
            b"POST /echo/two HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nabcde"
            b"GET /echo/three?x=3 HTTP/1.1\r\nHost: t\r\n\r\n")
    with m.raw_conn() as c:
        c.send(reqs)
        r1, r2, r3 = c.read_response(), c.read_response(), c.read_response()
        assert [r.status for r in (r1, r2, r3)] == [200, 200, 200]
        j1, j2, j3 = echo_json(r1.body), echo_json(r2.body), echo_json(r3.body)
        assert (j1["method"], j1["path"]) == ("GET", "/echo/one")
        assert (j2["method"], j2["path"]) == ("POST", "/echo/two")
        assert echo_body(r2.body) == b"abcde"
        assert (j3["path"], j3["query"]) == ("/echo/three", "x=3")
        # still usable afterwards
        c.send(REQ)
        assert c.read_response().status == 200


def test_pipelining_with_streamed_and_deferred_replies(molt):
    m = molt()
    reqs = (b"GET /stream/deferred?ms=300 HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /stream/chunks?n=5&size=7 HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /echo/last HTTP/1.1\r\nHost: t\r\n\r\n")
    with m.raw_conn() as c:
        c.send(reqs)
        r1 = c.read_response()
        assert (r1.status, r1.body) == (200, b"deferred 300\n")
        r2 = c.read_response()
        assert r2.status == 200 and r2.body == pattern(35)
        r3 = c.read_response()
        assert echo_json(r3.body)["path"] == "/echo/last"


def test_a_timer_armed_after_a_blocking_handler_is_not_early(molt):
    """libevent arms a timer from the time it read when the turn of the
    loop began.  A handler that holds the CPU for 400 ms leaves that time
    behind, and a deferred reply of 300 ms armed by the next request in
    the same turn (pipelined here) was due at once: as soon as any other
    timer (here the access log's 100 ms flush) woke the loop with a fresh
    clock, it fired, 100 ms after it was armed."""
    m = molt(workers=1, server_extra="access_log = @TMP@/access.log\naccess_log_flush = 100ms")
    with m.raw_conn(timeout=10) as c:
        t0 = time.monotonic()
        c.send(b"GET /crash/block?ms=400 HTTP/1.1\r\nHost: t\r\n\r\n"
               b"GET /stream/deferred?ms=300 HTTP/1.1\r\nHost: t\r\n\r\n")
        r1 = c.read_response()
        t1 = time.monotonic()
        r2 = c.read_response()
        t2 = time.monotonic()
    assert (r1.status, r1.body) == (200, b"ok\n"), r1
    assert (r2.status, r2.body) == (200, b"deferred 300\n"), r2
    assert t1 - t0 >= 0.4, t1 - t0
    # 300 ms from when the handler armed it, after the block: 0.7 s, less
    # what libevent's coarse clock (one tick, a few ms) can take off a
    # timer; early, it came at 0.5 s.  Lower bounds only: a slow machine
    # makes both later, never earlier.
    assert t2 - t0 >= 0.66, (t1 - t0, t2 - t0)


def server_rx_queue(port, peer_port):
    """Bytes received and not yet read on the server's end of a loopback
    TCP connection (/proc/net/tcp rx_queue)."""
    want = ":%04X" % port, ":%04X" % peer_port
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1].endswith(want[0]) and fields[2].endswith(want[1]):
                return int(fields[4].split(":")[1], 16)
    return 0


def test_pipelining_client_that_does_not_read_costs_bounded_memory(molt):
    """A client pipelines 200,000 requests (6.6 MB) and reads nothing for
    2 s.  The worker answers only as fast as the client takes the replies,
    so its memory stays flat (it used to queue 30 MB of replies, and grew
    without bound), and once the client reads, every reply arrives, in
    order.  Another client is served all along."""
    m = molt(workers=1, server_extra="keepalive_requests = 0\n")
    n = 200000
    wpid = m.worker_pids()[0]
    rss0 = proc_rss_kb(wpid)
    s = socket.create_connection(("127.0.0.1", m.port), timeout=30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sender = threading.Thread(target=s.sendall, args=(REQ * n,), daemon=True)
    sender.start()
    time.sleep(2)
    grown = proc_rss_kb(wpid) - rss0
    st, _, _ = m.get("/hello", timeout=5)
    assert st == 200
    # Either the sender is still blocked, or the kernel's buffers took all
    # of it (they autotune to megabytes on some machines): then it must be
    # waiting unread in the server's socket, not inside molt.
    assert sender.is_alive() or server_rx_queue(m.port, s.getsockname()[1]) > 0, \
        "the server read 6.6 MB it cannot answer yet"
    assert grown < 4096, "worker grew %d kB for a client that reads nothing" % grown
    # Now read: every reply, whole.  Count them by their bodies, across
    # chunk boundaries.
    marker, got, tail = b"\r\n\r\nhello, world\n", 0, b""
    deadline = time.monotonic() + 60
    while got < n and time.monotonic() < deadline:
        chunk = s.recv(1 << 20)
        assert chunk, "closed after %d replies" % got
        buf = tail + chunk
        got += buf.count(marker)
        tail = buf[-(len(marker) - 1):]
    sender.join(10)
    s.close()
    assert got == n, (got, n)
    assert m.get("/hello")[0] == 200


def test_pipelined_request_split_byte_by_byte(molt):
    m = molt()
    data = (b"POST /echo/bytes HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nxyz" + REQ)
    with m.raw_conn() as c:
        for i in range(len(data)):
            c.send(data[i:i + 1])
            if i % 16 == 0:
                time.sleep(0.005)
        r = c.read_response()
        assert echo_body(r.body) == b"xyz"
        assert c.read_response().status == 200


# ------------------------------------------------------------ request bodies

def test_content_length_body_echoed(molt):
    m = molt()
    body = pattern(100000)
    st, h, data = m.get("/echo/cl", method="POST", body=body,
                        headers={"Content-Type": "application/octet-stream"})
    assert st == 200
    assert echo_body(data) == body


def test_echo_streams_a_large_reply(molt):
    """/echo built its whole reply, up to six times the body (a control
    byte is written \\u0001), and queued it: 30 clients that sent 1 MB and
    read nothing held 88 MB of one worker.  Over 64 KB of body the reply
    is streamed a slice at a time; below, it is whole, with a length."""
    m = molt(server_extra="max_body_size = 2m")
    bodies = {
        "control": bytes((i % 31) + 1 for i in range(300000)),
        "binary": bytes(range(256)) * 1200,
        # a two-byte character across every slice boundary
        "utf-8": ("a" + "\u00e9" * 200000).encode(),
        "at the line": b"x" * 65536,
    }
    for what, body in bodies.items():
        with m.raw_conn(timeout=30) as c:
            c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
                   % len(body) + body)
            r = c.read_response()
            assert r.status == 200, (what, r)
            assert r.chunked == (len(body) > 65536), (what, r.headers)
            j = echo_json(r.body)
            assert echo_body(r.body) == body, what
            assert j["version"] == "HTTP/1.1" and j["peer"].startswith("127.0.0.1:")
            assert j["body_encoding"] == ("base64" if what == "binary" else "utf-8")
            c.send(REQ)                 # the connection goes on
            assert c.read_response().status == 200, what
    # a client that does not read: the worker holds the body and what its
    # socket and molt's high-water mark take, not the whole reply
    m2 = molt(server_extra="max_body_size = 2m", workers=1)
    (pid,) = m2.worker_pids()
    before = proc_rss_kb(pid)
    body = bodies["control"] * 3
    socks = []
    for _ in range(10):
        s = socket.create_connection(("127.0.0.1", m2.port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n"
                  b"\r\n" % len(body) + body)
        socks.append(s)
    time.sleep(1)
    grown = proc_rss_kb(pid) - before
    for s in socks:
        s.close()
    # 10 x 0.9 MB of bodies; the replies whole were 10 x 5.4 MB
    assert grown < 10 * 2 * 1024, "worker grew %d kB" % grown
    assert m2.get("/hello")[0] == 200


def test_binary_body_and_headers_reach_the_module(molt):
    m = molt()
    body = bytes(range(256)) * 40
    with m.raw_conn() as c:
        c.send(b"PUT /echo/bin?a=1&a=2&b=x+y%21 HTTP/1.1\r\nHost: t\r\n"
               + b"X-Test:   spaced value \t\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        r = c.read_response()
    assert r.status == 200
    j = echo_json(r.body)
    assert j["method"] == "PUT"
    assert j["path_info"] == "/bin"
    assert j["params"] == {"a": ["1", "2"], "b": ["x y!"]}
    assert echo_header(j, "x-test") == "spaced value"
    assert echo_header(j, "host") == "t"
    assert echo_body(r.body) == body


def test_chunked_request_body(molt):
    m = molt()
    with m.raw_conn() as c:
        c.send(b"POST /echo/ch HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n6;ext=1;q=\"x\"\r\n world\r\n"
               b"A\r\n0123456789\r\n0\r\nX-Trailer: yes\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert echo_body(r.body) == b"hello world0123456789"
        c.send(REQ)
        assert c.read_response().status == 200


def test_chunked_request_body_in_pieces(molt):
    m = molt()
    payload = pattern(70000)
    chunks = [payload[i:i + 9000] for i in range(0, len(payload), 9000)]
    wire = b"".join(b"%x\r\n%s\r\n" % (len(ch), ch) for ch in chunks) + b"0\r\n\r\n"
    with m.raw_conn() as c:
        c.send(b"POST /echo/p HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(wire), 4093):
            c.send(wire[i:i + 4093])
            time.sleep(0.002)
        r = c.read_response()
        assert r.status == 200
        assert echo_body(r.body) == payload


def test_empty_chunked_body(molt):
    m = molt()
    with m.raw_conn() as c:
        c.send(b"POST /echo/e HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert echo_body(r.body) == b""


def test_expect_100_continue(molt):
    m = molt()
    with m.raw_conn() as c:
        c.send(b"POST /echo/x HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n"
               b"Expect: 100-continue\r\n\r\n")
        interim = c.read_response()
        assert interim.status == 100, "expected an interim 100 before the body"
        c.send(b"hello world")
        r = c.read_response()
        assert r.status == 200
        assert echo_body(r.body) == b"hello world"


def test_expect_100_continue_chunked(molt):
    m = molt()
    with m.raw_conn() as c:
        c.send(b"POST /echo/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
               b"Expect: 100-continue\r\n\r\n")
        assert c.read_response().status == 100
        c.send(b"3\r\nabc\r\n0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and echo_body(r.body) == b"abc"


# ---------------------------------------------------------------- replies

def test_head_has_headers_but_no_body(molt):
    m = molt()
    st, h, body = m.get("/hello")
    with m.raw_conn() as c:
        # HEAD then GET on one connection: had HEAD sent a body, the GET's
        # status line would not come next.
        c.send(b"HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n" + REQ)
        r = c.read_response(method="HEAD")
        assert r.status == 200
        assert r.headers.get("content-length") == str(len(body))
        assert r.headers["content-type"] == h["content-type"]
        r2 = c.read_response()
        assert r2.status == 200 and r2.body == body


def test_head_on_streamed_reply(molt):
    m = molt()
    with m.raw_conn() as c:
        c.send(b"HEAD /stream/chunks?n=3&size=10 HTTP/1.1\r\nHost: t\r\n\r\n" + REQ)
        r = c.read_response(method="HEAD")
        assert r.status == 200
        r2 = c.read_response()
        assert r2.status == 200 and b"hello" in r2.body.lower()


@pytest.mark.parametrize("n,size", [(1, 1), (10, 1000), (300, 4096)])
def test_streamed_reply_chunked_exact(molt, n, size):
    m = molt()
    with m.raw_conn() as c:
        c.send(b"GET /stream/chunks?n=%d&size=%d HTTP/1.1\r\nHost: t\r\n\r\n" % (n, size))
        r = c.read_response()
        assert r.status == 200
        assert r.chunked, "a streamed HTTP/1.1 reply must be chunked"
        assert r.body == pattern(n * size)
        c.send(REQ)
        assert c.read_response().status == 200
    # and through a real client
    st, _, body = m.get("/stream/chunks?n=%d&size=%d" % (n, size))
    assert st == 200 and body == pattern(n * size)


def test_streamed_reply_with_delays(molt):
    m = molt()
    st, _, body = m.get("/stream/chunks?n=20&size=333&delay_ms=10")
    assert st == 200 and body == pattern(20 * 333)


def test_stream_writes_from_a_callback_go_out_at_once(molt):
    """A chunk written from the module's timer is sent when the callback
    returns, not held until 16 KB have gathered or the stream ends: here
    the second 10-byte chunk comes 300 ms after the first, the end 2.1 s
    after it, and the client must see the second long before the end."""
    m = molt(workers=1)
    with m.raw_conn() as c:
        c.send(b"GET /stream/chunks?n=8&size=10&delay_ms=300 HTTP/1.1\r\n"
               b"Host: t\r\n\r\n")
        status, _, _ = c.read_head()
        assert status == 200
        t0 = time.monotonic()
        while c.buf.count(b"\r\n") < 4:     # two chunks: size and data each
            assert c._fill(timeout=5), "closed before the second chunk"
        took = time.monotonic() - t0
        assert took < 1.2, "the second chunk waited %.2f s" % took


def test_streamed_reply_http10_close_delimited(molt):
    m = molt()
    with m.raw_conn() as c:
        c.send(b"GET /stream/chunks?n=7&size=1000 HTTP/1.0\r\n\r\n")
        status, _, hl = c.read_head()
        h = dict(hl)
        assert status == 200
        assert "transfer-encoding" not in h
        body = c.read_all()
        assert body == pattern(7000)


@pytest.mark.parametrize("delay_ms", [0, 5])
def test_failed_stream_is_cut_off_not_ended(molt, delay_ms):
    """molt_stream_abort: the chunks written are delivered, then the
    connection closes without the last chunk, so a real HTTP client
    reports the truncation instead of taking a shorter body as whole.
    delay_ms=5 aborts from a timer callback, 0 inside the handler."""
    import http.client
    m = molt(workers=1)
    path = "/stream/chunks?n=50&size=1000&fail_after=7&delay_ms=%d" % delay_ms
    conn = http.client.HTTPConnection("127.0.0.1", m.port, timeout=10)
    conn.request("GET", path)
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("Transfer-Encoding") == "chunked"
    with pytest.raises(http.client.IncompleteRead) as e:
        r.read()
    assert e.value.partial == pattern(7000)
    conn.close()
    # The same with the raw bytes: seven whole chunks, no "0\r\n\r\n", EOF.
    with m.raw_conn() as c:
        c.send(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        status, _, _ = c.read_head()
        assert status == 200
        raw = c.read_all()
        assert raw == b"".join(
            b"3e8\r\n" + pattern(7000)[i * 1000:(i + 1) * 1000] + b"\r\n"
            for i in range(7)), raw[-40:]
    m.wait_log(r"stream: failing after fail_after chunks")
    # The worker lives on and serves the next client.
    st, _, body = m.get("/stream/chunks?n=3&size=10")
    assert st == 200 and body == pattern(30)


def test_failed_stream_curl_sees_truncation(molt):
    import shutil
    import subprocess
    if shutil.which("curl") is None:
        pytest.skip("no curl")
    m = molt(workers=1)
    p = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                        "http://127.0.0.1:%d/stream/chunks?n=50&size=1000&fail_after=7" % m.port],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 18, (p.returncode, p.stderr)   # CURLE_PARTIAL_FILE
    assert p.stdout == "200 7000", p.stdout
    p = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                        "http://127.0.0.1:%d/stream/chunks?n=50&size=1000" % m.port],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and p.stdout == "200 50000", (p.returncode, p.stdout)


def test_slow_reader_does_not_make_worker_buffer(molt):
    """Flow control: a client that does not read must not make the worker
    buffer the whole 64 MiB stream."""
    m = molt(workers=1)
    (wpid,) = m.worker_pids()
    m.get("/stream/chunks?n=1&size=1")
    before = proc_rss_kb(wpid)
    n, size = 4096, 16384
    total = n * size
    c = RawConn(m.port, timeout=30)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    c.send(b"GET /stream/chunks?n=%d&size=%d HTTP/1.1\r\nHost: t\r\n\r\n" % (n, size))
    time.sleep(2.0)
    grown_kb = proc_rss_kb(wpid) - before
    assert grown_kb < 24 * 1024, \
        "worker RSS grew by %d KiB while the client read nothing" % grown_kb
    r = c.read_response()
    assert r.status == 200 and len(r.body) == total
    assert r.body == pattern(total)
    c.close()
    assert m.worker_pids() == [wpid]


def test_deferred_reply(molt):
    m = molt()
    t0 = time.monotonic()
    st, _, body = m.get("/stream/deferred?ms=400")
    took = time.monotonic() - t0
    assert st == 200 and body == b"deferred 400\n"
    assert took >= 0.35, "deferred reply came back before its timer (%.3fs)" % took


def test_deferred_reply_does_not_block_the_worker(molt):
    m = molt(workers=1)
    result = {}

    def slow():
        result["r"] = m.get("/stream/deferred?ms=3000", timeout=20)

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    for _ in range(5):
        st, _, body = m.get("/hello", timeout=5)
        assert st == 200
    assert t.is_alive(), "the deferred request finished too early"
    t.join(20)
    assert result["r"][0] == 200 and result["r"][2] == b"deferred 3000\n"


def test_client_disconnect_mid_stream(molt):
    m = molt(workers=1)
    (wpid,) = m.worker_pids()
    for _ in range(3):
        c = m.raw_conn()
        c.send(b"GET /stream/chunks?n=100000&size=1000&delay_ms=1 HTTP/1.1\r\nHost: t\r\n\r\n")
        c.read_head()
        c._fill()
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()   # RST
    m.wait_log(r"stream aborted")
    # Said as a FIN is ("client closed the connection"), with the errno.
    m.wait_log(r"\[warn\] %d: GET /stream/chunks\S* from 127\.0\.0\.1:\d+ "
               r"cut off: the (read|write) failed: (Connection reset by peer|"
               r"Broken pipe)$" % wpid)
    for _ in range(5):
        st, _, body = m.get("/stream/chunks?n=3&size=5")
        assert st == 200 and body == pattern(15)
    assert m.worker_pids() == [wpid], "the worker died"


def test_client_disconnect_during_deferred(molt):
    m = molt(workers=1)
    (wpid,) = m.worker_pids()
    mark = m.mark()
    c = m.raw_conn()
    c.send(b"GET /stream/deferred?ms=500 HTTP/1.1\r\nHost: t\r\n\r\n")
    time.sleep(0.1)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()   # RST: unambiguously gone (a FIN could be a half-close)
    m.wait_log(r"stream aborted", since=mark)
    m.wait_log(r"\[warn\] %d: GET /stream/deferred\?ms=500 from "
               r"127\.0\.0\.1:\d+ cut off: the read failed: Connection reset "
               r"by peer$" % wpid, since=mark)
    time.sleep(0.7)  # past the timer: it must not fire on a freed request
    st, _, body = m.get("/stream/deferred?ms=10")
    assert st == 200 and body == b"deferred 10\n"
    assert m.worker_pids() == [wpid]


# ---------------------------------------------------------------- routing

ROUTING = """\
[route /a]
module = hello

[route /a/b]
module = echo

[route /ro]
module = echo
methods = GET,HEAD
"""


def test_404_no_route(molt):
    m = molt(conf=ROUTING)
    st, h, body = m.get("/zzz")
    assert st == 404
    assert h["content-type"].startswith("application/json")
    assert json.loads(body)["status"] == 404


def test_longest_prefix_routing(molt):
    m = molt(conf=ROUTING)
    st, h, body = m.get("/a/b/c?q=1")
    assert st == 200 and echo_json(body)["path"] == "/a/b/c"
    st, h, body = m.get("/a/b")
    assert st == 200 and echo_json(body)["path"] == "/a/b"
    st, h, body = m.get("/a/x")
    assert st == 200 and h["content-type"].startswith("text/plain")
    st, h, body = m.get("/a")
    assert st == 200 and h["content-type"].startswith("text/plain")


@pytest.mark.parametrize("target, path", [
    ("//a/b//c", "/a/b/c"),           # merged, so /a/b (echo), not /a
    ("/a//b/", "/a/b/"),              # a trailing slash survives
    ("/a/b/.//c/", "/a/b/c/"),
    ("/a/x/..//b", "/a/b"),
    ("/a/%2Fb", "/a/b"),              # decoded first, then merged
])
def test_paths_are_normalized_before_routing(molt, target, path):
    """Runs of '/' are merged and dot segments removed before the route is
    chosen: "//a/b" must not fall through to a shorter prefix's module."""
    m = molt(conf=ROUTING)
    st, h, body = m.get(target)
    assert st == 200 and h["content-type"].startswith("application/json"), (st, body)
    assert echo_json(body)["path"] == path


def test_absolute_form_target_names_the_host_the_module_sees(molt):
    """With an absolute-form target the Host field is ignored and the
    target's authority is the host (RFC 9112 3.2.2): the module reads it
    as its Host header, and an HTTP/1.0 request without one gets it."""
    m = molt()
    with m.raw_conn() as c:
        c.send(b"GET HTTP://Example.com:80/echo/a?x=1 HTTP/1.1\r\n"
               b"Host: other\r\nX-After: 1\r\n\r\n"
               b"GET http://[::1]:8080/echo/b HTTP/1.0\r\n"
               b"Connection: keep-alive\r\n\r\n"
               b"GET /echo/c HTTP/1.1\r\nHost: plain\r\n\r\n")
        a, b, plain = (echo_json(c.read_response().body) for _ in range(3))
    assert a["path_info"] == "/a" and a["params"] == {"x": ["1"]}, a
    assert echo_header(a, "host") == "Example.com:80", a
    assert echo_header(a, "x-after") == "1", a
    assert [k for k, _ in a["headers"]].count("Host") == 1, a
    assert echo_header(b, "host") == "[::1]:8080", b
    assert echo_header(plain, "host") == "plain", plain


@pytest.mark.parametrize("host", [b"x:80:90", b"x:abc", b":80", b"[::1",
                                  b"[::1]x", b"a..b", b"[example]"])
def test_a_host_that_is_not_host_and_port_is_400(molt, host):
    """RFC 9112 3.2: a server MUST answer 400 to an invalid Host.  These
    passed the character check before, and a module or a proxy behind
    molt could split them otherwise than molt did."""
    m = molt(conf=ROUTING + "\n[route /hello]\nmodule = hello\n")
    assert_rejected(m, b"GET /hello HTTP/1.1\r\nHost: %s\r\n\r\n" % host, 400)


def test_an_absolute_target_with_an_empty_host_is_400(molt):
    """RFC 9110 4.2.1: an http URI with an empty host MUST be rejected,
    with or without a port after it."""
    m = molt(conf=ROUTING + "\n[route /hello]\nmodule = hello\n")
    for target in (b"http://:80/hello", b"http:///hello", b"http://:/hello"):
        assert_rejected(m, b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % target, 400)


def test_an_empty_expect_expects_nothing(molt):
    """An Expect field with no member asks for nothing: the request is
    served (it got a 417 before; nginx ignores it too)."""
    m = molt()
    with m.raw_conn() as c:
        c.send(b"POST /echo/e HTTP/1.1\r\nHost: t\r\nExpect: \r\n"
               b"Content-Length: 3\r\n\r\nabc" + REQ)
        r = c.read_response()
        assert r.status == 200 and echo_body(r.body) == b"abc", r
        assert c.read_response().status == 200


def test_dot_segments_above_the_root_are_refused(molt):
    m = molt(conf=ROUTING + "\n[route /hello]\nmodule = hello\n")
    for target in (b"/../a/b", b"//../a/b", b"/a/../../a/b"):
        assert_rejected(m, b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % target, 400)


def download_then_hello(molt, tmp_path, files, targets):
    """One worker serves files (name -> size, sparse) to a client with a
    256 MB receive buffer that reads nothing, asked for `targets` at once;
    once the first bytes arrive, a second client asks for /hello.  The
    access log's request lines, in the order the replies ended."""
    if os.geteuid() != 0:
        pytest.skip("SO_RCVBUFFORCE needs CAP_NET_ADMIN")
    root = tmp_path / "www"
    root.mkdir()
    for name, size in files.items():
        with open(root / name, "wb") as f:
            f.truncate(size)            # sparse: sendfile reads zero pages
    m = molt(conf=DEFAULT_ROUTES + "\n[route /files]\nmodule = static\n"
             "root = %s\n" % root, workers=1,
             server_extra="access_log = @TMP@/access.log")
    port = int(m.listens[0].rsplit(":", 1)[1])
    a = socket.socket()
    a.setsockopt(socket.SOL_SOCKET, 33, 256 << 20)     # SO_RCVBUFFORCE
    a.connect(("127.0.0.1", port))
    b = socket.create_connection(("127.0.0.1", port))
    try:
        a.sendall(b"".join(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % t.encode()
                           for t in targets))
        assert select.select([a], [], [], 10)[0], "the download never began"
        b.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        b.settimeout(10)
        while b.recv(65536):
            pass
        time.sleep(0.5)
    finally:
        a.close()
        b.close()
    m.stop(signal.SIGQUIT)
    return [l.split('"')[1] for l in read_text(m.access_log).splitlines()]


def test_a_fast_download_leaves_the_other_clients_their_turn(molt, tmp_path):
    """conn_flush sent until the socket was full: to a client that reads
    as fast as the disk sends (here: one with a 256 MB receive buffer), a
    48 MB file left in one turn of the loop, and every other client of the
    worker waited for it (0.2-0.9 s with a 2 GB file).  After 2 MB the
    rest waits for the next turn: the /hello asked once the download has
    begun is answered before the download ends, and logged first."""
    reqs = download_then_hello(molt, tmp_path, {"big.bin": 48 * 1024 * 1024},
                               ["/files/big.bin"])
    assert reqs == ["GET /hello HTTP/1.1", "GET /files/big.bin HTTP/1.1"], reqs


def test_pipelined_downloads_share_one_budget_a_turn(molt, tmp_path):
    """The 2 MB a turn was counted per flush, and conn_process flushes once
    per pipelined request: pipelined files under 2 MB each still left in
    one turn ahead of everyone else.  It is counted per turn of the loop:
    eight pipelined 1.5 MB files take four turns or more, and a /hello
    asked once the first has begun is answered among them."""
    names = ["f%d.bin" % i for i in range(8)]
    reqs = download_then_hello(molt, tmp_path,
                               {n: 1536 * 1024 for n in names},
                               ["/files/" + n for n in names])
    assert len(reqs) == 9 and reqs.index("GET /hello HTTP/1.1") < 6, reqs


def test_405_with_allow(molt):
    m = molt(conf=ROUTING)
    st, h, body = m.get("/ro/x")
    assert st == 200
    st, h, body = m.get("/ro/x", method="HEAD")
    assert st == 200
    for method in ("POST", "DELETE", "PUT"):
        st, h, body = m.get("/ro/x", method=method, body=b"")
        assert st == 405
        allow = {x.strip().upper() for x in h["allow"].split(",")}
        assert allow == {"GET", "HEAD"}
        assert json.loads(body)["status"] == 405


def test_options_asterisk_asks_the_server_and_succeeds(molt):
    """OPTIONS * is about the server, not a resource (RFC 9110 9.3.7), and
    load balancers send it as a health check: it was 404 as no route
    matched "*".  200 with Content-Length: 0, and the connection goes on;
    "*" for any other method stays a 400."""
    m = molt(server_extra="access_log = @TMP@/access.log")
    with m.raw_conn() as c:
        c.send(b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n"
               b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.headers["content-length"] == "0", r
        assert r.body == b"" and "connection" not in r.headers, r
        r = c.read_response()
        assert r.status == 200 and b"hello" in r.body, r
    with m.raw_conn() as c:
        c.send(b"OPTIONS * HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.headers["content-length"] == "0", r
    assert_rejected(m, b"GET * HTTP/1.1\r\nHost: t\r\n\r\n", 400)
    # with a body (which would have to be read, or reset the reply): 400
    assert_rejected(m, b"OPTIONS * HTTP/1.1\r\nHost: t\r\nContent-Length: 4"
                       b"\r\n\r\nbody", 400)
    m.stop(signal.SIGQUIT)
    assert sum('"OPTIONS * HTTP/1.' in l and '" 200 0 ' in l
               for l in read_text(m.access_log).splitlines()) == 2


def test_unix_socket_listener(molt, tmp_path):
    path = str(tmp_path / "molt.sock")
    m = molt(listen=("127.0.0.1:0", "unix:" + path))
    with RawConn(unix=path) as c:
        c.send(REQ)
        r = c.read_response()
        assert r.status == 200 and b"hello" in r.body.lower()
    assert m.get("/hello")[0] == 200


def test_module_sees_the_client_address(molt, tmp_path):
    """molt_req_peer names the client's end of the socket ("address:port",
    "[v6]:port", "unix"); the text is made when first asked for, so ask
    twice on one connection and on a second one."""
    path = str(tmp_path / "molt.sock")
    hosts = ["127.0.0.1"] + (["::1"] if has_ipv6_loopback() else [])
    m = molt(listen=tuple("[%s]:0" % h if ":" in h else "%s:0" % h for h in hosts)
             + ("unix:" + path,))
    for h, listen in zip(hosts, m.listens):
        port = int(listen.rsplit(":", 1)[1])
        for _ in range(2):
            with RawConn(port, host=h) as c:
                local = c.sock.getsockname()[1]
                want = "[%s]:%d" % (h, local) if ":" in h else "%s:%d" % (h, local)
                for _ in range(2):
                    c.send(b"GET /echo/p HTTP/1.1\r\nHost: t\r\n\r\n")
                    r = c.read_response()
                    assert r.status == 200
                    assert echo_json(r.body)["peer"] == want
    with RawConn(unix=path) as c:
        c.send(b"GET /echo/p HTTP/1.1\r\nHost: t\r\n\r\n")
        assert echo_json(c.read_response().body)["peer"] == "unix"


STATUS = "\n[status]\npath = /molt/status\n"


def _via_proxy(c, fields):
    """One request on c with these X-Forwarded-For fields (a list, each
    one field line): the peer the echo module saw, and the status page's
    answer on the same connection."""
    extra = "".join("X-Forwarded-For: %s\r\n" % f for f in fields).encode()
    c.send(b"GET /echo/p HTTP/1.1\r\nHost: t\r\n" + extra + b"\r\n")
    r = c.read_response()
    assert r.status == 200, r
    c.send(b"GET /molt/status HTTP/1.1\r\nHost: t\r\n" + extra + b"\r\n")
    return echo_json(r.body)["peer"], c.read_response().status


def test_real_ip_from_names_the_client_a_trusted_proxy_forwarded(molt, tmp_path):
    """With [server] real_ip_from, a request from a listed proxy takes its
    client from X-Forwarded-For, read from the right: a trusted address is
    another proxy of the chain, the first other one is the client, and
    what a client wrote itself further left is not believed.  The module
    (molt_req_peer), [status] allow (default: loopback and unix) and the
    access log all see that client; each request of a keep-alive
    connection is judged on its own."""
    path = str(tmp_path / "molt.sock")
    m = molt(conf=DEFAULT_ROUTES + STATUS, listen=("127.0.0.1:0", "unix:" + path),
             workers=1, server_extra="access_log = @TMP@/access.log\n"
                          "real_ip_from = 127.0.0.1 10.0.0.0/8 unix\n")
    cases = [
        ([], None, 200),
        (["203.0.113.7"], "203.0.113.7", 403),
        (["6.6.6.6, 203.0.113.7"], "203.0.113.7", 403),
        (["203.0.113.7, 10.1.2.3"], "203.0.113.7", 403),
        (["203.0.113.7,,  10.1.2.3 "], "203.0.113.7", 403),
        (["10.1.2.3, 127.0.0.1"], "10.1.2.3", 403),    # all proxies: leftmost
        (["127.0.0.5"], "127.0.0.5", 200),             # a client, on loopback
        (["2001:db8::1"], "[2001:db8::1]", 403),
        (["[2001:db8::2]"], "[2001:db8::2]", 403),
        (["203.0.113.7, unknown"], None, 200),         # the proxy's own: garbage
        (["203.0.113.7:80"], None, 200),
        (["unknown, 203.0.113.9"], "203.0.113.9", 403),
        (["unknown, 10.0.0.9"], "10.0.0.9", 403),      # the last proxy read
        (["1.1.1.1", "2.2.2.2, 10.0.0.9"], "2.2.2.2", 403),
        (["1.1.1.1", "10.0.0.9"], "1.1.1.1", 403),     # fields as one list
        ([], None, 200),                               # nothing left over
    ]
    logged = []
    with RawConn(m.port) as c:
        local = "127.0.0.1:%d" % c.sock.getsockname()[1]
        for fields, want, status in cases:
            peer, st = _via_proxy(c, fields)
            assert (peer, st) == (want or local, status), fields
            host = want.strip("[]") if want else "127.0.0.1"
            logged += [host, host]          # the echo and the status page
    with RawConn(unix=path) as c:
        assert _via_proxy(c, ["203.0.113.7"]) == ("203.0.113.7", 403)
        assert _via_proxy(c, []) == ("unix", 200)
        logged += ["203.0.113.7"] * 2 + ["unix"] * 2
    m.stop(signal.SIGQUIT)
    hosts = [l.split(" ", 1)[0] for l in read_text(m.access_log).splitlines()]
    assert hosts == logged


def test_real_ip_header_is_believed_only_from_the_listed_proxies(molt):
    """A client not in real_ip_from names no one: its X-Forwarded-For is
    a header like any other.  real_ip_header picks the field that is
    read (X-Real-IP here), and X-Forwarded-For is then not looked at."""
    m = molt(conf=DEFAULT_ROUTES + STATUS, workers=1,
             server_extra="real_ip_from = 10.0.0.0/8\n")
    with RawConn(m.port) as c:
        local = "127.0.0.1:%d" % c.sock.getsockname()[1]
        assert _via_proxy(c, ["203.0.113.7"]) == (local, 200)
    m2 = molt(conf=DEFAULT_ROUTES + STATUS, workers=1,
              server_extra="real_ip_from = 127.0.0.1\n"
                                      "real_ip_header = X-Real-IP\n")
    with RawConn(m2.port) as c:
        local = "127.0.0.1:%d" % c.sock.getsockname()[1]
        assert _via_proxy(c, ["203.0.113.7"]) == (local, 200)
        c.send(b"GET /echo/p HTTP/1.1\r\nHost: t\r\n"
               b"X-Real-IP: 198.51.100.4\r\n\r\n")
        assert echo_json(c.read_response().body)["peer"] == "198.51.100.4"


def test_two_tcp_listeners(molt):
    m = molt(listen=("127.0.0.1:0", "127.0.0.1:0"))
    ports = [int(l.rsplit(":", 1)[1]) for l in m.listens]
    assert len(set(ports)) == 2, m.listens
    for p in ports:
        with RawConn(p) as c:
            c.send(REQ)
            assert c.read_response().status == 200


# ----------------------------------------------------------------- limits

LIMITS = ("max_header_size = 4k\nmax_uri_size = 1k\nmax_body_size = 1k\n")


def test_431_oversized_headers(molt):
    m = molt(server_extra=LIMITS)
    assert_rejected(m, b"GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n", 431)
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(300))
    assert_rejected(m, b"GET /hello HTTP/1.1\r\nHost: t\r\n" + many + b"\r\n", 431)
    # just under the limit is fine
    st, _, _ = m.get("/hello", headers={"X-Big": "a" * 3000})
    assert st == 200


def test_431_default_limit(molt):
    m = molt()
    assert_rejected(m, b"GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 200000 + b"\r\n\r\n", 431)


def test_431_head_never_terminated(molt):
    """Headers that keep coming without the blank line are cut at the limit
    rather than buffered forever."""
    m = molt(server_extra=LIMITS)
    with m.raw_conn() as c:
        c.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n")
        for i in range(100):
            if not c.send(b"X-H%d: %s\r\n" % (i, b"v" * 100)):
                break
        r = c.read_response()
        assert_core_error(r, 431)


def test_414_long_uri(molt):
    m = molt(server_extra=LIMITS)
    assert_rejected(m, b"GET /hello?" + b"x" * 2000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414)
    st, _, _ = m.get("/hello?" + "x" * 500)
    assert st == 200


def test_414_default_limit(molt):
    m = molt()
    assert_rejected(m, b"GET /hello?" + b"x" * 300000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414)


def test_413_content_length(molt):
    m = molt(server_extra=LIMITS)
    assert_rejected(m, b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\n\r\n" + b"b" * 2000, 413)
    st, _, body = m.get("/echo", method="POST", body=b"b" * 1000)
    assert st == 200 and echo_body(body) == b"b" * 1000


def test_413_content_length_before_body_is_sent(molt):
    """The answer comes from the headers alone (no 100 Continue either)."""
    m = molt(server_extra=LIMITS)
    with m.raw_conn() as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 999999\r\n"
               b"Expect: 100-continue\r\n\r\n")
        r = c.read_response()
        assert_core_error(r, 413)
        assert "close" in r.headers.get("connection", "").lower()
        assert c.is_closed()


def test_413_chunked(molt):
    m = molt(server_extra=LIMITS)
    wire = b"".join(b"100\r\n" + b"c" * 256 + b"\r\n" for _ in range(5)) + b"0\r\n\r\n"
    assert_rejected(m, b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + wire, 413)
    wire = b"".join(b"100\r\n" + b"c" * 256 + b"\r\n" for _ in range(4)) + b"0\r\n\r\n"
    with m.raw_conn() as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + wire)
        r = c.read_response()
        assert r.status == 200 and echo_body(r.body) == b"c" * 1024


def test_413_chunked_at_the_size_line(molt):
    """A chunk that takes the body past max_body_size is refused when its
    size is read, as nginx does: the client was told only once it had sent
    max_body_size bytes of it."""
    m = molt(server_extra=LIMITS)       # max_body_size = 1k
    head = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    for wire in (b"401\r\n",                        # 1025 bytes
                 b"40000000",                          # a size line not ended
                 b"100\r\n" + b"c" * 256 + b"\r\n301\r\n",  # 256 + 769
                 b"400;ext=1\r\n" + b"c" * 1024 + b"\r\n1\r\n"):
        with m.raw_conn(timeout=5) as c:
            c.send(head + wire)
            r = c.read_response()
            assert_core_error(r, 413)
            assert "close" in r.headers.get("connection", "").lower()
    # the limit itself is allowed, in one chunk or in pieces
    for wire in (b"400\r\n" + b"c" * 1024 + b"\r\n0\r\n\r\n",
                 b"300\r\n" + b"c" * 768 + b"\r\n100\r\n" + b"c" * 256 +
                 b"\r\n0\r\n\r\n"):
        with m.raw_conn(timeout=5) as c:
            c.send(head + wire)
            r = c.read_response()
            assert r.status == 200 and echo_body(r.body) == b"c" * 1024


def test_408_client_stops_mid_headers(molt):
    m = molt(server_extra="header_timeout = 1s")
    with m.raw_conn(timeout=15) as c:
        t0 = time.monotonic()
        c.send(b"GET /hello HTTP/1.1\r\nHost: t\r\nX-Partial: yes\r\n")
        r = c.read_response()
        took = time.monotonic() - t0
        assert_core_error(r, 408)
        assert "close" in r.headers.get("connection", "").lower()
        assert c.is_closed()
        assert 0.8 <= took <= 8, "408 after %.2fs with header_timeout = 1s" % took
    assert m.get("/hello")[0] == 200


# Combined Log Format, strictly: printable ASCII only, every quote and
# backslash inside a quoted field escaped (\xHH), the size a number.
CLF_FIELD = r'"((?:[\x20-\x21\x23-\x5b\x5d-\x7e]|\\x[0-9A-F]{2})*)"'
CLF_RE = re.compile(r"^(\S+) - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d "
                    r"\+0000\] %s (\d{3}) (\d+) %s %s$" % ((CLF_FIELD,) * 3))


def test_access_log_is_combined_format_for_every_reply(molt, tmp_path):
    """Every reply, the refused ones included, is one Combined Log Format
    line that goaccess parses, whatever bytes the client sent, and names
    the request as the client sent it.  A head that timed out (408) was
    logged as "- - HTTP/1.1", although its first line had arrived: an
    operator looking for the slow client could not see what it asked."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "empty").write_bytes(b"")
    (www / "f").write_bytes(b"x" * 10)
    m = molt(conf=DEFAULT_ROUTES + "\n[route /www]\nmodule = static\nroot = %s\n"
             % www, workers=1,
             server_extra="access_log = @TMP@/access.log\nheader_timeout = 1s\n"
             "max_header_size = 2k\nmax_body_size = 100")
    close = b"Host: t\r\nConnection: close\r\n"
    sent = [
        (b"GET /hello?q=\"x\\y\xc3\xa9\xff HTTP/1.1\r\n" + close +
         b"User-Agent: a\"b\\c \xc3\xa9 " + b"u" * 600 + b"\r\n"
         b"Referer: http://r/\"q\r\n\r\n", 200),
        (b"HEAD /hello HTTP/1.1\r\n" + close + b"\r\n", 200),
        (b"GET /www/empty HTTP/1.1\r\n" + close + b"\r\n", 200),
        (b"GET /hello HTTP/1.1\r\n" + close + b"User-Agent: \x01\r\n\r\n", 400),
        (b"GET /hello\x7f HTTP/1.1\r\n" + close + b"\r\n", 400),
        (b"BREW /pot \"HTCPCP\"\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\n" + close + b"Content-Length: 1000\r\n\r\n", 413),
        (b"GET /hello HTTP/1.1\r\nX: " + b"a" * 3000 + b"\r\n\r\n", 431),
    ]
    for req, _ in sent:
        m.raw(req)
    st, h, _ = m.get("/www/f")
    assert st == 200
    st, _, _ = m.get("/www/f", headers={"If-None-Match": h["etag"]})
    assert st == 304
    with m.raw_conn(timeout=15) as c:
        c.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n")
        assert c.read_response().status == 408
    m.stop(signal.SIGQUIT)
    with open(m.access_log, "rb") as f:
        lines = f.read().decode("ascii").splitlines()
    parsed = [CLF_RE.match(l) for l in lines]
    assert all(parsed), [l for l, p in zip(lines, parsed) if not p]
    got = [(p.group(2), int(p.group(3))) for p in parsed]
    assert got[0] == ("GET /hello?q=\\x22x\\x5Cy\\xC3\\xA9\\xFF HTTP/1.1", 200), got
    assert [s for _, s in got] == [s for _, s in sent] + [200, 304, 408], got
    assert parsed[0].group(6).startswith("a\\x22b\\x5Cc \\xC3\\xA9 uuu"), lines[0]
    assert parsed[0].group(5) == "http://r/\\x22q", lines[0]
    assert got[5] == ("BREW /pot \\x22HTCPCP\\x22", 400), got
    assert got[-1] == ("GET /slow HTTP/1.1", 408), got
    out = subprocess.run(["goaccess", m.access_log, "--log-format=COMBINED",
                          "--no-global-config", "-o", "json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         timeout=60, check=True)
    general = json.loads(out.stdout)["general"]
    assert (general["total_requests"], general["failed_requests"]) == \
        (len(lines), 0), general


def test_408_client_stops_mid_body(molt):
    m = molt(server_extra="body_timeout = 1s")
    with m.raw_conn(timeout=15) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        r = c.read_response()
        assert_core_error(r, 408)
        assert c.is_closed()
    assert m.get("/hello")[0] == 200


def test_idle_keepalive_connection_closed(molt):
    m = molt(server_extra="keepalive_timeout = 1s")
    with m.raw_conn(timeout=15) as c:
        c.send(REQ)
        assert c.read_response().status == 200
        t0 = time.monotonic()
        assert c.is_closed(timeout=10), "idle keep-alive connection never closed"
        assert time.monotonic() - t0 >= 0.8


@pytest.mark.parametrize("how", ["keepalive", "all-busy-first", "silent",
                                 "long-stream-first"])
def test_idle_connections_make_room_at_max_connections(molt, how):
    """Clients that hold connections open must not lock new clients out
    for keepalive_timeout (or header_timeout): at max_connections the
    connection idle longest is closed for the new one (nginx reuses them
    the same way).  all-busy-first: the limit is reached while every
    connection is still in its first request, so the listener is off by
    the time they go idle.  silent: connections that never send a byte.
    long-stream-first: the first connection's request began before the
    others' but its stream ended after theirs, so it is the newest idle
    one and keeps its place."""
    m = molt(workers=1, server_extra="max_connections = 4\n"
             "keepalive_timeout = 60s\nheader_timeout = 60s\ndefer_accept = off")
    held = [m.raw_conn(timeout=10) for _ in range(4)]
    oldest = 0
    try:
        if how == "all-busy-first":
            for c in held:
                c.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n")
            time.sleep(0.3)   # all four accepted: the worker is full
            for c in held:
                c.send(b"\r\n")
            for c in held:
                assert c.read_response().status == 200
        elif how == "keepalive":
            # One after another: which went idle first is then known.  (Sent
            # all at once, a connection the worker accepts late is read at
            # once and can be answered, and idle, before the first.)
            for c in held:
                c.send(REQ)
                assert c.read_response().status == 200
        elif how == "long-stream-first":
            held[0].send(b"GET /stream/chunks?n=4&size=3&delay_ms=150 HTTP/1.1\r\n"
                         b"Host: t\r\n\r\n")
            time.sleep(0.1)
            for c in held[1:]:
                c.send(REQ)
                assert c.read_response().status == 200
            r = held[0].read_response()
            assert (r.status, r.body) == (200, b"abcdefghijkl")
            oldest = 1
        with m.raw_conn(timeout=10) as c:
            c.send(b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert c.read_response().status == 200, "a new client was locked out"
        # The one idle longest made room; the others still serve.
        assert held[oldest].is_closed(timeout=5)
        for c in held[:oldest] + held[oldest + 1:]:
            c.send(REQ)
            assert c.read_response().status == 200
    finally:
        for c in held:
            c.close()
    m.wait_log(r"\[warn\].*max_connections \(4\) reached; closed an idle "
               r"connection to make room \(1 in all workers since the last "
               r"line\)")


def test_silent_new_connection_gets_header_timeout_not_keepalive(molt):
    """A connection that never sent a request has not earned keep-alive:
    header_timeout applies from the accept."""
    m = molt(server_extra="defer_accept = off\nheader_timeout = 1s\n"
             "keepalive_timeout = 60s")
    with m.raw_conn(timeout=15) as c:
        t0 = time.monotonic()
        assert c.is_closed(timeout=10), "silent connection still open after 10s"
        took = time.monotonic() - t0
        assert 0.8 <= took <= 5, "closed after %.2fs, header_timeout = 1s" % took


def test_header_timeout_is_not_reset_by_trickling(molt):
    """A slowloris that sends a byte now and then still gets cut off."""
    m = molt(server_extra="header_timeout = 1s")
    with m.raw_conn(timeout=15) as c:
        c.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n")
        t0 = time.monotonic()
        closed = False
        while time.monotonic() - t0 < 8:
            if not c.send(b"X"):
                closed = True
                break
            time.sleep(0.2)
            r, _, _ = select.select([c.sock], [], [], 0)
            if r:
                closed = True
                break
        assert closed, "trickled headers kept the connection open for 8s"
        r = c.read_response()
        assert_core_error(r, 408)



STATUS_ROUTES = DEFAULT_ROUTES + "\n[status]\npath = /molt/status\n"


def open_connections(m):
    """Connections the workers hold, less the one asking."""
    st, _, body = m.get("/molt/status")
    assert st == 200, (st, body)
    return sum(w["connections"] for w in json.loads(body)["workers"]) - 1


def silent_sockets(m, n):
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", m.port), timeout=15)
        socks.append(s)
    return socks


def test_defer_accept_leaves_silent_connections_to_the_kernel(molt):
    """defer_accept (the default): a worker takes a TCP connection only once
    it has sent something, and a silent one is still closed in the end."""
    m = molt(conf=STATUS_ROUTES, server_extra="header_timeout = 1s")
    socks = silent_sockets(m, 5)
    try:
        time.sleep(0.4)
        assert open_connections(m) == 0, "silent connections were accepted"
        socks[0].sendall(REQ)
        data = b""
        while b"hello" not in data:
            chunk = socks[0].recv(4096)
            assert chunk, "closed before the reply: %r" % data
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 "), data
        t0 = time.monotonic()
        for s in socks[1:]:
            s.settimeout(15)
            assert s.recv(1) == b"", "a silent connection got bytes"
        took = time.monotonic() - t0
        # about 1 s in the kernel's queue, then header_timeout
        assert took <= 10, "silent connections held %.1fs" % took
    finally:
        for s in socks:
            s.close()


def test_defer_accept_off_accepts_silent_connections(molt):
    m = molt(conf=STATUS_ROUTES, server_extra="defer_accept = off")
    socks = silent_sockets(m, 5)
    try:
        wait_for(lambda: open_connections(m) == 5, 5,
                 what="5 silent connections accepted")
    finally:
        for s in socks:
            s.close()


# ---------------------------------------------- malformed requests (400)

H = b"Host: t\r\n"
MALFORMED = {
    # request line
    "garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    "no-version": b"GET /hello\r\n" + H + b"\r\n",
    "double-space": b"GET  /hello HTTP/1.1\r\n" + H + b"\r\n",
    "extra-token": b"GET /hello HTTP/1.1 x\r\n" + H + b"\r\n",
    "bad-method-token": b"G(T /hello HTTP/1.1\r\n" + H + b"\r\n",
    "ctl-in-target": b"GET /he\x01llo HTTP/1.1\r\n" + H + b"\r\n",
    "space-in-target": b"GET /he llo HTTP/1.1\r\n" + H + b"\r\n",
    # nginx in front ends the path at '#' for its location rules and
    # forwards the target as sent: "/x" there must not be "/hello" here.
    "fragment-in-target": b"GET /x#/../hello HTTP/1.1\r\n" + H + b"\r\n",
    "fragment-in-query": b"GET /hello?a#b HTTP/1.1\r\n" + H + b"\r\n",
    "bare-cr-request-line": b"GET /hello HTTP/1.1\r" + H + b"\r\n",
    "bare-lf-request-line": b"GET /hello HTTP/1.1\n" + H + b"\r\n",
    # Host
    "no-host-1.1": b"GET /hello HTTP/1.1\r\n\r\n",
    "two-hosts": b"GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    # header names and values
    "space-in-name": b"GET /hello HTTP/1.1\r\n" + H + b"X A: b\r\n\r\n",
    "space-before-colon": b"GET /hello HTTP/1.1\r\n" + H + b"X-A : b\r\n\r\n",
    "quote-in-name": b"GET /hello HTTP/1.1\r\n" + H + b"X\"A: b\r\n\r\n",
    "paren-in-name": b"GET /hello HTTP/1.1\r\n" + H + b"(A): b\r\n\r\n",
    "empty-name": b"GET /hello HTTP/1.1\r\n" + H + b": b\r\n\r\n",
    "no-colon": b"GET /hello HTTP/1.1\r\n" + H + b"X-A b\r\n\r\n",
    "non-ascii-name": b"GET /hello HTTP/1.1\r\n" + H + b"X-\xc3\xa4: b\r\n\r\n",
    "nul-in-value": b"GET /hello HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n",
    "bare-cr-in-value": b"GET /hello HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n",
    "bare-cr-end-of-line": b"GET /hello HTTP/1.1\r\n" + H + b"X-A: a\r\r\n\r\n",
    "bare-lf-header": b"GET /hello HTTP/1.1\r\n" + H + b"X-A: a\n\r\n",
    "obs-fold-space": b"GET /hello HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n",
    "obs-fold-tab": b"GET /hello HTTP/1.1\r\n" + H + b"X-A: a\r\n\tb\r\n\r\n",
    "fold-first-header": b"GET /hello HTTP/1.1\r\n Host: t\r\n\r\n",
    # framing / smuggling
    "cl-and-te": b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-and-cl": b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
                 b"Content-Length: 5\r\n\r\n0\r\n\r\n",
    "differing-cl": b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n"
                    b"Content-Length: 6\r\n\r\nabcdef",
    "cl-list-differing": b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5, 6\r\n\r\nabcdef",
    "cl-non-numeric": b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: abc\r\n\r\n",
    "cl-plus": b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nabcde",
    "cl-negative": b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n",
    "cl-hex": b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 0x5\r\n\r\nabcde",
    "cl-overflow": b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 184467440737095516160\r\n\r\n",
    "cl-empty": b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length:\r\n\r\n",
    "te-in-http10": b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    # A front end that keeps the last TE line sees no body, and sends the
    # chunks on as a request of its own.
    "te-chunked-then-empty-line": b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
                                  b"Transfer-Encoding: \r\n\r\n0\r\n\r\n",
    "te-space-before-colon": b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "chunk-size-not-hex": b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                          b"zz\r\nhello\r\n0\r\n\r\n",
    "chunk-size-negative": b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                           b"-5\r\nhello\r\n0\r\n\r\n",
    "chunk-size-0x": b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                     b"0x5\r\nhello\r\n0\r\n\r\n",
    "chunk-size-overflow": b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                           b"10000000000000005\r\nhello\r\n0\r\n\r\n",
    "chunk-size-empty": b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                        b"\r\nhello\r\n0\r\n\r\n",
    "chunk-size-space": b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                        b"5 5\r\nhello\r\n0\r\n\r\n",
    "chunk-data-too-long": b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                           b"5\r\nhelloXX\r\n0\r\n\r\n",
    "chunk-bare-lf": b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                     b"5\nhello\r\n0\r\n\r\n",
    "chunk-bare-cr": b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                     b"5\rhello\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_request_400(molt, name):
    m = molt()
    assert_rejected(m, MALFORMED[name], 400)


@pytest.mark.parametrize("te", [b"gzip", b"chunked, gzip", b"xchunked", b"identity",
                                b"gzip, chunked", b"chunked, chunked"])
def test_unknown_transfer_coding_rejected(molt, te):
    """RFC 9112 6.1/6.3: an unknown coding is 501, chunked not last is 400;
    either way the request is refused and the connection closed."""
    m = molt()
    assert_rejected(m, b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: " + te +
                    b"\r\n\r\n0\r\n\r\n", (400, 501))


def test_http_version_not_supported(molt):
    m = molt()
    assert_rejected(m, b"GET /hello HTTP/2.0\r\nHost: t\r\n\r\n", 505)
    assert_rejected(m, b"GET /hello HTTP/3.0\r\nHost: t\r\n\r\n", 505)


def test_a_later_http_1_minor_version_is_served_as_1_1(molt):
    """RFC 9110 2.5: a message of a higher minor version than the server
    implements is processed as the highest it does, and nginx answers it;
    molt answered HTTP/1.2 with 505.  The reply says HTTP/1.1, and keep-
    alive and Host work as in 1.1."""
    m = molt()
    with m.raw_conn() as c:
        for _ in range(2):          # kept alive, as 1.1 is
            c.send(b"GET /hello HTTP/1.2\r\nHost: t\r\n\r\n")
            c._need(13)
            assert c.buf.startswith(b"HTTP/1.1 200 "), c.buf[:40]
            r = c.read_response()
            assert (r.status, r.body) == (200, b"hello, world\n"), r
    assert_rejected(m, b"GET /hello HTTP/1.9\r\n\r\n", 400)   # no Host


@pytest.mark.parametrize("version", [b"http/1.1", b"HTTP/1.x", b"HTTP/11", b"HTTP/1.1.1"])
def test_malformed_version(molt, version):
    m = molt()
    assert_rejected(m, b"GET /hello " + version + b"\r\nHost: t\r\n\r\n", (400, 505))


def test_smuggled_request_is_never_served(molt):
    """CL.TE: a front end using Content-Length would forward the whole
    thing as one request; molt must not answer the hidden one."""
    m = molt()
    hidden = b"GET /echo/SMUGGLED HTTP/1.1\r\nHost: t\r\n\r\n"
    body = b"0\r\n\r\n" + hidden
    req = (b"POST /echo/front HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n" % len(body)) + body
    with m.raw_conn() as c:
        c.send(req)
        data = c.read_all()
    assert data.count(b"HTTP/1.1 ") == 1, data
    assert data.startswith(b"HTTP/1.1 400")
    assert b"SMUGGLED" not in data


def test_rejection_after_good_request_on_same_connection(molt):
    """A good request first, then garbage: the good one is answered, the bad
    one gets 400 + close."""
    m = molt()
    with m.raw_conn() as c:
        c.send(REQ + b"GET /hello HTTP/1.1\r\n" + H + b"X A: b\r\n\r\n")
        assert c.read_response().status == 200
        r = c.read_response()
        assert_core_error(r, 400)
        assert "close" in r.headers.get("connection", "").lower()
        assert c.is_closed()


def test_leading_empty_lines_are_skipped(molt):
    m = molt()
    with m.raw_conn() as c:
        c.send(b"\r\n\r\n" + REQ)
        assert c.read_response().status == 200


def test_absolute_form_target(molt):
    m = molt()
    with m.raw_conn() as c:
        c.send(b"GET http://t/echo/abs?z=1 HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        j = echo_json(r.body)
        assert j["path"] == "/echo/abs" and j["query"] == "z=1"


# ------------------------------------------------ the reply API, misused

MISUSE = DEFAULT_ROUTES + "\n[route /misuse]\nmodule = misuse\n"


def ask_on(c, target):
    c.send(b"GET " + target.encode() + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    return c.read_response()


def assert_next_request_is_answered(c):
    """The connection still frames: the next request gets its own reply."""
    r = ask_on(c, "/hello")
    assert r.status == 200 and r.body == b"hello, world\n", (r.status, r.body)


@pytest.mark.parametrize("how", ["reply", "stream", "file"])
@pytest.mark.parametrize("status", [100, 101, 199, 0, -5, 600, 999])
def test_module_status_outside_200_599_is_answered_500(molt, how, status):
    """An interim or impossible status from a module was sent as the final
    answer: "100 Continue" made the client take the next reply for this
    one, and 0 went out as a 500 without a length."""
    m = molt(conf=MISUSE, workers=1)
    m.expect_errors(r"molt_(reply|reply_file|stream_start): the reply")
    with m.raw_conn() as c:
        r = ask_on(c, "/misuse/%s?s=%d" % (how, status))
        assert r.status == 500, (r.status, r.reason, r.body)
        assert_next_request_is_answered(c)
    m.wait_log(r"the reply %d for /misuse/%s\S* is not a final status" % (status, how))


def test_stream_calls_without_a_stream_are_refused_and_said(molt):
    """molt_stream_write or _end on a request with no stream returned -1
    and said nothing, which reads as a client gone: a module that forgot
    molt_stream_start is told, and the request is still its to answer."""
    m = molt(conf=MISUSE, workers=1)
    m.expect_errors(r"module misuse: molt_stream_(write|end) on GET /misuse/")
    m.expect_errors(r"molt_stream_(write|end): the request is over")
    with m.raw_conn() as c:
        r = ask_on(c, "/misuse/nostart")
        assert r.status == 200 and r.body == b"wrote: -1 end: -1", r.body
        r = ask_on(c, "/misuse/nostart?after=1")
        assert r.status == 200 and r.body == b"plain\n", r.body
        assert_next_request_is_answered(c)
    for fn in ("write", "end"):
        m.wait_log(r"\[error\] \d+: module misuse: molt_stream_%s on GET "
                   r"/misuse/nostart, which has no stream \(molt_stream_start "
                   r"first\)$" % fn)
        # after a plain reply the request is no longer the module's
        m.wait_log(r"\[error\] \d+: molt_stream_%s: the request is over" % fn)


def test_module_content_type_cannot_split_the_response(molt):
    m = molt(conf=MISUSE, workers=1)
    m.expect_errors(r"molt_reply: the reply 200")
    for t in ("text/plain%0d%0aSet-Cookie:%20evil=1",
              "text/html%0d%0a%0d%0a<script>", "a%01b"):
        with m.raw_conn() as c:
            r = ask_on(c, "/misuse/reply?t=" + t)
            assert r.status == 500, (t, r.status, r.header_list)
            assert "set-cookie" not in r.headers and b"<script>" not in r.body
            assert_next_request_is_answered(c)
    with m.raw_conn() as c:
        r = ask_on(c, "/misuse/reply?t=text/plain;%09charset=utf-8")
        assert r.status == 200 and r.headers["content-type"] == "text/plain;\tcharset=utf-8"
        # an empty type is none, not "Content-Type: " (which names none)
        r = ask_on(c, "/misuse/reply?t=")
        assert r.status == 200 and r.body == b"body\n", r.header_list
        assert "content-type" not in r.headers, r.header_list


HANDLER_TIMEOUT = "handler_timeout = 500ms\naccess_log = @TMP@/access.log"
STREAMING = MISUSE     # DEFAULT_ROUTES has /stream


def test_a_deferred_reply_that_never_comes_is_504_after_handler_timeout(molt):
    """A handler that returned MOLT_PENDING and never answered held its
    client until a drain ended it.  After handler_timeout the client gets
    a 504 (nginx's answer for an upstream that says nothing), the module
    hears of it through on_abort, and the access log says 504."""
    m = molt(conf=STREAMING, workers=1, server_extra=HANDLER_TIMEOUT)
    with m.raw_conn(timeout=10) as c:
        t0 = time.monotonic()
        c.send(b"GET /stream/deferred?ms=4000 HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.read_response()
        took = time.monotonic() - t0
        assert r.status == 504 and b"did not answer in time" in r.body, r
        assert r.headers.get("connection") == "close", r.header_list
        assert 0.4 <= took < 3, took
        assert c.is_closed()
    m.wait_log(r"\[warn\] \d+: module stream did not answer GET "
               r"/stream/deferred\?ms=4000 from 127\.0\.0\.1:\d+ within "
               r"handler_timeout=0\.5s; answering 504")
    m.wait_log(r"stream aborted before its deferred")
    # a stream that began is the module's pace, and so is a quick answer
    with m.raw_conn(timeout=10) as c:
        c.send(b"GET /stream/chunks?n=4&size=10&delay_ms=300 HTTP/1.1\r\n"
               b"Host: t\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and len(r.body) == 40, r
        c.send(b"GET /stream/deferred?ms=200 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.read_response().status == 200
    time.sleep(4)        # the first timer is gone with its request
    assert m.get("/hello")[0] == 200
    m.stop(signal.SIGQUIT)
    codes = [l.split('"')[2].split()[0] for l in
             read_text(m.access_log).splitlines()]
    assert codes == ["504", "200", "200", "200"], codes


def test_handler_timeout_without_on_abort_keeps_the_late_answer_from_others(molt):
    """A module with no on_abort may answer after the 504, through the
    request it kept: the connection closes and the request stays the
    module's until then, so that answer is dropped and the next client,
    who may get the same memory, is not answered with it."""
    m = molt(conf=STREAMING, workers=1, server_extra=HANDLER_TIMEOUT)
    with m.raw_conn(timeout=10) as c:
        c.send(b"GET /misuse/keep?ms=1500 HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.read_response()
        assert r.status == 504, r
        assert c.is_closed()
    for _ in range(6):             # across the late answer
        with m.raw_conn(timeout=10) as c:
            c.send(b"GET /stream/deferred?ms=300 HTTP/1.1\r\nHost: t\r\n\r\n")
            r = c.read_response()
            assert r.status == 200 and r.body == b"deferred 300\n", r
    m.wait_log(r"misuse: late reply: -1")
    m.wait_log(r"\[warn\] \d+: module misuse holds GET /misuse/keep\?ms=1500, "
               r"whose handler_timeout passed, without an on_abort callback")


def test_module_log_line_cannot_be_forged_by_what_a_client_sent(molt):
    """molt_log wrote control bytes as they came: a client's %0A in a
    parameter a module logs forged a second log line, and %1B drove the
    terminal of whoever tailed the log.  They are written as \\xHH now."""
    m = molt(conf=MISUSE, workers=1)
    m.expect_errors(r"misuse: said")
    mark = m.mark()
    with m.raw_conn() as c:
        r = ask_on(c, "/misuse/log?m=x%0A2026-01-01%2000:00:00.000%20[error]"
                      "%201:%20FORGED%1b[31m%09tab%7f")
        assert r.status == 200
    line = m.wait_log(r"misuse: said .*", since=mark).group(0)
    assert line == ("misuse: said x\\x0a2026-01-01 00:00:00.000 [error] 1: "
                    "FORGED\\x1b[31m\ttab\\x7f"), line
    assert "FORGED" not in "".join(l for l in m.log(mark).splitlines()
                                   if "misuse: said" not in l)


def test_module_error_after_its_stream_began_sends_what_it_wrote_and_cuts(molt):
    """MOLT_ERROR from a handler whose stream had begun dropped the queued
    head and body with the connection: the client got an empty reply
    (which clients retry), the access log a 200, the error log nothing.
    What was written goes out now, without the last chunk, then the close;
    the error log names the module."""
    m = molt(conf=MISUSE, workers=1)
    m.expect_errors(r"module misuse returned MOLT_ERROR after starting")
    with m.raw_conn() as c:
        c.send(b"GET /misuse/stream?err=1 HTTP/1.1\r\nHost: t\r\n\r\n")
        raw = c.read_all(timeout=10)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), raw
    assert b"transfer-encoding: chunked" in head.lower(), raw
    assert body == b"3\r\nabc\r\n", raw          # no "0\r\n\r\n": cut short
    m.wait_log(r"\[error\] \d+: module misuse returned MOLT_ERROR after "
               r"starting its reply to GET /misuse/stream\?err=1; cutting the "
               r"reply short")
    assert m.get("/hello")[0] == 200


@pytest.mark.parametrize("args,why", [
    ("fd=-1&len=100000", "is not an open file"),
    ("path=/&len=10", "is not a regular file"),
    ("off=-1", "is smaller than the range asked for"),
    ("len=-1", "is smaller than the range asked for"),
    ("off=1&len=100000000", "is smaller than the range asked for"),
])
def test_module_file_reply_of_a_bad_descriptor_or_range_is_500(molt, args, why):
    """molt_reply_file with the -1 of an unchecked open(2) sent a 200 whose
    body was up to 98 kB of the worker's heap (the output queue takes fd -1
    for a memory segment); a directory, or a range the file does not hold,
    promised a length and cut the reply."""
    m = molt(conf=MISUSE, workers=1)
    m.expect_errors(r"molt_reply_file: the reply 200")
    with m.raw_conn() as c:
        r = ask_on(c, "/misuse/file?" + args)
        assert r.status == 500 and b"internal server error" in r.body, \
            (r.status, r.body[:200])
        assert_next_request_is_answered(c)
    m.wait_log(r"molt_reply_file: the reply 200 for GET /misuse/file\?%s: "
               r"fd -?\d+ .*%s" % (re.escape(args), re.escape(why)))
    with m.raw_conn() as c:
        r = ask_on(c, "/misuse/file?len=5")
        assert r.status == 200 and r.body == read_text("/etc/passwd")[:5].encode()


@pytest.mark.parametrize("how", ["stream", "file"])
@pytest.mark.parametrize("status", [204, 304])
def test_bodiless_status_sends_no_body(molt, how, status):
    """A 204 or 304 started as a stream or a file went out with chunked
    coding or a length and the body: the bytes ran into the next reply."""
    m = molt(conf=MISUSE, workers=1)
    with m.raw_conn() as c:
        r = ask_on(c, "/misuse/%s?s=%d" % (how, status))
        assert r.status == status and r.body == b""
        names = [n for n, _ in r.header_list]
        assert "transfer-encoding" not in names and "content-length" not in names, names
        assert_next_request_is_answered(c)


@pytest.mark.parametrize("name,value,want", [
    ("Content-Length", "0", -1),
    ("content-length", "99", -1),
    ("Transfer-Encoding", "chunked", -1),
    ("Connection", "keep-alive", -1),
    ("Date", "yesterday", -1),
    ("Server", "other", -1),
    ("Content-Type", "text/evil", -1),
    ("content-type", "text/html", -1),
    ("X-Ok", "fine, really", 0),
    ("X-Tab", "a\tb", 0),
    ("X-Ctl", "a\x01b", -1),
    ("X-Del", "a\x7fb", -1),
    ("Bad Name", "v", -1),
    ("Bad(Name)", "v", -1),
    ("", "v", -1),
])
def test_module_headers_cannot_frame_the_reply(molt, name, value, want):
    m = molt(conf=MISUSE, workers=1)
    if want == -1:
        m.expect_errors(r"refusing (invalid )?response header")
    q = "/misuse/header?n=%s&v=%s" % (
        "".join("%%%02X" % ord(ch) for ch in name),
        "".join("%%%02X" % ord(ch) for ch in value))
    with m.raw_conn() as c:
        r = ask_on(c, q)
        assert r.status == 200 and r.body == str(want).encode(), (r.body, r.header_list)
        names = [n for n, _ in r.header_list]
        for one in ("content-length", "content-type", "date", "server"):
            assert names.count(one) == 1, r.header_list
        assert "transfer-encoding" not in names and "connection" not in names
        if want == 0:
            assert (name.lower(), value) in r.header_list
        assert_next_request_is_answered(c)


def test_module_connection_close_header_closes_the_connection(molt):
    m = molt(conf=MISUSE, workers=1)
    with m.raw_conn() as c:
        r = ask_on(c, "/misuse/header?n=Connection&v=close")
        assert r.status == 200 and r.body == b"0"
        assert r.headers.get("connection") == "close", r.header_list
        assert c.is_closed()


@pytest.mark.parametrize("then", ["half-request", "idle", "deferred"])
def test_kept_request_pointer_cannot_answer_another_client(molt, then):
    """A module that keeps a request pointer and registers no abort
    callback replies through it later, after its client left.  The
    request lived inside its connection, which a new client reused: the
    late reply went to that client, to a request it had not even finished
    sending, or to another module's deferred one.  The connection of a
    request a module holds is now kept until the module answers, which is
    dropped, and the new client is served normally."""
    m = molt(conf=MISUSE, workers=1)
    m.expect_errors(r"molt_reply: the request is over")
    mark = m.mark()
    a = m.raw_conn()
    a.send(b"GET /misuse/keep?ms=600 HTTP/1.1\r\nHost: t\r\n\r\n")
    time.sleep(0.2)
    a.close()
    time.sleep(0.1)
    with m.raw_conn() as b:
        if then == "idle":
            assert_next_request_is_answered(b)
        elif then == "deferred":
            b.send(b"GET /stream/deferred?ms=1500 HTTP/1.1\r\nHost: t\r\n\r\n")
        else:
            b.send(b"GET /hel")
        m.wait_log(r"misuse: late reply: -?\d+", since=mark)
        assert "misuse: late reply: -1" in m.log(mark)
        m.wait_log(r"\[warn\] \d+: module misuse holds GET /misuse/keep\?ms=600, "
                   r"whose client left, without an on_abort callback", since=mark)
        if then == "deferred":
            r = b.read_response()
            assert r.status == 200 and r.body == b"deferred 1500\n", r.body
        if then == "half-request":
            b.send(b"lo HTTP/1.1\r\nHost: t\r\n\r\n")
            r = b.read_response()
            assert r.status == 200 and r.body == b"hello, world\n", r.body
        assert_next_request_is_answered(b)
        assert b"LATE" not in b.buf


def test_stream_that_ignores_molt_again_is_cut_off(molt):
    """A module that writes on after MOLT_AGAIN to a client that does not
    read made the worker buffer all of it (328 MB in the helper's run).
    Past a bound the reply is cut off and the module's writes fail."""
    m = molt(conf=MISUSE, workers=1)
    m.expect_errors(r"module misuse wrote on after MOLT_AGAIN")
    mark = m.mark()
    c = m.raw_conn(timeout=30)
    c.send(b"GET /misuse/flood?mb=64 HTTP/1.1\r\nHost: t\r\n\r\n")
    taken = int(m.wait_log(r"misuse: flood: (\d+) kB taken", since=mark).group(1))
    # what the two socket buffers hold, plus the bound, plus one write
    assert taken < 16 * 1024, taken
    m.wait_log(r"\[error\] \d+: module misuse wrote on after MOLT_AGAIN "
               r"\(\d+ bytes queued\) for GET /misuse/flood\?mb=64; cutting", since=mark)
    body = c.read_all(timeout=20)   # a cut-off transfer, then the close
    assert not body.endswith(b"0\r\n\r\n")
    # The client is still there: the line must not say it left.
    m.wait_log(r"\[warn\] \d+: module misuse holds GET /misuse/flood\?mb=64, "
               r"whose stream was cut off, without an on_abort callback", since=mark)
    with m.raw_conn() as d:
        assert_next_request_is_answered(d)
