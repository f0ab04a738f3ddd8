"""The DIO pool on the host: its record, adding and removing functions, and the
checks on every path that hands a function to a guest.

The record is `$AVIO_STATE_DIR/dio-pool.json` (default /var/lib/libvirt/avio-kvm/,
where libvirt keeps host state; written atomically). libvirt has no place for
it: a node device's XML cannot carry our metadata, and `managed='no'` hostdevs
need their functions on vfio-pci before any guest starts. Which guest uses a
function is never recorded here: libvirt's domains say it (HostView claims).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from agent.devices import pci
from agent.errors import HostError
from agent.safefile import read_config, write_atomic
from agent.storage.hostcheck import check_host_device
from translators import diopool
from translators.devices.dio import DioDevice
from translators.diopool import Member, Pool
from translators.errors import HpvmError
from translators.model import Device, Guest

DEFAULT_STATE_DIR = "/var/lib/libvirt/avio-kvm"
POOL_FILE = "dio-pool.json"


def state_dir() -> Path:
    return Path(os.environ.get("AVIO_STATE_DIR", DEFAULT_STATE_DIR))


def pool_path() -> Path:
    return state_dir() / POOL_FILE


def load() -> Pool:
    """The pool as recorded (empty when there is no record yet)."""
    path = pool_path()
    if not path.exists():
        return Pool()
    try:
        return diopool.loads(read_config(path))
    except ValueError as err:
        raise HostError(f"{path}: not a DIO pool record ({err})") from None


def save(pool: Pool) -> None:
    write_atomic(pool_path(), diopool.dumps(pool))


@contextmanager
def locked() -> Iterator[Pool]:
    """The pool, under an exclusive lock while it is changed; saved on success."""
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o755)
    with open(directory / f"{POOL_FILE}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        pool = load()
        yield pool
        save(pool)


# -- the device database (hpvmdevmgmt) ---------------------------------------------------------
def database_allows(address: str, statement: str | None = None) -> None:
    """The device database (`hpvmdevmgmt -a rdev:...`) refuses a restricted function, or
    the function of a restricted NIC; every path that pools a function or hands it to a
    guest calls this."""
    check_host_device(f"/sys/bus/pci/devices/{address}", statement)


# -- pooling -----------------------------------------------------------------------------------
def admission_refusal(function: pci.Function, pool: Pool) -> str | None:
    """Why `function` may not go into the pool (or to a guest) now, or None."""
    if not function.exists():
        return f"no PCI function {function.address} on this host"
    if function.is_bridge:
        return f"{function.address} is a PCI bridge"
    if not pci.iommu_present():
        return "the host has no IOMMU (no /sys/kernel/iommu_groups; boot with intel_iommu=on)"
    if function.driver != pci.VFIO:
        why = pci.host_use(function)
        if why:
            return f"{function.address} is used by the host: {why}"
    pooled = {m.address for m in pool.members}
    return pci.group_refusal(function, pooled)


def add(pool: Pool, address: str, label: str | None) -> Member:
    """Check `address`, bind it to vfio-pci and record it in `pool`."""
    function = pci.Function(address)
    if pool.find(address) is not None:
        raise HpvmError(f"{address} is already in the DIO pool")
    why = admission_refusal(function, pool)
    if why:
        raise HostError(why)
    database_allows(address)
    member = Member(
        address=address,
        vendor=function.vendor,
        device=function.device,
        role=function.role,
        host_driver=function.driver if function.driver != pci.VFIO else None,
        label=label,
        hwmac=function.mac if function.role == "nic" else None,
        group=function.group,
    )
    pool.add(member)  # label checks before the host is touched
    try:
        pci.bind(function, pci.VFIO)
    except HostError:
        pool.remove(member)
        if member.host_driver:
            pci.bind(function, None)
        raise
    return member


def release(pool: Pool, member: Member) -> None:
    """Give a member back to its host driver and drop it from the pool."""
    function = pci.Function(member.address)
    if function.exists():
        pci.bind(function, None)
    pool.remove(member)


# -- handing functions to guests ---------------------------------------------------------------
def dio_devices(devices: Iterable[Device]) -> list[DioDevice]:
    return [d for d in devices if isinstance(d, DioDevice)]


def resolve(devices: Iterable[Device], pool: Pool | None = None, strict: bool = True) -> None:
    """Each DIO statement's function from the pool (address, role, a PF's MAC); only pool
    members may be given to guests (`strict`; else a function not in the pool stays as
    typed: a `-d` statement may name one that left the pool)."""
    dios = dio_devices(devices)
    if not dios:
        return
    pool = pool if pool is not None else load()
    for dio in dios:
        member = pool.find(dio.hwpath)
        if member is None and not strict:
            continue
        if member is None:
            raise HpvmError(
                f"{dio.hwpath} is not in the DIO pool (hpvmhwmgmt -p dio -a)",
                dio.text or dio.requested or dio.format(),
            )
        dio.resolve(member.address, member.role, member.hwmac)


def resolve_guest(guest: Guest, pool: Pool | None = None) -> None:
    resolve(guest.devices, pool)


def prepare(
    devices: Iterable[Device],
    pool: Pool | None = None,
    binder: Callable[[pci.Function], None] | None = None,
) -> None:
    """Just before functions reach a guest (create, hot-plug, start, autostart): each is
    in the pool, exists, is allowed by the device database and sits on vfio-pci (bound
    again when the host gave it back, e.g. after a reboot, if the host does not use it;
    by `binder`, else through sysfs)."""
    dios = dio_devices(devices)
    if not dios:
        return
    pool = pool if pool is not None else load()
    resolve(dios, pool)
    for dio in dios:
        address = dio.function
        assert address is not None
        function = pci.Function(address)
        statement = dio.text or dio.requested or dio.format()
        if not function.exists():
            raise HostError(f"PCI function {address} is not on the host now: '{statement}'")
        database_allows(address, statement)
        if function.driver != pci.VFIO:
            why = admission_refusal(function, pool)
            if why:
                raise HostError(f"{why}: '{statement}'")
            if binder is not None:
                binder(function)
            else:
                pci.bind(function, pci.VFIO)


def users(guests: Iterable[Guest]) -> dict[str, str]:
    """PCI address -> the guest given it."""
    found = {}
    for guest in guests:
        for dio in dio_devices(guest.devices):
            if dio.function:
                found[dio.function] = guest.name
    return found
