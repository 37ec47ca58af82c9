# SPDX-License-Identifier: MIT
"""Regulations (docs/privacy.md): the Public API-shaped routes and `profilectl regulation`,
suppression at both doors (the Tracking API and `profilectl ingest`), across a restart and a
rebuild, and the admin token they need."""
import json

from common import Server, Store, run_tests

SPACE = "s"
REG = "/v1/spaces/%s/regulations" % SPACE


def ndjson(msgs):
    return "".join(json.dumps(m) + "\n" for m in msgs)


def user_events(st, user):
    p = st.ctl("--json", "inspect", SPACE, "user_id:" + user, "--events", "100", check=False)
    if p.returncode == 2:
        return None
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_routes_cli_and_suppression():
    st = Store()
    srv = None
    try:
        st.ctl("space", "create", SPACE)
        key = st.ctl("source", "create", SPACE).stdout.strip()
        admin = st.ctl("token", "create", SPACE).stdout.strip()
        read = st.ctl("token", "create", SPACE, "--role", "read").stdout.strip()
        srv = Server(st)

        def post(body, token=admin):
            return srv.request("POST", REG, token, body=body)

        # bad bodies: 400 naming the problem; a read token: 403
        for body, words in (({"regulationType": "NOPE", "subjectType": "USER_ID",
                              "subjectIds": ["a"]}, "regulationType"),
                            ({"regulationType": "SUPPRESS_ONLY", "subjectType": "EMAIL",
                              "subjectIds": ["a"]}, "subjectType"),
                            ({"regulationType": "SUPPRESS_ONLY", "subjectType": "USER_ID",
                              "subjectIds": []}, "subjectIds"),
                            ({"regulationType": "SUPPRESS_ONLY", "subjectType": "USER_ID",
                              "subjectIds": ["x"] * 5001}, "subjectIds"),
                            ({"regulationType": "SUPPRESS_ONLY", "subjectType": "USER_ID",
                              "subjectIds": [7]}, "subjectId"),
                            ("{not json", "JSON")):
            s, _, b = post(body)
            assert s == 400 and b["error"]["code"] == "bad_request", (s, b)
            assert words in b["error"]["message"], b
        s, _, b = post({"regulationType": "SUPPRESS_ONLY", "subjectType": "USER_ID",
                        "subjectIds": ["sup-1"]}, token=read)
        assert s == 403 and b["error"]["code"] == "forbidden", (s, b)
        s, _, b = srv.request("POST", REG, None, body={})
        assert s == 401, (s, b)

        # suppress over HTTP; the Tracking API drops the user's messages quietly
        s, _, b = post({"regulationType": "SUPPRESS_ONLY", "subjectType": "USER_ID",
                        "subjectIds": ["sup-1", "sup-2"]})
        assert s == 200, b
        rid = b["data"]["regulateId"]
        assert rid.startswith("reg_"), b
        s, _, b = srv.get(REG + "/" + rid, read)
        assert s == 200, b
        reg = b["data"]["regulation"]
        assert reg["id"] == rid and reg["regulationType"] == "SUPPRESS_ONLY", reg
        assert reg["subjectIds"] == ["sup-1", "sup-2"] and reg["status"] == "FINISHED", reg
        assert reg["createdAt"] and reg["finishedAt"], reg
        s, _, b = srv.get(REG + "/reg_ffffffffffffffff", read)
        assert s == 404, b
        s, _, b = srv.track("track", {"userId": "sup-1", "event": "E", "messageId": "t1"}, key)
        assert s == 200 and b["success"] is True, b
        assert b.get("dropped", [{}])[0].get("code") == "suppressed", b
        s, _, b = srv.track("batch", {"batch": [
            {"type": "identify", "userId": "sup-2", "traits": {"email": "s2@example.com"},
             "messageId": "t2"},
            {"type": "identify", "userId": "free-1", "traits": {"email": "f1@example.com"},
             "messageId": "t3"}]}, key)
        assert s == 200 and b["accepted"] == 1, b
        assert [d["code"] for d in b["dropped"]] == ["suppressed"] and \
            b["dropped"][0]["index"] == 0, b
        srv.stop()
        srv = None
        assert user_events(st, "sup-1") is None and user_events(st, "sup-2") is None
        assert user_events(st, "free-1") is not None

        # the CLI door, and the CLI's regulation commands
        out = st.ctl("--json", "ingest", SPACE, "-", input=ndjson([
            {"type": "track", "userId": "sup-1", "event": "E", "messageId": "c1"},
            {"type": "track", "userId": "free-2", "event": "E", "messageId": "c2"}]))
        summary = json.loads(out.stdout)
        assert summary["accepted"] == 1 and summary["dropped"] == {"suppressed": 1}, summary
        rid2 = st.ctl("regulation", "create", SPACE, "UNSUPPRESS", "sup-2").stdout.strip()
        listed = json.loads(st.ctl("regulation", "list", SPACE).stdout)
        assert [r["id"] for r in listed] == [rid2, rid], listed  # newest first
        shown = json.loads(st.ctl("regulation", "show", SPACE, rid2).stdout)
        assert shown["regulationType"] == "UNSUPPRESS", shown
        bad = st.ctl("regulation", "create", SPACE, "BOGUS", "x", check=False)
        assert bad.returncode == 3 and "unknown regulation type" in bad.stderr, bad.stderr
        bad = st.ctl("regulation", "show", SPACE, "reg_nope", check=False)
        assert bad.returncode == 2, bad.stderr

        # suppression survives a rebuild and a restart; the lifted one lets messages in
        st.ctl("rebuild", SPACE)
        srv = Server(st)
        s, _, b = srv.track("batch", {"batch": [
            {"type": "track", "userId": "sup-1", "event": "E", "messageId": "r1"},
            {"type": "track", "userId": "sup-2", "event": "E", "messageId": "r2"}]}, key)
        assert s == 200 and b["accepted"] == 1, b
        s, _, b = srv.get(REG + "?limit=1", admin)
        assert s == 200 and len(b["data"]["regulations"]) == 1, b
        nxt = b["data"]["pagination"]["next"]
        assert nxt, b
        s, _, b = srv.get(REG + "?limit=1&cursor=" + nxt, admin)
        assert [r["id"] for r in b["data"]["regulations"]] == [rid], b
        assert b["data"]["pagination"]["next"] is None, b
        srv.stop()
        srv = None
        assert user_events(st, "sup-1") is None
        assert len(user_events(st, "sup-2")["events"]) == 1
        assert st.ctl("check", SPACE).stdout.endswith("ok\n")
    finally:
        if srv:
            srv.stop()
        st.close()


def test_deletion_and_physical_erasure():
    """DELETE_INTERNAL over HTTP erases the subject's canonical profile with its merged
    members: identifiers (free again), traits, events and their messages, links on both
    sides; others stay. After `profilectl compact` no byte of the subject's email remains in
    the space's files. SUPPRESS_WITH_DELETE_INTERNAL erases and suppresses."""
    import glob
    import os
    st = Store()
    srv = None
    try:
        st.ctl("space", "create", SPACE)
        admin = st.ctl("token", "create", SPACE).stdout.strip()
        email = "Erase.Me-4711@Example.com"
        msgs = [
            {"type": "page", "anonymousId": "anon-del", "name": "Home", "messageId": "d1"},
            {"type": "identify", "userId": "del-1", "anonymousId": "anon-del",
             "traits": {"email": email, "name": "Secret Name 4711"}, "messageId": "d2"},
            {"type": "track", "userId": "del-1", "event": "Bought",
             "properties": {"note": "secret-body-4711"}, "messageId": "d3"},
            {"type": "group", "userId": "del-1", "groupId": "acct-1",
             "traits": {"plan": "pro"}, "messageId": "d4"},
            {"type": "identify", "userId": "keep-1", "traits": {"email": "keep@example.com"},
             "messageId": "k1"},
            {"type": "group", "userId": "keep-1", "groupId": "acct-1", "messageId": "k2"},
            {"type": "identify", "userId": "both-1", "traits": {"email": "both@example.com"},
             "messageId": "b1"},
        ]
        st.ctl("ingest", SPACE, "-", input=ndjson(msgs))
        seg = user_events(st, "del-1")["segment_id"]
        srv = Server(st)
        base = "/v1/spaces/%s/collections/users/profiles/" % SPACE
        s, _, b = srv.request("POST", REG, admin, body={
            "regulationType": "DELETE_INTERNAL", "subjectType": "USER_ID",
            "subjectIds": ["del-1", "nobody-at-all"]})
        assert s == 200, b
        s, _, b = srv.get(REG + "/" + b["data"]["regulateId"], admin)
        reg = b["data"]["regulation"]
        assert reg["status"] == "FINISHED", reg
        assert all(x.startswith("sha256:") for x in reg["subjectIds"]), reg  # no userIds kept
        for ident in ("user_id:del-1", "anonymous_id:anon-del", "email:" + email.lower(), seg):
            s, _, b = srv.get(base + ident + "/traits", admin)
            assert s == 404, (ident, s, b)
        s, _, b = srv.get(base + "user_id:keep-1/traits", admin)
        assert s == 200 and b["traits"]["email"] == "keep@example.com", b
        acct = "/v1/spaces/%s/collections/accounts/profiles/group_id:acct-1/links" % SPACE
        s, _, b = srv.get(acct, admin)
        assert s == 200, b
        assert [x["external_ids"][0]["id"] for x in b["data"]] == ["keep-1"] or \
            len(b["data"]) == 1, b  # only keep-1's link is left
        srv.stop()
        srv = None
        assert st.ctl("check", SPACE).stdout.endswith("ok\n")
        log = st.ctl("log", SPACE).stdout
        assert "del-1" not in log and "anon-del" not in log and "secret" not in log, log
        assert "keep-1" in log, log
        # identifiers are free again: a new event starts a new profile
        st.ctl("ingest", SPACE, "-", input=ndjson([
            {"type": "identify", "userId": "del-1", "traits": {"email": email},
             "messageId": "n1"}]))
        again = user_events(st, "del-1")
        assert again and again["segment_id"] != seg, again
        # erase that one too, with suppression; then compact: no byte of the email stays
        st.ctl("regulation", "create", SPACE, "SUPPRESS_WITH_DELETE_INTERNAL", "del-1")
        out = st.ctl("--json", "ingest", SPACE, "-", input=ndjson([
            {"type": "track", "userId": "del-1", "event": "E", "messageId": "n2"}]))
        assert json.loads(out.stdout)["dropped"] == {"suppressed": 1}, out.stdout
        st.ctl("compact", SPACE)
        assert st.ctl("check", SPACE).stdout.endswith("ok\n")
        needles = [email.encode(), email.lower().encode(), b"secret-body-4711",
                   b"Secret Name 4711", b"anon-del"]
        files = glob.glob(os.path.join(st.dir, "spaces", SPACE, "*"))
        for path in files:
            if os.path.isfile(path):
                data = open(path, "rb").read()
                for n in needles:
                    assert n not in data, (path, n)
        assert b"keep@example.com" in open(os.path.join(st.dir, "spaces", SPACE, "data.mdb"),
                                           "rb").read()
        # compact refuses while a server has the space open
        srv = Server(st)
        srv.get("/v1/spaces/%s/collections/users/profiles/user_id:keep-1/traits" % SPACE, admin)
        busy = st.ctl("compact", SPACE, check=False)
        assert busy.returncode != 0 and "another process" in busy.stderr, busy.stderr
    finally:
        if srv:
            srv.stop()
        st.close()


def big_profile_messages():
    """A userId whose profile absorbed 100 others, with 1,000+ identifiers in all."""
    msgs = []
    for i in range(101):
        ext = [{"id": "dev-%d-%d" % (i, k), "type": "device_tag", "collection": "users",
                "encoding": "none"} for k in range(10)]
        msgs.append({"type": "identify", "anonymousId": "big-anon-%d" % i,
                     "traits": {"email": "big-%d@example.com" % i},
                     "context": {"externalIds": ext}, "messageId": "b-%d" % i})
    for i in range(101):
        msgs.append({"type": "identify", "userId": "big", "anonymousId": "big-anon-%d" % i,
                     "messageId": "m-%d" % i})
        msgs.append({"type": "track", "userId": "big", "event": "E", "properties": {"i": i},
                     "messageId": "t-%d" % i})
    return msgs


BIG_SETTINGS = {"identifiers": {"anonymous_id": {"limit": 1000}, "email": {"limit": 1000},
                                "device_tag": {"limit": 1000, "priority": 9}},
                "merge_limit": 1000, "mapping_limit": 100000}


def test_big_profile_and_kill_during_deletion():
    """A profile with about 100 merges and 1,200 identifiers is erased in one transaction
    (the time is printed). A deletion killed with SIGKILL at a random moment either happened
    or did not: `check` passes and the profile is whole or gone."""
    import os
    import random
    import shutil
    import signal
    import subprocess
    import time
    from common import generate, tool
    st = Store()
    try:
        path = os.path.join(st.dir, "settings.json")
        with open(path, "w") as f:
            json.dump(BIG_SETTINGS, f)
        st.ctl("space", "create", SPACE, "--settings", path)
        filler = os.path.join(st.dir, "filler.ndjson")
        generate(filler, 20000, seed=5)  # other people: the audit scan has rows to read
        st.ctl("ingest", SPACE, filler)
        st.ctl("ingest", SPACE, "-", input=ndjson(big_profile_messages()))
        whole = user_events(st, "big")
        assert len(whole["merged_ids"]) >= 99 and len(whole["external_ids"]) >= 1000, \
            (len(whole["merged_ids"]), len(whole["external_ids"]))
        base = os.path.join(st.dir, "spaces", SPACE)
        snapshot = os.path.join(st.dir, "snapshot")
        shutil.copytree(base, snapshot)
        rng = random.Random(13)
        outcomes = set()
        for rnd in range(4):
            shutil.rmtree(base)
            shutil.copytree(snapshot, base)
            p = subprocess.Popen([tool("profilectl"), "--data", st.dir, "regulation", "create",
                                  SPACE, "DELETE_INTERNAL", "big"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
            time.sleep(rng.uniform(0.0, 0.15))
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=60)
            assert st.ctl("check", SPACE).stdout.endswith("ok\n"), rnd
            now = user_events(st, "big")
            if now is None:
                outcomes.add("gone")
                assert user_events(st, "keep") is None  # nothing else was asked
            else:
                outcomes.add("whole")
                assert len(now["external_ids"]) == len(whole["external_ids"]), rnd
        print("# kill outcomes:", sorted(outcomes))
        shutil.rmtree(base)
        shutil.copytree(snapshot, base)
        t0 = time.monotonic()
        st.ctl("regulation", "create", SPACE, "DELETE_INTERNAL", "big")
        print("# erased a profile with %d merged profiles and %d identifiers in %.3f s "
              "(a profilectl process, 20k other events in the space)"
              % (len(whole["merged_ids"]), len(whole["external_ids"]), time.monotonic() - t0))
        assert user_events(st, "big") is None
        assert st.ctl("check", SPACE).stdout.endswith("ok\n")
    finally:
        st.close()


def test_compact_retrains_the_log_dictionary():
    """The log's compression dictionary is trained on the first 2,000 messages: when the
    subject's messages were among them, compact trains it again on what is left and
    compresses every message with it, so no fragment stays in the dictionary."""
    import glob
    import os
    st = Store()
    try:
        st.ctl("space", "create", SPACE)
        secret = "Dictionary-Secret-Person-8841@example.com"
        msgs = []
        for i in range(2600):
            if i % 50 == 0:  # the subject, all through the training sample
                msgs.append({"type": "identify", "userId": "dict-subject",
                             "traits": {"email": secret, "note": "dict-secret-note-%d" % i},
                             "messageId": "s-%d" % i})
            else:
                msgs.append({"type": "track", "userId": "other-%d" % (i % 97), "event": "E",
                             "properties": {"n": i, "text": "ordinary words %d" % (i % 13)},
                             "messageId": "o-%d" % i})
        st.ctl("ingest", SPACE, "-", input=ndjson(msgs))
        lines_before = len(st.ctl("log", SPACE).stdout.splitlines())
        st.ctl("regulation", "create", SPACE, "DELETE_INTERNAL", "dict-subject")
        st.ctl("compact", SPACE)
        assert st.ctl("check", SPACE).stdout.endswith("ok\n")
        log = st.ctl("log", SPACE).stdout  # every message still decodes
        assert len(log.splitlines()) == lines_before - 52, (len(log.splitlines()), lines_before)
        assert "dict-secret" not in log and secret not in log
        for path in glob.glob(os.path.join(st.dir, "spaces", SPACE, "*")):
            if os.path.isfile(path):
                data = open(path, "rb").read()
                for needle in (secret.encode(), secret.lower().encode(), b"dict-secret-note"):
                    assert needle not in data, (path, needle)
        st.ctl("ingest", SPACE, "-", input=ndjson([
            {"type": "track", "userId": "other-1", "event": "After", "messageId": "after-1"}]))
        assert "after-1" in st.ctl("log", SPACE).stdout
    finally:
        st.close()


def test_regulation_order_and_crash():
    """A regulation runs in the space's ordered stream: events acknowledged before it are
    erased with the rest. One that was accepted when the server died (SIGKILL right after
    the 200) still runs: the next process to open the space runs what is waiting."""
    import signal
    st = Store()
    srv = None
    try:
        st.ctl("space", "create", SPACE)
        key = st.ctl("source", "create", SPACE).stdout.strip()
        admin = st.ctl("token", "create", SPACE).stdout.strip()
        for rnd in range(3):
            srv = Server(st)
            uid = "ordered-%d" % rnd
            s, _, b = srv.track("batch", {"batch": [
                {"type": "identify", "userId": uid, "traits": {"email": "%s@example.com" % uid},
                 "messageId": "%s-a" % uid},
                {"type": "track", "userId": uid, "event": "E", "messageId": "%s-b" % uid}]}, key)
            assert s == 200, b
            s, _, b = srv.request("POST", REG, admin, body={
                "regulationType": "DELETE_INTERNAL", "subjectType": "USER_ID",
                "subjectIds": [uid]})
            assert s == 200, b
            if rnd < 2:  # SIGKILL at once: the regulation may not have run yet
                srv.proc.send_signal(signal.SIGKILL)
                srv.proc.wait(timeout=30)
                srv = None
            else:
                s, _, b = srv.get("/v1/spaces/%s/collections/users/profiles/user_id:%s/traits"
                                  % (SPACE, uid), admin)
                assert s == 404, b
                srv.stop()
                srv = None
            assert user_events(st, uid) is None, rnd  # opening the space ran what waited
            listed = json.loads(st.ctl("regulation", "list", SPACE).stdout)
            assert listed[0]["status"] == "FINISHED", listed[0]
            assert uid not in st.ctl("log", SPACE).stdout
            assert st.ctl("check", SPACE).stdout.endswith("ok\n")
    finally:
        if srv:
            srv.stop()
        st.close()


if __name__ == "__main__":
    run_tests([test_routes_cli_and_suppression, test_deletion_and_physical_erasure,
               test_big_profile_and_kill_during_deletion,
               test_compact_retrains_the_log_dictionary, test_regulation_order_and_crash])
