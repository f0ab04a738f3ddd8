"""Guest model -> libvirt domain XML (lxml), and single devices for hot-plug."""

from __future__ import annotations

from lxml import etree

from translators import pci
from translators.model import (
    Adapter,
    DeviceType,
    Guest,
    NetworkDevice,
    StorageDevice,
    StorageType,
)

NS = "urn:avio-kvm:hpvm:1"
NS_PREFIX = "hpvm"
E = etree.Element
SUB = etree.SubElement
CONTROLLER_MODELS = {Adapter.AVIO_STOR: "virtio-scsi", Adapter.SCSI: "lsilogic"}
NIC_MODELS = {Adapter.AVIO_LAN: "virtio", Adapter.LAN: "e1000"}
CONSOLE_LOG_DIR = "/var/log/libvirt/qemu"


def console_log_path(name: str) -> str:
    """Where the guest's serial console is logged (by virtlogd)."""
    return f"{CONSOLE_LOG_DIR}/{name}-console.log"


def controller_index(bus: int, slot: int) -> int:
    """libvirt SCSI controller index of the HBA at HPVM (bus, slot)."""
    return bus * 8 + slot


def storage_alias(dev: StorageDevice) -> str:
    return f"ua-{dev.adapter.replace('_', '-')}-{dev.bus}-{dev.slot}-{dev.target}"


def controller_alias(adapter: Adapter, bus: int, slot: int) -> str:
    return f"ua-hba-{adapter.replace('_', '-')}-{bus}-{slot}"


def nic_alias(nic: NetworkDevice) -> str:
    return f"ua-net-{nic.bus}-{nic.slot}"


def target_dev(dev: StorageDevice) -> str:
    """A stable, unique `sdX` name from the HPVM address (libvirt requires one)."""
    assert dev.bus is not None and dev.slot is not None and dev.target is not None
    index = (dev.bus * 8 + dev.slot) * 128 + dev.target
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(ord("a") + rem) + letters
    return "sd" + letters


def _pci_address(parent: etree._Element, bus: int, slot: int) -> None:
    SUB(
        parent,
        "address",
        type="pci",
        domain="0x0000",
        bus=f"0x{bus:02x}",
        slot=f"0x{slot:02x}",
        function="0x0",
    )


def render_bridge(bus: int) -> etree._Element:
    ctl = E("controller", type="pci", index=str(bus), model="pci-bridge")
    _pci_address(ctl, 0, pci.bridge_slot(bus))
    return ctl


def render_controller(adapter: Adapter, bus: int, slot: int) -> etree._Element:
    """The virtual HBA at HPVM (bus, slot): virtio-scsi for AVIO, LSI for VIO."""
    ctl = E(
        "controller",
        type="scsi",
        index=str(controller_index(bus, slot)),
        model=CONTROLLER_MODELS[adapter],
    )
    SUB(ctl, "alias", name=controller_alias(adapter, bus, slot))
    _pci_address(ctl, *pci.to_pci(bus, slot))
    return ctl


def render_disk(dev: StorageDevice) -> etree._Element:
    """A disk or DVD behind its HBA, at the HPVM target."""
    assert dev.addressed, dev
    is_dvd = dev.device is DeviceType.DVD
    block = dev.storage in (StorageType.DISK, StorageType.LV)
    disk = E("disk", type="block" if block else "file", device="cdrom" if is_dvd else "disk")
    driver = SUB(disk, "driver", name="qemu", type="raw")
    if block and not is_dvd:
        driver.set("cache", "none")
        driver.set("io", "native")
    if dev.storage is not StorageType.NULL:
        SUB(disk, "source", **{"dev" if block else "file": dev.location})
    SUB(disk, "target", dev=target_dev(dev), bus="scsi")
    if is_dvd:
        SUB(disk, "readonly")
    SUB(disk, "alias", name=storage_alias(dev))
    address = SUB(
        disk, "address", type="drive", controller=str(controller_index(dev.bus, dev.slot)), bus="0"
    )
    if dev.adapter is Adapter.AVIO_STOR:
        address.set("target", str(dev.target))
        address.set("unit", "0")
    else:  # LSI: libvirt takes the SCSI id from `unit`
        address.set("target", "0")
        address.set("unit", str(dev.target))
    return disk


def render_interface(nic: NetworkDevice) -> etree._Element:
    """A vNIC on the vswitch's Linux bridge."""
    assert nic.addressed, nic
    iface = E("interface", type="bridge")
    SUB(iface, "mac", address=nic.mac)
    SUB(iface, "source", bridge=nic.vswitch)
    SUB(iface, "model", type=NIC_MODELS[nic.adapter])
    SUB(iface, "alias", name=nic_alias(nic))
    _pci_address(iface, *pci.to_pci(nic.bus, nic.slot))
    return iface


def render_metadata(guest: Guest) -> etree._Element:
    """HPVM-only facts, under our namespace, keyed by device alias."""
    root = E(f"{{{NS}}}guest", nsmap={NS_PREFIX: NS})
    SUB(root, f"{{{NS}}}os").text = guest.os_type
    SUB(root, f"{{{NS}}}start").text = "auto" if guest.autoboot else "manual"
    if guest.number is not None:
        SUB(root, f"{{{NS}}}number").text = str(guest.number)
    for dev in guest.storage:
        item = SUB(root, f"{{{NS}}}storage", alias=storage_alias(dev), storage=str(dev.storage))
        if dev.storage is StorageType.NULL and dev.location:
            item.set("location", dev.location)
        if dev.requested:
            item.set("statement", dev.requested)
    for nic in guest.networks:
        item = SUB(root, f"{{{NS}}}network", alias=nic_alias(nic))
        if nic.portid is not None:
            item.set("portid", str(nic.portid))
        if nic.requested:
            item.set("statement", nic.requested)
    return root


def render_domain(guest: Guest, virt_type: str = "kvm") -> etree._Element:
    """The whole domain. `guest` must be completed (see `allocate.complete`)."""
    domain = E("domain", type=guest.virt_type or virt_type)
    SUB(domain, "name").text = guest.name
    if guest.label:
        SUB(domain, "title").text = guest.label
    SUB(domain, "metadata").append(render_metadata(guest))
    SUB(domain, "memory", unit="MiB").text = str(guest.memory_mb)
    SUB(domain, "vcpu").text = str(guest.vcpus)
    os_ = SUB(domain, "os")
    SUB(os_, "type", arch="x86_64", machine="pc").text = "hvm"
    boot = guest.boot
    if boot.kernel:
        SUB(os_, "kernel").text = boot.kernel
        if boot.initrd:
            SUB(os_, "initrd").text = boot.initrd
        if boot.cmdline:
            SUB(os_, "cmdline").text = boot.cmdline
    else:
        SUB(os_, "boot", dev="hd")
    features = SUB(domain, "features")
    SUB(features, "acpi")
    SUB(features, "apic")
    SUB(domain, "on_poweroff").text = "destroy"
    SUB(domain, "on_reboot").text = "restart"
    SUB(domain, "on_crash").text = "destroy"
    devices = SUB(domain, "devices")
    for bus in sorted({d.bus for d in guest.devices if d.bus}):
        devices.append(render_bridge(bus))
    hbas = sorted({(d.bus, d.slot, d.adapter) for d in guest.storage})
    for bus, slot, adapter in hbas:
        devices.append(render_controller(adapter, bus, slot))
    for dev in guest.storage:
        devices.append(render_disk(dev))
    for nic in guest.networks:
        devices.append(render_interface(nic))
    serial = SUB(devices, "serial", type="pty")
    SUB(serial, "log", file=console_log_path(guest.name), append="on")
    SUB(serial, "target", port="0")
    console = SUB(devices, "console", type="pty")
    SUB(console, "target", type="serial", port="0")
    return domain


def to_string(element: etree._Element) -> str:
    """Pretty-printed XML text of an element."""
    return etree.tostring(element, pretty_print=True, encoding="unicode")
