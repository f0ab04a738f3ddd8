"""PCI pass-through (HPVM direct I/O, "DIO"): `network:dio:bus,slot,mac:hwpath:<function>`.

The function is a host PCI address (`DDDD:BB:DD.F`, or `BB:DD.F` in domain
0000) or a label of the DIO pool (`hpvmhwmgmt -p dio`). The spelling is ours:
HP's own DIO syntax is in no source we have.

The host layer resolves what this pure kind cannot know (`resolve`): the PCI
address behind a label, whether the function is an SR-IOV virtual function,
another NIC or not a NIC at all, and a physical NIC's own MAC. It renders:

- an SR-IOV VF: `<interface type='hostdev' managed='no'>` with the guest's MAC
  (libvirt sets it on the VF through its PF);
- any other function, a NIC or not: `<hostdev mode='subsystem' type='pci'
  managed='no'>`. libvirt 9.0 refuses `<interface type='hostdev'>` on anything
  but a VF, and a physical NIC keeps the MAC of its own NVM: its statement's
  MAC, if given, must be that one.

`managed='no'`: the pool keeps its members on vfio-pci, so libvirt must not give
the function back to its host driver when the guest stops.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from lxml import etree

from translators import limits, pci
from translators.devices.adapter import Adapter
from translators.devices.base import (
    SUB,
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
    xml_int,
)
from translators.devices.network import NetworkDevice, check_mac, dashed_mac, normalise_mac
from translators.errors import HpvmError, Warnings

if TYPE_CHECKING:
    from collections.abc import Callable

    from translators.model import Guest
    from translators.validate import HostClaims

PCI_FUNCTION = re.compile(
    r"(?:(?P<domain>[0-9a-fA-F]{4}):)?(?P<bus>[0-9a-fA-F]{2}):(?P<slot>[0-1][0-9a-fA-F])"
    r"\.(?P<function>[0-7])"
)
#: A pool label: a letter first, so it never reads as a PCI address.
LABEL = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,31}")
ROLES = ("vf", "nic", "other")  # an SR-IOV VF NIC, another NIC, not a NIC


def parse_function(text: str) -> str | None:
    """`0000:00:02.0` for `0000:00:02.0` or `00:02.0` (any case), else None."""
    match = PCI_FUNCTION.fullmatch(text.strip())
    if match is None:
        return None
    domain = match.group("domain") or "0000"
    return f"{domain}:{match.group('bus')}:{match.group('slot')}.{match.group('function')}".lower()


def check_hwpath(text: str, statement: str) -> str:
    """A DIO backing as typed -> its canonical spelling (address lowercased, label kept)."""
    address = parse_function(text)
    if address is not None:
        return address
    if LABEL.fullmatch(text):
        return text
    raise HpvmError(
        f"bad DIO function '{text}' (a PCI address DDDD:BB:DD.F or a DIO pool label)", statement
    )


def address_parts(address: str) -> dict[str, str]:
    """`0000:00:02.0` -> libvirt's <address domain=... bus=... slot=... function=...>."""
    domain, bus, rest = address.split(":")
    slot, function = rest.split(".")
    return {
        "domain": f"0x{domain}",
        "bus": f"0x{bus}",
        "slot": f"0x{slot}",
        "function": f"0x{function}",
    }


def address_of(element: etree._Element | None) -> str | None:
    """libvirt's source <address> -> `DDDD:BB:DD.F`."""
    if element is None:
        return None
    return (
        f"{xml_int(element.get('domain')):04x}:{xml_int(element.get('bus')):02x}:"
        f"{xml_int(element.get('slot')):02x}.{xml_int(element.get('function'))}"
    )


@dataclass
class DioDevice(Device):
    """One `network:dio:bus,slot,mac:hwpath:<PCI address or pool label>` statement."""

    KIND = "dio"
    SECTION = "network"
    IDENTITY = ("hwpath", "bus", "slot", "mac")
    ADDRESS = ("bus", "slot")
    ELEMENT = "hostdev"
    READ_TAGS = ("hostdev", "interface")  # an SR-IOV VF: <interface type='hostdev'>
    PLACE = ("bus", "slot")
    PLACE_NEEDED = "-m needs the DIO function's bus,slot"

    adapter: Adapter
    hwpath: str  # as given, canonical: a PCI address or a pool label
    bus: int | None = None
    slot: int | None = None
    mac: str | None = None
    # Host facts, filled in by the host layer (`resolve`), kept in metadata:
    host: str | None = field(default=None, compare=False)  # the PCI address
    role: str | None = field(default=None, compare=False)  # one of ROLES
    hwmac: str | None = field(default=None, compare=False)  # a physical NIC's own MAC

    # -- statements ----------------------------------------------------------
    @classmethod
    def claims(cls, fields: list[str]) -> bool:
        return len(fields) > 1 and fields[0].lower() == "network" and fields[1].lower() == "dio"

    @classmethod
    def parse(cls, statement: str, warnings: Warnings | None) -> DioDevice:
        fields = statement.split(":", 4)
        if len(fields) != 5 or fields[3].lower() != "hwpath":
            raise HpvmError(
                "DIO statement needs network:dio:bus,slot,mac:hwpath:<PCI address or pool label>",
                statement,
            )
        address, hwpath = fields[2], fields[4]
        parts = address.split(",") if address.strip() else []
        if len(parts) > 3:
            raise HpvmError(f"address '{address}' has more than bus,slot,mac", statement)
        parts += [""] * (3 - len(parts))
        bus = parse_int(parts[0], "PCI bus", statement)
        slot = parse_int(parts[1], "PCI slot", statement)
        mac = normalise_mac(parts[2].strip(), statement) if parts[2].strip() else None
        return cls(Adapter.DIO, check_hwpath(hwpath, statement), bus, slot, mac)

    def format(self) -> str:
        mac = "" if self.mac is None else "0x" + self.mac.replace(":", "").upper()
        return f"network:dio:{join_address(self.bus, self.slot, mac or None)}:hwpath:{self.hwpath}"

    # -- host facts ----------------------------------------------------------
    def resolve(self, host: str, role: str, hwmac: str | None = None) -> None:
        """The host layer's facts: the PCI address, its role (ROLES), a physical NIC's MAC."""
        assert role in ROLES, role
        self.host, self.role, self.hwmac = host, role, hwmac

    @property
    def function(self) -> str | None:
        """The host PCI address: resolved, or the statement's own address."""
        return self.host or parse_function(self.hwpath)

    @property
    def takes_mac(self) -> bool:
        """Does libvirt give it the guest's MAC (an SR-IOV VF)?"""
        return self.role == "vf"

    # -- rules ---------------------------------------------------------------
    def check(self) -> None:
        stmt = statement_of(self)
        check_range(self.bus, limits.PCI_BUSES[self.adapter], "PCI bus", stmt)
        check_range(self.slot, limits.PCI_SLOTS, "PCI slot", stmt)
        if self.mac is None:
            return
        if self.role == "other":
            raise HpvmError(f"{self.function} is not a network function: it takes no MAC", stmt)
        if self.role == "nic" and self.mac != self.hwmac:
            own = f" {dashed_mac(self.hwmac)}" if self.hwmac else ""
            raise HpvmError(
                f"{self.function} is a physical NIC: the guest sees its own MAC{own} "
                "(only SR-IOV VFs take another)",
                stmt,
            )
        if self.role != "nic":
            check_mac(self.mac, stmt)

    @classmethod
    def check_guest(cls, devices: list[Device], guest: Guest, claims: HostClaims) -> None:
        """One function, one guest; its MAC is no other NIC's."""
        dios = cast(list[DioDevice], devices)
        seen: dict[str, DioDevice] = {}
        macs = {n.mac: n for n in cast(list[NetworkDevice], guest.networks) if n.mac}
        for dio in dios:
            stmt = statement_of(dio)
            function = dio.function
            if function is not None:
                if function in seen:
                    raise HpvmError(
                        f"PCI function {function} is already given by "
                        f"'{statement_of(seen[function])}'",
                        stmt,
                    )
                seen[function] = dio
                owner = claims.functions.get(function)
                if owner is not None and owner != guest.name:
                    raise HpvmError(
                        f"PCI function {function} is already given to guest '{owner}'", stmt
                    )
            if dio.mac is not None:
                if dio.mac in macs:
                    raise HpvmError(
                        f"MAC {dashed_mac(dio.mac)} is already used by "
                        f"'{statement_of(macs[dio.mac])}'",
                        stmt,
                    )
                owner = claims.macs.get(dio.mac)
                if owner is not None and owner != f"guest {guest.name}" and dio.hwmac is None:
                    raise HpvmError(f"MAC {dashed_mac(dio.mac)} is already used by {owner}", stmt)
                macs[dio.mac] = dio  # type: ignore[assignment]

    # -- allocation ----------------------------------------------------------
    @classmethod
    def complete(
        cls, devices: list[Device], layout: Layout, guest: Guest, claims: HostClaims
    ) -> None:
        from translators.devices.network import _new_mac

        dios = cast(list[DioDevice], devices)
        for index, dio in enumerate(dios):
            place_in_free_slot(dio, layout)
            if dio.mac is None and dio.hwmac is not None:
                dio.mac = dio.hwmac
            elif dio.mac is None and dio.takes_mac:
                nics = cast(list[NetworkDevice], guest.networks)
                taken = [*nics, *(d for d in dios if d.mac)]
                dio.mac = _new_mac(f"{guest.name}/dio", index, taken, claims)  # type: ignore[arg-type]

    # -- libvirt XML ---------------------------------------------------------
    @property
    def alias(self) -> str:
        return f"ua-dio-{self.bus}-{self.slot}"

    def render(self) -> etree._Element:
        """A VF as a hostdev interface (with the MAC), anything else as a PCI hostdev."""
        assert self.addressed, self
        assert self.bus is not None and self.slot is not None
        function = self.function
        if function is None:
            raise HpvmError(
                f"DIO label '{self.hwpath}' is not resolved (not in the DIO pool)",
                statement_of(self),
            )
        if self.takes_mac:
            element = E("interface", type="hostdev", managed="no")
            if self.mac:
                SUB(element, "mac", address=self.mac)
        else:
            element = E("hostdev", mode="subsystem", type="pci", managed="no")
        SUB(element, "driver", name="vfio")
        source = SUB(element, "source")
        kind = {"type": "pci"} if self.takes_mac else {}
        SUB(source, "address", **kind, **address_parts(function))
        SUB(element, "alias", name=self.alias)
        pci_address(element, *pci.to_pci(self.bus, self.slot))
        return element

    def metadata_facts(self) -> dict[str, str]:
        """What libvirt's element does not say: the label, the role, a PF's MAC."""
        facts = {"hwpath": self.hwpath}
        if self.role:
            facts["role"] = self.role
        if self.mac and not self.takes_mac:
            facts["mac"] = self.mac
        if self.hwmac:
            facts["hwmac"] = self.hwmac
        return facts

    @classmethod
    def reads(cls, element: etree._Element) -> bool:
        if element.tag == "interface":
            return element.get("type") == "hostdev"
        return (
            element.tag == "hostdev"
            and element.get("mode", "subsystem") == "subsystem"
            and element.get("type") == "pci"
        )

    @classmethod
    def read(cls, element: etree._Element, item: etree._Element | None) -> DioDevice:
        source = element.find("source/address")
        host = address_of(source)
        meta = item.attrib if item is not None else {}
        mac_element = element.find("mac")
        mac = mac_element.get("address").lower() if mac_element is not None else meta.get("mac")
        role = meta.get("role") or (
            "vf" if element.tag == "interface" else "nic" if mac else "other"
        )
        bus, slot = hpvm_slot(element)
        return DioDevice(
            adapter=Adapter.DIO,
            hwpath=meta.get("hwpath") or host or "",
            bus=bus,
            slot=slot,
            mac=mac,
            host=host,
            role=role,
            hwmac=meta.get("hwmac"),
            requested=meta.get("statement"),
        )

    # -- plans ---------------------------------------------------------------
    def matches(self, device: Device, key: Callable[[str], str] | None = None) -> bool:
        """By PCI function when both are known (a label and its address name one function)."""
        if type(device) is not type(self):
            return False
        other = cast(DioDevice, device)
        if self.function is not None and other.function is not None:
            if self.function != other.function:
                return False
        elif self.hwpath != other.hwpath:
            return False
        return all(
            getattr(self, f) is None or getattr(self, f) == getattr(other, f)
            for f in ("bus", "slot", "mac")
        )

    def forget_identity(self) -> None:
        """Kept as it is: the clone's definition is then refused (one function, one guest)
        unless hpvmclone's -d leaves it out."""

    # -- hpvmstatus ----------------------------------------------------------
    def status_row(self) -> list[str]:
        return [
            "hwpath",
            "dio",
            self.hwpath,
            "",
            number_text(self.bus),
            number_text(self.slot),
            "0",
            dashed_mac(self.mac) if self.mac else "",
        ]

    def status_lines(self) -> list[str]:
        return [
            "Physical Storage type :hwpath",
            "Guest Adaptor type :dio",
            f"Backing :{self.hwpath}",
            f"PCI Function :{self.function or ''}",
            f"Bus :{number_text(self.bus)}",
            f"Device :{number_text(self.slot)}",
            "Function :0",
            f"Mac Address :{dashed_mac(self.mac) if self.mac else ''}",
        ]
