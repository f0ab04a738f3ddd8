"""Attached SCSI devices (tapes, changers, burners): the host side.

Resolves a statement's host device to its SCSI address `H:C:T:L`, SCSI type and
identity from sysfs, and refuses what must never reach a guest: a device that
is not there, one of the wrong type (a tape given a disk), one the host itself
uses (its disks: `agent.storage.hostcheck`), one another guest has attached.
Called on every path that hands such a device to a guest: `hpvmcreate`,
`hpvmmodify`, `hpvmstart`, the libvirt hook's `prepare` and the agent's re-plug.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from agent.storage.hostcheck import backing_key, check_host_device, host_use
from translators.devices.scsi_passthrough import (
    AttachType,
    ScsiPassthroughDevice,
    parse_hctl,
    resolve,
)
from translators.errors import HpvmError
from translators.model import Guest
from translators.validate import HostClaims, statement_of

SCSI_DEVICES = Path("/sys/bus/scsi/devices")


@dataclass(frozen=True)
class ScsiHostDevice:
    """What the host says about one SCSI device."""

    hctl: str
    scsi_type: int
    identity: str  # wwid, else vendor/model/serial, else the address
    block: str | None  # /dev/sdX or /dev/srN, when it has a block device
    sg: str | None  # /dev/sgN


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return None


def hctl_in(path: Path) -> str | None:
    """The last `H:C:T:L` component of a sysfs path (symlinks resolved), if any."""
    for part in reversed(Path(os.path.realpath(path)).parts):
        if parse_hctl(part) is not None:
            return part
    return None


def _node_address(location: str, stmt: str) -> str:
    """The SCSI address behind a device node (/dev/sgN, /dev/nstN, /dev/srN, by-id links)."""
    try:
        st = os.stat(location)
    except FileNotFoundError:
        raise HpvmError(f"host device {location} does not exist", stmt) from None
    except (OSError, ValueError) as err:
        raise HpvmError(f"cannot use host device {location}: {err}", stmt) from None
    if stat.S_ISCHR(st.st_mode):
        sysfs = Path(f"/sys/dev/char/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}")
    elif stat.S_ISBLK(st.st_mode):
        sysfs = Path(f"/sys/dev/block/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}")
        if (sysfs / "partition").exists():
            raise HpvmError(f"{location} is a partition, not a SCSI device", stmt)
    else:
        raise HpvmError(f"{location} is not a device node (/dev/sgN, /dev/nstN, ...)", stmt)
    hctl = hctl_in(sysfs) if sysfs.exists() else None
    if hctl is None:
        raise HpvmError(f"{location} is not a SCSI device", stmt)
    return hctl


def address_of(dev: ScsiPassthroughDevice) -> str:
    """The host SCSI address the statement names; bad input when there is none."""
    stmt = statement_of(dev)
    if dev.storage is AttachType.ATTACH:
        return _node_address(dev.location, stmt)
    hctl = parse_hctl(dev.location)
    if hctl is not None:
        name = ":".join(map(str, hctl))
        if not (SCSI_DEVICES / name).exists():
            raise HpvmError(f"there is no SCSI device {name} on this host", stmt)
        return name
    path = Path(dev.location)
    found = hctl_in(path) if path.exists() else None
    if found is None:
        raise HpvmError(f"{dev.location} is not the sysfs path of a SCSI device", stmt)
    return found


def describe(hctl: str) -> ScsiHostDevice | None:
    """The host's SCSI device at `hctl`, or None when it is not there."""
    base = SCSI_DEVICES / hctl
    type_text = _read(base / "type")
    if type_text is None or not type_text.isdigit():
        return None
    block = next((f"/dev/{p.name}" for p in sorted((base / "block").glob("*"))), None)
    sg = next((f"/dev/{p.name}" for p in sorted((base / "scsi_generic").glob("*"))), None)
    return ScsiHostDevice(hctl, int(type_text), identity_of(base, hctl), block, sg)


def identity_of(base: Path, hctl: str) -> str:
    """A name for the device that survives a new address: its wwid, else vendor/model/serial."""
    wwid = _read(base / "wwid")
    if wwid:
        return f"wwid:{wwid}"
    try:
        page = (base / "vpd_pg80").read_bytes()
    except OSError:
        page = b""
    serial = page[4:].decode("ascii", "replace").strip() if len(page) > 4 else ""
    if serial:
        vendor, model = _read(base / "vendor") or "", _read(base / "model") or ""
        return f"serial:{vendor}/{model}/{serial}"
    return f"hctl:{hctl}"


def find_identity(identity: str) -> ScsiHostDevice | None:
    """The host's SCSI device with this identity now (its address may have changed)."""
    if identity.startswith("hctl:"):
        return describe(identity.removeprefix("hctl:"))
    for base in sorted(SCSI_DEVICES.glob("*")):
        if parse_hctl(base.name) is None:
            continue
        if identity_of(base, base.name) == identity:
            return describe(base.name)
    return None


def check_database(dev: ScsiPassthroughDevice, found: ScsiHostDevice, statement: str) -> None:
    """The device database (hpvmdevmgmt) refuses the device when any of its nodes is
    restricted: one SCSI device has several (/dev/sgN, /dev/stN and /dev/nstN, /dev/schN,
    its block device), each with its own device number, and the name the statement gave."""
    nodes = [dev.location] if dev.location.startswith("/dev/") else []
    nodes += [node for node in (found.sg, found.block) if node]
    base = SCSI_DEVICES / found.hctl
    for cls in ("scsi_tape", "scsi_changer"):
        nodes += [f"/dev/{p.name}" for p in sorted((base / cls).glob("*"))]
    for node in dict.fromkeys(nodes):
        check_host_device(node, statement)


def check_device(dev: ScsiPassthroughDevice, claims: HostClaims | None = None) -> ScsiHostDevice:
    """Resolve an attached device against the host, fill in its host facts, refuse what
    may not reach a guest. Raises `HpvmError` (one line, exit 2) naming the statement."""
    dev.check()  # the statement's own rules first
    stmt = statement_of(dev)
    if dev.storage is AttachType.ATTACH:
        reason = host_use(dev.location)  # a block node the host uses, named directly
        if reason:
            raise HpvmError(f"{dev.location} {reason}", stmt)
    hctl = address_of(dev)
    found = describe(hctl)
    if found is None:
        raise HpvmError(f"there is no SCSI device {hctl} on this host", stmt)
    return check_found(dev, found, claims)


def check_found(
    dev: ScsiPassthroughDevice, found: ScsiHostDevice, claims: HostClaims | None = None
) -> ScsiHostDevice:
    """The host checks of the device found for `dev`; then `dev` gets its host facts."""
    stmt = statement_of(dev)
    hctl = found.hctl
    if found.block:
        reason = host_use(found.block)
        if reason:
            raise HpvmError(f"{dev.location} ({hctl}, {found.block}) {reason}", stmt)
    check_database(dev, found, stmt)
    if claims is not None and found.block:
        owner = claims.backings.get(backing_key(found.block))
        if owner:
            raise HpvmError(
                f"{dev.location} ({found.block}) is a disk or dvd of guest '{owner}' "
                "(one device is never given as storage and attached at once)",
                stmt,
            )
    resolve(dev, found.hctl, found.scsi_type, found.identity)
    dev.check()  # now with its SCSI type
    return found


def attached(guest: Guest) -> list[ScsiPassthroughDevice]:
    """A guest's attached SCSI devices."""
    return guest.of_kind(ScsiPassthroughDevice)  # type: ignore[return-value]


def check_devices(devices: Iterable[object], claims: HostClaims | None = None) -> None:
    """`check_device` for each attached device among `devices` (others are left alone)."""
    for dev in devices:
        if isinstance(dev, ScsiPassthroughDevice):
            check_device(dev, claims)


def check_now(dev: ScsiPassthroughDevice, claims: HostClaims | None = None) -> ScsiHostDevice:
    """Before a defined device reaches a running guest (start): the device the guest was
    given, found by its identity (its address or /dev/sgN may have changed: its facts
    follow), else by the statement's name; checked."""
    if not dev.identity or dev.identity.startswith("hctl:"):
        return check_device(dev, claims)
    dev.check()
    found = find_identity(dev.identity)
    if found is None:
        raise HpvmError(
            f"the SCSI device the guest was given ({dev.identity}) is not on this host now",
            statement_of(dev),
        )
    return check_found(dev, found, claims)


def returning(
    dev: ScsiPassthroughDevice, claims: HostClaims | None = None
) -> ScsiHostDevice | None:
    """The host device a defined device was given, if it is there now (found by its
    identity: its address may be new), checked; None when it is not there."""
    found = find_identity(dev.identity) if dev.identity else None
    if found is None and dev.host and not dev.identity:
        found = describe(dev.host)
    if found is None:
        return None
    return check_found(dev, found, claims)


def present(dev: ScsiPassthroughDevice) -> bool:
    """Is the host device a running guest has (its live H:C:T:L) still there, the same one?"""
    found = describe(dev.host) if dev.host else None
    return found is not None and (not dev.identity or found.identity == dev.identity)


def add_claims(claims: HostClaims, guest: Guest) -> None:
    """What `guest`'s attached devices claim: the device, and its block device if it has one."""
    for dev in attached(guest):
        for key in dev.claim_keys:
            claims.attached[key] = guest.name
        found = describe(dev.host) if dev.host else None
        if found is not None and found.block:
            claims.backings[backing_key(found.block)] = guest.name
