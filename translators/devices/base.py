"""What every device kind shares: the address fields, the kind's hooks, and helpers.

A kind is a dataclass subclassing `Device` (its fields declare `adapter`,
`bus`, `slot`, `requested` and `text` plus its own), listed in
`registry.KINDS`. The generic modules (grammar, validate, allocate, render,
readback, plan, status) loop over the registry and call these hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar

from lxml import etree

from translators import limits, pci
from translators.devices.adapter import Adapter
from translators.errors import HpvmError, Warnings
from translators.text import parse_number

if TYPE_CHECKING:
    from translators.model import Guest
    from translators.validate import HostClaims

NS = "urn:avio-kvm:hpvm:1"
NS_PREFIX = "hpvm"
E = etree.Element
SUB = etree.SubElement
Slot = tuple[int, int]


class Action(StrEnum):
    ATTACH = "attach"
    DETACH = "detach"
    UPDATE = "update"  # change in place: DVD media, NIC's vswitch


@dataclass
class Device:
    """The base of every device kind: what all share, and the hooks a kind fills in."""

    #: The kind's name; a `Guest` keeps one list per kind under it, and its
    #: items in our `<metadata>` have it as tag.
    KIND: ClassVar[str]
    #: The `hpvmstatus` section its rows go in ("storage" or "network").
    SECTION: ClassVar[str]
    #: The fields a `-d` statement may give to name a device (None: any).
    IDENTITY: ClassVar[tuple[str, ...]]
    #: The fields allocation fills in (all given: `addressed`).
    ADDRESS: ClassVar[tuple[str, ...]]
    #: The `<devices>` child it reads back.
    ELEMENT: ClassVar[str]
    #: Every `<devices>` child tag its `reads` may accept (ELEMENT, unless it says more).
    READ_TAGS: ClassVar[tuple[str, ...]] = ()
    #: The fields that say where a `-m` statement's device is.
    PLACE: ClassVar[tuple[str, ...]]
    #: The error when a `-m` statement does not give all of PLACE.
    PLACE_NEEDED: ClassVar[str]
    #: Several devices of the same slot kind may share a PCI slot (an HBA's targets).
    SHARES_SLOT: ClassVar[bool] = False
    #: Sits on a vswitch port: its link waits for the port's VLAN rule.
    ON_VSWITCH: ClassVar[bool] = False
    #: Backed by host storage that the host layer checks before use.
    HOST_BACKED: ClassVar[bool] = False
    #: A host device attached whole (pass-through): its HBA cannot change under it.
    ATTACHED: ClassVar[bool] = False

    if TYPE_CHECKING:  # every kind's fields (a kind orders them as its statement does)
        adapter: Adapter
        bus: int | None  # HPVM's PCI bus and slot (None: to allocate)
        slot: int | None
    # The statement in canonical spelling before allocation (kept in metadata),
    # and exactly as the user typed it (quoted in error messages).
    requested: str | None = field(default=None, compare=False, kw_only=True)
    text: str | None = field(default=None, compare=False, repr=False, kw_only=True)

    # -- statements ----------------------------------------------------------
    @classmethod
    def claims(cls, fields: list[str]) -> bool:
        """Is a statement (split on ':') one of this kind's?"""
        raise NotImplementedError

    @classmethod
    def parse(cls, statement: str, warnings: Warnings | None) -> Device:
        raise NotImplementedError

    def format(self) -> str:
        """The statement, as `hpvmstatus -d` prints it (canonical spellings)."""
        raise NotImplementedError

    # -- rules ---------------------------------------------------------------
    @property
    def addressed(self) -> bool:
        return all(getattr(self, f) is not None for f in self.ADDRESS)

    @property
    def is_avio(self) -> bool:
        return self.adapter.is_avio

    @property
    def slot_kind(self) -> str:
        """What its PCI slot holds (devices of one slot kind may share it if SHARES_SLOT)."""
        return self.KIND

    def check(self) -> None:
        """Rules for the statement on its own."""

    def check_slot_mates(self, earlier: list[Device]) -> None:
        """Rules against the devices before it in the same PCI slot."""

    @classmethod
    def check_guest(cls, devices: list[Device], guest: Guest, claims: HostClaims) -> None:
        """The kind's part of the guest-wide rules (duplicates, host claims)."""

    # -- allocation ----------------------------------------------------------
    @classmethod
    def complete(
        cls, devices: list[Device], layout: Layout, guest: Guest, claims: HostClaims
    ) -> None:
        """Fill in, in place, what the kind's statements omitted."""

    # -- libvirt XML ---------------------------------------------------------
    @property
    def alias(self) -> str:
        """The libvirt alias (`ua-...`) the device is known by."""
        raise NotImplementedError

    def render(self) -> etree._Element:
        """The device's element under `<devices>` (the device must be addressed)."""
        raise NotImplementedError

    @classmethod
    def render_all(cls, devices: list[Device]) -> list[etree._Element]:
        """The elements of a guest's devices of this kind (with what they sit behind)."""
        return [d.render() for d in devices]

    def controller_key(self) -> object | None:
        """What identifies the controller it sits behind, if any."""
        return None

    def render_controller(self) -> etree._Element | None:
        """The controller it sits behind, to attach first when the guest lacks it."""
        return None

    def metadata(self, root: etree._Element) -> None:
        """Its item in our `<metadata>` (HPVM-only facts), keyed by alias."""
        item = SUB(root, f"{{{NS}}}{self.KIND}", alias=self.alias, **self.metadata_facts())
        if self.requested:
            item.set("statement", self.requested)

    def metadata_facts(self) -> dict[str, str]:
        """What its metadata item keeps that libvirt's XML does not."""
        return {}

    @classmethod
    def reads(cls, element: etree._Element) -> bool:
        """Is this `<devices>` child one of this kind's?"""
        return element.tag == cls.ELEMENT

    @classmethod
    def read_tags(cls) -> tuple[str, ...]:
        """The `<devices>` child tags this kind may read."""
        return cls.READ_TAGS or (cls.ELEMENT,)

    @classmethod
    def read_all(
        cls, elements: list[etree._Element], domain: etree._Element, meta: etree._Element | None
    ) -> list[Device]:
        """The devices of elements it `reads`, in document order."""
        items = meta_items(meta, cls.KIND)
        found = []
        for element in elements:
            alias = element.find("alias")
            found.append(
                cls.read(element, items.get(alias.get("name")) if alias is not None else None)
            )
        return found

    @classmethod
    def read(cls, element: etree._Element, item: etree._Element | None) -> Device:
        """The device of one element, with its metadata item (if it has one)."""
        raise NotImplementedError

    # -- plans ---------------------------------------------------------------
    def matches(self, device: Device, key: Callable[[str], str] | None = None) -> bool:
        """Does this (`-d`) statement name `device`? Every field it gives must agree."""
        if type(device) is not type(self) or device.adapter is not self.adapter:
            return False
        return all(
            getattr(self, f) is None or getattr(self, f) == getattr(device, f)
            for f in self.IDENTITY
        )

    @property
    def place(self) -> tuple[object, ...]:
        return tuple(getattr(self, f) for f in self.PLACE)

    def modified(self, old: Device) -> tuple[Device, Action]:
        """The device `old` becomes under this `-m` statement, and how it changes."""
        raise HpvmError(f"-m cannot change a {self.KIND} device", statement_of(self))

    def check_modify(self, guest: Guest) -> None:
        """Rules for this `-m` statement against the guest, before its device is looked up."""

    def live_refusal(self, action: Action) -> str | None:
        """Why a running guest cannot take this change (libvirt 9.0), if it cannot."""
        return None

    def forget_identity(self) -> None:
        """Drop what must be new in a copy of the guest (hpvmclone)."""

    def copy_backing(self, guest: Guest) -> tuple[Device, Device]:
        """(old, new) for a `-b` statement of hpvmclone: the device it gives a new backing."""
        raise HpvmError("-b takes a storage statement", statement_of(self))

    # -- hpvmstatus ----------------------------------------------------------
    def status_row(self) -> list[str]:
        raise NotImplementedError

    def status_lines(self) -> list[str]:
        """Its `key :value` block of `hpvmstatus -V`."""
        raise NotImplementedError


def place_in_free_slot(device: Device, layout: Layout) -> None:
    """A device that is its own PCI function (a NIC, a DIO function) without bus,slot
    gets the first free slot its adapter may use."""
    if device.bus is not None and device.slot is not None:
        return
    new = layout.free_slot(device.adapter, device.bus, device.slot)
    if new is None:
        raise HpvmError("no free PCI slot left for", statement_of(device))
    layout.slots[new] = device.slot_kind
    device.bus, device.slot = new


def statement_of(device: Device) -> str:
    """The statement to quote in a message: as typed, else the canonical form."""
    return device.text or device.requested or device.format()


def check_range(value: int | None, allowed: range, what: str, statement: str) -> None:
    if value is not None and value not in allowed:
        raise HpvmError(
            f"{what} {value} out of range {allowed.start}-{allowed.stop - 1}", statement
        )


def join_address(*parts: object) -> str:
    """`0,1,3`; omitted parts stay empty, trailing empty parts are dropped."""
    return ",".join("" if part is None else str(part) for part in parts).rstrip(",")


def parse_int(text: str, what: str, statement: str) -> int | None:
    """An address part or port id: empty, or ASCII digits (a few: every limit is small)."""
    text = text.strip()
    if text == "":
        return None
    return parse_number(text, what, statement, digits=6)


def number_text(value: int | None) -> str:
    return "" if value is None else str(value)


def xml_int(text: str | None, default: int = 0) -> int:
    if text is None:
        return default
    return int(text, 16) if text.lower().startswith("0x") else int(text)


def pci_address(parent: etree._Element, bus: int, slot: int) -> None:
    SUB(
        parent,
        "address",
        type="pci",
        domain="0x0000",
        bus=f"0x{bus:02x}",
        slot=f"0x{slot:02x}",
        function="0x0",
    )


def hpvm_slot(element: etree._Element) -> tuple[int | None, int | None]:
    """The HPVM (bus, slot) of an element's PCI address, or (None, None)."""
    address = element.find("address[@type='pci']")
    if address is None:
        return (None, None)
    found = pci.from_pci(xml_int(address.get("bus")), xml_int(address.get("slot")))
    return found if found else (None, None)


def meta_items(meta: etree._Element | None, tag: str) -> dict[str, etree._Element]:
    """Our metadata items of one tag, by device alias."""
    if meta is None:
        return {}
    return {item.get("alias"): item for item in meta.iter(f"{{{NS}}}{tag}")}


class Layout:
    """The PCI slots taken so far in one guest, and what each holds."""

    def __init__(self, devices: list[Device]) -> None:
        self.slots: dict[Slot, str] = {}
        for device in devices:
            if device.bus is not None and device.slot is not None:
                self.slots[(device.bus, device.slot)] = device.slot_kind

    def free_slot(self, adapter: Adapter, bus: int | None, slot: int | None) -> Slot | None:
        buses = [bus] if bus is not None else list(limits.PCI_BUSES[adapter])
        slots = [slot] if slot is not None else list(limits.PCI_SLOTS)
        for b in buses:
            for s in slots:
                if (b, s) not in self.slots:
                    return (b, s)
        return None

    def holding(self, slot_kind: str) -> list[Slot]:
        """The slots that hold `slot_kind`, in order."""
        return sorted(k for k, kind in self.slots.items() if kind == slot_kind)
