"""
The bundled static module (modules/static.c) on a real molt: whole files
byte for byte (sendfile, with the head sent in the file's first segment),
HEAD, ranges, conditional requests, directories and index files, and
everything that must never be served: paths out of the root, symlinks
that leave it, dot files, FIFOs.
"""

import email.utils
import os
import re
import shutil
import socket
import struct
import subprocess
import time

import pytest

from conftest import lowest_free_fd, wait_for

MB = 1 << 20


@pytest.fixture
def site(tmp_path):
    """A document root with files of the sizes the benchmarks use, a
    directory with an index, one without, and a secret next to the root."""
    root = tmp_path / "www"
    (root / "docs").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / ".well-known").mkdir()
    files = {
        "1m.bin": os.urandom(MB),
        "64k.bin": os.urandom(64 * 1024),
        "hello.txt": b"hello, file\n",
        "page.html": b"<p>hi</p>\n",
        "zero.bin": b"",
        "docs/index.html": b"<h1>docs</h1>\n",
        ".hidden": b"dot file\n",
        ".well-known/security.txt": b"Contact: mailto:sec@example.invalid\n",
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    (tmp_path / "secret.txt").write_bytes(b"outside the root\n")
    return root, files


def start(molt, root, extra="", server_extra=""):
    return molt(conf="""\
[route /hello]
module = hello

[route /files]
module = static
root = %s
%s""" % (root, extra), server_extra=server_extra)


def get(c, path, headers=(), method="GET"):
    req = "%s %s HTTP/1.1\r\nHost: t\r\n" % (method, path)
    for h in headers:
        req += h + "\r\n"
    c.send((req + "\r\n").encode())
    return c.read_response(method)


# ------------------------------------------------------------ whole files
def test_files_are_served_byte_exact_on_one_connection(molt, site):
    """Each size twice on one keep-alive connection: the first write on a
    connection and the later ones take different paths (TCP_NODELAY is set
    at the second)."""
    root, files = site
    m = start(molt, root)
    c = m.raw_conn(timeout=30)
    for _ in range(2):
        for name in ("1m.bin", "64k.bin", "hello.txt"):
            r = get(c, "/files/" + name)
            assert r.status == 200, r
            assert r.body == files[name], (name, len(r.body))
            assert int(r.headers["content-length"]) == len(files[name])
            assert r.headers["accept-ranges"] == "bytes"
            assert "connection" not in r.headers
    r = get(c, "/hello")
    assert r.status == 200 and r.body == b"hello, world\n"
    c.close()


def test_pipelined_file_replies_arrive_whole_and_in_order(molt, site):
    root, files = site
    m = start(molt, root)
    c = m.raw_conn(timeout=30)
    names = ["1m.bin", "hello.txt", "64k.bin", "1m.bin", "page.html"]
    c.send(b"".join(b"GET /files/%s HTTP/1.1\r\nHost: t\r\n\r\n" % n.encode()
                    for n in names))
    for n in names:
        r = c.read_response()
        assert r.status == 200 and r.body == files[n], (n, r.status, len(r.body))
    c.close()


def test_file_reply_with_connection_close(molt, site):
    root, files = site
    m = start(molt, root)
    c = m.raw_conn(timeout=30)
    c.send(b"GET /files/1m.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    r = c.read_response()
    assert r.status == 200 and r.body == files["1m.bin"]
    assert r.headers["connection"] == "close"
    assert c.is_closed()


def test_empty_file(molt, site):
    root, _ = site
    m = start(molt, root)
    st, h, body = m.get("/files/zero.bin")
    assert st == 200 and body == b"" and h["content-length"] == "0"


def test_content_types_and_validators(molt, site):
    root, files = site
    m = start(molt, root)
    st, h, _ = m.get("/files/hello.txt")
    assert st == 200 and h["content-type"] == "text/plain; charset=utf-8"
    st, h, _ = m.get("/files/page.html")
    assert h["content-type"] == "text/html; charset=utf-8"
    st, h, _ = m.get("/files/1m.bin")
    assert h["content-type"] == "application/octet-stream"
    s = os.stat(root / "1m.bin")
    assert h["etag"] == '"%x-%x"' % (int(s.st_mtime), s.st_size)
    assert email.utils.parsedate_to_datetime(h["last-modified"]).timestamp() \
        == int(s.st_mtime)


def static_type_table():
    """(ext, type) for each row of the table in modules/static.c."""
    src = open(os.path.join(os.environ["MOLT_SRC_DIR"], "modules",
                            "static.c")).read()
    tbl = src[src.index("types[] = {"):]
    tbl = tbl[:tbl.index("\n};")]
    return [(e, "".join(re.findall(r'"([^"]*)"', t)))
            for e, t in re.findall(r'\{ "([^"]+)",\s*((?:"[^"]*"\s*)+)\}', tbl)]


def test_content_types_of_the_web(molt, site):
    """The types nginx's mime.types has for the web, and the few IANA ones
    it lacks: fonts, audio and video, archives.  The table had 19 rows, so
    a font or an mp3 went out as application/octet-stream.  Every row of
    the table is asked for, which also catches a row out of order (the
    lookup is a binary search)."""
    root, _ = site
    want = {
        "a.woff": "font/woff", "a.woff2": "font/woff2", "a.ttf": "font/ttf",
        "a.otf": "font/otf", "a.eot": "application/vnd.ms-fontobject",
        "a.mp3": "audio/mpeg", "a.mp4": "video/mp4", "a.webm": "video/webm",
        "a.ogg": "audio/ogg", "a.oga": "audio/ogg", "a.ogv": "video/ogg",
        "a.avif": "image/avif", "a.webp": "image/webp",
        "a.csv": "text/csv; charset=utf-8", "a.zip": "application/zip",
        "a.tar.gz": "application/gzip", "a.tar": "application/x-tar",
        "a.xhtml": "application/xhtml+xml", "a.wasm": "application/wasm",
        "a.json": "application/json", "a.xml": "application/xml",
        "a.pdf": "application/pdf", "a.ico": "image/x-icon",
        "a.svg": "image/svg+xml", "a.md": "text/markdown; charset=utf-8",
        "a.vtt": "text/vtt; charset=utf-8",
        "a.webmanifest": "application/manifest+json",
        "PHOTO.JPG": "image/jpeg", "a.3gp": "video/3gpp",
        "a.zst": "application/zstd", "a.unknown": "application/octet-stream",
        "noext": "application/octet-stream",
        "a.": "application/octet-stream",
    }
    table = static_type_table()
    for ext, t in table:
        want.setdefault("t." + ext, t)
    (root / "t").mkdir()
    for name in want:
        (root / "t" / name).write_bytes(b"x")
    m = start(molt, root)
    c = m.raw_conn()
    got = {}
    for name in want:
        r = get(c, "/files/t/" + name, method="HEAD")
        assert r.status == 200, (name, r)
        got[name] = r.headers["content-type"]
    c.close()
    assert got == want
    assert len(table) > 70, table


def test_head_has_the_headers_and_no_body(molt, site):
    root, files = site
    m = start(molt, root)
    c = m.raw_conn()
    r = get(c, "/files/64k.bin", method="HEAD")
    assert r.status == 200 and int(r.headers["content-length"]) == 64 * 1024
    # Nothing of the file may follow on the connection: the next reply
    # must start right away.
    r = get(c, "/files/hello.txt")
    assert r.status == 200 and r.body == files["hello.txt"]
    c.close()


# ----------------------------------------------------------------- ranges
@pytest.mark.parametrize("spec, lo, hi", [
    ("bytes=0-99", 0, 99),
    ("bytes=1000-", 1000, MB - 1),
    ("bytes=-100", MB - 100, MB - 1),
    ("bytes=500000-500000", 500000, 500000),
    ("bytes=1048000-2000000", 1048000, MB - 1),
])
def test_single_range(molt, site, spec, lo, hi):
    root, files = site
    m = start(molt, root)
    c = m.raw_conn(timeout=30)
    r = get(c, "/files/1m.bin", ["Range: " + spec])
    assert r.status == 206, r
    assert r.headers["content-range"] == "bytes %d-%d/%d" % (lo, hi, MB)
    assert r.body == files["1m.bin"][lo:hi + 1]
    # The connection goes on.
    r = get(c, "/files/hello.txt")
    assert r.status == 200 and r.body == files["hello.txt"]
    c.close()


def test_unsatisfiable_range_is_416(molt, site):
    root, _ = site
    m = start(molt, root)
    st, h, _ = m.get("/files/1m.bin", headers={"Range": "bytes=%d-" % MB})
    assert st == 416 and h["content-range"] == "bytes */%d" % MB


@pytest.mark.parametrize("spec", ["bytes=0-", "bytes=-1", "bytes=0-0",
                                  "bytes=5-9"])
def test_range_on_an_empty_file_is_ignored(molt, site, spec):
    """An empty file has no byte to satisfy a range with, but a 416 makes a
    browser's media element, which sends "bytes=0-", fail to load it:
    nginx ignores the Range there and sends the (empty) file, and so does
    molt."""
    root, _ = site
    m = start(molt, root)
    st, h, body = m.get("/files/zero.bin", headers={"Range": spec})
    assert st == 200 and body == b"" and h["content-length"] == "0", (spec, st)
    assert "content-range" not in h


@pytest.mark.parametrize("spec, want", [
    ("bytes=0-99999999999999999999", (206, 0, 65535)),
    ("bytes=100-184467440737095516160", (206, 100, 65535)),
    ("bytes=-99999999999999999999", (206, 0, 65535)),
    ("bytes=99999999999999999999-", (416,)),
    ("bytes=99999999999999999999-99999999999999999999", (416,)),
])
def test_range_numbers_too_large_to_parse(molt, site, spec, want):
    """RFC 9110 14.1.1: a recipient anticipates positions larger than any
    integer it holds.  A last-pos past the end means the end (206), a
    first-pos past it is unsatisfiable (416); such a header was ignored."""
    root, files = site
    m = start(molt, root)
    st, h, body = m.get("/files/64k.bin", headers={"Range": spec})
    assert st == want[0], (spec, st, h)
    if st == 206:
        lo, hi = want[1:]
        assert h["content-range"] == "bytes %d-%d/65536" % (lo, hi)
        assert body == files["64k.bin"][lo:hi + 1]
    else:
        assert h["content-range"] == "bytes */65536"


def test_several_ranges_get_the_whole_file(molt, site):
    root, files = site
    m = start(molt, root)
    st, h, body = m.get("/files/64k.bin", headers={"Range": "bytes=0-1,5-9"})
    assert st == 200 and body == files["64k.bin"] and "content-range" not in h


def test_if_range(molt, site):
    root, files = site
    m = start(molt, root)
    _, h, _ = m.get("/files/1m.bin")
    st, _, body = m.get("/files/1m.bin", headers={
        "Range": "bytes=0-9", "If-Range": h["etag"]})
    assert st == 206 and body == files["1m.bin"][:10]
    st, _, body = m.get("/files/1m.bin", headers={
        "Range": "bytes=0-9", "If-Range": '"stale-0"'})
    assert st == 200 and body == files["1m.bin"]


# ------------------------------------------------------------ conditional
def test_conditional_requests_answer_304(molt, site):
    root, _ = site
    m = start(molt, root)
    _, h, _ = m.get("/files/hello.txt")
    for hdrs in ({"If-None-Match": h["etag"]},
                 {"If-None-Match": 'W/"x", ' + h["etag"]},
                 {"If-Modified-Since": h["last-modified"]}):
        st, h2, body = m.get("/files/hello.txt", headers=hdrs)
        assert st == 304 and body == b"", hdrs
        assert h2["etag"] == h["etag"]
    # The two obsolete date forms a recipient must accept (RFC 9110 5.6.7).
    t = email.utils.parsedate_to_datetime(h["last-modified"])
    for form in (t.strftime("%A, %d-%b-%y %H:%M:%S GMT"),
                 t.strftime("%a %b ") + ("%2d" % t.day) + t.strftime(" %H:%M:%S %Y")):
        st, _, body = m.get("/files/hello.txt", headers={"If-Modified-Since": form})
        assert st == 304 and body == b"", form
    # If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2).
    st, _, body = m.get("/files/hello.txt", headers={
        "If-None-Match": '"other"', "If-Modified-Since": h["last-modified"]})
    assert st == 200 and body == b"hello, file\n"


def test_if_match_and_if_unmodified_since_answer_412(molt, site):
    """RFC 9110 13.1.1 and 13.1.4, in the order of 13.2.2: If-Match (strong
    comparison, "*" matches any file), else If-Unmodified-Since; a failing
    one is 412 before If-None-Match, If-Modified-Since or a Range is
    looked at, as nginx answers.  Both were ignored."""
    root, files = site
    m = start(molt, root)
    _, h, _ = m.get("/files/hello.txt")
    etag, lm = h["etag"], h["last-modified"]
    past = "Sun, 06 Nov 1994 08:49:37 GMT"
    body = files["hello.txt"]
    for hdrs, want in (
            ({"If-Match": etag}, 200),
            ({"If-Match": "*"}, 200),
            ({"If-Match": '"other", ' + etag}, 200),
            ({"If-Match": '"other"'}, 412),
            ({"If-Match": "W/" + etag}, 412),       # weak never matches
            ({"If-Match": "garbage"}, 412),
            ({"If-Unmodified-Since": lm}, 200),
            ({"If-Unmodified-Since": past}, 412),
            ({"If-Unmodified-Since": "not a date"}, 200),   # ignored
            # If-Match decides; If-Unmodified-Since is not looked at.
            ({"If-Match": etag, "If-Unmodified-Since": past}, 200),
            ({"If-Match": '"other"', "If-Unmodified-Since": lm}, 412),
            # 412 comes before 304 ...
            ({"If-Match": '"other"', "If-None-Match": etag}, 412),
            ({"If-Unmodified-Since": past, "If-Modified-Since": lm}, 412),
            # ... and a passing one leaves them their say.
            ({"If-Match": etag, "If-None-Match": etag}, 304),
            # ... and before a Range.
            ({"If-Match": '"other"', "Range": "bytes=0-1"}, 412),
            ({"If-Unmodified-Since": past, "Range": "bytes=0-1"}, 412),
            ({"If-Match": etag, "Range": "bytes=0-1"}, 206),
    ):
        st, h2, b = m.get("/files/hello.txt", headers=hdrs)
        assert st == want, (hdrs, st, b)
        assert h2["etag"] == etag, hdrs
        if st == 200:
            assert b == body, hdrs
        elif st == 206:
            assert b == body[:2], hdrs
    st, _, _ = m.get("/files/hello.txt", method="HEAD",
                     headers={"If-Match": '"other"'})
    assert st == 412
    st, _, _ = m.get("/files/nope.txt", headers={"If-Match": "*"})
    assert st == 404


def test_repeated_etag_header_lines_make_one_list(molt, site):
    """RFC 9110 5.3: field lines of one name combine into one list, as a
    proxy may well have split them.  Only the first line was read, so the
    tag on the second never matched."""
    root, files = site
    m = start(molt, root)
    _, h, _ = m.get("/files/hello.txt")
    etag = h["etag"]
    c = m.raw_conn()
    r = get(c, "/files/hello.txt",
            ['If-None-Match: "a"', 'If-None-Match: "b", ' + etag])
    assert r.status == 304 and r.body == b"", r
    r = get(c, "/files/hello.txt", ['If-None-Match: "a"', 'If-None-Match: "b"'])
    assert r.status == 200 and r.body == files["hello.txt"], r
    r = get(c, "/files/hello.txt", ['If-Match: "a"', "If-Match: " + etag])
    assert r.status == 200 and r.body == files["hello.txt"], r
    r = get(c, "/files/hello.txt", ['If-Match: "a"', 'If-Match: "b"'])
    assert r.status == 412, r
    c.close()


# ---------------------------------------------------- directories, index
def test_directory_redirect_and_index(molt, site):
    root, files = site
    m = start(molt, root)
    st, h, _ = m.get("/files/docs?x=1")
    assert st == 301 and h["location"] == "/files/docs/?x=1"
    st, h, body = m.get("/files/docs/")
    assert st == 200 and body == files["docs/index.html"]
    assert h["content-type"] == "text/html; charset=utf-8"
    st, _, _ = m.get("/files/empty/")      # no index, and no listing
    assert st == 404
    st, _, _ = m.get("/files/hello.txt/")  # a file is not a directory
    assert st == 404


@pytest.mark.parametrize("target, location", [
    (b"//files/docs", b"/files/docs/"),
    # Browsers read "\" as "/" in a Location: "/\evil.example/" is
    # "//evil.example/", another host (nginx sends "http://HOST/files/docs/").
    (b"/\\evil.example/../files/docs", b"/evil.example/../files/docs/"),
    (b"/\\\\evil.example/../files/docs", b"/evil.example/../files/docs/"),
    (b"//\\/evil.example/%2e%2e/%2e%2e/files/docs?x",
     b"/evil.example/%2e%2e/%2e%2e/files/docs/?x"),
])
def test_redirect_never_points_at_another_host(molt, site, target, location):
    """"//files/docs" is the directory docs; a Location of "//files/docs/"
    would send a browser to the host "files"."""
    root, _ = site
    m = start(molt, root)
    r = m.raw(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert r.startswith(b"HTTP/1.1 301 "), r[:300]
    assert b"\r\nLocation: " + location + b"\r\n" in r, r[:300]


# ------------------------------------------------- what is never served
@pytest.mark.parametrize("target", [
    "/files/../secret.txt",
    "/files/%2e%2e/secret.txt",
    "/files/%2E%2E/%2e%2e/secret.txt",
    "/files/docs/../../secret.txt",
    "/files/..%2fsecret.txt",
    "/files/..%5csecret.txt",
    "/files/hello.txt%00.html",
])
def test_paths_out_of_the_root_are_refused(molt, site, target):
    root, _ = site
    m = start(molt, root)
    r = m.raw(b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
              % target.encode())
    assert b"outside the root" not in r
    status = int(r.split(b" ", 2)[1])
    assert status in (400, 404), r[:200]


@pytest.mark.parametrize("query", ["x=%5C", "x=%5c%5C", "x=%00", "a=1&b=%00%5c"])
def test_encoded_nul_or_backslash_in_the_query_is_not_the_path(molt, site,
                                                               query):
    """The encoded NUL and backslash refused in the path are the query
    string's business after the '?': a search for "a\\b" got 400."""
    root, files = site
    m = start(molt, root)
    st, _, body = m.get("/files/hello.txt?" + query)
    assert st == 200 and body == files["hello.txt"], (query, st)
    st, _, _ = m.get("/files/hello.txt%5c?" + query)
    assert st == 400


def test_symlinks(molt, site, tmp_path):
    """A symlink inside the root works; one that leads out answers 404,
    as if it did not exist."""
    root, files = site
    os.symlink(str(root / "hello.txt"), str(root / "inside.txt"))
    os.symlink(str(tmp_path / "secret.txt"), str(root / "outside.txt"))
    os.symlink(str(tmp_path), str(root / "updir"))
    m = start(molt, root)
    st, _, body = m.get("/files/inside.txt")
    assert st == 200 and body == files["hello.txt"]
    for p in ("/files/outside.txt", "/files/updir/secret.txt"):
        st, _, body = m.get(p)
        assert st == 404 and b"outside the root" not in body, p


# Denies every open of one file with fanotify (FAN_OPEN_PERM, FAN_DENY):
# EPERM for that file alone, as an LSM or a scanner gives.  Says "ready"
# once the mark is set, "unsupported" if the kernel or the privileges do
# not allow it, and denies until its stdin closes.
DENY_OPEN = r"""
#include <sys/fanotify.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int
main(int argc, char **argv)
{
	struct fanotify_event_metadata ev[16];
	struct fanotify_response resp;
	struct pollfd pfd[2];
	ssize_t n, i;
	int fan;

	if (argc != 2)
		return 2;
	fan = fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC, O_RDONLY);
	if (fan == -1 || fanotify_mark(fan, FAN_MARK_ADD, FAN_OPEN_PERM,
	    AT_FDCWD, argv[1]) == -1) {
		printf("unsupported %s\n", strerror(errno));
		return 0;
	}
	printf("ready\n");
	fflush(stdout);
	pfd[0].fd = fan;
	pfd[0].events = POLLIN;
	pfd[1].fd = 0;
	pfd[1].events = POLLIN;
	for (;;) {
		if (poll(pfd, 2, -1) == -1) {
			if (errno == EINTR)
				continue;
			return 1;
		}
		if (pfd[1].revents)
			return 0;
		if ((n = read(fan, ev, sizeof(ev))) <= 0)
			return 1;
		for (i = 0; i < n / (ssize_t)sizeof(ev[0]); i++) {
			resp.fd = ev[i].fd;
			resp.response = FAN_DENY;
			if (write(fan, &resp, sizeof(resp)) != sizeof(resp))
				return 1;
			if (ev[i].fd >= 0)
				close(ev[i].fd);
		}
	}
}
"""


def test_one_denied_file_leaves_symlinks_working(molt, site, tmp_path):
    """An open refused for one file (EPERM from a fanotify or LSM policy)
    is 403 for that file alone.  It was taken for a seccomp filter that
    blocks openat2: the worker went over to the walk that follows no
    symlink, and every symlink in the root answered 404 from then on.
    Whether openat2 is there is decided once, when the worker starts."""
    root, files = site
    os.symlink("hello.txt", str(root / "link.txt"))
    (root / "denied.txt").write_bytes(b"no\n")
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        pytest.fail("a C compiler is needed (Debian package gcc)")
    subprocess.run([cc, "-o", str(tmp_path / "deny_open"), "-x", "c", "-"],
                   input=DENY_OPEN.encode(), check=True)
    helper = subprocess.Popen([str(tmp_path / "deny_open"),
                               str(root / "denied.txt")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        line = helper.stdout.readline().decode()
        if not line.startswith("ready"):
            pytest.skip("fanotify permission events: " + line.strip())
        m = molt(conf="""\
[route /files]
module = static
root = %s
""" % root, workers=1)
        st, _, body = m.get("/files/link.txt")
        assert st == 200 and body == files["hello.txt"]
        st, _, body = m.get("/files/denied.txt")
        assert st == 403 and b"no" not in body
        for _ in range(3):
            st, _, body = m.get("/files/link.txt")
            assert st == 200 and body == files["hello.txt"], (st, body)
        st, _, body = m.get("/files/denied.txt")
        assert st == 403
        assert "openat2 unavailable" not in m.log()
    finally:
        helper.stdin.close()
        helper.wait(10)


# A seccomp filter as older container runtimes (Docker before 20.10) had:
# openat2 is not in their list, so it fails with ENOSYS (some say EPERM).
NO_OPENAT2 = r"""
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#if defined(__x86_64__)
#define ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define ARCH AUDIT_ARCH_AARCH64
#endif

int
main(int argc, char **argv)
{
#if defined(ARCH) && defined(SYS_openat2)
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARCH, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat2, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(f) / sizeof(f[0]), f };

	if (argc < 2)
		return 2;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == -1) {
		fprintf(stderr, "seccomp: %s\n", strerror(errno));
		return 77;
	}
	execv(argv[1], argv + 1);
	fprintf(stderr, "exec %s: %s\n", argv[1], strerror(errno));
	return 2;
#else
	(void)argc;
	(void)argv;
	fprintf(stderr, "no seccomp filter for this architecture\n");
	return 77;
#endif
}
"""


def test_without_openat2_paths_are_walked_and_no_symlink_is_followed(
        molt, site, tmp_path):
    """Under a seccomp filter that refuses openat2 the worker says so once
    and walks each path one component at a time with O_NOFOLLOW: files,
    subdirectories, indexes and ranges work, and every symlink, inside the
    root or out of it, in the last component or in the middle, is 404."""
    root, files = site
    os.symlink("hello.txt", str(root / "link.txt"))
    os.symlink(str(tmp_path / "secret.txt"), str(root / "out.txt"))
    os.symlink("docs", str(root / "docs-link"))
    os.symlink(str(tmp_path), str(root / "up"))
    (root / "docs" / "deep").mkdir()
    (root / "docs" / "deep" / "a.txt").write_bytes(b"deep\n")
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        pytest.fail("a C compiler is needed (Debian package gcc)")
    wrap = str(tmp_path / "no_openat2")
    subprocess.run([cc, "-o", wrap, "-x", "c", "-"],
                   input=NO_OPENAT2.encode(), check=True)
    probe = subprocess.run([wrap, "/bin/true"], stderr=subprocess.PIPE)
    if probe.returncode == 77:
        pytest.skip(probe.stderr.decode().strip())
    assert probe.returncode == 0, probe.stderr
    m = molt(conf="""\
[route /files]
module = static
root = %s
""" % root, workers=1, wrapper=(wrap,))
    m.wait_log(r"static: openat2 unavailable \(Function not implemented\)")
    for name in ("hello.txt", "1m.bin", "zero.bin"):
        st, _, body = m.get("/files/" + name)
        assert st == 200 and body == files[name], (name, st)
    st, _, body = m.get("/files/docs/")
    assert st == 200 and body == files["docs/index.html"]
    st, _, body = m.get("/files/docs/deep/a.txt")
    assert st == 200 and body == b"deep\n"
    st, _, _ = m.get("/files/docs")
    assert st == 301
    st, _, body = m.get("/files/1m.bin", headers={"Range": "bytes=10-19"})
    assert st == 206 and body == files["1m.bin"][10:20]
    for path in ("link.txt", "out.txt", "docs-link/index.html", "docs-link/",
                 "up/secret.txt", "up/www/hello.txt"):
        st, _, body = m.get("/files/" + path)
        assert st == 404 and b"outside" not in body and b"hello" not in body, (path, st)
    st, _, _ = m.get("/files/nothing.txt")
    assert st == 404
    # Once in the start's check of the modules, once in the worker: never
    # per request.
    assert m.count_log(r"openat2 unavailable") == 2


def test_dot_files(molt, site):
    root, files = site
    m = start(molt, root)
    st, _, _ = m.get("/files/.hidden")
    assert st == 404
    st, _, body = m.get("/files/.well-known/security.txt")
    assert st == 200 and body == files[".well-known/security.txt"]
    m2 = start(molt, root, "dotfiles = on\n")
    st, _, body = m2.get("/files/.hidden")
    assert st == 200 and body == files[".hidden"]


def test_fifo_is_not_served_and_does_not_hang_the_worker(molt, site):
    root, _ = site
    os.mkfifo(str(root / "pipe"))
    m = start(molt, root, "")
    st, _, _ = m.get("/files/pipe", timeout=5)
    assert st == 404
    # The worker is free: it answers at once.
    st, _, _ = m.get("/hello", timeout=5)
    assert st == 200


def test_an_unopenable_node_is_named_in_the_log(molt, site):
    """A Unix socket in the root cannot be opened (ENXIO): the reply is
    500 and the log line names it relative to the root, as nginx names
    the file; it said only "static: open: No such device or address".
    The name comes from the request, so a control byte in it is escaped
    and cannot start a line of its own."""
    root, _ = site
    cwd = os.getcwd()
    socks = [socket.socket(socket.AF_UNIX) for _ in range(2)]
    try:
        os.chdir(str(root / "docs"))    # sun_path is short; tmp_path is not
        socks[0].bind("app.sock")
        socks[1].bind("a\n[error] forged.sock")
    finally:
        os.chdir(cwd)
    m = start(molt, root)
    m.expect_errors(r"static: open docs/a(pp|\\x0A\[error\] forged)\.sock: "
                    r"No such device or address")
    try:
        st, _, _ = m.get("/files/docs/app.sock")
        assert st == 500
        m.wait_log(r"\[error\] \d+: static: open docs/app\.sock: "
                   r"No such device or address$")
        st, _, _ = m.get("/files/docs/a%0A[error]%20forged.sock")
        assert st == 500
        m.wait_log(r"\[error\] \d+: static: open docs/a\\x0A\[error\] "
                   r"forged\.sock: No such device or address$")
        assert not re.search(r"^\[error\] forged", m.log(), re.M)
        st, _, _ = m.get("/hello")
        assert st == 200
    finally:
        for s in socks:
            s.close()


def test_other_methods_are_405_with_allow(molt, site):
    root, _ = site
    m = start(molt, root)
    st, h, _ = m.get("/files/hello.txt", method="POST", body=b"x")
    assert st == 405 and h["allow"] == "GET, HEAD"


def test_missing_root_answers_404_and_says_why(molt, tmp_path):
    m = start(molt, tmp_path / "nope")
    m.expect_errors(r"static: root .*nope: No such file or directory; serving 404")
    st, _, _ = m.get("/files/x")
    assert st == 404
    wait_for(lambda: m.count_log(r"static: root .*nope: No such file") > 0, 5,
             what="the error about the missing root")
    st, _, _ = m.get("/hello")
    assert st == 200


def test_root_symlink_swap_reaches_every_worker(molt, tmp_path):
    """A deploy that swaps root's symlink atomically (root = current ->
    releases/N) is served by every worker within a second or so, as nginx
    serves it at once; root was opened once per worker, so each kept
    serving the old release until it was replaced."""
    for rel in ("r1", "r2"):
        (tmp_path / rel).mkdir()
        (tmp_path / rel / "v.txt").write_text(rel + "\n")
    cur = tmp_path / "current"
    os.symlink("r1", cur)
    m = start(molt, cur)
    for _ in range(10):
        st, _, body = m.get("/files/v.txt")
        assert st == 200 and body == b"r1\n"
    tmp = tmp_path / "current.new"
    os.symlink("r2", tmp)
    os.replace(tmp, cur)
    time.sleep(1.2)
    bodies = [m.get("/files/v.txt")[2] for _ in range(20)]
    assert bodies == [b"r2\n"] * 20, bodies
    m.wait_log(r"static: root .*current is another directory now")


def test_root_that_appears_later_is_served(molt, tmp_path):
    root = tmp_path / "late"
    m = start(molt, root)
    m.expect_errors(r"static: root .*late: No such file or directory; serving 404")
    assert m.get("/files/a.txt")[0] == 404
    root.mkdir()
    (root / "a.txt").write_text("here\n")
    time.sleep(1.2)
    got = [m.get("/files/a.txt")[:3:2] for _ in range(10)]
    assert got == [(200, b"here\n")] * 10, got


def test_client_leaving_mid_file_costs_nobody_else(molt, site):
    """Clients that read a few bytes of the 1 MB file and reset: the
    worker drops them and serves everyone else."""
    root, files = site
    m = start(molt, root)
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", m.port), timeout=10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /files/1m.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        s.recv(100)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    st, _, body = m.get("/files/1m.bin", timeout=10)
    assert st == 200 and body == files["1m.bin"]


def test_file_truncated_while_sent_resets_the_connection(molt, site):
    """A file truncated while a slow client is sent it: sendfile queued
    references to the file's pages, and a truncation zeroes them, so the
    socket held megabytes of zeros posing as the file, and a clean close
    (FIN) handed them all to the client ahead of the short body.  The
    connection is reset now, which drops what is still unsent, and the log
    names the file, where it ended and what was still promised.  Another
    client is served as usual."""
    root, files = site
    size = 32 * MB
    path = root / "growing.bin"
    data = os.urandom(size)
    path.write_bytes(data)
    m = start(molt, root)
    m.expect_errors(r"sending .*growing\.bin to 127\.0\.0\.1:\d+: the file "
                    r"ended early \(truncated\?\) at offset \d+ with \d+ bytes "
                    r"still promised; resetting the connection")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(20)
    s.connect(("127.0.0.1", m.port))
    s.sendall(b"GET /files/growing.bin HTTP/1.1\r\nHost: t\r\n\r\n")
    got = b""
    while b"\r\n\r\n" not in got:
        d = s.recv(4096)
        assert d, got
        got += d
    head, body = got.split(b"\r\n\r\n", 1)
    assert b"Content-Length: %d\r\n" % size in head, head
    # The worker has queued what the socket takes by now; cut the file.
    time.sleep(0.3)
    os.truncate(str(path), MB)
    end = None
    try:
        while True:
            d = s.recv(1 << 20)
            if not d:
                end = "a clean close (FIN)"
                break
            body += d
    except ConnectionResetError:
        end = "reset"
    s.close()
    assert len(body) < size
    assert body[:MB] == data[:len(body[:MB])], "the file's own bytes changed"
    assert end == "reset", (end, len(body))
    m.wait_log(r"sending .*growing\.bin to .*: the file ended early")
    st, _, b = m.get("/files/1m.bin")
    assert st == 200 and b == files["1m.bin"]


# ------------------------------------------------------------ write_timeout
def slow_download(port, path, chunk, pause, limit_s):
    """Reads the reply to GET path chunk bytes at a time with a pause
    after each: a client on a slow link.  Returns (head, body, how it
    ended)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path.encode())
    got, end, t0 = b"", "limit", time.monotonic()
    try:
        while time.monotonic() - t0 < limit_s:
            d = s.recv(chunk)
            if not d:
                end = "closed"
                break
            got += d
            head, sep, body = got.partition(b"\r\n\r\n")
            if sep and len(body) >= int(re.search(
                    rb"Content-Length: (\d+)", head).group(1)):
                end = "whole"
                break
            time.sleep(pause)
    except ConnectionResetError:
        end = "reset"
    s.close()
    head, _, body = got.partition(b"\r\n\r\n")
    return head, body, end


def test_a_client_that_reads_slowly_but_steadily_gets_the_whole_file(molt, site):
    """write_timeout is for a client that reads nothing.  A socket is
    writable again only once a third of its buffer is free, megabytes on
    this path, so one that took 512 KB a second used to be cut after
    write_timeout (1 s here) with the file half sent.  The timer now
    starts again while the client takes at least 16 KB in it."""
    root, files = site
    data = os.urandom(6 * MB)
    (root / "6m.bin").write_bytes(data)
    m = start(molt, root, server_extra="write_timeout = 1s")
    head, body, end = slow_download(m.port, "/files/6m.bin", 32 * 1024,
                                    0.0625, 40)
    assert end == "whole" and body == data, (end, len(body))
    assert "write timeout" not in m.log()


def test_a_client_that_reads_nothing_is_cut_after_write_timeout(molt, site):
    """The other side: a client that stops reading is disconnected once
    write_timeout has passed with nothing taken, and the log says so."""
    root, files = site
    (root / "6m.bin").write_bytes(os.urandom(6 * MB))
    m = start(molt, root, server_extra="write_timeout = 1s")
    s = socket.create_connection(("127.0.0.1", m.port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(b"GET /files/6m.bin HTTP/1.1\r\nHost: t\r\n\r\n")
    t0 = time.monotonic()
    m.wait_log(r"write timeout for 127\.0\.0\.1:\d+", timeout=10)
    assert time.monotonic() - t0 >= 0.9
    s.close()
    st, _, b = m.get("/files/64k.bin")
    assert st == 200 and b == files["64k.bin"]


def test_out_of_descriptors_is_503_and_logged_once_not_per_request(molt, site):
    """A worker out of descriptors answers file requests 503, and each
    one logged a warning: as many lines as requests, for as long as it
    lasted, filling the disk while the server was already short.  The
    first is logged, then one line every 10 s at most with the count."""
    import resource
    root, files = site
    m = molt(conf="[route /files]\nmodule = static\nroot = %s\n" % root,
             workers=1)
    pid = m.worker_pids()[0]
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    c = m.raw_conn()
    assert get(c, "/files/hello.txt").status == 200      # accepted
    try:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (lowest_free_fd(pid), hard))
        for i in range(20):
            r = get(c, "/files/hello.txt")
            assert r.status == 503, (i, r)
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    assert m.count_log(r"static: open hello\.txt: Too many open files") == 1, m.log()
    r = get(c, "/files/hello.txt")
    assert r.status == 200 and r.body == files["hello.txt"], r
    c.close()
