"""Which libvirt domain type this host can run: `kvm` where KVM really works, else `qemu`.

`/dev/kvm` alone is not enough: these machines expose a PVM-based KVM
(module kvm_pvm, no VMX/SVM in the CPU) under which a stock guest kernel never
boots. KVM is taken to work when /dev/kvm opens and hardware virtualization
drives it (kvm_intel or kvm_amd loaded, vmx/svm among the CPU flags).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

OVERRIDE = "AVIO_VIRT_TYPE"


def _cpu_has_virt() -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return bool(flags & {"vmx", "svm"})
    return False


@functools.cache
def detect_virt_type() -> str:
    """`kvm` or `qemu` (TCG); `$AVIO_VIRT_TYPE` overrides."""
    forced = os.environ.get(OVERRIDE)
    if forced in ("kvm", "qemu"):
        return forced
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return "qemu"
    os.close(fd)
    hardware = any(Path(f"/sys/module/{m}").exists() for m in ("kvm_intel", "kvm_amd"))
    return "kvm" if hardware and _cpu_has_virt() else "qemu"
