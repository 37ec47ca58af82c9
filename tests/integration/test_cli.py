# SPDX-License-Identifier: MIT
"""profilectl's contract: commands, outputs and exit codes (docs/profilectl.md)."""
import json
import os
import re
import subprocess

from common import TIMEOUT, Store, run_tests, tool


def test_usage_and_exit_codes():
    s = Store()
    try:
        assert s.ctl("--help").stdout.startswith("usage: profilectl")
        assert re.fullmatch(r"profilectl \d+\.\d+\.\d+\n", s.ctl("--version").stdout)
        # COMMAND --help: that command's lines only
        out = s.ctl("token", "--help").stdout
        assert "token create SPACE" in out and "token revoke" in out and "space create" not in out
        out = s.ctl("import", "--help").stdout
        assert "import SPACE FILE.csv" in out and "import-template" not in out, out
        # a data directory that is not there is an error, except for the command that makes it
        gone = os.path.join(s.dir, "nowhere")
        for args in (("space", "list"), ("export", "s1"), ("check", "s1")):
            p = subprocess.run([tool("profilectl"), "--data", gone, *args], capture_output=True,
                               text=True, timeout=60)
            assert p.returncode == 2 and "data directory %s does not exist" % gone in p.stderr, \
                (args, p.returncode, p.stderr)
        p = subprocess.run([tool("profilectl"), "--data", gone, "space", "create", "x"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and os.path.isdir(gone), p.stderr
        p = s.ctl("frobnicate", check=False)
        assert p.returncode == 1 and "unknown command 'frobnicate'" in p.stderr
        p = s.ctl("inspect", "nope", "user_id:x", check=False)
        assert p.returncode == 2 and "no space 'nope'" in p.stderr
        p = s.ctl("space", "create", "bad name!", check=False)
        assert p.returncode == 3 and "invalid space name" in p.stderr
        s.ctl("space", "create", "s1")
        p = s.ctl("space", "create", "s1", check=False)
        assert p.returncode == 3 and "already exists" in p.stderr
        s.ctl("space", "create", "s0")
        assert s.ctl("space", "list").stdout == "s0\ns1\n"
        assert s.json("space", "list") == ["s0", "s1"]
        p = s.ctl("inspect", "s1", "user_id:ghost", check=False)
        assert p.returncode == 2 and "no profile for user_id:ghost" in p.stderr
        p = s.ctl("inspect", "s1", "garbage", check=False)
        assert p.returncode == 3
        p = s.ctl("ingest", "s1", "--batch", "0", check=False)
        assert p.returncode == 1 and "--batch" in p.stderr
        p = s.ctl("ingest", "s1", "/no/such/file", check=False)
        assert p.returncode == 2 and "cannot open /no/such/file" in p.stderr
        p = s.ctl("export", "s1", "--collection", "people", check=False)
        assert p.returncode == 1
        p = s.ctl("inspect", "s1", "user_id:x", "--wat", check=False)
        assert p.returncode == 1 and "unknown option --wat" in p.stderr
        # list tables have a header over their first row, and print nothing without rows
        assert s.ctl("token", "list", "s1").stdout == ""
        s.ctl("token", "create", "s1", "--name", "t1")
        rows = s.ctl("token", "list", "s1").stdout.splitlines()
        assert rows[0].split() == ["NAME", "ROLE", "CREATED"] and rows[1].startswith("t1 "), rows
    finally:
        s.close()


def test_settings_get_set_check():
    s = Store()
    try:
        bad = os.path.join(s.dir, "bad.json")
        with open(bad, "w") as f:
            f.write('{"identifiers":{"email":{"limit":0},"phone":{"frequency":"often"}},"x":1}')
        p = s.ctl("settings", "check", bad, check=False)
        assert p.returncode == 3
        for path in ("$.identifiers.email.limit", "$.identifiers.phone.frequency", "$.x"):
            assert path in p.stderr, p.stderr
        p = s.ctl("space", "create", "s", "--settings", bad, check=False)
        assert p.returncode == 3 and "space not created" in p.stderr
        assert s.ctl("space", "list").stdout == ""
        s.ctl("space", "create", "s")
        got = json.loads(s.ctl("settings", "get", "s").stdout)
        ids = got["identifiers"]
        assert ids["user_id"]["rank"] == 1 and ids["user_id"]["limit"] == 1
        assert ids["email"]["rank"] == 2
        assert ids["android.id"]["rank"] == 3 and ids["android.idfa"]["rank"] == 4
        assert ids["anonymous_id"]["rank"] == 6 and len(ids) == 13
        good = os.path.join(s.dir, "good.json")
        with open(good, "w") as f:
            f.write('{"identifiers":{"phone":{"limit":1,"keys":["phone"]}}}')
        assert "valid" in s.ctl("settings", "check", good).stdout
        p = s.ctl("settings", "set", "s", bad, check=False)
        assert p.returncode == 3 and "settings not applied" in p.stderr
        # --json: the same verdicts as one object on stdout, the exit codes unchanged
        p = s.ctl("--json", "settings", "check", bad, check=False)
        out = json.loads(p.stdout)
        assert p.returncode == 3 and out["valid"] is False and out["more"] == 0, p.stdout
        assert {x["path"] for x in out["problems"]} >= {"$.identifiers.email.limit", "$.x"}
        assert json.loads(s.ctl("--json", "settings", "check", good).stdout) == {"valid": True}
        p = s.ctl("--json", "settings", "set", "s", bad, check=False)
        assert p.returncode == 3 and json.loads(p.stdout)["valid"] is False
        assert json.loads(s.ctl("--json", "settings", "set", "s", good).stdout) == {
            "valid": True, "updated": True}
        got = json.loads(s.ctl("settings", "get", "s").stdout)
        assert got["identifiers"]["phone"]["limit"] == 1
        # an unseen type is added with defaults once it appears, and ranked by name
        s.ctl("ingest", "s", "-", input='{"type":"track","event":"E","anonymousId":"a",'
              '"context":{"externalIds":[{"id":"1","type":"zz_id","collection":"users",'
              '"encoding":"none"}]}}\n')
        got = json.loads(s.ctl("settings", "get", "s").stdout)
        assert got["identifiers"]["zz_id"]["limit"] == 5
        ranks = sorted(got["identifiers"].items(), key=lambda kv: kv[1]["rank"])
        assert ranks[-1][0] == "zz_id"
    finally:
        s.close()


def test_ingest_reports_malformed_lines_and_goes_on():
    s = Store()
    try:
        s.ctl("space", "create", "s")
        lines = [
            '{"type":"identify","userId":"u1","traits":{"plan":"pro"},"messageId":"a"}',
            '{"type":"identify", oops',
            '',
            '{"type":"track","userId":"u1"}',
            '{"batch":[{"type":"track","event":"E","userId":"u1","messageId":"b"},'
            '{"type":"track","event":"E"}]}',
            '{"type":"track","event":"E","userId":"u1","messageId":"a"}',
            '[1,2]',
            '{"type":"page","anonymousId":"x","name":"Home","messageId":"c"}',
        ]
        p = s.ctl("--json", "ingest", "s", "-", input="\n".join(lines) + "\n")
        summary = json.loads(p.stdout)
        assert "stdin:2: skipped: invalid_json" in p.stderr, p.stderr
        assert "stdin:7: skipped: not_object" in p.stderr, p.stderr
        assert summary["lines"] == 7 and summary["malformed_lines"] == 2
        assert summary["accepted"] == 3 and summary["duplicates"] == 1
        assert summary["dropped"] == {"invalid_json": 1, "not_object": 1,
                                      "missing_event_name": 1, "no_user_anon_id": 1}
        doc = s.json("inspect", "s", "user_id:u1")
        assert doc["traits"] == {"plan": "pro"}
        assert [e["message_id"] for e in doc["events"]] == ["b"]
        assert s.ctl("check", "s").stdout.endswith("ok\n")
    finally:
        s.close()


def test_verbose_reports_each_commit_once():
    # six messages in batches of three: the second batch ends with the input, and the final
    # commit at the end of the file finds nothing new to report
    s = Store()
    try:
        s.ctl("space", "create", "s")
        lines = ['{"type":"track","event":"E","userId":"u%d","messageId":"m%d"}' % (i, i)
                 for i in range(6)]
        p = s.ctl("ingest", "s", "-", "--batch", "3", "--verbose", input="\n".join(lines) + "\n")
        said = re.findall(r"^committed file=stdin line=(\d+) accepted=(\d+)$", p.stderr, re.M)
        assert said == [("3", "3"), ("6", "6")], p.stderr
        # a malformed last line moves the position: that commit is reported
        more = [line.replace('"m', '"n') for line in lines[:3]]
        p = s.ctl("ingest", "s", "-", "--batch", "3", "--verbose",
                  input="\n".join(more + ["{oops"]) + "\n")
        said = re.findall(r"^committed file=stdin line=(\d+)", p.stderr, re.M)
        assert said == ["3", "4"], p.stderr
    finally:
        s.close()


def test_output_that_cannot_be_written_is_an_error():
    """Standard output on a full disk (/dev/full): every command that prints fails with a
    message instead of succeeding with a short file."""
    s = Store()
    try:
        s.ctl("space", "create", "s")
        lines = ['{"type":"identify","userId":"u%d","traits":{"n":%d}}' % (i, i)
                 for i in range(300)]
        s.ctl("ingest", "s", "-", input="\n".join(lines) + "\n")
        for args in (["export", "s"], ["log", "s"], ["space", "list"], ["check", "s"],
                     ["settings", "get", "s"], ["inspect", "s", "user_id:u1"], ["--version"]):
            with open("/dev/full", "w") as full:
                p = subprocess.run([tool("profilectl"), "--data", s.dir] + args, stdout=full,
                                   stderr=subprocess.PIPE, text=True, timeout=TIMEOUT)
            assert p.returncode == 4, (args, p.returncode, p.stderr)
            assert "cannot write" in p.stderr and "standard output" in p.stderr, (args, p.stderr)
            assert p.stderr.count("\n") == 1, (args, p.stderr)  # said once
    finally:
        s.close()


def test_a_bad_map_size_is_named():
    """PS_MAP_SIZE that is not a number of bytes in range: every command and the server say
    so, instead of using the default ("abc") or failing to map ("-1": out of memory)."""
    s = Store()
    try:
        s.ctl("space", "create", "s")
        for bad in ("abc", "-1", "1e9", "4096", "99999999999999999999"):
            p = s.ctl("check", "s", env={"PS_MAP_SIZE": bad}, check=False)
            assert p.returncode == 3, (bad, p.returncode, p.stderr)
            assert "PS_MAP_SIZE must be a number of bytes" in p.stderr, (bad, p.stderr)
            p = subprocess.run([tool("profiled"), "--data", s.dir, "--listen", "127.0.0.1:0"],
                               env=dict(os.environ, PS_MAP_SIZE=bad), capture_output=True,
                               text=True, timeout=TIMEOUT)
            assert p.returncode == 1, (bad, p.returncode, p.stderr)
            assert "PS_MAP_SIZE must be a number of bytes" in p.stderr, (bad, p.stderr)
        s.ctl("check", "s", env={"PS_MAP_SIZE": str(1 << 30)})
    finally:
        s.close()


def test_mistyped_log_settings_are_said():
    s = Store()
    try:
        p = s.ctl("space", "create", "s", env={"PS_LOG_LEVEL": "verbose", "PS_LOG_FORMAT": "xml"})
        assert 'PS_LOG_LEVEL is not debug, info, warn or error' in p.stderr, p.stderr
        assert 'value="verbose"' in p.stderr and 'value="xml"' in p.stderr, p.stderr
        p = s.ctl("space", "list", env={"PS_LOG_LEVEL": "error", "PS_LOG_FORMAT": "json"})
        assert p.stderr == "", p.stderr
    finally:
        s.close()


def test_unreadable_input_files_are_named():
    """A path that cannot be read (here a directory) is an error that says why, never an
    empty input: settings from a directory used to create a space with the defaults, and
    `settings set` to complain that the JSON was empty."""
    s = Store()
    try:
        s.ctl("space", "create", "s")
        folder = os.path.join(s.dir, "folder")
        os.mkdir(folder)
        for args in (["ingest", "s", folder], ["settings", "set", "s", folder],
                     ["settings", "check", folder], ["space", "create", "x", "--settings", folder],
                     ["rebuild", "s", "--settings", folder, "--dry-run"]):
            p = s.ctl(*args, check=False)
            assert p.returncode in (2, 4), (args, p.returncode, p.stderr)
            assert "Is a directory" in p.stderr, (args, p.stderr)
        assert s.ctl("space", "list").stdout.split() == ["s"]
        os.mkdir(os.path.join(s.dir, "folder.csv"))
        p = s.ctl("import", "s", os.path.join(s.dir, "folder.csv"), check=False)
        assert p.returncode == 3 and "not a regular file" in p.stderr, (p.returncode, p.stderr)
        p = s.ctl("settings", "set", "s", os.path.join(s.dir, "missing.json"), check=False)
        assert p.returncode == 2 and "No such file or directory" in p.stderr, p.stderr
    finally:
        s.close()


def test_oversized_line_is_skipped_not_loaded():
    s = Store()
    try:
        s.ctl("space", "create", "s")
        huge = '{"type":"track","event":"E","userId":"u","properties":{"x":"' + "y" * 600000 + '"}}'
        good = '{"type":"track","event":"E","userId":"u2"}'
        p = s.ctl("--json", "ingest", "s", "-", input=huge + "\n" + good + "\n")
        assert "stdin:1: skipped: line longer than" in p.stderr, p.stderr
        assert json.loads(p.stdout)["accepted"] == 1
        s.json("inspect", "s", "user_id:u2")
    finally:
        s.close()


def test_export_is_stable_and_complete():
    s = Store()
    try:
        s.ctl("space", "create", "s")
        s.ctl("ingest", "s", "-", input=(
            '{"type":"identify","userId":"u1","anonymousId":"a1","traits":{"n":1}}\n'
            '{"type":"group","userId":"u1","groupId":"g1","traits":{"name":"G"}}\n'
            '{"type":"identify","userId":"u2"}\n'))
        out1 = s.ctl("export", "s").stdout
        out2 = s.ctl("export", "s").stdout
        assert out1 == out2
        docs = [json.loads(l) for l in out1.splitlines()]
        assert [d["collection"] for d in docs] == ["users", "accounts", "users"]
        assert {x["type"] + ":" + x["id"] for x in docs[0]["external_ids"]} == \
            {"user_id:u1", "anonymous_id:a1"}
        accounts = s.ctl("export", "s", "--collection", "accounts").stdout.splitlines()
        assert len(accounts) == 1 and json.loads(accounts[0])["traits"] == {"name": "G"}
    finally:
        s.close()


def test_unconfigured_type_seen_in_accounts():
    # a type the settings do not name, first seen in a group call's accounts externalIds,
    # belongs to accounts: in `settings get` and when `inspect` looks it up
    s = Store()
    try:
        s.ctl("space", "create", "s")
        s.ctl("ingest", "s", "-", input=(
            '{"type":"group","userId":"u1","groupId":"g1","context":{"externalIds":'
            '[{"id":"X1","type":"acct_id","collection":"accounts","encoding":"none"}]}}\n'))
        doc = s.json("inspect", "s", "acct_id:X1")
        assert doc["collection"] == "accounts", doc
        assert {x["type"] + ":" + x["id"] for x in doc["external_ids"]} == \
            {"acct_id:X1", "group_id:g1"}
        assert s.json("inspect", "s", "group_id:g1")["segment_id"] == doc["segment_id"]
        got = json.loads(s.ctl("settings", "get", "s").stdout)
        assert got["identifiers"]["acct_id"]["collection"] == "accounts", got["identifiers"]
        # the same type later in users is still found: the other collection is tried next
        s.ctl("ingest", "s", "-", input=(
            '{"type":"identify","userId":"u2","context":{"externalIds":'
            '[{"id":"X2","type":"acct_id","collection":"users","encoding":"none"}]}}\n'))
        doc2 = s.json("inspect", "s", "acct_id:X2")
        assert doc2["collection"] == "users", doc2
        assert s.json("inspect", "s", "user_id:u2")["segment_id"] == doc2["segment_id"]
        p = s.ctl("inspect", "s", "acct_id:X3", check=False)
        assert p.returncode == 2 and "no profile for acct_id:X3" in p.stderr
        got = json.loads(s.ctl("settings", "get", "s").stdout)
        assert got["identifiers"]["acct_id"]["collection"] == "accounts"
    finally:
        s.close()


def test_blocked_regex_limits():
    s = Store()
    try:
        cases = {
            # the old "^(...)$" wrapper could be closed from inside the pattern
            "x)|(.*": "invalid regular expression",
            "((a{1,100}){1,100}){1,100}": "regex is too complex",
            "x{1,32767}": "repeat count 32767 over 400",
        }
        for pattern, why in cases.items():
            path = os.path.join(s.dir, "bad.json")
            with open(path, "w") as f:
                json.dump({"identifiers": {"user_id": {"blocked": [
                    {"value": pattern, "kind": "regex"}]}}}, f)
            p = s.ctl("settings", "check", path, check=False)
            assert p.returncode == 3, (pattern, p.stderr)
            assert "$.identifiers.user_id.blocked[0]" in p.stderr and why in p.stderr, p.stderr
        good = os.path.join(s.dir, "good.json")
        with open(good, "w") as f:
            json.dump({"blocked": [{"value": "qa-[0-9]+|test", "kind": "regex"}]}, f)
        s.ctl("space", "create", "s", "--settings", good)
        s.ctl("ingest", "s", "-", input=(
            '{"type":"identify","userId":"qa-17","anonymousId":"a1"}\n'
            '{"type":"identify","userId":"xqa-17","anonymousId":"a2"}\n'))
        p = s.ctl("inspect", "s", "user_id:qa-17", check=False)
        assert p.returncode == 2, p.stdout
        s.json("inspect", "s", "user_id:xqa-17")
    finally:
        s.close()



def test_concurrent_creates_of_one_space():
    """Several `space create` of one name at once: one wins with its own settings, the others
    say the space exists, and no half-made store is left behind."""
    s = Store()
    try:
        for rnd in range(6):
            name = "r%d" % rnd
            files = []
            for i in range(6):
                path = os.path.join(s.dir, "settings-%d.json" % i)
                with open(path, "w") as f:
                    json.dump({"dedup_window_hours": 10 + i}, f)
                files.append(path)
            procs = [subprocess.Popen([tool("profilectl"), "--data", s.dir, "space", "create",
                                       name, "--settings", f], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True) for f in files]
            outs = [p.communicate(timeout=TIMEOUT) for p in procs]
            codes = [p.returncode for p in procs]
            assert codes.count(0) == 1, (codes, [o[1] for o in outs])
            for code, (_, err) in zip(codes, outs):
                assert code in (0, 3), (code, err)
                assert code == 0 or "already exists" in err, err
            won = codes.index(0)
            got = s.json("settings", "get", name)
            assert got["dedup_window_hours"] == 10 + won, (won, got["dedup_window_hours"])
            assert s.ctl("check", name).stdout.endswith("ok\n")
            left = [n for n in os.listdir(os.path.join(s.dir, "spaces")) if n.startswith(".new")]
            assert left == [], left
    finally:
        s.close()

run_tests([test_usage_and_exit_codes, test_settings_get_set_check,
           test_ingest_reports_malformed_lines_and_goes_on,
           test_verbose_reports_each_commit_once, test_output_that_cannot_be_written_is_an_error,
           test_a_bad_map_size_is_named, test_mistyped_log_settings_are_said,
           test_unreadable_input_files_are_named,
           test_oversized_line_is_skipped_not_loaded, test_export_is_stable_and_complete,
           test_unconfigured_type_seen_in_accounts, test_blocked_regex_limits,
           test_concurrent_creates_of_one_space])
