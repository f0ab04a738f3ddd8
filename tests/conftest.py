"""Shared fixtures: the seed text, running commands in-process, golden files."""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from agent.cli.common import run

# Two-core CI machines run other work beside us: no timing-based failures.
settings.register_profile(
    "avio", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.load_profile("avio")

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
# The source text's examples and sample output, kept in the repository (see the file).
SEED = DATA / "seed-examples.txt"
GOLDEN = Path(__file__).resolve().parent / "golden"
REGENERATE = os.environ.get("AVIO_REGENERATE") == "1"


def seed_commands(command: str) -> list[list[str]]:
    """Every `# <command> ...` example of the seed, continuation lines joined, as argv."""
    text = SEED.read_text()
    found = []
    for match in re.finditer(rf"# ({command} (?:[^\n]*\\\n)*[^\n]*)", text):
        line = match.group(1).replace("\\\n", " ").rstrip(" |")
        found.append(shlex.split(line)[1:])
    return found


@pytest.fixture(autouse=True, scope="session")
def _state_dir(tmp_path_factory):
    """The device database of the tests' commands (and agents) in a directory of the test
    session, never the host's /var/lib/libvirt/avio-kvm."""
    previous = os.environ.get("AVIO_STATE_DIR")
    os.environ["AVIO_STATE_DIR"] = str(tmp_path_factory.mktemp("state"))
    yield
    if previous is None:
        os.environ.pop("AVIO_STATE_DIR", None)
    else:
        os.environ["AVIO_STATE_DIR"] = previous


def command_env(path: str = "/usr/sbin:/usr/bin:/sbin:/bin", **extra: str) -> dict[str, str]:
    """A clean environment for a command a test runs, with the session's device database."""
    env = {"PATH": path, **extra}
    if "AVIO_STATE_DIR" in os.environ:
        env["AVIO_STATE_DIR"] = os.environ["AVIO_STATE_DIR"]
    return env


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run a command's main in-process: cli(module, argv) -> Result."""
    monkeypatch.setenv("AVIO_VIRT_TYPE", "qemu")

    def call(module, argv: list[str]) -> Result:
        capsys.readouterr()
        code = run(module.PROG, module.COMMAND, argv)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return call


def compare_golden(name: str, actual: str) -> None:
    """Compare with tests/golden/NAME; AVIO_REGENERATE=1 rewrites it."""
    path = GOLDEN / name
    if REGENERATE or not path.exists():
        path.write_text(actual)
        if not REGENERATE:
            pytest.fail(f"golden file {name} was missing and has been written; check it in")
    assert actual == path.read_text(), f"output differs from golden file {name}"
