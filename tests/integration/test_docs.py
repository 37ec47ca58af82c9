#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Every shell block of docs/*.md runs as written against the installed programs
(test_install.py runs the README's). Each document's blocks run in order, in one bash, in a
sandbox: a data directory ($PROFILED_DATA) holding the spaces the documents use (`prod` and
`default` with the bundled sample, `other` empty), `$TOKEN` an admin token of `prod`, and,
for documents that call the HTTP APIs, a server of that data directory.

What cannot run here is left out, and only that:
- `make ...` lines (the build, the bench and the fuzzers; CI runs the build);
- `sudo systemctl` and `sudo systemd-sysusers` (they need a booted systemd); `sudo -u
  profiled` runs as the current user, and /var/lib/profiled is the sandbox's data directory;
- a block that calls `psql` (it needs PostgreSQL);
- lines that show output (they start with `{"`).
The server listens on a free port where a document says 127.0.0.1:8080, and `--follow`
lines run for two seconds."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from common import SOURCE, TIMEOUT, free_port, run_tests  # noqa: E402
from test_install import install  # noqa: E402


def blocks(path):
    with open(path) as f:
        return re.findall(r"^```sh\n(.*?)^```", f.read(), re.S | re.M)


def runnable(block, port):
    if re.search(r"\bpsql\b", block):
        return ""
    out = []
    for line in block.splitlines():
        bare = line.strip()
        words = [w for w in bare.split() if not re.match(r"^[A-Z_]+=", w)]
        if not bare or line.startswith('{"') or (words and words[0] == "make"):
            continue
        if re.match(r"sudo (systemctl|systemd-sysusers)\b", bare):
            continue
        line = line.replace("sudo -u profiled ", "")
        line = line.replace("/var/lib/profiled", '"$PROFILED_DATA"')
        line = line.replace("127.0.0.1:8080", "127.0.0.1:%d" % port)
        if "--follow" in line:
            line = "timeout 2 " + line.split("#")[0].rstrip() + " || [ $? = 124 ]"
        out.append(line)
    return "\n".join(out) + "\n"


def sandbox(root, home):
    """The installed programs on PATH and a data directory with the documents' spaces."""
    env = dict(os.environ, HOME=home, PROFILED_DATA=os.path.join(home, "data"),
               PATH="%s/bin:%s/sbin:%s" % (root, root, os.environ["PATH"]))
    # no leak check at exit in the sanitizer build: LeakSanitizer stops the exiting process
    # with ptrace, and `timeout` (in a documented command) sends SIGCONT right after its
    # SIGTERM, which can resume the process its tracer just stopped; the check then waited
    # forever (seen twice: the process spinning, its tracer in wait4). The programs' leaks
    # are checked by every other test.
    opts = [o for o in os.environ.get("ASAN_OPTIONS", "").split(":") if o]
    env["ASAN_OPTIONS"] = ":".join(opts + ["detect_leaks=0"])
    ctl = os.path.join(root, "bin", "profilectl")
    sample = os.path.join(SOURCE, "tests", "fixtures", "events", "sample.ndjson")
    for space in ("prod", "default", "other"):
        subprocess.run([ctl, "space", "create", space], env=env, check=True,
                       capture_output=True, timeout=TIMEOUT)
    for space in ("prod", "default"):
        subprocess.run([ctl, "ingest", space, sample], env=env, check=True,
                       capture_output=True, timeout=TIMEOUT)
    env["TOKEN"] = subprocess.run([ctl, "token", "create", "prod"], env=env, check=True,
                                  capture_output=True, text=True,
                                  timeout=TIMEOUT).stdout.strip()
    work = os.path.join(home, "work")  # files the commands write land here
    os.makedirs(work)
    for d in ("tests", "schema"):
        os.symlink(os.path.join(os.path.abspath(SOURCE), d), os.path.join(work, d))
    return env, work


def serve(root, env, port):
    srv = subprocess.Popen([os.path.join(root, "sbin", "profiled"), "--listen",
                            "127.0.0.1:%d" % port], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port, timeout=5):
                return srv
        except OSError:
            if time.monotonic() > deadline or srv.poll() is not None:
                srv.kill()
                raise AssertionError("the server did not start")
            time.sleep(0.2)


def test_every_docs_block_runs():
    dest = tempfile.mkdtemp(prefix="ps-docs-")
    try:
        root = install(dest)
        docs = sorted(os.path.join(SOURCE, "docs", f) for f in os.listdir(
            os.path.join(SOURCE, "docs")) if f.endswith(".md"))
        ran = []
        for doc in docs:
            port = free_port()
            script = "".join(runnable(b, port) for b in blocks(doc))
            if not script.strip():
                continue
            home = tempfile.mkdtemp(dir=dest)
            env, work = sandbox(root, home)
            srv = serve(root, env, port) if "curl" in script else None
            try:
                p = subprocess.run(["bash", "-e", "-c", script], cwd=work, env=env,
                                   capture_output=True, text=True, timeout=TIMEOUT)
            finally:
                if srv:
                    srv.terminate()
                    assert srv.wait(timeout=60) == 0
            assert p.returncode == 0, "%s:\n%s\nstdout: %s\nstderr: %s" % (
                os.path.basename(doc), script, p.stdout[-1500:], p.stderr[-1500:])
            ran.append(os.path.basename(doc))
        for doc in ("changes.md", "filters.md", "http-api.md", "identity-settings.md",
                    "import.md", "install.md", "privacy.md", "sdks.md"):
            assert doc in ran, (doc, ran)
    finally:
        shutil.rmtree(dest, ignore_errors=True)


if __name__ == "__main__":
    run_tests([test_every_docs_block_runs])
