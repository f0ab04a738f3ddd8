"""bench/scale.py runs, small (its numbers are printed, never asserted)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration


def test_the_scale_bench_runs_small_and_cleans_up():
    before = subprocess.run(
        ["virsh", "list", "--all", "--name"], capture_output=True, text=True, check=True
    ).stdout.split()
    result = subprocess.run(
        [
            sys.executable,
            "bench/scale.py",
            *("--guests", "2", "--disks", "2", "--resizes", "5", "--idle", "1"),
            *("--configs", "3", "--no-baseline"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for line in (
        "uevent -> blockResize returned",
        "burst of 4 resizes",
        "every guest reconciled",
        "with 3 config files",
        "the libvirt hook alone",
        "the libvirt hook answered by the agent",
        "with the agent answering",
    ):
        assert line in result.stdout, result.stdout
    after = subprocess.run(
        ["virsh", "list", "--all", "--name"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert set(after) <= set(before), "the bench left guests behind"
