"""Fill in what a statement may omit: PCI bus/slot, SCSI target, MAC, vswitch port.

Deterministic: the same guest (and the same claims of other guests) always
gets the same addresses, so output is reproducible and golden-testable.
Devices with explicit addresses keep them; the rest are placed kind by kind
in registry order (storage first: HPVM puts the boot disk's HBA in the
lowest slot), in statement order within a kind. Each kind places its own
(`Device.complete`); the PCI slots taken are shared (`Layout`).
"""

from __future__ import annotations

import copy

from translators.devices import registry
from translators.devices.base import Layout
from translators.model import Guest
from translators.validate import HostClaims


def complete(guest: Guest, claims: HostClaims | None = None) -> Guest:
    """A copy of `guest` with every omitted address, MAC and port id filled in."""
    claims = claims or HostClaims()
    done = copy.deepcopy(guest)
    layout = Layout(done.devices)
    for kind in registry.KINDS:
        kind.complete(done.of_kind(kind), layout, done, claims)
    return done
