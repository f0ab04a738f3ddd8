"""hpvmclone's storage copy against `cp --sparse=always`, on one sparse image.

The image: 1 GiB with 256 MiB of random data in 64 runs, the rest holes.
Prints wall time and throughput (of the image's full size) for both; our copy
also reads the copy back to check it (SHA-256), which cp does not.

    .venv/bin/python bench/clone.py [--size-mib 1024] [--data-mib 256]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.storage.copier import copy_backing

MIB = 1 << 20


def make_image(path: Path, size_mib: int, data_mib: int) -> None:
    runs = 64
    with open(path, "wb") as f:
        f.truncate(size_mib * MIB)
        for i in range(runs):
            f.seek(i * (size_mib // runs) * MIB)
            f.write(os.urandom(data_mib // runs * MIB))


def drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--data-mib", type=int, default=256)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="avio-bench-clone-", dir="/var/tmp"))
    try:
        image = work / "source.img"
        make_image(image, args.size_mib, args.data_mib)
        for label in ("cp --sparse=always", "hpvmclone copy (+ check)"):
            target = work / "copy.img"
            target.unlink(missing_ok=True)
            drop_caches()
            start = time.perf_counter()
            if label.startswith("cp"):
                subprocess.run(["cp", "--sparse=always", str(image), str(target)], check=True)
                subprocess.run(["sync", str(target)], check=True)
            else:
                copy_backing(str(image), str(target))
            seconds = time.perf_counter() - start
            used = os.stat(target).st_blocks * 512 / MIB
            print(
                f"{label}: {args.size_mib} MiB image ({args.data_mib} MiB data) in "
                f"{seconds:.2f} s, {args.size_mib / seconds:.0f} MiB/s; copy uses {used:.0f} MiB"
            )
    finally:
        for path in work.iterdir():
            path.unlink()
        work.rmdir()


if __name__ == "__main__":
    main()
