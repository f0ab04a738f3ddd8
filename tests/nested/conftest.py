"""The nested subset: runs only in the L1 host of scripts/nested-host.sh (make test-nested).

Elsewhere (AVIO_NESTED unset) every test here is skipped: they change the
host (LVM on /dev/vdb, device-mapper on /dev/vdc, the installed agent unit,
vswitches that must survive a reboot), which only the disposable L1 may see.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.host import guestkit


def pytest_configure(config):
    config.addinivalue_line("markers", "nested: runs inside the nested L1 host only")
    config.addinivalue_line(
        "markers", "after_reboot: nested, run by nested-host.sh after it reboots L1"
    )


def pytest_collection_modifyitems(config, items):
    if os.environ.get("AVIO_NESTED") == "1":
        return
    skip = pytest.mark.skip(reason="runs inside the nested L1 host: make test-nested")
    for item in items:
        if "nested" in item.keywords:
            item.add_marker(skip)


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} -> {result.returncode}: {result.stderr}")
    return result


def hpvm(command: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """guestkit.hpvm without its AVIO_VIRT_TYPE=qemu: in L1 the project chooses the domain
    type itself, as it does on a user's host. Under TCG, QEMU's `-cpu max` has SVM with
    nested paging, so L1's kvm_amd loads and L2 runs under KVM (about a minute to its
    report) instead of TCG inside TCG (14 min or more)."""
    result = subprocess.run(
        [str(guestkit.BIN / command), *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{command} {' '.join(args)} -> {result.returncode}: {result.stderr}")
    return result


@pytest.fixture(scope="session", autouse=True)
def tiny_guest():
    """L2 is the tiny guest, built on the outer host and copied in ($AVIO_TINY_GUEST)."""
    folder = Path(os.environ.get("AVIO_TINY_GUEST", "/var/lib/avio-nested/tiny-guest"))
    kernel, initrd = folder / "vmlinuz", folder / "initramfs.cpio.gz"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(guestkit, "build_tiny_guest", lambda: (kernel, initrd))
        patch.setattr(guestkit, "hpvm", hpvm)
        yield


def start(host: guestkit.Host, guests: dict[str, tuple[list[str], str]]) -> dict:
    """Define guests {name: (statements, cmdline)} with autoboot and start them one after
    the other, each once the previous one reported: side by side, under nested TCG on a
    loaded machine, the kernels starved (ACPI AE_AML_LOOP_TIMEOUT, soft lockups)."""
    logs = {}
    for name, (statements, cmdline) in guests.items():
        host.define_guest(*statements, memory="192M", cmdline=cmdline, name=name, boot="auto")
        logs[name] = guestkit.ConsoleLog(f"/var/log/libvirt/qemu/{name}-console.log")
        hpvm("hpvmstart", "-P", name)
        logs[name].wait_for(r"^AVIO ready", timeout=1800)
    return logs


def agent_active(timeout: float = 600.0) -> None:
    """Wait while the agent unit is on its way (activating until it says READY=1, or
    being restarted); it must end active."""
    deadline = time.monotonic() + timeout
    while True:
        state = sh("systemctl", "is-active", "avio-agent", check=False).stdout.strip()
        if state not in ("activating", "deactivating", "reloading"):
            break
        if time.monotonic() > deadline:
            break
        time.sleep(1)
    status = sh("systemctl", "status", "--no-pager", "-n", "30", "avio-agent", check=False)
    assert state == "active", status.stdout
