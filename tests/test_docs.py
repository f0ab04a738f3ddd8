"""Man pages and bash completion: one page per console script, no groff warnings,
every option of --help documented; the completion function's answers."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO

MAN = REPO / "man"
COMPLETION = REPO / "scripts" / "bash-completion" / "avio-kvm"
BIN = Path(sys.executable).parent
DAEMONS = {"avio-agent", "avio-libvirt-hook"}  # section 8; the commands are 1M, as on HP-UX
SECTIONS = ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "SEE ALSO"]


def console_scripts() -> list[str]:
    with open(REPO / "pyproject.toml", "rb") as f:
        return list(tomllib.load(f)["project"]["scripts"])


def page(command: str) -> Path:
    return MAN / (f"{command}.8" if command in DAEMONS else f"{command}.1m")


def help_run(command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / command), "--help"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "100"},
        timeout=60,
    )


def help_options(text: str) -> set[str]:
    """The option strings an argparse --help lists (`-h, --help`, `--virt-type {kvm,qemu}`)."""
    found = set()
    for line in text.splitlines():
        if re.match(r"\s{2}-", line):
            for part in re.split(r"\s{2,}", line.strip())[0].split(", "):
                found.add(part.split()[0])
    return found


def roff_section(text: str, name: str) -> str:
    """A section of a roff page, escapes of dashes and fonts removed."""
    match = re.search(rf'^\.SH "?{name}"?\n(.*?)(?=^\.SH |\Z)', text, re.M | re.S)
    assert match, f"no {name} section"
    return re.sub(r"\\f[BIRP]|\\c|\\&", "", match.group(1)).replace("\\-", "-")


@pytest.fixture(scope="module")
def helps() -> dict[str, subprocess.CompletedProcess]:
    return {command: help_run(command) for command in console_scripts()}


def test_every_console_script_has_a_page_and_no_page_is_extra():
    pages = {p.name for p in MAN.iterdir()}
    assert pages == {page(c).name for c in console_scripts()}


@pytest.mark.parametrize("command", console_scripts())
def test_page_header_and_sections(command):
    text = page(command).read_text()
    section = "8" if command in DAEMONS else "1M"
    assert re.search(rf"^\.TH {re.escape(command.upper())} {section} ", text, re.M)
    for name in SECTIONS:
        roff_section(text, name)
    assert roff_section(text, "NAME").startswith(f"{command} - ")


@pytest.mark.parametrize("command", ["hpvmcreate", "hpvmmodify"])
def test_create_and_modify_pages_carry_the_grammar(command):
    rsrc = roff_section(page(command).read_text(), "RESOURCE STATEMENTS")
    for word in ("avio_stor", "scsi", "avio_lan", "lan", "null", "portid", "0-127", "0x10+"):
        assert word in rsrc


@pytest.mark.parametrize("command", console_scripts())
def test_page_renders_without_warnings(command):
    if not shutil.which("groff") or not shutil.which("man"):
        pytest.fail("groff/man are missing: make test installs them (setup-host.sh --test-tools)")
    for argv in (
        ["groff", "-man", "-ww", "-z", "-Tutf8", str(page(command))],
        ["man", "--warnings", "-l", str(page(command))],
    ):
        result = subprocess.run(
            argv, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "MANWIDTH": "80"}
        )
        assert result.returncode == 0 and result.stderr == "", (argv, result.stderr)


@pytest.mark.parametrize("command", console_scripts())
def test_every_help_option_is_in_the_page(command, helps):
    result = helps[command]
    options = roff_section(page(command).read_text(), "OPTIONS")
    assert result.returncode == 0, result.stderr
    for option in help_options(result.stdout):
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", options), option


def test_help_parser_finds_options():
    text = "  -h, --help   show\n  --virt-type {kvm,qemu}\n  -u portid:N:vlanid:M  set\n"
    assert help_options(text) == {"-h", "--help", "--virt-type", "-u"}


# --- help texts that said less than the code does --------------------------------


WITH_CONNECT = sorted(set(console_scripts()) - {"avio-libvirt-hook"})


@pytest.mark.parametrize("command", WITH_CONNECT)
def test_connect_help_names_the_environment_default(command, helps):
    assert "$LIBVIRT_DEFAULT_URI" in helps[command].stdout


def test_modify_help_says_the_boot_extensions_are_ignored(helps):
    assert "ignored" in helps["hpvmmodify"].stdout
    assert "ignored" not in helps["hpvmcreate"].stdout


def test_status_help_says_v_and_d_need_p(helps):
    assert helps["hpvmstatus"].stdout.count("with -P") == 2


# --- bash completion ---------------------------------------------------------------


def complete(
    line: str | None = None, words: list[str] | None = None, path: str = "/usr/bin:/bin"
) -> list[str]:
    """COMPREPLY of the completion function for a command line typed up to its end
    (COMP_LINE/COMP_POINT as bash sets them), or for COMP_WORDS/COMP_CWORD alone."""
    if words is None:
        assert line is not None
        setup = f"COMP_LINE={_q(line)}; COMP_POINT={len(line)}"
        words = line.split() + ([""] if line.endswith(" ") else [])
    else:
        setup = "unset COMP_LINE COMP_POINT"
    script = (
        f"source {_q(str(COMPLETION))}; COMP_WORDS=({' '.join(_q(w) for w in words)}); "
        f"COMP_CWORD={len(words) - 1}; {setup}; _avio_kvm; printf '%s\\n' \"${{COMPREPLY[@]}}\""
    )
    result = subprocess.run(
        ["bash", "--norc", "-c", script],
        capture_output=True,
        text=True,
        env={"PATH": path},
        timeout=60,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return [w for w in result.stdout.split("\n") if w]


def _q(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def test_completion_is_valid_bash():
    result = subprocess.run(["bash", "-n", str(COMPLETION)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_completion_passes_shellcheck():
    if not shutil.which("shellcheck"):
        pytest.fail("shellcheck is missing: make test installs it (setup-host.sh --test-tools)")
    result = subprocess.run(["shellcheck", str(COMPLETION)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("command", console_scripts())
def test_completion_offers_exactly_the_help_options(command, helps):
    if command == "avio-libvirt-hook":  # run by libvirt, not typed
        assert complete(f"{command} -") == []
        return
    expected = help_options(helps[command].stdout) if helps[command].returncode == 0 else set()
    assert set(complete(f"{command} -")) == expected


def test_completion_of_hpvmcreate_options_from_comp_words():
    assert complete(words=["hpvmcreate", "--pr"]) == ["--print-xml"]
    assert "-a" in complete(words=["hpvmcreate", "-"])


def test_completion_of_a_resource_statement_word():
    assert complete(words=["hpvmcreate", "-a", "dis"]) == ["disk:"]
    assert complete("hpvmmodify -P g -d dv") == ["dvd:"]
    assert complete("hpvmcreate -a ") == ["disk:", "dvd:", "network:"]


def test_completion_after_a_colon_gives_what_follows_it():
    # bash splits words at ':' (COMP_WORDBREAKS): COMPREPLY holds the part after the last one
    assert complete("hpvmcreate -a disk:") == ["avio_stor:", "scsi:"]
    assert complete("hpvmcreate -a disk:av") == ["avio_stor:"]
    assert complete("hpvmmodify -P g -m network:") == ["avio_lan:", "lan:"]
    assert complete("hpvmcreate -a disk:avio_stor:") == [":"]
    assert complete("hpvmcreate -a disk:avio_stor:0,1") == []
    assert complete("hpvmcreate -a disk:avio_stor::") == ["disk:", "lv:", "file:"]
    assert complete("hpvmcreate -a dvd:scsi:0,0,5:") == ["disk:", "file:", "null:"]
    assert complete("hpvmcreate -a network:avio_lan::") == ["vswitch:"]
    assert complete("hpvmcreate -a network:avio_lan::vswitch:sw1:") == ["portid:"]


def test_completion_of_a_backing_store_path():
    assert complete(f"hpvmcreate -a disk:avio_stor::file:{REPO}/pyproj") == [
        f"{REPO}/pyproject.toml".rsplit(":", 1)[-1]
    ]
    assert complete(f"hpvmcreate -a dvd:avio_stor::file:{REPO}/ma") == [f"{REPO}/man/"]


def test_completion_of_option_values():
    assert complete("hpvmcreate -O h") == ["hpux"]
    assert complete("hpvmmodify -P g -B ") == ["auto", "manual"]
    assert complete("hpvmcreate --virt-type ") == ["kvm", "qemu"]
    assert complete("avio-agent --on-remove ") == ["detach", "keep"]
    assert complete("hpvmconsole -P g -c ") == ["CO", "CL", "VM", "HE", "X"]
    assert complete("hpvmnet -S sw -u ") == ["portid:"]
    assert complete("hpvmcreate -c ") == []
    assert "-S" in complete("hpvmnet -c -")  # hpvmnet's -c is a flag


def test_guest_names_follow_connect():
    # libvirt's own test driver (in virsh itself, no daemon) has one guest, "test"
    assert complete("hpvmstart --connect test:///default -P ") == ["test"]
    assert complete("hpvmstart --connect test:///default -P x") == []
    assert complete("hpvmcreate --connect test:///default -P ") == []  # a new name


def test_guest_names_are_quietly_empty_when_libvirt_is_unreachable():
    uri = "qemu+unix:///system?socket=/nonexistent/avio-test.sock"
    assert complete(f"hpvmstart --connect {uri} -P ") == []
    assert complete(f"hpvmnet --connect {uri} -S ") == []


def test_completion_of_hpvmdevmgmt_entries():
    assert complete("hpvmdevmgmt -l ") == ["all", "rdev", "gdev"]
    assert complete("hpvmdevmgmt -a ") == ["rdev:", "gdev:"]
    assert complete("hpvmdevmgmt -m ") == ["gdev:"]
    assert complete("hpvmdevmgmt -d rdev:/et") == ["/etc/"]
