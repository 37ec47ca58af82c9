# SPDX-License-Identifier: MIT
"""The real `@segment/analytics-node` SDK and the classic `analytics-node` 6 (both pinned in
tests/sdk/package.json), pointed at profiled with `host` and nothing else changed: identify,
track, page, screen, group and alias arrive, batched by the SDK; and the SDK's retries carry
its events over a server that was not up yet. Skipped, with
the reason, when node/npm are missing or the npm registry cannot be reached."""
import json
import os
import subprocess
import time

from common import SDK_DIR, Server, Store, free_port, sdk_install, tool

SPACE = "sdk"
MULT = float(os.environ.get("PS_TEST_TIMEOUT_MULT", "1"))
CACHE = SDK_DIR

SCRIPT = r"""
const { Analytics } = require('@segment/analytics-node');
const [host, writeKey, tag] = process.argv.slice(2);
const analytics = new Analytics({ writeKey, host, flushAt: 4, flushInterval: 200,
                                  maxRetries: 6 });
const errors = [];
analytics.on('error', (e) => errors.push(String(e && (e.reason || e.message || e.code) || e)));
const u = 'sdk-user-' + tag;
analytics.identify({ userId: u, traits: { plan: 'pro', email: tag + '@sdk.example' } });
analytics.track({ userId: u, event: 'Order Completed', properties: { total: 42 } });
analytics.page({ userId: u, name: 'Pricing', properties: { path: '/pricing' } });
analytics.screen({ userId: u, name: 'Home' });
analytics.group({ userId: u, groupId: 'acct-' + tag, traits: { name: 'Acme' } });
analytics.alias({ userId: u, previousId: 'anon-' + tag });
analytics.track({ anonymousId: 'anon-only-' + tag, event: 'Viewed' });
analytics.closeAndFlush({ timeout: 60000 }).then(() => {
  console.log(JSON.stringify({ errors }));
});
"""


# the classic SDK: a constructor taking the key, callbacks instead of promises
CLASSIC = r"""
const Analytics = require('analytics-node');
const [host, writeKey, tag] = process.argv.slice(2);
const analytics = new Analytics(writeKey, { host, flushAt: 4, flushInterval: 200 });
const errors = [];
const done = (err) => { if (err) errors.push(String(err.message || err)); };
const u = 'sdk-user-' + tag;
analytics.identify({ userId: u, traits: { plan: 'pro', email: tag + '@sdk.example' } }, done);
analytics.track({ userId: u, event: 'Order Completed', properties: { total: 42 } }, done);
analytics.page({ userId: u, name: 'Pricing', properties: { path: '/pricing' } }, done);
analytics.screen({ userId: u, name: 'Home' }, done);
analytics.group({ userId: u, groupId: 'acct-' + tag, traits: { name: 'Acme' } }, done);
analytics.alias({ userId: u, previousId: 'anon-' + tag }, done);
analytics.track({ anonymousId: 'anon-only-' + tag, event: 'Viewed' }, done);
analytics.flush((err) => {
  done(err);
  console.log(JSON.stringify({ errors }));
});
"""


def install():
    sdk_install("@segment/analytics-node")
    sdk_install("analytics-node")
    with open(os.path.join(CACHE, "client.js"), "w") as f:
        f.write(SCRIPT)
    with open(os.path.join(CACHE, "classic.js"), "w") as f:
        f.write(CLASSIC)


def run_client(port, key, tag, wait=True, script="client.js"):
    proc = subprocess.Popen(["node", os.path.join(CACHE, script),
                             "http://127.0.0.1:%d" % port, key, tag], cwd=CACHE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return proc
    return finish(proc)


def finish(proc):
    out, err = proc.communicate(timeout=120 * MULT)
    assert proc.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["errors"] == [], result
    return result


def check_profile(st, tag):
    d = st.json("inspect", SPACE, "user_id:sdk-user-" + tag)
    assert d["traits"]["plan"] == "pro", d["traits"]
    kinds = sorted((e["type"], e.get("event") or e.get("name")) for e in d["events"])
    assert kinds == [("page", "Pricing"), ("screen", "Home"),
                     ("track", "Order Completed")], kinds
    ids = {(x["type"], x["id"]) for x in d["external_ids"]}
    assert ("email", tag + "@sdk.example") in ids, ids
    assert ("anonymous_id", "anon-" + tag) not in ids, ids  # alias never merges
    acc = st.json("inspect", SPACE, "group_id:acct-" + tag)
    assert acc["traits"]["name"] == "Acme", acc
    assert st.ctl("inspect", SPACE, "anonymous_id:anon-only-" + tag).returncode == 0


def main():
    install()
    print("1..3")
    st = Store()
    try:
        st.ctl("space", "create", SPACE)
        key = st.ctl("source", "create", SPACE, "--name", "node").stdout.strip()
        srv = Server(st)
        try:
            run_client(srv.port, key, "a")
            check_profile(st, "a")
        finally:
            srv.stop()
        print("ok 1 - analytics-node: every call type, batched, arrives unchanged")

        # retries: the SDK starts while nothing listens on the port, then the server comes up
        port = free_port()
        proc = run_client(port, key, "b", wait=False)
        time.sleep(1.0)
        srv = subprocess.Popen([tool("profiled"), "--data", st.dir, "--listen",
                                "127.0.0.1:%d" % port], stderr=subprocess.DEVNULL)
        try:
            finish(proc)
        finally:
            srv.terminate()
            assert srv.wait(timeout=60) == 0
        check_profile(st, "b")
        assert st.ctl("check", SPACE).returncode == 0
        print("ok 2 - analytics-node: retries deliver over a server that starts late")

        srv = Server(st)
        try:
            run_client(srv.port, key, "c", script="classic.js")
            check_profile(st, "c")
        finally:
            srv.stop()
        print("ok 3 - classic analytics-node 6: every call type, batched, arrives unchanged")
    except AssertionError as e:
        print("not ok - %s" % str(e).replace("\n", "\n# "))
        raise SystemExit(1)
    finally:
        st.close()


if __name__ == "__main__":
    main()
