"""The device-kind registry: a new kind is one module plus one registry line.

`ToyDevice` is a test-only kind (a watchdog, spelled like a network statement
with its own adapter word, as PCI pass-through `network:dio:...` will be):
registered ahead of the network kind, it goes through every generic step
(parse, check, allocate, render, read back, status, plan) with no change to
generic code; unregistered, every step refuses it loudly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree

from translators import pci
from translators.allocate import complete
from translators.devices import base, registry
from translators.devices.adapter import Adapter
from translators.devices.base import Device, Layout
from translators.devices.network import NetworkDevice
from translators.errors import HpvmError, Warnings
from translators.grammar import format_statement, parse_statement
from translators.model import Guest
from translators.plan import Action, Change, plan_modify
from translators.readback import read_device, read_domain
from translators.render import render_device, render_domain, to_string
from translators.status import GuestStatus, format_details, format_statements
from translators.validate import HostClaims, check_device, check_guest

SCHEMA = Path("/usr/share/libvirt/schemas/domain.rng")
ACTIONS = ("reset", "poweroff", "none")


@dataclass
class ToyDevice(Device):
    """`network:toy:bus,slot:watchdog:ACTION`: an i6300esb watchdog in its own PCI slot."""

    KIND = "toy"
    SECTION = "network"
    KIND = "toy"
    IDENTITY = ("action", "bus", "slot")
    ADDRESS = PLACE = ("bus", "slot")
    ELEMENT = "watchdog"
    PLACE_NEEDED = "-m needs the watchdog's bus,slot"

    action: str
    adapter: Adapter = Adapter.LAN
    bus: int | None = None
    slot: int | None = None

    @classmethod
    def claims(cls, fields: list[str]) -> bool:
        return fields[0].lower() == "network" and len(fields) > 1 and fields[1].lower() == "toy"

    @classmethod
    def parse(cls, statement: str, warnings: Warnings | None) -> ToyDevice:
        fields = statement.split(":")
        if len(fields) != 5 or fields[3] != "watchdog":
            raise HpvmError("toy statement needs network:toy:bus,slot:watchdog:action", statement)
        parts = [*fields[2].split(","), "", ""][:2]
        bus, slot = (base.parse_int(p, "PCI address part", statement) for p in parts)
        return cls(fields[4], bus=bus, slot=slot)

    def format(self) -> str:
        return f"network:toy:{base.join_address(self.bus, self.slot)}:watchdog:{self.action}"

    def check(self) -> None:
        if self.action not in ACTIONS:
            raise HpvmError(
                f"watchdog action '{self.action}' is not one of {ACTIONS}", base.statement_of(self)
            )

    @classmethod
    def complete(
        cls, devices: list[Device], layout: Layout, guest: Guest, claims: HostClaims
    ) -> None:
        for dev in devices:
            if not dev.addressed:
                new = layout.free_slot(dev.adapter, dev.bus, dev.slot)
                assert new is not None
                layout.slots[new] = dev.slot_kind
                dev.bus, dev.slot = new

    @property
    def alias(self) -> str:
        return f"ua-toy-{self.bus}-{self.slot}"

    def render(self) -> etree._Element:
        assert self.bus is not None and self.slot is not None
        watchdog = etree.fromstring(f'<watchdog model="i6300esb" action="{self.action}"/>')
        etree.SubElement(watchdog, "alias").set("name", self.alias)
        base.pci_address(watchdog, *pci.to_pci(self.bus, self.slot))
        return watchdog

    @classmethod
    def read(cls, element: etree._Element, item: etree._Element | None) -> ToyDevice:
        bus, slot = base.hpvm_slot(element)
        requested = item.get("statement") if item is not None else None
        return cls(element.get("action"), bus=bus, slot=slot, requested=requested)

    def status_row(self) -> list[str]:
        return [
            "watchdog",
            "toy",
            self.action,
            "",
            base.number_text(self.bus),
            base.number_text(self.slot),
            "0",
            "",
        ]

    def status_lines(self) -> list[str]:
        return ["Physical Storage type :watchdog", f"Action :{self.action}"]


@pytest.fixture
def toy_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """The toy kind registered ahead of the network kind (it shares its first word)."""
    monkeypatch.setattr(registry, "KINDS", (ToyDevice, *registry.KINDS))


def toy_guest() -> Guest:
    statements = [
        "disk:avio_stor::file:/images/root.img",
        "network:avio_lan::vswitch:sw1",
        "network:toy::watchdog:reset",
    ]
    return Guest("toyguest", virt_type="qemu", devices=[parse_statement(s) for s in statements])


def test_a_registered_kind_goes_through_every_step(toy_registered: None) -> None:
    guest = toy_guest()
    toy, nic = guest.of_kind(ToyDevice)[0], guest.networks[0]
    assert isinstance(toy, ToyDevice) and isinstance(nic, NetworkDevice)  # claims, in order
    check_guest(guest)
    done = complete(guest)
    (placed,) = done.of_kind(ToyDevice)
    assert placed.addressed and (placed.bus, placed.slot) not in {
        (d.bus, d.slot) for d in done.devices if d is not placed
    }
    domain = render_domain(done, "qemu")
    (watchdog,) = domain.findall("devices/watchdog")
    assert watchdog.get("action") == "reset" and watchdog.find("alias").get("name") == placed.alias
    if SCHEMA.exists():
        assert etree.RelaxNG(etree.parse(str(SCHEMA))).validate(domain)
    again = read_domain(to_string(domain))
    assert again == done and again.of_kind(ToyDevice)[0].requested == "network:toy::watchdog:reset"
    assert isinstance(read_device(watchdog, domain), ToyDevice)
    details = format_details(GuestStatus(done, 1, "Off"))
    assert "watchdog toy" in " ".join(details.split())
    assert f"network:toy:{placed.bus},{placed.slot}:watchdog:reset" in format_statements(done)


def test_a_registered_kind_plans_attach_modify_and_detach(toy_registered: None) -> None:
    guest = complete(toy_guest())
    (placed,) = guest.of_kind(ToyDevice)
    after, changes = plan_modify(guest, [parse_statement("network:toy::watchdog:none")], [], [])
    (attach,) = changes
    assert attach.action is Action.ATTACH and "<watchdog" in attach.xml
    assert not attach.new_controller and len(after.of_kind(ToyDevice)) == 2
    after, changes = plan_modify(guest, [], [parse_statement(placed.format())], [])
    (detach,) = changes
    assert detach.action is Action.DETACH and detach.alias == placed.alias
    assert after.of_kind(ToyDevice) == []
    with pytest.raises(HpvmError, match="-m cannot change a toy device"):
        plan_modify(guest, [], [], [parse_statement(placed.format())])
    with pytest.raises(HpvmError, match="watchdog action 'explode'"):
        plan_modify(guest, [parse_statement("network:toy::watchdog:explode")], [], [])


def test_an_unknown_kind_fails_loudly() -> None:
    toy = ToyDevice("reset", bus=0, slot=5, text="network:toy:0,5:watchdog:reset")
    with pytest.raises(HpvmError, match="unknown device type 'widget'"):
        parse_statement("widget:avio_stor::file:/x")
    with pytest.raises(HpvmError, match="unknown network adapter 'toy'"):
        parse_statement("network:toy:0,5:watchdog:reset")  # the network kind claims it now
    for step in (format_statement, check_device, render_device):
        with pytest.raises(HpvmError, match="unknown device kind 'toy'"):
            step(toy)
    with pytest.raises(HpvmError, match="unknown device kind 'toy'"):
        Guest(name="g", devices=[toy])
    guest = complete(toy_guest_without_toy())
    with pytest.raises(HpvmError, match="unknown device kind 'toy'"):
        plan_modify(guest, [toy], [], [])
    with pytest.raises(HpvmError, match="unknown device kind 'toy'"):
        Change(Action.ATTACH, toy)  # what an Applier is handed: never an unknown kind
    watchdog = ToyDevice.render(toy)
    with pytest.raises(HpvmError, match="no device kind reads <watchdog>"):
        read_device(watchdog)
    domain = render_domain(guest)
    domain.find("devices").append(watchdog)
    assert read_domain(domain) == guest  # a whole domain: what no kind reads is left alone


def toy_guest_without_toy() -> Guest:
    nic = parse_statement("network:avio_lan::vswitch:sw1")
    return Guest(name="g", virt_type="kvm", devices=[nic])
