# SPDX-License-Identifier: MIT
"""Tracking API (docs/http-api.md) against the real profiled: every route and alias, every auth
mode, limits and bad bodies, partial batches, messageId duplicates, --ingest-listen, sources
in profile data, and back-pressure while `profilectl ingest` holds the store's write lock."""
import base64
import json
import os
import subprocess
import threading
import time

from common import Server, Store, run_tests, tool, wait_for_write_lock

SPACE = "s1"


def setup(*server_args):
    st = Store()
    st.ctl("space", "create", SPACE)
    src = st.json("source", "create", SPACE, "--name", "web")
    token = st.ctl("token", "create", SPACE).stdout.strip()
    return st, Server(st, *server_args), src, token


def events_of(st, ident):
    d = st.json("inspect", SPACE, ident, "--events", "10000")
    return d


def message_ids(st, ident):
    return sorted(e["message_id"] for e in events_of(st, ident)["events"])


def expect_error(got, status, code):
    s, h, body = got
    assert s == status, (s, body)
    assert body["success"] is False and body["error"]["code"] == code, body
    assert body["error"]["message"], body
    assert h["Request-Id"], h


def test_every_route_and_alias():
    st, srv, src, token = setup()
    wk = src["write_key"]
    try:
        sent = 0
        for route, body in [
            ("identify", {"userId": "u1", "traits": {"plan": "pro", "email": "u1@x.io"}}),
            ("i", {"userId": "u1", "traits": {"seats": 3}}),
            ("track", {"userId": "u1", "event": "Signed Up", "properties": {"a": 1}}),
            ("t", {"userId": "u1", "event": "Clicked"}),
            ("page", {"userId": "u1", "name": "Home"}),
            ("p", {"userId": "u1", "name": "Pricing"}),
            ("screen", {"userId": "u1", "name": "Main"}),
            ("s", {"userId": "u1", "name": "Settings"}),
            ("group", {"userId": "u1", "groupId": "acme", "traits": {"name": "Acme"}}),
            ("g", {"userId": "u1", "groupId": "acme", "traits": {"tier": "gold"}}),
            ("alias", {"userId": "u1", "previousId": "old-anon"}),
            ("a", {"userId": "u1", "previousId": "older-anon"}),
            ("batch", {"batch": [{"type": "track", "userId": "u1", "event": "InBatch"}]}),
            ("b", {"batch": [{"type": "page", "userId": "u1", "name": "Docs"}]}),
        ]:
            s, h, b = srv.track(route, body, wk)
            assert s == 200 and b == {"success": True}, (route, s, b)
            assert h["Content-Type"] == "application/json" and h["Request-Id"]
            sent += 1
        d = events_of(st, "user_id:u1")
        assert d["traits"]["plan"] == "pro" and d["traits"]["seats"] == 3, d["traits"]
        names = sorted(e.get("event") or e.get("name") or "" for e in d["events"])
        assert names == sorted(["Signed Up", "Clicked", "Home", "Pricing", "Main", "Settings",
                                "InBatch", "Docs"]), names
        types = sorted(e["type"] for e in d["events"])
        assert types.count("track") == 3 and types.count("page") == 3, types
        assert types.count("screen") == 2, types
        acc = st.json("inspect", SPACE, "group_id:acme")
        assert acc["collection"] == "accounts" and acc["traits"]["tier"] == "gold", acc
        assert any(l.get("to_collection") == "users" or "users" in json.dumps(l)
                   for l in acc["links"]), acc["links"]
        # previousId is never an identifier: old-anon resolves to nothing
        assert st.ctl("inspect", SPACE, "anonymous_id:old-anon", check=False).returncode == 2
        # the source travels into identifiers, traits and metadata (Profile API)
        base = "/v1/spaces/%s/collections/users/profiles/user_id:u1" % SPACE
        s, _, meta = srv.get(base + "/metadata", token)
        meta = meta.get("metadata", meta)
        assert s == 200 and meta["last_source_id"] == src["source_id"], meta
        s, _, ids = srv.get(base + "/external_ids?include_source=true"
                            "&include_first_seen=true", token)
        assert all(x["source_id"] == src["source_id"] for x in ids["data"]), ids
        s, _, tr = srv.get(base + "/traits?include_metadata=true", token)
        assert s == 200, tr
        assert st.ctl("check", SPACE).returncode == 0
    finally:
        srv.stop()
        st.close()


def test_auth_modes():
    st, srv, src, _ = setup()
    wk = src["write_key"]
    msg = {"userId": "auth", "event": "E"}
    try:
        # 1. Basic with the colon
        assert srv.track("track", msg, wk)[0] == 200
        # 1b. Basic without the colon (older clients)
        h = {"Authorization": "Basic " + base64.b64encode(wk.encode()).decode()}
        s, _, b = srv.track("track", msg, headers=h)
        assert s == 200, b
        # 2. writeKey in the body, no header
        s, _, b = srv.track("track", dict(msg, writeKey=wk))
        assert s == 200, b
        # 3. Bearer (OAuth) plus writeKey in the body
        s, _, b = srv.track("track", dict(msg, writeKey=wk),
                            headers={"Authorization": "Bearer some.jwt.token"})
        assert s == 200, b
        # a batch names its writeKey at the top
        s, _, b = srv.track("batch", {"writeKey": wk, "batch": [dict(msg, type="track")]})
        assert s == 200, b
        expect_error(srv.track("track", msg, "not-a-key"), 400, "invalid_write_key")
        expect_error(srv.track("track", dict(msg, writeKey="nope")), 400, "invalid_write_key")
        expect_error(srv.track("track", msg), 400, "invalid_write_key")
        expect_error(srv.track("track", msg, headers={"Authorization": "Basic %%%"}), 400,
                     "invalid_write_key")
        # a key of another space's source writes into that space only
        st.ctl("space", "create", "s2")
        other = st.json("source", "create", "s2")
        assert srv.track("track", {"userId": "only-s2", "event": "E"}, other["write_key"])[0] \
            == 200
        assert st.ctl("inspect", "s2", "user_id:only-s2", check=False).returncode == 0
        assert st.ctl("inspect", SPACE, "user_id:only-s2", check=False).returncode == 2
        # a source created while the server runs works at once
        fresh = st.ctl("source", "create", SPACE).stdout.strip()
        assert srv.track("track", msg, fresh)[0] == 200
        assert len(message_ids(st, "user_id:auth")) == 6
    finally:
        srv.stop()
        st.close()


def test_limits_and_bad_bodies():
    st, srv, src, _ = setup()
    wk = src["write_key"]
    try:
        big = {"userId": "u", "event": "E", "properties": {"blob": "x" * (33 * 1024)}}
        expect_error(srv.track("track", big, wk), 400, "payload_too_large")
        # the same message fits in a batch body but is over 32 KB as an item: dropped
        s, _, b = srv.track("batch", {"batch": [dict(big, type="track"),
                                                {"type": "track", "userId": "u",
                                                 "event": "Small"}]}, wk)
        assert s == 200 and b["accepted"] == 1, b
        assert b["dropped"] == [{"index": 0, "code": "payload_too_large",
                                 "message": b["dropped"][0]["message"]}], b
        huge = {"batch": [{"type": "track", "userId": "u", "event": "E",
                           "properties": {"blob": "y" * 30000}} for _ in range(18)]}
        expect_error(srv.track("batch", huge, wk), 400, "payload_too_large")
        # over 2,500 items: 200, and every item rejected
        many = {"batch": [{"type": "track", "userId": "many", "event": "E"}] * 2501}
        s, _, b = srv.track("batch", many, wk)
        assert s == 200 and b["accepted"] == 0 and b["dropped_count"] == 2501, (s, len(b))
        assert len(b["dropped"]) == 100, len(b["dropped"])  # the reply lists a bounded number
        assert {d["code"] for d in b["dropped"]} == {"too_many_items"}
        assert st.ctl("inspect", SPACE, "user_id:many", check=False).returncode == 2
        expect_error(srv.track("track", '{"userId": "u", ', wk), 400, "invalid_json")
        expect_error(srv.track("track", "", wk), 400, "invalid_json")
        expect_error(srv.track("track", b'{"userId":"\xff\xfe","event":"E"}', wk), 400,
                     "invalid_json")
        expect_error(srv.track("track", "[1,2]", wk), 400, "not_object")
        expect_error(srv.track("track", {"event": "E"}, wk), 400, "no_user_anon_id")
        expect_error(srv.track("track", {"userId": "u"}, wk), 400, "missing_event_name")
        expect_error(srv.track("group", {"userId": "u"}, wk), 400, "group_id_empty")
        expect_error(srv.track("batch", {"userId": "u"}, wk), 400, "missing_batch")
        expect_error(srv.track("batch", {"batch": "nope"}, wk), 400, "invalid_field")
        expect_error(srv.track("track", {"userId": "u", "event": "E"}, wk,
                               headers={"Content-Encoding": "gzip"}), 400,
                     "invalid_encoding")  # says gzip, is not: test_hardening has real gzip
        expect_error(srv.track("track", {"userId": "u", "event": "E"}, wk,
                               headers={"Content-Encoding": "compress"}), 400,
                     "unsupported_encoding")
        s, h, b = srv.request("GET", "/v1/track", port=srv.ingest_port)
        assert s == 405 and h["Allow"] == "POST" and b["success"] is False, (s, b)
        s, _, b = srv.track("nope", {"userId": "u"}, wk)
        assert s == 404, (s, b)
        # receivedAt is always stamped by the server, never taken from the client
        s, _, b = srv.track("track", {"userId": "rcv", "event": "E",
                                      "receivedAt": "2001-01-01T00:00:00Z"}, wk)
        ev = events_of(st, "user_id:rcv")["events"][0]
        assert not ev["received_at"].startswith("2001"), ev
        # a message without messageId gets one
        assert ev["message_id"], ev
        assert st.ctl("check", SPACE).returncode == 0
    finally:
        srv.stop()
        st.close()


def test_partial_batches_and_duplicates():
    st, srv, src, _ = setup()
    wk = src["write_key"]
    try:
        batch = {"context": {"ip": "10.0.0.1"}, "batch": [
            {"type": "track", "userId": "pb", "event": "A", "messageId": "m-1"},
            {"type": "track", "event": "NoIdentity"},
            {"type": "bogus", "userId": "pb"},
            {"type": "track", "userId": "pb"},
            "not an object",
            {"type": "identify", "userId": "pb", "traits": {"k": "v"}, "messageId": "m-2"},
            {"type": "track", "userId": "pb", "event": "B", "messageId": "m-3"},
        ]}
        s, _, b = srv.track("batch", batch, wk)
        assert s == 200 and b["success"] is True and b["accepted"] == 3, b
        assert [(d["index"], d["code"]) for d in b["dropped"]] == [
            (1, "no_user_anon_id"), (2, "invalid_type"), (3, "missing_event_name"),
            (4, "not_object")], b
        assert message_ids(st, "user_id:pb") == ["m-1", "m-3"]
        ev = events_of(st, "user_id:pb")["events"][0]
        assert ev["context"]["ip"] == "10.0.0.1", ev  # envelope context merged into items
        # the same messageIds again: 200, nothing stored twice
        s, _, b = srv.track("batch", batch, wk)
        assert s == 200, b
        s, _, b = srv.track("track", {"userId": "pb", "event": "A", "messageId": "m-1"}, wk)
        assert s == 200 and b == {"success": True}, b
        assert message_ids(st, "user_id:pb") == ["m-1", "m-3"]
        # duplicates inside one batch: the first wins
        s, _, b = srv.track("batch", {"batch": [
            {"type": "track", "userId": "dup", "event": "First", "messageId": "same"},
            {"type": "track", "userId": "dup", "event": "Second", "messageId": "same"}]}, wk)
        assert s == 200, b
        evs = events_of(st, "user_id:dup")["events"]
        assert [e["event"] for e in evs] == ["First"], evs
        assert st.ctl("check", SPACE).returncode == 0
    finally:
        srv.stop()
        st.close()


def test_ingest_listener():
    st, srv, src, token = setup("--ingest-listen", "127.0.0.1:0")
    wk = src["write_key"]
    try:
        assert srv.ingest_port != srv.port
        assert srv.track("track", {"userId": "il", "event": "E"}, wk)[0] == 200
        # the Tracking API moved: the main listener does not serve it
        s, _, _ = srv.request("POST", "/v1/track", wk, body={"userId": "il", "event": "E"})
        assert s == 404
        # and the ingest listener serves no Profile API
        path = "/v1/spaces/%s/collections/users/profiles/user_id:il/traits" % SPACE
        assert srv.get(path, token, port=srv.ingest_port)[0] == 404
        assert srv.get(path, token)[0] == 200
        assert srv.get("/healthz", port=srv.ingest_port)[0] == 200
    finally:
        srv.stop()
        st.close()


def test_ingest_rate_limit():
    """A token bucket per space over Tracking API requests, from the settings; over it the
    answer is 429 with Retry-After and X-RateLimit-Reset, nothing of the request is stored, and
    the Profile API's own bucket is untouched."""
    st, srv, src, token = setup()
    wk = src["write_key"]
    try:
        # off by default: a burst of requests all pass
        for i in range(20):
            assert srv.track("track", {"userId": "r", "event": "E", "messageId": "free-%d" % i},
                             wk)[0] == 200
        path = os.path.join(st.dir, "rate.json")
        with open(path, "w") as f:
            json.dump({"ingest_rate_limit_per_second": 1, "ingest_rate_limit_burst": 2}, f)
        assert st.ctl("settings", "set", SPACE, path).returncode == 0
        shown = st.json("settings", "get", SPACE)
        assert shown["ingest_rate_limit_per_second"] == 1, shown
        assert shown["ingest_rate_limit_burst"] == 2, shown
        # a burst of 2, then one a second: sent back to back, a request is refused once the
        # bucket is empty (the third, unless the machine is so slow that a second passed)
        before, got = time.time(), []
        while len(got) < 10 and (not got or got[-1][0] == 200):
            got.append(srv.track("batch", {"batch": [{"type": "track", "userId": "r",
                                                      "event": "E",
                                                      "messageId": "lim-%d" % len(got)}]}, wk))
        after = time.time()
        accepted = len(got) - 1
        assert 2 <= accepted <= 2 + int(after - before), (after - before, got)
        expect_error(got[-1], 429, "rate_limit_error")
        h = got[-1][1]
        assert 1 <= int(h["Retry-After"]) <= 2, dict(h)
        # a whole second after the server's clock read, which fell between before and after
        assert before < int(h["X-RateLimit-Reset"]) <= after + 3, (before, after, dict(h))
        # reads have their own bucket (api_rate_limit_*, off here)
        u = "/v1/spaces/%s/collections/users/profiles/user_id:r/metadata" % SPACE
        assert srv.get(u, token)[0] == 200
        time.sleep(int(h["Retry-After"]) + 0.2)
        assert srv.track("track", {"userId": "r", "event": "E", "messageId": "lim-after"},
                         wk)[0] == 200
        ids = message_ids(st, "user_id:r")
        assert "lim-%d" % accepted not in ids, ids
        assert {"lim-%d" % i for i in range(accepted)} | {"lim-after"} <= set(ids), ids
        # bad values are refused by name, and nothing changes
        with open(path, "w") as f:
            json.dump({"ingest_rate_limit_per_second": -1}, f)
        r = st.ctl("settings", "set", SPACE, path, check=False)
        assert r.returncode == 3 and "ingest_rate_limit_per_second" in r.stderr, r.stderr
        assert st.json("settings", "get", SPACE)["ingest_rate_limit_per_second"] == 1
    finally:
        srv.stop()
        st.close()


def test_backpressure_and_concurrent_cli_ingest():
    """`profilectl ingest` holds the store's write lock (an open batch, stdin still open).
    The server keeps acknowledging from its journal until 1 MiB of acknowledged payloads
    wait for the store; then requests wait, its 1 MiB queue fills, and further batches get
    503 with Retry-After. When the CLI commits, every waiting request is answered 200, and
    every acknowledged batch is stored."""
    st, srv, src, _ = setup("--queue-mb", "1")
    wk = src["write_key"]
    cli = None
    try:
        cli = subprocess.Popen([tool("profilectl"), "--data", st.dir, "ingest", SPACE, "-",
                                "--batch", "1000000"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = json.dumps({"type": "track", "userId": "cli", "event": "E",
                           "properties": {"pad": "p" * 200}}) + "\n"
        n_cli = (1 << 20) // len(line) + 50  # more than one read chunk: the batch opens
        for i in range(n_cli):
            cli.stdin.write(line.replace('"E"', '"E%d"' % i).encode())
        cli.stdin.flush()
        wait_for_write_lock(os.path.join(st.dir, "spaces", SPACE), cli.pid, cli.stdin)
        results, answered_at = {}, {}

        def send(i):
            body = {"batch": [{"type": "track", "userId": "bp", "event": "E",
                               "messageId": "bp-%d-%d" % (i, k),
                               "properties": {"pad": "q" * 2500}} for k in range(100)]}
            results[i] = srv.track("batch", body, wk)
            answered_at[i] = time.monotonic()

        # one request at a time, so that the outcome does not depend on how many arrive
        # within one journal sync: acknowledged ones until the backlog is full, then one that
        # waits for room, then refusals (its wait fills the 1 MiB queue)
        threads, waiting = [], None
        for i in range(8):
            t = threading.Thread(target=send, args=(i,))
            threads.append(t)
            t.start()
            t.join(timeout=3.0 * float(os.environ.get("PS_TEST_TIMEOUT_MULT", "1")))
            if waiting is None and t.is_alive():
                waiting = i
        assert waiting is not None and waiting > 0, \
            "no request waited while the write lock was held: %s" % results
        assert all(results[i][0] == 200 for i in range(waiting)), results
        assert all(results[i][0] == 503 for i in range(waiting + 1, 8)), results
        assert waiting < 7, "no request was refused while the writer was blocked: %s" % results
        # a client that hangs up while its request waits for the commit
        import socket
        raw = json.dumps({"writeKey": wk, "batch": [
            {"type": "track", "userId": "gone", "event": "E", "messageId": "gone-1"}]})
        sock = socket.create_connection(("127.0.0.1", srv.ingest_port))
        sock.sendall(("POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                      "\r\nContent-Length: %d\r\n\r\n%s" % (len(raw), raw)).encode())
        time.sleep(0.3)
        sock.close()
        released = time.monotonic()
        cli.stdin.close()
        assert cli.wait(timeout=120) == 0, cli.stderr.read()
        for t in threads:
            t.join(timeout=120)
        # every request has its answer now: 200 (it waited for the lock) or 503 queue_full
        statuses = {i: r[0] for i, r in results.items()}
        assert sorted(statuses) == list(range(8)), statuses
        busy = [i for i, s in statuses.items() if s == 503]
        ok = sorted(i for i, s in statuses.items() if s == 200)
        assert busy and ok and len(ok) + len(busy) == 8, statuses
        for i in busy:
            s, h, b = results[i]
            assert h["Retry-After"] == "1" and b["error"]["code"] == "queue_full", b
        # the journal acknowledged some while the lock was held; the ones that waited for
        # room were answered after the CLI let go of it
        assert any(answered_at[i] < released for i in ok), (answered_at, released)
        assert any(answered_at[i] > released for i in ok), (answered_at, released)
        stored = message_ids(st, "user_id:bp")
        expect = sorted("bp-%d-%d" % (i, k) for i in ok for k in range(100))
        assert stored == expect, (len(stored), len(expect))
        assert len(events_of(st, "user_id:cli")["events"]) == min(n_cli, 10000)
        assert srv.get("/healthz")[0] == 200  # the hung-up request did not hurt the server
        assert st.ctl("check", SPACE).returncode == 0
    finally:
        if cli and cli.poll() is None:
            cli.kill()
        srv.stop()
        st.close()


if __name__ == "__main__":
    run_tests([test_every_route_and_alias, test_auth_modes, test_limits_and_bad_bodies,
               test_partial_batches_and_duplicates, test_ingest_listener,
               test_ingest_rate_limit, test_backpressure_and_concurrent_cli_ingest])
