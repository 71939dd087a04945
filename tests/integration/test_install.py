"""
`make install` into a temp root (DESTDIR) gives the layout of issue #2, and
a third-party module (tests/modules/oot/mymod.c) builds out of tree against
the installed header through pkg-config and is served by the installed molt.
"""

import os
import re
import shutil
import subprocess

import pytest

from conftest import BUILD_DIR, SRC_DIR, Molt, molt_env, read_text

MAKE = os.environ.get("MAKE", "make")


def makefile_vars(build_dir):
    """The configured installation directories from the build's Makefile,
    with ${var} / $(var) references expanded."""
    raw = {}
    with open(os.path.join(build_dir, "Makefile")) as f:
        for line in f:
            m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*) = (.*)$", line.rstrip("\n"))
            if m:
                raw[m.group(1)] = m.group(2).strip()

    def expand(v, depth=0):
        assert depth < 20, "recursive Makefile variable"
        return re.sub(r"\$[({]([A-Za-z_][A-Za-z0-9_]*)[)}]",
                      lambda mm: expand(raw.get(mm.group(1), ""), depth + 1), v)
    return {k: expand(v) for k, v in raw.items()}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """make install DESTDIR=TMP; returns (destdir, configured dirs)."""
    if shutil.which(MAKE) is None:
        pytest.fail("make is needed for the install test")
    dest = str(tmp_path_factory.mktemp("destdir"))
    env = dict(os.environ)
    # `make check`'s own MAKEFLAGS (e.g. -j, or -n from a dry run) must
    # not leak into this nested make.
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):
        env.pop(k, None)
    p = subprocess.run([MAKE, "-C", BUILD_DIR, "install", "DESTDIR=" + dest],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=600, env=env)
    assert p.returncode == 0, "make install failed:\n" + p.stdout[-5000:]
    return dest, makefile_vars(BUILD_DIR)


def under(dest, path):
    return os.path.join(dest, path.lstrip("/"))


def test_install_layout(installed):
    dest, v = installed
    sbin = under(dest, v["sbindir"])
    molt = os.path.join(sbin, "molt")
    assert os.access(molt, os.X_OK), molt
    moddir = under(dest, os.path.join(v["libdir"], "molt", "modules"))
    for name in ("hello", "echo", "static", "fragment", "leak", "mariadb"):
        assert os.path.isfile(os.path.join(moddir, name + ".so")), name
    # molt loads NAME.so: libtool's .la files are not installed
    assert not [f for f in os.listdir(moddir) if f.endswith(".la")], os.listdir(moddir)
    # test modules are never installed, nor libtool leftovers loaded by name
    for name in ("crash", "abi_mismatch", "bad_magic", "initfail", "stream", "confkeys"):
        assert not os.path.exists(os.path.join(moddir, name + ".so")), name
    assert os.path.isfile(under(dest, os.path.join(v["sysconfdir"], "molt", "molt.conf")))
    hdr = under(dest, os.path.join(v["includedir"], "molt", "module.h"))
    assert os.path.isfile(hdr)
    assert read_text(hdr) == read_text(os.path.join(SRC_DIR, "include", "molt", "module.h"))
    assert os.path.isfile(under(dest, os.path.join(v["libdir"], "pkgconfig", "molt-module.pc")))
    mandir = under(dest, v["mandir"])
    for page in ("man8/molt.8", "man5/molt.conf.5", "man3/molt-module.3"):
        assert os.path.isfile(os.path.join(mandir, page)), page
    unitdir = under(dest, v["systemdsystemunitdir"])
    for unit in ("molt.service", "molt.socket"):
        assert os.path.isfile(os.path.join(unitdir, unit)), unit


def test_installed_files_name_the_configured_paths(installed):
    """The installed example config, units and man pages name the
    directories of this build, not /usr/local's (issue: a --prefix=/usr
    install served /usr/local/share/molt/www)."""
    dest, v = installed
    sbin_molt = os.path.join(v["sbindir"], "molt")
    conf = os.path.join(v["sysconfdir"], "molt", "molt.conf")
    text = read_text(under(dest, conf))
    assert "root = %s\n" % os.path.join(v["datadir"], "molt", "www") in text
    unit = read_text(os.path.join(under(dest, v["systemdsystemunitdir"]),
                                  "molt.service"))
    assert "\nExecStart=%s -c %s\n" % (sbin_molt, conf) in unit, unit
    page = read_text(under(dest, os.path.join(v["mandir"], "man8", "molt.8")))
    assert "\n.I %s\n" % sbin_molt in page
    assert "@" + "sbindir@" not in page


HARDENING = ["RuntimeDirectory=molt", "RuntimeDirectoryPreserve=yes",
             "LogsDirectory=molt", "ProtectSystem=full",
             "ProtectHome=read-only", "PrivateTmp=true", "NoNewPrivileges=true"]


def test_installed_units_are_hardened_and_parse(installed):
    """The unit creates the /run/molt and /var/log/molt of molt.conf(5)'s
    EXAMPLE and has the hardening that costs no documented feature; and
    systemd-analyze, where there is one, finds no key it does not know
    or cannot parse (a missing binary or man page is this DESTDIR's)."""
    dest, v = installed
    unitdir = under(dest, v["systemdsystemunitdir"])
    service = os.path.join(unitdir, "molt.service")
    lines = read_text(service).split("\n")
    for want in HARDENING:
        assert want in lines, want
    conf5 = read_text(under(dest, os.path.join(v["mandir"], "man5", "molt.conf.5")))
    assert "error_log = /var/log/molt/error.log" in conf5
    assert "listen = unix:/run/molt/molt.sock" in conf5
    if shutil.which("systemd-analyze") is None:
        return
    p = subprocess.run(["systemd-analyze", "verify", service,
                        os.path.join(unitdir, "molt.socket")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=60)
    bad = [l for l in p.stdout.split("\n")
           if re.search(r"Unknown|Failed to parse|Invalid|ignoring", l)]
    assert not bad, p.stdout


def test_other_prefix_generates_its_paths(tmp_path):
    """configure --prefix=/opt/...: nothing generated names /usr/local,
    and --with-systemdsystemunitdir=no is honoured."""
    env = dict(os.environ)
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):
        env.pop(k, None)
    b = str(tmp_path / "b")
    os.mkdir(b)
    prefix = "/opt/molt-test"
    p = subprocess.run([os.path.join(SRC_DIR, "configure"), "-q", "--prefix=" + prefix,
                        "--with-systemdsystemunitdir=no"], cwd=b, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=600)
    assert p.returncode == 0, p.stdout[-5000:]
    files = ["etc/molt.conf", "etc/molt.service", "etc/molt.socket",
             "doc/molt.8", "doc/molt.conf.5", "doc/molt-module.3"]
    p = subprocess.run([MAKE] + files, cwd=b, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True, timeout=600)
    assert p.returncode == 0, p.stdout[-5000:]
    for f in files:
        text = read_text(os.path.join(b, f))
        assert text and "/usr/local" not in text, f
        assert not re.search(r"@[a-z_]+@", text), f
    assert "root = %s/share/molt/www\n" % prefix in read_text(os.path.join(b, "etc/molt.conf"))
    assert ("ExecStart=%s/sbin/molt -c %s/etc/molt/molt.conf\n" % (prefix, prefix)
            in read_text(os.path.join(b, "etc/molt.service")))
    v = makefile_vars(b)
    assert v.get("systemdsystemunit_DATA", "") == ""


def test_other_prefix_keeps_its_systemd_units(tmp_path):
    """With a prefix other than /usr/local or /usr, the units go under it:
    a trial install as root put a molt.service that started molt from the
    trial prefix into /lib/systemd/system, replacing the system's."""
    env = dict(os.environ)
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):
        env.pop(k, None)
    b = str(tmp_path / "b")
    os.mkdir(b)
    p = subprocess.run([os.path.join(SRC_DIR, "configure"), "-q",
                        "--prefix=/opt/molt-test"], cwd=b, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=600)
    assert p.returncode == 0, p.stdout[-5000:]
    v = makefile_vars(b)
    assert v["systemdsystemunitdir"] == "/opt/molt-test/lib/systemd/system", v


def test_installed_molt_runs(installed):
    dest, v = installed
    molt = os.path.join(under(dest, v["sbindir"]), "molt")
    p = subprocess.run([molt, "-V"], stdout=subprocess.PIPE, universal_newlines=True)
    assert p.returncode == 0
    assert p.stdout.strip() == "molt 0.1.0 (module ABI 1.4)"


def test_out_of_tree_module(installed, tmp_path):
    dest, v = installed
    if shutil.which("pkg-config") is None:
        pytest.fail("pkg-config is needed (Debian package pkgconf)")
    cc = os.environ.get("CC", "cc")
    src = os.path.join(SRC_DIR, "tests", "modules", "oot", "mymod.c")
    assert os.path.isfile(src), "%s is missing (not distributed?)" % src
    work = tmp_path / "oot"
    work.mkdir()
    shutil.copy(src, str(work / "mymod.c"))

    env = dict(os.environ)
    env["PKG_CONFIG_PATH"] = under(dest, os.path.join(v["libdir"], "pkgconfig"))
    env["PKG_CONFIG_SYSROOT_DIR"] = dest      # the install went to DESTDIR
    p = subprocess.run(["pkg-config", "--cflags", "molt-module"], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True)
    assert p.returncode == 0, p.stderr
    cflags = p.stdout.split()
    inc = under(dest, v["includedir"])
    assert "-I" + inc in cflags, "pkg-config --cflags gave %r, not -I%s" % (cflags, inc)
    p = subprocess.run("%s -shared -fPIC %s mymod.c -o mymod.so" % (cc, " ".join(cflags)),
                       shell=True, cwd=str(work), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True)
    assert p.returncode == 0, p.stdout
    # pkgconf prefixes the sysroot to path variables too; ask without it.
    env_var = dict(env)
    env_var.pop("PKG_CONFIG_SYSROOT_DIR", None)
    p = subprocess.run(["pkg-config", "--variable=moduledir", "molt-module"], env=env_var,
                       stdout=subprocess.PIPE, universal_newlines=True)
    assert p.stdout.strip() == os.path.join(v["libdir"], "molt", "modules")

    # serve it with the installed molt, next to the installed modules
    moddir = under(dest, os.path.join(v["libdir"], "molt", "modules"))
    run = tmp_path / "run"
    run.mkdir()
    conf = run / "molt.conf"
    conf.write_text("""\
[server]
listen = 127.0.0.1:0
workers = 1
modules_dir = %s:%s
error_log = %s/error.log
pid_file = %s/molt.pid

[route /mine]
module = mymod

[route /hello]
module = hello
""" % (moddir, work, run, run))
    molt_bin = os.path.join(under(dest, v["sbindir"]), "molt")
    p = subprocess.run([molt_bin, "-t", "-c", str(conf)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, env=molt_env())
    assert p.returncode == 0, p.stderr

    m = Molt(str(run), str(conf), conf.read_text(), 1)
    try:
        m.start(binary=molt_bin)
        st, h, body = m.get("/mine")
        assert st == 200 and body == b"mymod ok\n"
        assert m.get("/hello")[0] == 200
    finally:
        m.stop()
        bad = m.check_logs()
        assert not bad, bad


def test_man_page_example_module_compiles(installed, tmp_path):
    """The example module in molt-module(3), as installed, builds without
    a warning against the installed header: the page and the ABI cannot
    drift apart unnoticed."""
    dest, v = installed
    page = under(dest, os.path.join(v["mandir"], "man3", "molt-module.3"))
    with open(page) as f:
        text = f.read()
    blocks = re.findall(r"^\.EX\n(.*?)^\.EE", text, re.S | re.M)
    examples = [b for b in blocks if "MOLT_MODULE_HEADER" in b]
    assert examples, "no example module in " + page
    code = (max(examples, key=len).replace("\\e", "\\").replace("\\-", "-")
            .replace("\\(dq", '"'))
    (tmp_path / "example.c").write_text(code)
    cc = os.environ.get("CC", "cc")
    p = subprocess.run([cc, "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror",
                        "-I" + under(dest, v["includedir"]), "example.c",
                        "-o", "example.so"], cwd=str(tmp_path),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True)
    assert p.returncode == 0, p.stdout


def test_cplusplus_module_is_found(installed, tmp_path):
    """In C++ a const object at namespace scope has internal linkage: a
    module written as the header's example, compiled as C++, exported no
    molt_module and molt refused it.  MOLT_EXPORT gives it C linkage."""
    dest, v = installed
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        pytest.fail("a C++ compiler is needed (Debian package g++)")
    (tmp_path / "cxxmod.cc").write_text("""\
#include <molt/module.h>

static int cxx_handle(molt_request *req)
{
    return molt_reply(req, 200, "text/plain", "c++ ok\\n", 7);
}

MOLT_EXPORT const struct molt_module molt_module = {
    MOLT_MODULE_HEADER,
    .name = "cxxmod",
    .handle = cxx_handle,
};
""")
    p = subprocess.run([cxx, "-std=c++20", "-shared", "-fPIC",
                        "-fvisibility=hidden", "-I" + under(dest, v["includedir"]),
                        "cxxmod.cc", "-o", "cxxmod.so"], cwd=str(tmp_path),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True)
    assert p.returncode == 0, p.stdout
    conf = tmp_path / "molt.conf"
    conf.write_text("[server]\nlisten = 127.0.0.1:0\nmodules_dir = %s\n"
                    "error_log = %s/error.log\n\n[route /cxx]\nmodule = cxxmod\n"
                    % (tmp_path, tmp_path))
    molt_bin = os.path.join(under(dest, v["sbindir"]), "molt")
    p = subprocess.run([molt_bin, "-t", "-c", str(conf)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, env=molt_env())
    assert p.returncode == 0, p.stderr


def run_make(dest, *targets):
    """make TARGETS DESTDIR=dest in the build directory, out of make
    check's own make."""
    env = dict(os.environ)
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):
        env.pop(k, None)
    p = subprocess.run([MAKE, "-C", BUILD_DIR] + list(targets) + ["DESTDIR=" + dest],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=600, env=env)
    assert p.returncode == 0, "make %s failed:\n%s" % (" ".join(targets),
                                                       p.stdout[-5000:])


def test_install_keeps_an_edited_config(tmp_path):
    """make install replaced the admin's molt.conf with the example, and
    make uninstall deleted it.  Now the example always goes to
    molt.conf.default, molt.conf only where there is none, and uninstall
    removes molt.conf only if it is still the example."""
    dest = str(tmp_path / "destdir")
    v = makefile_vars(BUILD_DIR)
    confdir = under(dest, os.path.join(v["sysconfdir"], "molt"))
    conf = os.path.join(confdir, "molt.conf")
    default = os.path.join(confdir, "molt.conf.default")

    run_make(dest, "install")
    assert read_text(conf) == read_text(default) != ""
    example = read_text(default)
    edited = example + "\n; edited by the admin\n"
    with open(conf, "w") as f:
        f.write(edited)
    run_make(dest, "install")
    assert read_text(conf) == edited, "make install replaced the edited molt.conf"
    assert read_text(default) == example
    run_make(dest, "uninstall")
    assert not os.path.exists(default)
    assert read_text(conf) == edited, "make uninstall removed the edited molt.conf"

    # an unedited config is the example's, and goes with it
    os.unlink(conf)
    run_make(dest, "install")
    run_make(dest, "uninstall")
    assert not os.path.exists(conf) and not os.path.exists(default)
    moddir = under(dest, os.path.join(v["libdir"], "molt", "modules"))
    assert not os.listdir(moddir), "make uninstall left %r" % os.listdir(moddir)
