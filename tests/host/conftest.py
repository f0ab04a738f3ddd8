"""Fixtures for tests on the real host: root, loop devices, bridges, libvirt guests."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, TypeVar

import pytest

PREFIX = "avt-"


def _libvirt_reachable() -> bool:
    try:
        import libvirt

        libvirt.open("qemu:///system").close()
        return True
    except Exception:
        return False


def require_host() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (loop devices, bridges, libvirt)")
    if not _libvirt_reachable():
        pytest.skip("qemu:///system is not reachable (run scripts/setup-host.sh)")


class Cleanable(Protocol):
    def cleanup(self) -> None: ...


T = TypeVar("T", bound=Cleanable)


def made_on_host(make: Callable[[], T]) -> Iterator[T]:
    """Fixture body: on a usable host, yield make() and call its cleanup() afterwards."""
    require_host()
    made = make()
    try:
        yield made
    finally:
        made.cleanup()


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


@contextmanager
def mounted(dev: str, where: Path) -> Iterator[None]:
    """`dev` (made ext4) mounted on the host under a test directory, unmounted afterwards."""
    sh("mkfs.ext4", "-q", "-F", dev)
    where.mkdir()
    sh("mount", dev, str(where))
    try:
        yield
    finally:
        sh("umount", str(where))


@pytest.fixture
def host():
    """A guestkit.Host (loop devices, bridges, guests made by the test), all removed after."""
    from tests.host.guestkit import Host

    yield from made_on_host(Host)


@pytest.fixture(scope="module")
def module_host():
    """A guestkit.Host shared by the tests of one module, all removed after the module."""
    from tests.host.guestkit import Host

    yield from made_on_host(Host)


@pytest.fixture
def loopdev(tmp_path, host):
    """loopdev(size_mb=8) -> '/dev/loopN' on a sparse file; detached afterwards."""
    made: list[str] = []

    def make(size_mb: int = 8) -> str:
        image = tmp_path / f"disk{len(made)}.img"
        with open(image, "wb") as f:
            f.truncate(size_mb * 1024 * 1024)
        dev = sh("losetup", "-f", "--show", str(image))
        made.append(dev)
        return dev

    yield make
    for dev in made:
        subprocess.run(["umount", "-q", dev], capture_output=True)
        subprocess.run(["swapoff", dev], capture_output=True)
        subprocess.run(["losetup", "-d", dev], capture_output=True)


@pytest.fixture
def bridge(host):
    """bridge() -> a fresh Linux bridge name (no address), deleted afterwards."""
    made: list[str] = []

    def make() -> str:
        name = f"avtbr{uuid.uuid4().hex[:6]}"
        sh("ip", "link", "add", name, "type", "bridge")
        sh("ip", "link", "set", name, "up")
        made.append(name)
        return name

    yield make
    for name in made:
        subprocess.run(["ip", "link", "del", name], capture_output=True)


@pytest.fixture
def guest_name(host):
    """A unique guest name; any domain of that name is removed afterwards."""
    import libvirt

    names: list[str] = []

    def make() -> str:
        name = f"{PREFIX}{uuid.uuid4().hex[:8]}"
        names.append(name)
        return name

    yield make
    conn = libvirt.open("qemu:///system")
    for name in names:
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError:
            continue
        if dom.isActive():
            dom.destroy()
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
    conn.close()


def domain_xml(name: str, inactive: bool = True) -> str:
    import libvirt

    conn = libvirt.open("qemu:///system")
    try:
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
        return conn.lookupByName(name).XMLDesc(flags)
    finally:
        conn.close()


def console_log(name: str) -> Path:
    return Path(f"/var/log/libvirt/qemu/{name}-console.log")
