"""Fuzz `hpvmcreate` in process: random and mutated command lines and config files.

A seeded generator (reproducible: a failure names its case number) builds
valid command lines from the seed's examples and a pool of valid statements,
then mutates them: tokens dropped, swapped or repeated, fields replaced by
hostile values (Unicode digits, numbers with thousands of digits, control
characters, U+FFFE, lone surrogates, 10,000-character paths), characters and,
in config files, raw bytes (invalid UTF-8, NUL) inserted; hypothesis adds
arbitrary command lines (any code point, lone surrogates included). Every case must end
in exit 0 or 2 with no traceback; every XML printed must parse, validate
against libvirt's own `domain.rng`, and read back to the guest it came from.
"""

from __future__ import annotations

import random
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from lxml import etree

from agent.cli import hpvmcreate
from agent.cli.common import run
from agent.cli.options import create_parser
from tests.conftest import DATA, seed_commands
from translators.allocate import complete
from translators.errors import Warnings
from translators.options import config_argv, config_text, guest_from_options
from translators.readback import read_domain
from translators.render import render_domain, to_string
from translators.text import bad_character

SCHEMA = Path("/usr/share/libvirt/schemas/domain.rng")
# Paths under a directory that does not exist: backing checks see "not there yet".
BASE = "/nonexistent-avt-fuzz"
SEEDS = [argv for argv in seed_commands("hpvmcreate")]
CONFIG_LINES = [line for line in (DATA / "avioclone.conf").read_text().splitlines() if line.strip()]
STATEMENTS = [
    "disk:avio_stor::disk:{p}/sdb",
    "disk:avio_stor:0,1,3:disk:{p}/sdc",
    "disk:aviostor:1,2,99:lv:{p}/vg/lv1",
    "disk:avio_stor:,,5:file:{p}/d1.img",
    "disk:scsi::file:{p}/d2.img",
    "disk:scsi:0,3,6:disk:{p}/sdd",
    "dvd:avio_stor::null:",
    "dvd:avio_stor:0,4,0:file:{p}/x.iso",
    "dvd:scsi::null:{p}/iso",
    "hba:aviostor::disk{p}/rdisk/disk1",
    "network:avio_lan::vswitch:swlan1",
    "network:aviolan:0,5:vswitch:swlan2:portid:9",
    "network:lan:,,2a-2e-5a-05-0a-ba:vswitch:sw-3",
    "network:lan:2,6,0x2A2E5A050ABC:vswitch:localnet",
    "network:lan:vswitch:swlan1",
    "tape:scsi::attach:{p}/nst0",
    "changer:scsi:0,2,3:attach:/dev/null",
    "burner:avio_stor::attach_path:0:0:1:0",
    "tape:avio_stor:0,4,0:attach_path:/sys/bus/scsi/devices/9:0:0:0",
    "tape:avio_stor:0,4,0:attach_path:0/7/1/1.0x500104f00048b29e.0x0",
]
OPTIONS = [
    ["-O", "hpux"],
    ["-O", "linux"],
    ["-c", "2"],
    ["-c", "255"],
    ["-r", "512M"],
    ["-r", "4G"],
    ["-r", "1T"],
    ["-B", "manual"],
    ["-B", "auto"],
    ["-l", "Clone-cluster 01"],
    ["--kernel", f"{BASE}/vmlinuz"],
    ["--kernel", f"{BASE}/vmlinuz", "--initrd", f"{BASE}/initrd", "--cmdline", "console=ttyS0"],
    ["--virt-type", "kvm"],
]
HOSTILE_CHARS = [
    *"\x00\x01\x07\t\n\r\x0b\x0c\x1b\x7f\x85",
    "\ufffe",
    "\uffff",
    "\ud800",
    "\udcff",
    "\u2028",
    "\u0663",  # ARABIC-INDIC DIGIT THREE: isdigit() is True
    "\uff13",  # FULLWIDTH DIGIT THREE
    "\u00b2",  # SUPERSCRIPT TWO
    "é",
    "\U0001f600",
    *" :,/#\"'\\-=x0179",
]
HOSTILE_VALUES = [
    "",
    " ",
    "-1",
    "0x10",
    "100",
    "127",
    "9" * 30,
    "9" * 5000,
    "1" + "0" * 4400,
    "\u0663",
    "\uff11\uff12",
    "٣G",
    "9999999999999T",
    "8796093022207",
    "8796093022208",
    "relative/path",
    "/",
    "/" + "a" * 10_000,
    "/" + "b" * 300,
    f"{BASE}/" + "c/" * 2100,
    f"{BASE}/a\nb",
    f"{BASE}/a\x00b",
    "a\x01b",
    "x\ufffey",
    "x\udcffy",
    "line1\nline2",
    "L" * 300,
    "disk",
    "network",
    "null",
    "attach",
    "attach_path",
    "tape",
    "vswitch",
    "portid",
    "localnet",
    "avio_stor",
    "-a",
    "--print-xml",
    "-s",
]
OPTION_FLAGS = ["-O", "-c", "-r", "-B", "-l", "-a", "--kernel", "--initrd", "--cmdline", "-P"]
HOSTILE_BYTES = [b"\xff", b"\xc3", b"\xe2\x82", b"\x00", b"\xed\xa0\x80", b"\xef\xbf\xbe", b"\r"]


def statement(rng: random.Random) -> str:
    return rng.choice(STATEMENTS).format(p=f"{BASE}/{rng.randrange(4)}")


def valid_argv(rng: random.Random) -> list[str]:
    """A command line that is valid before mutation (from the seed or generated)."""
    if rng.random() < 0.15:
        return [*rng.choice(SEEDS)]
    argv = ["-P", rng.choice(["aviotest", "g", "Guest_1.x", "a" * 64])]
    for _ in range(rng.randrange(4)):
        argv += rng.choice(OPTIONS)
    for _ in range(rng.randrange(6)):
        argv += ["-a", statement(rng)]
    return argv


def mutate_text(rng: random.Random, text: str) -> str:
    """One mutation of a string: a field replaced, a character inserted or removed."""
    choice = rng.random()
    if choice < 0.35 and ":" in text:
        fields = text.split(":")
        index = rng.randrange(len(fields))
        if "," in fields[index] and rng.random() < 0.5:
            parts = fields[index].split(",")
            parts[rng.randrange(len(parts))] = rng.choice(HOSTILE_VALUES)
            fields[index] = ",".join(parts)
        else:
            fields[index] = rng.choice(HOSTILE_VALUES)
        return ":".join(fields)
    position = rng.randrange(len(text) + 1)
    if choice < 0.8:
        return text[:position] + rng.choice(HOSTILE_CHARS) + text[position:]
    if choice < 0.9 and text:
        return text[:position] + text[position + 1 :]
    return rng.choice(HOSTILE_VALUES)


def mutate_argv(rng: random.Random, argv: list[str]) -> list[str]:
    argv = list(argv)
    for _ in range(rng.randrange(1, 3)):
        choice = rng.random()
        if choice < 0.6 and argv:
            index = rng.randrange(len(argv))
            argv[index] = mutate_text(rng, argv[index])
        elif choice < 0.7 and argv:
            del argv[rng.randrange(len(argv))]
        elif choice < 0.8 and len(argv) > 1:
            i, j = rng.randrange(len(argv)), rng.randrange(len(argv))
            argv[i], argv[j] = argv[j], argv[i]
        elif choice < 0.9:
            argv.insert(rng.randrange(len(argv) + 1), rng.choice(OPTION_FLAGS))
        else:
            argv += [rng.choice(OPTION_FLAGS), rng.choice(HOSTILE_VALUES)]
    return argv


def config_bytes(rng: random.Random) -> bytes:
    """A config file: option lines, bare statements, comments, headers; then mutated."""
    lines = [*CONFIG_LINES] if rng.random() < 0.3 else []
    for _ in range(rng.randrange(1, 8)):
        kind = rng.random()
        if kind < 0.4:
            lines.append(statement(rng))
        elif kind < 0.6:
            lines.append("-a " + statement(rng))
        elif kind < 0.8:
            lines.append(shlex.join(rng.choice(OPTIONS)))
        elif kind < 0.9:
            lines.append(rng.choice(["# comment", "[Storage Interface Details]", "", "   "]))
        else:
            lines.append(rng.choice(["serial:com1:tty:console", "-P g", "-l 'a label' # c"]))
    for _ in range(rng.randrange(0, 2)):
        if lines:
            index = rng.randrange(len(lines))
            lines[index] = mutate_text(rng, lines[index])
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    if rng.random() < 0.1:
        position = rng.randrange(len(data) + 1)
        data = data[:position] + rng.choice(HOSTILE_BYTES) + data[position:]
    return data


@dataclass
class Outcome:
    code: int | str
    out: str
    err: str


def hpvmcreate_in_process(argv: list[str], capsys) -> Outcome:
    """Run hpvmcreate's main as the console script does; an escaping exception is a failure."""
    capsys.readouterr()
    try:
        code: int | str = run(hpvmcreate.PROG, hpvmcreate.COMMAND, argv)
    except BaseException as err:
        code = f"exception {type(err).__name__}"
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


def expected_guest(argv: list[str]):
    """The guest hpvmcreate's translators make of argv (the model the XML must read back to)."""
    options = create_parser().parse_args(argv)
    if options.config:
        text = config_text(Path(options.config).read_bytes(), options.config)
        file_argv = config_argv(text, options.name, options.config, Warnings())
        options = create_parser().parse_args([*file_argv, *argv])
    guest = complete(guest_from_options(options, Warnings()))
    guest.virt_type = guest.virt_type or "qemu"
    return guest


@pytest.fixture(scope="module")
def schema() -> etree.RelaxNG:
    if not SCHEMA.exists():
        pytest.skip("libvirt's domain.rng is not installed (libvirt-daemon)")
    return etree.RelaxNG(etree.parse(str(SCHEMA)))


def check_outcome(case: str, argv: list[str], result: Outcome, schema: etree.RelaxNG) -> None:
    where = f"{case}: argv={argv!r}"
    assert "Traceback" not in result.err, where
    assert bad_character(result.err, allowed="\n") is None, f"{where}: raw {result.err!r}"
    assert result.code in (0, 2), f"{where}: exit {result.code}: {result.err}"
    lines = result.err.splitlines()
    errors = [line for line in lines if line.startswith("hpvmcreate: error: ")]
    assert all(line.startswith("hpvmcreate: ") for line in lines), f"{where}: {result.err!r}"
    if result.code == 2:
        assert len(errors) == 1 and lines[-1] == errors[0], f"{where}: {result.err!r}"
        assert result.out == "", where
        return
    assert not errors, where
    if result.out.startswith("usage: hpvmcreate"):
        return  # -h or --help (or -sh, --he, ...) came among the arguments: help, nothing done
    if "--print-xml" not in argv:
        return
    domain = etree.fromstring(result.out.encode())
    assert schema.validate(domain), f"{where}: {schema.error_log.last_error}"
    guest = read_domain(domain)
    assert guest == expected_guest(argv), where
    assert to_string(render_domain(guest)) == result.out, where


COMMAND_LINE_CASES = 7000
CONFIG_FILE_CASES = 3000


def test_fuzz_command_lines(capsys, monkeypatch, schema):
    monkeypatch.setenv("AVIO_VIRT_TYPE", "qemu")
    rng = random.Random(20260514)
    for case in range(COMMAND_LINE_CASES):
        argv = valid_argv(rng)
        if rng.random() < 0.6:
            argv = mutate_argv(rng, argv)
        argv.append("-s" if rng.random() < 0.15 else "--print-xml")
        result = hpvmcreate_in_process(argv, capsys)
        check_outcome(f"command line case {case}", argv, result, schema)


def test_fuzz_config_files(capsys, monkeypatch, schema, tmp_path):
    monkeypatch.setenv("AVIO_VIRT_TYPE", "qemu")
    rng = random.Random(20260515)
    config = tmp_path / "g.conf"
    for case in range(CONFIG_FILE_CASES):
        config.write_bytes(config_bytes(rng))
        argv = ["-P", "g", "--config", str(config)]
        if rng.random() < 0.3:
            argv += mutate_argv(rng, rng.choice(OPTIONS))
        argv.append("-s" if rng.random() < 0.15 else "--print-xml")
        result = hpvmcreate_in_process(argv, capsys)
        check_outcome(f"config file case {case}: {config.read_bytes()!r}", argv, result, schema)


# Any code point, lone surrogates included (what undecodable argv bytes become).
any_text = st.text(st.characters(exclude_categories=()), max_size=30)
tokens = (
    st.sampled_from([*OPTION_FLAGS, "--print-xml", "-s", "--virt-type", "--config"])
    | any_text
    | st.sampled_from(STATEMENTS).map(lambda s: s.format(p=BASE))
    | st.builds(lambda s, t: s.format(p=BASE) + t, st.sampled_from(STATEMENTS), any_text)
)
HYPOTHESIS_CASES = 500


@settings(
    max_examples=HYPOTHESIS_CASES, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(tokens, max_size=10), st.booleans())
@example(["-h"], True)  # help asked for among the options: the help, and no XML
def test_fuzz_arbitrary_command_lines(capsys, monkeypatch, schema, argv, print_xml):
    monkeypatch.setenv("AVIO_VIRT_TYPE", "qemu")
    argv = ["-P", "g", *argv, "--print-xml" if print_xml else "-s"]
    result = hpvmcreate_in_process(argv, capsys)
    check_outcome("hypothesis case", argv, result, schema)
