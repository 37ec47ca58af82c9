# SPDX-License-Identifier: MIT
"""The real RudderStack Node SDK (pinned in tests/sdk/package.json), which speaks the Segment
spec and gzips its batches by default, pointed at profiled with `dataPlaneUrl` and nothing
else changed: identify, track, page and group arrive. Skipped, with the reason, when node/npm
are missing or the npm registry cannot be reached."""
import json
import os
import subprocess

from common import SDK_DIR, Server, Store, sdk_install

SPACE = "rs"
MULT = float(os.environ.get("PS_TEST_TIMEOUT_MULT", "1"))
CACHE = SDK_DIR

SCRIPT = r"""
const Analytics = require('@rudderstack/rudder-sdk-node');
const [url, key] = process.argv.slice(2);
const client = new Analytics(key, { dataPlaneUrl: url, flushAt: 3, flushInterval: 200 });
client.identify({ userId: 'rs-user', traits: { plan: 'pro', email: 'rs@sdk.example' } });
client.track({ userId: 'rs-user', event: 'Order Completed', properties: { total: 7 } });
client.page({ userId: 'rs-user', name: 'Home' });
client.group({ userId: 'rs-user', groupId: 'rs-acct', traits: { name: 'Acme' } });
client.flush((err) => { console.log(JSON.stringify({ err: err ? String(err) : null })); });
"""


def install():
    sdk_install("@rudderstack/rudder-sdk-node")
    with open(os.path.join(CACHE, "rudderstack.js"), "w") as f:
        f.write(SCRIPT)


def main():
    install()
    print("1..1")
    st = Store()
    try:
        st.ctl("space", "create", SPACE)
        key = st.ctl("source", "create", SPACE, "--name", "rudder").stdout.strip()
        srv = Server(st)
        try:
            p = subprocess.run(["node", os.path.join(CACHE, "rudderstack.js"),
                                "http://127.0.0.1:%d" % srv.port, key], cwd=CACHE,
                               capture_output=True, text=True, timeout=120 * MULT)
            assert p.returncode == 0, p.stderr
            assert json.loads(p.stdout.strip().splitlines()[-1])["err"] is None, p.stdout
        finally:
            srv.stop()
        d = st.json("inspect", SPACE, "user_id:rs-user")
        assert d["traits"]["plan"] == "pro", d["traits"]
        kinds = sorted((e["type"], e.get("event") or e.get("name")) for e in d["events"])
        assert kinds == [("page", "Home"), ("track", "Order Completed")], kinds
        acc = st.json("inspect", SPACE, "group_id:rs-acct")
        assert acc["traits"]["name"] == "Acme", acc
        print("ok 1 - rudder-sdk-node 3.0.13 with its defaults (gzip): every call arrives")
    except AssertionError as e:
        print("not ok - %s" % str(e).replace("\n", "\n# "))
        raise SystemExit(1)
    finally:
        st.close()


if __name__ == "__main__":
    main()
