"""hpvmstatus layouts against the seed and HPVM's captured output."""

from __future__ import annotations

from tests.conftest import DATA, SEED, compare_golden
from translators.allocate import complete
from translators.options import parse_config_file, parse_config_text
from translators.status import (
    GuestStatus,
    format_details,
    format_statements,
    format_verbose_devices,
    format_vm_table,
)


def seed_status_blocks() -> str:
    """The seed's avioclone `[Storage ...]`/`[Network ...]` key:value blocks."""
    text = SEED.read_text()
    start = text.index("[Storage Interface Details]")
    end = text.index("Mac Address :2a-2e-5a-05-0a-bc") + len("Mac Address :2a-2e-5a-05-0a-bc")
    return text[start:end] + "\n"


def avioclone():
    return complete(parse_config_file(DATA / "avioclone.conf").guest)


def test_verbose_blocks_are_the_seeds():
    ours = format_verbose_devices(avioclone())
    # HP's own page writes the second NIC's key as "Vswitch port"; we print
    # "Vswitch Port" for both (see README).
    assert ours == seed_status_blocks().replace("Vswitch port :9", "Vswitch Port :9")
    compare_golden("avioclone-V.txt", ours)


def test_statements_round_trip_as_config():
    guest = avioclone()
    exported = format_statements(guest)
    again = complete(parse_config_text(f"-O hpux\n{exported}", "avioclone").guest)
    assert again == guest


def test_vm_table_layout():
    rows = [
        GuestStatus(
            complete(parse_config_text("-O hpux\n-c 4\n-r 16G\n", "oratest01").guest), 1, "On (OS)"
        ),
        GuestStatus(complete(parse_config_text("-O linux\n-r 512M\n", "sles01").guest), 5, "Off"),
    ]
    assert format_vm_table(rows) == (
        "[Virtual Machines]\n"
        "Virtual Machine Name VM #  OS Type State     #VCPUs #Devs #Nets Memory  Runsysid\n"
        "==================== ===== ======= ========= ====== ===== ===== ======= ========\n"
        "oratest01                1 HPUX    On (OS)        4     0     0   16 GB        0\n"
        "sles01                   5 LINUX   Off            1     0     0  512 MB        0\n"
    )


def test_details_layout():
    compare_golden("avioclone-P.txt", format_details(GuestStatus(avioclone(), 1, "Off")))
