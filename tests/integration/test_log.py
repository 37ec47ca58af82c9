# SPDX-License-Identifier: MIT
"""Storage format 2: the accepted-message log. `profilectl log` writes every accepted message
(stamps included) as NDJSON that `profilectl ingest` replays into an empty space with
identical profiles; messages that came over HTTP without a messageId or a type replay the
same; `profilectl rebuild` derives everything again from the log (identical on an untouched
store, under the new settings after a change, atomic under kill -9); format-1 stores are
refused with a pointer to `profilectl migrate`, which upgrades the committed format-1 fixture
keeping every profile, token, write key and setting, survives kill -9, and is idempotent."""
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time

from common import SOURCE, Server, Store, generate, run_tests, tool

FIXTURE = os.path.join(SOURCE, "tests", "fixtures", "format1")


def same_space(a, b, space):
    """Export, log and a few inspections agree between two stores (same space name)."""
    ea, eb = a.ctl("export", space).stdout, b.ctl("export", space).stdout
    assert ea == eb, "exports differ"
    assert a.ctl("log", space).stdout == b.ctl("log", space).stdout, "logs differ"
    for line in ea.splitlines()[:20]:
        sid = json.loads(line)["segment_id"]
        assert a.ctl("--json", "inspect", space, sid).stdout == \
            b.ctl("--json", "inspect", space, sid).stdout, sid
    return ea


def log_round_trip():
    a, b = Store(), Store()
    try:
        corpus = os.path.join(a.dir, "corpus.ndjson")
        generate(corpus, 3000, seed=5)
        for st in (a, b):
            st.ctl("space", "create", "s")
        a.ctl("ingest", "s", corpus, "--batch", "700")
        log = a.ctl("log", "s").stdout
        lines = log.splitlines()
        assert len(lines) == 3000, len(lines)
        types = {json.loads(x)["type"] for x in lines}
        assert types >= {"identify", "track", "page", "group"}, types
        first = json.loads(lines[0])
        assert list(first)[:4] == ["type", "messageId", "receivedAt", "source_id"], first
        path = os.path.join(b.dir, "log.ndjson")
        with open(path, "w") as f:
            f.write(log)
        b.ctl("ingest", "s", path)
        exported = same_space(a, b, "s")
        assert exported.count("\n") > 100
        assert b.ctl("check", "s").returncode == 0
    finally:
        a.close()
        b.close()


def http_messages_replay():
    """Over HTTP the server stamps receivedAt, the source, generated messageIds and the type
    of /v1/<type> routes; the log carries them, so a replay is the same."""
    a, b = Store(), Store()
    try:
        for st in (a, b):
            st.ctl("space", "create", "s")
        key = a.ctl("source", "create", "s", "--name", "web").stdout.strip()
        srv = Server(a)
        try:
            for i in range(30):  # no messageId, no type: /v1/track decides it
                s, _, body = srv.track("track", {"userId": "u-%d" % (i % 7), "event": "E%d" % i,
                                                 "properties": {"i": i}}, key)
                assert s == 200, body
            s, _, body = srv.track("identify", {"anonymousId": "a-1", "userId": "u-1",
                                                "traits": {"plan": "pro"}}, key)
            assert s == 200, body
            s, _, body = srv.track("batch", {"batch": [
                {"type": "group", "userId": "u-2", "groupId": "g-1", "traits": {"n": 1}},
                {"type": "alias", "userId": "u-3", "previousId": "u-2"}],
                "context": {"ip": "203.0.113.1"}}, key)
            assert s == 200, body
        finally:
            srv.stop()
        log = a.ctl("log", "s").stdout
        lines = [json.loads(x) for x in log.splitlines()]
        assert len(lines) == 33, len(lines)
        assert all(x["messageId"].startswith("ps-") for x in lines[:30]), lines[0]
        assert all(x["source_id"].startswith("src_") for x in lines), lines[0]
        assert lines[0]["type"] == "track" and lines[31]["context"]["ip"] == "203.0.113.1"
        path = os.path.join(b.dir, "log.ndjson")
        with open(path, "w") as f:
            f.write(log)
        b.ctl("ingest", "s", path)
        same_space(a, b, "s")
    finally:
        a.close()
        b.close()


def log_window_and_errors():
    st = Store()
    try:
        st.ctl("space", "create", "s")
        msgs = [{"type": "track", "userId": "u", "event": "E", "messageId": "m%d" % d,
                 "receivedAt": "2026-03-%02dT00:00:00Z" % d} for d in range(1, 6)]
        st.ctl("ingest", "s", "-", input="".join(json.dumps(m) + "\n" for m in msgs))
        got = st.ctl("log", "s", "--since", "2026-03-02", "--until", "2026-03-04").stdout
        assert [json.loads(x)["messageId"] for x in got.splitlines()] == ["m2", "m3"], got
        p = st.ctl("log", "s", "--since", "yesterday", check=False)
        assert p.returncode == 1 and "--since" in p.stderr, p.stderr
        p = st.ctl("log", "nope", check=False)
        assert p.returncode == 2, p.stderr
    finally:
        st.close()


def snapshot(st, space):
    export = st.ctl("export", space).stdout
    views = [st.ctl("--json", "inspect", space, json.loads(x)["segment_id"]).stdout
             for x in export.splitlines()[:30]]
    return export, views, st.ctl("log", space).stdout


def rebuild_is_identical():
    st = Store()
    try:
        corpus = os.path.join(st.dir, "corpus.ndjson")
        generate(corpus, 4000, seed=8)
        st.ctl("space", "create", "s")
        st.ctl("ingest", "s", corpus, "--batch", "900")
        before = snapshot(st, "s")
        out = json.loads(st.ctl("--json", "rebuild", "s").stdout)
        assert out["messages"] == 4000 and out["accepted"] == 4000, out
        assert snapshot(st, "s") == before, "a rebuild of an untouched store changed it"
        assert st.ctl("check", "s").returncode == 0
        # ingest after a rebuild goes on from the same counters
        st.ctl("ingest", "s", "-", input=json.dumps(
            {"type": "identify", "userId": "after-rebuild", "messageId": "ar-1"}) + "\n")
        assert st.ctl("inspect", "s", "user_id:after-rebuild").returncode == 0
        assert len(st.ctl("log", "s").stdout.splitlines()) == 4001
        assert st.ctl("check", "s").returncode == 0
    finally:
        st.close()


def rebuild_under_new_settings():
    """The derived state follows the settings a rebuild runs under: a value blocked after the
    fact is gone from every profile, and the log still holds the messages that carried it."""
    st = Store()
    try:
        st.ctl("space", "create", "s")
        msgs = [{"type": "identify", "userId": "u-1", "messageId": "m1",
                 "traits": {"email": "shared@example.com"}},
                {"type": "identify", "userId": "u-2", "messageId": "m2",
                 "traits": {"email": "shared@example.com"}}]
        st.ctl("ingest", "s", "-", input="".join(json.dumps(m) + "\n" for m in msgs))
        ids = {(x["type"], x["id"]) for x in st.json("inspect", "s", "user_id:u-1")["external_ids"]}
        assert ("email", "shared@example.com") in ids, ids
        path = os.path.join(st.dir, "rules.json")
        with open(path, "w") as f:
            json.dump({"blocked": ["shared@example.com"]}, f)
        st.ctl("settings", "set", "s", path)
        st.ctl("rebuild", "s")
        for u in ("u-1", "u-2"):
            ids = {x["type"] for x in st.json("inspect", "s", "user_id:" + u)["external_ids"]}
            assert "email" not in ids, (u, ids)
        assert len(st.ctl("log", "s").stdout.splitlines()) == 2
        assert st.ctl("check", "s").returncode == 0
    finally:
        st.close()


def rebuild_survives_kill():
    rng = random.Random(5)
    st = Store()
    try:
        corpus = os.path.join(st.dir, "corpus.ndjson")
        generate(corpus, 20000, seed=4)
        st.ctl("space", "create", "s")
        st.ctl("ingest", "s", corpus)
        want = snapshot(st, "s")
        for attempt in range(4):
            p = subprocess.Popen([tool("profilectl"), "--data", st.dir, "rebuild", "s"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.05, 1.5))
            p.send_signal(signal.SIGKILL)
            p.wait()
            assert snapshot(st, "s") == want, "a killed rebuild left a changed store"
            assert st.ctl("check", "s").returncode == 0
    finally:
        st.close()


def fixture_store():
    st = Store()
    shutil.rmtree(st.dir)
    shutil.copytree(os.path.join(FIXTURE, "data"), st.dir)
    return st


def migrate_format1():
    st = fixture_store()
    try:
        with open(os.path.join(FIXTURE, "secrets.json")) as f:
            secrets = json.load(f)
        # every command but migrate refuses, naming it
        for args in (("export", "legacy"), ("inspect", "legacy", "user_id:user-13"),
                     ("ingest", "legacy", "-"), ("check", "legacy"), ("log", "legacy")):
            p = st.ctl(*args, input="", check=False)
            assert p.returncode == 4 and "profilectl migrate legacy" in p.stderr, (args, p.stderr)
            assert len(p.stderr.strip().splitlines()) == 1, p.stderr
        # the server answers 503 for it and logs what to run
        srv = Server(st)
        try:
            s, _, body = srv.get("/v1/spaces/legacy/collections/users/profiles/user_id:user-13"
                                 "/traits", secrets["token"])
            assert s == 503, (s, body)
        finally:
            srv.stop()
        assert any("profilectl migrate legacy" in line for line in srv.log), srv.log[-3:]
        out = json.loads(st.ctl("--json", "migrate", "legacy").stdout)
        assert out == {"space": "legacy", "from_format": 1, "format": 2,
                       "messages_logged": 256}, out
        with open(os.path.join(FIXTURE, "export.ndjson")) as f:
            assert st.ctl("export", "legacy").stdout == f.read()
        with open(os.path.join(FIXTURE, "settings.out.json")) as f:
            assert st.ctl("settings", "get", "legacy").stdout == f.read()
        assert st.ctl("check", "legacy").returncode == 0

        def events_of(user):  # the events section of `inspect`
            out = st.ctl("inspect", "legacy", user).stdout
            return out[out.index("\nevents"):out.index("\nlinks")].splitlines()
        # migrated events keep their whole rows (their index rows hold no copies); the listing
        # names each event's messageId, which the log keeps
        migrated = events_of("user_id:user-13")
        assert any(x.endswith("  m-11-0  Experiment Viewed") for x in migrated), migrated
        log = st.ctl("log", "legacy")
        assert len(log.stdout.splitlines()) == 256 and "format 1" in log.stderr, log.stderr
        assert json.loads(st.ctl("--json", "migrate", "legacy").stdout)["from_format"] == 2
        srv = Server(st)
        try:
            s, _, body = srv.get("/v1/spaces/legacy/collections/users/profiles/user_id:user-13"
                                 "/traits", secrets["token"])
            assert s == 200 and body["traits"], (s, body)
            s, _, body = srv.track("track", {"userId": "user-13", "event": "After"},
                                   secrets["write_key"])
            assert s == 200, body
        finally:
            srv.stop()
        assert len(st.ctl("log", "legacy").stdout.splitlines()) == 257
        # the new event's row is brief, with the whole event in its index row; the migrated
        # ones are listed from their whole rows as before
        mixed = events_of("user_id:user-13")
        assert [x for x in mixed if not x.endswith("  After")] == migrated, (mixed, migrated)
        assert len(mixed) == len(migrated) + 1
        # the migrated log lacks what format 1 did not keep: rebuild refuses unless forced
        p = st.ctl("rebuild", "legacy", check=False)
        assert p.returncode == 3 and "incomplete" in p.stderr and "--force" in p.stderr, p.stderr
        st.ctl("rebuild", "legacy", "--force")
        assert st.ctl("check", "legacy").returncode == 0
        rebuilt = events_of("user_id:user-13")  # without identifies, m-11-1 goes elsewhere
        assert set(rebuilt) - set(mixed) == set() and len(rebuilt) > 10, (rebuilt, mixed)
    finally:
        st.close()


def check_compares_event_copies():
    """A profile's index row holds a copy of its event (the listing reads no other row);
    `check` says when the copy and the event row disagree or the copy is missing."""
    st = Store()
    try:
        st.ctl("space", "create", "t")
        msgs = [{"type": "track", "event": name, "userId": "u1", "messageId": mid}
                for name, mid in (("Olden", "a1"), ("Newer", "a2"))]
        st.ctl("ingest", "t", "-", input="".join(json.dumps(m) + "\n" for m in msgs))
        assert st.ctl("check", "t").stdout.endswith("ok\n")
        env = os.path.join(st.dir, "spaces", "t")
        dump = subprocess.run(["mdb_dump", "-s", "pevent", env], capture_output=True,
                              text=True, check=True).stdout
        name = "Olden".encode().hex()
        assert dump.count(name) == 1, dump

        def load(text):  # mdb_load does not know the page size line mdb_dump writes
            text = "".join(x for x in text.splitlines(True) if not x.startswith("db_pagesize="))
            subprocess.run(["mdb_load", "-s", "pevent", env], input=text, text=True,
                           check=True)
        lines = dump.splitlines()
        at = next(i for i, x in enumerate(lines) if name in x)
        # the copy says page (3) where the event row says track (2): [1, type, name, ...]
        assert lines[at][1] == "9" and lines[at][3:7] == "0102", lines[at]
        changed = list(lines)
        changed[at] = lines[at][:5] + "03" + lines[at][7:]
        load("\n".join(changed) + "\n")
        p = st.ctl("check", "t", check=False)
        assert p.returncode != 0 and "holds a copy that differs" in p.stdout + p.stderr, p
        # the index row without its copy, or with one that cannot be read: the brief event row
        # says too little; check goes on and names the row
        for value in (" ", " c1c1"):
            changed[at] = value
            load("\n".join(changed) + "\n")
            p = st.ctl("check", "t", check=False)
            assert p.returncode != 0 and "lacks a readable copy" in p.stdout + p.stderr, p
    finally:
        st.close()


def migrate_survives_kill():
    """kill -9 at random moments during migrate leaves the old store or the new one."""
    rng = random.Random(3)
    with open(os.path.join(FIXTURE, "export.ndjson")) as f:
        want = f.read()
    for attempt in range(8):
        st = fixture_store()
        try:
            p = subprocess.Popen([tool("profilectl"), "--data", st.dir, "migrate", "legacy"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.0, 0.05))
            p.send_signal(signal.SIGKILL)
            p.wait()
            e = st.ctl("export", "legacy", check=False)
            if e.returncode == 0:
                assert e.stdout == want, "a half-migrated store"
            else:
                assert "profilectl migrate" in e.stderr, e.stderr
            st.ctl("migrate", "legacy")
            assert st.ctl("export", "legacy").stdout == want
            assert st.ctl("check", "legacy").returncode == 0
        finally:
            st.close()


def log_retention_trims():
    """log_retention_days: messages received that long before the newest one leave the log,
    with the events read from them; what they made stays; the log is marked incomplete."""
    st = Store()
    try:
        path = os.path.join(st.dir, "settings.json")
        for bad in ({"log_retention_days": 3}, {"log_retention_days": 20,
                                                "dedup_window_hours": 24 * 30}):
            with open(path, "w") as f:
                json.dump(bad, f)
            r = st.ctl("space", "create", "x", "--settings", path, check=False)
            assert r.returncode == 3 and "log_retention_days" in r.stderr, r.stderr
        with open(path, "w") as f:
            json.dump({"log_retention_days": 14}, f)
        st.ctl("space", "create", "t", "--settings", path)
        now = int(time.time())
        old = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 30 * 86400))
        new = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        msgs = [
            {"type": "track", "event": "Old", "userId": "u1", "receivedAt": old,
             "timestamp": old, "messageId": "o1"},
            {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}, "receivedAt": old,
             "messageId": "o2"},
            {"type": "track", "event": "New", "userId": "u1", "receivedAt": new,
             "messageId": "n1"},
        ]
        st.ctl("ingest", "t", "-", input="".join(json.dumps(m) + "\n" for m in msgs))
        log = st.ctl("log", "t")
        assert [json.loads(x)["messageId"] for x in log.stdout.splitlines()] == ["n1"], log.stdout
        assert "older than log_retention_days were trimmed" in log.stderr, log.stderr
        p = json.loads(st.ctl("--json", "inspect", "t", "user_id:u1").stdout)
        assert p["traits"] == {"plan": "pro"}, p
        assert st.ctl("check", "t").stdout.endswith("ok\n")
        r = st.ctl("rebuild", "t", check=False)
        assert r.returncode == 3 and "trimmed" in r.stderr and "--force" in r.stderr, r.stderr
        # the default keeps everything
        st.ctl("space", "create", "k")
        st.ctl("ingest", "k", "-", input="".join(json.dumps(m) + "\n" for m in msgs))
        assert len(st.ctl("log", "k").stdout.splitlines()) == 3
    finally:
        st.close()


if __name__ == "__main__":
    tempfile.tempdir = None
    run_tests([log_round_trip, http_messages_replay, log_window_and_errors, rebuild_is_identical,
               rebuild_under_new_settings, rebuild_survives_kill, migrate_format1,
               migrate_survives_kill, log_retention_trims, check_compares_event_copies])
