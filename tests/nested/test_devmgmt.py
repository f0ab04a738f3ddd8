"""In L1 (stock kernel, LVM): the device database's first use restricts an LVM physical
volume, even an inactive one that nothing holds (which only its udev signature tells),
and hpvmcreate refuses it (issue 13, item 3). Guest names avm-...; no L2 boots."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from agent.storage.hostcheck import host_use
from tests.host.guestkit import BIN
from tests.nested.conftest import sh

pytestmark = pytest.mark.nested


def command(state: Path, *argv: str):
    return subprocess.run(
        [str(BIN / argv[0]), *argv[1:]],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "AVIO_STATE_DIR": str(state)},
    )


@pytest.fixture
def inactive_pv(tmp_path):
    """A loop device holding an LVM physical volume of a VG that is not active."""
    image = tmp_path / "pv.img"
    with open(image, "wb") as f:
        f.truncate(64 * 1024 * 1024)
    dev = sh("losetup", "-f", "--show", str(image)).stdout.strip()
    vg = f"avmvg{uuid.uuid4().hex[:6]}"
    try:
        sh("pvcreate", "-ff", "-y", dev)
        sh("vgcreate", vg, dev)
        sh("lvcreate", "-y", "-L", "8M", "-n", "avmlv", vg)
        sh("vgchange", "-an", vg)
        sh("udevadm", "settle")
        yield dev, vg
    finally:
        sh("vgremove", "-f", vg, check=False)
        sh("pvremove", "-ff", "-y", dev, check=False)
        sh("losetup", "-d", dev, check=False)


def test_first_use_restricts_lvm_physical_volumes(inactive_pv, tmp_path):
    dev, vg = inactive_pv
    assert not os.listdir(f"/sys/class/block/{Path(dev).name}/holders")  # nothing holds it
    assert host_use(dev) is None  # so the per-device host check alone would let it through
    state = tmp_path / "state"
    listed = command(state, "hpvmdevmgmt", "-l", "rdev")
    assert listed.returncode == 0, listed.stderr
    lines = {line.split(":")[0]: line for line in listed.stdout.splitlines()}
    assert dev in lines and "AUTORDEV=YES" in lines[dev], listed.stdout
    assert "/dev/vda" in lines, listed.stdout  # the root disk
    name = f"avm-{uuid.uuid4().hex[:6]}"
    created = command(
        state, "hpvmcreate", "-P", name, "-O", "linux", "-r", "128M", "-a",
        f"disk:avio_stor::disk:{dev}",
    )  # fmt: skip
    assert created.returncode == 2, created.stderr
    assert "restricted by the host at first use" in created.stderr, created.stderr
    assert sh("virsh", "dominfo", name, check=False).returncode != 0
    # an active one is restricted too (held by its logical volume)
    sh("vgchange", "-ay", vg)
    try:
        other = tmp_path / "state2"
        listed = command(other, "hpvmdevmgmt", "-l", "rdev")
        assert dev in listed.stdout, listed.stdout
    finally:
        sh("vgchange", "-an", vg)
