# SPDX-License-Identifier: MIT
"""CSV import of profiles (docs/import.md): rows become identify messages through the one
accept path; every upload rule of Segment's with its message; a dry run stores nothing; the
same file imported again changes nothing."""
import json
import os

from common import Store, run_tests

SPACE = "s"


def write(st, name, data):
    path = os.path.join(st.dir, name)
    with open(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return path


def export(st):
    return sorted(st.ctl("export", SPACE).stdout.splitlines())


def profile(st, ident):
    r = st.ctl("--json", "inspect", SPACE, ident, check=False)
    return json.loads(r.stdout) if r.returncode == 0 else None


def test_rows_become_profiles():
    st = Store()
    try:
        st.ctl("space", "create", SPACE)
        header = st.ctl("import-template", SPACE).stdout.strip()
        assert header.split(",")[-1] == "user_id" and "anonymous_id" in header.split(","), header
        path = write(st, "people.csv",
                     "user_id,email,ios.id,plan,Favorite Color\r\n"
                     "u1,ada@example.com,dev-1,pro,\"red, really\"\r\n"
                     "u2,,,free,\n"
                     ",,,orphan,\n"
                     "u3,c@example.com,,\"say \"\"hi\"\"\",blue")
        dry = json.loads(st.ctl("--json", "import", SPACE, path, "--dry-run").stdout)
        assert dry["dry_run"] and dry["rows"] == 4 and dry["identifier_columns"] == 3, dry
        assert dry["accepted"] == 0 and export(st) == [], "a dry run stores nothing"
        out = json.loads(st.ctl("--json", "import", SPACE, path).stdout)
        assert out["import_id"] == dry["import_id"] and out["accepted"] == 4, out
        assert out["profiles_created"] == 4, out
        p = profile(st, "user_id:u1")
        assert {(x["type"], x["id"]) for x in p["external_ids"]} == {
            ("user_id", "u1"), ("email", "ada@example.com"), ("ios.id", "dev-1")}, p
        assert p["traits"] == {"plan": "pro", "Favorite Color": "red, really",
                               "email": "ada@example.com"}, p["traits"]
        assert profile(st, "user_id:u2")["traits"] == {"plan": "free"}  # blank cells skipped
        assert profile(st, "user_id:u3")["traits"]["plan"] == 'say "hi"'
        # the row without identifiers got an anonymous_id made from the import and row
        orphan = profile(st, "anonymous_id:%s-row-3" % out["import_id"])
        assert orphan and orphan["traits"] == {"plan": "orphan"}, orphan
        # the same file again: same message ids, nothing new
        before = export(st)
        again = json.loads(st.ctl("--json", "import", SPACE, path).stdout)
        assert again["duplicates"] == 4 and again["accepted"] == 0, again
        assert export(st) == before
        # a changed file is another import: its rows update the profiles
        path2 = write(st, "people2.csv", "user_id,plan\nu1,enterprise\n")
        st.ctl("import", SPACE, path2)
        assert profile(st, "user_id:u1")["traits"]["plan"] == "enterprise"
        # rows go to the log like any message
        log = st.ctl("log", SPACE).stdout.splitlines()
        assert len(log) == 5 and json.loads(log[0])["type"] == "identify"
    finally:
        st.close()


def test_upload_rules():
    st = Store()
    try:
        st.ctl("space", "create", SPACE)
        path = os.path.join(st.dir, "noanon.json")
        with open(path, "w") as f:
            json.dump({"identifiers": {"anonymous_id": {"enabled": False}}}, f)
        st.ctl("space", "create", "strict", "--settings", path)
        cases = [
            ("a.txt", "user_id\nu1\n", SPACE, "You can upload only .csv files. Change your file "
             "format, then try again."),
            ("empty.csv", "", SPACE, "This file contains no data. Add data to your CSV, then try "
             "again."),
            ("header.csv", "user_id,plan\n", SPACE, "This file contains no data."),
            ("quote.csv", "user_id,plan\nu1,\"open\n", SPACE, "We encountered an issue while "
             "parsing your CSV file. Validate the CSV file and try again."),
            ("stray.csv", "user_id,plan\nu1,a\"b\n", SPACE, "We encountered an issue while parsing"),
            ("emptyh.csv", "user_id,,plan\nu1,a,b\n", SPACE, "This file contains empty header(s). "
             "Remove the empty header(s), then try again."),
            ("cols.csv", ",".join(["user_id"] + ["c%d" % i for i in range(299)]) + "\nu1\n", SPACE,
             "Your CSV file is exceeding the limit of 299 columns."),
            ("spaces.csv", "user_id, plan\nu1,a\n", SPACE, "This file contains leading, trailing "
             "or consecutive spaces."),
            ("spaces2.csv", "user_id,my  plan\nu1,a\n", SPACE, "consecutive spaces"),
            ("dup.csv", "user_id,plan,plan\nu1,a,b\n", SPACE, "This file contains duplicate "
             "header(s). Remove duplicate header(s), then try again."),
            ("chars.csv", "user_id,pl;an\nu1,a\n", SPACE, "This file contains invalid "
             "character(s). Remove invalid character(s), then try again."),
            ("noid.csv", "plan\nfree\n", "strict", "This file is missing an identifier column and "
             "does not have `anonymous_id` configured."),
        ]
        for name, data, space, message in cases:
            p = write(st, name, data)
            r = st.ctl("import", space, p, check=False)
            assert r.returncode == 3 and message in r.stderr, (name, r.returncode, r.stderr)
        assert export(st) == [], "a refused file changes nothing"
        # accented Latin letters and the listed punctuation are allowed; case matters
        ok = write(st, "ok.csv", "user_id,Café Menu!,café menu!,x(1)/y?\nu9,a,b,c\n")
        out = json.loads(st.ctl("--json", "import", SPACE, ok).stdout)
        assert out["accepted"] == 1, out
        assert profile(st, "user_id:u9")["traits"] == {"Café Menu!": "a", "café menu!": "b",
                                                       "x(1)/y?": "c"}
        # rows: one without any identifier (where none stands in) is skipped and listed
        rows = write(st, "rows.csv", "user_id,plan\nu1,a\n,b\nu2,c,extra\n")
        out = json.loads(st.ctl("--json", "import", "strict", rows).stdout)
        assert out["accepted"] == 1 and out["rows_failed"] == 2, out
        assert out["errors"] == [{"row": 2, "message": "the row has no identifier value"},
                                 {"row": 3, "message": "the row has more cells than the header"}]
        # too many rows: counted before anything is stored
        big = write(st, "big.csv", "user_id\n" + "".join("u%d\n" % i for i in range(1000001)))
        r = st.ctl("import", "strict", big, check=False)
        assert r.returncode == 3 and "Too many rows. You can upload up to 1000000 rows." in \
            r.stderr, r.stderr
        huge = os.path.join(st.dir, "huge.csv")  # sparse: over 100 MB without writing it
        with open(huge, "wb") as f:
            f.write(b"user_id\nu1\n")
            f.truncate(100 * 1024 * 1024 + 1)
        r = st.ctl("import", SPACE, huge, check=False)
        assert r.returncode == 3 and "Files can be up to 100 MB." in r.stderr, r.stderr
        missing = st.ctl("import", SPACE, os.path.join(st.dir, "nope.csv"), check=False)
        assert missing.returncode == 2, missing.stderr
    finally:
        st.close()


def test_http_imports():
    import time
    from common import Server
    st = Store()
    try:
        st.ctl("space", "create", SPACE)
        admin = st.ctl("token", "create", SPACE).stdout.strip()
        reader = st.ctl("token", "create", SPACE, "--role", "read", "--name", "r").stdout.strip()
        # a file left by a server that stopped before running it runs at the next start
        os.makedirs(os.path.join(st.dir, "spaces", SPACE, "imports"))
        left = "user_id,plan\nleft-1,gold\n"
        write(st, os.path.join("spaces", SPACE, "imports", "imp_00000000000000aa.csv"), left)
        srv = Server(st)
        try:
            base = "/v1/spaces/%s/imports" % SPACE
            csv = "user_id,plan\nh1,pro\nh2,free\n,orphan\n"

            def wait_done(import_id, recorded=True):
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    status, _, body = srv.get(base + "/" + import_id, reader)
                    if status == 404 and not recorded:
                        time.sleep(0.1)  # a file nobody recorded: its status comes when it runs
                        continue
                    assert status == 200, body
                    if body["data"]["import"]["status"] in ("FINISHED", "FAILED"):
                        return body["data"]["import"]
                    time.sleep(0.1)
                raise AssertionError("import %s did not finish" % import_id)
            assert wait_done("imp_00000000000000aa", recorded=False)["accepted"] == 1
            status, _, body = srv.request("POST", base, None, body=csv)
            assert status == 401, body
            status, _, body = srv.request("POST", base, reader, body=csv,
                                          headers={"Content-Type": "text/csv"})
            assert status == 403, body
            status, _, body = srv.request("POST", base, admin, body=csv,
                                          headers={"Content-Type": "text/csv"})
            assert status == 200 and body["data"]["status"] == "QUEUED", body
            done = wait_done(body["data"]["importId"])
            assert done["rows"] == 3 and done["accepted"] == 3 and done["errors"] == [], done
            api = "/v1/spaces/%s/collections/users/profiles/" % SPACE
            status, _, body = srv.get(api + "user_id:h1/traits", reader)
            assert status == 200 and body["traits"] == {"plan": "pro"}, body
            # the same file again: every row a duplicate
            status, _, body = srv.request("POST", base, admin, body=csv)
            again = wait_done(body["data"]["importId"])
            assert again["duplicates"] == 3 and again["accepted"] == 0, again
            # a file that breaks a rule fails whole, with the rule
            status, _, body = srv.request("POST", base, admin, body="user_id,,plan\nu,a,b\n")
            failed = wait_done(body["data"]["importId"])
            assert failed["status"] == "FAILED" and failed["error"]["code"] == "empty_header"
            assert srv.get(base + "/imp_0000000000000000", reader)[0] == 404
            assert srv.get(base + "/nonsense", reader)[0] == 404
            assert srv.request("PUT", base, admin, body="x")[0] == 405
            assert os.listdir(os.path.join(st.dir, "spaces", SPACE, "imports")) == []
        finally:
            srv.stop()
    finally:
        st.close()


if __name__ == "__main__":
    run_tests([test_rows_become_profiles, test_upload_rules, test_http_imports])
