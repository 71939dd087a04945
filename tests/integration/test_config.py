"""
Configuration checking (issue #2): every error names FILE:LINE, through
`molt -t` and at start-up; module loading refusals (ABI, magic); -V.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import (BUILD_DIR, MODULES_DIR, MOLT_BIN, SANITIZER_RE, SRC_DIR,
                      TEST_MODULES_DIR, line_of, molt_env, read_text, run_molt,
                      server_section)


def error_at(res):
    """(line, message) of the `FILE:LINE: message` in molt -t's stderr."""
    assert res.rc == 1, "expected exit 1, got %r\n%s" % (res.rc, res.stderr)
    m = re.search(re.escape(res.path) + r":(\d+): (.+)", res.stderr)
    assert m, "no %s:LINE: message in stderr:\n%s" % (res.path, res.stderr)
    return int(m.group(1)), m.group(2)


CONFKEYS = """\
[route /c]
module = confkeys
token = tok
"""


# -------------------------------------------------------------- success

def test_version():
    p = run_molt(["-V"])
    assert p.returncode == 0
    assert p.stdout.strip() == "molt 0.1.0 (module ABI 1.4)"


def test_help_describes_every_option():
    """-h said -d "writes the pid file", which molt writes without -d too,
    and did not describe -h itself."""
    p = run_molt(["-h"])
    assert p.returncode == 0
    opts = re.findall(r"^  (-[a-zA-Z])\b", p.stdout, re.M)
    usage = re.findall(r"\[(-[a-zA-Z])", p.stdout.split("\n")[0])
    assert sorted(opts) == sorted(usage) == sorted(["-c", "-t", "-d", "-s", "-V", "-h"]), p.stdout
    d = re.search(r"^  -d .*(\n {12}.*)*", p.stdout, re.M).group(0)
    assert "without -d" in d, d


def test_check_ok(molt_check):
    r = molt_check("""\
[route /hello]   ; inline comment
module = hello   ; another one

[route /echo]
module = echo
methods = GET, POST

[route /]
module = static

[module static]
root = %s
""" % os.path.dirname(MOLT_BIN) + CONFKEYS)
    assert r.rc == 0, r.stderr
    assert "molt: %s: configuration ok" % r.path in r.stderr


def test_check_embedded_default():
    """No -c: the embedded default (bundled modules from the build)."""
    p = run_molt(["-t"])
    assert p.returncode == 0, p.stderr
    assert "configuration ok" in p.stderr


def test_embedded_default_from_a_build_dir_reached_by_a_symlink(tmp_path):
    """configure run in a build directory reached through a symlink records
    that logical path, while /proc/self/exe is canonical: the binary did
    not know it was in its build tree and looked for the installed
    modules, so the README's first command failed.  A copy of the build,
    its molt rebuilt as if configured through a symlink to it."""
    env = dict(os.environ)
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):
        env.pop(k, None)
    makefile = read_text(os.path.join(BUILD_DIR, "Makefile"))
    # with installed modules the wrong answer would pass as well
    prefix = re.search(r"^prefix = (.*)$", makefile, re.M).group(1)
    if os.path.isdir(os.path.join(prefix, "lib", "molt", "modules")):
        pytest.skip("molt's modules are installed: the test cannot tell")
    # A relative srcdir (../configure, make distcheck) must still lead to
    # the source from the copy: the copy goes as deep under a directory
    # whose entries are the source's.
    srcdir = re.search(r"^srcdir = (.*)$", makefile, re.M).group(1)
    real = tmp_path / "real"
    if not os.path.isabs(srcdir) and srcdir != ".":
        top = tmp_path / "top"
        top.mkdir()
        for e in os.listdir(SRC_DIR):
            os.symlink(os.path.join(SRC_DIR, e), str(top / e))
        real = top
        for part in srcdir.split("/"):
            assert part == "..", srcdir
            real = real / "d"
        real.parent.mkdir(parents=True)
    link = tmp_path / "link"
    p = subprocess.run(["cp", "-a", BUILD_DIR, str(real)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True)
    assert p.returncode == 0, p.stdout
    os.symlink(str(real), str(link))
    for o in glob.glob(str(real / "src" / "*main.o")):
        os.unlink(o)
    p = subprocess.run([os.environ.get("MAKE", "make"), "-C", str(link), "molt",
                        "abs_top_builddir=" + str(link)], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=600)
    assert p.returncode == 0, p.stdout[-5000:]
    p = subprocess.run([str(link / "molt"), "-t"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True,
                       env=molt_env())
    assert p.returncode == 0, p.stderr
    assert "configuration ok" in p.stderr


def test_check_with_signal_is_a_usage_error(molt):
    """molt -t -s stop -c FILE stopped the server: -s was acted on first
    and -t ignored.  The pair is refused and nothing is signalled."""
    m = molt()
    for args in (["-t", "-s", "stop"], ["-s", "stop", "-t"]):
        p = run_molt(args + ["-c", m.conf_path])
        assert p.returncode == 1, p.stderr
        assert "-t and -s cannot be used together" in p.stderr, p.stderr
        assert "usage: molt" in p.stderr
    time.sleep(0.5)
    assert m.running()
    assert m.get("/hello")[0] == 200


def test_missing_config_file(tmp_path):
    path = str(tmp_path / "nope.conf")
    p = run_molt(["-t", "-c", path])
    assert p.returncode == 1
    assert path in p.stderr


def test_continuation_lines_joined(molt_check, molt):
    conf = """\
[route /c]
module = confkeys
token = tok
greeting = first
  second
  third
"""
    r = molt_check(conf)
    assert r.rc == 0, r.stderr
    m = molt(conf=conf)
    st, _, body = m.get("/c")
    assert st == 200
    j = json.loads(body)
    assert j["greeting"] == "first second third"
    assert j["token"] == "tok"


def test_module_keys_defaults_and_types(molt):
    m = molt(conf=CONFKEYS + """\
[route /d]
module = confkeys
token = other
count = 42
limit = 2m
wait = 1500ms
loud = yes

[module confkeys]
greeting = from-module
""")
    j = json.loads(m.get("/c")[2])
    assert j == {"greeting": "from-module", "count": 3, "limit": 1024,
                 "wait_ms": 2000, "loud": False, "token": "tok"}
    j = json.loads(m.get("/d")[2])
    assert j == {"greeting": "from-module", "count": 42, "limit": 2 * 1024 * 1024,
                 "wait_ms": 1500, "loud": True, "token": "other"}


# ------------------------------------------------------- errors, FILE:LINE

def test_unknown_section(molt_check):
    r = molt_check("[bogus]\nx = 1\n")
    line, msg = error_at(r)
    assert line == r.line_of("[bogus]")


def test_unknown_server_key(molt_check):
    r = molt_check("frobnicate = 1\n")   # still inside [server]
    line, msg = error_at(r)
    assert line == r.line_of("frobnicate")
    assert "frobnicate" in msg


@pytest.mark.parametrize("bad", [
    "workers = many",
    "workers = -1",
    "listen = nohost",
    "listen = 127.0.0.1:99999",
    "log_level = loud",
    "max_body_size = 1x",
    "header_timeout = soon",
    "keepalive_timeout = 3 fortnights",
    "check_timeout = 0",
    "check_timeout = 2h",
    "worker_cpu_affinity = 0101",
    "listen_per_cpu = on",
])
def test_bad_server_value(molt_check, bad):
    r = molt_check(bad + "\n")
    line, msg = error_at(r)
    assert line == r.line_of(bad)


@pytest.mark.parametrize("bad,unit", [
    ("max_body_size = 0.0001k", "1 byte"),
    ("max_header_size = 0.0001k", "1 byte"),
    ("header_timeout = 0.0001s", "1 ms"),
    ("access_log_flush = 0.5ms", "1 ms"),
])
def test_nonzero_value_that_rounds_to_zero(molt_check, bad, unit):
    """max_body_size = 0.0001k was silently 0, which refuses every body
    (and 0 is "off" for other keys): a value that is not zero but less
    than one unit is an error at its line."""
    r = molt_check(bad + "\n")
    line, msg = error_at(r)
    assert line == r.line_of(bad), r.stderr
    assert "is less than " + unit in msg, msg


def test_module_key_that_rounds_to_zero(molt_check):
    r = molt_check(CONFKEYS + "limit = 0.0001k\n")
    line, msg = error_at(r)
    assert line == r.line_of("limit = 0.0001k"), r.stderr


@pytest.mark.parametrize("addr", ["127.0.0.1:18999", "[::1]:18999", "unix:/tmp/molt-dup.sock"])
def test_listen_twice_on_one_address(molt_check, addr):
    """The second bind failed with EADDRINUSE, and for a unix socket as if
    another server held the path; it is a config error at the second line."""
    r = molt_check("listen = %s\nlisten = %s\n" % (addr, addr))
    line, msg = error_at(r)
    assert line == r.line_of("listen = " + addr) + 1, r.stderr
    assert "address of an earlier listen line" in msg, msg


@pytest.mark.parametrize("key", ["error_log", "access_log", "pid_file"])
def test_check_refuses_a_file_molt_could_not_write(molt_check, key):
    """molt -t passed a config whose logs or pid file a start could not
    open, so a unit's ExecStartPre check let a failing start through."""
    r = molt_check("[server]\nlisten = 127.0.0.1:0\nmodules_dir = %s\n"
                   "%s = /nonexistent-molt-dir/x\n\n[route /hello]\nmodule = hello\n"
                   % (MODULES_DIR, key), server=False)
    line, msg = error_at(r)
    assert line == r.line_of(key + " ="), r.stderr
    assert "cannot write /nonexistent-molt-dir" in msg, msg


def test_log_keywords_in_any_case(molt):
    """access_log = OFF and error_log = STDERR created files named OFF
    and STDERR in molt's directory: the keywords are matched in any case,
    as every other one."""
    m = molt(error_log=False, server_extra="error_log = STDERR\naccess_log = OFF")
    assert m.get("/hello")[0] == 200
    m.stop()
    left = sorted(os.listdir(m.tmp))
    assert "OFF" not in left and "STDERR" not in left, left
    assert "worker 0" in m.log()     # the error log went to stderr


@pytest.mark.parametrize("kv", ["worker_cpu_affinity = Off",
                                "listen_per_cpu = AUTO"])
def test_auto_off_keywords_in_any_case(molt_check, kv):
    r = molt_check(kv + "\n[route /hello]\nmodule = hello\n")
    assert r.rc == 0, r.stderr


def test_route_without_module(molt_check):
    r = molt_check("[route /x]\nmethods = GET\n\n[route /hello]\nmodule = hello\n")
    line, msg = error_at(r)
    assert line == r.line_of("[route /x]")
    assert "module" in msg


@pytest.mark.parametrize("prefix,why", [
    ("/a//b", "runs of '/' merged"),
    ("//", "runs of '/' merged"),
    ("/c/../d", "'.' and '..' segments"),
    ("/e/./f", "'.' and '..' segments"),
    ("/g/..", "'.' and '..' segments"),
    ("/h/.", "'.' and '..' segments"),
    ("/i/%41", "percent-decoded"),
])
def test_route_prefix_that_can_never_match(molt_check, prefix, why):
    """Requests are normalised before routing, so these prefixes were
    accepted and matched nothing."""
    r = molt_check("[route %s]\nmodule = hello\n" % prefix)
    line, msg = error_at(r)
    assert line == r.line_of("[route %s]" % prefix), r.stderr
    assert msg.startswith("route prefix '%s' can never match: " % prefix), msg
    assert why in msg, msg


@pytest.mark.parametrize("prefix", ["/a/", "/b.c", "/..d/e.", "/f%g", "/h%4"])
def test_route_prefix_normal_forms_accepted(molt_check, prefix):
    r = molt_check("[route %s]\nmodule = hello\n" % prefix)
    assert r.rc == 0, r.stderr


def test_unknown_route_key(molt_check):
    r = molt_check("[route /hello]\nmodule = hello\nfrob = 2\n")
    line, msg = error_at(r)
    assert line == r.line_of("frob = 2")


def test_over_long_line(molt_check):
    long = "greeting = " + "x" * 250
    r = molt_check(CONFKEYS + long + "\n")
    line, msg = error_at(r)
    assert line == r.line_of(long)


def test_long_value_with_continuation_lines_ok(molt_check):
    r = molt_check(CONFKEYS + "greeting = " + "x" * 150 + "\n" +
                   "".join("  " + "y" * 150 + "\n" for _ in range(4)))
    assert r.rc == 0, r.stderr


def test_unknown_module(molt_check):
    r = molt_check("[route /x]\nmodule = nosuchmod\n")
    line, msg = error_at(r)
    assert line in (r.line_of("[route /x]"), r.line_of("module = nosuchmod"))
    assert "nosuchmod" in msg


@pytest.mark.parametrize("bad", ["count = abc", "count = 1.5", "limit = 1x",
                                 "wait = forever", "loud = maybe"])
def test_module_key_type_error(molt_check, bad):
    r = molt_check(CONFKEYS + bad + "\n")
    line, msg = error_at(r)
    assert line == r.line_of(bad)


def test_module_key_type_error_in_module_section(molt_check):
    r = molt_check(CONFKEYS + "\n[module confkeys]\ncount = zz\n")
    line, msg = error_at(r)
    assert line == r.line_of("count = zz")


def test_unknown_module_key(molt_check):
    r = molt_check(CONFKEYS + "bogus = 1\n")
    line, msg = error_at(r)
    assert line == r.line_of("bogus = 1")
    r = molt_check(CONFKEYS + "\n[module confkeys]\nbogus2 = 1\n")
    line, msg = error_at(r)
    assert line == r.line_of("bogus2 = 1")


def test_module_key_every_route_overrides_is_known(molt_check, molt):
    """A key declared by the module, set in [module NAME] and overridden
    by every route, was never read, and config_check_unused called it
    unknown.  It is known; its value is still type-checked."""
    conf = CONFKEYS + "greeting = from-route\n\n[module confkeys]\ngreeting = unused\n"
    r = molt_check(conf)
    assert r.rc == 0, r.stderr
    m = molt(conf=conf)
    assert json.loads(m.get("/c")[2])["greeting"] == "from-route"
    r = molt_check(CONFKEYS + "count = 5\n\n[module confkeys]\ncount = zz\n")
    line, msg = error_at(r)
    assert line == r.line_of("count = zz"), r.stderr
    assert "expected an integer" in msg, msg


def test_module_check_hook_error(molt_check):
    r = molt_check(CONFKEYS + "count = 500\n")
    line, msg = error_at(r)
    assert line in (r.line_of("count = 500"), r.line_of("[route /c]"))


def test_required_key_missing(molt_check):
    r = molt_check("[route /c]\nmodule = confkeys\ncount = 5\n")
    line, msg = error_at(r)
    assert line == r.line_of("[route /c]")
    assert "token" in msg


def test_error_in_second_file_line_counting(molt_check):
    """Line numbers count comments, blank lines and continuation lines."""
    r = molt_check("; comment\n\n# another\n" + CONFKEYS +
                   "greeting = a\n  b\n  c\n\n[route /z]\nmodule = hello\nnope = 1\n")
    line, msg = error_at(r)
    assert line == r.line_of("nope = 1")


# ------------------------------------------------------- module loading

def test_abi_mismatch_refused(molt_check):
    r = molt_check("[route /x]\nmodule = abi_mismatch\n")
    assert r.rc == 1
    so = os.path.join(TEST_MODULES_DIR, "abi_mismatch.so")
    assert so in r.stderr
    assert "99.0" in r.stderr and "1.4" in r.stderr
    error_at(r)


def test_newer_minor_abi_refused(molt_check):
    """A module built for 1.5 may call what a 1.4 molt lacks: refused, with
    both versions named."""
    r = molt_check("[route /x]\nmodule = abi_newer\n")
    assert r.rc == 1
    assert os.path.join(TEST_MODULES_DIR, "abi_newer.so") in r.stderr
    assert "built for module ABI 1.5" in r.stderr, r.stderr
    assert "provides module ABI 1.4" in r.stderr, r.stderr
    error_at(r)


def test_older_minor_abi_loads_and_serves(molt):
    """A minor release only adds: a module built for 1.0 runs unchanged."""
    m = molt(conf="[route /old]\nmodule = abi_older\n")
    st, _, body = m.get("/old")
    assert st == 200 and body == b"built for 1.0\n"


def test_bad_magic_refused(molt_check):
    r = molt_check("[route /x]\nmodule = bad_magic\n")
    assert r.rc == 1
    assert os.path.join(TEST_MODULES_DIR, "bad_magic.so") in r.stderr
    assert "magic" in r.stderr.lower()
    error_at(r)


HANDLE = "static int h(molt_request *r) { return molt_reply(r, 200, NULL, \"\", 0); }\n"


@pytest.mark.parametrize("name,source,needle", [
    ("short", "#include <stdint.h>\n"
     "struct mine { uint16_t major, minor; uint32_t magic; };\n"
     "__attribute__((visibility(\"default\"))) const struct mine molt_module"
     " = { 1, 1, 0x544c4f4dU };\n",
     r"its molt_module is 8 bytes, where a struct molt_module of module ABI "
     r"1\.\d+ is \d+; rebuild it against <molt/module.h>"),
    ("func", "__attribute__((visibility(\"default\"))) int molt_module(void)"
     " { return 0; }\n",
     r"its molt_module is a function, not the const struct molt_module"),
    ("twice", "#include <molt/module.h>\n" + HANDLE +
     "static const struct molt_conf_key keys[] = {\n"
     " { \"size\", MOLT_CONF_SIZE, 0, \"1k\", NULL },\n"
     " { \"size\", MOLT_CONF_INT, 0, \"1\", NULL },\n"
     " { NULL, 0, 0, NULL, NULL } };\n"
     "MOLT_EXPORT const struct molt_module molt_module = { MOLT_MODULE_HEADER,"
     " .name = \"twice\", .conf_keys = keys, .handle = h };\n",
     r"\[route /x\] module twice declares the key 'size' twice"),
    ("owner", "#include <molt/module.h>\n" + HANDLE +
     "static const struct molt_conf_key keys[] = {\n"
     " { \"methods\", MOLT_CONF_STRING, 0, \"\", NULL },\n"
     " { NULL, 0, 0, NULL, NULL } };\n"
     "MOLT_EXPORT const struct molt_module molt_module = { MOLT_MODULE_HEADER,"
     " .name = \"owner\", .conf_keys = keys, .handle = h };\n",
     r"\[route /x\] module owner declares a key 'methods', which is molt's "
     r"own route key"),
], ids=["short", "func", "twice", "owner"])
def test_module_struct_and_keys_are_checked(molt_check, tmp_path, name, source,
                                            needle):
    """An 8-byte molt_module was read past its end and reported as
    "calls itself '(null)'"; a function named molt_module as "bad magic";
    a key declared twice got a type error against the second declaration;
    a key named "methods" or "module" was silently shared with molt's."""
    d = tmp_path / "mods"
    d.mkdir()
    (d / (name + ".c")).write_text(source)
    cc = os.environ.get("CC", "cc")
    p = subprocess.run([cc, "-shared", "-fPIC", "-fvisibility=hidden",
                        "-I" + os.path.join(SRC_DIR, "include"), name + ".c",
                        "-o", name + ".so"], cwd=str(d), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True)
    assert p.returncode == 0, p.stdout
    r = molt_check("[server]\nlisten = 127.0.0.1:0\nmodules_dir = %s\n\n"
                   "[route /x]\nmodule = %s\n" % (d, name), server=False)
    assert r.rc == 1, r.stderr
    assert re.search(needle, r.stderr), r.stderr
    if name in ("short", "func"):
        assert str(d / (name + ".so")) in r.stderr, r.stderr


def test_module_that_cannot_load_is_named_not_its_copy(molt_check, tmp_path):
    """dlopen's error began with the private copy's /proc/self/fd/N, which
    tells a user nothing: the line names the file and the loader's
    reason only."""
    d = tmp_path / "mods"
    d.mkdir()
    (d / "notelf.so").write_text("not a shared object\n")
    r = molt_check("[server]\nlisten = 127.0.0.1:0\nmodules_dir = %s\n\n"
                   "[route /x]\nmodule = notelf\n" % d, server=False)
    assert r.rc == 1, r.stderr
    assert re.search(r":\d+: cannot load module %s: (invalid ELF header|"
                     r"file too short)" % re.escape(str(d / "notelf.so")),
                     r.stderr), r.stderr
    assert "/proc/self/fd" not in r.stderr, r.stderr


def startup(tmp_path, body):
    """Start molt (no -t) on a config that must fail: (rc, output, path)."""
    d = str(tmp_path)
    text = server_section(d) + "\n" + body
    path = os.path.join(d, "molt.conf")
    with open(path, "w") as f:
        f.write(text)
    p = run_molt(["-c", path], timeout=20, cwd=d)
    out = p.stderr + p.stdout + read_text(os.path.join(d, "error.log"))
    return p.returncode, out, path, text


@pytest.mark.parametrize("body,needles", [
    ("[route /x]\nmodule = abi_mismatch\n", ["abi_mismatch.so", "99.0", "1.4"]),
    ("[route /x]\nmodule = bad_magic\n", ["bad_magic.so", "magic"]),
    ("[bogus]\n", []),
    (CONFKEYS + "count = 500\n", []),
])
def test_startup_refuses_bad_config(tmp_path, body, needles):
    rc, out, path, text = startup(tmp_path, body)
    assert rc == 1, out
    assert re.search(re.escape(path) + r":\d+: ", out), out
    for n in needles:
        assert n in out
    assert "listening on" not in out


# ------------------------------------------------- the module check child

BADCHECK = "[route /b]\nmodule = badcheck\naction = %s\n"


IN_BADCHECK = " in the check hook of module badcheck for [route /b]"


def test_check_crash_in_module_check_is_reported(molt_check):
    """molt -t runs the modules' checks in a child, as a start does: a check
    that crashes is a refusal with a message, not a crash of molt -t.  The
    message names the module and the route whose check it was."""
    r = molt_check(BADCHECK % "crash")
    line, msg = error_at(r)
    assert line == r.line_of("[route /b]"), (line, r.stderr)
    assert msg == "the module check crashed (signal 11)" + IN_BADCHECK, msg


def test_check_that_exits_is_not_a_pass(molt_check):
    """A check that calls exit(0) ended the validator with status 0, which
    was taken for "every check passed"."""
    r = molt_check(BADCHECK % "exit")
    line, msg = error_at(r)
    assert line == r.line_of("[route /b]"), (line, r.stderr)
    assert msg == ("the module check ended before it finished "
                   "(a module called exit?)" + IN_BADCHECK), msg


def test_truncated_module_file_is_named(molt_check, tmp_path):
    """A module file cut short (a copy still running, a full disk) kills
    the loader with SIGBUS.  The refusal says which file, at the line of
    the route that loads it, not just "signal 7"."""
    mods = tmp_path / "mods"
    mods.mkdir()
    so = str(mods / "hello.so")
    shutil.copy(os.path.join(MODULES_DIR, "hello.so"), so)
    os.truncate(so, os.path.getsize(so) // 3)
    r = molt_check("[server]\nlisten = 127.0.0.1:0\nmodules_dir = %s\n\n"
                   "[route /hello]\nmodule = hello\n" % mods, server=False)
    line, msg = error_at(r)
    assert line == r.line_of("module = hello"), (line, r.stderr)
    assert re.match(r"the module check crashed \(signal \d+\) while loading "
                    + re.escape(so) + r" \(module hello\)$", msg), msg


def test_check_unterminated_message(molt_check):
    """A check that fills its message buffer without a terminating NUL: the
    message is cut at the buffer, nothing past it is read."""
    r = molt_check(BADCHECK % "unterminated")
    line, msg = error_at(r)
    assert line == r.line_of("[route /b]")
    assert re.match(r"^\[route /b\] module badcheck: A+$", msg), msg
    assert not SANITIZER_RE.search(r.stderr), r.stderr


def test_check_that_hangs_times_out(molt_check, tmp_path):
    """A check that never returns is killed at check_timeout: molt -t and
    a start both exit 1 and say so, and a start never listens."""
    t0 = time.monotonic()
    r = molt_check("check_timeout = 1s\n" + BADCHECK % "hang")
    line, msg = error_at(r)
    assert line == r.line_of("[route /b]"), (line, r.stderr)
    assert msg == "the module check timed out after 1 s" + IN_BADCHECK, msg
    assert time.monotonic() - t0 < 10
    rc, out, path, text = startup(tmp_path, "check_timeout = 1s\n" + BADCHECK % "hang")
    assert rc == 1, out
    assert "the module check timed out after 1 s" in out, out
    assert "listening on" not in out


def test_modules_dir_the_user_cannot_read(molt_check, tmp_path):
    """The check loads the modules as [server] user, as the workers do: a
    modules_dir only root can enter is refused by molt -t and by a start,
    at the route's module line, with the real reason."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to user nobody")
    mods = tmp_path / "mods"
    mods.mkdir()
    shutil.copy(os.path.join(MODULES_DIR, "hello.so"), str(mods / "hello.so"))
    os.chmod(str(mods), 0o700)
    body = ("[server]\nlisten = 127.0.0.1:0\nworkers = 1\nuser = nobody\n"
            "modules_dir = %s\n\n[route /hello]\nmodule = hello\n" % mods)
    r = molt_check(body, server=False)
    line, msg = error_at(r)
    assert line == r.line_of("module = hello")
    assert "Permission denied" in msg and "not found" not in msg, msg
    conf = tmp_path / "start.conf"
    conf.write_text(body)
    p = run_molt(["-c", str(conf)], timeout=20, cwd=str(tmp_path))
    assert p.returncode == 1, p.stderr
    assert re.search(re.escape(str(conf)) + r":%d: .*Permission denied" % line,
                     p.stderr), p.stderr
    assert "listening on" not in p.stderr
