"""What changed between two dataset versions: schema, row count and column statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tidal.data.versions import DatasetVersion

_STATS = ("nulls", "distinct", "min", "max", "mean", "std")


@dataclass(frozen=True)
class DatasetDiff:
    """The difference from version ``a`` to version ``b``."""

    a: str
    b: str
    added_columns: dict[str, str] = field(default_factory=dict)
    removed_columns: dict[str, str] = field(default_factory=dict)
    type_changes: dict[str, tuple[str, str]] = field(default_factory=dict)
    rows: tuple[int, int] = (0, 0)
    #: per column present in both: statistic -> (value in a, value in b), changed ones only
    statistics: dict[str, dict[str, tuple[Any, Any]]] = field(default_factory=dict)

    @property
    def same_content(self) -> bool:
        return not (self.added_columns or self.removed_columns or self.type_changes
                    or self.rows[0] != self.rows[1] or self.statistics)

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "added_columns": self.added_columns,
                "removed_columns": self.removed_columns,
                "type_changes": {k: list(v) for k, v in self.type_changes.items()},
                "rows": list(self.rows),
                "statistics": {c: {s: list(v) for s, v in stats.items()}
                               for c, stats in self.statistics.items()}}


def diff(a: DatasetVersion, b: DatasetVersion) -> DatasetDiff:
    """Compare two versions by their stored schemas and profiles; no data is read."""
    types_a = {f.name: str(f.type) for f in a.schema}
    types_b = {f.name: str(f.type) for f in b.schema}
    statistics: dict[str, dict[str, tuple[Any, Any]]] = {}
    for column in types_a.keys() & types_b.keys():
        pa_, pb = a.profile["columns"][column], b.profile["columns"][column]
        changed = {s: (pa_.get(s), pb.get(s)) for s in _STATS if pa_.get(s) != pb.get(s)}
        if pa_.get("top") != pb.get("top"):
            changed["top"] = (pa_.get("top"), pb.get("top"))
        if changed:
            statistics[column] = changed
    return DatasetDiff(
        a=a.uri, b=b.uri,
        added_columns={c: t for c, t in types_b.items() if c not in types_a},
        removed_columns={c: t for c, t in types_a.items() if c not in types_b},
        type_changes={c: (types_a[c], types_b[c]) for c in types_a.keys() & types_b.keys()
                      if types_a[c] != types_b[c]},
        rows=(a.num_rows, b.num_rows),
        statistics=statistics,
    )
