"""
The master's trust boundary: everything a worker can write (its scoreboard
slot, the scoreboard header, the notify pipe) is untrusted input to the
master and to the status page the other workers serve.  The scribble test
module writes garbage there the way a module with a stray pointer would.
"""

import json
import signal
import time

from conftest import DEFAULT_ROUTES, wait_for

ROUTES = DEFAULT_ROUTES + """
[route /s]
module = scribble

[route /leak]
module = leak

[status]
path = /molt/status
"""

GET = b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n"


def ask(c, path):
    c.send(GET % path.encode())
    r = c.read_response()
    assert r.status == 200, (path, r)
    return r.body


def page_after(m, paths):
    """The status page, asked for on one connection after paths."""
    with m.raw_conn() as c:
        for p in paths:
            ask(c, p)
        c.send(GET % b"/molt/status")
        r = c.read_response()
    assert r.status == 200, r
    return json.loads(r.body)


def route_requests(js, prefix):
    return sum(r["requests"] for r in js["routes"] if r["prefix"] == prefix)


def test_a_stray_write_into_the_header_faults_in_its_worker(molt):
    """The header was writable by every worker: a stray write of slots_hi
    had the master index its own table out of bounds at the next reap, one
    of its sequence odd kept every status page waiting.  The workers can
    only read it now (the master writes the route names there): the write
    faults in the module's own worker, and the rest goes on."""
    m = molt(conf=ROUTES, workers=2)
    m.expect_errors(r"killed by signal 11")
    for scribble in ("slots_hi=2000000000", "seq=7"):
        mark = m.mark()
        with m.raw_conn() as c:
            c.send(GET % ("/s/hdr?" + scribble).encode())
            assert c.read_all() == b"", scribble
        m.wait_log(r"killed by signal 11 \(SIGSEGV\): reason=crash while "
                   r"serving \"GET /s/hdr\?%s\" in module scribble" % scribble,
                   since=mark)
        wait_for(lambda: len(m.worker_pids()) == 2, 10, what="the respawn")
    assert m.running(), "the master died"
    js = page_after(m, ["/hello"] * 3)
    assert route_requests(js, "/hello") == 3, js["routes"]
    assert {"/hello", "/s", "/leak", "/molt/status"} <= \
        {r["prefix"] for r in js["routes"]}, js["routes"]


def test_torn_slot_does_not_exempt_a_worker_from_hard_max_rss(molt):
    """A worker half whose sequence counter a stray write left odd never
    reads consistently; the memory limits rest on the master's own measure
    and must still hold."""
    m = molt(conf=ROUTES + "\n[recycle]\nsample_interval = 100ms\n"
             "hard_max_rss = 64M\n", workers=1)
    m.expect_errors(r"killed: reason=hard_rss")
    with m.raw_conn(timeout=30) as c:
        ask(c, "/s/w?torn=1")
        # 32 MB a request, until the master kills the worker (it may do so
        # in the middle of one): 8 of them are four times the limit.
        for _ in range(8):
            c.send(GET % b"/leak?bytes=33554432")
            try:
                c.read_response()
            except AssertionError:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the worker over hard_max_rss lives on")
    m.wait_log(r"\[error\] \d+: worker 0 pid \d+ killed: reason=hard_rss "
               r"uss=[\d.]+ MB > hard_max_rss=64\.0 MB")


def test_status_page_stays_json_whatever_a_slot_holds(molt):
    """Another worker's slot is read by whichever worker serves the status
    page: a heap figure that wraps the fragmentation's divisor to 0 must not
    print "inf", nor a start time before the epoch overflow the age."""
    m = molt(conf=ROUTES + "\n[recycle]\nsample_interval = 100ms\n", workers=1)
    wait_for(lambda: json.loads(m.get("/molt/status")[2])["workers"][0]["uss"] > 0,
             10, what="a first sample")
    with m.raw_conn() as c:
        # One send, so both run in one turn of the worker's loop, before its
        # own sample timer writes real figures back.
        c.send(GET % b"/s/w?heap_in_use=0xffffffffffffffff&conn_memory=1"
               b"&start_ms=-9223372036854775807" + GET % b"/molt/status")
        assert c.read_response().status == 200
        r = c.read_response()
    assert r.status == 200, r
    js = json.loads(r.body)
    w = js["workers"][0]
    assert w["heap_in_use"] == 2 ** 64 - 1, w
    assert w["fragmentation"] == 0 and w["age_s"] == 0, w


def test_request_line_of_a_dead_worker_cannot_forge_a_log_line(molt):
    """The master names the request a dead worker was serving from the
    worker's slot: a newline there must not start a line of its own in
    the master's error log, nor a quote end the field."""
    m = molt(conf=ROUTES, workers=1)
    m.expect_errors(r"killed by signal 9")
    forged = b'GET /x"\n2026-01-01 00:00:00.000 [info] 1: forged by a worker'
    with m.raw_conn() as c:
        c.send(GET % ("/s/line?die=1&hex=" + forged.hex()).encode())
        assert c.read_all() == b""
    k = m.wait_log(r"killed by signal 9 \(SIGKILL\): reason=crash while serving \"(.*)\"")
    # what follows is the rest of the worker's own request line
    assert k.group(1).startswith('GET /x\\x22\\x0A2026-01-01 00:00:00.000 '
                                 '[info] 1: forged by a worker'), k.group(0)
    assert not any(l.startswith("2026-01-01") for l in m.log().splitlines())
    wait_for(lambda: len(m.worker_pids()) == 1, 10, what="the respawn")


def test_torn_slot_does_not_exempt_a_worker_from_stall_timeout(molt):
    """A worker writes its half of the slot in a few instructions; one
    that stays torn for stall_timeout cannot be watched (its beat is
    unreadable) and is killed as stalled, not left alone for good."""
    m = molt(conf=ROUTES + "\n[recycle]\nsample_interval = 100ms\n"
             "stall_timeout = 1s\n", workers=1)
    m.expect_errors(r"killed: reason=stall")
    pid = m.worker_pids()[0]
    mark = m.mark()
    with m.raw_conn() as c:
        ask(c, "/s/w?torn=1")
    k = m.wait_log(r"\[error\] \d+: worker 0 pid %d killed: reason=stall slot "
                   r"unreadable for (\d+\.\d+)s > stall_timeout=1\.0s" % pid,
                   since=mark)
    assert 1.0 < float(k.group(1)) < 10, k.group(0)
    wait_for(lambda: [p for p in m.worker_pids() if p != pid], 10,
             what="the replacement")
    assert m.get("/hello")[0] == 200


def test_requests_all_time_counts_a_worker_whose_slot_reads_torn(molt):
    """A worker preempted while it writes its slot leaves the slot's
    sequence odd for a scheduler slice; the fleet's request count must still
    count its requests, or the counter goes down by a worker's worth and
    back up (a reset, to Prometheus).  A slot left torn stands in for the
    preempted writer."""
    m = molt(conf=ROUTES, workers=1)
    js = page_after(m, ["/hello"] * 5 + ["/s/w?torn=1"])
    # the five, the scribble; the page itself is counted when it is done
    assert js["totals"]["requests_all_time"] == 6, js["totals"]
    assert route_requests(js, "/hello") == 5, js["routes"]


def test_status_page_waits_for_a_slot_held_mid_update(molt):
    """A worker preempted in the middle of updating its slot holds the
    slot's sequence odd for a scheduler slice.  The page another worker
    serves meanwhile must wait for it rather than show the fleet a worker
    short.  The scribble module holds a slot torn, and lets go 20 ms after
    the page was asked for."""
    m = molt(conf=ROUTES, workers=2)
    conns = []
    try:
        by_slot = {}
        for _ in range(50):
            c = m.raw_conn()
            conns.append(c)
            by_slot.setdefault(ask(c, "/s/slot"), c)
            if len(by_slot) == 2:
                break
        assert len(by_slot) == 2, "every connection went to one worker"
        held, other = by_slot.values()
        ask(held, "/s/w?torn=1")
        other.send(GET % b"/molt/status")
        time.sleep(0.02)
        ask(held, "/s/w")
        r = other.read_response()
    finally:
        for c in conns:
            c.close()
    assert r.status == 200, r
    js = json.loads(r.body)
    assert js["totals"]["workers"] == 2, js["workers"]
    assert len(js["workers"]) == 2, js["workers"]


def test_a_stray_write_into_another_workers_slot_faults_in_its_own(molt):
    """Every worker could write every slot: one module's stray write of a
    stale heartbeat or a wrong pid into another worker's slot got that
    healthy worker killed as stalled, with what it had in flight.  The
    other slots are read-only in each worker: the write faults in the
    module's own worker, which the master reports as a crash in it."""
    m = molt(conf=ROUTES + "\n[recycle]\nmin_lifetime = 0\n"
             "sample_interval = 100ms\nstall_timeout = 1s\n", workers=2)
    m.expect_errors(r"killed by signal 11 \(SIGSEGV\)")
    conns, slots = {}, {}
    deadline = time.monotonic() + 10
    while len(conns) < 2:
        assert time.monotonic() < deadline, "no connection to each worker"
        c = m.raw_conn()
        pid = int(ask(c, "/stream/pid"))
        if pid in conns:
            c.close()
            continue
        conns[pid] = c
        slots[pid] = int(ask(c, "/s/slot"))
    (a, ca), (b, cb) = conns.items()
    # b has a long request in flight, which a kill of b would lose
    cb.send(GET % b"/stream/deferred?ms=2500")
    for field in ("beat_ms=1", "pid=1"):
        ca.send(GET % ("/s/w?slot=%d&%s" % (slots[b], field)).encode())
        try:
            r = ca.read_response()
            raise AssertionError("the stray write went through: %r" % r)
        except AssertionError as e:
            assert "connection closed" in str(e), e
        ca.close()
        m.wait_log(r"worker \d+ pid %d killed by signal 11 \(SIGSEGV\)"
                   r".* in module scribble" % a)
        a = wait_for(lambda: [p for p in m.worker_pids() if p != b], 10,
                     what="a replacement")[0]
        ca = m.raw_conn()
        while int(ask(ca, "/stream/pid")) != a:
            ca.close()
            ca = m.raw_conn()
    r = cb.read_response()
    assert (r.status, r.body) == (200, b"deferred 2500\n"), r
    time.sleep(1.5)          # past stall_timeout
    assert b in m.worker_pids()
    assert "stall" not in m.log(), m.log()
    ca.close()
    cb.close()
