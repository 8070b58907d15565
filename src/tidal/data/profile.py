"""Statistical profiles of a dataset version, computed by DuckDB over its Parquet file.

Two vectorised passes, never a row loop in Python: one aggregate query for every column (count,
nulls, distinct estimate, min/max/mean/std and quantiles for numbers), then one query for the
fixed-bin histograms of the numeric columns, and the top values of the categorical columns
(candidates from a sketch, then their exact counts). DuckDB streams the file under a memory
limit, so profiling works out of core.
"""

from __future__ import annotations

import tempfile
from typing import Any

import pyarrow as pa

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
HISTOGRAM_BINS = 20
TOP_K = 10
MEMORY_LIMIT = "1GB"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _is_numeric(data_type: pa.DataType) -> bool:
    return (pa.types.is_integer(data_type) or pa.types.is_floating(data_type)
            or pa.types.is_decimal(data_type))


def _is_categorical(data_type: pa.DataType) -> bool:
    return pa.types.is_string(data_type) or pa.types.is_boolean(data_type)


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if number == number else None


def profile_parquet(path: str, schema: pa.Schema) -> dict[str, Any]:
    """The profile of a Parquet file: row count and one entry per column."""
    import duckdb

    conn = duckdb.connect()
    try:
        conn.execute("SET threads TO 2")
        # Bounded memory whatever the size of the file: DuckDB spills to disk past this.
        conn.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
        conn.execute(f"SET temp_directory = '{tempfile.gettempdir()}/tidal-duckdb'")
        source = f"read_parquet('{path.replace(chr(39), chr(39) * 2)}')"
        parts = ["count(*)"]
        for field in schema:
            q = _quote(field.name)
            parts += [f"count({q})", f"approx_count_distinct({q})"]
            if _is_numeric(field.type):
                d = f"CAST({q} AS DOUBLE)"
                parts += [f"min({d})", f"max({d})", f"avg({d})", f"stddev_samp({d})",
                          f"approx_quantile({d}, {list(QUANTILES)})"]
            elif pa.types.is_temporal(field.type) or pa.types.is_string(field.type):
                parts += [f"CAST(min({q}) AS VARCHAR)", f"CAST(max({q}) AS VARCHAR)"]
        row = conn.execute(f"SELECT {', '.join(parts)} FROM {source}").fetchone()
        rows = int(row[0])
        columns: dict[str, dict[str, Any]] = {}
        i = 1
        numeric: list[tuple[str, float, float]] = []
        for field in schema:
            count, distinct = int(row[i]), int(row[i + 1])
            i += 2
            entry: dict[str, Any] = {"type": str(field.type), "count": count,
                                     "nulls": rows - count, "distinct": distinct}
            if _is_numeric(field.type):
                low, high, mean, std, quantiles = row[i:i + 5]
                i += 5
                entry.update(min=_number(low), max=_number(high), mean=_number(mean),
                             std=_number(std),
                             quantiles={str(q): _number(v) for q, v in
                                        zip(QUANTILES, quantiles or [None] * len(QUANTILES))})
                if low is not None and high is not None:
                    numeric.append((field.name, float(low), float(high)))
            elif pa.types.is_temporal(field.type) or pa.types.is_string(field.type):
                entry.update(min=row[i], max=row[i + 1])
                i += 2
            columns[field.name] = entry

        if numeric:
            parts = []
            edges_of: dict[str, list[float]] = {}
            for name, low, high in numeric:
                width = (high - low) / HISTOGRAM_BINS if high > low else 1.0
                edges = [low + width * k for k in range(1, HISTOGRAM_BINS)] + [high]
                edges_of[name] = [low] + edges
                parts.append(f"histogram(CAST({_quote(name)} AS DOUBLE), {edges})")
            counts = conn.execute(f"SELECT {', '.join(parts)} FROM {source}").fetchone()
            for (name, _, _), histogram in zip(numeric, counts):
                bins = [int(v) for _, v in sorted((histogram or {}).items())][:HISTOGRAM_BINS]
                columns[name]["histogram"] = {"edges": edges_of[name],
                                              "counts": bins + [0] * (HISTOGRAM_BINS - len(bins))}
        categorical = [f.name for f in schema if _is_categorical(f.type)]
        if categorical:
            # Candidates from a bounded-memory sketch in one pass, then exact counts of just
            # those values: a GROUP BY over a column of millions of distinct strings would
            # need a hash table as large as the column.
            sketches = conn.execute("SELECT " + ", ".join(
                f"approx_top_k(CAST({_quote(n)} AS VARCHAR), {TOP_K})" for n in categorical)
                + f" FROM {source}").fetchall()[0]
            for name, candidates in zip(categorical, sketches):
                values = [v for v in (candidates or []) if v is not None]
                top: list[list[Any]] = []
                if values:
                    q = f"CAST({_quote(name)} AS VARCHAR)"
                    marks = ", ".join("?" for _ in values)
                    top = [[v, int(n)] for v, n in conn.execute(
                        f"SELECT {q} AS v, count(*) AS n FROM {source} WHERE {q} IN ({marks}) "
                        f"GROUP BY 1 ORDER BY n DESC, v", values).fetchall()]
                columns[name]["top"] = top
        return {"rows": rows, "columns": columns}
    finally:
        conn.close()
