"""Repository hygiene: every shell script passes shellcheck; the Vagrantfile validates."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import REPO


def shell_scripts() -> list[str]:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    found = []
    for name in files:
        path = REPO / name
        if not path.is_file():
            continue
        if name.endswith(".sh"):
            found.append(name)
            continue
        with open(path, "rb") as f:
            first = f.readline()
        if first.startswith(b"#!") and (b"bash" in first or first.rstrip().endswith(b"/sh")):
            found.append(name)
    return sorted(found)


def test_there_are_shell_scripts():
    assert "scripts/setup-host.sh" in shell_scripts() and ".ci/run" in shell_scripts()


@pytest.mark.parametrize("script", shell_scripts())
def test_shellcheck(script):
    if not shutil.which("shellcheck"):
        pytest.fail("shellcheck is missing: make test installs it (setup-host.sh --test-tools)")
    result = subprocess.run(["shellcheck", script], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_vagrant_validate():
    if not shutil.which("vagrant"):
        pytest.fail("vagrant is missing: make test installs it (setup-host.sh --test-tools)")
    result = subprocess.run(
        ["vagrant", "validate"],
        cwd=REPO / "vagrant",
        capture_output=True,
        text=True,
        env={
            "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": "/root",
            "VAGRANT_DEFAULT_PROVIDER": "libvirt",
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validated successfully" in result.stdout
