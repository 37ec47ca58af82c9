#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The recommended settings preset, block_shared_values, `profilectl explain` checked against
what the engine actually did, export --messages, and resolution quality on a realistic
population (docs/identity-settings.md)."""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from common import SOURCE, TIMEOUT, Store, run_tests, tool  # noqa: E402

sys.path.insert(0, os.path.join(SOURCE, "tools"))
import quality  # noqa: E402

T0 = "2026-03-01T10:00:00.000Z"


def msg(mid, minute=0, day=0, **fields):
    """A track message at T0 + day days + minute minutes."""
    ts = "2026-03-%02dT10:%02d:00.000Z" % (1 + day, minute)
    m = {"type": "track", "event": "Viewed", "messageId": mid, "timestamp": ts,
         "receivedAt": ts}
    m.update(fields)
    return m


def ingest(st, space, msgs):
    st.ctl("ingest", space, "-", input="".join(json.dumps(m) + "\n" for m in msgs))


def explain(st, space, mid):
    doc = st.json("explain", space, mid)
    assert doc["message_id"] == mid and len(doc["messages"]) == 1, doc
    return doc["messages"][0]


def ident(e, typ, value=None):
    found = [i for i in e["identifiers"] if i["type"] == typ and
             (value is None or i["value"] == value)]
    assert len(found) == 1, (typ, value, e["identifiers"])
    return found[0]


def segment(st, space, ident_):
    return st.json("inspect", space, ident_)["segment_id"]


def settings_with(st, space, **changes):
    s = json.loads(st.ctl("settings", "get", space).stdout)
    s.update(changes)
    path = os.path.join(st.dir, "settings-%s.json" % space)
    with open(path, "w") as f:
        json.dump(s, f)
    st.ctl("settings", "set", space, path)


def test_preset_validation_and_round_trip():
    st = Store()
    try:
        st.ctl("space", "create", "r", "--preset", "recommended")
        got = json.loads(st.ctl("settings", "get", "r").stdout)
        assert got["block_shared_values"] is True and got["blocked_presets"] == ["junk_ids"]
        ids = got["identifiers"]
        assert (ids["anonymous_id"]["limit"], ids["anonymous_id"]["frequency"]) == (1, "weekly")
        assert ids["user_id"]["priority"] == 1 and ids["email"]["priority"] == 2
        assert ids["anonymous_id"]["priority"] < ids["ios.id"]["priority"] < \
            ids["ios.push_token"]["priority"]
        # the file settings get prints applies the preset to an existing space, unchanged
        path = os.path.join(st.dir, "r.json")
        with open(path, "w") as f:
            f.write(st.ctl("settings", "get", "r").stdout)
        st.ctl("settings", "check", path)
        st.ctl("space", "create", "plain")
        st.ctl("settings", "set", "plain", path)
        assert st.ctl("settings", "get", "plain").stdout == st.ctl("settings", "get", "r").stdout
        assert st.json("space", "create", "j", "--preset", "recommended")["preset"] == "recommended"
        # refusals name the problem and create nothing
        p = st.ctl("space", "create", "x", "--preset", "nope", check=False)
        assert p.returncode == 1 and "unknown preset 'nope'" in p.stderr and \
            "recommended" in p.stderr, p.stderr
        p = st.ctl("space", "create", "x", "--preset", "recommended", "--settings", path,
                   check=False)
        assert p.returncode == 1 and "exclude each other" in p.stderr, p.stderr
        assert "x" not in st.json("space", "list")
        bad = os.path.join(st.dir, "bad.json")
        with open(bad, "w") as f:
            f.write('{"block_shared_values": "yes"}')
        p = st.ctl("settings", "check", bad, check=False)
        assert p.returncode == 3 and "block_shared_values" in p.stdout + p.stderr, p
        # the default stays Segment's: no value is ever treated as shared
        st.ctl("space", "create", "d")
        assert json.loads(st.ctl("settings", "get", "d").stdout)["block_shared_values"] is False
    finally:
        st.close()


def test_explain_outcomes_match_the_engine():
    st = Store()
    try:
        st.ctl("space", "create", "s")
        ingest(st, "s", [
            msg("m-create", 0, userId="u1"),
            msg("m-append", 1, userId="u1"),
            msg("m-anon", 2, anonymousId="a1"),
            msg("m-merge", 3, userId="u1", anonymousId="a1"),
            msg("m-demote", 4, userId="u2", anonymousId="a1"),
            msg("m-blocked", 5, userId="null", anonymousId="a9"),
            msg("m-none", 6, userId="-1"),
        ])
        u1, u2 = segment(st, "s", "user_id:u1"), segment(st, "s", "user_id:u2")
        a9 = segment(st, "s", "anonymous_id:a9")

        e = explain(st, "s", "m-create")
        assert e["outcome"]["users"]["result"] == "create"
        assert e["outcome"]["users"]["segment_id"] == u1
        x = ident(e, "user_id")
        assert (x["status"], x["profile"], x["from"]) == ("new", u1, "userId")
        assert [d["kind"] for d in e["decisions"]] == ["create", "mapping"]

        e = explain(st, "s", "m-append")
        assert e["outcome"]["users"]["result"] == "append" and e["decisions"] == []
        assert e["outcome"]["users"]["segment_id"] == u1
        assert ident(e, "user_id")["status"] == "matched"

        # the anonymous profile merged into u1's: the one inspect shows, by this message
        anon = explain(st, "s", "m-anon")["outcome"]["users"]["segment_id"]
        e = explain(st, "s", "m-merge")
        out = e["outcome"]["users"]
        assert (out["result"], out["segment_id"], out["merged"]) == ("merge", u1, [anon]), out
        x = ident(e, "anonymous_id")
        assert (x["status"], x["profile"]) == ("merged", anon), x
        merges = st.json("inspect", "s", "user_id:u1")["merges"]
        assert [(m["segment_id"], m["message_id"]) for m in merges] == [(anon, "m-merge")]
        merge_row = [d for d in e["decisions"] if d["kind"] == "merge"][0]
        assert (merge_row["type"], merge_row["value"]) == ("anonymous_id", "a1")

        # two userIds cannot share a profile: a1 is dropped, and stays with u1
        e = explain(st, "s", "m-demote")
        x = ident(e, "anonymous_id")
        assert (x["status"], x["profile"]) == ("dropped", u1), x
        assert "user_id over its limit (1 ever)" in x["detail"], x
        v = [d for d in e["decisions"] if d["kind"] == "violation"][0]
        assert (v["reason"], v["limit_type"], v["limit"], v["segment_id"]) == \
            ("identifier_value_limit_exceeded", "user_id", "1 ever", u1), v
        assert e["outcome"]["users"]["segment_id"] == u2
        ids2 = {(i["type"], i["id"]) for i in st.json("inspect", "s", "user_id:u2")["external_ids"]}
        assert ("anonymous_id", "a1") not in ids2
        feed = [json.loads(line) for line in
                st.ctl("changes", "s", "--table", "violations").stdout.splitlines()]
        row = [r for r in feed if r["triggering_event_id"] == "m-demote"][0]
        assert row["segment_id"] == u1 and row["external_id_value"] == "a1", row

        e = explain(st, "s", "m-blocked")
        x = ident(e, "user_id")
        assert x["status"] == "blocked" and x["profile"] is None
        assert "suggested blocked values: value null" in x["detail"], x
        assert e["outcome"]["users"]["segment_id"] == a9

        e = explain(st, "s", "m-none")
        assert e["outcome"]["users"] == {"result": "unresolved", "segment_id": None,
                                         "merged": [], "canonical_now": None}, e["outcome"]
        # a message an event filter dropped: its note in the log says which filter
        st.ctl("filter", "create", "s", "bots", 'event = "Bot"')
        ingest(st, "s", [msg("m-bot", 7, userId="u1", event="Bot")])
        e = explain(st, "s", "m-bot")
        assert e["filtered_by"] == "bots" and e["identifiers"] == [] and e["outcome"] == {}, e
        assert "dropped at the door by event filter bots" in st.ctl("explain", "s",
                                                                    "m-bot").stdout
        # the text form tells the same story
        text = st.ctl("explain", "s", "m-demote").stdout
        assert "dropped (held by %s)" % u1 in text and "-> %s" % u2 in text, text
        p = st.ctl("explain", "s", "m-unknown", check=False)
        assert p.returncode == 2 and "no message m-unknown" in p.stderr, p.stderr
        p = st.ctl("explain", "s", check=False)
        assert p.returncode == 1 and "usage" in p.stderr
        assert "profilectl explain s" in st.ctl("inspect", "s", "user_id:u1").stdout
    finally:
        st.close()


def test_explain_caps_and_shared_values():
    st = Store()
    try:
        # caps: a profile holds at most mapping_limit identifiers, merges at most merge_limit
        st.ctl("space", "create", "c")
        settings_with(st, "c", mapping_limit=2, merge_limit=1)
        ingest(st, "c", [
            msg("c1", 0, userId="u1", anonymousId="a1",
                context={"traits": {"email": "one@example.com"}}),
            msg("c2", 1, anonymousId="b1"),
            msg("c3", 2, anonymousId="b2"),
            msg("c4", 3, anonymousId="b1", userId="u1"),
            msg("c5", 4, anonymousId="b2", userId="u1"),
        ])
        e = explain(st, "c", "c1")
        assert ident(e, "email")["from"] == "context.traits.email"
        x = ident(e, "anonymous_id")
        assert (x["status"], x["profile"], x["from"]) == ("not_mapped", None, "anonymousId"), x
        ids = {(i["type"], i["id"]) for i in st.json("inspect", "c", "user_id:u1")["external_ids"]}
        assert ("anonymous_id", "a1") not in ids and ("email", "one@example.com") in ids, ids
        e = explain(st, "c", "c5")  # u1 merged b1's profile already: one merge is the cap
        x = ident(e, "anonymous_id")
        b2 = segment(st, "c", "anonymous_id:b2")
        assert (x["status"], x["profile"]) == ("kept_apart", b2), x
        assert b2 != segment(st, "c", "user_id:u1")
        v = [d for d in e["decisions"] if d["kind"] == "violation"][0]
        assert v["reason"] == "profile_merge_limit_exceeded" and v["segment_id"] == b2, v

        # shared values: a device two people signed in on matches nothing afterwards
        st.ctl("space", "create", "p", "--preset", "recommended")
        dev = {"device": {"id": "tablet-1", "type": "ios"}}
        ingest(st, "p", [
            msg("p1", 0, userId="amy", anonymousId="t-1", context=dev),
            msg("p2", 1, userId="bob", anonymousId="t-2", context=dev),
            msg("p3", 2, anonymousId="t-3", context=dev),
            msg("p4", 3, userId="junk-test", anonymousId="undefined"),
        ], )
        amy, bob = segment(st, "p", "user_id:amy"), segment(st, "p", "user_id:bob")
        e = explain(st, "p", "p2")
        x = ident(e, "ios.id")
        assert (x["status"], x["profile"]) == ("dropped", amy), x
        assert "marked shared" in x["detail"], x
        assert e["outcome"]["users"]["segment_id"] == bob
        e = explain(st, "p", "p3")
        x = ident(e, "ios.id")
        assert (x["status"], x["profile"]) == ("shared", amy), x
        t3 = e["outcome"]["users"]["segment_id"]
        assert t3 not in (amy, bob) and e["outcome"]["users"]["result"] == "create"
        x = ident(explain(st, "p", "p4"), "anonymous_id")
        assert x["status"] == "blocked" and "junk_ids preset" in x["detail"], x
        # a store tablet: a second new anonymous id inside anonymous_id's week shows the
        # device is shared; a person's reinstall a month later does not
        kiosk = {"device": {"id": "store-tab", "type": "android"}}
        phone = {"device": {"id": "my-phone", "type": "android"}}
        ingest(st, "p", [
            msg("k1", 0, day=1, anonymousId="visit-1", context=kiosk),
            msg("k2", 30, day=1, anonymousId="visit-2", context=kiosk),
            msg("k3", 50, day=1, anonymousId="visit-3", context=kiosk),
            msg("r1", 0, day=2, anonymousId="install-1", context=phone),
            msg("r2", 0, day=27, anonymousId="install-2", context=phone),
        ])
        x = ident(explain(st, "p", "k2"), "android.id")
        first = segment(st, "p", "anonymous_id:visit-1")
        assert (x["status"], x["profile"]) == ("dropped", first) and "marked shared" in \
            x["detail"], x
        x = ident(explain(st, "p", "k3"), "android.id")
        assert x["status"] == "shared", x
        assert len({segment(st, "p", "anonymous_id:visit-%d" % i) for i in (1, 2, 3)}) == 3
        e = explain(st, "p", "r2")
        assert ident(e, "android.id")["status"] == "matched", e
        assert segment(st, "p", "anonymous_id:install-2") == \
            segment(st, "p", "anonymous_id:install-1")
        reasons = [json.loads(line)["reason"] for line in
                   st.ctl("changes", "p", "--table", "violations").stdout.splitlines()]
        # the tablet: marked, then refused; the store tablet: the same
        assert reasons.count("identifier_value_shared") == 4, reasons
        # the same events under the defaults: the tablet glues the anonymous visit to amy
        st.ctl("space", "create", "d")
        ingest(st, "d", [json.loads(line) for line in st.ctl("log", "p").stdout.splitlines()])
        assert explain(st, "d", "p3")["outcome"]["users"]["segment_id"] == \
            segment(st, "d", "user_id:amy")
        st.ctl("check", "p")
        # a rebuild derives the shared marks again
        before = st.ctl("export", "p", "--messages").stdout
        st.ctl("rebuild", "p")
        assert st.ctl("export", "p", "--messages").stdout == before
    finally:
        st.close()


def test_quality_on_a_realistic_population():
    st = Store()
    try:
        work = tempfile.mkdtemp(dir=st.dir)
        corpus, truth = os.path.join(work, "c.ndjson"), os.path.join(work, "t.tsv")
        with open(corpus, "w") as f:
            subprocess.run([tool("gen_events"), "--events", "12000", "--seed", "5",
                            "--realistic", "--days", "120", "--truth", truth], stdout=f,
                           check=True, timeout=TIMEOUT)
        msgs, labels = quality.load(corpus, truth)
        with open(corpus) as f:
            logged = {json.loads(line)["messageId"] for line in f}
        results = {}
        for name, args in (("defaults", []), ("recommended", ["--preset", "recommended"])):
            st.ctl("space", "create", name, *args)
            st.ctl("ingest", name, corpus)
            results[name] = quality.store_quality(tool("profilectl"), st.dir, name, msgs, labels)
            # a logged message is in one user profile at most
            listed = [mid for line in st.ctl("export", name, "--collection", "users",
                                             "--messages").stdout.splitlines()
                      for mid in json.loads(line)["message_ids"]]
            assert len(listed) == len(set(listed)) and set(listed) <= logged, name
        d, r = results["defaults"], results["recommended"]
        assert r["precision"] >= 0.999 and r["recall"] >= 0.98, r
        assert r["precision"] > d["precision"] and r["recall"] > d["recall"], (d, r)
        naive = quality.naive_quality(msgs, labels)
        assert naive["precision"] < 0.5 and naive["recall"] > 0.98, naive
    finally:
        st.close()


def test_gen_events_behaviours_switch_off():
    out = subprocess.run([tool("gen_events"), "--events", "3000", "--realistic", "--days", "30",
                          "--without", "family,kiosk,qa"], capture_output=True, text=True,
                         check=True, timeout=TIMEOUT).stdout
    assert "fam-" not in out and "store-tab" not in out and "qa-test-user" not in out
    full = subprocess.run([tool("gen_events"), "--events", "3000", "--realistic", "--days", "30"],
                          capture_output=True, text=True, check=True, timeout=TIMEOUT).stdout
    assert "store-tab" in full and "qa-test-user" in full
    p = subprocess.run([tool("gen_events"), "--realistic", "--without", "cats"],
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 1 and "unknown behaviour cats" in p.stderr, p.stderr


if __name__ == "__main__":
    run_tests([test_preset_validation_and_round_trip, test_explain_outcomes_match_the_engine,
               test_explain_caps_and_shared_values, test_quality_on_a_realistic_population,
               test_gen_events_behaviours_switch_off])
