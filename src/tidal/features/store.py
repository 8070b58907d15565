"""The feature store: offline retrieval, materialization, and online reads, over one set of
definitions (entities, feature views, on-demand views and feature services)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tidal.errors import InvalidValueError
from tidal.features.definitions import Entity, FeatureService, FeatureView
from tidal.features.offline import OfflineStore, _q
from tidal.features.on_demand import OnDemandFeatureView
from tidal.features.online import RedisOnlineStore, SqliteOnlineStore, entity_key, key_function
from tidal.store.workspace import Workspace, current_workspace

_BATCH = 10_000
Definition = Entity | FeatureView | OnDemandFeatureView | FeatureService


def _utc(moment: Any, what: str) -> datetime:
    if not isinstance(moment, datetime):
        raise InvalidValueError(f"{what} must be a datetime, got {type(moment).__name__}",
                                field=what)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _converter(dtype: str) -> Callable[[Any], Any] | None:
    """How an online value is turned back into its declared type (None: as stored)."""
    if dtype == "timestamp":
        return lambda v: datetime.fromtimestamp(v / 1e6, tz=UTC)
    if dtype == "bool":
        return bool
    return None


@dataclass(frozen=True)
class _ViewRead:
    """How one request reads one feature view online, worked out once per feature list."""

    view: FeatureView
    names: list[str]
    ttl_us: float | None
    converters: list[Callable[[Any], Any] | None]
    key: Callable[[Mapping[str, Any]], str]


@dataclass(frozen=True)
class _Plan:
    """A feature list resolved against the definitions: what to read from each view (the
    features asked for, plus those on-demand views need), what to compute, and the output
    column of every feature asked for, in order."""

    base: dict[str, list[str]]
    on_demand: list[OnDemandFeatureView]
    outputs: list[tuple[str, str, str]]  # (view, feature, column)
    reads: list[_ViewRead]

    @property
    def direct(self) -> bool:
        """Whether the offline join alone answers (no on-demand view, nothing hidden)."""
        return not self.on_demand and sum(map(len, self.base.values())) == len(self.outputs)


class FeatureStore:
    """Feature views with an offline store (their sources, joined by DuckDB) and an online
    store: ``online`` is a SQLite file path or a ``redis://`` URL (``pip install
    'tidal-mlops[redis]'``); by default the workspace's ``online_store`` setting, else
    ``<workspace home>/online.db``.

    ``definitions`` holds the feature views, and optionally entities, on-demand views and
    feature services, as a Python definitions file declares them (see ``load_definitions``).
    """

    def __init__(self, definitions: Sequence[Definition], *, workspace: Workspace | None = None,
                 online: str | Path | None = None, online_prefix: str = "tidal:") -> None:
        if isinstance(definitions, (FeatureView, OnDemandFeatureView, FeatureService, Entity)):
            definitions = [definitions]
        kinds = (Entity, FeatureView, OnDemandFeatureView, FeatureService)
        strays = [d for d in definitions if not isinstance(d, kinds)]
        if strays:
            raise InvalidValueError(f"expected Entity, FeatureView, OnDemandFeatureView or "
                                    f"FeatureService objects, got {type(strays[0]).__name__}",
                                    field="definitions")
        self.offline = OfflineStore([d for d in definitions if isinstance(d, FeatureView)])
        self.views = self.offline.views
        self.entities = _entities(definitions, self.views.values())
        self.on_demand: dict[str, OnDemandFeatureView] = {}
        for odfv in (d for d in definitions if isinstance(d, OnDemandFeatureView)):
            if odfv.name in self.views or odfv.name in self.on_demand:
                raise InvalidValueError(f"two views are named {odfv.name!r}; feature views and "
                                        "on-demand views share one namespace",
                                        field="definitions")
            self.on_demand[odfv.name] = odfv
        self.services: dict[str, FeatureService] = {}
        for service in (d for d in definitions if isinstance(d, FeatureService)):
            if service.name in self.services:
                raise InvalidValueError(f"two feature services are named {service.name!r}",
                                        field="definitions")
            self.services[service.name] = service
        self._plans: dict[tuple[Any, ...], _Plan] = {}
        for odfv in self.on_demand.values():  # inputs must exist: fail at definition time
            self._split(list(odfv.inputs), f"inputs of on-demand view {odfv.name!r}")
        for service in self.services.values():
            self._split(list(service.features), f"feature service {service.name!r}")
        self._online_target = online
        self._online_prefix = online_prefix
        self._workspace = workspace
        self._online: SqliteOnlineStore | RedisOnlineStore | None = None
        self._online_ready: set[str] = set()

    @property
    def online(self) -> SqliteOnlineStore | RedisOnlineStore:
        """The online store, opened on first use (offline work never creates one)."""
        if self._online is None:
            target = self._online_target
            if target is None:
                settings = (self._workspace or current_workspace()).settings
                target = settings.online_store or settings.home / "online.db"
            if isinstance(target, str) and target.startswith(("redis://", "rediss://",
                                                              "unix://")):
                self._online = RedisOnlineStore(target, prefix=self._online_prefix)
            else:
                self._online = SqliteOnlineStore(target)
        return self._online

    @classmethod
    def from_registry(cls, *, workspace: Workspace | None = None,
                      online: str | Path | None = None, online_prefix: str = "tidal:",
                      trust_code: bool = False) -> FeatureStore:
        """The store described by the definitions last applied to the workspace's registry
        (``tidal features apply``). On-demand views are Python code: they are rebuilt only with
        ``trust_code=True``, which runs the definitions file recorded with them."""
        from tidal.features.registry import registered_definitions

        ws = workspace or current_workspace()
        return cls(registered_definitions(ws, trust_code=trust_code), workspace=ws,
                   online=online, online_prefix=online_prefix)

    # -- resolving feature lists -------------------------------------------------------------

    def _split(self, refs: Sequence[Any], what: str) -> list[tuple[str, str]]:
        pairs = []
        for ref in refs:
            view_name, sep, feature = ref.partition(":") if isinstance(ref, str) else ("", "", "")
            if not sep or not view_name or not feature:
                raise InvalidValueError(f"{what}: feature {ref!r} is not of the form "
                                        "'view:feature'", field="features")
            view = self.views.get(view_name) or self.on_demand.get(view_name)
            if view is None:
                raise InvalidValueError(
                    f"{what}: unknown feature view {view_name!r} in {ref!r}; known views: "
                    f"{sorted([*self.views, *self.on_demand])}", field="features")
            try:
                view.feature(feature)
            except InvalidValueError as error:
                raise InvalidValueError(f"{what}: {error}", field="features") from None
            pairs.append((view_name, feature))
        return pairs

    def _plan(self, features: Any, full_feature_names: bool) -> _Plan:
        if isinstance(features, FeatureService):
            features = features.features
        cache_key = (features if isinstance(features, str)
                     else tuple(features) if isinstance(features, (list, tuple)) else None,
                     full_feature_names)
        plan = self._plans.get(cache_key) if cache_key[0] is not None else None
        if plan is None:
            plan = self._make_plan(features, full_feature_names)
            if cache_key[0] is not None and len(self._plans) < 1024:
                self._plans[cache_key] = plan
        return plan

    def _make_plan(self, features: Any, full_feature_names: bool) -> _Plan:
        if isinstance(features, str) and ":" not in features:
            if features not in self.services:
                raise InvalidValueError(f"unknown feature service {features!r}; known: "
                                        f"{sorted(self.services)}", field="features")
            features = self.services[features]
        if isinstance(features, FeatureService):
            features = features.features
        if isinstance(features, str) or not isinstance(features, (list, tuple)) or not features:
            raise InvalidValueError("features must be a non-empty list of 'view:feature' names, "
                                    "a FeatureService or a feature service's name",
                                    field="features")
        requested = list(dict.fromkeys(self._split(features, "features")))
        outputs: list[tuple[str, str, str]] = []
        seen: set[str] = set()
        for view_name, feature in requested:
            column = f"{view_name}__{feature}" if full_feature_names else feature
            if column in seen:
                raise InvalidValueError(f"column {column!r} would appear twice in the result; "
                                        "pass full_feature_names=True to name columns "
                                        "view__feature", field="features")
            seen.add(column)
            outputs.append((view_name, feature, column))
        base: dict[str, list[str]] = {}
        on_demand: list[OnDemandFeatureView] = []
        needed = [p for p in requested if p[0] in self.views]
        for view_name, _ in requested:
            odfv = self.on_demand.get(view_name)
            if odfv is not None and odfv not in on_demand:
                on_demand.append(odfv)
                needed.extend(self._split(list(odfv.inputs), f"on-demand view {odfv.name!r}"))
        for view_name, feature in needed:
            if feature not in base.setdefault(view_name, []):
                base[view_name].append(feature)
        reads = []
        for view_name, names in base.items():
            view = self.views[view_name]
            reads.append(_ViewRead(
                view, names, None if view.ttl is None else view.ttl.total_seconds() * 1e6,
                [_converter(view.feature(n).dtype) for n in names], key_function(view.join_keys)))
        return _Plan(base, on_demand, outputs, reads)

    # -- offline ---------------------------------------------------------------------------

    def get_historical_features(self, entity_df: Any, features: Any, *,
                                full_feature_names: bool = False, **options: Any) -> Any:
        """Point-in-time correct features for each entity row (see
        OfflineStore.get_historical_features), on-demand features computed from the joined
        values and the entity frame's request columns. ``features``: "view:feature" names, a
        FeatureService or a service's name."""
        plan = self._plan(features, full_feature_names)
        refs = [f"{v}:{f}" for v, names in plan.base.items() for f in names]
        if plan.direct:
            return self.offline.get_historical_features(
                entity_df, refs, full_feature_names=full_feature_names, **options)
        if not refs:  # only request-based on-demand features: nothing to join
            if isinstance(entity_df, (str, Path)) or options:
                raise InvalidValueError(
                    "only request-based on-demand features were asked for, so there is nothing "
                    "to join: give entity_df as a DataFrame or an Arrow table, without options",
                    field="entity_df")
            return self._finish_frame(entity_df, plan)
        joined = self.offline.get_historical_features(entity_df, refs, full_feature_names=True,
                                                      **options)
        if isinstance(joined, (str, Path)):
            return self._finish_file(Path(joined), plan)
        return self._finish_frame(joined, plan)

    def _finish_frame(self, joined: Any, plan: _Plan) -> Any:
        """Compute the on-demand features over a joined frame (pandas or Arrow) and give each
        column asked for its name; hidden inputs are dropped."""
        import pyarrow as pa

        as_pandas = not isinstance(joined, (pa.Table, pa.RecordBatch))
        if as_pandas and type(joined).__module__.split(".")[0] != "pandas":
            raise InvalidValueError(f"entity_df must be a pandas DataFrame or an Arrow table, "
                                    f"got {type(joined).__name__}", field="entity_df")
        table = pa.Table.from_pandas(joined, preserve_index=False) if as_pandas else joined
        table = self._finish_table(table, plan)
        return table.to_pandas() if as_pandas else table

    def _finish_table(self, table: Any, plan: _Plan) -> Any:
        import pyarrow as pa

        joined_names = {f"{v}__{f}" for v, names in plan.base.items() for f in names}
        computed: dict[tuple[str, str], Any] = {}
        for odfv in plan.on_demand:
            columns: dict[str, Any] = {}
            for ref in odfv.inputs:
                view_name, _, feature = ref.partition(":")
                columns[feature] = table.column(f"{view_name}__{feature}").to_pandas() \
                    if odfv.mode == "pandas" else table.column(f"{view_name}__{feature}")\
                    .to_pylist()
            for field in odfv.request:
                if field.name not in table.column_names:
                    raise InvalidValueError(
                        f"entity_df lacks column {field.name!r}, a request field of on-demand "
                        f"view {odfv.name!r}", field="entity_df")
                column = table.column(field.name)
                columns[field.name] = column.to_pandas() if odfv.mode == "pandas" \
                    else column.to_pylist()
            for name, array in odfv.compute(columns, table.num_rows).items():
                computed[(odfv.name, name)] = array
        keep = [c for c in table.column_names if c not in joined_names]
        arrays = [table.column(c) for c in keep]
        names = list(keep)
        for view_name, feature, column in plan.outputs:
            if column in keep:
                raise InvalidValueError(f"column {column!r} would appear twice in the result; "
                                        "pass full_feature_names=True", field="features")
            names.append(column)
            arrays.append(computed[(view_name, feature)] if (view_name, feature) in computed
                          else table.column(f"{view_name}__{feature}"))
        return pa.Table.from_arrays(arrays, names=names)

    def _finish_file(self, path: Path, plan: _Plan) -> Path:
        """The same over a result written to Parquet, batch by batch, so a result larger than
        memory never has to be held."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        scratch = path.with_name(path.name + ".part")
        writer = None
        try:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=65_536):
                table = self._finish_table(pa.Table.from_batches([batch]), plan)
                if writer is None:
                    writer = pq.ParquetWriter(scratch, table.schema, compression="zstd")
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()
        if writer is None:  # an empty result: nothing to compute, but the columns must match
            empty = self._finish_table(pq.read_schema(path).empty_table(), plan)
            pq.write_table(empty, scratch)
        scratch.replace(path)
        return path

    # -- online ----------------------------------------------------------------------------

    def materialize(self, end: datetime, start: datetime | None = None,
                    views: Sequence[str] | None = None,
                    progress: Callable[[str, int], None] | None = None) -> dict[str, int]:
        """Write each view's latest values with event times in (start, end] to the online
        store. ``start`` defaults to where the previous materialization of the view ended, so
        repeated calls only move what changed. Returns the rows written per view;
        ``progress(view, rows)`` is called after each written batch."""
        end = _utc(end, "end")
        chosen = list(self.views) if views is None else list(views)
        unknown = [name for name in chosen if name not in self.views]
        if unknown:
            raise InvalidValueError(f"unknown feature view(s) {unknown}; known: "
                                    f"{sorted(self.views)}", field="views")
        written: dict[str, int] = {}
        for name in chosen:
            view = self.views[name]
            begin = _utc(start, "start") if start is not None else self.online.watermark(view)
            if begin is not None and begin >= end:
                written[name] = 0
                continue
            self.online.ensure_table(view)
            features = [f.name for f in view.features]
            with self.offline.view_rows(name, features) as (conn, rows_sql):
                values = ", ".join(
                    f"epoch_us({_q(f.name)})" if f.dtype == "timestamp" else _q(f.name)
                    for f in view.features)
                keys = ", ".join(_q(k) for k in view.join_keys)
                window = f"__ts <= make_timestamptz({int(end.timestamp() * 1e6)})"
                if begin is not None:
                    window += f" AND __ts > make_timestamptz({int(begin.timestamp() * 1e6)})"
                reader = conn.sql(
                    f"SELECT {keys}, epoch_us(__ts), {values} FROM ({rows_sql}) WHERE {window} "
                    f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY __ts DESC) = 1"
                ).to_arrow_reader(_BATCH)
                width = len(view.join_keys)
                count = 0
                for batch in reader:
                    columns = [column.to_pylist() for column in batch.columns]
                    rows = [(entity_key([c[i] for c in columns[:width]]), columns[width][i],
                             [c[i] for c in columns[width + 1:]]) for i in range(batch.num_rows)]
                    count += self.online.write(view, rows)
                    if progress is not None:
                        progress(name, count)
            self.online.set_watermark(view, end)
            written[name] = count
        return written

    def get_online_features(self, entity_rows: Any, features: Any,
                            *, full_feature_names: bool = False) -> dict[str, list[Any]]:
        """Latest values for each entity row (dicts of join keys and request fields, or a
        DataFrame), as columns: the join keys given, then one list per feature. Missing
        entities, and values older than their view's TTL, come back as None. ``features``:
        "view:feature" names, a FeatureService or a service's name."""
        plan = self._plan(features, full_feature_names)
        if type(entity_rows).__module__.split(".")[0] == "pandas":
            entity_rows = entity_rows.to_dict("records")
        if not isinstance(entity_rows, (list, tuple)) or not all(
                isinstance(row, dict) for row in entity_rows):
            raise InvalidValueError("entity_rows must be a list of dicts of join keys, or a "
                                    "DataFrame", field="entity_rows")
        now_us = time.time() * 1e6
        result: dict[str, list[Any]] = {}
        values: dict[tuple[str, str], list[Any]] = {}
        for read in plan.reads:
            view = read.view
            try:
                keys = [read.key(row) for row in entity_rows]
            except KeyError:
                for position, row in enumerate(entity_rows):
                    absent = [k for k in view.join_keys if k not in row]
                    if absent:
                        raise InvalidValueError(
                            f"entity row {position} lacks join key(s) {absent} of feature view "
                            f"{view.name!r}", field="entity_rows") from None
                raise
            for key in view.join_keys:
                if key not in result:
                    result[key] = [row[key] for row in entity_rows]
            if view.name not in self._online_ready:  # once per view: keep reads one lookup
                self.online.ensure_table(view)
                self._online_ready.add(view.name)
            found = self.online.read(view, read.names, keys)
            if read.ttl_us is not None:
                found = [None if hit is None or now_us - hit[0] > read.ttl_us else hit
                         for hit in found]
            for index, (name, convert) in enumerate(zip(read.names, read.converters)):
                column = [None if hit is None else hit[1][index] for hit in found]
                if convert is not None:
                    column = [None if v is None else convert(v) for v in column]
                values[(view.name, name)] = column
        for odfv in plan.on_demand:
            columns: dict[str, Any] = {}
            for ref in odfv.inputs:
                view_name, _, feature = ref.partition(":")
                columns[feature] = values[(view_name, feature)]
            for field in odfv.request:
                try:
                    columns[field.name] = [row[field.name] for row in entity_rows]
                except KeyError:
                    raise InvalidValueError(
                        f"entity rows lack {field.name!r}, a request field of on-demand view "
                        f"{odfv.name!r}", field="entity_rows") from None
            for name, array in odfv.compute(columns, len(entity_rows)).items():
                values[(odfv.name, name)] = array.to_pylist()
        for view_name, feature, column in plan.outputs:
            result[column] = values[(view_name, feature)]
        return result


def _entities(definitions: Sequence[Any], views: Any) -> dict[str, Entity]:
    """Every entity, declared or used by a view; one name must mean one set of join keys."""
    entities: dict[str, Entity] = {}
    used = [e for view in views for e in view.entities]
    for entity in [d for d in definitions if isinstance(d, Entity)] + used:
        known = entities.setdefault(entity.name, entity)
        if known.join_keys != entity.join_keys:
            raise InvalidValueError(f"entity {entity.name!r} is declared with join keys "
                                    f"{list(known.join_keys)} and {list(entity.join_keys)}",
                                    field="entities")
    return entities
