#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""profilectl snapshot: a consistent copy of a space taken while a server writes to it, which
passes `check`, serves as a data directory with the same tokens, and equals the source once
writes stop."""
import json
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(__file__))
from common import Server, Store, run_tests  # noqa: E402


def test_snapshot_while_writing():
    st = Store()
    try:
        st.ctl("space", "create", "s")
        key = st.json("source", "create", "s", "--name", "web")["write_key"]
        token = st.ctl("token", "create", "s", "--role", "read").stdout.strip()
        srv = Server(st)
        stop = threading.Event()
        sent = []

        def send():
            i = 0
            while not stop.is_set():
                batch = [{"type": "identify", "userId": "u%d" % (i * 10 + k),
                          "anonymousId": "a%d" % (i * 10 + k), "traits": {"n": i}}
                         for k in range(10)]
                s, _, body = srv.track("batch", {"batch": batch}, key)
                assert s == 200, body
                sent.append(i)
                i += 1
        sender = threading.Thread(target=send)
        sender.start()
        try:
            while len(sent) < 5:  # writes are under way
                stop.wait(0.05)
            snap = os.path.join(st.dir, "snap1")
            out = st.json("snapshot", "s", snap)
            assert out["space"] == "s" and out["log_seq"] > 0 and out["records"] > 0, out
        finally:
            stop.set()
            sender.join()
            srv.stop()
        # the copy is consistent: every invariant holds, and its log ends where it says
        p = st.ctl("--data", snap, "check", "s")
        assert p.returncode == 0, p.stdout
        logged = st.ctl("--data", snap, "log", "s").stdout.splitlines()
        assert len(logged) == out["log_seq"], (len(logged), out)
        # once writes stop, a snapshot equals its source
        snap2 = os.path.join(st.dir, "snap2")
        st.ctl("snapshot", "s", snap2)
        assert st.ctl("--data", snap2, "export", "s").stdout == st.ctl("export", "s").stdout
        # it serves as a data directory, with the space's own tokens
        copy = Store()
        os.rmdir(copy.dir)
        copy.dir = snap2  # inside st.dir: removed with it
        srv = Server(copy)
        try:
            s, _, body = srv.get("/v1/spaces/s/collections/users/profiles/user_id:u1/traits",
                                 token)
            assert s == 200 and body["traits"]["n"] == 0, (s, body)
        finally:
            srv.stop()
        # an existing copy is never overwritten
        p = st.ctl("snapshot", "s", snap, check=False)
        assert p.returncode == 3 and "already holds a space 's'" in p.stderr, p.stderr
        assert json.loads(st.ctl("--json", "check", "s").stdout)["ok"] is True
    finally:
        st.close()


if __name__ == "__main__":
    run_tests([test_snapshot_while_writing])
