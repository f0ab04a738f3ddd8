"""Option lists of `hpvmcreate` / `hpvmmodify` and guest config files -> model.

A config file holds the `hpvmcreate` options of one guest, one per line, with
`#` comments; a bare resource statement counts as `-a`, `[... Details]`
headers are skipped, so `hpvmstatus -P name -d` output is itself a config.
"""

from __future__ import annotations

import argparse
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from translators.errors import HpvmError, Warnings
from translators.grammar import parse_statement
from translators.model import BootExtension, Device, Guest, NetworkDevice, StorageDevice

OS_TYPES = ("hpux", "linux", "windows", "openvms", "unknown")
MEMORY = re.compile(r"(\d+)\s*([mgt]?)b?", re.IGNORECASE)
MEMORY_FACTORS = {"": 1, "m": 1, "g": 1024, "t": 1024 * 1024}
IGNORED_STATEMENTS = ("serial:",)
GUEST_SETTINGS = ("os_type", "vcpus", "memory", "boot_attr", "label")  # -O -c -r -B -l


class _Parser(argparse.ArgumentParser):
    """argparse that raises `HpvmError` instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise HpvmError(message)


def parse_memory(text: str) -> int:
    """HPVM sizes: `512M`, `4G`, `1T`, a bare number is MB -> MB."""
    match = MEMORY.fullmatch(text.strip())
    if not match:
        raise HpvmError(f"bad memory size '{text}' (e.g. 512M, 4G)")
    return int(match.group(1)) * MEMORY_FACTORS[match.group(2).lower()]


def _os_type(text: str) -> str:
    value = text.lower().replace("-", "")
    if value not in OS_TYPES:
        raise HpvmError(f"unknown OS type '{text}' (one of {', '.join(OS_TYPES)})")
    return value


def _boot_attr(text: str) -> str:
    value = text.lower()
    if value not in ("auto", "manual"):
        raise HpvmError(f"-B takes 'auto' or 'manual', not '{text}'")
    return value


def _vcpus(text: str) -> int:
    if not text.isdigit():
        raise HpvmError(f"-c takes a number of vCPUs, not '{text}'")
    return int(text)


def _add_guest_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-O", dest="os_type", type=_os_type, help="guest OS type (hpux, linux, ...)"
    )
    parser.add_argument("-c", dest="vcpus", type=_vcpus, help="number of vCPUs")
    parser.add_argument("-r", dest="memory", type=parse_memory, help="memory, e.g. 512M or 4G")
    parser.add_argument(
        "-a",
        dest="add",
        action="append",
        default=[],
        metavar="RSRC",
        help="add a resource statement (repeatable)",
    )
    parser.add_argument("-B", dest="boot_attr", type=_boot_attr, help="auto or manual start")
    parser.add_argument("-l", dest="label", help="free-text label")
    ext = parser.add_argument_group("avio-kvm extensions (not HPVM)")
    ext.add_argument("--kernel", help="boot this kernel directly")
    ext.add_argument("--initrd", help="initramfs for --kernel")
    ext.add_argument("--cmdline", help="kernel command line for --kernel")
    ext.add_argument("--virt-type", choices=("kvm", "qemu"), help="override the domain type")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connect", metavar="URI", help="libvirt URI (default qemu:///system)")
    parser.add_argument(
        "--print-xml", action="store_true", help="print the domain XML and change nothing"
    )


def create_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hpvmcreate", description="Create a guest from HPVM options.")
    parser.add_argument("-P", dest="name", required=True, help="guest name")
    _add_guest_options(parser)
    parser.add_argument(
        "-s",
        dest="check_only",
        action="store_true",
        help="check the configuration only; create nothing",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="options from a guest config file (such as `hpvmstatus -P NAME -d` output), "
        "read before the command line's",
    )
    _add_common(parser)
    return parser


def modify_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hpvmmodify", description="Change a guest, live where it runs.")
    parser.add_argument("-P", dest="name", required=True, help="guest name")
    _add_guest_options(parser)
    parser.add_argument(
        "-d",
        dest="delete",
        action="append",
        default=[],
        metavar="RSRC",
        help="delete a resource (repeatable)",
    )
    parser.add_argument(
        "-m",
        dest="modify",
        action="append",
        default=[],
        metavar="RSRC",
        help="modify a resource (repeatable)",
    )
    _add_common(parser)
    return parser


def _config_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="config", add_help=False)
    parser.add_argument("-P", dest="name")
    _add_guest_options(parser)
    return parser


def statements(texts: list[str], warnings: Warnings) -> list[Device]:
    return [parse_statement(text, warnings) for text in texts]


def guest_from_options(options: argparse.Namespace, warnings: Warnings) -> Guest:
    """The guest an `hpvmcreate` option list (or config file) describes."""
    devices = statements(options.add, warnings)
    guest = Guest(
        name=options.name,
        os_type=options.os_type or "unknown",
        vcpus=1 if options.vcpus is None else options.vcpus,
        memory_mb=2048 if options.memory is None else options.memory,
        autoboot=(options.boot_attr or "auto") == "auto",
        label=options.label,
        storage=[d for d in devices if isinstance(d, StorageDevice)],
        networks=[d for d in devices if isinstance(d, NetworkDevice)],
        boot=BootExtension(options.kernel, options.initrd, options.cmdline),
        virt_type=options.virt_type,
    )
    return guest


@dataclass
class ConfigFile:
    """A parsed guest config file."""

    path: Path
    guest: Guest
    warnings: Warnings = field(default_factory=Warnings)
    given: frozenset[str] = frozenset()  # guest-wide options the file sets (dest names)


def config_argv(text: str, name: str, source: str, warnings: Warnings) -> list[str]:
    """The option list a config file holds, checked line by line (errors name `source:line`)."""
    parser = _config_parser()
    options = parser.parse_args([])
    argv: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#") or (line.startswith("[") and line.endswith("]")):
            continue
        try:
            if line.startswith("-"):
                tokens = shlex.split(line, comments=True)
            elif line.lower().startswith(IGNORED_STATEMENTS):
                warnings.add(f"{source}:{number}: ignored '{line}' (the console is always serial)")
                continue
            else:
                tokens = ["-a", line.split(" #", 1)[0].strip()]
            parser.parse_args(tokens, namespace=options)
            for stmt in options.add[len(options.add) - tokens.count("-a") :]:
                parse_statement(stmt)  # report a bad statement on its own line
        except (HpvmError, ValueError) as err:
            raise HpvmError(f"{source}:{number}: {err}") from None
        if options.name not in (None, name):
            raise HpvmError(f"{source}:{number}: -P {options.name} differs from the file name")
        argv += [t for t in tokens if t != "-P" and t != options.name]
    return argv


def parse_config_text(text: str, name: str, source: str = "<config>") -> ConfigFile:
    """Parse the text of a config file for guest `name`; errors name `source:line`."""
    warnings = Warnings()
    argv = config_argv(text, name, source, warnings)
    options = _config_parser().parse_args(argv)
    options.name = name
    try:
        guest = guest_from_options(options, warnings)
    except HpvmError as err:
        raise HpvmError(f"{source}: {err}") from None
    given = frozenset(k for k in GUEST_SETTINGS if getattr(options, k) is not None)
    return ConfigFile(Path(source), guest, warnings, given)


def parse_config_file(path: Path) -> ConfigFile:
    """Parse `NAME.conf`; the guest's name is the file's stem."""
    return parse_config_text(path.read_text(), path.stem, str(path))
