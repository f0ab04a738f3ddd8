"""SCSI pass-through in L1 with scsi_debug's tape (ptype=1) and changer (ptype=8).

What the L2 guests see is read from their own console report (`AVIO scsi H:C:T:L
type=N class=...`, guest/init.sh). In order:

* a VIO guest (`attach`, LSI) sees the tape (scsi_tape stN, type 1) and the
  changer's device; an AVIO guest (`attach_path`, virtio-scsi) sees the medium
  changer (scsi_changer schN, type 8); `hpvmstatus -d` round-trips;
* refused, one line, exit 2: a second guest asking for the same tape (by another
  name too), the host's own disk (vda), a tape given as a changer;
* the AVIO guest: live hot-plug and unplug of the tape (the guest reports +/-,
  a tape of type 1; the times are printed);
* the installed agent unplugs the tape when it leaves the host
  (`echo 1 > .../delete`) and plugs it back when a rescan brings it back (xfail:
  libvirt 9.0 refuses the returned device, see the marker).

scsi_debug answers INQUIRY with its module-wide `ptype` of the moment (the host's
kernel keeps the type it read when it scanned the device), so the guest, which
sends its own INQUIRY through the pass-through, sees that ptype: it is set to the
device's own type before each guest scan (boot, hot-plug, host rescan). The VIO
guest scans its tape and changer at one boot, so only its tape's type is checked.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.host.guestkit import ConsoleLog, Host
from tests.nested.conftest import agent_active, hpvm, sh

pytestmark = pytest.mark.nested

VIO, AVIO, OTHER = "avs-vio", "avs-avio", "avs-two"
DRIVER = Path("/sys/bus/pseudo/drivers/scsi_debug")
DEVICES = Path("/sys/bus/scsi/devices")
BOOT_TIMEOUT = 1800
TIMES: dict[str, float] = {}


def scsi_debug_devices() -> dict[str, str]:
    """H:C:T:L -> SCSI type of every scsi_debug device."""
    return {
        dev.name: (dev / "type").read_text().strip()
        for dev in DEVICES.glob("*:*:*:*")
        if (dev / "model").read_text().strip() == "scsi_debug"
    }


def add_scsi_debug(ptype: str) -> str:
    """A new scsi_debug host with one device of SCSI type `ptype`; its H:C:T:L.

    A new host is scanned asynchronously with the ptype of that moment: wait for
    its device before the ptype changes again."""
    before = set(scsi_debug_devices())
    (DRIVER / "ptype").write_text(ptype)
    (DRIVER / "add_host").write_text("1")
    deadline = time.monotonic() + 120
    while True:
        new = {h: t for h, t in scsi_debug_devices().items() if h not in before}
        if new:
            (hctl, found), *_ = new.items()
            assert found == ptype, new
            return hctl
        assert time.monotonic() < deadline, "no scsi_debug device appeared"
        time.sleep(0.1)


def node(hctl: str, folder: str, prefix: str = "") -> str:
    """The /dev node of one of the device's class devices (scsi_generic, scsi_tape)."""
    names = sorted(p.name for p in (DEVICES / hctl / folder).iterdir())
    return f"/dev/{next(n for n in names if n.startswith(prefix) and n[len(prefix) :].isdigit())}"


def ptype(scsi_type: str) -> None:
    """What scsi_debug answers to INQUIRY from now on (module-wide)."""
    (DRIVER / "ptype").write_text(scsi_type)


def console(name: str) -> ConsoleLog:
    return ConsoleLog(f"/var/log/libvirt/qemu/{name}-console.log")


def refused(command: str, *argv: str) -> str:
    """The one-line error of a command that must refuse with exit 2."""
    result = hpvm(command, *argv, check=False)
    lines = result.stderr.splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(lines) == 1 and lines[0].startswith(f"{command}: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def scsi_line(target: int, scsi_type: int, sign: str = r"\+?") -> str:
    return rf"^AVIO scsi{sign} \d+:0:{target}:0 type={scsi_type} "


@pytest.fixture(scope="module")
def devices():
    """A scsi_debug tape and changer on hosts of their own, the class drivers loaded;
    every avs-* guest and both hosts removed at the end."""
    if not DRIVER.exists():
        sh("modprobe", "scsi_debug", "add_host=0")
    sh("modprobe", "-a", "sg", "st", "ch")
    host = Host()
    tape = changer = None
    forget_consoles()
    try:
        tape = add_scsi_debug("1")
        changer = add_scsi_debug("8")
        sh("udevadm", "settle", "--timeout=120")
        yield {
            "host": host,
            "tape": tape,
            "changer": changer,
            "tape_nst": node(tape, "scsi_tape", "nst"),
            "tape_sg": node(tape, "scsi_generic", "sg"),
            "changer_sg": node(changer, "scsi_generic", "sg"),
        }
    finally:
        for name in (VIO, AVIO, OTHER):
            hpvm("hpvmremove", "-P", name, "-F", check=False)
        host.cleanup()
        forget_consoles()
        added = sum(1 for hctl in (tape, changer) if hctl)
        if added:
            (DRIVER / "add_host").write_text(f"-{added}")
        if TIMES:
            print("\nSCSI pass-through times (s):", {k: round(v, 2) for k, v in TIMES.items()})


def forget_consoles() -> None:
    for name in (VIO, AVIO, OTHER):
        Path(f"/var/log/libvirt/qemu/{name}-console.log").unlink(missing_ok=True)
        Path(f"/var/log/libvirt/qemu/{name}.log").unlink(missing_ok=True)


def tape_vio(d: dict) -> str:
    return f"tape:scsi:0,1,1:attach:{d['tape_nst']}"


def changer_vio(d: dict) -> str:
    return f"changer:scsi:0,1,2:attach:{d['changer_sg']}"


def test_vio_guest_sees_the_tape_and_the_changer(devices):
    d = devices
    d["host"].define_guest(tape_vio(d), changer_vio(d), memory="192M", name=VIO)
    log = console(VIO)
    ptype("1")
    hpvm("hpvmstart", "-P", VIO)
    log.wait_for(r"^AVIO ready", timeout=BOOT_TIMEOUT)
    # LSI: the guest sees SCSI ids 1 and 2; st binds to the tape
    log.wait_for(scsi_line(1, 1) + r"class=\S*\bst\d+\b", timeout=300)
    log.wait_for(r"^AVIO scsi\+? \d+:0:2:0 type=\d+ class=\S*\bsg\d+\b", timeout=300)


def test_status_d_round_trips(devices):
    d = devices
    text = hpvm("hpvmstatus", "-P", VIO, "-d").stdout
    lines = text.splitlines()
    assert tape_vio(d) in lines and changer_vio(d) in lines, text
    table = hpvm("hpvmstatus", "-P", VIO).stdout
    assert re.search(rf"^tape +scsi +0 +1 +0 +1 +0 attach +{d['tape_nst']}$", table, re.M), table
    config = d["host"].tmp / "vio.conf"
    config.write_text(text)
    # the file is a config: its statements parse and check as the guest's own (-s: no claims)
    result = hpvm("hpvmcreate", "-P", "avs-copy", "--config", str(config), "-s", check=False)
    assert result.returncode == 0, result.stderr


def test_refusals(devices):
    d = devices
    line = refused("hpvmcreate", "-P", OTHER, "-a", f"tape:avio_stor::attach_path:{d['tape']}")
    assert f"already attached to guest '{VIO}'" in line
    line = refused("hpvmcreate", "-P", OTHER, "-a", f"tape:scsi::attach:{d['tape_sg']}")
    assert f"already attached to guest '{VIO}'" in line
    line = refused("hpvmcreate", "-P", OTHER, "-a", "tape:scsi::attach:/dev/vda")
    assert "root file system" in line
    line = refused("hpvmcreate", "-P", OTHER, "-a", "burner:avio_stor::attach_path:/sys/block/vda")
    assert "not the sysfs path of a SCSI device" in line
    line = refused("hpvmcreate", "-P", OTHER, "-a", f"changer:scsi::attach:{d['tape_sg']}")
    assert "type 1 (tape), not a changer" in line
    line = refused("hpvmcreate", "-P", OTHER, "-a", "tape:avio_stor::attach_path:9:0:9:0")
    assert "no SCSI device 9:0:9:0" in line
    assert sh("virsh", "dominfo", OTHER, check=False).returncode != 0  # nothing defined


def test_vio_guest_lets_go(devices):
    """Stopped, the VIO guest gives the tape up with -d; removed, the changer too."""
    d = devices
    hpvm("hpvmstop", "-P", VIO, "-F")
    hpvm("hpvmmodify", "-P", VIO, "-d", f"tape:scsi::attach:{d['tape_nst']}")
    assert tape_vio(d) not in hpvm("hpvmstatus", "-P", VIO, "-d").stdout
    hpvm("hpvmremove", "-P", VIO, "-F")
    # The device database: a tape restricted by one of its nodes is refused by another.
    hpvm("hpvmdevmgmt", "-a", f"rdev:{d['tape_nst']}")
    try:
        line = refused("hpvmcreate", "-P", OTHER, "-a", f"tape:scsi::attach:{d['tape_sg']}")
        assert "restricted" in line, line
    finally:
        hpvm("hpvmdevmgmt", "-d", f"rdev:{d['tape_nst']}")


def tape_avio(d: dict) -> str:
    return f"tape:avio_stor:0,0,2:attach_path:{d['tape']}"


def test_avio_live_hotplug_and_unplug(devices):
    d = devices
    d["host"].define_guest(
        f"changer:avio_stor:0,0,1:attach_path:{d['changer']}", memory="192M", name=AVIO
    )
    log = console(AVIO)
    ptype("8")
    hpvm("hpvmstart", "-P", AVIO)
    log.wait_for(r"^AVIO ready", timeout=BOOT_TIMEOUT)
    log.wait_for(scsi_line(1, 8) + r"class=\S*\bsch\d+\b", timeout=300)
    ptype("1")
    mark = log.mark()
    start = time.monotonic()
    hpvm("hpvmmodify", "-P", AVIO, "-a", tape_avio(d))
    TIMES["hpvmmodify -a returns"] = time.monotonic() - start
    log.wait_for(scsi_line(2, 1, r"\+"), timeout=300, since=mark)
    TIMES["hot-plug: guest reports scsi+"] = time.monotonic() - start
    log.wait_for(scsi_line(2, 1) + r"class=\S*\bst\d+\b", timeout=300, since=mark)
    assert tape_avio(d) in hpvm("hpvmstatus", "-P", AVIO, "-d").stdout.splitlines()
    mark = log.mark()
    start = time.monotonic()
    hpvm("hpvmmodify", "-P", AVIO, "-d", tape_avio(d))
    TIMES["hpvmmodify -d returns (waits for DEVICE_REMOVED)"] = time.monotonic() - start
    log.wait_for(r"^AVIO scsi- \d+:0:2:0$", timeout=300, since=mark)
    TIMES["unplug: guest reports scsi-"] = time.monotonic() - start
    assert tape_avio(d) not in hpvm("hpvmstatus", "-P", AVIO, "-d").stdout


TAPE_ALIAS = "<alias name='ua-pt-avio-stor-0-0-2'/>"  # the hostdev (the metadata has it too)


def live(name: str) -> str:
    return sh("virsh", "dumpxml", name).stdout


def agent_journal(since: str) -> str:
    return sh("journalctl", "-u", "avio-agent", "-o", "cat", "--no-pager", "--since", since).stdout


def test_agent_unplugs_a_device_that_leaves_the_host(devices):
    d = devices
    agent_active()
    log = console(AVIO)
    mark = log.mark()
    hpvm("hpvmmodify", "-P", AVIO, "-a", tape_avio(d))
    log.wait_for(scsi_line(2, 1, r"\+"), timeout=300, since=mark)
    since = sh("date", "+%Y-%m-%d %H:%M:%S").stdout.strip()
    mark = log.mark()
    start = time.monotonic()
    (DEVICES / d["tape"] / "delete").write_text("1")
    log.wait_for(r"^AVIO scsi- \d+:0:2:0$", timeout=300, since=mark)
    TIMES["agent: host delete -> guest reports scsi-"] = time.monotonic() - start
    deadline = time.monotonic() + 120
    while f"unplug guest={AVIO} scsi=" not in agent_journal(since):
        assert time.monotonic() < deadline, agent_journal(since)
        time.sleep(0.5)
    # still in the definition, waiting for the device (hpvmstatus shows the running guest)
    defined = sh("virsh", "dumpxml", "--inactive", AVIO).stdout
    assert TAPE_ALIAS in defined and TAPE_ALIAS not in live(AVIO)


@pytest.mark.xfail(
    reason="seen in L1 (libvirt 9.0): the device that left while attached is not released "
    "by libvirt ('Unable to reattach SCSI device'), and its return is refused: 'Setting "
    "different DAC user or group on /dev/sgN which is already in use'",
    strict=False,
)
def test_agent_plugs_it_back_when_it_returns(devices):
    d = devices
    log = console(AVIO)
    since = sh("date", "+%Y-%m-%d %H:%M:%S").stdout.strip()
    mark = log.mark()
    start = time.monotonic()
    ptype("1")
    host_number = d["tape"].split(":")[0]
    Path(f"/sys/class/scsi_host/host{host_number}/scan").write_text("- - -")
    log.wait_for(scsi_line(2, 1, r"\+"), timeout=120, since=mark)  # an xfail: not 300 s
    TIMES["agent: host rescan -> guest reports scsi+"] = time.monotonic() - start
    assert re.search(rf"plug guest={AVIO} scsi=\S+ .*is back at", agent_journal(since))
    assert TAPE_ALIAS in live(AVIO)
