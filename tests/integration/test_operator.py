#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""What operators rely on: /metrics that promtool accepts, with the process, writer and
group-commit series; JSON logs and the access log; --version everywhere."""
import json
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import TIMEOUT, Server, Store, run_tests, tool  # noqa: E402


def promtool_check(text):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing (make test installs Debian's prometheus package)"
    p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=TIMEOUT)
    assert p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(), \
        (p.returncode, p.stdout, p.stderr)


def value(text, series):
    m = re.search(r"^%s (\S+)$" % re.escape(series), text, re.M)
    assert m, (series, text[:2000])
    return float(m.group(1))


def test_metrics_pass_promtool():
    st = Store()
    try:
        st.ctl("space", "create", "s")
        key = st.json("source", "create", "s", "--name", "web")["write_key"]
        srv = Server(st, "--metrics-listen", "127.0.0.1:0")
        try:
            for i in range(5):
                s, _, body = srv.track("batch", {"batch": [
                    {"type": "identify", "userId": "u%d" % i, "anonymousId": "a%d" % i},
                    {"type": "track", "anonymousId": "a%d" % i, "event": "Viewed"}]}, key)
                assert s == 200, body
            s, _, public = srv.get("/metrics", raw=True)
            deadline = time.monotonic() + 30
            while True:  # the store takes acknowledged events a moment later
                s2, _, private = srv.get("/metrics", raw=True, port=srv.metrics_port)
                committed = re.search(r'^profiled_store_commit_messages_sum\{space="s"\} 10$',
                                      private.decode(), re.M)
                if committed or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        finally:
            srv.stop()
        assert s == 200 and s2 == 200
        public, private = public.decode(), private.decode()
        promtool_check(public)
        promtool_check(private)
        # the public form names no space; the private one has every per-space series
        assert 'space="s"' not in public
        assert value(public, "process_open_fds") > 3
        assert value(public, "process_resident_memory_bytes") > 1 << 20
        assert value(public, "process_start_time_seconds") > 1.7e9
        assert re.search(r'^profiled_build_info\{version="[0-9.]+"\} 1$', public, re.M)
        assert value(private, 'profiled_journal_group_messages_sum{space="s"}') == 10
        assert value(private, 'profiled_journal_group_messages_count{space="s"}') >= 1
        assert value(private, 'profiled_store_commit_messages_sum{space="s"}') == 10
        # how long the journal syncs and the store commits took: every sync that acknowledged
        # a request, and the commit that took the messages, in cumulative buckets
        syncs = value(private, 'profiled_journal_sync_seconds_count{space="s"}')
        assert syncs == value(private, 'profiled_journal_group_messages_count{space="s"}')
        assert syncs >= 1 and value(private, 'profiled_journal_sync_seconds_sum{space="s"}') > 0
        assert value(private, 'profiled_store_commit_seconds_count{space="s"}') >= 1
        assert value(private, 'profiled_store_commit_seconds_sum{space="s"}') > 0
        les = re.findall(r'^profiled_store_commit_seconds_bucket\{space="s",le="([^"]+)"\} (\d+)$',
                         private, re.M)
        assert [le for le, _ in les][:2] == ["0.001", "0.0025"] and les[-1][0] == "+Inf"
        counts = [int(c) for _, c in les]
        assert counts == sorted(counts) and counts[-1] == \
            value(private, 'profiled_store_commit_seconds_count{space="s"}')
        assert value(private, 'profiled_writer_queued_payloads{space="s"}') == 0
        assert value(private, 'profiled_writer_backlog_bytes{space="s"}') == 0
        assert "# TYPE profiled_merges_total counter" in private
        assert value(private, 'profiled_merges_total{space="s"}') == \
            value(private, 'profiled_merges{space="s"}')
    finally:
        st.close()


def test_json_logs_and_access_log():
    st = Store()
    try:
        st.ctl("space", "create", "s")
        tok = st.ctl("token", "create", "s").stdout.strip()
        srv = Server(st, "--log-format", "json", "--access-log")
        try:
            s, headers, _ = srv.get("/v1/spaces/s/collections/users/profiles/"
                                    "email:jane%40example.com/traits", tok)
            assert s == 404
            rid = headers["Request-Id"]
            srv.get("/healthz")
        finally:
            srv.stop()
        lines = [json.loads(line) for line in srv.log]  # every line is one JSON object
        assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", x["ts"]) for x in lines)
        access = [x for x in lines if x["level"] == "access"]
        mine = [x for x in access if x["request_id"] == rid]
        assert len(mine) == 1, access
        assert {k: mine[0][k] for k in ("method", "route", "status")} == \
            {"method": "GET", "route": "traits", "status": "404"}, mine
        assert float(mine[0]["duration_ms"]) >= 0 and int(mine[0]["bytes"]) > 0
        assert not any("jane" in json.dumps(x) for x in lines), "a path leaked into the log"
        assert any(x["route"] == "healthz" for x in access)
        # without the flags: logfmt, and no access lines
        srv = Server(st)
        srv.get("/healthz")
        srv.stop()
        assert all(line.startswith("ts=") for line in srv.log), srv.log
        assert not any("level=access" in line for line in srv.log)
        p = subprocess.run([tool("profiled"), "--log-format", "xml"], capture_output=True,
                           text=True, timeout=TIMEOUT)
        assert p.returncode != 0 and "--log-format must be logfmt or json" in p.stderr
    finally:
        st.close()


def test_ingest_progress_on_a_terminal():
    """On a terminal, ingest draws a pv-like line (bytes, percent, rates, ETA) and erases it;
    elsewhere it prints none."""
    if shutil.which("script") is None:
        raise AssertionError("script (util-linux) is missing")
    st = Store()
    try:
        st.ctl("space", "create", "s")
        log = os.path.join(st.dir, "log.ndjson")
        with open(log, "w") as f:
            subprocess.run([tool("gen_events"), "--events", "40000", "--realistic"], stdout=f,
                           check=True, timeout=TIMEOUT)
        cmd = "%s --data %s ingest s %s" % (tool("profilectl"), st.dir, log)
        p = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True,
                           timeout=TIMEOUT)  # bytes: text mode would turn \r into \n
        out = p.stdout.decode()
        assert p.returncode == 0, out + p.stderr.decode()
        frames = [x for x in out.split("\r") if "MB/s" in x]
        assert frames, out[-2000:]
        assert re.search(r"log\.ndjson: [0-9.]+ MB of [0-9.]+ MB \(\d+%\), \d+ lines, "
                         r"[0-9.]+ MB/s, \d+ lines/s, ETA \d+:\d\d", frames[-1]), frames[-1]
        # erased before the summary, which starts a line of its own
        assert "\r\x1b[Klines 40000" in out, out[-500:]
        # not a terminal: no progress at all
        p = st.ctl("ingest", "s", log)
        assert "MB/s" not in p.stderr and "\r" not in p.stderr, p.stderr
    finally:
        st.close()


def test_versions_agree():
    out = {}
    for prog in ("profiled", "profilectl"):
        p = subprocess.run([tool(prog), "--version"], capture_output=True, text=True,
                           timeout=TIMEOUT)
        assert p.returncode == 0, p.stderr
        out[prog] = p.stdout.split()[-1]
    assert out["profiled"] == out["profilectl"] and re.match(r"\d+\.\d+\.\d+$", out["profiled"])


if __name__ == "__main__":
    run_tests([test_metrics_pass_promtool, test_json_logs_and_access_log,
               test_ingest_progress_on_a_terminal, test_versions_agree])
