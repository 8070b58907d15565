"""Model cards: one document per model version saying what it is, where it came from and what
it was checked against, for reviewers who do not have Tidal at hand.

``build_card`` gathers what the registry knows about a version (the model's purpose and owner,
the run that trained it, the dataset versions it read with their profiles, the latest gate
run, the stage and alias history, the signature and the library versions) into a
:class:`ModelCard`. Markdown, HTML and the terminal (``tidal models show``) all render the same
:meth:`ModelCard.sections`, so no two of them can disagree on what a card holds.

The HTML page is self-contained (inline CSS, no scripts, nothing fetched) so that it can be
attached to a ticket or mailed. Descriptions, reasons, params and the like are typed by users;
both renderings escape them, Markdown too, since most Markdown renderers pass raw HTML through.
"""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tidal.errors import InvalidValueError
from tidal.formatting import MISSING, format_bytes, format_number
from tidal.models.aliases import AliasEvent, alias_history
from tidal.models.registry import ModelVersion, get_model, get_version
from tidal.models.signature import Signature, Spec, TensorSpec
from tidal.models.stages import Transition
from tidal.store.workspace import Workspace

if TYPE_CHECKING:
    from tidal.data.versions import DatasetVersion

#: Shown for a descriptive field (description, purpose, owner...) nobody filled in.
NOT_SET = "not set"

#: The statistics of a dataset column a card keeps: enough to recognise the data, short
#: enough to read (quantiles and histograms stay with the dataset version).
PROFILE_STATS = ("type", "nulls", "min", "max", "mean")


# -- what a card holds --------------------------------------------------------------------------

@dataclass(frozen=True)
class RunSummary:
    """The run that trained a version, as far as a card shows it."""

    id: str
    experiment: str
    name: str
    status: str
    params: dict[str, str]
    metrics: dict[str, float]


@dataclass(frozen=True)
class DatasetSummary:
    """A training dataset version: identity, size and a compact profile per column
    (``PROFILE_STATS`` where the profile has them)."""

    uri: str
    rows: int
    columns: int
    digest: str
    profile: dict[str, dict[str, Any]]


# Blocks a section is made of; every string in them is plain text that renderers escape.

@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Subheading:
    text: str


@dataclass(frozen=True)
class Fields:
    """Labelled values, one per line."""

    items: list[tuple[str, str]]


@dataclass(frozen=True)
class Table:
    headings: tuple[str, ...]
    rows: list[tuple[str, ...]]


Block = Paragraph | Subheading | Fields | Table


@dataclass(frozen=True)
class Section:
    title: str
    blocks: list[Block]


@dataclass(frozen=True)
class ModelCard:
    """Everything a card says about one model version, gathered once by ``build_card``."""

    name: str
    version: int
    uri: str
    stage: str
    aliases: list[str]
    description: str | None
    version_description: str | None
    purpose: str | None
    owner: str | None
    flavor: str
    created_at: datetime
    created_by: str | None
    digest: str
    size_bytes: int
    tags: dict[str, str]
    run: RunSummary | None
    datasets: list[DatasetSummary]
    source: str | None
    gates: list[dict[str, Any]]
    transitions: list[Transition]
    alias_events: list[AliasEvent]
    signature: Signature | None
    libraries: dict[str, str]

    @property
    def title(self) -> str:
        return f"{self.name} version {self.version}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: times as ISO 8601, the signature in its stored form."""
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        data["gates"] = [{**g, "created_at": g["created_at"].isoformat()} for g in self.gates]
        data["transitions"] = [{**asdict(t), "at": t.at.isoformat()} for t in self.transitions]
        data["alias_events"] = [{**asdict(e), "at": e.at.isoformat()}
                                for e in self.alias_events]
        data["signature"] = None if self.signature is None else self.signature.to_dict()
        return data

    def sections(self) -> list[Section]:
        """The card's content in reading order, for any renderer."""
        return [self._overview(), self._lineage(), self._gates(), self._signature(),
                Section("Stage history", [_transitions_table(self.transitions)]),
                self._alias_history(), self._libraries()]

    def _overview(self) -> Section:
        tags = ", ".join(f"{k}={v}" for k, v in sorted(self.tags.items()))
        return Section("Overview", [Fields([
            ("URI", self.uri),
            ("Stage", self.stage),
            ("Aliases", ", ".join(self.aliases) or "none"),
            ("Description", self.description or NOT_SET),
            ("Purpose", self.purpose or NOT_SET),
            ("Owner", self.owner or NOT_SET),
            ("Version description", self.version_description or NOT_SET),
            ("Flavor", self.flavor),
            ("Created", f"{_when(self.created_at)} by {self.created_by or 'an unknown user'}"),
            ("Digest", self.digest),
            ("Size", format_bytes(self.size_bytes)),
            ("Tags", tags or "none"),
        ])])

    def _lineage(self) -> Section:
        blocks: list[Block] = [Fields([("Exported from", self.source or "not exported")]),
                               Subheading("Training run")]
        run = self.run
        if run is None:
            blocks.append(Paragraph("No run is recorded for this version."))
        else:
            blocks.append(Fields([("Run id", run.id), ("Experiment", run.experiment),
                                  ("Run name", run.name), ("Status", run.status)]))
            blocks.append(Table(("Param", "Value"), sorted(run.params.items())) if run.params
                          else Paragraph("The run logged no params."))
            blocks.append(Table(("Metric", "Value"), [(k, format_number(v)) for k, v in
                                                      sorted(run.metrics.items())])
                          if run.metrics else Paragraph("The run logged no metrics."))
        blocks.append(Subheading("Training data"))
        if not self.datasets:
            blocks.append(Paragraph("No training dataset version is recorded."))
        for dataset in self.datasets:
            blocks.append(Fields([("Dataset", dataset.uri), ("Rows", f"{dataset.rows:,}"),
                                  ("Columns", str(dataset.columns)),
                                  ("Digest", dataset.digest)]))
            blocks.append(Table(("Column", "Type", "Nulls", "Min", "Max", "Mean"), [
                (column, *(_stat(stats.get(key)) for key in PROFILE_STATS))
                for column, stats in dataset.profile.items()]))
        return Section("Lineage", blocks)

    def _gates(self) -> Section:
        if not self.gates:
            return Section("Gate results", [Paragraph("No gates have been run on this "
                                                      "version.")])
        first = self.gates[0]
        passed = sum(1 for g in self.gates if g["passed"])
        summary = (f"Latest gate run: {_when(first['created_at'])} by "
                   f"{first['created_by'] or 'an unknown user'}; {passed} of "
                   f"{len(self.gates)} passed.")
        return Section("Gate results", [Paragraph(summary), Table(
            ("Gate", "Result", "Reasons"),
            [(g["gate"], "passed" if g["passed"] else "failed", "; ".join(g["reasons"]) or
              MISSING) for g in self.gates])])

    def _signature(self) -> Section:
        if self.signature is None:
            return Section("Signature", [Paragraph(
                "No signature was recorded, so inputs are not checked before prediction.")])
        return Section("Signature", [Subheading("Inputs"), _spec_block(self.signature.inputs),
                                     Subheading("Outputs"), _spec_block(self.signature.outputs)])

    def _alias_history(self) -> Section:
        if not self.alias_events:
            return Section("Alias history", [Paragraph("No alias has pointed at this "
                                                       "version.")])
        return Section("Alias history", [Table(
            ("Alias", "Change", "By", "When", "Reason"),
            [(e.alias, alias_change(e), e.by or MISSING, _when(e.at), e.reason or MISSING)
             for e in self.alias_events])])

    def _libraries(self) -> Section:
        if not self.libraries:
            return Section("Library versions", [Paragraph("No library versions were "
                                                          "recorded.")])
        return Section("Library versions", [Table(("Library", "Version"),
                                                  sorted(self.libraries.items()))])

    # -- rendering ----------------------------------------------------------------------------

    def to_markdown(self) -> str:
        """Markdown to keep beside the code or paste into a wiki; user text is HTML-escaped
        too, since most Markdown renderers pass raw HTML through."""
        lines = [f"# Model card: {_md(self.title)}", ""]
        for section in self.sections():
            lines += [f"## {_md(section.title)}", ""]
            for block in section.blocks:
                lines += _markdown_block(block)
        return "\n".join(lines).rstrip("\n") + "\n"

    def to_html(self) -> str:
        """A self-contained page: inline CSS, no scripts, and a Content-Security-Policy that
        forbids fetching anything, so opening it reveals nothing to anyone."""
        title = html.escape(f"Model card: {self.title}")
        header = (f"<header><h1>{title}</h1><p class=\"uri\">{html.escape(self.uri)} "
                  f"<span class=\"stage\">{html.escape(self.stage)}</span></p></header>")
        body = [header]
        for section in self.sections():
            body.append(f"<section><h2>{html.escape(section.title)}</h2>")
            body += [_html_block(block) for block in section.blocks]
            body.append("</section>")
        return _PAGE.format(title=title, style=_STYLE, body="\n".join(body))


# -- gathering ----------------------------------------------------------------------------------

def build_card(uri_or_version: str | ModelVersion, *,
               workspace: Workspace | None = None) -> ModelCard:
    """The card of a version given as itself or by URI (``models:/churn/3``, ``churn@champion``).

    A version given as itself is read from its own workspace; ``workspace`` is for URIs.
    """
    if isinstance(uri_or_version, ModelVersion):
        version = uri_or_version
    elif isinstance(uri_or_version, str):
        version = get_version(uri_or_version, workspace=workspace)
    else:
        raise InvalidValueError(f"a model card needs a model version or its URI, got "
                                f"{type(uri_or_version).__name__}", field="uri")
    ws = version.workspace
    model = get_model(version.name, workspace=ws)
    run = version.run()
    source = version.source()
    events = [e for e in alias_history(version.name, workspace=ws)
              if version.version in (e.version, e.previous_version)]
    return ModelCard(
        name=version.name, version=version.version, uri=version.uri, stage=version.stage,
        aliases=list(version.aliases), description=model.description,
        version_description=version.description, purpose=model.purpose, owner=model.owner,
        flavor=version.flavor, created_at=version.created_at, created_by=version.created_by,
        digest=version.digest, size_bytes=version.size_bytes, tags=dict(version.tags),
        run=None if run is None else RunSummary(run.id, run.experiment, run.name, run.status,
                                                dict(run.params), dict(run.metrics)),
        datasets=[_dataset_summary(d) for d in version.datasets()],
        source=None if source is None else source.uri,
        gates=latest_gate_run(version.gate_results()),
        transitions=version.transitions(), alias_events=events,
        signature=version.signature, libraries=dict(version.libraries))


def write_card(uri: str | ModelVersion, directory: str | Path, *,
               workspace: Workspace | None = None) -> tuple[Path, Path]:
    """Write ``<name>-v<version>.md`` and ``.html`` into ``directory`` (created if missing) and
    return their paths. Model names are limited to letters, digits, '_', '-' and '.' and never
    start with '.', so a file name built from one stays inside the folder."""
    card = build_card(uri, workspace=workspace)
    folder = Path(directory).expanduser()
    if folder.exists() and not folder.is_dir():
        raise InvalidValueError(f"{str(directory)!r} is a file, not a folder to write the "
                                "card into", field="directory")
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{card.name}-v{card.version}"
    markdown, page = folder / f"{stem}.md", folder / f"{stem}.html"
    markdown.write_text(card.to_markdown(), encoding="utf-8")
    page.write_text(card.to_html(), encoding="utf-8")
    return markdown, page


def latest_gate_run(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The results of the latest gate run among ``ModelVersion.gate_results()`` (oldest
    first): what decides whether a version may be validated."""
    if not results:
        return []
    last = results[-1]["gate_run_id"]
    return [r for r in results if r["gate_run_id"] == last]


def alias_change(event: AliasEvent) -> str:
    """What one alias event did, in words: set, moved or removed."""
    if event.version is None:
        return f"removed from version {event.previous_version}"
    if event.previous_version is None:
        return f"set to version {event.version}"
    return f"moved from version {event.previous_version} to {event.version}"


def _dataset_summary(dataset: DatasetVersion) -> DatasetSummary:
    columns = dataset.profile.get("columns", {})
    profile = {name: {key: stats[key] for key in PROFILE_STATS if key in stats}
               for name, stats in columns.items()}
    return DatasetSummary(dataset.uri, dataset.num_rows, dataset.num_columns, dataset.digest,
                          profile)


def _transitions_table(transitions: list[Transition]) -> Table:
    return Table(("From", "To", "By", "When", "Reason"), [
        (t.from_stage or MISSING, t.to_stage, t.by or MISSING, _when(t.at), t.reason)
        for t in transitions])


def _spec_block(spec: Spec | None) -> Block:
    if spec is None:
        return Paragraph("not recorded")
    if isinstance(spec, TensorSpec):
        shape = "[" + ", ".join("any" if d == -1 else str(d) for d in spec.shape) + "]"
        return Fields([("Tensor dtype", spec.dtype), ("Shape", shape)])
    return Table(("Name", "Type", "Nullable"),
                 [(c.name, c.type, "yes" if c.nullable else "no") for c in spec])


def _when(moment: datetime) -> str:
    """UTC to the second: a card is read in other time zones than it was written in."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _stat(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format_number(value)
    return str(value)


# -- Markdown -----------------------------------------------------------------------------------

def _md(text: str, *, cell: bool = False) -> str:
    """User text for Markdown: HTML escaped; in a table cell also no '|' or line break."""
    text = html.escape(text, quote=False)
    if cell:
        text = text.replace("|", "\\|").replace("\r\n", "\n").replace("\n", "<br>")
    return text


def _markdown_block(block: Block) -> list[str]:
    if isinstance(block, Paragraph):
        return [_md(block.text), ""]
    if isinstance(block, Subheading):
        return [f"### {_md(block.text)}", ""]
    if isinstance(block, Fields):
        return [f"- **{_md(k)}:** {_md(v, cell=True)}" for k, v in block.items] + [""]
    if not block.rows:
        return ["None.", ""]
    lines = ["| " + " | ".join(_md(h, cell=True) for h in block.headings) + " |",
             "|" + "|".join(" --- " for _ in block.headings) + "|"]
    lines += ["| " + " | ".join(_md(c, cell=True) for c in row) + " |" for row in block.rows]
    return [*lines, ""]


# -- HTML ---------------------------------------------------------------------------------------

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<main>
{body}
</main>
</body>
</html>
"""

_STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328;
       background: #f6f8fa; margin: 0; }
main { max-width: 60rem; margin: 2rem auto; padding: 1rem 2rem 2rem; background: #fff;
       border: 1px solid #d0d7de; border-radius: 8px; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.2rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem;
     margin-top: 2rem; }
h3 { font-size: 1rem; margin: 1.2rem 0 .4rem; }
.uri { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; color: #57606a;
       margin-top: 0; }
.stage { font-family: system-ui, sans-serif; font-size: .8rem; padding: .1rem .5rem;
         border-radius: 1rem; background: #ddf4ff; color: #0969da; margin-left: .5rem; }
table { border-collapse: collapse; margin: .4rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #d0d7de; padding: .25rem .6rem; text-align: left;
         vertical-align: top; overflow-wrap: anywhere; white-space: pre-wrap; }
thead th { background: #f6f8fa; }
table.fields th { background: #f6f8fa; white-space: nowrap; font-weight: 600; }
p.none { color: #57606a; }
"""


def _html_block(block: Block) -> str:
    if isinstance(block, Paragraph):
        return f"<p>{html.escape(block.text)}</p>"
    if isinstance(block, Subheading):
        return f"<h3>{html.escape(block.text)}</h3>"
    if isinstance(block, Fields):
        rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                       for k, v in block.items)
        return f"<table class=\"fields\">{rows}</table>"
    if not block.rows:
        return "<p class=\"none\">None.</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in block.headings)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in block.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
