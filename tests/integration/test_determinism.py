# SPDX-License-Identifier: MIT
"""Determinism (docs/architecture.md): the same log into two empty stores, in different batch
sizes, and derived again from the store's own log by `profilectl rebuild`, gives identical
profiles for every identifier."""
import json
import os

from common import Store, generate, run_tests

EVENTS = int(os.environ.get("PS_DETERMINISM_EVENTS", "1500"))


def snapshot(store):
    """export plus inspect --json of every identifier, as one comparable value."""
    export = store.ctl("export", "s").stdout
    views = {}
    for line in export.splitlines():
        doc = json.loads(line)
        for x in doc["external_ids"]:
            ident = "%s:%s" % (x["type"], x["id"])
            views[ident] = store.ctl("inspect", "s", ident, "--json").stdout
        views[doc["segment_id"]] = store.ctl("inspect", "s", doc["segment_id"], "--json").stdout
    return export, views


def test_two_stores_and_batch_sizes_agree():
    stores = [Store() for _ in range(3)]
    try:
        log = os.path.join(stores[0].dir, "log.ndjson")
        generate(log, EVENTS, seed=11)
        results = []
        for store, batch in zip(stores, ["10000", "10000", "7"]):
            store.ctl("space", "create", "s")
            store.ctl("ingest", "s", log, "--batch", batch)
            assert store.ctl("check", "s").stdout.endswith("ok\n")
            results.append(snapshot(store))
        export0, views0 = results[0]
        assert len(views0) > EVENTS // 20, "too few profiles to mean anything"
        merged = [v for v in views0.values() if json.loads(v)["merged_ids"]]
        assert merged, "the corpus should produce merges"
        # ingest vs rebuild: the batch-of-7 store derived again from its log
        stores[2].ctl("rebuild", "s")
        assert stores[2].ctl("check", "s").stdout.endswith("ok\n")
        results.append(snapshot(stores[2]))
        for export, views in results[1:]:
            assert export == export0
            assert views.keys() == views0.keys()
            for k in views0:
                assert views[k] == views0[k], "inspect %s differs" % k
    finally:
        for s in stores:
            s.close()


def test_split_files_equal_one_file():
    a, b = Store(), Store()
    try:
        log = os.path.join(a.dir, "log.ndjson")
        generate(log, 1500, seed=5)
        with open(log) as f:
            lines = f.readlines()
        parts = []
        for i in range(3):
            p = os.path.join(b.dir, "part%d.ndjson" % i)
            with open(p, "w") as f:
                f.writelines(lines[i * 500:(i + 1) * 500])
            parts.append(p)
        a.ctl("space", "create", "s")
        b.ctl("space", "create", "s")
        a.ctl("ingest", "s", log)
        b.ctl("ingest", "s", *parts, "--batch", "33")
        assert a.ctl("export", "s").stdout == b.ctl("export", "s").stdout
    finally:
        a.close()
        b.close()


run_tests([test_two_stores_and_batch_sizes_agree, test_split_files_equal_one_file])
