"""Which records the prediction log is missing, counted from its sequence numbers.

Each writer numbers the records of an endpoint 0, 1, 2... as it takes them (refused ones too)
and states how many numbers it gave out when it stops, or when its spool is recovered after a
kill. So a record lost anywhere (a full queue, a failed write, a SIGKILL before it reached the
spool) is a number missing from the log: nothing is lost silently.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING

import pyarrow.compute as pc

from tidal.ids import check_name
from tidal.serving.prediction_log import (
    ENDS_FOLDER,
    LOG_FOLDER,
    SCHEMA,
    epoch_ms,
    loads,
    partition_files,
    read_partitions,
)

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from tidal.store.workspace import Workspace

COLUMNS = ("worker", "first", "last", "missing")


def log_gaps(endpoint: str, *, start: datetime | None = None, end: datetime | None = None,
             workspace: Workspace | None = None) -> pd.DataFrame:
    """The ranges of sequence numbers missing from ``endpoint``'s log, per writer: columns
    worker, first, last (inclusive) and missing (how many), one row per range; empty when
    nothing is missing.

    Without ``start``, a writer's numbers are counted from 0, else from the first one in the
    range; a writer's last numbers count up to what it stated on stopping (or its recovery
    did), when that statement lies in the range. Records near the ends of a time range can
    have numbers just outside it: read a little wider than the span you judge.
    """
    import pandas as pd

    from tidal.store.workspace import current_workspace

    check_name(endpoint, what="endpoint", field="endpoint")
    ws = workspace or current_workspace()
    store = ws.artifacts
    table = read_partitions(store, LOG_FOLDER, endpoint, SCHEMA, start, end)
    table = table.filter(pc.is_valid(table["sequence"]))
    with ThreadPoolExecutor(16) as pool:
        paths = [path for path in partition_files(store, ENDS_FOLDER, endpoint,
                                                  epoch_ms(start, "start"), epoch_ms(end, "end"),
                                                  pool) if path.endswith(".json")]
        stated = {found["worker"]: int(found["sequences"])
                  for found in pool.map(lambda path: loads(store.read_file(path)), paths)}
    seen = _numbers_by_worker(table)
    for worker in stated:
        seen.setdefault(worker, [])
    rows = []
    for worker, numbers in sorted(seen.items()):
        rows.extend(_ranges(worker, numbers, 0 if start is None or not numbers else numbers[0],
                            stated.get(worker)))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _numbers_by_worker(table: pa.Table) -> dict[str, list[int]]:
    """Each worker's sequence numbers, sorted and without repeats."""
    import numpy as np

    workers = table["worker"].to_numpy(zero_copy_only=False)
    sequences = table["sequence"].to_numpy()
    found = {}
    for worker in np.unique(workers):
        found[str(worker)] = np.unique(sequences[workers == worker]).tolist()
    return found


def _ranges(worker: str, numbers: list[int], first: int, stated: int | None
            ) -> list[tuple[str, int, int, int]]:
    """The missing ranges of ``numbers`` from ``first`` up to ``stated`` (exclusive; default
    past the largest)."""
    import numpy as np

    end = stated if stated is not None else (numbers[-1] + 1 if numbers else first)
    present = np.asarray([n for n in numbers if first <= n < end], dtype=np.int64)
    bounds = np.concatenate([[first - 1], present, [end]])
    holes = np.flatnonzero(np.diff(bounds) > 1)
    return [(worker, int(bounds[i] + 1), int(bounds[i + 1] - 1),
             int(bounds[i + 1] - bounds[i] - 1)) for i in holes]
