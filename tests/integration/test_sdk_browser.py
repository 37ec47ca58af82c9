# SPDX-License-Identifier: MIT
"""analytics.js (npm `@segment/analytics-next`, pinned in tests/sdk/package.json) in headless
Debian Chromium, driven by `puppeteer-core`. A page served from another origin loads the
library's browser bundle and calls AnalyticsBrowser.load with `cdnURL` set to profiled and
nothing else changed: the library fetches its settings from profiled, sends identify, track,
page and group from the page's origin (CORS, `text/plain` bodies, the write key in the body),
and the profile then shows the traits, the events and the account link through the Profile
API. Skipped, with the reason, when node/npm or chromium are missing (`make test` installs
them) or the npm registry cannot be reached."""
import http.server
import json
import os
import shutil
import subprocess
import threading
import time

from common import SDK_DIR, Server, Store, sdk_install, skip

SPACE = "web"
MULT = float(os.environ.get("PS_TEST_TIMEOUT_MULT", "1"))
USERS = "/v1/spaces/%s/collections/users/profiles/" % SPACE
ACCOUNTS = "/v1/spaces/%s/collections/accounts/profiles/" % SPACE

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>shop</title></head><body>
<script src="/analytics.js"></script>
<script>
window.result = (async () => {
  const [analytics] = await AnalyticsNext.AnalyticsBrowser.load(
      { writeKey: %(key)s, cdnURL: %(cdn)s });
  await analytics.identify('web-user-1', { plan: 'pro', email: 'web1@shop.example' });
  await analytics.track('Product Viewed', { sku: 'sku-7', price: 12.5 });
  await analytics.page('Docs', 'Pricing', { path: '/pricing' });
  await analytics.group('acct-web', { name: 'Acme Web', plan: 'team' });
  await analytics.track('Checkout Started', { items: 2 });
  return { ok: true, anonymousId: analytics.user().anonymousId() };
})().catch((e) => ({ ok: false, error: String(e && (e.stack || e.message) || e) }));
</script></body></html>
"""

DRIVER = r"""
const puppeteer = require('puppeteer-core');
const [chrome, url, seconds] = process.argv.slice(2);
(async () => {
  const log = [];
  const browser = await puppeteer.launch({
    executablePath: chrome, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-dev-shm-usage'],
  });
  let result;
  try {
    const page = await browser.newPage();
    page.on('console', (m) => log.push('console.' + m.type() + ': ' + m.text()));
    page.on('pageerror', (e) => log.push('pageerror: ' + e.message));
    page.on('requestfailed', (r) => log.push('failed: ' + r.method() + ' ' + r.url() + ' '
                                             + (r.failure() || {}).errorText));
    page.on('response', (r) => log.push(r.status() + ' ' + r.request().method() + ' '
                                        + r.url()));
    await page.goto(url, { waitUntil: 'load' });
    const h = await page.waitForFunction('window.result', { timeout: seconds * 1000 });
    result = await page.evaluate(() => window.result);
    // the last call's request may still be in flight: wait until the network is quiet
    await page.waitForNetworkIdle({ idleTime: 300, timeout: seconds * 1000 }).catch(() => {});
    await h.dispose();
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify({ result, log }));
})().catch((e) => { console.log(JSON.stringify({ result: { ok: false, error: String(e) },
                                                 log: [] })); });
"""


class PageServer:
    """The web site: another origin (its own port) serving the page and analytics.js."""

    def __init__(self, page, bundle):
        files = {"/": ("text/html", page.encode()), "/analytics.js":
                 ("application/javascript", open(bundle, "rb").read())}
        self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(h):
                self.hits.append(h.path)
                kind, body = files.get(h.path.split("?")[0], ("text/plain", None))
                h.send_response(200 if body is not None else 404)
                h.send_header("Content-Type", kind)
                h.send_header("Content-Length", str(len(body or b"")))
                h.end_headers()
                h.wfile.write(body or b"")

            def log_message(h, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def chromium():
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    skip("chromium is not installed (make test installs Debian's chromium)")


def run_browser(chrome, url):
    driver = os.path.join(SDK_DIR, "browser_driver.js")
    with open(driver, "w") as f:
        f.write(DRIVER)
    p = subprocess.run(["node", driver, chrome, url, str(int(90 * MULT))], cwd=SDK_DIR,
                       capture_output=True, text=True, timeout=240 * MULT)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    return out["result"], out["log"]


def poll(srv, token, path, ready):
    """The Profile API answer at path once ready(body) holds (delivery is asynchronous)."""
    deadline = time.time() + 30 * MULT
    while True:
        st, _, body = srv.get(path, token)
        if st == 200 and ready(body):
            return body
        if time.time() > deadline:
            raise AssertionError("%s never became ready: %d %s" % (path, st, body))
        time.sleep(0.2)


def main():
    sdk_install("@segment/analytics-next")
    sdk_install("puppeteer-core")
    chrome = chromium()
    bundle = os.path.join(SDK_DIR, "node_modules", "@segment", "analytics-next", "dist", "umd",
                          "index.js")
    print("1..1")
    st = Store()
    srv = site = None
    try:
        st.ctl("space", "create", SPACE)
        key = st.ctl("source", "create", SPACE, "--name", "website").stdout.strip()
        token = st.ctl("token", "create", SPACE).stdout.strip()
        srv = Server(st)
        cdn = "http://127.0.0.1:%d" % srv.port
        site = PageServer(PAGE % {"key": json.dumps(key), "cdn": json.dumps(cdn)}, bundle)
        result, log = run_browser(chrome, "http://127.0.0.1:%d/" % site.port)
        trace = "\n".join(log)
        if os.environ.get("PS_TEST_VERBOSE"):
            print("# " + trace.replace("\n", "\n# "))
        assert result and result.get("ok"), "%s\n%s" % (result, trace)
        # the library loaded its settings from profiled and posted every call there
        assert any(line.startswith("200 GET %s/v1/projects/%s/settings" % (cdn, key))
                   for line in log), trace
        for route in ("i", "t", "p", "g"):
            assert any(line.startswith("200 POST %s/v1/%s" % (cdn, route)) for line in log), \
                "no delivered /v1/%s:\n%s" % (route, trace)
        assert not [x for x in log if x.startswith(("failed:", "pageerror:"))], trace

        who = USERS + "user_id:web-user-1"
        traits = poll(srv, token, who + "/traits", lambda b: "plan" in b.get("traits", {}))
        assert traits["traits"]["plan"] == "pro", traits
        assert traits["traits"]["email"] == "web1@shop.example", traits
        events = poll(srv, token, who + "/events",
                      lambda b: len(b.get("data", [])) >= 3)["data"]
        kinds = sorted((e["type"], e.get("event") or e.get("name")) for e in events)
        assert kinds == [("page", "Pricing"), ("track", "Checkout Started"),
                         ("track", "Product Viewed")], kinds
        viewed = [e for e in events if e.get("event") == "Product Viewed"][0]
        assert viewed["properties"] == {"sku": "sku-7", "price": 12.5}, viewed
        # the browser's anonymous id was joined to the user by identify
        ids = srv.get(who + "/external_ids", token)[2]["data"]
        pairs = {(x["type"], x["id"]) for x in ids}
        assert ("anonymous_id", result["anonymousId"]) in pairs, pairs
        assert ("email", "web1@shop.example") in pairs, pairs
        links = poll(srv, token, who + "/links", lambda b: len(b.get("data", [])) == 1)
        acct = links["data"][0]
        assert acct["to_collection"] == "accounts", links
        assert acct["external_ids"][0]["id"] == "acct-web", links
        acc = srv.get(ACCOUNTS + "group_id:acct-web/traits", token)[2]
        assert acc["traits"] == {"name": "Acme Web", "plan": "team"}, acc
        # the page came from the other origin and analytics.js from that origin only
        assert "/analytics.js" in site.hits, site.hits
        print("ok 1 - analytics.js in Chromium: settings from profiled, identify, track, "
              "page and group from another origin, read back through the Profile API")
    except AssertionError as e:
        print("not ok 1 - %s" % str(e).replace("\n", "\n# "))
        raise SystemExit(1)
    finally:
        if site:
            site.stop()
        if srv:
            srv.stop()
        st.close()


if __name__ == "__main__":
    main()
