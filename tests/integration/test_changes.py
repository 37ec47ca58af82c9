# SPDX-License-Identifier: MIT
"""The change feed (docs/changes.md): `profilectl changes` loaded into SQLite with
schema/profiles-sync.sql agrees with the Profile API on every profile (canonical segment_id of
every segment_id, identifiers, traits); a load interrupted and resumed with --after loses and
duplicates nothing; a deleted identifier shows REMOVED; --follow sees rows that commit while
it runs."""
import json
import os
import signal
import sqlite3
import subprocess
import time
import urllib.parse

from common import SOURCE, Server, Store, run_tests, tool

MULT = float(os.environ.get("PS_TEST_TIMEOUT_MULT", "1"))

SPACE = "s"
TABLES = ["id_graph_updates", "external_id_mapping_updates", "profile_traits_updates",
          "violations"]


def realistic(st, path, events, seed, start_ms=None):
    args = [tool("gen_events"), "--events", str(events), "--seed", str(seed), "--realistic"]
    if start_ms:
        args += ["--start-ms", str(start_ms)]
    with open(path, "w") as f:
        subprocess.run(args, stdout=f, check=True, timeout=120)


def warehouse():
    db = sqlite3.connect(":memory:")
    with open(os.path.join(SOURCE, "schema", "profiles-sync.sql")) as f:
        db.executescript(f.read())
    return db


def columns(db, table):
    return [r[1] for r in db.execute("PRAGMA table_info(%s)" % table)]


def load(db, lines):
    """Inserts NDJSON feed rows; the primary key on seq refuses a duplicate."""
    n = 0
    for line in lines:
        row = json.loads(line)
        table = row.pop("table")
        if table == "profile_traits_updates":
            row["value"] = json.dumps(row["value"])  # the JSON text, as the CSV carries it
        cols = columns(db, table)
        assert set(row) == set(cols), (table, sorted(row), sorted(cols))
        db.execute("INSERT INTO %s (%s) VALUES (%s)" % (table, ",".join(cols),
                                                       ",".join("?" * len(cols))),
                   [row[c] for c in cols])
        n += 1
    return n


def max_seq(db):
    return max(db.execute("SELECT COALESCE(MAX(seq), 0) FROM %s" % t).fetchone()[0]
               for t in TABLES)


def api_all(srv, token, path, key):
    """Every item of a paginated Profile API list."""
    items, nxt = [], None
    while True:
        q = path + ("&next=" + urllib.parse.quote(nxt) if nxt else "")
        status, _, body = srv.get(q, token)
        assert status == 200, (q, status, body)
        part = body[key]
        if isinstance(part, dict):
            items.extend(part.items())
        else:
            items.extend(part)
        if not body["cursor"]["has_more"]:
            return items
        nxt = body["cursor"]["next"]


def test_warehouse_agrees_and_resumes():
    st = Store()
    try:
        st.ctl("space", "create", SPACE)
        log = os.path.join(st.dir, "log.ndjson")
        realistic(st, log, 4000, seed=11, start_ms=int(time.time() * 1000) - 4 * 3600 * 1000)
        st.ctl("ingest", SPACE, log)
        # an identifier deleted through the Profile API shows REMOVED
        token = st.ctl("token", "create", SPACE).stdout.strip()
        srv = Server(st)
        try:
            some = json.loads(st.ctl("export", SPACE).stdout.splitlines()[0])
            exp = [json.loads(x) for x in st.ctl("export", SPACE).stdout.splitlines()]
            victim = None
            for p in exp:
                types = {x["type"] for x in p["external_ids"]}
                if "user_id" in types and "anonymous_id" in types:
                    uid = next(x["id"] for x in p["external_ids"] if x["type"] == "user_id")
                    anon = next(x["id"] for x in p["external_ids"] if x["type"] == "anonymous_id")
                    victim = (uid, anon)
                    break
            assert victim, "the generated log has a profile with a userId and an anonymousId"
            base = "/v1/spaces/%s/collections/users/profiles/" % SPACE
            status, _, body = srv.request(
                "POST", base + "user_id:%s/external_ids/delete" % urllib.parse.quote(victim[0]),
                token, body={"delete_external_ids": [{"id": victim[1], "type": "anonymous_id"}]})
            assert status == 200, body

            # the whole feed in one go, and the same feed in interrupted pieces
            full = st.ctl("changes", SPACE).stdout.splitlines()
            db = warehouse()
            assert load(db, full) == len(full)
            seqs = [json.loads(x)["seq"] for x in full]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "seq strictly increases"
            pieces = warehouse()
            rounds = 0
            while True:
                got = st.ctl("changes", SPACE, "--after", str(max_seq(pieces)), "--limit",
                             "700").stdout.splitlines()
                rounds += 1
                if not got:
                    break
                load(pieces, got)  # a duplicate row would break the primary key
            assert rounds > 3
            for t in TABLES:
                a = db.execute("SELECT * FROM %s ORDER BY seq" % t).fetchall()
                b = pieces.execute("SELECT * FROM %s ORDER BY seq" % t).fetchall()
                assert a == b, t

            removed = db.execute(
                "SELECT segment_id FROM external_id_mapping_updates WHERE __operation='REMOVED'"
                " AND external_id_type='anonymous_id' AND external_id_value=?",
                (victim[1],)).fetchall()
            assert len(removed) == 1, removed
            assert not db.execute("SELECT 1 FROM external_id_mapping WHERE external_id_type="
                                  "'anonymous_id' AND external_id_value=?",
                                  (victim[1],)).fetchall()

            # every profile: the warehouse and the Profile API agree
            exp = [json.loads(x) for x in st.ctl("export", SPACE).stdout.splitlines()]
            assert len(exp) > 100
            graph = dict(db.execute("SELECT segment_id, canonical_segment_id FROM id_graph"))
            canon_of = {}
            for p in exp:
                canon_of[p["segment_id"]] = p["segment_id"]
                for m in p["merged_ids"]:
                    canon_of[m] = p["segment_id"]
            assert graph == canon_of
            held = {}
            for c, t, v in db.execute("SELECT canonical_segment_id, external_id_type, "
                                      "external_id_value FROM external_id_mapping"):
                held.setdefault(c, set()).add((t, v))
            traits = {}
            for c, n, v in db.execute("SELECT canonical_segment_id, name, value "
                                      "FROM profile_traits"):
                traits.setdefault(c, {})[n] = json.loads(v)
            checked_api = 0
            for p in exp:
                ids = {(x["type"], x["id"]) for x in p["external_ids"]}
                assert held.get(p["segment_id"], set()) == ids, p["segment_id"]
                assert traits.get(p["segment_id"], {}) == p["traits"], p["segment_id"]
                # and the Profile API itself
                seg = p["segment_id"]
                where = "/v1/spaces/%s/collections/%s/profiles/%s" % (SPACE, p["collection"], seg)
                api_ids = api_all(srv, token, where + "/external_ids?limit=100", "data")
                assert {(x["type"], x["id"]) for x in api_ids} == ids, seg
                api_traits = dict(api_all(srv, token, where + "/traits?limit=200", "traits"))
                assert api_traits == traits.get(seg, {}), seg
                checked_api += 1
            assert checked_api == len(exp)
            assert some
            # violations name a reason and the message
            v = db.execute("SELECT reason, triggering_event_id FROM violations").fetchall()
            assert v and all(r and m for r, m in v)
        finally:
            srv.stop()
    finally:
        st.close()


def test_formats_and_errors():
    st = Store()
    try:
        st.ctl("space", "create", SPACE)
        st.ctl("ingest", SPACE, "-", input="".join(json.dumps(m) + "\n" for m in [
            {"type": "identify", "userId": "u1", "traits": {"note": "a,\"b\"\nc"},
             "messageId": "m1"},
            {"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "m2"},
        ]))
        csv = st.ctl("changes", SPACE, "--table", "profile_traits_updates", "--format",
                     "csv").stdout
        assert csv.startswith("seq,segment_id,name,value,"), csv
        assert '"""a,\\""b\\""\\nc"""' in csv, csv  # JSON text, then CSV quoting
        one = st.ctl("changes", SPACE, "--table", "id_graph_updates").stdout.splitlines()
        assert len(one) == 1 and "table" not in json.loads(one[0])
        for bad in (["--table", "nope"], ["--format", "xml"], ["--format", "csv"],
                    ["--after", "-1"], ["--after", "x"], ["--limit", "0"]):
            r = st.ctl("changes", SPACE, *bad, check=False)
            assert r.returncode == 1 and r.stderr.startswith("profilectl: "), (bad, r.stderr)
        r = st.ctl("changes", "nosuch", check=False)
        assert r.returncode == 2, r.stderr
    finally:
        st.close()


def test_follow_sees_concurrent_ingest():
    st = Store()
    try:
        st.ctl("space", "create", SPACE)
        st.ctl("ingest", SPACE, "-", input=json.dumps(
            {"type": "identify", "userId": "first", "messageId": "f1"}) + "\n")
        p = subprocess.Popen([tool("profilectl"), "--data", st.dir, "changes", SPACE,
                              "--follow", "--table", "external_id_mapping_updates"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            first = json.loads(p.stdout.readline())
            assert first["external_id_value"] == "first"
            for i in range(3):
                st.ctl("ingest", SPACE, "-", input=json.dumps(
                    {"type": "identify", "userId": "later-%d" % i, "messageId": "l%d" % i})
                    + "\n")
            seen = [json.loads(p.stdout.readline())["external_id_value"] for _ in range(3)]
            assert seen == ["later-0", "later-1", "later-2"], seen
        finally:
            p.send_signal(signal.SIGINT)
            assert p.wait(timeout=30) == 0, p.stderr.read()
    finally:
        st.close()


def test_http_route_and_long_poll():
    import threading
    st = Store()
    try:
        st.ctl("space", "create", SPACE)
        reader = st.ctl("token", "create", SPACE, "--role", "read").stdout.strip()
        key = st.ctl("source", "create", SPACE).stdout.strip().splitlines()[-1]
        srv = Server(st, "--metrics-listen", "127.0.0.1:0")
        try:
            path = "/v1/spaces/%s/changes" % SPACE
            status, _, body = srv.get(path, None)
            assert status == 401, body
            for q, code in (("?wait=31", "validation_error"), ("?limit=0", "validation_error"),
                            ("?after=-1", "validation_error"), ("?table=x", "validation_error"),
                            ("?after=1&after=2", "invalid_request_error")):
                status, _, body = srv.get(path + q, reader)
                assert status == 400 and body["error"]["code"] == code, (q, body)
            status, _, body = srv.get(path, reader)  # a read token may read the feed
            assert status == 200 and body == {"data": [], "next": 0}, body

            # nothing new: the answer comes when the wait is over, empty
            t0 = time.monotonic()
            status, _, body = srv.get(path + "?wait=1", reader)
            waited = time.monotonic() - t0
            assert status == 200 and body["data"] == [] and waited >= 0.9, (body, waited)

            # a row committed during the wait ends it early
            def send():
                time.sleep(0.7)
                srv.track("identify", {"userId": "polled", "traits": {"k": "v"},
                                       "messageId": "p1"}, key)
            sender = threading.Thread(target=send)
            sender.start()
            t0 = time.monotonic()
            status, _, body = srv.get(path + "?wait=20&table=external_id_mapping_updates",
                                      reader)
            waited = time.monotonic() - t0
            sender.join()
            assert status == 200 and waited < 10, (status, waited)
            assert [r["external_id_value"] for r in body["data"]] == ["polled"], body
            assert body["next"] > body["data"][-1]["seq"], body  # read past the other tables
            status, _, body = srv.get(path, reader)
            assert [r["table"] for r in body["data"]] == [
                "id_graph_updates", "external_id_mapping_updates", "profile_traits_updates"], body
            assert body["data"][-1]["value"] == "v" and body["next"] == body["data"][-1]["seq"]

            # /metrics: refused messages by reason, and the space's violations by reason
            status, _, body2 = srv.track("batch", {"batch": [
                {"type": "track", "event": "no id", "messageId": "x1"},
                {"type": "identify", "userId": "null", "anonymousId": "anon-m",
                 "messageId": "x2"}]}, key)
            assert status == 200 and body2["dropped_count"] == 1, body2
            srv.get(path, reader)  # a Profile API read waits until acknowledged events apply
            status, _, text = srv.get("/metrics", raw=True)
            assert 'profiled_dropped_messages_total{reason="no_user_anon_id"} 1' in \
                text.decode(), text
            status, _, text = srv.get("/metrics", raw=True, port=srv.metrics_port)
            text = text.decode()
            assert ('profiled_violations_total{space="%s",reason="id_value_blocked"} 1' % SPACE
                    in text), text
            assert ('profiled_violations_total{space="%s",reason="profile_merge_limit_exceeded"} 0'
                    % SPACE in text), text

            # a poll that arrives with a body (no route reads one) is answered at once, never
            # left waiting on a connection that is about to go
            import base64
            import socket
            auth = base64.b64encode((reader + ":").encode()).decode()
            for close_early in (True, False):
                sk = socket.create_connection((srv.host, srv.port), timeout=10)
                sk.sendall(("GET %s?wait=5&after=99999999999 HTTP/1.1\r\nHost: x\r\n"
                            "Authorization: Basic %s\r\nContent-Length: 1\r\n\r\nx"
                            % (path, auth)).encode())
                if close_early:
                    sk.close()
                    continue
                t0 = time.monotonic()
                reply = sk.recv(4096).decode()
                sk.close()
                assert reply.startswith("HTTP/1.1 200") and time.monotonic() - t0 < 3, reply
            time.sleep(0.6)  # past a recheck: a parked request would now touch a freed one
            assert srv.get(path, reader)[0] == 200

            # a client that leaves a long poll ends it: the server stops re-checking for it
            def answered():
                return srv.metric('profiled_requests_total{route="changes",status="200"}', 0)

            def until_waiting(n):  # the server has read the poll and parked it
                srv.wait_metric("profiled_changes_polls_waiting", lambda waiting: waiting == n)

            until_waiting(0)  # the polls above are over
            before = answered()
            sk = socket.create_connection((srv.host, srv.port), timeout=10)
            sk.sendall(("GET %s?wait=25&after=99999999999 HTTP/1.1\r\nHost: x\r\n"
                        "Authorization: Basic %s\r\n\r\n" % (path, auth)).encode())
            until_waiting(1)
            sk.close()
            deadline = time.monotonic() + 5
            while answered() == before and time.monotonic() < deadline:
                time.sleep(0.1)
            assert answered() == before + 1, "the abandoned poll was not ended"

            # a stopping server answers a waiting poll at once
            result = {}

            def poll():
                result["r"] = srv.get(path + "?wait=30&after=99999999999", reader)
            poller = threading.Thread(target=poll)
            until_waiting(0)
            poller.start()
            until_waiting(1)
            t0 = time.monotonic()
            srv.stop()
            poller.join(timeout=20 * MULT)
            assert time.monotonic() - t0 < 10 * MULT and result["r"][0] == 200, result
        finally:
            if srv.proc.poll() is None:
                srv.stop()
    finally:
        st.close()


if __name__ == "__main__":
    run_tests([test_warehouse_agrees_and_resumes, test_formats_and_errors,
               test_follow_sees_concurrent_ingest, test_http_route_and_long_poll])
