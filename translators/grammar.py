"""Resource statements (`-a`/`-d`/`-m` arguments) <-> model devices.

Syntax only: what a statement says. Whether it is allowed (ranges, AVIO
limits, duplicates) is decided in `validate`. Each kind parses and formats
its own statements (`translators/devices/`); this module picks the kind.
"""

from __future__ import annotations

from translators.devices.network import VSWITCH_NAME, dashed_mac, normalise_mac
from translators.devices.registry import kind_of, kind_of_statement
from translators.errors import HpvmError, Warnings
from translators.model import Device
from translators.text import bad_character, check_text

__all__ = ["VSWITCH_NAME", "dashed_mac", "format_statement", "normalise_mac", "parse_statement"]


def parse_statement(text: str, warnings: Warnings | None = None) -> Device:
    """Parse one resource statement into a device, normalising known typos."""
    statement = text.strip()
    if not statement:
        raise HpvmError("empty resource statement")
    if bad_character(statement) is not None:
        check_text(statement, "resource statement", statement)
    device = kind_of_statement(statement).parse(statement, warnings)
    # What the user asked for, in canonical spelling, before allocation fills
    # in omitted fields (HPVM shows avio_lan/avio_stor whichever spelling was typed).
    device.requested = device.format()
    device.text = statement
    return device


def format_statement(device: Device) -> str:
    """The statement for a device, as `hpvmstatus -d` prints it (canonical spellings)."""
    return kind_of(device).format(device)
