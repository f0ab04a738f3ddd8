"""Host PCI functions through sysfs: what they are, who uses them, binding to vfio-pci.

In the spirit of libvirt's virpci.c / virhostdev.c and Proxmox's PCI.pm:
an IOMMU must be present; a function's IOMMU group is viable when every other
member is in the pool, unbound (or on vfio-pci), or a PCI bridge; binding goes
through `driver_override` + unbind + `drivers_probe`, so no other device of
the same vendor:device is taken (unlike `new_id`), and giving it back clears
the override and probes again.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from agent.errors import HostError

PCI_DEVICES = Path("/sys/bus/pci/devices")
PCI_DRIVERS = Path("/sys/bus/pci/drivers")
DRIVERS_PROBE = Path("/sys/bus/pci/drivers_probe")
IOMMU_GROUPS = Path("/sys/kernel/iommu_groups")
VFIO = "vfio-pci"
CLASS_NETWORK = 0x02
CLASS_STORAGE = 0x01
CLASS_PCI_BRIDGE = 0x0604  # class and subclass: a PCI-to-PCI bridge


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as err:
        raise HostError(f"cannot write '{value.strip()}' to {path}: {err.strerror}") from None


@dataclass(frozen=True)
class Function:
    """One PCI function, by its address (DDDD:BB:DD.F)."""

    address: str

    @property
    def path(self) -> Path:
        return PCI_DEVICES / self.address

    def exists(self) -> bool:
        return self.path.exists()

    @property
    def vendor(self) -> str:
        return _read(self.path / "vendor") or ""

    @property
    def device(self) -> str:
        return _read(self.path / "device") or ""

    @property
    def class_code(self) -> int:
        return int(_read(self.path / "class") or "0", 16)

    @property
    def driver(self) -> str | None:
        link = self.path / "driver"
        return os.path.basename(os.readlink(link)) if link.is_symlink() else None

    @property
    def group(self) -> str | None:
        link = self.path / "iommu_group"
        return os.path.basename(os.readlink(link)) if link.is_symlink() else None

    def group_members(self) -> list[Function]:
        group = self.group
        if group is None:
            return []
        return [Function(p.name) for p in sorted((IOMMU_GROUPS / group / "devices").iterdir())]

    def _net_dirs(self) -> list[Path]:
        """Its network interfaces' sysfs dirs: `net/X`, or `virtio*/net/X` (virtio-net)."""
        return sorted([*self.path.glob("net/*"), *self.path.glob("virtio*/net/*")])

    @property
    def netdevs(self) -> list[str]:
        return [p.name for p in self._net_dirs()]

    @property
    def is_bridge(self) -> bool:
        return self.class_code >> 8 == CLASS_PCI_BRIDGE

    @property
    def is_nic(self) -> bool:
        return self.class_code >> 16 == CLASS_NETWORK

    @property
    def is_vf(self) -> bool:
        return (self.path / "physfn").exists()

    @property
    def role(self) -> str:
        """translators.devices.dio.ROLES: an SR-IOV VF NIC, another NIC, not a NIC."""
        if self.is_nic:
            return "vf" if self.is_vf else "nic"
        return "other"

    @property
    def mac(self) -> str | None:
        """The MAC of its host NIC (while a host driver has it)."""
        for net in self._net_dirs():
            mac = _read(net / "address")
            if mac:
                return mac.lower()
        return None

    @property
    def sriov_totalvfs(self) -> int | None:
        text = _read(self.path / "sriov_totalvfs")
        return int(text) if text and text.isdigit() else None

    def virtual_functions(self) -> list[Function]:
        links = sorted(self.path.glob("virtfn*"), key=lambda p: int(p.name[6:]))
        return [Function(os.path.basename(os.readlink(link))) for link in links]


def iommu_present() -> bool:
    """Has the host an IOMMU with groups (intel_iommu=on, amd_iommu)?"""
    return IOMMU_GROUPS.is_dir() and any(IOMMU_GROUPS.iterdir())


def group_refusal(function: Function, pooled: set[str]) -> str | None:
    """Why `function`'s IOMMU group cannot go to a guest, or None when it is viable."""
    group = function.group
    if group is None:
        return f"{function.address} is in no IOMMU group"
    for other in function.group_members():
        if other.address == function.address or other.address in pooled or other.is_bridge:
            continue
        if other.driver in (None, VFIO):
            continue
        return (
            f"IOMMU group {group} of {function.address} also holds {other.address} "
            f"(driver {other.driver}), which the host uses: pool it too, or unbind it"
        )
    return None


def _block_devices_under(function: Function) -> list[str]:
    """The block devices (sda, vda, nvme0n1) behind a storage controller."""
    root = str(function.path.resolve()) + "/"
    found = []
    for block in Path("/sys/block").iterdir():
        if str(block.resolve()).startswith(root):
            found.append(block.name)
    return sorted(found)


def management_nic() -> str | None:
    """The NIC of the host's IPv4 default route (its management path), if any."""
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) > 2 and fields[1] == "00000000":
            return fields[0]
    return None


def host_use(function: Function) -> str | None:
    """Why the host itself uses `function`, or None.

    A NIC with addresses or routes, in a bridge or bond, or the management NIC
    (the default route's); a storage controller with a disk the host uses (root,
    mounted, swap, held by LVM/RAID).
    """
    from agent.network import netlink
    from agent.storage import hostcheck

    management = management_nic()
    for name in function.netdevs:
        if name == management:
            return f"its NIC {name} is the host's management NIC (default route)"
        addresses, routes = netlink.host_traffic(name)
        if addresses:
            return f"its NIC {name} has host addresses ({', '.join(addresses)})"
        if routes:
            return f"its NIC {name} has host routes ({', '.join(routes)})"
        master = Path(f"/sys/class/net/{name}/master")
        if master.exists():
            return f"its NIC {name} is a port of {master.resolve().name} (bridge or bond)"
    for block in _block_devices_under(function):
        why = hostcheck.host_use(f"/dev/{block}")
        if why:
            return f"its disk {block} {why}"
    return None


def ensure_vfio_driver() -> None:
    """vfio-pci is loaded (modprobe once)."""
    if (PCI_DRIVERS / VFIO).is_dir():
        return
    result = subprocess.run(["modprobe", VFIO], capture_output=True, text=True)
    if result.returncode != 0 or not (PCI_DRIVERS / VFIO).is_dir():
        raise HostError(f"cannot load {VFIO}: {result.stderr.strip() or 'no such driver'}")


def bind(function: Function, driver: str | None) -> None:
    """Give `function` to `driver` (vfio-pci), or back to its host driver (None).

    `driver_override` names the one driver that may take it (cleared for None),
    the current driver lets go, and `drivers_probe` lets the kernel choose again.
    """
    if driver == VFIO:
        ensure_vfio_driver()
    _write(function.path / "driver_override", f"{driver}\n" if driver else "\n")

    def done(current: str | None) -> bool:
        return current == driver if driver else current not in (None, VFIO)

    for _ in range(3):  # a host driver may take it between two steps (a function just added)
        if done(function.driver):
            return
        if function.driver is not None:
            _write(function.path / "driver" / "unbind", function.address)
        if function.driver is None:
            _write(DRIVERS_PROBE, function.address)
    if driver is not None and not done(function.driver):
        raise HostError(f"{function.address} did not bind to {driver} (driver: {function.driver})")


def make_vfs(pf: Function, count: int) -> list[Function]:
    """Create `count` SR-IOV VFs on `pf` (none before): its sriov_numvfs."""
    total = pf.sriov_totalvfs
    if total is None:
        raise HostError(f"{pf.address} has no SR-IOV (no sriov_totalvfs)")
    if not 1 <= count <= total:
        raise HostError(f"{pf.address} has at most {total} VFs, not {count}")
    _write(pf.path / "sriov_numvfs", "0")
    _write(pf.path / "sriov_numvfs", str(count))
    return pf.virtual_functions()
