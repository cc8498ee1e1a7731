"""Benchmark: the shipped line-item mapping applied to 1,000,000 in-memory CSV-like rows.

    .venv/bin/python bench/mapper_transform.py [--rows 1000000] [--repeat 3]

Measures the transform alone (``CompiledMapping.apply`` without lookups: the line-item
mapping has none) on one core, and Arrow memory: peak allocation during the transform
against the size of the input batch. Prints the figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import time

# One core: Arrow's kernels would otherwise use a thread pool.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from sfsync.emulator.org import Org  # noqa: E402
from sfsync.mappers import compile_mapping, load_mapping  # noqa: E402


def make_batch(n: int, seed: int = 7, dirty: float = 0.0) -> pa.Table:
    """Line items in the files layout: every column a string, as the CSV biller delivers them."""
    rng = np.random.default_rng(seed)
    idx = np.arange(n)
    acct = rng.integers(1, 200_000, n)
    st = pa.array([f"ST-{a:06d}-202611" for a in acct])
    cats = np.array(["REC", "USG", "OTC", "EQP", "CRD", "MSG"])
    svc = np.array(["VOICE", "DATA", "SMS", ""])
    cents = rng.integers(-5_000, 20_000, n)
    amount = [f"{c / 100:.2f}" for c in cents]
    if dirty:
        # Bills with a few bad cells: they send whole columns down the per-row-checked path.
        for i in np.flatnonzero(rng.random(n) < dirty):
            amount[i] = ["12,50", "n/a", "1.005"][i % 3]
    qty = rng.integers(0, 2_000, n)
    day = rng.integers(1, 28, n)
    return pa.table({
        "line_item_id": pa.array([f"LI-{i:09d}" for i in idx]),
        "statement_id": st,
        "account_number": pa.array([f"BA-{a:06d}" for a in acct]),
        "statement_date": pa.array([f"2026-11-{d:02d}" for d in day]),
        "category": pa.array(cats[rng.integers(0, 6, n)]),
        "service_type": pa.array(svc[rng.integers(0, 4, n)]),
        "description": pa.array(np.array(["Unlimited plan", "Voice usage", "Handset instalment", "Credit"])[idx % 4]),
        "service_id": pa.array([f"SV-{a:06d}-1" for a in acct]),
        "service_name": pa.array([f"Mobile +33 6 {a:08d}" for a in acct]),
        "amount": pa.array(amount),
        "quantity": pa.array([str(q) if q % 3 == 0 else "" for q in qty]),
        "uom": pa.array(np.array(["MIN", "MB", "MSG", ""])[idx % 4]),
        "service_start": pa.array([f"2026-10-{d:02d}" for d in day]),
        "service_end": pa.array([f"2026-11-{d:02d}" for d in day]),
        "sequence": pa.array([str(i % 40 + 1) for i in idx]),
        "_source": pa.array([f"line_items_202611.csv:{i + 2}" for i in idx]),
    })


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dirty", type=float, default=0.0, help="share of rows with a bad amount (e.g. 0.01)")
    args = ap.parse_args()
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    compiled = compile_mapping(load_mapping("mappings/files/line_items.yaml"), Org().describe)
    batch = make_batch(args.rows, dirty=args.dirty)
    input_bytes = batch.nbytes
    compiled.apply(batch.slice(0, 1000), biller="files")  # warm up kernels and caches
    base_pool = pa.default_memory_pool()
    times = []
    peak_extra = 0
    out = None
    for _ in range(args.repeat):
        out = None
        # A fresh proxy pool counts only what this apply allocates (its own high-water mark);
        # the input batch was allocated before and is not in it.
        proxy = pa.proxy_memory_pool(base_pool)
        pa.set_memory_pool(proxy)
        t0 = time.perf_counter()
        out = compiled.apply(batch, biller="files")
        times.append(time.perf_counter() - t0)
        pa.set_memory_pool(base_pool)
        peak_extra = max(peak_extra, proxy.max_memory())
    best = min(times)
    assert out is not None
    print(f"rows:               {args.rows:,}")
    print(f"mapped / rejected:  {len(out):,} / {len(out.rejects):,}")
    print(f"transform (best):   {best:.3f} s  ->  {args.rows / best:,.0f} rows/s (one core)")
    print(f"transform (all):    {', '.join(f'{t:.3f}' for t in times)} s")
    print(f"input batch:        {input_bytes / 2**20:,.1f} MiB")
    print(f"output rows:        {out.rows.nbytes / 2**20:,.1f} MiB")
    print(f"peak Arrow memory allocated by apply: {peak_extra / 2**20:,.1f} MiB "
          f"= {peak_extra / input_bytes:.2f}x the input batch")
    print(f"input + peak:       {(input_bytes + peak_extra) / input_bytes:.2f}x the input batch")
    print("RESULT " + json.dumps({"bench": "mapper_transform", "rows": args.rows, "seconds": round(best, 3),
                                 "rows_per_s": round(args.rows / best), "peak_extra_mib": round(peak_extra / 2**20, 1),
                                 "input_mib": round(input_bytes / 2**20, 1)}))


if __name__ == "__main__":
    main()
