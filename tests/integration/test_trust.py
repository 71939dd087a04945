"""
The master's trust boundary: everything a worker can write (its scoreboard
slot, the scoreboard header, the notify pipe) is untrusted input to the
master and to the status page the other workers serve.  The scribble test
module writes garbage there the way a module with a stray pointer would.
"""

import json
import signal
import time

from conftest import wait_for

ROUTES = """\
[route /hello]
module = hello

[route /s]
module = scribble

[route /crash]
module = crash

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


def test_scribbled_slots_hi_does_not_crash_the_master(molt):
    """slots_hi is in the header every worker can write; the master must
    not index its own table with it at the next reap."""
    m = molt(conf=ROUTES, workers=2)
    m.expect_errors(r"killed by signal 11")
    with m.raw_conn() as c:
        ask(c, "/s/hdr?slots_hi=2000000000")
        c.send(GET % b"/crash/segv")
        assert c.read_all() == b""
    m.wait_log(r"killed by signal 11 \(SIGSEGV\)")
    wait_for(lambda: len(m.worker_pids()) == 2, 10, what="the respawn")
    assert m.running(), "the master died"
    assert m.get("/hello")[0] == 200
