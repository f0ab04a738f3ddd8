"""Guest model -> libvirt domain XML (lxml), and single devices for hot-plug.

The domain skeleton and metadata frame are here; each kind renders its own
devices (`translators/devices/`).
"""

from __future__ import annotations

from lxml import etree

from translators import pci
from translators.devices import registry
from translators.devices.base import NS, NS_PREFIX, SUB, E, pci_address
from translators.model import Device, Guest

__all__ = ["NS", "NS_PREFIX", "render_domain", "render_metadata", "to_string"]

CONSOLE_LOG_DIR = "/var/log/libvirt/qemu"


def console_log_path(name: str) -> str:
    """Where the guest's serial console is logged (by virtlogd)."""
    return f"{CONSOLE_LOG_DIR}/{name}-console.log"


def render_bridge(bus: int) -> etree._Element:
    ctl = E("controller", type="pci", index=str(bus), model="pci-bridge")
    pci_address(ctl, 0, pci.bridge_slot(bus))
    return ctl


def render_device(device: Device) -> etree._Element:
    """One device's element, for hot-plug; a device of no registered kind is refused."""
    return registry.kind_of(device).render(device)


def device_xml(device: Device) -> str:
    """One device's XML text, as libvirt's attach and detach calls take it."""
    return compact(render_device(device))


def bridge_xml(bus: int) -> str:
    """The pci-bridge that makes PCI bus `bus`, as libvirt's attach call takes it."""
    return compact(render_bridge(bus))


def with_link(xml: str, state: str) -> str:
    """An interface's XML with its link `up` or `down`."""
    iface = etree.fromstring(xml.encode())
    SUB(iface, "link", state=state)
    return etree.tostring(iface, encoding="unicode")


def render_metadata(guest: Guest) -> etree._Element:
    """HPVM-only facts, under our namespace, keyed by device alias."""
    root = E(f"{{{NS}}}guest", nsmap={NS_PREFIX: NS})
    SUB(root, f"{{{NS}}}os").text = guest.os_type
    SUB(root, f"{{{NS}}}start").text = "auto" if guest.autoboot else "manual"
    if guest.number is not None:
        SUB(root, f"{{{NS}}}number").text = str(guest.number)
    for device in guest.devices:
        device.metadata(root)
    return root


def metadata_element_xml(guest: Guest) -> str:
    """The metadata as `virDomainSetMetadata` takes it: libvirt adds the namespace
    itself (prefix and URI given with the call), so the element carries none."""
    element = render_metadata(guest)
    for item in element.iter():
        item.tag = etree.QName(item).localname
    etree.cleanup_namespaces(element)
    return compact(element)


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
    controllers: set[tuple[str | None, str | None]] = set()
    for kind in registry.KINDS:
        for element in kind.render_all(guest.of_kind(kind)):
            if element.tag == "controller":  # an HBA that devices of two kinds share
                key = (element.get("type"), element.get("index"))
                if key in controllers:
                    continue
                controllers.add(key)
            devices.append(element)
    serial = SUB(devices, "serial", type="pty")
    SUB(serial, "log", file=console_log_path(guest.name), append="on")
    SUB(serial, "target", port="0")
    console = SUB(devices, "console", type="pty")
    SUB(console, "target", type="serial", port="0")
    return domain


def to_string(element: etree._Element) -> str:
    """Pretty-printed XML text of an element."""
    return etree.tostring(element, pretty_print=True, encoding="unicode")


def compact(element: etree._Element) -> str:
    """XML text of an element on one line (for libvirt's device calls)."""
    return etree.tostring(element, encoding="unicode")
