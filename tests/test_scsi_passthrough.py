"""SCSI pass-through (attached tapes, changers, burners): grammar, rules, XML, read-back,
hpvmstatus and plans, host-free. The host facts (H:C:T:L, SCSI type, identity) are
given as the host layer would give them (`scsi_passthrough.resolve`); the host side
runs in tests/nested/test_scsi_passthrough.py against scsi_debug devices."""

from __future__ import annotations

import pytest
from lxml import etree

from tests.conftest import compare_golden
from translators.allocate import complete
from translators.devices.scsi_passthrough import ScsiPassthroughDevice, resolve
from translators.errors import HpvmError
from translators.grammar import parse_statement
from translators.model import Guest
from translators.options import parse_config_text
from translators.plan import Action, plan_modify
from translators.readback import read_domain
from translators.render import render_domain, to_string
from translators.status import GuestStatus, format_details, format_statements
from translators.validate import HostClaims, check_guest

TAPE_VIO = "tape:scsi::attach:/dev/tape/by-id/scsi-35333333000001f41-nst"
CHANGER_VIO = "changer:scsi::attach:/dev/sg2"
TAPE_AVIO = "tape:avio_stor:0,4,2:attach_path:3:0:0:0"
BURNER_AVIO = "burner:avio_stor::attach_path:/sys/bus/scsi/devices/4:0:1:0"
DISK_AVIO = "disk:avio_stor:0,4,0:disk:/dev/sdb"
FACTS = {
    TAPE_VIO: ("2:0:0:0", 1, "wwid:naa.5333333000001f41"),
    CHANGER_VIO: ("2:0:1:0", 8, "wwid:naa.5333333000001f42"),
    TAPE_AVIO: ("3:0:0:0", 1, "serial:Linux/scsi_debug/6000"),
    BURNER_AVIO: ("4:0:1:0", 5, "hctl:4:0:1:0"),
}


def stmt(text: str, facts: bool = True):
    dev = parse_statement(text, None)
    if facts and text in FACTS:
        resolve(dev, *FACTS[text])
    return dev


def guest(*texts: str) -> Guest:
    g = Guest("tapes", os_type="linux", memory_mb=512)
    for text in texts:
        g.add(stmt(text))
    return g


def domain_xml(g: Guest) -> str:
    check_guest(g)
    return to_string(render_domain(complete(g), "qemu"))


ALL = (TAPE_VIO, CHANGER_VIO, DISK_AVIO, TAPE_AVIO, BURNER_AVIO)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        (TAPE_VIO, TAPE_VIO),
        ("Changer:SCSI:0,2,3:Attach:/dev/sg2", "changer:scsi:0,2,3:attach:/dev/sg2"),
        ("tape:aviostor::attach_path: 3:0:0:0", "tape:avio_stor::attach_path:3:0:0:0"),
        (BURNER_AVIO, BURNER_AVIO),
    ],
)
def test_statement_round_trips(text, canonical):
    dev = parse_statement(text, None)
    assert isinstance(dev, ScsiPassthroughDevice)
    assert dev.format() == canonical
    assert parse_statement(canonical, None).format() == canonical


def test_attach_path_gives_the_address_itself():
    assert stmt(TAPE_AVIO, facts=False).host == "3:0:0:0"
    assert stmt(BURNER_AVIO, facts=False).host is None  # a /sys path: the host resolves it


def test_golden_domain():
    compare_golden("scsi-passthrough.xml", domain_xml(guest(*ALL)))


def test_hostdev_behind_its_hba_at_the_target():
    domain = etree.fromstring(domain_xml(guest(*ALL)).encode())
    hostdevs = domain.findall("devices/hostdev[@type='scsi']")
    assert len(hostdevs) == 4
    avio_tape = next(h for h in hostdevs if h.find("source/adapter").get("name") == "scsi_host3")
    assert avio_tape.find("source/address").attrib == {"bus": "0", "target": "0", "unit": "0"}
    drive = avio_tape.find("address")
    assert (drive.get("target"), drive.get("unit")) == ("2", "0")
    controller = domain.find(f"devices/controller[@index='{drive.get('controller')}']")
    assert controller.get("model") == "virtio-scsi"
    # the disk at 0,4,0 and the tape at 0,4,2 share one HBA: rendered once
    assert len(domain.findall("devices/controller[@type='scsi'][@index='4']")) == 1
    vio_tape = next(h for h in hostdevs if h.find("source/adapter").get("name") == "scsi_host2")
    vio_ctl = domain.find(
        f"devices/controller[@index='{vio_tape.find('address').get('controller')}']"
    )
    assert vio_ctl.get("model") == "lsilogic"
    assert vio_tape.find("address").get("target") == "0"  # LSI: the SCSI id is `unit`


def test_read_back_is_the_model():
    done = complete(guest(*ALL))
    back = read_domain(to_string(render_domain(done, "qemu")))
    assert back.devices == done.devices
    for was, now in zip(done.devices, back.devices, strict=True):
        if isinstance(was, ScsiPassthroughDevice):
            assert (now.host, now.scsi_type, now.identity, now.location) == (
                was.host,
                was.scsi_type,
                was.identity,
                was.location,
            )


def test_status_d_round_trips():
    done = read_domain(domain_xml(guest(*ALL)))
    text = format_statements(done)
    assert "tape:avio_stor:0,4,2:attach_path:3:0:0:0" in text.splitlines()
    again = parse_config_text(text, "tapes").guest
    assert [d.format() for d in again.devices] == [d.format() for d in done.devices]


def test_status_rows_show_attach():
    done = read_domain(domain_xml(guest(*ALL)))
    rows = format_details(GuestStatus(done, 1, "Off")).splitlines()
    row = next(r for r in rows if r.startswith("changer"))
    assert row.split() == ["changer", "scsi", "0", "0", "0", "1", "0", "attach", "/dev/sg2"]


def test_tape_and_disk_share_an_hba_and_never_a_target():
    done = complete(guest("tape:avio_stor::attach_path:3:0:0:0", "disk:avio_stor::disk:/dev/sdb"))
    places = [(d.bus, d.slot, d.target) for d in done.devices]
    assert places == [(0, 0, 0), (0, 0, 1)]


@pytest.mark.parametrize(
    ("texts", "words"),
    [
        ((TAPE_AVIO, "disk:avio_stor:0,4,2:disk:/dev/sdb"), "already used"),
        ((TAPE_AVIO, "tape:avio_stor::attach_path:3:0:0:0"), "already attached in this guest"),
        (("tape:scsi:0,1,0:attach:/dev/nst0", "disk:avio_stor:0,1,1:disk:/dev/sdb"), "slot 1"),
    ],
)
def test_refused_guests(texts, words):
    with pytest.raises(HpvmError, match=words):
        check_guest(guest(*texts))


@pytest.mark.parametrize(
    ("text", "scsi_type", "words"),
    [
        (TAPE_AVIO, 0, "type 0 \\(disk\\), not a tape"),
        (CHANGER_VIO, 1, "type 1 \\(tape\\), not a changer"),
        (BURNER_AVIO, 8, "not a burner \\(type 5\\)"),
    ],
)
def test_type_must_match(text, scsi_type, words):
    dev = resolve(parse_statement(text, None), "5:0:0:0", scsi_type, None)
    with pytest.raises(HpvmError, match=words):
        dev.check()


def test_a_device_another_guest_has_is_refused():
    claims = HostClaims(attached={"wwid:naa.5333333000001f41": "other"})
    with pytest.raises(HpvmError, match="already attached to guest 'other'"):
        check_guest(guest(TAPE_VIO), claims)
    check_guest(guest(CHANGER_VIO), claims)


def test_unresolved_device_is_not_rendered():
    g = Guest("g", devices=[stmt(TAPE_VIO, facts=False)])
    with pytest.raises(HpvmError, match="not been resolved"):
        render_domain(complete(g))


def defined() -> Guest:
    return read_domain(domain_xml(guest(DISK_AVIO, TAPE_AVIO, TAPE_VIO)))


def test_plan_attach_on_an_existing_hba():
    _, (change,) = plan_modify(defined(), [stmt(BURNER_AVIO)], [], [])
    assert change.action is Action.ATTACH and change.controller_xml is None
    assert "<hostdev" in change.xml and "scsi_host4" in change.xml
    assert change.live_refusal is None


def test_plan_attach_on_a_new_hba():
    _, (change,) = plan_modify(
        defined(), [stmt("burner:avio_stor:0,6,0:attach_path:4:0:1:0")], [], []
    )
    assert change.controller_xml is not None and "virtio-scsi" in change.controller_xml


@pytest.mark.parametrize(
    "text",
    [
        "tape:avio_stor::attach_path:3:0:0:0",
        "tape:avio_stor:0,4,2:attach_path:3:0:0:0",
        "tape:scsi::attach:/dev/tape/by-id/scsi-35333333000001f41-nst",
    ],
)
def test_plan_detach(text):
    after, (change,) = plan_modify(defined(), [], [parse_statement(text, None)], [])
    assert change.action is Action.DETACH and "<hostdev" in change.xml
    assert len(after.devices) == 2


def test_vio_attach_is_not_live():
    _, (change,) = plan_modify(defined(), [stmt(CHANGER_VIO)], [], [])
    assert "cannot hot-plug" in change.live_refusal


def test_modify_hba_refused_while_devices_are_attached_there():
    with pytest.raises(HpvmError, match="-m hba is refused while attached devices sit"):
        plan_modify(defined(), [], [], [parse_statement("hba:avio_stor:0,4,0:disk:/dev/sdc", None)])
    # an HBA with no attached device: -m hba changes it
    g = read_domain(domain_xml(guest("disk:avio_stor:0,5,0:disk:/dev/sdb", TAPE_AVIO)))
    _, changes = plan_modify(
        g, [], [], [parse_statement("hba:avio_stor:0,5,0:disk:/dev/sdc", None)]
    )
    assert [c.action for c in changes] == [Action.DETACH, Action.ATTACH]
