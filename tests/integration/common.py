# SPDX-License-Identifier: MIT
"""Shared helpers for integration tests: run the real profilectl against temp stores."""
import json
import os
import shutil
import subprocess
import tempfile

BIN = os.environ.get("PS_BIN", os.path.join(os.path.dirname(__file__), "../../build/asan/bin"))
SOURCE = os.environ.get("PS_SOURCE", os.path.join(os.path.dirname(__file__), "../.."))
KEEP = os.environ.get("PS_TEST_KEEP") == "1"
TIMEOUT = 600 * float(os.environ.get("PS_TEST_TIMEOUT_MULT", "1"))


def tool(name):
    return os.path.join(BIN, name)


class Store:
    """A temp data directory; removed at exit unless PS_TEST_KEEP=1."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="ps-it-")

    def ctl(self, *args, input=None, check=True, env=None):
        """profilectl on this store; `env` adds variables to the environment."""
        cmd = [tool("profilectl"), "--data", self.dir, *args]
        p = subprocess.run(cmd, input=input, capture_output=True, timeout=TIMEOUT,
                           text=isinstance(input, str) or input is None,
                           env=dict(os.environ, **env) if env else None)
        if check and p.returncode != 0:
            raise AssertionError("%s -> %d\nstdout: %s\nstderr: %s"
                                 % (" ".join(cmd), p.returncode, p.stdout, p.stderr))
        return p

    def json(self, *args):
        return json.loads(self.ctl("--json", *args).stdout)

    def close(self):
        if KEEP:
            print("# kept", self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def skip(why):
    """Ends a TAP test file as skipped, with the reason."""
    print("1..0 # SKIP %s" % why)
    raise SystemExit(0)


SDK_DIR = os.environ.get("PS_SDK_DIR") or os.path.join(tempfile.gettempdir(), "ps-sdk-tests")


def sdk_install(module):
    """Installs the real client SDKs pinned in tests/sdk/package.json into SDK_DIR (once) and
    returns SDK_DIR; skips the test, with the reason, when node/npm are missing or the npm
    registry cannot be reached. `module` is the package the caller needs, e.g.
    "@segment/analytics-node"."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        skip("node and npm are not installed, so the real-SDK test cannot run")
    os.makedirs(SDK_DIR, exist_ok=True)
    import fcntl
    lock = open(os.path.join(SDK_DIR, ".install-lock"), "w")
    fcntl.flock(lock, fcntl.LOCK_EX)  # tests run in parallel: one npm install at a time
    try:
        return _sdk_install_locked(module)
    finally:
        lock.close()


def _sdk_install_locked(module):
    pinned = os.path.join(SOURCE, "tests", "sdk", "package.json")
    target = os.path.join(SDK_DIR, "package.json")
    with open(pinned) as f:
        want = f.read()
    have = open(target).read() if os.path.exists(target) else None
    if have != want or not os.path.isdir(os.path.join(SDK_DIR, "node_modules", module)):
        with open(target, "w") as f:
            f.write(want)
        try:
            p = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"],
                               cwd=SDK_DIR, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            skip("npm install timed out (is the npm registry reachable?)")
        if p.returncode != 0 or not os.path.isdir(os.path.join(SDK_DIR, "node_modules", module)):
            skip("npm install failed (is the npm registry reachable?): %s"
                 % (p.stderr.strip().splitlines() or ["?"])[-1])
    return SDK_DIR


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago, taken below the kernel's ephemeral
    range. A port from that range (what binding port 0 gives) may become, before the server
    meant for it binds it, the source port of any outgoing connection: a NATS server of a
    test cluster dialing a peer that is not up yet took its own peer's port that way."""
    import random
    import socket
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32768
    pick = random.SystemRandom()
    for _ in range(1000 if ephemeral > 11024 else 0):
        port = pick.randrange(10000, ephemeral)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    with socket.socket() as s:  # no room below the range: any free port
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_lock_owner(env):
    """The thread id holding the LMDB write lock of the store in directory `env`, or 0. The
    lock is a robust pthread mutex in lock.mdb after the 64-byte reader header; glibc records
    its owner's thread id 8 bytes into it (x86-64 and aarch64 alike)."""
    import struct
    with open(os.path.join(env, "lock.mdb"), "rb") as f:
        f.seek(72)
        return struct.unpack("<I", f.read(4))[0]


def wait_for_write_lock(env, pid, stdin=None):
    """Waits until process `pid` (one of its threads) holds the write lock of `env`: the only
    sign that it has begun a write transaction. With `stdin` (the pipe the process reads), also
    until it has read everything sent, and then holds the lock through ten looks 20 ms apart,
    which tells a transaction kept open for more input from a short one made while opening."""
    import array
    import fcntl
    import termios
    import time
    deadline = time.time() + 30 * float(os.environ.get("PS_TEST_TIMEOUT_MULT", "1"))
    held = 0
    while time.time() < deadline:
        owner = write_lock_owner(env)
        unread = array.array("i", [0])
        if stdin is not None:
            fcntl.ioctl(stdin.fileno(), termios.FIONREAD, unread, True)
        if owner and os.path.exists("/proc/%d/task/%d" % (pid, owner)) and unread[0] == 0:
            held += 1
            if stdin is None or held >= 10:
                return
        else:
            held = 0
        time.sleep(0.02)
    raise AssertionError("process %d did not take the write lock of %s" % (pid, env))


def generate(path, events, seed=1):
    with open(path, "w") as f:
        subprocess.run([tool("gen_events"), "--events", str(events), "--seed", str(seed)],
                       stdout=f, check=True, timeout=TIMEOUT)


def run_tests(tests):
    failed = 0
    print("1..%d" % len(tests))
    for i, t in enumerate(tests, 1):
        try:
            t()
            print("ok %d - %s" % (i, t.__name__))
        except Exception as e:  # report and go on
            failed += 1
            print("not ok %d - %s\n# %s" % (i, t.__name__, str(e).replace("\n", "\n# ")))
    raise SystemExit(1 if failed else 0)


class Server:
    """profiled on 127.0.0.1:0 over a Store; stop() sends SIGTERM and requires exit 0."""

    def __init__(self, store, *args, preexec_fn=None):
        import select
        import signal  # noqa: F401  (used by stop)
        self.store = store
        self.proc = subprocess.Popen(
            [tool("profiled"), "--data", store.dir, "--listen", "127.0.0.1:0", *args],
            stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn)
        self.log = []
        deadline = 30 * float(os.environ.get("PS_TEST_TIMEOUT_MULT", "1"))
        while True:
            ready, _, _ = select.select([self.proc.stderr], [], [], deadline)
            if not ready:
                self.proc.kill()  # never leave a server behind a failed start
                self.proc.wait()
                raise AssertionError("profiled did not report its address in %d s" % deadline)
            line = self.proc.stderr.readline()
            if not line:
                raise AssertionError("profiled exited: %s" % "".join(self.log))
            self.log.append(line)
            if line.startswith("{"):  # --log-format json: the same keys as logfmt
                fields = json.loads(line)
                line = " ".join("%s=%s" % kv for kv in fields.items()) + "\n"
            if "msg=listening" in line:
                addr = line.split(" listen=")[1].split()[0]
                self.host, port = addr.rsplit(":", 1)
                self.port = int(port)
                self.ingest_port = self.port
                if " ingest_listen=" in line:
                    self.ingest_port = int(line.split(" ingest_listen=")[1].split()[0]
                                           .rsplit(":", 1)[1])
                self.metrics_port = None
                if " metrics_listen=" in line:
                    self.metrics_port = int(line.split(" metrics_listen=")[1].split()[0]
                                            .rsplit(":", 1)[1])
                break
        import threading
        # keep reading the log so that a chatty server never blocks on a full pipe
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self):
        for line in self.proc.stderr:
            self.log.append(line)

    def request(self, method, path, token=None, body=None, headers=None, raw=False, port=None):
        import base64
        import http.client
        conn = http.client.HTTPConnection(self.host, port or self.port, timeout=60)
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = "Basic " + base64.b64encode((token + ":").encode()).decode()
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            h["Content-Type"] = "application/json"
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        if raw:
            return r.status, r.headers, data
        return r.status, r.headers, json.loads(data) if data else None

    def get(self, path, token=None, **kw):
        return self.request("GET", path, token, **kw)

    def metric(self, series, default=None, port=None):
        """The value of one series of /metrics, its name and labels as printed; `default`
        when the server does not print it (None: that is an error)."""
        text = self.get("/metrics", raw=True, port=port)[2].decode()
        for line in text.splitlines():
            if line.startswith(series + " "):
                return int(line.split()[-1])
        assert default is not None, "no %s in /metrics" % series
        return default

    def wait_metric(self, series, ok, seconds=30):
        """Waits until `ok` holds for the value of one series of /metrics (see metric), at most
        `seconds` (scaled like every test timeout); returns the value."""
        import time
        deadline = time.monotonic() + seconds * float(os.environ.get("PS_TEST_TIMEOUT_MULT", "1"))
        while not ok(value := self.metric(series)):
            assert time.monotonic() < deadline, "%s stayed at %d" % (series, value)
            time.sleep(0.02)
        return value

    def track(self, route, body, write_key=None, **kw):
        """POST to the Tracking API (on the ingest listener when there is one)."""
        return self.request("POST", "/v1/" + route, write_key, body=body,
                            port=self.ingest_port, **kw)

    def stop(self):
        import signal
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self._reader.join(timeout=10)
        rest = ""
        if code != 0:
            raise AssertionError("profiled exited %d: %s%s" % (code, "".join(self.log), rest))
