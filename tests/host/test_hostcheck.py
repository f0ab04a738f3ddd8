"""Backing stores the host uses are refused (real loop devices)."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys

import pytest

from agent.storage.hostcheck import backing_key, check_backing, host_use
from tests.conftest import REPO
from tests.host.conftest import mounted, sh
from translators.errors import HpvmError
from translators.grammar import parse_statement
from translators.model import StorageDevice
from translators.validate import same_storage


def test_free_loop_device_is_fine(loopdev):
    dev = loopdev()
    assert host_use(dev) is None
    check_backing(parse_statement(f"disk:avio_stor::disk:{dev}"))


def test_mounted_device_is_refused(loopdev, tmp_path):
    dev = loopdev()
    with mounted(dev, tmp_path / "mnt"):
        assert "mounted" in host_use(dev)


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
    with mounted(part, tmp_path / "mnt"):
        assert "mounted" in host_use(dev)


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


# ---- mounts whose mountinfo shows an anonymous device (btrfs): issue 10, item 1 ----

BTRFS_MB = 128  # mkfs.btrfs's smallest comfortable size (sparse)


def mkfs_btrfs(dev: str) -> None:
    if not shutil.which("mkfs.btrfs"):
        pytest.skip("mkfs.btrfs missing (scripts/setup-host.sh --test-tools installs it)")
    sh("mkfs.btrfs", "-q", "-f", dev)


def in_namespace(mounts: list[tuple[str, str]], code: str) -> str:
    """Run Python `code` in a private mount namespace where `mounts` (device, dir) are mounted.

    The mounts end with the namespace: nothing is left mounted on the host.
    """
    script = "".join(f'mount "{dev}" "{mnt}" && ' for dev, mnt in mounts)
    script += f'exec "{sys.executable}" -c "$0"'
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, code],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


@pytest.fixture
def namespace_mount():
    """namespace_mount(dev, dir): mounted in a private namespace kept by a process of ours."""
    held: list[subprocess.Popen] = []

    def make(dev: str, mnt: str) -> None:
        process = subprocess.Popen(
            [
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                f'mount "{dev}" "{mnt}" && echo mounted && exec sleep 600',
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        held.append(process)
        assert process.stdout.readline().strip() == "mounted"

    yield make
    for process in held:
        process.kill()
        process.wait()


def test_btrfs_on_a_loop_device_is_seen_as_mounted(loopdev, tmp_path):
    dev = loopdev(BTRFS_MB)
    mkfs_btrfs(dev)
    out = in_namespace(
        [(dev, str(tmp_path))],
        "from agent.storage.hostcheck import host_use, filesystem_devices\n"
        f"print(open('/proc/self/mountinfo').read().count(' 0:'), host_use('{dev}'))\n"
        f"print(sorted(filesystem_devices('{tmp_path}')))",
    )
    assert "is mounted on the host" in out.splitlines()[0]
    rdev = os.stat(dev).st_rdev
    # The root-disk check asks the same question of `/`: the device behind a file system.
    assert f"{os.major(rdev)}:{os.minor(rdev)}" in out.splitlines()[1]


def test_hpvmcreate_refuses_a_mounted_btrfs_device(loopdev, tmp_path, guest_name):
    dev, name = loopdev(BTRFS_MB), guest_name()
    mkfs_btrfs(dev)
    out = in_namespace(
        [(dev, str(tmp_path))],
        "from agent.cli import hpvmcreate\n"
        "from agent.cli.common import run\n"
        f"code = run('hpvmcreate', hpvmcreate.COMMAND, ['-P', '{name}', '-O', 'linux', "
        f"'-a', 'disk:avio_stor::disk:{dev}', '--virt-type', 'qemu'])\n"
        "print('exit', code)",
    )
    assert "exit 2" in out
    assert subprocess.run(["virsh", "dominfo", name], capture_output=True).returncode != 0


def test_btrfs_mounted_in_another_namespace_is_seen(loopdev, tmp_path, namespace_mount):
    dev = loopdev(BTRFS_MB)
    mkfs_btrfs(dev)
    namespace_mount(dev, str(tmp_path))
    assert "is mounted on the host" in host_use(dev)  # /sys/fs/btrfs/*/devices/


def test_disk_with_a_mounted_btrfs_partition_is_refused(loopdev, tmp_path, namespace_mount):
    dev = loopdev(BTRFS_MB + 2)
    part = partitioned(dev)
    mkfs_btrfs(part)
    namespace_mount(part, str(tmp_path))
    assert "is mounted on the host" in host_use(dev)
    assert "is mounted on the host" in host_use(part)


def partitioned(dev: str) -> str:
    """`dev` with one partition from 1 MiB to its end; the partition's device."""
    sectors = int(sh("blockdev", "--getsz", dev))
    write_mbr(dev, start=2048, sectors=sectors - 2048)
    subprocess.run(["partx", "-u", dev], capture_output=True)  # may already know it
    if not os.path.exists(f"{dev}p1"):
        sh("partx", "-a", dev)
    if not os.path.exists(f"{dev}p1"):
        pytest.skip("the kernel made no partition device for the loop device")
    return f"{dev}p1"


# ---- file backings: issue 10, item 2 ----


def file_statement(path) -> StorageDevice:
    return parse_statement(f"disk:avio_stor::file:{path}")


@pytest.mark.parametrize("path", ["/etc/shadow", "/etc/hostname", "/usr/bin/env", "/boot"])
def test_host_system_files_are_refused(path):
    if not os.path.exists(path):
        pytest.skip(f"{path} does not exist here")
    with pytest.raises(HpvmError, match=r"system directory|not a regular file"):
        check_backing(file_statement(path))


def test_a_symlink_to_a_system_file_is_refused(tmp_path):
    link = tmp_path / "innocent.img"
    link.symlink_to("/etc/hostname")
    with pytest.raises(HpvmError, match="system directory /etc"):
        check_backing(file_statement(link))


def test_not_a_regular_file_is_refused(tmp_path):
    os.mkfifo(tmp_path / "fifo.img")
    for path in (tmp_path, tmp_path / "fifo.img"):
        with pytest.raises(HpvmError, match="not a regular file"):
            check_backing(file_statement(path))


def test_a_plain_image_file_is_fine(tmp_path):
    image = tmp_path / "d.img"
    image.write_bytes(bytes(4096))
    check_backing(file_statement(image))


def test_the_file_behind_a_mounted_loop_device_is_refused(loopdev, tmp_path):
    dev = loopdev()
    image = sh("losetup", "-n", "-O", "BACK-FILE", dev)
    sh("mkfs.ext4", "-q", dev)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    sh("mount", dev, str(mnt))
    try:
        with pytest.raises(HpvmError, match=f"backs {dev}, which is mounted"):
            check_backing(file_statement(image))
    finally:
        sh("umount", str(mnt))
    check_backing(file_statement(image))  # unmounted: a free loop's file is fine


def test_a_swap_file_is_refused(tmp_path):
    swap = tmp_path / "swap.img"
    with open(swap, "wb") as f:
        f.write(bytes(1024 * 1024))  # swapon refuses holes
    swap.chmod(0o600)
    sh("mkswap", str(swap))
    if subprocess.run(["swapon", str(swap)], capture_output=True).returncode != 0:
        pytest.skip("this kernel or file system takes no swap file")
    try:
        with pytest.raises(HpvmError, match="swap"):
            check_backing(file_statement(swap))
    finally:
        sh("swapoff", str(swap))


# ---- one storage under two names: issue 10, item 3 ----


def test_a_loop_device_is_the_file_behind_it(loopdev, tmp_path):
    dev = loopdev()
    image = sh("losetup", "-n", "-O", "BACK-FILE", dev)
    link = tmp_path / "link.img"
    link.symlink_to(image)
    assert backing_key(dev) == backing_key(image) == backing_key(str(link))
    assert backing_key(image.replace("/", "//")) == backing_key(image)


def test_a_disk_and_its_partition_overlap(loopdev):
    dev = loopdev(16)
    part = partitioned(dev)
    image = sh("losetup", "-n", "-O", "BACK-FILE", dev)
    assert same_storage(backing_key(dev), backing_key(part))
    assert same_storage(backing_key(part), backing_key(image))  # the file under the loop
    other = loopdev()
    assert not same_storage(backing_key(other), backing_key(part))
