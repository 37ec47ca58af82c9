# SPDX-License-Identifier: MIT
"""Crash safety of the Tracking API (docs/architecture.md): clients stream batches over
keep-alive connections and record every 200; profiled is killed with SIGKILL at a random
moment; after each kill `profilectl check` passes and every acknowledged messageId is in the
store. Several rounds run against the same store, so each restart also recovers from the
previous kill."""
import base64
import http.client
import json
import os
import random
import signal
import subprocess
import threading
import time

from common import Server, Store, run_tests, tool

SPACE = "crash"
USERS = 50
ROUNDS = 4
MULT = float(os.environ.get("PS_TEST_TIMEOUT_MULT", "1"))


def start(store):
    proc = subprocess.Popen([tool("profiled"), "--data", store.dir, "--listen", "127.0.0.1:0",
                             "--threads", "2"], stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "msg=listening" in line:
            port = int(line.split(" listen=")[1].split()[0].rsplit(":", 1)[1])
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, port
    raise AssertionError("profiled did not start")


def client(port, key, tag, acked, stop):
    auth = {"Authorization": "Basic " + base64.b64encode((key + ":").encode()).decode(),
            "Content-Type": "application/json"}
    n = 0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while not stop.is_set():
        ids = ["%s-%d-%d" % (tag, n, k) for k in range(50)]
        body = json.dumps({"batch": [
            {"type": "track", "userId": "u%d" % (hash(i) % USERS), "event": "E",
             "messageId": i, "properties": {"n": k}} for k, i in enumerate(ids)]})
        n += 1
        try:
            conn.request("POST", "/v1/batch", body=body, headers=auth)
            r = conn.getresponse()
            data = r.read()
        except (OSError, http.client.HTTPException):
            return  # the server is gone
        if r.status == 200:
            assert json.loads(data) == {"success": True}, data
            acked.extend(ids)


def stored_ids(store):
    ids = set()
    for u in range(USERS):
        p = subprocess.run([tool("profilectl"), "--data", store.dir, "--json", "inspect", SPACE,
                            "user_id:u%d" % u, "--events", "10000"], capture_output=True,
                           text=True, timeout=300 * MULT)
        if p.returncode == 2:
            continue
        assert p.returncode == 0, p.stderr
        ids.update(e["message_id"] for e in json.loads(p.stdout)["events"])
    return ids


def test_sigkill_never_loses_an_acknowledged_event():
    st = Store()
    try:
        st.ctl("space", "create", SPACE)
        key = st.ctl("source", "create", SPACE).stdout.strip()
        rng = random.Random(int(os.environ.get("PS_CRASH_SEED", "7")))
        all_acked = []
        for rnd in range(ROUNDS):
            proc, port = start(st)
            acked, stop = [], threading.Event()
            workers = [threading.Thread(target=client, args=(port, key, "r%dc%d" % (rnd, c),
                                                            acked, stop)) for c in range(2)]
            for w in workers:
                w.start()
            deadline = time.time() + 60 * MULT  # the first round trip opens the space
            while not acked and time.time() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.5, 2.0) * MULT)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            stop.set()
            for w in workers:
                w.join(timeout=60)
            assert acked, "round %d: nothing was acknowledged before the kill" % rnd
            all_acked.extend(acked)
            chk = st.ctl("check", SPACE, check=False)
            assert chk.returncode == 0, "round %d: check failed: %s %s" % (rnd, chk.stdout,
                                                                          chk.stderr)
            have = stored_ids(st)
            lost = [i for i in all_acked if i not in have]
            assert not lost, "round %d: %d acknowledged events lost, e.g. %s" % (
                rnd, len(lost), lost[:3])
            print("# round %d: %d acknowledged, %d stored in all" % (rnd, len(acked),
                                                                     len(have)))
    finally:
        st.close()


def test_a_read_after_a_crash_sees_what_was_acknowledged():
    """The server dies while the events it acknowledged are only in its journal (its store
    takes them in transactions of a minute). Started again, its first request is a Profile
    API read, before any write: opening the space applies the journal, so the read sees them,
    and the journal's files are gone."""
    st = Store()
    srv = None
    try:
        st.ctl("space", "create", SPACE)
        key = st.ctl("source", "create", SPACE).stdout.strip()
        token = st.ctl("token", "create", SPACE).stdout.strip()
        srv = Server(st, "--batch-ms", "60000")
        status, _, body = srv.track("batch", {"batch": [
            {"type": "identify", "userId": "after-crash", "messageId": "ac-%d" % k,
             "traits": {"n": k}} for k in range(3)]}, key)
        assert status == 200, body
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(timeout=30)
        space_dir = os.path.join(st.dir, "spaces", SPACE)
        assert any(n.startswith("journal-") for n in os.listdir(space_dir)), os.listdir(space_dir)
        srv = Server(st)
        status, _, body = srv.get("/v1/spaces/%s/collections/users/profiles/user_id:after-crash/"
                                  "traits" % SPACE, token)
        assert status == 200, (status, body)
        assert body["traits"] == {"n": 2}, body
        assert not any(n.startswith("journal-") for n in os.listdir(space_dir)), \
            os.listdir(space_dir)
    finally:
        if srv is not None and srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()
        st.close()


if __name__ == "__main__":
    run_tests([test_sigkill_never_loses_an_acknowledged_event,
               test_a_read_after_a_crash_sees_what_was_acknowledged])
