"""Dataset benchmarks: streaming registration of a large Parquet file, and profiling cost.

    python benchmarks/data/run.py [--rows 10000000] [--profile-rows 1000000] [--write-results]

(1) Registers a ROWS x 20 Parquet file (16 float, 2 integer, a low- and a high-cardinality
    string column) in a fresh process and reports its peak resident memory. Target: < 2 GB
    for 10 million rows.
(2) Profiles a PROFILE_ROWS x 20 file with Tidal's profiler (counts, nulls, distinct estimates,
    min/max/mean/std, quantiles, 20-bin histograms, top-10 values) and runs DuckDB's bare
    `SUMMARIZE` on the same file, in the same process, alternating. Target: Tidal at most 2x.

The anchor is DuckDB itself, which Tidal already depends on: no separate environment needed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from report import write_results  # noqa: E402

REPO = HERE.parent.parent
RESULTS = REPO / "benchmarks" / "RESULTS.md"
RSS_LIMIT_MB = 2048
PROFILE_RATIO = 2.0
CHUNK = 500_000

REGISTER = """
import json, resource, sys, time
import tidal
tidal.workspace(sys.argv[1])
start = time.perf_counter()
version = tidal.datasets.register("wide", sys.argv[2])
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "rows": version.num_rows, "columns": version.num_columns,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "stored_mb": version.size_bytes / 2**20}))
"""


def generate(path: Path, rows: int) -> None:
    """ROWS x 20 columns, written chunk by chunk (the generator never holds the whole table)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(7)
    writer = None
    for start in range(0, rows, CHUNK):
        n = min(CHUNK, rows - start)
        columns = {f"f{i}": rng.normal(i, 1 + i, n) for i in range(16)}
        columns["count"] = rng.integers(0, 1000, n)
        columns["ts"] = np.arange(start, start + n, dtype="int64")
        columns["segment"] = pa.array(rng.choice([f"segment-{k}" for k in range(50)], n))
        columns["user"] = pa.array([f"user-{k}" for k in rng.integers(0, rows, n)])
        table = pa.table(columns)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema, compression="zstd")
        writer.write_table(table)
    writer.close()


def register_large(work: Path, rows: int) -> dict:
    data = work / f"wide-{rows}.parquet"
    if not data.exists():
        print(f"generating {rows:,} x 20 rows at {data}...", file=sys.stderr)
        generate(data, rows)
    workspace = tempfile.mkdtemp(dir=work, prefix="ws-")
    print(f"registering {data.stat().st_size / 2**20:,.0f} MB of Parquet in a fresh process...",
          file=sys.stderr)
    try:
        done = subprocess.run([sys.executable, "-c", REGISTER, workspace, str(data)],
                              capture_output=True, text=True, check=True)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)  # the stored copy is as large as the data
    return json.loads(done.stdout.strip().splitlines()[-1])


def profile_against_summarize(work: Path, rows: int, repeats: int = 5) -> dict:
    import duckdb
    import pyarrow.parquet as pq

    from tidal.data.ingest import normal_schema
    from tidal.data.profile import profile_parquet

    data = work / f"wide-{rows}.parquet"
    if not data.exists():
        generate(data, rows)
    schema = normal_schema(pq.read_schema(data))
    conn = duckdb.connect()
    conn.execute("SET threads TO 2")
    tidal_s, summarize_s = [], []
    for _ in range(repeats):  # alternating, so that machine drift hits both alike
        start = time.perf_counter()
        profile = profile_parquet(str(data), schema)
        tidal_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        conn.execute(f"SUMMARIZE SELECT * FROM read_parquet('{data}')").fetchall()
        summarize_s.append(time.perf_counter() - start)
    return {"rows": profile["rows"], "tidal_s": statistics.median(tidal_s),
            "summarize_s": statistics.median(summarize_s), "all_tidal_s": tidal_s,
            "all_summarize_s": summarize_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--profile-rows", type=int, default=1_000_000)
    parser.add_argument("--work-dir", help="where data files are generated and kept "
                                           "(default: a folder in the system temp dir)")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    work = Path(args.work_dir or Path(tempfile.gettempdir()) / "tidal-bench-data")
    work.mkdir(parents=True, exist_ok=True)

    registered = register_large(work, args.rows)
    profiled = profile_against_summarize(work, args.profile_rows)
    ratio = profiled["tidal_s"] / profiled["summarize_s"]
    rss_ok = registered["peak_rss_mb"] < RSS_LIMIT_MB and registered["rows"] == args.rows
    ratio_ok = ratio <= PROFILE_RATIO
    lines = [
        f"(1) register {registered['rows']:,} x {registered['columns']} Parquet: "
        f"{registered['seconds']:.1f} s, peak RSS {registered['peak_rss_mb']:,.0f} MB "
        f"(target < {RSS_LIMIT_MB} MB) {'PASS' if rss_ok else 'FAIL'}; "
        f"stored {registered['stored_mb']:,.0f} MB",
        f"(2) profile {profiled['rows']:,} x 20: Tidal {profiled['tidal_s'] * 1e3:,.0f} ms, "
        f"DuckDB SUMMARIZE {profiled['summarize_s'] * 1e3:,.0f} ms (medians of 5, alternating)"
        f"; Tidal / SUMMARIZE = {ratio:.2f}x (target <= {PROFILE_RATIO:.0f}x) "
        f"{'PASS' if ratio_ok else 'FAIL'}",
    ]
    print("\n".join(lines))
    if args.write_results:
        cpu = platform.processor() or platform.machine()
        write_results("data", "\n".join([
            "## Datasets: streaming registration and profiling",
            "",
            f"- Date: {datetime.now(UTC).isoformat(timespec='seconds')}",
            f"- Machine: {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}",
            "- Command: `python benchmarks/data/run.py --write-results`",
            "",
            "```text", *lines, "```"]))
    sys.exit(0 if rss_ok and ratio_ok else 1)


if __name__ == "__main__":
    main()
