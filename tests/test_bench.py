"""The benchmarks run (their numbers are printed, never asserted)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_translate_bench_runs():
    result = subprocess.run(
        [sys.executable, "bench/translate.py", "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "ratio hpvmcreate/virt-install" in result.stdout
