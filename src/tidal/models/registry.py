"""The model registry: immutable numbered versions of models, with their lineage.

``register`` saves a model through its flavor, stores the files as blobs and records, in one
transaction, the next version number with its signature, library versions, the run that made
it and the dataset versions it was trained on. What changes afterwards (aliases, stages) is
never an update in place alone: each move also writes a row saying who, when and why.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, insert, select, update

from tidal.data.uri import URI_PREFIX, parse_ref
from tidal.errors import InvalidValueError
from tidal.ids import check_name, new_id, now_ms, parse_count
from tidal.models.errors import AliasNotFoundError, ModelNotFoundError
from tidal.models.flavors.base import Flavor
from tidal.models.flavors.registry import detect_flavor, get_flavor
from tidal.models.package import (
    StoredFiles,
    content_digest,
    example_bytes,
    example_from_bytes,
    library_versions,
    save_files,
)
from tidal.models.schema import (
    gate_results,
    model_aliases,
    model_transitions,
    model_version_datasets,
    model_versions,
    registered_models,
)
from tidal.models.signature import Signature, infer_signature
from tidal.models.uri import ModelRef, check_alias, parse_model_uri
from tidal.store.db import upsert
from tidal.store.workspace import Workspace, current_workspace

if TYPE_CHECKING:
    from tidal.data.versions import DatasetVersion
    from tidal.models.stages import Transition
    from tidal.tracking.run import Run

def _datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


@dataclass(frozen=True)
class ModelVersion:
    """One immutable version of a registered model, as stored."""

    id: str
    name: str
    version: int
    flavor: str
    stage: str
    digest: str
    files: dict[str, dict[str, Any]]
    size_bytes: int
    flavor_metadata: dict[str, Any]
    libraries: dict[str, str]
    signature: Signature | None
    run_id: str | None
    source_version_id: str | None
    description: str | None
    tags: dict[str, str]
    aliases: list[str]
    created_at: datetime
    created_by: str | None
    input_example_digest: str | None = field(default=None, repr=False)
    workspace: Workspace = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def stored_files(self) -> StoredFiles:
        return StoredFiles(self.workspace, self.files, self.uri)

    def input_example(self) -> Any:
        """The input example given at registration (a DataFrame or an array), or None."""
        if self.input_example_digest is None:
            return None
        return example_from_bytes(self.workspace.artifacts.get_bytes(self.input_example_digest))

    def run(self) -> Run | None:
        """The run that produced this version."""
        if self.run_id is None:
            return None
        from tidal.tracking.run import Run

        return Run.load(self.workspace, self.run_id)

    def datasets(self) -> list[DatasetVersion]:
        """The dataset versions this version was trained on."""
        from tidal.data.versions import versions_by_id

        with self.workspace.db.read() as conn:
            ids = list(conn.execute(select(model_version_datasets.c.dataset_version_id).where(
                model_version_datasets.c.model_version_id == self.id)).scalars())
        return versions_by_id(ids, workspace=self.workspace)

    def source(self) -> ModelVersion | None:
        """The version this one was exported from, if it was."""
        if self.source_version_id is None:
            return None
        return _load_one(self.workspace, model_versions.c.id == self.source_version_id,
                         f"version id {self.source_version_id}")

    def transitions(self) -> list[Transition]:
        from tidal.models.stages import stage_history

        return stage_history(self)

    def gate_results(self) -> list[dict[str, Any]]:
        """Every stored gate result of this version, oldest first."""
        with self.workspace.db.read() as conn:
            rows = conn.execute(select(gate_results).where(
                gate_results.c.model_version_id == self.id)
                .order_by(gate_results.c.created_at, gate_results.c.gate_run_id,
                          gate_results.c.position)).all()
        return [{"gate_run_id": r.gate_run_id, "gate": r.gate, "passed": r.passed,
                 "reasons": json.loads(r.reasons),
                 "details": json.loads(r.details), "created_at": _datetime(r.created_at),
                 "created_by": r.created_by} for r in rows]

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__
                if k not in ("workspace", "input_example_digest")}
        data["uri"] = self.uri
        data["signature"] = None if self.signature is None else self.signature.to_dict()
        data["created_at"] = self.created_at.isoformat()
        data["has_input_example"] = self.input_example_digest is not None
        return data


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    description: str | None
    owner: str | None
    purpose: str | None
    latest_version: int | None
    aliases: dict[str, int]
    created_at: datetime
    created_by: str | None

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["created_at"] = self.created_at.isoformat()
        return data


# -- helpers --------------------------------------------------------------------------------

def _workspace(workspace: Workspace | None) -> Workspace:
    if workspace is not None and not isinstance(workspace, Workspace):
        raise InvalidValueError(f"workspace must be a Workspace from tidal.workspace(), got "
                                f"{type(workspace).__name__}", field="workspace")
    return workspace or current_workspace()


def _model_id(conn: Connection, name: str) -> str | None:
    return conn.execute(select(registered_models.c.id)
                        .where(registered_models.c.name == name)).scalar()


def _require_model(conn: Connection, name: str) -> str:
    model_id = _model_id(conn, name)
    if model_id is None:
        known = list(conn.execute(select(registered_models.c.name)
                                  .order_by(registered_models.c.name).limit(20)).scalars())
        hint = f"; registered models: {', '.join(known)}" if known else \
            "; no model is registered in this workspace yet"
        raise ModelNotFoundError(f"no model named {name!r}{hint}", field="name")
    return model_id


def _aliases_of(conn: Connection, version_ids: Sequence[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {v: [] for v in version_ids}
    if not version_ids:
        return found
    rows = conn.execute(
        select(model_versions.c.id, model_aliases.c.alias)
        .join(model_aliases, (model_aliases.c.model_id == model_versions.c.model_id)
              & (model_aliases.c.version == model_versions.c.version))
        .where(model_versions.c.id.in_(version_ids)).order_by(model_aliases.c.alias)).all()
    for version_id, alias in rows:
        found[version_id].append(alias)
    return found


def _to_version(ws: Workspace, row: Any, aliases: list[str]) -> ModelVersion:
    return ModelVersion(
        id=row.id, name=row.model_name, version=row.version, flavor=row.flavor,
        stage=row.stage, digest=row.digest, files=json.loads(row.files),
        size_bytes=row.size_bytes, flavor_metadata=json.loads(row.flavor_metadata),
        libraries=json.loads(row.libraries),
        signature=None if row.signature is None else Signature.from_dict(
            json.loads(row.signature)),
        run_id=row.run_id, source_version_id=row.source_version_id,
        description=row.description, tags=json.loads(row.tags), aliases=aliases,
        created_at=_datetime(row.created_at), created_by=row.created_by,
        input_example_digest=row.input_example, workspace=ws)


def _select_versions() -> Any:
    return select(model_versions, registered_models.c.name.label("model_name")).join(
        registered_models, registered_models.c.id == model_versions.c.model_id)


def _load_all(ws: Workspace, condition: Any) -> list[ModelVersion]:
    with ws.db.read() as conn:
        rows = conn.execute(_select_versions().where(condition).order_by(
            registered_models.c.name, model_versions.c.version)).all()
        aliases = _aliases_of(conn, [r.id for r in rows])
    return [_to_version(ws, r, aliases[r.id]) for r in rows]


def _load_one(ws: Workspace, condition: Any, what: str) -> ModelVersion:
    found = _load_all(ws, condition)
    if not found:
        raise ModelNotFoundError(f"no model version with {what}", field="version")
    return found[0]


def _resolve_id(conn: Connection, ref: ModelRef) -> str:
    """The version id a reference points at now."""
    model_id = _require_model(conn, ref.name)
    number = ref.version
    if ref.alias is not None:
        number = conn.execute(select(model_aliases.c.version).where(
            model_aliases.c.model_id == model_id, model_aliases.c.alias == ref.alias)).scalar()
        if number is None:
            known = list(conn.execute(select(model_aliases.c.alias).where(
                model_aliases.c.model_id == model_id).order_by(model_aliases.c.alias)).scalars())
            listing = ", ".join(known) if known else "none"
            raise AliasNotFoundError(f"model {ref.name!r} has no alias {ref.alias!r}; its "
                                     f"aliases: {listing}", field="alias")
    if number is None:
        number = conn.execute(select(func.max(model_versions.c.version))
                              .where(model_versions.c.model_id == model_id)).scalar()
        if number is None:
            raise ModelNotFoundError(f"model {ref.name!r} has no versions", field="version")
    version_id = conn.execute(select(model_versions.c.id).where(
        model_versions.c.model_id == model_id, model_versions.c.version == number)).scalar()
    if version_id is None:
        latest = conn.execute(select(func.max(model_versions.c.version))
                              .where(model_versions.c.model_id == model_id)).scalar()
        raise ModelNotFoundError(f"model {ref.name!r} has no version {number}; its versions "
                                 f"run from 1 to {latest}", field="version")
    return version_id


def _ref(name_or_uri: str, version: int | str | None) -> ModelRef:
    if version is None:
        return parse_model_uri(name_or_uri)
    name = check_name(name_or_uri, what="model")
    if isinstance(version, bool) or not isinstance(version, (int, str)):
        raise InvalidValueError(f"version must be a number or an alias, got {version!r}",
                                field="version")
    number = version if isinstance(version, int) else parse_count(version)
    if number is not None:
        if number < 1:
            raise InvalidValueError(f"version must be 1 or more, got {version}",
                                    field="version")
        return ModelRef(name, version=number)
    if version == "latest":
        return ModelRef(name)
    return ModelRef(name, alias=check_alias(version.removeprefix("@")))


def get_version(name_or_uri: str, version: int | str | None = None, *,
                workspace: Workspace | None = None) -> ModelVersion:
    """A version by URI (``models:/ctr/3``, ``models:/ctr@champion``), or by name and a
    version number or alias."""
    ws = _workspace(workspace)
    ref = _ref(name_or_uri, version)
    query = _select_versions().where(registered_models.c.name == ref.name)
    if ref.alias is not None:
        query = query.join(model_aliases, (model_aliases.c.model_id == model_versions.c.model_id)
                           & (model_aliases.c.version == model_versions.c.version)) \
            .where(model_aliases.c.alias == ref.alias)
    elif ref.version is not None:
        query = query.where(model_versions.c.version == ref.version)
    else:
        query = query.order_by(model_versions.c.version.desc()).limit(1)
    with ws.db.read() as conn:  # one query when the version exists, the usual case
        row = conn.execute(query).first()
        if row is None:
            _resolve_id(conn, ref)  # raises the error that says what does exist
            raise ModelNotFoundError(f"no model version {ref}", field="version")
        aliases = _aliases_of(conn, [row.id])
    return _to_version(ws, row, aliases[row.id])


# -- registration ---------------------------------------------------------------------------

def _run_id(ws: Workspace, run: Any) -> str | None:
    if run is False:
        return None
    if run is None:
        from tidal.tracking.fluent import active_run

        active = active_run()
        return active.id if active is not None and active.workspace is ws else None
    run_id = getattr(run, "id", run)
    if not isinstance(run_id, str):
        raise InvalidValueError(f"run must be a run, an active run or a run id, got "
                                f"{type(run).__name__}", field="run")
    from tidal.tracking import store

    store.fetch_run(ws, run_id)  # RunNotFoundError names it when it does not exist
    return run_id


def _dataset_ids(ws: Workspace, datasets: Any, run_id: str | None) -> list[str]:
    """Ids of the training dataset versions: those given, else those the run read."""
    if datasets is None:
        if run_id is None:
            return []
        from tidal.data.schema import run_inputs

        with ws.db.read() as conn:
            return list(conn.execute(select(run_inputs.c.dataset_version_id).where(
                run_inputs.c.run_id == run_id).order_by(run_inputs.c.created_at)).scalars())
    from tidal.data.versions import DatasetVersion, get  # Arrow, only when datasets are named

    if isinstance(datasets, (str, DatasetVersion)):
        datasets = [datasets]
    ids: list[str] = []
    for item in datasets:
        if isinstance(item, str):
            if not item.startswith(URI_PREFIX):
                raise InvalidValueError(f"dataset {item!r} is not a dataset version URI "
                                        f"({URI_PREFIX}NAME/VERSION)", field="datasets")
            item = get(*parse_ref(item), workspace=ws)
        if not isinstance(item, DatasetVersion):
            raise InvalidValueError(f"datasets takes dataset versions or their URIs, got "
                                    f"{type(item).__name__}", field="datasets")
        if item.workspace.settings.db_url != ws.settings.db_url:
            raise InvalidValueError(f"{item.uri} belongs to another workspace than the model",
                                    field="datasets")
        if item.id not in ids:
            ids.append(item.id)
    return ids


def _signature(flavor: Flavor, model: Any, signature: Any, input_example: Any) -> Signature | None:
    if isinstance(signature, Signature):
        return signature
    if signature is not None:
        return Signature.from_dict(signature)
    if input_example is None:
        return None
    from tidal.models.signature import to_frame

    example = input_example
    import numpy as np

    if not isinstance(example, np.ndarray) and not hasattr(example, "detach"):
        example = to_frame(example, None)
    try:
        output = flavor.predict(model, example)
    except Exception as error:  # the model's own failure, reported with its cause
        raise InvalidValueError(f"the model failed to predict on input_example, so no "
                                f"signature could be inferred: {type(error).__name__}: {error}",
                                field="input_example") from error
    return infer_signature(example, output)


def _check_tags(tags: Mapping[str, Any] | None) -> dict[str, str]:
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise InvalidValueError(f"tags must be a mapping of names to values, got "
                                f"{type(tags).__name__}", field="tags")
    from tidal.tracking.validation import check_tags

    return check_tags(tags)


def register(name: str, model: Any, run: Any = None, signature: Any = None,
             input_example: Any = None, datasets: Any = None, description: str | None = None,
             tags: Mapping[str, Any] | None = None, *, flavor: str | None = None,
             flavor_options: Mapping[str, Any] | None = None, source: ModelVersion | None = None,
             workspace: Workspace | None = None) -> ModelVersion:
    """Store ``model`` as the next version of ``name`` and return that version.

    ``run``: the run that trained it (default: the active run; False: none). ``datasets``: its
    training
    dataset versions or their URIs (default: the datasets the run logged as inputs).
    ``signature``: a Signature or its dict; inferred from ``input_example`` (and the model's
    prediction on it) when not given. ``flavor``: a flavor name, detected when not given;
    ``flavor_options`` go to the flavor (e.g. ``{"init_kwargs": {...}}`` for PyTorch).
    """
    from tidal.tracking.environment import user_name

    ws = _workspace(workspace)
    name = check_name(name, what="model")
    if description is not None and not isinstance(description, str):
        raise InvalidValueError("description must be a string", field="description")
    if flavor_options is not None and not isinstance(flavor_options, Mapping):
        raise InvalidValueError("flavor_options must be a mapping", field="flavor_options")
    chosen = get_flavor(flavor) if flavor is not None else detect_flavor(model)
    checked_tags = _check_tags(tags)
    run_id = _run_id(ws, run)
    dataset_ids = _dataset_ids(ws, datasets, run_id)
    inferred = _signature(chosen, model, signature, input_example)
    example_digest = None
    if input_example is not None:
        example_digest = ws.artifacts.put_bytes(example_bytes(input_example)).digest
    metadata, files = save_files(ws, chosen, model, flavor_options or {})
    digest = content_digest(chosen.name, metadata, files)
    size = sum(int(f["size"]) for f in files.values())
    user = user_name()

    def record(conn: Connection) -> str:
        now = now_ms()
        # concurrent first registrations of one name: one row wins, both use it
        conn.execute(upsert(conn, registered_models).values(
            id=new_id(), name=name, created_at=now, created_by=user).on_conflict_do_nothing())
        model_id = conn.execute(select(registered_models.c.id).where(
            registered_models.c.name == name).with_for_update()).scalar_one()  # serialised
        number = (conn.execute(select(func.max(model_versions.c.version)).where(
            model_versions.c.model_id == model_id)).scalar() or 0) + 1
        version_id = new_id()
        conn.execute(insert(model_versions).values(
            id=version_id, model_id=model_id, version=number, flavor=chosen.name,
            stage="registered", digest=digest, files=json.dumps(files), size_bytes=size,
            flavor_metadata=json.dumps(metadata), libraries=json.dumps(library_versions(chosen)),
            signature=None if inferred is None else json.dumps(inferred.to_dict()),
            input_example=example_digest, run_id=run_id,
            source_version_id=None if source is None else source.id,
            description=description, tags=json.dumps(checked_tags), created_at=now,
            created_by=user))
        if dataset_ids:
            conn.execute(insert(model_version_datasets), [
                {"model_version_id": version_id, "dataset_version_id": d} for d in dataset_ids])
        conn.execute(insert(model_transitions).values(
            id=new_id(), model_version_id=version_id, from_stage=None, to_stage="registered",
            reason="registered" if source is None else f"exported from {source.uri}",
            created_at=now, created_by=user))
        return version_id

    version_id = ws.db.write(record)
    return _load_one(ws, model_versions.c.id == version_id, f"id {version_id}")


# -- listing --------------------------------------------------------------------------------

def _registered(conn: Connection, condition: Any) -> list[RegisteredModel]:
    rows = conn.execute(select(registered_models).where(condition)
                        .order_by(registered_models.c.name)).all()
    ids = [r.id for r in rows]
    latest = dict(conn.execute(select(model_versions.c.model_id,
                                      func.max(model_versions.c.version))
                               .where(model_versions.c.model_id.in_(ids))
                               .group_by(model_versions.c.model_id)).all())
    aliases: dict[str, dict[str, int]] = {}
    for model_id, alias, number in conn.execute(
            select(model_aliases.c.model_id, model_aliases.c.alias, model_aliases.c.version)
            .where(model_aliases.c.model_id.in_(ids)).order_by(model_aliases.c.alias)):
        aliases.setdefault(model_id, {})[alias] = number
    return [RegisteredModel(r.name, r.description, r.owner, r.purpose, latest.get(r.id),
                            aliases.get(r.id, {}), _datetime(r.created_at), r.created_by)
            for r in rows]


def list_models(*, workspace: Workspace | None = None) -> list[RegisteredModel]:
    with _workspace(workspace).db.read() as conn:
        return _registered(conn, registered_models.c.id.is_not(None))


def get_model(name: str, *, workspace: Workspace | None = None) -> RegisteredModel:
    name = check_name(name, what="model")
    with _workspace(workspace).db.read() as conn:
        model_id = _require_model(conn, name)
        return _registered(conn, registered_models.c.id == model_id)[0]


def list_versions(name: str, *, workspace: Workspace | None = None) -> list[ModelVersion]:
    """Every version of a model, oldest first."""
    ws = _workspace(workspace)
    name = check_name(name, what="model")
    with ws.db.read() as conn:
        model_id = _require_model(conn, name)
    return _load_all(ws, model_versions.c.model_id == model_id)


def update_model(name: str, *, description: str | None = None, owner: str | None = None,
                 purpose: str | None = None, workspace: Workspace | None = None) -> RegisteredModel:
    """Set the fields that describe a model as a whole (they appear on its model cards)."""
    ws = _workspace(workspace)
    name = check_name(name, what="model")
    values = {k: v for k, v in (("description", description), ("owner", owner),
                                ("purpose", purpose)) if v is not None}
    for key, value in values.items():
        if not isinstance(value, str):
            raise InvalidValueError(f"{key} must be a string", field=key)

    def work(conn: Connection) -> None:
        model_id = _require_model(conn, name)
        if values:
            conn.execute(update(registered_models).where(registered_models.c.id == model_id)
                         .values(**values))

    ws.db.write(work)
    return get_model(name, workspace=ws)


def trained_on(dataset: DatasetVersion | str, *,
               workspace: Workspace | None = None) -> list[ModelVersion]:
    """Model versions trained on a dataset version (given as itself or its URI)."""
    ws = _workspace(workspace)
    (dataset_id,) = _dataset_ids(ws, [dataset], None)
    with ws.db.read() as conn:
        ids = list(conn.execute(select(model_version_datasets.c.model_version_id).where(
            model_version_datasets.c.dataset_version_id == dataset_id)).scalars())
    return _load_all(ws, model_versions.c.id.in_(ids)) if ids else []
