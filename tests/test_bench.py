"""The benchmark scripts under bench/ run and print their tables (numbers: docs/results.md and docs/notebook/2026-11-22-cpu-benchmarks.md)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bench_models(*args):
    return subprocess.run([sys.executable, str(ROOT / "bench" / "bench_models.py"), "--sizes", "tiny",
                           "--resolutions", "96x64", "--repeats", "1", "--warmup", "0", *args],
                          capture_output=True, text=True, timeout=300)


def rows(stdout: str) -> dict[str, list[str]]:
    """variant -> the row's fields, from the table bench_models prints."""
    return {fields[3]: fields for fields in (line.split() for line in stdout.splitlines())
            if len(fields) == 9 and fields[0] == "tiny"}


def test_bench_models_counts_fewer_ops_in_the_one_pass_forms():
    counts = {}
    for forms in ("one-pass", "loop"):
        result = bench_models("--search-radius", "4", "--variants", "full", "--forms", forms)
        assert result.returncode == 0, result.stderr
        (fields,) = rows(result.stdout).values()
        assert fields[3] == "full" and f"forms={forms}" in result.stdout and float(fields[5]) > 0  # median ms
        counts[forms] = int(fields[-1])
    # the same model, 40 % fewer kernels: the correlation lookups and the ±4 px search
    # volume in one pass (docs/models.md, "Two forms")
    assert counts["one-pass"] < 0.7 * counts["loop"], counts


def test_bench_models_rejects_a_bad_resolution():
    result = bench_models("--resolutions", "640by480")
    assert result.returncode != 0 and "resolution must look like 640x480" in result.stderr
