"""Guest adapter types, shared by the kinds and the limits."""

from __future__ import annotations

from enum import StrEnum


class Adapter(StrEnum):
    """Guest adapter types; AVIO ones are paravirtual (virtio), VIO ones emulated."""

    AVIO_STOR = "avio_stor"
    SCSI = "scsi"
    AVIO_LAN = "avio_lan"
    LAN = "lan"
    DIO = "dio"  # a host PCI function passed through (vfio): HPVM direct I/O

    @property
    def is_avio(self) -> bool:
        return self in (Adapter.AVIO_STOR, Adapter.AVIO_LAN)
