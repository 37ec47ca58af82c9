# SPDX-License-Identifier: MIT
"""Regression tests for what an attack on the server found (docs/security.md): envelope
amplification, descriptor exhaustion, slow and silent clients, body memory before credentials,
transient open failures, strict JSON (trailing data, control characters, \\u0000), reply
amplification, request smuggling headers, pipelining with a half-close, and out-of-range
timestamps. Each test drives the real binaries over raw sockets where framing matters."""
import base64
import gzip
import json
import os
import resource
import select
import socket
import subprocess
import threading
import zlib
import time

from common import Server, Store, run_tests, wait_for_write_lock

MULT = float(os.environ.get("PS_TEST_TIMEOUT_MULT", "1"))

SPACE = "s1"


def setup(*server_args, preexec=None):
    st = Store()
    st.ctl("space", "create", SPACE)
    src = st.json("source", "create", SPACE, "--name", "web")
    token = st.ctl("token", "create", SPACE).stdout.strip()
    srv = Server(st, "--threads", "2", *server_args) if preexec is None else \
        LimitedServer(st, preexec, "--threads", "2", *server_args)
    return st, srv, src["write_key"], token


class LimitedServer(Server):
    """Server started with a resource limit applied in the child."""

    def __init__(self, store, preexec, *args):
        real = subprocess.Popen

        def popen(*a, **kw):
            kw["preexec_fn"] = preexec
            return real(*a, **kw)
        subprocess.Popen = popen
        try:
            super().__init__(store, *args)
        finally:
            subprocess.Popen = real


def basic(key):
    return "Basic " + base64.b64encode((key + ":").encode()).decode()


def raw(port, data, shut=False, timeout=10):
    """Sends bytes on a fresh connection and reads until the server closes (or timeout)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(timeout)
    s.sendall(data)
    if shut:
        s.shutdown(socket.SHUT_WR)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except socket.timeout:
        pass
    s.close()
    return out


def responses(data):
    """Splits raw HTTP/1.1 responses (Content-Length framed) into (status, headers, body)."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:]}
        n = int(headers.get("content-length", "0"))
        out.append((status, headers, rest[:n]))
        data = rest[n:]
    return out


def read_replies(s, count):
    """Reads `count` Content-Length framed replies from a connection that stays open."""
    buf, out = bytearray(), []
    while len(out) < count:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            got = responses(bytes(buf[:end + 4]))[0]
            n = int(got[1].get("content-length", "0"))
            if len(buf) >= end + 4 + n:
                out.append((got[0], got[1], bytes(buf[end + 4:end + 4 + n])))
                del buf[:end + 4 + n]
                continue
        chunk = s.recv(1 << 20)
        assert chunk, "the server closed the connection after %d replies" % len(out)
        buf += chunk
    return out


def post(path, body, key=None, extra=""):
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    auth = "Authorization: %s\r\n" % basic(key) if key else ""
    return ("POST %s HTTP/1.1\r\nHost: x\r\n%s%sContent-Length: %d\r\n\r\n"
            % (path, auth, extra, len(body))).encode() + body


def proc_stat(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick  # utime + stime, seconds


def peak_rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0


def stored(st, ident):
    p = st.ctl("--json", "inspect", SPACE, ident, "--events", "1000", check=False)
    return json.loads(p.stdout) if p.returncode == 0 else None


# ---- tests ----

def envelope_amplification():
    st, srv, wk, _ = setup()
    try:
        ctx = ",".join('"k%d":1' % i for i in range(30000))
        items = ",".join('{"type":"track","userId":"amp","event":"E"}' for _ in range(2500))
        body = '{"context":{%s},"batch":[%s]}' % (ctx, items)
        assert len(body) < 500 * 1024
        before = peak_rss_mb(srv.proc.pid)
        results = []

        def send():
            results.append(srv.track("batch", body, wk))
        threads = [threading.Thread(target=send) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for s, _, b in results:
            assert s == 200 and b["accepted"] == 0 and b["dropped_count"] == 2500, (s, b)
            assert {d["code"] for d in b["dropped"]} == {"payload_too_large"}, b["dropped"][:2]
        grew = peak_rss_mb(srv.proc.pid) - before
        assert grew < 200, "peak RSS grew %d MB" % grew  # was about 1 GB before the fix
        assert stored(st, "user_id:amp") is None
        # the same envelope through profilectl ingest: dropped, bounded
        p = st.ctl("--json", "ingest", SPACE, "-", input=body + "\n")
        summary = json.loads(p.stdout)
        assert summary["accepted"] == 0 and summary["dropped"]["too_large"] == 2500, summary
    finally:
        srv.stop()
        st.close()


def reply_amplification():
    st, srv, wk, _ = setup()
    try:
        body = '{"batch":[' + ",".join(["0"] * 255990) + "]}"
        s, h, b = srv.track("batch", body, wk, raw=True)
        assert s == 200 and len(b) < 20000, (s, len(b))
        b = json.loads(b)
        assert b["dropped_count"] == 255990 and len(b["dropped"]) == 100, b["dropped_count"]
    finally:
        srv.stop()
        st.close()


def strict_json():
    st, srv, wk, token = setup()
    try:
        port = srv.ingest_port
        two = '{"userId":"t1","event":"A"}{"userId":"t2","event":"B"}'
        s, _, b = srv.track("track", two, wk)
        assert s == 400 and b["error"]["code"] == "invalid_json", b
        assert "after the JSON value" in b["error"]["message"], b
        assert stored(st, "user_id:t1") is None
        ctl = '{"userId":"c1","event":"A","properties":{"x":"a\x01b"}}'
        s, _, b = srv.track("track", ctl, wk)
        assert s == 400 and "control character" in b["error"]["message"], b
        s, _, b = srv.track("identify", '{"userId":"victim\\u0000suffix"}', wk)
        assert s == 400 and "\\u0000" in b["error"]["message"], b
        s, _, b = srv.track("identify", '{"userId":"k1","traits":{"ab\\u0000c":1}}', wk)
        assert s == 400, b
        # in a batch only the bad item is dropped
        s, _, b = srv.track("batch", '{"batch":[{"type":"identify","userId":"v\\u0000x"},'
                                     '{"type":"identify","userId":"good"}]}', wk)
        assert s == 200 and b["accepted"] == 1 and b["dropped"][0]["index"] == 0, b
        assert stored(st, "user_id:good") is not None and stored(st, "user_id:v") is None
        # escaped control characters are fine, and every reply stays valid JSON
        s, _, b = srv.track("track", '{"userId":"e1","event":"A","properties":'
                                     '{"x":"a\\u0001b\\n"}}', wk)
        assert s == 200, b
        s, _, ev = srv.get("/v1/spaces/s1/collections/users/profiles/user_id:e1/events", token)
        assert s == 200 and ev["data"][0]["properties"]["x"] == "a\x01b\n", ev
        # profilectl ingest: a line holding two objects is malformed, not half-stored
        p = st.ctl("--json", "ingest", SPACE, "-",
                   input='{"type":"track","userId":"cli1","event":"A"}'
                         '{"type":"track","userId":"cli2","event":"B"}\n')
        summary = json.loads(p.stdout)
        assert summary["malformed_lines"] == 1 and summary["accepted"] == 0, summary
        assert stored(st, "user_id:cli1") is None
        # the delete body: \u0000 is refused, the identifier stays
        srv.track("identify", {"userId": "del", "traits": {"email": "del1@x.com"}}, wk)
        path = "/v1/spaces/s1/collections/users/profiles/user_id:del/external_ids/delete"
        s, _, b = srv.request("POST", path, token, body='{"delete_external_ids":[{"id":'
                              '"del1@x.com\\u0000zz","type":"email"}]}')
        assert s == 400, b
        ids = [x["id"] for x in stored(st, "user_id:del")["external_ids"]]
        assert "del1@x.com" in ids, ids
        del port
    finally:
        srv.stop()
        st.close()


def timestamps():
    st, srv, wk, _ = setup()
    try:
        for ts in ("9999-12-31T23:59:60-23:59", "2016-12-31T23:59:60Z",
                   "9999-12-31T23:59:59-00:01"):
            s, _, b = srv.track("track", {"userId": "ts", "event": "E", "timestamp": ts}, wk)
            assert s == 400 and b["error"]["code"] == "invalid_timestamp", (ts, b)
        s, _, b = srv.track("track", {"userId": "ts", "event": "E",
                                      "timestamp": "9999-12-31T23:59:59.999Z"}, wk)
        assert s == 200, b
    finally:
        srv.stop()
        st.close()


def framing_and_smuggling():
    st, srv, wk, token = setup()
    try:
        port = srv.ingest_port
        msg = b'{"userId":"cl","event":"E"}'
        two_lengths = ("POST /v1/track HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n"
                       "Content-Length: %d\r\nContent-Length: 3\r\n\r\n"
                       % (basic(wk), len(msg))).encode() + msg
        r = responses(raw(port, two_lengths))
        assert r[0][0] == 400 and b"Content-Length" in r[0][2], r
        same = ("POST /v1/track HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n"
                "Content-Length: %d\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                % (basic(wk), len(msg), len(msg))).encode() + msg
        assert responses(raw(port, same))[0][0] == 200
        both = ("POST /v1/track HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n"
                "Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n"
                % (basic(wk), len(msg))).encode() + msg
        assert responses(raw(port, both))[0][0] == 400
        bare_lf = b"GET /healthz HTTP/1.1\nHost: x\n\n"
        assert responses(raw(port, bare_lf))[0][0] == 400
        # chunked bodies are read, and sizes are checked as they arrive
        chunked = ("POST /v1/track HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n"
                   "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" % basic(wk)).encode()
        chunked += b"5\r\n" + msg[:5] + b"\r\n" + (b"%x\r\n" % (len(msg) - 5)) + msg[5:] + \
            b"\r\n0\r\n\r\n"
        assert responses(raw(port, chunked))[0][0] == 200
        assert stored(st, "user_id:cl") is not None
        # a route that takes no body answers without reading one, and closes
        r = responses(raw(srv.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                                    b"Content-Length: 30000\r\n\r\n"))
        assert r[0][0] == 200 and r[0][1]["connection"] == "close", r
        r = responses(raw(srv.port, b"POST /nowhere HTTP/1.1\r\nHost: x\r\n"
                                    b"Content-Length: 30000\r\n\r\n"))
        assert r[0][0] == 404 and r[0][1]["connection"] == "close", r
        # an empty line before a request is ignored; absolute-form targets are read as paths;
        # HEAD is answered like GET, without the body
        r = responses(raw(srv.port, b"\r\nGET HTTP://x:1/healthz HTTP/1.1\r\nHost: x\r\n"
                                    b"Connection: close\r\n\r\n"))
        assert r[0][0] == 200 and r[0][2] == b'{"status":"ok"}', r
        head = raw(srv.port, ("HEAD /v1/spaces/s1/collections/users/profiles/user_id:cl/traits"
                              " HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\nConnection: close"
                              "\r\n\r\n" % basic(token)).encode())
        assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n"), head
        assert int(responses(head + b"")[0][1]["content-length"]) > 0
    finally:
        srv.stop()
        st.close()


def pipelining_and_half_close():
    st, srv, wk, _ = setup()
    try:
        data = b"".join(post("/v1/track", {"userId": "pipe%d" % i, "event": "E"}, wk)
                        for i in range(3))
        data += b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        r = responses(raw(srv.ingest_port, data, shut=True))
        assert [x[0] for x in r] == [200, 200, 200, 200], r
        for i in range(3):
            assert stored(st, "user_id:pipe%d" % i) is not None, i
    finally:
        srv.stop()
        st.close()


def replies_the_socket_cannot_take_at_once():
    """A reply is written straight to the socket when it fits; one that does not (a client
    that reads slowly) waits for the socket, and pipelined requests are answered in order
    either way, on a connection that stays open."""
    st, srv, wk, token = setup()
    try:
        path = os.path.join(st.dir, "big.ndjson")
        with open(path, "w") as f:
            for i in range(8):
                f.write(json.dumps({"type": "track", "userId": "big", "event": "E%d" % i,
                                    "messageId": "big-%d" % i,
                                    "properties": {"i": i, "blob": ("x%d" % i) * 14000}}) + "\n")
        st.ctl("ingest", SPACE, path)
        events = "/v1/spaces/%s/collections/users/profiles/user_id:big/events?limit=10" % SPACE
        get = lambda p: ("GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n\r\n"
                         % (p, basic(token))).encode()
        s = socket.socket()
        # a small receive window, and more replies than the server's send buffer holds (Linux
        # grows it up to 4 MiB on loopback): its writes stall until the client reads
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", srv.port))
        s.settimeout(20 * MULT)
        s.sendall(get(events) * 30 + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" +
                  get("/v1/spaces/%s/collections/users/profiles/user_id:big/traits" % SPACE))
        time.sleep(0.5)  # nothing read yet
        got = read_replies(s, 32)
        assert [r[0] for r in got] == [200] * 32, [r[0] for r in got]
        for r in got[:30]:
            body = json.loads(r[2])
            assert [e["event"] for e in body["data"]] == ["E%d" % i for i in range(7, -1, -1)], \
                body["data"][0]["event"]
            assert len(r[2]) > 8 * 28000, len(r[2])
        assert json.loads(got[30][2])["status"] in ("ok", "degraded"), got[30][2]
        assert json.loads(got[31][2])["traits"] == {}, got[31][2]
        # the connection is still open, and answers the next request at once
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_replies(s, 1)[0][0] == 200
        s.close()
        # many small pipelined requests in one packet: every one answered, in order
        s = socket.create_connection(("127.0.0.1", srv.port))
        s.settimeout(20 * MULT)
        s.sendall(b"".join(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-N: %d\r\n\r\n" % i
                           for i in range(20)))
        ids = [r[1]["request-id"] for r in read_replies(s, 20)]
        assert len(set(ids)) == 20, ids
        s.close()
    finally:
        srv.stop()
        st.close()


def reads_wait_only_with_a_valid_token():
    """A Profile API read waits (up to 2 s) for acknowledged events to reach the store, but
    only once its token is accepted: a request without a valid token must not hold a worker.
    `mdb_load` holding the store's write lock keeps the apply thread from committing."""
    st, srv, wk, token = setup()
    loader = None
    try:
        base = "/v1/spaces/%s/collections/users/profiles/user_id:waiter/" % SPACE
        assert srv.get(base + "traits", token)[0] == 404  # the space is open
        loader = subprocess.Popen(["mdb_load", os.path.join(st.dir, "spaces", SPACE)],
                                  stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        # a header and no records: mdb_load begins its write transaction and reads on
        loader.stdin.write(b"VERSION=3\nformat=bytevalue\ntype=btree\nHEADER=END\n")
        loader.stdin.flush()
        wait_for_write_lock(os.path.join(st.dir, "spaces", SPACE), loader.pid)
        assert srv.track("track", {"userId": "waiter", "event": "E"}, wk)[0] == 200
        for bad in ("nope", None):
            assert srv.get(base + "events", bad)[0] == 401
        warning = "read served before the store caught up"
        assert not any(warning in line for line in srv.log), "".join(srv.log)
        # a valid token waits, finds the store behind (the lock), and is served as it stands
        status = srv.get(base + "events", token)[0]
        assert status == 404, status
        deadline = time.time() + 10 * MULT
        while not any(warning in line for line in srv.log) and time.time() < deadline:
            time.sleep(0.05)  # the log is read by another thread
        assert any(warning in line for line in srv.log), "".join(srv.log)
        loader.stdin.close()  # mdb_load commits nothing and leaves: the store catches up
        assert loader.wait(timeout=30 * MULT) == 0, loader.stderr.read()
        status, _, body = srv.get(base + "events", token)
        assert status == 200 and [e["event"] for e in body["data"]] == ["E"], body
    finally:
        if loader and loader.poll() is None:
            loader.kill()
            loader.wait()
        srv.stop()
        st.close()


def pipelining_behind_a_long_poll():
    """A client that pipelines a head's worth of bytes behind a change-feed long poll: the
    server stops reading until the poll is answered, instead of being called back on every
    loop pass (a spinning worker), then answers what was pipelined."""
    st, srv, wk, token = setup()
    try:
        pid = srv.proc.pid
        s = socket.create_connection(("127.0.0.1", srv.port))
        s.settimeout(20 * MULT)
        poll = ("GET /v1/spaces/%s/changes?wait=3&after=99999999999 HTTP/1.1\r\nHost: x\r\n"
                "Authorization: %s\r\n\r\n" % (SPACE, basic(token))).encode()
        cpu0 = proc_stat(pid)
        s.sendall(poll + b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 20000 +
                  b"\r\n\r\n")
        got = read_replies(s, 2)
        cpu = proc_stat(pid) - cpu0
        assert got[0][0] == 200 and json.loads(got[0][2])["data"] == [], got[0][:2]
        assert got[1][0] == 431, got[1][:2]  # the pipelined head is over the limit
        assert cpu < 1.0, "the server spent %.2f s of CPU during a 3 s long poll" % cpu
        s.close()
    finally:
        srv.stop()
        st.close()


def slow_and_silent_clients():
    st, srv, wk, _ = setup("--timeout-ms", "2000", "--anonymous-body-mb", "1")
    try:
        port = srv.ingest_port
        # a trickle (a byte every 0.4 s) is cut off by the request's absolute deadline
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
        t0, got = time.time(), None
        while time.time() - t0 < 20:
            if select.select([s], [], [], 0.4)[0]:
                got = s.recv(4096)
                break
            try:
                s.sendall(b"a")
            except OSError:
                got = b""
                break
        assert got is not None and time.time() - t0 < 10, time.time() - t0
        assert got == b"" or got.startswith(b"HTTP/1.1 408"), got
        s.close()
        # an unknown write key is refused before its body is sent
        head = ("POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n"
                "Content-Length: 400000\r\n\r\n" % basic("bogus")).encode()
        r = responses(raw(port, head))
        assert r[0][0] == 400 and b"invalid_write_key" in r[0][2], r
        # Expect: 100-continue with a good key: told to go on
        s = socket.create_connection(("127.0.0.1", port))
        s.settimeout(5 * MULT)
        body = b'{"userId":"cont","event":"E"}'
        s.sendall(("POST /v1/track HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n"
                   "Expect: 100-continue\r\nContent-Length: %d\r\n\r\n"
                   % (basic(wk), len(body))).encode())
        assert s.recv(4096).startswith(b"HTTP/1.1 100 Continue"), "no 100 Continue"
        s.sendall(body)
        assert s.recv(4096).startswith(b"HTTP/1.1 200"), "no 200 after the body"
        s.close()
        # bodies without credentials share a small budget: the third 400 KB one waits its turn
        held = []
        for i in range(2):
            c = socket.create_connection(("127.0.0.1", port))
            c.sendall(b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Length: 400000\r\n\r\n"
                      + b"{" * 10)
            held.append(c)
        # the server reserves a body's budget once it has parsed its head: both held bodies
        srv.wait_metric('profiled_http_body_bytes_reserved{sender="anonymous"}',
                        lambda reserved: reserved >= 800000, seconds=10)
        r = responses(raw(port, b"POST /v1/batch HTTP/1.1\r\nHost: x\r\n"
                                b"Content-Length: 400000\r\n\r\n"))
        assert r[0][0] == 503 and "retry-after" in r[0][1], r
        for c in held:
            c.close()
        # the server is fine afterwards
        assert srv.track("track", {"userId": "after", "event": "E"}, wk)[0] == 200
    finally:
        srv.stop()
        st.close()


def descriptor_exhaustion():
    def low_nofile():
        resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))
    st, srv, wk, _ = setup("--timeout-ms", "3000", preexec=low_nofile)
    try:
        pid = srv.proc.pid
        cpu0, lines0 = proc_stat(pid), len(srv.log)
        flood = []
        for _ in range(150):
            try:
                flood.append(socket.create_connection(("127.0.0.1", srv.port), timeout=2))
            except OSError:
                break
        time.sleep(3)
        cpu = proc_stat(pid) - cpu0
        lines = len(srv.log) - lines0
        assert cpu < 1.0, "the server spent %.2f s of CPU on a descriptor flood" % cpu
        assert lines < 20, "".join(srv.log[lines0:])
        for c in flood:
            c.close()
        time.sleep(0.5)
        deadline = time.time() + 15
        while True:  # accepting resumes once descriptors are free
            try:
                if srv.track("track", {"userId": "fd", "event": "E"}, wk)[0] == 200:
                    break
            except OSError:
                pass
            assert time.time() < deadline, "the server did not recover"
            time.sleep(0.2)
    finally:
        srv.stop()
        st.close()


def http_connections(port):
    """profiled_http_connections by worker, from /metrics on a connection of its own."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    text = read_replies(s, 1)[0][2].decode()
    s.close()
    return [int(l.split()[-1]) for l in text.splitlines()
            if l.startswith("profiled_http_connections{")]


def keep_alive(port, count):
    """`count` connections, each answered once and left open."""
    conns = []
    for _ in range(count):
        c = socket.create_connection(("127.0.0.1", port), timeout=10)
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_replies(c, 1)[0][0] == 200
        conns.append(c)
    return conns


def connections_spread_over_the_loops():
    # the kernel hands an accept to whichever loop it wakes; long-lived connections must not
    # pile up on one of them
    st, srv, _, _ = setup()
    try:
        conns = keep_alive(srv.port, 8)
        held = http_connections(srv.port)  # the 8, and the one asking
        assert len(held) == 2 and sum(held) == 9 and max(held) - min(held) <= 1, held
        for c in conns[:6]:
            c.close()
        deadline = time.time() + 10
        while sum(http_connections(srv.port)) != 3:  # the 2 left, and the one asking
            assert time.time() < deadline, http_connections(srv.port)
            time.sleep(0.1)
        more = keep_alive(srv.port, 4)  # new ones go where there is room
        held = http_connections(srv.port)
        assert sum(held) == 7 and max(held) - min(held) <= 1, held
        for c in conns[6:] + more:
            c.close()
    finally:
        srv.stop()
        st.close()


def connection_cap_waits_then_serves():
    st, srv, _, _ = setup("--max-connections", "4")
    try:
        conns = keep_alive(srv.port, 4)
        extra = socket.create_connection(("127.0.0.1", srv.port), timeout=1)
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        try:  # every loop is full: it waits in the backlog, unanswered
            got = extra.recv(100)
            raise AssertionError("answered past the cap: %r" % got)
        except socket.timeout:
            pass
        conns[0].close()
        extra.settimeout(10)
        assert read_replies(extra, 1)[0][0] == 200
        for c in conns[1:] + [extra]:
            c.close()
    finally:
        srv.stop()
        st.close()


def unopenable_space_is_503():
    st, srv, wk, token = setup()
    try:
        # a space whose files cannot be opened: retry later, never "no such key"
        mdb = os.path.join(st.dir, "spaces", SPACE, "data.mdb")
        assert os.path.exists(mdb), os.listdir(os.path.dirname(mdb))
        os.rename(mdb, mdb + ".away")
        os.mkdir(mdb)
        s, h, b = srv.track("track", {"userId": "u", "event": "E"}, wk)
        assert s == 503 and h["Retry-After"], (s, b)
        s, h, b = srv.get("/v1/spaces/s1/collections/users/profiles/user_id:u/traits", token)
        assert s == 503 and h["Retry-After"], (s, b)
        os.rmdir(mdb)
        os.rename(mdb + ".away", mdb)
        assert srv.track("track", {"userId": "u", "event": "E"}, wk)[0] == 200
    finally:
        srv.stop()
        st.close()


def compressed_bodies():
    st, srv, wk, _ = setup()
    try:
        msg = json.dumps({"batch": [{"type": "track", "userId": "gz", "event": "E%d" % i}
                                    for i in range(50)]}).encode()
        h = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        s, _, b = srv.track("batch", gzip.compress(msg), wk, headers=h)
        assert s == 200 and b == {"success": True}, b
        s, _, b = srv.track("track", zlib.compress(b'{"userId":"df","event":"E"}'), wk,
                            headers={"Content-Encoding": "deflate"})
        assert s == 200, b
        raw_deflate = zlib.compressobj(wbits=-15)
        data = raw_deflate.compress(b'{"userId":"df2","event":"E"}') + raw_deflate.flush()
        s, _, b = srv.track("track", data, wk, headers={"Content-Encoding": "deflate"})
        assert s == 200, b
        # writeKey inside a gzipped body (no Authorization header)
        s, _, b = srv.track("track", gzip.compress(json.dumps(
            {"userId": "gzk", "event": "E", "writeKey": wk}).encode()), headers=h)
        assert s == 200, b
        assert len(stored(st, "user_id:gz")["events"]) == 50
        assert stored(st, "user_id:gzk") is not None
        # a bomb: 100 MB of zeros in about 100 KB stops at the route limit, 413
        bomb = gzip.compress(b"0" * (100 << 20), 9)
        assert len(bomb) < 500 * 1024
        before = peak_rss_mb(srv.proc.pid)
        s, _, b = srv.track("batch", bomb, wk, headers=h)
        assert s == 413 and b["error"]["code"] == "payload_too_large", (s, b)
        assert peak_rss_mb(srv.proc.pid) - before < 100
        # 1 GB of zeros (about 1 MB gzipped) is refused by its size before it is read, and
        # chunked, without a length, once the limit is passed
        big = gzip.compress(b"\0" * (1 << 30), 1)
        t0 = time.monotonic()
        s, _, b = srv.track("batch", big, wk, headers=h)
        assert s == 413 and b["error"]["code"] == "payload_too_large", (s, b)
        auth = base64.b64encode((wk + ":").encode())
        req = (b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n"
               b"Authorization: Basic " + auth + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(0, 640 * 1024, 65536):
            req += b"%x\r\n" % 65536 + big[i:i + 65536] + b"\r\n"
        r = responses(raw(srv.ingest_port, req))
        assert r[0][0] == 413 and json.loads(r[0][2])["error"]["code"] == "payload_too_large", r
        # a deflate stream of the same zeros (raw zlib, 1 GB in about 1 MB)
        z = zlib.compressobj(1)
        bomb = z.compress(b"\0" * (1 << 30)) + z.flush()
        s, _, b = srv.track("batch", bomb[:400 * 1024], wk, headers={"Content-Encoding": "deflate"})
        assert s == 413 and b["error"]["code"] == "payload_too_large", (s, b)
        assert time.monotonic() - t0 < 60 * MULT
        assert peak_rss_mb(srv.proc.pid) - before < 100
        s, _, b = srv.track("track", b"not gzip", wk, headers=h)
        assert s == 400 and b["error"]["code"] == "invalid_encoding", b
        s, _, b = srv.track("track", b"{}", wk, headers={"Content-Encoding": "br"})
        assert s == 400 and b["error"]["code"] == "unsupported_encoding", b
    finally:
        srv.stop()
        st.close()


def browsers_cors_and_settings():
    st, srv, wk, _ = setup()
    try:
        port = srv.ingest_port
        # a preflight from a web page's origin, then the call with the key in a text/plain body
        r = responses(raw(port, b"OPTIONS /v1/t HTTP/1.1\r\nHost: x\r\nOrigin: https://shop.example"
                                b"\r\nAccess-Control-Request-Method: POST\r\n"
                                b"Connection: close\r\n\r\n"))
        assert r[0][0] == 204 and r[0][1]["access-control-allow-origin"] == "*", r
        assert "POST" in r[0][1]["access-control-allow-methods"], r
        body = json.dumps({"userId": "web", "event": "Viewed", "writeKey": wk})
        s, h, b = srv.track("t", body, headers={"Content-Type": "text/plain",
                                                "Origin": "https://shop.example"})
        assert s == 200 and h["Access-Control-Allow-Origin"] == "*", (s, h, b)
        s, h, b = srv.track("t", {"event": "x"}, "bogus", headers={"Origin": "https://a.b"})
        assert s == 400 and h["Access-Control-Allow-Origin"] == "*", h
        # the settings document analytics.js loads from its cdnURL
        s, h, doc = srv.get("/v1/projects/%s/settings" % wk, headers={"Host": "track.local:9"},
                            port=port)
        assert s == 200 and h["Access-Control-Allow-Origin"] == "*", (s, doc)
        seg = doc["integrations"]["Segment.io"]
        assert seg["apiKey"] == wk and seg["apiHost"] == "track.local:9/v1", seg
        assert seg["protocol"] == "http" and doc["metrics"]["sampleRate"] == 0, doc
        s, _, b = srv.get("/v1/projects/nope/settings", port=port)
        assert s == 404, b
        # a per-source allow list: the listed origins (and subdomains of a "*." entry) are
        # named back, others get 403 and nothing is stored; servers send no Origin
        st.ctl("source", "origins", SPACE, "web", "https://Shop.example",
               "https://*.shop.example")
        for origin in ("https://shop.example", "https://www.shop.example"):
            s, h, b = srv.track("t", {"userId": "ok-" + origin, "event": "Viewed",
                                      "writeKey": wk}, headers={"Origin": origin})
            assert s == 200 and h["Access-Control-Allow-Origin"] == origin, (s, h, b)
            assert h["Vary"] == "Origin", h
        s, h, b = srv.track("t", {"userId": "evil", "event": "Viewed"}, wk,
                            headers={"Origin": "https://evil.example"})
        assert s == 403 and b["error"]["code"] == "origin_not_allowed", (s, b)
        s, h, b = srv.track("t", {"userId": "evil2", "event": "Viewed", "writeKey": wk},
                            headers={"Origin": "http://shop.example"})
        assert s == 403, (s, b)
        s, _, b = srv.track("t", {"userId": "server", "event": "Viewed"}, wk)
        assert s == 200, b
        s, h, _ = srv.get("/v1/projects/%s/settings" % wk, port=port,
                          headers={"Origin": "https://evil.example"})
        assert s == 403, s
        s, h, _ = srv.get("/v1/projects/%s/settings" % wk, port=port,
                          headers={"Origin": "https://shop.example"})
        assert s == 200 and h["Access-Control-Allow-Origin"] == "https://shop.example", h
        assert st.ctl("inspect", SPACE, "user_id:server").returncode == 0
        assert st.ctl("inspect", SPACE, "user_id:ok-https://shop.example").returncode == 0
        for who in ("evil", "evil2"):
            assert st.ctl("inspect", SPACE, "user_id:" + who, check=False).returncode == 2
        st.ctl("source", "origins", SPACE, "web", "--any")
        s, h, b = srv.track("t", {"userId": "evil", "event": "Viewed"}, wk,
                            headers={"Origin": "https://evil.example"})
        assert s == 200 and h["Access-Control-Allow-Origin"] == "*", (s, h, b)
    finally:
        srv.stop()
        st.close()
    st, srv, wk, _ = setup("--public-url", "https://events.example.com/")
    try:
        s, _, doc = srv.get("/v1/projects/%s/settings" % wk)
        seg = doc["integrations"]["Segment.io"]
        assert seg["apiHost"] == "events.example.com/v1" and seg["protocol"] == "https", seg
    finally:
        srv.stop()
        st.close()


if __name__ == "__main__":
    run_tests([envelope_amplification, reply_amplification, strict_json, timestamps,
               framing_and_smuggling, pipelining_and_half_close,
               replies_the_socket_cannot_take_at_once, reads_wait_only_with_a_valid_token,
               pipelining_behind_a_long_poll,
               slow_and_silent_clients,
               descriptor_exhaustion, connections_spread_over_the_loops,
               connection_cap_waits_then_serves, unopenable_space_is_503, compressed_bodies,
               browsers_cors_and_settings])
