"""scripts/install-libvirt-hook.sh with an install prefix containing a space, `&`, `|`
or a quote (issue 10, item 21): the installed hook still runs the right program
with libvirt's arguments. Installed into a test directory (AVIO_HOOK_TARGET),
so libvirtd is neither touched nor restarted.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import REPO


@pytest.mark.parametrize("prefix", ["opt/avio kvm", "opt/a&b", "opt/it's|here", "opt/x\\&y"])
def test_the_hook_runs_from_any_prefix(tmp_path, prefix):
    bindir = tmp_path / prefix / "bin"
    bindir.mkdir(parents=True)
    program = bindir / "avio-libvirt-hook"
    program.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$(dirname "$0")/args"\n')
    program.chmod(0o755)
    target = tmp_path / "hooks" / "qemu.d" / "avio-kvm"
    env = {**os.environ, "AVIO_HOOK_TARGET": str(target)}
    subprocess.run(
        ["bash", str(REPO / "scripts/install-libvirt-hook.sh"), str(program)],
        check=True,
        env=env,
        capture_output=True,
    )
    for operation in ("prepare", "started"):
        result = subprocess.run(
            [str(target), "guest 1", operation, "begin", "-"], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        assert (bindir / "args").read_text() == f"guest 1\n{operation}\nbegin\n-\n"
    (bindir / "args").unlink()
    assert subprocess.run([str(target), "g", "stopped", "end", "-"]).returncode == 0
    assert not (bindir / "args").exists()
    subprocess.run(
        ["bash", str(REPO / "scripts/install-libvirt-hook.sh"), "--remove"], check=True, env=env
    )
    assert not target.exists()
