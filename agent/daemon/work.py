"""Work items: what one handler asks of another, put on the agent's queue.

Handlers never call each other; they put one of these on the queue and the
loop hands it to the handler its type names (agent.daemon.service, ROUTES).
An item with a `guest` runs in that guest's worker (in order, holding the
guest's lock); one without runs in the loop itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.daemon.index import DiskRef
from agent.daemon.sources import BlockEvent


@dataclass(frozen=True)
class Work:
    """Something a handler asked for; `guest` None: the loop runs it."""

    guest: str | None


@dataclass(frozen=True)
class BlockSettled(Work):
    """A block device's events, coalesced over the debounce window: act on them now."""

    event: BlockEvent


@dataclass(frozen=True)
class DeviceAppeared(Work):
    """Host block device `devnum` appeared (or came back, or has a size again)."""

    devnum: int


@dataclass(frozen=True)
class Forward(Work):
    """Grow a running guest's disk to its host device's size."""

    ref: DiskRef
    size: int
    seen: float  # time.monotonic() of the first uevent (latency is measured from it)


@dataclass(frozen=True)
class DiskGone(Work):
    """The host device behind a running guest's disk went away."""

    ref: DiskRef
    event: BlockEvent


@dataclass(frozen=True)
class Replug(Work):
    """Plug the guest's defined disks whose backing is back (only on `devnum`, if given)."""

    devnum: int | None = None


@dataclass(frozen=True)
class ResizeDisks(Work):
    """Every block disk of the running guest gets its host device's size."""


@dataclass(frozen=True)
class ApplyConfig(Work):
    """Make the guest match its config file (`deleted`: the file went away)."""

    path: Path
    deleted: bool = False


@dataclass(frozen=True)
class ReconcileGuest(Work):
    """The guest (re)started: ports, missing disks and sizes brought in line."""


@dataclass(frozen=True)
class ApplyPorts(Work):
    """A device was plugged: every NIC of the guest gets its port's rules."""


@dataclass(frozen=True)
class FunctionGone(Work):
    """A DIO function of the running guest left the host: unplugged (kept in the definition)."""

    address: str
    seen: float


@dataclass(frozen=True)
class FunctionBack(Work):
    """A DIO function the guest's definition has is back on the host: plug it in again."""

    address: str
    seen: float


@dataclass(frozen=True)
class ScsiSync(Work):
    """A SCSI device came or went: the guest's attached devices brought in line."""

    seen: float  # time.monotonic() of the uevent (latency is measured from it)
