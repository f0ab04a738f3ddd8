"""HPVM's 8 virtual PCI buses x 8 slots <-> PCI addresses of an i440fx guest.

HPVM bus 0, slot s  -> root bus 0, slot 0x10 + s      (slots 0x10-0x17)
HPVM bus b>0, slot s -> pci-bridge index b, slot s + 1 (the bridge sits at
                        root slot 0x17 + b, 0x18-0x1e)

Root slots below 0x10 are left to what libvirt adds on its own (USB, balloon).
"""

from __future__ import annotations

ROOT_BASE_SLOT = 0x10
BRIDGE_BASE_SLOT = 0x17


def to_pci(bus: int, slot: int) -> tuple[int, int]:
    """(HPVM bus, slot) -> (PCI bus, PCI slot)."""
    if bus == 0:
        return (0, ROOT_BASE_SLOT + slot)
    return (bus, slot + 1)


def bridge_slot(bus: int) -> int:
    """Root slot of the pci-bridge that carries HPVM bus `bus` (> 0)."""
    return BRIDGE_BASE_SLOT + bus


def from_pci(pci_bus: int, pci_slot: int) -> tuple[int, int] | None:
    """(PCI bus, PCI slot) -> (HPVM bus, slot), or None when outside the HPVM layout."""
    if pci_bus == 0 and ROOT_BASE_SLOT <= pci_slot < ROOT_BASE_SLOT + 8:
        return (0, pci_slot - ROOT_BASE_SLOT)
    if 1 <= pci_bus <= 7 and 1 <= pci_slot <= 8:
        return (pci_bus, pci_slot - 1)
    return None
