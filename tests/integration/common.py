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

    def ctl(self, *args, input=None, check=True):
        cmd = [tool("profilectl"), "--data", self.dir, *args]
        p = subprocess.run(cmd, input=input, capture_output=True, timeout=TIMEOUT,
                           text=isinstance(input, str) or input is None)
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
