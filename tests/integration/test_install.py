#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""make install into a DESTDIR: the programs, man pages, bash completion and the systemd unit
are where they belong and work; then the README's "Using it" commands run as written against
the installed programs and a scratch data directory."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from common import BIN, SOURCE, TIMEOUT, free_port, run_tests  # noqa: E402

PREFIX = "/usr/local"


def install(dest):
    build = os.path.dirname(os.path.abspath(BIN))  # PS_BIN is <build>/bin
    env = dict(os.environ, DESTDIR=dest)
    p = subprocess.run(["cmake", "--install", build, "--prefix", PREFIX], env=env,
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 0, p.stdout + p.stderr
    return dest + PREFIX


def test_install_layout():
    dest = tempfile.mkdtemp(prefix="ps-install-")
    try:
        root = install(dest)
        files = {os.path.relpath(os.path.join(d, f), root)
                 for d, _, fs in os.walk(root) for f in fs}
        assert files == {"bin/profilectl", "sbin/profiled", "share/man/man1/profilectl.1",
                         "share/man/man8/profiled.8",
                         "share/bash-completion/completions/profilectl",
                         "lib/systemd/system/profiled.service",
                         "lib/sysusers.d/profiled.conf"}, files
        version = {}
        for prog in ("bin/profilectl", "sbin/profiled"):
            out = subprocess.run([os.path.join(root, prog), "--version"], capture_output=True,
                                 text=True, check=True, timeout=TIMEOUT).stdout
            version[prog] = out.split()[-1]
        assert len(set(version.values())) == 1, version
        # man pages: roff without warnings, and they carry the version
        for page in ("share/man/man1/profilectl.1", "share/man/man8/profiled.8"):
            text = open(os.path.join(root, page)).read()
            assert version["bin/profilectl"] in text and "@PS_VERSION@" not in text
            if shutil.which("groff"):
                p = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z",
                                    os.path.join(root, page)], capture_output=True, text=True,
                                   timeout=TIMEOUT)
                assert p.returncode == 0 and not p.stderr, p.stderr
        # bash completion: it loads, and completes commands and subcommands
        comp = os.path.join(root, "share/bash-completion/completions/profilectl")
        script = ('source "%s"; COMP_WORDS=(profilectl %s); COMP_CWORD=%d; _profilectl; '
                  'printf "%%s\\n" "${COMPREPLY[@]}"')
        for words, want in (("sp", "space"), ("space c", "create"), ("ex", "explain")):
            n = len(words.split())
            out = subprocess.run(["bash", "-c", script % (comp, words, n)], capture_output=True,
                                 text=True, timeout=TIMEOUT, env=dict(os.environ,
                                 PATH=os.path.join(root, "bin") + ":" + os.environ["PATH"]))
            assert want in out.stdout.split(), (words, out.stdout, out.stderr)
        # the systemd unit names the installed server and passes systemd's own check
        unit = open(os.path.join(root, "lib/systemd/system/profiled.service")).read()
        assert "ExecStart=%s/sbin/profiled " % PREFIX in unit and "User=profiled" in unit
        users = open(os.path.join(root, "lib/sysusers.d/profiled.conf")).read()
        assert re.search(r"^u profiled ", users, re.M), users
        if shutil.which("systemd-analyze"):
            staged = os.path.join(dest, "profiled.service")
            with open(staged, "w") as f:  # the staged copy of the binary stands in
                f.write(unit.replace("ExecStart=%s/sbin/" % PREFIX,
                                     "ExecStart=%s/sbin/" % root))
            p = subprocess.run(["systemd-analyze", "verify", "--man=no", staged],
                               capture_output=True, text=True, timeout=TIMEOUT)
            assert p.returncode == 0, p.stdout + p.stderr
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def readme_commands():
    """The shell lines of README.md's "Using it" section, comments removed."""
    text = open(os.path.join(SOURCE, "README.md")).read()
    section = text[text.index("## Using it"):]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines()]
    return [line for line in lines if line]


def test_readme_runs_after_install():
    dest = tempfile.mkdtemp(prefix="ps-install-")
    home = tempfile.mkdtemp(prefix="ps-home-")
    try:
        root = install(dest)
        env = dict(os.environ, HOME=home,
                   PATH="%s/bin:%s/sbin:%s" % (root, root, os.environ["PATH"]))
        env.pop("PROFILED_DATA", None)
        # the commands write files where they run: a scratch directory that sees the
        # repository's tests/ (the sample log) as the README's reader does
        work = os.path.join(home, "work")
        os.makedirs(work)
        os.symlink(os.path.join(os.path.abspath(SOURCE), "tests"), os.path.join(work, "tests"))
        commands = readme_commands()
        assert commands[-1].startswith("profiled ") and len(commands) > 10, commands
        shell = []
        for line in commands[:-1]:
            shell.append(line)
            p = subprocess.run(["bash", "-ec", "\n".join(shell)], cwd=work, env=env,
                               capture_output=True, text=True, timeout=TIMEOUT)
            assert p.returncode == 0, (line, p.stdout[-2000:], p.stderr[-2000:])
            shell = [x for x in shell if x.startswith("export ")]  # keep the environment
        # the last line serves both APIs: run it on a free port until it answers
        port = free_port()
        server = commands[-1].replace("127.0.0.1:8080", "127.0.0.1:%d" % port)
        srv = subprocess.Popen(["bash", "-c", "\n".join(shell + ["exec " + server])],
                               cwd=work, env=env, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port,
                                                timeout=5) as r:
                        assert r.status == 200
                        break
                except OSError:
                    assert time.monotonic() < deadline and srv.poll() is None, "no server"
                    time.sleep(0.2)
        finally:
            srv.terminate()
            assert srv.wait(timeout=60) == 0, srv.stderr.read()
        assert os.path.isdir(os.path.join(home, "profiles", "spaces", "shop"))
    finally:
        shutil.rmtree(dest, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    run_tests([test_install_layout, test_readme_runs_after_install])
