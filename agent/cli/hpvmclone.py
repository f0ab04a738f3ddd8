"""`hpvmclone -P src -N new [-a rsrc] [-d rsrc] [-b rsrc] [-l label] [-B auto|manual]`.

The clone is the source's configuration with a new name, UUID, VM number,
MACs and vswitch ports. `-b rsrc` copies the storage at rsrc's bus,slot,target
into rsrc's new backing (a new file, or a block device nobody uses), checks
the copy, and gives it to the clone. A writable backing is never shared with
the source: copy it (-b) or leave it out (-d). Storage is copied only from a
consistent point: the source must be off, or suspended (hpvmsuspend).
"""

from __future__ import annotations

import os
import sys

from agent.cli.common import EXIT_OK, connect, entry_point, guest_locked, warn
from agent.cli.options import command_parser
from agent.errors import HostError
from agent.guests.inventory import HostView, config_guest, lookup, state_of
from agent.guests.lifecycle import define_guest, refuse_taken_name
from agent.storage.copier import copy_backing
from translators.clone import Copy, plan_clone
from translators.errors import HpvmError, Warnings
from translators.grammar import parse_statement
from translators.model import StorageType
from translators.options import parse_boot_attr
from translators.validate import check_guest

PROG = "hpvmclone"


def parser():
    p = command_parser(
        PROG, "Create a guest from another guest's configuration.", "the guest to clone"
    )
    p.add_argument("-N", dest="new_name", required=True, help="the clone's name")
    for flag, dest, what in (
        ("-a", "add", "add a resource to the clone"),
        ("-d", "delete", "leave a resource out of the clone"),
        ("-b", "copies", "copy this storage (bus,slot,target) into the statement's backing"),
    ):
        p.add_argument(flag, dest=dest, action="append", default=[], metavar="RSRC", help=what)
    p.add_argument("-l", dest="label", help="the clone's label")
    p.add_argument("-B", dest="boot_attr", type=parse_boot_attr, help="auto or manual start")
    return p


class Bar:
    """A progress line on a terminal (standard error), nothing elsewhere."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.shown = -1
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        percent = 100 * done // total if total else 100
        if self.tty and percent != self.shown:
            self.shown = percent
            filled = percent // 5
            sys.stderr.write(f"\r{PROG}: {self.what} [{'#' * filled:<20}] {percent:3d}%")
            if done >= total:
                sys.stderr.write("\n")
            sys.stderr.flush()


def check_destination(job: Copy) -> None:
    """A file destination must be new (in an existing directory); a block device must exist."""
    target = job.clone
    if target.storage is StorageType.FILE:
        if os.path.lexists(target.location):
            raise HpvmError(f"{target.location} exists: hpvmclone never overwrites", target.text)
        parent = os.path.dirname(os.path.abspath(target.location))
        if not os.path.isdir(parent):
            raise HpvmError(f"no directory {parent} for the copy", target.text)
    else:
        from agent.storage.hostcheck import check_backing

        check_backing(target)  # exists, a block device, not the host's


def clone(argv: list[str]) -> int:
    options = parser().parse_args(argv)
    warnings = Warnings()
    statements = {
        key: [parse_statement(text, warnings) for text in getattr(options, key)]
        for key in ("add", "delete", "copies")
    }
    warn(PROG, warnings)
    conn = connect(options.connect)
    dom = lookup(conn, options.name)
    autoboot = None if options.boot_attr is None else options.boot_attr == "auto"
    new, jobs = plan_clone(
        config_guest(dom),
        options.new_name,
        statements["add"],
        statements["delete"],
        statements["copies"],
        options.label,
        autoboot,
    )
    refuse_taken_name(conn, new.name)
    # shared storage, MACs, ports: before anything is copied (define_guest checks again after)
    check_guest(new, HostView(conn).claims())
    for job in jobs:
        check_destination(job)
    if jobs and dom.isActive():
        raise HostError(
            f"guest '{options.name}' is running ({state_of(dom)}): its storage is copied only "
            "from a consistent point; stop it, or suspend it (hpvmsuspend), then clone"
        )
    made: list[str] = []
    try:
        for job in jobs:
            result = copy_backing(job.source.location, job.clone.location, Bar(job.source.location))
            if job.clone.storage is StorageType.FILE:
                made.append(job.clone.location)
            mib = result["bytes"] / (1 << 20)
            print(
                f"{PROG}: {job.source.location} -> {job.clone.location}: {mib:.0f} MiB in "
                f"{result['seconds']:.1f} s ({mib / max(result['seconds'], 1e-6):.0f} MiB/s), "
                f"{result['written'] / (1 << 20):.0f} MiB written, copy checked"
            )
            print(f"{PROG}: Virtual storage cloned successfully.")
        from agent.accel import detect_virt_type

        define_guest(conn, new, new.virt_type or detect_virt_type())
    except BaseException:
        for path in made:  # nothing half-done: the copies go with the failed clone
            try:
                os.unlink(path)
            except OSError:
                pass
        raise
    print(f"{PROG}: Guest '{new.name}' created from '{options.name}'.")
    return EXIT_OK


COMMAND = guest_locked(clone)

main = entry_point(PROG, COMMAND)
