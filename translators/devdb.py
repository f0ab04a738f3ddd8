"""The device database of `hpvmdevmgmt`: its entries, their stored text, the `-l` layout.

Pure: the host layer (`agent/devices/database.py`) gives each entry its
identity (`key`, as `HostClaims.key` makes it: a block device by number, a
file by inode, a loop device by its file) and, for disks, a stable id.

An entry is `rdev` (restricted: no guest may use it) or `gdev` (a guest
device, which may carry `SHARE=YES`). `-l` prints one line per entry, HPVM's
shape as opensvc parses it (the first field split on `,` is the device and its
aliases; `DEVTYPE=` and `SHARE=YES` are looked for in the line):

    PATH[,ALIAS...]:CONFIG=rdev|gdev,EXIST=YES|NO,DEVTYPE=...,SHARE=YES|NO[,AUTORDEV=YES]:GUEST[,GUEST...]:ID
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from translators.devices.storage import same_storage
from translators.errors import HpvmError
from translators.text import check_path, check_text

RDEV, GDEV, ALL = "rdev", "gdev", "all"
CONFIGS = (RDEV, GDEV)
NOT_HERE = {
    "server": "'server' entries (HPVM's Serviceguard servers) are not supported on KVM hosts",
    "env": "'env' entries are not supported on KVM hosts",
}
#: Attributes a user may set or delete, and their values.
SETTABLE = {"SHARE": ("YES", "NO")}
#: Attributes the host sets; a user may delete them only.
HOST_SET = {"AUTORDEV"}
UNSUPPORTED_ATTRS = {
    "USAGE": "USAGE is HPVM's file-type hint; files here are typed by their statement",
    "PRESERVE": "PRESERVE is not needed: hpvmremove never deletes device entries",
    "IGNOREWWID": "IGNOREWWID is not supported: a changed stable id is always reported",
}
DEVTYPES = ("DISK", "FILE", "DIR", "CHAR", "NIC", "PCI")
FORMAT_VERSION = 1


@dataclass
class Entry:
    """One entry of the database."""

    config: str  # rdev | gdev
    path: str  # the name it was given (or found) under
    key: str  # its identity
    devtype: str  # one of DEVTYPES
    stable_id: str = ""  # /dev/disk/by-id name or WWN of a disk, "" when none
    attrs: dict[str, str] = field(default_factory=dict)

    @property
    def shared(self) -> bool:
        return self.config == GDEV and self.attrs.get("SHARE") == "YES"

    def matches(self, key: str, stable_id: str = "") -> bool:
        """Is the device of identity `key` (and `stable_id`) this entry, or overlapping it?

        A disk restricted covers its partitions and the other way round. Where
        both have a stable id, it decides: a device number now naming another
        disk is not this entry, and this disk under a new number still is.
        """
        if self.stable_id and stable_id:
            if self.stable_id == stable_id:
                return True
            if self.key == key:
                return False  # the number names another disk now (renumbered)
        return same_storage(self.key, key)


@dataclass
class Request:
    """One `-a`, `-d`, `-m` or `-l` argument, parsed."""

    option: str  # a | d | m | l
    config: str  # rdev | gdev | all
    entry: str | None = None
    attr: str | None = None
    value: str | None = None


def _fields(option: str, text: str) -> tuple[str, str | None]:
    check_text(text, f"-{option} argument", None, limit=8192)
    config, sep, rest = text.partition(":")
    if config in NOT_HERE:
        raise HpvmError(NOT_HERE[config], text)
    allowed = (*CONFIGS, ALL) if option == "l" else CONFIGS
    if config not in allowed:
        raise HpvmError(f"entry type must be {' or '.join(allowed)}", text)
    if ":depend:" in rest or rest.startswith("depend:"):
        raise HpvmError("dependents ('depend') are not supported: libvirt tracks them", text)
    return config, rest if sep else None


def parse_request(option: str, text: str) -> Request:
    """`TYPE[:ENTRY[:attr:NAME[=VALUE]]]` for option `-a`/`-d`/`-m`/`-l`, checked."""
    config, rest = _fields(option, text)
    if option == "l":
        if rest is None:
            return Request("l", config)
        if "=" in rest and not rest.startswith("/"):
            raise HpvmError("listing by attribute value is not supported", text)
        return Request("l", config, _path(rest, text))
    if not rest:
        raise HpvmError(f"-{option} needs {config}:ENTRY (a host device or file path)", text)
    entry, sep, spec = rest.partition(":attr:")
    entry = _path(entry, text)
    if option == "a":
        if sep:
            raise HpvmError("-a adds an entry; set attributes with -m", text)
        return Request("a", config, entry)
    if option == "m" and not sep:
        raise HpvmError(f"-m needs {config}:ENTRY:attr:NAME=VALUE", text)
    if not sep:
        return Request("d", config, entry)
    name, eq, value = spec.partition("=")
    name = name.upper()
    if name in UNSUPPORTED_ATTRS:
        raise HpvmError(UNSUPPORTED_ATTRS[name], text)
    if name not in SETTABLE and name not in HOST_SET:
        known = ", ".join(sorted((*SETTABLE, *HOST_SET)))
        raise HpvmError(f"unknown attribute '{name}' (known: {known})", text)
    if option == "d":
        if eq:
            raise HpvmError("-d deletes an attribute by name: ...:attr:NAME", text)
        return Request("d", config, entry, name)
    if name in HOST_SET:
        raise HpvmError(f"{name} is set by the host, not by hand", text)
    value = value.upper()
    if value not in SETTABLE[name]:
        raise HpvmError(f"{name} must be {' or '.join(SETTABLE[name])}", text)
    if config == RDEV:
        raise HpvmError(f"{name} applies to guest devices (gdev), not restricted ones", text)
    return Request("m", config, entry, name, value)


def _path(entry: str, text: str) -> str:
    if entry.upper().endswith(("IGNOREWWID", "IGNOREWWID=YES", "IGNOREWWID=NO")):
        raise HpvmError(UNSUPPORTED_ATTRS["IGNOREWWID"], text)
    return check_path(entry, "device entry", text)


# -- the stored text ----------------------------------------------------------


def dump(entries: Iterable[Entry]) -> str:
    """The database as the text stored on disk (JSON, one entry per line)."""
    lines = [
        json.dumps(
            {
                "config": e.config,
                "path": e.path,
                "key": e.key,
                "devtype": e.devtype,
                "stable_id": e.stable_id,
                "attrs": dict(sorted(e.attrs.items())),
            },
            ensure_ascii=True,
        )
        for e in entries
    ]
    body = ",\n  ".join(lines)
    return f'{{"version": {FORMAT_VERSION}, "entries": [\n  {body}\n]}}\n'


def load(text: str) -> list[Entry]:
    """The entries of a stored database; `ValueError` says what is wrong with it."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"not JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
        raise ValueError(f"not a version {FORMAT_VERSION} device database")
    items = data.get("entries")
    if not isinstance(items, list):
        raise ValueError("no entry list")
    found = []
    for n, item in enumerate(items, 1):
        try:
            entry = Entry(
                config=item["config"],
                path=item["path"],
                key=item["key"],
                devtype=item["devtype"],
                stable_id=item.get("stable_id", ""),
                attrs=dict(item.get("attrs", {})),
            )
        except (TypeError, KeyError, AttributeError):
            raise ValueError(f"entry {n} is incomplete") from None
        texts = [entry.path, entry.key, entry.stable_id, *entry.attrs, *entry.attrs.values()]
        if (
            entry.config not in CONFIGS
            or entry.devtype not in DEVTYPES
            or not all(isinstance(t, str) for t in texts)
        ):
            raise ValueError(f"entry {n} is not valid")
        found.append(entry)
    return found


# -- the -l layout ------------------------------------------------------------


@dataclass
class Usage:
    """A host device a guest's definition names (from libvirt)."""

    key: str
    path: str
    guest: str
    devtype: str


@dataclass
class Row:
    """One line of `-l`."""

    config: str
    names: list[str]
    devtype: str
    attrs: dict[str, str]
    exist: bool
    guests: list[str]
    stable_id: str

    def line(self) -> str:
        attrs = {"CONFIG": self.config, "EXIST": "YES" if self.exist else "NO"}
        attrs["DEVTYPE"] = self.devtype
        attrs["SHARE"] = self.attrs.get("SHARE", "NO")
        attrs.update((k, v) for k, v in sorted(self.attrs.items()) if k != "SHARE")
        text = ",".join(f"{k}={v}" for k, v in attrs.items())
        return f"{','.join(self.names)}:{text}:{','.join(self.guests)}:{self.stable_id}"


def rows(
    entries: list[Entry], usages: list[Usage], present: set[str], which: str = ALL
) -> list[Row]:
    """The `-l` rows: every entry, with the guests that use it and the other names they
    use it under, then (as `gdev`) every device a guest uses that has no entry.

    `present` holds the keys of the entries that exist now.
    """
    found: list[Row] = []
    claimed: set[int] = set()
    for entry in entries:
        names, guests = [entry.path], []
        for i, use in enumerate(usages):
            if use.key == entry.key:
                claimed.add(i)
                _add(names, use.path)
                _add(guests, use.guest)
        found.append(
            Row(
                entry.config,
                names,
                entry.devtype,
                entry.attrs,
                entry.key in present,
                guests,
                entry.stable_id,
            )
        )
    implicit: dict[str, Row] = {}
    for i, use in enumerate(usages):
        if i in claimed:
            continue
        row = implicit.get(use.key)
        if row is None:
            row = Row(GDEV, [use.path], use.devtype, {}, use.key in present, [], "")
            implicit[use.key] = row
            found.append(row)
        _add(row.names, use.path)
        _add(row.guests, use.guest)
    return [r for r in found if which in (ALL, r.config)]


def _add(items: list[str], item: str) -> None:
    if item not in items:
        items.append(item)
