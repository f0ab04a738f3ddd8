"""Backing stores the host uses are refused (real loop devices)."""

from __future__ import annotations

import os
import struct
import subprocess

import pytest

from agent.hostcheck import backing_key, check_backing, host_use
from tests.host.conftest import sh
from translators.errors import HpvmError
from translators.grammar import parse_statement


def test_free_loop_device_is_fine(loopdev):
    dev = loopdev()
    assert host_use(dev) is None
    check_backing(parse_statement(f"disk:avio_stor::disk:{dev}"))


def test_mounted_device_is_refused(loopdev, tmp_path):
    dev = loopdev()
    sh("mkfs.ext4", "-q", dev)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    sh("mount", dev, str(mnt))
    try:
        assert "mounted" in host_use(dev)
    finally:
        sh("umount", str(mnt))


def test_swap_device_is_refused(loopdev):
    dev = loopdev()
    sh("mkswap", dev)
    sh("swapon", dev)
    try:
        with pytest.raises(HpvmError, match="swap"):
            check_backing(parse_statement(f"disk:avio_stor::disk:{dev}"))
    finally:
        sh("swapoff", dev)


def test_disk_with_a_mounted_partition_is_refused(loopdev, tmp_path):
    dev = loopdev(16)
    write_mbr(dev, start=2048, sectors=16 * 2048 - 2048)
    subprocess.run(["partx", "-u", dev], capture_output=True)  # may already know it
    if not os.path.exists(f"{dev}p1"):
        sh("partx", "-a", dev)
    part = f"{dev}p1"
    if not os.path.exists(part):
        pytest.skip("the kernel made no partition device for the loop device")
    sh("mkfs.ext4", "-q", part)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    sh("mount", part, str(mnt))
    try:
        assert "mounted" in host_use(dev)
    finally:
        sh("umount", str(mnt))


def write_mbr(dev: str, start: int, sectors: int) -> None:
    """One Linux partition in an MBR partition table."""
    entry = bytes([0, 0, 0, 0, 0x83, 0, 0, 0]) + struct.pack("<II", start, sectors)
    with open(dev, "r+b") as disk:
        disk.seek(446)
        disk.write(entry + bytes(48) + b"\x55\xaa")


def test_root_disk_is_refused():
    root = sh("findmnt", "-n", "-o", "SOURCE", "/")
    if not root.startswith("/dev/"):
        pytest.skip(f"root is on {root}, not a block device")
    assert host_use(root) is not None


@pytest.mark.parametrize(
    ("statement", "words"),
    [
        ("disk:avio_stor::disk:/dev/avio-no-such-disk", "does not exist"),
        ("disk:avio_stor::disk:/etc/hostname", "not a block device"),
        ("disk:avio_stor::file:/dev/null", "not a regular file"),
    ],
)
def test_wrong_kind_of_backing(statement, words):
    with pytest.raises(HpvmError, match=words):
        check_backing(parse_statement(statement))


def test_aliases_of_one_device_share_a_key(loopdev, tmp_path):
    dev = loopdev()
    link = tmp_path / "by-id-link"
    link.symlink_to(dev)
    assert backing_key(str(link)) == backing_key(dev)
