"""`hpvmdevmgmt`: the device database: restricted host devices (rdev), guest devices (gdev)."""

from __future__ import annotations

import argparse

from agent.cli.common import EXIT_OK, connect, entry_point
from agent.cli.options import command_parser
from agent.devices import database
from agent.devices.database import Database, Identity, identify
from agent.storage.hostcheck import backing_key
from translators import devdb
from translators.devdb import GDEV, RDEV, Entry, Request, Usage
from translators.errors import HpvmError
from translators.model import StorageType

PROG = "hpvmdevmgmt"

#: HPVM options that have no meaning on a KVM host: refused with their reason.
NOT_HERE = {
    "-n": "renaming entries (-n) is not supported: an entry follows its device by identity",
    "-I": "-I makes HP-UX sctl device files; Linux has /dev/sg* already",
    "-r": "-r (repair script) is not supported: the database is checked whenever it is read",
    "-v": "-v (database version) is not supported",
    "-S": "-S (pre-extend a file) is not supported: use truncate or fallocate",
    "-A": "-A (with -S) is not supported",
}


def parser() -> argparse.ArgumentParser:
    p = command_parser(PROG, "Manage the device database.", None)
    action = p.add_mutually_exclusive_group(required=True)
    action.add_argument(
        "-l", dest="list", metavar="{all|rdev|gdev}[:ENTRY]", help="list entries, one a line"
    )
    action.add_argument(
        "-a", dest="add", metavar="{rdev|gdev}:ENTRY", help="add an entry (rdev: restrict)"
    )
    action.add_argument(
        "-d",
        dest="delete",
        metavar="{rdev|gdev}:ENTRY[:attr:NAME]",
        help="delete an entry (rdev: lift the restriction) or one of its attributes",
    )
    action.add_argument(
        "-m", dest="modify", metavar="gdev:ENTRY:attr:SHARE={YES|NO}", help="set an attribute"
    )
    for flag in NOT_HERE:
        action.add_argument(flag, dest=f"unsupported{flag}", nargs="*", help=argparse.SUPPRESS)
    p.add_argument("-V", dest="verbose", action="store_true", help="print the entry changed")
    return p


def manage(argv: list[str]) -> int:
    options = parser().parse_args(argv)
    for flag in NOT_HERE:
        if getattr(options, f"unsupported{flag}") is not None:
            raise HpvmError(NOT_HERE[flag])
    for option, text in (
        ("l", options.list),
        ("a", options.add),
        ("d", options.delete),
        ("m", options.modify),
    ):
        if text is not None:
            request = devdb.parse_request(option, text)
            break
    if request.option == "l":
        conn = connect(options.connect)
        for row in listing(database.load(), usages(conn), request):
            print(row)
        return EXIT_OK
    entry = change(options.connect, request)
    if options.verbose and entry is not None:
        for row in devdb.rows([entry], [], {entry.key}):
            print(row.line())
    return EXIT_OK


def usages(conn) -> list[Usage]:  # conn: libvirt.virConnect
    """Every host device or file a guest's definition names (libvirt's view)."""
    from agent.guests.inventory import HostView

    found = []
    for entry in HostView(conn).entries:
        for dev in entry.guest.storage:
            if dev.storage is StorageType.NULL:
                continue
            ident = identify(dev.location)
            kind = "FILE" if dev.storage is StorageType.FILE else "DISK"
            devtype = ident.devtype if ident else kind
            found.append(Usage(backing_key(dev.location), dev.location, entry.guest.name, devtype))
    return found


def listing(db: Database, used: list[Usage], request: Request) -> list[str]:
    present = {u.key for u in used if identify(u.path) is not None}
    for e in db.entries:
        ident = identify(e.path)
        if ident is not None and db.find(ident) is e:
            present.add(e.key)
    entries, used_here = db.entries, used
    if request.entry:
        ident = _identity(request.entry, must_exist=False)
        entries = [e for e in db.entries if e.path == request.entry or _same(e, ident)]
        used_here = [u for u in used if ident and u.key == ident.key]
    return [r.line() for r in devdb.rows(entries, used_here, present, request.config)]


def _same(entry: Entry, ident: Identity | None) -> bool:
    return ident is not None and entry.matches(ident.key, ident.stable_id)


def _identity(path: str, must_exist: bool = True) -> Identity | None:
    ident = identify(path)
    if ident is None and must_exist:
        raise HpvmError(f"{path} does not exist on this host")
    return ident


def _users(connect_uri: str | None, ident: Identity) -> list[str]:
    """Guests whose definition names this device (or overlapping storage)."""
    conn = connect(connect_uri)
    probe = Entry(GDEV, "", ident.key, ident.devtype, ident.stable_id)
    return sorted({u.guest for u in usages(conn) if probe.matches(u.key)})


def change(connect_uri: str | None, request: Request) -> Entry | None:
    """Carry out `-a`, `-d` or `-m`; the database is written only when all is well."""
    path = request.entry
    assert path is not None
    if request.option in ("a", "m"):
        ident = _identity(path)
        assert ident is not None
        users = _users(connect_uri, ident)
    with database.editing() as db:
        if request.option == "a" and request.config == RDEV:
            return _restrict(db, path, ident, users)
        if request.option == "a":
            return _add_guest_device(db, path, ident)
        if request.option == "m":
            entry = db.find(ident, GDEV) or _add_guest_device(db, path, ident)
            if request.value == "NO" and entry.attrs.get("SHARE") == "YES":
                _refuse_unshare(path, users)
            assert request.attr is not None and request.value is not None
            entry.attrs[request.attr] = request.value
            return entry
        entry = _existing(db, path, request.config)
        if request.attr is None:
            if entry.shared:
                _refuse_unshare(path, _users(connect_uri, _entry_identity(entry)))
            db.entries.remove(entry)
            return None
        if request.attr not in entry.attrs:
            raise HpvmError(f"{entry.path} has no attribute {request.attr}")
        if request.attr == "SHARE" and entry.shared:
            _refuse_unshare(path, _users(connect_uri, _entry_identity(entry)))
        del entry.attrs[request.attr]
        return entry


def _entry_identity(entry: Entry) -> Identity:
    return Identity(entry.key, entry.devtype, entry.stable_id)


def _restrict(db: Database, path: str, ident: Identity, users: list[str]) -> Entry:
    existing = db.find(ident)
    if existing is not None and existing.config == RDEV:
        raise HpvmError(f"{path} is already restricted (as {existing.path})")
    if existing is not None:
        raise HpvmError(f"{path} is a guest device entry; delete it first (-d gdev:{path})")
    if users:
        raise HpvmError(
            f"{path} is used by guest {', '.join(repr(u) for u in users)}: "
            "take it out of the guest first"
        )
    entry = Entry(RDEV, path, ident.key, ident.devtype, ident.stable_id)
    db.entries.append(entry)
    return entry


def _add_guest_device(db: Database, path: str, ident: Identity) -> Entry:
    restricted = db.restricting(ident)
    if restricted is not None:
        raise HpvmError(
            f"{path} is restricted (as {restricted.path}); lift it first "
            f"(-d rdev:{restricted.path})"
        )
    if db.find(ident, GDEV) is not None:
        raise HpvmError(f"{path} is already a guest device entry")
    entry = Entry(GDEV, path, ident.key, ident.devtype, ident.stable_id)
    db.entries.append(entry)
    return entry


def _existing(db: Database, path: str, config: str) -> Entry:
    ident = identify(path)
    for e in db.entries:
        if e.config == config and (e.path == path or (ident and db.find(ident, config) is e)):
            return e
    raise HpvmError(f"{path} is not in the device database as {config}")


def _refuse_unshare(path: str, users: list[str]) -> None:
    if len(users) > 1:
        raise HpvmError(
            f"{path} is shared by guests {', '.join(users)}: take it out of all but one first"
        )


COMMAND = manage

main = entry_point(PROG, COMMAND)
