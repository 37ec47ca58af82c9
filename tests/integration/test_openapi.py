#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""schema/profile-api.openapi.json: valid OpenAPI 3.1 by Redocly's linter (pinned in
tests/sdk/package.json), and the same routes as the server's route table (`profiled
--routes`, whose every entry the server checks against its routers)."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import SOURCE, TIMEOUT, run_tests, sdk_install, tool  # noqa: E402

OPENAPI = os.path.join(SOURCE, "schema", "profile-api.openapi.json")
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def operations():
    with open(OPENAPI) as f:
        spec = json.load(f)
    return spec, {(m.upper(), path): op for path, item in spec["paths"].items()
                  for m, op in item.items() if m in METHODS}


def test_routes_match_the_server():
    p = subprocess.run([tool("profiled"), "--routes"], capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert p.returncode == 0, p.stderr  # an entry the routers disagree with fails here
    served = {tuple(line.split(" ", 1)) for line in p.stdout.splitlines()}
    spec, ops = operations()
    assert spec["openapi"].startswith("3.1"), spec["openapi"]
    documented = set(ops)
    assert served - documented == set(), "served, not in the OpenAPI file: %s" % sorted(
        served - documented)
    assert documented - served == set(), "in the OpenAPI file, not served: %s" % sorted(
        documented - served)
    # both APIs, the legacy prefix included
    assert ("POST", "/v1/batch") in served and ("POST", "/v1/i") in served
    assert any(path.startswith("/v1/namespaces/") for _, path in served)
    ids = [op.get("operationId") for op in ops.values()]
    assert None not in ids and len(ids) == len(set(ids)), ids


def test_redocly_lint():
    sdk = sdk_install("@redocly/cli")
    redocly = os.path.join(sdk, "node_modules", ".bin", "redocly")
    p = subprocess.run([redocly, "lint", OPENAPI, "--config",
                        os.path.join(SOURCE, "schema", "redocly.yaml"), "--format=stylish"],
                       capture_output=True, text=True, timeout=TIMEOUT)
    out = p.stdout + p.stderr
    assert p.returncode == 0 and "valid" in out and "warning" not in out, out[-3000:]


if __name__ == "__main__":
    run_tests([test_routes_match_the_server, test_redocly_lint])
