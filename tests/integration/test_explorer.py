#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The profile explorer at /ui/, in Debian's Chromium driven by puppeteer-core: a profile is
looked up with a token, every tab shows what the Profile API holds, a trait that is an HTML
injection shows as text and runs nothing, and a screenshot is saved under the build
directory (explorer.png). Skipped, with the reason, when node/npm or chromium are missing."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import BIN, SDK_DIR, Server, Store, run_tests, sdk_install  # noqa: E402
from test_sdk_browser import MULT, chromium  # noqa: E402

XSS = "<img src=x onerror=alert(1)>"

DRIVER = r"""
const puppeteer = require('puppeteer-core');
const [chrome, url, space, ident, token, shot] = process.argv.slice(2);
(async () => {
  const log = [], dialogs = [];
  const browser = await puppeteer.launch({
    executablePath: chrome, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-dev-shm-usage'],
  });
  const out = {};
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1400, height: 900 });
    page.on('dialog', async (d) => { dialogs.push(d.message()); await d.dismiss(); });
    page.on('console', (m) => log.push('console.' + m.type() + ': ' + m.text()));
    page.on('pageerror', (e) => log.push('pageerror: ' + e.message));
    await page.goto(url, { waitUntil: 'load' });
    out.url = page.url();
    const fill = async (sel, v) => { await page.$eval(sel, (e) => { e.value = ''; }); await page.type(sel, v); };
    await fill('#space', space);
    await fill('#ident', ident);
    await fill('#token', token);
    await page.click('#go');
    await page.waitForSelector('#profile:not([hidden])', { timeout: 20000 });
    out.segment_id = await page.$eval('#segment-id', (e) => e.textContent);
    out.tabs = {};
    for (const tab of ['identities', 'traits', 'events', 'links', 'merges']) {
      await page.click('#tabs button[data-tab="' + tab + '"]');
      out.tabs[tab] = await page.$eval('#' + tab, (e) => e.innerText);
    }
    await page.click('#tabs button[data-tab="traits"]');
    out.injected_images = await page.$$eval('img', (l) => l.length);
    out.merge_nodes = await page.$$eval('#merges svg g.node', (l) => l.length);
    await page.click('#tabs button[data-tab="merges"]');
    await page.screenshot({ path: shot, fullPage: true });
    // the token survives a reload of the tab (sessionStorage), and nothing is in localStorage
    await page.reload({ waitUntil: 'load' });
    out.token_after_reload = await page.$eval('#token', (e) => e.value);
    out.local_storage = await page.evaluate(() => localStorage.length);
    // a wrong token: the error is shown and the profile hidden
    await fill('#space', space);
    await fill('#ident', ident);
    await fill('#token', 'pat_wrong');
    await page.click('#go');
    await page.waitForFunction(() => document.getElementById('status').className === 'error',
                               { timeout: 20000 });
    out.error = await page.$eval('#status', (e) => e.textContent);
  } catch (e) {
    out.exception = String(e);
  } finally {
    await browser.close();
  }
  out.dialogs = dialogs;
  out.log = log;
  console.log(JSON.stringify(out));
})();
"""


def test_explorer_in_chromium():
    sdk_install("puppeteer-core")
    chrome = chromium()
    st = Store()
    try:
        st.ctl("space", "create", "default")
        msgs = [
            {"type": "page", "anonymousId": "a-1", "name": "Home", "messageId": "m1",
             "timestamp": "2026-11-30T10:00:00Z"},
            {"type": "identify", "userId": "ada", "traits": {"name": "Ada", "nickname": XSS,
                                                           "email": "ada@example.com"},
             "messageId": "m2", "timestamp": "2026-11-30T10:01:00Z"},
            {"type": "identify", "userId": "ada", "anonymousId": "a-1", "messageId": "m3",
             "timestamp": "2026-11-30T10:02:00Z"},
            {"type": "track", "userId": "ada", "event": "Order Completed",
             "properties": {"total": 42, "note": XSS}, "messageId": "m4",
             "timestamp": "2026-11-30T10:03:00Z"},
            {"type": "group", "userId": "ada", "groupId": "acme", "traits": {"name": "Acme"},
             "messageId": "m5", "timestamp": "2026-11-30T10:04:00Z"},
        ]
        st.ctl("ingest", "default", "-", input="".join(json.dumps(m) + "\n" for m in msgs))
        token = st.ctl("token", "create", "default", "--role", "read").stdout.strip()
        srv = Server(st)
        try:
            driver = os.path.join(SDK_DIR, "explorer_driver.js")
            with open(driver, "w") as f:
                f.write(DRIVER)
            shot = os.path.join(os.path.dirname(os.path.abspath(BIN)), "explorer.png")
            url = "http://127.0.0.1:%d/ui" % srv.port
            p = subprocess.run(["node", driver, chrome, url, "default", "email:ada@example.com",
                                token, shot], cwd=SDK_DIR, capture_output=True, text=True,
                               timeout=240 * MULT)
            assert p.returncode == 0, p.stderr
            out = json.loads(p.stdout.strip().splitlines()[-1])
            assert "exception" not in out, out
            s, _, meta = srv.get("/v1/spaces/default/collections/users/profiles/"
                                 "user_id:ada/merges", token)
            assert s == 200 and len(meta["data"]) == 1, meta
        finally:
            srv.stop()
        assert out["url"].endswith("/ui/"), out["url"]  # /ui redirects to /ui/
        assert out["segment_id"] == meta["segment_id"], out
        tabs = out["tabs"]
        for ident in ("user_id", "ada", "anonymous_id", "a-1", "email", "ada@example.com"):
            assert ident in tabs["identities"], tabs["identities"]
        assert "nickname" in tabs["traits"] and XSS in tabs["traits"], tabs["traits"]
        assert "Order Completed" in tabs["events"] and "Home" in tabs["events"], tabs["events"]
        assert "accounts" in tabs["links"] and "acme" in tabs["links"], tabs["links"]
        merged = meta["data"][0]
        for part in (merged["segment_id"], merged["merged_into"], "m3"):
            assert part in tabs["merges"], tabs["merges"]
        assert out["merge_nodes"] == 2, out
        # the injection is shown, never run
        assert out["injected_images"] == 0 and out["dialogs"] == [], out
        assert not any("pageerror" in line or "Content Security Policy" in line
                       for line in out["log"]), out["log"]
        assert out["token_after_reload"] == token and out["local_storage"] == 0, out
        assert "token" in out["error"].lower() or "auth" in out["error"].lower(), out["error"]
        assert os.path.getsize(shot) > 10000, shot
    finally:
        st.close()


if __name__ == "__main__":
    run_tests([test_explorer_in_chromium])
