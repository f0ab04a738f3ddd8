"""Guest options (one table, read alike by the commands and by config files) -> model.

A config file holds the `hpvmcreate` options of one guest, one per line, with
`#` comments; a bare resource statement counts as `-a`, `[... Details]`
headers are skipped, so `hpvmstatus -P name -d` output is itself a config.
Its lines are read as argparse reads a command line (attached values,
unambiguous abbreviations); the commands' own parsers are in `agent.cli.options`.
"""

from __future__ import annotations

import argparse
import functools
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from translators import limits
from translators.errors import HpvmError, Warnings
from translators.grammar import parse_statement
from translators.model import BootExtension, Device, Guest
from translators.text import (
    FILE_WHITESPACE,
    LABEL_MAX,
    PATH_MAX,
    bad_character,
    check_path,
    check_text,
    describe,
    parse_number,
)

OS_TYPES = ("hpux", "linux", "windows", "openvms", "unknown")
MEMORY = re.compile(r"([0-9]+)\s*([mgt]?)b?", re.IGNORECASE | re.ASCII)
MEMORY_FACTORS = {"": 1, "m": 1, "g": 1024, "t": 1024 * 1024}
IGNORED_STATEMENTS = ("serial:",)
#: What a bare resource statement in a config file starts with.
STATEMENT_HEADS = {"disk", "dvd", "tape", "changer", "burner", "hba", "network"}
GUEST_SETTINGS = ("os_type", "vcpus", "memory", "boot_attr", "label")  # -O -c -r -B -l


def parse_memory(text: str) -> int:
    """HPVM sizes: `512M`, `4G`, `1T`, a bare number is MB -> MB."""
    match = MEMORY.fullmatch(text.strip())
    if not match:
        check_text(text, "memory size")
        raise HpvmError(f"bad memory size '{text[:40]}' (e.g. 512M, 4G)")
    if len(match.group(1)) > 20:
        raise HpvmError(f"memory size has more than 20 digits (at most {limits.MAX_MEMORY_MB}M)")
    memory = int(match.group(1)) * MEMORY_FACTORS[match.group(2).lower()]
    if memory > limits.MAX_MEMORY_MB:
        raise HpvmError(
            f"memory {text.strip()} is more than libvirt's limit of {limits.MAX_MEMORY_MB} MB"
        )
    return memory


def parse_os_type(text: str) -> str:
    value = text.lower().replace("-", "")
    if value not in OS_TYPES:
        raise HpvmError(f"unknown OS type '{text}' (one of {', '.join(OS_TYPES)})")
    return value


def parse_boot_attr(text: str) -> str:
    value = text.lower()
    if value not in ("auto", "manual"):
        raise HpvmError(f"-B takes 'auto' or 'manual', not '{text}'")
    return value


def parse_vcpus(text: str) -> int:
    try:
        return parse_number(text, "-c (vCPUs)", digits=6)
    except HpvmError:
        check_text(text, "-c (vCPUs)")
        raise HpvmError(f"-c takes a number of vCPUs, not '{text[:40]}'") from None


def parse_label(text: str) -> str | None:
    """A free-text label: one line of printable text, at most 255 characters; '' is none."""
    check_text(text, "label (-l)", limit=LABEL_MAX)
    return text or None


def parse_file_name(text: str) -> str:
    """A file to read (relative is fine): text only, within PATH_MAX."""
    return check_text(text, "--config", limit=PATH_MAX - 1)


def parse_kernel(text: str) -> str:
    return check_path(text, "--kernel")


def parse_initrd(text: str) -> str:
    return check_path(text, "--initrd")


def parse_cmdline(text: str) -> str | None:
    return check_text(text, "--cmdline") or None


@dataclass(frozen=True)
class Option:
    """One guest option, read alike from a command line and from a config file."""

    flag: str
    dest: str
    help: str
    parse: Callable[[str], object] | None = None
    choices: tuple[str, ...] | None = None
    repeatable: bool = False  # `-a`: each one adds a statement
    extension: bool = False  # an avio-kvm extension, not HPVM


#: The guest options of `hpvmcreate` (and config files), in the order `--help` shows them.
GUEST_OPTIONS = (
    Option("-O", "os_type", "guest OS type (hpux, linux, ...)", parse_os_type),
    Option("-c", "vcpus", "number of vCPUs", parse_vcpus),
    Option("-r", "memory", "memory, e.g. 512M or 4G", parse_memory),
    Option("-a", "add", "add a resource statement (repeatable)", repeatable=True),
    Option("-B", "boot_attr", "auto or manual start", parse_boot_attr),
    Option("-l", "label", "free-text label", parse_label),
    Option("--kernel", "kernel", "boot this kernel directly", parse_kernel, extension=True),
    Option("--initrd", "initrd", "initramfs for --kernel", parse_initrd, extension=True),
    Option(
        "--cmdline", "cmdline", "kernel command line for --kernel", parse_cmdline, extension=True
    ),
    Option(
        "--virt-type",
        "virt_type",
        "override the domain type",
        choices=("kvm", "qemu"),
        extension=True,
    ),
)


class OptionParser(argparse.ArgumentParser):
    """argparse that raises `HpvmError` instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise HpvmError(message)


def add_guest_options(parser: argparse.ArgumentParser, extensions: str = "") -> None:
    """`GUEST_OPTIONS` on `parser`; the extensions in a group titled with `extensions` added."""
    group = parser.add_argument_group("avio-kvm extensions (not HPVM)" + extensions)
    for option in GUEST_OPTIONS:
        target = group if option.extension else parser
        if option.repeatable:
            target.add_argument(
                option.flag,
                dest=option.dest,
                action="append",
                default=[],
                metavar="RSRC",
                help=option.help,
            )
        else:
            target.add_argument(
                option.flag,
                dest=option.dest,
                type=option.parse,
                choices=option.choices,
                help=option.help,
            )


# Parsers are built once per process (argparse's setup dominates parsing time)
# and only ever used through parse_args.
@functools.cache
def _config_parser() -> argparse.ArgumentParser:
    parser = OptionParser(prog="config", add_help=False)
    parser.add_argument("-P", dest="name")
    add_guest_options(parser)
    return parser


def statements(texts: list[str], warnings: Warnings) -> list[Device]:
    return [parse_statement(text, warnings) for text in texts]


def guest_from_options(options: argparse.Namespace, warnings: Warnings) -> Guest:
    """The guest an `hpvmcreate` option list (or config file) describes."""
    devices = statements(options.add, warnings)
    if (options.initrd or options.cmdline) and not options.kernel:
        raise HpvmError("--initrd and --cmdline need --kernel")
    guest = Guest(
        name=options.name,
        os_type=options.os_type or "unknown",
        vcpus=1 if options.vcpus is None else options.vcpus,
        memory_mb=2048 if options.memory is None else options.memory,
        autoboot=(options.boot_attr or "auto") == "auto",
        label=options.label,
        devices=devices,
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


def config_text(data: bytes, source: str) -> str:
    """The text of a config file: UTF-8 with no control characters, else one error line."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise HpvmError(f"{source}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x})") from None
    char = bad_character(text, allowed=FILE_WHITESPACE)
    if char is not None:
        line = text.count("\n", 0, text.index(char)) + 1
        raise HpvmError(f"{source}:{line}: not a text line ({describe(char)})")
    return text


OPTION_TOKEN = re.compile(r"--?[A-Za-z][A-Za-z0-9-]{0,30}")


def _line_tokens(line: str, parser: argparse.ArgumentParser) -> list[str]:
    """The option list one config line stands for (an option line or a bare statement).

    Only a line that is an option or a resource statement is ever quoted in an
    error: a config file may be any file (`--config /etc/shadow`).
    """
    if line.startswith("-"):
        option = line.split(None, 1)[0].split("=", 1)[0]
        names = parser._option_string_actions
        if option.startswith("--"):  # argparse takes unambiguous abbreviations
            known = any(name.startswith(option) for name in names) and len(option) > 2
        else:  # `-c 2` or `-c2`
            known = option[:2] in names
        if not known:
            if OPTION_TOKEN.fullmatch(option):
                raise HpvmError(f"unknown option '{option}'")
            raise HpvmError("not an option or a resource statement")
        try:
            return shlex.split(line, comments=True)
        except ValueError as err:
            raise HpvmError(f"{err} in an option line") from None
    head = line.split(":", 1)[0].strip().lower()
    if head in STATEMENT_HEADS:
        return ["-a", line.split(" #", 1)[0].strip()]
    raise HpvmError("not an option or a resource statement")


def _without_name(tokens: list[str]) -> list[str]:
    """`tokens` less `-P NAME` / `-PNAME` (the file name gives the guest's name)."""
    kept: list[str] = []
    skip = False
    for token in tokens:
        if skip:
            skip = False
        elif token == "-P":
            skip = True
        elif not token.startswith("-P"):
            kept.append(token)
    return kept


def config_argv(text: str, name: str, source: str, warnings: Warnings) -> list[str]:
    """The option list a config file holds, checked line by line (errors name `source:line`)."""
    parser = _config_parser()
    options = parser.parse_args([])
    argv: list[str] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith("#") or (line.startswith("[") and line.endswith("]")):
            continue
        if line.lower().startswith(IGNORED_STATEMENTS):
            check_text(line, "statement")
            warnings.add(f"{source}:{number}: ignored '{line}' (the console is always serial)")
            continue
        try:
            tokens = _line_tokens(line, parser)
            parser.parse_args(tokens, namespace=options)
            for stmt in options.add[len(options.add) - tokens.count("-a") :]:
                parse_statement(stmt)  # report a bad statement on its own line
        except HpvmError as err:
            raise HpvmError(f"{source}:{number}: {err}") from None
        if options.name not in (None, name):
            raise HpvmError(f"{source}:{number}: -P {options.name} differs from the file name")
        argv += _without_name(tokens)
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
    return parse_config_text(config_text(path.read_bytes(), str(path)), path.stem, str(path))
