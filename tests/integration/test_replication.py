#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Replication (docs/replication.md): three profiled nodes over a three-server NATS JetStream
cluster take realistic events concurrently; one NATS server and one node are killed with
SIGKILL mid-load and restarted. Afterwards every acknowledged messageId is on every node, the
logs and exports are byte-identical, no message was applied twice, `check` passes everywhere,
and nodes started late (from a snapshot, and from an empty space) converge to the same state.
Settings and a regulation published mid-load apply at the same place on every node."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import http.client
import base64

sys.path.insert(0, os.path.dirname(__file__))
from common import Server, Store, free_port, run_tests, skip, tool, TIMEOUT  # noqa: E402

NATS = shutil.which("nats-server")
MULT = float(os.environ.get("PS_TEST_TIMEOUT_MULT", "1"))
EVENTS = 6000
BATCH = 20


class NatsServer:
    """One JetStream server of a cluster on 127.0.0.1, with its own ports and directory."""

    def __init__(self, base, name, port, cluster_port, peers):
        self.port = port
        self.dir = os.path.join(base, name)
        self.log = open(os.path.join(base, name + ".log"), "a")
        self.args = [NATS, "-js", "-a", "127.0.0.1", "-p", str(port), "-n", name,
                     "-sd", self.dir]
        if peers:  # else a server of its own
            self.args += ["--cluster_name", "ps-test",
                          "--cluster", "nats://127.0.0.1:%d" % cluster_port,
                          "--routes", ",".join("nats://127.0.0.1:%d" % p for p in peers)]
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=self.log)

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


class Node:
    """A profiled node in replicated mode over its own data directory."""

    def __init__(self, store, urls):
        self.store = store
        self.urls = urls
        self.srv = None
        self.key = None

    def start(self):
        self.srv = Server(self.store, "--replicate", self.urls, "--metrics-listen", "127.0.0.1:0",
                          "--threads", "2")

    def kill(self):
        self.srv.proc.kill()
        self.srv.proc.wait()
        self.srv = None

    def stream(self):
        """(applied, last) of space s from the node's /metrics, or None while it has none."""
        srv = self.srv
        if srv is None:
            return None
        try:
            conn = http.client.HTTPConnection("127.0.0.1", srv.metrics_port, timeout=10)
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
            conn.close()
        except OSError:
            return None
        a = re.search(r'^profiled_stream_applied_sequence\{space="s"\} (\d+)$', text, re.M)
        last = re.search(r'^profiled_stream_last_sequence\{space="s"\} (\d+)$', text, re.M)
        return (int(a.group(1)), int(last.group(1))) if a and last else None


def post(port, key, body, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    h = {"Content-Type": "application/json",
         "Authorization": "Basic " + base64.b64encode((key + ":").encode()).decode()}
    h.update(headers or {})
    conn.request("POST", "/v1/batch", body=json.dumps(body), headers=h)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, r.getheader("X-Stream-Sequence"), data


def converge(nodes, want_seq, timeout):
    """Waits until every node has applied the stream up to its end (at least want_seq)."""
    deadline = time.time() + timeout
    seen = None
    while time.time() < deadline:
        views = [n.stream() for n in nodes]
        if all(v is not None for v in views):
            last = max(max(v[1] for v in views), want_seq)
            if all(v[0] == last for v in views):
                if seen == last:
                    return last
                seen = last
        time.sleep(0.5)
    raise AssertionError("nodes did not converge in %d s: %s (want %d)"
                         % (timeout, [n.stream() for n in nodes], want_seq))


def test_three_nodes_converge_through_failures():
    if NATS is None:
        skip("nats-server is not installed (make test installs it)")
    base = tempfile.mkdtemp(prefix="ps-repl-")
    client_ports = [free_port() for _ in range(3)]
    cluster_ports = [free_port() for _ in range(3)]
    servers = [NatsServer(base, "n%d" % i, client_ports[i], cluster_ports[i],
                          [p for j, p in enumerate(cluster_ports) if j != i]) for i in range(3)]
    urls = ",".join("nats://127.0.0.1:%d" % p for p in client_ports)
    stores, nodes = [], []
    try:
        for s in servers:
            s.start()
        events = os.path.join(base, "events.ndjson")
        with open(events, "w") as f:
            subprocess.run([tool("gen_events"), "--events", str(EVENTS), "--realistic",
                            "--seed", "11"], stdout=f, check=True, timeout=TIMEOUT)
        with open(events) as f:
            messages = [json.loads(line) for line in f]
        for i in range(3):
            st = Store()
            stores.append(st)
            st.ctl("space", "create", "s", "--preset", "recommended")
            node = Node(st, urls)
            node.key = st.ctl("source", "create", "s").stdout.strip()
            node.start()
            nodes.append(node)
        # the cluster elects its JetStream leader: the first write goes through once it has
        deadline = time.time() + 60 * MULT
        while True:
            status, _, body = post(nodes[0].srv.port, nodes[0].key,
                                   {"batch": [{"type": "identify", "userId": "warm-up",
                                               "messageId": "warm-up"}]})
            if status == 200:
                break
            assert time.time() < deadline, "the JetStream cluster never took a write: %s" % body
            time.sleep(0.5)

        # a data subject of its own: the regulation below erases exactly these messages
        subject = [{"type": "identify", "userId": "gdpr-subject", "anonymousId": "gdpr-a%d" % i,
                    "messageId": "gdpr-%d" % i, "traits": {"n": i}} for i in range(5)]
        status, _, body = post(nodes[2].srv.port, nodes[2].key, {"batch": subject})
        assert status == 200, body
        erased = {m["messageId"] for m in subject}
        acked = set(erased)
        max_seq = [0]
        lock = threading.Lock()
        failures = []

        def send(which, part):
            """Sends its part in batches, to its own node while it is up, else to the next;
            a batch that is not acknowledged is sent again, with the same messageIds."""
            for k in range(0, len(part), BATCH):
                batch = part[k:k + BATCH]
                for attempt in range(400):
                    target = nodes[(which + attempt // 3) % 3]
                    srv = target.srv
                    if srv is None:
                        time.sleep(0.05)
                        continue
                    try:
                        status, seq, body = post(srv.port, target.key, {"batch": batch})
                    except OSError:
                        time.sleep(0.05)
                        continue
                    if status == 200:
                        with lock:
                            acked.update(m["messageId"] for m in batch)
                            max_seq[0] = max(max_seq[0], int(seq))
                        break
                    if status != 503:
                        failures.append((status, body))
                        return
                    time.sleep(0.1)
                else:
                    failures.append(("never acknowledged", batch[0]["messageId"]))
                    return

        parts = [messages[i::3] for i in range(3)]
        senders = [threading.Thread(target=send, args=(i, parts[i])) for i in range(3)]
        for t in senders:
            t.start()

        def sent():
            with lock:
                return len(acked)

        def wait_sent(n):
            deadline = time.time() + 300 * MULT
            while sent() < n and any(t.is_alive() for t in senders):
                assert time.time() < deadline, "load stalled at %d" % sent()
                time.sleep(0.05)

        wait_sent(EVENTS // 5)
        servers[1].kill()  # a JetStream server dies: the stream keeps its quorum of 2
        nodes[1].kill()    # and a node dies with whatever it held in memory
        wait_sent(EVENTS * 2 // 5)
        # settings and a regulation travel in the stream, between events
        settings = os.path.join(base, "settings.json")
        with open(settings, "w") as f:
            f.write(stores[0].ctl("settings", "get", "s").stdout.replace(
                '"block_shared_values": true', '"block_shared_values": false'))
        stores[0].ctl("settings", "set", "s", settings, "--replicate", urls)
        token = stores[2].ctl("token", "create", "s", "--role", "admin").stdout.strip()
        status, headers, body = nodes[2].srv.request(
            "POST", "/v1/spaces/s/regulations", token,
            body={"regulationType": "SUPPRESS_WITH_DELETE", "subjectType": "USER_ID",
                  "subjectIds": ["gdpr-subject"]})
        assert status == 200 and body["data"]["regulateId"].startswith("reg_"), (status, body)
        reg_id = body["data"]["regulateId"]
        servers[1].start()
        nodes[1].start()
        wait_sent(EVENTS * 3 // 5)
        # the snapshot's node has applied part of the stream (a node whose NATS server is still
        # joining the cluster may take a few seconds to read it at first)
        deadline = time.time() + 120 * MULT
        while (nodes[0].stream() or (0, 0))[0] == 0:
            assert time.time() < deadline, "node 0 never applied its stream"
            time.sleep(0.2)
        snap = os.path.join(base, "snap")
        out = stores[0].json("snapshot", "s", snap)
        assert out["stream_seq"] > 0, out
        for t in senders:
            t.join()
        assert not failures, failures[:3]
        assert len(acked) == EVENTS + len(erased), len(acked)

        # late nodes: one from the snapshot, one from an empty space (the stream's start)
        late = Store()
        shutil.rmtree(late.dir)
        late.dir = snap
        fresh = Store()
        fresh.ctl("space", "create", "s", "--preset", "recommended")
        stores += [fresh]
        for st in (late, fresh):
            n = Node(st, urls)
            n.start()
            nodes.append(n)
        final = converge(nodes, max_seq[0], 240 * MULT)
        for n in nodes:  # health and metrics say the same: connected, nothing left to apply
            status, _, body = n.srv.request("GET", "/healthz", port=n.srv.metrics_port)
            assert status == 200 and body["status"] == "ok", body
            assert body["replication"]["connected"] and body["replication"]["lag"] == 0, body
            assert body["replication"]["spaces"]["s"]["applied"] == final, (body, final)
            status, _, body = n.srv.request("GET", "/healthz")
            assert "spaces" not in body["replication"], body  # the public listener names none
            assert body["replication"]["applied"] == final, (body, final)
        if shutil.which("promtool"):
            status, _, text = nodes[0].srv.request("GET", "/metrics", raw=True,
                                                   port=nodes[0].srv.metrics_port)
            p = subprocess.run(["promtool", "check", "metrics"], input=text,
                               capture_output=True, timeout=60)
            assert p.returncode == 0, p.stdout + p.stderr
        # read-your-writes: a sequence every node has is served at once; one past the end
        # waits, then says 503 with Retry-After
        status, _, _ = nodes[2].srv.request("GET", "/v1/spaces/s/collections/users/profiles/"
                                            "user_id:nobody/traits", token,
                                            headers={"X-Stream-Sequence": str(final)})
        assert status == 404, status
        status, headers, _ = nodes[2].srv.request(
            "GET", "/v1/spaces/s/collections/users/profiles/user_id:nobody/traits", token,
            headers={"X-Stream-Sequence": str(final + 1000)})
        assert status == 503 and headers.get("Retry-After"), (status, dict(headers))
        for n in nodes:
            n.srv.stop()
            n.srv = None

        logs, exports = [], []
        for st in stores[:3] + [late, fresh]:
            log = st.ctl("log", "s").stdout
            ids = [json.loads(line)["messageId"] for line in log.splitlines()]
            assert len(ids) == len(set(ids)), "a message was applied twice"
            # every acknowledged message is there, but what the regulation erased
            missing = acked - set(ids)
            assert missing == erased, (
                "store %s: acknowledged yet absent: %s; erased yet there: %s"
                % (st.dir, sorted(missing - erased)[:5], sorted(erased - missing)[:5]))
            logs.append(log)
            exports.append(st.ctl("export", "s").stdout)
            p = st.ctl("check", "s", check=False)
            assert p.returncode == 0, p.stdout + p.stderr
            regs = st.json("regulation", "list", "s")
            assert [r["id"] for r in regs] == [reg_id], regs
            assert '"block_shared_values": false' in st.ctl("settings", "get", "s").stdout
        assert all(x == logs[0] for x in logs), "logs differ between nodes"
        assert all(x == exports[0] for x in exports), "exports differ between nodes"
        assert len(exports[0].splitlines()) > 100, exports[0][:200]
        late.dir = None  # inside base: removed with it
    except Exception:
        for i, n in enumerate(nodes):  # what each node said, for the failure report
            if n.srv is not None:
                said = [line for line in n.srv.log if "level=info" not in line]
                sys.stderr.write("# node %d:\n# %s" % (i, "# ".join(said[:10] + said[-10:])))
        raise
    finally:
        for n in nodes:
            if n.srv is not None:
                n.srv.proc.kill()
                n.srv.proc.wait()
        for s in servers:
            s.stop()
        for st in stores:
            st.close()
        if os.environ.get("PS_TEST_KEEP") == "1":
            print("# kept", base)
        else:
            shutil.rmtree(base, ignore_errors=True)


def test_replicated_space_refuses_local_writes():
    """profilectl refuses what would change one node alone, and says what to do instead."""
    st = Store()
    try:
        st.ctl("space", "create", "s")
        # mark it replicated as a node does when it first applies the stream: start a node
        # against a server that is not there (it connects in the background) and stop it
        srv = Server(st, "--replicate", "nats://127.0.0.1:%d" % free_port())
        srv.stop()
        events = os.path.join(st.dir, "e.ndjson")
        with open(events, "w") as f:
            f.write('{"type":"identify","userId":"u1"}\n')
        for args, word in ((["ingest", "s", events], "--replicate"),
                           (["settings", "set", "s", events], "--replicate"),
                           (["regulation", "create", "s", "SUPPRESS_ONLY", "u1"], "--replicate"),
                           (["import", "s", events], "identify")):
            p = st.ctl(*args, check=False)
            assert p.returncode == 3, (args, p.returncode, p.stderr)
            assert "replicated" in p.stderr and word in p.stderr, p.stderr
        p = st.ctl("ingest", "s", events, "--replicate", "nats://127.0.0.1:0", check=False)
        assert p.returncode == 1 and "port" in p.stderr, p.stderr
        p = st.ctl("ingest", "s", events, "--replicate", "http://x:1", check=False)
        assert p.returncode == 1 and "nats://" in p.stderr, p.stderr
        # bad server options are usage errors
        p = subprocess.run([tool("profiled"), "--data", st.dir, "--replicate", "nats://h:99999"],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 1 and "port" in p.stderr, p.stderr
        p = subprocess.run([tool("profiled"), "--data", st.dir, "--replicas", "2"],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 1 and "--replicate" in p.stderr, p.stderr
    finally:
        st.close()


def test_space_with_local_history_does_not_join():
    """A space whose log holds messages the stream lacks is not silently replicated."""
    st = Store()
    try:
        st.ctl("space", "create", "s")
        events = os.path.join(st.dir, "e.ndjson")
        with open(events, "w") as f:
            f.write('{"type":"identify","userId":"u1"}\n')
        st.ctl("ingest", "s", events)
        srv = Server(st, "--replicate", "nats://127.0.0.1:%d" % free_port())
        time.sleep(0.3)
        srv.stop()
        log = "".join(srv.log)
        assert "not in its stream" in log, log
        assert st.ctl("ingest", "s", events).returncode == 0  # still a local space
    finally:
        st.close()


def test_published_log_equals_local_ingest():
    """`profilectl ingest --replicate` publishes a log to the stream; the node that applies it
    ends byte-identical to a space that ingested the same log locally, and a second publish
    of the same file changes nothing (the stream and the store drop the duplicates)."""
    if NATS is None:
        skip("nats-server is not installed (make test installs it)")
    base = tempfile.mkdtemp(prefix="ps-repl-")
    port = free_port()
    nats = NatsServer(base, "solo", port, None, [])
    replica, local = Store(), Store()
    node = None
    try:
        nats.start()
        url = "nats://127.0.0.1:%d" % port
        events = os.path.join(base, "events.ndjson")
        with open(events, "w") as f:
            subprocess.run([tool("gen_events"), "--events", "3000", "--realistic", "--seed", "5"],
                           stdout=f, check=True, timeout=TIMEOUT)
        for st in (replica, local):
            st.ctl("space", "create", "s", "--preset", "recommended")
        local.ctl("ingest", "s", events)
        node = Node(replica, url)
        node.start()
        deadline = time.time() + 60 * MULT
        while True:  # the first publish waits for JetStream to be ready
            p = replica.ctl("--json", "ingest", "s", events, "--replicate", url, check=False)
            if p.returncode == 0:
                break
            assert time.time() < deadline, p.stderr
            time.sleep(0.5)
        out = json.loads(p.stdout)
        assert out["published"] == 3000 and out["sequence"] > 0, out
        last = converge([node], out["sequence"], 120 * MULT)
        again = json.loads(replica.ctl("--json", "ingest", "s", events, "--replicate",
                                       url).stdout)
        converge([node], again["sequence"], 120 * MULT)
        # the stream is lost and the cluster comes back empty: a store that has applied
        # records neither makes a new stream nor reads one made again, and says so
        nats.kill()
        shutil.rmtree(nats.dir)
        nats.start()
        deadline = time.time() + 60 * MULT
        while not any("it is gone" in line for line in node.srv.log):
            assert time.time() < deadline, node.srv.log[-5:]
            time.sleep(0.3)
        status, _, body = node.srv.request("GET", "/healthz")
        assert status == 200 and body["status"] == "degraded", body
        p = replica.ctl("ingest", "s", events, "--replicate", url, check=False)
        assert p.returncode == 2 and "no stream" in p.stderr, (p.returncode, p.stderr)
        node.srv.stop()
        node.srv = None
        assert replica.ctl("export", "s").stdout == local.ctl("export", "s").stdout
        assert replica.ctl("log", "s").stdout == local.ctl("log", "s").stdout
        assert last > 0
    finally:
        if node and node.srv:
            node.srv.proc.kill()
            node.srv.proc.wait()
        nats.stop()
        replica.close()
        local.close()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    run_tests([test_replicated_space_refuses_local_writes,
               test_space_with_local_history_does_not_join,
               test_published_log_equals_local_ingest,
               test_three_nodes_converge_through_failures])
