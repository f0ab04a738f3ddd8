"""Bad input of every kind: exit 2 and one printable line, never a traceback or bad XML.

Each case here gave a traceback, exit 1, exit 0 with XML libvirt's schema
refuses, or echoed a line of an arbitrary file before it was fixed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import libvirt
import pytest
from lxml import etree

from agent.cli import hpvmcreate, hpvmmodify
from agent.cli.common import run
from tests.conftest import GOLDEN
from translators import limits
from translators.options import parse_config_text

SCHEMA = Path("/usr/share/libvirt/schemas/domain.rng")
DISK = "disk:avio_stor::file:/nonexistent-avt/d1"


def one_error_line(result) -> str:
    """The single stderr line of a refusal (exit 2, nothing printed on stdout)."""
    assert result.code == 2, result
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("hpvmcreate: error: ")
    assert "Traceback" not in result.err
    return lines[0]


BAD_ARGV = {
    # name: (argv after -P g, words in the one error line)
    "Unicode digit in an address": (
        ["-a", "disk:avio_stor:\u0663,0,0:disk:/dev/sdb"],
        "address part '\u0663' is not a number",
    ),
    "fullwidth digit in a port id": (
        ["-a", "network:avio_lan::vswitch:sw1:portid:\uff15"],
        "port id",
    ),
    "5,000-digit address part": (
        ["-a", "disk:avio_stor:" + "9" * 5000 + ",0,0:disk:/dev/sdb"],
        "address part has more than 6 digits",
    ),
    "5,000-digit port id": (
        ["-a", "network:avio_lan::vswitch:sw1:portid:" + "9" * 5000],
        "port id has more than 6 digits",
    ),
    "Unicode digit in -c": (["-c", "\u0663"], "-c takes a number of vCPUs"),
    "Unicode digit in -r": (["-r", "\u0663G"], "bad memory size"),
    "control character in -l": (["-l", "a\x01b"], "label (-l) contains a control character"),
    "NUL in -l": (["-l", "a\x00b"], "U+0000"),
    "U+FFFE in -l": (["-l", "a\ufffeb"], "U+FFFE"),
    "invalid UTF-8 in -l": (["-l", "caf\udce9"], "not valid UTF-8 (byte \\xe9)"),
    "newline in -l": (["-l", "two\nlines"], "U+000A"),
    "label over 255 characters": (["-l", "L" * 256], "longer than 255 characters"),
    "control character in --kernel": (["--kernel", "/k\x07"], "--kernel contains"),
    "relative --kernel": (["--kernel", "vmlinuz"], "--kernel 'vmlinuz' is not absolute"),
    "relative --initrd": (["--kernel", "/k", "--initrd", "initrd"], "--initrd 'initrd'"),
    "--kernel /": (["--kernel", "/"], "root directory"),
    "--initrd without --kernel": (["--initrd", "/i"], "need --kernel"),
    "control character in --cmdline": (["--kernel", "/k", "--cmdline", "a\x1bb"], "U+001B"),
    "newline in a storage path": (["-a", "disk:avio_stor::file:/x/a\nb"], "U+000A"),
    "NUL in a storage path": (["-a", "disk:avio_stor::file:/x/a\x00b"], "U+0000"),
    "10,000-character path": (["-a", "disk:avio_stor::file:/" + "a" * 10_000], "PATH_MAX"),
    "300-byte path component": (["-a", "disk:avio_stor::file:/x/" + "b" * 300], "NAME_MAX"),
    "storage path /": (["-a", "disk:avio_stor::disk:/"], "root directory"),
    "memory beyond unsignedLong": (["-r", "9" * 20], "libvirt's limit"),
    "memory beyond libvirt's limit": (["-r", f"{limits.MAX_MEMORY_MB + 1}M"], "libvirt's limit"),
    "memory with 30 digits": (["-r", "9" * 30], "more than 20 digits"),
    "AVIO target 100": (["-a", "disk:avio_stor:0,0,100:disk:/dev/sdb"], "target 100"),
    "control character in -O": (["-O", "hp\nux"], "unknown OS type 'hp\\nux'"),
    "NUL in --config": (["--config", "/x/g\x00.conf"], "--config contains a control character"),
}


@pytest.mark.parametrize("mode", ["-s", "--print-xml"])
@pytest.mark.parametrize("case", BAD_ARGV, ids=list(BAD_ARGV))
def test_bad_argv_is_refused_on_one_line(cli, case, mode):
    argv, words = BAD_ARGV[case]
    line = one_error_line(cli(hpvmcreate, ["-P", "g", *argv, mode]))
    assert words in line


def test_a_long_statement_is_quoted_cut(cli):
    line = one_error_line(cli(hpvmcreate, ["-P", "g", "-a", "disk:x::file:/" + "a" * 5000, "-s"]))
    assert len(line) < 500 and "(5014 characters)" in line


def test_hpvmmodify_refuses_before_touching_libvirt(cli):
    # The option types run while parsing, before any connection is opened.
    result = cli(hpvmmodify, ["-P", "g", "-l", "a\nb", "--connect", "test:///nonexistent"])
    assert result.code == 2 and "U+000A" in result.err and len(result.err.splitlines()) == 1


@pytest.fixture
def schema() -> etree.RelaxNG:
    if not SCHEMA.exists():
        pytest.skip("libvirt's domain.rng is not installed (libvirt-daemon)")
    return etree.RelaxNG(etree.parse(str(SCHEMA)))


GOOD_ARGV = {
    "largest memory": ["-r", f"{limits.MAX_MEMORY_MB}M"],
    "AVIO target 99": ["-a", "disk:avio_stor:0,0,99:disk:/dev/sdb"],
    "label of 255 characters": ["-l", "Clone-cluster 01 " + "x" * 238],
    "Unicode label and path": ["-l", "Gäste – ünd 日本", "-a", "disk:avio_stor::file:/x/ü.img"],
    "empty label": ["-l", ""],
    "kernel, initrd and cmdline": [
        "--kernel",
        "/boot/vmlinuz",
        "--initrd",
        "/boot/initrd.img",
        "--cmdline",
        "console=ttyS0 quiet",
    ],
}


@pytest.mark.parametrize("case", GOOD_ARGV, ids=list(GOOD_ARGV))
def test_edge_inputs_give_valid_xml(cli, schema, case):
    result = cli(hpvmcreate, ["-P", "g", *GOOD_ARGV[case], "--print-xml"])
    assert result.code == 0, result.err
    assert schema.validate(etree.fromstring(result.out.encode())), schema.error_log


def test_memory_limit_is_libvirts(cli):
    """libvirt defines a guest with our largest memory and refuses one MiB more."""
    argv = ["-P", "avt-input-mem", "-r", f"{limits.MAX_MEMORY_MB}M", "--print-xml"]
    result = cli(hpvmcreate, argv)
    assert result.code == 0, result.err
    conn = libvirt.open("test:///default")
    try:
        conn.defineXML(result.out).undefine()
        too_much = result.out.replace(f">{limits.MAX_MEMORY_MB}<", f">{limits.MAX_MEMORY_MB + 1}<")
        with pytest.raises(libvirt.libvirtError, match="too large"):
            conn.defineXML(too_much)
    finally:
        conn.close()


# --- config files ---------------------------------------------------------------------------


def create_from(cli, path: Path, *extra: str):
    return cli(hpvmcreate, ["-P", "g", "--config", str(path), *extra, "-s"])


def test_config_not_utf8_names_file_and_line(cli, tmp_path):
    config = tmp_path / "g.conf"
    config.write_bytes(b"-O hpux\n# fine\n-l caf\xe9\n")
    line = one_error_line(create_from(cli, config))
    assert line == f"hpvmcreate: error: {config}:3: not UTF-8 text (byte 0xe9)"


def test_config_with_nul_names_the_line(cli, tmp_path):
    config = tmp_path / "g.conf"
    config.write_bytes(b"-O hpux\n-a disk:avio_stor::file:/x/a\x00b\n")
    line = one_error_line(create_from(cli, config))
    assert line == f"hpvmcreate: error: {config}:2: not a text line (U+0000)"


def test_config_from_a_secret_file_quotes_no_line(cli, tmp_path):
    """`hpvmcreate --config /etc/shadow -s` printed shadow lines; now only the line number."""
    secret = "$6$rounds=5000$SECRETSALT$SECRETHASH"
    shadow = tmp_path / "shadow"
    shadow.write_text(f"root:{secret}:20228:0:99999:7:::\ndaemon:*:20228:0:99999:7:::\n")
    line = one_error_line(create_from(cli, shadow))
    assert line == f"hpvmcreate: error: {shadow}:1: not an option or a resource statement"
    pem = tmp_path / "key.pem"
    pem.write_text(f"-----BEGIN PRIVATE KEY-----\n{secret}\n")
    line = one_error_line(create_from(cli, pem))
    assert "SECRET" not in line and "BEGIN" not in line and f"{pem}:1:" in line


def test_config_errors_still_quote_the_statement(cli, tmp_path):
    config = tmp_path / "g.conf"
    config.write_text("-O hpux\ndisk:avio_stor:0,0,200:disk:/dev/sdb\n")
    line = one_error_line(create_from(cli, config))
    assert "target 200" in line and line.endswith("'disk:avio_stor:0,0,200:disk:/dev/sdb'")
    config.write_text("-x ram_dyn_type=any\n")
    line = one_error_line(create_from(cli, config))
    assert line == f"hpvmcreate: error: {config}:1: unknown option '-x'"


def test_config_line_with_the_guest_name_as_a_value(tmp_path):
    """`-P NAME` is dropped from a file's options, but a value equal to NAME is kept."""
    config = parse_config_text("-P g\n-l g\n-O hpux\n", "g")
    assert config.guest.label == "g" and config.guest.os_type == "hpux"


# --- the error contract of every command ------------------------------------------------------


def test_an_unexpected_exception_is_one_line(capsys):
    def main(argv: list[str]) -> int:
        raise KeyError("boom")

    assert run("hpvmx", main, []) == 1
    err = capsys.readouterr().err
    assert err == "hpvmx: error: internal error (KeyError: 'boom'); please report it\n"


def test_host_errors_are_one_printable_line(capsys):
    def main(argv: list[str]) -> int:
        raise FileNotFoundError(2, "No such file or directory", "/x/a\nb")

    assert run("hpvmx", main, []) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a\\nb" in err


# --- our schema check agrees with libvirt's own tool ------------------------------------------


def variants() -> dict[str, str]:
    """Golden XML, and variants of it that libvirt's schema refuses."""
    good = (GOLDEN / "seed-aviotest.xml").read_text()
    return {
        "seed-aviotest": good,
        "avioclone": (GOLDEN / "avioclone.xml").read_text(),
        "title with a newline": good.replace("<name>", "<title>a\nb</title><name>"),
        "relative kernel": good.replace('<boot dev="hd"/>', "<kernel>vmlinuz</kernel>"),
        "memory beyond unsignedLong": good.replace(">2048<", ">18446744073709551616<"),
        "drive target 100": good.replace('target="0" unit="0"', 'target="100" unit="0"'),
        # (how lxml writes a newline in an attribute; a raw one would read as a space)
        "newline in a source path": good.replace("/dev/rdisk/disk1", "/dev/rdisk/a&#10;b"),
    }


@pytest.mark.skipif(not shutil.which("virt-xml-validate"), reason="needs libvirt-clients")
def test_lxml_relaxng_agrees_with_virt_xml_validate(schema, tmp_path):
    verdicts = {}
    for name, xml in variants().items():
        assert xml != variants()["seed-aviotest"] or name == "seed-aviotest", name
        path = tmp_path / "d.xml"
        path.write_text(xml)
        tool = subprocess.run(["virt-xml-validate", str(path), "domain"], capture_output=True)
        ours = schema.validate(etree.fromstring(xml.encode()))
        verdicts[name] = (ours, tool.returncode == 0)
    assert all(ours == tool for ours, tool in verdicts.values()), verdicts
    assert [name for name, (ours, _) in verdicts.items() if ours] == ["seed-aviotest", "avioclone"]


@pytest.mark.parametrize("value", ["portid:\u0663:vlanid:120", "portid:5:vlanid:" + "9" * 5000])
def test_hpvmnet_port_vlan_numbers(cli, value):
    from agent.cli import hpvmnet

    result = cli(hpvmnet, ["-S", "sw1", "-u", value, "--connect", "test:///nonexistent"])
    assert result.code == 2 and len(result.err.splitlines()) == 1, result.err


def test_config_option_lines_as_argparse_reads_them():
    """Attached values and unambiguous abbreviations still read as options."""
    guest = parse_config_text("-c2\n--kern /boot/vmlinuz\n--virt=qemu\n", "g").guest
    assert (guest.vcpus, guest.boot.kernel, guest.virt_type) == (2, "/boot/vmlinuz", "qemu")


def test_agent_config_reader_gives_file_and_line(tmp_path):
    """The agent's reader (parse_config_file) gave UnicodeDecodeError for a byte 0xff."""
    from translators.errors import HpvmError
    from translators.options import parse_config_file

    path = tmp_path / "g.conf"
    path.write_bytes(b"-O hpux\n-l \xff\n")
    with pytest.raises(HpvmError, match=rf"^{path}:2: not UTF-8 text \(byte 0xff\)$"):
        parse_config_file(path)
    path.write_text("root:$6$SECRET:20228:0:99999:7:::\n")
    with pytest.raises(HpvmError, match=rf"^{path}:1: not an option or a resource statement$"):
        parse_config_file(path)
