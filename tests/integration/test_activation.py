"""
Socket activation: molt takes the listening sockets systemd passes
(LISTEN_PID, LISTEN_FDS, fds 3, 4, ...) in place of binding the addresses
its listen lines name.  The harness plays systemd: it binds the sockets,
keeps them across molt's restarts and passes them the same way
(conftest.SOCKET_ACTIVATE).
"""
import os
import re
import signal
import socket

from conftest import DEFAULT_ROUTES, RawConn

GET = b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n"


def tcp_listener():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    return s


def unix_listener(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(128)
    return s


def hello(**where):
    with RawConn(timeout=10, **where) as c:
        c.send(GET % b"/hello")
        r = c.read_response()
        assert r.status == 200 and r.body == b"hello, world\n", r


def test_serves_on_the_sockets_systemd_passed(molt, tmp_path):
    """Both a TCP and a unix socket are taken, not bound again; nothing
    molt starts sees the variables meant for the master; a reload keeps
    them; and at the stop the unix socket's file stays, for systemd's
    next start."""
    tcp = tcp_listener()
    port = tcp.getsockname()[1]
    path = str(tmp_path / "molt.sock")
    unix = unix_listener(path)
    m = molt(listen=("127.0.0.1:%d" % port, "unix:" + path),
             inherit=(tcp, unix))
    log = m.log()
    assert "listening on 127.0.0.1:%d (from systemd)" % port in log, log
    assert "listening on unix:%s (from systemd)" % path in log, log
    hello(port=port)
    hello(unix=path)

    m.write_conf(DEFAULT_ROUTES)
    mark = m.mark()
    m.signal(signal.SIGHUP)
    m.wait_ready(since=mark)
    m.wait_log(r"listening on 127\.0\.0\.1:%d \(from systemd\)" % port,
               since=mark)
    hello(port=port)
    hello(unix=path)

    m.stop()
    assert os.path.exists(path), "molt removed systemd's socket file"
    # still systemd's: a client connects, and waits for the next molt
    with RawConn(unix=path, timeout=5) as c:
        c.send(GET % b"/hello")
    tcp.close()
    unix.close()


def test_restart_refuses_no_connection(molt):
    """What socket activation is for: between one molt and the next the
    socket stays open, so a client that comes in between is not refused;
    its request waits in the backlog, and the next molt answers it."""
    tcp = tcp_listener()
    port = tcp.getsockname()[1]
    listen = ("127.0.0.1:%d" % port,)
    a = molt(listen=listen, inherit=(tcp,))
    hello(port=port)
    a.stop(signal.SIGQUIT)
    assert a.returncode == 0, a.log()

    early = RawConn(port=port, timeout=15)       # nobody serves: it waits
    early.send(GET % b"/hello")
    b = molt(listen=listen, inherit=(tcp,))
    r = early.read_response()
    assert r.status == 200 and r.body == b"hello, world\n", r
    early.close()
    hello(port=port)
    b.stop()
    tcp.close()


def test_a_passed_socket_no_listen_line_names_is_refused(molt):
    """systemd's .socket and molt.conf disagree: molt says which address
    it was given and which file has no listen line for it, and does not
    start."""
    tcp = tcp_listener()
    port = tcp.getsockname()[1]
    m = molt(listen=("127.0.0.1:0",), inherit=(tcp,), wait=False)
    m.expect_errors(r"socket activation")
    assert m.wait_exit() == 1, m.log()
    assert re.search(r"\[error\] \d+: socket activation: systemd passed "
                     r"127\.0\.0\.1:%d \(fd 3\), which no listen line of "
                     r"%s names$" % (port, re.escape(m.conf_path)),
                     m.log(), re.M), m.log()
    assert "listening on" not in m.log()
    tcp.close()


def test_a_passed_fd_that_is_not_a_listening_socket_is_refused(molt):
    """A ListenDatagram= socket, or one not listening, cannot be accepted
    on: molt refuses to start and names the fd."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    m = molt(inherit=(udp,), wait=False)
    m.expect_errors(r"socket activation")
    assert m.wait_exit() == 1, m.log()
    assert re.search(r"\[error\] \d+: socket activation: fd 3 is not a "
                     r"listening socket", m.log()), m.log()
    udp.close()


def test_variables_for_another_process_are_left_alone(molt, monkeypatch):
    """LISTEN_PID names the process the sockets were passed to; in a
    process that inherited the variables from it they mean nothing: molt
    binds its addresses itself and leaves fd 3 alone."""
    monkeypatch.setenv("LISTEN_PID", "1")
    monkeypatch.setenv("LISTEN_FDS", "1")
    m = molt()
    assert m.get("/hello")[0] == 200
    assert "from systemd" not in m.log()
    assert "socket activation" not in m.log()
