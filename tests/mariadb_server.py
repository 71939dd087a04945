"""
mariadb_server.py - a private, throw-away MariaDB server for the tests.

Debian's mariadb-server package is installed but its system service is never
used: each MariaDBServer gets a temp directory holding a datadir made by
mariadb-install-db, a Unix socket, a TCP port on 127.0.0.1 and its logs.
Fixtures are loaded through the `mariadb` command-line client, so the tests
need no Python driver.

    srv = MariaDBServer()
    srv.start()                 # install the datadir (once) and run mariadbd
    srv.load_fixtures()         # user, database, tables, a 1,000,000-row table
    srv.sql("SELECT 1")         # -> [["1"]]
    srv.stop(); srv.start()     # an outage, keeping the data and the port
    srv.destroy()               # stop and remove everything

The server runs as the current user; when that is root, mariadbd insists on
--user=root.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

USER = "molt"
PASSWORD = "s3cret-Pa55word"  # tests check it never shows up in output
DATABASE = "moltdb"
BIG_ROWS = 1000000


def _which(*names):
    for name in names:
        for d in ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"):
            p = os.path.join(d, name)
            if os.access(p, os.X_OK):
                return p
        p = shutil.which(name)
        if p:
            return p
    return None


MARIADBD = _which("mariadbd", "mysqld")
INSTALL_DB = _which("mariadb-install-db", "mysql_install_db")
CLIENT = _which("mariadb", "mysql")


def available():
    """Why the server cannot run here, or None if it can."""
    for name, path in (("mariadbd", MARIADBD), ("mariadb-install-db", INSTALL_DB),
                       ("mariadb", CLIENT)):
        if path is None:
            return "%s not found (install the Debian package mariadb-server)" % name
    return None


def _die_with_parent():
    """In the child before exec: SIGTERM when the test process dies, so a
    killed test run leaves no mariadbd behind (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# Values chosen to break naive conversions: 64-bit extremes, a DECIMAL wider
# than a double, a float that is not exact in binary, a leap day, negative
# and fractional TIME, UTF-8 outside the BMP, JSON metacharacters, control
# characters and binary bytes that are not UTF-8.
FIXTURES = """
CREATE TABLE types (
    id    INT PRIMARY KEY,
    i8    TINYINT,
    i64   BIGINT,
    u64   BIGINT UNSIGNED,
    dec1  DECIMAL(32,10),
    dbl   DOUBLE,
    flt   FLOAT,
    d     DATE,
    t     TIME(6),
    dt    DATETIME(6),
    yr    YEAR,
    s     VARCHAR(200),
    b     VARBINARY(64),
    bl    BLOB,
    tx    TEXT
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

INSERT INTO types VALUES
 (1, -128, -9223372036854775808, 18446744073709551615,
  1234567890123456789012.0123456789, 0.1, 1.5,
  '2024-02-29', '-838:59:59.000000', '2024-02-29 23:59:59.123456', 2024,
  'h\u00e9llo "quoted" \\\\ back\\nnew\\ttab \U0001F600 </script>',
  X'00FF10', X'DEADBEEF00', 'plain, text "with" csv\\nstuff'),
 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (3, 127, 9223372036854775807, 0,
  -0.0000000001, 1e308, -3.25,
  '1000-01-01', '00:00:00.000001', '1970-01-01 00:00:00.000000', 1901,
  '', X'', X'', ''),
 (4, 0, 0, 42, 0, 123456789.123456789, 0, '9999-12-31', '12:34:56', '9999-12-31 23:59:59', 2155,
  CONCAT('ctl', CHAR(1 USING utf8mb4), CHAR(31 USING utf8mb4), 'x'), X'E282AC', X'FF', '\\'; DROP TABLE users; --');

CREATE TABLE users (
    id    INT PRIMARY KEY,
    name  VARCHAR(100) NOT NULL,
    email VARCHAR(100)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

INSERT INTO users SELECT seq, CONCAT('user', seq), CONCAT('user', seq, '@example.org')
  FROM seq_1_to_100;
INSERT INTO users VALUES (1000, 'Robert''); DROP TABLE users; --', NULL);

CREATE TABLE big (
    id    INT PRIMARY KEY,
    name  VARCHAR(40) NOT NULL,
    amt   DECIMAL(12,2) NOT NULL
) ENGINE=InnoDB;

INSERT INTO big SELECT seq, CONCAT('row-', seq), seq / 100 FROM seq_1_to_%(big)d;
"""


def big_row(i):
    """The values of big row i as text, as the server stores them."""
    return i, "row-%d" % i, "%d.%02d" % (i // 100, i % 100)


class MariaDBServer:
    def __init__(self, base=None, port=None):
        self.dir = tempfile.mkdtemp(prefix="molt-mariadb-", dir=base)
        self.datadir = os.path.join(self.dir, "data")
        self.socket = os.path.join(self.dir, "mysql.sock")
        self.pidfile = os.path.join(self.dir, "mariadbd.pid")
        self.errlog = os.path.join(self.dir, "error.log")
        self.port = port or free_port()
        self.proc = None
        self.user = USER
        self.password = PASSWORD
        self.database = DATABASE

    # -------------------------------------------------------------- server

    def _install(self):
        cmd = [INSTALL_DB, "--no-defaults", "--datadir=" + self.datadir,
               "--auth-root-authentication-method=normal", "--skip-test-db"]
        if os.getuid() == 0:
            cmd.append("--user=root")
        log = os.path.join(self.dir, "install.log")
        with open(log, "wb") as f:
            r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=120)
        if r.returncode != 0:
            raise RuntimeError("mariadb-install-db failed:\n" + open(log).read()[-4000:])

    def start(self, timeout=30):
        if not os.path.isdir(os.path.join(self.datadir, "mysql")):
            self._install()
        cmd = [MARIADBD, "--no-defaults",
               "--datadir=" + self.datadir,
               "--socket=" + self.socket,
               "--port=%d" % self.port,
               "--bind-address=127.0.0.1",
               "--skip-networking=0",
               "--pid-file=" + self.pidfile,
               "--log-error=" + self.errlog,
               "--innodb-buffer-pool-size=128M",
               "--innodb-log-file-size=64M",
               "--innodb-flush-log-at-trx-commit=0",
               "--max-connections=500",
               "--skip-name-resolve"]
        if os.getuid() == 0:
            cmd.append("--user=root")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL,
                                     preexec_fn=_die_with_parent)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("mariadbd exited with %d:\n%s"
                                   % (self.proc.returncode, self.tail_log()))
            if os.path.exists(self.socket) and self._ping():
                return self
            time.sleep(0.05)
        raise RuntimeError("mariadbd did not come up in %ds:\n%s" % (timeout, self.tail_log()))

    def _ping(self):
        r = subprocess.run([CLIENT, "--no-defaults", "-S", self.socket, "-uroot",
                            "-e", "SELECT 1"], capture_output=True, timeout=10)
        return r.returncode == 0

    def stop(self, timeout=30):
        """Stops the server (SIGTERM, clean shutdown); the data stays."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def destroy(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def tail_log(self, n=4000):
        try:
            with open(self.errlog, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return "(no error log)"

    # ----------------------------------------------------------------- SQL

    def sql(self, query, db=None, root=True):
        """Runs query with the command-line client; rows as lists of text."""
        cmd = [CLIENT, "--no-defaults", "-S", self.socket, "--batch",
               "--skip-column-names", "--raw", "--default-character-set=utf8mb4"]
        cmd += ["-uroot"] if root else ["-u" + self.user, "-p" + self.password]
        if db:
            cmd.append(db)
        r = subprocess.run(cmd, input=query.encode(), capture_output=True, timeout=600)
        if r.returncode != 0:
            raise RuntimeError("mariadb: %s\n%s" % (query[:200], r.stderr.decode(errors="replace")))
        out = r.stdout.decode("utf-8", errors="surrogateescape")
        return [line.split("\t") for line in out.splitlines()]

    def load_fixtures(self, big_rows=BIG_ROWS):
        self.sql("""
            CREATE DATABASE IF NOT EXISTS %(db)s CHARACTER SET utf8mb4;
            CREATE USER IF NOT EXISTS '%(u)s'@'localhost' IDENTIFIED BY '%(p)s';
            CREATE USER IF NOT EXISTS '%(u)s'@'127.0.0.1' IDENTIFIED BY '%(p)s';
            GRANT ALL ON %(db)s.* TO '%(u)s'@'localhost';
            GRANT ALL ON %(db)s.* TO '%(u)s'@'127.0.0.1';
            FLUSH PRIVILEGES;
        """ % {"db": self.database, "u": self.user, "p": self.password})
        self.sql(FIXTURES % {"big": big_rows}, db=self.database)
        self.big_rows = big_rows
        return self

    # -------------------------------------------------------- molt config

    def database_section(self, name="main", tcp=False, password_file=None, **extra):
        """A [database NAME] section for molt.conf pointing at this server."""
        lines = ["[database %s]" % name]
        if tcp:
            lines += ["host = 127.0.0.1", "port = %d" % self.port]
        else:
            lines.append("socket = %s" % self.socket)
        lines.append("user = %s" % self.user)
        if password_file:
            lines.append("password_file = %s" % password_file)
        else:
            lines.append("password = %s" % self.password)
        lines.append("database = %s" % self.database)
        for k, v in extra.items():
            lines.append("%s = %s" % (k, v))
        return "\n".join(lines) + "\n"


if __name__ == "__main__":
    # A quick manual check: python3 tests/mariadb_server.py
    why = available()
    if why:
        raise SystemExit(why)
    t0 = time.time()
    srv = MariaDBServer()
    try:
        srv.start()
        t1 = time.time()
        srv.load_fixtures()
        t2 = time.time()
        print("started in %.2fs, fixtures in %.2fs" % (t1 - t0, t2 - t1))
        print(srv.sql("SELECT COUNT(*), SUM(id) FROM big", db=DATABASE))
        print(srv.sql("SELECT * FROM types ORDER BY id", db=DATABASE))
        srv.stop()
        srv.start()
        print("restarted:", srv.sql("SELECT COUNT(*) FROM users", db=DATABASE, root=False))
    finally:
        srv.destroy()
