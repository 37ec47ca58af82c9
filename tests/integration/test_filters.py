# SPDX-License-Identifier: MIT
"""Space-level event filters (docs/filters.md): managed with `profilectl filter` and the
/filters routes (admin tokens), applied at both doors before resolution, counted by name, and
never applied to messages accepted before them (a rebuild agrees)."""
import json

from common import Server, Store, run_tests

SPACE = "s"


def ndjson(msgs):
    return "".join(json.dumps(m) + "\n" for m in msgs)


def export(st):
    return sorted(st.ctl("export", SPACE).stdout.splitlines())


def user_ids(st):
    ids = set()
    for line in export(st):
        for x in json.loads(line)["external_ids"]:
            if x["type"] == "user_id":
                ids.add(x["id"])
    return ids


def test_cli_and_both_doors():
    st = Store()
    try:
        st.ctl("space", "create", SPACE)
        # accepted before any filter: a later filter never touches them, nor does a rebuild
        st.ctl("ingest", SPACE, "-", input=ndjson([
            {"type": "track", "event": "E", "userId": "early-bot",
             "context": {"userAgent": "Googlebot/2.1"}, "messageId": "e1"}]))
        st.ctl("filter", "create", SPACE, "bots", "match(context.userAgent, '*bot*')")
        st.ctl("filter", "create", SPACE, "internal",
               "contains(lowercase(context.page.path), '/internal')", "--disabled")
        bad = st.ctl("filter", "create", SPACE, "broken", "type = 'x", check=False)
        assert bad.returncode == 3 and "at 7: a string is not closed" in bad.stderr, bad.stderr
        dup = st.ctl("filter", "create", SPACE, "bots", "true", check=False)
        assert dup.returncode == 3 and "already a filter named 'bots'" in dup.stderr
        badname = st.ctl("filter", "create", SPACE, "no spaces", "true", check=False)
        assert badname.returncode == 3 and "filter name" in badname.stderr
        gone = st.ctl("filter", "delete", SPACE, "nope", check=False)
        assert gone.returncode == 2 and "no filter named 'nope'" in gone.stderr
        for i in range(8):
            st.ctl("filter", "create", SPACE, "f%d" % i, "userId = 'never-%d'" % i)
        over = st.ctl("filter", "create", SPACE, "eleventh", "true", check=False)
        assert over.returncode == 3 and "at most 10 filters" in over.stderr, over.stderr
        listed = json.loads(st.ctl("filter", "list", SPACE).stdout)
        assert [f["name"] for f in listed][:2] == ["bots", "internal"] and len(listed) == 10
        assert listed[1]["enabled"] is False and listed[0]["if"].startswith("match(")

        out = json.loads(st.ctl("--json", "ingest", SPACE, "-", input=ndjson([
            {"type": "track", "event": "E", "userId": "bot-1",
             "context": {"userAgent": "Mozilla (compatible; bingbot)"}, "messageId": "m1"},
            {"type": "track", "event": "E", "userId": "staff-1",
             "context": {"page": {"path": "/Internal/tools"}}, "messageId": "m2"},
            {"type": "identify", "userId": "person-1", "messageId": "m3"}])).stdout)
        assert out["accepted"] == 2 and out["dropped"] == {"filtered": 1}, out
        assert out["filtered"] == {"bots": 1}, out
        st.ctl("filter", "enable", SPACE, "internal")
        out = json.loads(st.ctl("--json", "ingest", SPACE, "-", input=ndjson([
            {"type": "track", "event": "E", "userId": "staff-2",
             "context": {"page": {"path": "/internal/x"}}, "messageId": "m4"}])).stdout)
        assert out["filtered"] == {"internal": 1} and out["accepted"] == 0, out
        assert user_ids(st) == {"early-bot", "staff-1", "person-1"}, user_ids(st)
        # the log holds what was accepted, and a note of each filtered message (its stamps and
        # the filter's name, not the message), so a rebuild gives the same state and feed
        log = [json.loads(x) for x in st.ctl("log", SPACE).stdout.splitlines()]
        notes = [x for x in log if x["type"] == "filtered"]
        assert [(x["messageId"], x["filter"], x["event_type"]) for x in notes] == [
            ("m1", "bots", "track"), ("m4", "internal", "track")], notes
        assert not any("userId" in x or "context" in x for x in notes), notes
        assert "bot-1" not in st.ctl("log", SPACE).stdout

        def violations(store):
            rows = [json.loads(x) for x in store.ctl(
                "changes", SPACE, "--table", "violations").stdout.splitlines()]
            return [(r["reason"], r["external_id_type"], r["external_id_value"],
                     r["triggering_event_id"], r["triggering_event_type"], r["segment_id"])
                    for r in rows if r["reason"] == "event_filtered"]
        expect = [("event_filtered", "filter", "bots", "m1", "track", None),
                  ("event_filtered", "filter", "internal", "m4", "track", None)]
        assert violations(st) == expect, violations(st)
        # a suppressed userId leaves nothing, not even a note, when a filter also matches
        st.ctl("regulation", "create", SPACE, "SUPPRESS_ONLY", "bot-hidden")
        out = json.loads(st.ctl("--json", "ingest", SPACE, "-", input=ndjson([
            {"type": "track", "event": "E", "userId": "bot-hidden",
             "context": {"userAgent": "somebot"}, "messageId": "hidden-1"}])).stdout)
        assert out["accepted"] == 0 and out["dropped"] == {"filtered": 1}, out
        assert "hidden-1" not in st.ctl("log", SPACE).stdout
        before = export(st)
        st.ctl("rebuild", SPACE)
        assert export(st) == before
        assert violations(st) == expect
        # replayed into an empty space, the log gives the same profiles and the same feed
        other = Store()
        try:
            other.ctl("space", "create", SPACE)
            out = json.loads(other.ctl("--json", "ingest", SPACE, "-",
                                       input=st.ctl("log", SPACE).stdout).stdout)
            assert out["dropped"] == {"filtered": 2}, out
            assert export(other) == before and violations(other) == expect
        finally:
            other.close()

        # the Tracking API: a batch lists the filtered item with the filter's name; a single
        # call answers 200 and stores nothing
        key = st.ctl("source", "create", SPACE).stdout.strip().splitlines()[-1]
        srv = Server(st, "--metrics-listen", "127.0.0.1:0")
        try:
            status, _, body = srv.track("batch", {"batch": [
                {"type": "track", "event": "E", "userId": "bot-2",
                 "context": {"userAgent": "ahrefsbot/7"}, "messageId": "h1"},
                {"type": "identify", "userId": "person-2", "messageId": "h2"}]}, key)
            assert status == 200 and body.get("dropped_count") == 1, body
            d = body["dropped"][0]
            assert d["index"] == 0 and d["code"] == "filtered" and d["filter"] == "bots", d
            assert "'bots'" in d["message"]
            status, _, body = srv.track("track", {"event": "E", "userId": "bot-3",
                                                  "context": {"userAgent": "somebot"},
                                                  "messageId": "h3"}, key)
            assert status == 200 and body["success"] is True, body
            token = st.ctl("token", "create", SPACE).stdout.strip()
            base = "/v1/spaces/%s/collections/users/profiles/" % SPACE
            assert srv.get(base + "user_id:person-2/traits", token)[0] == 200
            assert srv.get(base + "user_id:bot-2/traits", token)[0] == 404
            assert srv.get(base + "user_id:bot-3/traits", token)[0] == 404
            status, _, text = srv.get("/metrics", raw=True, port=srv.metrics_port)
            text = text.decode()
            assert 'profiled_filtered_messages_total{space="s",filter="bots"} 2' in text, text
            assert 'profiled_dropped_messages_total{reason="filtered"} 2' in text
            # the notes went through the journal like messages: in the feed once applied
            changes = "/v1/spaces/%s/changes?table=violations&limit=100" % SPACE
            status, _, body = srv.get(changes, token)
            assert status == 200, body
            rows = [(r["triggering_event_id"], r["external_id_value"])
                    for r in body["data"] if r["reason"] == "event_filtered"]
            assert ("h1", "bots") in rows and ("h3", "bots") in rows, body
            assert 'profiled_violations_total{space="s",reason="event_filtered"}' in \
                srv.get("/metrics", raw=True, port=srv.metrics_port)[2].decode()
            # a client cannot send a note
            status, _, body = srv.track("batch", {"batch": [
                {"type": "filtered", "filter": "bots", "event_type": "track",
                 "messageId": "forged"}]}, key)
            assert status == 200 and body["dropped"][0]["code"] == "invalid_type", body
        finally:
            srv.stop()
    finally:
        st.close()


def test_http_routes():
    st = Store()
    try:
        st.ctl("space", "create", SPACE)
        admin = st.ctl("token", "create", SPACE).stdout.strip()
        reader = st.ctl("token", "create", SPACE, "--role", "read", "--name", "r").stdout.strip()
        srv = Server(st)
        try:
            path = "/v1/spaces/%s/filters" % SPACE

            def req(method, p=path, body=None, token=admin):
                return srv.request(method, p, token, body=body)
            assert req("GET", token=reader)[0] == 403
            assert req("POST", body={"name": "a", "if": "true"}, token=reader)[0] == 403
            assert req("GET", token=None)[0] == 401
            status, _, body = req("GET")
            assert status == 200 and body == {"data": {"filters": []}}, body
            status, _, body = req("POST", body={"name": "tests", "if": "match(userId, 'test-*')"})
            assert status == 200 and body["data"]["filters"][0]["enabled"] is True, body
            for b, code in (({"name": "x"}, 400), ({"if": "true"}, 400),
                            ({"name": "x", "if": "true", "other": 1}, 400),
                            ({"name": "x", "if": "oops("}, 400), ("not json", 400),
                            ({"name": "tests", "if": "true"}, 409)):
                status, _, body = req("POST", body=b)
                assert status == code, (b, status, body)
            status, _, body = req("POST", body={"name": "x", "if": "length(a, b)"})
            assert "length() takes 1 argument" in body["error"]["message"], body
            status, _, body = req("PATCH", path + "/tests", {"enabled": False, "name": "test-users"})
            assert status == 200, body
            f = body["data"]["filters"][0]
            assert f["name"] == "test-users" and f["enabled"] is False, f
            status, _, body = req("PATCH", path + "/test-users", {"if": "true"})
            assert status == 400 and "delete the filter" in body["error"]["message"], body
            assert req("PATCH", path + "/nope", {"enabled": True})[0] == 404
            assert req("PUT", path + "/test-users", {"enabled": True})[0] == 405
            assert req("DELETE", path + "/test-users")[0] == 200
            assert req("DELETE", path + "/test-users")[0] == 404
            assert req("GET")[2] == {"data": {"filters": []}}
        finally:
            srv.stop()
    finally:
        st.close()


if __name__ == "__main__":
    run_tests([test_cli_and_both_doors, test_http_routes])
