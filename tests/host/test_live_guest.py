"""A real booted guest, driven only through the hpvm* commands, reports what it sees.

The guest (tests/host/guestkit.py, guest/init.sh) prints `AVIO ...` lines on its
serial console: its disks with SCSI H:C:T:L and size, NICs with MAC, DVD media,
and every change. Nothing in the guest rescans: what it reports, it was told.
"""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from tests.host.conftest import domain_xml
from tests.host.guestkit import digest, hpvm

pytestmark = pytest.mark.integration


def modify(name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """hpvmmodify -P name ARGS (with check, it must succeed)."""
    return hpvm("hpvmmodify", "-P", name, *args, check=check)


@pytest.fixture(scope="module")
def world(module_host):
    host = module_host
    disk, spare, iso = host.loop(), host.loop(), host.tmp / "media.iso"
    iso.write_bytes(b"\x00" * 2048 * 100)
    vswitch = host.bridge()
    name, log = host.boot_guest(
        f"disk:avio_stor:0,0,3:disk:{disk}",
        f"network:avio_lan:0,1,2a-2e-5a-05-0a-ba:vswitch:{vswitch}:portid:5",
        "dvd:avio_stor:0,0,5:null:",
    )
    return {
        "host": host,
        "name": name,
        "log": log,
        "disk": disk,
        "spare": spare,
        "iso": str(iso),
        "vswitch": vswitch,
    }


def test_guest_sees_its_disk_at_the_target_given(world):
    log = world["log"]
    match = log.wait_for(r"^AVIO disk (sd\w+) (\d+):0:3:0 size=(\d+) type=disk")
    assert int(match.group(3)) == 8 * 1024 * 1024 // 512
    log.wait_for(r"^AVIO nic eth0 mac=2a:2e:5a:05:0a:ba")
    log.wait_for(r"^AVIO disk sr0 \d+:0:5:0 size=0 type=cdrom")


def test_hotplug_disk_seen_without_rescan(world):
    log, name = world["log"], world["name"]
    mark = log.mark()
    hpvm("hpvmmodify", "-P", name, "-a", f"disk:avio_stor::disk:{world['spare']}")
    added = log.wait_for(r"^AVIO disk\+ (sd\w+) \d+:0:(\d+):0 size=16384", timeout=20, since=mark)
    statements = hpvm("hpvmstatus", "-P", name, "-d").stdout
    assert f"disk:avio_stor:0,0,{added.group(2)}:disk:{world['spare']}" in statements
    mark = log.mark()
    hpvm("hpvmmodify", "-P", name, "-d", f"disk:avio_stor::disk:{world['spare']}")
    log.wait_for(rf"^AVIO disk- {added.group(1)}$", timeout=20, since=mark)
    assert world["spare"] not in hpvm("hpvmstatus", "-P", name, "-d").stdout


def test_hotplug_nic_seen_and_unplugged(world):
    log, name = world["log"], world["name"]
    mark = log.mark()
    modify(name, "-a", f"network:avio_lan:,,2a-00-00-00-00-07:vswitch:{world['vswitch']}")
    added = log.wait_for(r"^AVIO nic\+ (eth\d+) mac=2a:00:00:00:00:07", timeout=20, since=mark)
    time.sleep(3)  # QEMU refuses a PCI unplug while the slot's power indicator blinks
    mark = log.mark()
    modify(name, "-d", "network:avio_lan:,,2a-00-00-00-00-07:vswitch:" + world["vswitch"])
    log.wait_for(rf"^AVIO nic- {added.group(1)}$", timeout=20, since=mark)


def test_dvd_insert_and_eject_seen(world):
    log, name = world["log"], world["name"]
    mark = log.mark()
    hpvm("hpvmmodify", "-P", name, "-m", f"dvd:avio_stor:0,0,5:file:{world['iso']}")
    log.wait_for(r"^AVIO media sr0 size=400 type=cdrom", timeout=20, since=mark)
    mark = log.mark()
    hpvm("hpvmmodify", "-P", name, "-m", "dvd:avio_stor:0,0,5:null:")
    log.wait_for(r"^AVIO media sr0 size=0 type=cdrom", timeout=20, since=mark)


def test_empty_dvd_hotplug_is_refused_cleanly(world):
    name = world["name"]
    before = hpvm("hpvmstatus", "-P", name, "-d").stdout
    result = hpvm("hpvmmodify", "-P", name, "-a", "dvd:avio_stor::null:", check=False)
    assert result.returncode == 1 and "empty DVD" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert hpvm("hpvmstatus", "-P", name, "-d").stdout == before


def test_failed_live_attach_leaves_nothing_half_done(world):
    name, host = world["name"], world["host"]
    hidden = host.tmp / "private"
    hidden.mkdir(mode=0o700)  # qemu (user libvirt-qemu) cannot open files in here
    unreadable = hidden / "d.img"
    unreadable.write_bytes(b"\0" * 1024 * 1024)
    before = (domain_xml(name), domain_xml(name, inactive=False))
    result = modify(
        name,
        "-a",
        f"disk:avio_stor:0,0,7:disk:{world['spare']}",
        "-a",
        f"disk:avio_stor:0,0,8:file:{unreadable}",
        check=False,
    )
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "Permission denied" in result.stderr
    assert (domain_xml(name), domain_xml(name, inactive=False)) == before


def test_nic_moves_to_another_vswitch_live(world):
    name, other = world["name"], world["host"].bridge()
    hpvm("hpvmmodify", "-P", name, "-m", f"network:avio_lan:0,1:vswitch:{other}:portid:5")
    for inactive in (False, True):
        assert f"<source bridge='{other}'/>" in domain_xml(name, inactive=inactive)
    assert f"vswitch:{other}:portid:5" in hpvm("hpvmstatus", "-P", name, "-d").stdout
    hpvm(
        "hpvmmodify", "-P", name, "-m", f"network:avio_lan:0,1:vswitch:{world['vswitch']}:portid:5"
    )


def test_changes_survive_stop_and_start(world):
    log, name = world["log"], world["name"]
    mark = log.mark()
    modify(
        name,
        "-a",
        f"disk:avio_stor:0,0,9:disk:{world['spare']}",
        "-m",
        f"dvd:avio_stor:0,0,5:file:{world['iso']}",
    )
    log.wait_for(r"^AVIO disk\+ sd\w+ \d+:0:9:0", timeout=20, since=mark)
    hpvm("hpvmstop", "-P", name, "-F")
    assert "Off" in hpvm("hpvmstatus", "-P", name).stdout
    mark = log.mark()
    hpvm("hpvmstart", "-P", name)
    log.wait_for(r"^AVIO ready", timeout=90, since=mark)
    boot = log.text()[mark:]
    assert re.search(r"^AVIO disk sd\w+ \d+:0:3:0 size=16384", boot, re.M)
    assert re.search(r"^AVIO disk sd\w+ \d+:0:9:0 size=16384", boot, re.M)
    assert re.search(r"^AVIO disk sr0 \d+:0:5:0 size=400 type=cdrom", boot, re.M)
    assert re.search(r"^AVIO nic eth0 mac=2a:2e:5a:05:0a:ba", boot, re.M)


def test_remove_leaves_no_domain_and_backing_untouched(world):
    name, disk = world["name"], world["disk"]
    before = digest(disk)
    result = hpvm("hpvmremove", "-P", name, check=False)
    assert result.returncode == 1 and "running" in result.stderr
    hpvm("hpvmremove", "-P", name, "-F")
    assert hpvm("hpvmstatus", "-P", name, check=False).returncode == 2
    assert name not in hpvm("hpvmstatus").stdout
    assert digest(disk) == before


def test_vio_devices_are_emulated_lsi_and_e1000(host):
    disk, vswitch = host.loop(), host.bridge()
    name, log = host.boot_guest(
        f"disk:scsi:0,2,5:disk:{disk}", f"network:lan:0,3,0x2A00000000AA:vswitch:{vswitch}"
    )
    xml = domain_xml(name)
    assert "model='lsilogic'" in xml and "<model type='e1000'/>" in xml
    log.wait_for(r"^AVIO disk sd\w+ \d+:0:5:0 size=16384 type=disk")
    log.wait_for(r"^AVIO nic eth0 mac=2a:00:00:00:00:aa")
    # QEMU's LSI adapter has no hot-plug: refused before anything changes
    before = (domain_xml(name), domain_xml(name, inactive=False))
    result = hpvm(
        "hpvmmodify", "-P", name, "-a", f"disk:scsi:0,2,1:disk:{host.loop()}", check=False
    )
    assert result.returncode == 1 and "cannot hot-plug" in result.stderr
    assert (domain_xml(name), domain_xml(name, inactive=False)) == before
