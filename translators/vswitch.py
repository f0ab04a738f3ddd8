"""vswitches (`hpvmnet`): model, libvirt network XML with our metadata, HPVM layouts (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from translators import limits
from translators.errors import HpvmError
from translators.grammar import VSWITCH_NAME
from translators.layout import table
from translators.readback import interface_taps, read_domain
from translators.text import ASCII_NUMBER

NS = "urn:avio-kvm:vswitch:1"
NS_PREFIX = "vsw"


@dataclass
class VSwitch:
    """A vswitch: a Linux bridge of the same name, optionally with a host uplink (PPA)."""

    name: str
    number: int
    uplink: str | None = None
    up: bool = False  # started with -b (restored at boot), halted with -h
    vlans: dict[int, int] = field(default_factory=dict)  # port id -> VLAN id

    def vlan_of(self, portid: int | None) -> int | None:
        """The VLAN of a port (None: the port carries untagged traffic only)."""
        return self.vlans.get(portid) if portid is not None else None


@dataclass(frozen=True)
class PortRule:
    """What one running guest NIC's tap must enforce."""

    tap: str
    vlan: int | None


def port_rules(domain_xml: str, vswitches: dict[str, VSwitch]) -> list[PortRule]:
    """The rule of every NIC of a running domain that sits on one of `vswitches`."""
    guest = read_domain(domain_xml)
    taps = interface_taps(domain_xml)
    return [
        PortRule(taps[nic.mac], vswitches[nic.vswitch].vlan_of(nic.portid))
        for nic in guest.networks
        if nic.vswitch in vswitches and nic.mac in taps
    ]


def check_name(name: str) -> None:
    if not VSWITCH_NAME.fullmatch(name):
        raise HpvmError(f"bad vswitch name '{name}' (at most 15 letters, digits, '_', '.', '-')")


def parse_port_vlan(text: str) -> tuple[int, int | None]:
    """`portid:N:vlanid:M` or `portid:N:vlanid:none` -> (N, M or None)."""
    parts = text.split(":")
    if len(parts) != 4 or parts[0].lower() != "portid" or parts[2].lower() != "vlanid":
        raise HpvmError("-u takes portid:N:vlanid:M (or vlanid:none)", text)
    port = _number(parts[1])
    if port is None or port not in limits.PORT_IDS:
        raise HpvmError(f"port id must be 0-{limits.PORT_IDS.stop - 1}", text)
    if parts[3].lower() == "none":
        return port, None
    vlan = _number(parts[3])
    if vlan is None or vlan not in limits.VLAN_IDS:
        raise HpvmError(f"VLAN id must be 1-{limits.VLAN_IDS.stop - 1} or none", text)
    return port, vlan


def _number(text: str) -> int | None:
    """ASCII digits (a few) -> int; anything else (Unicode digits, 5,000 digits) -> None."""
    return int(text) if ASCII_NUMBER.fullmatch(text) and len(text) <= 6 else None


def render_network(v: VSwitch, uuid: str | None = None) -> str:
    """The libvirt network (bridge mode) that keeps a vswitch's definition.

    `uuid`: the network's when it is defined already (a redefinition keeps it).
    """
    net = etree.Element("network")
    etree.SubElement(net, "name").text = v.name
    if uuid:
        etree.SubElement(net, "uuid").text = uuid
    meta = etree.SubElement(
        etree.SubElement(net, "metadata"),
        f"{{{NS}}}vswitch",
        nsmap={NS_PREFIX: NS},
        number=str(v.number),
        state="up" if v.up else "down",
    )
    if v.uplink:
        meta.set("uplink", v.uplink)
    for port, vlan in sorted(v.vlans.items()):
        etree.SubElement(meta, f"{{{NS}}}port", id=str(port), vlan=str(vlan))
    etree.SubElement(net, "forward", mode="bridge")
    etree.SubElement(net, "bridge", name=v.name)
    return etree.tostring(net, pretty_print=True, encoding="unicode")


def read_network(xml: str) -> VSwitch | None:
    """A vswitch from a libvirt network XML, or None for networks that are not ours."""
    net = etree.fromstring(xml.encode())
    meta = net.find(f"metadata/{{{NS}}}vswitch")
    if meta is None:
        return None
    return VSwitch(
        name=net.findtext("name"),
        number=int(meta.get("number", "0")),
        uplink=meta.get("uplink"),
        up=meta.get("state") == "up",
        vlans={int(p.get("id")): int(p.get("vlan")) for p in meta.iterfind(f"{{{NS}}}port")},
    )


@dataclass
class SwitchRow:
    vswitch: VSwitch
    state: str  # "Up" / "Down"
    mac: str | None  # uplink MAC, aa:bb:..
    ip: str | None  # the uplink's IPv4 address on the host


@dataclass
class PortRow:
    port: int
    state: str  # "Active" (a running guest uses it), "Reserved", "Inactive"
    adaptor: str
    vlan: int | None
    reserved: int  # guests configured on the port
    active_vm: str


SWITCH_TABLE = [
    ("Name", 8, False),
    ("Number", 6, True),
    ("State", 7, False),
    ("Mode", 9, False),
    ("NamePPA", 8, False),
    ("MAC Address", 14, False),
    ("IP Address", 15, False),
]


def format_switches(rows: list[SwitchRow]) -> str:
    """`hpvmnet`: the vswitch table."""
    body = []
    for row in rows:
        v = row.vswitch
        mac = "0x" + row.mac.replace(":", "") if (v.uplink and row.mac) else "N/A"
        body.append(
            [v.name, str(v.number), row.state, "Shared", v.uplink or "", mac, row.ip or "N/A"]
        )
    return "\n".join(table(SWITCH_TABLE, body)) + "\n"


def format_ports(rows: list[PortRow]) -> str:
    """`hpvmnet -S name`: the `[Port Configuration Details]` table."""
    lines = [
        "[Port Configuration Details]",
        "Port    Port         Port     Untagged Number of    Active VM",
        "Number  State        Adaptor  VLANID   Reserved VMs",
        "======= ============ ======== ======== ============ ============",
    ]
    for r in rows:
        cells = [
            str(r.port).ljust(7),
            r.state.ljust(12),
            r.adaptor.ljust(8),
            ("none" if r.vlan is None else str(r.vlan)).ljust(8),
            str(r.reserved).ljust(12),
            r.active_vm,
        ]
        lines.append(" ".join(cells).rstrip())
    return "\n".join(lines) + "\n"
