"""hpvmclone on the real host: the clone boots and sees the copied disk's content."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.host.conftest import domain_xml
from tests.host.guestkit import ConsoleLog, hpvm

pytestmark = pytest.mark.integration
MARK = b"AVIO-CLONE-MARK-"


def test_clone_boots_with_a_copy_of_the_disk(host):
    disk = host.loop(32)
    with open(host.tmp / "disk0.img", "r+b") as image:
        image.write(MARK * 4)
    switch = host.bridge()
    name = host.define_guest(
        f"disk:avio_stor:0,0,3:disk:{disk}",
        f"network:avio_lan:0,1,2a-2e-5a-05-0a-ba:vswitch:{switch}",
        cmdline="avio.peek=1",
    )
    copy = host.tmp / "clone.img"
    clone = host.guest_name()
    done = hpvm(
        "hpvmclone",
        "-P",
        name,
        "-N",
        clone,
        "-l",
        "cloned",
        "-b",
        f"disk:avio_stor:0,0,3:file:{copy}",
    )
    assert "Virtual storage cloned successfully." in done.stdout
    assert copy.read_bytes() == (host.tmp / "disk0.img").read_bytes()
    source_xml, clone_xml = domain_xml(name), domain_xml(clone)
    uuid = re.compile(r"<uuid>([^<]+)</uuid>")
    assert uuid.search(source_xml)[1] != uuid.search(clone_xml)[1]
    assert "2a:2e:5a:05:0a:ba" not in clone_xml and str(copy) in clone_xml
    (line,) = [x for x in hpvm("hpvmstatus", "-M").stdout.splitlines() if x.startswith(clone)]
    assert line.split(":")[4] == "cloned"  # -M field 4: the label

    hpvm("hpvmstart", "-P", clone)
    log = ConsoleLog(f"/var/log/libvirt/qemu/{clone}-console.log")
    log.wait_for(r"^AVIO ready", timeout=180)
    log.wait_for(r"^AVIO disk sda 0:0:3:0 size=65536")
    log.wait_for(r"^AVIO head sda AVIO-CLONE-MARK-AVIO-CLONE-MARK")


def test_clone_refusals_change_nothing(host):
    disk = host.loop()
    name = host.define_guest(f"disk:avio_stor:0,0,3:disk:{disk}")
    clone = host.guest_name()

    def copy_to(path) -> subprocess.CompletedProcess:
        copy = f"disk:avio_stor:0,0,3:file:{path}"
        return hpvm("hpvmclone", "-P", name, "-N", clone, "-b", copy, check=False)

    shared = hpvm("hpvmclone", "-P", name, "-N", clone, check=False)
    assert shared.returncode == 2 and f"already used by guest '{name}'" in shared.stderr
    existing = host.tmp / "there.img"
    existing.write_bytes(b"keep me")
    over = copy_to(existing)
    assert over.returncode == 2 and "never overwrites" in over.stderr
    assert existing.read_bytes() == b"keep me"
    taken = hpvm(
        "hpvmclone", "-P", name, "-N", name, "-d", f"disk:avio_stor:0,0,3:disk:{disk}", check=False
    )
    assert taken.returncode == 2 and "already exists" in taken.stderr
    # a running source: its storage is copied only from a consistent point
    hpvm("hpvmstart", "-P", name)
    running = copy_to(host.tmp / "new.img")
    assert running.returncode == 1 and "hpvmsuspend" in running.stderr
    assert not (host.tmp / "new.img").exists()
    # without its disk, a running guest's configuration clones at once
    hpvm(
        "hpvmclone",
        "-P",
        name,
        "-N",
        clone,
        "-d",
        f"disk:avio_stor:0,0,3:disk:{disk}",
        "-B",
        "manual",
    )
    assert f'<source dev="{disk}"' not in domain_xml(clone)
