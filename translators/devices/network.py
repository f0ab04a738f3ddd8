"""Network: `network:adapter:bus,slot,mac:vswitch:name[:portid:N]` (a vNIC on a vswitch).

AVIO (`avio_lan`) is virtio-net, VIO (`lan`) an emulated e1000; each NIC
takes a PCI slot of its own and a port of its vswitch (a Linux bridge).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from itertools import count
from typing import TYPE_CHECKING, cast

from lxml import etree

from translators import limits, pci
from translators.devices.adapter import Adapter
from translators.devices.base import (
    SUB,
    Action,
    Device,
    E,
    Layout,
    check_range,
    hpvm_slot,
    join_address,
    number_text,
    parse_int,
    pci_address,
    place_in_free_slot,
    statement_of,
)
from translators.errors import HpvmError, Warnings

if TYPE_CHECKING:
    from translators.model import Guest
    from translators.validate import HostClaims

NETWORK_ADAPTERS = {"avio_lan": Adapter.AVIO_LAN, "aviolan": Adapter.AVIO_LAN, "lan": Adapter.LAN}
NIC_MODELS = {Adapter.AVIO_LAN: "virtio", Adapter.LAN: "e1000"}
VSWITCH_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}")
MAC_DASHED = re.compile(r"[0-9a-fA-F]{2}(-[0-9a-fA-F]{2}){5}")
MAC_HEX = re.compile(r"0[xX][0-9a-fA-F]{12}")


@dataclass
class NetworkDevice(Device):
    """One `network:adapter:bus,slot,mac:vswitch:name[:portid:N]` statement."""

    KIND = "network"
    SECTION = "network"
    IDENTITY = ("vswitch", "bus", "slot", "mac", "portid")
    ADDRESS = ("bus", "slot", "mac")
    ELEMENT = "interface"
    PLACE = ("bus", "slot")
    PLACE_NEEDED = "-m needs the NIC's bus,slot"
    ON_VSWITCH = True

    adapter: Adapter
    vswitch: str
    bus: int | None = None
    slot: int | None = None
    mac: str | None = None  # canonical lowercase aa:bb:cc:dd:ee:ff
    portid: int | None = None

    # -- statements ----------------------------------------------------------
    @classmethod
    def claims(cls, fields: list[str]) -> bool:
        return fields[0].lower() == "network"

    @classmethod
    def parse(cls, statement: str, warnings: Warnings | None) -> NetworkDevice:
        fields = statement.split(":")
        if len(fields) == 4 and fields[2].lower() == "vswitch":
            # HPVM 3.5 accepted `network:lan:vswitch:NAME` with no address field.
            fields = [fields[0], fields[1], "", *fields[2:]]
            if warnings is not None:
                normal = ":".join(fields)
                warnings.add(f"read '{statement}' as '{normal}' (missing address field)")
        if len(fields) not in (5, 7):
            raise HpvmError(
                "network statement needs network:adapter:bus,slot,mac:vswitch:name[:portid:N]",
                statement,
            )
        _, adapter_kw, address, backing, vswitch = fields[:5]
        adapter = NETWORK_ADAPTERS.get(adapter_kw.lower())
        if adapter is None:
            raise HpvmError(f"unknown network adapter '{adapter_kw}'", statement)
        if backing.lower() != "vswitch":
            raise HpvmError(f"network backing must be 'vswitch', not '{backing}'", statement)
        if not VSWITCH_NAME.fullmatch(vswitch):
            raise HpvmError(f"bad vswitch name '{vswitch}'", statement)
        portid = None
        if len(fields) == 7:
            if fields[5].lower() != "portid":
                raise HpvmError(f"expected 'portid', found '{fields[5]}'", statement)
            portid = parse_int(fields[6], "port id", statement)
            if portid is None:
                raise HpvmError("'portid' needs a number", statement)
        parts = address.split(",") if address.strip() else []
        if len(parts) > 3:
            raise HpvmError(f"address '{address}' has more than bus,slot,mac", statement)
        parts += [""] * (3 - len(parts))
        bus = parse_int(parts[0], "PCI bus", statement)
        slot = parse_int(parts[1], "PCI slot", statement)
        mac = normalise_mac(parts[2].strip(), statement) if parts[2].strip() else None
        return cls(adapter, vswitch, bus, slot, mac, portid)

    def format(self) -> str:
        mac = "" if self.mac is None else "0x" + self.mac.replace(":", "").upper()
        address = join_address(self.bus, self.slot, mac or None)
        text = f"network:{self.adapter}:{address}:vswitch:{self.vswitch}"
        if self.portid is not None:
            text += f":portid:{self.portid}"
        return text

    # -- rules ---------------------------------------------------------------
    def check(self) -> None:
        stmt = statement_of(self)
        if self.adapter is Adapter.AVIO_LAN and self.vswitch == limits.LOCALNET:
            raise HpvmError("avio_lan needs a vswitch with a physical uplink, not localnet", stmt)
        check_range(self.bus, limits.PCI_BUSES[self.adapter], "PCI bus", stmt)
        check_range(self.slot, limits.PCI_SLOTS, "PCI slot", stmt)
        check_range(self.portid, limits.PORT_IDS, "port id", stmt)
        if self.mac is not None:
            check_mac(self.mac, stmt)

    @classmethod
    def check_guest(cls, devices: list[Device], guest: Guest, claims: HostClaims) -> None:
        nics = cast(list[NetworkDevice], devices)
        _check_macs(guest, nics, claims)
        _check_ports(guest, nics, claims)
        for nic in nics:
            if nic.adapter is Adapter.AVIO_LAN and nic.vswitch in claims.local_vswitches:
                raise HpvmError(
                    f"vswitch {nic.vswitch} has no uplink (like localnet): avio_lan needs one",
                    statement_of(nic),
                )

    # -- allocation ----------------------------------------------------------
    @classmethod
    def complete(
        cls, devices: list[Device], layout: Layout, guest: Guest, claims: HostClaims
    ) -> None:
        nics = cast(list[NetworkDevice], devices)
        for index, nic in enumerate(nics):
            place_in_free_slot(nic, layout)
            if nic.mac is None:
                nic.mac = _new_mac(guest.name, index, nics, claims)
        for nic in nics:
            if nic.portid is None:
                nic.portid = _new_port(guest.name, nic, nics, claims)

    # -- libvirt XML ---------------------------------------------------------
    @property
    def alias(self) -> str:
        return f"ua-net-{self.bus}-{self.slot}"

    def render(self) -> etree._Element:
        """A vNIC on the vswitch's Linux bridge."""
        assert self.addressed, self
        assert self.bus is not None and self.slot is not None
        iface = E("interface", type="bridge")
        SUB(iface, "mac", address=self.mac)
        SUB(iface, "source", bridge=self.vswitch)
        SUB(iface, "model", type=NIC_MODELS[self.adapter])
        SUB(iface, "alias", name=self.alias)
        pci_address(iface, *pci.to_pci(self.bus, self.slot))
        return iface

    def metadata_facts(self) -> dict[str, str]:
        """The vswitch port id."""
        return {} if self.portid is None else {"portid": str(self.portid)}

    @classmethod
    def read(cls, element: etree._Element, item: etree._Element | None) -> NetworkDevice:
        return _read_interface(element, item)

    # -- plans ---------------------------------------------------------------
    def modified(self, old: Device) -> tuple[Device, Action]:
        old = cast(NetworkDevice, old)
        new = replace(
            old,
            vswitch=self.vswitch,
            requested=self.requested,
            text=self.text,
            mac=self.mac or old.mac,
            portid=self.portid if self.portid is not None else None,
        )
        return new, Action.UPDATE if new.mac == old.mac else Action.ATTACH

    def forget_identity(self) -> None:
        """The clone's NIC: same adapter, slot and vswitch, a new MAC and port."""
        self.mac = None
        self.portid = None
        self.text = None
        self.requested = self.format()

    # -- hpvmstatus ----------------------------------------------------------
    def status_row(self) -> list[str]:
        return [
            "vswitch",
            str(self.adapter),
            self.vswitch,
            number_text(self.portid),
            number_text(self.bus),
            number_text(self.slot),
            "0",
            dashed_mac(self.mac) if self.mac else "",
        ]

    def status_lines(self) -> list[str]:
        return [
            "Physical Storage type :vswitch",
            f"Guest Adaptor type :{self.adapter}",
            f"Backing :{self.vswitch}",
            f"Vswitch Port :{number_text(self.portid)}",
            f"Bus :{number_text(self.bus)}",
            f"Device :{number_text(self.slot)}",
            "Function :0",
            f"Mac Address :{dashed_mac(self.mac) if self.mac else ''}",
        ]


def normalise_mac(text: str, statement: str) -> str:
    """`aa-bb-cc-00-11-22` or `0xAABBCC001122` -> `aa:bb:cc:00:11:22`."""
    if MAC_DASHED.fullmatch(text):
        digits = text.replace("-", "")
    elif MAC_HEX.fullmatch(text):
        digits = text[2:]
    else:
        raise HpvmError(
            f"bad MAC address '{text}' (use aa-bb-cc-dd-ee-ff or 0xaabbccddeeff)", statement
        )
    digits = digits.lower()
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def dashed_mac(mac: str) -> str:
    """`aa:bb:..` -> `aa-bb-..` (the layout of `hpvmstatus` tables)."""
    return mac.replace(":", "-")


def check_mac(mac: str, statement: str) -> None:
    """A guest MAC: locally administered, unicast, not all zeros."""
    first = int(mac[:2], 16)
    if int(mac.replace(":", ""), 16) == 0:
        raise HpvmError("MAC address 00-00-00-00-00-00 is not allowed", statement)
    if first & 0x01:
        raise HpvmError(f"MAC {dashed_mac(mac)} is a multicast address", statement)
    if not first & 0x02:
        raise HpvmError(
            f"MAC {dashed_mac(mac)} is not locally administered (bit 0x02 of the first octet)",
            statement,
        )


def _check_macs(guest: Guest, nics: list[NetworkDevice], claims: HostClaims) -> None:
    seen: dict[str, NetworkDevice] = {}
    for dev in nics:
        if dev.mac is None:
            continue
        if dev.mac in seen:
            raise HpvmError(
                f"MAC {dashed_mac(dev.mac)} is already used by '{statement_of(seen[dev.mac])}'",
                statement_of(dev),
            )
        seen[dev.mac] = dev
        owner = claims.macs.get(dev.mac)
        if owner is not None and owner != f"guest {guest.name}":
            raise HpvmError(
                f"MAC {dashed_mac(dev.mac)} is already used by {owner}", statement_of(dev)
            )


def _check_ports(guest: Guest, nics: list[NetworkDevice], claims: HostClaims) -> None:
    """A vswitch port belongs to one NIC of one guest."""
    seen: dict[tuple[str, int], NetworkDevice] = {}
    for nic in nics:
        if nic.portid is None:
            continue
        key = (nic.vswitch, nic.portid)
        if key in seen:
            raise HpvmError(
                f"port {nic.portid} of vswitch {nic.vswitch} is already used by "
                f"'{statement_of(seen[key])}'",
                statement_of(nic),
            )
        seen[key] = nic
        owner = claims.ports.get(nic.vswitch, {}).get(nic.portid)
        if owner is not None and owner != guest.name:
            raise HpvmError(
                f"port {nic.portid} of vswitch {nic.vswitch} belongs to guest '{owner}'",
                statement_of(nic),
            )


def _new_mac(name: str, index: int, nics: list[NetworkDevice], claims: HostClaims) -> str:
    """A locally administered unicast MAC derived from the guest name and NIC position."""
    taken = set(claims.macs) | {n.mac for n in nics if n.mac}
    for attempt in count():
        digest = bytearray(hashlib.sha256(f"{name}/{index}/{attempt}".encode()).digest()[:6])
        digest[0] = (digest[0] & 0xFC) | 0x02
        mac = ":".join(f"{b:02x}" for b in digest)
        if mac not in taken:
            return mac
    raise AssertionError("unreachable")


def _new_port(name: str, nic: NetworkDevice, nics: list[NetworkDevice], claims: HostClaims) -> int:
    """The lowest port id >= 1 on the NIC's vswitch that no other port uses."""
    taken = {p for p, owner in claims.ports.get(nic.vswitch, {}).items() if owner != name}
    taken |= {n.portid for n in nics if n.vswitch == nic.vswitch and n.portid is not None}
    for port in limits.PORT_IDS:
        if port >= 1 and port not in taken:
            return port
    raise HpvmError(f"no free port left on vswitch {nic.vswitch}", statement_of(nic))


def _read_interface(iface: etree._Element, item: etree._Element | None) -> NetworkDevice:
    model = iface.find("model")
    adapter = (
        Adapter.AVIO_LAN if model is not None and model.get("type") == "virtio" else Adapter.LAN
    )
    source = iface.find("source")
    vswitch = ""
    if source is not None:
        vswitch = source.get("bridge") or source.get("network") or source.get("dev") or ""
    mac = iface.find("mac")
    bus, slot = hpvm_slot(iface)
    portid = item.get("portid") if item is not None else None
    return NetworkDevice(
        adapter=adapter,
        vswitch=vswitch,
        bus=bus,
        slot=slot,
        mac=mac.get("address").lower() if mac is not None else None,
        portid=int(portid) if portid is not None else None,
        requested=item.get("statement") if item is not None else None,
    )
