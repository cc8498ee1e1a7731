"""Benchmark: the files biller reading a 1,000,000-row (and 5,000,000-row) line-item CSV.

    .venv/bin/python bench/billers_read.py [--rows 1000000 5000000] [--data DIR]

Each size is read in a fresh child process (so peak RSS is that read's alone) through
``FileBiller.read`` with the default settings: exact ``_source`` lines, sha256 manifest
checksum, numeric checks, duplicate-key detection. Prints rows/s (wall and per CPU-second)
and peak RSS; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROWS_PER_ACCOUNT = 2.79  # one billing month of the sample: line items per billed account


def ensure_file(data: Path, rows: int) -> Path:
    """A sample export whose single line_items file has at least ``rows`` rows (cached)."""
    from sfsync.billers.sample import generate

    d = data / f"li_{rows}"
    f = d / "line_items_202601.csv"
    if not f.exists():
        t = time.perf_counter()
        counts = generate(d, accounts=int(rows / ROWS_PER_ACCOUNT) + 1000, months=1, seed=11)
        print(f"  generated {counts['line_items']:,} line items in {time.perf_counter() - t:.1f}s", flush=True)
        for p in d.iterdir():
            if not p.name.startswith("line_items_"):
                p.unlink()
    return d


def child(directory: str, dedup: bool) -> None:
    """Read every line_items batch; print one JSON line of figures."""
    import resource

    from sfsync.billers import FileBiller, FileBillerSettings

    b = FileBiller("bench", FileBillerSettings(path=Path(directory), dedup=dedup), None)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    rows = batches = rejects = 0
    for batch in b.read("line_items"):
        rows += batch.num_rows
        batches += 1
        rejects += batch.rejects.num_rows if batch.rejects is not None else 0
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child would report the
    # parent's peak (the data generation), not its own.
    hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
    print(json.dumps({"rows": rows, "batches": batches, "rejects": rejects, "wall": wall, "cpu": cpu,
                      "peak_rss_mb": hwm / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "sfsync_bench_billers",
                    help="where the generated CSVs are cached (about 1 GB for 5M rows)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--no-dedup", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child, not a.no_dedup)
        return
    print("files biller: line_items CSV → batches (default settings)")
    for n in a.rows:
        d = ensure_file(a.data, n)
        size = (d / "line_items_202601.csv").stat().st_size
        for dedup in (True, False):
            runs = []
            for _ in range(a.repeat):
                cmd = [sys.executable, __file__, "--child", str(d)] + ([] if dedup else ["--no-dedup"])
                runs.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
            best = min(runs, key=lambda r: r["wall"])
            print(f"  {best['rows']:>10,} rows ({size / 1e6:,.0f} MB) dedup={'on ' if dedup else 'off'}: "
                  f"best {best['wall']:.2f}s = {best['rows'] / best['wall']:>10,.0f} rows/s wall, "
                  f"{best['rows'] / best['cpu']:>10,.0f} rows/CPU-s, peak RSS {max(r['peak_rss_mb'] for r in runs):,.0f} MB, "
                  f"{best['batches']} batches", flush=True)
            print("RESULT " + json.dumps({"bench": "billers_read", "rows": best["rows"], "dedup": dedup,
                                         "seconds": round(best["wall"], 3), "rows_per_s": round(best["rows"] / best["wall"]),
                                         "rows_per_cpu_s": round(best["rows"] / best["cpu"]),
                                         "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs))}), flush=True)


if __name__ == "__main__":
    main()
