"""A drift report as one self-contained HTML page: a summary table and, per column, the
reference and current distributions drawn side by side.

The page loads nothing (no script, stylesheet, font or CDN): it must open from an artifact
store, an e-mail or an air-gapped machine, and a report that fetches code is one more thing
that can be tampered with. Charts are inline SVG computed with NumPy. Every string that came
from data or users (column names, categories, the title) is escaped. The page holds no time
of its own, so the same report renders to the same bytes.
"""

from __future__ import annotations

import os
import secrets
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tidal.errors import InvalidValueError
from tidal.formatting import format_number

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from tidal.monitoring.drift import ColumnDrift, DriftReport
    from tidal.monitoring.inputs import Sample

#: Bins of a numeric histogram; categories drawn before the rest are summed as "other".
BINS = 20
MAX_CATEGORIES = 20
_REFERENCE, _CURRENT = "#4e79a7", "#f28e2b"
_WIDTH, _PLOT_HEIGHT, _LEFT, _BOTTOM, _TOP = 560, 180, 48, 28, 12
_LABEL_WIDTH, _ROW = 150, 24

_STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328;
       max-width: 980px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { font-size: 1.2em; margin: 1.6em 0 .3em; }
.verdict { font-size: 1.05em; } .yes { color: #b42318; font-weight: 600; }
.no { color: #1a7f37; }
table { border-collapse: collapse; width: 100%; margin: 1em 0; }
th, td { text-align: left; padding: .35em .6em; border-bottom: 1px solid #d0d7de; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
tr.drifted td:first-child { border-left: 3px solid #b42318; }
.legend span { display: inline-block; width: .9em; height: .9em; margin: 0 .3em 0 1em;
               vertical-align: middle; }
.note { color: #59636e; }
svg text { font: 11px system-ui, sans-serif; fill: #59636e; }
"""


def _rows(data: Any, what: str) -> Sample:
    """A sample as drift reads it, which must hold rows: charts are drawn from them."""
    from tidal.monitoring.inputs import sample

    found = sample(data, what)
    if found.profile is not None:
        raise InvalidValueError(f"the {what} is a stored profile; the report draws each column "
                                "from rows: give the data itself (a frame, a dataset version "
                                "or its URI, a log window)", field=what)
    return found


def _text(value: Any) -> str:
    return escape(str(value), quote=True)


def _number_cell(value: float) -> str:
    """A table cell showing a figure rounded, with its exact value in ``data-value``."""
    return (f'<td class="number" data-value="{_text(repr(float(value)))}">'
            f"{_text(format_number(float(value), 4))}</td>")


def _percent(share: float) -> str:
    return f"{100 * share:.1f}%"


def _legend() -> str:
    return (f'<p class="legend"><span style="background:{_REFERENCE}"></span>reference'
            f'<span style="background:{_CURRENT}"></span>current</p>')


def _svg(column: str, kind: str, height: int, body: list[str], predictions: bool) -> str:
    """A chart, named by ``data-column`` (or ``data-predictions`` for the model's answers,
    which must not be mistaken for an input column of the same name)."""
    label = f"{'histogram' if kind == 'numeric' else 'category shares'} of {column}"
    target = 'data-predictions="true"' if predictions else f'data-column="{_text(column)}"'
    return (f'<svg class="chart {"histogram" if kind == "numeric" else "bars"}" '
            f'{target} role="img" aria-label="{_text(label)}" '
            f'width="{_WIDTH}" height="{height}" viewBox="0 0 {_WIDTH} {height}">'
            f'{"".join(body)}</svg>')


def _bar(x: float, y: float, width: float, height: float, color: str, title: str) -> str:
    return (f'<rect x="{x:.2f}" y="{y:.2f}" width="{max(width, 0):.2f}" '
            f'height="{max(height, 0):.2f}" fill="{color}"><title>{_text(title)}</title></rect>')


def _histogram(column: str, reference: np.ndarray, current: np.ndarray,
               predictions: bool) -> str:
    """Shares of the rows in each of BINS bins spanning both samples, as grouped bars."""
    import numpy as np

    edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins=BINS)
    shares = [np.histogram(side, bins=edges)[0] / len(side) for side in (reference, current)]
    top = max(float(max(s.max() for s in shares)), 1e-12)
    plot_width = _WIDTH - _LEFT - 8
    step = plot_width / (len(edges) - 1)
    base = _TOP + _PLOT_HEIGHT
    body = [f'<line x1="{_LEFT}" y1="{base}" x2="{_WIDTH - 8}" y2="{base}" stroke="#8c959f"/>',
            f'<text x="{_LEFT - 4}" y="{_TOP + 8}" text-anchor="end">{_percent(top)}</text>',
            f'<text x="{_LEFT - 4}" y="{base}" text-anchor="end">0%</text>']
    for i in range(len(edges) - 1):
        span = f"[{format_number(float(edges[i]), 4)}, {format_number(float(edges[i + 1]), 4)})"
        for side, (name, color) in enumerate((("reference", _REFERENCE),
                                               ("current", _CURRENT))):
            share = float(shares[side][i])
            height = share / top * _PLOT_HEIGHT
            body.append(_bar(_LEFT + i * step + side * step / 2 + 0.5, base - height,
                             step / 2 - 1, height, color, f"{span}: {name} {_percent(share)}"))
    for x, value, anchor in ((_LEFT, edges[0], "start"), (_WIDTH - 8, edges[-1], "end")):
        body.append(f'<text x="{x}" y="{base + 16}" text-anchor="{anchor}">'
                    f"{_text(format_number(float(value), 4))}</text>")
    return _svg(column, "numeric", _TOP + _PLOT_HEIGHT + _BOTTOM, body, predictions)


def _categories(column: str, reference: pd.Series, current: pd.Series,
                predictions: bool) -> str:
    """Each category's share on both sides as pairs of horizontal bars, the largest first;
    past MAX_CATEGORIES the rest are one "other" row."""
    import pandas as pd

    ref = reference.astype(str).value_counts(normalize=True)
    cur = current.astype(str).value_counts(normalize=True)
    both = pd.concat([ref, cur], axis=1, keys=["ref", "cur"]).fillna(0.0)
    both = both.assign(key=both["ref"] + both["cur"]).sort_values(
        ["key"], ascending=False, kind="stable").drop(columns="key")
    rows = [(str(name), float(r), float(c), name not in ref.index)
            for name, r, c in both.itertuples()]
    if len(rows) > MAX_CATEGORIES:
        rest = rows[MAX_CATEGORIES - 1:]
        rows = rows[:MAX_CATEGORIES - 1] + [(f"other ({len(rest)} categories)",
                                              sum(r[1] for r in rest),
                                              sum(r[2] for r in rest), False)]
    top = max(max(max(r, c) for _, r, c, _ in rows), 1e-12)
    plot_width = _WIDTH - _LABEL_WIDTH - 110  # room for the shares after the bars
    body = []
    for i, (name, ref_share, cur_share, new) in enumerate(rows):
        y = _TOP + i * _ROW
        shown = name if len(name) <= 22 else name[:21] + "…"
        body.append(f'<text x="{_LABEL_WIDTH - 6}" y="{y + 14}" text-anchor="end">'
                    f"{_text(shown + (' (new)' if new else ''))}<title>{_text(name)}</title>"
                    "</text>")
        for side, (what, share, color) in enumerate((("reference", ref_share, _REFERENCE),
                                                     ("current", cur_share, _CURRENT))):
            width = share / top * plot_width
            body.append(_bar(_LABEL_WIDTH, y + 2 + side * 10, width, 9, color,
                             f"{name}: {what} {_percent(share)}"))
        body.append(f'<text x="{_LABEL_WIDTH + max(ref_share, cur_share) / top * plot_width + 4}"'
                    f' y="{y + 14}">{_percent(ref_share)} → {_percent(cur_share)}</text>')
    return _svg(column, "categorical", _TOP + len(rows) * _ROW + 8, body, predictions)


def _test_name(column: ColumnDrift) -> str:
    measure = "p-value" if column.test in ("ks", "chi2") else "distance"
    return f"{column.test} ({measure})"


def _section(anchor: str, column: ColumnDrift, reference: pd.Series, current: pd.Series, *,
             predictions: bool = False) -> str:
    import numpy as np

    verdict = ('<span class="yes">drifted</span>' if column.drifted
               else '<span class="no">not drifted</span>')
    rule = "below" if column.test in ("ks", "chi2") else "above"
    adjusted = "" if column.adjusted is None else (
        f", adjusted for the columns tested {_text(format_number(column.adjusted, 4))}")
    notes = [f"{_text(_test_name(column))} {_text(format_number(column.statistic, 4))}"
             f"{adjusted}, drifted when {rule} {_text(format_number(column.threshold, 4))}; PSI "
             f"{_text(format_number(column.psi, 4))}; {column.reference_rows} reference and "
             f"{column.current_rows} current rows"]
    if column.new_categories:
        notes.append("new categories: " + ", ".join(map(_text, column.new_categories)))
    if column.missing_categories:
        notes.append("categories no longer seen: " + ", ".join(
            map(_text, column.missing_categories)))
    if column.kind == "numeric":
        ref = reference.to_numpy(dtype=float)
        cur = current.to_numpy(dtype=float)
        chart = _histogram(column.column, ref[np.isfinite(ref)], cur[np.isfinite(cur)],
                           predictions)
    else:
        chart = _categories(column.column, reference, current, predictions)
    name = "The model's predictions" if predictions else _text(column.column)
    return (f'<section id="{anchor}"><h2>{name} — {verdict}</h2>'
            f'<p class="note">{"<br>".join(notes)}</p>{chart}</section>')


def _correction_note(report: DriftReport) -> str:
    if report.correction == "none":
        return ""
    how = {"bonferroni": "Bonferroni", "bh": "Benjamini-Hochberg"}[report.correction]
    return "; p-values adjusted for the number of columns tested (" + how + ")"


def drift_html(report: DriftReport, reference: Any, current: Any, *,
               title: str | None = None) -> str:
    """The HTML page of ``report``, drawing each of its columns from ``reference`` and
    ``current``: the samples it was computed from, in any form ``drift`` takes except a
    stored profile (the charts need rows). Two log windows also show the predictions."""
    from tidal.monitoring.drift import DriftReport

    if not isinstance(report, DriftReport):
        raise InvalidValueError(f"report must be a DriftReport (from tidal.monitoring.drift), "
                                f"got {type(report).__name__}", field="report")
    if title is not None and not isinstance(title, str):
        raise InvalidValueError(f"title must be a string, got {type(title).__name__}",
                                field="title")
    samples = {"reference": _rows(reference, "reference"),
               "current": _rows(current, "current")}
    for side, found in samples.items():
        absent = [c.column for c in report.columns if c.column not in found.frame.columns]
        if absent:
            raise InvalidValueError(f"the {side} sample lacks column(s) {absent} of the "
                                    "report; give the samples the report was computed from",
                                    field=side)
    heading = title or "Data drift report"
    drifted = len(report.drifted_columns)
    found = ('<span class="yes">detected</span>' if report.drifted
             else '<span class="no">not detected</span>')
    verdict = (f'<p class="verdict">Dataset drift: {found}'
               f" — {drifted} of {len(report.columns)} columns drifted "
               f"({_percent(report.drifted_share)}; the dataset drifts at "
               f"{_percent(report.drift_share)}){_correction_note(report)}</p>")
    rows = []
    for index, column in enumerate(report.columns):
        rows.append(
            f'<tr class="{"drifted" if column.drifted else "stable"}" '
            f'data-column="{_text(column.column)}">'
            f'<td><a href="#column-{index}">{_text(column.column)}</a></td>'
            f"<td>{_text(column.kind)}</td><td>{_text(_test_name(column))}</td>"
            f"{_number_cell(column.statistic)}{_number_cell(column.threshold)}"
            f"{_number_cell(column.psi)}<td>{'yes' if column.drifted else 'no'}</td>"
            f'<td class="number">{column.reference_rows} / {column.current_rows}</td></tr>')
    table = ('<table class="summary"><thead><tr><th>Column</th><th>Type</th><th>Test</th>'
             "<th>Statistic</th><th>Threshold</th><th>PSI</th><th>Drifted</th>"
             f"<th>Rows (reference / current)</th></tr></thead><tbody>{''.join(rows)}"
             "</tbody></table>")
    ref, cur = samples["reference"], samples["current"]
    sections = [_section(f"column-{i}", c, ref.frame[c.column].dropna(),
                         cur.frame[c.column].dropna()) for i, c in enumerate(report.columns)]
    answers = report.prediction
    if answers is not None and ref.predictions is not None and cur.predictions is not None:
        found = ('<span class="yes">drifted</span>' if answers.drifted
                 else '<span class="no">not drifted</span>')
        verdict += (f'<p class="verdict predictions" data-statistic="{answers.statistic!r}" '
                    f'data-psi="{answers.psi!r}"><a href="#predictions">Predictions</a>: '
                    f"{found} ({_text(_test_name(answers))} "
                    f"{_text(format_number(answers.statistic, 4))}, PSI "
                    f"{_text(format_number(answers.psi, 4))})</p>")
        sections.append(_section("predictions", answers, ref.predictions, cur.predictions,
                                 predictions=True))
    return ("<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_text(heading)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{_text(heading)}</h1>{verdict}{table}{_legend()}{''.join(sections)}"
            "</body></html>\n")


def write_drift_html(path: str | os.PathLike[str], report: DriftReport, reference: Any,
                     current: Any, *, title: str | None = None) -> Path:
    """Write ``drift_html(...)`` to ``path`` (its folder is made if needed) whole or not at
    all: through a temporary file renamed over it. Returns the path."""
    target = Path(path)
    page = drift_html(report, reference, current, title=title)
    if target.is_dir():
        raise InvalidValueError(f"{target} is a folder; give a file path such as "
                                f"{target / 'drift.html'}", field="path")
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        temporary.write_text(page, encoding="utf-8")
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target
