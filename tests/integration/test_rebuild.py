# SPDX-License-Identifier: MIT
"""`profilectl rebuild --settings FILE [--dry-run]` (docs/profilectl.md): a dry run changes
nothing and prints the difference; applying equals ingesting the same log into an empty space
under FILE; invalid settings change nothing."""
import json
import os

from common import Store, generate, run_tests

SPACE = "s"


def export(st):
    return st.ctl("export", SPACE).stdout


def test_dry_run_and_apply():
    st = Store()
    fresh = Store()
    try:
        st.ctl("space", "create", SPACE)
        log = os.path.join(st.dir, "in.ndjson")
        generate(log, 6000, seed=11)
        st.ctl("ingest", SPACE, log)
        # stricter settings: at most one email and one anonymous id per profile
        settings = json.loads(st.ctl("settings", "get", SPACE).stdout)
        settings["identifiers"]["email"]["limit"] = 1
        settings["identifiers"]["anonymous_id"]["limit"] = 1
        strict = os.path.join(st.dir, "strict.json")
        with open(strict, "w") as f:
            json.dump(settings, f)
        before = export(st)

        same = json.loads(st.ctl("rebuild", SPACE, "--dry-run").stdout)
        assert same["applied"] is False, same
        d = same["diff"]
        assert d["split_count"] == 0 and d["join_count"] == 0 and \
            d["identifiers_moved"] == 0, d
        assert d["profiles_before"] == d["profiles_after"], d

        dry = json.loads(st.ctl("rebuild", SPACE, "--settings", strict, "--dry-run").stdout)
        d = dry["diff"]
        assert dry["applied"] is False and dry["messages"] > 0, dry
        assert d["split_count"] > 0 and d["profiles_after"] > d["profiles_before"], d
        first = d["splits"][0]
        assert first["segment_id"].startswith("use_") and len(first["into"]) >= 2, first
        assert first["identifiers"] and first["identifier_count"] >= len(first["identifiers"])
        assert sum(d["violations_after"].values()) > sum(d["violations_before"].values()), d
        assert export(st) == before, "a dry run changed the space"
        assert json.loads(st.ctl("settings", "get", SPACE).stdout)["identifiers"]["email"][
            "limit"] != 1, "a dry run changed the settings"

        bad = os.path.join(st.dir, "bad.json")
        with open(bad, "w") as f:
            f.write('{"identifiers":{"email":{"limit":0}}}')
        p = st.ctl("rebuild", SPACE, "--settings", bad, check=False)
        assert p.returncode == 3 and "limit" in p.stderr, p.stderr
        assert export(st) == before

        applied = json.loads(st.ctl("--json", "rebuild", SPACE, "--settings", strict).stdout)
        assert applied["applied"] is True, applied
        assert json.loads(st.ctl("settings", "get", SPACE).stdout)["identifiers"]["email"][
            "limit"] == 1
        after = export(st)
        assert after != before
        # a profile whose creating message still creates one keeps its segment_id: only the
        # profiles that split or joined get new ones
        ids_before = {json.loads(x)["segment_id"] for x in before.splitlines()}
        ids_after = {json.loads(x)["segment_id"] for x in after.splitlines()}
        kept = len(ids_before & ids_after)
        print("# segment_ids kept across the rebuild: %d of %d (%d splits)"
              % (kept, len(ids_before), d["split_count"]))
        assert kept >= len(ids_before) - 2 * d["split_count"] - d["join_count"], \
            (kept, len(ids_before), d["split_count"])
        # the same log ingested into an empty space under FILE gives the same export
        logged = os.path.join(st.dir, "logged.ndjson")
        with open(logged, "w") as f:
            f.write(st.ctl("log", SPACE).stdout)
        fresh.ctl("space", "create", SPACE, "--settings", strict)
        fresh.ctl("ingest", SPACE, logged)
        assert fresh.ctl("export", SPACE).stdout == after, "rebuild != fresh ingest under FILE"
        assert st.ctl("check", SPACE).stdout.endswith("ok\n")
    finally:
        st.close()
        fresh.close()


def test_looser_settings_join_profiles():
    """Raising the limits lets profiles that the limits kept apart join: a dry run lists the
    joins with the segment_ids they come from, and fewer profiles after."""
    import subprocess
    from common import tool
    st = Store()
    try:
        st.ctl("space", "create", SPACE)
        log = os.path.join(st.dir, "real.ndjson")
        with open(log, "w") as f:
            subprocess.run([tool("gen_events"), "--events", "5000", "--seed", "42",
                            "--realistic"], stdout=f, check=True)
        st.ctl("ingest", SPACE, log)
        settings = json.loads(st.ctl("settings", "get", SPACE).stdout)
        for rule in settings["identifiers"].values():
            if "limit" in rule:
                rule["limit"] = min(1000, rule["limit"] * 10)
        loose = os.path.join(st.dir, "loose.json")
        with open(loose, "w") as f:
            json.dump(settings, f)
        d = json.loads(st.ctl("rebuild", SPACE, "--settings", loose, "--dry-run").stdout)["diff"]
        assert d["join_count"] > 0 and d["profiles_after"] < d["profiles_before"], d
        join = d["joins"][0]
        assert len(join["from"]) >= 2 and join["segment_id"] in join["from"], join
        assert d["identifiers_moved"] >= join["identifier_count"], d
    finally:
        st.close()


if __name__ == "__main__":
    run_tests([test_dry_run_and_apply, test_looser_settings_join_profiles])
