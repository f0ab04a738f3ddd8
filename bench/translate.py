"""Translation speed: in-process for a 128-device guest, and the whole command vs virt-install.

Prints numbers only. Aims (from the issue): in-process translation under 5 ms;
`hpvmcreate --print-xml` at most half of `virt-install --print-xml`'s time.

    .venv/bin/python bench/translate.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from agent.cli.options import create_parser
from translators.allocate import complete
from translators.errors import Warnings
from translators.options import guest_from_options
from translators.render import render_domain, to_string
from translators.validate import check_guest

BIN = Path(sys.executable).parent
DISKS, NICS = 126, 2


def backing_files(count: int) -> Path:
    """A directory of `count` sparse 1 MiB images (virt-install wants existing files)."""
    folder = Path(tempfile.mkdtemp(prefix="avio-bench-"))
    for i in range(count):
        with open(folder / f"d{i}", "wb") as f:
            f.truncate(1 << 20)
    return folder


FILES = backing_files(DISKS)


def hpvm_argv(disks: int, nics: int) -> list[str]:
    argv = ["-P", "g", "-O", "linux", "-r", "1G"]
    for i in range(disks):
        argv += ["-a", f"disk:avio_stor::file:{FILES}/d{i}"]
    for _ in range(nics):
        argv += ["-a", "network:avio_lan::vswitch:swlan1"]
    return argv


def virt_install_argv(disks: int, nics: int) -> list[str]:
    argv = [
        "--connect",
        "test:///default",
        "--print-xml",
        "--name",
        "g",
        "--memory",
        "1024",
        "--osinfo",
        "detect=off,require=off",
        "--boot",
        "hd",
        "--noautoconsole",
        "--graphics",
        "none",
    ]
    for i in range(disks):
        argv += ["--disk", f"path={FILES}/d{i},bus=scsi"]
    for _ in range(nics):
        argv += ["--network", "bridge=swlan1,model=virtio"]
    return argv


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def in_process(runs: int) -> None:
    argv = hpvm_argv(DISKS, NICS)
    stages: dict[str, list[float]] = {"parse": [], "check": [], "complete": [], "render": []}
    totals = []
    for _ in range(runs):
        t0 = time.perf_counter()
        guest = guest_from_options(create_parser().parse_args(argv), Warnings())
        t1 = time.perf_counter()
        check_guest(guest)
        t2 = time.perf_counter()
        guest = complete(guest)
        t3 = time.perf_counter()
        to_string(render_domain(guest, "qemu"))
        t4 = time.perf_counter()
        for name, value in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            stages[name].append(value)
        totals.append(t4 - t0)
    print(f"in-process translation, {DISKS + NICS}-device guest, {runs} runs:")
    print(
        f"  median {statistics.median(totals) * 1e3:7.2f} ms   p90 "
        f"{percentile(totals, 0.9) * 1e3:7.2f} ms   (aim: under 5 ms)"
    )
    for name, values in stages.items():
        print(f"  {name:<9} median {statistics.median(values) * 1e3:7.2f} ms")


def run_quiet(argv: list[str], env: dict[str, str]) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def commands(rounds: int, disks: int, nics: int) -> None:
    env = {**os.environ, "AVIO_VIRT_TYPE": "qemu"}
    ours = [str(BIN / "hpvmcreate"), *hpvm_argv(disks, nics), "--print-xml"]
    theirs = ["virt-install", *virt_install_argv(disks, nics)]
    run_quiet(ours, env)  # warm-up: page cache, .pyc files
    run_quiet(theirs, env)
    a, b = [], []
    for _ in range(rounds):
        a.append(timed(lambda: run_quiet(ours, env)))
        b.append(timed(lambda: run_quiet(theirs, env)))
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"whole command, {disks + nics}-device guest, {rounds} alternating rounds:")
    print(f"  hpvmcreate --print-xml   median {ma * 1e3:7.1f} ms")
    print(f"  virt-install --print-xml median {mb * 1e3:7.1f} ms")
    print(f"  ratio hpvmcreate/virt-install {ma / mb:5.2f}   (aim: at most 0.50)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few iterations (smoke run)")
    args = parser.parse_args()
    in_process(runs=5 if args.quick else 200)
    rounds = 1 if args.quick else 10
    try:
        commands(rounds, DISKS, NICS)
        commands(rounds, 1, 1)
    finally:
        shutil.rmtree(FILES)


if __name__ == "__main__":
    main()
