# SPDX-License-Identifier: MIT
"""Crash safety (docs/architecture.md): kill -9 during a large ingest, reopen, `check` passes
and every batch reported as committed is present. Repeated at several moments."""
import collections
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import time

from common import TIMEOUT, Server, Store, generate, run_tests, tool

EVENTS = int(os.environ.get("PS_CRASH_EVENTS", "60000"))


def committed_lines(stderr_text):
    """The last 'committed ... line=N accepted=M' report."""
    found = re.findall(r"committed file=\S+ line=(\d+) accepted=(\d+)", stderr_text)
    return (int(found[-1][0]), int(found[-1][1])) if found else (0, 0)


def space_of_20k(s):
    """Space `s` of the store `s` with 20,000 generated events and an access token, and a
    pristine copy of its files for damage(): returns the log file, the space's directory, the
    copy's and the token."""
    s.ctl("space", "create", "s")
    log = os.path.join(s.dir, "log.ndjson")
    generate(log, 20000, seed=5)
    s.ctl("ingest", "s", log)
    token = s.ctl("token", "create", "s").stdout.strip().splitlines()[-1]
    space = os.path.join(s.dir, "spaces", "s")
    pristine = os.path.join(s.dir, "pristine")
    shutil.copytree(space, pristine)
    return log, space, pristine, token


def healthy_space(s, events):
    """Space `t` of `events` generated events, left healthy: returns a userId of it and its
    token, to show that a server still serves it."""
    s.ctl("space", "create", "t")
    small = os.path.join(s.dir, "small.ndjson")
    generate(small, events, seed=6)
    s.ctl("ingest", "t", small)
    other = re.search(r'"userId":"([^"]+)"', open(small).read()).group(1)
    tok_t = s.ctl("token", "create", "t").stdout.strip().splitlines()[-1]
    return other, tok_t


def healthy_and_damageable(s):
    """Space `t` (500 events, healthy) and space `s` (space_of_20k, to damage): returns a
    userId of `t`, its token, then what space_of_20k returns, then the userIds of `s`'s log,
    sorted."""
    healthy = healthy_space(s, 500)
    made = space_of_20k(s)
    users = sorted(set(re.findall(r'"userId":"([^"]+)"', open(made[0]).read())))
    return healthy + made + (users,)


def server_without_leak_checks(s, *args):
    """A server on `s` whose sanitizer does not check leaks at exit: a guarded step cut short
    by a damaged page loses what its frames allocated (ps_store_guarded says so), so the report
    is expected there, not a failure."""
    asan = os.environ.get("ASAN_OPTIONS")
    os.environ["ASAN_OPTIONS"] = (asan + ":" if asan else "") + "detect_leaks=0"
    try:
        return Server(s, *args)
    finally:
        if asan is None:
            del os.environ["ASAN_OPTIONS"]
        else:
            os.environ["ASAN_OPTIONS"] = asan


def damage(space, pristine, seed, percent):
    """Puts the pristine copy of a space back, then writes 40 pages of noise (from `seed`) into
    its data file from `percent`% of its length: pages damaged outside LMDB."""
    shutil.rmtree(space)
    shutil.copytree(pristine, space)
    data = os.path.join(space, "data.mdb")
    pages = os.path.getsize(data) // 4096
    with open(data, "r+b") as f:
        f.seek(4096 * (pages * percent // 100))
        f.write(random.Random(seed).randbytes(4096 * 40))


def damage_free_list(space, pristine, seed):
    """Puts the pristine copy of a space back, then writes noise (from `seed`) over the root page
    of LMDB's free-page list, which the newest of the two meta pages names: every write that
    takes a page then meets it, while reads do not. Returns False when that list is empty."""
    shutil.rmtree(space)
    shutil.copytree(pristine, space)
    data = os.path.join(space, "data.mdb")
    with open(data, "r+b") as f:
        metas = []
        for page in (0, 1):  # page header 16 bytes; the meta: magic, version, address, size
            f.seek(page * 4096 + 16 + 24)  # then two database records of 48 bytes (free, main)
            free = f.read(48)
            f.seek(page * 4096 + 16 + 24 + 96 + 8)  # after them the last page, then the txnid
            metas.append((int.from_bytes(f.read(8), "little"),
                          int.from_bytes(free[40:48], "little")))
        root = max(metas)[1]
        if root == (1 << 64) - 1:
            return False
        rnd = random.Random(seed)
        f.seek(root * 4096 + (0 if seed % 2 else 16))  # the header too, or only the nodes
        f.write(rnd.randbytes(4096 - (0 if seed % 2 else 16 + rnd.randrange(2048))))
    return True


def test_kill_during_ingest():
    s = Store()
    try:
        log = os.path.join(s.dir, "log.ndjson")
        generate(log, EVENTS, seed=21)
        with open(log) as f:
            lines = f.readlines()
        s.ctl("space", "create", "s")
        rnd = random.Random(4)
        kills = 0
        for attempt in range(4):
            err_path = os.path.join(s.dir, "err%d.txt" % attempt)
            with open(err_path, "w") as err:
                p = subprocess.Popen([tool("profilectl"), "--data", s.dir, "ingest", "s", log,
                                      "--batch", "500", "--verbose"],
                                     stdout=subprocess.DEVNULL, stderr=err)
                # wait for some commits, then kill at a random moment
                deadline = time.time() + 120
                while time.time() < deadline and p.poll() is None:
                    with open(err_path) as r:
                        if r.read().count("committed") >= 2 + attempt:
                            break
                    time.sleep(0.02)
                time.sleep(rnd.random() * 0.3)
                if p.poll() is None:
                    p.send_signal(signal.SIGKILL)
                    kills += 1
                p.wait()
            with open(err_path) as r:
                last_line, accepted_here = committed_lines(r.read())
            assert s.ctl("check", "s").stdout.endswith("ok\n")
            # every message of a committed line is known: re-ingesting those lines finds
            # each one as a duplicate (the dedup table holds every accepted messageId)
            probe = "".join(lines[:last_line])
            summary = json.loads(s.ctl("--json", "ingest", "s", "-", input=probe).stdout)
            assert summary["duplicates"] == last_line, (summary, last_line)
            assert summary["accepted"] == 0, summary
            # and a sample of their users is inspectable
            for line in rnd.sample(lines[:last_line], min(10, last_line)):
                msg = json.loads(line)
                ident = ("user_id:" + msg["userId"]) if "userId" in msg and msg["userId"] not in (
                    "null", "0", "undefined", "-1", "anonymous", "00000") \
                    else "anonymous_id:" + msg["anonymousId"]
                s.ctl("inspect", "s", ident, "--json")
        assert kills >= 2, "the ingest finished before it could be killed"
        # finally the whole log completes and the store is consistent
        s.ctl("ingest", "s", log)
        assert s.ctl("check", "s").stdout.endswith("ok\n")
    finally:
        s.close()


def test_store_full_aborts_batch_cleanly():
    s = Store()
    try:
        log = os.path.join(s.dir, "log.ndjson")
        generate(log, 20000, seed=2)
        env = dict(os.environ, PS_MAP_SIZE=str(4 * 1024 * 1024))
        subprocess.run([tool("profilectl"), "--data", s.dir, "space", "create", "s"], env=env,
                       check=True, capture_output=True)
        p = subprocess.run([tool("profilectl"), "--data", s.dir, "ingest", "s", log, "--batch",
                            "200", "--verbose"], env=env, capture_output=True, text=True)
        assert p.returncode == 4, p.stderr
        assert "store is full" in p.stderr and "raise PS_MAP_SIZE" in p.stderr, p.stderr
        last_line, _ = committed_lines(p.stderr)
        assert last_line > 0
        c = subprocess.run([tool("profilectl"), "--data", s.dir, "check", "s"], env=env,
                           capture_output=True, text=True)
        assert c.returncode == 0, c.stderr
    finally:
        s.close()


def limit_file_size(max_bytes):
    """preexec_fn: files may not grow past max_bytes, as on a full disk (writes fail)."""
    import resource

    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))
    return apply


def test_disk_full_aborts_batch_cleanly():
    """The data file cannot grow (RLIMIT_FSIZE stands in for a full disk): ingest stops with a
    clear error and a nonzero exit, the store passes check, and ingest completes once there
    is room."""
    s = Store()
    try:
        log = os.path.join(s.dir, "log.ndjson")
        generate(log, 20000, seed=3)
        s.ctl("space", "create", "s")
        p = subprocess.run([tool("profilectl"), "--data", s.dir, "ingest", "s", log, "--batch",
                            "500", "--verbose"], capture_output=True, text=True,
                           preexec_fn=limit_file_size(3 << 20), timeout=TIMEOUT)
        assert p.returncode != 0 and p.returncode != -25, (p.returncode, p.stderr)  # not SIGXFSZ
        assert "this batch was not stored" in p.stderr, p.stderr
        assert s.ctl("check", "s").stdout.endswith("ok\n")
        s.ctl("ingest", "s", log)
        assert s.ctl("check", "s").stdout.endswith("ok\n")
    finally:
        s.close()


@contextlib.contextmanager
def small_filesystem(size_mb):
    """A tmpfs of `size_mb` MiB in a work folder (mounting needs root, which the tests have);
    yields (work folder, mount point). Unmounted and removed on the way out."""
    work = tempfile.mkdtemp(prefix="ps-it-full-")
    mnt = os.path.join(work, "mnt")
    os.mkdir(mnt)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm" % size_mb, "tmpfs", mnt],
                   check=True, timeout=TIMEOUT)
    try:
        yield work, mnt
    finally:
        subprocess.run(["umount", "-l", mnt], timeout=TIMEOUT)
        shutil.rmtree(work, ignore_errors=True)


def grow(mnt, size_mb):
    subprocess.run(["mount", "-o", "remount,size=%dm" % size_mb, mnt], check=True,
                   timeout=TIMEOUT)


def test_a_full_filesystem_is_a_clean_error():
    """A real full disk, not a stand-in: the store on a 24 MiB tmpfs. The ingest stops with
    the disk-full error and no signal, every batch reported as committed is kept, check
    passes, and the ingest completes once the filesystem has room."""
    with small_filesystem(24) as (work, mnt):
        data = os.path.join(mnt, "data")
        log = os.path.join(work, "log.ndjson")
        generate(log, 150000, seed=8)
        assert os.path.getsize(log) > 48 << 20  # twice the filesystem
        ctl = [tool("profilectl"), "--data", data]
        subprocess.run(ctl + ["space", "create", "s"], check=True, capture_output=True,
                       timeout=TIMEOUT)
        p = subprocess.run(ctl + ["ingest", "s", log, "--batch", "5000", "--verbose"],
                           capture_output=True, text=True, timeout=TIMEOUT)
        assert p.returncode > 0, (p.returncode, p.stderr[-2000:])  # an exit, not a signal
        assert "store is full (free disk space" in p.stderr, p.stderr[-2000:]
        assert "this batch was not stored" in p.stderr, p.stderr[-2000:]
        last_line, accepted = committed_lines(p.stderr)
        assert last_line > 0 and accepted > 0, p.stderr[-2000:]
        c = subprocess.run(ctl + ["check", "s"], capture_output=True, text=True,
                           timeout=TIMEOUT)
        assert c.returncode == 0 and c.stdout.endswith("ok\n"), (c.stdout, c.stderr)
        grow(mnt, 512)
        p = subprocess.run(ctl + ["--json", "ingest", "s", log], capture_output=True,
                           text=True, timeout=TIMEOUT)
        assert p.returncode == 0, p.stderr[-2000:]
        summary = json.loads(p.stdout)
        # what was reported committed before the disk filled is there: found again as such
        assert summary["duplicates"] == accepted, (summary, accepted)
        c = subprocess.run(ctl + ["check", "s"], capture_output=True, text=True,
                           timeout=TIMEOUT)
        assert c.returncode == 0 and c.stdout.endswith("ok\n"), (c.stdout, c.stderr)


def profilectl(data, *args):
    """profilectl on the data directory `data` (one on a small filesystem), output captured."""
    return subprocess.run([tool("profilectl"), "--data", data, *args], capture_output=True,
                          text=True, timeout=TIMEOUT)


def fill(path):
    """Writes zeros to `path` until the filesystem under it is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (1 << 20, 4096):  # then the last pages
            try:
                while os.write(fd, bytes(size)) == size:
                    pass
            except OSError:
                pass
    finally:
        os.close(fd)


def test_compact_and_rebuild_on_a_full_filesystem_are_clean_errors():
    """compact writes a whole new copy of the store, and rebuild writes every derived table
    again: on a full filesystem both stop with the disk-full error (not an I/O error and not a
    signal), compact's part-made copy is removed, and the store is as it was; with room again
    both succeed."""
    with small_filesystem(48) as (work, mnt):
        data = os.path.join(mnt, "data")
        log = os.path.join(work, "log.ndjson")
        generate(log, 12000, seed=9)

        def run(*args):
            return profilectl(data, *args)

        assert run("space", "create", "s").returncode == 0
        assert run("ingest", "s", log).returncode == 0
        before = run("export", "s").stdout
        assert before.count("\n") > 100
        space = os.path.join(data, "spaces", "s")
        filler = os.path.join(work, "mnt", "filler")
        fill(filler)
        # with no room at all, then with 2 MiB: the copy's lock file fits, its data does not
        for room in (0, 2 << 20):
            os.truncate(filler, os.path.getsize(filler) - room)
            free = os.statvfs(mnt).f_bfree
            for args in (["compact", "s"], ["rebuild", "s"]):
                p = run(*args)
                where = (room, args, p.returncode, p.stderr)
                assert p.returncode > 0, where  # an exit, not a signal
                assert "store is full (free disk space" in p.stderr, where
                assert "i/o error" not in p.stderr, where
                # the copy compact was writing is gone: the disk is as full as before (a failed
                # rebuild may leave its store's file longer: LMDB uses those pages again)
                assert "compact.tmp" not in os.listdir(space), (where, os.listdir(space))
                if args[0] == "compact":
                    assert os.statvfs(mnt).f_bfree >= free, (where, os.statvfs(mnt).f_bfree)
                c = run("check", "s")
                assert c.returncode == 0 and c.stdout.endswith("ok\n"), (where, c.stdout)
                assert run("export", "s").stdout == before, where
        os.unlink(filler)
        for args in (["compact", "s"], ["rebuild", "s"]):
            p = run(*args)
            assert p.returncode == 0, (args, p.stderr)
            assert run("export", "s").stdout == before, args


def test_space_create_on_a_full_filesystem_leaves_no_space():
    """A space is made under a temporary name and renamed when whole: on a full disk the
    creation fails with the disk-full error and leaves nothing that `space list` shows."""
    with small_filesystem(16) as (work, mnt):
        data = os.path.join(mnt, "data")

        def run(*args):
            return profilectl(data, *args)

        assert run("space", "create", "a").returncode == 0
        filler = os.path.join(mnt, "filler")
        fill(filler)
        p = run("space", "create", "b")
        assert p.returncode == 4, (p.returncode, p.stderr)
        assert "store is full (free disk space" in p.stderr, p.stderr
        assert os.listdir(os.path.join(data, "spaces")) == ["a"], os.listdir(data + "/spaces")
        assert run("space", "list").stdout.split() == ["a"]
        os.unlink(filler)
        assert run("space", "create", "b").returncode == 0
        assert run("space", "list").stdout.split() == ["a", "b"]
        assert run("settings", "get", "b").returncode == 0


def test_a_truncated_data_file_is_corrupt_data_not_a_crash():
    """A data file cut short (a partial copy, a damaged disk) used to end in SIGBUS at the
    first read of a missing page through LMDB's map. Every command now says the data is
    corrupt, and the server goes on answering."""
    s = Store()
    srv = None
    try:
        s.ctl("space", "create", "s")
        token = s.ctl("token", "create", "s").stdout.strip().splitlines()[-1]
        log = os.path.join(s.dir, "log.ndjson")
        generate(log, 20000, seed=5)
        s.ctl("ingest", "s", log)
        data = os.path.join(s.dir, "spaces", "s", "data.mdb")
        os.truncate(data, os.path.getsize(data) * 3 // 5)
        for args in (["check", "s"], ["export", "s"], ["log", "s"], ["inspect", "s", "user_id:x"]):
            p = s.ctl(*args, check=False)
            assert p.returncode == 4, (args, p.returncode, p.stderr)  # not -7 (SIGBUS)
            assert "corrupt data" in p.stderr, (args, p.stderr)
        srv = Server(s)
        status, _, _ = srv.get("/v1/spaces/s/collections/users/profiles/user_id:x/traits",
                               token)
        assert status < 500 or status == 503, status
        assert srv.get("/healthz")[0] == 200
        srv.stop()
        srv = None
    finally:
        if srv:
            srv.stop()
        s.close()


def test_check_never_passes_a_store_with_damaged_pages():
    """Pages overwritten outside LMDB (40 pages of noise near the end of the file) made check
    print "ok" and exit 0 while LMDB logged that it could not read them: its "corrupt" read
    error was taken for check's own verdict with no problem listed. LMDB has no page
    checksums, so some damage stops the process instead (it aborts); check must never pass."""
    s = Store()
    try:
        _, space, pristine, _ = space_of_20k(s)
        for seed in range(3):
            damage(space, pristine, seed, 85)
            p = s.ctl("check", "s", check=False)
            assert p.returncode != 0, (seed, p.stdout, p.stderr[-500:])
            assert not p.stdout.endswith("ok\n"), (seed, p.stdout)
    finally:
        s.close()



def test_a_damaged_space_fails_its_reads_not_the_server():
    """LMDB has no page checksums, and on some damaged pages it stops the process: an
    assertion (abort), or a read through its map past the end of the file (SIGBUS). One
    damaged space took the whole server down. Now such a read fails its request with a 500
    naming corrupt data, the log says which store, /metrics shows the space as damaged, and the
    server goes on answering, other spaces included; `check` lists the damage and exits 4."""
    s = Store()
    srv = None
    try:
        other, tok_t, log, space, pristine, tok_s, users = healthy_and_damageable(s)
        users = users[:150]
        base = "/v1/spaces/%s/collections/users/profiles/user_id:%s/%s"
        caught = 0
        for seed in range(16):
            damage(space, pristine, seed, 40 + seed * 7 % 55)  # somewhere past the first 40%
            srv = server_without_leak_checks(s, "--metrics-listen", "127.0.0.1:0")
            failed = 0
            for u in users:
                for route in ("traits", "events", "external_ids"):
                    status, _, body = srv.request("GET", base % ("s", u, route), tok_s, raw=True)
                    assert status in (200, 404, 500), (seed, u, route, status, body)
                    if status == 500:
                        assert b"corrupt data" in body, (seed, body)
                        failed += 1
                assert srv.proc.poll() is None, (seed, u, "".join(srv.log)[-2000:])
            after = 0  # the change feed walks the audit table: page through all of it
            for _ in range(400):
                status, _, body = srv.request("GET", "/v1/spaces/s/changes?limit=1000&after=%d"
                                              % after, tok_s, raw=True)
                assert status in (200, 500), (seed, status, body)
                if status == 500:
                    assert b"corrupt data" in body, (seed, body)
                    failed += 1
                    break
                page = json.loads(body)
                if not page["data"]:
                    break
                after = page["next"]
            assert srv.get(base % ("t", other, "traits"), tok_t)[0] == 200, seed
            assert srv.get("/healthz")[0] == 200
            text = "".join(srv.log)
            caught_here = "LMDB met a damaged page" in text or "LMDB faulted" in text
            if caught_here:
                caught += 1
                assert failed > 0, (seed, [x for x in text.splitlines() if "LMDB" in x][:4])
                status, _, metrics = srv.get("/metrics", raw=True, port=srv.metrics_port)
                assert status == 200
                assert b'profiled_store_damaged{space="s"} 1' in metrics, seed
                assert b'profiled_store_damaged{space="t"} 0' in metrics, seed
            srv.stop()
            srv = None
            if caught_here:  # the pages that stopped LMDB in the server do not stop check
                p = s.ctl("check", "s", check=False)
                assert p.returncode == 4 and not p.stdout.endswith("ok\n"), (seed, p.returncode)
        # the damage above makes LMDB stop the process in some of these layouts: at least one
        # of them must have been caught, or this test proves nothing
        assert caught >= 1, caught
    finally:
        if srv:
            srv.stop()
        s.close()


def test_a_regulation_on_damaged_pages_fails_itself_not_the_server():
    """A deletion runs in the space's writer, reading the subjects' profiles, mappings and
    events. On a damaged page it used to stop the whole server as a read did; now the
    regulation is refused when it is recorded (a write: the page audit before the server's
    first write found the damage), or fails, or stays waiting when the store can no longer be
    written; the log says so, and the server goes on serving both spaces. A server whose write broke keeps LMDB's
    writer lock: a `profilectl` write then fails at once naming it (it used to wait without
    end), and once the server has stopped nothing is refused for it."""
    s = Store()
    srv = None
    try:
        other, tok_t, log, space, pristine, tok_s, users = healthy_and_damageable(s)
        reg = "/v1/spaces/s/regulations"
        outcomes = collections.Counter()
        for seed in range(16):
            damage(space, pristine, seed, 40 + seed * 7 % 55)
            srv = server_without_leak_checks(s)
            subjects = users[seed * 40:(seed + 1) * 40]
            status, _, body = srv.request("POST", reg, tok_s, raw=True, body={
                "regulationType": "SUPPRESS_WITH_DELETE_INTERNAL", "subjectType": "USER_ID",
                "subjectIds": subjects})
            assert status in (200, 500), (seed, status, body)
            if status == 500:
                assert b"corrupt data" in body, (seed, body)
                state = "refused"  # recording it is a write: the page audit refused it
                outcomes[state] += 1
            else:
                rid = json.loads(body)["data"]["regulateId"]
                deadline = time.monotonic() + 20
                while True:
                    status, _, body = srv.request("GET", reg + "/" + rid, tok_s, raw=True)
                    assert status in (200, 500), (seed, status, body)
                    state = json.loads(body)["data"]["regulation"]["status"] \
                        if status == 200 else "unreadable"
                    if state != "INITIALIZED" or time.monotonic() > deadline:
                        break
                    time.sleep(0.1)
                outcomes[state] += 1
            assert srv.proc.poll() is None, (seed, "".join(srv.log)[-2000:])
            assert srv.get("/v1/spaces/t/collections/users/profiles/user_id:%s/traits" % other,
                           tok_t)[0] == 200, seed
            held = "holds the writer lock"
            if state == "INITIALIZED":  # its writes broke: the server keeps LMDB's writer lock
                # another process's write used to wait for that lock as long as the server ran
                p = subprocess.run([tool("profilectl"), "--data", s.dir, "token", "create", "s"],
                                   capture_output=True, text=True, timeout=60)
                assert p.returncode == 4 and held in p.stderr, (seed, p.returncode, p.stderr)
                assert "pid=%d" % srv.proc.pid in p.stderr, (seed, p.stderr)
                if "journal" in p.stderr.splitlines()[-1] or "pid %d" % srv.proc.pid in \
                        p.stderr.splitlines()[-1]:  # the last line names the cause too
                    assert "(pid %d) met a damaged page" % srv.proc.pid in p.stderr, p.stderr
                p = s.ctl("check", "s", check=False)  # the server's pid, not a bare error
                said = p.stdout + p.stderr
                assert p.returncode == 4 and ("(pid %d) met a damaged page" % srv.proc.pid in said
                                              or "process %d keeps the space's write lock"
                                              % srv.proc.pid in said), (seed, said)
            srv.stop()
            srv = None
            p = s.ctl("token", "create", "s", check=False)  # the server is gone, and its lock
            assert held not in p.stderr, (seed, p.stderr)
        print("# regulation outcomes over 16 damaged layouts:", dict(outcomes))
        assert outcomes["FINISHED"] < 16, outcomes  # the damage reached some of them
    finally:
        if srv:
            srv.stop()
        s.close()

def test_damaged_pages_fail_the_request_or_command_not_the_process():
    """Event filters, CSV imports and the regulation list read and write the space's own rows
    in transactions of their own. On a damaged page they stopped the whole server (LMDB's
    assertion, or a fault in its map); now each such request answers 500 naming the damage, and
    the server goes on serving the healthy space. The commands that read or write a space the
    same way (`log`, `export`, `inspect`, `settings get`, `token create`) fail with exit 4
    where they aborted or faulted, and `check` finds a damaged free-page list, which only
    writes read."""
    s = Store()
    srv = None
    try:
        other, tok_t, log, space, pristine, tok_s, users = healthy_and_damageable(s)
        base = "/v1/spaces/s"
        calls = [("GET", base + "/filters", None), ("GET", base + "/regulations", None),
                 ("POST", base + "/filters", {"name": "f", "if": "match(userId, 'test-*')"}),
                 ("POST", base + "/imports", "user_id,plan\nimp-1,gold\n"),
                 ("PATCH", base + "/filters/f", {"enabled": False}),
                 ("DELETE", base + "/filters/f", None)]
        outcomes = collections.Counter()
        writes = {}  # seed: the statuses of its write calls
        for seed in range(16):
            if seed < 8:
                damage(space, pristine, seed, 40 + seed * 7 % 55)
            else:  # where a write meets it first
                assert damage_free_list(space, pristine, seed)
            srv = server_without_leak_checks(s)
            for method, path, body in calls:
                status, _, got = srv.request(method, path, tok_s, raw=True, body=body)
                assert status in (200, 404, 500), (seed, method, path, status, got)
                if status == 500:
                    assert b"corrupt data" in got, (seed, method, path, got)
                outcomes["%s %s %d" % (method, path.split("/")[4], status)] += 1
                if method != "GET":
                    writes.setdefault(seed, []).append(status)
                if method == "POST" and path.endswith("imports") and status == 200:
                    rid = json.loads(got)["data"]["importId"]
                    status, _, got = srv.request("GET", base + "/imports/" + rid, tok_s, raw=True)
                    assert status in (200, 500), (seed, status, got)
                assert srv.proc.poll() is None, (seed, method, path, "".join(srv.log)[-2000:])
            assert srv.get("/v1/spaces/t/collections/users/profiles/user_id:%s/traits" % other,
                           tok_t)[0] == 200, seed
            srv.stop()
            srv = None
            env = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") +
                       ":detect_leaks=0")  # a step cut short loses what it allocated
            for args in (["log", "s"], ["export", "s"], ["inspect", "s", "user_id:" + users[seed]],
                         ["settings", "get", "s"], ["token", "create", "s"], ["check", "s"]):
                p = subprocess.run([tool("profilectl"), "--data", s.dir] + args, env=env,
                                   capture_output=True, text=True, timeout=300)
                assert p.returncode in (0, 2, 4), (seed, args, p.returncode, p.stderr[-1500:])
                outcomes["%s %d" % (args[0], p.returncode)] += 1
                if args[0] == "check" and seed >= 8:
                    assert p.returncode == 4, (seed, p.stdout, p.stderr)
                if args[0] == "check" and "LMDB's pages: page " in p.stdout + p.stderr:
                    # the page audit before a process's first write found the damage: no write
                    # of the server (nor `token create` above) reached LMDB
                    assert writes[seed] == [500] * 4, (seed, writes[seed])
                    outcomes["audited"] += 1
        print("# over 16 damaged layouts:", dict(outcomes))
        assert sum(n for k, n in outcomes.items() if k.endswith(" 500")) > 0, outcomes
        assert outcomes["audited"] >= 8, outcomes  # at least the free-list layouts
    finally:
        if srv:
            srv.stop()
        s.close()


def test_a_damaged_filter_page_fails_tracking_not_the_server():
    """Each Tracking API request reads the space's settings, event filters and suppression list
    (a read transaction of its own, open through the parse when subjects are suppressed), after
    opening the space, which reads the same table. With the page that holds those rows
    damaged, the request is refused with 503 naming `corrupt data` and the server goes on
    serving another space; it used to stop where LMDB did, opening the space."""
    s = Store()
    srv = None
    try:
        other, tok_t = healthy_space(s, 200)
        s.ctl("space", "create", "s")
        key = s.ctl("source", "create", "s").stdout.strip().splitlines()[-1]
        s.ctl("filter", "create", "s", "rowmarkfilter", "match(userId, 'bot-*')")
        s.ctl("regulation", "create", "s", "SUPPRESS_ONLY", "u-suppressed")
        space = os.path.join(s.dir, "spaces", "s")
        pristine = os.path.join(s.dir, "pristine")
        shutil.copytree(space, pristine)
        raw = open(os.path.join(space, "data.mdb"), "rb").read()
        pages = sorted({m.start() // 4096 for m in re.finditer(b"rowmarkfilter", raw)} - {0, 1})
        assert pages, "the filter's row was not found in the data file"
        outcomes = collections.Counter()
        for seed in range(8):
            shutil.rmtree(space)
            shutil.copytree(pristine, space)
            rnd = random.Random(seed)
            with open(os.path.join(space, "data.mdb"), "r+b") as f:
                for pg in pages:  # the header too, or only the nodes
                    f.seek(pg * 4096 + (0 if seed % 2 else 16))
                    f.write(rnd.randbytes(4096 - (0 if seed % 2 else 16)))
            srv = server_without_leak_checks(s)
            for i in range(3):
                body = {"batch": [{"type": "track", "userId": "u-%d" % i, "event": "E",
                                   "messageId": "m-%d-%d" % (seed, i)}]}
                status, _, reply = srv.track("batch", body, key, raw=True)
                assert status in (200, 503), (seed, status, reply)  # 503: SDKs keep the batch
                if status == 503:
                    assert b"corrupt data" in reply, (seed, reply)
                outcomes[status] += 1
                assert srv.proc.poll() is None, (seed, "".join(srv.log)[-2000:])
            assert srv.get("/v1/spaces/t/collections/users/profiles/user_id:%s/traits" % other,
                           tok_t)[0] == 200, seed
            srv.stop()
            srv = None
        print("# tracking requests over 8 damaged layouts:", dict(outcomes))
        assert outcomes[503] > 0, outcomes
    finally:
        if srv:
            srv.stop()
        s.close()


def free_pages_of(data):
    """The page numbers LMDB's free-page list holds in the data file `data`, as the newest meta
    page's free tree has them when its root is a leaf (records inline or on overflow pages)."""
    def num(b, at, n):
        return int.from_bytes(b[at:at + n], "little")
    with open(data, "rb") as f:
        metas = []
        for page in (0, 1):  # after the page header and magic, version, address, map size:
            f.seek(page * 4096 + 16 + 24)  # the free tree's record, the main tree's, then
            free = f.read(48)  # the last page and the transaction id
            f.seek(page * 4096 + 16 + 24 + 96 + 8)
            metas.append((num(f.read(8), 0, 8), free))
        free = max(metas)[1]
        root, depth = num(free, 40, 8), num(free, 6, 2)  # a tree record: root last, depth at 6
        if root == (1 << 64) - 1 or depth != 1:
            return []
        f.seek(root * 4096)
        page = f.read(4096)
        pages = []
        for i in range((num(page, 12, 2) - 16) // 2):  # node offsets follow the header
            at = num(page, 16 + 2 * i, 2)  # node: size (2+2), flags (2), key size (2)
            size, flags, ksize = num(page, at, 2) | num(page, at + 2, 2) << 16, \
                num(page, at + 4, 2), num(page, at + 6, 2)
            rec = page[at + 8 + ksize:at + 8 + ksize + size]
            if flags & 1:  # on an overflow run: its page number inline, the bytes after a header
                f.seek(num(page, at + 8 + ksize, 8) * 4096 + 16)
                rec = f.read(size)
            pages += [num(rec, 8 * k, 8) for k in range(1, num(rec, 0, 8) + 1)]
    return pages


def test_noise_on_free_pages_is_no_damage():
    """A free page holds whatever it held: the page audit before a process's first write reads
    only the pages the tables and the free-page list reach, so noise over free pages fails no
    write and no `check`, while noise over a page in use fails both (the control)."""
    s = Store()
    try:
        _, space, pristine, token = space_of_20k(s)
        data = os.path.join(space, "data.mdb")
        free = free_pages_of(data)
        assert free, "the pristine store has no free pages"
        rnd = random.Random(3)
        with open(data, "r+b") as f:
            for pg in free:
                f.seek(pg * 4096)
                f.write(rnd.randbytes(4096))
        assert s.ctl("check", "s").stdout.endswith("ok\n")
        s.ctl("token", "create", "s")  # a write that audits first
        srv = Server(s)
        try:
            assert srv.request("POST", "/v1/spaces/s/filters", token, raw=True, body={
                "name": "f", "if": "match(userId, 'test-*')"})[0] == 200
        finally:
            srv.stop()
        assert s.ctl("check", "s").stdout.endswith("ok\n")
        # the control: the same noise over the page after the last free one, in use
        damage(space, pristine, 0, 50)
        p = s.ctl("check", "s", check=False)
        assert p.returncode == 4 and "LMDB's pages: page " in p.stderr, (p.stdout, p.stderr)
        p = s.ctl("token", "create", "s", check=False)
        assert p.returncode == 4 and "damaged page" in p.stderr, (p.returncode, p.stderr)
    finally:
        s.close()


def test_a_writer_note_of_a_running_process_is_named():
    """A process whose write met a damaged page keeps LMDB's writer lock and leaves a note,
    `writer.broken` (pid and start time), beside the data file. While that process runs, a
    write fails at once and `check` lists it as a problem naming the pid; a note whose process
    has ended (another start time under the same pid) is stale: removed, and nothing refused."""
    s = Store()
    try:
        s.ctl("space", "create", "s")
        note = os.path.join(s.dir, "spaces", "s", "writer.broken")
        with open("/proc/self/stat") as f:  # this test's own process stands in for the server
            started = int(f.read().rsplit(")", 1)[1].split()[19])
        with open(note, "w") as f:
            f.write("%d %d\n" % (os.getpid(), started))
        p = s.ctl("check", "s", check=False)
        assert p.returncode == 4, (p.returncode, p.stdout, p.stderr)
        assert "process %d keeps the space's write lock" % os.getpid() in p.stdout + p.stderr, \
            (p.stdout, p.stderr)
        p = s.ctl("token", "create", "s", check=False)
        assert p.returncode == 4 and "pid=%d" % os.getpid() in p.stderr, (p.returncode, p.stderr)
        with open(note, "w") as f:
            f.write("%d %d\n" % (os.getpid(), started + 1))
        assert s.ctl("check", "s").returncode == 0
        assert not os.path.exists(note)
        s.ctl("token", "create", "s")
    finally:
        s.close()


def test_log_salvage_reads_past_damaged_pages():
    """`profilectl log` stops at the first damaged page of the log; `--salvage` reads on past
    each one, says which sequence numbers it could not read, and writes every message it could,
    byte for byte as `log` does, in order: the way to a new space when there is no snapshot.
    `rebuild` on such a store fails and changes nothing (it used to stop on LMDB's assertions
    and faults) and points to the repair."""
    s = Store()
    try:
        _, space, pristine, _ = space_of_20k(s)
        full = s.ctl("log", "s").stdout.splitlines()
        p = s.ctl("log", "s", "--salvage")  # an undamaged log: the same lines, nothing lost
        assert p.stdout.splitlines() == full
        assert "salvaged 20000 messages of space s; 0 range(s)" in p.stderr, p.stderr
        order = {line: i for i, line in enumerate(full)}
        gained = []
        for seed in range(6):
            damage(space, pristine, seed, 40 + seed * 7 % 55)
            plain = s.ctl("log", "s", check=False).stdout.splitlines()
            p = s.ctl("log", "s", "--salvage", check=False)
            assert p.returncode == 0, (seed, p.returncode, p.stderr[-1000:])
            got = p.stdout.splitlines()
            at = [order.get(line) for line in got]
            assert None not in at and at == sorted(at), seed  # original lines, in order
            assert len(got) >= len(plain), (seed, len(got), len(plain))
            ranges = re.findall(r"messages (\d+)-(\d+) could not be read", p.stderr)
            assert len(got) == len(full) or ranges or "on could not be read" in p.stderr, seed
            gained.append(len(got) - len(plain))
            # rebuild rewrites the damaged file in place: it fails, unchanged, or succeeds,
            # never stopping on a page (the write transaction it cannot end is left to the
            # process's exit: no leak report for it)
            asan = os.environ.get("ASAN_OPTIONS")
            r = s.ctl("rebuild", "s", check=False, env={"ASAN_OPTIONS": (
                asan + ":" if asan else "") + "detect_leaks=0"})
            assert r.returncode in (0, 4), (seed, r.returncode, r.stderr[-1500:])
            if r.returncode == 4:
                assert "nothing changed" in r.stderr and "Repairing a damaged space" in r.stderr
                assert s.ctl("log", "s", "--salvage").stdout.splitlines() == got, seed
            if len(plain) < 0.9 * len(full) <= len(got):  # the log was cut short, not now
                s.ctl("space", "create", "r%d" % seed)
                back = os.path.join(s.dir, "salvaged.ndjson")
                with open(back, "w") as f:
                    f.write(p.stdout)
                s.ctl("ingest", "r%d" % seed, back)
                assert s.ctl("check", "r%d" % seed).stdout.endswith("ok\n")
                assert len(s.ctl("log", "r%d" % seed).stdout.splitlines()) == len(got)
        # the damage above falls in the log for some of these seeds: salvage must have read past
        assert max(gained) > 1000, gained
    finally:
        s.close()

def test_a_full_filesystem_under_the_server_loses_nothing_acknowledged():
    """profiled with its store on an 80 MiB tmpfs: the journal's first 64 MiB segment fits and
    the store fills the rest, so its commits fail and are retried while the journal goes on
    acknowledging. Once the filesystem has room, every message answered 200 is in the store,
    and check passes."""
    with small_filesystem(80) as (work, mnt):
        s = Store()
        shutil.rmtree(s.dir)
        s.dir = os.path.join(mnt, "data")
        os.mkdir(s.dir)
        s.ctl("space", "create", "s")
        key = s.ctl("source", "create", "s").stdout.strip()
        log = os.path.join(work, "log.ndjson")
        generate(log, 100000, seed=9)
        with open(log) as f:
            lines = f.readlines()
        srv = Server(s, "--queue-mb", "8")  # the backlog fills soon after the store does
        try:
            acked, statuses = set(), {}
            for i in range(0, len(lines), 500):
                batch = [json.loads(l) for l in lines[i:i + 500]]
                status, _, reply = srv.track("batch", {"batch": batch}, key)
                statuses[status] = statuses.get(status, 0) + 1
                # a request the writer cannot take is refused after a while: never left waiting
                assert status in (200, 503), (status, reply)
                if status != 200:
                    break
                acked.update(m["messageId"] for m in batch if "messageId" in m)
            deadline = time.time() + 60
            while not any('msg="disk full"' in l for l in srv.log):
                assert time.time() < deadline, "the store never filled: %s" % statuses
                time.sleep(0.2)
            assert srv.get("/healthz")[0] == 200 and acked and statuses.get(503), statuses
            grow(mnt, 1024)
        finally:
            srv.stop()  # drains: with room again, the journal is applied
        assert s.ctl("check", "s").stdout.endswith("ok\n")
        # every message answered 200 is in the store's log
        logged = {json.loads(l).get("messageId") for l in s.ctl("log", "s").stdout.splitlines()}
        missing = acked - logged
        assert not missing, (len(missing), sorted(missing)[:5])


def test_disk_full_on_the_journal_is_a_503():
    """profiled cannot allocate a journal segment (files may not grow past 8 MiB): Tracking API
    requests get 503 and nothing is acknowledged, the server stays up, and after a restart
    with room the same requests are stored."""
    import base64
    s = Store()
    srv = None
    try:
        s.ctl("space", "create", "s")
        key = s.ctl("source", "create", "s").stdout.strip()
        srv = Server(s, preexec_fn=limit_file_size(8 << 20))
        body = {"batch": [{"type": "track", "userId": "full", "event": "E",
                           "messageId": "full-%d" % i} for i in range(10)]}
        status, _, reply = srv.track("batch", body, key)
        assert status == 503, (status, reply)
        assert srv.get("/healthz")[0] == 200
        srv.stop()
        srv = Server(s)
        status, _, reply = srv.track("batch", body, key)
        assert status == 200, (status, reply)
        srv.stop()
        srv = None
        out = s.json("inspect", "s", "user_id:full", "--events", "100")
        assert len(out["events"]) == 10, out
        assert s.ctl("check", "s").stdout.endswith("ok\n")
    finally:
        if srv:
            srv.stop()
        s.close()


run_tests([test_kill_during_ingest, test_store_full_aborts_batch_cleanly,
           test_disk_full_aborts_batch_cleanly, test_a_full_filesystem_is_a_clean_error,
           test_compact_and_rebuild_on_a_full_filesystem_are_clean_errors,
           test_space_create_on_a_full_filesystem_leaves_no_space,
           test_a_truncated_data_file_is_corrupt_data_not_a_crash,
           test_check_never_passes_a_store_with_damaged_pages,
           test_a_damaged_space_fails_its_reads_not_the_server,
           test_log_salvage_reads_past_damaged_pages,
           test_a_full_filesystem_under_the_server_loses_nothing_acknowledged,
           test_disk_full_on_the_journal_is_a_503,
           test_a_regulation_on_damaged_pages_fails_itself_not_the_server,
           test_damaged_pages_fail_the_request_or_command_not_the_process,
           test_noise_on_free_pages_is_no_damage,
           test_a_damaged_filter_page_fails_tracking_not_the_server,
           test_a_writer_note_of_a_running_process_is_named])
