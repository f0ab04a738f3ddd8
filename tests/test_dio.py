"""PCI pass-through (HPVM DIO), host-free: grammar, rules, XML both ways, status, plans,
the pool's record and table, and bad input (one line, exit 2)."""

from __future__ import annotations

import pytest
from lxml import etree

from agent.cli import hpvmcreate, hpvmhwmgmt
from tests.conftest import compare_golden
from translators import diopool
from translators.allocate import complete
from translators.devices.dio import DioDevice, parse_function
from translators.diopool import Member, Pool
from translators.errors import HpvmError
from translators.grammar import parse_statement
from translators.model import Guest
from translators.plan import Action, plan_modify
from translators.readback import read_domain
from translators.render import render_domain, to_string
from translators.status import GuestStatus, format_details, format_statements
from translators.validate import HostClaims, check_guest

VF = "0000:3b:02.1"
PF = "0000:00:03.0"
GPU = "0000:65:00.0"
PF_MAC = "52:54:00:12:34:57"


def dio(text: str, host: str | None = None, role: str | None = None, hwmac=None) -> DioDevice:
    device = parse_statement(text)
    assert isinstance(device, DioDevice)
    if host:
        device.resolve(host, role, hwmac)
    return device


def guest() -> Guest:
    """A VF NIC with a MAC, a physical NIC (its own MAC), a function that is no NIC."""
    return Guest(
        "dioguest",
        os_type="linux",
        networks=[parse_statement("network:avio_lan:0,1:vswitch:sw1")],
        devices=[
            dio("network:dio:0,2,0x2A0000000011:hwpath:vf1", VF, "vf"),
            dio("network:dio:0,3:hwpath:0000:00:03.0", PF, "nic", PF_MAC),
            dio("network:dio::hwpath:gpu0", GPU, "other"),
        ],
    )


def xml() -> str:
    return to_string(render_domain(complete(guest()), "qemu"))


# -- grammar -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("network:dio:0,5:hwpath:0000:00:03.0", "network:dio:0,5:hwpath:0000:00:03.0"),
        ("NETWORK:DIO::HWPATH:00:03.0", "network:dio::hwpath:0000:00:03.0"),
        (
            "network:dio:1,2,2a-00-00-00-00-01:hwpath:lan_a",
            "network:dio:1,2,0x2A0000000001:hwpath:lan_a",
        ),
        ("network:dio:,,:hwpath:ABCD:EF:1F.7", "network:dio::hwpath:abcd:ef:1f.7"),
    ],
)
def test_statements_parse_and_format(text, canonical):
    assert parse_statement(text).format() == canonical


@pytest.mark.parametrize(
    "text",
    [
        "network:dio:0,5:hwpath:",
        "network:dio:0,5:hwpath:00:20.0",  # slot > 0x1f
        "network:dio:0,5:hwpath:00:03.8",  # function > 7
        "network:dio:0,5:hwpath:9lan",  # a label starts with a letter
        "network:dio:0,5:vswitch:sw1",
        "network:dio:0,5",
        "network:dio:0,5,6,7:hwpath:lan",
        "network:dio:0,5,01-02-03-04-05-06:hwpath:lan",  # multicast
        "network:dio:9,0:hwpath:lan",
    ],
)
def test_bad_statements_are_one_line_exit_2(cli, text):
    result = cli(hpvmcreate, ["-P", "g", "-a", text, "--print-xml"])
    assert result.code == 2 and result.out == ""
    assert result.err.count("\n") == 1 and result.err.startswith("hpvmcreate: error: ")
    assert "Traceback" not in result.err


def test_a_dio_statement_is_not_a_vswitch_nic():
    assert type(parse_statement("network:dio::hwpath:lan0")) is DioDevice
    assert type(parse_statement("network:avio_lan::vswitch:lan0")) is not DioDevice


def test_pci_addresses():
    assert parse_function("00:1f.3") == "0000:00:1f.3"
    assert parse_function("0000:00:1F.3") == "0000:00:1f.3"
    assert parse_function("0000:00:1f") is None and parse_function("lan0") is None


# -- rules -------------------------------------------------------------------------------------
def test_a_function_that_is_no_nic_takes_no_mac():
    bad = Guest("g", devices=[dio("network:dio:,,0x2A0000000001:hwpath:gpu", GPU, "other")])
    with pytest.raises(HpvmError, match="not a network function"):
        check_guest(bad)


def test_a_physical_nic_keeps_its_own_mac():
    bad = Guest("g", devices=[dio("network:dio:,,0x2A0000000001:hwpath:x", PF, "nic", PF_MAC)])
    with pytest.raises(HpvmError, match="physical NIC: the guest sees its own MAC 52-54-00"):
        check_guest(bad)
    fine = Guest("g", devices=[dio("network:dio:,,0x525400123457:hwpath:x", PF, "nic", PF_MAC)])
    check_guest(fine)  # its own MAC, though not locally administered


def test_one_function_one_guest():
    twice = Guest(
        "g",
        devices=[
            dio("network:dio::hwpath:a", VF, "vf"),
            dio(f"network:dio::hwpath:{VF}", VF, "vf"),
        ],
    )
    with pytest.raises(HpvmError, match=f"{VF} is already given by 'network:dio::hwpath:a'"):
        check_guest(twice)
    claims = HostClaims(functions={VF: "other"})
    with pytest.raises(HpvmError, match="already given to guest 'other'"):
        check_guest(Guest("g", devices=[dio("network:dio::hwpath:a", VF, "vf")]), claims)
    check_guest(Guest("other", devices=[dio("network:dio::hwpath:a", VF, "vf")]), claims)


def test_a_vf_mac_is_no_other_nics():
    clash = Guest(
        "g",
        networks=[parse_statement("network:avio_lan:,,0x2A0000000011:vswitch:sw1")],
        devices=[dio("network:dio:,,0x2A0000000011:hwpath:a", VF, "vf")],
    )
    with pytest.raises(HpvmError, match="already used by 'network:avio_lan"):
        check_guest(clash)


# -- XML ---------------------------------------------------------------------------------------
def test_golden_xml():
    compare_golden("dio.xml", xml())


def test_vf_is_a_hostdev_interface_with_its_mac_others_pci_hostdevs():
    domain = etree.fromstring(xml().encode())
    (vf,) = domain.findall("devices/interface[@type='hostdev']")
    assert vf.get("managed") == "no"
    assert vf.find("mac").get("address") == "2a:00:00:00:00:11"
    assert vf.find("source/address").attrib == {
        "type": "pci",
        "domain": "0x0000",
        "bus": "0x3b",
        "slot": "0x02",
        "function": "0x1",
    }
    pf, gpu = domain.findall("devices/hostdev")
    assert {pf.get("managed"), gpu.get("managed")} == {"no"}
    assert pf.find("source/address").get("slot") == "0x03"
    assert pf.find("address").get("slot") == "0x13"  # HPVM bus 0 slot 3
    assert gpu.find("mac") is None


def test_read_back_is_the_identity():
    done = complete(guest())
    back = read_domain(xml())
    assert back.devices == done.devices
    for old, new in zip(done.of_kind(DioDevice), back.of_kind(DioDevice), strict=True):
        assert (new.host, new.role, new.hwmac, new.mac) == (old.host, old.role, old.hwmac, old.mac)
    assert [d.hwpath for d in back.of_kind(DioDevice)] == ["vf1", PF, "gpu0"]


def test_a_hand_written_hostdev_reads_as_dio():
    element = """<domain type='kvm'><name>h</name><devices>
      <hostdev mode='subsystem' type='pci' managed='yes'>
        <source><address domain='0x0000' bus='0x65' slot='0x00' function='0x0'/></source>
      </hostdev></devices></domain>"""
    (device,) = read_domain(element).devices
    assert isinstance(device, DioDevice) and device.hwpath == GPU and device.role == "other"


def test_status_rows_and_statements_round_trip():
    done = complete(guest())
    details = format_details(GuestStatus(done, 1, "Off"))
    assert "hwpath    dio        vf1" in details
    assert "hwpath    dio        0000:00:03.0           0   3   0 52-54-00-12-34-57" in details
    statements = format_statements(done)
    again = [
        parse_statement(line) for line in statements.splitlines() if line.startswith("network:dio")
    ]
    assert [d.format() for d in again] == [d.format() for d in done.of_kind(DioDevice)]


# -- plans -------------------------------------------------------------------------------------
def test_plan_attach_and_detach_by_label_or_address():
    done = complete(guest())
    _, changes = plan_modify(
        done, [dio("network:dio:0,6:hwpath:vf2", "0000:3b:02.2", "vf")], [], []
    )
    (change,) = changes
    assert change.action is Action.ATTACH and change.alias == "ua-dio-0-6"
    assert 'type="hostdev"' in change.xml and 'managed="no"' in change.xml
    # -d by the address of a function given by label: the same function
    _, changes = plan_modify(done, [], [dio(f"network:dio::hwpath:{VF}", VF, "vf")], [])
    assert [(c.action, c.alias) for c in changes] == [(Action.DETACH, "ua-dio-0-2")]
    with pytest.raises(HpvmError, match="no such device"):
        plan_modify(done, [], [dio("network:dio::hwpath:0000:3b:02.7", "0000:3b:02.7", "vf")], [])


# -- the pool ----------------------------------------------------------------------------------
def pool() -> Pool:
    return Pool(
        [
            Member(PF, "0x8086", "0x10d3", "nic", "e1000e", "lan0", PF_MAC, "3"),
            Member(VF, "0x8086", "0x1520", "vf", "igbvf", None, None, "41", "0000:3b:00.0"),
        ]
    )


def test_pool_record_round_trips_and_finds_by_label_or_address():
    again = diopool.loads(diopool.dumps(pool()))
    assert again == pool()
    assert again.find("lan0").address == PF and again.find("00:03.0").address == PF
    assert again.find("lan1") is None and diopool.loads("") == Pool()
    with pytest.raises(ValueError):
        diopool.loads('{"version": 2}')


def test_pool_refuses_a_second_entry_or_label():
    p = pool()
    with pytest.raises(HpvmError, match="already in the DIO pool"):
        p.add(Member(PF, "0x8086", "0x10d3", "nic"))
    with pytest.raises(HpvmError, match=r"label 'lan0' is already used by 0000:00:03\.0"):
        p.add(Member("0000:00:04.0", "0x8086", "0x10d3", "nic", label="lan0"))


def test_pool_table_layout():
    text = diopool.format_table(pool(), {PF: "vfio-pci", VF: None}, {PF: "aviotest"})
    assert text == (
        "[DIO Pool]\n"
        "H/W Path     Label        Vendor:Device Driver     Group Guest\n"
        "============ ============ ============= ========== ===== ====================\n"
        "0000:00:03.0 lan0         8086:10d3     vfio-pci       3 aviotest\n"
        "0000:3b:02.1              8086:1520     (none)        41\n"
    )


# -- commands: bad input and the pool on guest creation ---------------------------------------
@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["-l"], "the following arguments are required: -p"),
        (["-p", "scsi", "-l"], "unknown pool 'scsi'"),
        (["-p", "dio", "-a", "0000:00:3.0"], "bad PCI address"),
        (["-p", "dio", "-a", "00:03.0", "-L", "9x"], "bad label"),
        (["-p", "dio", "-a", "00:03.0", "-n", "0"], "bad VF count"),
        (["-p", "dio", "-a", "00:03.0", "-n", "٣"], "bad VF count"),
        (["-p", "dio", "-l", "-L", "x"], "-L and -n go with -a"),
        (["-p", "dio", "-a", "00:03.0", "-l"], "not allowed with argument"),
        (["-p", "dio", "-d", "a:b"], "bad label"),
    ],
)
def test_hwmgmt_bad_input_is_one_line_exit_2(cli, tmp_path, monkeypatch, argv, says):
    monkeypatch.setenv("AVIO_STATE_DIR", str(tmp_path))
    result = cli(hpvmhwmgmt, argv)
    assert result.code == 2, result.err
    assert result.err.count("\n") == 1 and says in result.err
    assert not (tmp_path / "dio-pool.json").exists()


def test_only_pool_members_go_to_guests(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("AVIO_STATE_DIR", str(tmp_path))
    argv = ["-P", "g", "-a", "network:dio:0,4:hwpath:lan0", "--print-xml"]
    result = cli(hpvmcreate, argv)
    assert result.code == 2 and "lan0 is not in the DIO pool" in result.err
    (tmp_path / "dio-pool.json").write_text(diopool.dumps(pool()))
    (tmp_path / "dio-pool.json").chmod(0o644)
    result = cli(hpvmcreate, argv)
    assert result.code == 0, result.err
    hostdev = etree.fromstring(result.out.encode()).find("devices/hostdev")
    assert hostdev.find("source/address").get("slot") == "0x03"
    assert 'hwmac="52:54:00:12:34:57"' in result.out
