"""HPVM's documented limits (HPVM-REFERENCE.md sections 2 and 4)."""

from __future__ import annotations

from translators.devices.adapter import Adapter

MAX_AVIO_DEVICES = 128
MAX_VIO_DEVICES = 30
PCI_BUSES = {
    Adapter.AVIO_STOR: range(8),
    Adapter.AVIO_LAN: range(8),
    Adapter.SCSI: range(7),
    Adapter.LAN: range(8),
    Adapter.DIO: range(8),
}
PCI_SLOTS = range(8)
# HPVM gives VIO SCSI targets 0-14; KVM's emulated LSI 53C895A (libvirt
# `lsilogic`) has SCSI ids 0-7 and uses 7 itself, so VIO stops at 6 here.
# HPVM gives AVIO targets 0-127; libvirt's schema (domain.rng, `driveTarget`)
# allows a disk's drive address target 0-99 only, so AVIO stops at 99 here.
TARGETS = {Adapter.AVIO_STOR: range(100), Adapter.SCSI: range(7)}
PORT_IDS = range(512)
VLAN_IDS = range(1, 4095)
MIN_DISK_BYTES = 512
MIN_DVD_BYTES = 2048
VCPUS = range(1, 256)
MIN_MEMORY_MB = 32
LOCALNET = "localnet"
MAX_MEMORY_MB = (2**63 - 1) // 2**20  # libvirt: at most LLONG_MAX bytes (8 EiB - 1 MiB)
