# SPDX-License-Identifier: MIT
"""`profilectl unmerge SPACE SEGMENT_ID [--dry-run] [--keep-apart]` (docs/privacy.md): the
merged-away profile becomes canonical again with what belonged to it; a dry run changes
nothing; --keep-apart stops a later event from merging the two again; without it, one does."""
import json

from common import Store, run_tests

SPACE = "s"


def ndjson(msgs):
    return "".join(json.dumps(m) + "\n" for m in msgs)


def inspect(st, ident):
    return json.loads(st.ctl("--json", "inspect", SPACE, ident).stdout)


def setup():
    st = Store()
    st.ctl("space", "create", SPACE)
    st.ctl("ingest", SPACE, "-", input=ndjson([
        {"type": "identify", "anonymousId": "a1", "traits": {"email": "x@example.com",
                                                             "color": "red"}, "messageId": "1"},
        {"type": "track", "anonymousId": "a1", "event": "A1 event", "messageId": "2"},
        {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}, "messageId": "3"},
        {"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "4"},
    ]))
    return st


def ids(profile):
    return sorted("%s:%s" % (x["type"], x["id"]) for x in profile["external_ids"])


def test_unmerge():
    st = setup()
    try:
        merged = inspect(st, "user_id:u1")
        assert len(merged["merged_ids"]) == 1, merged
        away = merged["merged_ids"][0]
        if isinstance(away, dict):
            away = away.get("segment_id") or away.get("from")
        canonical = merged["segment_id"]
        export = st.ctl("export", SPACE).stdout
        dry = json.loads(st.ctl("unmerge", SPACE, away, "--dry-run").stdout)
        assert dry["applied"] is False and dry["segment_id"] == away, dry
        assert dry["from"] == canonical and dry["identifiers"]["first"] == ["user_id:u1"], dry
        assert st.ctl("export", SPACE).stdout == export, "a dry run changed the space"
        bad = st.ctl("unmerge", SPACE, canonical, check=False)
        assert bad.returncode == 3 and "canonical" in bad.stderr, bad.stderr
        bad = st.ctl("unmerge", SPACE, "use_doesnotexist00000000000000", check=False)
        assert bad.returncode == 2, bad.stderr
        p = st.ctl("unmerge", SPACE, away)
        assert "will merge them again" in p.stderr, p.stderr
        u = inspect(st, "user_id:u1")
        a = inspect(st, "anonymous_id:a1")
        assert u["segment_id"] == away and a["segment_id"] == canonical, (u, a)
        assert ids(u) == ["user_id:u1"], ids(u)
        assert ids(a) == ["anonymous_id:a1", "email:x@example.com"], ids(a)
        assert u["traits"] == {"plan": "pro"}, u["traits"]
        assert "plan" not in a["traits"] and a["traits"]["color"] == "red", a["traits"]
        assert st.ctl("check", SPACE).stdout.endswith("ok\n")
        # without --keep-apart, an event with both sides' identifiers merges them again
        st.ctl("ingest", SPACE, "-", input=ndjson([
            {"type": "track", "userId": "u1", "anonymousId": "a1", "event": "E",
             "messageId": "5"}]))
        assert inspect(st, "user_id:u1")["segment_id"] == inspect(st, "anonymous_id:a1")[
            "segment_id"]
    finally:
        st.close()


def test_keep_apart():
    st = setup()
    try:
        away = inspect(st, "user_id:u1")["merged_ids"][0]
        if isinstance(away, dict):
            away = away.get("segment_id") or away.get("from")
        out = json.loads(st.ctl("unmerge", SPACE, away, "--keep-apart").stdout)
        assert out["kept_apart"] is True, out
        summary = json.loads(st.ctl("--json", "ingest", SPACE, "-", input=ndjson([
            {"type": "track", "userId": "u1", "anonymousId": "a1", "event": "E",
             "messageId": "5"}])).stdout)
        assert summary["merges"] == 0 and summary["violations"] >= 1, summary
        assert inspect(st, "user_id:u1")["segment_id"] != inspect(st, "anonymous_id:a1")[
            "segment_id"]
        assert st.ctl("check", SPACE).stdout.endswith("ok\n")
    finally:
        st.close()


if __name__ == "__main__":
    run_tests([test_unmerge, test_keep_apart])
