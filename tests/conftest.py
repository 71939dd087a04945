"""
Integration-test harness for molt.

Every test talks to a real molt process on a real socket.  The `molt`
fixture is a factory:

    def test_x(molt):
        m = molt(conf=ROUTES, workers=2, server_extra="header_timeout = 1s")
        status, headers, body = m.get("/hello")

It writes a temp config into a per-instance temp dir, starts
`$MOLT_BIN -c CONF` in the foreground, waits (bounded) for the listening
line and for `workers` "worker N ready" lines, and returns a Molt object.
At teardown molt is stopped and the test FAILS if the error log holds
`[error]` lines that the test did not declare with m.expect_errors(regex),
or any sanitizer report.

Other helpers here (RawConn, run_molt, wait_for, proc_* functions) are
plain functions and classes: import them with `from conftest import ...`.

Environment (set by `make check`; defaults work for an in-tree build):
  MOLT_BUILD_DIR, MOLT_SRC_DIR, MOLT_BIN, MOLT_MODULES_DIR,
  MOLT_TEST_MODULES_DIR
"""

import http.client
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time

import pytest

# --------------------------------------------------------------- environment

SRC_DIR = os.path.abspath(os.environ.get(
    "MOLT_SRC_DIR", os.path.join(os.path.dirname(__file__), "..")))
BUILD_DIR = os.path.abspath(os.environ.get("MOLT_BUILD_DIR", SRC_DIR))
MOLT_BIN = os.environ.get("MOLT_BIN", os.path.join(BUILD_DIR, "molt"))


def _sanitized():
    try:
        with open(MOLT_BIN, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


# An ASan build: its allocator is invisible to mallinfo2, ignores
# malloc_trim and keeps freed memory in quarantine.
SANITIZED = _sanitized()
MODULES_DIR = os.environ.get(
    "MOLT_MODULES_DIR", os.path.join(BUILD_DIR, "modules", ".libs"))
TEST_MODULES_DIR = os.environ.get(
    "MOLT_TEST_MODULES_DIR", os.path.join(BUILD_DIR, "tests", "modules", ".libs"))

START_TIMEOUT = float(os.environ.get("MOLT_TEST_START_TIMEOUT", "10"))
STOP_TIMEOUT = 10.0

# Routes most tests use.  Test modules: see doc/CONTRACT.md.
DEFAULT_ROUTES = """\
[route /hello]
module = hello

[route /echo]
module = echo

[route /stream]
module = stream

[route /crash]
module = crash
"""

SANITIZER_RE = re.compile(
    r"ERROR: AddressSanitizer|runtime error:|LeakSanitizer|"
    r"ERROR: UndefinedBehaviorSanitizer|WARNING: ThreadSanitizer")

LOG_LINE_RE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \[(error|warn|info|debug)\] \d+: ")


# Deliberate crashes (the crash test module) must reach molt as real
# signals even in an ASan build, so ASan must not catch SEGV/ABRT itself; a
# real crash still fails a test through its unexpected "[error] ... killed
# by signal" line.  The caller's own ASAN_OPTIONS come last and win.
# Runs argv[2:] with the sockets whose fds argv[1] lists (comma-separated)
# as fds 3, 4, ... and LISTEN_PID and LISTEN_FDS set for it: what systemd
# does for a service with a .socket unit (sd_listen_fds(3)).
SOCKET_ACTIVATE = """
import fcntl, os, sys
fds = [int(f) for f in sys.argv[1].split(",")]
# out of the way of 3, 4, ... first, so that no dup2 overwrites another
high = [fcntl.fcntl(f, fcntl.F_DUPFD_CLOEXEC, 100) for f in fds]
for f in fds:
    os.close(f)
for i, f in enumerate(high):
    os.dup2(f, 3 + i, inheritable=True)
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = str(len(fds))
os.execv(sys.argv[2], sys.argv[2:])
"""


def molt_env():
    env = dict(os.environ)
    asan = "handle_segv=0:handle_sigbus=0:handle_abort=0"
    if env.get("ASAN_OPTIONS"):
        asan += ":" + env["ASAN_OPTIONS"]
    env["ASAN_OPTIONS"] = asan
    return env


# ------------------------------------------------------------------ helpers

def wait_for(pred, timeout, interval=0.05, what="condition"):
    """Poll pred() until it returns something truthy; return that value.
    Raises AssertionError after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s"
                                 % (timeout, what))
        time.sleep(interval)


# The warning molt logs when root starts it without [server] user, as
# most tests do when the suite runs as root: expected there, not a sign
# of trouble in a test that wants a log free of warnings.
ROOT_WARNING_RE = re.compile(
    r"^.*\[warn\] \d+: started as root and \[server\] user is not set.*\n?",
    re.M)


def without_root_warning(log):
    return ROOT_WARNING_RE.sub("", log)


def read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def proc_stat(pid):
    """(state, ppid, pgrp, session) of a process, or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode("utf-8", "replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    rest = data[data.rindex(")") + 2:].split()
    return rest[0], int(rest[1]), int(rest[2]), int(rest[3])


def pid_alive(pid):
    """True if pid exists and is not a zombie."""
    st = proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def children_of(ppid):
    """Live (non-zombie) child pids of ppid, sorted."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = proc_stat(int(name))
        if st and st[1] == ppid and st[0] not in ("Z", "X"):
            out.append(int(name))
    return sorted(out)


def has_ipv6_loopback():
    """Whether ::1 can be bound here (containers often have no IPv6)."""
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def lowest_free_fd(pid):
    """The number process pid's next descriptor would get.  An
    RLIMIT_NOFILE of it makes the next open fail with EMFILE; the count
    of its descriptors does not when the table has a hole below it."""
    def lowest():
        used = set(int(n) for n in os.listdir("/proc/%d/fd" % pid))
        n = 0
        while n in used:
            n += 1
        return n
    # A connection the process is closing just now would free a lower one.
    n = lowest()
    for _ in range(20):
        time.sleep(0.1)
        if lowest() == n:
            break
        n = lowest()
    return n


def proc_status(pid):
    """/proc/PID/status as a dict of str -> str."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def proc_rss_kb(pid):
    try:
        return int(proc_status(pid).get("VmRSS", "0 kB").split()[0])
    except FileNotFoundError:
        return 0


def run_molt(args, timeout=30, cwd=None, env=None):
    """Run the molt binary to completion: CompletedProcess (text mode)."""
    return subprocess.run([MOLT_BIN] + list(args), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, cwd=cwd, env=env or molt_env(),
                          universal_newlines=True, errors="replace")


def line_of(text, needle, start=1):
    """1-based number of the first line (from line `start` on) containing
    needle."""
    for i, line in enumerate(text.split("\n"), 1):
        if i >= start and needle in line:
            return i
    raise AssertionError("%r not in config text" % needle)


def server_section(tmp, workers=2, server_extra="", error_log=True,
                   listen=("127.0.0.1:0",), log_level="info"):
    lines = ["[server]"]
    for l in listen:
        lines.append("listen = %s" % l)
    if workers is not None:
        lines.append("workers = %d" % workers)
    lines.append("modules_dir = %s:%s" % (MODULES_DIR, TEST_MODULES_DIR))
    if error_log:
        lines.append("error_log = %s" % os.path.join(tmp, "error.log"))
    if log_level:
        lines.append("log_level = %s" % log_level)
    lines.append("pid_file = %s" % os.path.join(tmp, "molt.pid"))
    if server_extra:
        lines.append(server_extra.strip("\n"))
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------ raw HTTP client

class RawConn:
    """A plain TCP (or unix) socket that speaks bytes, plus a small, strict
    HTTP/1.1 response reader, for the things http.client hides."""

    def __init__(self, port=None, host="127.0.0.1", timeout=10.0, unix=None):
        if unix:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(unix)
        else:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.eof = False
        self.timeout = timeout

    def send(self, data):
        """sendall; a reset or broken pipe (the server refused early and
        closed) is not an error here: return False."""
        try:
            self.sock.sendall(data)
            return True
        except (ConnectionResetError, BrokenPipeError):
            return False

    def _recv(self, timeout=None):
        """One read: the bytes, or b"" at EOF or reset."""
        if self.eof:
            return b""
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
        return data

    def _fill(self, timeout=None):
        """Read once into buf; False at EOF or reset."""
        data = self._recv(timeout)
        self.buf += data
        return bool(data)

    def _need(self, n):
        # Joined once at the end: appending each read to a growing bytes
        # object is quadratic, minutes for a 64 MiB body on a slow machine.
        parts, have = [self.buf], len(self.buf)
        while have < n:
            data = self._recv()
            if not data:
                self.buf = b"".join(parts)
                raise AssertionError("connection closed after %d of %d bytes; got %r"
                                     % (have, n, self.buf[:300]))
            parts.append(data)
            have += len(data)
        self.buf = b"".join(parts)

    def _line(self):
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise AssertionError("connection closed mid-line: %r" % self.buf[:300])
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_head(self):
        """Status line and headers: (status, reason, [(name_lower, value)])."""
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise AssertionError("connection closed before a full response head; got %r"
                                     % self.buf[:500])
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        m = re.match(rb"^HTTP/1\.[01] (\d{3}) ?(.*)$", lines[0])
        assert m, "bad status line %r" % lines[0]
        headers = []
        for l in lines[1:]:
            name, sep, value = l.partition(b":")
            assert sep and re.match(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", name), \
                "bad response header line %r" % l
            headers.append((name.decode().lower(), value.strip().decode("latin-1")))
        return int(m.group(1)), m.group(2).decode("latin-1"), headers

    def read_response(self, method="GET"):
        """One whole response.  Skips nothing: a 1xx comes back as itself.
        Returns Response(status, reason, headers, body, chunked)."""
        status, reason, hl = self.read_head()
        h = {}
        for k, v in hl:
            h[k] = (h[k] + ", " + v) if k in h else v
        body = b""
        parts = []
        chunked = False
        te = h.get("transfer-encoding", "").lower()
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            pass
        elif te:
            assert te == "chunked", "unexpected transfer-encoding %r" % te
            assert "content-length" not in h, "both TE and CL in a response"
            chunked = True
            while True:
                line = self._line()
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self._line() != b"":   # trailers
                        pass
                    break
                self._need(size + 2)
                parts.append(self.buf[:size])
                assert self.buf[size:size + 2] == b"\r\n", "chunk not followed by CRLF"
                self.buf = self.buf[size + 2:]
            body = b"".join(parts)
        elif "content-length" in h:
            n = int(h["content-length"])
            self._need(n)
            body, self.buf = self.buf[:n], self.buf[n:]
        else:
            parts = [self.buf]
            while True:
                data = self._recv()
                if not data:
                    break
                parts.append(data)
            body, self.buf = b"".join(parts), b""
        return Response(status, reason, h, body, chunked, hl)

    def read_all(self, timeout=None):
        """Everything until the server closes.  AssertionError if it does not
        close within the timeout."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        parts = [self.buf]
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("server did not close the connection; got %r"
                                     % b"".join(parts)[:500])
            try:
                data = self._recv(timeout=left)
            except socket.timeout:
                raise AssertionError("server did not close the connection; got %r"
                                     % b"".join(parts)[:500])
            if not data:
                break
            parts.append(data)
        self.buf = b""
        return b"".join(parts)

    def is_closed(self, timeout=5.0):
        """True if the server closes (EOF/reset) within timeout with no more
        data; raises if it sends data instead."""
        if self.buf:
            raise AssertionError("unexpected extra bytes %r" % self.buf[:300])
        try:
            if self._fill(timeout=timeout):
                raise AssertionError("unexpected extra bytes %r" % self.buf[:300])
            return True
        except socket.timeout:
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


class Response:
    def __init__(self, status, reason, headers, body, chunked, header_list):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.chunked = chunked
        self.header_list = header_list

    def __repr__(self):
        return "<Response %d %r %r>" % (self.status, self.headers, self.body[:200])


# ------------------------------------------------------------------ Molt

class Molt:
    """One running molt master (foreground child, or a daemon by pid)."""

    def __init__(self, tmp, conf_path, conf_text, workers):
        self.tmp = tmp
        self.conf_path = conf_path
        self.conf_text = conf_text
        self.workers = workers
        self.error_log = os.path.join(tmp, "error.log")
        self.stderr_path = os.path.join(tmp, "stderr.log")
        self.access_log = os.path.join(tmp, "access.log")
        self.pid_file = os.path.join(tmp, "molt.pid")
        self.proc = None
        self.pid = None
        self.port = None
        self.listens = []
        self.expected_errors = []
        self.stopped = False
        self.returncode = None

    # ------------------------------------------------------------ process
    def start(self, wait=True, args=(), daemon=False, binary=None,
              inherit=(), wrapper=()):
        """Start molt -c CONF [args].  With daemon, run it with -d: the
        launcher must exit 0, and the master's pid comes from the pid file.
        inherit: sockets to pass as systemd's socket activation does.
        wrapper: a command that sets something up and execs the rest."""
        self._stderr_f = open(self.stderr_path, "ab")
        argv = list(wrapper) + [binary or MOLT_BIN, "-c", self.conf_path] + list(args)
        if daemon:
            argv.append("-d")
        fds = [s.fileno() for s in inherit]
        if fds:
            argv = [sys.executable, "-c", SOCKET_ACTIVATE,
                    ",".join(map(str, fds))] + argv
        p = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._stderr_f,
            stderr=self._stderr_f, cwd=self.tmp, start_new_session=True,
            env=molt_env(), pass_fds=fds)
        if daemon:
            try:
                rc = p.wait(START_TIMEOUT)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                raise AssertionError("molt -d did not return within %.0fs" % START_TIMEOUT)
            assert rc == 0, "molt -d exited %d:\n%s" % (rc, self.log())

            def pid_from_file():
                try:
                    return int(read_text(self.pid_file).strip() or "0")
                except ValueError:
                    return 0
            self.pid = wait_for(pid_from_file, START_TIMEOUT, what="the pid file")
            self.daemon_launcher = p
        else:
            self.proc = p
            self.pid = p.pid
        if wait:
            self.wait_ready()
        return self

    def running(self):
        if self.proc is not None:
            return self.proc.poll() is None
        return self.pid is not None and pid_alive(self.pid)

    def write_conf(self, conf, server_extra=""):
        """Rewrite the config file (same [server] basics) for a reload.  The
        listen lines name the ports molt actually bound, as a real config
        would."""
        tcp = [l for l in self.listens if not l.startswith("unix:")]
        listen = [tcp.pop(0) if (l.endswith(":0") and tcp) else l
                  for l in self.listen_conf]
        text = server_section(self.tmp, self.workers_conf, server_extra.replace("@TMP@", self.tmp),
                              self.error_log_conf, listen, self.log_level_conf)
        if conf:
            text += "\n" + conf.replace("@TMP@", self.tmp)
        with open(self.conf_path + ".new", "w") as f:
            f.write(text)
        os.rename(self.conf_path + ".new", self.conf_path)
        self.conf_text = text
        return text

    def wait_listening(self, timeout=START_TIMEOUT):
        def listening():
            if not self.running():
                raise AssertionError("molt exited (rc %r) before listening:\n%s"
                                     % (self.proc and self.proc.returncode, self.log()))
            return re.findall(r"listening on (\S+)", self.log())
        try:
            self.listens = wait_for(listening, timeout, what="listening line")
        except AssertionError as e:
            raise AssertionError("%s\n--- log ---\n%s" % (e, self.log()))
        for l in self.listens:
            m = re.match(r"^127\.0\.0\.1:(\d+)$", l)
            if m:
                self.port = int(m.group(1))
                break
        return self.listens

    def wait_ready(self, n=None, timeout=START_TIMEOUT, since=None):
        """Wait for the listening line and for n distinct workers to log
        'worker N ready'."""
        n = self.workers if n is None else n
        if not self.listens:     # (the log may have been rotated since)
            self.wait_listening(timeout)

        def ready():
            if not self.running():
                raise AssertionError("molt exited (rc %r) during start-up:\n%s"
                                     % (self.proc and self.proc.returncode, self.log()))
            ids = set(re.findall(r"worker (\d+) ready", self.log(since)))
            return len(ids) >= n
        try:
            wait_for(ready, timeout, what="%d workers ready" % n)
        except AssertionError as e:
            raise AssertionError("%s\n--- log ---\n%s" % (e, self.log()))

    def signal(self, sig):
        os.kill(self.pid, sig)

    def wait_exit(self, timeout=STOP_TIMEOUT):
        """Wait for the master to exit; return its exit status (None for a
        daemon, which is not our child)."""
        if self.proc is not None:
            try:
                self.returncode = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                raise AssertionError("molt did not exit within %.0fs" % timeout)
            return self.returncode
        wait_for(lambda: not pid_alive(self.pid), timeout, what="molt pid %d to exit" % self.pid)
        return None

    def stop(self, sig=None, timeout=STOP_TIMEOUT):
        """Send sig (default TERM) and wait for the master and its workers
        to go.  KILL everything and fail if that takes longer than timeout."""
        sig = signal.SIGTERM if sig is None else sig
        if self.stopped:
            return self.returncode
        workers = self.worker_pids() if self.running() else []
        self.stopped = True
        if self.running():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.wait_exit(timeout)
            except AssertionError:
                self._kill_all(workers)
                pytest.fail("molt (pid %d) did not exit within %.0fs of signal %d\n%s"
                            % (self.pid, timeout, sig, self.log()[-3000:]))
        else:
            self.wait_exit(1)
        try:
            wait_for(lambda: not any(pid_alive(p) for p in workers), 5,
                     what="workers to exit")
        except AssertionError:
            left = [p for p in workers if pid_alive(p)]
            self._kill_all(left)
            pytest.fail("worker(s) %r outlived the master" % left)
        return self.returncode

    def _kill_all(self, pids):
        for p in [self.pid] + list(pids):
            try:
                os.kill(p, signal.SIGKILL)
            except (ProcessLookupError, TypeError):
                pass
        if self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass

    def worker_pids(self):
        return children_of(self.pid)

    # --------------------------------------------------------------- logs
    def log_files(self):
        files = []
        for name in sorted(os.listdir(self.tmp)):
            if name.startswith("error.log") or name == "stderr.log":
                files.append(os.path.join(self.tmp, name))
        return files

    def mark(self):
        """A position in the logs; pass it as since= to see only newer lines."""
        return (len(read_text(self.error_log)), len(read_text(self.stderr_path)))

    def log(self, since=None):
        """The error log (current file) followed by molt's stderr."""
        a, b = since if since else (0, 0)
        err = read_text(self.error_log)[a:]
        se = read_text(self.stderr_path)[b:]
        if err and se and not err.endswith("\n"):
            err += "\n"
        return err + se

    def wait_log(self, regex, timeout=10.0, since=None, flags=re.M):
        """Wait until regex matches the log; return the match."""
        rx = re.compile(regex, flags)
        try:
            return wait_for(lambda: rx.search(self.log(since)), timeout,
                            what="log to match %r" % regex)
        except AssertionError as e:
            raise AssertionError("%s\n--- log ---\n%s" % (e, self.log()[-4000:]))

    def count_log(self, regex, since=None):
        return len(re.findall(regex, self.log(since), re.M))

    def expect_errors(self, regex):
        """Declare [error] lines matching regex as expected by this test."""
        self.expected_errors.append(re.compile(regex))

    def close_stderr(self):
        f = getattr(self, "_stderr_f", None)
        if f:
            f.close()
            self._stderr_f = None

    def check_logs(self):
        bad = []
        for path in self.log_files():
            for line in read_text(path).splitlines():
                if SANITIZER_RE.search(line):
                    bad.append("%s: %s" % (os.path.basename(path), line))
                elif "[error]" in line and not any(
                        p.search(line) for p in self.expected_errors):
                    bad.append("%s: %s" % (os.path.basename(path), line))
        return bad

    # --------------------------------------------------------------- HTTP
    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def conn(self, timeout=10.0):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def get(self, path, headers=None, method="GET", body=None, timeout=10.0):
        """One request on a new connection: (status, headers, body) with
        header names lowercased."""
        c = self.conn(timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            h = {}
            for k, v in r.getheaders():
                k = k.lower()
                h[k] = (h[k] + ", " + v) if k in h else v
            return r.status, h, data
        finally:
            c.close()

    def raw_conn(self, timeout=10.0):
        return RawConn(self.port, timeout=timeout)

    def raw(self, data, read_until_close=True, timeout=10.0):
        """Send bytes on a new connection.  With read_until_close, return
        everything until the server closes (AssertionError if it does not
        within timeout); otherwise return what arrives within timeout."""
        with RawConn(self.port, timeout=timeout) as c:
            c.send(data)
            if read_until_close:
                return c.read_all(timeout)
            try:
                c._fill(timeout)
            except socket.timeout:
                pass
            return c.buf


@pytest.fixture
def molt(tmp_path, request):
    """Factory: molt(conf=..., workers=2, server_extra="", wait=True, ...)."""
    instances = []

    def factory(conf=DEFAULT_ROUTES, workers=2, server_extra="", wait=True,
                error_log=True, listen=("127.0.0.1:0",), log_level="info",
                args=(), daemon=False, inherit=(), wrapper=()):
        """@TMP@ in conf, server_extra and listen stands for the instance's
        temp dir."""
        tmp = str(tmp_path / ("molt%d" % len(instances)))
        os.makedirs(tmp)
        listen = [l.replace("@TMP@", tmp) for l in listen]
        text = server_section(tmp, workers, server_extra.replace("@TMP@", tmp),
                              error_log, listen, log_level)
        if conf:
            text += "\n" + conf.replace("@TMP@", tmp)
        conf_path = os.path.join(tmp, "molt.conf")
        with open(conf_path, "w") as f:
            f.write(text)
        m = Molt(tmp, conf_path, text, workers or 1)
        m.workers_conf, m.error_log_conf = workers, error_log
        m.listen_conf, m.log_level_conf = listen, log_level
        instances.append(m)
        m.start(wait=wait, args=args, daemon=daemon, inherit=inherit,
                wrapper=wrapper)
        return m

    yield factory

    problems = []
    for m in instances:
        try:
            m.stop()
        except BaseException as e:   # keep stopping the others
            problems.append("stopping molt in %s: %s" % (m.tmp, e))
        finally:
            m.close_stderr()
        bad = m.check_logs()
        if bad:
            problems.append("unexpected errors in the logs of %s:\n  %s"
                            % (m.tmp, "\n  ".join(bad[:50])))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


class ConfCheck:
    def __init__(self, path, text, proc):
        self.path = path
        self.text = text
        self.rc = proc.returncode
        self.stderr = proc.stderr
        self.stdout = proc.stdout

    def line_of(self, needle, start=1):
        return line_of(self.text, needle, start)

    def __repr__(self):
        return "<molt -t rc=%r stderr=%r>" % (self.rc, self.stderr)


@pytest.fixture
def molt_check(tmp_path):
    """molt_check(text, server=True, name="molt.conf") writes a config and
    runs `molt -t -c FILE`.  With server=True the standard [server] section
    (modules_dir etc.) comes first.  Returns ConfCheck(rc, stderr, path,
    text, line_of())."""
    counter = [0]

    def check(text, server=True, name=None, args=()):
        counter[0] += 1
        d = str(tmp_path / ("check%d" % counter[0]))
        os.makedirs(d)
        full = (server_section(d) + "\n" + text) if server else text
        path = os.path.join(d, name or "molt.conf")
        with open(path, "w") as f:
            f.write(full)
        p = run_molt(["-t", "-c", path] + list(args), cwd=d)
        return ConfCheck(path, full, p)

    return check
